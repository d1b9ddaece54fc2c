"""NoiseTransport / NoiseConn over socketpair RawConns: handshakes, hostile peers, EOF, framing."""

from __future__ import annotations

import os

import gevent
import gevent.socket as gsocket
import pytest

from geventp2p.crypto.backend import get_backend
from geventp2p.crypto.keys import generate_key
from geventp2p.exceptions import (
    InvalidSignatureError,
    P2PTimeoutError,
    PeerIdMismatchError,
    SecurityError,
    TransportError,
)
from geventp2p.net.noise import PROTOCOL_ID, NoiseConn, NoiseTransport
from geventp2p.net.rawconn import RawConn, SocketConn
from geventp2p.sansio.noise import (
    MAX_PLAINTEXT,
    SIGNATURE_PREFIX,
    FrameEncryptor,
    Handshake,
    frame_message,
)

KEY_TYPES = ["ed25519", "secp256k1", "ecdsa", "rsa"]
T = 10  # seconds: upper bound for every blocking step in these tests


@pytest.fixture(scope="module", params=["cryptography", "pycryptodome"])
def backend(request):
    return get_backend(request.param)


@pytest.fixture(scope="module")
def keys():
    return {kt: generate_key(kt) for kt in KEY_TYPES}


@pytest.fixture
def raw_pair():
    a, b = gsocket.socketpair()
    ca = SocketConn(a, is_initiator=True)
    cb = SocketConn(b)
    yield ca, cb
    ca.close()
    cb.close()


def _peer(key):
    from geventp2p.core.peer import PeerId

    return PeerId.from_public_key(key.public_key())


def secure_pair(raw_pair, ik, rk, *, backend=None, imux=("/yamux/1.0.0",), rmux=("/yamux/1.0.0",), expected="auto"):
    """Run both handshakes concurrently; return (outcome_initiator, outcome_responder) (conn or exception)."""
    ra, rb = raw_pair
    ti = NoiseTransport(ik, muxers=imux, backend=backend)
    tr = NoiseTransport(rk, muxers=rmux, backend=backend)
    if expected == "auto":
        expected = _peer(rk)

    def run(fn, *args):
        try:
            return fn(*args, timeout=T)
        except Exception as exc:  # returned for the test to inspect
            return exc

    with gevent.Timeout(T + 5):
        g = gevent.spawn(run, tr.secure_inbound, rb)
        out_i = run(ti.secure_outbound, ra, expected)
        out_r = g.get()
    return out_i, out_r


