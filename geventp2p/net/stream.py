"""A muxer-agnostic blocking stream for gevent.

``Stream`` holds everything a muxed stream needs that does not depend on the wire
format: the receive buffer, EOF / half-close / reset state, deadlines, and the
waiting of blocked readers and writers.  A muxer (yamux, mplex) subclasses it and
implements a handful of non-blocking hooks; the base class does all the blocking.

Application API (all blocking calls "block the calling greenlet")
------------------------------------------------------------------
``read(n=-1, timeout=None)``
    Returns buffered bytes (at most ``n``; ``n=-1`` means everything buffered), at
    least one byte unless EOF.  With ``n > 0`` a large received chunk (16 KiB or
    more) that is shorter than ``n`` comes back alone, without joining (no copy).  Returns ``b""`` once the remote half-closed (FIN)
    and the buffer is empty.  Raises ``StreamResetError`` after a reset (local or
    remote, buffered data is discarded as in go-yamux), ``StreamClosedError``
    after ``close_read()``/``close()``, ``P2PTimeoutError`` on timeout/deadline.
``read_exactly(n, timeout=None)``
    Exactly ``n`` bytes; ``IncompleteReadError`` (``.partial``) on early EOF.
``write(data, timeout=None)``
    Queues all of ``data``, blocking while the muxer applies back-pressure (yamux:
    no send window; mplex: connection write queue above its high-water mark).
    On timeout some prefix of ``data`` may have been sent.  Raises
    ``StreamClosedError`` after ``close_write()``, ``StreamResetError`` after a reset.
``unread(data)``
    Pushes bytes back in front of the receive buffer (read-ahead of a parser).
``close_write()``
    Half-close: sends FIN once; later writes raise ``StreamClosedError``.
    Raises ``StreamResetError`` if the stream was reset (like go-yamux).
``close_read()``
    Discards buffered data and everything that arrives later (the muxer still
    credits the flow-control window for it, so the remote never stalls).  Nothing
    is sent to the remote (go-yamux behaviour).  Later reads raise
    ``StreamClosedError`` (go returns an error too, not EOF).
``close()``
    ``close_write()`` + ``close_read()``; never raises (safe in ``finally``).
``reset(code=0)``
    Aborts both directions; sends RST with ``code`` (libp2p stream error code).
    Blocked readers/writers raise ``StreamResetError(remote=False)``.  No-op on a
    stream that is already reset or fully closed.
``set_deadline(t)``, ``set_read_deadline(t)``, ``set_write_deadline(t)``
    Absolute ``time.monotonic()`` values, or ``None``.  A call's effective
    deadline is the earlier of the stream deadline and ``now + timeout``.
    Changing a deadline wakes blocked calls so they re-evaluate it.

Attributes: ``id``, ``protocol`` (settable, ``None`` until negotiated),
``direction`` (``"inbound"``/``"outbound"``), ``conn`` (the muxed conn; the host
may replace it with its Connection object).

Greenlet safety: any number of greenlets may call these methods; concurrent
writes are serialised (each ``write`` is contiguous on the wire), concurrent
reads each get a disjoint part of the data.  Intended use is one reader and one
writer at a time.

Subclass interface (for muxer authors)
--------------------------------------
Hooks the subclass MUST implement.  They are called from the application's
greenlet, must not block and must not switch greenlets:

``_try_write(view: memoryview | bytes) -> int``
    Queue a prefix of ``view`` (non-empty; ``bytes`` as passed by the application,
    else a byte memoryview) for sending and return its length; copy mutable input
    (the caller may reuse its buffer).  Return 0 when no capacity is
    available right now: the base then waits until the muxer calls
    ``_notify_writable()`` (or the deadline passes) and retries.  Raise a
    ``StreamError`` if the stream can no longer send (the base also checks
    ``_reset_error`` before every call).
``_send_close_write() -> None``
    Queue a FIN.  Called at most once, only while the stream is not reset.
``_send_reset(code: int) -> None``
    Queue an RST carrying ``code``.  Called at most once, after the base has
    already marked the stream reset (``_reset_error`` set, buffers dropped).

Optional hooks (default: do nothing):

``_on_consumed(n: int) -> None``
    ``n`` received bytes left the receive buffer (read by the application, or
    discarded by ``close_read``/reset).  yamux returns window credit here.
    Bytes pushed back with ``unread`` are reported only once in total.
``_on_close_read() -> None``
    ``close_read()`` was called (after the buffer was discarded).
``_on_state_change() -> None``
    Called after any local or remote state change (FIN sent/received, reset,
    close_read); the muxer can check ``finished`` and forget the stream.

Methods the muxer calls, from its reader greenlet (never blocking):

``_feed_data(data: bytes) -> None``
    Append received bytes (dropped, and reported through ``_on_consumed``, if
    the read side was closed locally or the stream is reset).
``_feed_eof() -> None``
    The remote half-closed (FIN).
``_feed_reset(error: StreamResetError, keep_read_if_eof=False) -> None``
    The stream died: remote RST (``StreamResetError(error_code=code, remote=True)``)
    or session end (``ConnectionClosedError``).  Buffered data is discarded; blocked
    and later calls raise ``error``.  Does not call ``_send_reset``.  With
    ``keep_read_if_eof`` (use it for session end) a stream whose remote FIN already
    arrived keeps its buffered data and EOF; only writes fail with ``error``.
``_notify_writable() -> None``
    Capacity appeared (window update, write queue drained): wake a blocked writer.

State the subclass may read: ``read_eof`` (FIN received), ``write_closed`` (FIN
sent or requested), ``read_closed`` (``close_read`` called), ``is_reset``,
``finished`` (both directions done or reset), ``buffered`` (bytes in the buffer).
"""

