"""Sans-I/O identify codec: framing, limits, merging, validation (https://github.com/libp2p/specs/blob/master/identify/README.md)."""

from __future__ import annotations

import dataclasses

import pytest

from geventp2p._speedups import varint
from geventp2p.core.addr import Multiaddr
from geventp2p.core.peer import PeerId
from geventp2p.core.record import _fields
from geventp2p.core.record import PEER_RECORD_PAYLOAD_TYPE, PeerRecord, seal, seal_peer_record
from geventp2p.crypto.keys import KeyType, generate_key, unmarshal_public_key
from geventp2p.exceptions import MessageTooLargeError, PeerIdMismatchError, RemoteProtocolError
from geventp2p.pb import identify_pb2
from geventp2p.sansio.identify import (
    MAX_OWN_MESSAGE_SIZE,
    IdentifyMessage,
    MessageReader,
    protocols_diff,
    validate,
)


@pytest.fixture(scope="module")
def key():
    return generate_key(KeyType.Ed25519)


@pytest.fixture(scope="module")
def peer(key):
    return PeerId.from_public_key(key.public_key())


def addr(i: int) -> bytes:
    return Multiaddr(f"/ip4/10.0.{i // 250}.{i % 250 + 1}/tcp/{4000 + i}").to_bytes()


def full_message(key, addrs=(addr(0), addr(1)), record=True) -> IdentifyMessage:
    pid = PeerId.from_public_key(key.public_key())
    env = seal_peer_record(key, PeerRecord(pid, 7, [Multiaddr("/ip4/1.2.3.4/tcp/1")])) if record else None
    return IdentifyMessage(
        public_key=key.public_key().marshal(),
        listen_addrs=addrs,
        protocols=("/ipfs/id/1.0.0", "/ipfs/ping/1.0.0"),
        observed_addr=Multiaddr("/ip4/127.0.0.1/tcp/9").to_bytes(),
        protocol_version="ipfs/0.1.0",
        agent_version="geventp2p/test",
        signed_peer_record=env.marshal() if env else None,
    )


def test_wire_field_numbers(key):
    msg = full_message(key)
    pb = identify_pb2.Identify.FromString(msg.serialize())
    assert pb.publicKey == key.public_key().marshal()
    assert list(pb.listenAddrs) == [addr(0), addr(1)]
    assert pb.agentVersion == "geventp2p/test"
    # signedPeerRecord is field 8; field 7 is never written
    body = msg.serialize()
    numbers = [num for num, _wt, _v in _fields(body, "identify")]
    assert set(numbers) == {1, 2, 3, 4, 5, 6, 8}
    assert IdentifyMessage.parse(body) == msg


def test_encode_is_length_prefixed_and_fits(key):
    msg = full_message(key)
    frame = msg.encode()
    payload, end = varint.decode_lp(frame, 0)
    assert end == len(frame)
    assert IdentifyMessage.parse(payload) == msg


def test_encode_trims_listen_addrs_to_4k(key):
    msg = full_message(key, addrs=tuple(addr(i) for i in range(600)))
    frame = msg.encode()
    payload, _ = varint.decode_lp(frame, 0)
    assert len(payload) <= MAX_OWN_MESSAGE_SIZE
    back = IdentifyMessage.parse(payload)
    assert 0 < len(back.listen_addrs) < 600
    assert back.listen_addrs == msg.listen_addrs[: len(back.listen_addrs)]
    assert back.signed_peer_record == msg.signed_peer_record  # kept whole
    with pytest.raises(ValueError):
        IdentifyMessage(agent_version="x" * 100).encode(max_size=10)


def test_reader_byte_by_byte_and_merge(key):
    # go's split form: everything but the record, then the record alone
    full = full_message(key)
    first = dataclasses.replace(full, signed_peer_record=None)
    second = IdentifyMessage(signed_peer_record=full.signed_peer_record)
    data = first.encode(8192) + second.encode(8192)
    r = MessageReader()
    got = []
    for i in range(len(data)):
        got += r.feed(data[i:i + 1])
    r.eof()
    assert len(got) == 2
    assert r.result() == full


def test_merge_semantics():
    a = IdentifyMessage(protocols=("/a",), agent_version="one", listen_addrs=(addr(1),))
    b = IdentifyMessage(protocols=("/b",), agent_version="two", protocol_version="p")
    m = a.merge(b)
    assert m.protocols == ("/a", "/b")
    assert m.agent_version == "two" and m.protocol_version == "p"
    assert m.listen_addrs == (addr(1),)


def test_reader_limits():
    r = MessageReader(max_size=8192)
    with pytest.raises(MessageTooLargeError):
        r.feed(varint.encode_uvarint(8193))
    r = MessageReader(max_messages=10)
    one = IdentifyMessage(protocols=("/a",)).encode()
    r.feed(one * 10)
    with pytest.raises(RemoteProtocolError):
        r.feed(one)
    r = MessageReader()
    r.feed(one[:-1])
    with pytest.raises(RemoteProtocolError):
        r.eof()
    with pytest.raises(RemoteProtocolError):
        MessageReader().result()
    with pytest.raises(RemoteProtocolError):
        MessageReader().feed(b"\x03\xff\xff\xff")  # not protobuf


