"""A real js-libp2p peer gets through while 1,000 silent TCP sockets sit on our listener.

The listener bounds handshakes in flight with the resource manager's transient scope
and makes room by dropping the oldest connection that has not sent a byte (see
tests/hostile/test_silent_sockets.py for the geventp2p-only cases).  Here the peer that
must get through is js-libp2p from the interop harness, dialling our host and echoing
within its own 6 s budget (its scenario signal covers the dial, the Noise + yamux
upgrade and the echo).  Our transient connection limit is set below the crowd so the
drop-oldest-silent path is what lets it in.
"""

from __future__ import annotations

import resource

import gevent
import gevent.socket as gsocket
import pytest

import interop_harness as ih
from geventp2p.defaults import new_host
from geventp2p.host.rcmgr import LimitConfig

pytestmark = pytest.mark.interop

CROWD = 1000
JS_BUDGET = 6.0  # seconds: the js dialer's own timeout for dial + upgrade + echo


@pytest.fixture
def enough_fds():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 3 * CROWD + 512
    if soft != resource.RLIM_INFINITY and soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {want}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    yield
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_js_peer_echoes_while_1000_silent_sockets_are_open(enough_fds):
    ih.require_peer("js")
    limits = LimitConfig.from_dict({
        "System": {"Conns": 4096, "ConnsInbound": 4096, "FD": 4096},
        "Transient": {"Conns": 64, "ConnsInbound": 64, "FD": 64},
    })
    host = new_host(listen=["/ip4/127.0.0.1/tcp/0"], limits=limits, services=["identify", "ping", "echo"])
    crowd: list = []
    try:
        tcp = [a for a in host.network.listen_addresses() if "/tcp/" in str(a)][0]
        port = int(str(tcp).split("/tcp/")[1].split("/")[0])
        for _ in range(CROWD):
            s = gsocket.create_connection(("127.0.0.1", port), timeout=10)
            crowd.append(s)  # connected, never a byte
            if len(crowd) % 50 == 0:
                gevent.sleep(0)  # let the listener accept as we go
        swarm = host.network
        # the listener has seen the crowd and dropped its oldest members to stay in bounds
        with gevent.Timeout(30):
            while swarm.inbound_counts["dropped_silent"] + swarm.inbound_counts["silent"] < CROWD - 64:
                gevent.sleep(0.05)
        res = ih.run_dialer("js", str(host.p2p_addrs()[0]), "echo", bytes=1024, timeout=JS_BUDGET)
        assert res["ok"], f"js dialer could not echo within {JS_BUDGET} s beside {CROWD} silent sockets: {res}"
        assert swarm.inbound_counts["dropped_silent"] > 0, dict(swarm.inbound_counts)
    finally:
        for s in crowd:
            s.close()
        host.close()
