"""The gevent shell of floodsub and gossipsub around the sans-I/O routers.

Spec: https://github.com/libp2p/specs/tree/master/pubsub (gossipsub in
``pubsub/gossipsub``).  The routers in :mod:`geventp2p.sansio.pubsub` hold every
protocol rule; this module only moves bytes, time and validation results in and
RPCs, deliveries and peer facts out:

* **Streams.**  Toward each connected peer that speaks a pubsub protocol we open
  *one* outbound stream, offering ``/meshsub/1.3.0``, ``/meshsub/1.2.0``, ``/meshsub/1.1.0``,
  ``/meshsub/1.0.0`` and ``/floodsub/1.0.0`` (gossipsub; floodsub offers only the
  last).  It is write-only.  The stream the peer opened to us is read-only: never
  written to, never half-closed, kept open for the life of the connection (go
  treats any byte or EOF on its write-only stream as a dead peer).  A second
  inbound stream from the same peer replaces (resets) the first, as in go.
* **RPCs** are ``uvarint(len) || RPC`` frames.  An RPC over ``max_rpc_size``
  (1 MiB), a malformed frame, or one the codec rejects resets that peer's inbound
  stream and counts against the peer in the router; the node goes on.
* **Send queue.**  Each peer has a bounded queue of RPCs (``peer_queue_size``, go:
  32) drained by one writer greenlet that coalesces what is queued into one write
  (30 s write timeout).  A forwarded RPC that does not fit is dropped and counted
  (``dropped_rpcs``), as go does; our own publish waits for room instead
  (back-pressure, bounded by its ``timeout``).
* **Time.**  A heartbeat greenlet calls the router every ``heartbeat_interval``
  (1 s, first after 100 ms); every router input carries ``time.monotonic()``.
* **Validation.**  Messages the router wants validated run the topic's
  validators: ``inline`` ones on the calling greenlet, the others on a bounded
  pool (``validate_concurrency``) with a per-validator timeout (a timeout counts as
  IGNORE).  When the pool is full the message is ignored (``throttled``), like go's
  validation throttle.
* **Connections the router asks for** (``ConnectPeer``): peers offered in a PRUNE's
  peer exchange (a signed peer record, when present, is verified and its addresses
  used; a bad one drops the offer) and configured direct peers (first after
  ``direct_connect_initial_delay``, then every ``direct_connect_ticks`` heartbeats
  while not connected) are dialled by at most ``connectors`` greenlets from a queue of
  ``max_pending_connections`` (go: 8 and 128); a full queue drops the offer.  Direct
  peers are protected in the connection manager.
* **Greenlets.**  All of them live in one ``gevent.pool.Group``; ``close()`` prunes
  our meshes, closes the outbound streams, resets the inbound ones and kills the
  group.  Stream handler greenlets belong to the swarm and end when their stream
  is reset.

Core methods never switch greenlets, so router state needs no lock; events are
drained right after each call.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import gevent
from gevent.event import Event
from gevent.pool import Group, Pool

from geventp2p._speedups import varint
from geventp2p.core.event import EvtPeerIdentificationCompleted, EvtPeerProtocolsUpdated
from geventp2p.core.peer import PeerId
from geventp2p.core.mux import Direction
from geventp2p.core.record import consume_peer_record
from geventp2p.crypto.keys import unmarshal_public_key
from geventp2p.exceptions import (
    ConfigError,
    IncompleteReadError,
    MessageSignatureError,
    MessageTooLargeError,
    P2PError,
    P2PTimeoutError,
    PubSubError,
    RemoteProtocolError,
    SubscriptionClosedError,
)
from geventp2p.net._deadline import Deadline, timeout_scope
from geventp2p.host.peerstore import PERMANENT_ADDR_TTL, TEMP_ADDR_TTL
from geventp2p.net.notify import Notifiee
from geventp2p.protocols.identify import IdentifyService
from geventp2p.protocols.pubsub import trace as _trace
from geventp2p.sansio import pubsub as _core
from geventp2p.sansio.pubsub import rpc as _rpc
from geventp2p.sansio.pubsub.sign import SeqnoCounter, SignaturePolicy, sign_message, verify_message

__all__ = [
    "FLOODSUB_ID",
    "MESHSUB_IDS",
    "GOSSIPSUB_PROTOCOLS",
    "FLOODSUB_PROTOCOLS",
    "ValidationResult",
    "ACCEPT",
    "REJECT",
    "IGNORE",
    "PubSubOptions",
    "Message",
    "PeerEvent",
    "Subscription",
    "Topic",
    "PubSub",
]

log = logging.getLogger(__name__)

FLOODSUB_ID = _core.FLOODSUB_ID
MESHSUB_IDS = (_core.MESHSUB_V13, _core.MESHSUB_V12, _core.MESHSUB_V11, _core.MESHSUB_V10)
#: What a gossipsub node offers, in preference order.
GOSSIPSUB_PROTOCOLS = _core.GOSSIPSUB_PROTOCOLS
#: What a floodsub node offers.
FLOODSUB_PROTOCOLS = (FLOODSUB_ID,)

_READ_SIZE = 64 * 1024
#: Longest ``close()`` waits for queued RPCs (the PRUNEs of leaving) to go out.
_CLOSE_FLUSH = 1.0
_now = time.monotonic
#: An inbound stream's greenlet lets the others run (subscribers taking their
#: messages, other peers' streams) once it has worked this long without waiting:
#: a backlog of buffered RPCs, each verified (~0.1 ms), would otherwise hold every
#: delivery until the whole backlog is done.
INBOUND_YIELD_AFTER = 0.0005
#: The connection manager's protection tag of direct peers.
_DIRECT_TAG = "pubsub:direct"


class ValidationResult(enum.IntEnum):
    """A validator's verdict (go's ``ValidationAccept``/``Reject``/``Ignore``)."""

    ACCEPT = 0  #: deliver and forward
    REJECT = 1  #: drop and penalise the sender
    IGNORE = 2  #: drop without penalty


ACCEPT = ValidationResult.ACCEPT
REJECT = ValidationResult.REJECT
IGNORE = ValidationResult.IGNORE
_CORE_RESULT = {
    ACCEPT: _core.ValidationResult.ACCEPT,
    REJECT: _core.ValidationResult.REJECT,
    IGNORE: _core.ValidationResult.IGNORE,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class PubSubOptions:
    """Shell settings shared by :class:`FloodSub` and :class:`GossipSub` (router settings
    live in the router's own config).

    ``sign``: StrictSign (True, the default) or StrictNoSign (False).  ``max_rpc_size``:
    largest RPC read or written (go: 1 MiB).  ``peer_queue_size``: RPCs queued per peer
    (go: 32).  ``write_timeout``: one queued write (go: 30 s).  ``validate_concurrency``:
    validators running at once.  ``validator_timeout``: default per-validator timeout.
    ``subscription_buffer``: messages a subscription holds before new ones are dropped.
    ``heartbeat_interval`` / ``heartbeat_initial_delay``: seconds.  ``open_timeout``:
    opening and negotiating the outbound stream.  ``trace``: emit tracer events on the
    host's event bus.  ``connectors``: greenlets dialling the peers the router asks for
    (PX, direct peers; go: 8); ``max_pending_connections``: their queue (go: 128);
    ``connect_timeout``: one such dial (go: 30 s); ``direct_connect_initial_delay``: the
    first dial of the direct peers after start (go: 1 s).
    """

    sign: bool = True
    max_rpc_size: int = 1 << 20
    peer_queue_size: int = 32
    write_timeout: float = 30.0
    validate_concurrency: int = 1024
    validator_timeout: float | None = None
    subscription_buffer: int = 256
    heartbeat_interval: float = 1.0
    heartbeat_initial_delay: float = 0.1
    open_timeout: float = 10.0
    trace: bool = True
    connectors: int = 8
    max_pending_connections: int = 128
    connect_timeout: float = 30.0
    direct_connect_initial_delay: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.sign, bool):
            raise ConfigError("sign must be a bool")
        for name in ("max_rpc_size", "peer_queue_size", "validate_concurrency", "subscription_buffer",
                     "connectors", "max_pending_connections"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")
        for name in ("write_timeout", "heartbeat_interval", "open_timeout", "connect_timeout"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0")
        if self.heartbeat_initial_delay < 0 or self.direct_connect_initial_delay < 0:
            raise ConfigError("heartbeat_initial_delay and direct_connect_initial_delay must be >= 0")
        if self.validator_timeout is not None and not self.validator_timeout > 0:
            raise ConfigError("validator_timeout must be > 0 or None")


@dataclass(frozen=True, slots=True)
class Message:
    """A pubsub message as delivered to subscribers.

    ``from_peer`` is the author (None under StrictNoSign), ``seqno`` its 8 bytes
    (b"" when absent), ``id`` the message id, ``received_from`` the peer that
    forwarded it to us (our own id for our own messages).
    """

    data: bytes
    topic: str
    from_peer: PeerId | None
    seqno: bytes
    id: bytes
    received_from: PeerId
    signature: bytes = b""
    key: bytes = b""

    @property
    def seqno_int(self) -> int:
        return int.from_bytes(self.seqno, "big") if self.seqno else 0


@dataclass(frozen=True, slots=True)
class PeerEvent:
    """``peer`` joined (subscribed to) or left ``topic``: ``event`` is "joined" or "left"."""

    topic: str
    peer: PeerId
    event: str


class _Queue:
    """A bounded FIFO for one consumer: ``put`` never blocks (False when full)."""

    __slots__ = ("_items", "_cap", "_ev", "_closed")

    def __init__(self, cap: int) -> None:
        self._items: deque[Any] = deque()
        self._cap = cap
        self._ev = Event()
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Any) -> bool:
        if self._closed or len(self._items) >= self._cap:
            return False
        self._items.append(item)
        self._ev.set()
        return True

    def get(self, timeout: float | None, what: str) -> Any:
        dl = Deadline(timeout)
        while True:
            if self._items:
                item = self._items.popleft()
                if not self._items and not self._closed:
                    self._ev.clear()
                return item
            if self._closed:
                raise SubscriptionClosedError(f"{what} is cancelled")
            if not self._ev.wait(dl.left()):
                raise P2PTimeoutError(f"no {what} item within {timeout} s")

    def close(self) -> None:
        self._closed = True
        self._ev.set()


class Subscription:
    """Messages of one topic.  ``get(timeout=)`` or iterate; ``cancel()`` ends it.

    Holds up to ``buffer`` messages; a message that does not fit is dropped and
    counted in ``dropped`` (a slow consumer must not stall the router).
    """

    def __init__(self, topic: "Topic", buffer: int) -> None:
        self.topic = topic
        self._q = _Queue(buffer)
        self.dropped = 0
        self._cancelled = False

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def get(self, timeout: float | None = None) -> Message:
        """Blocks the calling greenlet until a message arrives; returns it.

        Raises :class:`P2PTimeoutError` after ``timeout`` seconds and
        :class:`SubscriptionClosedError` once cancelled (buffered messages are
        still returned first).
        """
        msg: Message = self._q.get(timeout, f"subscription to {self.topic.name!r}")
        return msg

    def __iter__(self) -> Iterator[Message]:
        return self

    def __next__(self) -> Message:
        try:
            return self.get()
        except SubscriptionClosedError:
            raise StopIteration from None

    def qsize(self) -> int:
        return len(self._q)

    def _push(self, msg: Message) -> bool:
        if self._q.put(msg):
            return True
        if not self._cancelled:
            self.dropped += 1
        return False

    def cancel(self) -> None:
        """Stop receiving (idempotent); the topic leaves the mesh when nothing else needs it."""
        if self._cancelled:
            return
        self._cancelled = True
        self._q.close()
        self.topic._drop_subscription(self)

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()

    def __repr__(self) -> str:
        return f"<Subscription {self.topic.name!r}{' cancelled' if self._cancelled else ''}>"


class PeerEvents:
    """Peers joining and leaving one topic (:class:`PeerEvent`); ``get``/iterate/``cancel``."""

    def __init__(self, topic: "Topic", buffer: int) -> None:
        self.topic = topic
        self._q = _Queue(buffer)
        self.dropped = 0

    def get(self, timeout: float | None = None) -> PeerEvent:
        """Blocks the calling greenlet until the next peer event."""
        evt: PeerEvent = self._q.get(timeout, f"peer events of {self.topic.name!r}")
        return evt

    def __iter__(self) -> Iterator[PeerEvent]:
        return self

    def __next__(self) -> PeerEvent:
        try:
            return self.get()
        except SubscriptionClosedError:
            raise StopIteration from None

    def _push(self, evt: PeerEvent) -> None:
        if not self._q.put(evt):
            self.dropped += 1

    def cancel(self) -> None:
        self._q.close()
        try:
            self.topic._peer_handlers.remove(self)
        except ValueError:
            pass


class Topic:
    """A handle on one topic (go's ``Topic``): publish, subscribe, relay, peers."""

    def __init__(self, ps: "PubSub", name: str) -> None:
        self.ps = ps
        self.name = name
        self._subs: list[Subscription] = []
        self._relays = 0
        self._peer_handlers: list[PeerEvents] = []
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def _check(self) -> None:
        if self._closed:
            raise ConfigError(f"topic {self.name!r} is closed")
        self.ps._check_open()

    def publish(self, data: bytes, timeout: float | None = None) -> bytes:
        """Blocks the calling greenlet until the message is queued to its peers; returns its id.

        Waits (up to ``timeout``) for room in the send queues of the peers it goes
        to: the publisher drops nothing.  Raises :class:`P2PTimeoutError` when the
        queues stay full.
        """
        self._check()
        return self.ps._publish(self.name, bytes(data), timeout)

    def subscribe(self, buffer: int | None = None) -> Subscription:
        """Start receiving this topic's messages (joins the mesh on the first subscription)."""
        self._check()
        sub = Subscription(self, buffer or self.ps.options.subscription_buffer)
        first = not self._subs and not self._relays
        self._subs.append(sub)
        if first:
            self.ps._join(self.name)
        return sub

    def relay(self) -> Callable[[], None]:
        """Take part in the mesh without receiving messages; returns the function undoing it."""
        self._check()
        first = not self._subs and not self._relays
        self._relays += 1
        if first:
            self.ps._join(self.name)
        done: list[bool] = []

        def cancel() -> None:
            if done:
                return
            done.append(True)
            self._relays -= 1
            self._maybe_leave()

        return cancel

    def peer_events(self, buffer: int = 64) -> PeerEvents:
        """A stream of :class:`PeerEvent` for this topic; starts with the peers already in it."""
        self._check()
        h = PeerEvents(self, buffer)
        for peer in self.list_peers():
            h._push(PeerEvent(self.name, peer, "joined"))
        self._peer_handlers.append(h)
        return h

    def list_peers(self) -> list[PeerId]:
        """Peers we know to be subscribed to this topic."""
        return self.ps.list_peers(self.name)

    def _drop_subscription(self, sub: Subscription) -> None:
        try:
            self._subs.remove(sub)
        except ValueError:
            return
        self._maybe_leave()

    def _maybe_leave(self) -> None:
        if not self._subs and not self._relays and not self.ps.closed:
            self.ps._leave(self.name)

    def close(self) -> None:
        """Cancel this handle's subscriptions, relays and peer event streams (idempotent)."""
        if self._closed:
            return
        self._closed = True
        subs, self._subs = self._subs, []
        for s in subs:
            s._cancelled = True
            s._q.close()
        for h in list(self._peer_handlers):
            h.cancel()
        was_joined = bool(subs) or self._relays > 0
        self._relays = 0
        if was_joined and not self.ps.closed:
            self.ps._leave(self.name)
        self.ps._topics.pop(self.name, None)

    def __repr__(self) -> str:
        return f"<Topic {self.name!r} subs={len(self._subs)}>"


def _has_subscribers(em: Any, bus: Any) -> bool:
    """Whether an event of ``em``'s type would reach anyone (the bus has no public query for
    this; an unknown bus shape counts as yes)."""
    node = getattr(em, "_node", None)
    if node is None:
        return True
    return bool(getattr(node, "subs", True) or getattr(bus, "_wildcard_subs", True))


def _ip_of(addr: Any) -> str | None:
    """The IP of a multiaddr (``/ip4/1.2.3.4/...``), or None."""
    if addr is None:
        return None
    parts = str(addr).split("/")
    return parts[2] if len(parts) > 2 and parts[1] in ("ip4", "ip6") else None


class _Validator:
    __slots__ = ("fn", "timeout", "inline")

    def __init__(self, fn: Callable[..., Any], timeout: float | None, inline: bool) -> None:
        self.fn = fn
        self.timeout = timeout
        self.inline = inline


#: How often opening the outbound stream to a peer is tried again after it timed out.
OPEN_RETRIES = 3


class _Peer:
    """One pubsub peer: the outbound stream, its queue and writer; the inbound stream."""

    __slots__ = ("id", "outbound", "protocol", "queue", "wake", "writer", "inbound", "opening", "added", "ready",
                 "writing", "retry", "open_timeouts")

    def __init__(self, peer_id: PeerId) -> None:
        self.id = peer_id
        self.outbound: Any = None
        self.protocol: str | None = None
        self.queue: deque[bytes] = deque()
        self.wake = Event()
        self.writer: gevent.Greenlet | None = None
        self.inbound: Any = None
        self.opening: gevent.Greenlet | None = None
        self.added = False
        self.ready = Event()  # set once the outbound stream is up (or failed to open)
        self.writing = False
        self.retry = False
        self.open_timeouts = 0  # outbound stream opens that timed out (retried up to OPEN_RETRIES)


class _Notifiee(Notifiee):
    def __init__(self, ps: "PubSub") -> None:
        self.ps = ps

    def connected(self, net: Any, conn: Any) -> None:
        self.ps._on_connected(conn.remote_peer)

    def disconnected(self, net: Any, conn: Any) -> None:
        self.ps._on_disconnected(conn.remote_peer)


class PubSub:
    """Base of :class:`FloodSub` and :class:`GossipSub`; a host service.

    ``PubSub(host, router, protocols, options)`` registers itself with
    ``host.add_service`` (closed with the host) and starts at once.
    """

    #: Direct peers (gossipsub) and the addresses given for them; set before ``start``.
    direct_peers: dict[PeerId, list[Any]]

    def __init__(self, host: Any, router: Any, protocols: Iterable[str],
                 options: PubSubOptions | None = None) -> None:
        self.options = options if options is not None else PubSubOptions()
        self.router = router
        self.protocols = tuple(protocols)
        self.host: Any = None
        self._group = Group()
        self._pool = Pool(self.options.validate_concurrency)
        self._peers: dict[PeerId, _Peer] = {}
        self._topics: dict[str, Topic] = {}
        self._joined: set[str] = set()
        self._validators: dict[str, list[_Validator]] = {}
        self._blacklist: set[PeerId] = set()
        self._topic_peers: dict[str, set[PeerId]] = {}
        self._room = Event()  # set whenever a writer drained a queue (publish back-pressure)
        self._seqno = SeqnoCounter()
        self._last_rpc: Any = None
        self._last_frame = b""
        self._local_bytes = b""
        self._closed = False
        self._notifiee = _Notifiee(self)
        self._bus_sub: Any = None
        self._trace_q: deque[Any] = deque()
        self._trace_wake = Event()
        self._emitters: dict[type, Any] = {}
        #: RPCs dropped because a peer's send queue was full.
        self.dropped_rpcs = 0
        #: Messages ignored because the validation pool was full.
        self.throttled = 0
        #: Trace events dropped because the dispatcher fell behind.
        self.dropped_traces = 0
        #: Inbound streams reset for a malformed or oversized RPC.
        self.bad_rpcs = 0
        #: Received messages not delivered, by the router's reason ("duplicate", "rejected", ...).
        self.drop_counts: dict[str, int] = {}
        #: Dials the router asked for, by ``"<reason>:<outcome>"`` (reason "px" or "direct";
        #: outcome "connected", "failed", "no_addrs", "bad_record"), and "dropped" (queue full).
        self.connect_counts: dict[str, int] = {}
        self._connect_q: deque[tuple[PeerId, bytes | None, str]] = deque()
        self._connect_pending: set[PeerId] = set()
        self._connectors = 0
        if not hasattr(self, "direct_peers"):
            self.direct_peers = {}
        host.add_service(self)

    # ================================================================ lifecycle

    def start(self, host: Any) -> None:
        """Called by ``host.add_service``: register handlers, watch connections, start timers."""
        self.host = host
        self._local_bytes = host.id.to_bytes()
        for proto in self.protocols:
            host.set_stream_handler(proto, self._handle_inbound)
        host.network.notify(self._notifiee)
        self._bus_sub = host.event_bus.subscribe([EvtPeerIdentificationCompleted, EvtPeerProtocolsUpdated],
                                                 buffer=256, name="pubsub")
        self._group.spawn(self._watch_bus)
        self._group.spawn(self._heartbeat_loop)
        if self.options.trace:
            for t in _trace.TRACE_EVENT_TYPES:
                self._emitters[t] = host.event_bus.emitter(t)
            self._group.spawn(self._trace_loop)
        for pid in host.network.peers():  # already connected before we started
            self._on_connected(pid)
        if self.direct_peers:
            cm = getattr(host, "connmgr", None)
            for pid, addrs in self.direct_peers.items():
                if addrs:
                    host.peerstore.add_addrs(pid, addrs, PERMANENT_ADDR_TTL)
                if cm is not None:
                    cm.protect(pid, _DIRECT_TAG)
            self._group.spawn(self._direct_connect_first)

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise ConfigError("pubsub is closed")

    def close(self) -> None:
        """Leave every topic (PRUNE to mesh peers), close streams, stop greenlets (idempotent)."""
        if self._closed:
            return
        for name in list(self._joined):
            self._leave(name)
        self._closed = True
        # give the writers a moment to flush the PRUNEs, bounded
        dl = Deadline(_CLOSE_FLUSH)
        for p in list(self._peers.values()):
            while (p.queue or p.writing) and p.writer is not None and not p.writer.dead and not dl.expired():
                p.wake.set()
                self._room.clear()
                self._room.wait(dl.left())
        for topic in list(self._topics.values()):
            topic.close()
        host = self.host
        if host is not None:
            cm = getattr(host, "connmgr", None)
            if cm is not None:
                for pid in self.direct_peers:
                    cm.unprotect(pid, _DIRECT_TAG)
            for proto in self.protocols:
                if proto in host.get_protocols():
                    host.remove_stream_handler(proto)
            host.network.stop_notify(self._notifiee)
        if self._bus_sub is not None:
            self._bus_sub.close()
        self._group.kill()
        self._pool.kill()
        for p in list(self._peers.values()):
            self._close_peer_streams(p)
        self._peers.clear()
        for em in self._emitters.values():
            em.close()
        self._emitters.clear()

    def __enter__(self) -> "PubSub":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _close_peer_streams(p: _Peer) -> None:
        if p.outbound is not None:
            try:
                p.outbound.close()
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
            p.outbound = None
        if p.inbound is not None:
            p.inbound.reset()
            p.inbound = None

    # ================================================================ public API

    @property
    def peer_id(self) -> PeerId:
        return self.host.id

    def join(self, name: str) -> Topic:
        """The handle of topic ``name`` (one per topic; joining again returns the same)."""
        self._check_open()
        if not isinstance(name, str) or not name:
            raise ConfigError("topic name must be a non-empty string")
        t = self._topics.get(name)
        if t is None or t.closed:
            t = self._topics[name] = Topic(self, name)
        return t

    def get_topics(self) -> list[str]:
        """Topics we are subscribed to (or relay)."""
        return sorted(self._joined)

    def list_peers(self, topic: str | None = None) -> list[PeerId]:
        """Pubsub peers (with an open outbound stream), or those subscribed to ``topic``."""
        if topic is None:
            return [p.id for p in self._peers.values() if p.added]
        return sorted(self._topic_peers.get(topic, ()), key=bytes)

    def register_validator(self, topic: str, fn: Callable[..., Any], *, timeout: float | None = None,
                           inline: bool = False) -> None:
        """Validate ``topic``'s messages with ``fn(msg) -> ACCEPT | REJECT | IGNORE`` (or a bool).

        ``inline`` validators run on the greenlet that received the message and must
        not block; others run on the validation pool, bounded by ``timeout`` (default
        ``options.validator_timeout``; a timeout means IGNORE).  An exception means REJECT.
        """
        if not callable(fn):
            raise TypeError("validator must be callable")
        to = timeout if timeout is not None else self.options.validator_timeout
        self._validators.setdefault(topic, []).append(_Validator(fn, to, inline))

    def unregister_validator(self, topic: str) -> None:
        self._validators.pop(topic, None)

    def set_msg_id_fn(self, topic: str, fn: Callable[[Any], bytes] | None) -> None:
        """Compute ``topic``'s message ids with ``fn(rpc_message) -> bytes`` (None: the default)."""
        self.router.set_msg_id_fn(topic, fn)

    def blacklist_peer(self, peer: PeerId) -> None:
        """Ignore ``peer`` from now on: its stream is closed and its messages dropped."""
        self._blacklist.add(peer)
        p = self._peers.get(peer)
        if p is not None:
            self._drop_peer(p, "blacklisted")

    # ================================================================ router calls

    def _join(self, topic: str) -> None:
        self._joined.add(topic)
        self.router.join(topic, _now())
        self._process()

    def _leave(self, topic: str) -> None:
        if topic not in self._joined:
            return
        self._joined.discard(topic)
        self.router.leave(topic, _now())
        self._process()

    def _publish(self, topic: str, data: bytes, timeout: float | None) -> bytes:
        dl = Deadline(timeout)
        if self.options.sign:
            msg = _rpc.Message(data=data, topic=topic, from_peer=self._local_bytes, seqno=self._seqno.next())
            sign_message(msg, self.host.private_key)
        else:
            msg = _rpc.Message(data=data, topic=topic)
        vals = self._validators.get(topic)
        if vals:  # our own messages pass the same validators (go)
            local = self._message(msg, b"", None)
            for v in vals:
                res = self._run_validator(v, local)
                if res is not ACCEPT:
                    raise PubSubError(f"publish on {topic!r}: own message {res.name.lower()}ed by a validator")
        cap = self.options.peer_queue_size
        while True:
            full = [p for p in self._peers.values() if p.added and len(p.queue) >= cap]
            if not full:
                break
            self._room.clear()
            left = dl.left()
            if left is not None and left <= 0:
                raise P2PTimeoutError(f"publish on {topic!r}: send queues of {len(full)} peer(s) stayed full")
            self._room.wait(left)
            self._check_open()
        try:
            msg_id: bytes = self.router.publish(msg, _now())
        finally:
            self._process(own=True)
        return msg_id

    def _validation_done(self, msg_id: bytes, result: ValidationResult) -> None:
        if self._closed:
            return
        self.router.validation_result(msg_id, _CORE_RESULT[result], _now())
        self._process()

    # ================================================================ router events

    def _process(self, own: bool = False) -> None:
        """Drain the router's events; never switches greenlets."""
        for ev in self.router.events():
            handler = self._handlers.get(type(ev))
            if handler is not None:
                handler(self, ev, own)
            else:  # pragma: no cover - a new core event this shell does not know
                log.debug("pubsub: unhandled router event %r", ev)

    def _ev_send(self, ev: Any, own: bool) -> None:
        p = self._peers.get(ev.peer)
        if p is None or p.outbound is None:
            return
        rpc = ev.rpc
        if rpc is self._last_rpc:  # the router shares one RPC object among the peers it forwards to
            frame = self._last_frame
        else:
            data = _rpc.encode_rpc(rpc)
            if len(data) > self.options.max_rpc_size:
                log.debug("pubsub: RPC of %d bytes to %s over the limit; dropped", len(data), p.id)
                self.dropped_rpcs += 1
                return
            frame = varint.encode_uvarint(len(data)) + data
            self._last_rpc, self._last_frame = rpc, frame
        if len(p.queue) >= self.options.peer_queue_size and not own:
            self.dropped_rpcs += 1
            self._trace(_trace.EvtPubSubRPCDropped, peer=p.id)
            return
        p.queue.append(frame)
        p.wake.set()

    def _ev_validate(self, ev: Any, own: bool) -> None:
        if self.options.sign:
            try:
                verify_message(ev.msg)
            except MessageSignatureError as exc:
                log.debug("pubsub: message %s from %s: %s", ev.msg_id.hex(), ev.received_from, exc)
                self._validation_done(ev.msg_id, REJECT)
                return
        msg = self._message(ev.msg, ev.msg_id, ev.received_from)
        vals = self._validators.get(msg.topic)
        if not vals:
            self._validation_done(msg.id, ACCEPT)
            return
        inline = [v for v in vals if v.inline]
        pooled = [v for v in vals if not v.inline]
        for v in inline:
            res = self._run_validator(v, msg)
            if res is not ACCEPT:
                self._rejected(msg, res)
                return
        if not pooled:
            self._validation_done(msg.id, ACCEPT)
            return
        if self._pool.full():
            self.throttled += 1
            self._rejected(msg, IGNORE, "throttled")
            return
        self._pool.spawn(self._validate_pooled, pooled, msg)

    def _validate_pooled(self, vals: list[_Validator], msg: Message) -> None:
        result = ACCEPT
        for v in vals:
            result = self._run_validator(v, msg)
            if result is not ACCEPT:
                break
        if result is ACCEPT:
            self._validation_done(msg.id, ACCEPT)
        else:
            self._rejected(msg, result)

    @staticmethod
    def _run_validator(v: _Validator, msg: Message) -> ValidationResult:
        try:
            if v.timeout is not None and not v.inline:
                with timeout_scope(v.timeout, "pubsub validator"):
                    res = v.fn(msg)
            else:
                res = v.fn(msg)
        except P2PTimeoutError:
            return IGNORE
        except Exception:  # noqa: BLE001 - a broken validator rejects, it does not kill us
            log.exception("pubsub validator for %r raised", msg.topic)
            return REJECT
        if res is True or res is None:
            return ACCEPT
        if res is False:
            return REJECT
        try:
            return ValidationResult(int(res))
        except ValueError:
            log.warning("pubsub validator for %r returned %r; treated as REJECT", msg.topic, res)
            return REJECT

    def _rejected(self, msg: Message, result: ValidationResult, reason: str | None = None) -> None:
        self._trace(_trace.EvtPubSubMessageRejected, topic=msg.topic, msg_id=msg.id,
                    received_from=msg.received_from, reason=reason or result.name.lower())
        self._validation_done(msg.id, result)

    def _ev_deliver(self, ev: Any, own: bool) -> None:
        msg = self._message(ev.msg, ev.msg_id, ev.received_from)
        t = self._topics.get(msg.topic)
        if t is not None:
            for sub in list(t._subs):
                if not sub._push(msg):
                    self._trace(_trace.EvtPubSubMessageDropped, topic=msg.topic, msg_id=msg.id)
        self._trace(_trace.EvtPubSubMessageDelivered, topic=msg.topic, msg_id=msg.id,
                    received_from=msg.received_from)

    def _ev_peer_joined(self, ev: Any, own: bool) -> None:
        peers = self._topic_peers.setdefault(ev.topic, set())
        if ev.peer in peers:
            return
        peers.add(ev.peer)
        t = self._topics.get(ev.topic)
        if t is not None:
            for h in list(t._peer_handlers):
                h._push(PeerEvent(ev.topic, ev.peer, "joined"))
        self._trace(_trace.EvtPubSubPeerJoined, peer=ev.peer, topic=ev.topic)

    def _ev_peer_left(self, ev: Any, own: bool) -> None:
        peers = self._topic_peers.get(ev.topic)
        if not peers or ev.peer not in peers:
            return
        peers.discard(ev.peer)
        if not peers:
            del self._topic_peers[ev.topic]
        t = self._topics.get(ev.topic)
        if t is not None:
            for h in list(t._peer_handlers):
                h._push(PeerEvent(ev.topic, ev.peer, "left"))
        self._trace(_trace.EvtPubSubPeerLeft, peer=ev.peer, topic=ev.topic)

    def _ev_drop_peer(self, ev: Any, own: bool) -> None:
        p = self._peers.get(ev.peer)
        if p is not None:
            self._drop_peer(p, ev.reason or "router")

    def _ev_message_dropped(self, ev: Any, own: bool) -> None:
        self.drop_counts[ev.reason] = self.drop_counts.get(ev.reason, 0) + 1
        if ev.reason in ("rejected", "ignored"):
            return  # traced when the validator decided
        self._trace(_trace.EvtPubSubMessageRejected, topic=ev.msg.topic, msg_id=ev.msg_id or b"",
                    received_from=ev.received_from, reason=ev.reason)

    def _ev_connect(self, ev: Any, own: bool) -> None:
        self._queue_connect(ev.peer, ev.signed_peer_record, ev.reason)

    # ================================================================ connector

    def _count(self, key: str) -> None:
        self.connect_counts[key] = self.connect_counts.get(key, 0) + 1

    def _queue_connect(self, pid: PeerId, record: bytes | None, reason: str) -> None:
        """Queue a dial of ``pid`` for the connector greenlets; never switches greenlets."""
        if self._closed or pid == self.host.id or pid in self._blacklist or pid in self._connect_pending:
            return
        if self.host.network.conns_to_peer(pid):
            return
        if len(self._connect_q) >= self.options.max_pending_connections:
            self._count("dropped")
            log.debug("pubsub: too many pending connections; not dialling %s (%s)", pid, reason)
            return
        self._connect_pending.add(pid)
        self._connect_q.append((pid, record, reason))
        if self._connectors < self.options.connectors:
            self._connectors += 1
            self._group.spawn(self._connector)

    def _connector(self) -> None:
        try:
            while self._connect_q and not self._closed:
                pid, record, reason = self._connect_q.popleft()
                try:
                    self._connect(pid, record, reason)
                finally:
                    self._connect_pending.discard(pid)
        finally:
            self._connectors -= 1

    def _connect(self, pid: PeerId, record: bytes | None, reason: str) -> None:
        """Blocks this connector greenlet while dialling ``pid`` (bounded by ``connect_timeout``)."""
        host = self.host
        if host.network.conns_to_peer(pid):
            return
        if record:
            try:
                _env, rec = consume_peer_record(record, pid, decode_key=unmarshal_public_key)
            except P2PError as exc:
                self._count(f"{reason}:bad_record")
                log.debug("pubsub: bogus signed peer record for %s (%s): %s", pid, reason, exc)
                return
            if rec.addrs:
                host.peerstore.add_addrs(pid, rec.addrs, TEMP_ADDR_TTL)
        if not host.peerstore.addrs(pid):
            self._count(f"{reason}:no_addrs")
            return
        try:
            host.connect(pid, timeout=self.options.connect_timeout)
        except (P2PError, OSError) as exc:
            self._count(f"{reason}:failed")
            log.debug("pubsub: dialling %s (%s) failed: %s", pid, reason, exc)
            return
        self._count(f"{reason}:connected")

    def _direct_connect_first(self) -> None:
        gevent.sleep(self.options.direct_connect_initial_delay)
        for pid in sorted(self.direct_peers, key=bytes):
            self._queue_connect(pid, None, "direct")

    _handlers: dict[type, Callable[["PubSub", Any, bool], None]] = {
        _core.SendRPC: _ev_send,
        _core.Validate: _ev_validate,
        _core.Deliver: _ev_deliver,
        _core.PeerJoinedTopic: _ev_peer_joined,
        _core.PeerLeftTopic: _ev_peer_left,
        _core.DropPeer: _ev_drop_peer,
        _core.MessageDropped: _ev_message_dropped,
        _core.ConnectPeer: _ev_connect,
    }

    def _message(self, m: _rpc.Message, msg_id: bytes, received_from: PeerId | None) -> Message:
        frm = PeerId.from_bytes(m.from_peer) if m.from_peer else None
        return Message(m.data, m.topic, frm, m.seqno or b"", msg_id,
                       received_from if received_from is not None else self.host.id,
                       m.signature or b"", m.key or b"")

    # ================================================================ peers

    def _on_connected(self, pid: PeerId) -> None:
        if self._closed or pid in self._blacklist or pid == self.host.id:
            return
        p = self._peers.get(pid)
        if p is None:
            p = self._peers[pid] = _Peer(pid)
        if p.outbound is None and (p.opening is None or p.opening.dead):
            p.opening = self._group.spawn(self._open_outbound, p)

    def _on_disconnected(self, pid: PeerId) -> None:
        if self._closed or self.host.network.conns_to_peer(pid):
            return
        p = self._peers.get(pid)
        if p is not None:
            self._drop_peer(p, "disconnected", close_streams=False)

    def _watch_bus(self) -> None:
        sub = self._bus_sub
        for evt in sub:
            if self._closed:
                return
            if isinstance(evt, EvtPeerProtocolsUpdated) and not any(a in self.protocols for a in evt.added):
                continue
            p = self._peers.get(evt.peer)
            if p is None or p.outbound is not None or not self.host.network.conns_to_peer(evt.peer):
                continue
            if p.opening is not None and not p.opening.dead:
                p.retry = True  # news while an attempt runs: try again if that one fails
            else:
                self._on_connected(evt.peer)

    def _open_outbound(self, p: _Peer) -> None:
        """Open the outbound stream; once more if protocol news came in during a failed try."""
        while True:
            p.retry = False
            if self._try_open(p) or not p.retry or self._closed or self._peers.get(p.id) is not p:
                return

    def _try_open(self, p: _Peer) -> bool:
        host = self.host
        identified = False
        ids = host.service(IdentifyService)  # go opens the stream only after identify, too
        if ids is not None:
            for conn in host.network.conns_to_peer(p.id)[:1]:
                identified = ids.identify_wait(conn, timeout=self.options.open_timeout)
        try:
            known = host.peerstore.supports_protocols(p.id, *self.protocols)
            listed = bool(host.peerstore.get_protocols(p.id))
        except Exception:  # noqa: BLE001 - an unknown peer
            known, listed = [], False
        if identified and listed and not known and p.inbound is None:
            # identify says the peer speaks no pubsub protocol (and it opened us no pubsub
            # stream, which would prove otherwise): wait for a protocol update
            log.debug("pubsub: %s speaks no pubsub protocol", p.id)
            p.ready.set()
            return False
        protos = [x for x in self.protocols if x in known] or list(self.protocols)
        stream = None
        try:
            stream = host.new_stream(p.id, protos, timeout=self.options.open_timeout)
            stream.read(0, timeout=self.options.open_timeout)  # settles a lazy proposal's echo
        except (P2PError, OSError) as exc:
            if stream is not None:
                # the peer may still take this one after a retry opened another: a pubsub
                # peer reads only its newest inbound stream from us (js replaces the
                # older), so a stream left open here could be the one it keeps
                stream.reset()
            self._open_failed(p, exc)
            return False
        if self._closed or self._peers.get(p.id) is not p:
            stream.reset()
            p.ready.set()
            return False
        self._add_outbound(p, stream)
        return True

    def _open_failed(self, p: _Peer, exc: BaseException) -> None:
        host = self.host
        if isinstance(exc, P2PTimeoutError):
            # a busy peer or link, not a refusal: try again (bounded) while connected
            p.open_timeouts += 1
            if p.open_timeouts <= OPEN_RETRIES and not self._closed and host.network.conns_to_peer(p.id):
                log.debug("pubsub: opening a stream to %s timed out (%s); try %d of %d", p.id, exc,
                          p.open_timeouts + 1, OPEN_RETRIES + 1)
                p.retry = True
                return
        else:
            log.debug("pubsub: %s speaks no pubsub protocol we offer (%s)", p.id, exc)
        p.ready.set()

    def _add_outbound(self, p: _Peer, stream: Any) -> None:
        conn = stream.conn
        p.outbound = stream
        p.protocol = stream.protocol
        p.added = True
        p.writer = self._group.spawn(self._write_loop, p)
        self.router.add_peer(p.id, stream.protocol, _now(),
                             outbound=getattr(conn, "direction", None) == Direction.Outbound,
                             ip=_ip_of(getattr(conn, "remote_addr", None)))
        p.ready.set()
        self._process()
        self._trace(_trace.EvtPubSubPeerAdded, peer=p.id, protocol=stream.protocol or "")

    def _drop_peer(self, p: _Peer, reason: str, close_streams: bool = True) -> None:
        if self._peers.get(p.id) is not p:
            return
        del self._peers[p.id]
        was_added = p.added
        p.added = False
        if p.opening is not None and not p.opening.dead and p.opening is not gevent.getcurrent():
            p.opening.kill(block=False)
        if p.writer is not None and p.writer is not gevent.getcurrent():
            p.writer.kill(block=False)
        p.queue.clear()
        if close_streams:
            if p.outbound is not None:
                p.outbound.reset()
                p.outbound = None
            if p.inbound is not None:
                p.inbound.reset()
                p.inbound = None
        if was_added and not self._closed:
            self.router.remove_peer(p.id, _now())
            self._process()
        self._trace(_trace.EvtPubSubPeerRemoved, peer=p.id, reason=reason)
        self._room.set()

    def _write_loop(self, p: _Peer) -> None:
        stream = p.outbound
        timeout = self.options.write_timeout
        try:
            while True:
                if not p.queue:
                    p.wake.clear()
                    self._room.set()
                    p.wake.wait()
                    continue
                if len(p.queue) == 1:
                    data = p.queue.popleft()
                else:
                    parts = []
                    size = 0
                    while p.queue and size < _READ_SIZE * 4:
                        b = p.queue.popleft()
                        parts.append(b)
                        size += len(b)
                    data = b"".join(parts)
                self._room.set()
                p.writing = True
                try:
                    stream.write(data, timeout=timeout)
                finally:
                    p.writing = False
        except (P2PError, OSError) as exc:
            log.debug("pubsub: writing to %s failed: %s", p.id, exc)
            if not self._closed:
                self._drop_peer(p, f"write failed: {exc}")

    # ================================================================ inbound

    def _handle_inbound(self, stream: Any) -> None:
        """Read RPCs from the stream ``stream``'s peer opened to us (its own greenlet)."""
        pid = stream.conn.remote_peer
        if self._closed or pid in self._blacklist:
            stream.reset()
            return
        p = self._peers.get(pid)
        if p is None:
            p = self._peers[pid] = _Peer(pid)
            self._on_connected(pid)
        if p.inbound is not None and p.inbound is not stream:
            p.inbound.reset()  # go: a new inbound stream replaces the old one
        p.inbound = stream
        buf = bytearray()
        max_size = self.options.max_rpc_size
        open_timeout = self.options.open_timeout
        yield_at = _now() + INBOUND_YIELD_AFTER
        try:
            while True:
                if _now() >= yield_at:
                    gevent.sleep(0)
                    yield_at = _now() + INBOUND_YIELD_AFTER
                data = self._read_frame(stream, buf, max_size)
                if data is None:
                    break
                if not data:
                    continue  # go skips empty frames
                rpc = _rpc.decode_rpc(data, max_size)
                if not p.added:  # the hello may come before our own stream is up: wait for it
                    self._wait_outbound(p, Deadline(open_timeout))
                if self._closed or pid in self._blacklist or p.inbound is not stream:
                    break
                self.router.handle_rpc(pid, rpc, _now())
                self._process()
        except MessageTooLargeError as exc:  # RPCTooLargeError too
            self._bad_rpc(pid, stream, str(exc))
            return
        except (RemoteProtocolError, IncompleteReadError) as exc:  # RPCDecodeError, bad varint, cut frame
            self._bad_rpc(pid, stream, f"malformed RPC: {exc}")
            return
        except (P2PError, OSError) as exc:
            log.debug("pubsub: inbound stream from %s ended: %s", pid, exc)
            stream.reset()
            return
        finally:
            if p.inbound is stream:
                p.inbound = None
        if self._closed or pid in self._blacklist:
            stream.reset()
        # at EOF the host closes the stream: the peer ended its side first

    def _wait_outbound(self, p: _Peer, dl: Deadline) -> None:
        """Blocks the inbound greenlet until our outbound stream to ``p`` is up (the router
        drops RPCs of peers it does not know yet).  An attempt that ended without a stream,
        e.g. because identify had not yet listed the peer's pubsub protocols, is made once
        more: the peer's inbound stream shows it speaks pubsub."""
        tried = False
        while not p.added and not self._closed and self._peers.get(p.id) is p:
            g = p.opening
            if g is None or g.dead:
                if tried:
                    return
                tried = True
                g = p.opening = self._group.spawn(self._open_outbound, p)
            left = dl.left()
            if left is not None and left <= 0:
                return
            g.join(left)

    def _bad_rpc(self, pid: PeerId, stream: Any, why: str) -> None:
        self.bad_rpcs += 1
        log.debug("pubsub: %s sent a bad RPC (%s); resetting its stream", pid, why)
        stream.reset(RemoteProtocolError.error_code)
        if not self._closed:
            self.router.handle_rpc_error(pid, why, _now())  # score penalty, then DropPeer
            self._process()

    @staticmethod
    def _read_frame(stream: Any, buf: bytearray, max_size: int) -> bytes | None:
        """One ``uvarint(len) || RPC`` frame; None at a clean EOF (between frames)."""
        while True:
            res = varint.decode_uvarint(buf, 0)
            if res is not None:
                length, start = res
                if length > max_size:
                    raise MessageTooLargeError(f"RPC of {length} bytes exceeds the limit of {max_size}")
                have = len(buf) - start
                if have >= length:
                    payload = bytes(buf[start:start + length])
                    del buf[:start + length]
                    return payload
                rest = stream.read_exactly(length - have)
                payload = bytes(buf[start:]) + rest
                buf.clear()
                return payload
            chunk = stream.read(_READ_SIZE)
            if not chunk:
                if buf:
                    raise IncompleteReadError(bytes(buf), len(buf) + 1)
                return None
            buf += chunk

    # ================================================================ heartbeat + trace

    def _heartbeat_loop(self) -> None:
        gevent.sleep(self.options.heartbeat_initial_delay)
        interval = self.options.heartbeat_interval
        nxt = _now()
        while not self._closed:
            self.router.heartbeat(_now())
            self._process()
            nxt += interval
            gevent.sleep(max(0.0, nxt - _now()))

    def _trace(self, kind: type, **fields: Any) -> None:
        em = self._emitters.get(kind)
        if em is None or not _has_subscribers(em, self.host.event_bus):
            return  # nobody listens: no event object, no dispatcher wake-up
        if len(self._trace_q) >= _trace.TRACE_BACKLOG:
            self.dropped_traces += 1
            return
        self._trace_q.append((kind, fields))
        self._trace_wake.set()

    def _trace_loop(self) -> None:
        while True:
            self._trace_wake.wait()
            self._trace_wake.clear()
            while self._trace_q:
                kind, fields = self._trace_q.popleft()
                em = self._emitters.get(kind)
                if em is None or em.closed:
                    continue
                try:
                    em.emit(kind(**fields))
                except P2PError:
                    log.debug("pubsub: could not emit %s", kind.__name__, exc_info=True)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.host.id if self.host else '?'} peers={len(self._peers)}>"
