"""Regression test for an mplex receive-side bug seen against js-libp2p (perf download of
8 MiB over mplex), fixed in 1345f96 (the reader yields after every large read).

Before the fix: a fast sender (js on another core) keeps our socket readable, so MplexConn's reader
greenlet never blocks in ``conn.read``; it yields only after ``frames_per_yield`` (64)
events *per read batch*, and one 64 KiB read holds about one 64 KiB message.  The
application greenlet blocked in ``stream.read`` then never runs while the reader keeps
appending to the stream buffer, which passes ``max_stream_buffer_size`` (4 MiB): the
stream is reset "reader too slow" although the application was waiting the whole time.
Seen in test_geventp2p_interop.py (js, mplex, perf download of 8 MiB, mostly in the
pure-Python build, under load).  Reproduced here deterministically without js: a RawConn
whose ``read`` always has the next bytes ready (like a socket a fast peer keeps full)
carries one stream of 12 MiB in 64 KiB messages.
"""

from __future__ import annotations

import itertools

import gevent
import pytest

from geventp2p._speedups import varint
from geventp2p.net.mplex import MplexMuxer

KiB, MiB = 1024, 1024 * 1024
TOTAL = 12 * MiB
CHUNK = 64 * KiB


def _frame(stream_id: int, flag: int, data: bytes) -> bytes:
    return varint.encode_uvarint(stream_id << 3 | flag) + varint.encode_uvarint(len(data)) + data


class _AlwaysReadable:
    """RawConn stand-in: reads never block while bytes remain (a busy socket); writes vanish."""

    is_initiator = True
    local_addr = remote_addr = None

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self.closed = False

    def read(self, n: int = 65536, timeout: float | None = None) -> bytes:
        if self.closed:
            return b""
        chunk = bytes(self._data[self._pos:self._pos + n])
        self._pos += len(chunk)
        if not chunk:  # all delivered: behave like a peer that keeps the connection open
            gevent.sleep(3600)
        return chunk

    def readinto(self, buf, timeout: float | None = None) -> int:
        chunk = self.read(len(buf), timeout)
        buf[:len(chunk)] = chunk
        return len(chunk)

    def unread(self, data: bytes) -> None:
        self._pos -= len(data)

    def write(self, data, timeout: float | None = None) -> None:
        if self.closed:
            raise OSError("closed")

    def writev(self, buffers) -> None:
        self.write(b"")

    def close(self) -> None:
        self.closed = True


def _wire() -> bytes:
    """Initiator side of stream 0: NewStream, TOTAL bytes as MessageInitiator, CloseInitiator."""
    body = _frame(0, 2, b"\x00" * CHUNK) * (TOTAL // CHUNK)
    return _frame(0, 0, b"0") + body + _frame(0, 4, b"")


def test_busy_socket_does_not_starve_a_waiting_reader():
    conn = MplexMuxer().create(_AlwaysReadable(_wire()), False)
    try:
        with gevent.Timeout(30):
            s = conn.accept_stream(timeout=10)
            got = 0
            while True:
                chunk = s.read(256 * KiB)  # the application reads as fast as it is scheduled
                if not chunk:
                    break
                got += len(chunk)
        assert got == TOTAL
    finally:
        conn.close()


class _MisalignedReads(_AlwaysReadable):
    """Each 64 KiB message arrives as one large read that does not complete it (the session
    emits no event for a partial body) and one small read that does (an event, but a read
    below the shell's 16 KiB yield threshold): what Noise frames of 65519 bytes carrying
    mplex messages of 65540 bytes look like."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        msg = len(_frame(0, 2, b"\x00" * CHUNK))
        self._sizes = itertools.chain([len(_frame(0, 0, b"0"))], itertools.cycle([msg - 100, 100]))

    def read(self, n: int = 65536, timeout: float | None = None) -> bytes:
        return super().read(min(n, next(self._sizes)), timeout)


def test_misaligned_reads_do_not_starve_a_waiting_reader():
    """The remaining case after 1345f96, seen as intermittent resets of 8 MiB perf downloads
    from js over Noise + mplex (test_wire_interop.py::test_js_mplex_fast_download_is_not_reset)."""
    conn = MplexMuxer().create(_MisalignedReads(_wire()), False)
    try:
        with gevent.Timeout(30):
            s = conn.accept_stream(timeout=10)
            got = 0
            while True:
                chunk = s.read(64 * KiB)  # like the perf client
                if not chunk:
                    break
                got += len(chunk)
        assert got == TOTAL
    finally:
        conn.close()
