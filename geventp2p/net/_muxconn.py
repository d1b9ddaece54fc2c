"""The gevent shell every stream muxer shares: :class:`MuxConn` and :class:`MuxStream`.

A muxed connection is a sans-I/O core (:class:`geventp2p.sansio._mux.MuxSession`:
yamux or mplex) driven by two greenlets.  Subclasses (``YamuxConn``, ``MplexConn``)
supply only what their protocol adds; this module owns the rest:

* one **reader** greenlet: ``conn.readinto`` (straight into the core's frame buffer,
  when the core offers one) or ``conn.read`` -> ``session.receive_data`` -> wake the
  streams.  It never writes to the connection: control frames go to the core's
  outbound queue and the writer flushes them (a reader stuck behind a write is the
  classic muxer deadlock, libp2p/go-yamux issue #7).  It lets other greenlets run
  (``gevent.sleep(0)``) after a burst (``frames_per_yield`` events or
  ``YIELD_BYTES`` bytes; without flow control, as in mplex, also within a read and
  counted across reads), so one large read cannot starve thousands of streams,
  and a stream's reader gets to consume before the next burst (a reader that never
  yields lets one fast mplex sender pass a stream's buffer cap);
* one **writer** greenlet: drains everything the core queued (frames of all streams,
  window updates, pings) into few ``writev`` calls of at most ``write_batch_size``
  bytes, each bounded by ``write_timeout`` when the protocol has one, and runs the
  core's timers (``next_deadline`` / ``handle_timer``: keepalive, RTT);
* **termination**, first error wins: remote EOF, a transport error, a protocol
  violation, GoAway, a keepalive timeout or ``close()`` end the session once, with a
  typed :class:`ConnectionClosedError` (``error``; its ``__cause__`` is the original
  error).  Every stream fails with it, except that a stream whose remote FIN already
  arrived keeps its buffered data and EOF (go-yamux ``forceClose``); blocked
  ``accept_stream`` / ``open_stream`` calls fail; frames already queued are flushed
  (bounded: ``CLOSE_FLUSH_TIMEOUT`` after ``close()``, ``GOAWAY_FLUSH_TIMEOUT`` after
  a protocol error); then the connection is closed and ``wait_closed`` returns;
* a failed connection **write** does not end the session at once: bytes the peer sent
  before it went away may still be unread, so the reader drains them to EOF (at most
  ``WRITE_FAILURE_DRAIN`` seconds) and streams that got their data and FIN stay
  readable; writes and new streams fail from then on;
* **control back-pressure** (cores with ``control_backlog_full``: yamux): while the
  core holds its bound of queued control frames (ACKs, RSTs, window updates,
  pongs), the reader stops reading until the writer drained them, so a peer that
  makes us answer faster than it reads is slowed down to its own reading pace
  (and dropped by ``write_timeout`` if it does not read at all);
* the **accept queue**: inbound streams wait for ``accept_stream``; the core refuses
  streams past its ``accept_backlog`` (``mark_accepted`` counts the taken ones).

Stream writes go straight into the core from the application's greenlet (no switch);
they block only on the protocol's back-pressure (yamux's send window) or while
``max_send_buffer_size`` bytes wait for the writer.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import deque
from typing import Any, Callable, ClassVar, Generic, Optional, TypeVar

import gevent
from gevent import get_hub
from gevent.event import Event

from geventp2p.core.rcmgr import ResourceScope
from geventp2p.exceptions import ConnectionClosedError, P2PError, P2PTimeoutError, StreamResetError
from geventp2p.net._deadline import Deadline, timeout_scope
from geventp2p.net._workers import Worker
from geventp2p.net import bufpool as _bufpool
from geventp2p.net.bufpool import POOL as _POOL
from geventp2p.core.mux import Direction
from geventp2p.core.transport import RawConn
from geventp2p.net.stream import Stream
from geventp2p.sansio._mux import (
    DataReceived,
    GoAwayReceived,
    MuxSession,
    SessionError,
    StreamHalfClosed,
    StreamOpened,
    StreamRefused,
    StreamReset,
)

__all__ = ["MuxConn", "MuxStream", "CLOSE_FLUSH_TIMEOUT", "GOAWAY_FLUSH_TIMEOUT", "WRITE_FAILURE_DRAIN",
           "IDLE_RETIRE_AFTER", "set_idle_retire_after"]

log = logging.getLogger(__name__)

#: How long a protocol error waits for its GoAway to be written before closing.
GOAWAY_FLUSH_TIMEOUT = 0.1
#: How long ``close()`` waits for already-queued frames (data, FIN, GoAway) to be written.
CLOSE_FLUSH_TIMEOUT = 1.0
#: After a failed connection write, how long the reader may keep draining received data.
WRITE_FAILURE_DRAIN = 5.0
#: A connection whose reader and writer both waited this long (between one and two
#: periods) with nothing to do gives up its greenlets until the socket is readable,
#: something is queued, or a timer is due (a parked greenlet costs ~8 KiB).
IDLE_RETIRE_AFTER = float(os.environ.get("GEVENTP2P_IDLE_RETIRE_AFTER", "5.0") or 0.0)
#: A reader that waits with nothing buffered keeps its receive buffers (the muxer's frame
#: buffer and, over Noise, the decryptor's) for between one and two of these periods
#: (seconds) before they go back to the pool (:class:`_BufferSweeper`): a connection
#: that waits only between the rounds of a conversation keeps warm buffers, and one
#: that went quiet holds none.
BUFFER_IDLE = 0.05

_monotonic = time.monotonic
# module globals: a class attribute lookup on an Enum costs ~50 ns per stream open
_INBOUND = Direction.INBOUND
_OUTBOUND = Direction.OUTBOUND

#: Read sizes of the frame buffer below the muxer's ``READ_SIZE``: a connection starts
#: with the smallest and steps up while reads fill the buffer (bulk traffic).
_SMALL_READS = (16 * 1024, 64 * 1024)


def _read_sizes(read_size: int) -> tuple[int, ...]:
    return tuple(s for s in _SMALL_READS if s < read_size) + (read_size,)


S = TypeVar("S", bound=MuxSession)
T = TypeVar("T", bound="MuxStream")


class MuxStream(Stream):
    """A stream of a :class:`MuxConn`: the blocking API is :class:`Stream`'s; the hooks
    hand each act to the core under the stream's session id (``_key``)."""

    __slots__ = ("_mux", "_key")

    def __init__(self, mux: "MuxConn[Any, Any]", key: int, stream_id: int, direction: Direction) -> None:
        super().__init__(mux, stream_id, direction)
        self._mux = mux
        self._key = key

    def _send_close_write(self) -> None:
        mux = self._mux
        if not mux._terminated:
            mux._session.close_write(self._key)
            mux._wake_writer.set()

    def _send_reset(self, code: int) -> None:
        mux = self._mux
        if not mux._terminated:
            mux._session.reset(self._key, code)
            mux._wake_writer.set()

    def _on_consumed(self, n: int) -> None:
        # once per application read: one core call (yamux may grant window here)
        mux = self._mux
        if mux._session.consumed(self._key, n, _monotonic()):
            mux._wake_writer.set()

    def _on_close_read(self) -> None:
        mux = self._mux
        if not mux._terminated:
            mux._session.close_read(self._key)

    def _on_state_change(self) -> None:
        if self.finished:
            self._mux._forget(self)


