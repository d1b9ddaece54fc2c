"""mplex (``/mplex/6.7.0``) for gevent: ``MplexMuxer`` -> ``MplexConn`` -> ``MplexStream``.

A thin shell around :class:`geventp2p.sansio.mplex.Session` (legacy muxer, kept
for js/rust interop; prefer yamux;
https://github.com/libp2p/specs/blob/master/mplex/README.md).  The reader and
writer greenlets, termination, the accept queue, ``close`` and ``wait_closed`` are
the shared muxer shell's (:mod:`geventp2p.net._muxconn`); this module adds what
only mplex has:

* mplex has no flow control: the reader only appends to stream buffers and never
  waits for an application, so a stream whose reader is slow cannot stall the
  others; the session resets (only) a stream whose unread bytes pass
  ``max_stream_buffer_size``, or whose bytes the resource ``scope`` refuses to
  reserve (code 0x1002).  The reader yields to other greenlets after every 16 KiB
  read (counted across reads) and every ``frames_per_yield`` events, so a stream's
  reader gets to consume before one fast sender fills its buffer.
* Stream writers block while ``max_send_buffer_size`` bytes are queued, and when
  several streams contend each queues one ``write_chunk_size`` message per flush
  in turn, so a bulk writer cannot starve a chatty one.
* A peer that makes us queue control frames (resets of refused streams, closes)
  but never reads them is dropped once ``max_send_buffer_size`` +
  ``write_chunk_size`` + ``CONTROL_SLACK`` bytes wait.
* mplex has no GoAway: ``close(code)`` closes without telling the peer why.
* mplex has no ping: a connection write of up to ``WRITE_BATCH`` bytes that makes
  no progress for ``write_timeout`` ends the session (a peer that does not read),
  and the session's ``read_timeout`` ends one whose peer sent no complete frame
  for that long while no stream is open or a frame is half received (an idle,
  frozen or trickling peer); see :mod:`geventp2p.sansio.mplex`.

When the connection ends, every stream fails with ``ConnectionClosedError``,
except that data the remote sent before its Close stays readable on streams that
already saw EOF.
"""

from __future__ import annotations

import time
from typing import Any

from gevent.event import Event

from geventp2p.core.mux import Direction
from geventp2p.core.rcmgr import NULL_SCOPE, ResourceScope
from geventp2p.core.sec import SecureConn
from geventp2p.core.transport import RawConn
from geventp2p.exceptions import ConnectionClosedError, P2PTimeoutError
from geventp2p.net._muxconn import MuxConn, MuxStream
from geventp2p.net.stream import Stream
from geventp2p.sansio import mplex as _core
from geventp2p.sansio.mplex import PROTOCOL_ID, MplexConfig

__all__ = ["PROTOCOL_ID", "MplexConfig", "MplexMuxer", "MplexConn", "MplexStream"]

#: Queued control frames (resets of refused or misbehaving streams, closes) the
#: session may hold beyond ``max_send_buffer_size`` while the peer does not read
#: what we send; past it the peer is abusing us and the session ends.
_monotonic = time.monotonic

CONTROL_SLACK = 1024 * 1024
#: Most bytes handed to one connection write, each bounded by ``write_timeout``.
WRITE_BATCH = 1024 * 1024


class MplexMuxer:
    """Factory for mplex sessions; ``new_conn`` wraps a secured connection."""

    PROTOCOL_ID = PROTOCOL_ID

    def __init__(self, config: MplexConfig | None = None) -> None:
        self.config = config if config is not None else MplexConfig()

    def new_conn(self, sec: SecureConn, is_initiator: bool, scope: ResourceScope = NULL_SCOPE) -> MplexConn:
        """Start an mplex session on ``sec`` (spawns its reader and writer)."""
        return MplexConn(sec, is_initiator, config=self.config, scope=scope)

    #: The former name of :meth:`new_conn` (same method).
    create = new_conn

    def __repr__(self) -> str:
        return f"<MplexMuxer {PROTOCOL_ID}>"


