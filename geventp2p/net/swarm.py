"""The swarm: connection table, ranked parallel dialing, listeners, notifications.

Modelled on go-libp2p ``p2p/net/swarm`` (reference §16), in blocking style:

* ``dial_peer(peer)`` returns a live connection, reusing one if it exists.  At
  most one dial per peer is in flight; concurrent callers join it and share its
  result.  Addresses come from the peerstore, are filtered (a transport can
  dial them, not our own listen addresses, not unspecified / IPv6 link-local,
  the gater agrees), skip addresses in dial backoff, and are ranked and dialed
  in parallel (8 per peer, 160 per swarm); the first upgraded connection wins
  and the other attempts are cancelled (late winners are closed).  Every
  failure cause has its own ``DialError`` subclass.
* Inbound connections are upgraded on the listener's handler greenlet, then go
  through the gater, then join the table.
* One accept loop per connection (a greenlet of the swarm's ``Group``) hands
  each inbound stream to the stream handler (``set_stream_handler``), each on
  its own greenlet, and removes the connection once its session ends.
* Notifiees and ``EvtPeerConnectednessChanged`` are delivered from one
  dispatcher greenlet (see :mod:`geventp2p.net.notify`), never from a reader.

Everything the swarm spawns lives in ``swarm.group``; ``close()`` kills it.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable, NamedTuple

import gevent
from gevent.event import AsyncResult
from gevent.lock import BoundedSemaphore
from gevent.pool import Group
from gevent.queue import Empty, Queue

from geventp2p.core import addr as _addr
from geventp2p.core.event import Connectedness, Direction, EvtPeerConnectednessChanged
from geventp2p.core.peer import PeerId
from geventp2p.exceptions import (
    AllDialsFailedError,
    ConfigError,
    ConnectionClosedError,
    DialBackoffError,
    DialError,
    DialGatedError,
    DialSelfError,
    DialTimeoutError,
    MultiaddrError,
    NoAddressesError,
    NoConnError,
    NoGoodAddressesError,
    P2PError,
    P2PTimeoutError,
    PeerIdMismatchError,
    StreamError,
    SwarmClosedError,
    TransportError,
)
from geventp2p.net.addrutil import interface_addresses
from geventp2p.net.bandwidth import BandwidthCounter
from geventp2p.net.notify import NOTIFICATIONS, Dispatcher, Notifiee, NotifyBundle, wants
from geventp2p.net.swarm_dial import DialBackoff, addr_info, rank_addrs
from geventp2p.net.upgrader import Connection

__all__ = [
    "Swarm",
    "SwarmConfig",
    "SwarmConn",
    "SwarmStream",
    "ConnMultiaddrs",
    "Notifiee",
    "NotifyBundle",
    "DialBackoff",
    "BandwidthCounter",
    "CONN_GATED",
]

log = logging.getLogger(__name__)

#: Connection close code used when the gater refuses an upgraded connection (go ``ConnGated``).
CONN_GATED = 0x1007

_monotonic = time.monotonic


@dataclass(frozen=True)
class SwarmConfig:
    """Swarm tuning (seconds / counts); defaults follow go-libp2p (reference §16, §19)."""

    #: Whole ``dial_peer`` when the caller gives no timeout.
    dial_timeout: float = 60.0
    #: One address (transport dial + upgrade) when the address is local (loopback, private, memory).
    dial_timeout_local: float = 5.0
    #: One address otherwise.
    dial_timeout_remote: float = 15.0
    #: Opening a stream in ``new_stream`` when the caller gives no timeout.
    new_stream_timeout: float = 15.0
    #: Accepted connection: queueing for an upgrade slot plus the upgrade itself.
    inbound_upgrade_timeout: float = 15.0
    #: Inbound connections upgraded at the same time (go: 16); more wait for a slot.
    max_inbound_upgrades: int = 16
    #: Dials in flight across the swarm (go: 160 file-descriptor-consuming dials).
    max_concurrent_dials: int = 160
    #: Dials in flight to one peer.
    max_dials_per_peer: int = 8
    backoff_base: float = 5.0
    backoff_coef: float = 1.0
    backoff_max: float = 300.0
    #: Delay between successive dials of one group (local / public addresses).
    stagger_local: float = 0.030
    stagger_public: float = 0.250
    #: Notification backlog that triggers a warning (doubles after each warning).
    notify_warn_backlog: int = 1024
    #: A notifiee call longer than this is logged.
    slow_notifiee_threshold: float = 1.0
    #: How long ``close()`` waits for pending notifications and greenlets.
    close_timeout: float = 2.0

    def __post_init__(self) -> None:
        for name in ("dial_timeout", "dial_timeout_local", "dial_timeout_remote", "new_stream_timeout",
                     "inbound_upgrade_timeout", "close_timeout", "slow_notifiee_threshold"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"SwarmConfig.{name} must be > 0")
        for name in ("max_concurrent_dials", "max_dials_per_peer", "max_inbound_upgrades", "notify_warn_backlog"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"SwarmConfig.{name} must be an int >= 1")
        if self.stagger_local < 0 or self.stagger_public < 0:
            raise ConfigError("SwarmConfig stagger delays must be >= 0")
        if self.backoff_base < 0 or self.backoff_coef < 0 or self.backoff_max < self.backoff_base:
            raise ConfigError("SwarmConfig backoff needs 0 <= base <= max and coef >= 0")


class ConnMultiaddrs(NamedTuple):
    """The two ends of a connection, as given to the gater."""

    local_addr: Any
    remote_addr: Any


_conn_ids = itertools.count(1)


def _close_muxed(muxed: Any, code: int) -> None:
    """Close a muxed session, with a close code if the muxer supports one (yamux GoAway)."""
    if code:
        try:
            params = inspect.signature(muxed.close).parameters
        except (TypeError, ValueError):  # pragma: no cover - builtins
            params = {}
        if "code" in params:
            muxed.close(code=code)
            return
    muxed.close()


class SwarmConn(Connection):
    """A connection owned by a swarm: streams are tracked and notified, ``close`` unregisters.

    Same attributes as :class:`~geventp2p.net.upgrader.Connection` plus ``id``,
    ``swarm``, ``limited`` (False: relayed connections do not exist yet) and
    ``streams()``.  Inbound streams are consumed by the swarm's accept loop
    and go to the swarm's stream handler; do not call ``accept_stream``.
    """

    def __init__(self, swarm: "Swarm", conn: Connection) -> None:
        super().__init__(conn.muxed, conn.secured, direction=conn.direction, security=conn.security,
                         muxer=conn.muxer)
        self.opened_at = conn.opened_at
        self.swarm = swarm
        self.id = next(_conn_ids)
        self.limited = False
        self._streams: dict[SwarmStream, None] = {}
        self._removed = False

    def new_stream(self, timeout: float | None = None) -> "SwarmStream":
        """Blocks the calling greenlet until a new outbound stream is open."""
        return self.swarm._open_stream(self, timeout)

    def streams(self) -> list["SwarmStream"]:
        """Streams opened or accepted on this connection and not closed/reset through the swarm."""
        return list(self._streams)

    def close(self) -> None:
        """Close the connection (idempotent); notifiees see ``closed_stream``s then ``disconnected``."""
        self.swarm._close_conn(self, 0)

    def close_with_error(self, code: int) -> None:
        """Close with a connection error code (yamux GoAway), e.g. ``0x1007`` gated."""
        self.swarm._close_conn(self, code)

    def __repr__(self) -> str:
        return (
            f"<SwarmConn #{self.id} {self.direction} {self.remote_peer} {self.remote_addr} "
            f"{self.security}+{self.muxer}{' closed' if self.closed else ''}>"
        )


class SwarmStream:
    """A muxed stream owned by a swarm connection (``conn`` is the :class:`SwarmConn`).

    Delegates to the muxer's stream; ``close()`` and ``reset()`` also tell the
    swarm (``closed_stream`` notification).  Other attributes of the muxer's
    stream (``read_eof``, ``is_reset``, ``buffered``...) are reachable too.
    """

    __slots__ = ("_s", "conn", "_done", "__weakref__")

    def __init__(self, inner: Any, conn: SwarmConn) -> None:
        self._s = inner
        self.conn = conn
        self._done = False
        inner.conn = conn

    # -- identity
    @property
    def inner(self) -> Any:
        return self._s

    @property
    def id(self) -> int:
        return self._s.id

    @property
    def direction(self) -> str:
        return self._s.direction

    @property
    def protocol(self) -> str | None:
        return self._s.protocol

    @protocol.setter
    def protocol(self, value: str | None) -> None:
        self._s.protocol = value

    @property
    def remote_peer(self) -> Any:
        return self.conn.remote_peer

    # -- I/O
    def read(self, n: int = -1, timeout: float | None = None) -> bytes:
        """Blocks the calling greenlet; see :meth:`geventp2p.net.stream.Stream.read`."""
        return self._s.read(n, timeout)

    def read_exactly(self, n: int, timeout: float | None = None) -> bytes:
        """Blocks the calling greenlet until exactly ``n`` bytes arrived."""
        return self._s.read_exactly(n, timeout)

    def write(self, data: Any, timeout: float | None = None) -> None:
        """Blocks the calling greenlet while the muxer applies back-pressure."""
        self._s.write(data, timeout)

    @property
    def direct_write(self) -> Any:
        """A callable equal to :meth:`write` minus this wrapper's frame (the muxer
        stream's own ``write``), for wrappers that write often (``LazyConn``)."""
        return self._s.write

    def unread(self, data: bytes) -> None:
        self._s.unread(data)

    def close_write(self) -> None:
        self._s.close_write()

    def close_read(self) -> None:
        self._s.close_read()

    def close(self) -> None:
        """Close both directions (never raises) and tell the swarm."""
        try:
            self._s.close()
        finally:
            self.conn.swarm._stream_done(self)

    def reset(self, code: int = 0) -> None:
        """Abort both directions with ``code`` and tell the swarm."""
        try:
            self._s.reset(code)
        finally:
            self.conn.swarm._stream_done(self)

    def set_deadline(self, t: float | None) -> None:
        self._s.set_deadline(t)

    def set_read_deadline(self, t: float | None) -> None:
        self._s.set_read_deadline(t)

    def set_write_deadline(self, t: float | None) -> None:
        self._s.set_write_deadline(t)

    def __getattr__(self, name: str) -> Any:
        if name == "_s":
            raise AttributeError(name)
        return getattr(self._s, name)

    def __enter__(self) -> "SwarmStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SwarmStream {self._s!r} conn=#{self.conn.id}>"


