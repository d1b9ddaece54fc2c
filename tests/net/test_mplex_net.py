"""MplexConn / MplexStream over a real socketpair: echo, limits, slow readers,
hostile peers, back-pressure, shutdown and greenlet leaks."""

from __future__ import annotations

import gc
import socket
import time

import gevent
import gevent.hub
import gevent.pool
import greenlet
import pytest

from geventp2p.core.rcmgr import NullScope
from geventp2p.exceptions import (
    ConnectionClosedError,
    P2PTimeoutError,
    ResourceLimitExceeded,
    StreamClosedError,
    StreamResetError,
)
from geventp2p.net.mplex import PROTOCOL_ID, MplexConfig, MplexConn, MplexMuxer, MplexStream
from geventp2p.net.rawconn import SocketConn
from geventp2p.net.stream import INBOUND, OUTBOUND

KiB = 1024
MiB = 1024 * KiB


def _live_greenlets():
    return {
        o for o in gc.get_objects()
        if isinstance(o, greenlet.greenlet) and not o.dead and o is not greenlet.getcurrent()
        and o.parent is not None and not isinstance(o, gevent.hub.Hub)
    }


@pytest.fixture
def no_leaks():
    gevent.get_hub()
    before = _live_greenlets()
    yield
    deadline = time.monotonic() + 2
    while True:
        gevent.sleep(0.01)
        leaked = _live_greenlets() - before
        if not leaked or time.monotonic() > deadline:
            break
    assert not leaked, leaked


@pytest.fixture
def timeout():
    with gevent.Timeout(30):
        yield


class Pair:
    def __init__(self, config=None, config_b=None, scope_a=None, scope_b=None):
        sa, sb = socket.socketpair()
        self.scope_a = scope_a or NullScope()
        self.scope_b = scope_b or NullScope()
        self.a = MplexMuxer(config).create(SocketConn(sa, is_initiator=True), True, scope=self.scope_a)
        self.b = MplexMuxer(config_b or config).create(SocketConn(sb), False, scope=self.scope_b)

    def close(self):
        self.a.close()
        self.b.close()
        self.a.wait_closed(5)
        self.b.wait_closed(5)


@pytest.fixture
def pair(no_leaks, timeout):
    p = Pair()
    yield p
    p.close()


def serve(conn, handler):
    """Accept streams on ``conn`` forever, one greenlet per stream."""
    group = gevent.pool.Group()

    def loop():
        while True:
            try:
                s = conn.accept_stream()
            except ConnectionClosedError:
                return
            group.spawn(handler, s)

    group.spawn(loop)
    return group


def echo(s):
    try:
        while True:
            d = s.read()
            if not d:
                break
            s.write(d)
        s.close()
    except Exception:
        s.reset()



# --------------------------------------------------------------------------- basics


def test_muxer_api():
    m = MplexMuxer()
    assert m.PROTOCOL_ID == MplexMuxer.PROTOCOL_ID == PROTOCOL_ID == "/mplex/6.7.0"
    assert isinstance(m.config, MplexConfig)


def test_echo_and_half_close(pair):
    group = serve(pair.b, echo)
    s = pair.a.open_stream()
    assert isinstance(s, MplexStream) and s.direction == OUTBOUND and s.conn is pair.a
    s.write(b"hello ")
    s.write(b"world")
    s.close_write()
    assert s.read_exactly(11) == b"hello world"
    assert s.read() == b""
    with pytest.raises(StreamClosedError):
        s.write(b"late")
    pair.close()
    group.join(5)
    assert pair.scope_a.memory == 0 and pair.scope_b.memory == 0


def test_streams_leave_the_table_when_finished(pair):
    group = serve(pair.b, echo)
    streams = [pair.a.open_stream() for _ in range(5)]
    assert pair.a.num_streams == 5
    for s in streams:
        s.write(b"x")
        s.close_write()
        assert s.read() == b"x"
        assert s.read() == b""
    gevent.sleep(0.05)
    assert pair.a.num_streams == 0
    assert pair.b.num_streams == 0
    pair.close()
    group.join(5)


