"""Stream multiplexer contracts, the one ``Direction`` enum, and the libp2p error codes.

The last step of the upgrade order (raw -> secure -> muxed): a
:class:`Multiplexer` turns a :class:`~geventp2p.core.sec.SecureConn` into a
:class:`MuxedConn` that opens and accepts :class:`MuxedStream` objects.  See
https://github.com/libp2p/specs/blob/master/yamux/README.md and
https://github.com/libp2p/specs/blob/master/mplex/README.md.

Stream semantics (all muxers): ``read`` returns ``b""`` at EOF (remote FIN);
after a reset reads and writes raise ``StreamResetError`` (``.error_code``,
``.remote``); use after ``close_read``/``close_write`` raises
``StreamClosedError``; a passed deadline or ``timeout`` raises ``P2PTimeoutError``.

Error codes are the values go-libp2p puts on the wire (``core/network/mux.go``
for streams, ``core/network/conn.go`` for connections), carried by yamux
RST/GoAway; see https://github.com/libp2p/specs/blob/master/error-codes/README.md.

Structural ``typing.Protocol`` types; no I/O and no gevent here.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Callable, Protocol, runtime_checkable

if TYPE_CHECKING:
    from geventp2p.core.rcmgr import ResourceScope
    from geventp2p.core.sec import SecureConn
    from geventp2p.core.transport import BytesLike

__all__ = [
    "Direction",
    "StreamErrorCode",
    "ConnErrorCode",
    "MuxedStream",
    "MuxedConn",
    "Multiplexer",
]


class Direction(str, enum.Enum):
    """Who opened a connection or stream (go ``network.Direction``).

    A ``str`` enum: ``Direction.INBOUND == "inbound"`` and it hashes like that
    string, so code and dict keys written with the old strings keep working.
    ``str()``/``format()`` give the value.  The CamelCase aliases match the names
    ``core.event.Direction`` used before.
    """

    UNKNOWN = "unknown"
    INBOUND = "inbound"
    OUTBOUND = "outbound"

    # aliases (same members), for code written against the former IntEnum names
    Unknown = "unknown"
    Inbound = "inbound"
    Outbound = "outbound"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    def __hash__(self) -> int:
        return hash(self.value)

    @classmethod
    def parse(cls, value: Direction | str | int) -> Direction:
        """A Direction from itself, its string (any case) or go's number (0, 1, 2).

        Raises ``ValueError`` for anything else.
        """
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            try:
                return cls(value.strip().lower())
            except ValueError:
                raise ValueError(f"unknown direction {value!r}") from None
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(_BY_GO_NUMBER):
            return _BY_GO_NUMBER[value]
        raise ValueError(f"unknown direction {value!r}")


_BY_GO_NUMBER = (Direction.UNKNOWN, Direction.INBOUND, Direction.OUTBOUND)


class StreamErrorCode(enum.IntEnum):
    """Stream reset codes (go ``network.StreamErrorCode``, ``core/network/mux.go``)."""

    NO_ERROR = 0
    PROTOCOL_NEGOTIATION_FAILED = 0x1001
    RESOURCE_LIMIT_EXCEEDED = 0x1002
    RATE_LIMITED = 0x1003
    PROTOCOL_VIOLATION = 0x1004
    SUPPLANTED = 0x1005
    GARBAGE_COLLECTED = 0x1006
    SHUTDOWN = 0x1007
    GATED = 0x1008
    CODE_OUT_OF_RANGE = 0x1009


class ConnErrorCode(enum.IntEnum):
    """Connection close codes (go ``network.ConnErrorCode``, ``core/network/conn.go``)."""

    NO_ERROR = 0
    PROTOCOL_NEGOTIATION_FAILED = 0x1000
    RESOURCE_LIMIT_EXCEEDED = 0x1001
    RATE_LIMITED = 0x1002
    PROTOCOL_VIOLATION = 0x1003
    SUPPLANTED = 0x1004
    GARBAGE_COLLECTED = 0x1005
    SHUTDOWN = 0x1006
    GATED = 0x1007
    CODE_OUT_OF_RANGE = 0x1008


class MuxedStream(Protocol):
    """One bidirectional stream inside a muxed connection.

    Any number of greenlets may call it; each ``write`` is contiguous on the wire.
    """

    @property
    def id(self) -> int:
        """The muxer's stream id."""

    @property
    def direction(self) -> Direction:
        """``OUTBOUND`` if we opened it."""

    def read(self, n: int = -1, timeout: float | None = None) -> bytes:
        """Blocks until data, EOF, reset or deadline; up to ``n`` buffered bytes
        (all buffered if ``n < 0``), socket ``recv`` style; ``b""`` at EOF."""

    def read_exactly(self, n: int, timeout: float | None = None) -> bytes:
        """Blocks until ``n`` bytes; ``IncompleteReadError`` (``.partial``) on early EOF."""

    def unread(self, data: bytes) -> None:
        """Push ``data`` back in front of the receive buffer.  Never blocks."""

    def write(self, data: BytesLike, timeout: float | None = None) -> None:
        """Blocks while the muxer applies back-pressure until all of ``data`` is queued.

        On timeout a prefix may have been sent.  ``StreamClosedError`` after
        ``close_write``; ``StreamResetError`` after a reset.
        """

    def close_write(self) -> None:
        """Half-close (FIN); idempotent; ``StreamResetError`` if reset.  Never blocks."""

    def close_read(self) -> None:
        """Discard buffered and future data; later reads raise ``StreamClosedError``."""

    def close(self) -> None:
        """``close_write()`` + ``close_read()``; never raises.  Never blocks."""

    def reset(self, code: int = 0) -> None:
        """Abort both ways, sending RST with ``code`` (a :class:`StreamErrorCode`).  Never blocks."""

    def set_deadline(self, t: float | None) -> None:
        """Absolute ``time.monotonic()`` deadline for reads and writes (``None`` clears)."""

    def set_read_deadline(self, t: float | None) -> None:
        """Deadline for reads only."""

    def set_write_deadline(self, t: float | None) -> None:
        """Deadline for writes only."""


