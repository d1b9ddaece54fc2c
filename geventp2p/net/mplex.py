"""mplex (``/mplex/6.7.0``) for gevent: ``MplexMuxer`` -> ``MplexConn`` -> ``MplexStream``.

A thin shell around :class:`geventp2p.sansio.mplex.Session` (legacy muxer, kept
for js/rust interop; prefer yamux).

* **One reader greenlet** reads the secured connection, feeds the session and
  applies its events.  It only appends to stream buffers and never waits for
  an application, so a stream whose reader is slow cannot stall the others:
  mplex has no flow control, and the session resets (only) a stream whose unread
  bytes pass ``max_stream_buffer_size``.  The reader yields to other greenlets
  every ``frames_per_yield`` events so that one big read cannot starve them.
* **One writer greenlet** drains everything the session queued (frames of all
  streams, coalesced) with one ``write`` per wake-up.  Stream writers block
  while ``max_send_buffer_size`` bytes are queued, and when several streams
  contend each queues one ``write_chunk_size`` message per flush in turn, so a
  bulk writer cannot starve a chatty one.
* Inbound streams wait in an accept backlog (``accept_backlog``; past it they
  are reset).  When the connection ends (EOF, transport error, protocol error,
  ``close()``), pending accepts raise ``ConnectionClosedError`` and every stream
  fails with it, except that data the remote sent before its Close stays
  readable on streams that already saw EOF.
* Received bytes are reserved in the resource ``scope`` until the application
  reads them; a refused reservation resets that stream (code 0x1002).
"""

from __future__ import annotations

import logging
import time
from collections import deque

import gevent
from gevent.event import Event

from geventp2p.core.rcmgr import NULL_SCOPE
from geventp2p.exceptions import (
    ConnectionClosedError,
    P2PTimeoutError,
    ResourceLimitExceeded,
    StreamResetError,
)
from geventp2p.net.stream import INBOUND, OUTBOUND, Stream
from geventp2p.sansio import mplex as _core
from geventp2p.sansio.mplex import (
    PROTOCOL_ID,
    DataReceived,
    MplexConfig,
    SessionError,
    StreamHalfClosed,
    StreamOpened,
    StreamRefused,
    StreamReset,
)

__all__ = ["PROTOCOL_ID", "MplexConfig", "MplexMuxer", "MplexConn", "MplexStream"]

log = logging.getLogger(__name__)

_READ_SIZE = 65536
#: The reader yields to other greenlets after a read of at least this many bytes.
_YIELD_BYTES = 16384

#: Queued control frames (resets of refused or misbehaving streams, closes) the
#: session may hold beyond ``max_send_buffer_size`` while the peer does not read
#: what we send; past it the peer is abusing us and the session ends.
CONTROL_SLACK = 1024 * 1024


#: After a failed connection write, how long the reader may keep draining received data.
WRITE_FAILURE_DRAIN = 5.0

class MplexMuxer:
    """Factory for mplex sessions; ``create`` wraps a secured connection."""

    PROTOCOL_ID = PROTOCOL_ID

    def __init__(self, config: MplexConfig | None = None) -> None:
        self.config = config if config is not None else MplexConfig()

    def create(self, secured_conn, is_initiator: bool, scope=NULL_SCOPE) -> "MplexConn":
        """Start an mplex session on ``secured_conn`` (spawns its reader and writer)."""
        return MplexConn(secured_conn, is_initiator, config=self.config, scope=scope)

    def __repr__(self) -> str:
        return f"<MplexMuxer {PROTOCOL_ID}>"


