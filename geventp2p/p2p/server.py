"""The p2p Server: typed topics, feeds, adapters, broadcast and direct send.

The application layer over a geventp2p host and its pubsub, after Prysm's ``p2p``
package: applications register protobuf message types on topics, ``broadcast`` them
by gossipsub (or floodsub), ``send`` them to one peer over a direct stream, and read
what arrives from typed :class:`~geventp2p.p2p.feed.Feed`\\ s, without touching
streams::

    from geventp2p.p2p import Server, ServerConfig, RateLimiter

    with Server(ServerConfig(listen=["/ip4/0.0.0.0/tcp/9000"], bootstrap=[...])) as srv:
        srv.register_topic("/eth/block", Block, RateLimiter(rate=10, burst=20))
        q = gevent.queue.Queue(64)
        sub = srv.subscribe(Block, q)
        srv.broadcast(Block(slot=1))             # every peer on the topic
        srv.send(Status(head=1), peer_id)        # one peer, direct stream
        msg = q.get()                            # Message(peer, data, topic, received_at, via)

Names as in Prysm's ``p2p.Server``: ``Start``/``Stop``/``Status`` -> ``start``/``stop``/
``status``, ``RegisterTopic(topic, msg, adapters...)`` -> ``register_topic``,
``Broadcast`` -> ``broadcast``, ``Send(msg, peer)`` -> ``send``, ``Feed(msg)`` -> ``feed``,
``Subscribe(msg, channel)`` -> ``subscribe``, ``Message{Peer, Data}`` -> :class:`Message`,
``Adapter``/``Handler`` the same; ``Sender``/``Broadcaster`` the same interfaces.
Unlike the Go original, ``broadcast`` raises for an unregistered type instead of
logging.

Receiving: on the pubsub path every message first passes gossipsub's validation,
where the Server decodes it (undecodable: REJECT), runs the validators registered
with :meth:`Server.register_validator` (their verdict feeds gossipsub scoring) and
then the topic's adapter chain; a message an adapter stops is IGNOREd, so it is
neither delivered nor forwarded.  Accepted messages are sent into the topic's feed
by one greenlet per topic (the pubsub subscription buffers ``feed_buffer`` messages
in front of a slow feed, then drops).  Our own broadcasts do not come back through
the feed.  Direct frames run the same validators, adapters and feed on the
stream's greenlet (see :mod:`geventp2p.p2p.direct`).
"""

from __future__ import annotations

import logging
import random
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

import gevent
from gevent.event import Event
from gevent.pool import Group

from geventp2p.core import addr as _addr
from geventp2p.core.peer import PeerId, PeerInfo
from geventp2p.exceptions import (
    ConfigError,
    DirectMessageError,
    DirectSendError,
    DirectSendTimeoutError,
    IncompleteReadError,
    InvalidPeerIdError,
    LocalProtocolError,
    MultiaddrError,
    P2PError,
    P2PTimeoutError,
    ServerStoppedError,
    TopicAlreadyRegisteredError,
    TopicNotRegisteredError,
    UndecodableMessageError,
    UnknownTopicError,
    VarintError,
)
from geventp2p.net._deadline import Deadline, timeout_scope
from geventp2p.net.notify import Notifiee
from geventp2p.p2p import direct as _direct
from geventp2p.p2p.adapters import Adapter, Handler, Message, chain
from geventp2p.p2p.encoding import PROTOBUF, Encoding
from geventp2p.p2p.feed import Feed, Subscription
from geventp2p.protocols.pubsub import ACCEPT, IGNORE, REJECT, PubSubOptions, ValidationResult

if TYPE_CHECKING:
    from geventp2p.crypto.keys import PrivateKey

__all__ = [
    "Server",
    "ServerConfig",
    "Sender",
    "Broadcaster",
    "make_peer",
    "DIRECT_PROTOCOL_ID",
]

log = logging.getLogger(__name__)

DIRECT_PROTOCOL_ID = _direct.PROTOCOL_ID
_Validator = Callable[[Message], Any]
_PAST = {ACCEPT: "accepted", REJECT: "rejected", IGNORE: "ignored"}


