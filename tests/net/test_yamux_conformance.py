"""The shared muxer conformance suite, run on yamux over a loopback socketpair."""

from __future__ import annotations

import pytest

from geventp2p.net.yamux import YamuxConfig, YamuxMuxer
from geventp2p.testing.muxer_suite import MuxerConformance, socketpair_factory


class TestYamuxConformance(MuxerConformance):
    make_pair = staticmethod(socketpair_factory(YamuxMuxer()))

    @pytest.mark.slow
    def test_concurrent_streams_10k(self):
        super().test_concurrent_streams_10k()


class TestYamuxConformanceSmallFrames(MuxerConformance):
    """Tiny frames and keepalive pings flying: exercises splitting and the timer path."""

    make_pair = staticmethod(
        socketpair_factory(YamuxMuxer(YamuxConfig(max_frame_body=1000, frames_per_yield=4)))
    )

    test_concurrent_streams_10k = None
