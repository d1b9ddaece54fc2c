"""Key types: spec and derived vectors (see crypto_vectors), round trips, cross-backend signatures, bad input."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

import crypto_vectors as V
from geventp2p._speedups import varint
from geventp2p.core.peer import PeerId
from geventp2p.crypto import _der
from geventp2p.crypto.backend import SECP256K1_N, get_backend
from geventp2p.crypto.keys import (
    EcdsaPrivateKey,
    Ed25519PrivateKey,
    Ed25519PublicKey,
    KeyType,
    PrivateKey,
    PublicKey,
    RsaPrivateKey,
    Secp256k1PrivateKey,
    Secp256k1PublicKey,
    extract_public_key,
    generate_key,
    parse_key_type,
    private_key_from_raw,
    public_key_from_raw,
    unmarshal_private_key,
    unmarshal_public_key,
)
from geventp2p.exceptions import InvalidKeyError
from geventp2p.pb import crypto_pb2, envelope_pb2, noise_pb2, peer_record_pb2

H = bytes.fromhex

PAIRS = [
    (V.ED25519_PRIV, V.ED25519_PUB, KeyType.Ed25519),
    (V.SECP256K1_PRIV, V.SECP256K1_PUB, KeyType.Secp256k1),
    (V.ECDSA_PRIV, V.ECDSA_PUB, KeyType.ECDSA),
]


@pytest.fixture(scope="module")
def rsa2048_der():
    """A PKCS#1 RSA-2048 private key made once with `cryptography` (fast)."""
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return k.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                           serialization.NoEncryption())


def _marshal(kt: int, data: bytes) -> bytes:
    return b"\x08" + varint.encode_uvarint(kt) + b"\x12" + varint.encode_uvarint(len(data)) + data


# ------------------------------------------------------------------ spec vectors (peer-ids.md)


@pytest.mark.parametrize("priv_hex,pub_hex,kt", PAIRS, ids=["ed25519", "secp256k1", "ecdsa"])
def test_spec_private_key_vectors(backend, priv_hex, pub_hex, kt):
    key = unmarshal_private_key(H(priv_hex))
    assert key.backend is backend
    assert key.key_type is kt
    assert key.marshal().hex() == priv_hex  # byte-exact re-marshal
    assert key.public_key().marshal().hex() == pub_hex
    pub = unmarshal_public_key(H(pub_hex))
    assert pub == key.public_key() and hash(pub) == hash(key.public_key())
    assert pub.marshal().hex() == pub_hex
    sig = key.sign(b"libp2p")
    assert pub.verify(b"libp2p", sig) and key.verify(b"libp2p", sig)
    assert not pub.verify(b"libp2P", sig)
    b58, cid = V.PEER_IDS[pub_hex]
    assert str(PeerId.from_public_key(pub)) == b58
    assert PeerId.from_public_key(pub).to_cid() == cid
    assert PeerId.from_private_key(key).to_base58() == b58


def test_spec_ed25519_peer_id_bytes(backend):
    key = unmarshal_private_key(H(V.ED25519_PRIV))
    assert PeerId.from_public_key(key.public_key()).to_bytes().hex() == V.ED25519_PEER_ID_BYTES
    assert key.public_key().raw() == H(V.ED25519_PUB)[4:]
    assert key.raw() == H(V.ED25519_PRIV)[4:]
    assert key.seed() == H(V.ED25519_PRIV)[4:36]


def test_spec_rsa_public_vector(backend):
    pub = unmarshal_public_key(H(V.RSA_PUB))
    assert pub.key_type is KeyType.RSA and pub.bits == 4096
    assert pub.marshal().hex() == V.RSA_PUB
    b58, cid = V.PEER_IDS[V.RSA_PUB]
    pid = PeerId.from_public_key(pub)
    assert pid.to_base58() == b58 and pid.to_cid() == cid
    assert extract_public_key(pid) is None and pid.matches_public_key(pub)