class _MeteredStream(SwarmStream):
    """A SwarmStream that reports bytes to the bandwidth reporter (used only when one is set)."""

    __slots__ = ("_rep", "_peer", "_pushed_back")

    def __init__(self, inner: Any, conn: SwarmConn, reporter: Any) -> None:
        super().__init__(inner, conn)
        self._rep = reporter
        self._peer = conn.remote_peer
        self._pushed_back = 0  # bytes given back with unread(): counted once already

    def _log_recv(self, n: int) -> None:
        pushed = self._pushed_back
        if pushed:
            skip = pushed if pushed < n else n
            self._pushed_back = pushed - skip
            n -= skip
        if n:
            self._rep.log_recv(n, self._peer, self._s.protocol)

    def read(self, n: int = -1, timeout: float | None = None) -> bytes:
        data = self._s.read(n, timeout)
        if data:
            self._log_recv(len(data))
        return data

    def read_exactly(self, n: int, timeout: float | None = None) -> bytes:
        data = self._s.read_exactly(n, timeout)
        if data:
            self._log_recv(len(data))
        return data

    def unread(self, data: bytes) -> None:
        self._s.unread(data)
        self._pushed_back += len(data)

    def write(self, data: Any, timeout: float | None = None) -> None:
        self._s.write(data, timeout)
        n = data.nbytes if isinstance(data, memoryview) else len(data)
        if n:
            self._rep.log_sent(n, self._peer, self._s.protocol)

    @property
    def direct_write(self) -> Any:
        return self.write  # every write must be metered


