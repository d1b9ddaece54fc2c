"""RawConn.readinto: SocketConn (recv_into), NoiseConn (decrypt straight into the
caller's buffer), the generic fallback, push-back, EOF, timeouts and bad frames;
both crypto backends (pycryptodome has no decrypt_into: the copying path)."""

from __future__ import annotations

import os

import gevent
import gevent.socket as gsocket
import pytest

from geventp2p.crypto.backend import get_backend
from geventp2p.crypto.keys import generate_key
from geventp2p.exceptions import P2PTimeoutError, SecurityError
from geventp2p.net.noise import NoiseTransport
from geventp2p.net.rawconn import RawConn, SocketConn
from geventp2p.sansio.noise import MAX_PLAINTEXT, FrameEncryptor

T = 10


@pytest.fixture(params=["cryptography", "pycryptodome"])
def backend(request):
    return get_backend(request.param)


def secure(socketpair, backend):
    ra, rb = socketpair
    k1, k2 = generate_key(), generate_key()
    with gevent.Timeout(T):
        g = gevent.spawn(NoiseTransport(k2, backend=backend).secure_inbound, rb, timeout=T)
        ci = NoiseTransport(k1, backend=backend).secure_outbound(ra, timeout=T)
        cr = g.get()
    return ci, cr


def read_all_into(conn, total, size):
    buf = bytearray(size)
    out = bytearray()
    while len(out) < total:
        n = conn.readinto(buf, timeout=T)
        assert 0 < n <= size
        out += buf[:n]
    return bytes(out)


def test_socketconn_readinto_pushback_eof_timeout(socketpair):
    a, b = socketpair
    a.write(b"hello world")
    buf = bytearray(5)
    assert b.readinto(buf, timeout=T) == 5 and buf == b"hello"
    b.unread(b"XY")
    assert b.readinto(buf, timeout=T) == 2 and buf[:2] == b"XY"
    assert read_all_into(b, 6, 100) == b" world"
    with pytest.raises(P2PTimeoutError):
        b.readinto(buf, timeout=0.05)
    with pytest.raises(ValueError):
        b.readinto(bytearray(0))
    a.close()
    assert b.readinto(buf, timeout=T) == 0


def test_generic_readinto_uses_read():
    class Chunks(RawConn):
        def __init__(self, chunks):
            super().__init__()
            self.chunks = list(chunks)

        def read(self, n=65536, timeout=None):  # a subclass overriding read only
            return self.chunks.pop(0)[:n] if self.chunks else b""

        def _close_raw(self):
            pass

    c = Chunks([b"abc", b"defg"])
    buf = bytearray(10)
    assert c.readinto(buf) == 3 and buf[:3] == b"abc"
    assert c.readinto(memoryview(buf)[3:]) == 4 and buf[:7] == b"abcdefg"
    assert c.readinto(buf) == 0


@pytest.mark.parametrize("size", [1, 7, 1000, MAX_PLAINTEXT, 300_000])
def test_noise_readinto_sizes(socketpair, backend, size):
    ci, cr = secure(socketpair, backend)
    data = os.urandom(3 * MAX_PLAINTEXT + 4321)
    g = gevent.spawn(ci.writev, [b"head", data, b"", b"tail"])
    assert read_all_into(cr, len(data) + 8, size) == b"head" + data + b"tail"
    g.get(timeout=T)
    # mixing read() and readinto() keeps the byte order
    ci.write(b"0123456789")
    assert cr.read(3, timeout=T) == b"012"
    assert read_all_into(cr, 7, size) == b"3456789"
    ci.close()
    assert cr.readinto(bytearray(10), timeout=T) == 0
    cr.close()


def test_noise_readinto_empty_frames_and_bad_frame(socketpair, backend):
    ci, cr = secure(socketpair, backend)
    enc = FrameEncryptor(ci._enc.cipher)
    empty = ci._enc.cipher.encrypt(b"")  # a frame with no plaintext (16-byte tag only)
    ci.raw.write(len(empty).to_bytes(2, "big") + empty)
    ci.write(b"ok")
    assert read_all_into(cr, 2, 64) == b"ok"
    frame = bytearray(enc.encrypt_frames(b"secret"))
    frame[-1] ^= 1
    ci.raw.write(bytes(frame))
    with pytest.raises(SecurityError):
        cr.readinto(bytearray(100), timeout=T)
    assert cr.closed
    ci.close()


