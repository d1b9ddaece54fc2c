"""Connection upgrader: raw byte pipe -> secured -> muxed ``Connection``.

The order is fixed (https://github.com/libp2p/specs/blob/master/connections/README.md#upgrading-connections):
multistream-select picks a security
protocol on the raw connection, the security handshake authenticates both
peers, then a muxer is chosen, either early (inside the Noise handshake
payload) or by a second multistream-select round inside the secured channel.
The dialing side is the initiator of every step and the yamux client.

Every step shares one deadline (``timeout``); on any failure the raw
connection is closed and the original typed error propagates.

Resource accounting (go-libp2p's upgrader): the caller opens the connection's
scope with the resource manager (``open_connection``) *before* the transport dial
or right after accept, and hands it to ``upgrade_*(..., scope=...)``.  Once the
security handshake names the peer the upgrader calls ``scope.set_peer(peer)``
(a refusal closes the connection and raises ``ResourceLimitExceeded``) and gives
the muxer the connection's scope for its buffers and stream windows, so they count
against the connection's, the peer's and the system's memory limits.  From the
call on the scope belongs to the upgrade: a failed upgrade calls ``scope.done()``;
a successful one stores it as ``Connection.scope``, released by
``Connection.close()`` (the swarm releases its own connections' scopes when they
end).

The types follow the order: a :class:`~geventp2p.core.transport.RawConn` goes in,
a :class:`~geventp2p.core.sec.SecureTransport` makes a
:class:`~geventp2p.core.sec.SecureConn` of it, a
:class:`~geventp2p.core.mux.Multiplexer` makes a
:class:`~geventp2p.core.mux.MuxedConn` of that, and :class:`Connection` holds both.

Pipelined security negotiation, and why no wrapper
--------------------------------------------------
With one security protocol configured the dialer does not wait for the
multistream answer: header + proposal leave in the same write as the first
handshake message, and the echo is checked before the handshake reply is read
(:func:`~geventp2p.net.multistream.select_lazy`, go's lazy client).  The listener
holds back its header + echo when the dialer pipelined and sends them in the same
write as its first handshake message
(:func:`~geventp2p.net.multistream.handle_deferred`).

Where that pending state lives was a choice between (a) two slow-path fields of
the raw connection itself (a pending prefix and a pending echo check, as a muxed
stream has; :class:`~geventp2p.net.rawconn.RawConn`) and (b) a short-lived
negotiating object that the security handshake runs over, after which the secure
connection talks to the bare raw connection.  We chose (a): it is the simpler
one.  The security transports stay unaware of multistream (with (b) each would
have to be told to drop the negotiating object and keep the raw connection under
it, a change to the ``SecureTransport`` contract, or the object would stay in
the data path), the muxed stream already works the same way, and all it costs
after the handshake is one flag test per read and write of the raw connection.
Nothing else sits between the secure connection and the socket.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Sequence

from ..core.mux import Direction, Multiplexer, MuxedConn
from ..core.rcmgr import NULL_SCOPE, ConnManagementScope, ResourceScope
from ..core.sec import SecureConn, SecureTransport
from ..core.transport import RawConn
from ..exceptions import ConfigError, NegotiationError, PeerIdMismatchError
from . import multistream
from ._deadline import Deadline
from .rawconn import RawConn as _RawConnBase

if TYPE_CHECKING:
    from ..core.peer import PeerId

__all__ = ["Connection", "Upgrader", "UpgraderConfig", "INBOUND", "OUTBOUND"]

log = logging.getLogger(__name__)

INBOUND, OUTBOUND = Direction.INBOUND, Direction.OUTBOUND


@dataclass(frozen=True)
class UpgraderConfig:
    """Timeouts for the upgrade of one connection (seconds)."""

    #: Whole upgrade (security + muxer), as go's 15 s per-address budget.
    upgrade_timeout: float = 15.0

    def __post_init__(self) -> None:
        if not self.upgrade_timeout > 0:
            raise ConfigError("upgrade_timeout must be > 0")


class Connection:
    """A secured, multiplexed connection to one remote peer.

    Knows both peers, the remote public key, the addresses, its direction,
    the security and muxer protocols and when it opened.  Streams come from
    ``new_stream`` (outbound) and ``accept_stream`` (inbound); each stream's
    ``conn`` attribute points back here.  ``scope`` is the connection's resource
    scope (``NULL_SCOPE`` when none was given); ``close()`` releases it.
    """

    def __init__(self, muxed: MuxedConn, secured: SecureConn, *, direction: Direction, security: str, muxer: str,
                 scope: Any = NULL_SCOPE) -> None:
        self.muxed: Any = muxed  # the muxers' conns are not MuxedConns yet (tests/core KNOWN_GAPS)
        self.scope: Any = scope
        self.secured = secured
        self.direction = direction
        self.security = security
        self.muxer = muxer
        self.opened_at = time.time()
        self.local_peer = secured.local_peer
        self.remote_peer = secured.remote_peer
        self.remote_public_key = secured.remote_public_key
        self.local_addr = secured.local_addr
        self.remote_addr = secured.remote_addr

    # -- streams
    def new_stream(self, timeout: float | None = None):
        """Blocks the calling greenlet until a new outbound stream is open."""
        stream = self.muxed.open_stream(timeout=timeout)
        stream.conn = self
        return stream

    def accept_stream(self, timeout: float | None = None):
        """Blocks the calling greenlet until the remote opens a stream.

        Raises ``ConnectionClosedError`` once the connection is over.
        """
        stream = self.muxed.accept_stream(timeout=timeout)
        stream.conn = self
        return stream

    @property
    def num_streams(self) -> int:
        return self.muxed.num_streams

    # -- lifecycle
    @property
    def closed(self) -> bool:
        return self.muxed.closed

    def close(self) -> None:
        """Close the muxed session and the underlying connection (idempotent)."""
        try:
            self.muxed.close()
        finally:
            try:
                self.secured.close()
            finally:
                self._release_scope()

    def _release_scope(self) -> None:
        """Call the resource scope's ``done()``, once (later calls do nothing)."""
        scope = self.scope
        if scope is not NULL_SCOPE:
            self.scope = NULL_SCOPE
            scope.done()

    def wait_closed(self, timeout: float | None = None) -> bool:
        return self.muxed.wait_closed(timeout=timeout)

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<Connection {self.direction} {self.remote_peer} {self.remote_addr} "
            f"{self.security}+{self.muxer}{' closed' if self.closed else ''}>"
        )


