"""Stream's file-like helpers (read_all, readline, makefile), the context manager,
the lazy-negotiation slow path fields and use from other OS threads."""

from __future__ import annotations

import hashlib
import io
import threading

import gevent
import pytest
from gevent.event import Event
from gevent.threadpool import ThreadPool

from geventp2p.exceptions import (
    MessageTooLargeError,
    NegotiationError,
    P2PTimeoutError,
    StreamClosedError,
    StreamResetError,
)
from geventp2p.net import multistream
from geventp2p.net.stream import OUTBOUND, Stream


class FakeStream(Stream):
    """Records what the base asks the muxer to send (unlimited capacity)."""

    __slots__ = ("sent", "fins", "resets")

    def __init__(self) -> None:
        super().__init__(None, 7, OUTBOUND)
        self.sent = bytearray()
        self.fins = 0
        self.resets: list[int] = []

    def _try_write(self, view):
        self.sent += view
        return len(view)

    def _send_close_write(self):
        self.fins += 1

    def _send_reset(self, code):
        self.resets.append(code)


def fed(*chunks: bytes, eof: bool = True) -> FakeStream:
    s = FakeStream()
    for c in chunks:
        s._feed_data(c)
    if eof:
        s._feed_eof()
    return s


# ---------------------------------------------------------------- read_all


def test_read_all_to_eof():
    s = fed(b"ab", b"cd", b"e" * 100_000)
    assert s.read_all() == b"abcd" + b"e" * 100_000
    assert s.read_all() == b""


def test_read_all_at_limit_is_fine_over_limit_resets():
    assert fed(b"x" * 10).read_all(limit=10) == b"x" * 10
    s = fed(b"x" * 6, b"y" * 5)
    with pytest.raises(MessageTooLargeError):
        s.read_all(limit=10)
    assert s.is_reset and s.resets == [MessageTooLargeError.error_code]
    with pytest.raises(StreamResetError):
        s.read()


def test_read_all_waits_for_eof_across_greenlets():
    s = fed(eof=False)

    def feed():
        for i in range(5):
            gevent.sleep(0)
            s._feed_data(bytes([i]) * 3)
        s._feed_eof()

    g = gevent.spawn(feed)
    assert s.read_all(timeout=5) == b"".join(bytes([i]) * 3 for i in range(5))
    g.join()


def test_read_all_timeout_keeps_the_bytes():
    s = fed(b"partial", eof=False)
    with pytest.raises(P2PTimeoutError):
        s.read_all(timeout=0.05)
    s._feed_eof()
    assert s.read_all() == b"partial"


def test_read_all_after_remote_reset_raises():
    s = fed(b"abc", eof=False)
    s._feed_reset(StreamResetError("gone", error_code=5, remote=True))
    with pytest.raises(StreamResetError):
        s.read_all()


# ---------------------------------------------------------------- readline


def test_readline_splits_and_keeps_the_rest():
    s = fed(b"one\ntw", b"o\nthree")
    assert s.readline() == b"one\n"
    assert s.readline() == b"two\n"
    assert s.readline() == b"three"  # the rest at EOF, no newline
    assert s.readline() == b""
    assert s.readline() == b""


def test_readline_limit_counts_the_newline():
    assert fed(b"abc\n").readline(limit=4) == b"abc\n"
    s = fed(b"abcd\n")
    with pytest.raises(MessageTooLargeError):
        s.readline(limit=4)
    assert s.is_reset


def test_readline_long_line_without_newline_resets():
    s = fed(b"a" * 70_000, eof=False)
    with pytest.raises(MessageTooLargeError):
        s.readline()
    assert s.is_reset and s.resets == [MessageTooLargeError.error_code]


def test_readline_exactly_limit_at_eof_is_returned():
    assert fed(b"a" * 8).readline(limit=8) == b"a" * 8


def test_readline_after_reset_and_after_close_read():
    s = fed(b"x\n", eof=False)
    s.reset()
    with pytest.raises(StreamResetError):
        s.readline()
    s = fed(b"x\n", eof=False)
    s.close_read()
    with pytest.raises(StreamClosedError):
        s.readline()


def test_readline_timeout():
    s = fed(b"no newline yet", eof=False)
    with pytest.raises(P2PTimeoutError):
        s.readline(timeout=0.05)
    s._feed_data(b"!\n")
    assert s.readline() == b"no newline yet!\n"


# ---------------------------------------------------------------- makefile


def test_makefile_rb_is_a_buffered_reader():
    s = fed(b"line one\n", b"line two\n", b"tail")
    f = s.makefile("rb")
    assert isinstance(f, io.BufferedIOBase)
    assert f.readline() == b"line one\n"
    assert list(f) == [b"line two\n", b"tail"]
    assert f.read() == b""
    f.close()
    assert not s.read_closed and not s.write_closed  # the stream stays as it was


