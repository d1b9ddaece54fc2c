"""geventp2p.metrics: collectors scraped over HTTP while hosts connect, stream and refuse.

Needs the ``metrics`` extra (prometheus_client, installed by ``make``); skipped
without it, except under CI=true, where a missing extra fails the run.
"""

from __future__ import annotations

import os
import socket

import gevent
import gevent.socket
import pytest

import geventp2p
from geventp2p import metrics as gm
from geventp2p.core.event import EvtPeerConnectednessChanged
from geventp2p.core.peer import PeerId
from geventp2p.exceptions import ConfigError, DialError, ResourceLimitExceeded
from tests.protocols._leaks import bounded_and_leak_free  # noqa: F401  (autouse)

IN_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}
if not gm.available():
    if IN_CI:
        pytest.fail("prometheus_client is missing (CI=true: install geventp2p[metrics])", pytrace=False)
    pytest.skip("prometheus_client not installed (pip install 'geventp2p[metrics]')", allow_module_level=True)

from prometheus_client import CollectorRegistry  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

WAIT = 20.0  # generous: the machine is busy


# --------------------------------------------------------------------------- helpers


def scrape(url_or_addr, path="/metrics") -> tuple[int, str]:
    """GET over a gevent socket (the server is a greenlet in this process: urllib would block the hub)."""
    if isinstance(url_or_addr, str):
        hostport = url_or_addr.split("//", 1)[1].split("/", 1)[0]
        host, _, port = hostport.rpartition(":")
        addr = (host.strip("[]"), int(port))
    else:
        addr = url_or_addr
    with gevent.Timeout(WAIT):
        sock = gevent.socket.create_connection(addr)
        try:
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: metrics\r\n\r\n".encode())
            chunks = []
            while True:
                d = sock.recv(65536)
                if not d:
                    break
                chunks.append(d)
        finally:
            sock.close()
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def samples(text: str) -> list:
    return [s for fam in text_string_to_metric_families(text) for s in fam.samples]


def value(text: str, name: str, **labels) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels`` (0 if none)."""
    return sum(s.value for s in samples(text) if s.name == name
               and all(s.labels.get(k) == v for k, v in labels.items()))


def names(text: str) -> set[str]:
    return {s.name for s in samples(text)}


def wait_connectedness(host, state_name: str, trigger) -> None:
    """Run ``trigger()`` and wait for ``host``'s connectedness event, then for its notifiees."""
    with host.events.subscribe(EvtPeerConnectednessChanged, buffer=16) as sub:
        trigger()
        with gevent.Timeout(WAIT):
            while True:
                ev = sub.get(timeout=WAIT)
                if ev.connectedness.name == state_name:
                    break
    assert host.network.wait_notifications(WAIT)


@pytest.fixture
def hosts():
    made = []

    def make(**kw):
        kw.setdefault("listen", ["/ip4/127.0.0.1/tcp/0"])
        kw.setdefault("services", ["identify", "ping", "echo"])
        h = geventp2p.new_host(**kw)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


@pytest.fixture
def endpoints():
    made = []

    def start(host, **kw):
        ep = gm.start_host_metrics(host, "127.0.0.1:0", **kw)
        made.append(ep)
        return ep

    yield start
    for ep in made:
        ep.close()


# --------------------------------------------------------------------------- swarm


def test_connection_count_goes_up_then_down(hosts, endpoints):
    a, b = hosts(), hosts()
    ep = endpoints(a)
    _, text = scrape(ep.url)
    assert value(text, "geventp2p_swarm_connections") == 0
    assert value(text, "libp2p_swarm_connections_opened_total") == 0

    wait_connectedness(a, "Connected", lambda: b.connect(a.p2p_addrs()[0], timeout=WAIT))
    _, text = scrape(ep.url)
    live = dict(dir="inbound", transport="tcp", security="/noise", muxer="/yamux/1.0.0", ip_version="ip4")
    assert value(text, "geventp2p_swarm_connections", **live) == 1
    assert value(text, "geventp2p_swarm_peers") == 1
    assert value(text, "libp2p_swarm_connections_opened_total", early_muxer="false", **live) == 1
    assert value(text, "libp2p_swarm_key_types_total", dir="inbound", key_type="Ed25519") == 1
    assert value(text, "libp2p_swarm_connections_closed_total") == 0

    wait_connectedness(a, "NotConnected", lambda: a.network.close_peer(b.id))
    _, text = scrape(ep.url)
    assert value(text, "geventp2p_swarm_connections") == 0
    assert value(text, "geventp2p_swarm_peers") == 0
    assert value(text, "libp2p_swarm_connections_closed_total", **live) == 1
    assert value(text, "libp2p_swarm_connection_duration_seconds_count", dir="inbound") == 1
    assert value(text, "geventp2p_connmgr_connections") == 0