class MuxConn(Generic[S, T]):
    """A running muxed session over one secured connection (the MuxedConn API).

    Subclasses set ``NAME``, ``STREAM_CLASS`` and ``READ_SIZE``/``YIELD_BYTES``, create
    the core and pass it to ``__init__``; they may override
    :meth:`_open_session_stream` (yamux: the ACK backlog), :meth:`_on_event` (events only
    their core has), :meth:`_after_flush` (how blocked writers are woken) and
    :meth:`_on_terminate`.
    """

    NAME: ClassVar[str] = "mux"
    #: Bytes asked of the connection per read.
    READ_SIZE: ClassVar[int] = 256 * 1024
    #: The reader yields to other greenlets after this many bytes read.
    YIELD_BYTES: ClassVar[int] = 64 * 1024
    #: How often the reader yields.  With flow control (yamux: a window bounds each
    #: stream's unread bytes) it yields after a read of ``YIELD_BYTES`` or one that
    #: gave ``frames_per_yield`` events.  Without (mplex) it yields after every
    #: ``YIELD_BYTES`` counted across reads and every ``frames_per_yield`` events
    #: within a read, so a stream's reader consumes before a fast sender passes the
    #: stream's buffer cap.
    FLOW_CONTROLLED: ClassVar[bool] = False
    #: The core receives straight into its frame buffer (``receive_buffer``/``receive_into``).
    RECEIVE_INTO: ClassVar[bool] = False
    #: The core bounds its queued control frames (``control_backlog_full``): the reader
    #: pauses while the bound is reached.
    CONTROL_BACKPRESSURE: ClassVar[bool] = False
    #: The stream class: ``STREAM_CLASS(conn, stream_id_in_the_core, direction)``.
    STREAM_CLASS: ClassVar[Callable[..., Any]]

    # slots: past 30 attributes CPython 3.11 gives each instance a dict of its own
    # (about 1.5 KiB per connection in bench.conns); subclasses keep a small dict
    __slots__ = (
        "conn", "is_initiator", "config", "scope", "_session", "_streams", "_accept_queue",
        "_accept_event", "_wake_writer", "_closed_event", "_read_size", "_drained",
        "_blocked", "_error", "_write_failure", "_terminated", "_clean_close", "_local_close",
        "_flush_timeout", "_force_closer", "_drain_guard", "_flushes", "_in_write",
        "_max_send_buffer", "_max_pending_send", "_frames_per_yield", "_write_batch_size",
        "_write_timeout", "_write_scope", "_read_paused", "read_pauses", "_on_stream",
        "_on_closed", "_reader_parked", "_writer_parked", "_reader_retired", "_writer_retired",
        "_activity", "_activity_seen", "_streamless", "_buffers_released", "_reader_wakes", "_read_watch",
        "_write_timer", "_wake_event", "_reader", "_writer", "_wake_pending", "__weakref__",
    )

    def __init__(
        self,
        conn: RawConn,
        is_initiator: bool,
        config: Any,
        scope: ResourceScope,
        session: S,
        *,
        write_timeout: float = 0.0,
        write_batch_size: int = 1 << 30,
        read_size: int | None = None,
        max_pending_send: int | None = None,
    ) -> None:
        self.conn = conn
        self.is_initiator = bool(is_initiator)
        self.config = config
        self.scope = scope
        self._session: S = session
        self._streams: dict[int, T] = {}
        # streams waiting for accept_stream(), created on the first one (an empty deque
        # is about 600 bytes; a host's connections serve() and never queue)
        self._accept_queue: deque[T] | None = None
        # events nobody may ever wait on are made by their first waiter (a gevent
        # Event is about 150 bytes; hosts serve() streams and rarely wait_closed())
        self._accept_event: Event | None = None
        self._wake_writer = Event()
        # True from a fast-path write's wake-up until the writer clears the event (the
        # event is set meanwhile): later writes skip the redundant set()
        self._wake_pending = False
        self._closed_event: Event | None = None  # _DONE once finished without a waiter
        self._blocked: dict[MuxStream, None] = {}  # streams whose writes wait for the writer, FIFO
        self._flushes = 0  # writer flushes so far
        self._error: Exception | None = None
        self._clean_close = False
        self._terminated = False
        self._in_write = False
        self._local_close = False  # close() was called: flush what is queued before closing
        self._flush_timeout = CLOSE_FLUSH_TIMEOUT
        self._force_closer: gevent.Greenlet | None = None
        #: set when a connection write failed while the reader may still drain data
        self._write_failure: ConnectionClosedError | None = None
        self._drain_guard: gevent.Greenlet | None = None
        self._max_send_buffer: int = config.max_send_buffer_size
        self._frames_per_yield: int = config.frames_per_yield
        self._write_timeout = write_timeout
        # one scope, reused by the one writer greenlet (no allocation per flush)
        self._write_scope = timeout_scope(write_timeout or None, f"{self.NAME}: a connection write")
        self._write_batch_size = write_batch_size
        self._read_size = read_size if read_size is not None else self.READ_SIZE
        # queued bytes past which a peer that does not read what we send is dropped
        self._max_pending_send = max_pending_send
        # control back-pressure: the reader waits on _drained while _read_paused
        self._drained: Event | None = None
        self._read_paused = False
        #: How often the reader paused because the core's control backlog was full.
        self.read_pauses = 0
        # inbound streams go to _on_stream instead of the accept queue once serve() ran
        self._on_stream: Callable[[T], None] | None = None
        self._on_closed: Callable[[], None] | None = None
        # idle retirement (see _IdleSweeper): the reader/writer flag the one place where
        # they may be ended, and count their wake-ups so an idle period can be told
        self._reader_parked = False
        self._writer_parked = False
        self._reader_retired = False
        self._writer_retired = False
        self._activity = 0
        self._activity_seen = -1
        self._streamless = False  # no open stream at the last idle sweep
        # the frame buffer went back to the pool while the reader waited (_BufferSweeper),
        # and the reader's own wake-ups (_activity also counts the writer's)
        self._buffers_released = False
        self._reader_wakes = 0
        self._read_watch: Any = None
        self._write_timer: Any = None
        self._wake_event = self._wake_writer  # the real event, while _wake_writer may be a respawner
        self._reader = Worker.spawn(self._read_loop)
        self._writer = Worker.spawn(self._write_loop)
        if session.bytes_to_send:
            self._wake_writer.set()
        _IdleSweeper.track(self)

    def __repr__(self) -> str:
        state = "closed" if self._terminated else "open"
        role = "client" if self.is_initiator else "server"
        return f"<{type(self).__name__} {role} streams={len(self._streams)} {state}>"

    # ------------------------------------------------------------------ public API

    @property
    def closed(self) -> bool:
        return self._terminated

    @property
    def num_streams(self) -> int:
        """Streams not yet finished (both directions closed) or reset."""
        return len(self._streams)

    @property
    def error(self) -> Exception | None:
        """Why the session ended: a :class:`ConnectionClosedError` whose ``__cause__`` is
        the original error (None while open, or after a local ``close()`` with code 0)."""
        return None if self._clean_close else self._error

    def open_stream(self, timeout: float | None = None) -> T:
        """Blocks the calling greenlet while the protocol makes opening wait (yamux: the
        ACK backlog), then opens a stream (its SYN / NewStream is sent at once)."""
        self._check_alive(write=True)
        key = self._open_session_stream(timeout)
        stream = self.STREAM_CLASS(self, key, _OUTBOUND)
        self._streams[key] = stream
        self._wake_writer.set()
        return stream

    def accept_stream(self, timeout: float | None = None) -> T:
        """Blocks the calling greenlet until the remote opens a stream.

        Raises ConnectionClosedError once the session is over and no stream is left
        to accept (a stream that arrived complete, data + FIN, just before the session
        ended is still delivered: its data is readable), P2PTimeoutError on timeout.
        """
        deadline: Deadline | None = None
        while True:
            queue = self._accept_queue
            while queue:
                stream = queue.popleft()
                err = stream._reset_error
                if err is not None and (err.remote or self._terminated):
                    # the remote gave up on it, or it died with the session: skip it.
                    # (One this side reset, e.g. for a protocol violation, is handed
                    # out: its reads raise that error.)
                    continue
                if not self._terminated:
                    self._session.mark_accepted(stream._key)
                return stream
            self._check_alive()
            event = self._accept_event
            if event is None:
                event = self._accept_event = Event()
            event.clear()
            if deadline is None:
                deadline = Deadline(timeout)
            elif deadline.expired():
                raise P2PTimeoutError(f"{self.NAME}: accept_stream timed out")
            event.wait(deadline.left())

    def serve(self, on_stream: Callable[[T], None], on_closed: Callable[[], None]) -> None:
        """Hand every inbound stream to ``on_stream`` instead of queueing it for
        :meth:`accept_stream` (streams already queued are handed over now), and call
        ``on_closed()`` once when the session is over.

        Both run on the muxer's reader (or whichever greenlet ends the session) and must
        not block: spawn the work.  Serving costs no greenlet while no stream arrives
        (an accept loop parks one per connection).
        """
        self._on_closed = on_closed
        if self._terminated:
            self._on_closed = None
            on_closed()
            return
        self._on_stream = on_stream
        queue = self._accept_queue
        while queue:
            stream = queue.popleft()
            if stream._reset_error is not None and stream._reset_error.remote:
                continue
            self._session.mark_accepted(stream._key)
            on_stream(stream)

    def close(self, code: int = 0, *, timeout: float | None = None) -> None:
        """Close the session: every stream fails with ``ConnectionClosedError``, the
        connection is closed.

        ``code`` 0 closes without GoAway (go ``Close``); another code sends GoAway(code)
        first where the protocol has one (yamux; go ``CloseWithError``: 1 protocol,
        2 internal, 0x1000+ go-libp2p reasons).  Frames already queued (data, FIN,
        GoAway) are written first, for at most ``timeout`` (``CLOSE_FLUSH_TIMEOUT``).
        Blocks the calling greenlet until both greenlets ended (bounded).  Idempotent.
        """
        flush = CLOSE_FLUSH_TIMEOUT if timeout is None else timeout
        if not self._terminated:
            if code:
                self._session.go_away(code)
            self._clean_close = not code
            self._local_close = True
            self._flush_timeout = flush
            self._terminate(ConnectionClosedError(
                f"{self.NAME} session closed locally", error_code=code, remote=False
            ))
        cur = gevent.getcurrent()
        if cur is not self._reader and cur is not self._writer:
            self.wait_closed(timeout=flush + 1.0)

    def close_with_error(self, code: int) -> None:
        """``close(code)``: GoAway(``code``, a ``ConnErrorCode``) where the protocol has one
        (yamux), a plain close otherwise (mplex)."""
        self.close(code)

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Blocks the calling greenlet until the session is over and both greenlets ended;
        False if ``timeout`` passed first."""
        deadline = Deadline(timeout)
        closed = self._closed_event
        if closed is None:
            closed = self._closed_event = Event()
        if not closed.wait(timeout):
            return False
        cur = gevent.getcurrent()
        left = [g for g in (self._reader, self._writer) if g is not cur]
        gevent.joinall(left, timeout=deadline.left())
        return all(g.dead for g in left)

    def __enter__(self) -> "MuxConn[S, T]":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ subclass hooks

    def _open_session_stream(self, timeout: float | None) -> int:
        """Open a stream in the core and return its id (may block, within ``timeout``)."""
        return self._session.open_stream()

    def _on_event(self, ev: object) -> None:
        """An event only this protocol's core has."""

    def _after_flush(self) -> None:
        """The writer flushed the queue and some writers wait: wake the ones blocked on
        a full queue."""
        blocked = self._blocked
        if self._session.bytes_to_send < self._max_send_buffer:
            self._blocked = {}
            for stream in blocked:
                stream._notify_writable()

    def _on_terminate(self, error: ConnectionClosedError) -> None:
        """The session just ended (streams already failed): fail protocol waiters."""

    # ------------------------------------------------------------------ stream side

    def _check_alive(self, write: bool = False) -> None:
        if write and not self._terminated and self._write_failure is not None:
            raise _copy(self._write_failure)
        if self._terminated:
            err = self._error
            if isinstance(err, ConnectionClosedError):
                raise _copy(err)
            raise ConnectionClosedError(f"{self.NAME} session is over: {err}", remote=True)

    def _forget(self, stream: MuxStream) -> None:
        key = stream._key
        if self._streams.get(key) is stream:
            del self._streams[key]
        if self._blocked:
            self._blocked.pop(stream, None)

    # ------------------------------------------------------------------ reader

    def _read_loop(self) -> None:
        conn = self.conn
        session: Any = self._session
        read_size = self._read_size
        per_yield = self._frames_per_yield
        yield_bytes = self.YIELD_BYTES
        often = not self.FLOW_CONTROLLED
        max_pending = self._max_pending_send
        bounded = self.CONTROL_BACKPRESSURE
        # receive straight into the core's frame buffer when both sides can (RawConn.readinto)
        readinto = getattr(conn, "readinto", None) if self.RECEIVE_INTO else None
        # the frame buffer goes back to the pool once the connection has waited with
        # nothing buffered for a while (_BufferSweeper), and comes back once it is
        # readable; its size follows the traffic
        detach = getattr(session, "detach_receive_buffer", None) if readinto is not None else None
        sweeper = _BufferSweeper.of_current_hub() if detach is not None else None
        wait_readable: Any = getattr(conn, "wait_readable", None)
        # reads that return None instead of waiting (RawConn.readinto_nowait), else waiting ones
        nowait: Any = getattr(conn, "readinto_nowait", None) if wait_readable is not None else None
        if nowait is None:
            nowait = readinto
        sizes = _read_sizes(read_size)
        step = 0  # index of the read size in sizes: up while reads fill the view, down on small ones
        cur = sizes[0]
        top = len(sizes) - 1
        fresh = True  # no buffer taken from the pool yet (the first one comes from it)
        # the last read returned less than asked: the socket is most likely empty now, so
        # the reader waits for readability before reading again (a read that would only
        # fail with EAGAIN costs a system call and an exception; a wait on a socket that
        # did get bytes meanwhile returns at the loop's next turn)
        drained = False
        since_yield = 0  # bytes read since the reader last let other greenlets run
        data = b""
        try:
            while not self._terminated:
                try:
                    if readinto is not None:
                        if fresh and detach is not None:
                            fresh = False
                            session.attach_receive_buffer(_POOL.acquire(cur))
                        if drained:
                            drained = False
                            got = None
                        else:
                            view = session.receive_buffer(cur)
                            try:
                                got = nowait(view)
                            finally:
                                view.release()
                        if got is None:  # nothing there: wait (the sweeper may take the buffers)
                            self._reader_parked = True
                            if sweeper is not None:
                                sweeper.note(self)
                            try:
                                wait_readable()
                            except _Retire:  # idle: the socket's watcher starts a new reader
                                return
                            finally:
                                self._reader_parked = False
                            self._activity += 1
                            self._reader_wakes += 1
                            if self._buffers_released:
                                self._buffers_released = False
                                if not self._terminated:
                                    session.attach_receive_buffer(_POOL.acquire(cur))
                            continue
                        drained = got < cur and wait_readable is not None
                        if got * 2 >= cur:
                            if step < top:
                                step += 1
                                cur = sizes[step]
                        elif step and got * 8 < cur:
                            step -= 1
                            cur = sizes[step]
                    else:
                        data = conn.read(read_size)
                        got = len(data)
                except (P2PError, OSError) as exc:
                    if not self._terminated:
                        self._terminate(ConnectionClosedError(
                            f"{self.NAME}: connection read failed: {exc}", remote=True
                        ), cause=exc)
                    return
                if not got:
                    if not self._terminated:
                        self._terminate(ConnectionClosedError(
                            f"{self.NAME}: connection closed by the remote", remote=True
                        ))
                    return
                if readinto is not None:
                    events = session.receive_into(got, _monotonic())
                else:
                    events = session.receive_data(data, _monotonic())
                if events:
                    if often and len(events) > per_yield:
                        self._handle_events_yielding(events, per_yield)
                    else:
                        self._handle_events(events)
                if session.bytes_to_send:
                    if self._write_failure is not None:
                        # nothing is written any more: drop what the frames made us queue
                        session.buffers_to_send()
                    elif max_pending is not None and session.bytes_to_send > max_pending:
                        log.debug("%s: %d bytes queued for a peer that does not read them",
                                  self.NAME, session.bytes_to_send)
                        self._terminate(ConnectionClosedError(
                            f"{self.NAME}: the peer makes us queue frames it does not read", remote=True
                        ))
                        return
                    else:
                        self._wake_writer.set()
                        if bounded and session.control_backlog_full:
                            self._wait_drained()
                            continue
                since_yield = since_yield + got if often else got
                if since_yield >= yield_bytes or len(events) >= per_yield:
                    # let the streams' readers consume before reading more: bounds the
                    # bytes buffered per burst (cache-warm, and freed memory is reused)
                    since_yield = 0
                    gevent.sleep(0)
        except Exception as exc:  # a bug: end this session only
            log.exception("%s reader failed", self.NAME)
            self._terminate(ConnectionClosedError(
                f"{self.NAME} internal error: {exc!r}", error_code=2, remote=False
            ), cause=exc)
        finally:
            if detach is not None:
                self._give_back_buffers()

    def _wait_drained(self) -> None:
        """The core holds its bound of queued control frames: read nothing more until
        the writer has taken them (it may block on a peer that reads slowly; one that
        does not read at all ends the session through ``write_timeout``)."""
        self.read_pauses += 1
        session: Any = self._session
        drained = self._drained
        if drained is None:
            drained = self._drained = Event()
        self._read_paused = True
        try:
            while session.control_backlog_full and not self._terminated and self._write_failure is None:
                drained.clear()
                self._wake_writer.set()
                drained.wait()
        finally:
            self._read_paused = False

    def _handle_events_yielding(self, events: list[Any], per_yield: int) -> None:
        """Apply a long list of events, letting other greenlets run between slices."""
        for start in range(0, len(events), per_yield):
            if start:
                if self._session.bytes_to_send:
                    self._wake_writer.set()
                gevent.sleep(0)
                if self._terminated:
                    return
            self._handle_events(events[start:start + per_yield])

    def _handle_events(self, events: list[Any]) -> None:
        streams = self._streams
        for ev in events:
            cls = type(ev)
            if cls is DataReceived:
                stream = streams.get(ev.stream_id)
                if stream is not None:
                    stream._feed_data(ev.data)
                else:  # stream gone locally (closed for reading): account and drop
                    self._session.consumed(ev.stream_id, len(ev.data), _monotonic())
            elif cls is StreamOpened:
                key = ev.stream_id
                stream = self.STREAM_CLASS(self, key, _INBOUND)
                streams[key] = stream
                serve = self._on_stream
                if serve is not None:
                    self._session.mark_accepted(key)
                    serve(stream)
                    continue
                queue = self._accept_queue
                if queue is None:
                    queue = self._accept_queue = deque()
                elif len(queue) >= self.config.accept_backlog:
                    # at most accept_backlog queued streams are alive (the core refuses
                    # more); drop the ones that were reset while nobody accepted them
                    self._accept_queue = queue = deque(q for q in queue if not q.is_reset)
                queue.append(stream)
                if self._accept_event is not None:
                    self._accept_event.set()
            elif cls is StreamHalfClosed:
                stream = streams.get(ev.stream_id)
                if stream is not None:
                    stream._feed_eof()
            elif cls is StreamReset:
                stream = streams.pop(ev.stream_id, None)
                if stream is not None:
                    self._blocked.pop(stream, None)
                    if ev.remote:
                        msg = f"{self.NAME} stream {stream.id} reset by the remote"
                    else:
                        msg = f"{self.NAME} stream {stream.id} reset: {ev.reason}"
                        log.debug("%s", msg)
                    stream._feed_reset(StreamResetError(msg, error_code=ev.error_code, remote=ev.remote))
                self._on_event(ev)
            elif cls is SessionError:
                log.debug("%s: session error: %s", self.NAME, ev.error)
                self._terminate(ConnectionClosedError(
                    f"{self.NAME} session error: {ev.error}", error_code=ev.go_away_code or 0, remote=True
                ), cause=ev.error)
                return
            elif cls is GoAwayReceived:
                log.debug("%s: GoAway(%#x) received", self.NAME, ev.error_code)
                self._terminate(ConnectionClosedError(
                    f"{self.NAME}: remote sent GoAway({ev.error_code:#x})", error_code=ev.error_code, remote=True
                ))
                return
            elif cls is StreamRefused:
                log.debug("%s: refused inbound stream %d: %s", self.NAME, ev.stream_id, ev.reason)
            else:
                self._on_event(ev)

    # ------------------------------------------------------------------ writer

    def _write_loop(self) -> None:
        conn = self.conn
        session: Any = self._session
        wake = self._wake_writer
        batch_limit = self._write_batch_size
        timed = bool(self._write_timeout)
        scope = self._write_scope
        retired = False
        try:
            while True:
                if self._terminated:
                    break
                pending = session.bytes_to_send
                if pending:
                    bufs = session.buffers_to_send()
                    if self._read_paused and self._drained is not None:
                        self._drained.set()
                    self._in_write = True
                    try:
                        if pending > batch_limit:
                            self._write_batches(bufs)
                        elif timed:
                            with scope:
                                conn.writev(bufs)
                        else:
                            conn.writev(bufs)
                    except (P2PError, OSError) as exc:
                        self._write_failed(ConnectionClosedError(
                            f"{self.NAME}: connection write failed: {exc}", remote=True
                        ), exc)
                        break
                    finally:
                        self._in_write = False
                    self._flushes += 1
                    if self._blocked:
                        self._after_flush()
                    continue
                deadline = session.next_deadline()
                wake.clear()
                self._wake_pending = False
                self._writer_parked = True
                try:
                    if deadline is None:
                        wake.wait()
                    else:
                        remaining = deadline - _monotonic()
                        if remaining > 0:
                            wake.wait(remaining)
                except _Retire:  # idle: a write, close() or the core's timer starts a new writer
                    retired = True
                    return
                finally:
                    self._writer_parked = False
                self._activity += 1
                if deadline is not None:
                    now = _monotonic()
                    if now >= deadline:
                        self._handle_events(session.handle_timer(now))
            # final flush (queued frames on close(), GoAway after a violation), bounded in time
            bufs = session.buffers_to_send()
            if bufs and self._wants_flush():
                limit = self._flush_timeout if self._local_close else GOAWAY_FLUSH_TIMEOUT
                try:
                    with timeout_scope(limit, f"{self.NAME}: final flush"):
                        conn.writev(bufs)
                except (P2PError, OSError):
                    pass
        except Exception as exc:
            log.exception("%s writer failed", self.NAME)
            self._terminate(ConnectionClosedError(
                f"{self.NAME} internal error: {exc!r}", error_code=2, remote=False
            ), cause=exc)
        finally:
            if retired:
                pass
            elif self._terminated or self._write_failure is None:
                self._finish()
            # else: the reader drains what the peer already sent, then ends the session

    def _write_batches(self, bufs: list[Any]) -> None:
        """writev ``bufs`` in batches of at most ``write_batch_size`` bytes, each within
        ``write_timeout`` (a peer that stops reading ends the session); 0: unbounded."""
        conn = self.conn
        timeout = self._write_timeout
        limit = self._write_batch_size
        count = len(bufs)
        start = 0
        while start < count:
            end = start
            size = 0
            while end < count and (size < limit or end == start):
                size += len(bufs[end])
                end += 1
            batch = bufs if (start == 0 and end == count) else bufs[start:end]
            start = end
            if not timeout:
                conn.writev(batch)
                continue
            with self._write_scope:
                conn.writev(batch)

    def _write_failed(self, error: ConnectionClosedError, cause: BaseException) -> None:
        """The connection can no longer be written, but bytes the peer sent before it went
        away may still be unread: keep the reader going until EOF (bounded by
        ``WRITE_FAILURE_DRAIN``), so streams that got their data and FIN can still be read.
        Writes and new streams fail at once from now on."""
        if self._terminated:
            return
        error.__cause__ = cause
        if self._reader_retired:
            self._respawn_reader()
        if self._reader.dead:
            self._terminate(error)
            return
        log.debug("%s; draining received data", error)
        self._write_failure = error
        if self._drained is not None:
            self._drained.set()
        blocked = self._blocked
        self._blocked = {}
        for stream in blocked:
            stream._notify_writable()
        self._drain_guard = gevent.spawn_later(WRITE_FAILURE_DRAIN, self._terminate, error)

    def _wants_flush(self) -> bool:
        s = self._session
        if self.conn.closed or s.go_away_received is not None:
            return False
        return self._local_close or s.go_away_sent is not None

    # ------------------------------------------------------------------ idle buffers

    def _give_back_buffers(self) -> None:
        """Hand the frame buffer and the connection's receive buffers (what is not
        holding a partial frame) to the pool."""
        detach = getattr(self._session, "detach_receive_buffer", None)
        buf = detach() if detach is not None else None
        if buf is not None:
            _POOL.release(buf)
            self._buffers_released = True
        release = getattr(self.conn, "release_buffers", None)  # optional, as wait_readable
        if release is not None:
            release()

    def _release_idle_buffers(self, mark: int) -> None:
        """Called by the buffer sweeper in the hub: if the reader has waited since it
        noted ``mark`` (its wake-up count then), its buffers go back to the pool."""
        if self._reader_parked and self._reader_wakes == mark and not self._terminated:
            self._give_back_buffers()

    # ------------------------------------------------------------------ idle retirement

    def _idle_tick(self) -> str:
        """Called by the sweeper in the hub every ``IDLE_RETIRE_AFTER`` seconds; ends the
        reader and writer greenlets of a connection that stayed idle for a whole period,
        or that had no open stream at this sweep and the one before (traffic without
        streams, such as keepalive pings both ways every 30 s, would otherwise keep
        about a quarter of idle connections' greenlets alive).  Returns ``_GONE`` once
        the session is over (the sweeper forgets it), ``_RETIRED`` when this tick left
        nothing running for the connection, else ``_KEPT``."""
        if self._terminated:
            return _GONE
        quiet, self._streamless = self._streamless, not self._streams
        if self._activity != self._activity_seen:
            self._activity_seen = self._activity
            if not (quiet and self._streamless):  # busy, or not streamless for a period yet
                return _KEPT
        retired = False
        if self._writer_parked and not self._session.bytes_to_send:
            self._retire_writer()
            retired = True
        if self._reader_parked:
            self._retire_reader()
            retired = True
        if retired and self._reader_retired and self._writer_retired:
            # nothing runs for this connection now: per-connection state that is
            # cheap to make again goes too (the Noise AEAD objects, emptied tables)
            release = getattr(self.conn, "release_idle_state", None)  # optional
            if release is not None:
                release()
            if not self._streams:
                self._streams = {}
            compact = getattr(self._session, "compact", None)  # optional
            if compact is not None:
                compact()
            return _RETIRED
        return _KEPT

    def _retire_reader(self) -> None:
        # runs in the hub: the reader is switched out inside wait_readable (the only place
        # it sets _reader_parked), so the exception lands exactly there
        readable_fileno = getattr(self.conn, "readable_fileno", None)  # optional, as wait_readable
        fileno = readable_fileno() if readable_fileno is not None else None
        if fileno is None:
            return
        self._reader.throw(_Retire)
        if not self._reader.dead:  # pragma: no cover - the reader returns on _Retire
            return
        self._reader_retired = True
        self._reader = _ended()  # the dead one keeps its spawning stack (~1 KiB) alive
        watch = self._read_watch
        if watch is None:
            watch = self._read_watch = get_hub().loop.io(fileno, 1)
        watch.start(self._respawn_reader)

    def _respawn_reader(self) -> None:
        watch = self._read_watch
        if watch is not None:
            watch.stop()
        if not self._reader_retired or self._terminated:
            return
        self._reader_retired = False
        self._activity += 1
        self._reader = Worker.spawn(self._read_loop)

    def _retire_writer(self) -> None:
        # runs in the hub, the writer switched out in its wait (see _retire_reader)
        self._writer.throw(_Retire)
        if not self._writer.dead:  # pragma: no cover - the writer returns on _Retire
            return
        self._writer_retired = True
        self._writer = _ended()
        self._wake_writer = _WriterRespawn(self)  # type: ignore[assignment]
        deadline = self._session.next_deadline()
        if deadline is not None:
            timer = self._write_timer = get_hub().loop.timer(max(0.0, deadline - _monotonic()))
            timer.start(self._respawn_writer)

    def _respawn_writer(self) -> None:
        timer = self._write_timer
        if timer is not None:
            self._write_timer = None
            timer.stop()
            timer.close()
        if not self._writer_retired:
            return
        self._writer_retired = False
        self._activity += 1
        wake = self._wake_writer = self._wake_event
        wake.set()
        self._writer = Worker.spawn(self._write_loop)

    # ------------------------------------------------------------------ termination

    def _terminate(self, error: ConnectionClosedError, cause: BaseException | None = None) -> None:
        """End the session (idempotent; the first error wins): fail every stream and
        waiter, stop the greenlets, close the connection once the writer is done."""
        if self._terminated:
            return
        self._terminated = True
        if cause is not None and error.__cause__ is None:
            error.__cause__ = cause
        if self._write_failure is not None:
            error = self._write_failure  # the first failure is the reason
        guard = self._drain_guard
        if guard is not None and guard is not gevent.getcurrent():
            self._drain_guard = None
            guard.kill(block=False)
        self._error = error
        self._session.close()
        streams = list(self._streams.values())
        self._streams.clear()
        for st in streams:
            st._feed_reset(_copy(error), True)
        # queued inbound streams stay: the ones whose FIN arrived are still readable
        # (the others were just reset and are skipped by accept_stream)
        if self._accept_event is not None:
            self._accept_event.set()
        blocked = self._blocked
        self._blocked = {}
        for waiting in blocked:
            waiting._notify_writable()
        self._on_terminate(error)
        if self._drained is not None:
            self._drained.set()
        watch = self._read_watch
        if watch is not None:
            self._read_watch = None
            watch.stop()
            watch.close()
        self._wake_writer.set()  # (a retired writer is started again to flush and finish)
        on_closed = self._on_closed
        if on_closed is not None:
            self._on_closed = None
            self._on_stream = None
            on_closed()
        if self._writer.dead:
            self._finish()
        elif self._in_write and gevent.getcurrent() is not self._writer:
            # the writer is blocked on a peer that does not read: give it a moment
            # to finish, then close the connection under it
            limit = self._flush_timeout if self._local_close else GOAWAY_FLUSH_TIMEOUT
            self._force_closer = gevent.spawn_later(limit, self._finish)

    def _finish(self) -> None:
        """Close the connection once the writer is done with it; wakes the reader."""
        closer = self._force_closer
        if closer is not None and closer is not gevent.getcurrent():
            self._force_closer = None
            closer.kill(block=False)
        try:
            self.conn.close()
        except Exception:  # pragma: no cover - close errors are not actionable
            log.debug("%s: error closing the connection", self.NAME, exc_info=True)
        closed = self._closed_event
        if closed is None:
            self._closed_event = _DONE
        else:
            closed.set()


