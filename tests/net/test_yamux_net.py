"""YamuxConn over a socketpair against a hand-driven raw peer: hostile input, pings,
keepalive, GoAway, close codes, memory accounting."""

from __future__ import annotations

import socket
import time

import gevent
import gevent.socket as gsocket
import pytest

from geventp2p._speedups import frames
from geventp2p.core.rcmgr import NullScope
from geventp2p.exceptions import ConnectionClosedError, P2PTimeoutError, StreamResetError
from geventp2p.net.rawconn import SocketConn
from geventp2p.net.yamux import PROTOCOL_ID, YamuxConfig, YamuxMuxer
from geventp2p.testing.muxer_suite import LeakChecker, socketpair_factory

pack = frames.pack_yamux_header
GOAWAY_1 = pack(3, 0, 0, 1)


class RawPeer:
    """The other end of a socketpair, speaking yamux by hand."""

    def __init__(self, sock):
        self.sock = sock
        self.reader = frames.YamuxFrameReader()
        self.frames = []

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_frames(self, until, timeout=5.0):
        """Read frames until ``until(frames)`` is true; returns all frames so far."""
        with gevent.Timeout(timeout):
            while not until(self.frames):
                data = self.sock.recv(65536)
                if not data:
                    break
                self.frames.extend(self.reader.feed(data))
        return self.frames

    def read_to_eof(self, timeout=5.0):
        with gevent.Timeout(timeout):
            while True:
                try:
                    data = self.sock.recv(65536)
                except ConnectionResetError:  # closed with our bytes unread: after what it sent
                    return self.frames
                if not data:
                    return self.frames
                self.frames.extend(self.reader.feed(data))

    def sync(self, opaque=0x5EC):
        """Ping and read until the pong: every frame queued before it has arrived."""
        self.send(pack(2, 1, 0, opaque))
        return self.recv_frames(lambda fr: any(f[:4] == (2, 2, 0, opaque) for f in fr))

    def close(self):
        self.sock.close()


def raw_pair(config=None, is_initiator=False, scope=None):
    a, b = socket.socketpair()
    conn = YamuxMuxer(config).create(SocketConn(a, is_initiator=is_initiator), is_initiator, scope or NullScope())
    return conn, RawPeer(gsocket.socket(fileno=b.detach()))


def quiet_config(**kw):
    kw.setdefault("initial_ping", False)
    kw.setdefault("enable_keepalive", False)
    kw.setdefault("rtt_interval", 0)
    return YamuxConfig(**kw)


@pytest.fixture
def leakcheck():
    lc = LeakChecker()
    yield
    lc.check()


@pytest.fixture
def healthy_pair():
    client, server = socketpair_factory(YamuxMuxer())()
    yield client, server
    client.close()
    server.close()


def assert_healthy(pair):
    client, server = pair
    s = client.open_stream(timeout=5)
    s.write(b"still alive")
    s.close_write()
    r = server.accept_stream(timeout=5)
    assert r.read_exactly(11, timeout=5) == b"still alive"
    assert r.read(timeout=5) == b""
    r.close()


def test_protocol_id():
    assert PROTOCOL_ID == "/yamux/1.0.0"
    assert YamuxMuxer.PROTOCOL_ID == "/yamux/1.0.0"