class _DialJob:
    __slots__ = ("peer", "result", "waiters", "greenlet", "attempts", "force")

    def __init__(self, peer: PeerId, force: bool) -> None:
        self.peer = peer
        self.result = AsyncResult()
        self.waiters = 0
        self.greenlet: gevent.Greenlet | None = None
        self.attempts: list = []
        self.force = force


def _as_peer(peer: Any) -> PeerId:
    if isinstance(peer, PeerId):
        return peer
    if isinstance(peer, str):
        return PeerId.from_string(peer)
    if isinstance(peer, (bytes, bytearray)):
        return PeerId.from_bytes(bytes(peer))
    raise TypeError(f"expected a PeerId, got {type(peer).__name__}")


class Swarm:
    """Connections to other peers over a set of transports (go-libp2p Swarm).

    ``local_key_or_peer`` is our private key (preferred: a default Noise + yamux
    upgrader is built from it when ``upgrader`` is None) or our PeerId (then
    ``upgrader`` is required to dial or listen).  ``gater`` may define any of
    ``intercept_peer_dial(peer)``, ``intercept_addr_dial(peer, addr)``,
    ``intercept_accept(conn_addrs)``, ``intercept_secured(direction, peer, conn_addrs)``
    (all -> bool) and ``intercept_upgraded(conn) -> (bool, reason_code)``.
    ``bandwidth_reporter`` gets ``log_sent``/``log_recv`` per stream read/write.
    ``clock`` drives dial backoff and connectedness bookkeeping.
    """

    def __init__(
        self,
        local_key_or_peer: Any,
        peerstore: Any,
        *transports: Any,
        upgrader: Any = None,
        event_bus: Any = None,
        gater: Any = None,
        bandwidth_reporter: Any = None,
        clock: Callable[[], float] = time.monotonic,
        config: SwarmConfig | None = None,
    ) -> None:
        if config is None:
            config = SwarmConfig()
        elif not isinstance(config, SwarmConfig):
            raise ConfigError(f"expected SwarmConfig, got {type(config).__name__}")
        self.config = config
        self.peerstore = peerstore
        if isinstance(local_key_or_peer, PeerId):
            self.local_peer = local_key_or_peer
            self.local_key = peerstore.privkey(local_key_or_peer) if peerstore is not None else None
        elif hasattr(local_key_or_peer, "public_key") and hasattr(local_key_or_peer, "sign"):
            self.local_key = local_key_or_peer
            self.local_peer = PeerId.from_public_key(local_key_or_peer.public_key())
            if peerstore is not None:
                peerstore.add_privkey(self.local_peer, local_key_or_peer)
                peerstore.add_pubkey(self.local_peer, local_key_or_peer.public_key())
        else:
            raise TypeError("Swarm needs a PrivateKey or a PeerId")
        if upgrader is None and self.local_key is not None:
            from geventp2p.net.noise import NoiseTransport
            from geventp2p.net.upgrader import Upgrader
            from geventp2p.net.yamux import YamuxMuxer

            upgrader = Upgrader([NoiseTransport(self.local_key)], [YamuxMuxer()])
        self.upgrader = upgrader
        self.gater = gater
        self.bandwidth_reporter = bandwidth_reporter
        self._clock = clock
        self._transports: list[Any] = []
        self._transport_cache: dict[Any, Any] = {}
        for t in transports:
            self.add_transport(t)
        self._backoff = DialBackoff(clock, base=config.backoff_base, coef=config.backoff_coef,
                                    max_backoff=config.backoff_max)
        self.group = Group()
        self._dispatcher = Dispatcher(self.group.spawn, name=f"swarm {self.local_peer.short()}",
                                      warn_backlog=config.notify_warn_backlog,
                                      slow_threshold=config.slow_notifiee_threshold)
        self._dial_limiter = BoundedSemaphore(config.max_concurrent_dials)
        self._upgrade_limiter = BoundedSemaphore(config.max_inbound_upgrades)
        self._listeners: list[Any] = []
        self._conns: dict[PeerId, list[SwarmConn]] = {}
        self._dials: dict[PeerId, _DialJob] = {}
        self._notifiees: list[Any] = []
        self._split_cache: dict[Any, Any] = {}
        self._wanted: frozenset[str] = frozenset()
        self._stream_handler: Callable[[SwarmStream], None] | None = None
        # clock times of the last failed dial / last disconnect, for connectedness()
        self._dial_failed: dict[PeerId, float] = {}
        self._disconnected_at: dict[PeerId, float] = {}
        self._closed = False
        self._emitter = event_bus.emitter(EvtPeerConnectednessChanged, stateful=False) if event_bus else None
        self.event_bus = event_bus

    # ================================================================= setup

    def add_transport(self, transport: Any) -> None:
        """Register a transport (anything with ``can_dial``, ``dial`` and ``listen``)."""
        for attr in ("can_dial", "dial", "listen"):
            if not callable(getattr(transport, attr, None)):
                raise ConfigError(f"transport {transport!r} has no {attr}()")
        self._transports.append(transport)
        self._transport_cache.clear()

    @property
    def transports(self) -> list[Any]:
        return list(self._transports)

    def transport_for_dial(self, addr: Any) -> Any | None:
        for t in self._transports:
            try:
                if t.can_dial(addr):
                    return t
            except Exception:  # a transport must not break address selection
                log.debug("can_dial(%s) failed on %r", addr, t, exc_info=True)
        return None

    def _transport_for_listen(self, addr: Any) -> Any | None:
        for t in self._transports:
            check = getattr(t, "can_listen", None) or t.can_dial
            try:
                if check(addr):
                    return t
            except Exception:
                log.debug("can_listen(%s) failed on %r", addr, t, exc_info=True)
        return None

    def set_stream_handler(self, handler: Callable[[SwarmStream], None] | None) -> None:
        """``handler(stream)`` runs on its own greenlet for every inbound stream.

        Without a handler inbound streams are reset.  A handler that raises has
        its stream reset.
        """
        if handler is not None and not callable(handler):
            raise TypeError("stream handler must be callable")
        self._stream_handler = handler

    @property
    def stream_handler(self) -> Callable[[SwarmStream], None] | None:
        return self._stream_handler

    def backoff(self) -> DialBackoff:
        """The dial backoff table (``backoff(peer, addr)``, ``add_backoff``, ``clear``)."""
        return self._backoff

    @property
    def closed(self) -> bool:
        return self._closed

    # ================================================================= notifications

    def notify(self, notifiee: Any) -> None:
        """Register a notifiee (a :class:`Notifiee` or anything with some of its methods)."""
        if notifiee not in self._notifiees:
            self._notifiees.append(notifiee)
            self._update_wanted()

    def stop_notify(self, notifiee: Any) -> None:
        try:
            self._notifiees.remove(notifiee)
        except ValueError:
            pass
        self._update_wanted()

    def _update_wanted(self) -> None:
        # notifications some notifiee implements (no dispatcher work per stream otherwise)
        self._wanted = frozenset(w for w in NOTIFICATIONS for n in self._notifiees if wants(n, w))

    def _notify(self, what: str, obj: Any) -> None:
        if what in self._wanted:
            self._dispatcher.put(self._deliver, what, obj)

    def _deliver(self, what: str, obj: Any) -> None:
        for n in list(self._notifiees):
            if not wants(n, what):
                continue
            fn = getattr(n, what)
            try:
                fn(self, obj)
            except Exception:
                log.exception("notifiee %r.%s failed", n, what)

    def _connectedness_changed(self, peer: PeerId, state: Connectedness) -> None:
        if self._emitter is not None:
            self._dispatcher.put(self._emit_connectedness, peer, state)

    def _emit_connectedness(self, peer: PeerId, state: Connectedness) -> None:
        em = self._emitter
        if em is None or em.closed:
            return
        try:
            em.emit(EvtPeerConnectednessChanged(peer=peer, connectedness=state))
        except P2PError:
            log.debug("connectedness event for %s not emitted", peer, exc_info=True)

    def wait_notifications(self, timeout: float | None = None) -> bool:
        """Blocks the calling greenlet until every queued notification was delivered."""
        return self._dispatcher.wait_idle(timeout)

    @property
    def notification_backlog(self) -> int:
        return len(self._dispatcher)

    # ================================================================= gater

    def _gate(self, method: str, *args: Any) -> tuple[bool, int]:
        gater = self.gater
        if gater is None:
            return True, 0
        fn = getattr(gater, method, None)
        if fn is None:
            return True, 0
        try:
            res = fn(*args)
        except Exception:
            log.exception("gater %s raised; refusing", method)
            return False, 0
        if isinstance(res, tuple):
            ok = bool(res[0])
            reason = res[1] if len(res) > 1 and isinstance(res[1], int) else 0
            return ok, reason
        return bool(res), 0

    def _check_upgraded(self, conn: Connection, direction: Direction) -> None:
        """Gater checks after the upgrade; closes ``conn`` and raises DialGatedError on refusal."""
        if self.gater is None:
            return
        addrs = ConnMultiaddrs(conn.local_addr, conn.remote_addr)
        ok, _ = self._gate("intercept_secured", direction, conn.remote_peer, addrs)
        if not ok:
            conn.close()
            raise DialGatedError(conn.remote_peer, "gater refused the secured connection",
                                 cause=DialGatedError.reason)
        ok, reason = self._gate("intercept_upgraded", conn)
        if not ok:
            try:
                _close_muxed(conn.muxed, reason or CONN_GATED)
            finally:
                conn.secured.close()
            raise DialGatedError(conn.remote_peer, "gater refused the upgraded connection",
                                 cause=DialGatedError.reason)

    # ================================================================= listening

    def listen(self, *addrs: Any) -> list[Any]:
        """Listen on every address that works; returns the bound addresses.

        Raises (the last error, or a TransportError naming each failure) only if
        none of the addresses could be listened on.
        """
        bound: list[Any] = []
        errors: list[tuple[Any, BaseException]] = []
        for a in addrs:
            try:
                bound.append(self.add_listen_addr(a))
            except (P2PError, OSError) as exc:
                log.warning("cannot listen on %s: %s", a, exc)
                errors.append((a, exc))
        if addrs and not bound:
            if len(errors) == 1:
                raise errors[0][1]
            raise TransportError(
                "failed to listen on any address: " + "; ".join(f"{a}: {e}" for a, e in errors)
            ) from errors[-1][1]
        return bound

    def add_listen_addr(self, addr: Any) -> Any:
        """Listen on one address; returns the bound multiaddr (``/tcp/0`` gets its real port)."""
        if self._closed:
            raise TransportError("swarm is closed")
        if self.upgrader is None:
            raise ConfigError("swarm has no upgrader (give a private key or an Upgrader)")
        ma = _addr.parse(addr)
        t = self._transport_for_listen(ma)
        if t is None:
            raise MultiaddrError(f"no transport can listen on {ma}")
        lst = t.listen(ma, self._handle_inbound)
        self._listeners.append(lst)
        log.debug("swarm %s listening on %s", self.local_peer.short(), lst.multiaddr)
        self._notify("listen", lst.multiaddr)
        return lst.multiaddr

    def listen_addresses(self) -> list[Any]:
        """Bound listen addresses (may contain ``0.0.0.0`` / ``::``)."""
        return [lst.multiaddr for lst in self._listeners if not lst.closed]

    def interface_listen_addresses(self) -> list[Any]:
        """Listen addresses with unspecified hosts expanded to this host's interface addresses."""
        out: list[Any] = []
        ifaces: tuple[str, ...] | None = None
        for ma in self.listen_addresses():
            if _addr.is_unspecified(ma):
                if ifaces is None:
                    ifaces = interface_addresses()
                expanded = _addr.expand_unspecified(ma, ifaces)
            else:
                expanded = [ma]
            for e in expanded:
                if e not in out:
                    out.append(e)
        return out

    def _handle_inbound(self, raw: Any) -> None:
        """Listener handler (on the listener's greenlet): gate, upgrade, gate, add."""
        if self._closed:
            raw.close()
            return
        addrs = ConnMultiaddrs(getattr(raw, "local_addr", None), getattr(raw, "remote_addr", None))
        ok, _ = self._gate("intercept_accept", addrs)
        if not ok:
            log.debug("gater refused inbound connection from %s", addrs.remote_addr)
            raw.close()
            return
        deadline = _monotonic() + self.config.inbound_upgrade_timeout
        if not self._upgrade_limiter.acquire(timeout=self.config.inbound_upgrade_timeout):
            log.debug("no upgrade slot for %s in time; closing", addrs.remote_addr)
            raw.close()
            return
        try:
            conn = self.upgrader.upgrade_inbound(raw, timeout=max(0.001, deadline - _monotonic()))
        except P2PError as exc:
            log.debug("inbound upgrade from %s failed: %s", addrs.remote_addr, exc)
            return  # the upgrader closed raw
        finally:
            self._upgrade_limiter.release()
        if conn.remote_peer == self.local_peer:
            log.debug("inbound connection from ourselves (%s); closing", addrs.remote_addr)
            conn.close()
            return
        try:
            self._check_upgraded(conn, Direction.Inbound)
            self._add_conn(conn)
        except P2PError as exc:
            log.debug("inbound connection from %s refused: %s", conn.remote_peer, exc)

    # ================================================================= connection table

    def _add_conn(self, conn: Connection) -> SwarmConn:
        if self._closed:
            conn.close()
            raise SwarmClosedError(conn.remote_peer, "swarm closed", cause=SwarmClosedError.reason)
        sc = SwarmConn(self, conn)
        peer = sc.remote_peer
        lst = self._conns.get(peer)
        first = not lst
        if lst is None:
            lst = self._conns[peer] = []
        lst.append(sc)
        self._dial_failed.pop(peer, None)
        self._disconnected_at.pop(peer, None)
        self._backoff.clear(peer)
        log.debug("swarm %s: connection up %r", self.local_peer.short(), sc)
        self._notify("connected", sc)
        if first:
            self._connectedness_changed(peer, Connectedness.Connected)
        self.group.spawn(self._accept_loop, sc)
        return sc

    def _remove_conn(self, sc: SwarmConn) -> None:
        if sc._removed:
            return
        sc._removed = True
        peer = sc.remote_peer
        lst = self._conns.get(peer)
        if lst is not None:
            try:
                lst.remove(sc)
            except ValueError:
                pass
            if not lst:
                del self._conns[peer]
        streams = list(sc._streams)
        sc._streams.clear()
        for s in streams:
            s._done = True
            self._notify("closed_stream", s)
        log.debug("swarm %s: connection down %r", self.local_peer.short(), sc)
        self._notify("disconnected", sc)
        if not self._conns.get(peer):
            self._remember(self._disconnected_at, peer)
            self._connectedness_changed(peer, Connectedness.NotConnected)

    def _close_conn(self, sc: SwarmConn, code: int) -> None:
        try:
            try:
                _close_muxed(sc.muxed, code)
            finally:
                sc.secured.close()
        finally:
            self._remove_conn(sc)

    def _accept_loop(self, sc: SwarmConn) -> None:
        """Accepts the next inbound stream, hands accepting on to a fresh greenlet and runs
        the stream's handler on this one (one greenlet per stream, as before).

        Running the handler at once, before the muxer's writer wakes, lets its first
        reply leave in the same segment as the stream's ACK.  The greenlet that finds
        the session over closes the connection.
        """
        stream = handler = None
        try:
            while True:
                try:
                    inner = sc.muxed.accept_stream()
                except ConnectionClosedError:
                    break
                except P2PError as exc:
                    log.debug("accept_stream on %r failed: %s", sc, exc)
                    break
                s = self._wrap_stream(inner, sc)
                handler = self._stream_handler
                if handler is None:
                    log.debug("no stream handler; resetting inbound stream on %r", sc)
                    s.reset()
                    continue
                stream = s
                self.group.spawn(self._accept_loop, sc)
                break
        finally:
            if stream is None:
                self._close_conn(sc, 0)
        if stream is not None:
            self._run_handler(handler, stream)

    def _run_handler(self, handler: Callable[[SwarmStream], None], s: SwarmStream) -> None:
        try:
            handler(s)
        except StreamError as exc:  # the stream or its connection died under the handler
            log.debug("stream handler on %r ended: %s", s, exc)
            s.reset()
        except Exception:
            log.exception("stream handler failed on %r", s)
            s.reset()

    def _wrap_stream(self, inner: Any, sc: SwarmConn) -> SwarmStream:
        rep = self.bandwidth_reporter
        s = SwarmStream(inner, sc) if rep is None else _MeteredStream(inner, sc, rep)
        sc._streams[s] = None
        self._notify("opened_stream", s)
        return s

    def _open_stream(self, sc: SwarmConn, timeout: float | None) -> SwarmStream:
        if sc._removed or sc.closed:
            raise ConnectionClosedError("connection is closed", remote=False)
        inner = sc.muxed.open_stream(timeout=timeout)
        return self._wrap_stream(inner, sc)

    def _stream_done(self, s: SwarmStream) -> None:
        if s._done:
            return
        s._done = True
        sc = s.conn
        if sc._streams.pop(s, 0) is None:
            self._notify("closed_stream", s)

    # ================================================================= queries

    def peers(self) -> list[PeerId]:
        """Peers with at least one live connection."""
        return [p for p, lst in self._conns.items() if any(not c.closed for c in lst)]

    def conns(self) -> list[SwarmConn]:
        return [c for lst in self._conns.values() for c in lst]

    def conns_to_peer(self, peer: Any) -> list[SwarmConn]:
        return list(self._conns.get(_as_peer(peer), ()))

    def _best_conn(self, peer: PeerId, use_transient: bool = True) -> SwarmConn | None:
        best = None
        for c in self._conns.get(peer, ()):
            if c.closed or c._removed:
                continue
            if c.limited and not use_transient:
                continue
            if best is None:
                best = c
                continue
            key_c = (not c.limited, c.num_streams, c.opened_at)
            key_b = (not best.limited, best.num_streams, best.opened_at)
            if key_c > key_b:
                best = c
        return best

    def _remember(self, table: dict, peer: PeerId) -> None:
        """Record ``clock()`` for ``peer``; prunes entries older than ``backoff_max`` as it grows."""
        now = self._clock()
        table[peer] = now
        if len(table) > 1024 and len(table) & 255 == 0:
            horizon = now - self.config.backoff_max
            for p in [p for p, t in table.items() if t < horizon]:
                del table[p]

    def connectedness(self, peer: Any) -> Connectedness:
        """Our connection state with ``peer``.

        Connected (Limited if only relayed) with a live connection; otherwise,
        within ``config.backoff_max`` (5 min), CannotConnect if the last dial
        failed and CanConnect if a connection ended and the peerstore still has
        addresses; NotConnected otherwise.  (go deprecated the two "Can" states
        and reports NotConnected; the event bus only ever carries Connected and
        NotConnected.)
        """
        peer = _as_peer(peer)
        live = [c for c in self._conns.get(peer, ()) if not c.closed]
        if live:
            return Connectedness.Connected if any(not c.limited for c in live) else Connectedness.Limited
        now = self._clock()
        recent = self.config.backoff_max
        failed = self._dial_failed.get(peer)
        if failed is not None and now - failed < recent:
            return Connectedness.CannotConnect
        gone = self._disconnected_at.get(peer)
        if gone is not None and now - gone < recent and self.peerstore is not None and self.peerstore.addrs(peer):
            return Connectedness.CanConnect
        return Connectedness.NotConnected

    def close_peer(self, peer: Any) -> None:
        """Close every connection to ``peer``."""
        for c in list(self._conns.get(_as_peer(peer), ())):
            c.close()

    # ================================================================= dialing

    def dial_peer(
        self,
        peer_id: Any,
        timeout: float | None = None,
        *,
        no_dial: bool = False,
        force_direct_dial: bool = False,
        use_transient: bool = False,
        simultaneous_connect: bool = False,
    ) -> SwarmConn:
        """Blocks the calling greenlet until a connection to ``peer_id`` exists.

        Reuses a live connection unless ``force_direct_dial``; ``no_dial`` raises
        :class:`NoConnError` instead of dialing.  ``use_transient`` allows a
        limited (relayed) connection to satisfy the call.  ``simultaneous_connect``
        (hole punching) implies a forced direct dial; role assignment is left to
        the upgrader.  ``timeout`` defaults to ``config.dial_timeout``.  Raises a
        :class:`DialError` subclass naming the cause.
        """
        peer = _as_peer(peer_id)
        if self._closed:
            raise SwarmClosedError(peer, cause=SwarmClosedError.reason)
        if peer == self.local_peer:
            raise DialSelfError(peer, "dial to self attempted", cause=DialSelfError.reason)
        force = force_direct_dial or simultaneous_connect
        if not force:
            conn = self._best_conn(peer, use_transient)
            if conn is not None:
                return conn
        if no_dial:
            raise NoConnError(peer, "no connection and dialing is not allowed", cause="no connection")
        ok, _ = self._gate("intercept_peer_dial", peer)
        if not ok:
            raise DialGatedError(peer, "gater refused the dial", cause=DialGatedError.reason)
        if self.upgrader is None:
            raise ConfigError("swarm has no upgrader (give a private key or an Upgrader)")
        if timeout is None:
            timeout = self.config.dial_timeout
        job = self._dials.get(peer)
        if job is None:
            job = _DialJob(peer, force)
            self._dials[peer] = job
            job.greenlet = self.group.spawn(self._dial_worker, job, _monotonic() + timeout)
        job.waiters += 1
        timer = gevent.Timeout(timeout)
        timer.start()
        try:
            return job.result.get()
        except gevent.Timeout as t:
            if t is not timer:  # someone else's timeout: not ours to translate
                raise
            raise DialTimeoutError(peer, f"no connection within {timeout:g}s", attempts=job.attempts,
                                   cause=P2PTimeoutError(f"dial timed out after {timeout:g}s")) from None
        finally:
            timer.close()
            job.waiters -= 1
            if job.waiters == 0 and not job.result.ready():
                # nobody waits any more: cancel the worker and its attempts
                if self._dials.get(peer) is job:
                    del self._dials[peer]
                g = job.greenlet
                if g is not None and g is not gevent.getcurrent():
                    g.kill(block=True, timeout=self.config.close_timeout)

    def _dial_worker(self, job: _DialJob, deadline: float) -> None:
        peer = job.peer
        try:
            conn = self._dial_addrs(job, deadline)
        except DialError as exc:
            if isinstance(exc, (AllDialsFailedError, DialBackoffError, DialTimeoutError)):
                self._remember(self._dial_failed, peer)
            job.result.set_exception(exc)
        except Exception as exc:  # a bug or an unexpected transport error: still fail every caller
            log.exception("dial worker for %s failed", peer)
            job.result.set_exception(AllDialsFailedError(peer, str(exc), attempts=job.attempts, cause=exc))
        else:
            job.result.set(conn)
        finally:
            if self._dials.get(peer) is job:
                del self._dials[peer]
            if not job.result.ready():  # killed
                if self._closed:
                    job.result.set_exception(SwarmClosedError(peer, cause=SwarmClosedError.reason))
                else:
                    job.result.set_exception(DialError(peer, "dial cancelled", attempts=job.attempts,
                                                       cause="cancelled"))

    def _filter_addrs(self, peer: PeerId, addrs: Iterable[Any]) -> tuple[list[Any], list[tuple[Any, Exception]]]:
        good: list[Any] = []
        rejected: list[tuple[Any, Exception]] = []
        own = None
        seen: set[Any] = set()
        for a in addrs:
            ma = self._transport_part(a)
            if ma is None:
                rejected.append((a, MultiaddrError(f"{a} has no transport part")))
                continue
            if ma in seen:
                continue
            seen.add(ma)
            info = addr_info(ma)
            if info.unspecified:
                rejected.append((ma, MultiaddrError("unspecified address")))
                continue
            if info.ip6_link_local:
                rejected.append((ma, MultiaddrError("IPv6 link-local address")))
                continue
            if own is None:
                own = set(self.listen_addresses())
                if any(_addr.is_unspecified(m) for m in own):
                    own.update(self.interface_listen_addresses())
            if ma in own:
                rejected.append((ma, DialSelfError(peer, f"{ma} is one of our listen addresses",
                                                   cause=DialSelfError.reason)))
                continue
            if self._dial_transport(ma) is None:
                rejected.append((ma, MultiaddrError(f"no transport for {ma}")))
                continue
            ok, _ = self._gate("intercept_addr_dial", peer, ma)
            if not ok:
                rejected.append((ma, DialGatedError(peer, f"gater refused {ma}", cause=DialGatedError.reason)))
                continue
            good.append(ma)
        return good, rejected

    def _transport_part(self, a: Any) -> Any:
        """``a`` without a trailing ``/p2p/<id>`` (None if nothing is left); cached."""
        cache = self._split_cache
        try:
            return cache[a]
        except KeyError:
            pass
        ma, _pid = _addr.split_p2p(a)
        if len(cache) >= 4096:
            cache.clear()
        cache[a] = ma
        return ma

    def _dial_transport(self, ma: Any) -> Any:
        """``transport_for_dial(ma)``, cached per address (cleared when a transport is added)."""
        cache = self._transport_cache
        try:
            return cache[ma]
        except KeyError:
            pass
        t = self.transport_for_dial(ma)
        if len(cache) >= 4096:
            cache.clear()
        cache[ma] = t
        return t

    def _dial_addrs(self, job: _DialJob, deadline: float) -> SwarmConn:
        peer = job.peer
        if not job.force:
            conn = self._best_conn(peer)
            if conn is not None:  # e.g. an inbound connection arrived meanwhile
                return conn
        addrs = self.peerstore.addrs(peer) if self.peerstore is not None else []
        if not addrs:
            raise NoAddressesError(peer, "no addresses", cause=NoAddressesError.reason)
        good, rejected = self._filter_addrs(peer, addrs)
        if not good:
            raise NoGoodAddressesError(peer, "no good addresses", attempts=rejected,
                                       cause=NoGoodAddressesError.reason)
        if job.force:
            ready = good
        else:
            ready = [a for a in good if not self._backoff.backoff(peer, a)]
            if not ready:
                raise DialBackoffError(
                    peer, "all addresses in dial backoff",
                    attempts=[(a, DialBackoffError(peer, f"{a} in backoff", cause=DialBackoffError.reason))
                              for a in good],
                    cause=DialBackoffError.reason,
                )
        cfg = self.config
        plan = deque(rank_addrs(ready, step_local=cfg.stagger_local, step_public=cfg.stagger_public))
        results: Queue = Queue()
        active: dict[gevent.Greenlet, Any] = {}
        attempts = job.attempts
        t0 = _monotonic()
        try:
            while plan or active:
                now = _monotonic()
                if now >= deadline:
                    raise DialTimeoutError(peer, "dial timed out", attempts=attempts,
                                           cause=P2PTimeoutError("dial deadline passed"))
                while plan and len(active) < cfg.max_dials_per_peer and (
                    t0 + plan[0][0] <= now or not active
                ):
                    _delay, a = plan.popleft()
                    g = self.group.spawn(self._dial_one, peer, a, deadline, results)
                    active[g] = a
                wait = deadline - now
                if plan and len(active) < cfg.max_dials_per_peer:
                    wait = min(wait, max(0.0, t0 + plan[0][0] - now))
                try:
                    g, a, conn, exc, cut_short = results.get(timeout=wait)
                except Empty:
                    continue
                active.pop(g, None)
                if conn is not None:
                    return self._add_conn(conn)
                attempts.append((a, exc))
                if not cut_short:
                    self._backoff.add_backoff(peer, a)
            raise AllDialsFailedError(peer, "all dials failed", attempts=attempts,
                                      cause=attempts[-1][1] if attempts else None)
        finally:
            if active:
                gevent.killall(list(active), block=True, timeout=self.config.close_timeout)
            while True:  # late winners and results nobody read
                try:
                    _g, _a, conn, _e, _c = results.get_nowait()
                except Empty:
                    break
                if conn is not None:
                    conn.close()

    def _dial_one(self, peer: PeerId, addr: Any, deadline: float, results: Queue) -> None:
        """One address: transport dial + upgrade + checks; reports on ``results``."""
        me = gevent.getcurrent()
        cfg = self.config
        per_addr = cfg.dial_timeout_local if addr_info(addr).local else cfg.dial_timeout_remote
        raw = conn = None
        cut_short = True  # a timeout caused by the overall deadline earns no backoff
        try:
            left = deadline - _monotonic()
            if left <= 0:
                raise P2PTimeoutError("dial deadline passed before the dial started")
            if not self._dial_limiter.acquire(timeout=left):
                raise P2PTimeoutError("no dial slot free before the deadline")
            try:
                now = _monotonic()
                left = deadline - now
                budget = min(per_addr, left)
                cut_short = left < per_addr
                timer = gevent.Timeout(budget)
                timer.start()
                try:
                    transport = self._dial_transport(addr)
                    if transport is None:
                        raise MultiaddrError(f"no transport for {addr}")
                    raw = transport.dial(addr, timeout=budget)
                    conn = self.upgrader.upgrade_outbound(raw, peer, timeout=max(0.001, now + budget - _monotonic()))
                except gevent.Timeout as t:
                    if t is not timer:
                        raise
                    if raw is not None:
                        raw.close()
                    raise P2PTimeoutError(f"dial {addr} timed out after {budget:g}s") from None
                finally:
                    timer.close()
            finally:
                self._dial_limiter.release()
            if conn.remote_peer != peer:
                conn.close()
                raise PeerIdMismatchError(peer, conn.remote_peer)
            self._check_upgraded(conn, Direction.Outbound)
            results.put((me, addr, conn, None, False))
        except Exception as exc:
            log.debug("dial %s at %s failed: %s", peer, addr, exc)
            results.put((me, addr, None, exc, cut_short and isinstance(exc, P2PTimeoutError)))
        except BaseException:  # killed (another address won, or the swarm closes)
            if conn is not None:
                conn.close()
            elif raw is not None:
                raw.close()
            raise

    # ================================================================= streams

    def new_stream(self, peer_id: Any, timeout: float | None = None) -> SwarmStream:
        """Blocks the calling greenlet: dial if needed, then open a stream on the best connection.

        ``timeout`` bounds the whole call; without it the dial uses
        ``config.dial_timeout`` and the stream opening ``config.new_stream_timeout``.
        Retries once on another connection if the chosen one closed meanwhile.
        """
        peer = _as_peer(peer_id)
        deadline = None if timeout is None else _monotonic() + timeout
        for attempt in (0, 1):
            left = None if deadline is None else deadline - _monotonic()
            if left is not None and left <= 0:
                raise P2PTimeoutError(f"new_stream to {peer} timed out")
            conn = self.dial_peer(peer, timeout=left)
            left = self.config.new_stream_timeout if deadline is None else max(0.0, deadline - _monotonic())
            try:
                return conn.new_stream(timeout=left)
            except ConnectionClosedError:
                self._close_conn(conn, 0)
                if attempt:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    # ================================================================= lifecycle

    def close(self) -> None:
        """Close listeners, fail dials in flight, close connections, stop every greenlet.

        Queued notifications are delivered first (for at most ``close_timeout``).
        Idempotent.
        """
        if self._closed:
            return
        self._closed = True
        cur = gevent.getcurrent()
        timeout = self.config.close_timeout
        for lst in self._listeners:
            try:
                lst.close(stop_handlers=True, timeout=timeout)
            except Exception:
                log.debug("error closing listener %r", lst, exc_info=True)
            self._notify("listen_close", lst.multiaddr)
        self._listeners = []
        jobs = list(self._dials.values())
        self._dials.clear()
        for job in jobs:
            if not job.result.ready():
                job.result.set_exception(SwarmClosedError(job.peer, cause=SwarmClosedError.reason))
        workers = [j.greenlet for j in jobs if j.greenlet is not None and j.greenlet is not cur]
        if workers:
            gevent.killall(workers, block=True, timeout=timeout)
        for sc in self.conns():
            try:
                sc.close()
            except Exception:
                log.debug("error closing %r", sc, exc_info=True)
        self._dispatcher.stop(drain_timeout=timeout)
        others = [g for g in list(self.group) if g is not cur]
        if others:
            gevent.killall(others, block=True, timeout=timeout)
        if self._emitter is not None:
            try:
                self._emitter.close()
            except Exception:  # pragma: no cover
                log.debug("error closing emitter", exc_info=True)

    def __enter__(self) -> "Swarm":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<Swarm {self.local_peer.short()} conns={len(self.conns())} "
            f"listen={[str(a) for a in self.listen_addresses()]}{' closed' if self._closed else ''}>"
        )
