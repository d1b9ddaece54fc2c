"""The upgrader's pipelined security negotiation: exact writes on the wire, and nothing
left between the secure connection and the transport's connection afterwards."""

from __future__ import annotations

import gevent
import gevent.socket as gsocket
import pytest

from geventp2p.crypto.keys import KeyType, generate_key
from geventp2p.exceptions import NegotiationError
from geventp2p.net.memory import memory_pipe
from geventp2p.net.noise import NoiseConn, NoiseTransport
from geventp2p.net.plaintext import PlaintextConn, PlaintextTransport
from geventp2p.net.rawconn import SocketConn
from geventp2p.net.upgrader import Upgrader
from geventp2p.net.yamux import YamuxMuxer
from geventp2p.sansio.multistream import encode_message
from _scripts_transport.leakcheck import no_leaks  # noqa: F401  (autouse fixture)
from _scripts_transport.recording import RecordingConn

HEADER = encode_message("/multistream/1.0.0")
NOISE = encode_message("/noise")


@pytest.fixture(scope="module")
def keys():
    return generate_key(KeyType.Ed25519), generate_key(KeyType.Ed25519)


def _upgrade_pair(up_a, up_b, ra, rb):
    """Upgrade ``ra`` outbound with ``up_a`` and ``rb`` inbound with ``up_b``; both results."""
    with gevent.Timeout(20):
        g = gevent.spawn(up_b.upgrade_inbound, rb, timeout=10)
        try:
            ca = up_a.upgrade_outbound(ra, timeout=10)
        except BaseException:
            g.kill()
            raise
        return ca, g.get(timeout=10)


def test_pipelined_noise_writes_and_bare_raw_after(keys):
    ka, kb = keys
    a, b = gsocket.socketpair()
    ra, rb = RecordingConn(a, is_initiator=True), RecordingConn(b)
    up_a = Upgrader([NoiseTransport(ka)], [YamuxMuxer()])
    up_b = Upgrader([NoiseTransport(kb)], [YamuxMuxer()])
    ca, cb = _upgrade_pair(up_a, up_b, ra, rb)
    try:
        # dialer: header + proposal + Noise msg 1 (32-byte ephemeral key, 2-byte length) in one write
        first = ra.writes[0]
        assert first.startswith(HEADER + NOISE) and len(first) == len(HEADER + NOISE) + 2 + 32
        # listener: header + echo + Noise msg 2 in one write
        assert rb.writes[0].startswith(HEADER + NOISE) and len(rb.writes[0]) > len(HEADER + NOISE) + 34
        assert HEADER not in rb.writes[1] and HEADER not in ra.writes[1]
        for conn, raw in ((ca, ra), (cb, rb)):
            assert isinstance(conn.secured, NoiseConn)
            assert conn.secured.raw is raw  # no wrapper in the data path
            assert raw.negotiated and not raw._pending and raw._prefix == b""
        assert conn.security == "/noise"
        s = ca.new_stream(timeout=5)
        s.write(b"ping")
        t = cb.accept_stream(timeout=5)
        assert t.read_exactly(4, timeout=5) == b"ping"
        t.write(b"pong")
        assert s.read_exactly(4, timeout=5) == b"pong"
        s.close()
        t.close()
    finally:
        ca.close()
        cb.close()


def test_pipelined_plaintext_over_memory(keys):
    ka, kb = keys
    ra, rb = memory_pipe(chunk_size=7)
    up_a = Upgrader([PlaintextTransport(ka)], [YamuxMuxer()])
    up_b = Upgrader([PlaintextTransport(kb)], [YamuxMuxer()])
    ca, cb = _upgrade_pair(up_a, up_b, ra, rb)
    try:
        for conn, raw in ((ca, ra), (cb, rb)):
            assert isinstance(conn.secured, PlaintextConn)
            assert conn.secured.raw is raw and not raw._pending
        assert ca.remote_peer == cb.local_peer and cb.remote_peer == ca.local_peer
    finally:
        ca.close()
        cb.close()


def test_two_security_choices_negotiate_round_trip(keys):
    ka, kb = keys
    a, b = gsocket.socketpair()
    ra, rb = RecordingConn(a, is_initiator=True), RecordingConn(b)
    up_a = Upgrader([PlaintextTransport(ka), NoiseTransport(ka)], [YamuxMuxer()])
    up_b = Upgrader([NoiseTransport(kb)], [YamuxMuxer()])
    ca, cb = _upgrade_pair(up_a, up_b, ra, rb)
    try:
        assert ca.security == cb.security == "/noise"
        assert ra.writes[0] == HEADER + encode_message("/plaintext/2.0.0")  # waits for the answer
        assert ca.secured.raw is ra and not ra._pending and not rb._pending
    finally:
        ca.close()
        cb.close()


def test_refused_lazy_proposal_fails_the_dialer(keys):
    ka, kb = keys
    a, b = gsocket.socketpair()
    ra, rb = SocketConn(a, is_initiator=True), SocketConn(b)
    up_a = Upgrader([NoiseTransport(ka)], [YamuxMuxer()])
    up_b = Upgrader([PlaintextTransport(kb)], [YamuxMuxer()])
    with gevent.Timeout(20):
        g = gevent.spawn(up_b.upgrade_inbound, rb, timeout=5)
        with pytest.raises(NegotiationError):
            up_a.upgrade_outbound(ra, timeout=5)
        with pytest.raises(Exception):
            g.get(timeout=10)
    assert ra.closed and rb.closed
