"""The byte pipe every layer above the transport reads and writes.

``RawConn`` is the small blocking interface shared by TCP sockets, the in-process
memory pipes and secured connections (Noise, TLS, plaintext)::

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

Negotiation in the slow path
----------------------------
The security protocol of a new connection is chosen by multistream-select, pipelined
with the first handshake message (see :mod:`geventp2p.net.multistream`); the state
that needs lives on the connection itself, as on a muxed stream, never in a wrapper:

* a *pending prefix* (``_prefix``): bytes sent in front of the next write, in the
  same write (the dialer's header + proposal; the listener's header + echo);
  before a read that would wait, a half-close or a close it goes out alone;
* a *pending echo check* (``_echo``): an object whose ``settle(conn, timeout)``
  reads and checks the listener's answer before a read returns data.

``_pending`` is True while either is set: the one flag the read and write fast
paths test.  Once the handshake has written and read, both are gone.  A subclass
that overrides ``read``/``readinto``/``write``/``writev``/``close_write`` honours
``_pending`` the same way (``NoiseConn`` and ``PlaintextConn`` do, so a protocol
can be proposed lazily inside a secured connection too).

``SecuredConn`` is the base of what a security handshake returns (Noise, TLS,
plaintext): a RawConn over the transport's RawConn, carrying the identity the
handshake proved.

``SocketConn`` wraps a ``gevent.socket.socket`` (a stdlib socket is converted),
so it works with and without ``gevent.monkey.patch_all()``.
"""

from __future__ import annotations

import errno
import logging
import os
import socket as _stdlib_socket
import struct
from typing import TYPE_CHECKING, Any, Iterable, Optional, Protocol, Union

import gevent
import gevent.pool
import gevent.socket as gsocket
from gevent.lock import Semaphore

from geventp2p.exceptions import P2PTimeoutError, TransportError
from geventp2p.net._deadline import Deadline, timeout_scope

if TYPE_CHECKING:
    from multiaddr import Multiaddr  # type: ignore[import-untyped, unused-ignore]

    from geventp2p.core.peer import PeerId
    from geventp2p.core.transport import RawConn as AnyRawConn
    from geventp2p.crypto.keys import PublicKey

__all__ = ["RawConn", "SecuredConn", "SocketConn", "PendingEcho", "DEFAULT_READ_SIZE", "close_quietly",
           "stop_handlers_of"]

Buffer = Union[bytes, bytearray, memoryview]

log = logging.getLogger(__name__)

#: Default ``n`` for ``read()``.
DEFAULT_READ_SIZE = 65536

# sendmsg() accepts at most IOV_MAX buffers (1024 on Linux); stay well below.
_MAX_IOV = 512
_MSG_PEEK = getattr(_stdlib_socket, "MSG_PEEK", 2)
_PEEK = bytearray(1)  # wait_readable's MSG_PEEK target, shared (the byte is never read)
#: gevent sockets wait on their own read watcher (``sock._wait(sock._read_event)``)
_WATCHER_WAIT = hasattr(gsocket.socket, "_wait")


class PendingEcho(Protocol):
    """A negotiation answer to read and check before application data (``RawConn._echo``)."""

    def settle(self, conn: "RawConn", timeout: Optional[float]) -> None:
        """Blocks the calling greenlet until the answer was read and checked.

        Sends the pending prefix first.  Reads with ``conn._read_raw`` (nothing was
        read before the answer, so nothing is pushed back), pushes back what follows
        it and calls ``conn._settled()``.  On failure it raises, and again on every
        later call.
        """


