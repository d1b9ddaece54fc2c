"""Lazily negotiated streams: when the FIN may ride with the proposal (agent policy)."""

from __future__ import annotations

import gevent
import pytest

from geventp2p.exceptions import NegotiationError, StreamResetError
from geventp2p.host.basic import DEFAULT_PIPELINED_FIN_AGENTS
from geventp2p.net.stream import Stream


def read_all(s, timeout=5):
    out = b""
    while True:
        chunk = s.read(timeout=timeout)
        if not chunk:
            return out
        out += chunk


@pytest.fixture
def pair(make_host):
    a = make_host(services=["identify", "ping", "echo"])
    b = make_host(services=["identify", "ping", "echo"])
    b.connect(a.p2p_addrs()[0], timeout=10)
    return a, b


def test_geventp2p_peer_gets_fin_with_the_proposal(pair):
    a, b = pair
    assert b.peerstore.get(a.id, "AgentVersion").startswith(DEFAULT_PIPELINED_FIN_AGENTS)
    for _ in range(20):
        s = b.new_stream(a.id, "/echo/1.0.0", timeout=5)
        assert isinstance(s, Stream) and not s.negotiated
        s.write(b"hello")
        s.close_write()  # no round trip: the echo is still unread
        assert not s.negotiated
        assert read_all(s) == b"hello"
        assert s.negotiated
        s.close()


def test_refused_lazy_protocol_surfaces_on_read(pair):
    a, b = pair
    b.peerstore.add_protocols(a.id, "/ghost/2.0.0")
    s = b.new_stream(a.id, "/ghost/2.0.0", timeout=5)
    s.write(b"x")
    s.close_write()
    with pytest.raises((NegotiationError, StreamResetError)):
        read_all(s)
    s.reset()


@pytest.mark.parametrize("agent", [None, "js-libp2p/3.3.11", "py-libp2p/0.8.1"])
def test_other_or_unknown_agents_confirm_before_fin(pair, agent):
    a, b = pair
    b.peerstore.put(a.id, "AgentVersion", agent)
    s = b.new_stream(a.id, "/echo/1.0.0", timeout=5)
    s.write(b"abc")
    s.close_write()
    assert s.negotiated
    assert read_all(s) == b"abc"
    s.close()


def test_empty_allowlist_always_confirms(pair):
    a, b = pair
    b.pipelined_fin_agents = ()
    s = b.new_stream(a.id, "/echo/1.0.0", timeout=5)
    s.write(b"abc")
    s.close_write()
    assert s.negotiated
    assert read_all(s) == b"abc"
    s.close()


def test_reader_and_half_closing_writer_share_the_echo(pair):
    a, b = pair
    b.peerstore.put(a.id, "AgentVersion", "js-libp2p/3.3.11")
    for _ in range(10):
        s = b.new_stream(a.id, "/echo/1.0.0", timeout=5)
        w = gevent.spawn(lambda: (s.write(b"0123456789"), s.close_write()))
        assert read_all(s) == b"0123456789"
        w.get(timeout=5)
        s.close()
