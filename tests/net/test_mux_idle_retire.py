"""Idle connections give up their greenlets (net/_muxconn.py: ``IDLE_RETIRE_AFTER``).

A muxed connection whose reader and writer waited a whole sweep period with nothing to
do ends both greenlets; the socket's read watcher, a queued frame, ``close()`` or the
core's timer (yamux keepalive) starts them again.  The swarm takes inbound streams with
``serve()`` callbacks, so it parks no accept greenlet either.  These tests shorten the
period to 50 ms and check that every path still works after a retirement.
"""

from __future__ import annotations

import socket
import sys

import gevent
import gevent.event
import gevent.socket as gsocket
import pytest

import geventp2p
from geventp2p._speedups import frames
from geventp2p.core.rcmgr import NullScope
from geventp2p.exceptions import ConnectionClosedError
from geventp2p.net import _muxconn
from geventp2p.net.mplex import MplexMuxer
from geventp2p.net.rawconn import SocketConn
from geventp2p.net.yamux import YamuxConfig, YamuxMuxer
from geventp2p.testing.muxer_suite import LeakChecker, socketpair_factory

pack = frames.pack_yamux_header
ECHO = "/echo/1.0.0"


@pytest.fixture(autouse=True)
def fast_retirement():
    old = _muxconn.set_idle_retire_after(0.05)
    yield
    _muxconn.set_idle_retire_after(old)


@pytest.fixture
def mux_leakcheck():
    lc = LeakChecker()
    yield
    lc.check()


def wait_until(cond, timeout=15.0, what="condition"):
    """Polls ``cond`` (a state of greenlets, for which there is no event to wait on)."""
    with gevent.Timeout(timeout, AssertionError(f"timed out waiting for {what}")):
        while not cond():
            gevent.sleep(0.01)


def retired(mux, reader=True):
    return mux._writer.dead and (mux._reader.dead or not reader)


def raw_pair(config):
    a, b = socket.socketpair()
    conn = YamuxMuxer(config).create(SocketConn(a), False, NullScope())
    return conn, gsocket.socket(fileno=b.detach())


def quiet(**kw):
    kw.setdefault("initial_ping", False)
    kw.setdefault("enable_keepalive", False)
    kw.setdefault("rtt_interval", 0)
    return YamuxConfig(**kw)


def recv_frames(sock, reader, until, timeout=10.0):
    got = []
    with gevent.Timeout(timeout):
        while not until(got):
            data = sock.recv(65536)
            if not data:
                break
            got.extend(reader.feed(data))
    return got


def test_retired_yamux_conn_wakes_for_inbound_data_and_writes(mux_leakcheck):
    conn, peer = raw_pair(quiet())
    reader = frames.YamuxFrameReader()
    try:
        wait_until(lambda: retired(conn), what="retirement")
        peer.sendall(pack(0, 1, 1, 0) + pack(0, 0, 1, 2) + b"hi")  # SYN, then 2 bytes
        s = conn.accept_stream(timeout=10)
        assert s.read_exactly(2, timeout=10) == b"hi"
        s.write(b"yo", timeout=10)
        got = recv_frames(peer, reader, lambda fr: any(f[0] == 0 and f[4] == b"yo" for f in fr))
        assert any(f[0] == 0 and f[4] == b"yo" for f in got)
        # idle again, then the remote goes away: the read watcher sees the EOF
        wait_until(lambda: retired(conn), what="second retirement")
        peer.close()
        assert conn.wait_closed(timeout=10)
        assert isinstance(conn.error, ConnectionClosedError) and conn.error.remote
    finally:
        conn.close()
        peer.close()


def test_retired_writer_runs_the_keepalive_timer(mux_leakcheck):
    conn, peer = raw_pair(quiet(enable_keepalive=True, keepalive_interval=0.4))
    reader = frames.YamuxFrameReader()
    try:
        wait_until(lambda: retired(conn), what="retirement")
        # nothing but the core's timer can make it write a ping now
        got = recv_frames(peer, reader, lambda fr: any(f[0] == 2 and f[1] & 1 for f in fr))
        assert any(f[0] == 2 and f[1] & 1 for f in got)
    finally:
        conn.close()
        peer.close()


def test_close_of_a_retired_conn_flushes_and_finishes(mux_leakcheck):
    conn, peer = raw_pair(quiet())
    try:
        wait_until(lambda: retired(conn), what="retirement")
        conn.close(1)  # GoAway(1) is queued: a writer must start again to send it
        data = b""
        with gevent.Timeout(10):
            while True:
                chunk = peer.recv(4096)
                if not chunk:
                    break
                data += chunk
        assert pack(3, 0, 0, 1) in data
        assert conn.wait_closed(timeout=10)
        assert conn._reader.dead and conn._writer.dead
    finally:
        peer.close()


