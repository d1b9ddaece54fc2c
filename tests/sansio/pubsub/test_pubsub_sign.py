"""Message signing, verification, the signature policy and message IDs."""

from __future__ import annotations

import pytest

from geventp2p.core.peer import PeerId
from geventp2p.crypto.keys import EcdsaPrivateKey, Ed25519PrivateKey, Secp256k1PrivateKey, unmarshal_private_key
from geventp2p.exceptions import InvalidSignatureError, MessageSignatureError, PubSubError
from geventp2p.sansio.pubsub import (
    RPC,
    Message,
    SeqnoCounter,
    SignaturePolicy,
    check_policy,
    content_msg_id,
    decode_rpc,
    default_msg_id,
    encode_rpc,
    frame_rpc,
    js_msg_id,
    py_msg_id,
    sign_message,
    verify_message,
)
from geventp2p.sansio.pubsub.rpc import signed_part

H = bytes.fromhex

# The Ed25519 key of the libp2p peer-ids spec test vectors.
SPEC_KEY = H(
    "080112407e0830617c4a7de83925dfb2694556b12936c477a0e1feb2e148ec9da60fee7d"
    "1ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e"
)
SPEC_ID = H("0024080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e")
UNSIGNED = H(
    "0a260024080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e"
    "120568656c6c6f1a080000000000000001220474657374"
)
SIG = H(
    "f05e62a21b5f1f89b4ab356feb34c493746a2af8ef2fa03b9fd4956fb40d3c27"
    "9b1eae5153c6b28dce3b2f9bed546dc1cfd5a71513af0aa38ee38d31675ac30f"
)
FRAMED = H("8401128101") + UNSIGNED + H("2a40") + SIG


def _spec_msg() -> Message:
    return Message(data=b"hello", topic="test", seqno=H("0000000000000001"))


def test_spec_key_signing_vector() -> None:
    key = unmarshal_private_key(SPEC_KEY)
    msg = sign_message(_spec_msg(), key)
    assert msg.from_peer == SPEC_ID
    assert msg.key is None  # Ed25519 is inlined in the peer ID
    assert signed_part(msg) == UNSIGNED
    assert msg.signature == SIG
    assert frame_rpc(RPC(publish=[msg])) == FRAMED


def test_spec_vector_message_ids() -> None:
    msg = decode_rpc(FRAMED[2:]).publish[0]
    verify_message(msg)
    assert default_msg_id(msg) == SPEC_ID + H("0000000000000001")
    assert js_msg_id(msg) == SPEC_ID[2:] + H("0000000000000001")
    assert py_msg_id(msg) == H("0000000000000001") + SPEC_ID
    assert content_msg_id(msg) == H("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")


@pytest.mark.parametrize(
    "make_key",
    [Ed25519PrivateKey.generate, Secp256k1PrivateKey.generate, EcdsaPrivateKey.generate],
    ids=["ed25519", "secp256k1", "ecdsa"],
)
def test_sign_verify_round_trip(make_key: object) -> None:
    key = make_key()  # type: ignore[operator]
    msg = sign_message(Message(data=b"d", topic="t", seqno=SeqnoCounter(5).next()), key)
    assert (msg.key is None) == PeerId.from_private_key(key).is_inline
    got = decode_rpc(encode_rpc(RPC(publish=[msg]))).publish[0]
    verify_message(got)


def test_tampering_is_detected() -> None:
    key = unmarshal_private_key(SPEC_KEY)
    msg = decode_rpc(FRAMED[2:]).publish[0]
    for change in (
        dict(data=b"hellO"),
        dict(topic="tess"),
        dict(seqno=H("0000000000000002")),
        dict(signature=SIG[:-1] + b"\x00"),
        dict(signature=b"short"),
    ):
        bad = Message(**{**dict(data=msg.data, topic=msg.topic, from_peer=msg.from_peer, seqno=msg.seqno, signature=msg.signature), **change})  # type: ignore[arg-type]
        with pytest.raises(MessageSignatureError) as info:
            verify_message(bad)
        assert isinstance(info.value, PubSubError) and isinstance(info.value, InvalidSignatureError)
    # another author's key in the key field
    other = Ed25519PrivateKey.generate()
    bad = Message(data=msg.data, topic=msg.topic, from_peer=msg.from_peer, seqno=msg.seqno, signature=msg.signature, key=other.public_key().marshal())
    with pytest.raises(MessageSignatureError, match="does not match"):
        verify_message(bad)
    # missing fields, garbage author
    with pytest.raises(MessageSignatureError):
        verify_message(Message(data=b"", topic="t"))
    with pytest.raises(MessageSignatureError):
        verify_message(Message(data=b"", topic="t", from_peer=b"\x99", seqno=b"\x00" * 8, signature=b"x"))
    with pytest.raises(MessageSignatureError):
        sign_message(Message(data=b"", topic="t", from_peer=SPEC_ID[:-1] + b"\x00", seqno=b"\x00" * 8), key)


def test_signature_covers_received_field_order() -> None:
    # Key and signature first, then the other fields in an unusual order: the signed part
    # is the received bytes without fields 5 and 6.
    key = unmarshal_private_key(SPEC_KEY)
    order = H("220474657374" "120568656c6c6f" "0a26") + SPEC_ID + H("1a080000000000000001")
    sig = key.sign(b"libp2p-pubsub:" + order)
    body = H("2a40") + sig + order
    assert 128 <= len(body) < 256
    msg = decode_rpc(H("12") + bytes([len(body) & 0x7F | 0x80, 1]) + body).publish[0]
    verify_message(msg)


def test_policy() -> None:
    signed = decode_rpc(FRAMED[2:]).publish[0]
    assert check_policy(signed, SignaturePolicy.STRICT_SIGN) is None
    assert check_policy(signed, SignaturePolicy.STRICT_NO_SIGN) is not None
    bare = Message(data=b"x", topic="t")
    assert check_policy(bare, SignaturePolicy.STRICT_NO_SIGN) is None
    assert check_policy(bare, SignaturePolicy.STRICT_SIGN) == "missing signature"
    # go accepts any non-empty seqno up to 8 bytes (js floodsub writes 1 in 256 without its
    # leading zero byte); empty or longer is refused
    short_seqno = Message(data=b"x", topic="t", from_peer=SPEC_ID, seqno=b"\x01", signature=b"s")
    assert check_policy(short_seqno, SignaturePolicy.STRICT_SIGN) is None
    for bad in (b"", bytes(9)):
        m = Message(data=b"x", topic="t", from_peer=SPEC_ID, seqno=bad, signature=b"s")
        assert check_policy(m, SignaturePolicy.STRICT_SIGN) == "seqno must be 1 to 8 bytes"


def test_seqno_counter_wraps_and_is_8_bytes() -> None:
    c = SeqnoCounter(2**64 - 1)
    assert c.next() == b"\xff" * 8
    assert c.next() == b"\x00" * 8
    assert len(SeqnoCounter().next()) == 8
