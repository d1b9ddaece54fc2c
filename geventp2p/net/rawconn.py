"""The byte pipe every layer above the transport reads and writes.

``RawConn`` is the small blocking interface shared by TCP sockets, the in-process
memory pipes and secured connections (Noise, plaintext)::

    read(n=65536, timeout=None) -> bytes   # 1..n bytes, b"" at EOF
    readinto(buf, timeout=None) -> int     # the same into a caller buffer, 0 at EOF
    write(data)                            # all bytes
    writev(buffers)                        # several buffers, one syscall where possible
    unread(data)                           # push back read-ahead bytes
    close()                                # idempotent, wakes a blocked reader
    closed, local_addr, remote_addr, is_initiator

The base class owns the push-back buffer and the timeout plumbing; a subclass
implements ``_read_raw(n)`` (block until 1..n bytes or b"" at EOF),
``_write_raw(data)`` and ``_close_raw()``.

``SocketConn`` wraps a ``gevent.socket.socket`` (a stdlib socket is converted),
so it works with and without ``gevent.monkey.patch_all()``.
"""

from __future__ import annotations

import errno
import logging
import socket as _stdlib_socket
import struct
from typing import Iterable, Optional

import gevent
import gevent.socket as gsocket
from gevent.lock import Semaphore

from geventp2p.exceptions import P2PTimeoutError, TransportError

__all__ = ["RawConn", "SocketConn", "DEFAULT_READ_SIZE"]

log = logging.getLogger(__name__)

#: Default ``n`` for ``read()``.
DEFAULT_READ_SIZE = 65536

# sendmsg() accepts at most IOV_MAX buffers (1024 on Linux); stay well below.
_MAX_IOV = 512