def test_key_protobuf_matches_generated_module(backend):
    pub = unmarshal_public_key(H(V.SECP256K1_PUB))
    msg = crypto_pb2.PublicKey.FromString(pub.marshal())
    assert msg.Type == crypto_pb2.Secp256k1 and msg.Data == pub.raw()
    assert msg.SerializeToString() == pub.marshal()


# ------------------------------------------------------------------ derived signature vectors


def test_noise_identity_sig_vector(backend):
    """Derived: identity_sig of the responder (spec Ed25519 key) over the static-key message."""
    key = unmarshal_private_key(H(V.ED25519_PRIV))
    signed = b"noise-libp2p-static-key:" + backend.x25519_public(H(V.NOISE_RESP_STATIC_PRIV))
    assert signed.hex() == V.NOISE_RESP_SIGNED
    assert key.sign(signed).hex() == V.NOISE_RESP_SIG
    assert key.public_key().verify(signed, H(V.NOISE_RESP_SIG))
    payload = noise_pb2.NoiseHandshakePayload(identity_key=key.public_key().marshal(), identity_sig=key.sign(signed))
    payload.extensions.stream_muxers.append("/yamux/1.0.0")
    assert payload.SerializeToString().hex() == V.NOISE_RESP_PAYLOAD


def test_noise_initiator_payload_vector(backend):
    key = Ed25519PrivateKey.from_seed(H(V.NOISE_INIT_SEED))
    assert str(PeerId.from_public_key(key.public_key())) == V.NOISE_INIT_PEER
    signed = b"noise-libp2p-static-key:" + backend.x25519_public(H(V.NOISE_INIT_STATIC_PRIV))
    payload = noise_pb2.NoiseHandshakePayload(identity_key=key.public_key().marshal(), identity_sig=key.sign(signed))
    payload.extensions.stream_muxers.append("/yamux/1.0.0")
    assert payload.SerializeToString().hex() == V.NOISE_INIT_PAYLOAD
    # and the receiving side's checks
    got = noise_pb2.NoiseHandshakePayload.FromString(H(V.NOISE_INIT_PAYLOAD))
    pub = unmarshal_public_key(got.identity_key)
    assert pub.verify(signed, got.identity_sig)
    assert PeerId.from_public_key(pub) == PeerId.from_string(V.NOISE_INIT_PEER)


def test_envelope_vector(backend):
    """Derived: signed peer record envelope."""
    key = unmarshal_private_key(H(V.ED25519_PRIV))
    pid = PeerId.from_public_key(key.public_key())
    rec = peer_record_pb2.PeerRecord(peer_id=pid.to_bytes(), seq=1)
    rec.addresses.add(multiaddr=H("047f000001060fa1"))
    payload = rec.SerializeToString()
    assert payload.hex() == V.PEER_RECORD
    to_sign = varint.encode_lp(b"libp2p-peer-record") + varint.encode_lp(b"\x03\x01") + varint.encode_lp(payload)
    assert to_sign.hex() == V.ENVELOPE_SIGNED
    sig = key.sign(to_sign)
    assert sig.hex() == V.ENVELOPE_SIG
    env = envelope_pb2.Envelope(payload_type=b"\x03\x01", payload=payload, signature=sig)
    env.public_key.ParseFromString(key.public_key().marshal())
    assert env.SerializeToString().hex() == V.ENVELOPE
    # verification from the wire bytes
    got = envelope_pb2.Envelope.FromString(H(V.ENVELOPE))
    signer = unmarshal_public_key(got.public_key.SerializeToString())
    assert signer.verify(to_sign, got.signature)
    assert not signer.verify(to_sign + b"x", got.signature)
    assert PeerId.from_bytes(peer_record_pb2.PeerRecord.FromString(got.payload).peer_id) == pid