#: The closed-event of a connection that finished before anyone waited (always set).
_DONE = Event()
_DONE.set()


def set_idle_retire_after(seconds: float) -> float:
    """Set how long a connection idles before its reader and writer greenlets end
    (``IDLE_RETIRE_AFTER``; 0 turns retirement off for connections opened from now on).
    Returns the previous value.  Also settable with ``GEVENTP2P_IDLE_RETIRE_AFTER``.

    A positive period takes effect at once for the connections of the calling thread's
    hub (its sweeper timer restarts with the new period); other threads' hubs pick it
    up when they next open a connection."""
    global IDLE_RETIRE_AFTER
    if not seconds >= 0:
        raise ValueError(f"seconds must be >= 0, got {seconds!r}")
    old, IDLE_RETIRE_AFTER = IDLE_RETIRE_AFTER, float(seconds)
    if IDLE_RETIRE_AFTER > 0:
        _IdleSweeper.retime_current(IDLE_RETIRE_AFTER)
    return old


class _Retire(BaseException):
    """Thrown by the idle sweeper into a parked reader or writer: return, the connection
    is idle (a BaseException, so the loops' ``except Exception`` do not take it)."""


_ENDED: Any = None


def _ended() -> Any:
    """A greenlet that never ran and is dead, shared by every retired reader and writer
    slot: a finished gevent ``Greenlet`` still holds the stack it was spawned from
    (``spawning_stack``, gevent's ``track_greenlet_tree``), about a dozen objects, which
    an idle connection has no use for."""
    global _ENDED
    if _ENDED is None:
        ended = gevent.Greenlet()
        ended.kill(block=False)  # not started: dead at once, nothing scheduled
        _ENDED = ended
    return _ENDED


