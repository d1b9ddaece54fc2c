"""Transport contracts: the raw byte pipe, the transport that dials it, the listener.

The first step of the upgrade order (raw -> secure -> muxed, see
https://github.com/libp2p/specs/blob/master/connections/README.md): a
:class:`Transport` dials or accepts a :class:`RawConn`; a
:class:`~geventp2p.core.sec.SecureTransport` turns that into a
:class:`~geventp2p.core.sec.SecureConn`; a
:class:`~geventp2p.core.mux.Multiplexer` turns that into a
:class:`~geventp2p.core.mux.MuxedConn`.

Every method that waits "blocks the calling greenlet"; waits take ``timeout=``
(float seconds, ``None`` = no limit) and raise ``P2PTimeoutError`` when it passes.
Transport failures raise ``TransportError`` (wrapping the ``OSError``).

These are structural ``typing.Protocol`` types: implementations need not inherit
from them.  No I/O and no gevent here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable, Protocol, Union, runtime_checkable

if TYPE_CHECKING:
    from multiaddr import Multiaddr  # type: ignore[import-untyped, unused-ignore]

__all__ = ["BytesLike", "RawConn", "Listener", "Transport", "ConnHandler"]

#: What ``write``/``writev`` accept: any contiguous byte buffer.
BytesLike = Union[bytes, bytearray, memoryview]


class RawConn(Protocol):
    """A blocking, ordered, reliable byte pipe (TCP socket, memory pipe, or a secured one).

    Safe for one reader and one writer greenlet at a time.
    """

    @property
    def local_addr(self) -> Multiaddr | None:
        """Our end's multiaddr (``None`` if it cannot be expressed)."""

    @property
    def remote_addr(self) -> Multiaddr | None:
        """The remote end's multiaddr (``None`` if it cannot be expressed)."""

    @property
    def is_initiator(self) -> bool:
        """True on the dialing side."""

    @property
    def closed(self) -> bool:
        """True after ``close()`` (or once the underlying pipe is gone)."""

    def read(self, n: int = 65536, timeout: float | None = None) -> bytes:
        """Blocks until 1..n bytes are there; ``b""`` at EOF or after a local ``close()``.

        Pushed-back bytes (``unread``) come first.  Raises ``TransportError``,
        ``P2PTimeoutError``; ``ValueError`` if ``n <= 0``.
        """

    def readinto(self, buf: bytearray | memoryview, timeout: float | None = None) -> int:
        """Like ``read`` into ``buf``; returns the count, 0 at EOF.  Same errors."""

    def write(self, data: BytesLike) -> None:
        """Blocks until all of ``data`` is handed to the OS / the pipe.  Raises ``TransportError``."""

    def writev(self, buffers: Iterable[BytesLike]) -> None:
        """Blocks until every buffer is written, in order (one syscall where possible)."""

    def unread(self, data: bytes) -> None:
        """Push ``data`` back in front of the read side (read-ahead of a parser).  Never blocks."""

    def close_write(self) -> None:
        """Half-close: the remote reads EOF, we can still read.  Never blocks."""

    def close(self) -> None:
        """Close both directions; idempotent, never raises, wakes a blocked reader."""


#: Called on its own greenlet for every accepted connection.
ConnHandler = Callable[[RawConn], None]


class Listener(Protocol):
    """Accepts connections on one address and runs a handler greenlet for each."""

    @property
    def multiaddr(self) -> Multiaddr:
        """The address actually bound (port 0 resolved)."""

    @property
    def closed(self) -> bool:
        """True after ``close()``."""

    def close(self, stop_handlers: bool = False, timeout: float | None = 5.0) -> None:
        """Stop accepting; with ``stop_handlers`` also kill running handlers.

        Blocks for at most ``timeout`` while handlers stop.  Idempotent.
        """


@runtime_checkable
class Transport(Protocol):
    """Dials and listens on the multiaddrs it understands (``isinstance`` works on it).

    Returns plain :class:`RawConn`; securing and muxing are the upgrader's job.
    """

    def can_dial(self, addr: Multiaddr) -> bool:
        """True if ``addr`` is one this transport dials.  Never blocks, never raises."""

    def can_listen(self, addr: Multiaddr) -> bool:
        """True if this transport can listen on ``addr``.  Never blocks, never raises."""

    def dial(self, addr: Multiaddr, timeout: float | None = None) -> RawConn:
        """Blocks until connected.  Raises ``TransportError``, ``MultiaddrError``, ``P2PTimeoutError``."""

    def listen(self, addr: Multiaddr, handler: ConnHandler) -> Listener:
        """Binds ``addr`` and calls ``handler(conn)`` on a new greenlet per accepted conn.

        Raises ``TransportError`` if the address cannot be bound.
        """
