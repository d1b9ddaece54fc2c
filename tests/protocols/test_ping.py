"""Ping /ipfs/ping/1.0.0 (https://github.com/libp2p/specs/blob/master/ping/ping.md)."""

from __future__ import annotations

import gevent
import pytest

from geventp2p.exceptions import RemoteProtocolError, StreamError
from geventp2p.net import multistream
from geventp2p.protocols.ping import PING_SIZE, PROTOCOL_ID, PingService, ping


def test_ping_rtts_and_latency(pair):
    a, b = pair
    rtts = list(ping(b, a.id, count=5, interval=0.01, timeout=5))
    assert len(rtts) == 5
    assert all(isinstance(r, float) and 0 < r < 5 for r in rtts)
    ewma = b.peerstore.latency_ewma(a.id)
    assert ewma is not None and min(rtts) <= ewma <= max(rtts)


def test_ping_uses_one_stream_and_closes_it(pair):
    a, b = pair
    conn = b.network.conns_to_peer(a.id)[0]
    before = len(conn.streams())
    it = ping(b, a.id, count=None, interval=0)
    for i, _ in enumerate(it):
        if i == 0:
            assert len(conn.streams()) == before + 1
        if i == 9:
            break
    it.close()
    assert len(conn.streams()) == before


def test_ping_service_method(pair):
    a, b = pair
    svc = b.service(PingService)
    assert len(list(svc.ping(a.id, count=2, interval=0))) == 2


def test_wrong_echo_is_an_error(make_host):
    a = make_host()
    b = make_host()

    def corrupt(stream):
        data = stream.read_exactly(PING_SIZE, timeout=5)
        stream.write(bytes(x ^ 0xFF for x in data))

    a.remove_stream_handler(PROTOCOL_ID)
    a.set_stream_handler(PROTOCOL_ID, corrupt)
    b.connect(a.p2p_addrs()[0], timeout=10)
    with pytest.raises(RemoteProtocolError):
        list(ping(b, a.id, count=1))


def test_eof_ends_ping(make_host):
    a = make_host()
    b = make_host()
    a.remove_stream_handler(PROTOCOL_ID)
    a.set_stream_handler(PROTOCOL_ID, lambda s: s.read(4, timeout=5))  # then the host closes it
    b.connect(a.p2p_addrs()[0], timeout=10)
    with pytest.raises(StreamError):
        list(ping(b, a.id, count=2, interval=0))


def test_server_limits_streams_per_peer_and_idles_out(make_host):
    a = make_host(services=["identify"])
    a.add_service(PingService(idle_timeout=0.3, max_inbound_streams_per_peer=2))
    b = make_host()
    b.connect(a.p2p_addrs()[0], timeout=10)
    streams = [b.new_stream(a.id, PROTOCOL_ID, timeout=5) for _ in range(3)]
    try:
        for s in streams[:2]:
            s.write(b"x" * PING_SIZE)
            assert s.read_exactly(PING_SIZE, timeout=5) == b"x" * PING_SIZE
        s3 = streams[2]
        with pytest.raises(StreamError):
            s3.write(b"y" * PING_SIZE)
            s3.read_exactly(PING_SIZE, timeout=5)
        # idle streams are reset by the server after idle_timeout
        gevent.sleep(0.5)
        with pytest.raises(StreamError):
            streams[0].write(b"z" * PING_SIZE)
            streams[0].read_exactly(PING_SIZE, timeout=5)
    finally:
        for s in streams:
            s.reset()


def test_server_ends_cleanly_on_eof_and_partial_block(pair):
    a, b = pair
    s = b.new_stream(a.id, PROTOCOL_ID, timeout=5)
    s.write(b"q" * PING_SIZE + b"partial")
    assert s.read_exactly(PING_SIZE, timeout=5) == b"q" * PING_SIZE
    s.close_write()
    assert s.read(timeout=5) == b""  # server closed after our FIN
    s.close()


def test_raw_negotiation_round_trip(pair):
    a, b = pair
    s = b.network.new_stream(a.id, timeout=5)
    assert multistream.select_one_of(s, [PROTOCOL_ID], timeout=5) == PROTOCOL_ID
    s.write(bytes(range(32)))
    assert s.read_exactly(32, timeout=5) == bytes(range(32))
    s.close()


def test_ping_argument_errors(pair):
    a, b = pair
    with pytest.raises(ValueError):
        next(ping(b, a.id, count=-1))
    with pytest.raises(ValueError):
        next(ping(b, a.id, interval=-1))
    with pytest.raises(ValueError):
        PingService(idle_timeout=0)
