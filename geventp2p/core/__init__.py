"""geventp2p.core: contracts (``typing.Protocol``) and value types; no I/O, no gevent.

The contracts follow the upgrade order raw -> secure -> muxed:
:class:`Transport` dials a :class:`RawConn`, a :class:`SecureTransport` turns it
into a :class:`SecureConn`, a :class:`Multiplexer` turns that into a
:class:`MuxedConn` of :class:`MuxedStream`; the :class:`Network` hands
applications :class:`Conn` and :class:`Stream` objects.
"""

from geventp2p.core.mux import (
    ConnErrorCode,
    Direction,
    MuxedConn,
    MuxedStream,
    Multiplexer,
    StreamErrorCode,
)
from geventp2p.core.network import Conn, Connectedness, Network, Notifiee, Stream, StreamHandler
from geventp2p.core.sec import SecureConn, SecureTransport
from geventp2p.core.transport import BytesLike, ConnHandler, Listener, RawConn, Transport

__all__ = [
    # transport.py
    "BytesLike",
    "RawConn",
    "Listener",
    "Transport",
    "ConnHandler",
    # sec.py
    "SecureConn",
    "SecureTransport",
    # mux.py
    "Direction",
    "StreamErrorCode",
    "ConnErrorCode",
    "MuxedStream",
    "MuxedConn",
    "Multiplexer",
    # network.py
    "Connectedness",
    "Stream",
    "Conn",
    "Network",
    "Notifiee",
    "StreamHandler",
]
