"""RawConn / SocketConn over a socketpair."""

from __future__ import annotations

import socket

import gevent
import gevent.socket as gsocket
import pytest

from geventp2p.exceptions import P2PTimeoutError, TransportError
from geventp2p.net.rawconn import RawConn, SocketConn
from _scripts_transport.leakcheck import no_leaks  # noqa: F401  (autouse fixture)


def test_is_rawconn(socketpair):
    ca, cb = socketpair
    assert isinstance(ca, RawConn)
    assert ca.is_initiator and not cb.is_initiator
    assert not ca.closed


def test_write_read_roundtrip(socketpair):
    ca, cb = socketpair
    ca.write(b"hello")
    assert cb.read(100, timeout=2) == b"hello"


def test_read_returns_at_most_n(socketpair):
    ca, cb = socketpair
    ca.write(b"abcdef")
    got = cb.read(2, timeout=2)
    assert got == b"ab"
    rest = b""
    while len(rest) < 4:
        rest += cb.read(100, timeout=2)
    assert rest == b"cdef"


def test_unread_is_returned_first_and_respects_n(socketpair):
    ca, cb = socketpair
    cb.unread(b"xyz")
    cb.unread(b"12")
    assert cb.read(3, timeout=1) == b"12x"
    assert cb.read(100, timeout=1) == b"yz"
    ca.write(b"net")
    assert cb.read(100, timeout=2) == b"net"


def test_unread_accepts_memoryview_and_bytearray(socketpair):
    _, cb = socketpair
    cb.unread(memoryview(b"ab"))
    cb.unread(bytearray(b"01"))
    out = cb.read(10, timeout=1)
    assert out == b"01ab" and type(out) is bytes


def test_read_rejects_nonpositive(socketpair):
    _, cb = socketpair
    with pytest.raises(ValueError):
        cb.read(0)


def test_eof(socketpair):
    ca, cb = socketpair
    ca.write(b"x")
    ca.close()
    assert cb.read(10, timeout=2) == b"x"
    assert cb.read(10, timeout=2) == b""


def test_read_timeout(socketpair):
    _, cb = socketpair
    with pytest.raises(P2PTimeoutError):
        cb.read(10, timeout=0.05)
    # connection still usable after a timeout
    socketpair[0].write(b"ok")
    assert cb.read(10, timeout=2) == b"ok"


def test_timeout_is_also_builtin_timeouterror(socketpair):
    _, cb = socketpair
    with pytest.raises(TimeoutError):
        cb.read(10, timeout=0.01)


def test_outer_gevent_timeout_not_swallowed(socketpair):
    _, cb = socketpair
    outer = gevent.Timeout(0.05)
    outer.start()
    try:
        with pytest.raises(gevent.Timeout) as info:
            cb.read(10, timeout=5)
        assert info.value is outer
    finally:
        outer.close()


def test_close_is_idempotent(socketpair):
    ca, _ = socketpair
    ca.close()
    ca.close()
    assert ca.closed
    assert ca.read(10) == b""


def test_close_wakes_blocked_reader(socketpair):
    _, cb = socketpair
    reader = gevent.spawn(cb.read, 100)
    gevent.sleep(0.01)
    assert not reader.ready()
    cb.close()
    with gevent.Timeout(2):
        reader.join()
    assert reader.successful(), reader.exception
    assert reader.value == b""


def test_close_wakes_blocked_reader_with_timeout(socketpair):
    _, cb = socketpair
    reader = gevent.spawn(cb.read, 100, 30)
    gevent.sleep(0.01)
    cb.close()
    with gevent.Timeout(2):
        reader.join()
    assert reader.value == b""


def test_write_after_close_raises(socketpair):
    ca, _ = socketpair
    ca.close()
    with pytest.raises(TransportError):
        ca.write(b"x")
    with pytest.raises(TransportError):
        ca.writev([b"x", b"y"])


def test_write_to_reset_peer_raises_transport_error(socketpair):
    ca, cb = socketpair
    cb.close()
    with pytest.raises(TransportError) as info:
        with gevent.Timeout(5):
            for _ in range(1000):
                ca.write(b"x" * 65536)
    assert isinstance(info.value.__cause__, OSError)


