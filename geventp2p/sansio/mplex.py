"""Sans-I/O mplex session — ``/mplex/6.7.0`` (legacy; deprecated in libp2p/specs).

Bytes go in through :meth:`Session.receive_data`, protocol facts come out as a
list of events, and the bytes to put on the wire are drained with
:meth:`Session.data_to_send`.  No sockets, no greenlets, no clocks, no logging.

Wire format (https://github.com/libp2p/specs/blob/master/mplex/README.md)::

    frame  = uvarint(stream_id << 3 | flag) || uvarint(len) || body
    flags  = 0 NewStream (body = stream name; we send the id in decimal)
             1 MessageReceiver   2 MessageInitiator
             3 CloseReceiver     4 CloseInitiator    (half close, empty body)
             5 ResetReceiver     6 ResetInitiator    (abort both directions)

Both peers number their own streams independently (from 0, as js and rust do),
so a stream is identified by its wire id together with who opened it.  The
opener sends the ``*Initiator`` flags and the other side the ``*Receiver``
flags; hence an incoming frame with an Initiator flag (even) refers to a stream
the *sender* opened, and one with a Receiver flag (odd) to a stream we opened.
The session API names a stream by one int, as every muxer core does
(:mod:`geventp2p.sansio._mux`): ``stream_id = wire_id * 2 + 1`` for a stream we
opened, ``wire_id * 2`` for one the peer opened (:func:`stream_key`,
:func:`wire_id`, :func:`is_outbound`).

Limits and policies (decisions documented here; they follow js-libp2p and
rust-libp2p where those agree):

* A message body larger than ``max_message_size`` (1 MiB, the spec's and js'
  limit) is a **session error**: js throws "message size too large" in its
  decoder and aborts the connection; rust's codec fails the whole connection
  with "frame too large".  Same for a malformed varint or the unknown flag 7.
  :class:`SessionError` is returned and the session is over (mplex has no
  GoAway: the shell just closes the connection).
* mplex has no flow control.  Each stream has a receive-buffer cap
  (``max_stream_buffer_size``, 4 MiB as js).  The shell reports what the
  application read with :meth:`Session.consumed`; received bytes are also
  reserved in the resource ``scope`` until then (a refused reservation resets
  that stream the same way).  A message that would take
  the unread bytes past the cap resets *that stream only* (we send a Reset and
  emit a local :class:`StreamReset` with code 0x1002 "resource limit
  exceeded"), which is what js does to slow consumers.  The session and every
  other stream continue, so one stalled reader never blocks the connection.
  The unread bytes of all streams together are capped too
  (``max_session_buffer_size``, 64 MiB): a message that would pass it resets
  the stream it is for, the same way (a peer cannot make us hold
  ``max_inbound_streams`` x 4 MiB).
* Data after the remote's Close on that stream is a protocol violation: the
  stream is reset (local :class:`StreamReset`, code 0x1004); the session goes on.
* Frames for unknown streams (already reset / fully closed, or never opened)
  are ignored: they are normal after races (the peer may send before it sees
  our Reset).
* A NewStream for a stream id the remote already has open with us is a
  **session error**: rust fails the connection ("Open frame for open
  substream") and js throws from its stream registry.
* More than ``max_inbound_streams`` live inbound streams, more than
  ``accept_backlog`` inbound streams the application has not taken yet
  (:meth:`Session.mark_accepted`), or any after :meth:`Session.go_away`: the
  new one is refused with ResetReceiver and a :class:`StreamRefused` event, as
  js does.
* Outgoing data is split into messages of at most ``write_chunk_size``
  (64 KiB by default, well below the 1 MiB peers accept) so that streams
  writing concurrently interleave fairly.
* Timeouts.  mplex has no ping, so a peer that trickles, stops reading or
  freezes cannot be probed; instead (go-mplex bounds each connection write with
  a deadline and leaves idle connections to the connection manager; rust-mplex
  is alike):

  - ``write_timeout`` (shell, 10 s as go-mplex and our yamux): a connection
    write of up to 1 MiB that makes no progress for that long ends the session
    (a peer that does not read what we send);
  - ``read_timeout`` (45 s; 0 disables): the session ends with a
    ``P2PTimeoutError`` when no complete frame arrived for that long while no
    stream is open (an idle or frozen peer) or while a frame is only partly
    received (a peer trickling a frame byte by byte).  A connection with open
    streams whose peer is silent is kept, as go keeps it: idle streams are
    legitimate, and the connection manager trims such connections.  The timer
    is driven by :meth:`Session.start`, :meth:`Session.next_deadline` and
    :meth:`Session.handle_timer` (after the silence, it re-checks every quarter
    of ``read_timeout`` while streams are open, so the end comes at most
    ``1.25 x read_timeout`` after the last frame).

* Early opens.  Until the peer has sent a frame for one of our streams (a
  ``*Receiver`` flag: it dispatched it), or ``early_open_timeout`` (1 s) after
  :meth:`Session.start`, at most ``early_open_limit`` (8) streams may be opened;
  :meth:`Session.open_stream` past that raises ``LocalProtocolError`` and a shell
  waits (:attr:`Session.open_blocked`, :attr:`Session.early_open_deadline`,
  :meth:`Session.expire_early_opens`).  A frame that lifts the limit while it
  blocks opens yields one :class:`EarlyOpensEnded` event, for the shell to wake
  its waiters.  js-libp2p's muxers abort the connection
  when more than 10 streams arrive before its connection is wired up, which
  happens under load when our NewStreams share a read with the handshake's end.

A stream leaves the table when it is reset (either side), or when both
directions are closed (our Close sent and theirs received, or our write side
closed and our read side discarded with :meth:`Session.close_read`).  Calls
naming a stream that is no longer in the table are ignored, except
:meth:`Session.send_data`, which raises :class:`StreamClosedError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Union

from geventp2p._speedups import frames
from geventp2p.core.rcmgr import NULL_SCOPE, ResourceScope
from geventp2p.exceptions import (
    ConfigError,
    ConnectionClosedError,
    FrameError,
    LocalProtocolError,
    P2PTimeoutError,
    ProtocolError,
    ResourceLimitExceeded,
    ResourceScopeClosed,
    StreamClosedError,
)
from geventp2p.sansio._mux import (
    DataReceived,
    SessionError,
    StreamHalfClosed,
    StreamOpened,
    StreamRefused,
    StreamReset,
    StreamTable,
    check_positive_ints,
)

__all__ = [
    "PROTOCOL_ID",
    "Flag",
    "MplexConfig",
    "Session",
    "Event",
    "StreamOpened",
    "StreamRefused",
    "DataReceived",
    "StreamHalfClosed",
    "StreamReset",
    "SessionError",
    "EarlyOpensEnded",
    "RESET_CODE_NONE",
    "RESET_CODE_RESOURCE_LIMIT",
    "RESET_CODE_PROTOCOL_VIOLATION",
    "stream_key",
    "wire_id",
    "is_outbound",
]

PROTOCOL_ID = "/mplex/6.7.0"

KiB = 1024
MiB = 1024 * KiB

#: The largest body the mplex spec allows in one message; what js and rust accept.
SPEC_MAX_MESSAGE_SIZE = 1 * MiB

# Stream reset codes (go-libp2p's stream error codes).  mplex cannot carry a code
# on the wire; these only label local resets for the application.
RESET_CODE_NONE = 0
RESET_CODE_RESOURCE_LIMIT = 0x1002
RESET_CODE_PROTOCOL_VIOLATION = 0x1004


class Flag(IntEnum):
    """The mplex frame flag (low 3 bits of the header varint)."""

    NEW_STREAM = 0
    MESSAGE_RECEIVER = 1
    MESSAGE_INITIATOR = 2
    CLOSE_RECEIVER = 3
    CLOSE_INITIATOR = 4
    RESET_RECEIVER = 5
    RESET_INITIATOR = 6


# Plain ints for the hot path (IntEnum comparisons are slower).
_NEW = 0
_MSG_R, _MSG_I = 1, 2
_CLOSE_R, _CLOSE_I = 3, 4
_RESET_R, _RESET_I = 5, 6


@dataclass(frozen=True)
class MplexConfig:
    """Tuning of one mplex session (sizes in bytes).

    ``max_message_size``
        Largest message body accepted from the peer; larger is a session error.
    ``write_chunk_size``
        Largest message body we send; at most 1 MiB (what peers accept).
    ``max_stream_buffer_size``
        Unread bytes one stream may hold before it is reset (no flow control).
    ``max_session_buffer_size``
        Unread bytes all streams together may hold; past it the receiving stream is reset.
    ``max_inbound_streams``
        Live streams the remote may have open with us; further NewStreams are reset.
    ``accept_backlog``
        Inbound streams the application has not taken yet; further ones are reset.
    ``max_send_buffer_size``
        (shell) Queued outgoing bytes at which writers block until the writer drains.
    ``frames_per_yield``
        (shell) The reader yields to other greenlets after this many events.
    ``read_timeout``
        Seconds without a complete frame after which the session ends while no stream is
        open or a frame is half received (0 disables; see the module's policies).
    ``write_timeout``
        (shell) A connection write of up to 1 MiB that takes longer ends the session
        (0 disables).
    ``early_open_limit`` / ``early_open_timeout``
        Streams we may open before the peer has answered on one of them, and how long
        after :meth:`Session.start` that limit holds without an answer (8 / 1.0 s; a
        timeout of 0 turns it off).  See the module's policies.
    """

    max_message_size: int = SPEC_MAX_MESSAGE_SIZE
    write_chunk_size: int = 64 * KiB
    max_stream_buffer_size: int = 4 * MiB
    max_session_buffer_size: int = 64 * MiB
    max_inbound_streams: int = 1024
    accept_backlog: int = 1024
    max_send_buffer_size: int = 1 * MiB
    frames_per_yield: int = 64
    read_timeout: float = 45.0
    write_timeout: float = 10.0
    early_open_limit: int = 8
    early_open_timeout: float = 1.0

    def __post_init__(self) -> None:
        check_positive_ints(self, (
            "max_message_size",
            "write_chunk_size",
            "max_stream_buffer_size",
            "max_session_buffer_size",
            "max_inbound_streams",
            "accept_backlog",
            "max_send_buffer_size",
            "frames_per_yield",
            "early_open_limit",
        ))
        for name in ("read_timeout", "write_timeout", "early_open_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ConfigError(f"MplexConfig.{name} must be >= 0, got {value!r}")
        if self.write_chunk_size > SPEC_MAX_MESSAGE_SIZE:
            raise ConfigError(
                f"MplexConfig.write_chunk_size must be <= {SPEC_MAX_MESSAGE_SIZE} "
                f"(peers reject larger messages), got {self.write_chunk_size}"
            )


def stream_key(wire_id: int, outbound: bool) -> int:
    """The session's name for the stream ``wire_id`` opened by us (``outbound``) or the peer."""
    return (wire_id << 1) | (1 if outbound else 0)


def wire_id(stream_id: int) -> int:
    """The id the wire carries for the session's ``stream_id``."""
    return stream_id >> 1


def is_outbound(stream_id: int) -> bool:
    """True when we opened the stream."""
    return bool(stream_id & 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class EarlyOpensEnded:
    """The peer answered on one of our streams while the early-open limit blocked
    :meth:`Session.open_stream`: opening is possible again (emitted once, and only
    if the limit was blocking)."""


Event = Union[
    StreamOpened, StreamRefused, DataReceived, StreamHalfClosed, StreamReset, SessionError, EarlyOpensEnded
]


# --------------------------------------------------------------------------- session


class _Stream:
    __slots__ = (
        "stream_id", "wire_id", "outbound", "accepted", "write_closed", "remote_closed", "read_discard", "buffered",
    )

    def __init__(self, wire: int, outbound: bool) -> None:
        self.stream_id = (wire << 1) | (1 if outbound else 0)
        self.wire_id = wire
        self.outbound = outbound
        self.accepted = outbound  # inbound: taken by the application
        self.write_closed = False  # we sent Close
        self.remote_closed = False  # we received Close
        self.read_discard = False  # the application closed its read side
        self.buffered = 0  # bytes delivered but not yet consumed


class Session(StreamTable):
    """One mplex session (one side of one connection)."""

    #: mplex has no GoAway: nothing is ever sent or received (see :meth:`go_away`).
    go_away_sent: int | None = None
    go_away_received: int | None = None

    def __init__(
        self, config: MplexConfig | None = None, is_initiator: bool = True, scope: ResourceScope = NULL_SCOPE
    ) -> None:
        if config is None:
            config = MplexConfig()
        self.config = config
        #: Which side dialed the connection.  mplex does not use it on the wire
        #: (both sides number their streams from 0); kept for logging.
        self.is_initiator = bool(is_initiator)
        self.scope = scope
        self._reader = frames.MplexFrameReader(config.max_message_size)
        self._streams: dict[int, _Stream] = {}
        self._num_inbound = 0
        self._unaccepted = 0
        self._total_buffered = 0
        self._next_id = 0
        self._out: list[bytes] = []
        self._out_size = 0
        self._closed = False
        #: Set once :meth:`go_away` was called: inbound streams are refused.
        self.going_away = False
        #: Set once the session ended because of a peer error (or a read timeout).
        self.error: Exception | None = None
        # early opens: how many more streams we may open before the peer answers on
        # one (None: no limit any more), and until when that holds
        self._early_left: int | None = config.early_open_limit if config.early_open_timeout else None
        self._early_until: float | None = None
        # read timeout (armed by start())
        self._read_timeout = float(config.read_timeout)
        self._last_rx = 0.0  # when the last complete frame arrived
        self._check_at: float | None = None  # next timer check
        #: Frames that named a stream not in the table (ignored); for diagnostics.
        self.unknown_stream_frames = 0

    # ------------------------------------------------------------------ state

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def bytes_to_send(self) -> int:
        """Bytes queued for :meth:`data_to_send`."""
        return self._out_size

    @property
    def total_buffered(self) -> int:
        """Unread bytes of all streams in the table."""
        return self._total_buffered

    def buffered(self, stream_id: int) -> int:
        """Unread bytes the session counts against the stream's cap."""
        st = self._streams.get(stream_id)
        return 0 if st is None else st.buffered

    # ------------------------------------------------------------------ output

    def compact(self) -> None:
        """Give back the storage of an emptied stream table (a dict keeps the table it
        grew to; a new empty one has none).  The shell calls it when the connection
        goes idle."""
        if not self._streams:
            self._streams = {}

    def data_to_send(self) -> bytes:
        """Drain and return every queued byte (b"" if none)."""
        if not self._out:
            return b""
        out = self._out
        data = out[0] if len(out) == 1 else b"".join(out)
        self._out = []
        self._out_size = 0
        return data

    def buffers_to_send(self) -> list[Any]:
        """Drain every queued buffer as a list, in order (for ``writev``: no join)."""
        out = self._out
        if out:
            self._out = []
            self._out_size = 0
        return out

    def _queue(self, wire: int, flag: int, body: bytes = b"") -> None:
        header = frames.pack_mplex_header(wire, flag, len(body))
        self._out.append(header)
        if body:
            self._out.append(body)
        self._out_size += len(header) + len(body)

    # ------------------------------------------------------------------ timers (the read timeout)

    def start(self, now: float) -> None:
        """Arm the read timeout (``read_timeout``; nothing to do when it is 0) and start
        the early-open period."""
        if self._early_left is not None and self._early_until is None:
            self._early_until = now + self.config.early_open_timeout
        if self._read_timeout and self._check_at is None:
            self._last_rx = now
            self._check_at = now + self._read_timeout

    def next_deadline(self) -> float | None:
        """The next time :meth:`handle_timer` has work (None: not started, disabled, or over)."""
        return None if self._closed else self._check_at

    def handle_timer(self, now: float) -> list[Event]:
        """End the session when no complete frame arrived for ``read_timeout`` while no
        stream is open or a frame is half received."""
        check_at = self._check_at
        if self._closed or check_at is None or now < check_at:
            return []
        limit = self._read_timeout
        due = self._last_rx + limit
        if now < due:
            self._check_at = due
            return []
        if self._streams and not self._reader.buffered:
            self._check_at = now + limit / 4  # silent, but streams are open: keep it
            return []
        what = "a partly received frame" if self._reader.buffered else "no open stream"
        events: list[Event] = []
        self._fail(P2PTimeoutError(f"mplex: no frame from the peer for {limit:g}s ({what})"), events)
        return events

    # ------------------------------------------------------------------ local actions

    @property
    def open_blocked(self) -> bool:
        """True while :meth:`open_stream` would raise: ``early_open_limit`` streams were
        opened and the peer has not answered on any of them yet."""
        return self._early_left == 0

    @property
    def early_open_deadline(self) -> float | None:
        """When the early-open limit ends without an answer (None: it is over, or the
        session has not started)."""
        return self._early_until if self._early_left is not None else None

    def expire_early_opens(self, now: float) -> bool:
        """End the early-open limit if its deadline passed; True if it ended now."""
        until = self._early_until
        if self._early_left is None or until is None or now < until:
            return False
        self._early_left = None
        return True

    def open_stream(self) -> int:
        """Queue a NewStream (name = the wire id in decimal) and return the new stream's id.

        Raises ``LocalProtocolError`` while :attr:`open_blocked`."""
        if self._closed:
            raise ConnectionClosedError("mplex session is closed", remote=False)
        left = self._early_left
        if left is not None:
            if not left:
                raise LocalProtocolError(
                    f"mplex: {self.config.early_open_limit} streams opened before the peer answered on any"
                )
            self._early_left = left - 1
        wire = self._next_id
        self._next_id += 1
        st = _Stream(wire, True)
        self._streams[st.stream_id] = st
        self._queue(wire, _NEW, str(wire).encode("ascii"))
        return st.stream_id

    def send_data(self, stream_id: int, data: bytes | memoryview) -> int:
        """Queue all of ``data`` as Message frames of at most ``write_chunk_size``
        bytes; returns its length (mplex has no flow control).

        Raises ``StreamClosedError`` if our write side is closed or the stream is
        gone (reset or finished), ``ConnectionClosedError`` if the session is over.
        """
        if self._closed:
            raise ConnectionClosedError("mplex session is closed", remote=False)
        st = self._streams.get(stream_id)
        if st is None:
            raise StreamClosedError(f"mplex stream {stream_id >> 1} is not open")
        if st.write_closed:
            raise StreamClosedError(f"mplex stream {st.wire_id}: write after close")
        n = len(data)
        if n == 0:
            return 0
        flag = _MSG_I if st.outbound else _MSG_R
        chunk = self.config.write_chunk_size
        if n <= chunk:
            self._queue(st.wire_id, flag, bytes(data))
            return n
        view = memoryview(data)
        for start in range(0, n, chunk):
            self._queue(st.wire_id, flag, bytes(view[start : start + chunk]))
        return n

    def close_write(self, stream_id: int) -> None:
        """Queue a Close (half close).  Idempotent; ignored for unknown streams."""
        st = self._streams.get(stream_id)
        if st is None or self._closed:
            return
        if not st.write_closed:
            st.write_closed = True
            self._queue(st.wire_id, _CLOSE_I if st.outbound else _CLOSE_R)
        self._maybe_finish(st)

    def close_read(self, stream_id: int) -> None:
        """Discard further data for the stream (mplex cannot tell the peer)."""
        st = self._streams.get(stream_id)
        if st is None:
            return
        st.read_discard = True
        self._total_buffered -= st.buffered
        st.buffered = 0
        self._maybe_finish(st)

    def reset(self, stream_id: int, code: int = 0) -> None:
        """Queue a Reset and forget the stream (mplex cannot carry ``code``).
        Ignored for unknown streams."""
        st = self._streams.get(stream_id)
        if st is None:
            return
        self._remove(st)
        if not self._closed:
            self._queue(st.wire_id, _RESET_I if st.outbound else _RESET_R)

    def consumed(self, stream_id: int, n: int, now: float = 0.0) -> int:
        """The application took (or dropped) ``n`` received bytes of the stream: they
        no longer count against its buffer cap and their ``scope`` reservation is
        released (also for a stream that already left the table, or after the
        session closed: the bytes were reserved when they arrived).  Returns 0:
        mplex grants no credit."""
        if n <= 0:
            if n < 0:
                raise LocalProtocolError("consumed() needs a non-negative byte count")
            return 0
        self.scope.release_memory(n)
        st = self._streams.get(stream_id)
        if st is not None:
            if n > st.buffered:
                n = st.buffered
            st.buffered -= n
            self._total_buffered -= n
        return 0

    def mark_accepted(self, stream_id: int) -> None:
        """The application took this inbound stream from the accept queue."""
        st = self._streams.get(stream_id)
        if st is not None and not st.accepted:
            st.accepted = True
            self._unaccepted -= 1

    def go_away(self, code: int = 0) -> None:
        """Refuse inbound streams from now on (mplex has no GoAway: nothing is sent)."""
        self.going_away = True

    def close(self) -> None:
        """End the session locally (mplex has no GoAway; the shell closes the conn)."""
        self._closed = True
        self._streams.clear()
        self._num_inbound = 0
        self._unaccepted = 0
        self._total_buffered = 0

    def _remove(self, st: _Stream) -> None:
        if self._streams.pop(st.stream_id, None) is not None:
            # Bytes of a stream that left the table can no longer grow; they are
            # the application's until it reads or drops the stream.
            self._total_buffered -= st.buffered
            st.buffered = 0
            if not st.outbound:
                self._num_inbound -= 1
                if not st.accepted:
                    self._unaccepted -= 1

    def _maybe_finish(self, st: _Stream) -> None:
        if st.write_closed and (st.remote_closed or st.read_discard):
            self._remove(st)

    # ------------------------------------------------------------------ input

    def receive_data(self, data: bytes, now: float | None = None) -> list[Event]:
        """Parse ``data`` and return the events it produces, in wire order.

        A peer error ends the list with :class:`SessionError`; after that (or
        after :meth:`close`) the session ignores further input.  ``now`` (monotonic
        seconds) restarts the read timeout when a frame completed.
        """
        if self._closed:
            return []
        events: list[Event] = []
        reader = self._reader
        try:
            parsed = reader.feed(data)
            if parsed and now is not None:
                self._last_rx = now
            for wire, flag, payload in parsed:
                self._on_frame(wire, flag, payload, events)
                if self._closed:
                    return events
            if parsed and reader.buffered:
                # The reader returns the frames before a malformed header and
                # raises on the next call: surface such an error now rather
                # than when (if ever) more bytes arrive.
                for wire, flag, payload in reader.feed(b""):
                    self._on_frame(wire, flag, payload, events)
                    if self._closed:
                        return events
        except ProtocolError as exc:
            self._fail(exc, events)
        return events

    def _fail(self, exc: Exception, events: list[Event]) -> None:
        self.error = exc
        self.close()
        self._out = []
        self._out_size = 0
        events.append(SessionError(error=exc))

    def _local_reset(self, st: _Stream, code: int, reason: str, events: list[Event]) -> None:
        self.reset(st.stream_id)
        events.append(StreamReset(stream_id=st.stream_id, remote=False, error_code=code, reason=reason))

    def _refuse(self, wire: int, reason: str, events: list[Event]) -> None:
        self._queue(wire, _RESET_R)
        events.append(StreamRefused(stream_id=wire << 1, reason=reason))

    def _on_frame(self, wire: int, flag: int, payload: bytes, events: list[Event]) -> None:
        if flag == _NEW:
            key = wire << 1
            if key in self._streams:
                self._fail(FrameError(f"mplex NewStream for stream {wire}, which is already open"), events)
                return
            if self.going_away:
                self._refuse(wire, "session is going away", events)
                return
            if self._num_inbound >= self.config.max_inbound_streams:
                self._refuse(wire, f"too many inbound streams ({self.config.max_inbound_streams})", events)
                return
            if self._unaccepted >= self.config.accept_backlog:
                self._refuse(wire, f"accept backlog of {self.config.accept_backlog} is full", events)
                return
            self._streams[key] = _Stream(wire, False)
            self._num_inbound += 1
            self._unaccepted += 1
            events.append(StreamOpened(stream_id=key))
            return
        if flag > _RESET_I:
            self._fail(FrameError(f"mplex frame with unknown flag {flag}"), events)
            return
        # Receiver flags (odd) are sent by the side that did not open the stream,
        # so they name a stream we opened (odd key).
        key = (wire << 1) | (flag & 1)
        if flag & 1 and self._early_left is not None:
            if not self._early_left:  # openers wait: tell the shell
                events.append(EarlyOpensEnded())
            self._early_left = None  # the peer dispatches our streams: no early limit
        st = self._streams.get(key)
        if st is None:
            self.unknown_stream_frames += 1
            return
        if flag <= _MSG_I:
            if st.remote_closed:
                self._local_reset(st, RESET_CODE_PROTOCOL_VIOLATION, "data after the remote closed the stream", events)
                return
            n = len(payload)
            if st.read_discard or n == 0:
                return
            cfg = self.config
            why = None
            if st.buffered + n > cfg.max_stream_buffer_size:
                why = f"receive buffer over {cfg.max_stream_buffer_size} bytes (reader too slow)"
            elif self._total_buffered + n > cfg.max_session_buffer_size:
                why = f"session receive buffers over {cfg.max_session_buffer_size} bytes"
            else:
                try:
                    self.scope.reserve_memory(n)
                except (ResourceLimitExceeded, ResourceScopeClosed) as exc:  # closed: the conn is ending
                    why = f"memory limit: {exc}"
            if why is not None:
                self._local_reset(st, RESET_CODE_RESOURCE_LIMIT, why, events)
                return
            st.buffered += n
            self._total_buffered += n
            events.append(DataReceived(stream_id=key, data=payload))
        elif flag <= _CLOSE_I:
            if st.remote_closed:
                return
            st.remote_closed = True
            events.append(StreamHalfClosed(stream_id=key))
            self._maybe_finish(st)
        else:
            self._remove(st)
            events.append(StreamReset(stream_id=key, error_code=RESET_CODE_NONE))