class RawConn:
    """Base class of every blocking byte pipe (TCP, memory, secured wrappers).

    Subclasses set ``local_addr``, ``remote_addr``, ``is_initiator`` and implement
    ``_read_raw``, ``_write_raw`` and ``_close_raw``.
    """

    local_addr = None
    remote_addr = None
    is_initiator = False

    def __init__(self) -> None:
        self._rbuf = b""
        self._closed = False

    # ------------------------------------------------------------------ reading

    def read(self, n: int = DEFAULT_READ_SIZE, timeout: Optional[float] = None) -> bytes:
        """Blocks the calling greenlet until 1..n bytes are available; b"" at EOF.

        Pushed-back bytes (``unread``) are returned first.  Raises TransportError
        on a transport failure and P2PTimeoutError when ``timeout`` (seconds) passes.
        After a local ``close()`` it returns b"".
        """
        if n <= 0:
            raise ValueError("read size must be positive")
        buf = self._rbuf
        if buf:
            if len(buf) <= n:
                self._rbuf = b""
                return buf
            self._rbuf = buf[n:]
            return buf[:n]
        if self._closed:
            return b""
        if timeout is None:
            return self._read_raw(n)
        timer = gevent.Timeout(timeout)
        timer.start()
        try:
            return self._read_raw(n)
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            raise P2PTimeoutError(f"read timed out after {timeout:g}s") from None
        finally:
            timer.close()

    def readinto(self, buf, timeout: Optional[float] = None) -> int:
        """Like ``read`` but into ``buf`` (a writable buffer): returns 1..len(buf), 0 at EOF.

        Lets a consumer with its own receive buffer avoid a copy (``SocketConn``
        receives straight into it, ``NoiseConn`` decrypts straight into it).
        """
        mv = buf if isinstance(buf, memoryview) else memoryview(buf)
        if mv.ndim != 1 or mv.itemsize != 1:
            mv = mv.cast("B")
        size = len(mv)
        if size <= 0:
            raise ValueError("read size must be positive")
        rbuf = self._rbuf
        if rbuf:
            k = len(rbuf) if len(rbuf) < size else size
            mv[:k] = rbuf[:k]
            self._rbuf = rbuf[k:]
            return k
        if self._closed:
            return 0
        if timeout is None:
            return self._readinto_raw(mv)
        timer = gevent.Timeout(timeout)
        timer.start()
        try:
            return self._readinto_raw(mv)
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            raise P2PTimeoutError(f"read timed out after {timeout:g}s") from None
        finally:
            timer.close()

    def _readinto_raw(self, mv: memoryview) -> int:
        """Block until 1..len(mv) bytes were stored in ``mv``; 0 at EOF.

        Default: one ``read`` and a copy (works for subclasses that override ``read``)."""
        data = self.read(len(mv))
        k = len(data)
        mv[:k] = data
        return k

    def unread(self, data) -> None:
        """Push ``data`` back; the next ``read`` returns it before anything else."""
        if data:
            self._rbuf = bytes(data) + self._rbuf

    def _read_raw(self, n: int) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ writing

    def write(self, data) -> None:
        """Blocks the calling greenlet until all of ``data`` is handed to the transport."""
        if self._closed:
            raise TransportError(errno.EBADF, "write on a closed connection")
        if data:
            self._write_raw(data)

    def writev(self, buffers: Iterable) -> None:
        """Blocks the calling greenlet until all buffers are written, in order."""
        self.write(b"".join(buffers))

    def _write_raw(self, data) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ closing

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close the connection (idempotent); a greenlet blocked in ``read`` gets b""."""
        if self._closed:
            return
        self._closed = True
        self._close_raw()

    def _close_raw(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        role = "initiator" if self.is_initiator else "responder"
        return f"<{type(self).__name__} {self.local_addr} <-> {self.remote_addr} {role} {state}>"


def _as_gevent_socket(sock):
    """Return a gevent socket for ``sock`` (a stdlib socket is converted in place)."""
    if isinstance(sock, gsocket.socket):
        return sock
    if isinstance(sock, _stdlib_socket.socket):
        family, type_, proto = sock.family, sock.type, sock.proto
        return gsocket.socket(family, type_, proto, fileno=sock.detach())
    raise TypeError(f"expected a socket, got {type(sock).__name__}")


class SocketConn(RawConn):
    """RawConn over a connected stream socket (TCP or a socketpair end).

    ``sock`` may be a gevent or a stdlib socket; a stdlib socket is detached and
    re-wrapped, so no monkey-patching is needed.  The socket is put in blocking
    (gevent-cooperative) mode; timeouts are per call.
    """

    def __init__(self, sock, local_addr=None, remote_addr=None, is_initiator: bool = False) -> None:
        super().__init__()
        sock = _as_gevent_socket(sock)
        sock.settimeout(None)
        self._sock = sock
        self.local_addr = local_addr
        self.remote_addr = remote_addr
        self.is_initiator = is_initiator
        self._wlock = Semaphore()
        self._has_sendmsg = hasattr(sock, "sendmsg")

    @property
    def socket(self):
        """The underlying gevent socket (for options; do not read or write it directly)."""
        return self._sock

    def fileno(self) -> int:
        return self._sock.fileno()

    def set_nodelay(self, enabled: bool = True) -> bool:
        """Set TCP_NODELAY; returns False if the socket does not support it (e.g. AF_UNIX)."""
        try:
            self._sock.setsockopt(gsocket.IPPROTO_TCP, gsocket.TCP_NODELAY, 1 if enabled else 0)
        except OSError:
            return False
        return True

    # ------------------------------------------------------------------ I/O

    def _read_raw(self, n: int) -> bytes:
        try:
            return self._sock.recv(n)
        except OSError as exc:
            if self._closed:
                # closed locally while we were blocked (gevent raises EBADF in the waiter)
                return b""
            raise TransportError(exc.errno, f"read failed: {exc.strerror or exc}") from exc

    def _readinto_raw(self, mv: memoryview) -> int:
        try:
            return self._sock.recv_into(mv)
        except OSError as exc:
            if self._closed:
                return 0
            raise TransportError(exc.errno, f"read failed: {exc.strerror or exc}") from exc

    def _write_raw(self, data) -> None:
        with self._wlock:
            try:
                self._sock.sendall(data)
            except OSError as exc:
                raise TransportError(exc.errno, f"write failed: {exc.strerror or exc}") from exc

    def writev(self, buffers: Iterable) -> None:
        """Blocks the calling greenlet until all buffers are written (``sendmsg`` when possible).

        Buffers go out as they are (no joining), at most ``_MAX_IOV`` per ``sendmsg``.
        """
        if self._closed:
            raise TransportError(errno.EBADF, "write on a closed connection")
        bufs = [b for b in buffers if b]
        if not bufs:
            return
        if len(bufs) == 1 or not self._has_sendmsg:
            self._write_raw(bufs[0] if len(bufs) == 1 else b"".join(bufs))
            return
        sock = self._sock
        count = len(bufs)
        i = 0
        with self._wlock:
            try:
                while i < count:
                    sent = sock.sendmsg(bufs[i : i + _MAX_IOV] if i or count > _MAX_IOV else bufs)
                    # skip what went out; a partly sent buffer is sliced (no copy)
                    while sent and i < count:
                        b = bufs[i]
                        size = b.nbytes if type(b) is memoryview else len(b)
                        if sent >= size:
                            sent -= size
                            i += 1
                        else:
                            bufs[i] = memoryview(b).cast("B")[sent:]
                            sent = 0
            except OSError as exc:
                raise TransportError(exc.errno, f"write failed: {exc.strerror or exc}") from exc

    def close_write(self) -> None:
        """Half-close: send FIN, keep reading."""
        if self._closed:
            return
        try:
            self._sock.shutdown(gsocket.SHUT_WR)
        except OSError:
            pass

    def abort(self) -> None:
        """Abortive close: the peer gets a reset (RST) instead of an orderly EOF."""
        if not self._closed:
            try:
                self._sock.setsockopt(gsocket.SOL_SOCKET, gsocket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        self.close()

    def _close_raw(self) -> None:
        try:
            self._sock.close()
        except OSError:  # pragma: no cover - close errors are not actionable
            log.debug("error closing socket", exc_info=True)
