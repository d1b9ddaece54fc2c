"""Unit tests of the muxer-agnostic Stream base (geventp2p.net.stream) with a fake muxer."""

from __future__ import annotations

import time

import gevent
import pytest

from geventp2p.exceptions import (
    ConnectionClosedError,
    IncompleteReadError,
    P2PTimeoutError,
    StreamClosedError,
    StreamResetError,
)
from geventp2p.net.stream import OUTBOUND, Stream


class FakeStream(Stream):
    """Records what the base asks the muxer to send; capacity-limited writes."""

    __slots__ = ("sent", "capacity", "fins", "resets", "consumed", "changes")

    def __init__(self, capacity: int = 1 << 30) -> None:
        super().__init__(None, 1, OUTBOUND)
        self.sent = bytearray()
        self.capacity = capacity
        self.fins = 0
        self.resets = []
        self.consumed = 0
        self.changes = 0

    def _try_write(self, view):
        n = min(len(view), self.capacity)
        self.capacity -= n
        self.sent += view[:n]
        return n

    def _send_close_write(self):
        self.fins += 1

    def _send_reset(self, code):
        self.resets.append(code)

    def _on_consumed(self, n):
        self.consumed += n

    def _on_state_change(self):
        self.changes += 1

    def grant(self, n):
        self.capacity += n
        self._notify_writable()


def test_read_buffered_and_partial():
    s = FakeStream()
    s._feed_data(b"hello")
    s._feed_data(b"world")
    assert s.read(3) == b"hel"
    assert s.read(4) == b"lowo"
    assert s.read() == b"rld"
    assert s.consumed == 10
    assert s.buffered == 0


def test_read_blocks_until_data_then_eof():
    s = FakeStream()
    g = gevent.spawn(s.read)
    gevent.sleep(0)
    assert not g.ready()
    s._feed_data(b"x")
    assert g.get(timeout=1) == b"x"
    s._feed_data(b"tail")
    s._feed_eof()
    assert s.read() == b"tail"  # buffered data survives FIN
    assert s.read() == b""
    assert s.read(10) == b""


def test_read_timeout_and_deadline():
    s = FakeStream()
    t0 = time.monotonic()
    with pytest.raises(P2PTimeoutError):
        s.read(timeout=0.05)
    assert time.monotonic() - t0 >= 0.04
    s.set_read_deadline(time.monotonic() + 0.03)
    with pytest.raises(P2PTimeoutError):
        s.read()
    s.set_read_deadline(None)
    s._feed_data(b"ok")
    assert s.read(timeout=0.01) == b"ok"


def test_deadline_change_wakes_reader():
    s = FakeStream()
    g = gevent.spawn(s.read)
    gevent.sleep(0.01)
    s.set_deadline(time.monotonic() - 1)
    with pytest.raises(P2PTimeoutError):
        g.get(timeout=1)


def test_read_exactly_and_incomplete():
    s = FakeStream()
    s._feed_data(b"ab")
    g = gevent.spawn(s.read_exactly, 5)
    gevent.sleep(0)
    s._feed_data(b"cdefg")
    assert g.get(timeout=1) == b"abcde"
    s._feed_eof()
    with pytest.raises(IncompleteReadError) as ei:
        s.read_exactly(3)
    assert ei.value.partial == b"fg"
    assert isinstance(ei.value, EOFError)


def test_unread_goes_first():
    s = FakeStream()
    s._feed_data(b"abcdef")
    assert s.read(2) == b"ab"
    s.unread(b"XY")
    assert s.read() == b"XYcdef"


def test_write_backpressure_and_timeout():
    s = FakeStream(capacity=3)
    g = gevent.spawn(s.write, b"abcdefgh")
    gevent.sleep(0.01)
    assert bytes(s.sent) == b"abc" and not g.ready()
    s.grant(2)
    gevent.sleep(0.01)
    assert bytes(s.sent) == b"abcde"
    s.grant(100)
    g.get(timeout=1)
    assert bytes(s.sent) == b"abcdefgh"
    s.capacity = 0
    with pytest.raises(P2PTimeoutError):
        s.write(b"zz", timeout=0.02)


