"""The shared muxer conformance suite, run on mplex over a loopback socketpair."""

from __future__ import annotations

import pytest

from geventp2p.net.mplex import MplexConfig, MplexMuxer
from geventp2p.testing.muxer_suite import (
    MuxerConformance,
    check_concurrent_streams,
    run_check,
    socketpair_factory,
)

# mplex has no flow control: a stalled reader's stream is reset at its buffer cap.
_CAP = 4 * 1024 * 1024


class TestMplexConformance(MuxerConformance):
    make_pair = staticmethod(socketpair_factory(MplexMuxer()))
    supports_reset_codes = False
    has_flow_control = False
    max_unread_per_stream = _CAP

    @pytest.mark.slow
    def test_concurrent_streams_10k(self):
        # 10,000 streams open at once is past the default inbound limit (1024, as js).
        wide = MplexMuxer(MplexConfig(max_inbound_streams=16384, accept_backlog=16384))
        run_check(check_concurrent_streams, socketpair_factory(wide), timeout=60)


class TestMplexConformanceSmallChunks(MuxerConformance):
    """Tiny messages, a tiny send queue and frequent reader yields: exercises splitting,
    writer back-pressure and the fairness turn-taking."""

    make_pair = staticmethod(
        socketpair_factory(
            MplexMuxer(
                MplexConfig(write_chunk_size=1000, max_send_buffer_size=4000, frames_per_yield=4,
                            max_stream_buffer_size=256 * 1024)
            )
        )
    )
    supports_reset_codes = False
    has_flow_control = False
    max_unread_per_stream = 256 * 1024

    test_concurrent_streams_10k = None