def test_both_sides_open_the_same_numeric_id(pair):
    ga = serve(pair.a, echo)
    gb = serve(pair.b, echo)
    sa = pair.a.open_stream()
    sb = pair.b.open_stream()
    assert sa.id == sb.id == 0
    sa.write(b"from a")
    sb.write(b"from b")
    assert sa.read_exactly(6) == b"from a"
    assert sb.read_exactly(6) == b"from b"
    sa.reset()
    sb.write(b"still alive")
    assert sb.read_exactly(11) == b"still alive"
    sb.close()
    pair.close()
    ga.join(5)
    gb.join(5)


def test_large_transfer_is_chunked_and_intact(pair):
    group = serve(pair.b, echo)
    payload = bytes(range(256)) * (3 * MiB // 256 + 7)
    s = pair.a.open_stream()
    got = bytearray()

    def reader():
        while True:
            d = s.read()
            if not d:
                return
            got.extend(d)

    r = gevent.spawn(reader)
    s.write(payload)
    s.close_write()
    r.join(20)
    assert bytes(got) == payload
    pair.close()
    group.join(5)


def test_accept_timeout_and_open_after_close(pair):
    with pytest.raises(P2PTimeoutError):
        pair.b.accept_stream(timeout=0.05)
    pair.a.close()
    assert pair.a.closed
    with pytest.raises(ConnectionClosedError):
        pair.a.open_stream()
    with pytest.raises(ConnectionClosedError) as info:
        pair.b.accept_stream(timeout=5)
    assert info.value.remote is True
    pair.b.wait_closed(5)


def test_blocked_accept_wakes_on_close(pair):
    g = gevent.spawn(pair.b.accept_stream)
    gevent.sleep(0.01)
    pair.b.close()
    with pytest.raises(ConnectionClosedError):
        g.get(timeout=5)


def test_close_flushes_queued_writes(pair):
    s = pair.a.open_stream()
    s.write(b"last words" * 1000)
    s.close_write()
    pair.a.close()  # right after queueing
    t = pair.b.accept_stream(timeout=5)
    assert t.direction == INBOUND
    assert t.read_exactly(10000, timeout=5) == b"last words" * 1000
    assert t.read() == b""  # EOF was delivered before the connection ended


def test_connection_end_fails_open_streams(pair):
    s = pair.a.open_stream()
    t = pair.b.accept_stream(timeout=5)
    reader = gevent.spawn(t.read)
    gevent.sleep(0.01)
    pair.a.close()
    with pytest.raises(ConnectionClosedError):
        reader.get(timeout=5)
    with pytest.raises(ConnectionClosedError):
        s.write(b"x")
    with pytest.raises(ConnectionClosedError):
        t.write(b"x")


def test_remote_reset_reaches_reader_and_writer(pair):
    s = pair.a.open_stream()
    t = pair.b.accept_stream(timeout=5)
    r = gevent.spawn(s.read)
    t.reset(code=0x1001)  # mplex cannot carry the code
    with pytest.raises(StreamResetError) as info:
        r.get(timeout=5)
    assert info.value.remote is True and info.value.error_code == 0
    with pytest.raises(StreamResetError):
        s.write(b"x")
    assert pair.a.num_streams == 0 and pair.b.num_streams == 0


def test_unread_is_not_double_counted(pair):
    s = pair.a.open_stream()
    t = pair.b.accept_stream(timeout=5)
    s.write(b"0123456789")
    assert t.read_exactly(10) == b"0123456789"
    t.unread(b"56789")
    assert t.read() == b"56789"
    assert pair.scope_b.memory == 0
    assert pair.b._session.buffered(t._key) == 0
    s.write(b"abc")
    assert t.read_exactly(3) == b"abc"
    assert pair.scope_b.memory == 0


def test_close_read_discards_incoming(pair):
    s = pair.a.open_stream()
    t = pair.b.accept_stream(timeout=5)
    t.close_read()
    s.write(b"x" * 100000)
    s.write(b"y")
    gevent.sleep(0.05)
    assert pair.scope_b.memory == 0
    with pytest.raises(StreamClosedError):
        t.read()
    t.write(b"reply")
    assert s.read_exactly(5) == b"reply"


# --------------------------------------------------------------------------- slow readers


def test_slow_reader_does_not_stall_other_streams_and_is_reset(no_leaks, timeout):
    cap = 256 * KiB
    p = Pair(config_b=MplexConfig(max_stream_buffer_size=cap), config=MplexConfig())
    try:
        slow_out = p.a.open_stream()
        slow_out.write(b"hello")
        slow_in = p.b.accept_stream(timeout=5)  # never read
        group = serve(p.b, echo)

        # The slow stream keeps sending while several others complete echo loops.
        stop = []

        def flood():
            try:
                while True:
                    slow_out.write(b"s" * (16 * KiB))
                    gevent.sleep(0)
            except StreamResetError as exc:
                stop.append(exc)

        flooder = gevent.spawn(flood)
        payload = b"f" * (512 * KiB)
        for _ in range(4):
            f = p.a.open_stream()
            f.write(payload)
            f.close_write()
            assert f.read_exactly(len(payload), timeout=10) == payload
            assert f.read() == b""
        flooder.join(10)
        assert stop and stop[0].remote is True  # the writer learned of the reset
        # the non-reading side sees a local reset with "resource limit exceeded"
        with pytest.raises(StreamResetError) as info:
            slow_in.read()
        assert info.value.remote is False and info.value.error_code == 0x1002
        assert not p.a.closed and not p.b.closed
        gevent.sleep(0.01)
        assert p.scope_b.memory == 0
        p.close()
        group.join(5)
    finally:
        p.close()


def test_buffer_cap_reset_happens_only_past_the_cap(no_leaks, timeout):
    cap = 64 * KiB
    p = Pair(config_b=MplexConfig(max_stream_buffer_size=cap))
    try:
        s = p.a.open_stream()
        s.write(b"x" * cap)  # exactly the cap: fine
        t = p.b.accept_stream(timeout=5)
        gevent.sleep(0.05)
        assert t.buffered == cap and not t.is_reset
        s.write(b"y")  # one more byte unread -> reset
        gevent.sleep(0.05)
        assert t.is_reset
        with pytest.raises(StreamResetError):
            t.read()
        assert p.scope_b.memory == 0
    finally:
        p.close()


def test_scope_refusal_resets_the_stream(no_leaks, timeout):
    class TightScope(NullScope):
        def reserve_memory(self, size, priority=0):
            if self.memory + size > 1000:
                raise ResourceLimitExceeded("conn", "memory")
            super().reserve_memory(size, priority)

    p = Pair(scope_b=TightScope())
    try:
        s = p.a.open_stream()
        s.write(b"a" * 600)
        t = p.b.accept_stream(timeout=5)
        assert t.read_exactly(600) == b"a" * 600
        s.write(b"b" * 600)
        s.write(b"c" * 600)
        with pytest.raises(StreamResetError) as info:
            t.read_exactly(1200, timeout=5)
        assert info.value.error_code == 0x1002
        assert p.scope_b.memory == 0
        assert not p.b.closed
    finally:
        p.close()


# --------------------------------------------------------------------------- back-pressure and fairness


def test_write_blocks_when_the_peer_stops_reading(no_leaks, timeout):
    sa, sb = socket.socketpair()
    sa.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * KiB)
    conn = MplexMuxer(MplexConfig(max_send_buffer_size=128 * KiB)).create(SocketConn(sa), True)
    try:
        s = conn.open_stream()
        t0 = time.monotonic()
        with pytest.raises(P2PTimeoutError):
            s.write(b"z" * (16 * MiB), timeout=0.3)
        assert time.monotonic() - t0 < 3
        assert conn._session.bytes_to_send <= 128 * KiB + 64 * KiB
    finally:
        conn.close(timeout=0.2)
        sb.close()
        conn.wait_closed(5)


