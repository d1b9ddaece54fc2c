"""In-process transport: paired pipes that behave like a TCP connection.

For tests, examples and benchmarks (public import path ``geventp2p.testing.memory``).

Addresses are ``/memory/<u64>`` (the multiaddr ``memory`` protocol, code 777, an
8-byte id as in rust-libp2p); ``/memory/0`` picks a free id.  Plain string names
(``"alice"``) are accepted by ``listen``/``dial`` as aliases because the multiaddr
form only allows integers; the listener's ``multiaddr`` is always ``/memory/<id>``.

Knobs (per direction, settable at creation or later with ``conn.configure``):

``latency``     one-way delay in seconds; data and EOF arrive that much later.
``bandwidth``   bytes per second; writes are serialised at that rate.
``chunk_size``  at most this many bytes per ``read`` (1 = byte-at-a-time delivery).
``max_buffer``  bytes in flight before ``write`` blocks (back-pressure).
``abort_error`` what the peer sees after ``conn.abort()``: True = TransportError
                (ECONNRESET) on read and write, False = immediate EOF.

``memory_pipe(**knobs) -> (a, b)`` makes a connected pair without any listener.
"""

from __future__ import annotations

import errno
import itertools
import logging
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Callable, Dict, Iterable, Optional, Tuple

from gevent.event import Event
from gevent.pool import Group
from multiaddr import Multiaddr

from geventp2p.core import addr as maddr
from geventp2p.exceptions import ConfigError, MultiaddrError, TransportError
from geventp2p.net.rawconn import Buffer, RawConn, stop_handlers_of

__all__ = [
    "PipeConfig",
    "MemoryNetwork",
    "MemoryTransport",
    "MemoryListener",
    "MemoryConn",
    "memory_pipe",
    "DEFAULT_NETWORK",
]

log = logging.getLogger(__name__)

_MAX_ID = (1 << 64) - 1


@dataclass(frozen=True)
class PipeConfig:
    """Behaviour of one memory connection (both directions)."""

    latency: float = 0.0
    bandwidth: Optional[float] = None
    chunk_size: Optional[int] = None
    max_buffer: int = 4 * 1024 * 1024
    abort_error: bool = True

    def __post_init__(self) -> None:
        if not (self.latency >= 0):
            raise ConfigError("latency must be >= 0 seconds")
        if self.bandwidth is not None and not (self.bandwidth > 0):
            raise ConfigError("bandwidth must be > 0 bytes/s or None")
        if self.chunk_size is not None and (not isinstance(self.chunk_size, int) or self.chunk_size < 1):
            raise ConfigError("chunk_size must be a positive int or None")
        if not isinstance(self.max_buffer, int) or self.max_buffer < 1:
            raise ConfigError("max_buffer must be a positive int")
        if not isinstance(self.abort_error, bool):
            raise ConfigError("abort_error must be a bool")


_EOF = None  # marker in the chunk queue


class _Pipe:
    """One direction: a queue of ``[deliver_at, data, offset]`` with waiters."""

    __slots__ = (
        "latency", "bandwidth", "chunk_size", "max_buffer",
        "_chunks", "_pending", "_next_free", "_readable", "_writable",
        "_eof_sent", "_reader_closed", "_error",
    )

    def __init__(self, cfg: PipeConfig) -> None:
        self.latency = cfg.latency
        self.bandwidth = cfg.bandwidth
        self.chunk_size = cfg.chunk_size
        self.max_buffer = cfg.max_buffer
        self._chunks: deque = deque()
        self._pending = 0
        self._next_free = 0.0
        self._readable = Event()
        self._writable = Event()
        self._writable.set()
        self._eof_sent = False
        self._reader_closed = False
        self._error: Optional[BaseException] = None

    def _stamp(self, size: int) -> float:
        if not self.latency and not self.bandwidth:
            return 0.0
        now = time.monotonic()
        if self.bandwidth:
            start = max(now, self._next_free)
            self._next_free = start + size / self.bandwidth
            return self._next_free + self.latency
        return now + self.latency

    # writer side
    def write(self, data: bytes) -> None:
        while True:
            if self._error is not None:
                raise self._error
            if self._eof_sent:
                raise TransportError(errno.EPIPE, "write after close")
            if self._reader_closed:
                return  # like TCP: the bytes go nowhere, no error yet
            if self._pending < self.max_buffer:
                break
            self._writable.clear()
            self._writable.wait()
        self._chunks.append([self._stamp(len(data)), data, 0])
        self._pending += len(data)
        self._readable.set()

    def send_eof(self) -> None:
        if self._eof_sent:
            return
        self._eof_sent = True
        self._chunks.append([self._stamp(0), _EOF, 0])
        self._readable.set()
        self._writable.set()

    # reader side
    def read(self, n: int) -> bytes:
        if self.chunk_size is not None and n > self.chunk_size:
            n = self.chunk_size
        chunks = self._chunks
        while True:
            if self._reader_closed:
                return b""
            if self._error is not None:
                raise self._error
            if chunks:
                at, data, off = chunks[0]
                wait = at - time.monotonic() if at else 0.0
                if wait <= 0:
                    if data is _EOF:
                        return b""
                    return self._take(n)
                self._readable.clear()
                self._readable.wait(wait)
                continue
            self._readable.clear()
            self._readable.wait()

    def _take(self, n: int) -> bytes:
        chunks = self._chunks
        out = []
        got = 0
        now = None
        while chunks and got < n:
            head = chunks[0]
            at, data, off = head
            if data is _EOF:
                break
            if at and got:
                if now is None:
                    now = time.monotonic()
                if at > now:
                    break
            k = min(n - got, len(data) - off)
            if off == 0 and k == len(data):
                out.append(data)
                chunks.popleft()
            else:
                out.append(data[off:off + k])
                if off + k == len(data):
                    chunks.popleft()
                else:
                    head[2] = off + k
            got += k
        self._pending -= got
        if self._pending < self.max_buffer:
            self._writable.set()
        return out[0] if len(out) == 1 else b"".join(out)

    def close_reader(self) -> None:
        self._reader_closed = True
        self._chunks.clear()
        self._pending = 0
        self._readable.set()
        self._writable.set()

    def fail(self, exc: Optional[BaseException]) -> None:
        """Abort: pending data is lost; reader and writer see ``exc`` (None = EOF)."""
        self._chunks.clear()
        self._pending = 0
        if exc is None:
            self._eof_sent = True
            self._chunks.append([0.0, _EOF, 0])
        else:
            self._error = exc
        self._readable.set()
        self._writable.set()


