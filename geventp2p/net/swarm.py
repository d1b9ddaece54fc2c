"""The swarm: connection table, listeners, notifications, public API.

Modelled on go-libp2p ``p2p/net/swarm``, in blocking style, over three modules:

* this one: the :class:`Swarm` (transports, listeners, the connection table, the
  gater, notifications, ``dial_peer``/``new_stream``, lifecycle);
* :mod:`geventp2p.net.swarm_conn`: :class:`SwarmConn` and the bookkeeping of its
  streams (opening, the accept loop, ``closed_stream`` through each stream's
  state-change hook);
* :mod:`geventp2p.net.dial_worker` (with :mod:`geventp2p.net.swarm_dial`): one dial
  job per peer, address filtering, ranked parallel dialing, backoff.

``dial_peer(peer)`` returns a live connection, reusing one if it exists.
Inbound connections are upgraded on the listener's handler greenlet, then go
through the gater, then join the table.  Each inbound stream goes to the stream
handler (``set_stream_handler``) on its own greenlet.  Notifiees and
``EvtPeerConnectednessChanged`` are delivered from one dispatcher greenlet (see
:mod:`geventp2p.net.notify`), never from a reader.

Resources (go-libp2p's resource manager, ``swarm.resource_manager``; a
:class:`~geventp2p.core.rcmgr.NullResourceManager` unless one is given): every
connection is charged before anything else happens to it, an accepted one right
after ``accept`` (before the handshake), a dialed one before the transport dial.
A refused inbound connection is closed at once (counted in ``inbound_counts``);
a refused dial fails that address with ``ResourceLimitExceeded`` (no dial
backoff), and a dial whose every address was refused so raises
:class:`~geventp2p.exceptions.DialResourceLimitError`.  The upgrade moves the
connection to its peer's scope; the swarm releases the scope when the connection
ends.  Streams are charged in :mod:`geventp2p.net.swarm_conn`.

Handshakes in flight are bounded by the resource manager's transient scope and
per-IP limits, not by a fixed count.  An accepted connection must send its first
byte within ``inbound_first_byte_timeout`` (5 s) and finish the upgrade within
``inbound_upgrade_timeout`` (15 s).  When the transient (or system) connection
limit refuses a new arrival, the oldest handshake that has not sent a byte yet is
dropped to make room, so a crowd of silent sockets cannot lock out real peers.
Until that first byte the listener sends nothing, not even its multistream header
(the dialer speaks first in multistream-select, so no dialer waits for it; the
header then leaves with the listener's first handshake message).

Streams handed out (``new_stream``, the stream handler) are the muxer's own
:class:`~geventp2p.net.stream.Stream` objects, with ``conn`` set to the
:class:`SwarmConn`.

Everything the swarm spawns lives in ``swarm.group``; ``close()`` kills it.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import gevent

from geventp2p.core import addr as _addr
from geventp2p.core.event import Connectedness, EvtPeerConnectednessChanged
from geventp2p.core.mux import Direction
from geventp2p.core.rcmgr import ConnManagementScope, NullResourceManager, ResourceManager
from geventp2p.core.transport import RawConn
from geventp2p.core.peer import PeerId
from geventp2p.exceptions import (
    ConfigError,
    ConnectionClosedError,
    DialGatedError,
    DialSelfError,
    MultiaddrError,
    NoConnError,
    P2PError,
    P2PTimeoutError,
    ResourceLimitExceeded,
    SwarmClosedError,
    TransportError,
)
from geventp2p.net._deadline import Deadline
from geventp2p.net._workers import worker_group
from geventp2p.net.addrutil import interface_addresses
from geventp2p.net.bandwidth import BandwidthCounter
from geventp2p.net.dial_worker import DialJob, DialSync
from geventp2p.net.notify import NOTIFICATIONS, Dispatcher, Notifiee, NotifyBundle, wants
from geventp2p.net.stream import Stream
from geventp2p.net.swarm_conn import SwarmConn, close_muxed
from geventp2p.net.swarm_dial import DialBackoff
from geventp2p.net.upgrader import Connection

__all__ = [
    "Swarm",
    "SwarmConfig",
    "SwarmConn",
    "SwarmStream",
    "Stream",
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

#: How much the first read of an accepted connection may take (pushed back for the upgrade).
_FIRST_READ = 4096

_monotonic = time.monotonic


@dataclass(frozen=True)
class SwarmConfig:
    """Swarm tuning (seconds / counts); defaults follow go-libp2p's swarm."""

    #: Whole ``dial_peer`` when the caller gives no timeout.
    dial_timeout: float = 60.0
    #: One address (transport dial + upgrade) when the address is local (loopback, private, memory).
    dial_timeout_local: float = 5.0
    #: One address otherwise.
    dial_timeout_remote: float = 15.0
    #: Opening a stream in ``new_stream`` when the caller gives no timeout.
    new_stream_timeout: float = 15.0
    #: Accepted connection: from accept to the end of the upgrade (go: 15 s).
    inbound_upgrade_timeout: float = 15.0
    #: Accepted connection: from accept to its first byte (a silent socket is closed then).
    inbound_first_byte_timeout: float = 5.0
    #: Deprecated and ignored: handshakes in flight are bounded by the resource
    #: manager's transient scope and per-IP limits (silent ones are dropped first).
    max_inbound_upgrades: int | None = None
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
    #: Rank QUIC addresses before TCP ones, as go does.  QUIC runs on aioquic's
    #: pure-Python packet handling here and moves far less than TCP + Noise + yamux
    #: (see the README's QUIC figures): set False to dial TCP first (bulk transfers).
    prefer_quic: bool = True
    #: Notification backlog that triggers a warning (doubles after each warning).
    notify_warn_backlog: int = 1024
    #: A notifiee call longer than this is logged.
    slow_notifiee_threshold: float = 1.0
    #: How long ``close()`` waits for pending notifications and greenlets.
    close_timeout: float = 2.0

    def __post_init__(self) -> None:
        for name in ("dial_timeout", "dial_timeout_local", "dial_timeout_remote", "new_stream_timeout",
                     "inbound_upgrade_timeout", "inbound_first_byte_timeout", "close_timeout",
                     "slow_notifiee_threshold"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"SwarmConfig.{name} must be > 0")
        for name in ("max_concurrent_dials", "max_dials_per_peer", "max_inbound_upgrades", "notify_warn_backlog"):
            v = getattr(self, name)
            if v is None and name == "max_inbound_upgrades":
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"SwarmConfig.{name} must be an int >= 1")
        if self.max_inbound_upgrades is not None:
            warnings.warn(
                "SwarmConfig.max_inbound_upgrades is deprecated and ignored: handshakes in flight are "
                "bounded by the resource manager (transient scope, per-IP limits)",
                DeprecationWarning, stacklevel=3,
            )
        if self.stagger_local < 0 or self.stagger_public < 0:
            raise ConfigError("SwarmConfig stagger delays must be >= 0")
        if self.backoff_base < 0 or self.backoff_coef < 0 or self.backoff_max < self.backoff_base:
            raise ConfigError("SwarmConfig backoff needs 0 <= base <= max and coef >= 0")


