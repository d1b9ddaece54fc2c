"""The whole wire stack over real loopback TCP: multistream -> Noise/plaintext -> yamux/mplex.

Two geventp2p nodes, each with its own identity, upgraded through the Upgrader.
These are the issue's acceptance checks: 256 MiB on one Noise+yamux stream with a
SHA-256 match, and 10,000 concurrent streams each echoing 16 KiB on one connection.
"""

from __future__ import annotations

import hashlib
import os

import gevent
import gevent.event
import gevent.pool
import pytest
from multiaddr import Multiaddr

from geventp2p.core.peer import PeerId
from geventp2p.crypto.keys import KeyType, generate_key
from geventp2p.exceptions import NegotiationError, P2PTimeoutError, PeerIdMismatchError
from geventp2p.net.mplex import MplexMuxer
from geventp2p.net.noise import NoiseTransport
from geventp2p.net.plaintext import PlaintextTransport
from geventp2p.net.tcp import TcpTransport
from geventp2p.net.upgrader import INBOUND, OUTBOUND, Upgrader
from geventp2p.net.yamux import YamuxMuxer

SECURITY = {"noise": NoiseTransport, "plaintext": PlaintextTransport}
MUXERS = {"yamux": YamuxMuxer, "mplex": MplexMuxer}


def _upgrader(key, security, muxers):
    mux = [MUXERS[m]() for m in muxers]
    sec = []
    for s in security:
        if s == "noise":
            sec.append(NoiseTransport(key, muxers=tuple(m.PROTOCOL_ID for m in mux)))
        else:
            sec.append(SECURITY[s](key))
    return Upgrader(sec, mux)


class Pair:
    """A dialer and a listener node connected once over TCP; ``client``/``server`` are Connections."""

    def __init__(self, security=("noise",), muxers=("yamux",), server_security=None, server_muxers=None,
                 expect_peer=None):
        self.client_key = generate_key(KeyType.Ed25519)
        self.server_key = generate_key(KeyType.Ed25519)
        self.server_id = PeerId.from_public_key(self.server_key.public_key())
        self.client_up = _upgrader(self.client_key, security, muxers)
        self.server_up = _upgrader(self.server_key, server_security or security, server_muxers or muxers)
        self.transport = TcpTransport()
        self._inbound = gevent.event.AsyncResult()
        self.listener = self.transport.listen(Multiaddr("/ip4/127.0.0.1/tcp/0"), self._on_raw)
        raw = self.transport.dial(self.listener.multiaddr, timeout=5)
        try:
            self.client = self.client_up.upgrade_outbound(
                raw, self.server_id if expect_peer is None else expect_peer, timeout=10)
        finally:
            pass
        self.server = self._inbound.get(timeout=10)

    def _on_raw(self, raw):
        try:
            self._inbound.set(self.server_up.upgrade_inbound(raw, timeout=10))
        except Exception as exc:  # noqa: BLE001 - surfaced to the test through the AsyncResult
            self._inbound.set_exception(exc)

    def close(self):
        for c in (getattr(self, "client", None), getattr(self, "server", None)):
            if c is not None:
                c.close()
        self.listener.close(stop_handlers=True)


@pytest.fixture
def make_pair():
    pairs = []

    def make(**kw):
        p = Pair(**kw)
        pairs.append(p)
        return p

    yield make
    for p in pairs:
        p.close()


def _echo_server(conn, pool_size=None):
    """Accept streams on ``conn`` and echo each until EOF."""

    def echo(stream):
        try:
            while True:
                data = stream.read(65536)
                if not data:
                    break
                stream.write(data)
            stream.close_write()
        except Exception:  # noqa: BLE001 - a failed stream must not kill the acceptor
            stream.reset()

    def accept_loop():
        group = gevent.pool.Group()
        try:
            while True:
                try:
                    s = conn.accept_stream()
                except Exception:  # noqa: BLE001 - connection over
                    break
                group.spawn(echo, s)
        finally:
            group.join(timeout=5)
            group.kill()

    return gevent.spawn(accept_loop)