class MplexStream(Stream):
    """One mplex stream; the blocking API is :class:`geventp2p.net.stream.Stream`'s.

    ``id`` is the numeric mplex id.  Both peers number their streams
    independently, so an inbound and an outbound stream may share an ``id``;
    ``direction`` tells them apart.
    """

    __slots__ = ("_mconn", "_outbound", "_gen")

    def __init__(self, mconn: "MplexConn", stream_id: int, direction: str) -> None:
        super().__init__(mconn, stream_id, direction)
        self._mconn = mconn
        self._outbound = direction == OUTBOUND
        self._gen = -1  # writer flush generation of our last queued message

    # ------------------------------------------------------------------ public

    def write(self, data, timeout: float | None = None) -> None:
        """Blocks the calling greenlet until all of ``data`` is queued for sending.

        Blocks while the connection's send queue is full (the writer greenlet
        has not yet flushed ``max_send_buffer_size`` bytes).
        """
        try:
            super().write(data, timeout=timeout)
        finally:
            self._mconn._waiters.pop(self, None)

    # ------------------------------------------------------------------ hooks

    def _try_write(self, view: memoryview) -> int:
        mconn = self._mconn
        session = mconn._session
        if session.closed or mconn._write_failure is not None:
            raise mconn._closed_error()
        waiters = mconn._waiters
        if session.bytes_to_send >= mconn.config.max_send_buffer_size or (
            self._gen == mconn._gen and len(waiters) > (self in waiters)
        ):
            # Full queue, or other streams are waiting and we already queued a
            # message since the last flush: take turns (one message each per flush).
            waiters[self] = None
            return 0
        n = min(len(view), mconn.config.write_chunk_size)
        session.send_data(self.id, self._outbound, view[:n])
        self._gen = mconn._gen
        waiters.pop(self, None)
        mconn._wake_writer()
        return n

    def _send_close_write(self) -> None:
        self._mconn._session.close_write(self.id, self._outbound)
        self._mconn._wake_writer()

    def _send_reset(self, code: int) -> None:
        # mplex cannot carry a reset code on the wire.
        self._mconn._session.reset_stream(self.id, self._outbound)
        self._mconn._wake_writer()

    def _on_consumed(self, n: int) -> None:
        mconn = self._mconn
        mconn._session.consumed(self.id, self._outbound, n)
        mconn.scope.release_memory(n)

    def _on_close_read(self) -> None:
        self._mconn._session.close_read(self.id, self._outbound)

    def _on_state_change(self) -> None:
        if self.finished:
            self._mconn._forget(self)