class _Handshake:
    """An accepted connection that has not sent its first byte yet (may be dropped for room)."""

    __slots__ = ("raw", "scope", "dropped")

    def __init__(self, raw: RawConn, scope: ConnManagementScope) -> None:
        self.raw = raw
        self.scope = scope
        self.dropped = False


def _abort(raw: Any) -> None:
    """Close ``raw`` at once; a socket gets a reset, so nothing lingers in TIME_WAIT."""
    abort = getattr(raw, "abort", None)
    try:
        if abort is not None:
            abort()
        else:
            raw.close()
    except Exception:  # pragma: no cover - closing must not fail the caller
        log.debug("error closing %r", raw, exc_info=True)


class ConnMultiaddrs(NamedTuple):
    """The two ends of a connection, as given to the gater."""

    local_addr: Any
    remote_addr: Any


#: The streams a swarm hands out are muxer streams; the old name stays importable.
SwarmStream = Stream


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
    ``resource_manager`` (``swarm.resource_manager``) charges connections, file
    descriptors and streams; None means a :class:`NullResourceManager` (no limits).
    ``inbound_counts`` counts inbound connections closed before joining the table,
    by reason (``refused``, ``dropped_silent``, ``silent``, ``gated``, ``failed``).
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
        resource_manager: ResourceManager | None = None,
    ) -> None:
        if config is None:
            config = SwarmConfig()
        elif not isinstance(config, SwarmConfig):
            raise ConfigError(f"expected SwarmConfig, got {type(config).__name__}")
        self.config = config
        self.peerstore = peerstore
        self.resource_manager: Any = NullResourceManager() if resource_manager is None else resource_manager
        self.inbound_counts: Counter[str] = Counter()
        # accepted connections still waiting for their first byte, oldest first
        self._silent: dict[_Handshake, None] = {}
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
        #: Told of each outbound dial attempt: ``completed_handshake(seconds, conn)`` /
        #: ``failed_dialing(addr, exc)`` (go ``MetricsTracer``; :mod:`geventp2p.metrics`).
        self.metrics_tracer: Any = None
        self._clock = clock
        self._transports: list[Any] = []
        self._dialer = DialSync(self)
        for t in transports:
            self.add_transport(t)
        self._backoff = DialBackoff(clock, base=config.backoff_base, coef=config.backoff_coef,
                                    max_backoff=config.backoff_max)
        self.group = worker_group()
        self._dispatcher = Dispatcher(self.group.spawn, name=f"swarm {self.local_peer.short()}",
                                      warn_backlog=config.notify_warn_backlog,
                                      slow_threshold=config.slow_notifiee_threshold)
        self._listeners: list[Any] = []
        self._conns: dict[PeerId, list[SwarmConn]] = {}
        self._notifiees: list[Any] = []
        self._wanted: frozenset[str] = frozenset()
        self._stream_handler: Callable[[Stream], None] | None = None
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
        self._dialer.transports_changed()

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

    def set_stream_handler(self, handler: Callable[[Stream], None] | None) -> None:
        """``handler(stream)`` runs on its own greenlet for every inbound stream.

        Without a handler inbound streams are reset.  A handler that raises has
        its stream reset.
        """
        if handler is not None and not callable(handler):
            raise TypeError("stream handler must be callable")
        self._stream_handler = handler

    @property
    def stream_handler(self) -> Callable[[Stream], None] | None:
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
                close_muxed(conn.muxed, reason or CONN_GATED)
            finally:
                try:
                    conn.secured.close()
                finally:
                    conn._release_scope()
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
        if getattr(t, "charges_inbound", False):  # (QUIC) charges each connection before its handshake
            lst = t.listen(ma, self._handle_inbound, resource_manager=self.resource_manager)
        else:
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

    def _handle_inbound(self, raw: RawConn) -> None:
        """Listener handler (on the listener's greenlet): gate, charge, first byte, upgrade, gate, add."""
        if self._closed:
            raw.close()
            return
        addrs = ConnMultiaddrs(raw.local_addr, raw.remote_addr)
        ok, _ = self._gate("intercept_accept", addrs)
        if not ok:
            log.debug("gater refused inbound connection from %s", addrs.remote_addr)
            self.inbound_counts["gated"] += 1
            raw.close()
            return
        deadline = Deadline(self.config.inbound_upgrade_timeout)
        scope = self._open_inbound_scope(raw)
        if scope is None:
            return
        if not getattr(raw, "secure_muxed", False) and not self._first_byte(raw, scope, deadline):
            return  # (QUIC: the handshake already happened)
        try:
            conn = self.upgrader.upgrade_inbound(raw, timeout=max(0.001, deadline.left() or 0.0), scope=scope)
        except P2PError as exc:
            log.debug("inbound upgrade from %s failed: %s", addrs.remote_addr, exc)
            self.inbound_counts["failed"] += 1
            return  # the upgrader closed raw and released the scope
        if conn.remote_peer == self.local_peer:
            log.debug("inbound connection from ourselves (%s); closing", addrs.remote_addr)
            conn.close()
            return
        try:
            self._check_upgraded(conn, Direction.INBOUND)  # the gater may switch greenlets
        except P2PError as exc:
            log.debug("inbound connection from %s refused: %s", conn.remote_peer, exc)
            return
        except BaseException:  # killed (the swarm closes): the connection and its scope go too
            conn.close()
            raise
        try:
            self._add_conn(conn)
        except P2PError as exc:
            log.debug("inbound connection from %s refused: %s", conn.remote_peer, exc)

    def _open_inbound_scope(self, raw: RawConn) -> ConnManagementScope | None:
        """The accepted connection's resource scope, or None (``raw`` closed) if refused.

        A transient or system connection/fd refusal first drops the oldest handshake
        still waiting for its first byte, then asks again.  A connection the transport
        already charged (QUIC, ``take_scope``) keeps that scope."""
        take = getattr(raw, "take_scope", None)
        if take is not None:
            charged: ConnManagementScope | None = take()
            if charged is not None:
                return charged
        use_fd = callable(getattr(raw, "fileno", None))
        endpoint = raw.remote_addr
        rcmgr = self.resource_manager
        drops = 0
        while True:
            try:
                scope: ConnManagementScope = rcmgr.open_connection(Direction.INBOUND, use_fd, endpoint)
                return scope
            except ResourceLimitExceeded as exc:
                # one drop frees a connection and an fd in transient and system; the bound
                # keeps a refusal the silent handshakes do not cause from dropping them all
                if drops < 4 and exc.scope.endswith(("transient", "system")) \
                        and exc.resource.startswith(("conns", "fd")) and self._drop_oldest_silent():
                    drops += 1
                    continue
                log.debug("inbound connection from %s refused: %s", endpoint, exc)
                self.inbound_counts["refused"] += 1
                _abort(raw)
                return None

    def _drop_oldest_silent(self) -> bool:
        """Close the oldest accepted connection that has sent nothing yet and release its scope."""
        for hs in self._silent:
            break
        else:
            return False
        del self._silent[hs]
        hs.dropped = True
        self.inbound_counts["dropped_silent"] += 1
        log.debug("dropping silent inbound connection from %s to make room", hs.raw.remote_addr)
        _abort(hs.raw)
        hs.scope.done()
        return True

    def _first_byte(self, raw: RawConn, scope: ConnManagementScope, deadline: Deadline) -> bool:
        """Blocks the calling greenlet until ``raw`` sends its first byte (pushed back for the
        upgrade): True.  False if it closed, failed, timed out or was dropped meanwhile; then
        ``raw`` is closed and ``scope`` released (once)."""
        hs = _Handshake(raw, scope)
        self._silent[hs] = None
        first = b""
        why = "silent"
        try:
            first = raw.read(_FIRST_READ, timeout=deadline.left(self.config.inbound_first_byte_timeout))
        except (P2PError, OSError) as exc:
            if not isinstance(exc, P2PTimeoutError):
                why = "failed"
            log.debug("inbound connection from %s: no first byte: %s", raw.remote_addr, exc)
        finally:
            if hs.dropped:  # the dropper closed raw and released the scope
                first = b""
            else:
                del self._silent[hs]
                if not first:
                    self.inbound_counts[why] += 1
                    try:
                        _abort(raw)
                    finally:
                        scope.done()
        if first:
            raw.unread(first)
            return True
        return False

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
        sc._serve()
        return sc

    def _remove_conn(self, sc: SwarmConn) -> None:
        if sc._removed:
            return
        sc._removed = True
        sc._release_scope()
        peer = sc.remote_peer
        lst = self._conns.get(peer)
        if lst is not None:
            try:
                lst.remove(sc)
            except ValueError:
                pass
            if not lst:
                del self._conns[peer]
        sc._forget_streams()
        log.debug("swarm %s: connection down %r", self.local_peer.short(), sc)
        self._notify("disconnected", sc)
        if not self._conns.get(peer):
            self._remember(self._disconnected_at, peer)
            self._connectedness_changed(peer, Connectedness.NotConnected)

    def _close_conn(self, sc: SwarmConn, code: int) -> None:
        try:
            try:
                close_muxed(sc.muxed, code)
            finally:
                sc.secured.close()
        finally:
            self._remove_conn(sc)

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

    def _remember(self, table: dict[PeerId, float], peer: PeerId) -> None:
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
        return self._dialer.dial(peer, force, timeout)

    @property
    def _dials(self) -> dict[PeerId, DialJob]:
        """Dial jobs in flight, by peer."""
        return self._dialer.jobs

    # ================================================================= streams

    def new_stream(self, peer_id: Any, timeout: float | None = None) -> Stream:
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
        self._dialer.close()
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