def test_pubsub_signature_vector(backend):
    """Derived: StrictSign signature over "libp2p-pubsub:" || message."""
    key = unmarshal_private_key(H(V.ED25519_PRIV))
    data = b"libp2p-pubsub:" + H(V.PUBSUB_MSG)
    assert key.sign(data).hex() == V.PUBSUB_SIG
    assert key.public_key().verify(data, H(V.PUBSUB_SIG))


# ------------------------------------------------------------------ round trips


@pytest.mark.parametrize("kt", ["ed25519", "secp256k1", "ecdsa"])
def test_generate_roundtrip(backend, kt):
    key = generate_key(kt)
    assert isinstance(key, PrivateKey) and key.backend is backend
    again = unmarshal_private_key(key.marshal())
    assert again == key and again.marshal() == key.marshal()
    pub = unmarshal_public_key(key.public_key().marshal())
    assert pub == key.public_key()
    assert private_key_from_raw(kt, key.raw()) == key
    assert public_key_from_raw(kt, pub.raw()) == pub
    msg = b"x" * 1000
    assert pub.verify(msg, key.sign(msg))
    assert not pub.verify(msg, generate_key(kt).sign(msg))
    assert PeerId.from_public_key(pub).matches_public_key(pub)


def test_generate_defaults_to_ed25519(backend):
    key = generate_key()
    assert key.key_type is KeyType.Ed25519 and len(key.raw()) == 64
    assert len(key.public_key().marshal()) == 36


@pytest.mark.parametrize("curve", ["P-256", "P-384", "P-521"])
def test_ecdsa_curves(backend, curve):
    key = EcdsaPrivateKey.generate(curve)
    assert key.curve == curve
    again = unmarshal_private_key(key.marshal())
    assert again.marshal() == key.marshal() and again.curve == curve
    assert key.public_key().verify(b"m", key.sign(b"m"))
    assert len(PeerId.from_public_key(key.public_key()).to_bytes()) == 34  # sha2-256


def test_rsa_roundtrip(backend, rsa2048_der):
    key = private_key_from_raw(KeyType.RSA, rsa2048_der)
    assert key.key_type is KeyType.RSA and key.bits == 2048
    assert key.raw() == rsa2048_der  # PKCS#1 DER re-encodes byte-exactly
    again = unmarshal_private_key(key.marshal())
    assert again == key
    pub = unmarshal_public_key(key.public_key().marshal())
    assert pub.bits == 2048
    assert pub.raw()[:4] == b"\x30\x82\x01\x22"  # PKIX SPKI for a 2048-bit key
    sig = key.sign(b"hello")
    assert len(sig) == 256 and pub.verify(b"hello", sig)
    assert not pub.verify(b"hellO", sig)
    assert len(PeerId.from_public_key(pub).to_bytes()) == 34


@pytest.mark.parametrize("name", ["pycryptodome", "cryptography"])
def test_rsa_generate(name):
    key = generate_key("rsa", bits=2048, backend=name)
    assert key.bits == 2048 and key.backend.name == name
    assert unmarshal_public_key(key.public_key().marshal(), backend="cryptography").verify(b"a", key.sign(b"a"))


def test_private_key_equality_and_repr(backend):
    key = unmarshal_private_key(H(V.ED25519_PRIV))
    assert key == unmarshal_private_key(H(V.ED25519_PRIV))
    assert key != generate_key()
    assert key != key.public_key()
    assert H(V.ED25519_PRIV)[4:36].hex() not in repr(key)
    assert repr(key).startswith("<Ed25519PrivateKey public=1ed1e8fa")
    assert len({key, unmarshal_private_key(H(V.ED25519_PRIV))}) == 1


