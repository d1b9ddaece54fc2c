"""Loopback TCP + multistream + plaintext echo with gevent.monkey.patch_all().

Run by tests/net/test_tcp.py in a subprocess; exits 0 and prints OK on success.
"""

from gevent import monkey

monkey.patch_all()

import socket  # noqa: E402  (patched now)
import sys  # noqa: E402

import gevent  # noqa: E402

from geventp2p.crypto.keys import generate_key  # noqa: E402
from geventp2p.net import multistream  # noqa: E402
from geventp2p.net.plaintext import PROTOCOL_ID as PLAINTEXT, PlaintextTransport  # noqa: E402
from geventp2p.net.rawconn import SocketConn  # noqa: E402
from geventp2p.net.tcp import TcpTransport  # noqa: E402
from geventp2p.testing.memory import memory_pipe  # noqa: E402


def main() -> int:
    assert monkey.is_module_patched("socket")
    transport = TcpTransport()
    server_sec = PlaintextTransport(generate_key())
    client_sec = PlaintextTransport(generate_key())
    received = []

    def handler(raw):
        assert multistream.handle(raw, [PLAINTEXT], timeout=5) == PLAINTEXT
        conn = server_sec.secure_inbound(raw, timeout=5)
        assert conn.remote_peer == client_sec.local_peer
        proto = multistream.handle(conn, ["/echo/1.0.0"], timeout=5)
        received.append(proto)
        while True:
            data = conn.read(65536, timeout=5)
            if not data:
                break
            conn.write(data)
        conn.close()

    with gevent.Timeout(20):
        lst = transport.listen("/ip4/127.0.0.1/tcp/0", handler)
        conns = []
        for i in range(5):
            raw = transport.dial(lst.multiaddr)
            assert multistream.select_one_of(raw, ["/noise", PLAINTEXT], timeout=5) == PLAINTEXT
            conn = client_sec.secure_outbound(raw, server_sec.local_peer, timeout=5)
            assert multistream.select_one_of(conn, ["/nope", "/echo/1.0.0"], timeout=5) == "/echo/1.0.0"
            payload = bytes([i]) * 200000
            conn.write(payload)
            got = b""
            while len(got) < len(payload):
                chunk = conn.read(65536, timeout=5)
                assert chunk
                got += chunk
            assert got == payload
            conns.append(conn)
        for c in conns:
            c.close()
        # a stdlib (patched) socketpair works too
        a, b = socket.socketpair()
        ca, cb = SocketConn(a), SocketConn(b)
        reader = gevent.spawn(cb.read, 10)
        gevent.sleep(0.01)
        cb.close()
        assert reader.get(timeout=2) == b""
        ca.close()
        # memory pipes with latency use real (patched) timers too
        ma, mb = memory_pipe(latency=0.01, chunk_size=3)
        ma.write(b"memory")
        got = b""
        while len(got) < 6:
            got += mb.read(10, timeout=2)
        assert got == b"memory", got
        ma.close()
        mb.close()
        lst.close(stop_handlers=True)
        assert lst.join(2)
    assert received == ["/echo/1.0.0"] * 5, received
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