class MuxedConn(Protocol):
    """A multiplexed session over one secured connection."""

    @property
    def closed(self) -> bool:
        """True once the session ended (locally or remotely)."""

    @property
    def num_streams(self) -> int:
        """Streams currently tracked by the session."""

    def open_stream(self, timeout: float | None = None) -> MuxedStream:
        """Blocks (bounded by ``timeout``) while the muxer limits pending opens;
        raises ``ConnectionClosedError`` if the session is over."""

    def accept_stream(self, timeout: float | None = None) -> MuxedStream:
        """Blocks until the remote opens a stream; ``ConnectionClosedError`` once over."""

    def serve(self, on_stream: Callable[[MuxedStream], None], on_closed: Callable[[], None]) -> None:
        """Instead of ``accept_stream``: hand each inbound stream to ``on_stream`` as it
        arrives and call ``on_closed()`` once the session is over.  Both callbacks must
        not block (spawn the work).  The swarm serves its connections this way."""

    def close(self) -> None:
        """End the session: streams are reset, the conn closed.  Blocks briefly
        (bounded) to flush queued frames.  Idempotent."""

    def close_with_error(self, code: int) -> None:
        """Like ``close`` but tell the remote ``code`` (a :class:`ConnErrorCode`) where
        the muxer can (yamux GoAway); otherwise the same as ``close``."""

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Blocks until the session ended; False if ``timeout`` passed first."""


@runtime_checkable
class Multiplexer(Protocol):
    """Factory of :class:`MuxedConn` for one muxer protocol id."""

    @property
    def PROTOCOL_ID(self) -> str:  # noqa: N802 - the multistream protocol id constant
        """The multistream-select id, e.g. ``"/yamux/1.0.0"``."""

    def new_conn(self, sec: SecureConn, is_initiator: bool, scope: ResourceScope) -> MuxedConn:
        """Start a session over ``sec`` (the dialer is the initiator).  Never blocks;
        the session's own greenlets do the I/O."""
