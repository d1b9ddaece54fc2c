"""A failed connection write must not lose data the peer already sent.

A peer may send its last data and FIN, then close its socket.  If our side writes
in between (an ACK, a window update) the write fails (EPIPE), but everything the
peer sent is still in our receive buffer: streams must still read it to the end.
"""

from __future__ import annotations

import os
import socket

import gevent
import gevent.socket as gsocket

from geventp2p._speedups import frames as F
from geventp2p.net.rawconn import SocketConn
from geventp2p.net.yamux import YamuxMuxer
from geventp2p.sansio.yamux import YamuxConfig
from geventp2p.testing.leakcheck import no_leaks


def _frame(ftype, flags, sid, length, body=b""):
    return F.pack_yamux_header(ftype, flags, sid, length) + body


def test_data_and_fin_survive_a_failed_write(monkeypatch):
    import geventp2p.net.yamux as ymod

    # small reads, so the write fails while most of the data is still unread in the kernel
    monkeypatch.setattr(ymod, "READ_SIZE", 4096)
    cfg = YamuxConfig(initial_ping=False, enable_keepalive=False, rtt_interval=0)
    payload = os.urandom(250_000)  # just under the initial 256 KiB window
    with no_leaks(timeout=20):
        a, b = socket.socketpair()
        conn = YamuxMuxer(cfg).create(SocketConn(a, is_initiator=False), False)
        peer = gsocket.socket(fileno=b.detach())
        wire = [_frame(F.TYPE_WINDOW_UPDATE, F.FLAG_SYN, 1, 0)]
        for i in range(0, len(payload), 16384):
            chunk = payload[i : i + 16384]
            wire.append(_frame(F.TYPE_DATA, 0, 1, len(chunk), chunk))
        wire.append(_frame(F.TYPE_WINDOW_UPDATE, F.FLAG_FIN, 1, 0))

        def send_then_close():
            peer.sendall(b"".join(wire))
            peer.close()  # the peer is gone: our next write fails with EPIPE

        sender = gevent.spawn(send_then_close)
        try:
            stream = conn.accept_stream(timeout=5)
            sender.join(timeout=5)  # the peer has closed; most of its data is unread
            stream.write(b"ack")  # queued; the connection write then fails (EPIPE)
            gevent.sleep(0.05)
            got = bytearray()
            while True:
                d = stream.read(4096, timeout=5)  # small reads: window updates go out
                if not d:
                    break
                got += d
                gevent.sleep(0)
            assert bytes(got) == payload
            # the connection is gone for writing: a clear error, not a hang
            import pytest

            from geventp2p.exceptions import ConnectionClosedError

            with pytest.raises(ConnectionClosedError):
                stream.write(b"more", timeout=5)
            assert conn.wait_closed(timeout=5)
        finally:
            conn.close()
            sender.kill()


def test_mplex_data_and_close_survive_a_failed_write():
    from geventp2p.net.mplex import MplexMuxer

    payload = os.urandom(250_000)
    with no_leaks(timeout=20):
        a, b = socket.socketpair()
        conn = MplexMuxer().create(SocketConn(a, is_initiator=False), False)
        peer = gsocket.socket(fileno=b.detach())
        wire = [F.pack_mplex_header(0, F.NEW_STREAM, 1) + b"0"]
        for i in range(0, len(payload), 16384):
            chunk = payload[i : i + 16384]
            wire.append(F.pack_mplex_header(0, F.MESSAGE_INITIATOR, len(chunk)) + chunk)
        wire.append(F.pack_mplex_header(0, F.CLOSE_INITIATOR, 0))

        def send_then_close():
            peer.sendall(b"".join(wire))
            peer.close()

        sender = gevent.spawn(send_then_close)
        try:
            stream = conn.accept_stream(timeout=5)
            sender.join(timeout=5)
            stream.write(b"ack")  # queued; the connection write then fails (EPIPE)
            gevent.sleep(0.05)
            got = bytearray()
            while True:
                d = stream.read(4096, timeout=5)
                if not d:
                    break
                got += d
            assert bytes(got) == payload
            import pytest

            from geventp2p.exceptions import ConnectionClosedError

            with pytest.raises(ConnectionClosedError):
                stream.write(b"more", timeout=5)
        finally:
            conn.close()
            sender.kill()
