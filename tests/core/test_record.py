"""geventp2p.core.record: signed envelopes and peer records.

Specs: https://github.com/libp2p/specs/blob/master/RFC/0002-signed-envelopes.md and
https://github.com/libp2p/specs/blob/master/RFC/0003-routing-records.md.  The fixed
vector (one Ed25519 key, seq 1, /ip4/127.0.0.1/tcp/4001) is go-libp2p's encoding
of that record, byte for byte.
"""

from __future__ import annotations

import functools

import pytest

from geventp2p.core.addr import Multiaddr
from geventp2p.core.peer import PeerId
from geventp2p.core.record import (
    PEER_RECORD_DOMAIN,
    PEER_RECORD_PAYLOAD_TYPE,
    Envelope,
    PeerRecord,
    seal,
    seal_peer_record,
    signing_bytes,
)
from geventp2p.core import record as _record
from geventp2p.crypto.keys import KeyType, generate_key, unmarshal_private_key, unmarshal_public_key
from geventp2p.exceptions import InvalidSignatureError, PeerIdMismatchError, RemoteProtocolError

consume_peer_record = functools.partial(_record.consume_peer_record, decode_key=unmarshal_public_key)
open_envelope = functools.partial(_record.open_envelope, decode_key=unmarshal_public_key)

ED_PRIV = bytes.fromhex(
    "080112407e0830617c4a7de83925dfb2694556b12936c477a0e1feb2e148ec9da60fee7d"
    "1ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e"
)
V_RECORD = (
    "0a260024080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e10011a0a0a08047f000001060fa1"
)
V_TO_SIGN = (
    "126c69627032702d706565722d7265636f7264020301360a260024080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf601"
    "0f0e42d474fce27e10011a0a0a08047f000001060fa1"
)
V_SIG = (
    "4504e51a36806e8eba9344a743f2e1cbd0170d2632fb413f98101f6e3ff26d3da91f4eedebf36383fa5819438bce1d7398117236e52d2d"
    "1dfce98196294ac60e"
)
V_ENVELOPE = (
    "0a24080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e120203011a360a26002408011220"
    "1ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e10011a0a0a08047f000001060fa12a404504e51a3680"
    "6e8eba9344a743f2e1cbd0170d2632fb413f98101f6e3ff26d3da91f4eedebf36383fa5819438bce1d7398117236e52d2d1dfce98196"
    "294ac60e"
)


@pytest.fixture(scope="module")
def spec_key():
    return unmarshal_private_key(ED_PRIV)


def spec_record(key) -> PeerRecord:
    return PeerRecord(PeerId.from_public_key(key.public_key()), 1, [Multiaddr("/ip4/127.0.0.1/tcp/4001")])


def test_go_vector_byte_for_byte(spec_key):
    rec = spec_record(spec_key)
    assert rec.marshal().hex() == V_RECORD
    assert signing_bytes(PEER_RECORD_DOMAIN, PEER_RECORD_PAYLOAD_TYPE, rec.marshal()).hex() == V_TO_SIGN
    env = seal_peer_record(spec_key, rec)
    assert env.signature.hex() == V_SIG
    assert env.marshal().hex() == V_ENVELOPE
    assert len(env.marshal()) == 164


def test_go_vector_parse(spec_key):
    env, rec = consume_peer_record(bytes.fromhex(V_ENVELOPE), PeerId.from_public_key(spec_key.public_key()))
    assert rec == spec_record(spec_key)
    assert env.payload_type == b"\x03\x01"
    assert env.signer() == rec.peer_id
    assert env.marshal().hex() == V_ENVELOPE
    assert PeerRecord.unmarshal(bytes.fromhex(V_RECORD)).marshal().hex() == V_RECORD


def test_roundtrip_other_key_types():
    for kt in (KeyType.Secp256k1, KeyType.ECDSA):
        key = generate_key(kt)
        pid = PeerId.from_public_key(key.public_key())
        rec = PeerRecord(pid, 42, ["/ip4/10.0.0.1/tcp/1", "/ip6/::1/tcp/2"])
        env, back = consume_peer_record(seal_peer_record(key, rec).marshal(), pid)
        assert back == rec


