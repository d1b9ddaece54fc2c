"""multistream.handle_deferred: the responder's reply is held as the raw connection's pending
prefix and rides with its first write."""

from __future__ import annotations

import gevent
import gevent.socket as gsocket
import pytest

from geventp2p.exceptions import NegotiationError
from geventp2p.net import multistream
from geventp2p.net.rawconn import SocketConn
from geventp2p.sansio.multistream import encode_message
from _scripts_transport.leakcheck import no_leaks  # noqa: F401  (autouse fixture)
from _scripts_transport.recording import RecordingConn

HEADER = encode_message("/multistream/1.0.0")
NA = encode_message("na")


@pytest.fixture
def pair():
    a, b = gsocket.socketpair()
    ca, cb = SocketConn(a, is_initiator=True), SocketConn(b)
    with gevent.Timeout(10):
        yield ca, cb
    ca.close()
    cb.close()


def read_exactly(conn, n, timeout=2):
    out = b""
    while len(out) < n:
        chunk = conn.read(n - len(out), timeout=timeout)
        assert chunk, "unexpected EOF"
        out += chunk
    return out


def test_pipelining_initiator_gets_header_echo_and_data_in_one_write():
    a, b = gsocket.socketpair()
    ca, rec = SocketConn(a, is_initiator=True), RecordingConn(b)
    try:
        with gevent.Timeout(10):
            ca.write(HEADER + encode_message("/p") + b"hello")
            gevent.sleep(0.01)  # all of it is readable before the responder starts
            assert multistream.handle_deferred(rec, ["/p"]) == "/p"
            pending = HEADER + encode_message("/p")
            assert rec._prefix == pending and rec._pending
            assert rec.writes == []
            assert rec.read(100) == b"hello"  # readable: the reply is still held back
            assert rec.writes == []
            rec.write(b"world")
            assert rec.writes == [pending + b"world"]
            assert not rec._pending  # the fast path again
            assert read_exactly(ca, len(pending) + 5) == pending + b"world"
            rec.write(b"!")
            assert rec.writes[-1] == b"!"
    finally:
        ca.close()
        rec.close()


def test_pending_reply_rides_with_writev():
    a, b = gsocket.socketpair()
    ca, cb = SocketConn(a, is_initiator=True), SocketConn(b)
    try:
        with gevent.Timeout(10):
            ca.write(HEADER + encode_message("/p") + b"x")
            gevent.sleep(0.01)
            assert multistream.handle_deferred(cb, ["/p"], timeout=5) == "/p"
            assert cb.read(10, timeout=2) == b"x"
            cb.writev([b"a", b"b"])
            expected = HEADER + encode_message("/p") + b"ab"
            assert read_exactly(ca, len(expected)) == expected
    finally:
        ca.close()
        cb.close()


def test_waiting_initiator_gets_header_and_echo_before_we_block(pair):
    ca, cb = pair
    result = {}

    def responder():
        result["r"] = multistream.handle_deferred(cb, ["/p"], timeout=5)

    g = gevent.spawn(responder)
    # an initiator that waits for the header before proposing (nothing pipelined)
    assert read_exactly(ca, len(HEADER)) == HEADER
    ca.write(HEADER + encode_message("/p"))
    assert read_exactly(ca, len(encode_message("/p"))) == encode_message("/p")
    g.get(timeout=5)
    assert result["r"] == "/p"
    assert not cb._pending


def test_select_one_of_against_deferred_responder(pair):
    ca, cb = pair
    g = gevent.spawn(multistream.handle_deferred, cb, ["/b"], 5)
    assert multistream.select_one_of(ca, ["/a", "/b"], timeout=5) == "/b"
    assert g.get(timeout=5) == "/b"
    assert not cb._pending


def test_lazy_initiator_then_deferred_reply(pair):
    ca, cb = pair
    lazy = multistream.select_lazy(ca, "/p", 5)
    lazy.write(b"ping")

    def responder():
        assert multistream.handle_deferred(cb, ["/p"], timeout=5) == "/p"
        assert read_exactly(cb, 4) == b"ping"
        cb.write(b"pong")

    g = gevent.spawn(responder)
    assert read_exactly(lazy, 4) == b"pong"
    assert lazy.negotiated and not lazy._pending
    g.get(timeout=5)
    assert not cb._pending


def _with_pending_reply(conn, reply):
    conn._defer(reply)
    return conn


def test_pending_reply_read_that_would_block_flushes_first(pair):
    ca, cb = pair
    chan = _with_pending_reply(cb, b"reply")
    g = gevent.spawn(chan.read, 10, 5)
    # the peer only sends after it saw the pending reply
    assert read_exactly(ca, 5) == b"reply"
    ca.write(b"next")
    assert g.get(timeout=5) == b"next"


def test_pending_reply_readinto_that_would_block_flushes_first(pair):
    ca, cb = pair
    chan = _with_pending_reply(cb, b"reply")
    buf = bytearray(16)
    g = gevent.spawn(chan.readinto, memoryview(buf), 5)
    assert read_exactly(ca, 5) == b"reply"
    ca.write(b"next")
    k = g.get(timeout=5)
    assert bytes(buf[:k]) == b"next"[:k] and k


def test_pending_reply_close_write_and_close_flush(pair):
    ca, cb = pair
    chan = _with_pending_reply(cb, b"abc")
    chan.close_write()
    assert read_exactly(ca, 3) == b"abc"
    assert ca.read(10, timeout=2) == b""
    chan2 = _with_pending_reply(ca, b"xyz")
    chan2.close()
    assert read_exactly(cb, 3) == b"xyz"


def test_pending_reply_over_memory_pipe():
    from geventp2p.net.memory import memory_pipe

    ca, cb = memory_pipe()
    try:
        with gevent.Timeout(10):
            ca.write(HEADER + encode_message("/p") + b"q")
            assert multistream.handle_deferred(cb, ["/p"], timeout=5) == "/p"
            assert cb.read(10, timeout=2) == b"q"
            cb.write(b"r")
            expected = HEADER + encode_message("/p") + b"r"
            assert read_exactly(ca, len(expected)) == expected
            cb.close_write()
            assert ca.read(10, timeout=2) == b""
    finally:
        ca.close()
        cb.close()


def test_deferred_refusal_and_eof(pair):
    ca, cb = pair
    ca.write(HEADER + encode_message("/nope") + encode_message("/p") + b"x")
    gevent.sleep(0.01)
    assert multistream.handle_deferred(cb, ["/p"], timeout=5) == "/p"
    assert cb._prefix == HEADER + NA + encode_message("/p")  # na kept in order
    a2, b2 = gsocket.socketpair()
    c2a, c2b = SocketConn(a2, is_initiator=True), SocketConn(b2)
    try:
        c2a.write(HEADER)
        c2a.close()
        with pytest.raises(NegotiationError):
            multistream.handle_deferred(c2b, ["/p"], timeout=5)
    finally:
        c2a.close()
        c2b.close()


def test_host_pair_over_pipelined_security_and_deferred_reply():
    """Noise over TCP end to end: lazy security select outbound, deferred reply inbound."""
    import geventp2p

    a = geventp2p.new_host(services=["identify", "ping", "echo"])
    b = geventp2p.new_host()
    try:
        b.connect(a.p2p_addrs()[0], timeout=10)
        s = b.new_stream(a.id, "/echo/1.0.0", timeout=5)
        s.write(b"ok")
        s.close_write()
        out = b""
        while True:
            c = s.read(timeout=5)
            if not c:
                break
            out += c
        assert out == b"ok"
        s.close()
    finally:
        b.close()
        a.close()
