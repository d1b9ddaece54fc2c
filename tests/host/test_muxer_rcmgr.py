"""Muxer memory against real resource scopes.

yamux: a receive window grows beyond its initial 256 KiB only after the growth was
reserved (priority 128, go-yamux) in the stream's scope; a refusal keeps the window
where it is and the stream completes.  mplex: the unread bytes of its streams are
charged to the connection's scope, and a refusal resets that stream with 0x1002.
"""

from __future__ import annotations

import socket

import gevent
import pytest

from geventp2p.core.rcmgr import NullScope, Priority
from geventp2p.exceptions import StreamResetError
from geventp2p.host.rcmgr import LimitConfig, new_resource_manager
from geventp2p.net.mplex import MplexConfig, MplexConn
from geventp2p.net.rawconn import SocketConn
from geventp2p.sansio import yamux as y
from geventp2p.sansio.yamux import Session, YamuxConfig

MiB = 1 << 20
PEER = "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo"


def _rm(limits: dict):
    return new_resource_manager(LimitConfig.from_dict(limits), total_memory=8 << 30, fd_limit=4096)


class _Pair:
    def __init__(self) -> None:
        self.client = Session(YamuxConfig(), is_initiator=True, scope=NullScope())
        self.server = Session(YamuxConfig(), is_initiator=False, scope=NullScope())

    def to_server(self):
        return self.server.receive_data(self.client.data_to_send())

    def to_client(self):
        return self.client.receive_data(self.server.data_to_send())


def _pump(p: _Pair, sid: int, rounds: int) -> None:
    """The client sends a full window per round; the server reads it all within 4 RTT."""
    for i in range(rounds):
        p.to_client()
        sent = p.client.send_data(sid, b"z" * p.server.window_target(sid))
        p.to_server()
        p.server.consumed(sid, sent, now=i * 0.01, rtt=1.0)


def test_yamux_growth_is_charged_to_the_stream_scope_at_priority_128():
    rm = _rm({})
    stream_scope = rm.open_stream(PEER, "inbound")
    stream_scope.set_protocol("/bulk/1.0.0")
    seen: list[int] = []

    class Spy:
        def __getattr__(self, name):
            return getattr(stream_scope, name)

        def reserve_memory(self, size, priority=Priority.ALWAYS):
            seen.append(priority)
            stream_scope.reserve_memory(size, priority)

    p = _Pair()
    p.server.stream_scope = lambda sid: Spy()
    sid = p.client.open_stream()
    _pump(p, sid, 4)
    assert p.server.window_target(sid) == 4 * y.INITIAL_WINDOW
    assert seen and set(seen) == {y.WINDOW_GROWTH_PRIORITY} == {128}
    grown = 3 * y.INITIAL_WINDOW
    assert stream_scope.stat().memory == grown
    # charged up the DAG: peer, protocol, system; the session's own scope untouched
    assert rm.view_peer(PEER).stat().memory == grown
    assert rm.view_protocol("/bulk/1.0.0").stat().memory == grown
    assert rm.view_system().stat().memory == grown
    assert p.server.scope.memory == y.INITIAL_WINDOW  # the session's scope holds the initial window only
    p.server.reset(sid)  # leaves the table: the growth is given back
    assert stream_scope.stat().memory == 0
    assert rm.view_system().stat().memory == 0
    stream_scope.done()


def test_yamux_growth_declined_when_the_stream_scope_refuses():
    # 1 MiB stream limit: priority 128 allows about 0.5 MiB, i.e. one doubling at most
    rm = _rm({"Stream": {"Memory": 1 * MiB}})
    stream_scope = rm.open_stream(PEER, "inbound")
    p = _Pair()
    p.server.stream_scope = lambda sid: stream_scope
    sid = p.client.open_stream()
    _pump(p, sid, 6)
    assert p.server.window_target(sid) == 2 * y.INITIAL_WINDOW  # grew once, then declined
    assert stream_scope.stat().memory == y.INITIAL_WINDOW
    assert rm.blocked[("stream", "memory")] >= 1
    # the stream still works at its window
    p.to_client()
    assert p.client.send_data(sid, b"q" * 1000) == 1000
    p.to_server()
    stream_scope.done()
    assert rm.view_system().stat().memory == 0
    p.server.reset(sid)  # a release after done() is harmless
    assert rm.view_system().stat().memory == 0


