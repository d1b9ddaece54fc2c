"""TLS 1.3 and WebSocket against real js-libp2p (@libp2p/tls, @libp2p/websockets) and
py-libp2p 0.8.1 (its TLSTransport and WebsocketTransport) peers.

Variants (yamux in all):

* ``tls``:    TCP + ``/tls/1.0.0``: the js peer offers TLS only;
* ``ws``:     ``/tcp/N/ws`` + Noise: the js peer listens on WebSocket only;
* ``ws-tls``: ``/tcp/N/ws`` + TLS.

Both directions: we dial a js listener (``Outbound``: our host keeps its default
security list, Noise then TLS, and its default transports, so it must reach a
TLS-only or WebSocket-only peer with the defaults), and js/py dialer processes
dial our host (``Inbound``).  Scenarios: ping, identify, echo of 1 MiB, 500 concurrent
echo streams on one connection, perf of 16 MiB up and 16 MiB down.  ``test_defaults_reach``
dials the TLS-only and WebSocket-only peers from a host built by ``new_host()`` with no
arguments at all.  Like the other interop modules: skipped when a peer cannot be
installed, a failure under CI=true.
"""

from __future__ import annotations

import os
import time
from typing import Any

import gevent
import pytest

import interop_harness as ih
from geventp2p.core.peer import PeerId
from geventp2p.defaults import new_host, unlimited_limits
from geventp2p.host.peerstore import AGENT_VERSION
from geventp2p.net.notify import NotifyBundle
from geventp2p.net.yamux import YamuxMuxer
from geventp2p.protocols.echo import echo
from geventp2p.protocols.perf import perf
from geventp2p.protocols.ping import ping
from geventp2p.sansio.yamux import YamuxConfig

pytestmark = pytest.mark.interop

ECHO, PING, IDENTIFY, PERF = "/echo/1.0.0", "/ipfs/ping/1.0.0", "/ipfs/id/1.0.0", "/perf/1.0.0"
KINDS = ("js", "py")
AGENT_PREFIX = {"js": "js-libp2p/", "py": "py-libp2p/"}
#: variant -> (js listen address, js --security, our expected security id, over WebSocket)
VARIANTS = {
    "tls": ("/ip4/127.0.0.1/tcp/0", "tls", "/tls/1.0.0", False),
    "ws": ("/ip4/127.0.0.1/tcp/0/ws", "noise", "/noise", True),
    "ws-tls": ("/ip4/127.0.0.1/tcp/0/ws", "tls", "/tls/1.0.0", True),
}
ECHO_BYTES = 1 << 20
STREAMS = 500
STREAM_BYTES = 1024
STREAM_LIMIT = 2048
PERF_BYTES = 16 << 20  # each way
OP_TIMEOUT = 60.0


class _World:
    def __init__(self) -> None:
        self.host = new_host(
            listen=["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/tcp/0/ws"],
            muxers=[YamuxMuxer(YamuxConfig(max_inbound_streams=STREAM_LIMIT, accept_backlog=STREAM_LIMIT))],
            services=["identify", "ping", "echo", "perf"],
            # 500 streams on one connection: each holds a 256 KiB window, past the default
            # 32 MiB connection memory limit
            limits=unlimited_limits(),
        )
        self.peers: dict[tuple[str, str], ih.PeerProcess] = {}

    def peer(self, kind: str, variant: str) -> ih.PeerProcess:
        ih.require_peer(kind)
        p = self.peers.get((kind, variant))
        if p is None:
            listen, security, _sec_id, _ws = VARIANTS[variant]
            p = self.peers[(kind, variant)] = ih.start_peer(kind, listen=listen,
                                                            extra_args=["--security", security])
        assert p.alive(), f"{kind} {variant} listener died\n{p.stderr_tail()}"
        return p

    def connected(self, kind: str, variant: str) -> tuple[Any, PeerId, Any]:
        p = self.peer(kind, variant)
        pid = PeerId.from_string(p.peer_id)
        with gevent.Timeout(OP_TIMEOUT):
            conn = self.host.connect(p.addr, timeout=20)
        return self.host, pid, conn

    def our_addr(self, ws: bool) -> str:
        for a in self.host.p2p_addrs():
            if ("/ws/" in str(a)) == ws:
                return str(a)
        raise AssertionError(f"no {'ws' if ws else 'tcp'} address in {self.host.p2p_addrs()}")

    def close(self) -> None:
        self.host.close()
        for p in self.peers.values():
            p.stop()


