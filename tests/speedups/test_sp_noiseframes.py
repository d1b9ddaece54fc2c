"""noiseframes.seal_frames in both builds: Noise transport framing of a list of buffers into
a reused output buffer, nonce limits, and pure/compiled parity."""

import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geventp2p.exceptions import LocalProtocolError, SecurityError

HYP = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEY = bytes(range(32))


def open_frames(wire, n0=0):
    """Decrypt consecutive Noise transport frames; returns (plaintexts, next nonce)."""
    aead = ChaCha20Poly1305(KEY)
    out = []
    pos = 0
    n = n0
    while pos < len(wire):
        ln = (wire[pos] << 8) | wire[pos + 1]
        out.append(aead.decrypt(struct.pack("<4xQ", n), wire[pos + 2:pos + 2 + ln], b""))
        n += 1
        pos += 2 + ln
    return out, n


def test_seal_frames_matches_one_frame_at_a_time(impl):
    aead = ChaCha20Poly1305(KEY)
    data = bytes(range(256)) * 600  # 153600 bytes: 3 frames of <= 65519
    out = bytearray()
    size, n = impl.noiseframes.seal_frames([data[:1000], memoryview(data)[1000:], b""], 65519, aead.encrypt_into, 5, 2**64 - 1, out)
    expect = b""
    for i, off in enumerate(range(0, len(data), 65519)):
        ct = aead.encrypt(struct.pack("<4xQ", 5 + i), data[off:off + 65519], b"")
        expect += struct.pack(">H", len(ct)) + ct
    assert n == 8 and bytes(out[:size]) == expect
    # the buffer is reused (no growth) for a smaller batch
    cap = len(out)
    size, n = impl.noiseframes.seal_frames([b"abc"], 65519, aead.encrypt_into, n, 2**64 - 1, out)
    assert len(out) == cap and open_frames(bytes(out[:size]), 8) == ([b"abc"], 9)


def test_seal_frames_nonce_limit_and_step(impl):
    aead = ChaCha20Poly1305(KEY)
    out = bytearray()
    with pytest.raises(SecurityError):
        impl.noiseframes.seal_frames([b"x" * 20], 10, aead.encrypt_into, 7, 8, out)  # nonces 7, 8 must be < limit
    size, n = impl.noiseframes.seal_frames([b"x" * 20], 10, aead.encrypt_into, 7, 9, out)
    assert n == 9 and size == 2 * (2 + 10 + 16)
    for step in (0, 65520, 2**70):
        with pytest.raises(LocalProtocolError):
            impl.noiseframes.seal_frames([b"x"], step, aead.encrypt_into, 0, 2**64 - 1, bytearray())
    assert impl.noiseframes.seal_frames([], 100, aead.encrypt_into, 3, 2**64 - 1, bytearray()) == (0, 3)


@HYP
@given(
    step=st.integers(1, 3000),
    parts=st.lists(st.binary(max_size=5000), max_size=12),
    n0=st.integers(0, 2**40),
)
def test_seal_frames_parity_and_roundtrip(both_impls, step, parts, n0):
    aead = ChaCha20Poly1305(KEY)
    results = []
    for impl in both_impls:
        out = bytearray(7)  # too short: grown
        size, n = impl.noiseframes.seal_frames(parts, step, aead.encrypt_into, n0, 2**64 - 1, out)
        results.append((bytes(out[:size]), n))
    assert results[0] == results[1]
    plain, n = open_frames(results[0][0], n0)
    joined = b"".join(parts)
    assert b"".join(plain) == joined and n == results[0][1]
    assert all(len(p) == step for p in plain[:-1])
    assert n - n0 == (len(joined) + step - 1) // step
