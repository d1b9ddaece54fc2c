"""The two public services: :class:`FloodSub` and :class:`GossipSub`."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from geventp2p.protocols.pubsub.service import PubSub, PubSubOptions
from geventp2p.sansio.pubsub import FloodSubRouter
from geventp2p.sansio.pubsub.sign import MsgIdFn, SignaturePolicy, content_msg_id, default_msg_id

__all__ = ["FloodSub", "GossipSub"]


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
    """Gossipsub v1.2 (``/meshsub/1.2.0``, 1.1.0, 1.0.0; floodsub to floodsub-only peers).

    ``GossipSub(host, config)``: ``config`` is a
    :class:`~geventp2p.sansio.pubsub.gossipsub.GossipSubParams` (D, heartbeat, backoff,
    flood publish...; defaults as go); ``score_params`` / ``score_thresholds`` enable peer
    scoring; ``options`` are the shell's (signing, queues, limits).  The heartbeat runs
    every ``config.heartbeat_interval``.
    """

    def __init__(self, host: Any, config: Any = None, *, options: PubSubOptions | None = None,
                 score_params: Any = None, score_thresholds: Any = None,
                 msg_id_fn: MsgIdFn | None = None) -> None:
        from geventp2p.sansio.pubsub.gossipsub import GossipSubParams, GossipSubRouter

        params = config if config is not None else GossipSubParams()
        options = options if options is not None else PubSubOptions()
        options = replace(options, heartbeat_interval=params.heartbeat_interval,
                          heartbeat_initial_delay=params.heartbeat_initial_delay)
        policy, default_id = _policy(options)
        router = GossipSubRouter(host.id, params, score_params, score_thresholds,
                                 signature_policy=policy, msg_id_fn=msg_id_fn or default_id)
        self.config = params
        super().__init__(host, router, router.protocols, options)