def test_registered_after_connecting_counts_each_connection_once(hosts):
    a, b = hosts(), hosts()
    wait_connectedness(a, "Connected", lambda: b.connect(a.p2p_addrs()[0], timeout=WAIT))
    reg = CollectorRegistry()
    hm = gm.register_host_metrics(a, reg)
    conn = a.network.conns()[0]
    hm.tracer.connected(a.network, conn)  # a late notification for a connection already counted
    assert reg.get_sample_value("libp2p_swarm_connections_opened_total", {
        "dir": "inbound", "transport": "tcp", "security": "/noise", "muxer": "/yamux/1.0.0",
        "early_muxer": "false", "ip_version": "ip4"}) == 1
    hm.tracer.disconnected(a.network, object())  # never counted as opened: not counted as closed
    wait_connectedness(a, "NotConnected", lambda: a.network.close_peer(b.id))
    closed = [s.value for m in reg.collect() for s in m.samples if s.name == "libp2p_swarm_connections_closed_total"]
    assert closed == [1]
    hm.close()


def test_bytes_and_streams_by_protocol(hosts, endpoints):
    a, b = hosts(), hosts()
    ep = endpoints(a)
    b.connect(a.p2p_addrs()[0], timeout=WAIT)
    _, before = scrape(ep.url)

    s = b.new_stream(a.id, ["/echo/1.0.0"], timeout=WAIT)
    payload = b"x" * 3000
    s.write(payload)
    got = b""
    while len(got) < len(payload):  # the echo arrived: a's handler holds a negotiated stream
        chunk = s.read(65536)
        assert chunk
        got += chunk
    _, during = scrape(ep.url)
    assert value(during, "geventp2p_swarm_streams", dir="inbound", protocol="/echo/1.0.0") == 1
    out_echo = value(during, "geventp2p_bandwidth_protocol_bytes_total", dir="out", protocol="/echo/1.0.0")
    assert out_echo >= len(payload)
    assert value(during, "geventp2p_bandwidth_bytes_total", dir="out") >= \
        value(before, "geventp2p_bandwidth_bytes_total", dir="out") + len(payload)
    assert value(during, "geventp2p_bandwidth_bytes_total", dir="in") >= \
        value(before, "geventp2p_bandwidth_bytes_total", dir="in") + len(payload)

    s.close_write()
    assert s.read(10) == b""  # a closed its side: its stream is finished
    s.close()
    _, after = scrape(ep.url)
    assert value(after, "geventp2p_swarm_streams", protocol="/echo/1.0.0") == 0
    assert "geventp2p_bandwidth_peer_bytes_total" not in names(after)  # per-peer is opt-in


def test_per_peer_bandwidth(hosts, endpoints):
    a, b = hosts(), hosts()
    ep = endpoints(b, per_peer_bandwidth=True)
    b.connect(a.p2p_addrs()[0], timeout=WAIT)
    s = b.new_stream(a.id, ["/echo/1.0.0"], timeout=WAIT)
    s.write(b"y" * 1000)
    s.close_write()
    assert len(s.read_all(timeout=WAIT)) == 1000
    _, text = scrape(ep.url)
    assert value(text, "geventp2p_bandwidth_peer_bytes_total", dir="out", peer=str(a.id)) >= 1000
    assert value(text, "geventp2p_bandwidth_peer_bytes_total", dir="in", peer=str(a.id)) >= 1000


def test_handshake_latency_and_dial_errors(hosts, endpoints):
    a, b = hosts(), hosts()
    ep = endpoints(b)
    b.connect(a.p2p_addrs()[0], timeout=WAIT)
    _, text = scrape(ep.url)
    hs = dict(transport="tcp", security="/noise", muxer="/yamux/1.0.0", early_muxer="false", ip_version="ip4")
    assert value(text, "libp2p_swarm_handshake_latency_seconds_count", **hs) == 1
    assert 0 < value(text, "libp2p_swarm_handshake_latency_seconds_sum", **hs) < WAIT
    assert value(text, "libp2p_swarm_connections_opened_total", dir="outbound") == 1
    assert value(text, "libp2p_swarm_dial_errors_total") == 0

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ghost = PeerId.from_public_key(geventp2p.generate_key().public_key())
    with pytest.raises(DialError):
        b.connect(f"/ip4/127.0.0.1/tcp/{port}/p2p/{ghost}", timeout=WAIT)
    _, text = scrape(ep.url)
    assert value(text, "libp2p_swarm_dial_errors_total", transport="tcp", error="connection refused",
                 ip_version="ip4") == 1
    assert value(text, "libp2p_swarm_handshake_latency_seconds_count") == 1


