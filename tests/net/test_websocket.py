"""WebSocket transport (/ws): addresses, the upgrade, binary framing, control frames, hosts."""

from __future__ import annotations

import logging

import gevent
import gevent.event
import gevent.socket as gsocket
import pytest
from multiaddr import Multiaddr
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, Ping, Pong, Request, TextMessage

import geventp2p
from geventp2p.crypto.keys import generate_key
from geventp2p.exceptions import MultiaddrError, TransportError
from geventp2p.net.noise import NoiseTransport
from geventp2p.net.tcp import TcpTransport
from geventp2p.net.tls import TlsTransport
from geventp2p.net.websocket import WsTransport
from geventp2p.net.yamux import YamuxMuxer
from geventp2p.protocols.echo import echo
from geventp2p.testing.muxer_suite import MuxerConformance

PID = "12D3KooWM6CgA9iBFZmcYAHA6A2qvbAxqfkmrYiRQuz3XEsk4Ksv"


@pytest.mark.parametrize("ma, ok", [
    ("/ip4/127.0.0.1/tcp/1234/ws", True),
    (f"/ip4/127.0.0.1/tcp/1234/ws/p2p/{PID}", True),
    ("/dns4/localhost/tcp/1234/ws", True),
    ("/ip6/::1/tcp/1234/ws", True),
    ("/ip4/127.0.0.1/tcp/1234", False),
    ("/ip4/127.0.0.1/tcp/1234/wss", False),
    ("/ip4/127.0.0.1/tcp/1234/tls/ws", False),
    ("/ip4/127.0.0.1/udp/1234/quic-v1", False),
])
def test_addresses(ma, ok):
    t = WsTransport()
    assert t.can_dial(Multiaddr(ma)) is ok and t.can_listen(Multiaddr(ma)) is ok
    if "/ws" in ma and ma.endswith(("/ws", PID)) and "/tls/" not in ma:
        assert not TcpTransport().can_dial(Multiaddr(ma))  # TCP leaves /ws to us
    if not ok:
        with pytest.raises(MultiaddrError, match="not supported" if "/tls/ws" in ma or "/wss" in ma else "not a /ws"):
            t.dial(Multiaddr(ma), timeout=1)


@pytest.fixture
def ws_pair():
    t = WsTransport()
    got = gevent.event.AsyncResult()
    lst = t.listen(Multiaddr("/ip4/127.0.0.1/tcp/0/ws"), got.set)
    conns = []

    def make(addr=None):
        c = t.dial(addr or lst.multiaddr, timeout=10)
        s = got.get(timeout=10)
        conns.extend([c, s])
        return c, s

    yield lst, make
    for c in conns:
        c.close()
    lst.close(stop_handlers=True)


def test_bytes_both_ways_and_half_close(ws_pair):
    lst, make = ws_pair
    assert str(lst.multiaddr).endswith("/ws")
    c, s = make()
    assert c.is_initiator and not s.is_initiator
    assert str(c.remote_addr) == str(lst.multiaddr) and str(s.local_addr) == str(lst.multiaddr)
    big = bytes(range(256)) * 8192  # 2 MiB
    w = gevent.spawn(c.write, big)
    got = bytearray()
    while len(got) < len(big):
        got += s.read(100000, timeout=10)
    w.get(timeout=10)
    assert bytes(got) == big
    s.writev([b"ab", b"cd"])
    assert c.read(10, timeout=10) == b"abcd"
    c.close_write()
    assert s.read(10, timeout=10) == b""