def _read_exactly(conn, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = conn.read(n - len(buf), timeout=T)
        if not chunk:
            raise AssertionError(f"EOF after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


# ----------------------------------------------------------------- happy path


@pytest.mark.parametrize("kt", KEY_TYPES)
def test_handshake_and_exchange_all_key_types(raw_pair, keys, backend, kt):
    ik, rk = keys[kt], keys["ed25519" if kt != "ed25519" else "rsa"]
    ci, cr = secure_pair(raw_pair, ik, rk, backend=backend)
    assert isinstance(ci, NoiseConn) and isinstance(cr, NoiseConn)
    assert isinstance(ci, RawConn)
    assert ci.remote_peer == _peer(rk) and cr.remote_peer == _peer(ik)
    assert ci.local_peer == _peer(ik) and cr.local_peer == _peer(rk)
    assert ci.remote_public_key == rk.public_key() and cr.remote_public_key == ik.public_key()
    assert ci.security_protocol == cr.security_protocol == PROTOCOL_ID == "/noise"
    assert ci.early_muxer == cr.early_muxer == "/yamux/1.0.0"
    assert ci.is_initiator and not cr.is_initiator
    assert ci.handshake_hash == cr.handshake_hash

    ci.write(b"hello")
    assert cr.read(100, timeout=T) == b"hello"
    cr.writev([b"wor", b"", b"ld"])
    assert ci.read(100, timeout=T) == b"world"
    ci.close()
    assert ci.closed
    assert cr.read(100, timeout=T) == b""
    cr.close()


def test_inbound_accepts_any_peer_outbound_without_expectation(raw_pair, keys, backend):
    ci, cr = secure_pair(raw_pair, keys["ecdsa"], keys["secp256k1"], backend=backend, expected=None)
    assert ci.remote_peer == _peer(keys["secp256k1"])
    ci.close()
    cr.close()


@pytest.mark.parametrize(
    "imux, rmux, expected",
    [
        (("/yamux/1.0.0", "/mplex/6.7.0"), ("/mplex/6.7.0", "/yamux/1.0.0"), "/yamux/1.0.0"),
        (("/yamux/1.0.0",), ("/mplex/6.7.0",), None),
        ((), ("/yamux/1.0.0",), None),
        (("/yamux/1.0.0",), (), None),
    ],
)
def test_early_muxer_over_conn(raw_pair, keys, imux, rmux, expected):
    ci, cr = secure_pair(raw_pair, keys["ed25519"], keys["ed25519"], imux=imux, rmux=rmux)
    assert ci.early_muxer == cr.early_muxer == expected
    ci.close()
    cr.close()


def test_large_transfer_and_read_sizes(raw_pair, keys, backend):
    ci, cr = secure_pair(raw_pair, keys["ed25519"], keys["ed25519"], backend=backend)
    data = os.urandom(3 * MAX_PLAINTEXT + 1234)
    g = gevent.spawn(ci.writev, [b"head", data, b"tail"])
    got = _read_exactly(cr, len(data) + 8)
    g.get(timeout=T)
    assert got == b"head" + data + b"tail"
    # small reads split a decrypted chunk without loss
    ci.write(b"abcdefgh")
    assert cr.read(3, timeout=T) == b"abc"
    cr.unread(b"X")
    assert _read_exactly(cr, 2) == b"Xd"
    assert _read_exactly(cr, 4) == b"efgh"
    ci.close()
    cr.close()


def test_concurrent_writers_keep_nonce_order(raw_pair, keys):
    ci, cr = secure_pair(raw_pair, keys["ed25519"], keys["ed25519"])
    blobs = [bytes([k]) * 100_000 for k in range(8)]
    writers = [gevent.spawn(ci.write, b) for b in blobs]
    got = _read_exactly(cr, sum(map(len, blobs)))
    gevent.joinall(writers, timeout=T, raise_error=True)
    # each write is contiguous (the write lock covers encrypt + send)
    pieces = sorted(got[i : i + 100_000] for i in range(0, len(got), 100_000))
    assert pieces == sorted(blobs)
    ci.close()
    cr.close()


def test_first_transport_frame_in_same_segment_as_msg3(raw_pair, keys, backend):
    """The initiator may pipeline data right behind msg3; the responder must keep it."""
    ra, rb = raw_pair
    tr = NoiseTransport(keys["ed25519"], backend=backend)
    g = gevent.spawn(tr.secure_inbound, rb, timeout=T)
    hs = Handshake(True, keys["secp256k1"], backend=backend)
    ra.write(frame_message(hs.write_message_1()))
    hdr = _read_exactly(ra, 2)
    hs.read_message_2(_read_exactly(ra, int.from_bytes(hdr, "big")))
    m3 = frame_message(hs.write_message_3())
    ra.write(m3 + FrameEncryptor(hs.result.send_cipher).encrypt_frames(b"early data"))
    cr = g.get(timeout=T)
    assert cr.read(100, timeout=T) == b"early data"
    cr.close()


def test_read_timeout(raw_pair, keys):
    ci, cr = secure_pair(raw_pair, keys["ed25519"], keys["ed25519"])
    with pytest.raises(P2PTimeoutError):
        cr.read(10, timeout=0.05)
    ci.write(b"still fine")
    assert cr.read(100, timeout=T) == b"still fine"
    ci.close()
    cr.close()


def test_close_wakes_blocked_reader(raw_pair, keys):
    ci, cr = secure_pair(raw_pair, keys["ed25519"], keys["ed25519"])
    g = gevent.spawn(cr.read, 10)
    gevent.sleep(0.01)
    cr.close()
    assert g.get(timeout=T) == b""
    with pytest.raises(TransportError):
        cr.write(b"x")
    ci.close()


# ----------------------------------------------------------------- hostile peers


def test_wrong_expected_peer(raw_pair, keys, backend):
    ra, rb = raw_pair
    ci, cr = secure_pair(raw_pair, keys["ed25519"], keys["rsa"], backend=backend, expected=_peer(keys["secp256k1"]))
    assert isinstance(ci, PeerIdMismatchError)
    assert ci.actual == _peer(keys["rsa"])
    assert ra.closed
    # the responder sees the dialer hang up before message 3
    assert isinstance(cr, SecurityError) and "msg 3" in str(cr)
    assert rb.closed


class _BadSigner:
    def __init__(self, key):
        self._key = key

    def public_key(self):
        return self._key.public_key()

    def sign(self, data):
        return self._key.sign(SIGNATURE_PREFIX + bytes(32))  # signs the wrong static key


@pytest.mark.parametrize("side", ["responder", "initiator"])
def test_bad_signature(raw_pair, keys, backend, side):
    ra, rb = raw_pair
    good, bad = keys["ed25519"], _BadSigner(keys["secp256k1"])
    if side == "responder":
        ci, cr = secure_pair(raw_pair, good, bad, backend=backend, expected=None)
        assert isinstance(ci, InvalidSignatureError)
        assert isinstance(cr, SecurityError)
    else:
        ci, cr = secure_pair(raw_pair, bad, good, backend=backend)
        assert isinstance(cr, InvalidSignatureError)
        # the initiator finished its side; its conn is unusable as the peer hung up
        if isinstance(ci, NoiseConn):
            assert ci.read(10, timeout=T) == b""
            ci.close()
    assert ra.closed or side == "initiator"
    assert rb.closed or side == "responder"


def _second_pair(keys):
    a, b = gsocket.socketpair()
    return secure_pair((SocketConn(a, is_initiator=True), SocketConn(b)), keys["ed25519"], keys["ed25519"])


@pytest.mark.parametrize(
    "junk",
    [
        b"\x00\x20" + bytes(32),  # well-formed length, garbage ciphertext
        b"\x00\x05abcde",  # ciphertext shorter than the tag
        b"\x00\x00",  # zero-length frame
        b"\xff\xff" + bytes(65535),  # maximal frame, garbage
    ],
)
def test_garbled_frame_ends_only_that_connection(raw_pair, keys, junk):
    ci, cr = secure_pair(raw_pair, keys["ed25519"], keys["ed25519"])
    other_i, other_r = _second_pair(keys)
    try:
        ci.write(b"ok")
        gevent.spawn(ci.raw.write, junk).join(timeout=T)
        assert cr.read(100, timeout=T) == b"ok"
        with pytest.raises(SecurityError):
            cr.read(100, timeout=T)
        assert cr.closed and cr.raw.closed
        # the other connection is untouched
        other_i.write(b"alive")
        assert other_r.read(100, timeout=T) == b"alive"
    finally:
        for c in (ci, cr, other_i, other_r):
            c.close()


def test_tampered_frame_bit_flip(raw_pair, keys):
    ci, cr = secure_pair(raw_pair, keys["ed25519"], keys["ed25519"])
    frame = bytearray(FrameEncryptor(ci._enc.cipher).encrypt_frames(b"secret"))
    frame[-1] ^= 1
    ci.raw.write(bytes(frame))
    with pytest.raises(SecurityError):
        cr.read(100, timeout=T)
    ci.close()
    cr.close()


def test_eof_inside_transport_frame(raw_pair, keys):
    ci, cr = secure_pair(raw_pair, keys["ed25519"], keys["ed25519"])
    frame = FrameEncryptor(ci._enc.cipher).encrypt_frames(b"cut short")
    ci.raw.write(frame[:-3])
    ci.raw.close()
    with pytest.raises(SecurityError):
        cr.read(100, timeout=T)
    cr.close()


# ----------------------------------------------------------------- EOF / timeout during the handshake


def _read_frame(raw):
    hdr = _read_exactly(raw, 2)
    return _read_exactly(raw, int.from_bytes(hdr, "big"))


@pytest.mark.parametrize("partial", [b"", b"\x00", b"\x00\x20" + bytes(10)])
def test_eof_during_msg1(raw_pair, keys, partial):
    ra, rb = raw_pair
    t = NoiseTransport(keys["ed25519"])
    g = gevent.spawn(t.secure_inbound, rb, timeout=T)
    if partial:
        ra.write(partial)
    ra.close()
    with pytest.raises(SecurityError, match="EOF during handshake msg 1"):
        g.get(timeout=T)
    assert rb.closed


@pytest.mark.parametrize("partial", [False, True])
def test_eof_during_msg2(raw_pair, keys, partial):
    ra, rb = raw_pair
    t = NoiseTransport(keys["ed25519"])
    g = gevent.spawn(t.secure_outbound, ra, None, timeout=T)
    assert len(_read_frame(rb)) == 32
    if partial:
        rb.write(b"\x00\xd8" + bytes(50))
    rb.close()
    with pytest.raises(SecurityError, match="EOF during handshake msg 2"):
        g.get(timeout=T)
    assert ra.closed


def test_eof_during_msg3(raw_pair, keys):
    ra, rb = raw_pair
    t = NoiseTransport(keys["ed25519"])
    g = gevent.spawn(t.secure_inbound, rb, timeout=T)
    hs = Handshake(True, keys["ecdsa"])
    ra.write(frame_message(hs.write_message_1()))
    hs.read_message_2(_read_frame(ra))
    ra.close()
    with pytest.raises(SecurityError, match="EOF during handshake msg 3"):
        g.get(timeout=T)
    assert rb.closed


def test_handshake_timeout_closes_raw(raw_pair, keys):
    ra, rb = raw_pair
    t = NoiseTransport(keys["ed25519"])
    with pytest.raises(P2PTimeoutError):
        t.secure_inbound(rb, timeout=0.05)
    assert rb.closed


def test_garbage_handshake_message(raw_pair, keys):
    ra, rb = raw_pair
    t = NoiseTransport(keys["ed25519"])
    g = gevent.spawn(t.secure_outbound, ra, None, timeout=T)
    _read_frame(rb)
    rb.write(frame_message(os.urandom(216)))
    with pytest.raises(SecurityError):
        g.get(timeout=T)
    assert ra.closed


def test_no_greenlet_leak(raw_pair, keys):
    from geventp2p.testing.leakcheck import live_greenlets

    before = len(live_greenlets())
    ci, cr = secure_pair(raw_pair, keys["ed25519"], keys["ed25519"])
    ci.write(b"x")
    assert cr.read(1, timeout=T) == b"x"
    ci.close()
    cr.close()
    gevent.sleep(0)
    assert len(live_greenlets()) <= before


@pytest.mark.slow
def test_bulk_transfer_16mib(raw_pair, keys, backend):
    ci, cr = secure_pair(raw_pair, keys["ed25519"], keys["ed25519"], backend=backend)
    chunk = os.urandom(1 << 20)
    total = 16 << 20

    def writer():
        for _ in range(total // len(chunk)):
            ci.write(chunk)

    g = gevent.spawn(writer)
    got = 0
    with gevent.Timeout(60):
        while got < total:
            data = cr.read(1 << 20, timeout=T)
            assert data
            got += len(data)
    g.get(timeout=T)
    ci.close()
    cr.close()


def test_multistream_over_noise_then_pipelined_data(raw_pair, keys):
    """Muxer negotiation inside Noise (no early muxer): read-ahead bytes survive unread()."""
    from geventp2p.net import multistream

    ci, cr = secure_pair(raw_pair, keys["ed25519"], keys["ed25519"], imux=(), rmux=())
    assert ci.early_muxer is None

    def listener():
        proto = multistream.handle(cr, ["/yamux/1.0.0"], timeout=T)
        return proto, _read_exactly(cr, 7)

    g = gevent.spawn(listener)
    assert multistream.select_one_of(ci, ["/mplex/6.7.0", "/yamux/1.0.0"], timeout=T) == "/yamux/1.0.0"
    ci.write(b"payload")
    assert g.get(timeout=T) == ("/yamux/1.0.0", b"payload")
    ci.close()
    cr.close()


@pytest.mark.parametrize("sizes", [[1] * 40, [3, 7, 100, 1, 65600, 5], [12, 65507, 12, 65507]])
def test_reads_of_any_size_preserve_the_stream(raw_pair, keys, sizes):
    ci, cr = secure_pair(raw_pair, keys["ed25519"], keys["ed25519"])
    data = os.urandom(sum(sizes))
    g = gevent.spawn(ci.writev, [data[:10], data[10:]])
    out = bytearray()
    for s in sizes:
        chunk = _read_exactly(cr, s)
        assert type(chunk) is bytes
        out += chunk
    g.get(timeout=T)
    assert bytes(out) == data
    ci.close()
    cr.close()


def test_backend_by_name(raw_pair, keys):
    ti = NoiseTransport(keys["ed25519"], backend="pycryptodome")
    assert ti.backend.name == "pycryptodome"
    assert NoiseTransport(keys["ed25519"]).backend is get_backend()
    ci, cr = secure_pair(raw_pair, keys["ed25519"], keys["ed25519"], backend="pycryptodome")
    ci.write(b"x" * 70000)
    assert _read_exactly(cr, 70000) == b"x" * 70000
    ci.close()
    cr.close()


def test_byte_by_byte_peer(raw_pair, keys):
    """Handshake and transport frames trickling in one byte per write still work."""
    ra, rb = raw_pair
    tr = NoiseTransport(keys["ed25519"])
    g = gevent.spawn(tr.secure_inbound, rb, timeout=T)

    def dribble(data):
        for k in range(len(data)):
            ra.write(data[k : k + 1])
            gevent.sleep(0)

    hs = Handshake(True, keys["rsa"], muxers=("/yamux/1.0.0",))
    dribble(frame_message(hs.write_message_1()))
    hs.read_message_2(_read_frame(ra))
    dribble(frame_message(hs.write_message_3()))
    cr = g.get(timeout=T)
    assert cr.early_muxer == "/yamux/1.0.0"
    enc = FrameEncryptor(hs.result.send_cipher)
    gevent.spawn(dribble, enc.encrypt_frames(b"slow") + enc.encrypt_frames(b"ly"))
    assert _read_exactly(cr, 6) == b"slowly"
    cr.close()