@pytest.mark.parametrize("muxer", [YamuxMuxer(), MplexMuxer()], ids=["yamux", "mplex"])
def test_streams_both_ways_after_retirement(muxer, mux_leakcheck):
    client, server = socketpair_factory(muxer)()
    try:
        # mplex reads with a waiting read (no readiness wait): only its writer retires
        full = isinstance(muxer, YamuxMuxer)
        wait_until(lambda: retired(client, full) and retired(server, full), what="retirement")
        for a, b in ((client, server), (server, client)):
            s = a.open_stream(timeout=10)
            s.write(b"x" * 100_000, timeout=10)
            s.close_write()
            r = b.accept_stream(timeout=10)
            assert r.read_exactly(100_000, timeout=10) == b"x" * 100_000
            assert r.read(timeout=10) == b""
            r.close()
            s.close()
            wait_until(lambda: retired(a, full) and retired(b, full), what="retirement after traffic")
    finally:
        client.close()
        server.close()


def test_shortening_the_period_takes_effect_for_tracked_conns(mux_leakcheck):
    # the sweeper runs at a period nothing would reach; only the new one can retire
    _muxconn.set_idle_retire_after(3600)
    conn, peer = raw_pair(quiet())
    try:
        assert not retired(conn)
        _muxconn.set_idle_retire_after(0.05)
        wait_until(lambda: retired(conn), what="retirement at the shortened period")
    finally:
        conn.close()
        peer.close()


def test_serve_hands_over_queued_and_new_streams_and_reports_the_end(mux_leakcheck):
    client, server = socketpair_factory(YamuxMuxer())()
    got = []
    ended = gevent.event.Event()
    try:
        early = client.open_stream(timeout=10)
        early.write(b"1")
        wait_until(lambda: len(server._accept_queue or ()) == 1, what="a queued stream")
        server.serve(got.append, ended.set)
        assert len(got) == 1 and got[0].read_exactly(1, timeout=10) == b"1"
        late = client.open_stream(timeout=10)
        late.write(b"2")
        wait_until(lambda: len(got) == 2, what="the second stream")
        assert got[1].read_exactly(1, timeout=10) == b"2"
        client.close()
        assert ended.wait(timeout=10)
    finally:
        client.close()
        server.close()


def test_after_retire_hook_runs_after_a_sweep_that_retired_a_conn(mux_leakcheck):
    """geventp2p.tuning.trim_after_idle hangs malloc_trim on this hook."""
    calls = []
    _muxconn._IdleSweeper.after_retire = lambda: calls.append(1)
    conn, sock = raw_pair(quiet())
    try:
        wait_until(lambda: retired(conn), what="retirement")
        wait_until(lambda: calls, what="the hook")
        n = len(calls)
        gevent.sleep(0.3)  # several more sweeps with nothing newly retired
        assert len(calls) == n
    finally:
        _muxconn._IdleSweeper.after_retire = None
        conn.close(timeout=1)
        sock.close()


def test_pings_without_streams_do_not_keep_greenlets_alive(mux_leakcheck):
    """Traffic in every period but no open stream (keepalive pings): the connection
    still retires at the sweeps between the pings (it used to stay up for good)."""
    calls = []
    _muxconn._IdleSweeper.after_retire = lambda: calls.append(1)
    conn, peer = raw_pair(quiet())
    stop = gevent.event.Event()

    def pinger():
        n = 0
        while not stop.wait(0.02):  # several pings per 50 ms period
            n += 1
            peer.sendall(pack(2, 1, 0, n))  # Ping SYN
            peer.recv(65536)  # the pong (or more): keep the socket drained

    g = gevent.spawn(pinger)
    try:
        wait_until(lambda: len(calls) >= 3, what="retirements between pings")
        assert not conn.closed
    finally:
        stop.set()
        g.join(5)
        _muxconn._IdleSweeper.after_retire = None
        conn.close(timeout=1)
        peer.close()


def test_hosts_keep_working_with_idle_connections(make_host):
    a = make_host(services=["identify", "ping", "echo"])
    b = make_host(services=["identify", "ping", "echo"])
    b.connect(a.p2p_addrs()[0], timeout=10)
    conn_b = b.network.conns_to_peer(a.id)[0]
    conn_a = a.network.conns_to_peer(b.id)[0]
    for _ in range(2):
        wait_until(lambda: retired(conn_a.muxed) and retired(conn_b.muxed), what="idle hosts")
        # both Noise connections dropped their AEAD objects; the echo makes them again
        for c in (conn_a, conn_b):
            noise = c.muxed.conn
            assert noise._enc.cipher._aead is None and noise._dec.cipher._aead is None
            # identify's and the echo's streams grew the stream tables; idle, they are new
            empty = sys.getsizeof({})
            assert sys.getsizeof(c.muxed._streams) == empty
            assert sys.getsizeof(c.muxed._session._streams) == empty
            assert sys.getsizeof(c._streams) == empty
        for x, y in ((b, a), (a, b)):
            s = x.new_stream(y.id, ECHO, timeout=10)
            s.write(b"z" * 50_000, timeout=10)
            s.close_write()
            assert s.read_exactly(50_000, timeout=10) == b"z" * 50_000
            s.close()
    # the remote closes while this side is idle: the swarm notices and drops it
    wait_until(lambda: retired(conn_b.muxed), what="idle again")
    a.network.close_peer(b.id)
    wait_until(lambda: not b.network.conns_to_peer(a.id), what="b dropping the closed connection")
    assert geventp2p  # (the package is importable in the idle state too)
