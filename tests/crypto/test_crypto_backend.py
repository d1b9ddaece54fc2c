"""Backend selection, Noise primitives (X25519, ChaCha20-Poly1305, hashes) and the DER signature codec."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geventp2p.crypto import _der
from geventp2p.crypto.backend import BACKEND_NAMES, ENV_VAR, SECP256K1_N, available_backends, get_backend
from geventp2p.exceptions import ConfigError, SecurityError

H = bytes.fromhex


# ------------------------------------------------------------------ selection


def test_both_backends_available():
    assert available_backends() == list(BACKEND_NAMES)


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_env_forces_backend(monkeypatch, name):
    monkeypatch.setenv(ENV_VAR, name)
    assert get_backend().name == name
    monkeypatch.setenv(ENV_VAR, name.upper())
    assert get_backend().name == name


def test_default_prefers_cryptography(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert get_backend().name == "cryptography"
    monkeypatch.setenv(ENV_VAR, "")
    assert get_backend().name == "cryptography"


def test_unknown_env_value_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "openssl")
    with pytest.raises(ConfigError, match=r"GEVENTP2P_CRYPTO='openssl'.*cryptography, pycryptodome"):
        get_backend()


def test_unknown_explicit_name():
    with pytest.raises(ConfigError, match="unknown crypto backend"):
        get_backend("nacl")


def test_explicit_name_overrides_env(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "pycryptodome")
    assert get_backend("cryptography").name == "cryptography"


def test_backend_instances_are_cached():
    assert get_backend("pycryptodome") is get_backend("pycryptodome")


# ------------------------------------------------------------------ X25519 (RFC 7748 §6.1)

ALICE_PRIV = H("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
ALICE_PUB = H("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
BOB_PRIV = H("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
BOB_PUB = H("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
SHARED = H("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")


def test_x25519_rfc7748(backend):
    assert backend.x25519_public(ALICE_PRIV) == ALICE_PUB
    assert backend.x25519_public(BOB_PRIV) == BOB_PUB
    assert backend.x25519(ALICE_PRIV, BOB_PUB) == SHARED
    assert backend.x25519(BOB_PRIV, ALICE_PUB) == SHARED


def test_x25519_noise_vector_static_key(backend):
    # derived vector: responder X25519 static public key from resp_static
    priv = H("0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20")
    assert backend.x25519_public(priv).hex() == "07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c"


def test_x25519_generate_roundtrip(backend):
    a_priv, a_pub = backend.x25519_generate()
    b_priv, b_pub = backend.x25519_generate()
    assert len(a_priv) == len(a_pub) == 32 and a_priv != b_priv
    assert backend.x25519_public(a_priv) == a_pub
    assert backend.x25519(a_priv, b_pub) == backend.x25519(b_priv, a_pub)


def test_x25519_cross_backend(backend_pair):
    a, b = backend_pair
    priv, pub = a.x25519_generate()
    priv2, pub2 = b.x25519_generate()
    assert a.x25519(priv, pub2) == b.x25519(priv2, pub)


@pytest.mark.parametrize("bad_pub", [bytes(32), b"\x01" + bytes(31)])
def test_x25519_low_order_point_rejected(backend, bad_pub):
    with pytest.raises(SecurityError):
        backend.x25519(ALICE_PRIV, bad_pub)


def test_x25519_wrong_length_rejected(backend):
    with pytest.raises(SecurityError):
        backend.x25519(ALICE_PRIV, ALICE_PUB[:31])


# ------------------------------------------------------------------ ChaCha20-Poly1305 (RFC 8439 §2.8.2)

AEAD_KEY = H("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f")
AEAD_NONCE = H("070000004041424344454647")
AEAD_AD = H("50515253c0c1c2c3c4c5c6c7")
AEAD_PT = (
    b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, "
    b"sunscreen would be it."
)
AEAD_CT = H(
    "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6"
    "a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc3ff4def08e4b7a9de576d26586cec64b6116"
)
AEAD_TAG = H("1ae10b594f09e26a7e902ecbd0600691")


def test_aead_rfc8439(backend):
    aead = backend.aead(AEAD_KEY)
    assert aead.encrypt(AEAD_NONCE, AEAD_PT, AEAD_AD) == AEAD_CT + AEAD_TAG
    assert aead.decrypt(AEAD_NONCE, AEAD_CT + AEAD_TAG, AEAD_AD) == AEAD_PT


def test_aead_reused_for_many_nonces(backend):
    aead = backend.aead(AEAD_KEY)
    cts = [aead.encrypt(n.to_bytes(4, "little") + bytes(8), b"m", b"") for n in range(5)]
    assert len(set(cts)) == 5
    for n, ct in enumerate(cts):
        assert aead.decrypt(n.to_bytes(4, "little") + bytes(8), ct, b"") == b"m"


def test_aead_empty_plaintext_and_memoryview(backend):
    aead = backend.aead(AEAD_KEY)
    ct = aead.encrypt(bytes(12), b"", b"")
    assert len(ct) == 16
    assert aead.decrypt(bytes(12), memoryview(bytearray(ct)), b"") == b""


@pytest.mark.parametrize(
    "mutate",
    [
        lambda ct, ad, nonce: (ct[:-1] + bytes([ct[-1] ^ 1]), ad, nonce),
        lambda ct, ad, nonce: (bytes([ct[0] ^ 0x80]) + ct[1:], ad, nonce),
        lambda ct, ad, nonce: (ct, ad + b"x", nonce),
        lambda ct, ad, nonce: (ct, ad, b"\x01" + nonce[1:]),
        lambda ct, ad, nonce: (ct[:15], ad, nonce),
        lambda ct, ad, nonce: (b"", ad, nonce),
    ],
    ids=["tag", "body", "ad", "nonce", "short", "empty"],
)
def test_aead_tamper_raises_security_error(backend, mutate):
    aead = backend.aead(AEAD_KEY)
    ct = aead.encrypt(AEAD_NONCE, b"attack at dawn", AEAD_AD)
    ct2, ad2, nonce2 = mutate(ct, AEAD_AD, AEAD_NONCE)
    with pytest.raises(SecurityError):
        aead.decrypt(nonce2, ct2, ad2)


def test_aead_key_length_checked(backend):
    with pytest.raises(ValueError):
        backend.aead(bytes(16))


@settings(max_examples=50, deadline=None)
@given(key=st.binary(min_size=32, max_size=32), nonce=st.binary(min_size=12, max_size=12),
       pt=st.binary(max_size=2000), ad=st.binary(max_size=64))
def test_aead_backends_agree(key, nonce, pt, ad):
    c, p = get_backend("cryptography").aead(key), get_backend("pycryptodome").aead(key)
    ct = c.encrypt(nonce, pt, ad)
    assert p.encrypt(nonce, pt, ad) == ct
    assert p.decrypt(nonce, ct, ad) == pt == c.decrypt(nonce, ct, ad)


# ------------------------------------------------------------------ hashes


def test_sha256_and_hmac(backend):
    assert backend.sha256(b"abc").hex() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    # RFC 4231 test case 2
    assert backend.hmac_sha256(b"Jefe", b"what do ya want for nothing?").hex() == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


@given(key=st.binary(max_size=100), data=st.binary(max_size=300))
def test_hmac_matches_stdlib(key, data):
    for name in BACKEND_NAMES:
        assert get_backend(name).hmac_sha256(key, data) == hmac.new(key, data, hashlib.sha256).digest()


# ------------------------------------------------------------------ DER signature codec


@given(r=st.integers(min_value=0, max_value=2**528), s=st.integers(min_value=0, max_value=2**528))
def test_der_roundtrip(r, s):
    assert _der.decode_sig(_der.encode_sig(r, s)) == (r, s)


def test_der_known_encoding():
    assert _der.encode_sig(1, 0x80).hex() == "30070201010202" "0080"
    assert _der.decode_sig(H("3006020101020101")) == (1, 1)


@pytest.mark.parametrize(
    "sig",
    [
        "",
        "3107020101020200ff",  # wrong outer tag
        "30070201010202000080",  # trailing byte
        "3008020101020300ff",  # length mismatch
        "300802020001020200ff",  # non-minimal r
        "3007020101020280ff",  # negative s
        "30070201010300020080",  # wrong inner tag
        "3081070201010202" "0080",  # non-minimal outer length
        "30080201010203" "00",  # truncated
    ],
)
def test_der_rejects_malformed(sig):
    with pytest.raises(ValueError):
        _der.decode_sig(H(sig))


def test_low_s():
    n = SECP256K1_N
    assert _der.low_s(5, n - 1, n) == (5, 1)
    assert _der.low_s(5, 1, n) == (5, 1)
    assert _der.low_s(5, n // 2, n) == (5, n // 2)
    assert _der.low_s(5, n // 2 + 1, n) == (5, n - (n // 2 + 1))