def test_yamux_growth_on_a_done_scope_is_declined_not_fatal():
    rm = _rm({})
    stream_scope = rm.open_stream(PEER, "inbound")
    stream_scope.done()
    p = _Pair()
    p.server.stream_scope = lambda sid: stream_scope
    sid = p.client.open_stream()
    _pump(p, sid, 4)
    assert p.server.window_target(sid) == y.INITIAL_WINDOW
    assert not p.server.closed


def test_yamux_without_stream_scope_uses_the_session_scope():
    p = _Pair()
    p.server.stream_scope = lambda sid: None
    sid = p.client.open_stream()
    _pump(p, sid, 3)
    assert p.server.scope.memory == 2 * y.INITIAL_WINDOW  # initial window + one doubling
    p.server.close()
    assert p.server.scope.memory == 0


# --------------------------------------------------------------------------- mplex


@pytest.fixture
def mplex_pair():
    a, b = socket.socketpair()
    rm = _rm({"Conn": {"Memory": 64 * 1024}})
    conn_scope = rm.open_connection("inbound", True, None)
    cfg = MplexConfig()
    client = MplexConn(SocketConn(a), True, cfg)
    server = MplexConn(SocketConn(b), False, cfg, scope=conn_scope)
    yield client, server, rm, conn_scope
    client.close()
    server.close()
    conn_scope.done()


def test_mplex_buffers_are_charged_to_a_real_conn_scope(mplex_pair):
    client, server, rm, conn_scope = mplex_pair
    with gevent.Timeout(20):
        cs = client.open_stream()
        cs.write(b"a" * 40_000)
        ss = server.accept_stream()
        got = ss.read_exactly(1000)
        assert got == b"a" * 1000
        # what is still buffered is charged to the conn scope and the system
        while conn_scope.stat().memory != 39_000:
            gevent.sleep(0.01)
        assert rm.view_system().stat().memory == 39_000
        assert ss.read_exactly(39_000) == b"a" * 39_000
        assert conn_scope.stat().memory == 0
        assert rm.view_system().stat().memory == 0


def test_mplex_refused_bytes_reset_only_that_stream(mplex_pair):
    client, server, rm, conn_scope = mplex_pair
    with gevent.Timeout(20):
        cs = client.open_stream()
        cs.write(b"b" * 100_000)  # above the 64 KiB conn limit, nobody reads
        with pytest.raises(StreamResetError):  # mplex carries no code: 0 on the wire
            while True:
                cs.read(timeout=10)
        refused = server.accept_stream(timeout=10)
        with pytest.raises(StreamResetError) as info:
            while True:
                refused.read(timeout=10)
        assert info.value.error_code == 0x1002  # locally: "resource limit exceeded"
        assert rm.blocked[("conn", "memory")] >= 1
        # the connection goes on: another stream works
        cs2 = client.open_stream()
        cs2.write(b"ok")
        cs2.close_write()
        ss = server.accept_stream(timeout=10)
        assert ss.read_all(timeout=10) == b"ok"
        while conn_scope.stat().memory:
            gevent.sleep(0.01)
        assert rm.view_system().stat().memory == 0


def test_mplex_data_after_the_conn_scope_ended_resets_the_stream_only(mplex_pair):
    client, server, rm, conn_scope = mplex_pair
    conn_scope.done()  # the swarm ended the connection's scope while bytes still arrive
    with gevent.Timeout(20):
        cs = client.open_stream()
        cs.write(b"c" * 10)
        with pytest.raises(StreamResetError):
            while True:
                cs.read(timeout=10)
        assert not server.closed
