"""Connection upgrader: raw byte pipe -> secured -> muxed ``Connection``.

The order is fixed (https://github.com/libp2p/specs/blob/master/connections/README.md#upgrading-connections):
multistream-select picks a security
protocol on the raw connection, the security handshake authenticates both
peers, then a muxer is chosen, either early (inside the Noise handshake
payload) or by a second multistream-select round inside the secured channel.
The dialing side is the initiator of every step and the yamux client.

Every step shares one deadline (``timeout``); on any failure the raw
connection is closed and the original typed error propagates.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Sequence

from ..core.rcmgr import NULL_SCOPE
from ..exceptions import ConfigError, NegotiationError, P2PTimeoutError
from . import multistream

__all__ = ["Connection", "Upgrader", "UpgraderConfig", "INBOUND", "OUTBOUND"]

log = logging.getLogger(__name__)

INBOUND = "inbound"
OUTBOUND = "outbound"


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
    ``conn`` attribute points back here.
    """

    def __init__(self, muxed: Any, secured: Any, *, direction: str, security: str, muxer: str) -> None:
        self.muxed = muxed
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
            self.secured.close()

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


class _Deadline:
    __slots__ = ("at",)

    def __init__(self, timeout: float | None) -> None:
        self.at = None if timeout is None else time.monotonic() + timeout

    def left(self, step: str) -> float | None:
        if self.at is None:
            return None
        left = self.at - time.monotonic()
        if left <= 0:
            raise P2PTimeoutError(f"connection upgrade timed out before {step}")
        return left


class Upgrader:
    """Turns raw connections into ``Connection`` objects.

    ``security`` and ``muxers`` are lists of transports/muxers in order of
    preference; each has a ``PROTOCOL_ID``.
    """

    def __init__(
        self,
        security: Sequence[Any],
        muxers: Sequence[Any],
        *,
        scope: Any = NULL_SCOPE,
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

    def upgrade_outbound(self, raw: Any, remote_peer: Any = None, timeout: float | None = None) -> Connection:
        """Blocks the calling greenlet while it secures and muxes a dialed connection."""
        return self._upgrade(raw, remote_peer, timeout, outbound=True)

    def upgrade_inbound(self, raw: Any, timeout: float | None = None) -> Connection:
        """Blocks the calling greenlet while it secures and muxes an accepted connection."""
        return self._upgrade(raw, None, timeout, outbound=False)

    def _upgrade(self, raw: Any, remote_peer: Any, timeout: float | None, *, outbound: bool) -> Connection:
        deadline = _Deadline(self.config.upgrade_timeout if timeout is None else timeout)
        secured = None
        try:
            if outbound and len(self._security_order) == 1:
                # one choice: pipeline header + proposal with the first handshake message
                # (the echo is checked before the handshake reply; saves a round trip)
                sec_id = self._security_order[0]
                lazy = multistream.LazyConn(raw, sec_id, deadline.left("security negotiation"))
                secured = self.security[sec_id].secure_outbound(lazy, remote_peer, timeout=deadline.left("handshake"))
            elif outbound:
                sec_id = multistream.select_one_of(raw, self._security_order, timeout=deadline.left("security negotiation"))
                secured = self.security[sec_id].secure_outbound(raw, remote_peer, timeout=deadline.left("handshake"))
            else:
                # a pipelining dialer (lazy select + first handshake message in one burst) gets
                # our header + echo together with the handshake reply: one segment, not three
                sec_id, pending = multistream.handle_deferred(
                    raw, self._security_order, timeout=deadline.left("security negotiation"))
                chan = multistream.PrefixedConn(raw, pending) if pending else raw
                secured = self.security[sec_id].secure_inbound(chan, timeout=deadline.left("handshake"))
            mux_id = getattr(secured, "early_muxer", None)
            if mux_id not in self.muxers:
                if mux_id is not None:
                    log.debug("early muxer %s not configured here; negotiating", mux_id)
                if outbound:
                    mux_id = multistream.select_one_of(secured, self._muxer_order, timeout=deadline.left("muxer negotiation"))
                else:
                    mux_id = multistream.handle(secured, self._muxer_order, timeout=deadline.left("muxer negotiation"))
            if mux_id is None or mux_id not in self.muxers:  # a misbehaving negotiator; never trust it blindly
                raise NegotiationError(f"negotiated unknown muxer {mux_id!r}")
            muxed = self.muxers[mux_id].create(secured, is_initiator=outbound, scope=self.scope)
        except BaseException:
            (secured or raw).close()
            raw.close()
            raise
        conn = Connection(
            muxed, secured, direction=OUTBOUND if outbound else INBOUND, security=sec_id, muxer=mux_id
        )
        log.debug("upgraded %r", conn)
        return conn