class Upgrader:
    """Turns raw connections into ``Connection`` objects.

    ``security`` and ``muxers`` are lists of transports/muxers in order of
    preference; each has a ``PROTOCOL_ID``.
    """

    def __init__(
        self,
        security: Sequence[SecureTransport],
        muxers: Sequence[Multiplexer],
        *,
        scope: ResourceScope = NULL_SCOPE,
        config: UpgraderConfig | None = None,
    ) -> None:
        if not security:
            raise ConfigError("at least one security transport is required")
        if not muxers:
            raise ConfigError("at least one muxer is required")
        self.security = {s.PROTOCOL_ID: s for s in security}
        self.muxers = {m.PROTOCOL_ID: m for m in muxers}
        if len(self.security) != len(security) or len(self.muxers) != len(muxers):
            raise ConfigError("duplicate protocol ids in security or muxer lists")
        self._security_order = [s.PROTOCOL_ID for s in security]
        self._muxer_order = [m.PROTOCOL_ID for m in muxers]
        self.scope = scope
        self.config = config or UpgraderConfig()

    def upgrade_outbound(self, raw: RawConn, remote_peer: Optional[PeerId] = None, timeout: float | None = None,
                         *, scope: Optional[ConnManagementScope] = None) -> Connection:
        """Blocks the calling greenlet while it secures and muxes a dialed connection.

        ``scope``: the connection's resource scope (see the module docstring); the
        upgrade owns it from the call on."""
        return self._upgrade(raw, remote_peer, timeout, scope, outbound=True)

    def upgrade_inbound(self, raw: RawConn, timeout: float | None = None, *,
                        scope: Optional[ConnManagementScope] = None) -> Connection:
        """Blocks the calling greenlet while it secures and muxes an accepted connection.

        ``scope``: as for :meth:`upgrade_outbound`."""
        return self._upgrade(raw, None, timeout, scope, outbound=False)

    def _upgrade(self, raw: RawConn, remote_peer: Optional[PeerId], timeout: float | None,
                 conn_scope: Optional[ConnManagementScope], *, outbound: bool) -> Connection:
        if getattr(raw, "secure_muxed", False):  # QUIC: secured and muxed by the transport
            return self._adopt(raw, remote_peer, conn_scope, outbound)
        deadline = Deadline(self.config.upgrade_timeout if timeout is None else timeout)
        secured: Optional[SecureConn] = None
        try:
            secured, sec_id = self._secure(raw, remote_peer, deadline, outbound)
            mux_scope: Any = self.scope
            if conn_scope is not None:
                conn_scope.set_peer(secured.remote_peer)  # ResourceLimitExceeded: the peer is full
                mux_scope = conn_scope
            mux_id = secured.early_muxer
            if mux_id not in self.muxers:
                if mux_id is not None:
                    log.debug("early muxer %s not configured here; negotiating", mux_id)
                deadline.check("connection upgrade (before muxer negotiation)")
                if outbound:
                    mux_id = multistream.select_one_of(secured, self._muxer_order, timeout=deadline.left())
                else:
                    mux_id = multistream.handle(secured, self._muxer_order, timeout=deadline.left())
            if mux_id is None or mux_id not in self.muxers:  # a misbehaving negotiator; never trust it blindly
                raise NegotiationError(f"negotiated unknown muxer {mux_id!r}")
            muxer: Any = self.muxers[mux_id]  # yamux/mplex name new_conn "create" (tests/core KNOWN_GAPS)
            muxed: MuxedConn = muxer.new_conn(secured, is_initiator=outbound, scope=mux_scope)
        except BaseException:
            try:
                (secured or raw).close()
                raw.close()
            finally:
                if conn_scope is not None:
                    conn_scope.done()
            raise
        conn = Connection(
            muxed, secured, direction=OUTBOUND if outbound else INBOUND, security=sec_id, muxer=mux_id,
            scope=NULL_SCOPE if conn_scope is None else conn_scope,
        )
        log.debug("upgraded %r", conn)
        return conn

    def _adopt(self, raw: Any, remote_peer: Optional[PeerId], conn_scope: Optional[ConnManagementScope],
               outbound: bool) -> Connection:
        """A connection the transport already secured and muxed (``raw.muxed``; QUIC):
        check the expected peer, charge the scope, wrap it."""
        try:
            if remote_peer is not None and raw.remote_peer != remote_peer:
                raise PeerIdMismatchError(remote_peer, raw.remote_peer)
            if conn_scope is not None:
                conn_scope.set_peer(raw.remote_peer)  # ResourceLimitExceeded: the peer is full
                raw.muxed.scope = conn_scope
        except BaseException:
            try:
                raw.close()
            finally:
                if conn_scope is not None:
                    conn_scope.done()
            raise
        return Connection(raw.muxed, raw, direction=OUTBOUND if outbound else INBOUND,
                          security=raw.SECURITY, muxer=raw.MUXER,
                          scope=NULL_SCOPE if conn_scope is None else conn_scope)

    def _secure(self, raw: RawConn, remote_peer: Optional[PeerId], deadline: Deadline,
                outbound: bool) -> tuple[SecureConn, str]:
        """Blocks the calling greenlet: multistream picks the security protocol, its handshake runs."""
        deadline.check("connection upgrade (before security negotiation)")
        if outbound and len(self._security_order) == 1 and isinstance(raw, _RawConnBase):
            # one choice: pipeline header + proposal with the first handshake message
            # (the echo is checked before the handshake reply; saves a round trip)
            sec_id = self._security_order[0]
            multistream.select_lazy(raw, sec_id, deadline.left())
            return self.security[sec_id].secure_outbound(raw, remote_peer, timeout=deadline.left()), sec_id
        if outbound:
            sec_id = multistream.select_one_of(raw, self._security_order, timeout=deadline.left())
            deadline.check("connection upgrade (before the security handshake)")
            return self.security[sec_id].secure_outbound(raw, remote_peer, timeout=deadline.left()), sec_id
        if isinstance(raw, _RawConnBase):
            # a pipelining dialer (lazy select + first handshake message in one burst) gets our
            # header + echo with the handshake reply, held as raw's pending prefix: one segment
            sec_id = multistream.handle_deferred(raw, self._security_order, timeout=deadline.left())
        else:
            sec_id = multistream.handle(raw, self._security_order, timeout=deadline.left())
        deadline.check("connection upgrade (before the security handshake)")
        return self.security[sec_id].secure_inbound(raw, timeout=deadline.left()), sec_id
