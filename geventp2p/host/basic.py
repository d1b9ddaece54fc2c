"""BasicHost: protocol handler registry, ``new_stream``, ``connect``, service lifecycle.

Modelled on go-libp2p ``p2p/host/basic``:

* ``set_stream_handler(protocol, handler, match=None)`` registers ``handler(stream)``
  for inbound streams negotiating ``protocol`` (or any protocol id ``match(id)``
  accepts).  Every change emits ``EvtLocalProtocolsUpdated`` (stateful emitter).
* Inbound streams arrive from the swarm on their own greenlet (one per stream,
  owned by the swarm); the host runs multistream-select with the registered
  protocols (10 s), sets ``stream.protocol`` and calls the handler on that same
  greenlet.  When the handler returns the stream is closed (no-op if the
  handler already closed it); a handler exception is logged and the stream reset.
* ``new_stream(peer, protocols)`` dials when needed, waits (bounded) for
  identify on the connection like go, then negotiates: a single protocol the
  peerstore says the peer supports is selected lazily (header + proposal ride
  on the first write); otherwise the protocols are proposed in turn.  Either way
  it returns the muxer's :class:`~geventp2p.net.stream.Stream` itself (public name
  ``geventp2p.Stream``): the lazy proposal and its echo check are fields of the
  stream, not a wrapper.  Inbound handlers get the same class.
* ``connmgr`` (a :class:`~geventp2p.host.connmgr.BasicConnManager`, or None) is
  attached to the swarm when the host is built and keeps the connection count
  between its watermarks; ``peerstore_grace_period`` (seconds, or None: never)
  starts a :class:`~geventp2p.host.pstoremanager.PeerstoreManager` that forgets a
  disconnected peer's keys, protocols and metadata after that long (go: 60 s).
  A hand-built host has neither; :func:`geventp2p.new_host` enables both.
* Resources (go-libp2p's resource manager, ``host.resource_manager``; the swarm
  gives every stream a scope, ``stream.scope``): once a protocol is negotiated,
  inbound or outbound, the stream's scope is moved to it (``set_protocol``).
  A refusal resets the stream with code 0x1002 ("resource limit exceeded"): the
  inbound handler is not run (the dialer reads the reset), and ``new_stream``
  raises :class:`~geventp2p.exceptions.ResourceLimitExceeded`.  Services tag
  their streams with :func:`set_stream_service` (``libp2p.identify``...).
* ``close()`` closes services (identify, ping...), the connection and peerstore
  managers, then the swarm (listeners, connections, greenlets).  Afterwards no greenlet of the host is alive and
  every socket is closed.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable

import gevent

from geventp2p.config import HostConfig
from geventp2p.core import addr as _addr
from geventp2p.core.event import (
    AddrAction,
    EvtLocalAddressesUpdated,
    EvtLocalProtocolsUpdated,
    UpdatedAddress,
)
from geventp2p.core.peer import PeerId, PeerInfo
from geventp2p.core.rcmgr import NullResourceManager, Priority
from geventp2p.exceptions import (
    ConfigError,
    ConnectionClosedError,
    NegotiationError,
    P2PError,
    ResourceLimitExceeded,
)
from geventp2p.host.connmgr import BasicConnManager
from geventp2p.host.eventbus import EventBus
from geventp2p.host.peerstore import AGENT_VERSION, TEMP_ADDR_TTL
from geventp2p.host.pstoremanager import PeerstoreManager
from geventp2p.net import multistream
from geventp2p.net._deadline import Deadline
from geventp2p.net.stream import Stream
from geventp2p.net.swarm import Swarm
from geventp2p.sansio.multistream import validate_protocol_id

__all__ = [
    "BasicHost",
    "Host",
    "StreamHandler",
    "DEFAULT_NEGOTIATION_TIMEOUT",
    "DEFAULT_IDENTIFY_WAIT",
    "DEFAULT_PIPELINED_FIN_AGENTS",
    "set_stream_protocol",
    "set_stream_service",
    "reserve_stream_memory",
]

log = logging.getLogger(__name__)

StreamHandler = Callable[[Stream], None]

#: Inbound/outbound protocol negotiation per stream (go, js: 10 s).
DEFAULT_NEGOTIATION_TIMEOUT = 10.0
#: Longest ``new_stream``/``connect`` waits for identify on a connection.
DEFAULT_IDENTIFY_WAIT = 5.0
#: Agent-version prefixes of peers known to accept a FIN that arrives in the same burst
#: as a lazily pipelined proposal (go-libp2p's own lazy client never waits; js-libp2p
#: 3.x loses such a FIN).  Other peers get ``close_write`` only after the echo.
DEFAULT_PIPELINED_FIN_AGENTS = ("geventp2p/",)


_NULL_RCMGR = NullResourceManager()


def set_stream_protocol(stream: Stream, protocol: str) -> None:
    """Move ``stream``'s scope to ``protocol`` (go ``stream.SetProtocol``) and set
    ``stream.protocol``.

    For streams negotiated outside the host (identify opens its own on a
    connection).  On refusal the stream is reset with code 0x1002 and
    :class:`ResourceLimitExceeded` propagates."""
    try:
        stream.scope.set_protocol(protocol)
    except ResourceLimitExceeded as exc:
        log.debug("stream %s of %s refused: %s", protocol, _remote(stream), exc)
        stream.reset(ResourceLimitExceeded.error_code)
        raise
    stream.protocol = protocol


def reserve_stream_memory(stream: Stream, size: int) -> None:
    """Reserve ``size`` bytes in ``stream``'s scope (priority ALWAYS) for a buffer the
    protocol is about to hold; give them back with ``stream.scope.release_memory``.

    On refusal the stream is reset with code 0x1002 and
    :class:`ResourceLimitExceeded` propagates (go's ping and identify handlers)."""
    try:
        stream.scope.reserve_memory(size, Priority.ALWAYS)
    except ResourceLimitExceeded as exc:
        log.debug("stream %s of %s: %d bytes refused: %s", stream.protocol, _remote(stream), size, exc)
        stream.reset(ResourceLimitExceeded.error_code)
        raise


def set_stream_service(stream: Stream, service: str) -> None:
    """Charge ``stream`` to ``service`` too (go ``stream.Scope().SetService``).

    Call it once the protocol is negotiated (the host does that before a handler
    runs and before ``new_stream`` returns).  On refusal the stream is reset with
    code 0x1002 and :class:`ResourceLimitExceeded` propagates: an inbound handler
    just lets it end the handler, an outbound caller gets the error.
    """
    try:
        stream.scope.set_service(service)
    except ResourceLimitExceeded as exc:
        log.debug("stream %s of %s refused by service %s: %s", stream.protocol, _remote(stream), service, exc)
        stream.reset(ResourceLimitExceeded.error_code)
        raise


def _remote(stream: Stream) -> Any:
    try:
        return stream.conn.remote_peer
    except AttributeError:
        return None


def _as_peer(peer: Any) -> PeerId:
    if isinstance(peer, PeerId):
        return peer
    if isinstance(peer, PeerInfo):
        return peer.peer_id
    if isinstance(peer, str):
        return PeerId.from_string(peer)
    if isinstance(peer, (bytes, bytearray)):
        return PeerId.from_bytes(bytes(peer))
    raise TypeError(f"expected a PeerId, got {type(peer).__name__}")


class _ListenWatch:
    """Swarm notifiee: listen address changes -> ``EvtLocalAddressesUpdated``."""

    __slots__ = ("host",)

    def __init__(self, host: "BasicHost") -> None:
        self.host = host

    def listen(self, net: Any, addr: Any) -> None:
        self.host._addrs_changed()

    def listen_close(self, net: Any, addr: Any) -> None:
        self.host._addrs_changed()


class BasicHost:
    """A libp2p host on a :class:`~geventp2p.net.swarm.Swarm`.

    ``services`` are objects with ``start(host)`` and ``close()``; one having
    ``identify_wait(conn, timeout)`` is used to delay ``new_stream`` until
    identify finished (go's behaviour).  ``event_bus`` and ``peerstore`` default
    to the swarm's.  ``pipelined_fin_agents``: agent-version prefixes of peers whose
    lazily negotiated streams may half-close before the protocol echo arrived
    (saves a round trip); every other peer (unknown agent included) gets the FIN
    only after the echo.
    """

    #: What :func:`geventp2p.new_host` built; None for a host assembled by hand.
    config: HostConfig | None = None
    #: The pubsub service ``new_host(pubsub=...)`` started (closed with the host), else None.
    pubsub: Any = None

    def __init__(
        self,
        swarm: Swarm,
        *,
        event_bus: EventBus | None = None,
        peerstore: Any = None,
        services: Iterable[Any] = (),
        negotiation_timeout: float = DEFAULT_NEGOTIATION_TIMEOUT,
        identify_wait: float = DEFAULT_IDENTIFY_WAIT,
        pipelined_fin_agents: Iterable[str] = DEFAULT_PIPELINED_FIN_AGENTS,
        connmgr: BasicConnManager | None = None,
        peerstore_grace_period: float | None = None,
    ) -> None:
        if not negotiation_timeout > 0:
            raise ConfigError("negotiation_timeout must be > 0")
        if identify_wait < 0:
            raise ConfigError("identify_wait must be >= 0")
        self.network: Swarm = swarm
        self.peerstore = peerstore if peerstore is not None else swarm.peerstore
        if self.peerstore is None:
            raise ConfigError("BasicHost needs a peerstore (none given and the swarm has none)")
        bus = event_bus if event_bus is not None else swarm.event_bus
        self._own_bus = bus is None
        self.event_bus: EventBus = bus if bus is not None else EventBus()
        self.negotiation_timeout = float(negotiation_timeout)
        self.identify_wait_timeout = float(identify_wait)
        self.pipelined_fin_agents = tuple(pipelined_fin_agents)
        self._new_stream_timeout: float | None = swarm.config.new_stream_timeout
        self._handlers: dict[str, StreamHandler] = {}
        self._matchers: list[tuple[str, Callable[[str], bool], StreamHandler]] = []
        self._proto_emitter = self.event_bus.emitter(EvtLocalProtocolsUpdated, stateful=True)
        self._addr_emitter = self.event_bus.emitter(EvtLocalAddressesUpdated, stateful=True)
        self._last_addrs: list[Any] = []
        self._services: list[Any] = []
        self._identify: Any = None
        self._closed = False
        swarm.set_stream_handler(self._handle_stream)
        self._listen_watch = _ListenWatch(self)
        swarm.notify(self._listen_watch)  # listeners added/closed on the swarm directly
        #: The connection manager attached to the swarm, or None.
        self.connmgr: BasicConnManager | None = connmgr
        #: The manager forgetting disconnected peers, or None.
        self.peerstore_manager: PeerstoreManager | None = None
        try:
            if peerstore_grace_period is not None:
                own = swarm.local_peer
                self.peerstore_manager = PeerstoreManager(self.peerstore, self.event_bus,
                                                          grace_period=peerstore_grace_period,
                                                          keep=lambda peer: peer == own)
                self.peerstore_manager.start()
            if connmgr is not None:
                connmgr.attach(swarm, self.event_bus)
            for svc in services:
                self.add_service(svc)
        except BaseException:
            self.close()
            raise

    # ================================================================ identity

    @property
    def id(self) -> PeerId:
        return self.network.local_peer

    @property
    def private_key(self) -> Any:
        return self.network.local_key

    @property
    def public_key(self) -> Any:
        key = self.network.local_key
        return key.public_key() if key is not None else self.peerstore.pubkey(self.id)

    @property
    def resource_manager(self) -> Any:
        """The swarm's resource manager (``stat()`` returns its usage tree); a
        :class:`~geventp2p.core.rcmgr.NullResourceManager` when the swarm has none."""
        rm = getattr(self.network, "resource_manager", None)
        return rm if rm is not None else _NULL_RCMGR

    @property
    def events(self) -> EventBus:
        """Alias of ``event_bus``."""
        return self.event_bus

    @property
    def closed(self) -> bool:
        return self._closed

    def addrs(self) -> list[Any]:
        """Addresses we listen on, unspecified hosts expanded to interface addresses."""
        return list(self.network.interface_listen_addresses())

    def peer_info(self) -> PeerInfo:
        return PeerInfo(self.id, self.addrs())

    def p2p_addrs(self) -> list[Any]:
        """``addrs()`` with ``/p2p/<our id>`` appended (what others dial)."""
        return [_addr.join_p2p(a, self.id) for a in self.addrs()]

    # ================================================================ services

    def add_service(self, svc: Any) -> Any:
        """Start ``svc`` (``svc.start(self)``) and close it with the host; returns it."""
        if self._closed:
            raise ConfigError("host is closed")
        svc.start(self)
        self._services.append(svc)
        if self._identify is None and callable(getattr(svc, "identify_wait", None)):
            self._identify = svc
        return svc

    @property
    def services(self) -> list[Any]:
        return list(self._services)

    def service(self, kind: type) -> Any:
        """The first service that is an instance of ``kind``, or None."""
        for svc in self._services:
            if isinstance(svc, kind):
                return svc
        return None

    # ================================================================ listening

    def listen(self, *addrs: Any) -> list[Any]:
        """Listen on more addresses; returns the bound ones and emits ``EvtLocalAddressesUpdated``."""
        bound = self.network.listen(*addrs)
        self._addrs_changed()
        return bound

    def _addrs_changed(self) -> None:
        new = self.addrs()
        old = self._last_addrs
        if new == old:
            return
        self._last_addrs = new
        current = tuple(UpdatedAddress(address=a, action=AddrAction.Maintained if a in old else AddrAction.Added)
                        for a in new)
        removed = tuple(UpdatedAddress(address=a, action=AddrAction.Removed) for a in old if a not in new)
        self._emit(self._addr_emitter, EvtLocalAddressesUpdated(diffs=True, current=current, removed=removed))

    # ================================================================ handlers

    def set_stream_handler(self, protocol: str, handler: StreamHandler,
                           match: Callable[[str], bool] | None = None) -> None:
        """Handle inbound streams for ``protocol`` (or ids ``match`` accepts) with ``handler(stream)``.

        Replaces an earlier handler of the same protocol.  Emits ``EvtLocalProtocolsUpdated``.
        """
        validate_protocol_id(protocol)
        if not callable(handler):
            raise TypeError("handler must be callable")
        if match is not None and not callable(match):
            raise TypeError("match must be callable")
        new = protocol not in self._handlers
        self._matchers = [m for m in self._matchers if m[0] != protocol]
        self._handlers[protocol] = handler
        if match is not None:
            self._matchers.append((protocol, match, handler))
        if new:
            self._emit(self._proto_emitter, EvtLocalProtocolsUpdated(added=(protocol,)))

    def remove_stream_handler(self, protocol: str) -> None:
        """Stop handling ``protocol``; emits ``EvtLocalProtocolsUpdated`` if it was registered."""
        had = self._handlers.pop(protocol, None) is not None
        self._matchers = [m for m in self._matchers if m[0] != protocol]
        if had:
            self._emit(self._proto_emitter, EvtLocalProtocolsUpdated(removed=(protocol,)))

    def get_protocols(self) -> list[str]:
        """Protocols we accept inbound (registration order)."""
        return list(self._handlers)

    def _lookup(self, protocol: str) -> StreamHandler | None:
        h = self._handlers.get(protocol)
        if h is not None:
            return h
        for _p, match, handler in self._matchers:
            try:
                if match(protocol):
                    return handler
            except Exception:
                log.exception("protocol matcher for %s raised", _p)
        return None

    def _handle_stream(self, stream: Stream) -> None:
        """Swarm stream handler: runs on the stream's own greenlet."""
        try:
            proto = multistream.handle(stream, lambda p: self._lookup(p) is not None,
                                       timeout=self.negotiation_timeout, ls_protocols=self._handlers)
        except (P2PError, OSError) as exc:
            log.debug("inbound stream from %s: negotiation failed: %s", stream.conn.remote_peer, exc)
            # go resets with "protocol negotiation failed" whatever went wrong (refusal,
            # malformed exchange, timeout); 0 only when the connection itself failed
            stream.reset(NegotiationError.error_code if isinstance(exc, P2PError) else 0)
            return
        handler = self._lookup(proto)
        if handler is None:  # removed while negotiating
            stream.reset(NegotiationError.error_code)
            return
        stream.protocol = proto
        try:
            stream.scope.set_protocol(proto)
        except ResourceLimitExceeded as exc:
            # go: the echo is already sent; the stream is reset with 0x1002
            log.debug("inbound stream %s from %s refused: %s", proto, stream.conn.remote_peer, exc)
            stream.reset(ResourceLimitExceeded.error_code)
            return
        try:
            handler(stream)
        except (P2PError, OSError) as exc:  # the stream or connection died under the handler
            log.debug("handler for %s from %s ended with %r", proto, stream.conn.remote_peer, exc)
            stream.reset()
            return
        except Exception:
            log.exception("handler for %s from %s failed", proto, stream.conn.remote_peer)
            stream.reset()
            return
        except BaseException:
            stream.reset()
            raise
        stream.close()

    # ================================================================ outbound

    def connect(self, peer: Any, timeout: float | None = None) -> Any:
        """Blocks the calling greenlet until connected to ``peer`` (and identified, bounded).

        ``peer`` is a :class:`PeerInfo`, a multiaddr ending in ``/p2p/<id>``
        (string or Multiaddr), or a PeerId whose addresses the peerstore knows.
        Addresses given are added to the peerstore (``TEMP_ADDR_TTL``).
        Returns the connection.
        """
        pid, addrs = self._parse_target(peer)
        if addrs:
            self.peerstore.add_addrs(pid, addrs, TEMP_ADDR_TTL)
        dl = Deadline(timeout)
        conn = self.network.dial_peer(pid, timeout=dl.left())
        self._wait_identify(conn, dl)
        return conn

    @staticmethod
    def _parse_target(peer: Any) -> tuple[PeerId, list[Any]]:
        if isinstance(peer, PeerInfo):
            return peer.peer_id, list(peer.addrs)
        if isinstance(peer, PeerId):
            return peer, []
        if isinstance(peer, (str, _addr.Multiaddr)) and (not isinstance(peer, str) or peer.startswith("/")):
            transport, pid = _addr.split_p2p(peer)
            if pid is None:
                raise ConfigError(f"{peer} has no /p2p/<peer id> part")
            return PeerId.from_string(pid), ([transport] if transport is not None else [])
        return _as_peer(peer), []

    def _wait_identify(self, conn: Any, dl: Deadline) -> None:
        ids = self._identify
        if ids is None or not self.identify_wait_timeout:
            return
        ids.identify_wait(conn, timeout=dl.left(self.identify_wait_timeout))

    def new_stream(self, peer: Any, protocols: str | Iterable[str], timeout: float | None = None) -> Stream:
        """Blocks the calling greenlet: open a stream to ``peer`` speaking one of ``protocols``.

        Dials when there is no connection.  A single protocol the peerstore lists
        for the peer is selected lazily (no round trip: a refusal surfaces as
        NegotiationError on the first read, and the stream is reset with code
        0x1001); otherwise each protocol is proposed in turn until one is accepted
        (NegotiationError when all are refused).  ``stream.protocol`` holds the
        result.  The stream's resource scope is moved to the protocol; a refusal
        resets the stream with code 0x1002 and raises ``ResourceLimitExceeded``.
        ``timeout`` bounds the whole call.  The returned object is always a
        :class:`~geventp2p.net.stream.Stream` (a context manager), whatever the
        muxer and whatever identify knows about the peer.
        """
        pid = _as_peer(peer)
        protos = [protocols] if isinstance(protocols, str) else list(protocols)
        if not protos:
            raise ValueError("new_stream needs at least one protocol")
        for p in protos:
            validate_protocol_id(p)
        dl = Deadline(timeout)
        conn = self.network.dial_peer(pid, timeout=dl.left())
        self._wait_identify(conn, dl)
        dl.check(f"new_stream to {pid}")
        try:
            stream = conn.new_stream(timeout=dl.left(self._new_stream_timeout))
        except ConnectionClosedError:  # closed meanwhile: the swarm picks (or dials) another
            stream = self.network.new_stream(pid, timeout=dl.left())
        try:
            if len(protos) == 1 and self.peerstore.supports_protocols(pid, protos[0]):
                # charged before anything is proposed (go sets the protocol first too)
                stream.scope.set_protocol(protos[0])
                multistream.select_lazy(stream, protos[0], dl.left(self.negotiation_timeout),
                                        confirm_before_fin=self._confirm_before_fin(pid))
                stream.protocol = protos[0]
                return stream
            proto = multistream.select_one_of(stream, protos, timeout=dl.left(self.negotiation_timeout))
            stream.scope.set_protocol(proto)
        except BaseException as exc:
            if isinstance(exc, ResourceLimitExceeded):
                log.debug("outbound stream to %s refused: %s", pid, exc)
                code = ResourceLimitExceeded.error_code
            else:
                code = NegotiationError.error_code if isinstance(exc, P2PError) else 0
            stream.reset(code)
            raise
        stream.protocol = proto
        return stream

    def _confirm_before_fin(self, pid: PeerId) -> bool:
        agents = self.pipelined_fin_agents
        if not agents:
            return True
        agent = self.peerstore.get(pid, AGENT_VERSION, None)
        return not (isinstance(agent, str) and agent.startswith(agents))

    # ================================================================ lifecycle

    @staticmethod
    def _emit(em: Any, evt: Any) -> None:
        if em.closed:
            return
        try:
            em.emit(evt)
        except P2PError:
            log.debug("could not emit %s", type(evt).__name__, exc_info=True)

    def close(self) -> None:
        """Stop services, close the swarm, release emitters (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for svc in reversed(self._services):
            try:
                svc.close()
            except Exception:
                log.exception("closing service %r failed", svc)
        for mgr in (self.connmgr, self.peerstore_manager):
            if mgr is not None:
                try:
                    mgr.close()
                except Exception:
                    log.exception("closing %r failed", mgr)
        self.network.set_stream_handler(None)
        self.network.stop_notify(self._listen_watch)
        self.network.close()
        self._proto_emitter.close()
        self._addr_emitter.close()
        if self._own_bus:
            self.event_bus.close()
        gevent.sleep(0)  # let killed greenlets finish unwinding

    def __enter__(self) -> "BasicHost":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<BasicHost {self.id} addrs={[str(a) for a in self.addrs()]}{' closed' if self._closed else ''}>"


#: The public name of the host class (go's ``host.Host``; ``BasicHost`` is its one implementation).
Host = BasicHost