def test_validate_full(key, peer):
    info = validate(full_message(key), peer)
    assert info.public_key == key.public_key()
    assert info.record is not None and info.record.seq == 7
    assert info.addrs == (Multiaddr("/ip4/1.2.3.4/tcp/1"),)  # the record wins
    assert info.listen_addrs == (Multiaddr(addr(0)), Multiaddr(addr(1)))
    assert info.observed_addr == Multiaddr("/ip4/127.0.0.1/tcp/9")
    assert info.record_error is None


def test_validate_without_key_and_record(peer):
    info = validate(IdentifyMessage(protocols=("/x/1",), listen_addrs=(addr(3),)), peer)
    assert info.public_key is None and info.envelope is None
    assert info.addrs == (Multiaddr(addr(3)),)


def test_validate_key_mismatch(peer):
    other = generate_key(KeyType.Ed25519).public_key().marshal()
    with pytest.raises(PeerIdMismatchError):
        validate(IdentifyMessage(public_key=other), peer)
    with pytest.raises(RemoteProtocolError):
        validate(IdentifyMessage(public_key=b"\x08\x01\x12\x01x"), peer)


def test_validate_invalid_records_fall_back(key, peer):
    rec = PeerRecord(peer, 3, ["/ip4/9.9.9.9/tcp/9"])
    good = seal_peer_record(key, rec).marshal()
    bad_sig = good[:-1] + bytes([good[-1] ^ 1])
    other_key = generate_key(KeyType.Ed25519)
    other_pid = PeerId.from_public_key(other_key.public_key())
    wrong_peer = seal_peer_record(other_key, PeerRecord(other_pid, 3, ["/ip4/9.9.9.9/tcp/9"])).marshal()
    legacy = seal(key, "libp2p-routing-state", b"/libp2p/routing-state-record", rec.marshal()).marshal()
    wrong_domain = seal(key, "nope", PEER_RECORD_PAYLOAD_TYPE, rec.marshal()).marshal()
    for blob in (bad_sig, wrong_peer, legacy, wrong_domain, b"\x00garbage"):
        info = validate(IdentifyMessage(listen_addrs=(addr(5),), signed_peer_record=blob), peer)
        assert info.record is None and info.record_error
        assert info.addrs == (Multiaddr(addr(5)),)
    info = validate(IdentifyMessage(listen_addrs=(addr(5),), signed_peer_record=good), peer)
    assert info.addrs == (Multiaddr("/ip4/9.9.9.9/tcp/9"),)


def test_validate_drops_bad_addrs_and_caps(peer):
    addrs = (b"\xff\xff", addr(1), addr(1)) + tuple(addr(i) for i in range(2, 600))
    info = validate(IdentifyMessage(listen_addrs=addrs, observed_addr=b"\x00"), peer)
    assert len(info.listen_addrs) == 500
    assert info.dropped_addrs >= 1
    assert info.observed_addr is None
    protos = tuple(f"/p/{i}" for i in range(1100)) + ("/p/1", "")
    info = validate(IdentifyMessage(protocols=protos), peer)
    assert len(info.protocols) == 1024 and len(set(info.protocols)) == 1024


def test_protocols_diff():
    assert protocols_diff(["/a", "/b"], ["/b", "/c"]) == (("/c",), ("/a",))
    assert protocols_diff([], ["/a"]) == (("/a",), ())
    assert protocols_diff(["/a"], ["/a"]) == ((), ())


# ---------------------------------------------------------------- properties

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from geventp2p.core.record import Envelope  # noqa: E402
from geventp2p.exceptions import P2PError  # noqa: E402

_msgs = st.builds(
    IdentifyMessage,
    public_key=st.none() | st.binary(max_size=40),
    listen_addrs=st.lists(st.binary(max_size=20), max_size=5).map(tuple),
    protocols=st.lists(st.text(max_size=12), max_size=5).map(tuple),
    observed_addr=st.none() | st.binary(max_size=20),
    protocol_version=st.none() | st.text(max_size=10),
    agent_version=st.none() | st.text(max_size=10),
    signed_peer_record=st.none() | st.binary(max_size=60),
)


@settings(max_examples=60, deadline=None)
@given(msgs=st.lists(_msgs, min_size=1, max_size=4), cuts=st.lists(st.integers(min_value=1, max_value=50)))
def test_reader_split_invariance(msgs, cuts):
    data = b"".join(m.encode(8192) for m in msgs)
    r = MessageReader()
    pos = 0
    for c in cuts:
        r.feed(data[pos:pos + c])
        pos += c
    r.feed(data[pos:])
    r.eof()
    merged = msgs[0]
    for m in msgs[1:]:
        merged = merged.merge(m)
    assert r.result() == merged


@settings(max_examples=200, deadline=None)
@given(blob=st.binary(max_size=200))
def test_garbage_raises_only_typed_errors(blob):
    r = MessageReader()
    try:
        r.feed(blob)
        r.eof()
    except P2PError:
        pass
    try:
        Envelope.unmarshal(blob, unmarshal_public_key)
    except P2PError:
        pass
    try:
        PeerRecord.unmarshal(blob)
    except P2PError:
        pass


@settings(max_examples=100, deadline=None)
@given(msg=_msgs)
def test_validate_never_crashes(msg):
    pid = PeerId.from_public_key(generate_key(KeyType.Ed25519).public_key())
    try:
        validate(msg, pid)
    except P2PError:
        pass