def test_a_key_parsed_again_while_in_use_is_the_same_object(backend):
    """A peer's key arrives in the handshake, identify and its signed record: one copy
    per peer while any is in use, a fresh parse once none is."""
    import gc

    data = generate_key(backend=backend).public_key().marshal()
    first = unmarshal_public_key(data, backend=backend)
    again = unmarshal_public_key(bytearray(data), backend=backend)
    assert again is first and again.backend is backend
    other = get_backend("pycryptodome" if backend.name == "cryptography" else "cryptography")
    assert unmarshal_public_key(data, backend=other) is not first  # per backend
    assert unmarshal_public_key(data, backend=other) == first
    del first, again
    gc.collect()
    fresh = unmarshal_public_key(data, backend=backend)
    assert fresh.marshal() == data
    with pytest.raises(InvalidKeyError):
        unmarshal_public_key(data[:-1], backend=backend)  # a bad one is not cached
    with pytest.raises(InvalidKeyError):
        unmarshal_public_key(data[:-1], backend=backend)


@pytest.mark.parametrize("kt", ["ed25519", "secp256k1", "ecdsa"])
def test_a_peer_key_holds_no_openssl_key_object(kt):
    """A peer's public key keeps its encoding, not an OpenSSL key object: one per idle
    connection pinned a page of freed memory each (bench.conns).  It still verifies."""
    import gc

    from cryptography.hazmat.primitives.asymmetric import ed25519

    backend = get_backend("cryptography")
    priv = generate_key(kt, backend=backend)
    pub = unmarshal_public_key(priv.public_key().marshal(), backend=backend)
    openssl_keys = (ed25519.Ed25519PublicKey, ec.EllipticCurvePublicKey)
    seen, todo = set(), [pub]
    while todo:  # everything the key object reaches, a few levels down
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, type) or len(seen) > 200:
            continue
        seen.add(id(obj))
        assert not isinstance(obj, openssl_keys), f"{kt}: the peer key keeps {obj!r}"
        todo.extend(gc.get_referents(obj))
        todo.extend(getattr(obj, name, None) for name in getattr(type(obj), "__slots__", ()))
    msg = b"kept as bytes"
    sig = priv.sign(msg)
    assert pub.verify(msg, sig) and not pub.verify(msg + b"!", sig)


def test_parse_key_type():
    assert parse_key_type("ED25519") is KeyType.Ed25519
    assert parse_key_type(2) is KeyType.Secp256k1
    assert parse_key_type(KeyType.RSA) is KeyType.RSA
    for bad in ("dsa", 4, -1, True, None, 1.0):
        with pytest.raises(InvalidKeyError):
            parse_key_type(bad)


# ------------------------------------------------------------------ cross-backend


def _all_keys(backend, rsa_der):
    return [
        unmarshal_private_key(H(V.ED25519_PRIV), backend),
        unmarshal_private_key(H(V.SECP256K1_PRIV), backend),
        unmarshal_private_key(H(V.ECDSA_PRIV), backend),
        EcdsaPrivateKey.generate("P-384", backend),
        private_key_from_raw(KeyType.RSA, rsa_der, backend),
        generate_key("ed25519", backend=backend),
        generate_key("secp256k1", backend=backend),
    ]


def test_sign_one_backend_verify_other(backend_pair, rsa2048_der):
    signer_b, verifier_b = backend_pair
    for key in _all_keys(signer_b, rsa2048_der):
        pub = unmarshal_public_key(key.public_key().marshal(), backend=verifier_b)
        assert pub.backend is verifier_b
        for msg in (b"", b"a", bytes(range(256)) * 10):
            sig = key.sign(msg)
            assert pub.verify(msg, sig), key
            assert not pub.verify(msg + b"!", sig), key
        # same encodings from both backends
        other = unmarshal_private_key(key.marshal(), backend=verifier_b)
        assert other.marshal() == key.marshal()
        assert other.public_key().marshal() == key.public_key().marshal()