def test_early_open_limit_until_the_peer_answers(no_leaks, timeout):
    """Until the peer answers on one of our streams only 8 may be opened (js aborts a
    connection when more than 10 arrive before it is ready); its first answer frees the
    waiting openers at once."""
    sa, sb = socket.socketpair()
    conn = MplexMuxer(MplexConfig(early_open_timeout=60)).create(SocketConn(sa), True)
    try:
        first = [conn.open_stream(timeout=5) for _ in range(8)]
        waiters = [gevent.spawn(conn.open_stream, 20) for _ in range(20)]
        gevent.sleep(0.01)
        assert not any(w.ready() for w in waiters)
        with pytest.raises(P2PTimeoutError):
            conn.open_stream(timeout=0.05)
        sb.sendall(bytes([first[2].id << 3 | 1, 1]) + b"a")  # MessageReceiver on our stream 2
        ids = sorted(w.get(timeout=10).id for w in waiters)
        assert ids == list(range(8, 28))  # the timed-out call took no id
    finally:
        conn.close(timeout=0.2)
        sb.close()
        conn.wait_closed(5)


def test_early_open_limit_ends_without_an_answer(no_leaks, timeout):
    """A peer that answers nothing yet (no data written on lazily negotiated streams)
    costs at most early_open_timeout, not a deadlock."""
    sa, sb = socket.socketpair()
    conn = MplexMuxer(MplexConfig(early_open_timeout=0.2)).create(SocketConn(sa), True)
    try:
        for _ in range(8):
            conn.open_stream(timeout=5)
        deadline = conn._session.early_open_deadline
        assert deadline is not None
        assert conn.open_stream(timeout=20).id == 8
        assert time.monotonic() >= deadline
        more = [conn.open_stream(timeout=5) for _ in range(50)]
        assert more[-1].id == 58
    finally:
        conn.close(timeout=0.2)
        sb.close()
        conn.wait_closed(5)