class MplexConn:
    """A running mplex session over one secured connection (the MuxedConn API)."""

    def __init__(self, conn, is_initiator: bool, config: MplexConfig | None = None, scope=NULL_SCOPE) -> None:
        self.config = config if config is not None else MplexConfig()
        self.scope = scope
        self.is_initiator = bool(is_initiator)
        self._conn = conn
        self._session = _core.Session(self.config, is_initiator=is_initiator)
        self._streams: dict[tuple[int, bool], MplexStream] = {}
        self._backlog: deque[MplexStream] = deque()
        self._accept_event = Event()
        self._write_event = Event()
        self._closed_event = Event()
        self._waiters: dict[MplexStream, None] = {}  # streams blocked in write, FIFO
        self._gen = 0  # bumped after every flush of the writer
        self._closing = False
        self._closed = False
        self._write_failure: BaseException | None = None
        self._drain_guard = None
        self._error: BaseException | None = None
        self._close_reason = "mplex connection closed"
        self._close_remote = False
        self._reader = gevent.spawn(self._read_loop)
        self._writer = gevent.spawn(self._write_loop)

    def __repr__(self) -> str:
        role = "initiator" if self.is_initiator else "responder"
        return f"<MplexConn {role} streams={len(self._streams)}{' closed' if self._closed else ''}>"

    # ------------------------------------------------------------------ MuxedConn API

    @property
    def conn(self):
        """The secured connection underneath."""
        return self._conn

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def num_streams(self) -> int:
        """Streams not yet finished (both directions closed) or reset."""
        return len(self._streams)

    @property
    def error(self) -> BaseException | None:
        """Why the session ended, when it ended because of an error."""
        return self._error

    def open_stream(self, timeout: float | None = None) -> MplexStream:
        """Open an outbound stream.  mplex has no handshake, so this never
        waits (``timeout`` is accepted for API symmetry).

        Raises ``ConnectionClosedError`` once the session is over.
        """
        if self._closed or self._closing or self._write_failure is not None:
            raise self._closed_error()
        stream_id = self._session.open_stream()
        stream = MplexStream(self, stream_id, OUTBOUND)
        self._streams[(stream_id, True)] = stream
        self._wake_writer()
        return stream

    def accept_stream(self, timeout: float | None = None) -> MplexStream:
        """Blocks the calling greenlet until the remote opens a stream.

        Raises ``ConnectionClosedError`` once the session is over and
        ``P2PTimeoutError`` after ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._closed:
                raise self._closed_error()
            if self._backlog:
                return self._backlog.popleft()
            self._accept_event.clear()
            if deadline is None:
                self._accept_event.wait()
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._accept_event.wait(remaining):
                    if self._closed or self._backlog:
                        continue
                    raise P2PTimeoutError("accept_stream timed out")

    def close(self, timeout: float = 2.0) -> None:
        """Close the session and the connection.  Blocks the calling greenlet
        for at most ``timeout`` seconds while queued frames are flushed.
        Idempotent; streams still open fail with ``ConnectionClosedError``."""
        if self._closed or self._closing:
            if not self._closed:
                self._closed_event.wait(timeout)
            return
        self._closing = True
        current = gevent.getcurrent()
        if current is not self._writer and current is not self._reader and not self._writer.dead:
            self._wake_writer()
            self._writer.join(timeout)  # exits once the queue is flushed
        self._shutdown("mplex connection closed locally", remote=False)

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Blocks the calling greenlet until the session is over and its reader and
        writer greenlets ended.  Returns False if ``timeout`` passed first."""
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

    # ------------------------------------------------------------------ internals

    def _closed_error(self) -> ConnectionClosedError:
        return ConnectionClosedError(self._close_reason, remote=self._close_remote)

    def _wake_writer(self) -> None:
        self._write_event.set()

    def _forget(self, stream: MplexStream) -> None:
        key = (stream.id, stream._outbound)
        if self._streams.get(key) is stream:
            del self._streams[key]
        self._waiters.pop(stream, None)

    def _read_loop(self) -> None:
        error: BaseException | None = None
        reason = "mplex connection closed"
        try:
            conn = self._conn
            session = self._session
            per_yield = self.config.frames_per_yield
            since_yield = 0  # bytes read since the reader last let other greenlets run
            send_limit = self.config.max_send_buffer_size + self.config.write_chunk_size + CONTROL_SLACK
            while True:
                data = conn.read(_READ_SIZE)
                if not data:
                    reason = "mplex connection closed by the remote"
                    return
                events = session.receive_data(data)
                budget = per_yield
                for ev in events:
                    self._apply(ev)
                    budget -= 1
                    if not budget:
                        budget = per_yield
                        if session.bytes_to_send:
                            self._wake_writer()
                        gevent.sleep(0)
                if session.bytes_to_send:
                    self._wake_writer()
                since_yield += len(data)
                if since_yield >= _YIELD_BYTES:
                    # let the streams' readers run before reading more: mplex has no flow
                    # control, so a reader that never yields lets one fast sender fill a
                    # stream's buffer past its cap (and get it reset) while its reader waits.
                    # Counted across reads: transport reads need not line up with messages.
                    since_yield = 0
                    gevent.sleep(0)
                if session.bytes_to_send > send_limit:
                    reason = "mplex peer makes us queue frames it does not read"
                    log.debug("mplex: %s (%d bytes queued)", reason, session.bytes_to_send)
                    return
                if session.closed:
                    error = session.error
                    reason = f"mplex protocol error: {error}"
                    log.debug("mplex: peer broke the protocol: %s", error)
                    return
        except gevent.GreenletExit:
            raise
        except Exception as exc:  # transport failures end only this session
            if not self._closing:
                log.debug("mplex: connection read failed: %r", exc)
            error = exc
            reason = f"mplex connection failed: {exc!r}"
        finally:
            if not self._closed:
                self._shutdown(reason, remote=True, error=error)

    def _apply(self, ev) -> None:
        cls = type(ev)
        if cls is DataReceived:
            stream = self._streams.get((ev.stream_id, ev.outbound))
            n = len(ev.data)
            if stream is None:  # not expected: the session knows the stream
                self._session.reset_stream(ev.stream_id, ev.outbound)
                return
            if stream._read_closed or stream.is_reset:
                self._session.consumed(ev.stream_id, ev.outbound, n)
                return
            try:
                self.scope.reserve_memory(n)
            except ResourceLimitExceeded as exc:
                log.debug("mplex: stream %d reset: %s", ev.stream_id, exc)
                self._session.reset_stream(ev.stream_id, ev.outbound)
                stream._feed_reset(
                    StreamResetError("mplex stream reset: memory limit", error_code=exc.error_code, remote=False)
                )
                return
            stream._feed_data(ev.data)
        elif cls is StreamOpened:
            if len(self._backlog) >= self.config.accept_backlog or self._closing:
                log.debug("mplex: accept backlog full, resetting inbound stream %d", ev.stream_id)
                self._session.reset_stream(ev.stream_id, False)
                return
            stream = MplexStream(self, ev.stream_id, INBOUND)
            self._streams[(ev.stream_id, False)] = stream
            self._backlog.append(stream)
            self._accept_event.set()
        elif cls is StreamHalfClosed:
            stream = self._streams.get((ev.stream_id, ev.outbound))
            if stream is not None:
                stream._feed_eof()
        elif cls is StreamReset:
            stream = self._streams.pop((ev.stream_id, ev.outbound), None)
            if stream is not None:
                self._waiters.pop(stream, None)
                msg = "mplex stream reset by peer" if ev.remote else f"mplex stream reset: {ev.reason}"
                stream._feed_reset(StreamResetError(msg, error_code=ev.error_code, remote=ev.remote))
                if not ev.remote:
                    log.debug("mplex: stream %d reset: %s", ev.stream_id, ev.reason)
        elif cls is StreamRefused:
            log.debug("mplex: refused inbound stream %d: %s", ev.stream_id, ev.reason)
        elif cls is SessionError:
            pass  # handled by the read loop (session.closed)

    def _write_loop(self) -> None:
        error: BaseException | None = None
        try:
            conn = self._conn
            session = self._session
            ev = self._write_event
            writev = getattr(conn, "writev", None)
            while True:
                ev.wait()
                ev.clear()
                bufs = session.buffers_to_send()
                if bufs:
                    # one gather write: no join into a fresh (often 1 MiB+) bytes object
                    if writev is not None:
                        writev(bufs)
                    else:
                        conn.write(bufs[0] if len(bufs) == 1 else b"".join(bufs))
                self._gen += 1
                waiters = self._waiters
                if waiters:
                    for stream in list(waiters):
                        stream._notify_writable()
                if self._closing and not session.bytes_to_send:
                    return
        except gevent.GreenletExit:
            raise
        except Exception as exc:
            if not self._closing:
                log.debug("mplex: connection write failed: %r", exc)
            error = exc
        finally:
            if error is not None and not self._closed:
                reason = f"mplex connection failed: {error!r}"
                if self._closing or self._reader.dead:
                    self._shutdown(reason, remote=True, error=error)
                else:
                    self._write_failed(reason, error)

    def _write_failed(self, reason: str, error: BaseException) -> None:
        """Nothing can be written any more, but bytes the peer sent before it went away
        may still be unread: the reader drains them to EOF (bounded by
        ``WRITE_FAILURE_DRAIN``) so streams that got their data and close stay readable.
        Writes and new streams fail at once from now on."""
        self._write_failure = error
        self._close_reason = reason
        self._close_remote = True
        for stream in list(self._waiters):
            stream._notify_writable()
        self._drain_guard = gevent.spawn_later(WRITE_FAILURE_DRAIN, self._shutdown, reason, True, error)

    def _shutdown(self, reason: str, remote: bool, error: BaseException | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        self._closing = True
        guard = self._drain_guard
        if guard is not None and guard is not gevent.getcurrent():
            self._drain_guard = None
            guard.kill(block=False)
        if self._write_failure is not None:  # the first failure is the reason
            error = self._write_failure
            reason = self._close_reason
            remote = True
        self._error = error
        self._close_reason = reason
        self._close_remote = remote
        self._session.close()
        try:
            self._conn.close()
        except Exception as exc:  # closing must not fail the caller
            log.debug("mplex: error closing the connection: %r", exc)
        streams = list(self._streams.values())
        self._streams.clear()
        self._backlog.clear()
        for stream in streams:
            if stream._read_eof and not stream.is_reset:
                # The remote finished sending before the end: keep its data readable;
                # writes fail in _try_write because the session is closed.
                stream._notify_writable()
                continue
            stream._feed_reset(self._closed_error())
        self._waiters.clear()
        self._accept_event.set()
        self._write_event.set()
        current = gevent.getcurrent()
        for g in (self._reader, self._writer):
            if g is not current and not g.dead:
                g.kill(block=False)
        self._closed_event.set()