@pytest.mark.parametrize("priv_hex", [V.ED25519_PRIV, V.SECP256K1_PRIV, V.ECDSA_PRIV])
def test_deterministic_signatures_identical_across_backends(priv_hex):
    a = unmarshal_private_key(H(priv_hex), backend="cryptography")
    b = unmarshal_private_key(H(priv_hex), backend="pycryptodome")
    for msg in (b"", b"abc", b"x" * 500):
        assert a.sign(msg) == b.sign(msg) == a.sign(msg)


@settings(max_examples=30, deadline=None)
@given(msg=st.binary(max_size=512))
def test_secp256k1_signatures_are_low_s(msg):
    for name in ("cryptography", "pycryptodome"):
        key = unmarshal_private_key(H(V.SECP256K1_PRIV), backend=name)
        r, s = _der.decode_sig(key.sign(msg))
        assert 0 < s <= SECP256K1_N // 2


@pytest.mark.parametrize("name", ["cryptography", "pycryptodome"])
def test_secp256k1_high_s_signature_still_verifies(name):
    key = unmarshal_private_key(H(V.SECP256K1_PRIV), backend=name)
    r, s = _der.decode_sig(key.sign(b"msg"))
    high = _der.encode_sig(r, SECP256K1_N - s)
    assert key.public_key().verify(b"msg", high)


def test_ed25519_known_answer_rfc8032(backend):
    # RFC 8032 §7.1 TEST 2
    key = Ed25519PrivateKey.from_seed(H("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb"))
    assert key.public_key().raw().hex() == "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"
    assert key.sign(b"\x72").hex() == (
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
    )


@settings(max_examples=25, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32), msg=st.binary(max_size=300))
def test_ed25519_backends_agree(seed, msg):
    a = Ed25519PrivateKey.from_seed(seed, backend="cryptography")
    b = Ed25519PrivateKey.from_seed(seed, backend="pycryptodome")
    assert a.marshal() == b.marshal()
    sig = a.sign(msg)
    assert b.sign(msg) == sig and b.public_key().verify(msg, sig)


# ------------------------------------------------------------------ bad input


def test_ed25519_legacy_96_byte_form(backend):
    raw = H(V.ED25519_PRIV)[4:]
    legacy = raw + raw[32:]
    key = unmarshal_private_key(_marshal(1, legacy))
    assert key.marshal().hex() == V.ED25519_PRIV  # re-marshalled in the 64-byte form
    bad = raw + bytes(32)
    with pytest.raises(InvalidKeyError, match="copies differ"):
        unmarshal_private_key(_marshal(1, bad))


BAD_PRIVATE = [
    (b"", "lacks the required Type"),
    (b"\x08\x01", "lacks the required Data"),
    (b"\x12\x00", "lacks the required Type"),
    (b"\x08", "truncated"),
    (b"\x08\x01\x12\x40" + bytes(10), "runs past the end"),
    (b"\x08\x01\x12", "truncated"),
    (b"\x08\x07\x12\x00", "unsupported key type 7"),
    (b"\x08\x80\x00\x12\x00", "bad varint"),
    (b"\x0b\x12\x00", "wire type"),
    (b"\x02\x01", "field number 0"),
    (_marshal(1, bytes(63)), "64 bytes"),
    (_marshal(1, H(V.ED25519_PRIV)[4:36] + bytes(32)), "does not match the seed"),
    (_marshal(2, bytes(32)), "out of range"),
    (_marshal(2, SECP256K1_N.to_bytes(32, "big")), "out of range"),
    (_marshal(2, bytes(31) + b"\x01" + b"\x00"), "32 bytes"),
    (_marshal(3, b"\x30\x03\x02\x01\x01"), "ECDSA"),
    (_marshal(3, b""), "ECDSA"),
    (_marshal(3, H(V.ECDSA_PUB)[4:]), "ECDSA"),  # a public SPKI where a private key belongs
    (_marshal(0, b"\x30\x00"), "RSA"),
    (_marshal(0, bytes(100)), "RSA"),
    (b"\x08\x01\x12\xff\xff\x03" + bytes(70000), "exceeds"),
]