def test_bad_signature(spec_key):
    raw = bytearray(bytes.fromhex(V_ENVELOPE))
    raw[-1] ^= 0x01
    with pytest.raises(InvalidSignatureError):
        consume_peer_record(bytes(raw))
    # a flipped payload byte breaks the signature too
    raw = bytearray(bytes.fromhex(V_ENVELOPE))
    raw[raw.index(bytes([0x0F, 0xA1]))] ^= 0x01  # the tcp port inside the signed payload
    with pytest.raises(InvalidSignatureError):
        consume_peer_record(bytes(raw))


def test_wrong_expected_peer(spec_key):
    other = PeerId.from_public_key(generate_key(KeyType.Ed25519).public_key())
    with pytest.raises(PeerIdMismatchError):
        consume_peer_record(bytes.fromhex(V_ENVELOPE), other)


def test_record_naming_another_peer(spec_key):
    other = PeerId.from_public_key(generate_key(KeyType.Ed25519).public_key())
    rec = PeerRecord(other, 1, ["/ip4/127.0.0.1/tcp/1"])
    with pytest.raises(PeerIdMismatchError):
        seal_peer_record(spec_key, rec)  # refuses to sign for someone else
    env = seal(spec_key, PEER_RECORD_DOMAIN, PEER_RECORD_PAYLOAD_TYPE, rec.marshal())
    with pytest.raises(PeerIdMismatchError):
        consume_peer_record(env.marshal())


def test_legacy_rust_domain_is_rejected(spec_key):
    rec = spec_record(spec_key)
    env = seal(spec_key, "libp2p-routing-state", b"/libp2p/routing-state-record", rec.marshal())
    with pytest.raises(RemoteProtocolError):  # wrong payload type
        consume_peer_record(env.marshal())
    env = seal(spec_key, "libp2p-routing-state", PEER_RECORD_PAYLOAD_TYPE, rec.marshal())
    with pytest.raises(InvalidSignatureError):  # right type, wrong domain
        consume_peer_record(env.marshal())
    open_envelope(env.marshal(), "libp2p-routing-state")  # valid in its own domain


@pytest.mark.parametrize("blob", [
    b"",
    b"\x0a",
    b"\x0a\x05abc",
    b"\xff" * 11,
    b"\x0b\x00",  # wire type 3 (group) unsupported
    bytes.fromhex(V_ENVELOPE)[:-3],
    b"\x12\x02\x03\x01",  # no key
    b"\x0a\x04\x08\x01\x12\x00",  # empty ed25519 key
])
def test_malformed_envelopes(blob):
    with pytest.raises((RemoteProtocolError, InvalidSignatureError)):
        consume_peer_record(blob)


def test_malformed_records():
    with pytest.raises(RemoteProtocolError):
        PeerRecord.unmarshal(b"")  # no peer id
    with pytest.raises(RemoteProtocolError):
        PeerRecord.unmarshal(b"\x0a\x03abc")  # bad peer id
    good = bytes.fromhex(V_RECORD)
    with pytest.raises(RemoteProtocolError):
        PeerRecord.unmarshal(good[:40] + b"\x1a\x04\x0a\x02\xff\xff")  # bad address
    with pytest.raises(RemoteProtocolError):
        PeerRecord.unmarshal(good[:-1])


def test_seq_rules():
    assert PeerRecord.new_seq(1000, 0) == 1000
    assert PeerRecord.new_seq(1000, 1000) == 1001
    assert PeerRecord.new_seq(5, 2000) == 2001
    pid = PeerId.from_public_key(generate_key(KeyType.Ed25519).public_key())
    with pytest.raises(ValueError):
        PeerRecord(pid, -1)
    with pytest.raises(ValueError):
        PeerRecord(pid, 1 << 64)
    assert PeerRecord.unmarshal(PeerRecord(pid, 0).marshal()).seq == 0


def test_envelope_repr_and_unmarshal_no_verify(spec_key):
    env = Envelope.unmarshal(bytes.fromhex(V_ENVELOPE), unmarshal_public_key)
    assert "0301" in repr(env)
    env.verify(PEER_RECORD_DOMAIN)
    with pytest.raises(InvalidSignatureError):
        env.verify("other-domain")