class MemoryConn(RawConn):
    """One end of an in-process connection (RawConn interface)."""

    def __init__(self, inbound: _Pipe, outbound: _Pipe, local_addr, remote_addr,
                 is_initiator: bool, cfg: PipeConfig) -> None:
        super().__init__()
        self._in = inbound
        self._out = outbound
        self.local_addr = local_addr
        self.remote_addr = remote_addr
        self.is_initiator = is_initiator
        self._cfg = cfg
        self.peer: Optional["MemoryConn"] = None

    def _read_raw(self, n: int) -> bytes:
        return self._in.read(n)

    def _write_raw(self, data: Buffer) -> None:
        self._out.write(bytes(data))

    def writev(self, buffers: Iterable[Buffer]) -> None:
        self.write(b"".join(buffers))

    def close_write(self) -> None:
        """Half-close: the peer reads EOF after the data already written (and a pending
        negotiation prefix)."""
        if self._prefix and not self._closed:
            self._flush_prefix()
        self._out.send_eof()

    def _close_raw(self) -> None:
        self._out.send_eof()
        self._in.close_reader()

    def abort(self, error: Optional[bool] = None) -> None:
        """Abrupt close: in-flight data is dropped; the peer sees TransportError
        (``error=True``) or EOF (``error=False``); default from ``abort_error``."""
        if error is None:
            error = self._cfg.abort_error
        if error:
            exc = TransportError(errno.ECONNRESET, "connection reset by peer (memory abort)")
            self._out.fail(exc)  # peer's reads fail
            self._in.fail(exc)  # peer's writes fail
        else:
            self._out.fail(None)  # peer reads EOF at once
        self._closed = True
        self._in.close_reader()  # our own blocked reader gets b""

    break_ = abort

    def configure(self, *, latency=None, bandwidth=..., chunk_size=..., max_buffer=None) -> None:
        """Change knobs of both directions of this connection at run time."""
        for pipe in (self._in, self._out):
            if latency is not None:
                pipe.latency = latency
            if bandwidth is not ...:
                pipe.bandwidth = bandwidth
            if chunk_size is not ...:
                pipe.chunk_size = chunk_size
            if max_buffer is not None:
                pipe.max_buffer = max_buffer


def _make_pair(cfg: PipeConfig, dial_addr, listen_addr) -> Tuple[MemoryConn, MemoryConn]:
    a_to_b, b_to_a = _Pipe(cfg), _Pipe(cfg)
    a = MemoryConn(b_to_a, a_to_b, dial_addr, listen_addr, True, cfg)
    b = MemoryConn(a_to_b, b_to_a, listen_addr, dial_addr, False, cfg)
    a.peer, b.peer = b, a
    return a, b


def memory_pipe(config: Optional[PipeConfig] = None, **knobs) -> Tuple[MemoryConn, MemoryConn]:
    """A connected pair ``(initiator, responder)`` with no listener involved."""
    cfg = replace(config or PipeConfig(), **knobs) if knobs else (config or PipeConfig())
    return _make_pair(cfg, None, None)


