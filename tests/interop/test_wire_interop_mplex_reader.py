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

import gevent

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