def test_concurrent_writes_are_contiguous():
    s = FakeStream(capacity=0)
    g1 = gevent.spawn(s.write, b"A" * 10)
    g2 = gevent.spawn(s.write, b"B" * 10)
    gevent.sleep(0)
    for _ in range(20):
        s.grant(1)
        gevent.sleep(0)
    gevent.joinall([g1, g2], timeout=1, raise_error=True)
    assert bytes(s.sent) in (b"A" * 10 + b"B" * 10, b"B" * 10 + b"A" * 10)


def test_close_write_then_write_fails():
    s = FakeStream()
    s.write(b"x")
    s.close_write()
    s.close_write()
    assert s.fins == 1
    with pytest.raises(StreamClosedError):
        s.write(b"y")


def test_close_read_discards_and_credits():
    s = FakeStream()
    s._feed_data(b"12345")
    s.close_read()
    assert s.consumed == 5
    with pytest.raises(StreamClosedError):
        s.read()
    s._feed_data(b"678")
    assert s.consumed == 8 and s.buffered == 0


def test_remote_reset_wakes_blocked_calls():
    s = FakeStream(capacity=0)
    r = gevent.spawn(s.read)
    w = gevent.spawn(s.write, b"data")
    gevent.sleep(0.01)
    s._feed_data(b"lost")
    s._feed_reset(StreamResetError(error_code=0x1001, remote=True))
    with pytest.raises(StreamResetError) as ei:
        w.get(timeout=1)
    assert ei.value.error_code == 0x1001 and ei.value.remote
    # the reader either got the data (woken by it) or saw the reset that followed
    r.join(timeout=1)
    assert r.ready()
    assert r.successful() and r.value == b"lost" or isinstance(r.exception, StreamResetError)
    with pytest.raises(StreamResetError):
        s.read()
    assert s.finished
    s.close()  # never raises
    s.reset()  # no-op
    assert s.resets == []


def test_local_reset():
    s = FakeStream()
    s._feed_data(b"abc")
    r = None
    s.reset(0x1004)
    assert s.resets == [0x1004]
    assert s.consumed == 3
    with pytest.raises(StreamResetError) as ei:
        s.read()
    assert ei.value.error_code == 0x1004 and not ei.value.remote
    with pytest.raises(StreamResetError):
        s.write(b"x")
    with pytest.raises(StreamResetError):
        s.close_write()
    s.reset(5)
    assert s.resets == [0x1004]
    del r


def test_connection_closed_is_reset():
    s = FakeStream()
    s._feed_reset(ConnectionClosedError())
    with pytest.raises(StreamResetError):
        s.read()


def test_finished_and_reset_after_finish_noop():
    s = FakeStream()
    s.close_write()
    s._feed_eof()
    assert s.finished
    s.reset()
    assert s.resets == []


def test_unread_bytes_reported_once():
    s = FakeStream()
    s._feed_data(b"abcdef")
    assert s.read(4) == b"abcd"
    assert s.consumed == 4
    s.unread(b"cd")
    assert s.read(3) == b"cde"
    assert s.consumed == 5
    s.unread(b"XYZ")
    s.close_read()
    assert s.consumed == 6


def test_session_end_after_fin_keeps_buffered_data():
    s = FakeStream()
    s._feed_data(b"response")
    s._feed_eof()
    s._feed_reset(ConnectionClosedError(), keep_read_if_eof=True)
    assert not s.is_reset
    assert s.finished
    with pytest.raises(ConnectionClosedError):
        s.write(b"x")
    with pytest.raises(ConnectionClosedError):
        s.close_write()
    assert s.read() == b"response"
    assert s.read() == b""
    s.close()  # never raises


def test_session_end_without_fin_resets():
    s = FakeStream()
    s._feed_data(b"partial")
    s._feed_reset(ConnectionClosedError(), keep_read_if_eof=True)
    assert s.is_reset
    with pytest.raises(ConnectionClosedError):
        s.read()
