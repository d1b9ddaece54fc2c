"""Yamux over gevent: ``YamuxMuxer`` -> ``YamuxConn`` -> ``YamuxStream`` (reference §8).

A thin shell around the sans-I/O :class:`geventp2p.sansio.yamux.Session`:

* one **reader** greenlet: ``conn.read()`` -> ``session.receive_data()`` -> wake the
  streams.  It never writes to the connection (a reader stuck behind a write is the
  classic muxer deadlock); after each read that produced ``frames_per_yield``
  events it yields with ``gevent.sleep(0)`` so one large read cannot starve others.
* one **writer** greenlet: drains everything the session queued (frames from all
  streams, ACKs, pings, window updates) into few ``writev`` calls, and runs the
  keepalive / RTT timers (``session.next_deadline()`` / ``handle_timer``).
* stream writes go straight into the session (no switch): they block only on the
  send window (yamux flow control) or when more than ``max_send_buffer_size``
  bytes wait for the writer.

Session end (remote EOF, transport error, protocol violation, GoAway received,
keepalive timeout or ``close()``) resets every stream with ``ConnectionClosedError``,
fails blocked ``accept_stream``/``open_stream``/``ping`` calls, stops both
greenlets and closes the underlying connection.

``close()`` follows go-yamux: with code 0 the connection is closed **without** a
GoAway (go's ``Close``); ``close(code)`` with a non-zero code first sends
``GoAway(code)`` (go's ``CloseWithError``: 1 protocol, 2 internal, 0x1000+
go-libp2p reasons).  Frames already queued are flushed first (at most
``CLOSE_FLUSH_TIMEOUT``).  A protocol violation by the remote flushes ``GoAway(1)``
(at most ``GOAWAY_FLUSH_TIMEOUT``) before closing.  Streams whose remote FIN had
arrived stay readable (buffered data, then EOF) after the session ends; all other
streams fail with ``ConnectionClosedError`` (go-yamux ``forceClose``).

Interop: checked by hand against js-libp2p 3.3 and py-libp2p 0.8.1 peers (echo
both directions, 300 concurrent streams, 4 MiB transfers, resets, pings).

Window growth beyond 256 KiB reserves memory in ``scope`` first (see the session).
"""

from __future__ import annotations

import logging
import time
from collections import deque

import gevent
from gevent.event import AsyncResult, Event

from geventp2p.core.rcmgr import NULL_SCOPE
from geventp2p.exceptions import (
    ConnectionClosedError,
    P2PError,
    P2PTimeoutError,
    StreamResetError,
)
from geventp2p.net.stream import INBOUND, OUTBOUND, Stream
from geventp2p.sansio import yamux as _y
from geventp2p.sansio.yamux import PROTOCOL_ID, YamuxConfig

__all__ = ["PROTOCOL_ID", "YamuxConfig", "YamuxMuxer", "YamuxConn", "YamuxStream", "GOAWAY_FLUSH_TIMEOUT"]

log = logging.getLogger(__name__)

#: How long a protocol error waits for its GoAway(1) to be written before closing.
GOAWAY_FLUSH_TIMEOUT = 0.1
#: How long ``close()`` waits for already-queued frames (data, FIN, GoAway) to be written.
CLOSE_FLUSH_TIMEOUT = 1.0
#: After a failed connection write, how long the reader may keep draining received data.
WRITE_FAILURE_DRAIN = 5.0
#: Bytes asked of the connection per read.
READ_SIZE = 256 * 1024
#: The reader yields to other greenlets after a read of at least this many bytes.
YIELD_BYTES = 64 * 1024

_monotonic = time.monotonic


class YamuxMuxer:
    """Stream muxer factory for ``/yamux/1.0.0``."""

    PROTOCOL_ID = PROTOCOL_ID

    def __init__(self, config: YamuxConfig | None = None) -> None:
        self.config = config if config is not None else YamuxConfig()

    def create(self, secured_conn, is_initiator: bool, scope=NULL_SCOPE) -> "YamuxConn":
        """Start a yamux session over ``secured_conn`` (the dialer is the initiator/client)."""
        return YamuxConn(secured_conn, is_initiator, self.config, scope)

    def __repr__(self) -> str:
        return f"<YamuxMuxer {self.PROTOCOL_ID}>"


