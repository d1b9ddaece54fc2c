"""The direct protocol's frame codec: round trips, split invariance, limits (hypothesis)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geventp2p._speedups import varint
from geventp2p.exceptions import (
    DirectFrameTooLargeError,
    IncompleteReadError,
    LocalProtocolError,
    UndecodableMessageError,
)
from geventp2p.p2p.direct import encode_frame, parse_body, read_frame


class ChunkedStream:
    """Serves ``data`` in the given chunk sizes, then EOF."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self.data = data
        self.sizes = sizes or [1]
        self.i = 0

    def read(self, n: int = -1, timeout: Any = None) -> bytes:
        size = self.sizes[self.i % len(self.sizes)]
        self.i += 1
        size = max(1, min(size, n if n > 0 else size))
        out, self.data = self.data[:size], self.data[size:]
        return out

    def read_exactly(self, n: int, timeout: Any = None) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.read(n - len(out))
            if not chunk:
                raise IncompleteReadError(out, n)
            out += chunk
        return out


topics = st.text(min_size=1, max_size=40)
payloads = st.binary(max_size=300)


@given(topics, payloads)
def test_roundtrip(topic: str, payload: bytes) -> None:
    frame = encode_frame(topic, payload)
    n, start = varint.decode_uvarint(frame, 0)
    assert n == len(frame) - start
    assert parse_body(frame[start:]) == (topic, payload)


@settings(max_examples=50)
@given(st.lists(st.tuples(topics, payloads), min_size=1, max_size=5),
       st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=8))
def test_split_invariance(frames: list[tuple[str, bytes]], sizes: list[int]) -> None:
    data = b"".join(encode_frame(t, p) for t, p in frames)
    stream = ChunkedStream(data, sizes)
    buf = bytearray()
    got = []
    while True:
        body = read_frame(stream, buf, 1 << 20, None)
        if body is None:
            break
        got.append(parse_body(body))
    assert got == frames


def test_limits_and_bad_bodies() -> None:
    with pytest.raises(LocalProtocolError):
        encode_frame("t", b"x" * 100, max_size=50)
    big = varint.encode_uvarint(51) + b"\x01t"
    with pytest.raises(DirectFrameTooLargeError):
        read_frame(ChunkedStream(big, [64]), bytearray(), 50, None)
    with pytest.raises(IncompleteReadError):
        read_frame(ChunkedStream(varint.encode_uvarint(10) + b"\x01t", [64]), bytearray(), 50, None)
    for body in (b"", b"\x00abc", b"\x05ab", b"\x02\xff\xfe", b"\xff" * 12):
        with pytest.raises(UndecodableMessageError):
            parse_body(body)
