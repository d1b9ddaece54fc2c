"""geventp2p.core.protowire: the strict top-level protobuf field walk."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geventp2p._speedups import varint
from geventp2p.core import protowire
from geventp2p.crypto.keys import KeyType, generate_key
from geventp2p.pb import crypto_pb2


class Bad(ValueError):
    pass


def walk(buf: bytes) -> list:
    return protowire.fields(buf, "msg", Bad)


def test_every_wire_type_by_hand():
    buf = bytes.fromhex(
        "0801"  # field 1 varint 1
        "1203616263"  # field 2 bytes "abc"
        "19" + "0102030405060708"  # field 3 fixed64
        + "25" + "0a0b0c0d"  # field 4 fixed32
        + "a80696" + "01"  # field 101 varint 150
    )
    assert walk(buf) == [
        (1, 0, 1),
        (2, 2, b"abc"),
        (3, 1, bytes(range(1, 9))),
        (4, 5, bytes([10, 11, 12, 13])),
        (101, 0, 150),
    ]


def test_empty_message_and_repeated_fields_keep_order():
    assert walk(b"") == []
    assert walk(bytes.fromhex("0801080208 03".replace(" ", ""))) == [(1, 0, 1), (1, 0, 2), (1, 0, 3)]


def test_matches_the_protobuf_runtime_on_a_key():
    pub = generate_key(KeyType.Ed25519).public_key()
    msg = crypto_pb2.PublicKey()
    msg.ParseFromString(pub.marshal())
    assert walk(pub.marshal()) == [(1, 0, int(msg.Type)), (2, 2, msg.Data)]


@pytest.mark.parametrize("buf, words", [
    (b"\x08", "truncated varint field 1"),
    (b"\x12\x05ab", "field 2 runs past the end"),
    (b"\x12", "truncated length of field 2"),
    (b"\x19\x01\x02", "truncated fixed64 field 3"),
    (b"\x25\x01", "truncated fixed32 field 4"),
    (b"\x00\x01", "field number 0"),
    (b"\x0b", "unsupported wire type 3"),  # start group
    (b"\x0e", "unsupported wire type 6"),
    (b"\x80", "truncated field tag"),
    (b"\x08" + b"\xff" * 11, "bad varint"),
    (b"\x08" + b"\x80" * 9 + b"\x01", "bad varint"),  # 2**63: longer than the 9 bytes multiformats allows
])
def test_malformed_raises_the_given_error(buf, words):
    with pytest.raises(Bad) as info:
        walk(buf)
    assert str(info.value).startswith("msg: ")
    assert words in str(info.value)


@given(st.lists(st.tuples(st.integers(1, 2**29 - 1), st.one_of(
    st.tuples(st.just(0), st.integers(0, varint.MAX_VALUE)),  # multiformats varints stop at 9 bytes
    st.tuples(st.just(2), st.binary(max_size=40)),
    st.tuples(st.just(1), st.binary(min_size=8, max_size=8)),
    st.tuples(st.just(5), st.binary(min_size=4, max_size=4)),
)), max_size=8))
def test_round_trip(items):
    uv = varint.encode_uvarint
    buf = b""
    for num, (wt, val) in items:
        buf += uv(num << 3 | wt)
        if wt == 0:
            buf += uv(val)
        elif wt == 2:
            buf += uv(len(val)) + val
        else:
            buf += val
    assert walk(buf) == [(num, wt, val) for num, (wt, val) in items]