class YamuxStream(Stream):
    """One yamux stream; the blocking API lives in :class:`geventp2p.net.stream.Stream`."""

    __slots__ = ("_mux", "_sender")

    def __init__(self, mux: "YamuxConn", stream_id: int, direction: str) -> None:
        super().__init__(mux, stream_id, direction)
        self._mux = mux
        self._sender = None  # the session's YamuxStreamSender, made on the first write

    def write(self, data, timeout: float | None = None) -> None:
        """Blocks the calling greenlet while yamux applies back-pressure; see
        :meth:`geventp2p.net.stream.Stream.write` (same contract)."""
        # Fast path, one frame and one compiled call: ``bytes`` that the send window and
        # the write queue take whole, on a healthy stream no other greenlet is writing.
        # Everything else (memoryviews, partial sends, blocking, errors) is the base path.
        # Keep the guards below in step with Stream.write: a state check added there must
        # be added here too, or whole-bytes writes would skip it.
        sender = self._sender
        if sender is not None and type(data) is bytes and self._reset_error is None \
                and self._write_error is None and not self._write_closed and not self._slow_write:
            lock = self._write_lock
            mux = self._mux
            if (lock is None or not lock.locked()) and not mux._terminated and mux._write_failure is None:
                size = len(data)
                n = sender.send(data, mux._max_send_buffer)
                if n:
                    if not mux._wake_pending:  # the writer has not been woken since it last ran
                        mux._wake_pending = True
                        mux._wake_writer.set()
                    if n == size:
                        return
                    data = memoryview(data)[n:]
                elif not size:
                    return
        Stream.write(self, data, timeout)

    def _try_write(self, view: memoryview) -> int:
        # runs once per application write: one compiled call (credit + queue) in the
        # common case
        mux = self._mux
        if mux._terminated or mux._write_failure is not None:
            mux._check_alive(write=True)
        sender = self._sender
        if sender is None:
            sender = self._sender = mux._session.sender(self.id)
        n = sender.send(view, mux._max_send_buffer)
        if n:
            mux._wake_writer.set()
        elif sender.blocked_on_buffer(mux._max_send_buffer):
            mux._blocked_writers.append(self)
            mux._wake_writer.set()
        return n

    def _send_close_write(self) -> None:
        self._mux._stream_fin(self)

    def _send_reset(self, code: int) -> None:
        self._mux._stream_reset(self, code)

    def _on_consumed(self, n: int) -> None:
        self._mux._stream_consumed(self, n)

    def _on_close_read(self) -> None:
        self._mux._stream_close_read(self)

    def _on_state_change(self) -> None:
        if self.finished:
            self._mux._stream_finished(self)


