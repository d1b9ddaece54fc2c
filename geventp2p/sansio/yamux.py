"""Sans-I/O yamux session — ``/yamux/1.0.0``
(https://github.com/libp2p/specs/blob/master/yamux/README.md and
https://github.com/hashicorp/yamux/blob/master/spec.md).

Bytes go in through :meth:`Session.receive_data`, protocol facts come out as a
list of events, and the bytes for the wire are drained with
:meth:`Session.data_to_send` (or :meth:`Session.buffers_to_send` for writev).
Time is always passed in (``now``, monotonic seconds); no sockets, greenlets,
clocks or logging here.

Wire summary: 12-byte big-endian header ``version(0) type flags(u16)
stream_id(u32) length(u32)``; only Data frames carry a body of ``length`` bytes.
Types: 0 Data, 1 WindowUpdate, 2 Ping, 3 GoAway.  Flags: SYN 1, ACK 2, FIN 4, RST 8.

Policies (decisions, with the implementation they follow):

* Opening: ``open_stream()`` queues ``WindowUpdate|SYN`` with delta 0 at once
  (go/js style).  Data may follow before the ACK.  The client (connection
  initiator) uses odd ids from 1, the server even ids from 2.
* Accepting: an inbound SYN is ACKed at once with ``WindowUpdate|ACK`` delta 0
  (go-libp2p accepts immediately, so a stream opened by a peer that waits for the
  ACK never stalls).  The session counts
  streams the application has not taken yet (``mark_accepted``); past
  ``accept_backlog`` such streams, or past ``max_inbound_streams`` live inbound
  streams, or after we sent GoAway, the SYN is refused with ``RST`` (code
  0x1002 "resource limit exceeded", a go-libp2p stream error code) and a
  :class:`StreamRefused` event.
* ACK backlog (outbound): at most ``max_ack_backlog`` (go: 256) streams we opened
  may wait for the remote's ACK.  :meth:`Session.open_stream` past that raises
  ``LocalProtocolError``; a shell that wants to wait claims a slot with
  :meth:`Session.reserve_open` (False while the backlog is full; retry after a
  :class:`StreamAcked` or :class:`StreamReset` event) and then calls
  ``open_stream(reserved=True)``, or gives the slot back with :meth:`Session.release_open`.
  Until the remote has ACKed one of our streams (or ``early_ack_timeout`` after
  :meth:`Session.start`) the backlog is ``early_ack_backlog`` (8): js-libp2p's muxers
  abort the whole session when more than 10 streams (``maxEarlyStreams``) arrive before
  its connection is wired up, which happens when our SYNs reach it in the same read as
  the end of the security handshake (seen under load).  The first ACK proves the remote
  dispatches our streams and lifts the limit to ``max_ack_backlog``.
* Flow control: 256 KiB initial window each way (fixed, not
  configurable); updates follow the application's reads
  (:meth:`consumed`), sent once half the window is free; the window doubles
  (auto-tuning, up to ``max_window_size``) when updates come faster than 4 RTT.
  Each growth beyond the initial 256 KiB first reserves the extra bytes at
  priority :data:`WINDOW_GROWTH_PRIORITY` (128, go-yamux's) in the stream's
  resource scope (:attr:`Session.stream_scope` names it; default: the session's
  ``scope``).  A refusal only keeps the window where it is: the stream goes on
  at its current window (go-yamux).  A stream's reservations are released when
  it leaves the table.
* Sending: :meth:`send_data` takes as much as the send window allows and splits
  it into Data frames of at most ``max_frame_body`` bytes.  While queued, small Data
  frames of one stream are coalesced (``frames.YamuxWriteBuffer``): many small writes
  leave as few large frames; large bodies of immutable input are not copied.
* RST: ``WindowUpdate|RST`` with ``length`` = libp2p stream error code (go).  A
  received RST's length is a code, never credit.  Data frames with RST have code 0.
* Session violations -> ``GoAway(1)`` queued, :class:`SessionError` event, the
  session is over: bad version/type, oversized body, Data/WindowUpdate on stream
  0, Ping/GoAway on a stream other than 0, SYN with the wrong parity (like
  rust; js sends 2), SYN for a stream id in use, data beyond the
  receive window (judged from the Data header, before the body is buffered), a
  WindowUpdate overflowing 2**32-1.
* Frames other than SYN for unknown or forgotten streams are ignored (normal after
  races: the remote may send before it sees our RST).
  Data after the remote's FIN is dropped (the window is still accounted).
* Control backlog: ACKs, RSTs, window updates and pongs wait in the outbound
  queue like data.  :attr:`Session.control_backlog_full` turns True once
  ``max_control_backlog`` control frames were queued since the queue was last
  drained; the shell then stops reading the connection until its writer drained
  it (back-pressure onto a peer that makes us answer faster than it reads, as
  go-yamux's receive loop blocks on its bounded send channel).  A peer that
  does not read at all is then dropped by the write timeout.  The check runs
  between reads, so one read may pass the bound by the frames it carries.
* Ping: every SYN ping is answered with an ACK carrying the same value
  (at most ``max_ping_backlog`` answers queued at a time); we never send
  unsolicited ACKs; at most one ping of ours is outstanding; ACKs that do not
  match it are ignored.  Keepalive: a ping after ``keepalive_interval`` without
  any received frame; unanswered after ``ping_timeout`` -> :class:`SessionError`
  with a ``P2PTimeoutError`` and no GoAway (go).  An unanswered RTT/user ping is
  just dropped.  ``rtt_interval`` re-measures the RTT (go: 30 s).
* GoAway: a received GoAway (any code; codes > 2 are go-libp2p reasons)
  ends the session: :class:`GoAwayReceived`, later frames are ignored.
  :meth:`go_away` queues ours once; afterwards inbound SYNs are refused.
* A stream leaves the table when reset (either side), when both FINs were
  exchanged, or when our FIN was sent and :meth:`Session.close_read` was called
  (go-yamux; later data for it is ignored, without credit).  Calls naming a
  stream no longer in the table are ignored, except :meth:`send_data`
  (``StreamClosedError``).

The verbs and the shared events (:class:`StreamOpened`, :class:`DataReceived`,
:class:`StreamHalfClosed`, :class:`StreamReset`, :class:`StreamRefused`,
:class:`GoAwayReceived`, :class:`SessionError`) are those of every muxer core
(:mod:`geventp2p.sansio._mux`); the yamux-only events are defined here.  Calls on a finished session raise
  ``ConnectionClosedError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import Any, Callable, Union

from geventp2p._speedups import frames, window
from geventp2p.core.rcmgr import NULL_SCOPE, ResourceScope
from geventp2p.sansio._mux import (
    DataReceived,
    GoAwayReceived,
    SessionError,
    StreamHalfClosed,
    StreamOpened,
    StreamRefused,
    StreamReset,
    StreamTable,
    check_positive_ints,
)
from geventp2p.exceptions import (
    ConfigError,
    ConnectionClosedError,
    LocalProtocolError,
    P2PTimeoutError,
    ProtocolError,
    RemoteProtocolError,
    ResourceLimitExceeded,
    ResourceScopeClosed,
    StreamClosedError,
    WindowError,
)

__all__ = [
    "PROTOCOL_ID",
    "INITIAL_WINDOW",
    "WINDOW_GROWTH_PRIORITY",
    "FrameType",
    "Flag",
    "GoAwayCode",
    "YamuxConfig",
    "Session",
    "Event",
    "StreamOpened",
    "StreamRefused",
    "StreamAcked",
    "DataReceived",
    "StreamHalfClosed",
    "StreamReset",
    "WindowUpdated",
    "PingReceived",
    "PongReceived",
    "GoAwayReceived",
    "SessionError",
]

PROTOCOL_ID = "/yamux/1.0.0"
KiB = 1024
MiB = 1024 * KiB
INITIAL_WINDOW = 256 * KiB
#: Priority of a window-growth memory reservation (go-yamux: 128, about half of the
#: scope's limit; see ``geventp2p.core.rcmgr``).
WINDOW_GROWTH_PRIORITY = 128
#: Priority of the initial-window reservation of a new stream (go-yamux: 255, i.e.
#: granted while the scope stays within its limit).
INITIAL_WINDOW_PRIORITY = 255
U32_MAX = 0xFFFFFFFF
RESET_CODE_RESOURCE_LIMIT = 0x1002


class FrameType(IntEnum):
    DATA = 0
    WINDOW_UPDATE = 1
    PING = 2
    GO_AWAY = 3


class Flag(IntFlag):
    SYN = 1
    ACK = 2
    FIN = 4
    RST = 8


class GoAwayCode(IntEnum):
    NORMAL = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2


_DATA = 0
_WU = 1
_PING = 2
_GOAWAY = 3
_SYN = 1
_ACK = 2
_FIN = 4
_RST = 8

_pack = frames.pack_yamux_header


@dataclass(frozen=True)
class YamuxConfig:
    """Tuning of one yamux session (sizes in bytes, times in seconds).

    ``max_window_size``
        Largest receive window a stream may grow to by auto-tuning (go-libp2p 16 MiB).
        The initial window is always 256 KiB (the spec fixes it).
    ``max_frame_body``
        Largest Data body we send (go 65524; peers accept up to the window).
    ``accept_backlog``
        Inbound streams not yet taken by the application; further SYNs get RST (go 256).
    ``max_inbound_streams``
        Live inbound streams; further SYNs get RST.  js stops at 1000; go sets no
        muxer limit and relies on its resource manager.  Until geventp2p has a resource
        manager this is the only cap, so the default is generous (16384: the demo's
        5,000 and the 10,000-stream acceptance test fit) while still bounding the table.
    ``max_ack_backlog``
        Un-ACKed outbound streams before ``open_stream`` must wait (go 256).
    ``early_ack_backlog`` / ``early_ack_timeout``
        The ACK backlog until the remote ACKs one of our streams, or until this many
        seconds after :meth:`Session.start` (8 / 1.0 s; a timeout of 0 turns the early
        limit off).  Keeps a burst of streams opened right after the handshake under
        js-libp2p's ``maxEarlyStreams`` (10), past which js aborts the session.
    ``enable_keepalive`` / ``keepalive_interval`` / ``ping_timeout``
        Ping after this long without receiving anything; close if unanswered (go 30 s / 10 s).
    ``rtt_interval``
        Re-measure the RTT this often (0 disables; go 30 s).  ``initial_ping``:
        measure it right at session start (go/js do).
    ``max_ping_backlog``
        Ping answers queued at a time; further ping requests are dropped (go 32).
    ``max_send_buffer_size``
        (shell) Queued outgoing bytes at which stream writers block until the writer drains.
    ``max_control_backlog``
        Control frames (ACK, RST, window update, pong, ...) queued since the last drain at
        which :attr:`Session.control_backlog_full` turns True: the shell's reader then
        waits for the writer (4096 frames, 48 KiB).
    ``write_timeout``
        (shell) A connection write of up to ``write_batch_size`` bytes that takes longer
        ends the session (go ``ConnectionWriteTimeout`` 10 s per frame); 0 disables.
    ``write_batch_size``
        (shell) Most bytes handed to one ``writev`` call.
    ``frames_per_yield``
        (shell) The reader yields to other greenlets after this many events.
    """

    max_window_size: int = 16 * MiB
    max_frame_body: int = 64 * KiB - 12
    accept_backlog: int = 256
    max_inbound_streams: int = 16384
    max_ack_backlog: int = 256
    early_ack_backlog: int = 8
    early_ack_timeout: float = 1.0
    enable_keepalive: bool = True
    keepalive_interval: float = 30.0
    ping_timeout: float = 10.0
    rtt_interval: float = 30.0
    initial_ping: bool = True
    max_ping_backlog: int = 32
    max_send_buffer_size: int = 1 * MiB
    max_control_backlog: int = 4096
    frames_per_yield: int = 64
    write_timeout: float = 10.0
    write_batch_size: int = 1 * MiB

    def __post_init__(self) -> None:
        check_positive_ints(self, (
            "max_window_size",
            "max_frame_body",
            "accept_backlog",
            "max_inbound_streams",
            "max_ack_backlog",
            "early_ack_backlog",
            "max_ping_backlog",
            "max_send_buffer_size",
            "max_control_backlog",
            "frames_per_yield",
            "write_batch_size",
        ))
        if not INITIAL_WINDOW <= self.max_window_size <= U32_MAX:
            raise ConfigError(
                f"YamuxConfig.max_window_size must be in {INITIAL_WINDOW}..{U32_MAX}, "
                f"got {self.max_window_size}"
            )
        if self.max_frame_body > 16 * MiB:
            raise ConfigError(f"YamuxConfig.max_frame_body must be <= 16 MiB, got {self.max_frame_body}")
        if not isinstance(self.enable_keepalive, bool) or not isinstance(self.initial_ping, bool):
            raise ConfigError("YamuxConfig.enable_keepalive and initial_ping must be bools")
        for name in ("keepalive_interval", "ping_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"YamuxConfig.{name} must be a positive number, got {value!r}")
        for name in ("rtt_interval", "write_timeout", "early_ack_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ConfigError(f"YamuxConfig.{name} must be >= 0, got {value!r}")


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamAcked:
    """The remote acknowledged a stream we opened."""

    stream_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowUpdated:
    """The remote granted ``delta`` more bytes of send window."""

    stream_id: int
    delta: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PingReceived:
    """The remote pinged us (the answer is already queued, unless dropped)."""

    opaque: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PongReceived:
    """Our outstanding ping was answered.  ``rtt`` is set when ``now`` was passed in."""

    opaque: int
    sent_at: float
    rtt: float | None


Event = Union[
    StreamOpened,
    StreamRefused,
    StreamAcked,
    DataReceived,
    StreamHalfClosed,
    StreamReset,
    WindowUpdated,
    PingReceived,
    PongReceived,
    GoAwayReceived,
    SessionError,
]


# --------------------------------------------------------------------------- session


class _Stream:
    __slots__ = (
        "stream_id", "outbound", "window", "acked", "accepted", "local_fin", "remote_fin", "read_closed", "reserved",
        "sender", "mem_scope", "base",
    )

    def __init__(self, stream_id: int, outbound: bool, max_window: int) -> None:
        self.stream_id = stream_id
        self.outbound = outbound
        self.window = window.StreamWindow(INITIAL_WINDOW, max_window)
        self.acked = not outbound  # outbound: waiting for the remote's ACK
        self.accepted = outbound  # inbound: taken by the application
        self.local_fin = False
        self.remote_fin = False
        self.read_closed = False  # the application discards further data (close_read)
        self.reserved = 0  # memory reserved in mem_scope for window growth
        self.sender: Any = None  # frames.YamuxStreamSender, made on demand
        self.mem_scope: Any = None  # where the growth was reserved (chosen at the first growth)
        self.base = 0  # the initial window, reserved in the session's scope


_PING_USER = 0
_PING_KEEPALIVE = 1
_PING_RTT = 2


class Session(StreamTable):
    """One yamux session (one side of one connection)."""

    # slots: with more than 30 attributes CPython 3.11 stops sharing instance-dict keys,
    # and each session's own dict cost about 1.5 KiB (bench.conns)
    __slots__ = (
        "config", "is_initiator", "scope", "stream_scope", "_next_id", "_remote_parity",
        "_streams", "_num_inbound", "_unaccepted", "_unacked", "_open_reserved", "_ack_limit",
        "_early_until", "_out", "_reader", "_frame_body", "_max_window", "closed", "error",
        "go_away_sent", "go_away_received", "rtt", "_ping_seq", "_ping_opaque", "_ping_sent_at",
        "_ping_kind", "_ping_answers", "_control", "_max_control", "_started", "_last_rx",
        "_rx_seen", "_next_rtt",
    )

    def __init__(
        self, config: YamuxConfig | None = None, is_initiator: bool = True, scope: ResourceScope = NULL_SCOPE
    ) -> None:
        self.config = config = config if config is not None else YamuxConfig()
        self.is_initiator = is_initiator
        self.scope = scope
        #: ``stream_scope(stream_id)`` -> the resource scope window growth of that
        #: stream is charged to, or None for ``scope`` (the shell sets it; asked once
        #: per stream, at its first growth).
        self.stream_scope: Callable[[int], ResourceScope | None] | None = None
        self._next_id = 1 if is_initiator else 2
        self._remote_parity = 0 if is_initiator else 1  # remote ids: even if we are the client
        self._streams: dict[int, _Stream] = {}
        self._num_inbound = 0
        self._unaccepted = 0
        self._unacked = 0
        self._open_reserved = 0  # ACK-backlog slots claimed by reserve_open()
        # the ACK backlog: early_ack_backlog until the first ACK (or _early_until)
        self._ack_limit = config.max_ack_backlog
        if config.early_ack_timeout and config.early_ack_backlog < config.max_ack_backlog:
            self._ack_limit = config.early_ack_backlog
        self._early_until: float | None = None
        self._out = frames.YamuxWriteBuffer(config.max_frame_body)
        self._reader = frames.YamuxFrameReader(config.max_window_size)
        self._frame_body = config.max_frame_body
        self._max_window = config.max_window_size
        self.closed = False
        self.error: Exception | None = None
        self.go_away_sent: int | None = None
        self.go_away_received: int | None = None
        self.rtt = 0.0  # seconds, 0 until measured
        # ping / keepalive
        self._ping_seq = 0
        self._ping_opaque: int | None = None
        self._ping_sent_at = 0.0
        self._ping_kind = _PING_USER
        self._ping_answers = 0  # answers queued since the last drain
        self._control = 0  # control frames queued since the last drain
        self._max_control = config.max_control_backlog
        self._started = False
        self._last_rx = 0.0
        self._rx_seen = False  # frames received since the last timer check (no `now` given)
        self._next_rtt: float | None = None

    # ------------------------------------------------------------------ introspection

    @property
    def ack_limit(self) -> int:
        """The ACK backlog now: ``early_ack_backlog`` until the first ACK, then ``max_ack_backlog``."""
        return self._ack_limit

    @property
    def early_ack_deadline(self) -> float | None:
        """When the early ACK limit ends without an ACK (see :meth:`expire_early_acks`);
        None when it is over or the session has not started."""
        return self._early_until if self._ack_limit != self.config.max_ack_backlog else None

    def expire_early_acks(self, now: float) -> bool:
        """End the early ACK limit if its deadline has passed; True if it ended now
        (a shell then grants waiting openers more slots)."""
        until = self._early_until
        if until is None or self._ack_limit == self.config.max_ack_backlog or now < until:
            return False
        self._end_early_acks()
        return True

    def _end_early_acks(self) -> None:
        self._ack_limit = self.config.max_ack_backlog
        self._early_until = None

    @property
    def unacked_outbound(self) -> int:
        """Outbound streams still waiting for the remote's ACK (the ACK backlog)."""
        return self._unacked

    @property
    def bytes_to_send(self) -> int:
        return self._out.nbytes

    @property
    def control_backlog_full(self) -> bool:
        """True once ``max_control_backlog`` control frames were queued since the queue
        was last drained: stop reading until :meth:`buffers_to_send` ran."""
        return self._control >= self._max_control

    @property
    def write_buffer(self) -> Any:
        """The outbound ``frames.YamuxWriteBuffer`` (shells may read its ``nbytes``)."""
        return self._out

    @property
    def ping_outstanding(self) -> int | None:
        return self._ping_opaque

    def stream_ids(self) -> list[int]:
        return list(self._streams)

    def compact(self) -> None:
        """Give back the storage of an emptied stream table (a dict keeps the table it
        grew to; a new empty one has none).  The shell calls it when the connection
        goes idle."""
        if not self._streams:
            self._streams = {}

    def send_window(self, stream_id: int) -> int:
        st = self._streams.get(stream_id)
        return st.window.send_window if st is not None else 0

    def recv_window(self, stream_id: int) -> int:
        st = self._streams.get(stream_id)
        return st.window.recv_window if st is not None else 0

    def window_target(self, stream_id: int) -> int:
        st = self._streams.get(stream_id)
        return st.window.target if st is not None else 0

    def reserved_memory(self) -> int:
        """Memory held for the live streams: their initial windows and window growth."""
        return sum(st.reserved + st.base for st in self._streams.values())

    # ------------------------------------------------------------------ output

    def _queue(self, ftype: int, flags: int, stream_id: int, length: int) -> None:
        self._control += 1
        self._out.frame(ftype, flags, stream_id, length)

    def data_to_send(self) -> bytes:
        """Drain everything queued for the wire as one bytes object."""
        out = self._out.drain()
        self._ping_answers = self._control = 0
        if not out:
            return b""
        return bytes(out[0]) if len(out) == 1 else b"".join(out)

    def buffers_to_send(self) -> list[Any]:
        """Drain everything queued for the wire as a list of buffers (for writev)."""
        self._ping_answers = self._control = 0
        return self._out.drain()

    # ------------------------------------------------------------------ local actions

    def _check_open(self) -> None:
        if self.closed:
            raise ConnectionClosedError("yamux session is closed", remote=self.go_away_received is not None)

    def start(self, now: float) -> None:
        """Arm the keepalive timer and send the initial RTT ping (if configured)."""
        if self._started:
            return
        self._started = True
        self._last_rx = now
        if self.config.rtt_interval:
            self._next_rtt = now + self.config.rtt_interval
        if self._ack_limit != self.config.max_ack_backlog:
            self._early_until = now + self.config.early_ack_timeout
        if self.config.initial_ping and not self.closed:
            self._ping(now, _PING_RTT)

    def reserve_open(self) -> bool:
        """Claim one slot of the ACK backlog for a coming ``open_stream(reserved=True)``.

        False while :attr:`ack_limit` streams we opened (plus the slots already
        claimed) wait for their ACK: retry after :class:`StreamAcked` or
        :class:`StreamReset` (go-yamux's ``OpenStream`` waits the same way), or after
        :meth:`expire_early_acks` returned True.
        """
        if self._unacked + self._open_reserved >= self._ack_limit:
            return False
        self._open_reserved += 1
        return True

    def release_open(self) -> None:
        """Give back a slot claimed with :meth:`reserve_open` without opening a stream."""
        if self._open_reserved:
            self._open_reserved -= 1

    @property
    def ack_backlog_full(self) -> bool:
        """True while :meth:`open_stream` without a reserved slot would be refused."""
        return self._unacked + self._open_reserved >= self._ack_limit

    def open_stream(self, reserved: bool = False) -> int:
        """Allocate the next stream id and queue its SYN (WindowUpdate|SYN, delta 0).

        ``reserved``: use a slot claimed with :meth:`reserve_open`.  Without one, a
        full ACK backlog raises ``LocalProtocolError``.
        """
        self._check_open()
        if self.go_away_sent is not None:
            raise LocalProtocolError("cannot open a stream after sending GoAway")
        if reserved:
            if not self._open_reserved:
                raise LocalProtocolError("yamux: open_stream(reserved=True) without reserve_open()")
        elif self._unacked + self._open_reserved >= self._ack_limit:
            raise LocalProtocolError(
                f"yamux: {self._ack_limit} opened streams wait for their ACK (ACK backlog full)"
            )
        sid = self._next_id
        if sid > U32_MAX:
            raise LocalProtocolError("yamux stream ids exhausted")
        # the initial window is memory the peer may fill: charge it before the SYN (go-yamux
        # does the same); ResourceLimitExceeded goes to the caller, nothing is sent
        self.scope.reserve_memory(INITIAL_WINDOW, INITIAL_WINDOW_PRIORITY)
        if reserved:
            self._open_reserved -= 1
        self._next_id = sid + 2
        st = _Stream(sid, True, self._max_window)
        st.base = INITIAL_WINDOW
        self._streams[sid] = st
        self._unacked += 1
        self._queue(_WU, _SYN, sid, 0)
        return sid

    def send_data(self, stream_id: int, data: bytes | memoryview) -> int:
        """Queue as much of ``data`` as the send window allows; return how many bytes."""
        if self.closed:
            self._check_open()
        st = self._streams.get(stream_id)
        if st is None:
            raise StreamClosedError(f"yamux stream {stream_id} is closed or reset")
        if st.local_fin:
            raise StreamClosedError(f"yamux stream {stream_id} is closed for writing")
        total = len(data) if isinstance(data, bytes) else memoryview(data).nbytes
        n = st.window.consume_send(total)
        if n:
            self._out.data(stream_id, data, n)
        return n

    def sender(self, stream_id: int) -> Any:
        """The stream's send path as one object, for shells that write often:
        ``sender(sid).send(data, max_buffered) -> n`` does what :meth:`send_data` does
        (credit, then queue), bounded by ``max_buffered`` queued wire bytes.  It is
        valid while the stream is open for writing here: after ``close_write`` / ``reset``
        / the stream being forgotten / session close, ``send`` raises."""
        self._check_open()
        st = self._streams.get(stream_id)
        if st is None or st.local_fin:
            raise StreamClosedError(f"yamux stream {stream_id} is closed for writing")
        snd = st.sender
        if snd is None:
            snd = st.sender = frames.YamuxStreamSender(st.window, self._out, stream_id)
        return snd

    def close_write(self, stream_id: int) -> None:
        """Half-close our side (WindowUpdate|FIN).  Ignored for unknown streams."""
        self._check_open()
        st = self._streams.get(stream_id)
        if st is None or st.local_fin:
            return
        st.local_fin = True
        if st.sender is not None:
            st.sender.open = False
        self._queue(_WU, _FIN, stream_id, 0)
        if st.remote_fin or st.read_closed:
            self._forget(st)

    def close_read(self, stream_id: int) -> None:
        """The application will not read this stream any more (nothing is sent).

        Later data is credited back at once (the remote never stalls) and not
        reported.  Once our FIN is sent too, the stream is forgotten (go-yamux), and
        data arriving after that is ignored.  Report data the application had
        buffered with :meth:`consumed` as usual.  Ignored for unknown streams.
        """
        if self.closed:
            return
        st = self._streams.get(stream_id)
        if st is None or st.read_closed:
            return
        st.read_closed = True
        if st.local_fin:
            self._forget(st)

    def reset(self, stream_id: int, code: int = 0) -> None:
        """Reset the stream (WindowUpdate|RST, length = error code) and forget it."""
        if not 0 <= code <= U32_MAX:
            raise LocalProtocolError(f"reset code must fit in u32, got {code!r}")
        if self.closed:
            return
        st = self._streams.get(stream_id)
        if st is None:
            return
        self._queue(_WU, _RST, stream_id, code)
        self._forget(st)

    def mark_accepted(self, stream_id: int) -> None:
        """The application took this inbound stream from the accept queue."""
        st = self._streams.get(stream_id)
        if st is not None and not st.accepted:
            st.accepted = True
            self._unaccepted -= 1

    def consumed(self, stream_id: int, n: int, now: float = 0.0, rtt: float | None = None) -> int:
        """The application consumed ``n`` received bytes; maybe queue a WindowUpdate.

        Returns the credit granted (0 if no update was due).  ``rtt`` defaults to the
        session's measured RTT.  Ignored for unknown streams.
        """
        if self.closed:
            return 0
        st = self._streams.get(stream_id)
        if st is None:
            return 0
        w = st.window
        if n:
            w.on_read(n)
        if rtt is None:
            rtt = self.rtt
        target = w.target
        extra = 0
        can_grow = False
        if rtt > 0 and target < w.max_window and (target - w.recv_window - w.recv_buffered) >= target // 2:
            extra = min(target * 2, w.max_window) - target
            mem = st.mem_scope
            if mem is None:
                mem = st.mem_scope = self._growth_scope(stream_id)
            try:
                mem.reserve_memory(extra, WINDOW_GROWTH_PRIORITY)
            except (ResourceLimitExceeded, ResourceScopeClosed):
                extra = 0  # declined: the window stays, the stream goes on
            else:
                can_grow = True
        delta = w.take_update(now, rtt, False, can_grow)
        if extra:
            grown = w.target - target
            if grown:
                st.reserved += grown
            if grown != extra:
                st.mem_scope.release_memory(extra - grown)
        if delta:
            self._queue(_WU, 0, stream_id, delta)
        return delta

    def _growth_scope(self, stream_id: int) -> ResourceScope:
        find = self.stream_scope
        if find is not None:
            scope = find(stream_id)
            if scope is not None:
                return scope
        return self.scope

    def ping(self, now: float) -> int:
        """Queue a ping (SYN) unless one is outstanding; return the outstanding opaque value."""
        self._check_open()
        if self._ping_opaque is not None:
            return self._ping_opaque
        return self._ping(now, _PING_USER)

    def _ping(self, now: float, kind: int) -> int:
        self._ping_seq = (self._ping_seq + 1) & U32_MAX
        opaque = self._ping_seq
        self._ping_opaque = opaque
        self._ping_sent_at = now
        self._ping_kind = kind
        self._queue(_PING, _SYN, 0, opaque)
        return opaque

    def go_away(self, code: int = 0) -> None:
        """Queue GoAway(code) once; inbound SYNs are refused afterwards."""
        if not 0 <= code <= U32_MAX:
            raise LocalProtocolError(f"GoAway code must fit in u32, got {code!r}")
        if self.closed or self.go_away_sent is not None:
            return
        self.go_away_sent = code
        self._queue(_GOAWAY, 0, 0, code)

    def close(self) -> None:
        """Mark the session over (no bytes queued); frees every stream's reservation."""
        if self.closed:
            return
        self.closed = True
        self._release_all()

    def _release_all(self) -> None:
        for st in self._streams.values():
            if st.sender is not None:
                st.sender.open = False
            if st.reserved:
                st.mem_scope.release_memory(st.reserved)
                st.reserved = 0
            if st.base:
                self.scope.release_memory(st.base)
                st.base = 0
        self._streams.clear()
        self._num_inbound = self._unaccepted = self._unacked = self._open_reserved = 0

    def _forget(self, st: _Stream) -> None:
        del self._streams[st.stream_id]
        if st.sender is not None:
            st.sender.open = False
        if st.reserved:
            st.mem_scope.release_memory(st.reserved)
            st.reserved = 0
        if st.base:
            self.scope.release_memory(st.base)
            st.base = 0
        if not st.outbound:
            self._num_inbound -= 1
            if not st.accepted:
                self._unaccepted -= 1
        elif not st.acked:
            self._unacked -= 1

    # ------------------------------------------------------------------ timers

    def next_deadline(self) -> float | None:
        """The next time :meth:`handle_timer` has work, or None."""
        if self.closed or not self._started:
            return None
        cands: list[float] = []
        if self._ping_opaque is not None:
            cands.append(self._ping_sent_at + self.config.ping_timeout)
        else:
            if self.config.enable_keepalive:
                cands.append(self._last_rx + self.config.keepalive_interval)
            if self._next_rtt is not None:
                cands.append(self._next_rtt)
        return min(cands) if cands else None

    def handle_timer(self, now: float) -> list[Event]:
        """Run due timers: ping timeouts, keepalive and RTT pings."""
        if self.closed or not self._started:
            return []
        cfg = self.config
        if self._rx_seen:
            self._rx_seen = False
            if now > self._last_rx:
                self._last_rx = now
        if self._ping_opaque is not None:
            if now < self._ping_sent_at + cfg.ping_timeout:
                return []
            if self._ping_kind == _PING_KEEPALIVE:
                err = P2PTimeoutError(f"yamux keepalive ping unanswered for {cfg.ping_timeout:g}s")
                self.error = err
                self.closed = True
                self._release_all()
                return [SessionError(error=err, go_away_code=None)]
            self._ping_opaque = None  # RTT/user ping: just drop it
        if cfg.enable_keepalive and now >= self._last_rx + cfg.keepalive_interval:
            self._ping(now, _PING_KEEPALIVE)
            if self._next_rtt is not None:
                self._next_rtt = now + cfg.rtt_interval
        elif self._next_rtt is not None and now >= self._next_rtt:
            self._next_rtt = now + cfg.rtt_interval
            self._ping(now, _PING_RTT)
        return []

    # ------------------------------------------------------------------ input

    def receive_data(self, data: bytes, now: float | None = None) -> list[Event]:
        """Parse ``data`` and return the resulting events.

        ``now`` (monotonic seconds) resets the keepalive timer precisely and lets
        the session compute the RTT of a pong.  After the session ended, input is
        ignored (returns []).
        """
        if self.closed:
            return []
        events: list[Event] = []
        try:
            frame_list = self._reader.feed(data)
        except ProtocolError as exc:
            self._fail(_remote(exc), events)
            return events
        return self._on_frames(frame_list, now, events)

    def receive_buffer(self, size: int) -> memoryview:
        """A writable view of ``size`` bytes in the frame reader's buffer: receive into
        it (no copy), release it, then call :meth:`receive_into` with the byte count."""
        return self._reader.get_buffer(size)

    def detach_receive_buffer(self) -> bytearray | None:
        """The frame reader's buffer, handed over while no partial frame is buffered
        (a shell pools it while the connection is idle); None otherwise."""
        return self._reader.detach_buffer()  # type: ignore[no-any-return]

    def attach_receive_buffer(self, buf: bytearray) -> bool:
        """Receive into ``buf`` from now on (only while the reader holds none)."""
        return bool(self._reader.attach_buffer(buf))

    def receive_into(self, n: int, now: float | None = None) -> list[Event]:
        """Like :meth:`receive_data` for ``n`` bytes written into the last
        :meth:`receive_buffer` view."""
        if self.closed:
            return []
        events: list[Event] = []
        try:
            frame_list = self._reader.commit(n)
        except ProtocolError as exc:
            self._fail(_remote(exc), events)
            return events
        return self._on_frames(frame_list, now, events)

    def _on_frames(self, frame_list: list[Any], now: float | None, events: list[Event]) -> list[Event]:
        if frame_list:
            if now is not None:
                self._last_rx = now
            else:
                self._rx_seen = True
        streams = self._streams
        for ftype, flags, sid, length, payload in frame_list:
            if ftype <= _WU:
                if sid == 0:
                    self._fail(RemoteProtocolError(f"yamux: {'Data' if ftype == _DATA else 'WindowUpdate'} on stream 0"), events)
                    return events
                if flags & _SYN:
                    st = self._on_syn(sid, events)
                    if self.closed:
                        return events
                else:
                    st = streams.get(sid)
                if st is None:
                    continue  # unknown, forgotten or refused stream: ignore
                if flags & _ACK and not st.acked:
                    st.acked = True
                    self._unacked -= 1
                    if self._ack_limit != self.config.max_ack_backlog:
                        self._end_early_acks()
                    events.append(StreamAcked(stream_id=sid))
                if ftype == _DATA:
                    if length:
                        try:
                            st.window.on_data(length)
                        except WindowError as exc:
                            self._fail(exc, events)
                            return events
                        if st.remote_fin:
                            # data after FIN: drop it, but keep the window honest
                            st.window.on_read(length)
                        elif st.read_closed:
                            # discarded: give the credit straight back
                            st.window.on_read(length)
                            delta = st.window.take_update(now or 0.0, self.rtt, False, False)
                            if delta:
                                self._queue(_WU, 0, sid, delta)
                        else:
                            events.append(DataReceived(stream_id=sid, data=payload))
                elif length and not flags & _RST:
                    try:
                        st.window.add_send_credit(length)
                    except WindowError as exc:
                        self._fail(exc, events)
                        return events
                    events.append(WindowUpdated(stream_id=sid, delta=length))
                if flags & _RST:
                    code = length if ftype == _WU else 0
                    self._forget(st)
                    events.append(StreamReset(stream_id=sid, error_code=code))
                    continue
                if flags & _FIN and not st.remote_fin:
                    st.remote_fin = True
                    events.append(StreamHalfClosed(stream_id=sid))
                    if st.local_fin:
                        self._forget(st)
            elif ftype == _PING:
                if sid != 0:
                    self._fail(RemoteProtocolError(f"yamux: Ping on stream {sid}"), events)
                    return events
                if flags & _SYN:
                    if self._ping_answers < self.config.max_ping_backlog:
                        self._ping_answers += 1
                        self._queue(_PING, _ACK, 0, length)
                    events.append(PingReceived(opaque=length))
                elif flags & _ACK and length == self._ping_opaque:
                    sent = self._ping_sent_at
                    self._ping_opaque = None
                    rtt = None
                    if now is not None:
                        rtt = max(0.0, now - sent)
                        self.rtt = rtt
                    events.append(PongReceived(opaque=length, sent_at=sent, rtt=rtt))
            else:  # GoAway
                if sid != 0:
                    self._fail(RemoteProtocolError(f"yamux: GoAway on stream {sid}"), events)
                    return events
                self.go_away_received = length
                self.closed = True
                self._release_all()
                events.append(GoAwayReceived(error_code=length))
                return events
        if self._reader.buffered >= 12:
            # The reader stops at a malformed header and raises on the next feed:
            # surface it now instead of waiting for more bytes.
            try:
                self._reader.feed(b"")
            except ProtocolError as exc:
                self._fail(_remote(exc), events)
        if self._reader.partial_stream >= 0 and not self.closed:
            self._check_partial(events)
        return events

    def _check_partial(self, events: list[Event]) -> None:
        """A Data frame's header arrived but not all of its body: reject a body larger
        than the stream's receive window now, before up to ``max_window_size`` bytes of
        it are buffered (a hostile peer could otherwise make us hold that much)."""
        r = self._reader
        sid = r.partial_stream
        st = self._streams.get(sid)
        if st is not None:
            allowed = st.window.recv_window
        elif r.partial_flags & _SYN and sid:
            allowed = INITIAL_WINDOW  # opens a stream: the initial window applies
        else:
            return  # unknown or forgotten stream: the body is dropped (bounded by the reader)
        if r.partial_length > allowed:
            self._fail(WindowError(
                f"received {r.partial_length} bytes, window {allowed} (stream {sid}, seen in the header)"
            ), events)

    def _on_syn(self, sid: int, events: list[Event]) -> _Stream | None:
        if (sid & 1) != self._remote_parity:
            self._fail(RemoteProtocolError(
                f"yamux: SYN for stream {sid} with our parity (both endpoints are "
                f"{'clients' if self.is_initiator else 'servers'})"
            ), events)
            return None
        if sid in self._streams:
            # (ids below the highest seen are allowed: go may send concurrent SYNs out of order)
            self._fail(RemoteProtocolError(f"yamux: SYN for existing stream {sid}"), events)
            return None
        reason = None
        if self.go_away_sent is not None:
            reason = "session is going away"
        elif self._num_inbound >= self.config.max_inbound_streams:
            reason = f"more than {self.config.max_inbound_streams} inbound streams"
        elif self._unaccepted >= self.config.accept_backlog:
            reason = f"accept backlog of {self.config.accept_backlog} is full"
        if reason is None:
            try:  # the initial window the peer may fill at once (go-yamux charges it too)
                self.scope.reserve_memory(INITIAL_WINDOW, INITIAL_WINDOW_PRIORITY)
            except (ResourceLimitExceeded, ResourceScopeClosed) as exc:
                reason = f"no memory for its receive window: {exc}"
        if reason is not None:
            self._queue(_WU, _RST, sid, RESET_CODE_RESOURCE_LIMIT)
            events.append(StreamRefused(stream_id=sid, reason=reason))
            return None
        st = _Stream(sid, False, self._max_window)
        st.base = INITIAL_WINDOW
        self._streams[sid] = st
        self._num_inbound += 1
        self._unaccepted += 1
        self._queue(_WU, _ACK, sid, 0)
        events.append(StreamOpened(stream_id=sid))
        return st

    def _fail(self, exc: Exception, events: list[Event]) -> None:
        code = int(GoAwayCode.PROTOCOL_ERROR)
        sent = None
        if self.go_away_sent is None:
            self.go_away_sent = sent = code
            self._queue(_GOAWAY, 0, 0, code)
        self.error = exc
        self.closed = True
        self._release_all()
        events.append(SessionError(error=exc, go_away_code=sent))


def _remote(exc: ProtocolError) -> ProtocolError:
    if isinstance(exc, RemoteProtocolError):
        return exc
    err = RemoteProtocolError(str(exc))
    err.__cause__ = exc
    return err