def test_large_writes_are_split_into_messages_of_bounded_size():
    """A write (or a muxer's batched writev) above the message cap goes out as several
    binary messages, none over the cap: py-libp2p closes the connection on a message over
    1 MiB.  A bare wsproto server sees the messages as they are framed."""
    from geventp2p.net import websocket as wsmod

    lsock = gsocket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    port = lsock.getsockname()[1]
    big = bytes(range(256)) * (12 * 1024)  # 3 MiB
    sizes: list[int] = []
    cur = [0]
    got = bytearray()

    def server():
        sock, _ = lsock.accept()
        ws = WSConnection(ConnectionType.SERVER)
        while len(got) < 2 * len(big) + 4:
            data = sock.recv(262144)
            assert data, "client closed early"
            ws.receive_data(data)
            for ev in ws.events():
                if isinstance(ev, Request):
                    sock.sendall(ws.send(AcceptConnection()))
                elif isinstance(ev, BytesMessage):  # a message may arrive in several events
                    cur[0] += len(ev.data)
                    got.extend(ev.data)
                    if ev.message_finished:
                        sizes.append(cur[0])
                        cur[0] = 0
        sock.close()

    srv = gevent.spawn(server)
    c = WsTransport().dial(Multiaddr(f"/ip4/127.0.0.1/tcp/{port}/ws"), timeout=10)

    def client():
        c.write(big)
        c.writev([b"ab", big, b"cd"])

    try:
        w = gevent.spawn(client)
        srv.get(timeout=30)  # raises the server's failure
        w.get(timeout=30)
    finally:
        c.close()
        lsock.close()
    assert bytes(got) == big + b"ab" + big + b"cd"
    assert max(sizes) <= wsmod._MAX_MESSAGE <= 1 << 20
    assert len(sizes) >= 2 * (len(big) // wsmod._MAX_MESSAGE)


class _Sink:
    """A stand-in transport under a WsConn fed by hand: records what it writes."""

    local_addr = remote_addr = None
    is_initiator = False
    closed = False

    def __init__(self) -> None:
        self.sent = bytearray()

    def write(self, data) -> None:
        self.sent += data

    def close(self) -> None:
        self.closed = True


def _fed_server():
    """A server-side WsConn after the upgrade, and the wsproto client talking to it."""
    from geventp2p.net.websocket import WsConn

    client, server = WSConnection(ConnectionType.CLIENT), WSConnection(ConnectionType.SERVER)
    server.receive_data(client.send(Request(host="x", target="/")))
    assert any(isinstance(e, Request) for e in server.events())
    client.receive_data(server.send(AcceptConnection()))
    assert any(isinstance(e, AcceptConnection) for e in client.events())
    sink = _Sink()
    return WsConn(sink, server), client, sink


@pytest.mark.parametrize("piece", [1, 3, 7, 1000, 1 << 20])
def test_reader_streams_masked_fragmented_messages_in_any_chunking(piece):
    """Our frame reader: masked frames cut anywhere (headers, keys, payloads), a
    fragmented binary message with a ping between its fragments, 7- 16- and 64-bit lengths."""
    conn, client, sink = _fed_server()
    parts = [b"a" * 5, bytes(range(256)) * 3, b"z" * 70000]
    wire = client.send(BytesMessage(data=parts[0]))
    wire += client.send(BytesMessage(data=parts[1], message_finished=False))
    wire += client.send(Ping(payload=b"hi"))
    wire += client.send(BytesMessage(data=parts[2], message_finished=True))
    wire += client.send(BytesMessage(data=b""))  # an empty message reads as nothing
    wire += client.send(BytesMessage(data=b"end"))
    for i in range(0, len(wire), piece):
        conn._feed(wire[i:i + piece])
    got = b"".join(conn._chunks)
    assert got == b"".join(parts) + b"end"
    client.receive_data(bytes(sink.sent))
    assert [e.payload for e in client.events() if isinstance(e, Pong)] == [b"hi"]


def test_reader_refuses_bad_frames():
    from wsproto.events import CloseConnection

    conn, client, _sink = _fed_server()
    with pytest.raises(TransportError, match="text"):
        conn._feed(client.send(TextMessage(data="x" * 300)))  # longer than a control frame
    conn, client, _sink = _fed_server()
    frag = client.send(BytesMessage(data=b"ab", message_finished=False))
    conn._feed(frag)
    with pytest.raises(TransportError, match="inside a fragmented"):
        conn._feed(bytes([0x82, 0x80]) + bytes(4))  # a new masked binary frame, FIN, empty
    conn, _client, _sink = _fed_server()
    with pytest.raises(TransportError, match="outside a message"):
        conn._feed(bytes([0x80, 0x80]) + bytes(4))  # a masked continuation, FIN, empty
    for bad in (bytes([0x82, 0x02]) + b"ab",  # unmasked: a server must refuse it
                bytes([0xC2, 0x82]) + bytes(4) + b"ab",  # RSV1 set, no extension agreed
                bytes([0x83, 0x80]) + bytes(4)):  # reserved opcode
        conn, _client, _sink = _fed_server()
        conn._feed(bad + bytes([0x82, 0x81]) + bytes(4) + b"x")  # wsproto fails it: the end
        assert conn._eof and not conn._chunks, bad
    conn, client, _sink = _fed_server()
    conn._feed(client.send(CloseConnection(code=1000)))
    assert conn._eof


def test_dns4_dial(ws_pair):
    lst, make = ws_pair
    port = str(lst.multiaddr).split("/")[4]
    c, s = make(Multiaddr(f"/dns4/localhost/tcp/{port}/ws"))
    c.write(b"hi")
    assert s.read(10, timeout=10) == b"hi"


def _raw_client(addr):
    """A bare wsproto client over a socket: for frames our WsConn never sends."""
    host, port = str(addr).split("/")[2], int(str(addr).split("/")[4])
    sock = gsocket.create_connection((host, port), timeout=10)
    ws = WSConnection(ConnectionType.CLIENT)
    sock.sendall(ws.send(Request(host=f"{host}:{port}", target="/")))
    while True:
        ws.receive_data(sock.recv(65536))
        if any(isinstance(e, AcceptConnection) for e in ws.events()):
            return sock, ws


def test_ping_answered_and_text_refused():
    t = WsTransport()
    got = gevent.event.AsyncResult()
    lst = t.listen(Multiaddr("/ip4/127.0.0.1/tcp/0/ws"), got.set)
    try:
        sock, ws = _raw_client(lst.multiaddr)
        sock.sendall(ws.send(Ping(payload=b"p1")) + ws.send(BytesMessage(data=b"data")))
        s = got.get(timeout=10)
        assert s.read(10, timeout=10) == b"data"
        events = []
        with gevent.Timeout(10):
            while not any(isinstance(e, Pong) for e in events):
                ws.receive_data(sock.recv(65536))
                events.extend(ws.events())
        assert [e.payload for e in events if isinstance(e, Pong)] == [b"p1"]
        sock.sendall(ws.send(TextMessage(data="nope")))
        with pytest.raises(TransportError):
            s.read(10, timeout=10)
        sock.close()
        s.close()
    finally:
        lst.close(stop_handlers=True)


def test_refused_upgrade_is_a_transport_error():
    lsock = gsocket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    port = lsock.getsockname()[1]

    def http_404():
        s, _ = lsock.accept()
        s.recv(65536)
        s.sendall(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
        gevent.sleep(1)
        s.close()

    g = gevent.spawn(http_404)
    try:
        with pytest.raises(TransportError, match="refused"):
            WsTransport().dial(Multiaddr(f"/ip4/127.0.0.1/tcp/{port}/ws"), timeout=10)
    finally:
        g.kill()
        lsock.close()


# --------------------------------------------------------------------------- hosts


@pytest.mark.parametrize("security", ["noise", "tls"])
def test_host_over_ws(security):
    server = geventp2p.new_host(listen=["/ip4/127.0.0.1/tcp/0/ws"], security=[security],
                                services=["identify", "ping", "echo"])
    client = geventp2p.new_host(listen=[])
    try:
        assert [str(a).endswith("/ws") for a in server.addrs()] == [True]
        conn = client.connect(server.p2p_addrs()[0], timeout=10)
        assert conn.security == {"noise": "/noise", "tls": "/tls/1.0.0"}[security]
        assert conn.muxer == "/yamux/1.0.0" and str(conn.remote_addr).endswith("/ws")
        data = bytes(range(256)) * 4096  # 1 MiB
        assert echo(client, server.id, data, timeout=30) == data
    finally:
        client.close()
        server.close()


def test_listen_warns_for_unserved_address_and_fails_when_none_works(caplog):
    # /quic (draft-29) has no transport; /quic-v1 has one (tests/net/test_quic_host.py)
    with caplog.at_level(logging.WARNING, logger="geventp2p.net.swarm"):
        h = geventp2p.new_host(listen=["/ip4/127.0.0.1/tcp/0/ws", "/ip4/127.0.0.1/udp/0/quic"])
    try:
        assert len(h.addrs()) == 1
        assert any("/ip4/127.0.0.1/udp/0/quic" in r.getMessage() for r in caplog.records)
    finally:
        h.close()
    with pytest.raises(MultiaddrError, match="quic"):
        geventp2p.new_host(listen=["/ip4/127.0.0.1/udp/0/quic"])


# --------------------------------------------------------------------------- muxer conformance


def _ws_factory(muxer, security):
    """yamux over Noise or TLS over a WebSocket over loopback TCP."""

    def make_pair():
        t = WsTransport()
        got = gevent.event.AsyncResult()
        lst = t.listen(Multiaddr("/ip4/127.0.0.1/tcp/0/ws"), got.set)
        try:
            craw = t.dial(lst.multiaddr, timeout=10)
            sraw = got.get(timeout=10)
        finally:
            lst.close()
        inbound = gevent.spawn(security(generate_key()).secure_inbound, sraw, 10)
        csec = security(generate_key()).secure_outbound(craw, None, 10)
        ssec = inbound.get(timeout=10)
        return muxer.create(csec, True), muxer.create(ssec, False)

    return make_pair


class TestYamuxConformanceWsNoise(MuxerConformance):
    make_pair = staticmethod(_ws_factory(YamuxMuxer(), NoiseTransport))
    test_concurrent_streams_10k = None


class TestYamuxConformanceWsTls(MuxerConformance):
    make_pair = staticmethod(_ws_factory(YamuxMuxer(), TlsTransport))
    test_concurrent_streams_10k = None


def test_frames_that_arrive_with_the_101_are_kept():
    """A server may send its first bytes in the same segment as the upgrade answer."""
    lsock = gsocket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    port = lsock.getsockname()[1]

    def server():
        s, _ = lsock.accept()
        ws = WSConnection(ConnectionType.SERVER)
        while True:
            ws.receive_data(s.recv(65536))
            if any(isinstance(e, Request) for e in ws.events()):
                break
        s.sendall(ws.send(AcceptConnection()) + ws.send(BytesMessage(data=b"greeting")))
        return s

    g = gevent.spawn(server)
    try:
        c = WsTransport().dial(Multiaddr(f"/ip4/127.0.0.1/tcp/{port}/ws"), timeout=10)
        assert c.read(100, timeout=10) == b"greeting"
        c.close()
        g.get(timeout=10).close()
    finally:
        g.kill()
        lsock.close()


def test_cli_serve_ws_and_tls_warns_for_quic():
    import json
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "geventp2p.cli", "serve", "--listen", "/ip4/127.0.0.1/tcp/0/ws",
         "--listen", "/ip4/127.0.0.1/udp/0/quic", "--security", "tls,noise"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        with gevent.Timeout(60):
            line = proc.stdout.readline()  # blocks this test only: no other greenlet runs here
        info = json.loads(line)
        assert len(info["addrs"]) == 1 and "/ws/p2p/" in info["addrs"][0]
        client = geventp2p.new_host(listen=[])
        try:
            conn = client.connect(info["addrs"][0], timeout=20)
            assert conn.security in ("/noise", "/tls/1.0.0") and str(conn.remote_addr).endswith("/ws")
        finally:
            client.close()
    finally:
        proc.send_signal(signal.SIGTERM)  # serve closes cleanly and exits 0
        try:
            _out, err = proc.communicate(input=b"", timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _out, err = proc.communicate()
    assert b"/ip4/127.0.0.1/udp/0/quic" in err and b"warning" in err
