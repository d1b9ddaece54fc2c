"""YamuxFrameReader zero-copy input (get_buffer/commit) in both builds: same frames as
feed() for any chunking, capacity kept, errors sticky, bad commits refused."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geventp2p.exceptions import FrameError, LocalProtocolError

HYP = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def hx(s):
    return bytes.fromhex(s.replace(" ", ""))


def frame(ftype, flags, sid, length, body=b""):
    return bytes([0, ftype]) + flags.to_bytes(2, "big") + sid.to_bytes(4, "big") + length.to_bytes(4, "big") + body


def push(reader, data, size):
    """Write ``data`` through get_buffer/commit in views of ``size`` bytes."""
    out = []
    pos = 0
    while pos < len(data):
        view = reader.get_buffer(size)
        k = min(len(view), len(data) - pos)
        view[:k] = data[pos:pos + k]
        view.release()
        out.extend(reader.commit(k))
        pos += k
    return out


def test_get_buffer_commit_vectors(impl):
    r = impl.frames.YamuxFrameReader()
    wire = frame(1, 1, 1, 0) + frame(0, 0, 1, 5, b"hello") + hx("00 02 0001 00000000 00000007")
    assert push(r, wire, 7) == [(1, 1, 1, 0, b""), (0, 0, 1, 5, b"hello"), (2, 1, 0, 7, b"")]
    assert r.buffered == 0


def test_get_buffer_keeps_capacity_and_partial_frames(impl):
    r = impl.frames.YamuxFrameReader()
    body = bytes(range(256)) * 300
    wire = frame(0, 0, 3, len(body), body) * 5
    view = r.get_buffer(100000)
    view[:100000] = wire[:100000]
    view.release()
    got = r.commit(100000)
    assert [f[4] for f in got] == [body]
    assert r.buffered == 100000 - (12 + len(body))
    got += push(r, wire[100000:], 100000)
    assert [f[4] for f in got] == [body] * 5 and r.buffered == 0
    # capacity is reused: a later small read does not shrink or regrow the buffer
    view = r.get_buffer(1000)
    assert len(view) == 1000
    view.release()
    assert r.commit(0) == []


def test_commit_bounds_and_sticky_error(impl):
    r = impl.frames.YamuxFrameReader()
    view = r.get_buffer(16)
    view.release()
    with pytest.raises(LocalProtocolError):
        r.commit(17)
    with pytest.raises(LocalProtocolError):
        r.commit(-1)
    for size in (0, -5, 2**40):
        with pytest.raises(LocalProtocolError):
            r.get_buffer(size)
    view = r.get_buffer(24)
    view[:24] = frame(1, 0, 1, 0) + bytes([1]) + bytes(11)  # second header: version 1
    view.release()
    assert r.commit(24) == [(1, 0, 1, 0, b"")]
    with pytest.raises(FrameError):
        r.commit(0)
    with pytest.raises(FrameError):
        r.get_buffer(10)
    with pytest.raises(FrameError):
        r.feed(b"")


def test_empty_feed_keeps_capacity(impl):
    r = impl.frames.YamuxFrameReader()
    view = r.get_buffer(4096)
    view[:6] = frame(0, 0, 1, 10)[:6]
    view.release()
    assert r.commit(6) == []
    assert r.feed(b"") == []
    view = r.get_buffer(4090)  # fits the existing capacity
    view[:16] = frame(0, 0, 1, 10)[6:] + b"0123456789"
    view.release()
    assert r.commit(16) == [(0, 0, 1, 10, b"0123456789")]


@HYP
@given(
    bodies=st.lists(st.binary(max_size=3000), max_size=8),
    sizes=st.lists(st.integers(1, 5000), min_size=1, max_size=6),
)
def test_buffer_input_matches_feed(both_impls, bodies, sizes):
    wire = b"".join(frame(0, 0, 2 * i + 1, len(b), b) + frame(1, 2, 2 * i + 1, 7) for i, b in enumerate(bodies))
    expected = both_impls[0].frames.YamuxFrameReader().feed(wire)
    for impl in both_impls:
        r = impl.frames.YamuxFrameReader()
        got = []
        pos = 0
        i = 0
        while pos < len(wire):
            size = sizes[i % len(sizes)]
            i += 1
            if i % 3 == 0:  # mix in feed()
                got.extend(r.feed(wire[pos:pos + size]))
                pos += size
                continue
            view = r.get_buffer(size)
            k = min(size, len(wire) - pos)
            view[:k] = wire[pos:pos + k]
            view.release()
            got.extend(r.commit(k))
            pos += k
        assert got == expected and r.buffered == 0
