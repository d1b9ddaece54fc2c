"""YamuxFrameReader.detach_buffer/attach_buffer in both builds: the buffer is handed
over only while nothing is buffered, a new one is adopted only while none is held,
and frames parse the same across a swap."""

import pytest


def frame(ftype, flags, sid, length, body=b""):
    return bytes([0, ftype]) + flags.to_bytes(2, "big") + sid.to_bytes(4, "big") + length.to_bytes(4, "big") + body


def push(reader, data, size):
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


def test_detach_and_attach(impl):
    r = impl.frames.YamuxFrameReader()
    assert r.detach_buffer() is None  # none held yet
    mine = bytearray(4096)
    assert r.attach_buffer(mine)
    assert not r.attach_buffer(bytearray(10))  # one is held
    wire = frame(0, 0, 1, 5, b"hello")
    view = r.get_buffer(4096)
    view[:8] = wire[:8]  # a partial frame
    view.release()
    assert r.commit(8) == []
    assert r.detach_buffer() is None  # bytes buffered: kept
    assert push(r, wire[8:], 100) == [(0, 0, 1, 5, b"hello")]
    assert r.detach_buffer() is mine and r.buffered == 0
    assert r.detach_buffer() is None
    other = bytearray(b"\xee" * 64)  # stale contents never leak into frames
    assert r.attach_buffer(other)
    assert push(r, wire * 3, 7) == [(0, 0, 1, 5, b"hello")] * 3
    assert r.detach_buffer() is not None


def test_attach_refuses_while_bytes_are_buffered(impl):
    r = impl.frames.YamuxFrameReader()
    r.feed(frame(0, 0, 1, 5, b"he"))  # partial, in a buffer of its own
    assert not r.attach_buffer(bytearray(100))
    assert r.feed(b"llo") == [(0, 0, 1, 5, b"hello")]
    with pytest.raises(TypeError):
        r.attach_buffer(b"bytes")  # a bytearray only
