"""Perf /perf/1.0.0 (https://github.com/libp2p/specs/blob/master/perf/perf.md)."""

from __future__ import annotations

import struct

import pytest

from geventp2p.exceptions import RemoteProtocolError, StreamError
from geventp2p.protocols.perf import PROTOCOL_ID, PerfService, perf


@pytest.mark.parametrize("up,down", [(0, 0), (1, 0), (0, 1), (100_000, 250_000), (65536 * 3 + 7, 65536)])
def test_perf_byte_counts(pair, up, down):
    a, b = pair
    r = perf(b, a.id, up, down, timeout=10)
    assert r.upload_bytes == up and r.download_bytes == down
    assert r.total_time >= r.upload_time >= 0 and r.download_time >= 0


def test_server_waits_for_fin_before_sending(pair):
    a, b = pair
    s = b.new_stream(a.id, PROTOCOL_ID, timeout=5)
    s.write(struct.pack(">Q", 10) + b"upload")
    from geventp2p.exceptions import P2PTimeoutError

    with pytest.raises(P2PTimeoutError):
        s.read(timeout=0.2)  # no download before our FIN
    s.close_write()
    got = b""
    while True:
        chunk = s.read(timeout=5)
        if not chunk:
            break
        got += chunk
    assert got == bytes(10)
    s.close()


def test_short_header_is_reset(pair):
    a, b = pair
    s = b.new_stream(a.id, PROTOCOL_ID, timeout=5)
    s.write(b"\x00\x01")
    s.close_write()
    with pytest.raises(StreamError):
        s.read(timeout=5)
    s.close()


def test_client_detects_wrong_count(make_host):
    a = make_host()
    b = make_host()

    def liar(stream):
        (n,) = struct.unpack(">Q", stream.read_exactly(8, timeout=5))
        while stream.read(timeout=5):
            pass
        stream.write(bytes(n + 5))

    a.set_stream_handler(PROTOCOL_ID, liar)
    b.connect(a.p2p_addrs()[0], timeout=10)
    with pytest.raises(RemoteProtocolError):
        perf(b, a.id, 10, 20, timeout=5)

    def short(stream):
        stream.read_exactly(8, timeout=5)
        while stream.read(timeout=5):
            pass
        stream.write(b"abc")

    a.set_stream_handler(PROTOCOL_ID, short)
    with pytest.raises(RemoteProtocolError):
        perf(b, a.id, 0, 20, timeout=5)


def test_server_cap(make_host):
    a = make_host()
    a.add_service(PerfService(max_download=100))
    b = make_host()
    b.connect(a.p2p_addrs()[0], timeout=10)
    assert perf(b, a.id, 0, 100, timeout=5).download_bytes == 100
    with pytest.raises(StreamError):
        perf(b, a.id, 0, 101, timeout=5)


def test_perf_disabled_by_default(make_host):
    a = make_host()
    assert PROTOCOL_ID not in a.get_protocols()
    with pytest.raises(ValueError):
        PerfService(max_download=-1)
    with pytest.raises(ValueError):
        perf(a, a.id, 0, 1 << 64)