# --------------------------------------------------------------------------- resource manager


def test_rcmgr_usage_and_blocked_counts(hosts, endpoints):
    from geventp2p.host.rcmgr import LimitConfig, new_resource_manager

    rm = new_resource_manager(LimitConfig.from_dict({"System": {"StreamsInbound": 2}}),
                              total_memory=1 << 34, fd_limit=4096)
    a = hosts()
    ep = endpoints(a, resource_manager=rm)
    _, text = scrape(ep.url)
    assert value(text, "libp2p_rcmgr_streams", dir="inbound", scope="system") == 0
    assert value(text, "libp2p_rcmgr_blocked_resources") == 0
    assert value(text, "geventp2p_rcmgr_limit", scope="system", resource="streams_inbound") == 2

    conn = rm.open_connection("inbound", True, "/ip4/10.0.0.1/tcp/4001")
    conn.set_peer("peerA")
    s1 = rm.open_stream("peerA", "inbound")
    s1.set_protocol("/echo/1.0.0")
    s1.reserve_memory(4096)
    s2 = rm.open_stream("peerA", "inbound")
    with pytest.raises(ResourceLimitExceeded):
        rm.open_stream("peerA", "inbound")  # the third is refused by system's StreamsInbound=2
    _, text = scrape(ep.url)
    assert value(text, "libp2p_rcmgr_connections", dir="inbound", scope="system") == 1
    assert value(text, "libp2p_rcmgr_fds", scope="system") == 1
    assert value(text, "libp2p_rcmgr_streams", dir="inbound", scope="system") == 2
    assert value(text, "libp2p_rcmgr_streams", dir="inbound", scope="transient") == 1  # s2: no protocol yet
    assert value(text, "libp2p_rcmgr_streams", dir="inbound", scope="protocol", protocol="/echo/1.0.0") == 1
    assert value(text, "libp2p_rcmgr_memory", scope="system") == 4096
    assert value(text, "libp2p_rcmgr_memory", scope="protocol", protocol="/echo/1.0.0") == 4096
    assert value(text, "libp2p_rcmgr_blocked_resources", dir="inbound", scope="system", resource="stream") == 1
    # one peer with 2 inbound streams and 1 inbound connection
    assert value(text, "libp2p_rcmgr_peer_streams_bucket", dir="inbound", le="1.0") == 0
    assert value(text, "libp2p_rcmgr_peer_streams_bucket", dir="inbound", le="2.0") == 1
    assert value(text, "libp2p_rcmgr_peer_connections_count", dir="inbound") == 1
    assert value(text, "libp2p_rcmgr_previous_peer_streams_count", dir="inbound") == 0
    assert value(text, "libp2p_rcmgr_peer_memory_count") == 1

    for sc in (s1, s2, conn):
        sc.done()
    _, text = scrape(ep.url)
    assert value(text, "libp2p_rcmgr_streams", scope="system") == 0
    assert value(text, "libp2p_rcmgr_connections", scope="system") == 0
    assert value(text, "libp2p_rcmgr_memory", scope="system") == 0
    assert value(text, "libp2p_rcmgr_blocked_resources", resource="stream") == 1  # a count, it stays


def test_blocked_resource_labels_follow_go():
    class FakeRm:
        def __init__(self):
            from collections import Counter

            from geventp2p.core.rcmgr import ScopeStat

            zero = ScopeStat()
            self.blocked = Counter({("protocol-peer", "streams (outbound)"): 2, ("conn", "fd"): 1,
                                    ("peer", "memory"): 3, ("transient", "conns"): 4})
            self._st = {"system": zero, "transient": zero, "protocols": {}, "peers": {}}

        def stat(self):
            return self._st

    fams = {f.name: f for f in gm.rcmgr_metrics(FakeRm())}
    got = {tuple(sorted(s.labels.items())): s.value for s in fams["libp2p_rcmgr_blocked_resources"].samples}
    assert got == {
        (("dir", "outbound"), ("resource", "stream"), ("scope", "protocol")): 2,
        (("dir", ""), ("resource", "fd"), ("scope", "conn")): 1,
        (("dir", ""), ("resource", "memory"), ("scope", "peer")): 3,
        (("dir", ""), ("resource", "connection"), ("scope", "transient")): 4,
    }


# --------------------------------------------------------------------------- API edges


