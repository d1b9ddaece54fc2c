"""testing.mocknet: N hosts over the memory transport with per-link knobs."""

from __future__ import annotations

import time

import gevent
import pytest

from geventp2p.core.event import Connectedness
from geventp2p.exceptions import ConfigError, DialError
from geventp2p.protocols.echo import echo
from geventp2p.protocols.ping import ping
from geventp2p.testing.mocknet import MockNet
from tests.protocols._leaks import bounded_and_leak_free  # noqa: F401  (autouse)


def test_five_hosts_connect_all_with_latency():
    latency = 0.01
    with MockNet(latency=latency) as net:
        hosts = net.gen_peers(5, services=["identify", "ping", "echo"])
        t0 = time.monotonic()
        net.connect_all()
        assert time.monotonic() - t0 < 10
        for h in hosts:
            others = {o.id for o in hosts if o is not h}
            assert set(h.network.peers()) == others
            for o in others:
                assert h.network.connectedness(o) == Connectedness.Connected
                assert len(h.network.conns_to_peer(o)) == 1
        # identify ran both ways on every connection (the listener side asynchronously)
        deadline = time.monotonic() + 5
        while not all("/echo/1.0.0" in h.peerstore.get_protocols(o.id)
                      for h in hosts for o in hosts if o is not h):
            assert time.monotonic() < deadline, "identify did not finish everywhere"
            gevent.sleep(0.01)
        a, b = hosts[0], hosts[4]
        rtts = list(ping(a, b.id, count=3, interval=0))
        assert all(r >= 2 * latency * 0.9 for r in rtts)  # one-way latency each way
        assert echo(a, b.id, b"over memory") == b"over memory"
        assert str(a.addrs()[0]).startswith("/memory/")


def test_per_link_latency_and_unlinked_peers():
    with MockNet() as net:
        a, b, c = net.gen_peers(3)
        net.link_peers(a, b, latency=0.05)
        net.connect_peers(a, b)
        slow = min(ping(a, b.id, count=2, interval=0))
        assert slow >= 0.09
        with pytest.raises(DialError):
            a.connect(c.peer_info(), timeout=2)  # not linked
        cfg = net.link_peers(a, c)
        assert cfg.latency == 0
        a.connect(c.peer_info(), timeout=5)
        assert min(ping(a, c.id, count=3, interval=0)) < slow
        net.unlink_peers(a, c)
        assert net.link_config(a, c) is None
        assert net.host(b.id) is b
        assert "MockNet" in repr(net)


def test_bandwidth_knob():
    with MockNet(bandwidth=200_000) as net:
        a, b = net.gen_peers(2, services=["identify", "ping", "echo"])
        net.connect_all()
        t0 = time.monotonic()
        assert echo(a, b.id, bytes(40_000)) == bytes(40_000)
        assert time.monotonic() - t0 >= 0.15  # 40 kB each way at 200 kB/s


def test_closed_mocknet_refuses_new_peers():
    net = MockNet()
    net.close()
    with pytest.raises(ConfigError):
        net.add_peer()
    with pytest.raises(ConfigError):
        MockNet(latency=-1)
