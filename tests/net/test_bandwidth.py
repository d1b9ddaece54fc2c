"""BandwidthCounter (virtual clock) and its hook in the swarm's streams."""

from __future__ import annotations

import math

import gevent
import pytest

from geventp2p.crypto.keys import KeyType, generate_key
from geventp2p.exceptions import ConfigError
from geventp2p.host.peerstore import Peerstore
from geventp2p.net.bandwidth import ALPHA, BandwidthCounter, Stats
from geventp2p.net.memory import MemoryNetwork, MemoryTransport
from geventp2p.net.plaintext import PlaintextTransport
from geventp2p.net.swarm import Swarm
from geventp2p.net.upgrader import Upgrader
from geventp2p.net.yamux import YamuxMuxer
from geventp2p.testing.clock import VirtualClock


def test_totals_per_peer_and_protocol():
    c = BandwidthCounter(VirtualClock(50.0))
    c.log_sent(100, "p1", "/a")
    c.log_sent(50, "p2", "/b")
    c.log_recv(30, "p1", "/a")
    c.log_recv(7)  # no peer, no protocol: totals only
    t = c.totals()
    assert (t.total_out, t.total_in) == (150, 37)
    assert c.stats_for_peer("p1") == Stats(30, 100, 0.0, 0.0)
    assert c.stats_for_peer("p2").total_out == 50
    assert c.stats_for_protocol("/a").total_in == 30
    assert c.stats_for_protocol("/none") == Stats()
    assert c.stats_for_peer("nobody") == Stats()
    assert set(c.stats_by_peer()) == {"p1", "p2"}
    assert set(c.stats_by_protocol()) == {"/a", "/b"}
    c.reset()
    assert c.totals() == Stats()


def test_rate_is_ewma_over_one_second_windows():
    clock = VirtualClock(50.0)
    c = BandwidthCounter(clock)
    assert c.totals().rate_out == 0.0
    c.log_sent(1000, "p")
    assert c.totals().rate_out == 0.0  # window still open
    clock.advance(1.0)
    assert c.totals().rate_out == pytest.approx(1000 * ALPHA)
    # steady 1000 B/s converges to 1000
    for _ in range(30):
        c.log_sent(1000, "p")
        clock.advance(1.0)
    assert c.totals().rate_out == pytest.approx(1000, rel=1e-3)
    assert c.stats_for_peer("p").rate_out == pytest.approx(1000, rel=1e-3)
    # idle windows decay the rate
    clock.advance(3.0)
    assert c.totals().rate_out == pytest.approx(1000 * math.exp(-3), rel=1e-3)
    clock.advance(1000.0)
    assert c.totals().rate_out == 0.0
    assert c.totals().total_out == 31000


def test_rate_in_and_out_are_separate():
    clock = VirtualClock(50.0)
    c = BandwidthCounter(clock)
    c.log_recv(500, "p", "/x")
    clock.advance(1.0)
    s = c.stats_for_protocol("/x")
    assert s.rate_in == pytest.approx(500 * ALPHA) and s.rate_out == 0.0


def test_trim_idle_and_validation():
    clock = VirtualClock(50.0)
    c = BandwidthCounter(clock)
    c.log_sent(1, "old", "/old")
    clock.advance(100)
    c.log_sent(1, "new", "/new")
    assert c.trim_idle(idle_for=50) == 2
    assert set(c.stats_by_peer()) == {"new"}
    with pytest.raises(ConfigError):
        BandwidthCounter(clock, window=0)
    with pytest.raises(ConfigError):
        BandwidthCounter(clock, alpha=0)


def _swarm(net, reporter=None):
    key = generate_key(KeyType.Ed25519)
    sw = Swarm(key, Peerstore(), MemoryTransport(net),
               upgrader=Upgrader([PlaintextTransport(key)], [YamuxMuxer()]), bandwidth_reporter=reporter)
    sw.listen("/memory/0")
    return sw


def test_swarm_streams_report_bytes():
    net = MemoryNetwork()
    ca, cb = BandwidthCounter(), BandwidthCounter()
    a, b = _swarm(net, ca), _swarm(net, cb)
    try:
        with gevent.Timeout(10):
            def handler(s):
                s.protocol = "/echo/1"
                data = s.read_exactly(1000, timeout=5)
                s.write(data + data)
                s.close()

            b.set_stream_handler(handler)
            a.peerstore.add_addrs(b.local_peer, b.listen_addresses(), 3600)
            s = a.new_stream(b.local_peer, timeout=5)
            s.protocol = "/echo/1"
            s.write(b"x" * 1000)
            got = b""
            while len(got) < 2000:
                chunk = s.read(timeout=5)
                assert chunk
                got += chunk
            s.write(memoryview(b"yz"))
            s.close()
        assert ca.totals().total_out == 1002 and ca.totals().total_in == 2000
        assert ca.stats_for_peer(b.local_peer).total_in == 2000
        assert ca.stats_for_protocol("/echo/1").total_out == 1002
        assert cb.totals().total_in == 1000 and cb.totals().total_out == 2000
        assert cb.stats_for_peer(a.local_peer).total_out == 2000
    finally:
        a.close()
        b.close()


def test_swarm_without_reporter_uses_plain_stream_class():
    net = MemoryNetwork()
    a, b = _swarm(net), _swarm(net)
    try:
        with gevent.Timeout(10):
            a.peerstore.add_addrs(b.local_peer, b.listen_addresses(), 3600)
            s = a.new_stream(b.local_peer, timeout=5)
            assert type(s).__name__ == "YamuxStream" and s._meter is None
            assert not s._slow_write  # the write fast path stays open
            s.close()
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("metered", [True, False])
def test_lazy_select_over_swarm_stream_writes_through_and_meters(metered):
    """A lazily negotiated swarm stream (no wrapper) sends the proposal with the
    first write; a metered one counts every byte, the proposal included."""
    from geventp2p.net import multistream

    net = MemoryNetwork()
    ca, cb = (BandwidthCounter(), BandwidthCounter()) if metered else (None, None)
    a, b = _swarm(net, ca), _swarm(net, cb)
    got = []
    try:
        with gevent.Timeout(10):
            def handler(s):
                multistream.handle(s, ["/sink/1"], timeout=5)
                while True:
                    chunk = s.read(timeout=5)
                    if not chunk:
                        break
                    got.append(chunk)
                s.close()

            b.set_stream_handler(handler)
            a.peerstore.add_addrs(b.local_peer, b.listen_addresses(), 3600)
            s = a.new_stream(b.local_peer, timeout=5)
            lazy = multistream.select_lazy(s, "/sink/1")
            assert lazy is s and not s.negotiated
            for i in range(50):
                lazy.write(bytes([i]) * 100)
            lazy.close_write()
            assert lazy.read(timeout=5) == b""
            assert s.negotiated
            lazy.close()
            # the prefix went out: later writes take the fast path unless metered
            assert s._slow_write is metered
        assert b"".join(got) == b"".join(bytes([i]) * 100 for i in range(50))
        if metered:
            # multistream header + proposal + 5,000 bytes out, the echo back; bytes the
            # listener read ahead and pushed back (unread) are counted once
            proposal = len(b"\x13/multistream/1.0.0\n\x08/sink/1\n")
            assert ca.totals().total_out == cb.totals().total_in == proposal + 5000
            assert ca.totals().total_in == cb.totals().total_out == proposal
    finally:
        a.close()
        b.close()
