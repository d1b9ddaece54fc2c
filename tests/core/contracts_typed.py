"""Structural conformance of the implementations to the ``geventp2p.core`` contracts.

Type-checked (not run) by ``tests/core/test_contracts.py`` through mypy.  Each
function ``check__<Implementation>__<Contract>`` returns an implementation
instance as a contract type, so mypy reports every missing or mismatched member
inside that function.  Keep one check per function, names as above: the test maps
mypy's line numbers back to these functions.
"""

from __future__ import annotations

from geventp2p.core.mux import Multiplexer, MuxedConn, MuxedStream
from geventp2p.core.network import Conn, Network, Notifiee, Stream
from geventp2p.core.sec import PublicKey, SecureConn, SecureTransport
from geventp2p.core.transport import Listener, RawConn, Transport
from geventp2p.crypto import keys
from geventp2p.net import memory, mplex, noise, notify, plaintext, rawconn, stream, swarm, tcp, yamux

# -- transport.py ---------------------------------------------------------------


def check__SocketConn__RawConn(x: rawconn.SocketConn) -> RawConn:
    return x


def check__MemoryConn__RawConn(x: memory.MemoryConn) -> RawConn:
    return x


def check__TcpTransport__Transport(x: tcp.TcpTransport) -> Transport:
    return x


def check__MemoryTransport__Transport(x: memory.MemoryTransport) -> Transport:
    return x


def check__TcpListener__Listener(x: tcp.TcpListener) -> Listener:
    return x


def check__MemoryListener__Listener(x: memory.MemoryListener) -> Listener:
    return x


# -- sec.py -----------------------------------------------------------------------


def check__NoiseTransport__SecureTransport(x: noise.NoiseTransport) -> SecureTransport:
    return x


def check__PlaintextTransport__SecureTransport(x: plaintext.PlaintextTransport) -> SecureTransport:
    return x


def check__NoiseConn__SecureConn(x: noise.NoiseConn) -> SecureConn:
    return x


def check__PlaintextConn__SecureConn(x: plaintext.PlaintextConn) -> SecureConn:
    return x


def check__crypto_PublicKey__PublicKey(x: keys.PublicKey) -> PublicKey:
    return x


# -- mux.py -----------------------------------------------------------------------


def check__YamuxMuxer__Multiplexer(x: yamux.YamuxMuxer) -> Multiplexer:
    return x


def check__MplexMuxer__Multiplexer(x: mplex.MplexMuxer) -> Multiplexer:
    return x


def check__YamuxConn__MuxedConn(x: yamux.YamuxConn) -> MuxedConn:
    return x


def check__MplexConn__MuxedConn(x: mplex.MplexConn) -> MuxedConn:
    return x


def check__net_stream_Stream__MuxedStream(x: stream.Stream) -> MuxedStream:
    return x


def check__YamuxStream__MuxedStream(x: yamux.YamuxStream) -> MuxedStream:
    return x


def check__MplexStream__MuxedStream(x: mplex.MplexStream) -> MuxedStream:
    return x


# -- network.py -------------------------------------------------------------------


def check__SwarmStream__Stream(x: swarm.SwarmStream) -> Stream:
    return x


def check__SwarmConn__Conn(x: swarm.SwarmConn) -> Conn:
    return x


def check__Swarm__Network(x: swarm.Swarm) -> Network:
    return x


def check__notify_Notifiee__Notifiee(x: notify.Notifiee) -> Notifiee:
    return x


def check__NotifyBundle__Notifiee(x: notify.NotifyBundle) -> Notifiee:
    return x
