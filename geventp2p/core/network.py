"""Network contracts: the application's Stream and Conn, the Network (swarm), Notifiee.

Names follow go-libp2p's ``core/network`` package with snake_case methods.  A
:class:`Stream` is a :class:`~geventp2p.core.mux.MuxedStream` that also knows its
negotiated protocol and its :class:`Conn`; a :class:`Conn` is a secured, muxed
connection to one peer; the :class:`Network` owns all of them.

Structural ``typing.Protocol`` types; no I/O and no gevent here.
"""

from __future__ import annotations

from types import TracebackType
from collections.abc import Sequence
from typing import TYPE_CHECKING, Callable, Protocol

from geventp2p.core.event import Connectedness
from geventp2p.core.mux import ConnErrorCode, Direction, MuxedStream, StreamErrorCode
from geventp2p.core.sec import PeerIdentity

if TYPE_CHECKING:
    from multiaddr import Multiaddr  # type: ignore[import-untyped, unused-ignore]

    from geventp2p.core.peer import PeerId

__all__ = [
    "Connectedness",
    "Direction",
    "StreamErrorCode",
    "ConnErrorCode",
    "Stream",
    "Conn",
    "Network",
    "Notifiee",
    "StreamHandler",
]


class Stream(MuxedStream, Protocol):
    """A muxed stream as applications see it: with its protocol and its connection.

    A context manager: leaving the ``with`` block calls ``close()`` (``reset()``
    if the block raised).
    """

    @property
    def protocol(self) -> str | None:
        """The negotiated protocol id (``None`` until negotiated)."""

    @protocol.setter
    def protocol(self, value: str | None) -> None:
        """Set by the host after multistream negotiation."""

    @property
    def conn(self) -> Conn:
        """The connection carrying this stream."""

    def __enter__(self) -> Stream:
        """Returns the stream itself."""

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """``close()``, or ``reset()`` when leaving on an exception.  Never raises."""


#: Runs on its own greenlet for every inbound stream.
StreamHandler = Callable[[Stream], None]


class Conn(PeerIdentity, Protocol):
    """A secured, muxed connection to one remote peer (go ``network.Conn``)."""

    @property
    def id(self) -> int:
        """Unique within this process run."""

    @property
    def direction(self) -> Direction:
        """``OUTBOUND`` if we dialed it."""

    @property
    def local_addr(self) -> Multiaddr | None:
        """Our end's multiaddr."""

    @property
    def remote_addr(self) -> Multiaddr | None:
        """The remote end's multiaddr."""

    @property
    def security(self) -> str:
        """Security protocol id (e.g. ``"/noise"``)."""

    @property
    def muxer(self) -> str:
        """Muxer protocol id (e.g. ``"/yamux/1.0.0"``)."""

    @property
    def closed(self) -> bool:
        """True once the connection is fully closed."""

    def new_stream(self, timeout: float | None = None) -> Stream:
        """Blocks until a new outbound stream is open (no protocol negotiated yet).

        Raises ``ConnectionClosedError``, ``P2PTimeoutError``.
        """

    def streams(self) -> Sequence[Stream]:
        """The open streams of this connection (a new list; ``Sequence`` so an
        implementation may list its own stream class).  Never blocks."""

    def close(self) -> None:
        """Close the connection and reset its streams.  Idempotent; blocks briefly (bounded)."""

    def close_with_error(self, code: int) -> None:
        """Like ``close``, telling the remote ``code`` (a :class:`ConnErrorCode`) if the muxer can."""


class Network(Protocol):
    """All connections of one local peer: dialing, listening, streams (go ``network.Network``)."""

    @property
    def local_peer(self) -> PeerId:
        """Our peer id."""

    @property
    def closed(self) -> bool:
        """True after ``close()``."""

    def peers(self) -> list[PeerId]:
        """Peers with at least one open connection.  Never blocks."""

    def conns(self) -> Sequence[Conn]:
        """All open connections (a new list of the implementation's class).  Never blocks."""

    def conns_to_peer(self, peer: PeerId) -> Sequence[Conn]:
        """Open connections to ``peer``.  Never blocks."""

    def connectedness(self, peer: PeerId) -> Connectedness:
        """Our connection state with ``peer``.  Never blocks."""

    def dial_peer(self, peer_id: PeerId, timeout: float | None = None) -> Conn:
        """Blocks until a connection to ``peer_id`` exists (reused or dialed).

        Raises ``DialError`` (``.attempts``), ``P2PTimeoutError``.
        """

    def new_stream(self, peer_id: PeerId, timeout: float | None = None) -> Stream:
        """Blocks until a stream to ``peer_id`` is open (dialing if needed).  Errors as ``dial_peer``."""

    def close_peer(self, peer: PeerId) -> None:
        """Close every connection to ``peer``."""

    def set_stream_handler(self, handler: StreamHandler | None) -> None:
        """``handler(stream)`` runs on a new greenlet per inbound stream; ``None`` resets them."""

    def listen(self, *addrs: Multiaddr) -> list[Multiaddr]:
        """Start listening; returns the bound addresses.  Raises ``TransportError``."""

    def listen_addresses(self) -> list[Multiaddr]:
        """The addresses we listen on."""

    def notify(self, notifiee: Notifiee) -> None:
        """Register ``notifiee``; its calls run on one dispatcher greenlet."""

    def stop_notify(self, notifiee: Notifiee) -> None:
        """Unregister ``notifiee`` (no error if unknown)."""

    def close(self) -> None:
        """Close listeners and connections.  Blocks (bounded) while they stop.  Idempotent."""


class Notifiee(Protocol):
    """Callbacks about the network's listeners, connections and streams (go ``network.Notifiee``).

    Called in order on the network's single dispatcher greenlet, never on a
    connection's reader; exceptions are logged and ignored.
    """

    def listen(self, net: Network, addr: Multiaddr) -> None:
        """Started listening on ``addr``."""

    def listen_close(self, net: Network, addr: Multiaddr) -> None:
        """Stopped listening on ``addr``."""

    def connected(self, net: Network, conn: Conn) -> None:
        """``conn`` opened (before any of its streams' ``opened_stream``)."""

    def disconnected(self, net: Network, conn: Conn) -> None:
        """``conn`` closed (after its streams' ``closed_stream``)."""

    def opened_stream(self, net: Network, stream: Stream) -> None:
        """``stream`` opened or accepted."""

    def closed_stream(self, net: Network, stream: Stream) -> None:
        """``stream`` closed or reset."""
