"""Noise transport framing byte vectors (both crypto backends): FrameEncryptor.seal and the
FrameDecryptor that owns its ciphertext buffer (receive_buffer/receive_into, readinto, read).

Frames are ``u16be(len) || ChaCha20-Poly1305(k, nonce = 4 zero bytes || u64le(n), plaintext)``
(https://github.com/libp2p/specs/blob/master/noise/README.md#wire-format).  The vectors
below were computed with ``cryptography``'s ChaCha20Poly1305 directly, key = bytes(range(32)).
"""

from __future__ import annotations

import os

import pytest

from geventp2p.crypto.backend import get_backend
from geventp2p.exceptions import LocalProtocolError, SecurityError
from geventp2p.sansio.noise import MAX_FRAME, MAX_PLAINTEXT, CipherState, FrameDecryptor, FrameEncryptor
from geventp2p.sansio.noise.framing import MIN_RECV_BUFFER

KEY = bytes(range(32))
H = bytes.fromhex
F0_HELLO = H("001570dd2e5dc20b4c4d4898a053334e265cbd1a1b62f7")  # n=0, b"hello"
F1_EMPTY = H("0010a8d30d2553bfe08494e6aa8fd5b07296")  # n=1, b"" (a bare tag)
F2_WORLD = H("0016decc8c3983cb57c3fa52cd227f15fcb5ab1deb433932")  # n=2, b"world!"
WIRE = F0_HELLO + F1_EMPTY + F2_WORLD


@pytest.fixture(params=["cryptography", "pycryptodome"])
def backend(request):
    return get_backend(request.param)


def enc(backend, key=KEY):
    return FrameEncryptor(CipherState(key, backend=backend))


def dec(backend, key=KEY, **kw):
    return FrameDecryptor(CipherState(key, backend=backend), **kw)


def push(d: FrameDecryptor, data: bytes) -> None:
    """Receive ``data`` the way a shell does: into the decryptor's own buffer (as many
    receives as its free space asks; a full buffer grows on the next receive)."""
    off = 0
    while off < len(data):
        view = d.receive_buffer()
        try:
            assert len(view) > 0
            k = min(len(view), len(data) - off)
            view[:k] = data[off:off + k]
        finally:
            view.release()
        d.receive_into(k)
        off += k


def drain_into(d: FrameDecryptor, size: int) -> bytes:
    out = bytearray()
    buf = bytearray(size)
    while True:
        k = d.readinto(memoryview(buf))
        if not k:
            return bytes(out)
        out += buf[:k]


def test_seal_vectors(backend):
    e = enc(backend)
    assert e.encrypt_frames(b"hello") == F0_HELLO
    assert e.encrypt_frames(b"") == b""  # an empty write sends no frame and uses no nonce
    assert e.cipher.n == 1
    e.cipher.n = 2
    assert e.encrypt_frames(b"wor", memoryview(b"ld!")) == F2_WORLD  # one frame from two buffers


def test_open_vectors_readinto_and_read(backend):
    d = dec(backend)
    assert d.capacity == 0  # no buffer until the first receive
    push(d, WIRE)
    assert d.capacity > 0 and d.buffered == len(WIRE)
    buf = bytearray(64)
    # both complete non-empty frames land back to back; the empty one is skipped
    assert d.readinto(memoryview(buf)) == 11 and buf[:11] == b"helloworld!"
    assert d.cipher.n == 3 and d.buffered == 0
    assert d.readinto(memoryview(buf)) == 0
    d2 = dec(backend)
    push(d2, WIRE)
    assert [d2.read(100), d2.read(100), d2.read(100)] == [b"hello", b"world!", b""]


def test_released_cipher_is_made_again_from_the_key(backend):
    """release_cipher (an idle connection) drops the AEAD objects; the next seal or
    open makes them again from the kept key, with the nonce counters where they were."""
    e = enc(backend)
    assert e.encrypt_frames(b"hello") == F0_HELLO
    e.release_cipher()
    assert e.cipher._aead is None and e.cipher.n == 1
    assert e.encrypt_frames(b"") == b""
    e.cipher.n = 2
    assert e.encrypt_frames(b"world!") == F2_WORLD
    assert e.cipher._aead is not None
    d = dec(backend)
    push(d, F0_HELLO)
    d.release_cipher()
    push(d, F1_EMPTY + F2_WORLD[:7])  # ciphertext buffered while released stays
    assert d.cipher._aead is None
    assert drain_into(d, 100) == b"hello" and d.cipher.n == 2
    d.release_cipher()
    push(d, F2_WORLD[7:])
    assert [d.read(100), d.read(100)] == [b"world!", b""] and d.cipher.n == 3
    # a released decryptor still rejects a bad frame with the typed error
    d.release_cipher()
    push(d, F0_HELLO)  # n=0 frame again: the key's nonce is 3 now
    with pytest.raises(SecurityError):
        drain_into(d, 100)


@pytest.mark.parametrize("cut", range(1, len(WIRE)))
def test_frames_split_across_receive_calls(backend, cut):
    d = dec(backend)
    got = b""
    for part in (WIRE[:cut], WIRE[cut:]):
        push(d, part)
        got += drain_into(d, 100)
    assert got == b"helloworld!" and d.buffered == 0 and d.cipher.n == 3


def test_byte_at_a_time(backend):
    d = dec(backend)
    got = b""
    for i in range(len(WIRE)):
        push(d, WIRE[i : i + 1])
        got += d.read(3)
    got += d.read(100) + d.read(100)
    assert got == b"helloworld!"