class _WriterRespawn:
    """Stands in for ``_wake_writer`` while the writer is retired: the first ``set()``
    (a write, a close, the core's timer) starts a writer again."""

    __slots__ = ("_mux",)

    def __init__(self, mux: "MuxConn[Any, Any]") -> None:
        self._mux = mux

    def set(self) -> None:
        self._mux._respawn_writer()

    def clear(self) -> None:
        pass

    def is_set(self) -> bool:
        return False


class _BufferSweeper:
    """One repeating hub timer per hub that hands back the receive buffers of readers
    that have waited for between one and two :data:`BUFFER_IDLE` periods.

    A reader notes itself (with its wake-up count) each time it parks; a note that
    survives a whole period unchanged means the reader has not woken since, and its
    buffers go back to the pool.  Only readers that parked recently are looked at, so a
    tick costs nothing for connections that stay idle.  Runs in the hub, like
    :class:`_IdleSweeper`, and stops while nothing is noted."""

    _by_hub: "weakref.WeakKeyDictionary[Any, _BufferSweeper]" = weakref.WeakKeyDictionary()

    __slots__ = ("fresh", "aged", "loop", "period", "timer", "running", "__weakref__")

    def __init__(self, loop: Any) -> None:
        self.fresh: dict[MuxConn[Any, Any], int] = {}  # noted since the last tick
        self.aged: dict[MuxConn[Any, Any], int] = {}  # noted before it
        self.loop = loop
        self.period = BUFFER_IDLE
        self.timer = loop.timer(BUFFER_IDLE, BUFFER_IDLE, ref=False)
        self.running = False

    @classmethod
    def of_current_hub(cls) -> "_BufferSweeper":
        hub = get_hub()
        sweeper = cls._by_hub.get(hub)
        if sweeper is None:
            sweeper = cls._by_hub[hub] = cls(hub.loop)
        return sweeper

    def note(self, mux: "MuxConn[Any, Any]") -> None:
        self.fresh[mux] = mux._reader_wakes
        if not self.running:
            self.running = True
            if self.period != BUFFER_IDLE:  # changed while stopped (tests shorten it)
                self.timer.close()
                self.period = BUFFER_IDLE
                self.timer = self.loop.timer(BUFFER_IDLE, BUFFER_IDLE, ref=False)
            self.timer.start(self.sweep)

    def sweep(self) -> None:
        aged, self.aged, self.fresh = self.aged, self.fresh, {}
        for mux, mark in aged.items():  # (one that woke since has another mark now)
            try:
                mux._release_idle_buffers(mark)
            except Exception:  # pragma: no cover - a bug must not stop the sweeper
                log.exception("buffer sweep of %r failed", mux)
        if not self.aged:
            self.running = False
            self.timer.stop()


