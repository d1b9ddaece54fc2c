"""The pubsub RPC codec: byte vectors, round trips, the protobuf runtime as an
independent decoder, malformed and oversized input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geventp2p.exceptions import MessageTooLargeError, RemoteProtocolError, RPCDecodeError, RPCTooLargeError
from geventp2p.pb import rpc_pb2
from geventp2p.sansio.pubsub import (
    RPC,
    ControlExtensions,
    ControlGraft,
    ControlIDontWant,
    ControlIHave,
    ControlIWant,
    ControlMessage,
    ControlPrune,
    Message,
    PeerInfoPX,
    SubOpts,
    decode_rpc,
    encode_rpc,
    frame_rpc,
    split_rpc,
)

H = bytes.fromhex


# (RPC, exact bytes): hand-built from the protobuf encoding rules.
VECTORS = [
    (RPC(), b""),
    (RPC(subscriptions=[SubOpts(True, "a")]), H("0a05" "0801" "120161")),
    (RPC(subscriptions=[SubOpts(False, "ab")]), H("0a06" "0800" "12026162")),
    (
        RPC(publish=[Message(data=b"x", topic="t")]),
        H("1206" "120178" "220174"),
    ),
    (
        RPC(control=ControlMessage(graft=[ControlGraft("t")])),
        H("1a05" "1a03" "0a0174"),
    ),
    (
        RPC(control=ControlMessage(ihave=[ControlIHave("t", [b"\x01", b"\x02\x03"])])),
        H("1a0c" "0a0a" "0a0174" "120101" "12020203"),
    ),
    (
        RPC(control=ControlMessage(iwant=[ControlIWant([b"\xff"])])),
        H("1a05" "1203" "0a01ff"),
    ),
    (
        RPC(control=ControlMessage(prune=[ControlPrune("t", [PeerInfoPX(b"\x00\x01", None)], 60)])),
        H("1a0d" "220b" "0a0174" "1204" "0a020001" "183c"),
    ),
    (
        RPC(control=ControlMessage(idontwant=[ControlIDontWant([b"ab"])])),
        H("1a06" "2a04" "0a026162"),
    ),
]


@pytest.mark.parametrize("rpc,wire", VECTORS)
def test_vectors_both_ways(rpc: RPC, wire: bytes) -> None:
    assert encode_rpc(rpc) == wire
    assert decode_rpc(wire) == rpc


def test_frame_has_uvarint_length() -> None:
    rpc = RPC(publish=[Message(data=b"z" * 200, topic="t")])
    body = encode_rpc(rpc)
    assert frame_rpc(rpc) == bytes([(len(body) & 0x7F) | 0x80, len(body) >> 7]) + body


def test_unknown_fields_are_skipped() -> None:
    # RPC field 10 (partial extension), an unknown extension (field 11) inside the v1.3
    # extensions (control field 6), control field 9, a fixed32 and a fixed64 field.
    wire = (
        H("0a05" "0801" "120161")
        + H("5202" "0000")
        + H("1a08" "3204" "5001" "5801" "4a00")
        + H("7d01020304")
        + H("790102030405060708")
    )
    assert decode_rpc(wire) == RPC(
        subscriptions=[SubOpts(True, "a")], control=ControlMessage(extensions=ControlExtensions(partial_messages=True))
    )


def test_extensions_vector() -> None:
    rpc = RPC(control=ControlMessage(extensions=ControlExtensions(partial_messages=False, test_extension=True)))
    wire = H("1a09" "3207" "5000" "9091e21801")
    assert encode_rpc(rpc) == wire
    assert decode_rpc(wire) == rpc
    assert encode_rpc(RPC(control=ControlMessage(extensions=ControlExtensions()))) == H("1a02" "3200")


def test_repeated_control_fields_merge() -> None:
    wire = H("1a05" "1a03" "0a0161") + H("1a05" "1a03" "0a0162")
    assert decode_rpc(wire).control == ControlMessage(graft=[ControlGraft("a"), ControlGraft("b")])


def test_absent_optional_fields() -> None:
    rpc = decode_rpc(H("1a04" "2202" "0a00"))  # PRUNE with an empty topic, no backoff
    assert rpc.control is not None
    assert rpc.control.prune == [ControlPrune("", [], None)]
    msg = decode_rpc(H("1200")).publish[0]
    assert (msg.from_peer, msg.seqno, msg.signature, msg.key, msg.data, msg.topic) == (None, None, None, None, b"", "")


def test_decoded_message_keeps_its_bytes() -> None:
    # Fields out of canonical order survive forwarding unchanged.
    body = H("220174" "120178")
    msg = decode_rpc(H("1206") + body).publish[0]
    assert msg.raw == body
    assert encode_rpc(RPC(publish=[msg])) == H("1206") + body


def test_non_utf8_topic_round_trips() -> None:
    wire = H("0a05" "0801" "1201ff")
    rpc = decode_rpc(wire)
    assert encode_rpc(rpc) == wire


@pytest.mark.parametrize(
    "wire",
    [
        H("0a"),  # truncated length
        H("0a05" "0801"),  # length past the end
        H("0b"),  # wire type 3 (group) is not supported
        H("00"),  # field number 0
        H("0a02" "1201"),  # SubOpts topic length past its end
        H("0a02" "0a00"),  # SubOpts.subscribe with wire type 2
        H("1201" "0a"),  # Message: truncated field
        H("1a02" "2001"),  # ControlMessage.prune with wire type 0
        H("1a04" "2202" "1880"),  # truncated backoff varint
        H("0a" "80808080808080808001"),  # overlong varint
    ],
)
def test_malformed_rpc_raises_typed_error(wire: bytes) -> None:
    with pytest.raises(RPCDecodeError) as info:
        decode_rpc(wire)
    assert isinstance(info.value, RemoteProtocolError)
    assert isinstance(info.value, ValueError)


def test_oversized_rpc() -> None:
    wire = encode_rpc(RPC(publish=[Message(data=b"x" * 2000, topic="t")]))
    assert decode_rpc(wire, max_size=len(wire)).publish[0].data == b"x" * 2000
    with pytest.raises(RPCTooLargeError) as info:
        decode_rpc(wire, max_size=len(wire) - 1)
    assert isinstance(info.value, MessageTooLargeError)
    assert isinstance(info.value, RPCDecodeError)
    with pytest.raises(RPCTooLargeError):
        decode_rpc(b"\x00" * (1024 * 1024 + 1))


# --------------------------------------------------------------------------- against protobuf

_b = st.binary(max_size=12)
_topic = st.text(max_size=8)
_msgs = st.builds(
    Message,
    data=_b,
    topic=_topic,
    from_peer=st.none() | _b,
    seqno=st.none() | _b,
    signature=st.none() | _b,
    key=st.none() | _b,
)
_ctl = st.builds(
    ControlMessage,
    ihave=st.lists(st.builds(ControlIHave, topic=_topic, message_ids=st.lists(_b, max_size=3)), max_size=2),
    iwant=st.lists(st.builds(ControlIWant, message_ids=st.lists(_b, max_size=3)), max_size=2),
    graft=st.lists(st.builds(ControlGraft, topic=_topic), max_size=2),
    prune=st.lists(
        st.builds(
            ControlPrune,
            topic=_topic,
            peers=st.lists(st.builds(PeerInfoPX, peer_id=st.none() | _b, signed_peer_record=st.none() | _b), max_size=2),
            backoff=st.none() | st.integers(0, 2**63 - 1),
        ),
        max_size=2,
    ),
    idontwant=st.lists(st.builds(ControlIDontWant, message_ids=st.lists(_b, max_size=3)), max_size=2),
    extensions=st.none()
    | st.builds(ControlExtensions, partial_messages=st.none() | st.booleans(), test_extension=st.none() | st.booleans()),
)
_rpcs = st.builds(
    RPC,
    subscriptions=st.lists(st.builds(SubOpts, subscribe=st.booleans(), topic=_topic), max_size=3),
    publish=st.lists(_msgs, max_size=3),
    control=st.none() | _ctl,
)


def _opt(pb: object, name: str) -> object:
    return getattr(pb, name) if pb.HasField(name) else None  # type: ignore[attr-defined]


@settings(max_examples=150, deadline=None)
@given(_rpcs)
def test_round_trip_and_protobuf_agree(rpc: RPC) -> None:
    wire = encode_rpc(rpc)
    assert decode_rpc(wire) == rpc
    pb = rpc_pb2.RPC.FromString(wire)
    assert pb.SerializeToString() == wire  # canonical encoding, same as protobuf's
    assert [(s.subscribe, s.topicid) for s in pb.subscriptions] == [(s.subscribe, s.topic) for s in rpc.subscriptions]
    assert [
        (_opt(m, "from"), m.data, _opt(m, "seqno"), m.topic, _opt(m, "signature"), _opt(m, "key")) for m in pb.publish
    ] == [(m.from_peer, m.data, m.seqno, m.topic, m.signature, m.key) for m in rpc.publish]
    assert pb.HasField("control") == (rpc.control is not None)
    if rpc.control is not None:
        c = pb.control
        assert [(i.topicID, list(i.messageIDs)) for i in c.ihave] == [(i.topic, i.message_ids) for i in rpc.control.ihave]
        assert [list(i.messageIDs) for i in c.iwant] == [i.message_ids for i in rpc.control.iwant]
        assert [g.topicID for g in c.graft] == [g.topic for g in rpc.control.graft]
        assert [list(i.messageIDs) for i in c.idontwant] == [i.message_ids for i in rpc.control.idontwant]
        ext = rpc.control.extensions
        assert c.HasField("extensions") == (ext is not None)
        if ext is not None:
            assert (_opt(c.extensions, "partialMessages"), _opt(c.extensions, "testExtension")) == (
                ext.partial_messages,
                ext.test_extension,
            )
        assert [
            (p.topicID, [(_opt(x, "peerID"), _opt(x, "signedPeerRecord")) for x in p.peers], _opt(p, "backoff"))
            for p in c.prune
        ] == [
            (p.topic, [(x.peer_id, x.signed_peer_record) for x in p.peers], p.backoff) for p in rpc.control.prune
        ]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_garbage_never_raises_anything_but_rpc_errors(buf: bytes) -> None:
    try:
        decode_rpc(buf)
    except RPCDecodeError:
        pass


# --------------------------------------------------------------------------- split_rpc


def _flatten(rpcs: list[RPC]) -> RPC:
    out = RPC()
    ctl = ControlMessage()
    for r in rpcs:
        out.subscriptions += r.subscriptions
        out.publish += r.publish
        if r.control is not None:
            ctl.graft += r.control.graft
            ctl.prune += r.control.prune
            ctl.ihave += r.control.ihave
            ctl.iwant += r.control.iwant
            ctl.idontwant += r.control.idontwant
            ctl.extensions = ctl.extensions or r.control.extensions
    out.control = ctl if not ctl.is_empty() else None
    return out


def test_split_rpc_small_is_untouched() -> None:
    rpc = RPC(subscriptions=[SubOpts(True, "a")])
    assert split_rpc(rpc, 100) == [rpc]


def test_split_rpc_respects_the_limit_and_keeps_everything() -> None:
    ids = [bytes([i % 256]) * 40 for i in range(300)]
    rpc = RPC(
        subscriptions=[SubOpts(True, "topic-%d" % i) for i in range(50)],
        publish=[Message(data=bytes([i]) * 3000, topic="t") for i in range(10)],
        control=ControlMessage(
            ihave=[ControlIHave("t", ids)],
            iwant=[ControlIWant(ids[:100])],
            graft=[ControlGraft("g%d" % i) for i in range(20)],
            prune=[ControlPrune("p", [PeerInfoPX(b"x" * 38)], 60)],
            idontwant=[ControlIDontWant(ids[:50])],
            extensions=ControlExtensions(partial_messages=True),
        ),
    )
    limit = 4096
    parts = split_rpc(rpc, limit)
    assert len(parts) > 5
    assert all(len(encode_rpc(p)) <= limit for p in parts)
    flat = _flatten(parts)
    assert flat.subscriptions == rpc.subscriptions and flat.publish == rpc.publish
    assert flat.control is not None and rpc.control is not None
    assert flat.control.graft == rpc.control.graft and flat.control.prune == rpc.control.prune
    assert [m for i in flat.control.ihave for m in i.message_ids] == ids
    assert {i.topic for i in flat.control.ihave} == {"t"}
    assert [m for i in flat.control.iwant for m in i.message_ids] == ids[:100]
    assert [m for i in flat.control.idontwant for m in i.message_ids] == ids[:50]
    assert [p.control.extensions for p in parts if p.control and p.control.extensions] == [ControlExtensions(True)]


def test_split_rpc_refuses_an_oversized_message() -> None:
    from geventp2p.exceptions import LocalProtocolError

    with pytest.raises(LocalProtocolError):
        split_rpc(RPC(publish=[Message(data=b"x" * 5000, topic="t")]), 4096)