class MemoryListener:
    """Accepts memory connections; ``handler(conn)`` runs in its own greenlet each."""

    def __init__(self, network: "MemoryNetwork", mem_id: int, handler, names=()) -> None:
        self.network = network
        self.id = mem_id
        self.multiaddr = Multiaddr(f"/memory/{mem_id}")
        self._handler = handler
        self._handlers = Group()
        self._closed = False
        self._names = list(names)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def handlers(self) -> Group:
        return self._handlers

    def _accept(self, conn: MemoryConn) -> None:
        self._handlers.spawn(self._run_handler, conn)

    def _run_handler(self, conn: MemoryConn) -> None:
        ok = False
        try:
            self._handler(conn)
            ok = True
        except Exception:
            log.exception("memory connection handler failed")
        finally:
            if not ok:
                conn.close()

    def close(self, stop_handlers: bool = False, timeout: Optional[float] = 5.0) -> None:
        if not self._closed:
            self._closed = True
            self.network._unregister(self)
        if stop_handlers:
            stop_handlers_of(self._handlers, timeout)

    def join(self, timeout: Optional[float] = None) -> bool:
        return self._closed

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close(stop_handlers=True)

    def __repr__(self) -> str:
        return f"<MemoryListener {self.multiaddr} {'closed' if self._closed else 'listening'}>"


class MemoryNetwork:
    """A namespace of memory listeners (ids and name aliases)."""

    def __init__(self) -> None:
        self._listeners: Dict[int, MemoryListener] = {}
        self._names: Dict[str, int] = {}
        self._next = itertools.count(1)

    def _alloc(self) -> int:
        while True:
            mem_id = next(self._next)
            if mem_id not in self._listeners:
                return mem_id

    def _resolve(self, target, *, for_listen: bool) -> Tuple[Optional[int], Optional[str]]:
        if isinstance(target, str) and not target.startswith("/"):
            if not target:
                raise MultiaddrError("empty memory name")
            if for_listen:
                return None, target
            if target not in self._names:
                return -1, target
            return self._names[target], target
        mem_id = maddr.memory_id(target)
        if not 0 <= mem_id <= _MAX_ID:  # pragma: no cover - codec enforces u64
            raise MultiaddrError(f"memory id out of range: {mem_id}")
        return mem_id, None

    def listen(self, target, handler) -> MemoryListener:
        mem_id, name = self._resolve(target, for_listen=True)
        if name is not None:
            if name in self._names:
                raise TransportError(errno.EADDRINUSE, f"memory name {name!r} is in use")
            mem_id = self._alloc()
        elif mem_id == 0:
            mem_id = self._alloc()
        elif mem_id in self._listeners:
            raise TransportError(errno.EADDRINUSE, f"/memory/{mem_id} is in use")
        assert mem_id is not None  # _resolve gives an id whenever it gives no name
        lst = MemoryListener(self, mem_id, handler, names=[name] if name else [])
        self._listeners[mem_id] = lst
        if name:
            self._names[name] = mem_id
        return lst

    def _unregister(self, lst: MemoryListener) -> None:
        if self._listeners.get(lst.id) is lst:
            del self._listeners[lst.id]
        for name in lst._names:
            if self._names.get(name) == lst.id:
                del self._names[name]

    def dial(self, target, cfg: PipeConfig) -> MemoryConn:
        mem_id, name = self._resolve(target, for_listen=False)
        lst = self._listeners.get(mem_id) if mem_id is not None and mem_id >= 0 else None
        if lst is None or lst.closed:
            shown = name if name is not None else f"/memory/{mem_id}"
            raise TransportError(errno.ECONNREFUSED, f"connection refused: nothing listens on {shown}")
        local = Multiaddr(f"/memory/{self._alloc_ephemeral()}")
        a, b = _make_pair(cfg, local, lst.multiaddr)
        lst._accept(b)
        return a

    _ephemeral = itertools.count(1 << 62)

    def _alloc_ephemeral(self) -> int:
        return next(self._ephemeral)


#: The process-wide default network used when ``MemoryTransport(network=None)``.
DEFAULT_NETWORK = MemoryNetwork()


class MemoryTransport:
    """Transport over a ``MemoryNetwork``.

    Knob arguments (or ``config``) apply to the connections this transport dials
    (both directions); the listening side's knobs are not used.
    """

    name = "memory"

    def __init__(self, network: Optional[MemoryNetwork] = None, config: Optional[PipeConfig] = None,
                 **knobs) -> None:
        self.network = network if network is not None else DEFAULT_NETWORK
        cfg = config or PipeConfig()
        self.config = replace(cfg, **knobs) if knobs else cfg

    def can_dial(self, ma) -> bool:
        if isinstance(ma, str) and ma and not ma.startswith("/"):
            return True
        try:
            maddr.memory_id(ma)
        except Exception:
            return False
        return True

    can_listen = can_dial

    def dial(self, ma, timeout: Optional[float] = None) -> MemoryConn:
        """Connect to a memory listener (does not block); TransportError if none listens."""
        if not self.can_dial(ma):
            raise MultiaddrError(f"not a /memory address: {ma!r}")
        return self.network.dial(ma, self.config)

    def listen(self, ma, handler: Callable[[MemoryConn], None]) -> MemoryListener:
        """Register a listener; ``/memory/0`` picks a free id (see ``listener.multiaddr``)."""
        if not callable(handler):
            raise TypeError("handler must be callable")
        if not self.can_listen(ma):
            raise MultiaddrError(f"not a /memory address: {ma!r}")
        return self.network.listen(ma, handler)