def test_makefile_wb_close_half_closes():
    s = FakeStream()
    f = s.makefile("wb")
    assert isinstance(f, io.BufferedIOBase)
    f.write(b"hello ")
    f.write(memoryview(b"world"))
    assert s.fins == 0
    f.close()
    assert bytes(s.sent) == b"hello world"
    assert s.write_closed and s.fins == 1
    with pytest.raises(ValueError):
        f.write(b"x")


def test_makefile_modes():
    s = FakeStream()
    with pytest.raises(ValueError):
        s.makefile("r+b")
    with pytest.raises(io.UnsupportedOperation):
        s.makefile("rb").write(b"x")


# ---------------------------------------------------------------- context manager, type


def test_with_closes_and_no_wrapper_in_mro():
    with FakeStream() as s:
        s.write(b"x")
    assert s.write_closed and s.read_closed
    assert FakeStream.__mro__ == (FakeStream, Stream, object)


def test_finished_stream_calls_its_watch_once():
    seen = []
    s = FakeStream()
    s._watch = seen.append
    s.close_write()
    assert seen == []
    s._feed_eof()
    assert seen == [s]
    s.reset()
    s.close()
    assert seen == [s]


# ---------------------------------------------------------------- lazy negotiation fields


def _echo_reply(proto: bytes) -> bytes:
    return b"\x13/multistream/1.0.0\n" + bytes([len(proto) + 1]) + proto + b"\n"


def test_lazy_prefix_rides_with_the_first_write_and_echo_checked_before_read():
    s = FakeStream()
    assert multistream.select_lazy(s, "/p/1") is s
    assert s._slow_write and not s.negotiated and s.sent == b""
    s.write(b"data")
    assert bytes(s.sent) == _echo_reply(b"/p/1") + b"data"
    assert not s._slow_write  # later writes take the fast path again
    s._feed_data(_echo_reply(b"/p/1") + b"answer")
    assert s.read() == b"answer"
    assert s.negotiated


def test_lazy_refusal_raises_on_every_read_and_resets_with_0x1001():
    s = FakeStream()
    multistream.select_lazy(s, "/p/1")
    s.write(b"data")
    s._feed_data(b"\x13/multistream/1.0.0\n\x03na\n")
    with pytest.raises(NegotiationError):
        s.read(timeout=1)
    assert s.resets == [NegotiationError.error_code]
    with pytest.raises(NegotiationError):
        s.read_all(timeout=1)


def test_lazy_close_write_sends_the_prefix_first():
    s = FakeStream()
    multistream.select_lazy(s, "/p/1")
    s.close_write()
    assert bytes(s.sent) == _echo_reply(b"/p/1") and s.fins == 1


def test_lazy_confirm_before_fin_reads_the_echo_first():
    s = FakeStream()
    multistream.select_lazy(s, "/p/1", confirm_before_fin=True)
    s.write(b"q")
    g = gevent.spawn(s.close_write)
    gevent.sleep(0.01)
    assert s.fins == 0  # waiting for the echo
    s._feed_data(_echo_reply(b"/p/1") + b"r")
    g.get(timeout=5)
    assert s.fins == 1 and s.negotiated
    assert s.read() == b"r"


# ---------------------------------------------------------------- other OS threads


def test_cpu_work_on_a_thread_pool_with_stream_io_on_the_hub():
    """The documented pattern: stream I/O stays on the hub thread, the blocking or
    CPU-heavy part runs on an OS thread of a pool; gevent wakes the waiting greenlet
    across threads."""
    s = fed(b"a" * 50_000, b"b" * 50_000)
    pool = ThreadPool(2)
    threads = []

    def digest(data: bytes) -> bytes:
        threads.append(threading.get_ident())
        return hashlib.sha256(data).digest()

    try:
        with gevent.Timeout(10):
            data = s.read_all()
            d = pool.spawn(digest, data).get()
            s.write(d)
    finally:
        pool.kill()
    assert bytes(s.sent) == hashlib.sha256(b"a" * 50_000 + b"b" * 50_000).digest()
    assert threads and threads[0] != threading.get_ident()


def test_foreign_thread_posts_a_write_to_the_hub():
    """A foreign thread hands data to the hub with ``run_callback_threadsafe``; the
    write itself runs on the hub thread."""
    s = FakeStream()
    hub = gevent.get_hub()
    done = Event()

    def on_hub(data: bytes) -> None:
        s.write(data)
        done.set()

    t = threading.Thread(target=lambda: hub.loop.run_callback_threadsafe(on_hub, b"from a thread"))
    t.start()
    assert done.wait(timeout=10)
    t.join(5)
    assert bytes(s.sent) == b"from a thread"
