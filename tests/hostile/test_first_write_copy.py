"""The first write of a lazily negotiated stream never copies a large payload: the
pending multistream proposal goes out as its own buffer (small writes still join
it, one frame).  One shared 1 MiB buffer written on many streams to a slow reader
must not cost 1 MiB per stream."""

from __future__ import annotations

import socket
import tracemalloc

import gevent
import gevent.socket as gsocket
import pytest

from geventp2p._speedups import frames
from geventp2p.net import multistream
from geventp2p.net.mplex import MplexMuxer
from geventp2p.net.rawconn import SocketConn
from geventp2p.testing.muxer_suite import socketpair_factory
from geventp2p.net.yamux import YamuxMuxer

MiB = 1024 * 1024
N = 8  # streams


@pytest.mark.parametrize("muxer", [YamuxMuxer, MplexMuxer])
@pytest.mark.parametrize("kind", [bytes, memoryview])
def test_first_write_of_a_large_payload_is_not_copied(muxer, kind):
    with gevent.Timeout(30):
        a, b = socket.socketpair()  # b is never read: a stalled peer
        client = muxer().create(SocketConn(a, is_initiator=True), True)
        payload = kind(b"p" * MiB)
        streams = [multistream.select_lazy(client.open_stream(timeout=5), "/big/1.0.0") for _ in range(N)]
        writers = []
        tracemalloc.start()
        try:
            for s in streams:  # each write blocks once the window / send queue is full
                writers.append(gevent.spawn(s.write, payload, 20))
            gevent.sleep(0.2)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            gevent.killall(writers)
            client.close()
            b.close()
        # the old code copied prefix + payload: at least N MiB; what is left is the
        # muxer's own queueing, bounded by its window / send queue, not by the payload
        assert peak < N * MiB // 4, f"{N} first writes of 1 MiB allocated {peak} bytes"


def test_small_first_write_joins_the_prefix():
    """A small first write still leaves as one Data frame: proposal + data."""
    with gevent.Timeout(30):
        a, b = socket.socketpair()
        client = YamuxMuxer().create(SocketConn(a, is_initiator=True), True)
        peer = gsocket.socket(fileno=b.detach())
        try:
            s = multistream.select_lazy(client.open_stream(timeout=5), "/small/1.0.0")
            s.write(b"hello")
            reader = frames.YamuxFrameReader()
            bodies: list[bytes] = []
            while not any(body.endswith(b"hello") for body in bodies):
                data = peer.recv(65536)
                assert data
                bodies.extend(bytes(f[4]) for f in reader.feed(data) if f[0] == 0 and f[3])
            assert bodies[-1].endswith(b"/small/1.0.0\nhello") and b"/multistream/1.0.0" in bodies[-1]
        finally:
            client.close()
            peer.close()


def test_large_first_write_is_metered_whole(monkeypatch):
    """The prefix written on its own and the payload are both reported to the meter."""
    from geventp2p.net.yamux import YamuxConn

    # a bare muxer has no peer; the meter asks for one (YamuxConn has slots: class level)
    monkeypatch.setattr(YamuxConn, "remote_peer", None, raising=False)

    class Meter:
        sent = 0

        def log_sent(self, n, peer=None, protocol=None):
            Meter.sent += n

        def log_recv(self, n, peer=None, protocol=None):
            pass

    with gevent.Timeout(30):
        client, server = socketpair_factory(YamuxMuxer())()
        try:
            s = multistream.select_lazy(client.open_stream(timeout=5), "/big/1.0.0")
            prefix = len(s._prefix)
            s._meter = Meter()
            payload = b"q" * (64 * 1024)
            s.write(payload, timeout=10)
            s.close_write()
            assert Meter.sent == prefix + len(payload)
            r = server.accept_stream(timeout=5)
            got = r.read_all(timeout=10)
            assert got.endswith(b"/big/1.0.0\n" + payload)
        finally:
            client.close()
            server.close()
