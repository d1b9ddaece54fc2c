"""Hostile peer: yamux SYN+RST churn that makes us queue ACKs faster than the peer
reads them.  The victim's outbound control queue stays bounded (its reader stops
reading while the bound is reached), a peer that never reads is dropped by the
write timeout, and another connection of the same process keeps working."""

from __future__ import annotations

import socket
import time

import gevent
import gevent.event
import gevent.socket as gsocket
import pytest

from geventp2p._speedups import frames
from geventp2p.core.rcmgr import NullScope
from geventp2p.exceptions import ConnectionClosedError
from geventp2p.net.rawconn import SocketConn
from geventp2p.net.yamux import YamuxConfig, YamuxMuxer
from geventp2p.testing.muxer_suite import socketpair_factory

pack = frames.pack_yamux_header
BOUND = 256  # max_control_backlog of the victim (frames)


def churn(first: int, count: int) -> bytes:
    """``count`` streams opened (SYN) and reset (RST) at once, client parity."""
    return b"".join(pack(1, 1, sid, 0) + pack(1, 8, sid, 0) for sid in range(first, first + 2 * count, 2))


def victim_pair(write_timeout: float) -> tuple[object, gsocket.socket]:
    a, b = socket.socketpair()
    for s in (a, b):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    cfg = YamuxConfig(
        max_control_backlog=BOUND, write_timeout=write_timeout,
        initial_ping=False, enable_keepalive=False, rtt_interval=0,
    )
    conn = YamuxMuxer(cfg).create(SocketConn(a), False, NullScope())
    return conn, gsocket.socket(fileno=b.detach())


def test_churning_peer_that_never_reads_is_bounded_and_dropped():
    with gevent.Timeout(60):
        conn, peer = victim_pair(write_timeout=3.0)
        # a bystander connection in the same process, echoing throughout
        client, server = socketpair_factory(YamuxMuxer())()
        worst = [0.0]
        peak = [0]
        stop = [False]

        def bystander() -> None:
            while not stop[0]:
                t0 = time.monotonic()
                s = client.open_stream(timeout=10)
                s.write(b"ping")
                s.close_write()
                r = server.accept_stream(timeout=10)
                assert r.read_exactly(4, timeout=10) == b"ping"
                r.close()
                s.close()
                worst[0] = max(worst[0], time.monotonic() - t0)
                gevent.sleep(0.01)

        def monitor() -> None:
            while not conn.closed:
                peak[0] = max(peak[0], conn._session.bytes_to_send)
                gevent.sleep(0.001)

        def attacker() -> None:
            sid = 1
            try:
                while not conn.closed:
                    peer.sendall(churn(sid, 2048))  # 48 KiB: 2,048 ACKs owed
                    sid += 4096
            except OSError:
                pass  # the victim hung up

        gs = [gevent.spawn(bystander), gevent.spawn(monitor), gevent.spawn(attacker)]
        t0 = time.monotonic()
        try:
            assert conn.wait_closed(30), "a peer that never reads must be dropped"
            elapsed = time.monotonic() - t0
            assert isinstance(conn.error, ConnectionClosedError)
            assert "write" in str(conn.error)
            assert elapsed < 20
            # the reader stopped reading instead of queueing ACKs without bound:
            # at most the bound plus what one read (256 KiB: 10,922 SYN+RST) owes
            assert conn.read_pauses >= 1
            assert peak[0] <= BOUND * 12 + (256 * 1024 // 24) * 12 + 4096, peak[0]
            stop[0] = True
            gs[0].get(timeout=15)
            assert worst[0] < 2.0, f"bystander stalled {worst[0]:.2f}s"
        finally:
            stop[0] = True
            gevent.killall(gs)
            conn.close()
            peer.close()
            client.close()
            server.close()


def test_churning_peer_that_reads_slowly_is_paced_not_dropped():
    """A peer reading the ACKs at its own pace makes our reader wait for it: the
    queue stays bounded, and the connection lives on while the peer reads."""
    with gevent.Timeout(60):
        conn, peer = victim_pair(write_timeout=5.0)
        peak = [0]
        acks = [0]
        reader = frames.YamuxFrameReader()
        done = gevent.event.Event()

        def slow_reader() -> None:
            while not done.is_set():
                data = peer.recv(4096)
                if not data:
                    return
                acks[0] += sum(1 for f in reader.feed(data) if f[1] & 2)
                gevent.sleep(0.002)

        def monitor() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], conn._session.bytes_to_send)
                gevent.sleep(0.001)

        gs = [gevent.spawn(slow_reader), gevent.spawn(monitor)]
        try:
            total = 0
            for i in range(20):
                peer.sendall(churn(1 + 2 * total, 2048))
                total += 2048
            deadline = time.monotonic() + 40
            while acks[0] < total and time.monotonic() < deadline:
                gevent.sleep(0.05)
            assert acks[0] == total  # every SYN got its ACK, nothing dropped
            assert not conn.closed
            assert conn.read_pauses >= 1
            assert peak[0] <= BOUND * 12 + (256 * 1024 // 24) * 12 + 4096, peak[0]
        finally:
            done.set()
            gevent.killall(gs)
            conn.close()
            peer.close()


@pytest.mark.parametrize("bound", [1, 4096])
def test_config_bound(bound):
    assert YamuxConfig(max_control_backlog=bound).max_control_backlog == bound