def test_read_error_wrapped():
    s1, s2 = gsocket.socketpair()
    conn = SocketConn(s1)
    # break the fd under the conn without telling it
    s1.close()
    try:
        with pytest.raises(TransportError):
            conn.read(10, timeout=1)
    finally:
        s2.close()


def test_writev(socketpair):
    ca, cb = socketpair
    ca.writev([b"ab", b"", bytearray(b"cd"), memoryview(b"ef")])
    ca.writev([])
    got = b""
    while len(got) < 6:
        got += cb.read(100, timeout=2)
    assert got == b"abcdef"


def test_writev_large_partial(socketpair):
    ca, cb = socketpair
    bufs = [bytes([i % 256]) * 70000 for i in range(20)]
    expected = b"".join(bufs)
    received = bytearray()

    def reader():
        while len(received) < len(expected):
            chunk = cb.read(65536, timeout=5)
            assert chunk
            received.extend(chunk)

    g = gevent.spawn(reader)
    with gevent.Timeout(10):
        ca.writev(bufs)
        g.join()
    assert g.successful(), g.exception
    assert bytes(received) == expected


def test_writev_many_buffers(socketpair):
    ca, cb = socketpair
    bufs = [b"%d," % i for i in range(2000)]
    expected = b"".join(bufs)
    g = gevent.spawn(ca.writev, bufs)
    got = b""
    with gevent.Timeout(5):
        while len(got) < len(expected):
            got += cb.read(65536)
    g.join()
    assert got == expected


def test_concurrent_writers_do_not_interleave(socketpair):
    ca, cb = socketpair
    blocks = [bytes([65 + i]) * 300000 for i in range(4)]
    writers = [gevent.spawn(ca.write, blk) for blk in blocks]
    total = sum(map(len, blocks))
    got = bytearray()
    with gevent.Timeout(10):
        while len(got) < total:
            got += cb.read(65536)
        gevent.joinall(writers, raise_error=True)
    # each block arrives contiguous
    seen = []
    i = 0
    while i < len(got):
        ch = got[i]
        seen.append(ch)
        assert got[i:i + 300000] == bytes([ch]) * 300000
        i += 300000
    assert sorted(seen) == [65, 66, 67, 68]


def test_accepts_stdlib_socket():
    a, b = socket.socketpair()
    ca, cb = SocketConn(a), SocketConn(b)
    try:
        ca.write(b"std")
        assert cb.read(10, timeout=2) == b"std"
        assert isinstance(ca.socket, gsocket.socket)
    finally:
        ca.close()
        cb.close()


def test_rejects_non_socket():
    with pytest.raises(TypeError):
        SocketConn(object())


def test_set_nodelay_on_unix_socket_returns_false(socketpair):
    assert socketpair[0].set_nodelay() is False


def test_close_write_half_close(socketpair):
    ca, cb = socketpair
    ca.write(b"bye")
    ca.close_write()
    got = b""
    with gevent.Timeout(2):
        while True:
            chunk = cb.read(10)
            if not chunk:
                break
            got += chunk
    assert got == b"bye"
    cb.write(b"still")
    assert ca.read(10, timeout=2) == b"still"


def test_context_manager_and_repr(socketpair):
    ca, _ = socketpair
    with ca as c:
        assert "open" in repr(c)
    assert ca.closed and "closed" in repr(ca)


def test_wait_readable_parks_on_the_sockets_own_watcher(socketpair):
    import geventp2p.net.rawconn as rawconn

    assert rawconn._WATCHER_WAIT, "gevent's socket no longer has _wait: wait_readable falls back to MSG_PEEK"
    ca, cb = socketpair
    assert cb.readinto_nowait(bytearray(16)) is None  # nothing there yet
    woke = gevent.spawn(cb.wait_readable)
    gevent.sleep(0)  # parked on the watcher
    assert not woke.dead
    ca.write(b"x")
    woke.join(timeout=10)
    assert woke.dead and woke.successful()
    buf = bytearray(16)
    assert cb.readinto_nowait(buf) == 1 and buf[:1] == b"x"  # the byte is still there to read


def test_close_wakes_a_greenlet_parked_in_wait_readable(socketpair):
    _ca, cb = socketpair
    waiter = gevent.spawn(cb.wait_readable)
    gevent.sleep(0)
    assert not waiter.dead
    cb.close()
    waiter.join(timeout=10)
    assert waiter.dead and waiter.successful()  # returns; the next read reports the close
