"""QUIC v1 (``/quic-v1``) against real js-libp2p (@chainsafe/libp2p-quic) and py-libp2p
0.8.1 (its aioquic-based QUIC transport) peers.

Both directions: our host (default transports: TCP, QUIC, WebSocket) dials a peer
that listens on QUIC only (``Outbound``), and dialer processes dial our QUIC address
(``Inbound``).  Scenarios: ping, identify, echo of 1 MiB, 500 concurrent echo
streams on one connection, perf 16 MiB up and down.  Like the other interop
modules: skipped when a peer cannot be installed, a failure under CI=true.
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
from geventp2p.net.quic import QuicConfig, QuicTransport
from geventp2p.protocols.echo import echo
from geventp2p.protocols.perf import perf
from geventp2p.protocols.ping import ping

pytestmark = pytest.mark.interop

ECHO, PING, IDENTIFY, PERF = "/echo/1.0.0", "/ipfs/ping/1.0.0", "/ipfs/id/1.0.0", "/perf/1.0.0"
KINDS = ("js", "py")
AGENT_PREFIX = {"js": "js-libp2p/", "py": "py-libp2p/"}
QUIC_LISTEN = "/ip4/127.0.0.1/udp/0/quic-v1"
ECHO_BYTES = 1 << 20
PERF_BYTES = 16 << 20
STREAMS = 500
STREAM_BYTES = 1024
STREAM_LIMIT = 2048
OP_TIMEOUT = 90.0


class _World:
    host: Any
    peers: dict[str, ih.PeerProcess]

    def peer(self, kind: str) -> ih.PeerProcess:
        ih.require_peer(kind)
        p = self.peers.get(kind)
        if p is None:
            p = self.peers[kind] = ih.start_peer(kind, listen=QUIC_LISTEN)
        assert p.alive(), f"{kind} QUIC listener died\n{p.stderr_tail()}"
        return p

    def connected(self, kind: str) -> tuple[Any, PeerId, Any]:
        p = self.peer(kind)
        pid = PeerId.from_string(p.peer_id)
        with gevent.Timeout(OP_TIMEOUT):
            conn = self.host.connect(p.addr, timeout=20)
        return self.host, pid, conn

    def our_addr(self) -> str:
        for a in self.host.p2p_addrs():
            if "/quic-v1/" in str(a):
                return str(a)
        raise AssertionError(f"no QUIC address in {self.host.p2p_addrs()}")

    def close(self) -> None:
        self.host.close()
        for p in self.peers.values():
            p.stop()


@pytest.fixture(scope="module")
def world():
    w = _World()
    # the QUIC transport with room for STREAMS + more streams per connection
    from geventp2p.crypto.keys import generate_key

    key = generate_key()
    cfg = QuicConfig(max_incoming_streams=STREAM_LIMIT, accept_backlog=STREAM_LIMIT)
    w.host = new_host(
        key=key,
        listen=["/ip4/127.0.0.1/tcp/0", QUIC_LISTEN],
        transports=["tcp", QuicTransport(key, cfg), "ws"],
        services=["identify", "ping", "echo", "perf"],
        limits=unlimited_limits(),
    )
    w.peers = {}
    try:
        yield w
    finally:
        w.close()


@pytest.mark.parametrize("kind", KINDS)
class TestOutbound:
    """geventp2p dials a QUIC-only js listener."""

    def test_connection_and_ping(self, world, kind):
        h, pid, conn = world.connected(kind)
        assert conn.muxer == "/quic-v1" and str(conn.remote_addr).endswith("/quic-v1")
        with gevent.Timeout(OP_TIMEOUT):
            rtts = list(ping(h, pid, count=3, interval=0.05))
        assert len(rtts) == 3 and all(0 < r < 5 for r in rtts)

    def test_defaults_reach_a_quic_only_peer(self, world, kind):
        p = world.peer(kind)
        h = new_host(listen=[])  # the default transports include QUIC
        try:
            with gevent.Timeout(OP_TIMEOUT):
                conn = h.connect(p.addr, timeout=20)
            assert conn.muxer == "/quic-v1"
        finally:
            h.close()

    def test_identify(self, world, kind):
        h, pid, _conn = world.connected(kind)
        deadline = time.monotonic() + 10
        while not h.peerstore.get(pid, AGENT_VERSION, ""):
            assert time.monotonic() < deadline, "identify did not complete"
            gevent.sleep(0.02)
        assert h.peerstore.get(pid, AGENT_VERSION, "").startswith(AGENT_PREFIX[kind])
        assert {PING, ECHO, IDENTIFY} <= set(h.peerstore.get_protocols(pid))
        assert any(str(a).endswith("/quic-v1") for a in h.peerstore.addrs(pid))

    def test_echo_1mib(self, world, kind):
        h, pid, _conn = world.connected(kind)
        data = os.urandom(ECHO_BYTES)
        with gevent.Timeout(OP_TIMEOUT):
            assert echo(h, pid, data, timeout=OP_TIMEOUT) == data

    def test_concurrent_streams(self, world, kind):
        h, pid, conn = world.connected(kind)

        ih.concurrent_echo_streams(h, pid, streams=STREAMS, stream_bytes=STREAM_BYTES, timeout=OP_TIMEOUT,
                                   protocol=ECHO)
        assert h.network.conns_to_peer(pid) == [conn]

    def test_perf(self, world, kind):
        h, pid, _conn = world.connected(kind)
        with gevent.Timeout(OP_TIMEOUT):
            up = perf(h, pid, PERF_BYTES, 0, timeout=OP_TIMEOUT)
            down = perf(h, pid, 0, PERF_BYTES, timeout=OP_TIMEOUT)
        assert (up.upload_bytes, up.download_bytes) == (PERF_BYTES, 0)
        assert (down.upload_bytes, down.download_bytes) == (0, PERF_BYTES)


# py-libp2p 0.8.1's QUIC stream read() (libp2p/transport/quic/stream.py) looks at its
# receive buffer under one lock, passes a trio checkpoint, then looks at the stream state
# under another.  When our last data arrives together with our FIN in that gap, read()
# raises (QUICStreamClosedError, which its NetStream turns into a reset, when its own
# write side is closed; its EOF otherwise) with that data still in its buffer: the reader
# loses the tail of the stream.  Shown by widening the gap with a 2 ms sleep: "closed with
# 17777 bytes buffered", perf short by exactly that.  Sending the last data and FIN
# together is what QUIC peers do, so we do not change it for py.  The gap is narrow; a
# py dialer meets it most where it reads after half-closing, so it reads its echo back
# before half-closing (we send no FIN until it has, and it reads nothing after), and its
# perf uploads only (perf's download comes after the client's FIN by protocol).
PY_READ_FIRST = {"py": ["--echo-read-first"], "js": []}


@pytest.mark.parametrize("kind", KINDS)
class TestInbound:
    """A js dialer process dials our QUIC address."""

    def _dial(self, world, kind: str, scenario: str, **kw: Any) -> dict:
        ih.require_peer(kind)
        res = ih.run_dialer(kind, world.our_addr(), scenario, timeout=OP_TIMEOUT, **kw)
        assert res["ok"], f"{kind} dialer, quic, {scenario} against geventp2p: {res}"
        return res

    def test_ping(self, world, kind):
        res = self._dial(world, kind, "ping", count=3)
        assert len(res["rtts"]) == 3

    def test_identify(self, world, kind):
        res = self._dial(world, kind, "identify")
        assert res["peer_id"] == str(world.host.id)
        assert {PING, ECHO, IDENTIFY} <= set(res["protocols"])
        assert res["agentVersion"].startswith("geventp2p")
        # identify advertises every listen address: TCP and QUIC
        assert any(a.endswith("/quic-v1") or "/quic-v1/" in a for a in res["listenAddrs"])
        assert any("/tcp/" in a for a in res["listenAddrs"])

    def test_echo_1mib(self, world, kind):
        res = self._dial(world, kind, "echo", bytes=ECHO_BYTES, extra_args=PY_READ_FIRST[kind])
        assert res["bytes"] == ECHO_BYTES

    def test_concurrent_streams(self, world, kind):
        res = self._dial(world, kind, "streams", count=STREAMS, bytes=STREAM_BYTES,
                         extra_args=PY_READ_FIRST[kind])
        assert res["streams"] == STREAMS and res["failures"] == 0, res

    def test_perf(self, world, kind):
        # py uploads only: its download would read after its own FIN (see PY_READ_FIRST; the
        # CI run of 52d5744 lost 568 bytes that way).  Our sending to py's QUIC reader is
        # covered by TestOutbound.test_perf (py's perf server reads our 16 MiB upload).
        down = PERF_BYTES if kind != "py" else 0
        extra = ["--upload", str(PERF_BYTES), "--download", str(down)]
        res = self._dial(world, kind, "perf", extra_args=extra)
        assert res["type"] == "final"
        assert res["uploadBytes"] == PERF_BYTES and res["downloadBytes"] == down
