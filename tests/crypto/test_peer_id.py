"""PeerId / PeerInfo and the multibase helpers."""

from __future__ import annotations

import copy
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

import crypto_vectors as V
from geventp2p.core import multibase
from geventp2p.core.peer import PeerId, PeerInfo
from geventp2p.crypto.keys import extract_public_key, generate_key, unmarshal_public_key
from geventp2p.exceptions import InvalidKeyError, InvalidPeerIdError

H = bytes.fromhex


@pytest.mark.parametrize("pub_hex", list(V.PEER_IDS), ids=["ed25519", "secp256k1", "ecdsa", "rsa"])
def test_spec_peer_ids(pub_hex):
    b58, cid = V.PEER_IDS[pub_hex]
    from_key = PeerId.from_public_key(unmarshal_public_key(H(pub_hex)))
    assert PeerId.from_public_key(H(pub_hex)) == from_key  # serialized key bytes work too
    for text in (b58, cid, from_key.to_cid("base58btc")):
        pid = PeerId.from_string(text)
        assert pid == from_key
        assert str(pid) == pid.to_base58() == b58
        assert pid.to_cid() == cid
    assert PeerId.from_bytes(from_key.to_bytes()) == from_key


def test_bare_multihash_with_multibase_prefix_is_not_a_cid():
    # go's peer.Decode: "z" + base58(multihash) is not a CIDv1, so it is rejected
    with pytest.raises(InvalidPeerIdError, match="CID version 0"):
        PeerId.from_string("z" + V.PEER_IDS[V.ED25519_PUB][0])


def test_spec_prefixes():
    assert str(PeerId.from_string(V.PEER_IDS[V.ED25519_PUB][0])).startswith("12D3KooW")
    assert str(PeerId.from_string(V.PEER_IDS[V.SECP256K1_PUB][0])).startswith("16Uiu2")


def test_spec_examples():
    pid = PeerId.from_string("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N")
    assert pid.to_cid() == "bafzbeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqxe"
    assert PeerId.from_string("bafzbeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqxe") == pid
    ed = PeerId.from_string("12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA")
    assert ed.to_bytes().hex() == "0024080112202ffa35a99d3a3cfbb17bb7c1dc5561b18a8dcca4df38dc613ea859c37eb1336b"
    assert ed.to_cid() == "bafzaajaiaejcal72gwuz2or47oyxxn6b3rkwdmmkrxgkjxzy3rqt5kczyn7lcm3l"
    assert PeerId.from_string("bafzaajaiaejcal72gwuz2or47oyxxn6b3rkwdmmkrxgkjxzy3rqt5kczyn7lcm3l") == ed


@pytest.mark.parametrize("base", ["base32", "base32upper", "base58btc", "base36", "base36upper", "base16",
                                  "base16upper", "base64", "base64url"])
def test_cid_any_multibase(base):
    pid = PeerId.from_public_key(generate_key())
    text = pid.to_cid(base)
    assert PeerId.from_string(text) == pid


def test_extract_public_key():
    ed = PeerId.from_string(V.PEER_IDS[V.ED25519_PUB][0])
    assert ed.is_inline
    assert extract_public_key(ed).marshal().hex() == V.ED25519_PUB
    assert ed.inline_public_key().hex() == V.ED25519_PUB
    secp = PeerId.from_string(V.PEER_IDS[V.SECP256K1_PUB][0])
    assert extract_public_key(secp).marshal().hex() == V.SECP256K1_PUB
    hashed = PeerId.from_string(V.PEER_IDS[V.ECDSA_PUB][0])
    assert not hashed.is_inline and extract_public_key(hashed) is None and hashed.inline_public_key() is None
    bogus = PeerId.from_bytes(b"\x00\x03abc")  # identity multihash of something that is not a key
    with pytest.raises(InvalidKeyError):
        extract_public_key(bogus)


def test_matches_public_key():
    key = generate_key().public_key()
    pid = PeerId.from_public_key(key)
    assert pid.matches_public_key(key)
    assert not pid.matches_public_key(generate_key().public_key())
    assert not pid.matches_public_key(object())


def test_value_semantics():
    a = PeerId.from_public_key(generate_key())
    b = PeerId.from_public_key(generate_key())
    a2 = PeerId.from_bytes(a.to_bytes())
    assert a == a2 and hash(a) == hash(a2) and a is not a2
    assert a != b and (a < b) == (a.to_bytes() < b.to_bytes())
    assert sorted([b, a]) == sorted([a, b])
    assert (a <= a2) and (a >= a2) and not (a < a2) and not (a > a2)
    assert a != a.to_bytes() and a != str(a)
    assert len({a, a2, b}) == 2
    assert repr(a) == f"<PeerId {a}>"
    assert bytes(a) == a.to_bytes()
    assert pickle.loads(pickle.dumps(a)) == a
    assert copy.deepcopy(a) == a
    assert a.short().startswith("12*") and a.short()[-6:] == str(a)[-6:]
    with pytest.raises(TypeError):
        a < "x"  # noqa: B015


BAD_STRINGS = [
    "",
    "Qm",
    "1",
    "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3p0",  # 0 not in base58
    "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pqq",  # trailing garbage -> length mismatch
    "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5",  # truncated
    "bafzbeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqx",  # truncated CID
    "bafybeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqxe",  # dag-pb codec, not libp2p-key
    "xyz",  # unknown multibase prefix
    "b!!!!",
    "bAFZBEIE5745RPV2M6TJYUUGYWY4D5EWRQGQQHFNF445HE3OMZPJBX5XQXE",  # mixed case for 'b'
    "f00",
    "f0172",
    "f02721220" + "00" * 32,  # CID version 2
    "f01721219" + "00" * 25,  # sha2-256 with 25-byte digest
    "m" + "A" * 1000,
    "Qm" + "x" * 600,
]