class RawConn:
    """Base class of every blocking byte pipe (TCP, memory, secured wrappers).

    Subclasses set ``local_addr``, ``remote_addr``, ``is_initiator`` and implement
    ``_read_raw``, ``_write_raw`` and ``_close_raw``.
    """

    local_addr: Optional[Multiaddr] = None
    remote_addr: Optional[Multiaddr] = None
    is_initiator: bool = False

    def __init__(self) -> None:
        self._rbuf = b""
        self._closed = False
        self._pending = False  # a prefix or an echo check is pending (the fast-path flag)
        self._prefix = b""
        self._echo: Optional[PendingEcho] = None

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
        if self._pending:  # negotiation pending: echo check / held-back reply
            data = self._read_pending(n, timeout)
            if data is not None:
                return data
        if timeout is None:
            return self._read_raw(n)
        with timeout_scope(timeout, "read"):
            return self._read_raw(n)

    def readinto(self, buf: Union[bytearray, memoryview], timeout: Optional[float] = None) -> int:
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
        if self._pending:  # negotiation pending: echo check / held-back reply
            data = self._read_pending(size, timeout)
            if data is not None:
                k = len(data)
                mv[:k] = data
                return k
        if timeout is None:
            return self._readinto_raw(mv)
        with timeout_scope(timeout, "read"):
            return self._readinto_raw(mv)

    def readinto_nowait(self, buf: Union[bytearray, memoryview]) -> Optional[int]:
        """Like ``readinto`` but None, instead of waiting, when no byte is available now
        (nothing is consumed then).  A reader that gets None can hand its buffer back
        and call :meth:`wait_readable`.  Falls back to a waiting ``readinto`` while
        a negotiation is pending, and on transports that cannot tell (the default)."""
        if self._rbuf or self._pending or self._closed:
            return self.readinto(buf)
        mv = buf if isinstance(buf, memoryview) else memoryview(buf)
        if not len(mv):
            raise ValueError("read size must be positive")
        return self._readinto_nowait_raw(mv)

    def _readinto_nowait_raw(self, mv: memoryview) -> Optional[int]:
        """Like ``_readinto_raw`` but None if it would wait.  Default: a waiting
        ``readinto`` (so a subclass's own ``readinto`` still applies)."""
        return self.readinto(mv)

    def _readinto_raw(self, mv: memoryview) -> int:
        """Block until 1..len(mv) bytes were stored in ``mv``; 0 at EOF.

        Default: one ``read`` and a copy (works for subclasses that override ``read``)."""
        data = self.read(len(mv))
        k = len(data)
        mv[:k] = data
        return k

    def wait_readable(self) -> None:
        """Blocks the calling greenlet until a read would not wait (data, EOF or an error).

        Lets a reader hand its receive buffer back while the connection is idle and
        take one again only once bytes arrived (see :mod:`geventp2p.net.bufpool`).
        Returns at once when bytes are pushed back, a negotiation is pending or the
        connection is closed.  The default returns at once (the read then waits);
        ``SocketConn`` and ``NoiseConn`` wait.  Errors are left to the read that follows.
        """

    def readable_fileno(self) -> Optional[int]:
        """The descriptor whose readability means a read would not wait, when nothing is
        buffered here: a reader may then stop (no greenlet parked) and start again when
        the descriptor becomes readable.  None when that is not known (the default):
        the reader keeps waiting in :meth:`wait_readable` or its read."""
        return None

    def unread(self, data: Buffer) -> None:
        """Push ``data`` back; the next ``read`` returns it before anything else."""
        if data:
            self._rbuf = bytes(data) + self._rbuf

    def _read_raw(self, n: int) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ negotiation (slow path)

    def _defer(self, prefix: bytes, echo: Optional[PendingEcho] = None) -> None:
        """Hold ``prefix`` for the next write and ``echo`` for the next read (multistream).

        Does not block.  Called on a fresh connection, before anything was read.
        """
        if echo is not None and self._rbuf:
            raise ValueError("an echo check must come before anything was read")
        self._prefix = bytes(prefix)
        self._echo = echo
        self._pending = bool(prefix) or echo is not None

    @property
    def negotiated(self) -> bool:
        """False while a lazily proposed protocol's echo is unread (or was refused)."""
        return self._echo is None

    def _settled(self) -> None:
        """The pending echo was read and checked (called by ``PendingEcho.settle``)."""
        self._echo = None
        self._pending = bool(self._prefix)

    def _take_prefix(self) -> bytes:
        """The pending prefix, now cleared (b"" if none)."""
        prefix = self._prefix
        if prefix:
            self._prefix = b""
            self._pending = self._echo is not None
        return prefix

    def _flush_prefix(self) -> None:
        """Blocks the calling greenlet until the pending prefix (if any) was sent alone."""
        prefix = self._take_prefix()
        if prefix:
            self._write_raw(prefix)

    def _read_pending(self, n: int, timeout: Optional[float]) -> Optional[bytes]:
        """Slow path of ``read``: settle the pending negotiation state.

        With an echo check: the prefix goes out, the echo is read and checked, then
        the read goes on (``None``, or the bytes that followed the echo).  With only
        a held-back prefix (a listener's reply): bytes that are already here are
        returned without it; before waiting it is sent.
        """
        echo = self._echo
        if echo is not None:
            dl = Deadline(timeout)
            echo.settle(self, timeout)
            return self.read(n, dl.left())  # what followed the echo, or the next bytes
        try:
            with timeout_scope(0, "read"):
                return self._read_raw(n)  # here already (or EOF): the reply may wait
        except P2PTimeoutError:
            pass
        self._flush_prefix()  # we are about to wait: the peer may be waiting for it
        return None

    # ------------------------------------------------------------------ writing

    def write(self, data: Buffer) -> None:
        """Blocks the calling greenlet until all of ``data`` is handed to the transport."""
        if self._closed:
            raise TransportError(errno.EBADF, "write on a closed connection")
        if self._pending:
            prefix = self._take_prefix()
            if prefix:
                data = prefix + bytes(data)  # one write: negotiation + first message
        if data:
            self._write_raw(data)

    def writev(self, buffers: Iterable[Buffer]) -> None:
        """Blocks the calling greenlet until all buffers are written, in order."""
        self.write(b"".join(buffers))

    def _write_raw(self, data: Buffer) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ closing

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close the connection (idempotent); a greenlet blocked in ``read`` gets b"".

        A pending negotiation prefix is sent first (best effort).
        """
        if self._closed:
            return
        if self._prefix:
            try:
                self._flush_prefix()
            except Exception:  # best effort: the connection is going away
                log.debug("could not send the pending negotiation bytes on close", exc_info=True)
        self._closed = True
        self._close_raw()

    def _close_raw(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def __enter__(self) -> "RawConn":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        role = "initiator" if self.is_initiator else "responder"
        return f"<{type(self).__name__} {self.local_addr} <-> {self.remote_addr} {role} {state}>"


def close_quietly(raw: "AnyRawConn") -> None:
    """Close ``raw``, logging (not raising) an error: for cleanup paths where the
    connection is being abandoned and a close error is not actionable."""
    try:
        raw.close()
    except Exception:  # pragma: no cover - close errors are not actionable
        log.debug("error closing %r", raw, exc_info=True)


class SecuredConn(RawConn):
    """A RawConn carried over another one, the result of a security handshake.

    ``raw`` is the transport-side connection (ciphertext for Noise and TLS); the
    addresses and role are its own.  ``local_peer``, ``remote_peer``,
    ``remote_public_key`` and ``early_muxer`` (a muxer agreed inside the handshake, or
    None) are what the handshake established; a subclass sets ``security_protocol``.
    The connection counts as closed once either it or ``raw`` is; closing it closes
    ``raw``.
    """

    security_protocol: str = ""

    def __init__(self, raw: "AnyRawConn", local_peer: "PeerId", remote_peer: "PeerId",
                 remote_public_key: "PublicKey", early_muxer: Optional[str] = None) -> None:
        super().__init__()
        self._raw = raw
        self.local_peer = local_peer
        self.remote_peer = remote_peer
        self.remote_public_key = remote_public_key
        self.early_muxer = early_muxer
        self.local_addr = raw.local_addr
        self.remote_addr = raw.remote_addr
        self.is_initiator = raw.is_initiator

    @property
    def raw(self) -> "AnyRawConn":
        """The transport-side connection."""
        return self._raw

    @property
    def closed(self) -> bool:
        return self._closed or self._raw.closed

    def _close_raw(self) -> None:
        close_quietly(self._raw)


def _as_gevent_socket(sock: Any) -> Any:
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

    def __init__(self, sock: Any, local_addr: Optional[Multiaddr] = None, remote_addr: Optional[Multiaddr] = None,
                 is_initiator: bool = False) -> None:
        super().__init__()
        sock = _as_gevent_socket(sock)
        sock.settimeout(None)
        self._sock = sock
        self.local_addr = local_addr
        self.remote_addr = remote_addr
        self.is_initiator = is_initiator
        self._wlock = Semaphore()
        self._has_sendmsg = hasattr(sock, "sendmsg")
        # a plain socket: its fd may be read and peeked directly (not so a TLS socket)
        self._plain = type(sock) is gsocket.socket

    @property
    def socket(self) -> Any:
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

    def _readinto_nowait_raw(self, mv: memoryview) -> Optional[int]:
        # the socket is non-blocking underneath (gevent sets it so): read(2) without
        # gevent's wait, which would park the greenlet on EAGAIN while holding ``mv``
        if not self._plain:
            return self._readinto_raw(mv)
        try:
            return os.readv(self._sock.fileno(), (mv,))  # (-1 once closed: EBADF, never a reused fd)
        except BlockingIOError:
            return None
        except OSError as exc:
            if self._closed:
                return 0
            raise TransportError(exc.errno, f"read failed: {exc.strerror or exc}") from exc

    def readable_fileno(self) -> Optional[int]:
        if self._rbuf or self._pending or self._closed or not self._plain:
            return None
        return self._sock.fileno()

    def wait_readable(self) -> None:
        """Blocks the calling greenlet until the socket is readable (data, EOF or an
        error), parked on the gevent socket's own read watcher: no system call and no
        watcher of its own.  (``_wait``/``_read_event`` are gevent's private socket
        attributes, stable since gevent 1.x; without them, a one-byte ``MSG_PEEK``
        receive waits the same way at the cost of a system call or two.)"""
        if self._rbuf or self._pending or self._closed or not self._plain:
            return
        sock = self._sock
        try:
            if _WATCHER_WAIT:
                sock._wait(sock._read_event)
            else:
                sock.recv_into(_PEEK, 1, _MSG_PEEK)
        except OSError:
            pass  # closed under us (gevent's cancel_wait): the read that follows reports it

    def _write_raw(self, data: Buffer) -> None:
        with self._wlock:
            try:
                self._sock.sendall(data)
            except OSError as exc:
                raise TransportError(exc.errno, f"write failed: {exc.strerror or exc}") from exc

    def writev(self, buffers: Iterable[Buffer]) -> None:
        """Blocks the calling greenlet until all buffers are written (``sendmsg`` when possible).

        Buffers go out as they are (no joining), at most ``_MAX_IOV`` per ``sendmsg``.
        """
        if self._closed:
            raise TransportError(errno.EBADF, "write on a closed connection")
        bufs: list[Buffer] = [b for b in buffers if b]
        if self._pending:
            prefix = self._take_prefix()
            if prefix:
                bufs.insert(0, prefix)  # same sendmsg: negotiation + first message
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
        """Half-close: send FIN, keep reading (a pending negotiation prefix goes first)."""
        if self._closed:
            return
        if self._prefix:
            self._flush_prefix()
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


def stop_handlers_of(handlers: "gevent.pool.Group", timeout: Optional[float]) -> None:
    """Blocks the calling greenlet until a listener's handler greenlets are killed
    (at most ``timeout`` seconds); a handler closing its own listener is spared."""
    current = gevent.getcurrent()
    if any(g is current for g in handlers):
        gevent.killall([g for g in list(handlers) if g is not current], block=True, timeout=timeout)
    else:
        handlers.kill(block=True, timeout=timeout)
