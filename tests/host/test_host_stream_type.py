"""One Stream type: ``new_stream`` and inbound handlers get the muxer's Stream itself,
whatever identify knows, with one protocol or several, on yamux and mplex."""

from __future__ import annotations

import gevent
import pytest
from gevent.event import Event

from geventp2p.exceptions import NegotiationError, StreamResetError
from geventp2p.net.bandwidth import BandwidthCounter
from geventp2p.net.mplex import MplexStream
from geventp2p.net.notify import NotifyBundle
from geventp2p.net._muxconn import MuxStream
from geventp2p.net.stream import Stream
from geventp2p.net.swarm import SwarmConn
from geventp2p.net.yamux import YamuxStream

STREAM_CLASS = {"yamux": YamuxStream, "mplex": MplexStream}


def _pair(make_host, muxer, identify=True):
    a = make_host(muxers=[muxer], services=(["identify"] if identify else []) + ["ping", "echo"])
    b = make_host(muxers=[muxer], services=(["identify"] if identify else []) + ["ping", "echo"])
    inbound = []

    def other(s):
        inbound.append(type(s))
        s.write(s.read_all(limit=1 << 20, timeout=5))

    a.set_stream_handler("/other/1.0.0", other)
    b.connect(a.p2p_addrs()[0], timeout=10)
    return a, b, inbound


@pytest.mark.parametrize("muxer", ["yamux", "mplex"])
@pytest.mark.parametrize("identify", [True, False])
def test_same_class_for_every_negotiation_path(make_host, muxer, identify):
    a, b, inbound = _pair(make_host, muxer, identify)
    cls = STREAM_CLASS[muxer]
    knows = b.peerstore.supports_protocols(a.id, "/other/1.0.0")
    assert bool(knows) is identify  # identify told b about a's protocols (or not)
    cases = [
        "/other/1.0.0",  # one protocol: lazy when identify knows it, round trip otherwise
        ["/other/1.0.0"],
        ["/nope/1.0.0", "/other/1.0.0"],  # several: round trip, with an "na" first
    ]
    types = set()
    for protos in cases:
        with b.new_stream(a.id, protos, timeout=10) as s:
            types.add(type(s))
            assert s.protocol == "/other/1.0.0"
            assert isinstance(s.conn, SwarmConn) and s.remote_peer == a.id
            assert s.direction == "outbound"
            s.write(b"payload")
            s.close_write()
            assert s.read_all(timeout=10) == b"payload"
            assert s.negotiated
    assert types == {cls}
    assert cls.__mro__ == (cls, MuxStream, Stream, object)  # no wrapper class anywhere
    assert set(inbound) == {cls} and len(inbound) == len(cases)


@pytest.mark.parametrize("muxer", ["yamux", "mplex"])
def test_before_and_after_identify_same_class(make_host, muxer):
    a, b, _ = _pair(make_host, muxer)
    b.peerstore.remove_protocols(a.id, "/other/1.0.0")  # as if identify had not run yet
    s1 = b.new_stream(a.id, "/other/1.0.0", timeout=10)
    assert s1.negotiated  # round trip
    b.peerstore.add_protocols(a.id, "/other/1.0.0")
    s2 = b.new_stream(a.id, "/other/1.0.0", timeout=10)
    assert not s2.negotiated  # lazy
    assert type(s1) is type(s2) is STREAM_CLASS[muxer]
    for s in (s1, s2):
        with s:
            s.write(b"x")
            s.close_write()
            assert s.read_all(timeout=10) == b"x"


def test_lazy_refusal_resets_with_negotiation_code(make_host):
    a, b, _ = _pair(make_host, "yamux")
    b.peerstore.add_protocols(a.id, "/ghost/1.0.0")
    s = b.new_stream(a.id, "/ghost/1.0.0", timeout=10)
    s.write(b"x")
    with pytest.raises((NegotiationError, StreamResetError)):
        s.read(timeout=10)
    assert s.is_reset


@pytest.mark.parametrize("how", ["close", "reset", "fin-both-ways"])
def test_closed_stream_notification_fires(make_host, how):
    a, b, _ = _pair(make_host, "yamux")
    opened, closed = [], []
    got = Event()

    def on_closed(net, s):
        closed.append(s)
        got.set()

    b.network.notify(NotifyBundle(opened_stream=lambda net, s: opened.append(s), closed_stream=on_closed))
    s = b.new_stream(a.id, "/other/1.0.0", timeout=10)
    conn = s.conn
    assert s in conn.streams()
    if how == "close":
        s.close()
    elif how == "reset":
        s.reset()
    else:
        s.write(b"abc")
        s.close_write()
        assert s.read_all(timeout=10) == b"abc"  # the remote's FIN: finished, not closed
    assert got.wait(timeout=10)
    assert closed == [s] and opened == [s]
    assert s not in conn.streams()
    s.close()
    b.network.wait_notifications(timeout=5)
    assert closed == [s]  # once


def test_metering_without_a_wrapper(make_host):
    counter = BandwidthCounter()
    a = make_host(services=["identify", "ping", "echo"])
    b = make_host(services=["identify", "ping", "echo"])
    b.network.bandwidth_reporter = counter
    b.connect(a.p2p_addrs()[0], timeout=10)
    base_out, base_in = counter.totals().total_out, counter.totals().total_in
    with b.new_stream(a.id, "/echo/1.0.0", timeout=10) as s:
        assert type(s).__mro__ == (YamuxStream, MuxStream, Stream, object)
        assert s._meter is counter
        s.write(b"m" * 1000)
        s.close_write()
        assert s.read_all(timeout=10) == b"m" * 1000
    t = counter.totals()
    proposal = len(b"\x13/multistream/1.0.0\n\x0f/echo/1.0.0\n")
    assert t.total_out - base_out == proposal + 1000
    assert t.total_in - base_in == proposal + 1000
    assert counter.stats_for_protocol("/echo/1.0.0").total_out >= 1000
    assert counter.stats_for_peer(a.id).total_in >= 1000


def test_new_stream_is_annotated_with_the_public_class():
    import typing

    from geventp2p.host.basic import BasicHost

    hints = typing.get_type_hints(BasicHost.new_stream)
    assert hints["return"] is Stream


def test_concurrent_reader_and_closer_share_one_echo(make_host):
    a, b, _ = _pair(make_host, "yamux")
    b.peerstore.put(a.id, "AgentVersion", "js-libp2p/3.3.11")  # confirm before FIN
    s = b.new_stream(a.id, "/other/1.0.0", timeout=10)
    s.write(b"both")
    reader = gevent.spawn(s.read_all, None, 10)
    s.close_write()
    assert reader.get(timeout=10) == b"both"
    s.close()


@pytest.mark.parametrize("muxer", ["yamux"])
def test_inbound_negotiation_timeout_resets_with_0x1001(make_host, muxer):
    """A peer that opens a stream and never proposes a protocol gets go's
    "protocol negotiation failed" reset code once the negotiation timeout passes."""
    a = make_host(muxers=[muxer])
    b = make_host(muxers=[muxer])
    a.negotiation_timeout = 0.3
    b.connect(a.p2p_addrs()[0], timeout=10)
    raw = b.network.new_stream(a.id, timeout=10)  # bare muxed stream: no multistream at all
    with pytest.raises(StreamResetError) as info:
        while raw.read(timeout=10):
            pass  # a's multistream header arrives first, then the reset
    assert info.value.error_code == 0x1001 and info.value.remote