class MplexStream(MuxStream):
    """One mplex stream; the blocking API is :class:`geventp2p.net.stream.Stream`'s.

    ``id`` is the numeric mplex (wire) id.  Both peers number their streams
    independently, so an inbound and an outbound stream may share an ``id``;
    ``direction`` tells them apart.
    """

    __slots__ = ("_gen",)
    _mux: "MplexConn"

    def __init__(self, mconn: "MplexConn", key: int, direction: Direction) -> None:
        Stream.__init__(self, mconn, key >> 1, direction)  # id: the wire id (sansio.mplex.wire_id)
        self._mux = mconn
        self._key = key
        self._gen = -1  # writer flush generation of our last queued message

    def _on_consumed(self, n: int) -> None:
        # no flow control: buffer accounting only (no clock, nothing to send)
        self._mux._session.consumed(self._key, n)

    def write(self, data: Any, timeout: float | None = None) -> None:
        """Blocks the calling greenlet until all of ``data`` is queued for sending.

        Blocks while the connection's send queue is full (the writer greenlet
        has not yet flushed ``max_send_buffer_size`` bytes).
        """
        try:
            super().write(data, timeout=timeout)
        finally:
            self._mux._blocked.pop(self, None)

    def _try_write(self, view: memoryview | bytes) -> int:
        mconn = self._mux
        if mconn._terminated or mconn._write_failure is not None:
            mconn._check_alive(write=True)
        session = mconn._session
        waiters = mconn._blocked
        if session.bytes_to_send >= mconn._max_send_buffer or (
            self._gen == mconn._flushes and len(waiters) > (self in waiters)
        ):
            # Full queue, or other streams are waiting and we already queued a
            # message since the last flush: take turns (one message each per flush).
            waiters[self] = None
            return 0
        n = min(len(view), mconn._chunk)
        session.send_data(self._key, view[:n])
        self._gen = mconn._flushes
        waiters.pop(self, None)
        mconn._wake_writer.set()
        return n


class MplexConn(MuxConn[_core.Session, MplexStream]):
    """A running mplex session over one secured connection (the MuxedConn API)."""

    NAME = "mplex"
    READ_SIZE = 65536
    STREAM_CLASS = MplexStream
    #: mplex has no flow control: let the streams' readers run after every 16 KiB read
    #: (counted across reads: transport reads need not line up with messages).
    YIELD_BYTES = 16384

    __slots__ = ("_chunk", "_early_waiters")  # no instance dict (see MuxConn.__slots__)

    def __init__(
        self, conn: RawConn, is_initiator: bool, config: MplexConfig | None = None, scope: ResourceScope = NULL_SCOPE
    ) -> None:
        config = config if config is not None else MplexConfig()
        self._chunk = config.write_chunk_size
        # open_stream calls waiting for the early-open limit to end (created on first use)
        self._early_waiters: Event | None = None
        session = _core.Session(config, is_initiator, scope)
        session.start(_monotonic())
        super().__init__(
            conn, is_initiator, config, scope, session,
            write_timeout=config.write_timeout, write_batch_size=WRITE_BATCH,
            max_pending_send=config.max_send_buffer_size + config.write_chunk_size + CONTROL_SLACK,
        )

    def _open_session_stream(self, timeout: float | None) -> int:
        session = self._session
        if session.open_blocked:
            self._wait_early_open(timeout)
        return session.open_stream()

    def _wait_early_open(self, timeout: float | None) -> None:
        """Blocks while the early-open limit holds (``MplexConfig.early_open_limit``): until
        the peer answers on one of our streams (the reader wakes us), the limit's own
        deadline, the session's end or ``timeout`` (``P2PTimeoutError``)."""
        session = self._session
        deadline = None if timeout is None else _monotonic() + timeout
        while session.open_blocked:
            self._check_alive(write=True)
            now = _monotonic()
            if session.expire_early_opens(now):
                self._wake_early_openers()
                return
            early = session.early_open_deadline
            wait = None if early is None else max(0.0, early - now)
            if deadline is not None:
                left = deadline - now
                if left <= 0:
                    raise P2PTimeoutError("mplex: open_stream timed out before the peer answered on any stream")
                wait = left if wait is None else min(wait, left)
            waiters = self._early_waiters
            if waiters is None:
                waiters = self._early_waiters = Event()
            waiters.wait(wait)
        self._check_alive(write=True)

    def _wake_early_openers(self) -> None:
        waiters = self._early_waiters
        if waiters is not None:
            self._early_waiters = None
            waiters.set()

    def _on_event(self, ev: object) -> None:
        if type(ev) is _core.EarlyOpensEnded:
            self._wake_early_openers()  # the peer answered on one of our streams

    def _on_terminate(self, error: ConnectionClosedError) -> None:
        self._wake_early_openers()

    def _after_flush(self) -> None:
        # every waiting stream gets another turn; they stay queued (FIFO) until they write
        for stream in list(self._blocked):
            stream._notify_writable()
