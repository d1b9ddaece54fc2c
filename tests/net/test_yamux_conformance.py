"""The shared muxer conformance suite, run on yamux over a loopback socketpair."""

from __future__ import annotations

import pytest

from geventp2p.net.yamux import YamuxConfig, YamuxMuxer
from geventp2p.testing.muxer_suite import (
    MuxerConformance,
    check_concurrent_streams,
    run_check,
    socketpair_factory,
)


class TestYamuxConformance(MuxerConformance):
    make_pair = staticmethod(socketpair_factory(YamuxMuxer()))

    # 10,000 live streams: above the default inbound limit (1000, as js), so widen it
    @pytest.mark.slow
    def test_concurrent_streams_10k(self):
        wide = YamuxMuxer(YamuxConfig(max_inbound_streams=16384, accept_backlog=16384))
        run_check(check_concurrent_streams, socketpair_factory(wide), timeout=60)


class TestYamuxConformanceSmallFrames(MuxerConformance):
    """Tiny frames and keepalive pings flying: exercises splitting and the timer path."""

    make_pair = staticmethod(
        socketpair_factory(YamuxMuxer(YamuxConfig(max_frame_body=1000, frames_per_yield=4)))
    )

    test_concurrent_streams_10k = None


def _memory_factory(muxer, **knobs):
    def make_pair():
        from geventp2p.net.memory import memory_pipe

        a, b = memory_pipe(**knobs)
        return muxer.create(a, True), muxer.create(b, False)

    return make_pair


def _noise_tcp_factory(muxer):
    """yamux over Noise over a real loopback TCP connection (the production stack)."""

    def make_pair():
        import gevent
        import gevent.socket as gsocket

        from geventp2p.crypto.keys import generate_key
        from geventp2p.net.noise import NoiseTransport
        from geventp2p.net.rawconn import SocketConn

        lsock = gsocket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(1)
        try:
            csock = gsocket.create_connection(lsock.getsockname())
            ssock, _ = lsock.accept()
        finally:
            lsock.close()
        ckey, skey = generate_key(), generate_key()
        craw, sraw = SocketConn(csock, is_initiator=True), SocketConn(ssock, is_initiator=False)
        inbound = gevent.spawn(NoiseTransport(skey).secure_inbound, sraw, 10)
        csec = NoiseTransport(ckey).secure_outbound(craw, None, 10)
        ssec = inbound.get(timeout=10)
        return muxer.create(csec, True), muxer.create(ssec, False)

    return make_pair


_WIDE = YamuxConfig(max_inbound_streams=16384, accept_backlog=16384)


class TestYamuxConformanceMemoryChunked(MuxerConformance):
    """Over the in-process memory transport, delivering at most 1000 bytes per read."""

    make_pair = staticmethod(_memory_factory(YamuxMuxer(), chunk_size=1000))
    test_concurrent_streams_10k = None


class TestYamuxConformanceNoiseTcp(MuxerConformance):
    """The production stack: yamux over Noise over loopback TCP."""

    make_pair = staticmethod(_noise_tcp_factory(YamuxMuxer(_WIDE)))

    @pytest.mark.slow
    def test_concurrent_streams_10k(self):
        super().test_concurrent_streams_10k()
