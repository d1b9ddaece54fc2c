"""The pycryptodome backend without a native secp256k1 curve (older pycryptodome).

It verifies secp256k1 signatures with the pure-Python ``_secp256k1`` module (public
data only), checked here against OpenSSL, and refuses secp256k1 private keys with a
typed error instead of signing with non-constant-time code.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import crypto_vectors as V
from geventp2p.crypto import _der, _secp256k1
from geventp2p.crypto.backend_pycryptodome import PycryptodomeBackend
from geventp2p.crypto.keys import (
    Secp256k1PrivateKey,
    Secp256k1PublicKey,
    generate_key,
    unmarshal_private_key,
    unmarshal_public_key,
)
from geventp2p.exceptions import InvalidKeyError

H = bytes.fromhex
PURE = PycryptodomeBackend(secp256k1_native=False)


def _openssl_point(d: int) -> bytes:
    """Uncompressed SEC1 point of scalar ``d``, computed by the cryptography backend."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pub = ec.derive_private_key(d, ec.SECP256K1()).public_key()
    return pub.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def test_fallback_verifier_is_used_when_forced():
    pub = unmarshal_public_key(H(V.SECP256K1_PUB), backend=PURE)
    assert type(pub._v).__name__ == "_PureSecpVerifier"
    assert pub.marshal().hex() == V.SECP256K1_PUB


def test_private_keys_are_refused_with_a_typed_error():
    with pytest.raises(InvalidKeyError, match="secp256k1"):
        unmarshal_private_key(H(V.SECP256K1_PRIV), backend=PURE)
    with pytest.raises(InvalidKeyError):
        Secp256k1PrivateKey.generate(backend=PURE)
    with pytest.raises(InvalidKeyError):
        generate_key("secp256k1", backend=PURE)
    assert generate_key("ed25519", backend=PURE).sign(b"m")  # other key types are unaffected


def test_spec_vector_verifies():
    key = unmarshal_private_key(H(V.SECP256K1_PRIV), backend="cryptography")
    pub = unmarshal_public_key(H(V.SECP256K1_PUB), backend=PURE)
    sig = key.sign(b"m")
    assert pub.verify(b"m", sig)
    assert not pub.verify(b"n", sig)


def test_rfc6979_known_answer_verifies():
    # d = 1, SHA-256("Satoshi Nakamoto"): the widely used RFC 6979 secp256k1 vector (low S)
    expected = (
        "3045022100934b1ea10a4b3c1757e2b0c017d0b6143ce3c9a7e6a4a49860d7a6ab210ee3d8"
        "02202442ce9d2b916064108014783e923ec36b49743e2ffa1c4496f01a512aafd9e5"
    )
    for backend in ("cryptography", "pycryptodome"):
        key = Secp256k1PrivateKey.from_raw((1).to_bytes(32, "big"), backend=backend)
        assert key.sign(b"Satoshi Nakamoto").hex() == expected
    pub = Secp256k1PublicKey.from_raw(_openssl_point(1), backend=PURE)
    assert pub.verify(b"Satoshi Nakamoto", H(expected))


@settings(max_examples=25, deadline=None)
@given(d=st.integers(min_value=1, max_value=_secp256k1.N - 1), msg=st.binary(max_size=200))
def test_matches_openssl(d, msg):
    ref = Secp256k1PrivateKey.from_raw(d.to_bytes(32, "big"), backend="cryptography")
    ours = Secp256k1PublicKey.from_raw(ref.public_key().raw(), backend=PURE)
    assert ours.marshal() == ref.public_key().marshal()
    sig = ref.sign(msg)
    assert ours.verify(msg, sig)
    assert not ours.verify(msg + b"x", sig)
    r, s = _der.decode_sig(sig)
    assert ours.verify(msg, _der.encode_sig(r, _secp256k1.N - s))  # high S verifies too, as in go


def test_uncompressed_points_and_parity():
    for d in (1, 2, 3, _secp256k1.N - 1):
        uncomp = _openssl_point(d)
        x, y = int.from_bytes(uncomp[1:33], "big"), int.from_bytes(uncomp[33:], "big")
        comp = _secp256k1.encode_point((x, y))
        assert comp[0] == 2 | (y & 1)
        assert _secp256k1.decode_point(comp) == (x, y) == _secp256k1.decode_point(uncomp)
        pub = unmarshal_public_key(b"\x08\x02\x12\x41" + uncomp, backend=PURE)
        assert pub.raw() == comp


@pytest.mark.parametrize("point", [
    b"\x02" + b"\xff" * 32,  # x >= p
    b"\x02" + (5).to_bytes(32, "big"),  # x^3 + 7 is not a square for x = 5
    b"\x04" + bytes(64),
    b"\x04" + (1).to_bytes(32, "big") + (1).to_bytes(32, "big"),
    b"\x05" + bytes(32),
    bytes(33),
])
def test_bad_points(point):
    with pytest.raises(InvalidKeyError):
        unmarshal_public_key(b"\x08\x02\x12" + bytes([len(point)]) + point, backend=PURE)


@pytest.mark.parametrize("sig", [b"", bytes(8), b"\x30\x06\x02\x01\x00\x02\x01\x01",
                                 b"\x30\x06\x02\x01\x01\x02\x01\x00"])
def test_garbage_signatures(sig):
    pub = unmarshal_public_key(H(V.SECP256K1_PUB), backend=PURE)
    assert pub.verify(b"m", sig) is False