@pytest.mark.parametrize("security", ["noise", "plaintext"])
@pytest.mark.parametrize("muxer", ["yamux", "mplex"])
def test_upgrade_metadata_and_echo(make_pair, security, muxer):
    p = make_pair(security=(security,), muxers=(muxer,))
    c, s = p.client, p.server
    assert c.direction == OUTBOUND and s.direction == INBOUND
    assert c.security == s.security == SECURITY[security].PROTOCOL_ID
    assert c.muxer == s.muxer == MUXERS[muxer].PROTOCOL_ID
    assert c.remote_peer == p.server_id
    assert s.remote_peer == PeerId.from_public_key(p.client_key.public_key())
    assert c.local_peer == s.remote_peer
    assert str(c.remote_addr) == str(p.listener.multiaddr)
    assert c.remote_public_key.marshal() == p.server_key.public_key().marshal()
    assert c.opened_at > 0
    acceptor = _echo_server(s)
    with gevent.Timeout(10):
        st = c.new_stream()
        assert st.conn is c
        st.write(b"hello over " + security.encode() + b"+" + muxer.encode())
        st.close_write()
        got = b""
        while True:
            d = st.read()
            if not d:
                break
            got += d
    assert got == b"hello over " + security.encode() + b"+" + muxer.encode()
    c.close()
    acceptor.join(timeout=5)
    assert acceptor.dead


def test_preference_order_and_fallback(make_pair):
    # The client prefers mplex, the server only has yamux: multistream falls back in order.
    p = make_pair(security=("plaintext", "noise"), muxers=("mplex", "yamux"),
                  server_security=("noise",), server_muxers=("yamux",))
    assert p.client.security == "/noise"
    assert p.client.muxer == p.server.muxer == "/yamux/1.0.0"


def test_early_muxer_via_noise(make_pair):
    p = make_pair(security=("noise",), muxers=("yamux", "mplex"))
    # Both advertise [yamux, mplex] in the Noise payload: the initiator's first choice wins.
    assert p.client.secured.early_muxer == "/yamux/1.0.0"
    assert p.client.muxer == p.server.muxer == "/yamux/1.0.0"


def test_no_common_muxer_fails_cleanly(make_pair):
    with pytest.raises(NegotiationError):
        make_pair(security=("noise",), muxers=("mplex",), server_muxers=("yamux",))


def test_wrong_expected_peer(make_pair):
    other = PeerId.from_public_key(generate_key(KeyType.Ed25519).public_key())
    with pytest.raises(PeerIdMismatchError):
        make_pair(expect_peer=other)


def test_upgrade_timeout_on_silent_peer():
    """A listener that never speaks: the dialer's upgrade ends with a timeout, not a hang."""
    transport = TcpTransport()
    held = []
    listener = transport.listen(Multiaddr("/ip4/127.0.0.1/tcp/0"), lambda raw: (held.append(raw), gevent.sleep(5)))
    try:
        up = _upgrader(generate_key(KeyType.Ed25519), ("noise",), ("yamux",))
        raw = transport.dial(listener.multiaddr, timeout=5)
        with gevent.Timeout(5):
            with pytest.raises(P2PTimeoutError):
                up.upgrade_outbound(raw, None, timeout=0.5)
        assert raw.closed
    finally:
        listener.close(stop_handlers=True)


@pytest.mark.slow
def test_256_mib_single_stream_noise_yamux_sha256(make_pair):
    p = make_pair(security=("noise",), muxers=("yamux",))
    total = 256 * 1024 * 1024
    chunk = os.urandom(1 << 20)
    result = gevent.event.AsyncResult()

    def sink():
        st = p.server.accept_stream(timeout=10)
        h = hashlib.sha256()
        n = 0
        while True:
            d = st.read(1 << 20)
            if not d:
                break
            h.update(d)
            n += len(d)
        result.set((n, h.hexdigest()))

    g = gevent.spawn(sink)
    sent = hashlib.sha256()
    with gevent.Timeout(100):
        st = p.client.new_stream()
        for i in range(total // len(chunk)):
            # vary the bytes so a reordering or duplication would change the digest
            block = chunk[i % 7:] + chunk[: i % 7]
            st.write(block)
            sent.update(block)
        st.close_write()
        n, digest = result.get()
    g.join()
    assert n == total
    assert digest == sent.hexdigest()


@pytest.mark.slow
def test_10k_concurrent_streams_echo_16k_noise_yamux(make_pair):
    p = make_pair(security=("noise",), muxers=("yamux",))
    acceptor = _echo_server(p.server)
    n_streams, size = 10_000, 16 * 1024
    failures = []
    ok = []

    def one(i):
        payload = i.to_bytes(4, "big") * (size // 4)
        try:
            st = p.client.new_stream(timeout=30)
            st.write(payload)
            st.close_write()
            got = st.read_exactly(size, timeout=60)
            assert st.read(timeout=30) == b""
            if got != payload:
                failures.append((i, "mismatch"))
            else:
                ok.append(i)
        except Exception as exc:  # noqa: BLE001 - counted and reported below
            failures.append((i, repr(exc)))

    with gevent.Timeout(110):
        group = gevent.pool.Group()
        for i in range(n_streams):
            group.spawn(one, i)
        group.join()
    assert not failures, failures[:5]
    assert len(ok) == n_streams
    p.client.close()
    acceptor.join(timeout=10)