from __future__ import annotations

import time
from collections import deque

from gevent.event import Event
from gevent.lock import Semaphore

from geventp2p.exceptions import (
    IncompleteReadError,
    P2PTimeoutError,
    StreamClosedError,
    StreamResetError,
)

__all__ = ["Stream", "INBOUND", "OUTBOUND"]

INBOUND = "inbound"
OUTBOUND = "outbound"

_monotonic = time.monotonic

#: ``read(n)`` returns a buffered chunk of at least this size alone instead of joining
#: it with the following ones (it still returns at most ``n`` bytes).
_NO_JOIN = 16 * 1024


def _effective_deadline(timeout: float | None, deadline: float | None) -> float | None:
    if timeout is None:
        return deadline
    t = _monotonic() + timeout
    if deadline is None or t < deadline:
        return t
    return deadline


class Stream:
    """Blocking muxed stream base class; see the module docstring for the contract."""

    __slots__ = (
        "id",
        "protocol",
        "direction",
        "conn",
        "_chunks",
        "_head_off",
        "_buffered",
        "_pushed_back",
        "_read_eof",
        "_read_closed",
        "_write_closed",
        "_reset_error",
        "_write_error",
        "_read_deadline",
        "_write_deadline",
        "_read_event",
        "_write_event",
        "_write_lock",
        "__weakref__",
    )

    def __init__(self, conn, stream_id: int, direction: str) -> None:
        self.id = stream_id
        self.protocol: str | None = None
        self.direction = direction
        self.conn = conn
        self._chunks: deque = deque()
        self._head_off = 0  # bytes already consumed from self._chunks[0]
        self._buffered = 0
        self._pushed_back = 0  # bytes at the head that came from unread(): not reported again
        self._read_eof = False
        self._read_closed = False
        self._write_closed = False
        self._reset_error: StreamResetError | None = None
        self._write_error: StreamResetError | None = None  # write side died, read side kept
        self._read_deadline: float | None = None
        self._write_deadline: float | None = None
        self._read_event: Event | None = None  # created lazily: thousands of idle streams
        self._write_event: Event | None = None
        self._write_lock: Semaphore | None = None

    def __repr__(self) -> str:
        state = []
        if self._reset_error is not None:
            state.append("reset")
        if self._read_eof:
            state.append("eof")
        if self._read_closed:
            state.append("read-closed")
        if self._write_closed:
            state.append("write-closed")
        return (
            f"<{type(self).__name__} id={self.id} {self.direction} protocol={self.protocol!r}"
            f" buffered={self._buffered}{' ' if state else ''}{','.join(state)}>"
        )

    # ------------------------------------------------------------------ state (read-only)

    @property
    def read_eof(self) -> bool:
        return self._read_eof

    @property
    def read_closed(self) -> bool:
        return self._read_closed

    @property
    def write_closed(self) -> bool:
        return self._write_closed

    @property
    def is_reset(self) -> bool:
        return self._reset_error is not None

    @property
    def finished(self) -> bool:
        """Both directions are done (FIN each way, or close_read + FIN sent) or reset."""
        if self._reset_error is not None:
            return True
        return (self._write_closed or self._write_error is not None) and (self._read_eof or self._read_closed)

    @property
    def buffered(self) -> int:
        return self._buffered

    # ------------------------------------------------------------------ hooks (subclass)

    def _try_write(self, view: memoryview) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _send_close_write(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _send_reset(self, code: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _on_consumed(self, n: int) -> None:
        pass

    def _on_close_read(self) -> None:
        pass

    def _on_state_change(self) -> None:
        pass

    # ------------------------------------------------------------------ muxer side

    def _feed_data(self, data: bytes) -> None:
        if not data:
            return
        if self._read_closed or self._reset_error is not None:
            self._on_consumed(len(data))
            return
        self._chunks.append(data)
        self._buffered += len(data)
        ev = self._read_event
        if ev is not None:
            ev.set()

    def _feed_eof(self) -> None:
        if self._read_eof:
            return
        self._read_eof = True
        ev = self._read_event
        if ev is not None:
            ev.set()
        self._on_state_change()

    def _feed_reset(self, error: StreamResetError, keep_read_if_eof: bool = False) -> None:
        if self._reset_error is not None:
            return
        if keep_read_if_eof and self._read_eof and not self._read_closed:
            # session end after the remote's FIN: buffered data stays readable, then
            # EOF; only the write side fails (go-yamux forceClose does the same)
            if self._write_error is None:
                self._write_error = error
                ev = self._write_event
                if ev is not None:
                    ev.set()
                self._on_state_change()
            return
        self._reset_error = error
        self._drop_buffer()
        self._wake_all()
        self._on_state_change()

    def _notify_writable(self) -> None:
        ev = self._write_event
        if ev is not None:
            ev.set()

    def _wake_all(self) -> None:
        ev = self._read_event
        if ev is not None:
            ev.set()
        ev = self._write_event
        if ev is not None:
            ev.set()

    def _drop_buffer(self) -> None:
        n = self._buffered - self._pushed_back
        self._chunks.clear()
        self._head_off = 0
        self._buffered = 0
        self._pushed_back = 0
        if n > 0:
            self._on_consumed(n)

    # ------------------------------------------------------------------ reading

    def read(self, n: int = -1, timeout: float | None = None) -> bytes:
        """Blocks the calling greenlet until data, EOF, reset or timeout.

        Returns up to ``n`` buffered bytes (all buffered bytes when ``n < 0``), at
        least one unless EOF; ``b""`` at EOF.
        """
        if n == 0:
            self._check_readable()
            return b""
        call_deadline = None if timeout is None else _monotonic() + timeout
        while True:
            self._check_readable()
            if self._buffered:
                return self._take(n)
            if self._read_eof:
                return b""
            if self._read_event is None:
                self._read_event = Event()
            self._wait(self._read_event, call_deadline, self._read_deadline, "read")

    def read_exactly(self, n: int, timeout: float | None = None) -> bytes:
        """Blocks the calling greenlet until exactly ``n`` bytes were read.

        Raises ``IncompleteReadError`` if EOF comes first (the partial bytes are
        in ``.partial`` and are not pushed back).
        """
        if n < 0:
            raise ValueError("n must be >= 0")
        deadline_t = None if timeout is None else _monotonic() + timeout
        parts = []
        got = 0
        while got < n:
            remaining = None if deadline_t is None else max(0.0, deadline_t - _monotonic())
            chunk = self.read(n - got, timeout=remaining)
            if not chunk:
                raise IncompleteReadError(b"".join(parts), n)
            parts.append(chunk)
            got += len(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def unread(self, data: bytes) -> None:
        """Push ``data`` back in front of the receive buffer (not counted as new flow-control data)."""
        if not data:
            return
        if self._reset_error is not None or self._read_closed:
            return
        if self._head_off:
            self._chunks[0] = self._chunks[0][self._head_off:]
            self._head_off = 0
        self._chunks.appendleft(bytes(data))
        self._buffered += len(data)
        self._pushed_back += len(data)
        ev = self._read_event
        if ev is not None:
            ev.set()

    def _check_readable(self) -> None:
        if self._reset_error is not None:
            raise self._reset_error.with_traceback(None)
        if self._read_closed:
            raise StreamClosedError(f"stream {self.id} closed for reading")

    def _take(self, n: int) -> bytes:
        chunks = self._chunks
        off = self._head_off
        if n > 0 and len(chunks) > 1:
            head = chunks[0]
            avail = len(head) - off
            if _NO_JOIN <= avail < n:
                # a large chunk is returned alone (up to n bytes is the contract):
                # no join of it with the next chunk, no copy of the rest of that one
                chunks.popleft()
                self._head_off = 0
                return self._account(head[off:] if off else head)
        if n < 0 or n >= self._buffered:
            # everything
            if off:
                chunks[0] = chunks[0][off:]
                self._head_off = 0
            out = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            chunks.clear()
        else:
            parts = []
            need = n
            while need:
                head = chunks[0]
                avail = len(head) - off
                if avail <= need:
                    parts.append(head[off:] if off else head)
                    chunks.popleft()
                    need -= avail
                    off = 0
                else:
                    parts.append(head[off:off + need])
                    off += need
                    need = 0
            self._head_off = off
            out = parts[0] if len(parts) == 1 else b"".join(parts)
        return self._account(out)

    def _account(self, out: bytes) -> bytes:
        n_out = len(out)
        self._buffered -= n_out
        pushed = self._pushed_back
        if pushed:
            if pushed >= n_out:
                self._pushed_back = pushed - n_out
                return out
            self._pushed_back = 0
            n_out -= pushed
        self._on_consumed(n_out)
        return out

    def _wait(self, ev: Event, call_deadline: float | None, stream_deadline: float | None, what: str) -> None:
        """Wait once for ``ev`` (the caller re-checks its condition and loops).

        Raises P2PTimeoutError if the earlier of both deadlines already passed.
        """
        if stream_deadline is not None and (call_deadline is None or stream_deadline < call_deadline):
            deadline = stream_deadline
        else:
            deadline = call_deadline
        ev.clear()
        if deadline is None:
            ev.wait()
            return
        remaining = deadline - _monotonic()
        if remaining <= 0:
            raise P2PTimeoutError(f"stream {self.id}: {what} timed out")
        ev.wait(remaining)

    # ------------------------------------------------------------------ writing

    def write(self, data, timeout: float | None = None) -> None:
        """Blocks the calling greenlet until all of ``data`` is queued for sending.

        Honors back-pressure (flow-control window / connection write queue).
        """
        if self._reset_error is not None or self._write_error is not None or self._write_closed:
            self._check_writable()
        if type(data) is bytes:
            view = data  # immutable: handed over as is (a memoryview only if split)
            size = len(data)
        else:
            view = memoryview(data)
            if view.ndim != 1 or view.itemsize != 1:
                view = view.cast("B")
            size = view.nbytes
        if not size:
            return
        lock = self._write_lock
        if lock is None or not lock.locked():
            # Fast path: no other writer holds the stream, so a write the muxer takes
            # whole needs no lock (``_try_write`` never switches greenlets).
            sent = self._try_write(view)
            if sent == size:
                return
            view = memoryview(view)[sent:]
            if lock is None:
                lock = self._write_lock = Semaphore()
        else:
            view = memoryview(view)
        call_deadline = None if timeout is None else _monotonic() + timeout
        if not lock.acquire(blocking=False):
            deadline = _effective_deadline(timeout, self._write_deadline)
            if deadline is None:
                lock.acquire()
            elif not lock.acquire(timeout=max(0.0, deadline - _monotonic())):
                raise P2PTimeoutError(f"stream {self.id}: write timed out")
        try:
            while view:
                self._check_writable()
                sent = self._try_write(view)
                if sent:
                    view = view[sent:]
                    continue
                if self._write_event is None:
                    self._write_event = Event()
                self._wait(self._write_event, call_deadline, self._write_deadline, "write")
        finally:
            lock.release()

    def _check_writable(self) -> None:
        if self._reset_error is not None:
            raise self._reset_error.with_traceback(None)
        if self._write_error is not None:
            raise self._write_error.with_traceback(None)
        if self._write_closed:
            raise StreamClosedError(f"stream {self.id} closed for writing")

    # ------------------------------------------------------------------ closing

    def close_write(self) -> None:
        """Half-close our sending side (FIN).  Idempotent; raises StreamResetError if reset."""
        if self._reset_error is not None:
            raise self._reset_error.with_traceback(None)
        if self._write_closed:
            return
        if self._write_error is not None:
            raise self._write_error.with_traceback(None)
        self._write_closed = True
        self._send_close_write()
        ev = self._write_event
        if ev is not None:
            ev.set()
        self._on_state_change()

    def close_read(self) -> None:
        """Stop reading: discard buffered and future data; later reads raise StreamClosedError."""
        if self._read_closed or self._reset_error is not None:
            return
        self._read_closed = True
        self._drop_buffer()
        ev = self._read_event
        if ev is not None:
            ev.set()
        self._on_close_read()
        self._on_state_change()

    def close(self) -> None:
        """close_write() + close_read(); never raises on a reset stream."""
        if self._reset_error is None and self._write_error is None and not self._write_closed:
            self.close_write()
        self.close_read()

    def reset(self, code: int = 0) -> None:
        """Abort both directions and send RST with ``code``; no-op if already reset or finished."""
        if self._reset_error is not None or self.finished:
            return
        if not 0 <= code <= 0xFFFFFFFF:
            raise ValueError("reset code must fit in u32")
        self._reset_error = StreamResetError(f"stream {self.id} reset", error_code=code, remote=False)
        self._drop_buffer()
        self._wake_all()
        self._send_reset(code)
        self._on_state_change()

    # ------------------------------------------------------------------ deadlines

    def set_deadline(self, t: float | None) -> None:
        self._read_deadline = t
        self._write_deadline = t
        self._wake_all()

    def set_read_deadline(self, t: float | None) -> None:
        self._read_deadline = t
        ev = self._read_event
        if ev is not None:
            ev.set()

    def set_write_deadline(self, t: float | None) -> None:
        self._write_deadline = t
        ev = self._write_event
        if ev is not None:
            ev.set()
