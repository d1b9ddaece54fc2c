"""varint: the unsigned-varint spec's vectors, bad inputs, and pure/compiled parity."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geventp2p.exceptions import LocalProtocolError, MessageTooLargeError, RemoteProtocolError, VarintError

# Examples from https://github.com/multiformats/unsigned-varint.
VECTORS = [
    (0, "00"),
    (1, "01"),
    (127, "7f"),
    (128, "8001"),
    (255, "ff01"),
    (300, "ac02"),
    (16384, "808001"),
    (421, "a503"),
    (0x0301, "8106"),
    ((1 << 63) - 1, "ffffffffffffffff7f"),
]

HYP = settings(max_examples=200, deadline=None)


@pytest.mark.parametrize("value,hexstr", VECTORS)
def test_vectors_encode(impl, value, hexstr):
    out = impl.varint.encode_uvarint(value)
    assert type(out) is bytes
    assert out.hex() == hexstr


@pytest.mark.parametrize("value,hexstr", VECTORS)
def test_vectors_decode(impl, value, hexstr):
    raw = bytes.fromhex(hexstr)
    assert impl.varint.decode_uvarint(raw) == (value, len(raw))
    # trailing bytes stay untouched; offsets are honoured; bytearray/memoryview work
    assert impl.varint.decode_uvarint(b"\xaa" + raw + b"\x05", 1) == (value, 1 + len(raw))
    assert impl.varint.decode_uvarint(bytearray(raw)) == (value, len(raw))
    assert impl.varint.decode_uvarint(memoryview(raw)) == (value, len(raw))


def test_public_constants(impl):
    assert impl.varint.MAX_VARINT_LEN == 9
    assert impl.varint.MAX_VALUE == (1 << 63) - 1
    assert impl.varint.MESSAGE_SIZE_MAX == 4 * 1024 * 1024


@pytest.mark.parametrize("value", [-1, 1 << 63, 1 << 64, 10**30])
def test_encode_out_of_range(impl, value):
    with pytest.raises(LocalProtocolError):
        impl.varint.encode_uvarint(value)


@pytest.mark.parametrize("hexstr", ["", "80", "ff", "8080", "ffffffffffffffff"])
def test_decode_incomplete_returns_none(impl, hexstr):
    assert impl.varint.decode_uvarint(bytes.fromhex(hexstr)) is None


@pytest.mark.parametrize(
    "hexstr",
    [
        "8000",  # 0 with a redundant continuation byte
        "8100",  # 1, non-minimal
        "ff8000",  # trailing 0x00 after two continuation bytes
        "ffffffffffffffffff01",  # 10 bytes
        "ffffffffffffffff80",  # 9th byte still has the continuation bit
        "808080808080808080",
    ],
)
def test_decode_malformed(impl, hexstr):
    with pytest.raises(VarintError):
        impl.varint.decode_uvarint(bytes.fromhex(hexstr))
    assert issubclass(VarintError, RemoteProtocolError)


def test_decode_negative_offset(impl):
    with pytest.raises(LocalProtocolError):
        impl.varint.decode_uvarint(b"\x01", -1)


def test_decode_offset_past_end(impl):
    assert impl.varint.decode_uvarint(b"\x01", 1) is None
    assert impl.varint.decode_uvarint(b"\x01", 5) is None


def test_lp_roundtrip_and_vectors(impl):
    v = impl.varint
    assert v.encode_lp(b"") == b"\x00"
    assert v.encode_lp(b"/multistream/1.0.0\n") == b"\x13/multistream/1.0.0\n"
    big = bytes(range(256)) * 2
    enc = v.encode_lp(big)
    assert enc[:2] == bytes.fromhex("8004")
    assert v.decode_lp(enc + b"rest") == (big, len(enc))
    assert v.decode_lp(bytearray(b"\x03abc")) == (b"abc", 4)
    res = v.decode_lp(memoryview(b"..\x02hi"), 2)
    assert res == (b"hi", 5) and type(res[0]) is bytes


def test_lp_incomplete(impl):
    v = impl.varint
    assert v.decode_lp(b"") is None
    assert v.decode_lp(b"\x80") is None
    assert v.decode_lp(b"\x05abcd") is None


def test_lp_too_large_before_payload(impl):
    v = impl.varint
    # The declared length alone triggers the error; the payload has not arrived.
    with pytest.raises(MessageTooLargeError):
        v.decode_lp(v.encode_uvarint(4 * 1024 * 1024 + 1))
    with pytest.raises(MessageTooLargeError):
        v.decode_lp(b"\x05abcde", 0, 4)
    assert v.decode_lp(b"\x04abcd", 0, 4) == (b"abcd", 5)


def test_lp_malformed_prefix(impl):
    with pytest.raises(VarintError):
        impl.varint.decode_lp(b"\x80\x00")


@HYP
@given(st.integers(min_value=0, max_value=(1 << 63) - 1))
def test_roundtrip(impl, value):
    enc = impl.varint.encode_uvarint(value)
    assert 1 <= len(enc) <= 9
    assert impl.varint.decode_uvarint(enc) == (value, len(enc))
    # every strict prefix is "need more"
    for cut in range(len(enc)):
        assert impl.varint.decode_uvarint(enc[:cut]) is None


def _outcome(fn, *args):
    try:
        return ("ok", fn(*args))
    except Exception as exc:  # noqa: BLE001 - the type is what we compare
        return ("raise", type(exc))


@HYP
@given(st.binary(max_size=12), st.integers(min_value=0, max_value=13))
def test_differential_decode(both_impls, data, offset):
    pure, comp = both_impls
    assert _outcome(pure.varint.decode_uvarint, data, offset) == _outcome(comp.varint.decode_uvarint, data, offset)


@HYP
@given(st.integers(min_value=-(1 << 70), max_value=1 << 70))
def test_differential_encode(both_impls, value):
    pure, comp = both_impls
    assert _outcome(pure.varint.encode_uvarint, value) == _outcome(comp.varint.encode_uvarint, value)


@HYP
@given(st.binary(max_size=40), st.integers(min_value=0, max_value=3), st.integers(min_value=0, max_value=64))
def test_differential_decode_lp(both_impls, data, offset, max_size):
    pure, comp = both_impls
    assert _outcome(pure.varint.decode_lp, data, offset, max_size) == _outcome(
        comp.varint.decode_lp, data, offset, max_size
    )
