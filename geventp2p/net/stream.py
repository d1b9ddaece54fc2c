"""A muxer-agnostic blocking stream for gevent.

``Stream`` holds everything a muxed stream needs that does not depend on the wire
format: the receive buffer, EOF / half-close / reset state, deadlines, and the
waiting of blocked readers and writers.  A muxer (yamux, mplex) subclasses it and
implements a handful of non-blocking hooks; the base class does all the blocking.

Application API (all blocking calls "block the calling greenlet")
------------------------------------------------------------------
``read(n=-1, timeout=None)``
    Returns what is buffered, up to ``n`` bytes (socket ``recv`` style: it does
    *not* wait for ``n`` bytes or for EOF; use ``read_exactly`` or ``read_all``),
    at least one byte unless EOF; ``n=-1`` means everything buffered.  With ``n > 0`` a large received chunk (16 KiB or
    more) that is shorter than ``n`` comes back alone, without joining (no copy).  Returns ``b""`` once the remote half-closed (FIN)
    and the buffer is empty.  Raises ``StreamResetError`` after a reset (local or
    remote, buffered data is discarded as in go-yamux), ``StreamClosedError``
    after ``close_read()``/``close()``, ``P2PTimeoutError`` on timeout/deadline.
``read_exactly(n, timeout=None)``
    Exactly ``n`` bytes; ``IncompleteReadError`` (``.partial``) on early EOF.
``read_all(limit=None, timeout=None)``
    Everything up to EOF.  More than ``limit`` bytes raises ``MessageTooLargeError``
    and resets the stream.  ``timeout`` bounds the whole call.
``readline(limit=65536, timeout=None)``
    Bytes up to and including the first ``b"\n"``, or the rest at EOF (``b""`` at
    EOF).  A line longer than ``limit`` raises ``MessageTooLargeError`` and resets
    the stream.  Bytes read past the newline stay buffered.
``makefile("rb" | "wb")``
    An ``io.BufferedReader`` / ``io.BufferedWriter`` over the stream.  Closing the
    ``"wb"`` file flushes it and half-closes the stream (``close_write``); closing
    the ``"rb"`` file leaves the stream as it is.
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

``with stream: ...`` closes the stream (``close()``) when the block ends.

Attributes: ``id``, ``protocol`` (settable, ``None`` until negotiated),
``direction`` (a :class:`~geventp2p.core.mux.Direction`, equal to ``"inbound"``/
``"outbound"``), ``conn`` (the muxed conn; the swarm replaces it with its connection
object), ``remote_peer`` (``conn.remote_peer``), ``scope`` (the resource manager's
stream scope, set by the swarm; ``NULL_SCOPE`` without a resource manager).

Streams opened and accepted by a host are instances of this class (the muxer's
subclass), whatever the muxer and however the protocol was negotiated: no wrapper
object sits between the application and the muxer.

Negotiation and bookkeeping in the slow path
--------------------------------------------
A lazily negotiated outbound stream (multistream-select proposal pipelined with the
first write, see :func:`geventp2p.net.multistream.select_lazy`) carries two fields:

* a *pending prefix* (``_prefix``): header + proposal, sent in front of the first
  write (one frame), or alone before a half-close or before waiting for the echo;
* a *pending echo check* (``_echo``): an object whose ``settle(stream, timeout)``
  reads and checks the listener's echo; ``read`` calls it before returning data.

The swarm sets three more: ``scope`` (the stream's resource-manager scope; a null
scope otherwise), ``_watch`` (called once when the stream is finished: both
directions closed, or reset; the swarm's ``closed_stream`` notification and the
release of ``scope``) and ``_meter`` (a bandwidth reporter: ``log_sent``/``log_recv`` per write/read).  The
write fast path tests one flag (``_slow_write``: a prefix or a meter is set); the
read path tests ``_echo`` and, when bytes leave the buffer, ``_meter``.

Threads
-------
A stream belongs to the gevent hub of the OS thread that runs its connection.  Call
its methods only from greenlets of that thread: calling ``read``/``write`` directly
from another OS thread is unsafe (gevent objects are not thread-safe and the call
would block or switch on the wrong hub).  To use blocking, CPU-heavy or foreign-thread
code with a stream, keep the stream I/O on the hub thread and move the other work to
a thread pool: ``gevent.get_hub().threadpool.spawn(fn, data).get()`` (or a
``gevent.threadpool.ThreadPool``) blocks only the calling greenlet and is woken
across threads by gevent.  A foreign thread that must hand data to a stream can post
it with ``hub.loop.run_callback_threadsafe(callback)`` (the callback runs on the hub
thread and may spawn a greenlet that writes).

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

import io
import time
from collections import deque
from typing import Any, Callable, Optional, Protocol, Union

from gevent.event import Event
from gevent.lock import Semaphore

from geventp2p.core.mux import Direction
from geventp2p.core.rcmgr import NULL_SCOPE
from geventp2p.exceptions import (
    IncompleteReadError,
    MessageTooLargeError,
    P2PTimeoutError,
    StreamClosedError,
    StreamResetError,
)
from geventp2p.net._deadline import effective_deadline as _effective_deadline

__all__ = ["Stream", "EchoCheck", "BandwidthReporter", "INBOUND", "OUTBOUND", "DEFAULT_LINE_LIMIT"]

#: Aliases of the :class:`~geventp2p.core.mux.Direction` members (the one definition).
INBOUND = Direction.INBOUND
OUTBOUND = Direction.OUTBOUND

_monotonic = time.monotonic

#: Default ``readline`` limit (bytes, the newline included).
DEFAULT_LINE_LIMIT = 65536

Buffer = Union[bytes, bytearray, memoryview]


class EchoCheck(Protocol):
    """A pending negotiation answer to read and check before application data."""

    #: Read the echo before ``close_write`` sends the FIN (else the FIN may ride
    #: with the pipelined proposal).
    confirm_before_fin: bool

    def settle(self, stream: "Stream", timeout: Optional[float]) -> None:
        """Blocks the calling greenlet until the answer was read and checked.

        On success it clears ``stream._echo``; on failure it raises (and keeps raising).
        """


class BandwidthReporter(Protocol):
    def log_sent(self, n: int, peer: Any = None, protocol: Optional[str] = None) -> None: ...

    def log_recv(self, n: int, peer: Any = None, protocol: Optional[str] = None) -> None: ...


#: ``read(n)`` returns a buffered chunk of at least this size alone instead of joining
#: it with the following ones (it still returns at most ``n`` bytes).
_NO_JOIN = 16 * 1024
#: A first write on a lazily negotiated stream joins the pending prefix (header +
#: proposal) with data of at most this size (one frame); larger data is never copied,
#: the prefix is written on its own first.
_PREFIX_JOIN_MAX = 16 * 1024


def _left(deadline_t: float | None) -> float | None:
    return None if deadline_t is None else max(0.0, deadline_t - _monotonic())


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
        "_slow_write",
        "_prefix",
        "_echo",
        "_meter",
        "_watch",
        "scope",
        "__weakref__",
    )

    def __init__(self, conn: Any, stream_id: int, direction: Direction) -> None:
        self.id = stream_id
        self.protocol: str | None = None
        self.direction: Direction = direction  # an enum member: reads stay plain attribute reads
        self.conn = conn
        self._chunks: deque[bytes] = deque()
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
        # slow-path fields (see the module docstring); the write fast path tests only
        # _slow_write (True while a prefix is pending or a meter is set)
        self._slow_write = False
        self._prefix = b""
        self._echo: EchoCheck | None = None
        self._meter: BandwidthReporter | None = None
        self._watch: Callable[["Stream"], None] | None = None
        # the stream's resource scope (a StreamManagementScope); the swarm sets it when it
        # opens or accepts the stream and calls its done() once, from _watch's target
        self.scope: Any = NULL_SCOPE

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def remote_peer(self) -> Any:
        """The peer at the other end (``conn.remote_peer``)."""
        return self.conn.remote_peer

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

    @property
    def negotiated(self) -> bool:
        """False while a lazily proposed protocol's echo is unread (or was refused)."""
        return self._echo is None

    # ------------------------------------------------------------------ hooks (subclass)

    def _try_write(self, view: bytes | memoryview) -> int:  # pragma: no cover - abstract
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

    def _state_changed(self) -> None:
        """Runs the ``_on_state_change`` hook, then tells the owner (``_watch``) once finished."""
        self._on_state_change()
        watch = self._watch
        if watch is not None and self.finished:
            self._watch = None
            watch(self)

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
        self._state_changed()

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
                self._state_changed()
            return
        self._reset_error = error
        self._drop_buffer()
        self._wake_all()
        self._state_changed()

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

        Returns what is buffered, up to ``n`` bytes (all buffered bytes when
        ``n < 0``), at least one unless EOF; ``b""`` at EOF.  Like a socket's
        ``recv`` it does not wait for ``n`` bytes, nor for EOF: use
        :meth:`read_exactly` or :meth:`read_all` for that.  On a lazily negotiated
        stream the protocol echo is read and checked first (``NegotiationError``).
        """
        if self._echo is not None:  # lazily negotiated: check the protocol echo first
            self._echo.settle(self, timeout)
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
        parts: list[bytes] = []
        got = 0
        while got < n:
            remaining = None if deadline_t is None else max(0.0, deadline_t - _monotonic())
            chunk = self.read(n - got, timeout=remaining)
            if not chunk:
                raise IncompleteReadError(b"".join(parts), n)
            parts.append(chunk)
            got += len(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _read_raw(self, timeout: float | None) -> bytes:
        """``read()`` without the echo check: for the negotiation code that does the check."""
        call_deadline = None if timeout is None else _monotonic() + timeout
        while True:
            self._check_readable()
            if self._buffered:
                return self._take(-1)
            if self._read_eof:
                return b""
            if self._read_event is None:
                self._read_event = Event()
            self._wait(self._read_event, call_deadline, self._read_deadline, "read")

    def _read_more(self, n: int, deadline_t: float | None, parts: list[bytes]) -> bytes:
        """``read(n)`` for a helper that collected ``parts``: on timeout they are pushed back."""
        try:
            return self.read(n, timeout=_left(deadline_t))
        except P2PTimeoutError:
            if parts:
                self.unread(b"".join(parts))
            raise

    def read_all(self, limit: int | None = None, timeout: float | None = None) -> bytes:
        """Blocks the calling greenlet until EOF; returns every byte read.

        More than ``limit`` bytes: the stream is reset and ``MessageTooLargeError``
        raised.  ``timeout`` bounds the whole call (``P2PTimeoutError``; the bytes
        read so far are pushed back).
        """
        if limit is not None and limit < 0:
            raise ValueError("limit must be >= 0")
        deadline_t = None if timeout is None else _monotonic() + timeout
        parts: list[bytes] = []
        got = 0
        while True:
            chunk = self._read_more(-1 if limit is None else limit - got + 1, deadline_t, parts)
            if not chunk:
                break
            got += len(chunk)
            if limit is not None and got > limit:
                self.reset(MessageTooLargeError.error_code)
                raise MessageTooLargeError(f"stream {self.id}: more than {limit} bytes before EOF")
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def readline(self, limit: int = DEFAULT_LINE_LIMIT, timeout: float | None = None) -> bytes:
        """Blocks the calling greenlet until a whole line (or EOF) was read.

        Returns the bytes up to and including the first ``b"\\n"``, or what is left
        at EOF without a newline, or ``b""`` at EOF.  A line longer than ``limit``
        (newline included) resets the stream and raises ``MessageTooLargeError``.
        """
        if limit < 1:
            raise ValueError("limit must be >= 1")
        deadline_t = None if timeout is None else _monotonic() + timeout
        parts: list[bytes] = []
        got = 0
        while True:
            chunk = self._read_more(limit - got + 1, deadline_t, parts)
            if not chunk:  # EOF: the rest (or b"")
                break
            i = chunk.find(b"\n")
            if i >= 0:
                if got + i + 1 > limit:
                    got += i + 1
                    break
                if i + 1 < len(chunk):
                    self.unread(chunk[i + 1:])
                    chunk = chunk[:i + 1]
                parts.append(chunk)
                break
            got += len(chunk)
            if got > limit:
                break
            parts.append(chunk)
        if got > limit:
            self.reset(MessageTooLargeError.error_code)
            raise MessageTooLargeError(f"stream {self.id}: line longer than {limit} bytes")
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def makefile(self, mode: str = "rb", buffering: int = io.DEFAULT_BUFFER_SIZE) -> "io.BufferedIOBase":
        """A buffered binary file over the stream: ``"rb"`` (reader) or ``"wb"`` (writer).

        Closing the ``"wb"`` file flushes it and half-closes the stream
        (``close_write``); closing the ``"rb"`` file leaves the stream open.
        """
        if mode not in ("rb", "wb", "r", "w"):
            raise ValueError(f"unsupported mode {mode!r} (use 'rb' or 'wb')")
        raw = _StreamIO(self, "w" in mode)
        if "w" in mode:
            return io.BufferedWriter(raw, buffering)
        return io.BufferedReader(raw, buffering)

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
        if self._meter is not None:
            self._meter.log_recv(n_out, self.conn.remote_peer, self.protocol)
        return out

    def _wait(self, ev: Event, call_deadline: float | None, stream_deadline: float | None, what: str) -> None:
        """Wait once for ``ev`` (the caller re-checks its condition and loops).

        Raises P2PTimeoutError if the earlier of both deadlines already passed.
        """
        deadline: float | None
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

    def write(self, data: Buffer, timeout: float | None = None) -> None:
        """Blocks the calling greenlet until all of ``data`` is queued for sending.

        Honors back-pressure (flow-control window / connection write queue).
        """
        if self._reset_error is not None or self._write_error is not None or self._write_closed:
            self._check_writable()
        if self._slow_write:  # a pending prefix or a bandwidth meter
            data = self._write_hooks(data, timeout)
        view: bytes | memoryview
        if type(data) is bytes:
            view = data  # immutable: handed over as is (a memoryview only if split)
            size = len(data)
        else:
            mv = memoryview(data)
            if mv.ndim != 1 or mv.itemsize != 1:
                mv = mv.cast("B")
            view = mv
            size = mv.nbytes
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

    def _write_hooks(self, data: Buffer, timeout: float | None = None) -> Buffer:
        """Slow path of ``write``: send the pending prefix (joined with ``data`` of at
        most ``_PREFIX_JOIN_MAX`` bytes, else written on its own first: a large
        payload is never copied), report to the meter.

        Returns what to write.  The meter counts bytes as they are handed to the
        muxer (the prefix included).
        """
        prefix = self._prefix
        if prefix:
            self._prefix = b""
            self._slow_write = self._meter is not None
            size = data.nbytes if isinstance(data, memoryview) else len(data)
            if size <= _PREFIX_JOIN_MAX:
                data = prefix + bytes(data)  # one frame: proposal + first application bytes
            else:
                # never copy a large payload (one shared buffer written on many streams
                # would be copied once per stream): the prefix goes out on its own,
                # within the caller's timeout
                self.write(prefix, timeout)
        meter = self._meter
        if meter is not None:
            n = data.nbytes if isinstance(data, memoryview) else len(data)
            if n:
                meter.log_sent(n, self.conn.remote_peer, self.protocol)
        return data

    def _flush_prefix(self) -> None:
        """Send the pending prefix alone (before a FIN, or before waiting for an answer)."""
        if self._prefix:
            self.write(b"")

    def _check_writable(self) -> None:
        if self._reset_error is not None:
            raise self._reset_error.with_traceback(None)
        if self._write_error is not None:
            raise self._write_error.with_traceback(None)
        if self._write_closed:
            raise StreamClosedError(f"stream {self.id} closed for writing")

    # ------------------------------------------------------------------ closing

    def close_write(self) -> None:
        """Half-close our sending side (FIN).  Idempotent; raises StreamResetError if reset.

        On a lazily negotiated stream the pending proposal goes out first; toward a
        peer that needs it (``confirm_before_fin``) the protocol echo is read and
        checked before the FIN (one round trip; ``NegotiationError`` on refusal).
        """
        echo = self._echo
        if echo is not None and echo.confirm_before_fin and not self._write_closed:
            echo.settle(self, None)
        self._close_write()

    def _close_write(self) -> None:
        if self._prefix and self._reset_error is None and self._write_error is None \
                and not self._write_closed:
            self._flush_prefix()
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
        self._state_changed()

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
        self._state_changed()

    def close(self) -> None:
        """close_write() + close_read(); never raises on a reset stream."""
        if self._reset_error is None and self._write_error is None and not self._write_closed:
            try:
                self._close_write()  # never waits for a pending echo
            except StreamResetError:
                pass
            except (StreamClosedError, P2PTimeoutError):  # the pending prefix did not go out
                pass
        self.close_read()

    def reset(self, code: int = 0) -> None:
        """Abort both directions and send RST with ``code``; no-op if already reset or finished."""
        if self._reset_error is not None or self.finished:
            return
        if not 0 <= code <= 0xFFFFFFFF:
            raise ValueError("reset code must fit in u32")
        self._prefix = b""
        self._slow_write = self._meter is not None
        self._reset_error = StreamResetError(f"stream {self.id} reset", error_code=code, remote=False)
        self._drop_buffer()
        self._wake_all()
        self._send_reset(code)
        self._state_changed()

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


class _StreamIO(io.RawIOBase):
    """The raw file under :meth:`Stream.makefile` (one direction of the stream)."""

    def __init__(self, stream: Stream, writing: bool) -> None:
        super().__init__()
        self._stream = stream
        self._writing = writing

    def readable(self) -> bool:
        return not self._writing

    def writable(self) -> bool:
        return self._writing

    def readinto(self, buf: Any) -> int:
        if self._writing:
            raise io.UnsupportedOperation("not readable")
        view = memoryview(buf).cast("B")
        data = self._stream.read(len(view))
        k = len(data)
        view[:k] = data
        return k

    def write(self, data: Any) -> int:
        if not self._writing:
            raise io.UnsupportedOperation("not writable")
        view = memoryview(data).cast("B")
        n = view.nbytes
        self._stream.write(bytes(view))  # the buffered writer reuses its buffer
        return n

    def close(self) -> None:
        if not self.closed and self._writing:
            try:
                super().close()
            finally:
                self._stream.close_write()
            return
        super().close()