@pytest.fixture(scope="module")
def world():
    w = _World()
    try:
        yield w
    finally:
        w.close()


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("kind", KINDS)
class TestOutbound:
    """geventp2p (default security and transports) dials a js/py listener."""

    def test_connection_and_ping(self, world, kind, variant):
        h, pid, conn = world.connected(kind, variant)
        _listen, _sec, sec_id, ws = VARIANTS[variant]
        assert conn.security == sec_id and conn.muxer == "/yamux/1.0.0"
        assert ("/ws" in str(conn.remote_addr)) == ws
        with gevent.Timeout(OP_TIMEOUT):
            rtts = list(ping(h, pid, count=3, interval=0.05))
        assert len(rtts) == 3 and all(0 < r < 5 for r in rtts)

    def test_identify(self, world, kind, variant):
        h, pid, _conn = world.connected(kind, variant)
        deadline = time.monotonic() + 10
        while not h.peerstore.get(pid, AGENT_VERSION, ""):
            assert time.monotonic() < deadline, "identify did not complete"
            gevent.sleep(0.02)
        assert h.peerstore.get(pid, AGENT_VERSION, "").startswith(AGENT_PREFIX[kind])
        assert {PING, ECHO, IDENTIFY} <= set(h.peerstore.get_protocols(pid))
        pk = h.peerstore.pubkey(pid)
        assert pk is not None and PeerId.from_public_key(pk) == pid

    def test_echo_1mib(self, world, kind, variant):
        h, pid, _conn = world.connected(kind, variant)
        data = os.urandom(ECHO_BYTES)
        with gevent.Timeout(OP_TIMEOUT):
            assert echo(h, pid, data, timeout=OP_TIMEOUT) == data

    def test_concurrent_streams(self, world, kind, variant):
        h, pid, conn = world.connected(kind, variant)

        ih.concurrent_echo_streams(h, pid, streams=STREAMS, stream_bytes=STREAM_BYTES, timeout=OP_TIMEOUT,
                                   protocol=ECHO)
        assert h.network.conns_to_peer(pid) == [conn]

    def test_perf_16mib(self, world, kind, variant):
        """Upload 16 MiB, then download 16 MiB, then both on one stream."""
        h, pid, conn = world.connected(kind, variant)
        n = PERF_BYTES
        with gevent.Timeout(3 * OP_TIMEOUT):
            up = perf(h, pid, n, 0, timeout=OP_TIMEOUT)
            down = perf(h, pid, 0, n, timeout=OP_TIMEOUT)
            both = perf(h, pid, n, n, timeout=OP_TIMEOUT)
        assert (up.upload_bytes, up.download_bytes) == (n, 0)
        assert (down.upload_bytes, down.download_bytes) == (0, n)
        assert (both.upload_bytes, both.download_bytes) == (n, n)
        assert down.download_time > 0 and both.download_time > 0
        assert h.network.conns_to_peer(pid) == [conn]
        assert world.peer(kind, variant).alive()


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("kind", KINDS)
class TestInbound:
    """A js/py dialer process dials our host (which offers Noise and TLS, TCP and WebSocket)."""

    def _dial(self, world, kind: str, variant: str, scenario: str, extra_args: tuple[str, ...] = (),
              **kw: Any) -> dict:
        ih.require_peer(kind)
        _listen, security, sec_id, ws = VARIANTS[variant]
        res = ih.run_dialer(kind, world.our_addr(ws), scenario, timeout=OP_TIMEOUT,
                            extra_args=["--security", security, *extra_args], **kw)
        assert res["ok"], f"{kind} dialer, {variant}, {scenario} against geventp2p: {res}"
        return res

    def _inbound_securities(self, world, pid: PeerId) -> set[str]:
        return {c.security for c in world.host.network.conns_to_peer(pid)}

    def test_ping(self, world, kind, variant):
        res = self._dial(world, kind, variant, "ping", count=3)
        assert len(res["rtts"]) == 3

    def test_identify(self, world, kind, variant):
        res = self._dial(world, kind, variant, "identify")
        assert res["peer_id"] == str(world.host.id)
        assert {PING, ECHO, IDENTIFY} <= set(res["protocols"])
        assert res["agentVersion"].startswith("geventp2p")
        _listen, _sec, _sec_id, ws = VARIANTS[variant]
        assert any(("/ws" in a) == ws for a in res["listenAddrs"])

    def test_echo_1mib(self, world, kind, variant):
        res = self._dial(world, kind, variant, "echo", bytes=ECHO_BYTES)
        assert res["ok"]

    def test_concurrent_streams(self, world, kind, variant):
        res = self._dial(world, kind, variant, "streams", count=STREAMS, bytes=STREAM_BYTES)
        assert res["streams"] == STREAMS and res["failures"] == 0, res

    def test_perf_16mib(self, world, kind, variant):
        n = PERF_BYTES
        res = self._dial(world, kind, variant, "perf", extra_args=("--upload", str(n), "--download", str(n)))
        assert res["type"] == "final"
        assert res["uploadBytes"] == n and res["downloadBytes"] == n
        assert res["timeSeconds"] > 0

    def test_security_used(self, world, kind, variant):
        """Our side of a js dialer's connection really is TLS / WebSocket."""
        seen: list[tuple[str, str]] = []
        bundle = NotifyBundle(connected=lambda _net, c: seen.append((c.security, str(c.remote_addr)))
                              if c.direction == "inbound" else None)
        world.host.network.notify(bundle)
        try:
            self._dial(world, kind, variant, "ping", count=1)
            deadline = time.monotonic() + 10
            while not seen:  # notifications are delivered on their own greenlet
                assert time.monotonic() < deadline, "no inbound connection notified"
                gevent.sleep(0.02)
        finally:
            world.host.network.stop_notify(bundle)
        _listen, _sec, sec_id, ws = VARIANTS[variant]
        assert [(sec, "/ws" in addr) for sec, addr in seen] == [(sec_id, ws)]


@pytest.mark.parametrize("variant", ["tls", "ws"])
@pytest.mark.parametrize("kind", KINDS)
def test_defaults_reach(world, kind, variant):
    """A peer that offers only TLS (TCP) or only WebSocket (Noise) is reached by a host
    built with ``new_host()`` and no arguments: default security, muxers, transports."""
    p = world.peer(kind, variant)
    pid = PeerId.from_string(p.peer_id)
    h = new_host()
    try:
        with gevent.Timeout(OP_TIMEOUT):
            conn = h.connect(p.addr, timeout=20)
            rtts = list(ping(h, pid, count=2, interval=0.05))
        _listen, _sec, sec_id, ws = VARIANTS[variant]
        assert conn.security == sec_id and conn.muxer == "/yamux/1.0.0"
        assert ("/ws" in str(conn.remote_addr)) == ws
        assert len(rtts) == 2
    finally:
        h.close()
