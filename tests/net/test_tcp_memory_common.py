"""The same transport contract checked on TCP loopback and on the memory transport."""

from __future__ import annotations

import gevent
import pytest
from gevent.event import AsyncResult

from geventp2p.crypto.keys import generate_key
from geventp2p.exceptions import P2PTimeoutError, TransportError
from geventp2p.net import multistream
from geventp2p.net.memory import MemoryNetwork, MemoryTransport
from geventp2p.net.plaintext import PROTOCOL_ID as PLAINTEXT, PlaintextTransport
from geventp2p.net.rawconn import RawConn
from geventp2p.net.tcp import TcpTransport
from _scripts_transport.leakcheck import no_leaks  # noqa: F401  (autouse fixture)


@pytest.fixture(params=["tcp", "memory", "memory-chunked"])
def env(request):
    """(transport, listen address) for each transport under test."""
    if request.param == "tcp":
        return TcpTransport(), "/ip4/127.0.0.1/tcp/0"
    net = MemoryNetwork()
    if request.param == "memory":
        return MemoryTransport(net), "/memory/0"
    return MemoryTransport(net, chunk_size=7), "/memory/0"


class Served:
    """Listen with ``handler``; collect the handler's result or exception."""

    def __init__(self, env, handler):
        transport, addr = env
        self.transport = transport
        self.result = AsyncResult()

        def run(conn):
            try:
                self.result.set(handler(conn))
            except Exception as exc:
                self.result.set_exception(exc)
            finally:
                conn.close()

        self.listener = transport.listen(addr, run)

    def dial(self):
        return self.transport.dial(self.listener.multiaddr, timeout=2)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.listener.close(stop_handlers=True)


def read_until_eof(conn, timeout=5):
    out = bytearray()
    with gevent.Timeout(timeout):
        while True:
            chunk = conn.read(65536)
            if not chunk:
                return bytes(out)
            out += chunk


def test_roles_and_addrs(env):
    seen = AsyncResult()

    def handler(conn):
        seen.set((conn.is_initiator, conn.local_addr, conn.remote_addr))

    with Served(env, handler) as srv:
        conn = srv.dial()
        assert isinstance(conn, RawConn) and conn.is_initiator
        is_init, local, remote = seen.get(timeout=2)
        assert is_init is False
        assert local == srv.listener.multiaddr == conn.remote_addr
        assert remote == conn.local_addr
        conn.close()


def test_bulk_both_ways_with_half_close(env):
    payload = bytes(range(256)) * 4096  # 1 MiB

    def handler(conn):
        data = read_until_eof(conn)
        conn.write(data[::-1])
        return len(data)

    with Served(env, handler) as srv:
        conn = srv.dial()
        writer = gevent.spawn(lambda: (conn.writev([payload[:1000], payload[1000:]]), conn.close_write()))
        back = read_until_eof(conn)
        writer.get(timeout=2)
        assert srv.result.get(timeout=2) == len(payload)
        assert back == payload[::-1]
        conn.close()


def test_close_wakes_blocked_reader(env):
    def handler(conn):
        return conn.read(10, timeout=5)

    with Served(env, handler) as srv:
        conn = srv.dial()
        reader = gevent.spawn(conn.read, 10)
        gevent.sleep(0.01)
        conn.close()
        assert reader.get(timeout=2) == b""
        assert srv.result.get(timeout=2) == b""  # the peer saw EOF


def test_read_timeout_then_usable(env):
    def handler(conn):
        gevent.sleep(0.1)
        conn.write(b"late")

    with Served(env, handler) as srv:
        conn = srv.dial()
        with pytest.raises(P2PTimeoutError):
            conn.read(10, timeout=0.02)
        assert read_until_eof(conn) == b"late"
        conn.close()


def test_write_after_close_raises(env):
    with Served(env, lambda conn: None) as srv:
        conn = srv.dial()
        conn.close()
        with pytest.raises(TransportError):
            conn.write(b"x")


def test_dial_nothing_listening(env):
    transport, addr = env
    with Served(env, lambda conn: None) as srv:
        target = srv.listener.multiaddr
    with pytest.raises(TransportError):
        transport.dial(target, timeout=2)


def test_many_concurrent_connections(env):
    def handler(conn):
        conn.write(read_until_eof(conn))

    with Served(env, handler) as srv:
        def one(i):
            c = srv.dial()
            c.write(b"conn-%d" % i)
            c.close_write()
            got = read_until_eof(c)
            c.close()
            return got

        jobs = [gevent.spawn(one, i) for i in range(30)]
        gevent.joinall(jobs, timeout=10, raise_error=True)
        assert [j.value for j in jobs] == [b"conn-%d" % i for i in range(30)]


def test_negotiate_plaintext_then_protocol(env):
    ka, kb = generate_key(), generate_key()
    server_sec = PlaintextTransport(kb)

    def handler(raw):
        multistream.handle(raw, ["/noise", PLAINTEXT], timeout=2)
        sec = server_sec.secure_inbound(raw, timeout=2)
        proto = multistream.handle(sec, ["/echo/1.0.0"], timeout=2)
        sec.write(sec.read(100, timeout=2))
        return proto, sec.remote_peer

    with Served(env, handler) as srv:
        raw = srv.dial()
        # pipelined: header + proposal in one write; the exchange follows the echo at once
        assert multistream.select_one_of(raw, ["/tls/1.0.0", PLAINTEXT], timeout=2) == PLAINTEXT
        sec = PlaintextTransport(ka).secure_outbound(raw, server_sec.local_peer, timeout=2)
        app = multistream.select_lazy(sec, "/echo/1.0.0")
        app.write(b"ping")
        got = b""
        with gevent.Timeout(2):
            while len(got) < 4:
                got += app.read(100)
        assert got == b"ping"
        proto, peer = srv.result.get(timeout=2)
        assert proto == "/echo/1.0.0" and peer == sec.local_peer
        app.close()


def test_handler_may_close_its_own_listener(env):
    holder = {}

    def handler(conn):
        holder["lst"].close(stop_handlers=True)
        return "closed"

    with Served(env, handler) as srv:
        holder["lst"] = srv.listener
        conn = srv.dial()
        assert srv.result.get(timeout=2) == "closed"
        assert srv.listener.closed
        assert read_until_eof(conn) == b""
        conn.close()
