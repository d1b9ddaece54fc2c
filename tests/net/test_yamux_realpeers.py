"""yamux against real js-libp2p and py-libp2p peers (TCP + Noise + yamux), both directions.

Uses the interop harness in tests/interop (installs the peers into a cache on first use;
skips when they cannot be installed, fails under CI=true).
"""

from __future__ import annotations

import os
import sys

import gevent
import pytest
from multiaddr import Multiaddr

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "interop"))
import interop_harness as ih  # noqa: E402

from geventp2p.core.peer import PeerId  # noqa: E402
from geventp2p.crypto.keys import generate_key  # noqa: E402
from geventp2p.net import multistream  # noqa: E402
from geventp2p.net.noise import NoiseTransport  # noqa: E402
from geventp2p.net.tcp import TcpTransport  # noqa: E402
from geventp2p.net.upgrader import Upgrader  # noqa: E402
from geventp2p.net.yamux import YamuxMuxer  # noqa: E402

pytestmark = pytest.mark.interop

KINDS = ["js", "py"]


def _refuse_inbound(conn):
    """Answer streams the remote opens (identify, ...) with "na" and close them."""

    def handle(s):
        try:
            multistream.handle(s, ["/geventp2p/none/1.0.0"], timeout=10)
        except Exception:
            pass
        s.close()

    while True:
        try:
            s = conn.accept_stream()
        except Exception:
            return
        gevent.spawn(handle, s)


def _echo_roundtrip(conn, payload, timeout=30):
    s = conn.new_stream(timeout=10)
    multistream.select_one_of(s, ["/echo/1.0.0"], timeout=10)
    writer = gevent.spawn(lambda: (s.write(payload), s.close_write()))
    got = bytearray()
    while True:
        d = s.read(timeout=timeout)
        if not d:
            break
        got += d
    writer.get(timeout=timeout)
    s.close()
    assert bytes(got) == payload


@pytest.mark.parametrize("kind", KINDS)
def test_we_dial_yamux(kind):
    ih.require_peer(kind)
    key = generate_key()
    up = Upgrader([NoiseTransport(key)], [YamuxMuxer()])
    with ih.start_peer(kind, muxer="yamux") as peer, gevent.Timeout(90):
        ma = Multiaddr(peer.info["addrs"][0])
        pid = PeerId.from_string(peer.info["peer_id"])
        raw = TcpTransport().dial(ma.decapsulate(f"/p2p/{pid}"), timeout=10)
        conn = up.upgrade_outbound(raw, pid, timeout=10)
        acceptor = gevent.spawn(_refuse_inbound, conn)
        try:
            assert conn.muxed.ping(timeout=10) >= 0
            _echo_roundtrip(conn, b"hello yamux")
            _echo_roundtrip(conn, os.urandom(4 * 1024 * 1024))  # beyond the 256 KiB window
            jobs = [gevent.spawn(_echo_roundtrip, conn, os.urandom(20_000)) for _ in range(100)]
            gevent.joinall(jobs, raise_error=True)
            # a reset stream does not hurt the connection
            s = conn.new_stream(timeout=10)
            multistream.select_one_of(s, ["/echo/1.0.0"], timeout=10)
            s.write(b"x")
            assert s.read(timeout=10) == b"x"
            s.reset()
            _echo_roundtrip(conn, b"after reset")
        finally:
            conn.close()
            acceptor.kill()


@pytest.mark.parametrize("kind", KINDS)
def test_they_dial_yamux(kind):
    ih.require_peer(kind)
    key = generate_key()
    up = Upgrader([NoiseTransport(key)], [YamuxMuxer()])
    conns = []

    def serve(s):
        try:
            multistream.handle(s, ["/echo/1.0.0"], timeout=10)
            while True:
                d = s.read(timeout=30)
                if not d:
                    break
                s.write(d)
            s.close_write()
        except Exception:
            s.reset()
        finally:
            s.close()

    def handler(raw):
        conn = up.upgrade_inbound(raw, timeout=10)
        conns.append(conn)
        while True:
            try:
                s = conn.accept_stream()
            except Exception:
                return
            gevent.spawn(serve, s)

    lst = TcpTransport().listen(Multiaddr("/ip4/127.0.0.1/tcp/0"), handler)
    try:
        ours = f"{lst.multiaddr}/p2p/{PeerId.from_public_key(key.public_key())}"
        for scenario, kw in (("echo", {"bytes": 1_000_000}), ("streams", {"count": 200, "bytes": 10_000})):
            res = gevent.spawn(ih.run_dialer, kind, ours, scenario, **kw).get(timeout=120)
            assert res["ok"], res
        assert res["streams"] == 200 and res["failures"] == 0
    finally:
        lst.close()
        for c in conns:
            c.close()
