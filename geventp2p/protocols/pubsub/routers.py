"""The two public services: :class:`FloodSub` and :class:`GossipSub`."""

from __future__ import annotations

import inspect
from dataclasses import replace
from typing import Any, Iterable, Optional

from geventp2p.core import addr as _addr
from geventp2p.core.peer import PeerId, PeerInfo
from geventp2p.exceptions import ConfigError
from geventp2p.protocols.identify import IdentifyService
from geventp2p.protocols.pubsub.service import PubSub, PubSubOptions
from geventp2p.sansio.pubsub import FloodSubRouter
from geventp2p.sansio.pubsub.gossipsub import GossipSubParams
from geventp2p.sansio.pubsub.sign import MsgIdFn, SignaturePolicy, content_msg_id, default_msg_id

__all__ = ["FloodSub", "GossipSub", "make_pubsub"]


def _policy(options: PubSubOptions) -> tuple[SignaturePolicy, MsgIdFn]:
    """StrictSign with go's message id, or StrictNoSign with a content id (SHA-256 of the data:
    ``from``/``seqno`` are absent, so go's id would be the same for every message)."""
    if options.sign:
        return SignaturePolicy.STRICT_SIGN, default_msg_id
    return SignaturePolicy.STRICT_NO_SIGN, content_msg_id


class FloodSub(PubSub):
    """Floodsub (``/floodsub/1.0.0``): every message to every peer subscribed to its topic.

    ``FloodSub(host, options)`` starts at once and closes with the host.  ``msg_id_fn``
    replaces the default message id (go's ``from || seqno``; SHA-256 of the data under
    StrictNoSign).
    """

    def __init__(self, host: Any, options: PubSubOptions | None = None, *, msg_id_fn: MsgIdFn | None = None) -> None:
        options = options if options is not None else PubSubOptions()
        policy, default_id = _policy(options)
        router = FloodSubRouter(host.id, signature_policy=policy, msg_id_fn=msg_id_fn or default_id)
        super().__init__(host, router, router.protocols, options)


class GossipSub(PubSub):
    """Gossipsub v1.3 (``/meshsub/1.3.0``, 1.2.0, 1.1.0, 1.0.0; floodsub to floodsub-only peers).

    ``GossipSub(host, config)``: ``config`` is a
    :class:`~geventp2p.sansio.pubsub.gossipsub.GossipSubParams` (D, heartbeat, backoff,
    flood publish...; defaults as go); ``score_params`` / ``score_thresholds`` enable peer
    scoring; ``options`` are the shell's (signing, queues, limits).  The heartbeat runs
    every ``config.heartbeat_interval``.
    """

    def __init__(self, host: Any, config: Any = None, *, options: PubSubOptions | None = None,
                 score_params: Any = None, score_thresholds: Any = None,
                 msg_id_fn: MsgIdFn | None = None, direct_peers: Iterable[Any] = ()) -> None:
        from geventp2p.sansio.pubsub.gossipsub import GossipSubRouter

        params = config if config is not None else GossipSubParams()
        options = options if options is not None else PubSubOptions()
        options = replace(options, heartbeat_interval=params.heartbeat_interval,
                          heartbeat_initial_delay=params.heartbeat_initial_delay)
        policy, default_id = _policy(options)
        direct = [_direct_peer(x) for x in direct_peers]
        router = GossipSubRouter(host.id, params, score_params, score_thresholds,
                                 signature_policy=policy, msg_id_fn=msg_id_fn or default_id,
                                 direct_peers=[pid for pid, _ in direct],
                                 peer_record=lambda pid: _signed_record(host, pid))
        self.config = params
        #: Direct peers (go's ``WithDirectPeers``) and the addresses given for them.
        self.direct_peers: dict[PeerId, list[Any]] = {pid: addrs for pid, addrs in direct}
        super().__init__(host, router, router.protocols, options)


def _direct_peer(x: Any) -> tuple[PeerId, list[Any]]:
    """A direct peer given as a PeerId, a PeerInfo or a multiaddr ending in ``/p2p/<id>``."""
    if isinstance(x, PeerId):
        return x, []
    if isinstance(x, PeerInfo):
        return x.peer_id, list(x.addrs)
    if isinstance(x, (str, _addr.Multiaddr)):
        transport, pid = _addr.split_p2p(x)
        if pid is None:
            raise ConfigError(f"direct peer {x} has no /p2p/<peer id> part")
        return PeerId.from_string(pid), ([transport] if transport is not None else [])
    raise ConfigError(f"direct peer must be a PeerId, a PeerInfo or a /p2p/ multiaddr, got {type(x).__name__}")


def _signed_record(host: Any, peer: PeerId) -> Optional[bytes]:
    """The signed peer record identify holds for ``peer`` (attached to the PX we send)."""
    ids = host.service(IdentifyService)
    env = ids.signed_record(peer) if ids is not None else None
    return env.marshal() if env is not None else None


def make_pubsub(host: Any, spec: Any) -> PubSub:
    """Start the pubsub service ``spec`` describes on ``host`` (``new_host(pubsub=spec)``).

    ``spec`` is ``"gossipsub"`` or ``"floodsub"``; a :class:`PubSubOptions` (gossipsub
    with those shell options); a :class:`GossipSubParams` (gossipsub with that config);
    a dict with ``"router"`` (default ``"gossipsub"``) and the keywords of
    :class:`GossipSub` or :class:`FloodSub` (``config``, ``options``, ``score_params``,
    ``score_thresholds``, ``msg_id_fn``, ``direct_peers``); or a callable
    ``fn(host) -> PubSub``.  Raises :class:`ConfigError` for anything else.
    """
    if isinstance(spec, str):
        spec = {"router": spec}
    elif isinstance(spec, PubSubOptions):
        spec = {"router": "gossipsub", "options": spec}
    elif isinstance(spec, GossipSubParams):
        spec = {"router": "gossipsub", "config": spec}
    elif callable(spec):
        ps = spec(host)
        if not isinstance(ps, PubSub):
            raise ConfigError(f"pubsub factory returned {type(ps).__name__}, not a PubSub service")
        return ps
    if not isinstance(spec, dict):
        raise ConfigError(f"pubsub must be 'gossipsub', 'floodsub', PubSubOptions, GossipSubParams, "
                          f"a dict or a factory, got {type(spec).__name__}")
    kw = dict(spec)
    router = str(kw.pop("router", "gossipsub")).lower()
    cls: type[PubSub]
    if router == "gossipsub":
        cls = GossipSub
    elif router == "floodsub":
        cls = FloodSub
    else:
        raise ConfigError(f"unknown pubsub router {router!r} (gossipsub or floodsub)")
    known = set(inspect.signature(cls.__init__).parameters) - {"self", "host"}
    unknown = sorted(set(kw) - known)
    if unknown:
        raise ConfigError(f"pubsub {router}: unknown option(s) {unknown}; known: {sorted(known)}")
    return cls(host, **kw)