@pytest.mark.parametrize("data,msg", BAD_PRIVATE, ids=[f"priv{i}" for i in range(len(BAD_PRIVATE))])
def test_bad_private_keys(backend, data, msg):
    with pytest.raises(InvalidKeyError, match=msg):
        unmarshal_private_key(data)


BAD_PUBLIC = [
    (_marshal(1, bytes(31)), "32 bytes"),
    (_marshal(1, bytes(33)), "32 bytes"),
    (_marshal(2, bytes(32)), "33"),
    (_marshal(2, b"\x02" + b"\xff" * 32), "secp256k1"),  # x >= p
    (_marshal(2, b"\x05" + bytes(32)), "secp256k1"),
    (_marshal(2, b"\x04" + bytes(64)), "secp256k1"),
    (_marshal(3, b"\x30\x00"), "ECDSA"),
    (_marshal(3, H(V.ECDSA_PRIV)[4:]), "ECDSA"),  # private DER where a public key belongs
    (_marshal(0, b"junk"), "RSA"),
    (_marshal(0, H(V.ECDSA_PUB)[4:]), "RSA"),
    (_marshal(3, H(V.RSA_PUB)[6:]), "ECDSA"),
]


@pytest.mark.parametrize("data,msg", BAD_PUBLIC, ids=[f"pub{i}" for i in range(len(BAD_PUBLIC))])
def test_bad_public_keys(backend, data, msg):
    with pytest.raises(InvalidKeyError, match=msg):
        unmarshal_public_key(data)


def test_non_bytes_input(backend):
    with pytest.raises(InvalidKeyError, match="must be bytes"):
        unmarshal_public_key("080112")
    with pytest.raises(InvalidKeyError, match="must be bytes"):
        unmarshal_private_key(None)


def test_secp256k1_uncompressed_public_key_is_recompressed(backend):
    k = ec.derive_private_key(int.from_bytes(H(V.SECP256K1_PRIV)[4:], "big"), ec.SECP256K1())
    uncompressed = k.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    pub = unmarshal_public_key(_marshal(2, uncompressed))
    assert isinstance(pub, Secp256k1PublicKey)
    assert pub.marshal().hex() == V.SECP256K1_PUB


@pytest.mark.parametrize("bits", [1024, 1536])
def test_small_rsa_rejected(backend, bits):
    k = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    priv = k.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                           serialization.NoEncryption())
    pub = k.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(InvalidKeyError, match="too small"):
        unmarshal_private_key(_marshal(0, priv))
    with pytest.raises(InvalidKeyError, match="too small"):
        unmarshal_public_key(_marshal(0, pub))
    with pytest.raises(InvalidKeyError, match="too small"):
        generate_key("rsa", bits=bits)


def test_huge_rsa_rejected_before_generation():
    with pytest.raises(InvalidKeyError, match="too big"):
        RsaPrivateKey.generate(16384)


def test_unsupported_ecdsa_curve(backend):
    with pytest.raises(InvalidKeyError, match="curve"):
        EcdsaPrivateKey.generate("P-192")
    # a secp256k1 key wrapped in SPKI/SEC1 is not a libp2p ECDSA key (go's x509 refuses it too)
    k = ec.generate_private_key(ec.SECP256K1())
    spki = k.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    sec1 = k.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                           serialization.NoEncryption())
    with pytest.raises(InvalidKeyError):
        unmarshal_public_key(_marshal(3, spki))
    with pytest.raises(InvalidKeyError):
        unmarshal_private_key(_marshal(3, sec1))


def test_key_protobuf_tolerates_unknown_fields_and_reorders(backend):
    raw = H(V.ED25519_PUB)[4:]
    swapped = b"\x12\x20" + raw + b"\x08\x01"
    extra = H(V.ED25519_PUB) + b"\x18\x05" + b"\x22\x01x" + b"\x2d\x00\x00\x00\x00" + b"\x31" + bytes(8)
    for data in (swapped, extra):
        assert unmarshal_public_key(data).marshal().hex() == V.ED25519_PUB


