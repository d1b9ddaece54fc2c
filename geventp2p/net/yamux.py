"""Yamux over gevent: ``YamuxMuxer`` -> ``YamuxConn`` -> ``YamuxStream``
(https://github.com/libp2p/specs/blob/master/yamux/README.md).

A thin shell around the sans-I/O :class:`geventp2p.sansio.yamux.Session`.  The reader
and writer greenlets, termination, ``close`` and ``wait_closed`` are the shared
muxer shell's (:mod:`geventp2p.net._muxconn`); this module adds what only yamux has:

* the reader receives straight into the session's frame buffer (``readinto``);
* stream writes take one compiled call (``YamuxStreamSender``: send credit plus the
  write queue) and block only on the send window or when more than
  ``max_send_buffer_size`` bytes wait for the writer;
* ``open_stream`` waits while ``max_ack_backlog`` opened streams wait for their ACK
  (the policy is the session's: ``reserve_open``; 8 until the first ACK, see
  ``YamuxConfig.early_ack_backlog``), first come first served;
* ``ping()`` and ``rtt``; the writer runs the keepalive / RTT timers;
* the session bounds its queued control frames (``max_control_backlog``): while
  the bound is reached the reader stops reading the connection until the writer
  drained them (back-pressure onto a peer that opens and resets streams, or pings,
  faster than it reads our answers; one that reads nothing hits ``write_timeout``);
* every connection write of up to ``write_batch_size`` bytes must finish within
  ``write_timeout`` (go's ``ConnectionWriteTimeout``), or the session ends.

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

Window growth beyond 256 KiB reserves memory first (see the session), in the
stream's resource scope (``stream.scope``, set by the swarm: the stream, its peer,
protocol and service and the system are charged), or in the connection's
``scope`` for a stream without one; a refusal keeps the window as it is.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from gevent.event import AsyncResult, Event

from geventp2p.core.mux import Direction
from geventp2p.core.rcmgr import NULL_SCOPE, ResourceScope
from geventp2p.core.sec import SecureConn
from geventp2p.core.transport import RawConn
from geventp2p.exceptions import ConnectionClosedError, P2PTimeoutError
from geventp2p.net._muxconn import (
    CLOSE_FLUSH_TIMEOUT,
    GOAWAY_FLUSH_TIMEOUT,
    WRITE_FAILURE_DRAIN,
    MuxConn,
    MuxStream,
    _copy,
)
from geventp2p.net.stream import Stream
from geventp2p.sansio import yamux as _y
from geventp2p.sansio.yamux import PROTOCOL_ID, YamuxConfig

__all__ = [
    "PROTOCOL_ID", "YamuxConfig", "YamuxMuxer", "YamuxConn", "YamuxStream",
    "GOAWAY_FLUSH_TIMEOUT", "CLOSE_FLUSH_TIMEOUT", "WRITE_FAILURE_DRAIN",
]

#: Bytes asked of the connection per read (read when a connection is created).
READ_SIZE = 256 * 1024
#: The reader yields to other greenlets after a read of at least this many bytes.
YIELD_BYTES = 64 * 1024

_monotonic = time.monotonic


class YamuxMuxer:
    """Stream muxer factory for ``/yamux/1.0.0``."""

    PROTOCOL_ID = PROTOCOL_ID

    def __init__(self, config: YamuxConfig | None = None) -> None:
        self.config = config if config is not None else YamuxConfig()

    def new_conn(self, sec: SecureConn, is_initiator: bool, scope: ResourceScope = NULL_SCOPE) -> YamuxConn:
        """Start a yamux session over ``sec`` (the dialer is the initiator/client)."""
        return YamuxConn(sec, is_initiator, self.config, scope)

    #: The former name of :meth:`new_conn` (same method).
    create = new_conn

    def __repr__(self) -> str:
        return f"<YamuxMuxer {self.PROTOCOL_ID}>"


class YamuxStream(MuxStream):
    """One yamux stream; the blocking API lives in :class:`geventp2p.net.stream.Stream`."""

    __slots__ = ("_sender",)
    _mux: "YamuxConn"

    def __init__(self, mux: "YamuxConn", stream_id: int, direction: Direction) -> None:
        Stream.__init__(self, mux, stream_id, direction)  # (MuxStream's two fields set here)
        self._mux = mux
        self._key = stream_id
        self._sender: Any = None  # the session's YamuxStreamSender, made on the first write

    def write(self, data: Any, timeout: float | None = None) -> None:
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

    def _try_write(self, view: memoryview | bytes) -> int:
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
            mux._blocked[self] = None
            mux._wake_writer.set()
        return n


class YamuxConn(MuxConn[_y.Session, YamuxStream]):
    """A yamux session over a secured connection (a MuxedConn)."""

    NAME = "yamux"
    YIELD_BYTES = YIELD_BYTES
    FLOW_CONTROLLED = True
    RECEIVE_INTO = True
    CONTROL_BACKPRESSURE = True
    STREAM_CLASS = YamuxStream

    __slots__ = ("_ack_waiters", "_pings")  # no instance dict (see MuxConn.__slots__)

    def __init__(
        self, conn: RawConn, is_initiator: bool, config: YamuxConfig | None = None, scope: ResourceScope = NULL_SCOPE
    ) -> None:
        config = config if config is not None else YamuxConfig()
        # open_stream calls blocked on the ACK backlog, FIFO (created on first use: an
        # empty deque is about 600 bytes, most connections never wait)
        self._ack_waiters: deque[Event] | None = None
        self._pings: dict[int, list[AsyncResult]] = {}
        session = _y.Session(config, is_initiator, scope)
        session.stream_scope = self._stream_scope
        session.start(_monotonic())
        super().__init__(
            conn, is_initiator, config, scope, session,
            write_timeout=config.write_timeout, write_batch_size=config.write_batch_size, read_size=READ_SIZE,
        )

    @property
    def rtt(self) -> float:
        """Last measured round-trip time in seconds (0.0 until a ping was answered)."""
        return self._session.rtt

    def ping(self, timeout: float | None = None) -> float:
        """Blocks the calling greenlet until the remote answers a yamux ping; returns the RTT (s)."""
        self._check_alive()
        opaque = self._session.ping(_monotonic())
        result: AsyncResult[float] = AsyncResult()
        self._pings.setdefault(opaque, []).append(result)
        self._wake_writer.set()
        try:
            if not result.wait(timeout) and not result.ready():
                raise P2PTimeoutError("yamux: ping timed out")
            rtt = result.get()
            assert rtt is not None
            return rtt
        finally:
            waiters = self._pings.get(opaque)
            if waiters is not None and result in waiters:
                waiters.remove(result)
                if not waiters:
                    del self._pings[opaque]

    def _stream_scope(self, stream_id: int) -> ResourceScope | None:
        """The resource scope of stream ``stream_id`` (None: none, use the session's)."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return None
        scope = stream.scope
        return None if scope is NULL_SCOPE else scope

    # ------------------------------------------------------------------ MuxConn hooks

    def _open_session_stream(self, timeout: float | None) -> int:
        session = self._session
        if self._ack_waiters or not session.reserve_open():
            # queue (FIFO) until _wake_openers reserves an ACK-backlog slot for us
            waiter = Event()
            waiters = self._ack_waiters
            if waiters is None:
                waiters = self._ack_waiters = deque()
            waiters.append(waiter)
            deadline = None if timeout is None else _monotonic() + timeout
            while True:
                now = _monotonic()
                wait = None if deadline is None else max(0.0, deadline - now)
                early = session.early_ack_deadline
                if early is not None:  # without an ACK the early limit ends at its deadline
                    left = max(0.0, early - now)
                    wait = left if wait is None else min(wait, left)
                waiter.wait(wait)
                if waiter.is_set():
                    break
                if session.expire_early_acks(_monotonic()):
                    self._wake_openers()
                    if waiter.is_set():
                        break
                if deadline is not None and _monotonic() >= deadline:
                    try:
                        waiters.remove(waiter)
                    except ValueError:  # pragma: no cover - granted and timed out at once
                        session.release_open()
                        self._wake_openers()
                    raise P2PTimeoutError("yamux: open_stream timed out waiting for ACKs")
            self._check_alive()  # granted by _wake_openers, or woken by the session end
        try:
            return session.open_stream(reserved=True)
        except BaseException:  # e.g. ResourceLimitExceeded for its window: give the slot back
            session.release_open()
            self._wake_openers()
            raise

    def _wake_openers(self) -> None:
        """Give blocked ``open_stream`` calls the ACK-backlog slots that are free (FIFO)."""
        waiters = self._ack_waiters
        if not waiters:
            return
        if self._terminated:
            while waiters:
                waiters.popleft().set()
            return
        session = self._session
        while waiters and session.reserve_open():
            waiters.popleft().set()

    def _on_event(self, ev: object) -> None:
        cls = type(ev)
        if cls is _y.WindowUpdated:
            stream = self._streams.get(ev.stream_id)  # type: ignore[attr-defined]
            if stream is not None:
                stream._notify_writable()
        elif cls is _y.StreamAcked or cls is _y.StreamReset:
            if self._ack_waiters:
                self._wake_openers()
        elif cls is _y.PongReceived:
            rtt = ev.rtt  # type: ignore[attr-defined]
            for result in self._pings.pop(ev.opaque, ()):  # type: ignore[attr-defined]
                result.set(rtt if rtt is not None else 0.0)
            # the timer moves from "ping timeout" to the (maybe earlier) keepalive
            self._wake_writer.set()
        # PingReceived: the answer is already queued

    def _on_terminate(self, error: ConnectionClosedError) -> None:
        self._wake_openers()
        pings = self._pings
        self._pings = {}
        for waiters in pings.values():
            for result in waiters:
                result.set_exception(_copy(error))
