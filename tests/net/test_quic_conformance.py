"""The shared muxer conformance suite, run on QUIC connections over loopback UDP."""

from __future__ import annotations

from functools import partial

import pytest
from gevent.event import AsyncResult

from geventp2p.crypto.keys import generate_key
from geventp2p.net.quic import QuicConfig, QuicTransport
from geventp2p.testing.muxer_suite import MuxerConformance, check_concurrent_streams, run_check

pytest.importorskip("aioquic")


def quic_pair_factory(config: QuicConfig | None = None):
    """``make_pair()``: a dialled and an accepted QUIC connection (their MuxedConns)."""

    def make_pair():
        client_t = QuicTransport(generate_key(), config)
        server_t = QuicTransport(generate_key(), config)
        accepted: AsyncResult = AsyncResult()
        listener = server_t.listen("/ip4/127.0.0.1/udp/0/quic-v1", accepted.set)
        try:
            raw = client_t.dial(listener.multiaddr, timeout=10)
            server_raw = accepted.get(timeout=10)
        finally:
            listener.close()  # the socket stays open for the accepted connection
        return raw.muxed, server_raw.muxed

    return make_pair


class TestQuicConformance(MuxerConformance):
    make_pair = staticmethod(quic_pair_factory())
    # a stalled stream holds at most its receive window (1 MiB by default)
    max_unread_per_stream = QuicConfig().stream_receive_window

    # 10,000 live streams are too slow here: aioquic visits every stream for every packet
    # it builds (flow-control frames), so the cost grows with the number of open streams.
    test_concurrent_streams_10k = None

    @pytest.mark.slow
    def test_concurrent_streams_3k(self):
        cfg = QuicConfig(max_incoming_streams=4096, accept_backlog=4096)
        run_check(partial(check_concurrent_streams, streams=3000), quic_pair_factory(cfg), timeout=120)


class TestQuicConformanceSmallWindows(MuxerConformance):
    """Small windows and send buffers, the smallest datagrams: back-pressure everywhere."""

    make_pair = staticmethod(quic_pair_factory(QuicConfig(
        stream_receive_window=64 * 1024, max_send_buffer_size=16 * 1024, max_datagram_size=1200,
        max_incoming_streams=100)))
    max_unread_per_stream = 64 * 1024

    test_concurrent_streams_10k = None
