"""The sans-I/O pubsub router: the shared base and the floodsub router.

See the package docstring (:mod:`geventp2p.sansio.pubsub`) for the contract
between a router and its shell.  Floodsub
(https://github.com/libp2p/specs/blob/master/pubsub/README.md): every valid
message goes to every peer subscribed to its topic, except the peer it came from
and its author.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Optional, Union

from geventp2p.core.peer import PeerId
from geventp2p.exceptions import ConfigError, LocalProtocolError
from geventp2p.sansio.pubsub.cache import SeenCache
from geventp2p.sansio.pubsub.rpc import RPC, Message, SubOpts
from geventp2p.sansio.pubsub.sign import MsgIdFn, SignaturePolicy, check_policy, content_msg_id, default_msg_id

__all__ = [
    "FLOODSUB_ID",
    "MESHSUB_V10",
    "MESHSUB_V11",
    "MESHSUB_V12",
    "MESHSUB_V13",
    "GOSSIPSUB_PROTOCOLS",
    "ValidationResult",
    "SendRPC",
    "Validate",
    "Deliver",
    "PeerJoinedTopic",
    "PeerLeftTopic",
    "DropPeer",
    "ConnectPeer",
    "MessageDropped",
    "Event",
    "Router",
    "FloodSubRouter",
]

FLOODSUB_ID = "/floodsub/1.0.0"
MESHSUB_V10 = "/meshsub/1.0.0"
MESHSUB_V11 = "/meshsub/1.1.0"
MESHSUB_V12 = "/meshsub/1.2.0"
MESHSUB_V13 = "/meshsub/1.3.0"
GOSSIPSUB_PROTOCOLS = (MESHSUB_V13, MESHSUB_V12, MESHSUB_V11, MESHSUB_V10, FLOODSUB_ID)
"""What a gossipsub node offers, most preferred first."""


class ValidationResult(Enum):
    """Outcome of validating a message: ACCEPT (deliver + forward), REJECT (drop, the
    sender is penalised), IGNORE (drop, no penalty)."""

    ACCEPT = "accept"
    REJECT = "reject"
    IGNORE = "ignore"


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True, kw_only=True)
class SendRPC:
    """Write ``rpc`` on the outbound stream to ``peer``.

    One RPC object may be shared by several events (a message forwarded to many peers);
    a shell must not mutate it and may cache its encoding by identity.
    """

    peer: PeerId
    rpc: RPC


@dataclass(frozen=True, slots=True, kw_only=True)
class Validate:
    """A new message awaits validation; answer with ``Router.validation_result(msg_id, ...)``.

    The shell verifies the signature (StrictSign; :func:`~geventp2p.sansio.pubsub.sign.verify_message`)
    and runs the topic's validators.
    """

    msg: Message
    msg_id: bytes
    received_from: PeerId


@dataclass(frozen=True, slots=True, kw_only=True)
class Deliver:
    """A valid message of a joined topic, for the local subscribers
    (``received_from`` is None for our own messages)."""

    msg: Message
    msg_id: bytes
    received_from: Optional[PeerId]


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerJoinedTopic:
    """``peer`` subscribed to ``topic`` (any topic, joined by us or not)."""

    topic: str
    peer: PeerId


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerLeftTopic:
    """``peer`` unsubscribed from ``topic`` or went away."""

    topic: str
    peer: PeerId


@dataclass(frozen=True, slots=True, kw_only=True)
class DropPeer:
    """The shell should reset the streams of ``peer`` (malformed RPCs, ...)."""

    peer: PeerId
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectPeer:
    """Gossipsub asks the shell to connect to ``peer``: a peer exchange (PX) candidate from a
    PRUNE, with its signed peer record when one came (the shell must verify it), or a
    direct peer that is not connected."""

    peer: PeerId
    signed_peer_record: Optional[bytes]
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageDropped:
    """A received message was not delivered (for tracers): ``reason`` says why."""

    msg: Message
    msg_id: Optional[bytes]
    received_from: PeerId
    reason: str


Event = Union[SendRPC, Validate, Deliver, PeerJoinedTopic, PeerLeftTopic, DropPeer, ConnectPeer, MessageDropped]


# --------------------------------------------------------------------------- base


class Router:
    """State and message pipeline shared by :class:`FloodSubRouter` and the gossipsub router.

    ``msg_id_fn`` defaults to go's ``from || seqno``, or to the SHA-256 of the data under
    StrictNoSign (where author and seqno are absent).  A peer's subscriptions beyond
    ``max_topics_per_peer`` are ignored.

    Subclasses override the ``_on_*`` hooks and :meth:`_forward` / :meth:`_publish`.
    """

    protocols: tuple[str, ...] = (FLOODSUB_ID,)

    def __init__(
        self,
        local_peer: PeerId,
        *,
        signature_policy: SignaturePolicy = SignaturePolicy.STRICT_SIGN,
        msg_id_fn: MsgIdFn = default_msg_id,
        seen_ttl: float = 120.0,
        max_pending_validations: int = 8192,
        max_topics_per_peer: int = 5000,
    ) -> None:
        if not isinstance(local_peer, PeerId):
            raise ConfigError("local_peer must be a PeerId")
        if seen_ttl <= 0 or max_pending_validations < 1 or max_topics_per_peer < 1:
            raise ConfigError("seen_ttl, max_pending_validations and max_topics_per_peer must be positive")
        if signature_policy is SignaturePolicy.STRICT_NO_SIGN and msg_id_fn is default_msg_id:
            # from + seqno are absent under StrictNoSign: every message would get the same ID
            msg_id_fn = content_msg_id
        self.local_peer = local_peer
        self._local_bytes = local_peer.to_bytes()
        self.signature_policy = signature_policy
        self.msg_id_fn = msg_id_fn
        self.max_pending_validations = max_pending_validations
        self.max_topics_per_peer = max_topics_per_peer
        self._topic_msg_id: dict[str, MsgIdFn] = {}
        self.peers: dict[PeerId, str] = {}
        """Connected pubsub peers and the protocol of our outbound stream to each."""
        self.peer_topics: dict[PeerId, set[str]] = {}
        self.topics: dict[str, set[PeerId]] = {}
        """Remote peers subscribed to each topic."""
        self.joined: set[str] = set()
        self.seen = SeenCache(seen_ttl)
        self._pending: dict[bytes, tuple[Message, PeerId]] = {}
        self._have: dict[bytes, set[PeerId]] = {}
        """Peers that sent a copy of a message while it was being validated."""
        self._events: list[Event] = []

    # ------------------------------------------------------------------ outputs

    def events(self) -> list[Event]:
        """Drain the events produced since the last call, in order."""
        ev = self._events
        self._events = []
        return ev

    def _send(self, peer: PeerId, rpc: RPC) -> None:
        self._events.append(SendRPC(peer=peer, rpc=rpc))

    # ------------------------------------------------------------------ queries

    def msg_id(self, msg: Message) -> bytes:
        fn = self._topic_msg_id.get(msg.topic, self.msg_id_fn)
        return fn(msg)

    def set_msg_id_fn(self, topic: str, fn: Optional[MsgIdFn]) -> None:
        """Use ``fn`` for the IDs of ``topic``'s messages (None: back to the default)."""
        if fn is None:
            self._topic_msg_id.pop(topic, None)
        else:
            self._topic_msg_id[topic] = fn

    def topic_peers(self, topic: str) -> list[PeerId]:
        """Connected peers subscribed to ``topic``."""
        return list(self.topics.get(topic, ()))

    def mesh_peers(self, topic: str) -> list[PeerId]:
        """The peers a message of ``topic`` is forwarded to (floodsub: all topic peers)."""
        return self.topic_peers(topic)

    @property
    def pending_validations(self) -> int:
        return len(self._pending)

    # ------------------------------------------------------------------ inputs: peers

    def add_peer(self, peer: PeerId, protocol: str, now: float, *, outbound: bool = False, ip: Optional[str] = None) -> None:
        """A pubsub stream to ``peer`` is open; ``protocol`` is the one negotiated on our
        outbound stream.  Sends the peer our subscriptions (the hello RPC)."""
        if protocol not in self.protocols:
            raise LocalProtocolError(f"{type(self).__name__} does not speak {protocol}")
        known = peer in self.peers
        self.peers[peer] = protocol
        if not known:
            self.peer_topics[peer] = set()
        self._on_add_peer(peer, protocol, now, outbound, ip, known)
        if not known and self.joined:
            self._send(peer, RPC(subscriptions=[SubOpts(True, t) for t in sorted(self.joined)]))

    def remove_peer(self, peer: PeerId, now: float) -> None:
        """``peer`` is gone (its streams closed or the connection dropped)."""
        if peer not in self.peers:
            return
        del self.peers[peer]
        for topic in sorted(self.peer_topics.pop(peer, ())):
            tp = self.topics.get(topic)
            if tp is not None:
                tp.discard(peer)
                if not tp:
                    del self.topics[topic]
            self._events.append(PeerLeftTopic(topic=topic, peer=peer))
        self._on_remove_peer(peer, now)

    def handle_rpc_error(self, peer: PeerId, reason: str, now: float) -> None:
        """The shell could not decode an RPC of ``peer`` (malformed or too large): the
        peer is penalised (gossipsub) and a :class:`DropPeer` is emitted."""
        self._on_bad_rpc(peer, now)
        self._events.append(DropPeer(peer=peer, reason=reason))

    # ------------------------------------------------------------------ inputs: RPCs

    def handle_rpc(self, peer: PeerId, rpc: RPC, now: float) -> None:
        """Process one RPC received from ``peer``."""
        if peer not in self.peers or not self._accept_rpc(peer, rpc, now):
            return
        for sub in rpc.subscriptions:
            self._handle_subscription(peer, sub, now)
        for msg in rpc.publish:
            self._handle_message(peer, msg, now)
        if rpc.control is not None:
            self._handle_control(peer, rpc, now)

    def _handle_subscription(self, peer: PeerId, sub: SubOpts, now: float) -> None:
        mine = self.peer_topics[peer]
        topic = sub.topic
        if sub.subscribe:
            if topic in mine or len(mine) >= self.max_topics_per_peer:
                return
            mine.add(topic)
            self.topics.setdefault(topic, set()).add(peer)
            self._events.append(PeerJoinedTopic(topic=topic, peer=peer))
            self._on_peer_subscribed(peer, topic, now)
        else:
            if topic not in mine:
                return
            mine.discard(topic)
            tp = self.topics.get(topic)
            if tp is not None:
                tp.discard(peer)
                if not tp:
                    del self.topics[topic]
            self._events.append(PeerLeftTopic(topic=topic, peer=peer))
            self._on_peer_unsubscribed(peer, topic, now)

    def _drop(self, msg: Message, msg_id: Optional[bytes], peer: PeerId, reason: str) -> None:
        self._events.append(MessageDropped(msg=msg, msg_id=msg_id, received_from=peer, reason=reason))

    def _handle_message(self, peer: PeerId, msg: Message, now: float) -> None:
        if msg.topic not in self.joined:
            self._drop(msg, None, peer, "not subscribed")
            return
        reason = check_policy(msg, self.signature_policy)
        if reason is None and msg.from_peer is not None and msg.from_peer == self._local_bytes:
            reason = "self origin"
        if reason is not None:
            self._on_invalid_before_validation(peer, msg, now)
            self._drop(msg, None, peer, reason)
            return
        try:
            msg_id = self.msg_id(msg)
        except Exception:  # a user ID function failed on a hostile message
            self._on_invalid_before_validation(peer, msg, now)
            self._drop(msg, None, peer, "message id function failed")
            return
        if not self.seen.add(msg_id, now):
            if msg_id in self._pending:  # it has the message: no need to forward it there
                self._have.setdefault(msg_id, set()).add(peer)
            self._on_duplicate(peer, msg, msg_id, now)
            self._drop(msg, msg_id, peer, "duplicate")
            return
        if len(self._pending) >= self.max_pending_validations:
            self._drop(msg, msg_id, peer, "validation queue full")
            return
        self._on_first_seen(peer, msg, msg_id, now)
        self._pending[msg_id] = (msg, peer)
        self._events.append(Validate(msg=msg, msg_id=msg_id, received_from=peer))

    def validation_result(self, msg_id: bytes, result: ValidationResult, now: float) -> None:
        """The outcome of a :class:`Validate`; unknown IDs are ignored."""
        entry = self._pending.pop(msg_id, None)
        if entry is None:
            return
        msg, src = entry
        have = self._have.pop(msg_id, None)
        if result is ValidationResult.ACCEPT:
            self._on_accepted(src, msg, msg_id, now)
            if msg.topic in self.joined:
                self._events.append(Deliver(msg=msg, msg_id=msg_id, received_from=src))
            self._forward(msg, msg_id, src, now, have)
        elif result is ValidationResult.REJECT:
            self._on_rejected(src, msg, msg_id, now)
            self._drop(msg, msg_id, src, "rejected")
        else:
            self._on_ignored(src, msg, msg_id, now)
            self._drop(msg, msg_id, src, "ignored")

    def publish(self, msg: Message, now: float) -> bytes:
        """Send our own message (signed already, validated by the shell); returns its ID.

        A message of a joined topic is also given to the local subscribers (:class:`Deliver`
        with ``received_from`` None).  Raises ``LocalProtocolError`` when the message breaks
        the signature policy or was already published.
        """
        reason = check_policy(msg, self.signature_policy)
        if reason is not None:
            raise LocalProtocolError(f"cannot publish: {reason}")
        msg_id = self.msg_id(msg)
        if not self.seen.add(msg_id, now):
            raise LocalProtocolError("cannot publish: duplicate message id")
        self._publish(msg, msg_id, now)
        if msg.topic in self.joined:
            self._events.append(Deliver(msg=msg, msg_id=msg_id, received_from=None))
        return msg_id

    # ------------------------------------------------------------------ inputs: topics, time

    def join(self, topic: str, now: float) -> None:
        """Subscribe to ``topic`` (announced to every peer)."""
        if topic in self.joined:
            return
        self.joined.add(topic)
        self._announce(topic, True)
        self._on_join(topic, now)

    def leave(self, topic: str, now: float) -> None:
        """Unsubscribe from ``topic`` (announced to every peer)."""
        if topic not in self.joined:
            return
        self.joined.discard(topic)
        self._announce(topic, False)
        self._on_leave(topic, now)

    def _announce(self, topic: str, subscribe: bool) -> None:
        for peer in self.peers:
            self._send(peer, RPC(subscriptions=[SubOpts(subscribe, topic)]))

    def heartbeat(self, now: float) -> None:
        """Periodic maintenance (gossipsub: every ``heartbeat_interval``)."""
        self.seen.sweep(now)
        self._on_heartbeat(now)

    # ------------------------------------------------------------------ hooks

    def _on_add_peer(self, peer: PeerId, protocol: str, now: float, outbound: bool, ip: Optional[str], known: bool) -> None:
        pass

    def _on_remove_peer(self, peer: PeerId, now: float) -> None:
        pass

    def _on_bad_rpc(self, peer: PeerId, now: float) -> None:
        pass

    def _accept_rpc(self, peer: PeerId, rpc: RPC, now: float) -> bool:
        return True

    def _on_peer_subscribed(self, peer: PeerId, topic: str, now: float) -> None:
        pass

    def _on_peer_unsubscribed(self, peer: PeerId, topic: str, now: float) -> None:
        pass

    def _handle_control(self, peer: PeerId, rpc: RPC, now: float) -> None:
        pass

    def _on_invalid_before_validation(self, peer: PeerId, msg: Message, now: float) -> None:
        pass

    def _on_duplicate(self, peer: PeerId, msg: Message, msg_id: bytes, now: float) -> None:
        pass

    def _on_first_seen(self, peer: PeerId, msg: Message, msg_id: bytes, now: float) -> None:
        pass

    def _on_accepted(self, peer: PeerId, msg: Message, msg_id: bytes, now: float) -> None:
        pass

    def _on_rejected(self, peer: PeerId, msg: Message, msg_id: bytes, now: float) -> None:
        pass

    def _on_ignored(self, peer: PeerId, msg: Message, msg_id: bytes, now: float) -> None:
        pass

    def _on_join(self, topic: str, now: float) -> None:
        pass

    def _on_leave(self, topic: str, now: float) -> None:
        pass

    def _on_heartbeat(self, now: float) -> None:
        pass

    def _forward(self, msg: Message, msg_id: bytes, src: PeerId, now: float, have: Optional[set[PeerId]] = None) -> None:
        """Send an accepted message on; ``have``: peers known to have it already."""
        raise NotImplementedError

    def _publish(self, msg: Message, msg_id: bytes, now: float) -> None:
        raise NotImplementedError


class FloodSubRouter(Router):
    """``/floodsub/1.0.0``: every message to every peer of its topic."""

    protocols = (FLOODSUB_ID,)

    def _targets(self, msg: Message, exclude: Optional[PeerId]) -> list[PeerId]:
        author = msg.from_peer
        out = []
        for p in self.topics.get(msg.topic, ()):
            if p == exclude or (author is not None and p.to_bytes() == author):
                continue
            out.append(p)
        return out

    def _forward(self, msg: Message, msg_id: bytes, src: PeerId, now: float, have: Optional[set[PeerId]] = None) -> None:
        out = RPC(publish=[msg])  # shared by the events: shells must not mutate it
        for p in self._targets(msg, src):
            if have is None or p not in have:
                self._send(p, out)

    def _publish(self, msg: Message, msg_id: bytes, now: float) -> None:
        out = RPC(publish=[msg])
        for p in self._targets(msg, None):
            self._send(p, out)
