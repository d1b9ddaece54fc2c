"""Hostile peers against mplex, which has no ping: a peer trickling a frame, a peer
that never reads, and a frozen peer are each dropped by the read or write timeout
(short timeouts configured here; the defaults drop them within 60 s).  The peer is
driven by hand over a socketpair, frames built with ``pack_mplex_header``."""

from __future__ import annotations

import socket
import time

import gevent
import gevent.socket as gsocket
import pytest

from geventp2p._speedups import frames
from geventp2p.core.rcmgr import NullScope
from geventp2p.exceptions import ConnectionClosedError, P2PTimeoutError
from geventp2p.net._muxconn import WRITE_FAILURE_DRAIN
from geventp2p.net.mplex import MplexConfig, MplexMuxer
from geventp2p.net.rawconn import SocketConn

pack = frames.pack_mplex_header
NEW, MSG_I, RESET_I = 0, 2, 6


def victim(**cfg: float) -> tuple[object, gsocket.socket]:
    a, b = socket.socketpair()
    for s in (a, b):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    conn = MplexMuxer(MplexConfig(**cfg)).create(SocketConn(a), False, NullScope())
    return conn, gsocket.socket(fileno=b.detach())


def timed_out(conn: object) -> bool:
    err = conn.error  # type: ignore[attr-defined]
    return isinstance(err, ConnectionClosedError) and isinstance(err.__cause__, P2PTimeoutError)


def test_defaults_drop_within_60s():
    cfg = MplexConfig()
    assert 0 < cfg.read_timeout * 1.25 <= 60
    assert 0 < cfg.write_timeout <= 60


def test_trickling_peer_is_dropped_by_the_read_timeout():
    with gevent.Timeout(30):
        conn, peer = victim(read_timeout=0.5)
        peer.sendall(pack(1, NEW, 0) + pack(1, MSG_I, 1000))  # a stream, then a 1000-byte message...

        def trickle() -> None:  # ...whose body comes one byte at a time
            try:
                while True:
                    peer.sendall(b"x")
                    gevent.sleep(0.05)
            except OSError:
                pass

        g = gevent.spawn(trickle)
        t0 = time.monotonic()
        try:
            assert conn.wait_closed(10)
            assert time.monotonic() - t0 < 5
            assert timed_out(conn), conn.error
            assert "partly received" in str(conn.error.__cause__)
        finally:
            g.kill()
            conn.close()
            peer.close()


def test_peer_that_never_reads_is_dropped_by_the_write_timeout():
    with gevent.Timeout(30):
        conn, peer = victim(write_timeout=0.5, read_timeout=0)
        peer.sendall(pack(1, NEW, 0))
        stream = conn.accept_stream(timeout=5)
        payload = b"y" * (256 * 1024)
        t0 = time.monotonic()

        def writer() -> None:
            while True:
                stream.write(payload, timeout=20)

        g = gevent.spawn(writer)
        try:
            with pytest.raises(ConnectionClosedError):
                g.get(timeout=10)  # writes fail once a connection write timed out...
            assert time.monotonic() - t0 < 5
            # ...and the session ends after the bounded drain of what the peer sent
            assert conn.wait_closed(WRITE_FAILURE_DRAIN + 10)
            assert timed_out(conn), conn.error
            assert "write" in str(conn.error)
        finally:
            g.kill()
            conn.close()
            peer.close()


def test_frozen_peer_without_streams_is_dropped_by_the_read_timeout():
    with gevent.Timeout(30):
        conn, peer = victim(read_timeout=0.5)
        peer.sendall(pack(1, NEW, 0) + pack(1, RESET_I, 0))  # it spoke once, then froze
        t0 = time.monotonic()
        try:
            assert conn.wait_closed(10)
            assert time.monotonic() - t0 < 5
            assert timed_out(conn), conn.error
            assert "no open stream" in str(conn.error.__cause__)
        finally:
            conn.close()
            peer.close()


def test_frozen_peer_is_dropped_once_we_write_to_it():
    """Frozen with a stream open: kept while nothing happens (an idle stream is
    legitimate), dropped by the write timeout as soon as we write more than it holds."""
    with gevent.Timeout(30):
        conn, peer = victim(read_timeout=0.3, write_timeout=0.5)
        peer.sendall(pack(1, NEW, 0))
        stream = conn.accept_stream(timeout=5)
        try:
            assert not conn.wait_closed(1.0)  # > 3 x read_timeout: still open
            assert not conn.closed
            g = gevent.spawn(stream.write, b"z" * (4 * 1024 * 1024), 20)  # more than the send queue holds
            with pytest.raises(ConnectionClosedError):
                g.get(timeout=10)
            assert conn.wait_closed(WRITE_FAILURE_DRAIN + 10)
            assert timed_out(conn), conn.error
        finally:
            conn.close()
            peer.close()


def test_a_talking_peer_is_not_dropped():
    with gevent.Timeout(30):
        conn, peer = victim(read_timeout=0.3, write_timeout=0.5)
        try:
            for i in range(8):  # open and close streams for 4 x read_timeout
                peer.sendall(pack(i, NEW, 0) + pack(i, RESET_I, 0))
                assert not conn.wait_closed(0.15)
            assert not conn.closed
        finally:
            conn.close()
            peer.close()