def test_max_size_frame(backend):
    data = os.urandom(MAX_PLAINTEXT + 1)
    wire = enc(backend).encrypt_frames(data)
    assert wire[:2] == b"\xff\xff" and len(wire) == 2 + MAX_FRAME + 2 + 1 + 16  # 65519 + 1 bytes: two frames
    d = dec(backend)
    push(d, wire)
    buf = bytearray(MAX_PLAINTEXT)  # exactly one frame's plaintext: decrypted straight in
    assert d.readinto(memoryview(buf)) == MAX_PLAINTEXT and bytes(buf) == data[:MAX_PLAINTEXT]
    assert d.readinto(memoryview(buf)) == 1 and buf[:1] == data[-1:]
    # a destination smaller than the frame: decrypted aside, served in parts, order kept
    d = dec(backend)
    push(d, wire)
    assert drain_into(d, 1000) == data and d.pending == 0


def test_read_and_readinto_interleave(backend):
    wire = enc(backend).encrypt_frames(b"0123456789") + enc(backend).encrypt_frames(b"x")
    d = dec(backend)
    push(d, wire[: len(wire) - 19])  # only the first frame (the second is 2 + 1 + 16 bytes)
    assert d.read(3) == b"012"
    assert d.pending == 7
    buf = bytearray(4)
    assert d.readinto(memoryview(buf)) == 4 and buf == b"3456"
    assert d.read(100) == b"789"
    assert d.read(100) == b""


def test_bad_tag_is_a_typed_error_after_the_good_frames(backend):
    bad = bytearray(WIRE)
    bad[-1] ^= 0x80  # the tag of the third frame
    d = dec(backend)
    push(d, bytes(bad))
    buf = bytearray(100)
    assert d.readinto(memoryview(buf)) == 5 and buf[:5] == b"hello"  # delivered before the error
    assert isinstance(d.error, SecurityError) and d.buffered == 0
    with pytest.raises(SecurityError):
        d.readinto(memoryview(buf))
    with pytest.raises(SecurityError):
        d.read(10)
    # a bad first frame raises at once; nothing is returned and the nonce does not move
    d = dec(backend)
    push(d, bytes(bad[:2]) + bytes(16) + bytes(bad[18:]))
    with pytest.raises(SecurityError):
        d.read(10)
    assert d.cipher.n == 0


def test_wrong_key_and_replay(backend):
    d = dec(backend, key=b"x" * 32)
    push(d, F0_HELLO)
    with pytest.raises(SecurityError):
        d.readinto(memoryview(bytearray(10)))
    d = dec(backend)
    push(d, F0_HELLO + F0_HELLO)  # the same frame twice: the second uses nonce 1
    with pytest.raises(SecurityError):
        drain_into(d, 10)


@pytest.mark.parametrize("frame", [b"\x00\x00", b"\x00\x0f" + bytes(15)], ids=["zero-length", "shorter-than-tag"])
def test_frame_without_room_for_a_tag(backend, frame):
    d = dec(backend)
    push(d, frame + F0_HELLO)
    with pytest.raises(SecurityError, match="shorter than the 16-byte tag"):
        d.readinto(memoryview(bytearray(10)))
    with pytest.raises(SecurityError):
        d.readinto(memoryview(bytearray(10)))


def test_eof_inside_a_frame(backend):
    d = dec(backend)
    push(d, F0_HELLO)
    assert d.read(10) == b"hello"
    d.receive_eof()  # at a frame boundary: fine
    push(d, F1_EMPTY[:5])
    with pytest.raises(SecurityError, match="EOF inside a transport frame"):
        d.receive_eof()
    with pytest.raises(SecurityError):
        d.read(10)


def test_receive_buffer_compacts_and_never_grows(backend):
    cap = None
    e = enc(backend, key=b"c" * 32)
    d = dec(backend, key=b"c" * 32, recv_size=64)
    wire = b"".join(e.encrypt_frames(bytes([i]) * 30) for i in range(40))  # 48-byte frames
    got = b""
    pos = 0
    while pos < len(wire):
        view = d.receive_buffer()
        assert len(view) >= 1
        k = min(len(view), 7, len(wire) - pos)  # dribble: partial frames move to the front
        view[:k] = wire[pos : pos + k]
        view.release()
        d.receive_into(k)
        pos += k
        got += drain_into(d, 50)
        cap = cap or d.capacity
        assert d.capacity == cap == MIN_RECV_BUFFER  # small frames: the first buffer size is kept
    assert got == b"".join(bytes([i]) * 30 for i in range(40))


def test_receive_into_checks_the_count_and_receive_data_copies(backend):
    d = dec(backend, recv_size=16)
    with pytest.raises(LocalProtocolError):
        d.receive_into(1)  # nothing handed out yet
    view = d.receive_buffer()
    n = len(view)
    view.release()
    with pytest.raises(LocalProtocolError):
        d.receive_into(n + 1)
    # bytes in hand (read past the handshake) are copied in, growing the buffer if needed
    wire = enc(backend).encrypt_frames(os.urandom(3 * MAX_PLAINTEXT))
    d.receive_data(wire)
    assert d.buffered == len(wire)
    assert len(drain_into(d, 1 << 20)) == 3 * MAX_PLAINTEXT


def test_release_drops_the_buffer(backend):
    d = dec(backend)
    push(d, F0_HELLO[:4])
    d.release()
    assert d.capacity == 0 and d.buffered == 0 and d.pending == 0


def test_feed_is_receive_data_plus_read(backend):
    assert dec(backend).feed(WIRE) == [b"hello", b"world!"]