@pytest.mark.parametrize("priv_hex", [V.ED25519_PRIV, V.SECP256K1_PRIV, V.ECDSA_PRIV])
@pytest.mark.parametrize("sig", [b"", b"\x00", bytes(64), b"\x30\x06\x02\x01\x00\x02\x01\x00", bytes(512)])
def test_garbage_signatures_do_not_verify(backend, priv_hex, sig):
    pub = unmarshal_private_key(H(priv_hex)).public_key()
    assert pub.verify(b"data", sig) is False


def test_garbage_rsa_signatures(backend, rsa2048_der):
    pub = private_key_from_raw("rsa", rsa2048_der).public_key()
    for sig in (b"", bytes(256), b"\xff" * 256, bytes(255), bytes(257)):
        assert pub.verify(b"data", sig) is False


def test_ed25519_non_point_public_key_loads_but_never_verifies(backend):
    # y = 2 is not on the curve; go accepts any 32 bytes and fails at verification
    pub = Ed25519PublicKey.from_raw(b"\x02" + bytes(31))
    assert pub.marshal() == b"\x08\x01\x12\x20\x02" + bytes(31)
    assert pub.verify(b"data", bytes(64)) is False


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200))
def test_fuzz_unmarshal_only_raises_invalid_key(data):
    for name in ("cryptography", "pycryptodome"):
        for fn in (unmarshal_public_key, unmarshal_private_key):
            try:
                key = fn(data, backend=name)
            except InvalidKeyError:
                continue
            assert isinstance(key, (PublicKey, PrivateKey))


@settings(max_examples=200, deadline=None)
@given(kt=st.sampled_from([0, 1, 2, 3]), body=st.binary(max_size=150))
def test_fuzz_typed_bodies_only_raise_invalid_key(kt, body):
    for name in ("cryptography", "pycryptodome"):
        for fn in (unmarshal_public_key, unmarshal_private_key):
            try:
                fn(_marshal(kt, body), backend=name)
            except InvalidKeyError:
                pass


def test_hashed_peer_id_uses_sha256_of_marshalled_key(backend):
    pub = unmarshal_public_key(H(V.ECDSA_PUB))
    assert PeerId.from_public_key(pub).to_bytes() == b"\x12\x20" + hashlib.sha256(H(V.ECDSA_PUB)).digest()


def test_envelope_keeps_rsa_key_type(backend, rsa2048_der):
    """envelope.proto is proto3: its PublicKey.Type must still be written when it is RSA (0)."""
    pub = private_key_from_raw("rsa", rsa2048_der).public_key()
    env = envelope_pb2.Envelope(payload_type=b"\x03\x01", payload=b"p", signature=b"s")
    env.public_key.ParseFromString(pub.marshal())
    wire = env.SerializeToString()
    assert wire.startswith(b"\x0a" + varint.encode_uvarint(len(pub.marshal())) + b"\x08\x00\x12")
    got = envelope_pb2.Envelope.FromString(wire)
    assert unmarshal_public_key(got.public_key.SerializeToString()) == pub


def test_plaintext_exchange_embeds_key_protobuf(backend):
    from geventp2p.pb import plaintext_pb2

    key = unmarshal_private_key(H(V.ED25519_PRIV))
    ex = plaintext_pb2.Exchange(id=PeerId.from_public_key(key).to_bytes())
    ex.pubkey.ParseFromString(key.public_key().marshal())
    wire = ex.SerializeToString()
    assert wire.hex() == "0a26" + V.ED25519_PEER_ID_BYTES + "1224" + V.ED25519_PUB
    got = plaintext_pb2.Exchange.FromString(wire)
    assert unmarshal_public_key(got.pubkey.SerializeToString()) == key.public_key()