class YamuxConn:
    """A yamux session over a secured connection (a MuxedConn)."""

    def __init__(self, conn, is_initiator: bool, config: YamuxConfig | None = None, scope=NULL_SCOPE) -> None:
        self.conn = conn
        self.is_initiator = is_initiator
        self.config = config = config if config is not None else YamuxConfig()
        self.scope = scope
        self._session = _y.Session(config, is_initiator, scope)
        self._wbuf = self._session.write_buffer  # .nbytes: queued wire bytes
        self._streams: dict[int, YamuxStream] = {}
        self._accept_queue: deque = deque()
        self._accept_event = Event()
        self._ack_waiters: deque = deque()  # Events of open_stream calls blocked on the ACK backlog
        self._ack_grants = 0  # slots granted to woken open_stream calls that did not run yet
        self._wake_writer = Event()
        # True from a fast-path write's wake-up until the writer clears the event (the
        # event is set meanwhile): later writes skip the redundant set()
        self._wake_pending = False
        self._closed_event = Event()
        self._blocked_writers: list = []
        self._pings: dict[int, list] = {}
        self._error: Exception | None = None
        self._clean_close = False
        self._terminated = False
        self._in_write = False
        self._local_close = False  # close() was called: flush what is queued before closing
        self._force_closer = None
        #: set when a connection write failed while the reader may still drain data
        self._write_failure: Exception | None = None
        self._drain_guard = None
        self._max_send_buffer = config.max_send_buffer_size
        self._frames_per_yield = config.frames_per_yield
        self._session.start(_monotonic())
        self._reader = gevent.spawn(self._read_loop)
        self._writer = gevent.spawn(self._write_loop)
        if self._session.bytes_to_send:
            self._wake_writer.set()

    def __repr__(self) -> str:
        state = "closed" if self._terminated else "open"
        role = "client" if self.is_initiator else "server"
        return f"<YamuxConn {role} streams={len(self._streams)} {state}>"

    # ------------------------------------------------------------------ public API

    @property
    def closed(self) -> bool:
        return self._terminated

    @property
    def num_streams(self) -> int:
        return len(self._streams)

    @property
    def rtt(self) -> float:
        """Last measured round-trip time in seconds (0.0 until a ping was answered)."""
        return self._session.rtt

    @property
    def error(self) -> Exception | None:
        """Why the session ended (None while open or after a local ``close()`` with code 0)."""
        return None if self._clean_close else self._error

    def open_stream(self, timeout: float | None = None) -> YamuxStream:
        """Blocks the calling greenlet while ``max_ack_backlog`` opened streams wait for
        their ACK; then opens a stream (the SYN is sent at once)."""
        self._check_alive(write=True)
        deadline = None if timeout is None else _monotonic() + timeout
        session = self._session
        if self._ack_waiters or session.unacked_outbound + self._ack_grants >= self.config.max_ack_backlog:
            self._wait_ack_backlog(deadline)
        sid = session.open_stream()
        stream = YamuxStream(self, sid, OUTBOUND)
        self._streams[sid] = stream
        self._wake_writer.set()
        return stream

    def accept_stream(self, timeout: float | None = None) -> YamuxStream:
        """Blocks the calling greenlet until the remote opens a stream.

        Raises ConnectionClosedError once the session is over and no stream is left
        to accept (a stream that arrived complete, data + FIN, just before the session
        ended is still delivered: its data is readable), P2PTimeoutError on timeout.
        """
        deadline = None if timeout is None else _monotonic() + timeout
        while True:
            queue = self._accept_queue
            while queue:
                stream = queue.popleft()
                if stream.is_reset:
                    continue
                if not self._terminated:
                    self._session.mark_accepted(stream.id)
                return stream
            self._check_alive()
            self._accept_event.clear()
            remaining = None if deadline is None else deadline - _monotonic()
            if remaining is not None and remaining <= 0:
                raise P2PTimeoutError("yamux: accept_stream timed out")
            self._accept_event.wait(remaining)

    def ping(self, timeout: float | None = None) -> float:
        """Blocks the calling greenlet until the remote answers a yamux ping; returns the RTT (s)."""
        self._check_alive()
        opaque = self._session.ping(_monotonic())
        result = AsyncResult()
        self._pings.setdefault(opaque, []).append(result)
        self._wake_writer.set()
        try:
            if not result.wait(timeout) and not result.ready():
                raise P2PTimeoutError("yamux: ping timed out")
            return result.get()
        finally:
            waiters = self._pings.get(opaque)
            if waiters is not None and result in waiters:
                waiters.remove(result)
                if not waiters:
                    del self._pings[opaque]

    def close(self, code: int = 0) -> None:
        """Close the session: every stream is reset, the connection closed.

        ``code`` 0 closes without GoAway (go ``Close``); another code sends GoAway(code)
        (go ``CloseWithError``).  Frames already queued (data, FIN, GoAway) are written
        first, for at most ``CLOSE_FLUSH_TIMEOUT``.  Blocks the calling greenlet until
        both greenlets ended (bounded).  Idempotent.
        """
        if not self._terminated:
            if code:
                self._session.go_away(code)
            self._clean_close = not code
            self._local_close = True
            self._terminate(ConnectionClosedError("yamux session closed locally", error_code=code, remote=False))
        cur = gevent.getcurrent()
        if cur is not self._reader and cur is not self._writer:
            self.wait_closed(timeout=CLOSE_FLUSH_TIMEOUT + 1.0)

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Blocks the calling greenlet until the session is over and both greenlets ended."""
        if not self._closed_event.wait(timeout):
            return False
        cur = gevent.getcurrent()
        left = [g for g in (self._reader, self._writer) if g is not cur]
        gevent.joinall(left, timeout=timeout)
        return all(g.dead for g in left)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ------------------------------------------------------------------ stream hooks

    def _check_alive(self, write: bool = False) -> None:
        if write and not self._terminated and self._write_failure is not None:
            err = self._write_failure
            raise ConnectionClosedError(_reason(err), error_code=err.error_code, remote=err.remote)
        if self._terminated:
            err = self._error
            if isinstance(err, ConnectionClosedError):
                raise ConnectionClosedError(_reason(err), error_code=err.error_code, remote=err.remote)
            raise ConnectionClosedError(f"yamux session is over: {err}", remote=True)

    def _stream_fin(self, stream: YamuxStream) -> None:
        if self._terminated:
            return
        self._session.send_fin(stream.id)
        self._wake_writer.set()

    def _stream_reset(self, stream: YamuxStream, code: int) -> None:
        if self._terminated:
            return
        self._session.send_reset(stream.id, code)
        self._wake_writer.set()

    def _stream_consumed(self, stream: YamuxStream, n: int) -> None:
        if self._terminated:
            return
        if self._session.stream_read(stream.id, n, _monotonic()):
            self._wake_writer.set()

    def _stream_close_read(self, stream: YamuxStream) -> None:
        if not self._terminated:
            self._session.close_read(stream.id)

    def _stream_finished(self, stream: YamuxStream) -> None:
        if self._streams.get(stream.id) is stream:
            del self._streams[stream.id]

    def _wait_ack_backlog(self, deadline: float | None) -> None:
        """Queue (FIFO) until the ACK backlog grants us a slot; raises on timeout/close."""
        self._check_alive()
        waiter = Event()
        self._ack_waiters.append(waiter)
        remaining = None if deadline is None else max(0.0, deadline - _monotonic())
        waiter.wait(remaining)
        if waiter.is_set():
            # granted by _wake_openers (or woken by the session end)
            if not self._terminated:
                self._ack_grants -= 1
            self._check_alive()
            return
        try:
            self._ack_waiters.remove(waiter)
        except ValueError:  # pragma: no cover - granted and timed out at once
            self._ack_grants -= 1
            self._wake_openers()
        raise P2PTimeoutError("yamux: open_stream timed out waiting for ACKs")

    def _wake_openers(self) -> None:
        """Grant blocked ``open_stream`` calls as many ACK-backlog slots as are free (FIFO)."""
        waiters = self._ack_waiters
        if not waiters:
            return
        if self._terminated:
            while waiters:
                waiters.popleft().set()
            return
        room = self.config.max_ack_backlog - self._session.unacked_outbound - self._ack_grants
        while room > 0 and waiters:
            waiters.popleft().set()
            self._ack_grants += 1
            room -= 1

    # ------------------------------------------------------------------ reader

    def _read_loop(self) -> None:
        conn = self.conn
        session = self._session
        per_yield = self._frames_per_yield
        # receive straight into the session's frame buffer when the conn can (RawConn.readinto)
        readinto = getattr(conn, "readinto", None)
        try:
            while not self._terminated:
                try:
                    if readinto is not None:
                        view = session.receive_buffer(READ_SIZE)
                        try:
                            got = readinto(view)
                        finally:
                            view.release()
                    else:
                        data = conn.read(READ_SIZE)
                        got = len(data)
                except P2PError as exc:
                    if not self._terminated:
                        self._terminate(ConnectionClosedError(f"yamux: connection read failed: {exc}", remote=True))
                    return
                if not got:
                    if not self._terminated:
                        self._terminate(ConnectionClosedError("yamux: connection closed by the remote", remote=True))
                    return
                if readinto is not None:
                    events = session.receive_into(got, _monotonic())
                else:
                    events = session.receive_data(data, _monotonic())
                if events:
                    self._handle_events(events)
                if session.bytes_to_send:
                    self._wake_writer.set()
                if got >= YIELD_BYTES or len(events) >= per_yield:
                    # let the streams' readers consume before reading more: bounds the
                    # bytes buffered per burst (cache-warm, and freed memory is reused)
                    gevent.sleep(0)
        except Exception as exc:  # a bug: end this session only
            log.exception("yamux reader failed")
            self._terminate(ConnectionClosedError(f"yamux internal error: {exc!r}", error_code=2, remote=False))

    def _handle_events(self, events) -> None:
        streams = self._streams
        for ev in events:
            cls = type(ev)
            if cls is _y.DataReceived:
                stream = streams.get(ev.stream_id)
                if stream is not None:
                    stream._feed_data(ev.data)
                else:  # stream gone locally (closed for reading): credit and drop
                    self._session.stream_read(ev.stream_id, len(ev.data), _monotonic())
            elif cls is _y.WindowUpdated:
                stream = streams.get(ev.stream_id)
                if stream is not None:
                    stream._notify_writable()
            elif cls is _y.StreamOpened:
                stream = YamuxStream(self, ev.stream_id, INBOUND)
                streams[ev.stream_id] = stream
                queue = self._accept_queue
                if len(queue) >= self.config.accept_backlog:
                    # at most accept_backlog queued streams are alive (the session refuses
                    # more); drop the ones the remote reset while nobody accepted them
                    self._accept_queue = queue = deque(q for q in queue if not q.is_reset)
                queue.append(stream)
                self._accept_event.set()
            elif cls is _y.StreamAcked:
                if self._ack_waiters:
                    self._wake_openers()
            elif cls is _y.StreamHalfClosed:
                stream = streams.get(ev.stream_id)
                if stream is not None:
                    stream._feed_eof()
            elif cls is _y.StreamReset:
                stream = streams.pop(ev.stream_id, None)
                if stream is not None:
                    stream._feed_reset(StreamResetError(
                        f"yamux stream {ev.stream_id} reset by the remote", error_code=ev.error_code, remote=True
                    ))
                if self._ack_waiters:
                    self._wake_openers()
            elif cls is _y.PongReceived:
                for result in self._pings.pop(ev.opaque, ()):
                    result.set(ev.rtt if ev.rtt is not None else 0.0)
                # the timer moves from "ping timeout" to the (maybe earlier) keepalive
                self._wake_writer.set()
            elif cls is _y.GoAwayReceived:
                log.debug("yamux: GoAway(%#x) received", ev.error_code)
                self._terminate(ConnectionClosedError(
                    f"yamux: remote sent GoAway({ev.error_code:#x})", error_code=ev.error_code, remote=True
                ))
                return
            elif cls is _y.SessionError:
                log.debug("yamux: session error: %s", ev.error)
                err = ConnectionClosedError(
                    f"yamux session error: {ev.error}", error_code=ev.go_away_code or 0, remote=True
                )
                err.__cause__ = ev.error
                self._terminate(err)
                return
            elif cls is _y.StreamRefused:
                log.debug("yamux: refused inbound stream %d: %s", ev.stream_id, ev.reason)
            # PingReceived: the answer is already queued

    # ------------------------------------------------------------------ writer

    def _write_loop(self) -> None:
        conn = self.conn
        session = self._session
        wake = self._wake_writer
        try:
            while True:
                if self._terminated:
                    break
                bufs = session.buffers_to_send()
                if bufs:
                    self._in_write = True
                    try:
                        self._write_batches(bufs)
                    except P2PError as exc:
                        self._write_failed(ConnectionClosedError(f"yamux: connection write failed: {exc}", remote=True))
                        break
                    finally:
                        self._in_write = False
                    if self._blocked_writers and session.bytes_to_send < self._max_send_buffer:
                        blocked = self._blocked_writers
                        self._blocked_writers = []
                        for stream in blocked:
                            stream._notify_writable()
                    continue
                deadline = session.next_deadline()
                wake.clear()
                self._wake_pending = False
                if deadline is None:
                    wake.wait()
                else:
                    remaining = deadline - _monotonic()
                    if remaining > 0:
                        wake.wait(remaining)
                    now = _monotonic()
                    if now >= deadline:
                        for ev in session.handle_timer(now):
                            if isinstance(ev, _y.SessionError):
                                log.debug("yamux: %s", ev.error)
                                err = ConnectionClosedError(f"yamux: {ev.error}", remote=True)
                                err.__cause__ = ev.error
                                self._terminate(err)
            # final flush (queued frames on close(), GoAway after a violation), bounded in time
            bufs = session.buffers_to_send()
            if bufs and self._wants_flush():
                limit = CLOSE_FLUSH_TIMEOUT if self._local_close else GOAWAY_FLUSH_TIMEOUT
                with gevent.Timeout(limit, False):
                    try:
                        conn.writev(bufs)
                    except P2PError:
                        pass
        except Exception:
            log.exception("yamux writer failed")
            self._terminate(ConnectionClosedError("yamux internal error", error_code=2, remote=False))
        finally:
            if self._terminated or self._write_failure is None:
                self._finish()
            # else: the reader drains what the peer already sent, then ends the session

    def _write_failed(self, error: Exception) -> None:
        """The connection can no longer be written, but bytes the peer sent before it went
        away may still be unread: keep the reader going until EOF (bounded by
        ``WRITE_FAILURE_DRAIN``), so streams that got their data and FIN can still be read.
        Writes and new streams fail at once from now on."""
        if self._terminated:
            return
        if self._reader.dead:
            self._terminate(error)
            return
        log.debug("yamux: %s; draining received data", error)
        self._write_failure = error
        for stream in self._blocked_writers:
            stream._notify_writable()
        self._blocked_writers = []
        self._drain_guard = gevent.spawn_later(WRITE_FAILURE_DRAIN, self._terminate, error)

    def _wants_flush(self) -> bool:
        s = self._session
        if self.conn.closed or s.go_away_received is not None:
            return False
        return self._local_close or s.go_away_sent is not None

    def _write_batches(self, bufs: list) -> None:
        """writev ``bufs`` in batches of at most ``write_batch_size`` bytes, each within
        ``write_timeout`` (a peer that stops reading ends the session)."""
        conn = self.conn
        limit = self.config.write_batch_size
        timeout = self.config.write_timeout
        start = 0
        count = len(bufs)
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
            timer = gevent.Timeout(timeout)
            timer.start()
            try:
                conn.writev(batch)
            except gevent.Timeout as exc:
                if exc is not timer:
                    raise
                raise P2PTimeoutError(f"yamux: a write of {size} bytes took more than {timeout:g}s") from None
            finally:
                timer.close()

    # ------------------------------------------------------------------ termination

    def _terminate(self, error: Exception) -> None:
        """End the session (idempotent): fail every stream and waiter, stop the greenlets."""
        if self._terminated:
            return
        self._terminated = True
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
        code = getattr(error, "error_code", 0)
        remote = getattr(error, "remote", True)
        reason = _reason(error)
        for stream in streams:
            stream._feed_reset(ConnectionClosedError(reason, error_code=code, remote=remote), True)
        # queued inbound streams stay: the ones whose FIN arrived are still readable
        # (the others were just reset and are skipped by accept_stream)
        self._accept_event.set()
        self._wake_openers()
        pings = self._pings
        self._pings = {}
        for waiters in pings.values():
            for result in waiters:
                result.set_exception(ConnectionClosedError(reason, error_code=code, remote=remote))
        for stream in self._blocked_writers:
            stream._notify_writable()
        self._blocked_writers = []
        self._wake_writer.set()
        if self._writer.dead:
            self._finish()
        elif self._in_write and gevent.getcurrent() is not self._writer:
            # the writer is blocked on a peer that does not read: give it a moment
            # to finish, then close the connection under it
            limit = CLOSE_FLUSH_TIMEOUT if self._local_close else GOAWAY_FLUSH_TIMEOUT
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
            log.debug("yamux: error closing the connection", exc_info=True)
        self._closed_event.set()


def _reason(err: Exception) -> str:
    """The message of ``err`` without the "(code ..., remote)" suffix StreamResetError adds."""
    msg = str(err)
    if isinstance(err, StreamResetError):
        msg = msg.rsplit(" (code ", 1)[0]
    return msg