#: What MuxConn._idle_tick tells its sweeper.
_GONE = "gone"  # the session is over: forget the connection
_KEPT = "kept"  # still tracked; something still runs for it
_RETIRED = "retired"  # this tick retired the last of its greenlets


class _IdleSweeper:
    """One repeating hub timer per hub that lets idle connections give up their greenlets.

    Runs in the hub (no greenlet of its own, so it never shows up as a leak); it stops
    while no connection is tracked and does not keep the loop alive."""

    _by_hub: "weakref.WeakKeyDictionary[Any, _IdleSweeper]" = weakref.WeakKeyDictionary()

    def __init__(self, hub: Any, period: float) -> None:
        self.conns: "weakref.WeakSet[MuxConn[Any, Any]]" = weakref.WeakSet()
        self.period = period
        self.loop = hub.loop  # not the hub: it is this sweeper's weak key
        self.timer = self.loop.timer(period, period, ref=False)
        self.running = False

    @classmethod
    def track(cls, mux: "MuxConn[Any, Any]") -> None:
        period = IDLE_RETIRE_AFTER
        if period <= 0:
            return
        hub = get_hub()
        sweeper = cls._by_hub.get(hub)
        if sweeper is None:
            sweeper = cls._by_hub[hub] = cls(hub, period)
        else:
            sweeper.retime(period)
        sweeper.conns.add(mux)
        if not sweeper.running:
            sweeper.running = True
            sweeper.timer.start(sweeper.sweep)

    @classmethod
    def retime_current(cls, period: float) -> None:
        """Give the calling thread's sweeper, if it has one, the period ``period``."""
        ident = threading.get_ident()
        for hub, sweeper in list(cls._by_hub.items()):
            if hub.thread_ident == ident:
                sweeper.retime(period)

    def retime(self, period: float) -> None:
        """Replace the timer with one of period ``period``; a running sweep restarts
        with it at once (the first tick is one new period from now)."""
        if period == self.period:
            return
        self.timer.stop()
        self.timer.close()
        self.period = period
        self.timer = self.loop.timer(period, period, ref=False)
        if self.running:
            self.timer.start(self.sweep)

    #: Called after a sweep that retired connections (None: nothing); see
    #: :func:`geventp2p.tuning.trim_after_idle`.
    after_retire: Optional[Callable[[], Any]] = None

    def sweep(self) -> None:
        # a count of this sweep's own, not shared state: each hub (thread) has a sweeper
        conns = self.conns
        retired = 0
        for mux in list(conns):
            try:
                state = mux._idle_tick()
            except Exception:  # pragma: no cover - a bug must not stop the sweeper
                log.exception("idle sweep of %r failed", mux)
                state = _GONE
            if state is _GONE:
                conns.discard(mux)
            elif state is _RETIRED:
                retired += 1
        if retired:
            _POOL.shrink(_bufpool.IDLE_MAX_BYTES)
        hook = _IdleSweeper.after_retire
        if hook is not None and retired:
            try:
                hook()
            except Exception:  # pragma: no cover - a bad hook must not stop the sweeper
                log.exception("after-retire hook failed")
        if not conns:
            self.running = False
            self.timer.stop()


def _copy(err: ConnectionClosedError) -> ConnectionClosedError:
    """A fresh ConnectionClosedError like ``err`` (each raise gets its own traceback)."""
    new = ConnectionClosedError(_reason(err), error_code=err.error_code, remote=err.remote)
    new.__cause__ = err.__cause__
    return new


def _reason(err: Exception) -> str:
    """The message of ``err`` without the "(code ..., remote)" suffix StreamResetError adds."""
    msg = str(err)
    if isinstance(err, StreamResetError):
        msg = msg.rsplit(" (code ", 1)[0]
    return msg