HOSTILE = {
    "bad version": bytes.fromhex("010000000000000100000000"),
    "bad type": bytes.fromhex("000700000000000100000000"),
    "window overrun": pack(1, 1, 1, 0) + pack(0, 0, 1, 300 * 1024) + b"\0" * (300 * 1024),
    "syn with server parity": pack(1, 1, 2, 0),
    "duplicate syn": pack(1, 1, 1, 0) + pack(1, 1, 1, 0),
    "data on stream 0": pack(0, 0, 0, 1) + b"x",
    "ping on stream 3": pack(2, 1, 3, 9),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_input_ends_only_that_session(name, healthy_pair, leakcheck):
    conn, peer = raw_pair(quiet_config())  # we are the server: remote ids are odd
    try:
        blocked = gevent.spawn(conn.accept_stream)

        def send():
            try:
                peer.send(HOSTILE[name])
            except OSError:  # the session may end before it read everything (window overrun)
                pass

        sender = gevent.spawn(send)
        got = peer.read_to_eof()
        sender.join(timeout=5)
        assert got and got[-1][:4] == (3, 0, 0, 1), got[-4:]  # GoAway(protocol error), then close
        assert conn.wait_closed(timeout=5)
        assert conn.closed
        blocked.join(timeout=5)
        if blocked.successful():  # the SYN was accepted before the violation arrived
            with pytest.raises(ConnectionClosedError):
                blocked.value.read(timeout=5)
        else:
            assert isinstance(blocked.exception, ConnectionClosedError)
        with pytest.raises(ConnectionClosedError):
            conn.accept_stream(timeout=5)
        assert conn.error is not None
        assert_healthy(healthy_pair)
    finally:
        conn.close()
        peer.close()


def test_stream_of_hostile_session_is_reset(leakcheck):
    conn, peer = raw_pair(quiet_config())
    try:
        peer.send(pack(1, 1, 1, 0) + pack(0, 0, 1, 3) + b"abc")
        s = conn.accept_stream(timeout=5)
        assert s.read(timeout=5) == b"abc"
        reader = gevent.spawn(s.read)
        gevent.sleep(0.01)
        peer.send(bytes.fromhex("000500000000000000000000"))  # unknown type 5
        with pytest.raises(ConnectionClosedError):
            reader.get(timeout=5)
        with pytest.raises(StreamResetError):
            s.write(b"x")
    finally:
        conn.close()
        peer.close()


def test_syn_flood_refused_with_rst_session_survives(leakcheck):
    conn, peer = raw_pair(quiet_config(accept_backlog=16))
    try:
        peer.send(b"".join(pack(1, 1, 2 * i + 1, 0) for i in range(40)))
        got = peer.recv_frames(lambda fr: len(fr) >= 40)
        acks = [f for f in got if f[1] == 2]
        rsts = [f for f in got if f[1] == 8]
        assert len(acks) == 16 and len(rsts) == 24
        assert all(f[3] == 0x1002 for f in rsts)
        # accepting frees backlog room; the session keeps working
        for _ in range(16):
            conn.accept_stream(timeout=5)
        peer.frames.clear()
        peer.send(pack(1, 1, 101, 0))
        got = peer.recv_frames(lambda fr: any(f[2] == 101 for f in fr))
        assert got[-1][:3] == (1, 2, 101)
        assert not conn.closed
    finally:
        conn.close()
        peer.close()


def test_max_inbound_streams_refused(leakcheck):
    conn, peer = raw_pair(quiet_config(max_inbound_streams=5))
    try:
        peer.send(b"".join(pack(1, 1, 2 * i + 1, 0) for i in range(7)))
        got = peer.recv_frames(lambda fr: len(fr) >= 7)
        assert [f[1] for f in got] == [2] * 5 + [8] * 2
        assert not conn.closed
    finally:
        conn.close()
        peer.close()


def test_ping_answered_and_no_unsolicited_acks(leakcheck):
    conn, peer = raw_pair(quiet_config())
    try:
        peer.send(pack(2, 1, 0, 0xDEADBEEF) + pack(2, 2, 0, 77))  # request + unsolicited ACK
        got = peer.recv_frames(lambda fr: len(fr) >= 1)
        assert got[0][:4] == (2, 2, 0, 0xDEADBEEF)
        gevent.sleep(0.05)
        assert len(peer.frames) == 1 and not conn.closed
    finally:
        conn.close()
        peer.close()


def test_ping_api_and_timeout(leakcheck):
    conn, peer = raw_pair(quiet_config())
    try:
        pinger = gevent.spawn(conn.ping, 5)
        got = peer.recv_frames(lambda fr: len(fr) >= 1)
        ftype, flags, sid, opaque, _ = got[0]
        assert (ftype, flags, sid) == (2, 1, 0)
        peer.send(pack(2, 2, 0, opaque))
        rtt = pinger.get(timeout=5)
        assert 0 <= rtt < 5
        assert conn.rtt == rtt
        with pytest.raises(P2PTimeoutError):
            conn.ping(timeout=0.05)  # the raw peer does not answer this time
        assert not conn.closed
    finally:
        conn.close()
        peer.close()


def test_ping_between_conns(healthy_pair):
    client, server = healthy_pair
    assert client.ping(timeout=5) >= 0
    assert server.ping(timeout=5) >= 0


def test_initial_rtt_ping_sent(leakcheck):
    conn, peer = raw_pair(YamuxConfig(enable_keepalive=False))
    try:
        got = peer.recv_frames(lambda fr: len(fr) >= 1)
        assert got[0][:3] == (2, 1, 0)
        peer.send(pack(2, 2, 0, got[0][3]))
        deadline = time.monotonic() + 5
        while conn.rtt == 0.0 and time.monotonic() < deadline:
            gevent.sleep(0.01)
        assert conn.rtt > 0
    finally:
        conn.close()
        peer.close()


def test_keepalive_timeout_closes_without_goaway(leakcheck):
    cfg = YamuxConfig(initial_ping=False, rtt_interval=0, keepalive_interval=0.05, ping_timeout=0.1)
    conn, peer = raw_pair(cfg)
    try:
        got = peer.read_to_eof()
        assert [f[:3] for f in got] == [(2, 1, 0)]  # one keepalive ping, no GoAway
        assert conn.wait_closed(timeout=5)
        assert isinstance(conn.error.__cause__, P2PTimeoutError)
    finally:
        conn.close()
        peer.close()


def test_keepalive_answered_keeps_session(leakcheck):
    cfg = YamuxConfig(initial_ping=False, rtt_interval=0, keepalive_interval=0.05, ping_timeout=5)
    conn, peer = raw_pair(cfg)
    try:
        for _ in range(3):
            got = peer.recv_frames(lambda fr: fr and fr[-1][1] == 1)
            peer.send(pack(2, 2, 0, got[-1][3]))
            peer.frames.clear()
        assert not conn.closed
    finally:
        conn.close()
        peer.close()


@pytest.mark.parametrize("code", [0, 1, 0x1005])
def test_goaway_received_ends_session(code, leakcheck):
    conn, peer = raw_pair(quiet_config())
    try:
        peer.send(pack(1, 1, 1, 0))
        s = conn.accept_stream(timeout=5)
        reader = gevent.spawn(s.read)
        gevent.sleep(0.01)
        peer.send(pack(3, 0, 0, code))
        with pytest.raises(ConnectionClosedError) as ei:
            reader.get(timeout=5)
        assert ei.value.error_code == code and ei.value.remote
        assert conn.wait_closed(timeout=5)
        with pytest.raises(ConnectionClosedError):
            conn.open_stream()
        assert peer.read_to_eof()[-1][:2] == (1, 2)  # only our ACK; no GoAway back
    finally:
        conn.close()
        peer.close()


def test_close_without_code_sends_no_goaway(leakcheck):
    conn, peer = raw_pair(quiet_config())
    try:
        conn.close()
        assert peer.read_to_eof() == []
        assert conn.error is None
    finally:
        peer.close()


def test_close_with_code_sends_goaway(leakcheck):
    conn, peer = raw_pair(quiet_config())
    try:
        conn.close(0x1005)
        got = peer.read_to_eof()
        assert [f[:4] for f in got] == [(3, 0, 0, 0x1005)]
    finally:
        peer.close()


def test_remote_eof_resets_streams(leakcheck):
    conn, peer = raw_pair(quiet_config())
    try:
        peer.send(pack(1, 1, 1, 0) + pack(0, 4, 1, 2) + b"hi")  # data + FIN
        s = conn.accept_stream(timeout=5)
        out = conn.open_stream()
        peer.close()
        assert conn.wait_closed(timeout=5)
        with pytest.raises(ConnectionClosedError):
            out.read(timeout=5)
        with pytest.raises(ConnectionClosedError):
            out.write(b"x")
        # the remote's FIN arrived before EOF: its data stays readable (go forceClose)
        assert s.read(timeout=5) == b"hi"
        assert s.read(timeout=5) == b""
        with pytest.raises(ConnectionClosedError):
            s.write(b"x")
    finally:
        conn.close()


def test_remote_eof_without_fin_resets_buffered_stream(leakcheck):
    conn, peer = raw_pair(quiet_config())
    try:
        peer.send(pack(1, 1, 1, 0) + pack(0, 0, 1, 2) + b"hi")
        s = conn.accept_stream(timeout=5)
        deadline = time.monotonic() + 5
        while not s.buffered and time.monotonic() < deadline:
            gevent.sleep(0.01)
        peer.close()
        assert conn.wait_closed(timeout=5)
        with pytest.raises(ConnectionClosedError):
            s.read(timeout=5)
    finally:
        conn.close()


def test_close_flushes_queued_frames(leakcheck):
    client, server = socketpair_factory(YamuxMuxer(quiet_config()))()
    try:
        acceptor = gevent.spawn(server.accept_stream, 5)
        s = client.open_stream()
        payload = b"q" * 200_000
        s.write(payload)  # fits the window: queued, not yet written
        s.close_write()
        client.close()
        r = acceptor.get(timeout=5)
        got = b""
        while True:
            d = r.read(timeout=5)
            if not d:
                break
            got += d
        assert got == payload
    finally:
        client.close()
        server.close()


def test_write_timeout_ends_session_with_stalled_peer(leakcheck):
    cfg = quiet_config(write_timeout=0.2, write_batch_size=64 * 1024)
    conn, peer = raw_pair(cfg, is_initiator=True)
    try:
        # the raw peer never reads; grant a huge window so writes are only socket-bound
        streams = [conn.open_stream() for _ in range(4)]
        peer.send(b"".join(pack(1, 2, st.id, 16 * 1024 * 1024) for st in streams))
        writers = [gevent.spawn(st.write, b"s" * (4 * 1024 * 1024)) for st in streams]
        assert conn.wait_closed(timeout=10)
        assert isinstance(conn.error, ConnectionClosedError)
        for w in writers:
            w.join(timeout=5)
            assert isinstance(w.exception, ConnectionClosedError)
    finally:
        conn.close()
        peer.close()


def test_unknown_stream_frames_ignored(leakcheck):
    conn, peer = raw_pair(quiet_config())
    try:
        peer.send(pack(0, 0, 99, 3) + b"xyz" + pack(1, 0, 77, 1000) + pack(1, 8, 55, 0) + pack(1, 4, 33, 0))
        peer.send(pack(2, 1, 0, 5))
        got = peer.recv_frames(lambda fr: len(fr) >= 1)
        assert got[0][:4] == (2, 2, 0, 5)
        assert not conn.closed
    finally:
        conn.close()
        peer.close()


def test_open_stream_blocks_on_ack_backlog(leakcheck):
    conn, peer = raw_pair(quiet_config(max_ack_backlog=3), is_initiator=True)
    try:
        streams = [conn.open_stream(timeout=1) for _ in range(3)]
        with pytest.raises(P2PTimeoutError):
            conn.open_stream(timeout=0.05)
        waiter = gevent.spawn(conn.open_stream, 5)
        gevent.sleep(0.01)
        assert not waiter.ready()
        peer.send(pack(1, 2, streams[0].id, 0))  # ACK the first
        assert waiter.get(timeout=5).id == 7
    finally:
        conn.close()
        peer.close()


def test_open_stream_early_ack_backlog(leakcheck):
    """Until the peer ACKs one of our streams only 8 may wait for an ACK (js-libp2p aborts
    a session when more than 10 arrive before it is ready); the first ACK frees the rest."""
    conn, peer = raw_pair(quiet_config(early_ack_timeout=60), is_initiator=True)
    try:
        streams = [conn.open_stream(timeout=5) for _ in range(8)]
        waiters = [gevent.spawn(conn.open_stream, 30) for _ in range(20)]
        gevent.sleep(0.01)
        assert not any(w.ready() for w in waiters)
        peer.send(pack(1, 2, streams[5].id, 0))  # ACK one: the backlog is 256 now
        got = [w.get(timeout=10).id for w in waiters]
        assert got == list(range(17, 17 + 40, 2))  # FIFO
    finally:
        conn.close()
        peer.close()


def test_open_stream_early_ack_backlog_ends_without_an_ack(leakcheck):
    """A peer that never ACKs (nothing written yet on lazily negotiated streams) costs at
    most early_ack_timeout, not a deadlock."""
    conn, peer = raw_pair(quiet_config(early_ack_timeout=0.2), is_initiator=True)
    try:
        for _ in range(8):
            conn.open_stream(timeout=5)
        deadline = conn._session.early_ack_deadline
        assert deadline is not None
        ninth = conn.open_stream(timeout=30)
        assert time.monotonic() >= deadline and ninth.id == 17
        more = [conn.open_stream(timeout=5) for _ in range(50)]  # no wait: 256 now
        assert more[-1].id == 17 + 100
    finally:
        conn.close()
        peer.close()


def test_slow_reader_window_bounds_sender(leakcheck):
    """The sender blocks after 256 KiB; reading returns credit and it proceeds."""
    conn, peer = raw_pair(quiet_config(), is_initiator=True)
    try:
        s = conn.open_stream()
        writer = gevent.spawn(s.write, b"w" * (512 * 1024))
        got = peer.recv_frames(lambda fr: sum(len(f[4]) for f in fr) >= 256 * 1024)
        gevent.sleep(0.05)
        peer.sync()
        assert sum(len(f[4]) for f in peer.frames) == 256 * 1024  # not one byte more
        assert not writer.ready()
        peer.send(pack(1, 0, s.id, 256 * 1024))
        writer.get(timeout=5)
        peer.recv_frames(lambda fr: sum(len(f[4]) for f in fr) >= 512 * 1024)
        assert max(len(f[4]) for f in got) <= YamuxConfig().max_frame_body
    finally:
        conn.close()
        peer.close()


def test_fast_write_path_partial_send_and_contiguous_writers(leakcheck):
    """Writes after the first take the one-call path: a write the window takes only in
    part continues on the blocking path, and a second writer queues behind it."""
    conn, peer = raw_pair(quiet_config(), is_initiator=True)
    try:
        s = conn.open_stream()
        s.write(b"h" * 1000)  # first write: the stream's sender now exists
        big = bytes(range(256)) * 1024  # 256 KiB: 1000 bytes more than the credit left
        writer_a = gevent.spawn(s.write, big)
        peer.recv_frames(lambda fr: sum(len(f[4]) for f in fr) >= 256 * 1024)
        peer.sync()
        assert not writer_a.ready()
        # credit appears without waking writer A (white-box): writer B still waits its turn
        conn._session._streams[s.id].window.add_send_credit(10)
        writer_b = gevent.spawn(s.write, b"B" * 10)
        gevent.sleep(0.02)
        assert not writer_a.ready() and not writer_b.ready()
        peer.send(pack(1, 0, s.id, 64 * 1024))
        writer_a.get(timeout=5)
        writer_b.get(timeout=5)
        s.write(b"tail")  # fast path again once nobody holds the stream
        peer.recv_frames(lambda fr: sum(len(f[4]) for f in fr) >= 1000 + len(big) + 14)
        body = b"".join(f[4] for f in peer.frames if f[0] == 0 and f[2] == s.id)
        assert body == b"h" * 1000 + big + b"B" * 10 + b"tail"
        # a remote reset: the next write raises instead of queueing
        peer.send(pack(1, 8, s.id, 7))
        with gevent.Timeout(5):
            while not s.is_reset:
                gevent.sleep(0.005)
        with pytest.raises(StreamResetError):
            s.write(b"after reset")
    finally:
        conn.close()
        peer.close()


def test_window_update_after_reads(leakcheck):
    conn, peer = raw_pair(quiet_config())
    try:
        body = b"r" * (200 * 1024)
        peer.send(pack(1, 1, 1, 0) + pack(0, 0, 1, len(body)) + body)
        s = conn.accept_stream(timeout=5)
        assert s.read_exactly(100 * 1024, timeout=5)
        peer.sync()
        assert [f for f in peer.frames if f[0] == 1 and f[1] == 0] == []  # < half read: no update
        s.read_exactly(100 * 1024, timeout=5)
        got = peer.recv_frames(lambda fr: any(f[0] == 1 and f[1] == 0 for f in fr))
        updates = [f for f in got if f[0] == 1 and f[1] == 0]
        assert updates[0][3] == 200 * 1024
    finally:
        conn.close()
        peer.close()


def test_scope_memory_returns_to_zero(leakcheck):
    scopes = []

    def scope_factory():
        scopes.append(NullScope())
        return scopes[-1]

    client, server = socketpair_factory(YamuxMuxer(quiet_config()), scope_factory)()
    try:
        # make the RTT look large so the window auto-tunes and reserves memory
        server._session.rtt = 10.0
        s = client.open_stream()
        payload = b"m" * (8 * 1024 * 1024)
        w = gevent.spawn(lambda: (s.write(payload), s.close_write()))
        r = server.accept_stream(timeout=5)
        total = 0
        while True:
            d = r.read(timeout=5)
            if not d:
                break
            total += len(d)
        w.get(timeout=5)
        assert total == len(payload)
        assert scopes[1].memory > 0  # growth reserved memory while the stream lives
        r.close()
    finally:
        client.close()
        server.close()
    assert [sc.memory for sc in scopes] == [0, 0]


def test_window_grows_with_large_rtt(leakcheck):
    scope = NullScope()
    client, server = socketpair_factory(YamuxMuxer(quiet_config()), lambda: scope)()
    try:
        server._session.rtt = 10.0
        s = client.open_stream()
        w = gevent.spawn(lambda: (s.write(b"g" * (4 * 1024 * 1024)), s.close_write()))
        r = server.accept_stream(timeout=5)
        target_seen = 0
        while True:
            d = r.read(timeout=5)
            if not d:
                break
            target_seen = max(target_seen, server._session.window_target(r.id))
        w.get(timeout=5)
        assert target_seen > 256 * 1024
        assert scope.memory > 0  # held while the stream lives on the server
    finally:
        client.close()
        server.close()
    assert scope.memory == 0


def test_unaccepted_streams_reset_by_remote_do_not_pile_up(leakcheck):
    conn, peer = raw_pair(quiet_config(accept_backlog=8))
    try:
        for i in range(200):
            sid = 2 * i + 1
            peer.send(pack(1, 1, sid, 0) + pack(1, 8, sid, 0))  # open, then reset at once
        peer.sync()
        assert not conn.closed
        assert len(conn._accept_queue or ()) <= 8
        assert not [f for f in peer.frames if f[1] == 8]  # nothing was refused
        peer.send(pack(1, 1, 1001, 0))
        s = conn.accept_stream(timeout=5)
        assert s.id == 1001
    finally:
        conn.close()
        peer.close()
