"""The pure-Python secp256k1 fallback of the pycryptodome backend, checked against OpenSSL."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import crypto_vectors as V
from geventp2p.crypto import _secp256k1
from geventp2p.crypto.backend_pycryptodome import PycryptodomeBackend
from geventp2p.crypto.keys import Secp256k1PrivateKey, unmarshal_private_key, unmarshal_public_key
from geventp2p.exceptions import InvalidKeyError

H = bytes.fromhex
PURE = PycryptodomeBackend(secp256k1_native=False)


def test_fallback_is_used_when_forced():
    key = unmarshal_private_key(H(V.SECP256K1_PRIV), backend=PURE)
    assert type(key._s._inner).__name__ == "_PureSecpSigner"


def test_spec_vector():
    key = unmarshal_private_key(H(V.SECP256K1_PRIV), backend=PURE)
    assert key.marshal().hex() == V.SECP256K1_PRIV
    assert key.public_key().marshal().hex() == V.SECP256K1_PUB
    assert key.public_key().verify(b"m", key.sign(b"m"))


def test_rfc6979_known_answer():
    # d = 1, SHA-256("Satoshi Nakamoto"): the widely used RFC 6979 secp256k1 vector (low S)
    expected = (
        "3045022100934b1ea10a4b3c1757e2b0c017d0b6143ce3c9a7e6a4a49860d7a6ab210ee3d8"
        "02202442ce9d2b916064108014783e923ec36b49743e2ffa1c4496f01a512aafd9e5"
    )
    for backend in (PURE, "cryptography", "pycryptodome"):
        key = Secp256k1PrivateKey.from_raw((1).to_bytes(32, "big"), backend=backend)
        assert key.sign(b"Satoshi Nakamoto").hex() == expected


@settings(max_examples=25, deadline=None)
@given(d=st.integers(min_value=1, max_value=_secp256k1.N - 1), msg=st.binary(max_size=200))
def test_matches_openssl(d, msg):
    raw = d.to_bytes(32, "big")
    ours = Secp256k1PrivateKey.from_raw(raw, backend=PURE)
    ref = Secp256k1PrivateKey.from_raw(raw, backend="cryptography")
    assert ours.public_key().marshal() == ref.public_key().marshal()
    sig = ours.sign(msg)
    assert sig == ref.sign(msg)
    assert ref.public_key().verify(msg, sig)
    assert ours.public_key().verify(msg, sig)
    assert not ours.public_key().verify(msg + b"x", sig)


def test_uncompressed_points_and_parity():
    for d in (1, 2, 3, _secp256k1.N - 1):
        x, y = _secp256k1.public_point(d)
        comp = _secp256k1.encode_point((x, y))
        uncomp = b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")
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


def test_scalar_range():
    with pytest.raises(ValueError):
        _secp256k1.public_point(0)
    with pytest.raises(ValueError):
        _secp256k1.public_point(_secp256k1.N)


@pytest.mark.parametrize("sig", [b"", bytes(8), b"\x30\x06\x02\x01\x00\x02\x01\x01",
                                 b"\x30\x06\x02\x01\x01\x02\x01\x00"])
def test_garbage_signatures(sig):
    pub = unmarshal_private_key(H(V.SECP256K1_PRIV), backend=PURE).public_key()
    assert pub.verify(b"m", sig) is False
