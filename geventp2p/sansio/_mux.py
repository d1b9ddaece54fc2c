"""What the stream muxer cores share: their events and their verbs.

Both cores (:mod:`geventp2p.sansio.yamux`, :mod:`geventp2p.sansio.mplex`) return these
event classes from ``receive_data`` and answer to the verbs of :class:`MuxSession`,
so one gevent shell (:mod:`geventp2p.net._muxconn`) drives either.  Events that only
one protocol has (yamux's window updates, ACKs and pings) live in that core.

A stream is named by one ``int`` per session (``stream_id``).  For yamux it is the
wire id; mplex numbers each side's streams independently, so its cores name a stream
``wire_id * 2 + 1`` when we opened it and ``wire_id * 2`` when the peer did (see
:func:`geventp2p.sansio.mplex.wire_id`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from geventp2p.exceptions import ConfigError

__all__ = [
    "StreamOpened",
    "StreamRefused",
    "DataReceived",
    "StreamHalfClosed",
    "StreamReset",
    "GoAwayReceived",
    "SessionError",
    "MuxSession",
    "StreamTable",
    "check_positive_ints",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamOpened:
    """The remote opened a stream (yamux: its ACK is already queued)."""

    stream_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamRefused:
    """The remote tried to open a stream we could not take; we already reset it."""

    stream_id: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DataReceived:
    """Bytes for one stream; report them with ``Session.consumed`` once the
    application took them (yamux grants window, mplex frees buffer room)."""

    stream_id: int
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamHalfClosed:
    """The remote closed its write side (FIN / Close): EOF after the buffered data."""

    stream_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamReset:
    """The stream is gone.  ``remote``: the peer reset it (with ``error_code``, a
    libp2p stream code where the wire carries one); otherwise this session reset it
    (``reason`` says why: a buffer cap, a memory refusal, a protocol violation)."""

    stream_id: int
    error_code: int
    remote: bool = True
    reason: str = "reset by peer"


@dataclass(frozen=True, slots=True, kw_only=True)
class GoAwayReceived:
    """The remote ends the session with ``error_code`` (yamux GoAway: 0 normal,
    1 protocol, 2 internal, 0x1000+ go-libp2p reasons).  The session is over."""

    error_code: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionError:
    """The session is over because of ``error``: a remote protocol violation, or an
    unanswered keepalive.  ``go_away_code``: the GoAway code queued for the peer
    (yamux), None when nothing was queued (mplex has no GoAway)."""

    error: Exception
    go_away_code: int | None = None


def check_positive_ints(config: object, names: tuple[str, ...]) -> None:
    """Raise ``ConfigError`` unless each named field of ``config`` is an int > 0 (not a bool)."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{type(config).__name__}.{name} must be a positive int, got {value!r}")


class StreamTable:
    """The stream-table bookkeeping both cores share (a base class, no state of its own
    beyond the two attributes each core sets in ``__init__``)."""

    __slots__ = ()
    _streams: dict[int, Any]
    _num_inbound: int

    @property
    def num_streams(self) -> int:
        """Streams in the table (not reset, not finished both ways)."""
        return len(self._streams)

    @property
    def num_inbound_streams(self) -> int:
        """Live streams the remote opened."""
        return self._num_inbound

    def has_stream(self, stream_id: int) -> bool:
        return stream_id in self._streams


class MuxSession(Protocol):
    """The verbs both muxer cores answer to (all non-blocking, no I/O).

    Output
        ``data_to_send()`` drains the queued wire bytes as one ``bytes``;
        ``buffers_to_send()`` drains them as a list for ``writev``; ``bytes_to_send``
        counts them.
    Input
        ``receive_data(data, now)`` parses bytes and returns events (the shared ones
        above, plus the core's own).
    Streams
        ``open_stream()`` returns the new stream's id; ``send_data(id, data)`` queues
        a prefix and returns its length; ``close_write(id)`` half-closes;
        ``close_read(id)`` discards what arrives later; ``consumed(id, n, now)``
        reports ``n`` bytes taken by the application (returns credit granted, 0
        without flow control); ``reset(id, code)`` aborts the stream;
        ``mark_accepted(id)`` tells the accept backlog the application took an
        inbound stream.
    Session
        ``go_away(code)`` refuses further inbound streams (yamux also tells the
        peer: ``go_away_sent``; ``go_away_received`` is the peer's code; both stay
        None in mplex, which has no GoAway); ``close()`` ends the session; ``next_deadline()`` / ``handle_timer(now)``
        run timers (time is passed in).
    """

    @property
    def closed(self) -> bool: ...

    @property
    def go_away_sent(self) -> int | None: ...

    @property
    def go_away_received(self) -> int | None: ...

    @property
    def num_streams(self) -> int: ...

    @property
    def bytes_to_send(self) -> int: ...

    def has_stream(self, stream_id: int) -> bool: ...

    def data_to_send(self) -> bytes: ...

    def buffers_to_send(self) -> list[Any]: ...

    def receive_data(self, data: bytes, now: float | None = None) -> list[Any]: ...

    def open_stream(self) -> int: ...

    def send_data(self, stream_id: int, data: bytes | memoryview) -> int: ...

    def close_write(self, stream_id: int) -> None: ...

    def close_read(self, stream_id: int) -> None: ...

    def consumed(self, stream_id: int, n: int, now: float = 0.0) -> int: ...

    def reset(self, stream_id: int, code: int = 0) -> None: ...

    def mark_accepted(self, stream_id: int) -> None: ...

    def go_away(self, code: int = 0) -> None: ...

    def close(self) -> None: ...

    def next_deadline(self) -> float | None: ...

    def handle_timer(self, now: float) -> list[Any]: ...
