"""frames send-path helpers in both builds: YamuxWriteBuffer (coalescing, zero-copy,
byte accounting), plus pure/compiled parity."""

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geventp2p.exceptions import LocalProtocolError, StreamClosedError

HYP = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def hx(s):
    return bytes.fromhex(s.replace(" ", ""))


def parse_yamux(wire):
    """[(type, flags, sid, length, body)] of a complete yamux byte string."""
    out = []
    pos = 0
    while pos < len(wire):
        _, t, fl, sid, ln = struct.unpack_from(">BBHII", wire, pos)
        pos += 12
        body = b""
        if t == 0:
            body = wire[pos:pos + ln]
            pos += ln
        out.append((t, fl, sid, ln, body))
    return out


# --------------------------------------------------------------------------- YamuxWriteBuffer


def test_write_buffer_vectors(impl):
    wb = impl.frames.YamuxWriteBuffer(65524)
    wb.frame(1, 1, 1, 0)  # SYN
    wb.data(1, b"hello", 5)
    assert wb.nbytes == 12 + 12 + 5
    out = b"".join(wb.drain())
    assert out == hx("00 01 0001 00000001 00000000") + hx("00 00 0000 00000001 00000005") + b"hello"
    assert wb.nbytes == 0 and wb.drain() == []


def test_write_buffer_coalesces_consecutive_writes_of_one_stream(impl):
    wb = impl.frames.YamuxWriteBuffer(10)
    for piece in (b"ab", b"cde", b"fghijkl", b"mn"):
        wb.data(3, piece, len(piece))
    wire = b"".join(wb.drain())
    assert parse_yamux(wire) == [(0, 0, 3, 10, b"abcdefghij"), (0, 0, 3, 4, b"klmn")]


def test_write_buffer_does_not_coalesce_across_streams_or_control_frames(impl):
    wb = impl.frames.YamuxWriteBuffer(100)
    wb.data(1, b"a", 1)
    wb.data(3, b"b", 1)
    wb.data(3, b"c", 1)
    wb.frame(1, 0, 3, 7)
    wb.data(3, b"d", 1)
    wire = b"".join(wb.drain())
    assert parse_yamux(wire) == [
        (0, 0, 1, 1, b"a"), (0, 0, 3, 2, b"bc"), (1, 0, 3, 7, b""), (0, 0, 3, 1, b"d"),
    ]
    wb.data(3, b"e", 1)  # a drain closes the open frame
    assert parse_yamux(b"".join(wb.drain())) == [(0, 0, 3, 1, b"e")]


def test_write_buffer_copies_mutable_input_and_not_bytes(impl):
    wb = impl.frames.YamuxWriteBuffer(65524)
    src = bytearray(b"mutable!")
    wb.data(1, src, 8)
    src[:] = b"XXXXXXXX"
    data = bytes(b"y" * 100000)
    wb.data(5, memoryview(data), 100000)
    bufs = wb.drain()
    assert b"".join(bufs)[12:20] == b"mutable!"
    # the bytes body is queued as views of the caller's object, not copies
    views = [b for b in bufs if isinstance(b, memoryview)]
    assert views and all(v.obj is data for v in views)
    assert parse_yamux(b"".join(bufs))[1:] == [(0, 0, 5, 65524, data[:65524]), (0, 0, 5, 100000 - 65524, data[65524:])]


def test_write_buffer_partial_and_bad_lengths(impl):
    wb = impl.frames.YamuxWriteBuffer(65524)
    wb.data(1, b"abcdef", 4)
    wb.data(1, b"xyz", 0)
    assert parse_yamux(b"".join(wb.drain())) == [(0, 0, 1, 4, b"abcd")]
    for n in (-1, 7, 2**70):
        with pytest.raises(LocalProtocolError):
            wb.data(1, b"abcdef", n)
    with pytest.raises(LocalProtocolError):
        wb.data(2**32, b"a", 1)
    with pytest.raises(LocalProtocolError):
        impl.frames.YamuxWriteBuffer(0)
    assert wb.nbytes == 0


@HYP
@given(
    body=st.integers(1, 300),
    ops=st.lists(
        st.tuples(st.sampled_from(["data", "frame", "drain"]), st.integers(1, 3), st.binary(max_size=700)),
        max_size=30,
    ),
)
def test_write_buffer_parity_and_stream_content(both_impls, body, ops):
    """Both builds produce the same wire bytes; per stream, the Data bodies carry
    exactly the bytes written, in order, in frames of at most ``body`` bytes."""
    py, c = both_impls
    wires = []
    for impl in (py, c):
        wb = impl.frames.YamuxWriteBuffer(body)
        wire = b""
        for op, sid, data in ops:
            if op == "data":
                wb.data(sid, data, len(data))
            elif op == "frame":
                wb.frame(1, 0, sid, len(data))
            else:
                queued = wb.nbytes
                chunk = b"".join(wb.drain())
                assert len(chunk) == queued
                wire += chunk
        queued = wb.nbytes
        chunk = b"".join(wb.drain())
        assert len(chunk) == queued
        wire += chunk
        wires.append(wire)
    assert wires[0] == wires[1]
    frames_ = parse_yamux(wires[0])
    for sid in (1, 2, 3):
        sent = b"".join(d for op, s, d in ops if op == "data" and s == sid)
        got = [f for f in frames_ if f[0] == 0 and f[2] == sid]
        assert b"".join(f[4] for f in got) == sent
        assert all(0 < f[3] <= body for f in got)


# --------------------------------------------------------------------------- YamuxStreamSender


def test_stream_sender_takes_credit_and_queues(impl):
    win = impl.window.StreamWindow(10, 100)
    wb = impl.frames.YamuxWriteBuffer(65524)
    snd = impl.frames.YamuxStreamSender(win, wb, 5)
    assert snd.open and snd.stream_id == 5 and snd.window is win and snd.buffer is wb
    assert snd.send(b"abcd", 1000) == 4
    assert snd.send(memoryview(bytearray(b"efghijkl")), 1000) == 6  # credit: 10
    assert win.send_window == 0
    assert snd.send(b"zz", 1000) == 0 and not snd.blocked_on_buffer(1000)
    assert parse_yamux(b"".join(wb.drain())) == [(0, 0, 5, 10, b"abcdefghij")]


def test_stream_sender_bounded_by_queued_bytes(impl):
    win = impl.window.StreamWindow(1000, 1000)
    wb = impl.frames.YamuxWriteBuffer(65524)
    snd = impl.frames.YamuxStreamSender(win, wb, 1)
    wb.frame(1, 0, 1, 0)  # 12 bytes queued: room for 8 body bytes below 20
    assert snd.send(b"x" * 100, 20) == 8
    assert wb.nbytes == 32 and snd.blocked_on_buffer(20)
    assert snd.send(b"y", 20) == 0
    assert win.send_window == 992  # no credit taken for what did not fit
    wb.drain()
    assert not snd.blocked_on_buffer(20) and snd.send(b"y", 20) == 1


def test_stream_sender_mutable_input_is_copied_and_closed_sender_raises(impl):
    win = impl.window.StreamWindow(100, 100)
    wb = impl.frames.YamuxWriteBuffer(65524)
    snd = impl.frames.YamuxStreamSender(win, wb, 3)
    buf = bytearray(b"abc")
    assert snd.send(buf, 1000) == 3
    buf[:] = b"XYZ"
    assert parse_yamux(b"".join(wb.drain()))[0][4] == b"abc"
    snd.open = False
    with pytest.raises(StreamClosedError):
        snd.send(b"a", 1000)
    assert win.send_window == 97