@pytest.mark.parametrize("text", BAD_STRINGS, ids=[f"s{i}" for i in range(len(BAD_STRINGS))])
def test_bad_strings(text):
    with pytest.raises(InvalidPeerIdError):
        PeerId.from_string(text)


def test_empty_identity():
    # "00 00" is a syntactically valid multihash; it is not a key, so extraction fails.
    pid = PeerId.from_bytes(b"\x00\x00")
    assert PeerId.from_string("f01720000") == pid
    with pytest.raises(InvalidKeyError):
        extract_public_key(pid)


@pytest.mark.parametrize("data", [b"", b"\x12", b"\x12\x20" + bytes(31), b"\x12\x20" + bytes(33), b"\x12\x00",
                                  b"\x80", b"\x00\x80\x00", b"\x00" * 300])
def test_bad_bytes(data):
    with pytest.raises(InvalidPeerIdError):
        PeerId.from_bytes(data)


def test_wrong_types():
    with pytest.raises(InvalidPeerIdError):
        PeerId.from_string(b"Qm")
    with pytest.raises(InvalidPeerIdError):
        PeerId.from_bytes("Qm")


@given(st.text(max_size=80))
def test_fuzz_from_string(text):
    try:
        pid = PeerId.from_string(text)
    except InvalidPeerIdError:
        return
    assert PeerId.from_string(pid.to_cid()) == pid


@given(st.binary(max_size=80))
def test_fuzz_from_bytes(data):
    try:
        pid = PeerId.from_bytes(data)
    except InvalidPeerIdError:
        return
    assert PeerId.from_string(pid.to_cid()) == pid
    text = str(pid)
    if text.startswith(("1", "Qm")):  # e.g. a sha2-512 ID prints as "8V…" and only parses as a CID
        assert PeerId.from_string(text) == pid


def test_peer_info():
    pid = PeerId.from_public_key(generate_key())
    info = PeerInfo(pid, ["/ip4/127.0.0.1/tcp/1"])
    assert info.peer_id is pid and info.addrs == ("/ip4/127.0.0.1/tcp/1",)
    assert info == PeerInfo(pid, ("/ip4/127.0.0.1/tcp/1",)) and hash(info) == hash(PeerInfo(pid, info.addrs))
    assert PeerInfo(pid).addrs == ()
    assert str(pid) in repr(info)
    with pytest.raises(AttributeError):
        info.addrs = ()
    with pytest.raises(TypeError):
        PeerInfo(str(pid), [])
    assert pickle.loads(pickle.dumps(info)) == info


# ------------------------------------------------------------------ multibase


def test_base58_vectors():
    assert multibase.b58encode(b"") == ""
    assert multibase.b58encode(b"\x00\x00\x01") == "112"
    assert multibase.b58encode(b"hello world") == "StV1DL6CwTryKyV"
    assert multibase.b58decode("StV1DL6CwTryKyV") == b"hello world"
    assert multibase.b58decode("112") == b"\x00\x00\x01"
    with pytest.raises(ValueError):
        multibase.b58decode("0OIl")


def test_base32_vectors():
    assert multibase.b32encode(b"foobar") == "mzxw6ytboi"
    assert multibase.b32decode("mzxw6ytboi") == b"foobar"
    assert multibase.b32decode("MZXW6YTBOI") == b"foobar"
    for bad in ("mzxw6ytbo1", "a", "abc", "mZxw"):
        with pytest.raises(ValueError):
            multibase.b32decode(bad)


def test_multibase_prefixes():
    assert multibase.multibase_encode("base32", b"foobar") == "bmzxw6ytboi"
    assert multibase.multibase_encode("base16", b"\x01\xff") == "f01ff"
    assert multibase.multibase_decode("bmzxw6ytboi") == ("base32", b"foobar")
    assert multibase.multibase_decode("zStV1DL6CwTryKyV") == ("base58btc", b"hello world")
    for bad in ("", "?abc", "f0", "m===="):
        with pytest.raises(ValueError):
            multibase.multibase_decode(bad)
    with pytest.raises(ValueError):
        multibase.multibase_encode("base2", b"")


@given(st.binary(max_size=64), st.sampled_from(["base58btc", "base32", "base32upper", "base36", "base36upper",
                                                "base16", "base16upper", "base64", "base64url"]))
def test_multibase_roundtrip(data, base):
    assert multibase.multibase_decode(multibase.multibase_encode(base, data)) == (base, data)


def test_multihash():
    assert multibase.multihash_encode(0x12, bytes(32))[:2] == b"\x12\x20"
    assert multibase.multihash_decode(b"\x00\x03abc") == (0, b"abc")
    assert multibase.multihash_decode(b"\xa0\xe4\x02\x01x") == (0xb220, b"x")
    for bad in (b"", b"\x12", b"\x12\x02a", b"\x12\x01ab", b"\x80\x00\x00"):
        with pytest.raises(ValueError):
            multibase.multihash_decode(bad)


def test_from_public_key_accepts_private_key_and_rejects_other_types():
    key = generate_key()
    assert PeerId.from_public_key(key) == PeerId.from_public_key(key.public_key())
    assert str(PeerId.from_public_key(key)).startswith("12D3KooW")
    with pytest.raises(TypeError):
        PeerId.from_public_key("key")
