"""wsmask.mask_into in both builds: WebSocket payload masking (RFC 6455 section 5.3),
against a byte-by-byte reference, and pure/compiled parity."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wsproto.frame_protocol import XorMaskerSimple

from geventp2p.exceptions import LocalProtocolError

HYP = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def reference(data: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


def test_build_flag(impl):
    assert impl.wsmask.COMPILED is (impl.kind == "cython")


@HYP
@given(data=st.binary(max_size=2000), start=st.integers(0, 9), key=st.binary(min_size=4, max_size=4))
def test_mask_into_matches_reference(impl, data, start, key):
    head = bytes(range(start))
    buf = bytearray(head + data)
    impl.wsmask.mask_into(buf, start, key)
    assert bytes(buf) == head + reference(data, key)
    impl.wsmask.mask_into(buf, start, key)  # masking twice restores the payload
    assert bytes(buf) == head + data


def test_large_payload_agrees_with_wsproto(impl):
    data = bytes(range(256)) * 1025 + b"xyz"  # not a multiple of 4
    key = b"\x9a\x01\xff\x42"
    buf = bytearray(b"hdr" + data)
    impl.wsmask.mask_into(buf, 3, memoryview(key))
    assert bytes(buf[3:]) == bytes(XorMaskerSimple(key).process(bytearray(data)))


def test_empty_and_whole_buffer(impl):
    buf = bytearray(b"abc")
    impl.wsmask.mask_into(buf, 3, b"\x01\x02\x03\x04")  # nothing after start
    assert buf == b"abc"
    impl.wsmask.mask_into(buf, 0, b"\x01\x02\x03\x04")
    assert buf == bytes([ord("a") ^ 1, ord("b") ^ 2, ord("c") ^ 3])


@pytest.mark.parametrize("key", [b"", b"abc", b"abcde"])
def test_key_must_be_four_bytes(impl, key):
    with pytest.raises(LocalProtocolError):
        impl.wsmask.mask_into(bytearray(8), 0, key)


@pytest.mark.parametrize("start", [-1, 9])
def test_start_outside_buffer(impl, start):
    with pytest.raises(LocalProtocolError):
        impl.wsmask.mask_into(bytearray(8), start, b"abcd")


def test_needs_a_bytearray(impl):
    with pytest.raises(TypeError):
        impl.wsmask.mask_into(b"immutable", 0, b"abcd")