def make_peer(addr: Any) -> PeerInfo:
    """Parse a ``/.../p2p/<id>`` multiaddr (string or Multiaddr) into a :class:`PeerInfo`.

    Raises :class:`MultiaddrError` (a ValueError) naming the address when it is
    malformed or has no ``/p2p/`` part, :class:`InvalidPeerIdError` for a bad id.
    """
    try:
        transport, pid = _addr.split_p2p(addr)
    except (MultiaddrError, ValueError) as exc:
        raise MultiaddrError(f"{addr!r} is not a valid multiaddr: {exc}") from exc
    if pid is None:
        raise MultiaddrError(f"{addr} has no /p2p/<peer id> part")
    try:
        peer_id = PeerId.from_string(pid)
    except (InvalidPeerIdError, ValueError) as exc:
        raise InvalidPeerIdError(f"{addr}: bad peer id {pid!r}: {exc}") from exc
    return PeerInfo(peer_id, [transport] if transport is not None else [])


@runtime_checkable
class Broadcaster(Protocol):
    """Something that broadcasts messages to a topic (Prysm's ``p2p.Broadcaster``)."""

    def broadcast(self, msg: Any, timeout: float | None = None) -> None: ...


@runtime_checkable
class Sender(Protocol):
    """Something that sends a message to one peer (Prysm's ``p2p.Sender``)."""

    def send(self, msg: Any, peer: Any, timeout: float | None = None) -> None: ...


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """Settings of a :class:`Server`.

    Host: ``listen`` multiaddrs; ``key`` (a PrivateKey or its protobuf bytes) or
    ``key_file`` (loaded, or created); ``bootstrap``: ``/.../p2p/<id>`` multiaddrs
    dialled at start and redialled when the connection drops (exponential backoff
    from ``reconnect_backoff`` to ``reconnect_backoff_max`` seconds, with jitter;
    ``dial_timeout`` per attempt; this schedule, not the swarm's dial backoff, decides
    when to redial, and the connection manager never trims these peers);
    ``host_options``: more keyword arguments for
    :func:`geventp2p.defaults.new_host` (``limits``, ``security``, ...).

    Router: ``router`` is ``"gossipsub"`` (default) or ``"floodsub"``;
    ``gossipsub`` a :class:`~geventp2p.sansio.pubsub.gossipsub.GossipSubParams`
    (None: go's defaults); ``pubsub`` the shell's :class:`PubSubOptions` (None: built
    from ``sign`` and ``feed_buffer``); ``sign``: StrictSign (True) or StrictNoSign with
    content-addressed message ids from the encoding (False).

    Messages: ``encoding`` (:class:`~geventp2p.p2p.encoding.Encoding`, protobuf by
    default); ``feed_buffer``: received pubsub messages held per topic in front of a
    slow feed; ``inline_validation``: run validators and adapters on the receiving
    greenlet (True; set False when they may block: they then run on pubsub's
    validation pool, bounded by ``validator_timeout``).

    Direct sends: ``direct_protocol`` (the stream protocol id), ``max_frame_size``
    (bytes, both directions), ``send_timeout`` (default of ``send``),
    ``direct_read_timeout`` (idle time a receiving stream may wait for its next
    frame), ``on_error``: called with each :class:`DirectMessageError` a peer caused.
    """

    listen: Sequence[str] = ("/ip4/127.0.0.1/tcp/0",)
    key: Any = None
    key_file: str | None = None
    bootstrap: Sequence[str] = ()
    host_options: Mapping[str, Any] = field(default_factory=dict)
    router: str = "gossipsub"
    gossipsub: Any = None
    pubsub: PubSubOptions | None = None
    sign: bool = True
    encoding: Encoding = PROTOBUF
    feed_buffer: int = 4096
    inline_validation: bool = True
    validator_timeout: float | None = None
    direct_protocol: str = DIRECT_PROTOCOL_ID
    max_frame_size: int = _direct.DEFAULT_MAX_FRAME_SIZE
    send_timeout: float = 10.0
    direct_read_timeout: float = 30.0
    dial_timeout: float = 10.0
    reconnect_backoff: float = 0.5
    reconnect_backoff_max: float = 30.0
    on_error: Callable[[P2PError], None] | None = None

    def __post_init__(self) -> None:
        if self.router not in ("gossipsub", "floodsub"):
            raise ConfigError(f"router must be 'gossipsub' or 'floodsub', got {self.router!r}")
        if isinstance(self.listen, str) or isinstance(self.bootstrap, str):
            raise ConfigError("listen and bootstrap take lists of multiaddr strings")
        for a in self.bootstrap:
            try:
                make_peer(a)
            except (MultiaddrError, InvalidPeerIdError) as exc:
                raise ConfigError(f"bootstrap address {a!r}: {exc}") from exc
        if not isinstance(self.encoding, Encoding):
            raise ConfigError(f"encoding must implement the Encoding protocol, got {self.encoding!r}")
        if not isinstance(self.direct_protocol, str) or not self.direct_protocol.startswith("/"):
            raise ConfigError(f"direct_protocol must be a protocol id starting with '/', got {self.direct_protocol!r}")
        if self.max_frame_size < 16 or self.feed_buffer < 1:
            raise ConfigError("max_frame_size must be >= 16 and feed_buffer >= 1")
        for name in ("send_timeout", "direct_read_timeout", "dial_timeout", "reconnect_backoff",
                     "reconnect_backoff_max"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0")
        if self.key is not None and self.key_file is not None:
            raise ConfigError("pass key or key_file, not both")


class _Registration:
    __slots__ = ("topic", "type", "adapters", "handler", "feed", "validators", "pubsub_topic", "sub")

    def __init__(self, topic: str, message_type: type, adapters: tuple[Adapter, ...], handler: Handler) -> None:
        self.topic = topic
        self.type = message_type
        self.adapters = adapters
        self.handler = handler
        self.feed = Feed(etype=Message)
        self.validators: list[_Validator] = []
        self.pubsub_topic: Any = None
        self.sub: Any = None


class _Notifiee(Notifiee):
    def __init__(self, server: "Server") -> None:
        self.server = server

    def disconnected(self, net: Any, conn: Any) -> None:
        ev = self.server._bootstrap_wake.get(conn.remote_peer)
        if ev is not None:
            ev.set()


def _verdict(res: Any) -> ValidationResult:
    if res is True or res is None:
        return ACCEPT
    if res is False:
        return REJECT
    try:
        return ValidationResult(int(res))
    except (TypeError, ValueError):
        log.warning("p2p validator returned %r; treated as REJECT", res)
        return REJECT


class Server:
    """A p2p node for applications (Prysm's ``p2p.Server``); see the module doc.

    ``Server(config)`` only records the config and the key (so ``peer_id`` is known
    at once); :meth:`start` builds the host and pubsub.  Also a context manager
    (start on enter, stop on exit).
    """

    def __init__(self, config: ServerConfig | None = None) -> None:
        self.config = config if config is not None else ServerConfig()
        self._key = self._load_key()
        from geventp2p.core.peer import PeerId as _PeerId

        self._peer_id = _PeerId.from_public_key(self._key.public_key())
        self._host: Any = None
        self._ps: Any = None
        self._by_type: dict[type, _Registration] = {}
        self._by_topic: dict[str, _Registration] = {}
        self._group = Group()
        self._started = False
        self._stopped = False
        self._error: BaseException | None = None
        self._reached: dict[Any, Message] = {}  # greenlet -> message that got through the chain
        self._accepted: OrderedDict[bytes, Message] = OrderedDict()  # msg id -> decoded, validated message
        self._direct_greenlets: set[Any] = set()
        self._bootstrap_wake: dict[PeerId, Event] = {}
        self._notifiee = _Notifiee(self)
        #: The last direct-protocol errors peers caused (newest last).
        self.errors: deque[P2PError] = deque(maxlen=256)
        #: Counters: messages delivered / dropped by path and reason.
        self.stats: dict[str, int] = {}

    def _load_key(self) -> "PrivateKey":
        from geventp2p.crypto.keys import KeyType, PrivateKey, generate_key, unmarshal_private_key

        cfg = self.config
        if cfg.key_file is not None:
            from geventp2p.identity import load_or_create

            priv, _created = load_or_create(cfg.key_file)
            return priv
        if cfg.key is None:
            return generate_key(KeyType.Ed25519)
        if isinstance(cfg.key, PrivateKey):
            return cfg.key
        if isinstance(cfg.key, (bytes, bytearray, memoryview)):
            return unmarshal_private_key(bytes(cfg.key))
        raise ConfigError(f"key must be a PrivateKey or its protobuf bytes, got {type(cfg.key).__name__}")

    # ================================================================ lifecycle

    def start(self) -> None:
        """Blocks the calling greenlet while the host binds its addresses; then returns.

        Builds the host and the router, joins the registered topics and starts
        dialling the bootstrap peers in the background.  Idempotent while running;
        a stopped Server cannot start again (ServerStoppedError).
        """
        if self._stopped:
            raise ServerStoppedError("the server was stopped; make a new one")
        if self._started:
            return
        from geventp2p.defaults import new_host
        from geventp2p.protocols.pubsub import FloodSub, GossipSub

        cfg = self.config
        self._started = True
        try:
            host = self._host = new_host(key=self._key, listen=list(cfg.listen), **dict(cfg.host_options))
            opts = cfg.pubsub if cfg.pubsub is not None else PubSubOptions(
                sign=cfg.sign, subscription_buffer=cfg.feed_buffer, validator_timeout=cfg.validator_timeout)
            if cfg.router == "gossipsub":
                self._ps = GossipSub(host, cfg.gossipsub, options=opts)
            else:
                self._ps = FloodSub(host, opts)
            host.set_stream_handler(cfg.direct_protocol, self._handle_direct)
            host.network.notify(self._notifiee)
            for reg in self._by_type.values():
                self._activate(reg)
            for a in cfg.bootstrap:
                info = make_peer(a)
                self._bootstrap_wake[info.peer_id] = Event()
                cm = getattr(host, "connmgr", None)
                if cm is not None:
                    cm.protect(info.peer_id, "p2p-bootstrap")
                self._group.spawn(self._keep_connected, info)
        except BaseException as exc:
            self._error = exc
            self._shutdown()
            raise

    def stop(self) -> None:
        """Leave the topics, close every stream and the host, stop the greenlets (idempotent).

        ``status()`` then returns a :class:`ServerStoppedError`.
        """
        if self._stopped:
            return
        self._shutdown()

    def _shutdown(self) -> None:
        self._stopped = True
        self._group.kill()
        for g in list(self._direct_greenlets):
            g.kill(block=False)
        host, ps = self._host, self._ps
        if host is not None:
            try:
                host.network.stop_notify(self._notifiee)
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        if ps is not None:
            ps.close()
        if host is not None:
            host.close()
        if self._direct_greenlets:
            gevent.joinall(list(self._direct_greenlets), timeout=1.0)
        self._accepted.clear()

    def status(self) -> BaseException | None:
        """None while running and healthy; otherwise the error that stopped it.

        Before ``start`` and after ``stop`` that is a :class:`ServerStoppedError`
        (returned, not raised); after a failed ``start``, the error it raised.
        """
        if self._error is not None:
            return self._error
        if not self._started:
            return ServerStoppedError("the server is not started")
        if self._stopped:
            return ServerStoppedError("the server is stopped")
        if self._host is None or self._host.closed:
            return ServerStoppedError("the host was closed")
        if self._ps is None or self._ps.closed:
            return ServerStoppedError("pubsub was closed")
        return None

    def __enter__(self) -> "Server":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _check_running(self) -> None:
        err = self.status()
        if err is not None:
            if isinstance(err, ServerStoppedError):
                raise err
            raise ServerStoppedError(f"the server failed: {err}") from err

    # ================================================================ identity

    @property
    def peer_id(self) -> PeerId:
        return self._peer_id

    @property
    def host(self) -> Any:
        """The underlying :class:`~geventp2p.host.basic.BasicHost` (None before ``start``)."""
        return self._host

    @property
    def pubsub(self) -> Any:
        """The underlying GossipSub/FloodSub service (None before ``start``)."""
        return self._ps

    def addrs(self) -> list[str]:
        """Our listen addresses with ``/p2p/<id>`` appended (empty before ``start``)."""
        if self._host is None or self._host.closed:
            return []
        return [str(a) for a in self._host.p2p_addrs()]

    def peer_info(self) -> PeerInfo:
        return PeerInfo(self._peer_id, self._host.addrs() if self._host is not None else [])

    def topic_peers(self, message_type: type) -> list[PeerId]:
        """Peers known to be subscribed to ``message_type``'s topic."""
        reg = self._registration(message_type)
        return self._ps.list_peers(reg.topic) if self._ps is not None else []

    def mesh_peers(self, message_type: type) -> list[PeerId]:
        """Peers a broadcast of ``message_type`` goes to first: the gossipsub mesh of its
        topic (floodsub: every subscribed peer)."""
        reg = self._registration(message_type)
        ps = self._ps
        if ps is None:
            return []
        mesh = getattr(ps.router, "mesh_peers", None)
        return list(mesh(reg.topic)) if mesh is not None else ps.list_peers(reg.topic)

    def wait_for_peers(self, message_type: type, count: int = 1, timeout: float | None = 30.0) -> list[PeerId]:
        """Blocks the calling greenlet until ``count`` peers are in ``message_type``'s mesh.

        Gossipsub grafts peers at its heartbeat, so right after connecting a broadcast
        may reach nobody; call this first.  Returns the mesh peers; raises
        P2PTimeoutError after ``timeout`` seconds.
        """
        self._check_running()
        dl = Deadline(timeout)
        while True:
            peers = self.mesh_peers(message_type)
            if len(peers) >= count:
                return peers
            if dl.expired():
                raise P2PTimeoutError(f"{len(peers)} of {count} peers in the mesh of "
                                      f"{self.topic_of(message_type)!r} after {timeout} s")
            gevent.sleep(0.02 if dl.left() is None else min(0.02, dl.left() or 0.0))

    # ================================================================ topics

    def register_topic(self, topic: str, message_type: type, *adapters: Adapter) -> None:
        """Map ``message_type`` to ``topic``; ``adapters`` wrap its handlers, outermost first.

        Works before and after :meth:`start`.  Raises TopicAlreadyRegisteredError when
        the type or the topic is taken, TypeError for a type the encoding cannot carry
        or an adapter that is not callable, ServerStoppedError after ``stop``.
        """
        if self._stopped:
            raise ServerStoppedError("the server is stopped")
        if not isinstance(topic, str) or not topic:
            raise ConfigError("topic must be a non-empty string")
        self.config.encoding.check_type(message_type)
        for a in adapters:
            if not callable(a):
                raise TypeError(f"adapter {a!r} is not callable")
        if message_type in self._by_type:
            raise TopicAlreadyRegisteredError(
                f"{message_type.__name__} is already registered on topic {self._by_type[message_type].topic!r}")
        if topic in self._by_topic:
            raise TopicAlreadyRegisteredError(
                f"topic {topic!r} is already registered for {self._by_topic[topic].type.__name__}")
        reg = _Registration(topic, message_type, tuple(adapters), chain(self._terminal, list(adapters)))
        self._by_type[message_type] = reg
        self._by_topic[topic] = reg
        if self._started:
            self._activate(reg)

    def _activate(self, reg: _Registration) -> None:
        ps = self._ps
        cfg = self.config
        if not ps.options.sign:
            enc, topic = cfg.encoding, reg.topic
            ps.set_msg_id_fn(reg.topic, lambda m: enc.message_id(topic, m.data))
        ps.register_validator(reg.topic, lambda pm: self._validate(reg, pm), inline=cfg.inline_validation)
        reg.pubsub_topic = ps.join(reg.topic)
        reg.sub = reg.pubsub_topic.subscribe()
        self._group.spawn(self._deliver_loop, reg)

    def _registration(self, message_type: type) -> _Registration:
        reg = self._by_type.get(message_type)
        if reg is None:
            raise TopicNotRegisteredError(f"no topic registered for {getattr(message_type, '__name__', message_type)}")
        return reg

    def _registration_for(self, msg: Any) -> _Registration:
        if not self.config.encoding.is_message(msg):
            raise TypeError(f"{type(msg).__name__} is not a {self.config.encoding.name} message")
        return self._registration(type(msg))

    def topic_of(self, message_type: type) -> str:
        """The topic ``message_type`` is registered on (TopicNotRegisteredError otherwise)."""
        return self._registration(message_type).topic

    def feed(self, message_type: type) -> Feed:
        """The feed of received ``message_type`` messages (:class:`Message` values)."""
        return self._registration(message_type).feed

    def subscribe(self, message_type: type, channel: Any) -> Subscription:
        """``feed(message_type).subscribe(channel)``."""
        return self.feed(message_type).subscribe(channel)

    def register_validator(self, message_type: type, fn: Callable[[Message], Any]) -> None:
        """Validate received ``message_type`` messages with ``fn(msg) -> ACCEPT | REJECT | IGNORE``.

        ``fn`` gets the decoded :class:`Message` before the adapters; its verdict is
        gossipsub's (REJECT costs the forwarding peer score; only ACCEPT is delivered and
        forwarded).  A bool works too (True: ACCEPT); an exception means REJECT.  Direct
        messages pass the same validators.
        """
        if not callable(fn):
            raise TypeError("validator must be callable")
        self._registration(message_type).validators.append(fn)

    # ================================================================ sending

    def broadcast(self, msg: Any, timeout: float | None = None) -> None:
        """Blocks the calling greenlet until ``msg`` is queued to the topic's peers.

        Publishes on the topic registered for ``type(msg)``.  Raises TypeError for a
        value that is not a message of the encoding, TopicNotRegisteredError for an
        unregistered type, ServerStoppedError when not running, P2PTimeoutError when
        the peers' send queues stay full for ``timeout`` seconds.  Under StrictNoSign
        (``sign=False``) ids are content addresses, so broadcasting the same content
        again within the seen-cache window raises LocalProtocolError (a duplicate).
        """
        reg = self._registration_for(msg)
        self._check_running()
        data = self.config.encoding.encode(msg)
        reg.pubsub_topic.publish(data, timeout=timeout)
        self._count("broadcast")

    def send(self, msg: Any, peer: Any, timeout: float | None = None) -> None:
        """Blocks the calling greenlet until ``msg``'s frame is written to ``peer``'s stream.

        ``peer`` is a PeerId, a peer-id string, a ``/.../p2p/<id>`` multiaddr or a
        PeerInfo (its addresses go to the peerstore); it is dialled if needed.
        ``timeout`` (default ``config.send_timeout``) bounds dial, negotiation and
        write.  Raises TypeError / TopicNotRegisteredError as :meth:`broadcast`, and
        :class:`DirectSendError` (``.peer``, ``.cause``; DirectSendTimeoutError on
        timeout) when the send fails.  The receiver's verdict is not waited for: a
        receiver that cannot use the frame (unknown topic, undecodable) resets the
        stream and records the error on its side (``server.errors``, ``on_error``).
        """
        reg = self._registration_for(msg)
        self._check_running()
        pid = self._resolve_peer(peer)
        cfg = self.config
        payload = cfg.encoding.encode(msg)
        try:
            frame = _direct.encode_frame(reg.topic, payload, cfg.max_frame_size)
        except LocalProtocolError as exc:
            raise DirectSendError(pid, exc) from exc
        if pid == self._peer_id:
            raise DirectSendError(pid, "cannot send to ourselves")
        to = cfg.send_timeout if timeout is None else timeout
        dl = Deadline(to)
        stream = None
        try:
            with timeout_scope(to, f"direct send to {pid}"):
                stream = self._host.new_stream(pid, [cfg.direct_protocol], timeout=dl.left())
                stream.write(frame, timeout=dl.left())
                stream.close_write()  # raises if the peer reset the stream meanwhile
                stream.close()
        except P2PTimeoutError as exc:
            if stream is not None:
                stream.reset()
            raise DirectSendTimeoutError(pid, exc) from exc
        except (P2PError, OSError) as exc:
            if stream is not None:
                stream.reset()
            raise DirectSendError(pid, exc) from exc
        self._count("sent_direct")

    def _resolve_peer(self, peer: Any) -> PeerId:
        if isinstance(peer, PeerId):
            return peer
        if isinstance(peer, PeerInfo):
            if peer.addrs and self._host is not None:
                from geventp2p.host.peerstore import TEMP_ADDR_TTL

                self._host.peerstore.add_addrs(peer.peer_id, list(peer.addrs), TEMP_ADDR_TTL)
            return peer.peer_id
        if isinstance(peer, str) and peer.startswith("/"):
            return self._resolve_peer(make_peer(peer))
        if isinstance(peer, str):
            try:
                return PeerId.from_string(peer)
            except (InvalidPeerIdError, ValueError) as exc:
                raise DirectSendError(peer, exc) from exc
        raise TypeError(f"peer must be a PeerId, a peer-id string, a multiaddr or a PeerInfo, "
                        f"got {type(peer).__name__}")

    # ================================================================ receiving

    def _terminal(self, msg: Message) -> None:
        self._reached[gevent.getcurrent()] = msg

    def _run_chain(self, reg: _Registration, msg: Message) -> tuple[ValidationResult, Message | None]:
        """Validators, then adapters; ``(verdict, message to deliver or None)``."""
        for v in reg.validators:
            try:
                res = _verdict(v(msg))
            except Exception:  # noqa: BLE001 - a broken validator rejects, it does not kill us
                log.exception("p2p validator for %r raised", reg.topic)
                res = REJECT
            if res is not ACCEPT:
                self._count(f"{msg.via}_{_PAST[res]}")
                return res, None
        cur = gevent.getcurrent()
        try:
            reg.handler(msg)
        except Exception:  # noqa: BLE001 - as a validator: REJECT
            self._reached.pop(cur, None)
            log.exception("p2p adapter for %r raised", reg.topic)
            self._count(f"{msg.via}_rejected")
            return REJECT, None
        out = self._reached.pop(cur, None)
        if out is None:
            self._count(f"{msg.via}_dropped_by_adapter")
            return IGNORE, None
        return ACCEPT, out

    def _validate(self, reg: _Registration, pm: Any) -> ValidationResult:
        """Pubsub validator of a registered topic (see the module doc)."""
        if pm.received_from == self._peer_id:
            return ACCEPT  # our own broadcast: checked when we made it
        try:
            data = self.config.encoding.decode(pm.data, reg.type)
        except ValueError:
            self._count("pubsub_undecodable")
            return REJECT
        msg = Message(pm.received_from, data, reg.topic, time.time(), "pubsub", pm.data, pm.id)
        res, out = self._run_chain(reg, msg)
        if out is not None:
            acc = self._accepted
            acc[pm.id] = out
            if len(acc) > 4 * self.config.feed_buffer:
                acc.popitem(last=False)
        return res

    def _deliver_loop(self, reg: _Registration) -> None:
        """Accepted pubsub messages -> the topic's feed (one greenlet per topic)."""
        me = self._peer_id
        acc = self._accepted
        feed = reg.feed
        for pm in reg.sub:
            if pm.received_from == me:
                continue
            msg = acc.pop(pm.id, None)
            if msg is None:
                continue  # not validated by us (cache overflow): never deliver unchecked
            feed.send(msg)
            self._count("pubsub_delivered")

    def _handle_direct(self, stream: Any) -> None:
        """Read direct frames until EOF (the stream's own greenlet)."""
        g = gevent.getcurrent()
        self._direct_greenlets.add(g)
        peer = stream.conn.remote_peer
        cfg = self.config
        buf = bytearray()
        try:
            while True:
                try:
                    body = _direct.read_frame(stream, buf, cfg.max_frame_size, cfg.direct_read_timeout, peer)
                    if body is None:
                        return  # EOF: the host closes the stream
                    topic, payload = _direct.parse_body(body, peer)
                    reg = self._by_topic.get(topic)
                    if reg is None or reg.sub is None:
                        raise UnknownTopicError(f"direct frame on unknown topic {topic!r}", peer=peer, topic=topic)
                    try:
                        data = cfg.encoding.decode(payload, reg.type)
                    except ValueError as exc:
                        raise UndecodableMessageError(f"direct {reg.type.__name__} on {topic!r} does not "
                                                      f"decode: {exc}", peer=peer, topic=topic) from exc
                except (VarintError, IncompleteReadError) as exc:
                    self._direct_error(stream, UndecodableMessageError(f"malformed direct frame: {exc}", peer=peer))
                    return
                except DirectMessageError as exc:
                    self._direct_error(stream, exc)
                    return
                msg = Message(peer, data, topic, time.time(), "direct", payload)
                _res, out = self._run_chain(reg, msg)
                if out is not None:
                    reg.feed.send(out)
                    self._count("direct_delivered")
        finally:
            self._direct_greenlets.discard(g)

    def _direct_error(self, stream: Any, exc: DirectMessageError) -> None:
        log.debug("p2p: %s; resetting the stream", exc)
        stream.reset(exc.error_code)
        self.errors.append(exc)
        self._count(f"direct_{type(exc).__name__}")
        cb = self.config.on_error
        if cb is not None:
            try:
                cb(exc)
            except Exception:  # noqa: BLE001 - a broken callback must not kill the stream handler
                log.exception("p2p on_error callback raised")

    def _count(self, key: str) -> None:
        self.stats[key] = self.stats.get(key, 0) + 1

    # ================================================================ bootstrap

    def _keep_connected(self, info: PeerInfo) -> None:
        """Dial a bootstrap peer, and again whenever the connection drops.

        The Server's schedule governs: failed dials are retried after ``reconnect_backoff``
        doubling up to ``reconnect_backoff_max`` (jitter 0.8-1.2x), and the swarm's own
        per-address dial backoff (5 s and more after a failure, go's ``DialBackoff``) is
        cleared before each attempt, as go-libp2p users do with ``swarm.Backoff().Clear``,
        so one failed redial does not hold the next ones back.  A connection that lived
        ``reconnect_backoff_max`` or longer is redialled at once when it drops and resets
        the schedule; one that dropped sooner (a peer that accepts and then hangs up) is
        redialled on the schedule, not in a tight loop.
        """
        cfg = self.config
        host = self._host
        peer = info.peer_id
        wake = self._bootstrap_wake[peer]
        backoff = cfg.reconnect_backoff
        up_since: float | None = None  # when the current connection was made (or first seen)
        while not self._stopped:
            wake.clear()
            if _has_live_conn(host.network, peer):
                if up_since is None:
                    up_since = time.monotonic()
                wake.wait(max(cfg.reconnect_backoff_max, 1.0))  # woken by a disconnect
                continue
            if up_since is not None:  # the connection dropped
                lasted, up_since = time.monotonic() - up_since, None
                if lasted >= cfg.reconnect_backoff_max:
                    backoff = cfg.reconnect_backoff
                else:
                    log.debug("p2p: bootstrap peer %s dropped after %.2f s (redial in %.2f s)",
                              peer, lasted, backoff)
                    gevent.sleep(backoff * random.uniform(0.8, 1.2))
                    backoff = min(backoff * 2, cfg.reconnect_backoff_max)
                    continue  # it may have dialled us meanwhile
            _clear_dial_backoff(host.network, peer)
            try:
                host.connect(info, timeout=cfg.dial_timeout)
            except (P2PError, OSError) as exc:
                self._count("bootstrap_failed")
                log.debug("p2p: bootstrap peer %s: %s (retry in %.2f s)", peer, exc, backoff)
            except Exception:  # noqa: BLE001 - a bug must not end the reconnect loop for good
                self._count("bootstrap_failed")
                log.exception("p2p: dialling bootstrap peer %s failed unexpectedly (retry in %.2f s)",
                              peer, backoff)
            else:
                self._count("bootstrap_connected")
                log.debug("p2p: connected to bootstrap peer %s", peer)
                up_since = time.monotonic()  # (it may be gone already: then it counts as a drop)
                continue
            gevent.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, cfg.reconnect_backoff_max)

    def __repr__(self) -> str:
        state = "running" if self.status() is None else "stopped"
        return f"<Server {self._peer_id} {state} topics={sorted(self._by_topic)}>"


def _has_live_conn(network: Any, peer: PeerId) -> bool:
    """A connection to ``peer`` that is not closed (one closing may linger in the table)."""
    return any(not c.closed for c in network.conns_to_peer(peer))


def _clear_dial_backoff(network: Any, peer: PeerId) -> None:
    """Forget the swarm's dial backoff for ``peer`` (networks without one: nothing to do)."""
    backoff = getattr(network, "backoff", None)
    if backoff is not None:
        backoff().clear(peer)