def test_one_host_per_registry_and_close_unregisters(hosts):
    a, b = hosts(), hosts()
    reg = CollectorRegistry()
    hm = gm.register_host_metrics(a, reg)
    with pytest.raises(ConfigError, match="one host per registry"):
        gm.register_host_metrics(b, reg)
    assert a.network.metrics_tracer is hm.tracer
    hm.close()
    hm.close()
    assert a.network.metrics_tracer is None
    assert reg.get_sample_value("geventp2p_swarm_peers") is None
    hm2 = gm.register_host_metrics(b, reg, bandwidth=False)
    assert reg.get_sample_value("geventp2p_swarm_peers") == 0
    assert reg.get_sample_value("geventp2p_bandwidth_bytes_total", {"dir": "in"}) is None
    assert b.network.bandwidth_reporter is None  # bandwidth=False installs no meter
    hm2.close()


def test_only_metrics_path_is_served(hosts, endpoints):
    ep = endpoints(hosts())
    status, body = scrape(ep.server.address, "/")
    assert status == 404
    status, body = scrape(ep.server.address, "/metrics")
    assert status == 200
    assert "python_info" in body  # start_host_metrics' own registry has the process collectors too
    assert "geventp2p_swarm_peers 0.0" in body


def test_missing_extra_is_a_clear_config_error(monkeypatch, hosts):
    monkeypatch.setattr(gm, "_IMPORT_ERROR", ImportError("No module named 'prometheus_client'"))
    assert not gm.available()
    with pytest.raises(ConfigError, match=r"geventp2p\[metrics\]"):
        gm.register_host_metrics(hosts())
    with pytest.raises(ConfigError, match=r"geventp2p\[metrics\]"):
        gm.serve_metrics("127.0.0.1:0")


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:9464", ("127.0.0.1", 9464)),
    (":9464", ("0.0.0.0", 9464)),
    ("[::1]:0", ("::1", 0)),
    ("localhost:1", ("localhost", 1)),
])
def test_parse_listen(text, expected):
    assert gm.parse_listen(text) == expected


@pytest.mark.parametrize("text", ["9464", "host:port", "127.0.0.1:70000"])
def test_parse_listen_rejects(text):
    with pytest.raises(ConfigError):
        gm.parse_listen(text)


def test_labels():
    assert gm.transport_label("/ip4/1.2.3.4/udp/1/quic-v1") == "quic-v1"
    assert gm.transport_label("/ip6/::1/tcp/1/ws") == "ws"
    assert gm.transport_label("/memory/7") == "memory"
    assert gm.transport_label(None) == "other"
    assert gm.ip_version_label("/ip6/::1/tcp/1") == "ip6"
    assert gm.ip_version_label("/dns4/example.com/tcp/1") == "ip4"
    assert gm.ip_version_label("/memory/7") == "unknown"
    assert gm.dial_error_label(geventp2p.exceptions.P2PTimeoutError("x")) == "timeout"
    wrapped = geventp2p.exceptions.TransportError("dial failed")
    wrapped.__cause__ = ConnectionRefusedError(111, "Connection refused")
    assert gm.dial_error_label(wrapped) == "connection refused"
    assert gm.dial_error_label(ValueError("?")) == "other"


PATCHED_SCRIPT = """
from gevent import monkey
monkey.patch_all()
import urllib.request
import geventp2p
from geventp2p.metrics import start_host_metrics

a = geventp2p.new_host(listen=["/ip4/127.0.0.1/tcp/0"], services=["echo"])
b = geventp2p.new_host(listen=["/ip4/127.0.0.1/tcp/0"], services=["echo"])
ep = start_host_metrics(a, "127.0.0.1:0")
b.connect(a.p2p_addrs()[0], timeout=20)
s = b.new_stream(a.id, ["/echo/1.0.0"], timeout=20)
s.write(b"p" * 2000)
s.close_write()
assert len(s.read_all(timeout=20)) == 2000
a.network.wait_notifications(20)
# urllib is cooperative once patched: the server greenlet answers meanwhile
text = urllib.request.urlopen(ep.url, timeout=20).read().decode()
ep.close(); a.close(); b.close()
print(text)
"""


def test_works_under_monkey_patching():
    """Under ``monkey.patch_all()`` (a subprocess: patching is global) a blocking urllib scrape works."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", PATCHED_SCRIPT], capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    text = r.stdout.decode()
    assert value(text, "libp2p_swarm_connections_opened_total", dir="inbound") == 1
    assert value(text, "geventp2p_bandwidth_protocol_bytes_total", dir="out", protocol="/echo/1.0.0") == 2000