def test_bulk_writer_does_not_starve_a_small_request(pair):
    got = {}

    def handler(s):
        data = s.read_exactly(4) if s.id == 1 else None
        if data is not None:
            s.write(b"pong")
            got["pong"] = time.monotonic()
            s.close()
            return
        n = 0
        while True:
            d = s.read()
            if not d:
                break
            n += len(d)
        got["bulk"] = time.monotonic()
        s.close()

    group = serve(pair.b, handler)
    bulk = pair.a.open_stream()  # id 0
    small = pair.a.open_stream()  # id 1

    def bulk_send():
        bulk.write(b"B" * (24 * MiB))
        bulk.close_write()

    g = gevent.spawn(bulk_send)
    gevent.sleep(0.01)  # the bulk writer is already busy
    small.write(b"ping")
    assert small.read_exactly(4, timeout=10) == b"pong"
    t_pong = time.monotonic()
    g.join(20)
    bulk.read(timeout=20)
    assert "bulk" in got and got["pong"] < got["bulk"]
    assert t_pong < got["bulk"]
    pair.close()
    group.join(5)


def test_concurrent_bulk_writers_take_turns(no_leaks, timeout):
    """Once the send queue is contended, streams alternate message by message on the wire."""
    from gevent import socket as gsocket

    from geventp2p._speedups import frames

    chunk, hwm, size = 16 * KiB, 256 * KiB, 4 * MiB
    sa, sb = gsocket.socketpair()
    conn = MplexMuxer(MplexConfig(write_chunk_size=chunk, max_send_buffer_size=hwm)).create(SocketConn(sa), True)
    try:
        streams = [conn.open_stream(), conn.open_stream()]

        def send(s):
            s.write(b"w" * size)
            s.close_write()

        writers = [gevent.spawn(send, s) for s in streams]
        reader = frames.MplexFrameReader()
        order, closed = [], 0
        while closed < 2:
            data = sb.recv(1 << 20)
            assert data
            for sid, flag, _ in reader.feed(data):
                if flag == frames.MESSAGE_INITIATOR:
                    order.append(sid)
                elif flag == frames.CLOSE_INITIATOR:
                    closed += 1
        gevent.joinall(writers, raise_error=True)
        assert len(order) == 2 * size // chunk
        # After the first send-queue's worth, the longest run of one stream is short.
        tail = order[2 * hwm // chunk : -2 * hwm // chunk]
        longest = run = 1
        for x, y in zip(tail, tail[1:]):
            run = run + 1 if x == y else 1
            longest = max(longest, run)
        assert longest <= 3, longest
    finally:
        conn.close(timeout=1)
        sb.close()
        conn.wait_closed(5)


# --------------------------------------------------------------------------- many streams


def test_thousand_concurrent_streams(no_leaks):
    p = Pair()
    try:
        with gevent.Timeout(20):
            group = serve(p.b, echo)
            n = 1000

            def client(i):
                s = p.a.open_stream()
                msg = (b"%d;" % i) * 50
                for _ in range(3):
                    s.write(msg)
                    assert s.read_exactly(len(msg)) == msg
                s.close_write()
                assert s.read() == b""
                return i

            jobs = [gevent.spawn(client, i) for i in range(n)]
            gevent.joinall(jobs, raise_error=True)
            assert sorted(j.value for j in jobs) == list(range(n))
            gevent.sleep(0.05)
            assert p.a.num_streams == 0 and p.b.num_streams == 0
            p.close()
            group.join(5)
            assert p.scope_a.memory == 0 and p.scope_b.memory == 0
    finally:
        p.close()


def test_thousand_streams_open_at_once(pair):
    """1,000 streams all open simultaneously (not one after the other)."""
    streams = [pair.a.open_stream() for _ in range(1000)]
    for i, s in enumerate(streams):
        s.write(b"%d" % i)
    accepted = [pair.b.accept_stream(timeout=5) for _ in range(1000)]
    assert pair.b.num_streams == 1000
    for t in accepted:
        assert int(t.read(timeout=5)) == t.id
        t.close()
    for s in streams:
        s.close()
    gevent.sleep(0.05)
    assert pair.a.num_streams == 0 and pair.b.num_streams == 0


def test_inbound_stream_limit_refuses_extra_streams(no_leaks, timeout):
    p = Pair(config_b=MplexConfig(max_inbound_streams=3))
    try:
        streams = [p.a.open_stream() for _ in range(4)]
        for s in streams:
            s.write(b"x")
        with pytest.raises(StreamResetError):
            streams[3].read(timeout=5)
        assert [p.b.accept_stream(timeout=5).id for _ in range(3)] == [0, 1, 2]
        assert not p.b.closed
    finally:
        p.close()


def test_accept_backlog_overflow_resets(no_leaks, timeout):
    p = Pair(config_b=MplexConfig(accept_backlog=2))
    try:
        streams = [p.a.open_stream() for _ in range(3)]
        with pytest.raises(StreamResetError):
            streams[2].read(timeout=5)
        assert p.b.accept_stream(timeout=1).id == 0
        assert p.b.accept_stream(timeout=1).id == 1
        s = p.a.open_stream()  # room again
        assert p.b.accept_stream(timeout=5).id == s.id
    finally:
        p.close()


# --------------------------------------------------------------------------- hostile peers


@pytest.mark.parametrize(
    "garbage",
    [
        bytes.fromhex("02 81 80 40"),  # 1 MiB + 1 message announced: too large
        bytes.fromhex("ff ff ff ff ff ff ff ff ff ff"),  # overlong varint
        bytes.fromhex("00 01 30 00 01 30"),  # duplicate NewStream for a live stream
        bytes.fromhex("07 00"),  # unknown flag
    ],
)
def test_hostile_input_ends_only_that_session(garbage, no_leaks, timeout):
    good = Pair()
    sa, sb = socket.socketpair()
    victim = MplexMuxer().create(SocketConn(sa), False)
    try:
        group = serve(good.b, echo)
        s = good.a.open_stream()
        # the hostile peer first opens a legit stream, then misbehaves
        sb.sendall(bytes.fromhex("00 01 30 02 02 6869"))
        t = victim.accept_stream(timeout=5)
        assert t.read_exactly(2) == b"hi"
        sb.sendall(garbage)
        victim.wait_closed(5)
        assert victim.closed
        with pytest.raises(ConnectionClosedError):
            t.read(timeout=5)
        with pytest.raises(ConnectionClosedError):
            victim.accept_stream(timeout=1)
        assert sb.recv(100) == b""  # we closed the connection
        # the other session is untouched
        s.write(b"fine")
        assert s.read_exactly(4, timeout=5) == b"fine"
        assert not good.a.closed and not good.b.closed
        s.close()
        good.close()
        group.join(5)
    finally:
        good.close()
        victim.close()
        sb.close()


def test_peer_that_provokes_resets_but_never_reads_is_dropped(no_leaks, timeout, monkeypatch):
    """Refused NewStreams make us queue ResetReceivers; a peer that never reads
    them cannot grow our send queue without bound."""
    import geventp2p.net.mplex as netmplex
    from gevent import socket as gsocket

    from geventp2p._speedups import frames

    monkeypatch.setattr(netmplex, "CONTROL_SLACK", 4096)
    sa, sb = gsocket.socketpair()
    sa.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    cfg = MplexConfig(max_inbound_streams=1, max_send_buffer_size=4096, write_chunk_size=1024)
    conn = MplexMuxer(cfg).create(SocketConn(sa), False)
    try:
        flood = b"".join(frames.pack_mplex_header(i, 0, 0) for i in range(200_000))
        sent = 0
        with gevent.Timeout(15):
            while not conn.closed and sent < len(flood):
                try:
                    sent += sb.send(flood[sent : sent + 65536])
                except OSError:  # we hung up on the peer
                    break
                gevent.sleep(0)
        assert conn.wait_closed(5)
        assert conn._session.bytes_to_send <= 4096 + 1024 + 4096 + 65536
        with pytest.raises(ConnectionClosedError):
            conn.accept_stream(timeout=0)  # the one accepted stream died with the session
    finally:
        conn.close()
        sb.close()


def test_data_after_remote_close_resets_only_that_stream(no_leaks, timeout):
    sa, sb = socket.socketpair()
    conn = MplexMuxer().create(SocketConn(sa), False)
    try:
        # stream 0: data, close, then more data (violation); stream 1: ok
        sb.sendall(bytes.fromhex("00 01 30 08 01 31 02 01 61 04 00 02 01 62 0a 01 63"))
        t0 = conn.accept_stream(timeout=5)
        t1 = conn.accept_stream(timeout=5)
        with pytest.raises(StreamResetError) as info:
            t0.read_exactly(2, timeout=5)
        assert info.value.error_code == 0x1004
        assert t1.read(timeout=5) == b"c"
        assert sb.recv(100) == bytes.fromhex("05 00")  # ResetReceiver for stream 0
        assert not conn.closed
    finally:
        conn.close()
        sb.close()
        conn.wait_closed(5)


def test_frames_for_unknown_streams_are_ignored(no_leaks, timeout):
    sa, sb = socket.socketpair()
    conn = MplexMuxer().create(SocketConn(sa), False)
    try:
        sb.sendall(bytes.fromhex("0a 01 78 0d 00 00 01 30 02 01 79"))
        t = conn.accept_stream(timeout=5)
        assert t.read(timeout=5) == b"y"
        assert not conn.closed
    finally:
        conn.close()
        sb.close()


def test_abrupt_transport_close_ends_session(pair):
    s = pair.a.open_stream()
    t = pair.b.accept_stream(timeout=5)
    pair.a.conn.close()  # under the muxer's feet
    with pytest.raises(ConnectionClosedError):
        t.read(timeout=5)
    pair.b.wait_closed(5)
    pair.a.wait_closed(5)
    with pytest.raises(ConnectionClosedError):
        s.write(b"x")


def test_conn_property_and_repr(pair):
    assert isinstance(pair.a, MplexConn)
    assert pair.a.conn.is_initiator is True
    assert "MplexConn" in repr(pair.a)


# --------------------------------------------------------------------------- full upgrade


def test_noise_upgrade_negotiates_mplex(no_leaks, timeout):
    """raw socket -> multistream -> Noise -> multistream(/mplex/6.7.0) -> streams."""
    from geventp2p.crypto.keys import KeyType, generate_key
    from geventp2p.net.noise import NoiseTransport
    from geventp2p.net.upgrader import Upgrader

    ka, kb = generate_key(KeyType.Ed25519), generate_key(KeyType.Ed25519)
    ua = Upgrader([NoiseTransport(ka, muxers=())], [MplexMuxer()])
    ub = Upgrader([NoiseTransport(kb, muxers=())], [MplexMuxer()])
    sa, sb = socket.socketpair()
    inbound = gevent.spawn(ub.upgrade_inbound, SocketConn(sb), timeout=10)
    ca = ua.upgrade_outbound(SocketConn(sa, is_initiator=True), timeout=10)
    cb = inbound.get(timeout=10)
    try:
        assert ca.muxer == cb.muxer == PROTOCOL_ID
        assert isinstance(ca.muxed, MplexConn)
        group = serve(cb.muxed, echo)
        s = ca.muxed.open_stream()
        payload = bytes(range(256)) * 1000
        s.write(payload)
        s.close_write()
        got = bytearray()
        while True:
            d = s.read(timeout=5)
            if not d:
                break
            got += d
        assert bytes(got) == payload
    finally:
        ca.close()
        cb.close()
        assert ca.muxed.wait_closed(5) and cb.muxed.wait_closed(5)
    group.join(5)