def test_noise_readinto_eof_inside_frame(socketpair, backend):
    ci, cr = secure(socketpair, backend)
    frame = FrameEncryptor(ci._enc.cipher).encrypt_frames(b"cut short")
    ci.raw.write(frame[:-3])
    ci.raw.close()
    with pytest.raises(SecurityError):
        cr.readinto(bytearray(100), timeout=T)
    cr.close()


def test_noise_readinto_timeout_and_close_wakes(socketpair, backend):
    ci, cr = secure(socketpair, backend)
    with pytest.raises(P2PTimeoutError):
        cr.readinto(bytearray(10), timeout=0.05)
    g = gevent.spawn(cr.readinto, bytearray(10))
    gevent.sleep(0.01)
    cr.close()
    assert g.get(timeout=T) == 0
    ci.close()


def test_noise_idle_connection_holds_no_send_buffer(socketpair):
    from geventp2p.sansio import noise as sn

    ci, cr = secure(socketpair, get_backend("cryptography"))
    assert cr._dec.capacity == 0  # the ciphertext buffer comes with the first read
    data = os.urandom(200_000)
    g = gevent.spawn(read_all_into, cr, len(data), 65536)
    ci.write(data)
    assert ci._enc._out is None  # sent: the buffer went back to the process pool
    assert any(len(b) >= len(data) for b in sn.framing._POOL)
    assert g.get(timeout=T) == data
    ci.writev([b"a", b"b"])
    assert read_all_into(cr, 2, 10) == b"ab"
    ci.close()
    cr.close()


class _InPlaceOnly(SocketConn):
    """A SocketConn whose read() must not be used (readinto only)."""

    def read(self, n=65536, timeout=None):  # pragma: no cover - the test fails if called
        raise AssertionError("read() used where readinto() should be")


def test_plaintext_readinto_receives_in_place():
    """PlaintextConn hands readinto to the transport: no fresh bytes per receive (a
    fresh 256 KiB+ object per recv cost page faults and a copy on every read)."""
    from geventp2p.net.plaintext import PlaintextConn

    a, b = gsocket.socketpair()
    ra, rb = SocketConn(a, is_initiator=True), _InPlaceOnly(b)
    pc = PlaintextConn(rb, None, None, None)
    try:
        with gevent.Timeout(T):
            ra.write(b"hello world")
            buf = bytearray(64)
            k = pc.readinto(memoryview(buf))
            got = bytes(buf[:k])
            assert got == b"hello world"[:k] and k >= 1
            pc.unread(b"xy")
            assert pc.readinto(memoryview(buf)) == 2 and bytes(buf[:2]) == b"xy"
            ra.close()
            while True:
                n = pc.readinto(memoryview(buf))
                if not n:
                    break
                got += bytes(buf[:n])
            assert got == b"hello world"
    finally:
        pc.close()
        ra.close()


def test_multistream_lazy_and_deferred_readinto():
    """A lazily negotiated conn's readinto checks the echo first (``na`` raises); one
    holding a deferred reply sends it before it would wait, then receives in place."""
    from geventp2p.exceptions import NegotiationError
    from geventp2p.net import multistream

    for accept in (True, False):
        a, b = gsocket.socketpair()
        ra, rb = SocketConn(a, is_initiator=True), SocketConn(b)
        try:
            with gevent.Timeout(T):
                lazy = multistream.select_lazy(ra, "/x/1")

                def responder():
                    return multistream.handle_deferred(rb, ["/x/1"] if accept else ["/y/1"], timeout=T)

                g = gevent.spawn(responder) if accept else None
                if accept:
                    lazy.write(b"ping")
                    assert g.get() == "/x/1"
                    buf = bytearray(16)
                    k = rb.readinto(memoryview(buf))  # pending reply flushed, then "ping"
                    assert bytes(buf[:k]) == b"ping"[:k]
                    rb.write(b"pong")
                    k = lazy.readinto(memoryview(buf))
                    assert bytes(buf[:k]) == b"pong"[:k]
                else:
                    lazy._flush_prefix()
                    g = gevent.spawn(multistream.handle, rb, ["/y/1"], timeout=T)
                    with pytest.raises(NegotiationError):
                        lazy.readinto(memoryview(bytearray(16)))
                    ra.close()
                    with pytest.raises(Exception):
                        g.get()
        finally:
            ra.close()
            rb.close()
