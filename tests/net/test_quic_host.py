"""Hosts over QUIC: ping, identify, echo, perf; certificate failures; dial ranking; leaks."""

from __future__ import annotations

import gevent
import pytest
from gevent.event import AsyncResult

import geventp2p
from geventp2p.core import addr as maddr
from geventp2p.crypto import tlscert
from geventp2p.crypto.keys import generate_key
from geventp2p.exceptions import (
    InvalidSignatureError,
    PeerIdMismatchError,
    SecurityError,
    TlsCertificateError,
)
from geventp2p.net.quic import QuicTransport
from geventp2p.net.swarm_dial import rank_addrs
from geventp2p.protocols.echo import echo
from geventp2p.protocols.ping import ping
from geventp2p.testing.muxer_suite import LeakChecker

pytest.importorskip("aioquic")

QUIC = "/ip4/127.0.0.1/udp/0/quic-v1"


def _hosts(**kw):
    server = geventp2p.new_host(listen=[QUIC], transports=["tcp", "quic"],
                                services=["identify", "ping", "echo", "perf"], **kw)
    client = geventp2p.new_host(listen=[], transports=["tcp", "quic"])
    return client, server


def test_host_ping_identify_echo_over_quic():
    client, server = _hosts()
    try:
        assert [str(a).endswith("/quic-v1") for a in server.addrs()] == [True]
        conn = client.connect(server.p2p_addrs()[0], timeout=10)
        assert conn.security == "/tls/1.0.0" and conn.muxer == "/quic-v1"
        assert str(conn.remote_addr).endswith("/quic-v1") and conn.remote_peer == server.id
        rtts = list(ping(client, server.id, count=3, interval=0.01))
        assert len(rtts) == 3 and all(r > 0 for r in rtts)
        ids = next(s for s in client.services if type(s).__name__ == "IdentifyService")
        assert ids.identify_wait(conn, timeout=10)
        assert "/ipfs/ping/1.0.0" in client.peerstore.get_protocols(server.id)
        assert any(str(a).endswith("/quic-v1") for a in client.peerstore.addrs(server.id))
        data = bytes(range(256)) * 4096  # 1 MiB
        assert echo(client, server.id, data, timeout=30) == data
        # many concurrent streams, each negotiated by multistream
        jobs = [gevent.spawn(echo, client, server.id, b"%d" % i, 30) for i in range(50)]
        gevent.joinall(jobs, timeout=60, raise_error=True)
        assert [j.value for j in jobs] == [b"%d" % i for i in range(50)]
    finally:
        client.close()
        server.close()


def test_perf_up_and_down_over_quic():
    from geventp2p.protocols.perf import perf

    client, server = _hosts()
    try:
        client.connect(server.p2p_addrs()[0], timeout=10)
        result = perf(client, server.id, 4 << 20, 4 << 20, timeout=60)
        assert result is not None
    finally:
        client.close()
        server.close()


def test_hosts_leak_nothing():
    leaks = LeakChecker()
    client, server = _hosts()
    try:
        client.connect(server.p2p_addrs()[0], timeout=10)
        assert echo(client, server.id, b"x" * 100_000, timeout=30) == b"x" * 100_000
    finally:
        client.close()
        server.close()
    leaks.check(timeout=10)


def test_quic_ranked_before_tcp():
    addrs = [maddr.parse(a) for a in (
        "/ip4/1.2.3.4/tcp/4001", "/ip4/1.2.3.4/udp/4001/quic-v1",
        "/ip4/127.0.0.1/tcp/1", "/ip4/127.0.0.1/udp/1/quic-v1")]
    ranked = [str(a) for _d, a in rank_addrs(addrs)]
    assert ranked.index("/ip4/1.2.3.4/udp/4001/quic-v1") < ranked.index("/ip4/1.2.3.4/tcp/4001")
    assert ranked.index("/ip4/127.0.0.1/udp/1/quic-v1") < ranked.index("/ip4/127.0.0.1/tcp/1")


def test_prefer_quic_off_ranks_tcp_first():
    addrs = [maddr.parse(a) for a in (
        "/ip4/1.2.3.4/udp/4001/quic-v1", "/ip4/1.2.3.4/tcp/4001",
        "/ip4/127.0.0.1/udp/1/quic-v1", "/ip4/127.0.0.1/tcp/1")]
    ranked = [str(a) for _d, a in rank_addrs(addrs, prefer_quic=False)]
    assert ranked.index("/ip4/1.2.3.4/tcp/4001") < ranked.index("/ip4/1.2.3.4/udp/4001/quic-v1")
    assert ranked.index("/ip4/127.0.0.1/tcp/1") < ranked.index("/ip4/127.0.0.1/udp/1/quic-v1")


@pytest.mark.parametrize("prefer_quic, expect", [(True, "/quic-v1"), (False, "/yamux/1.0.0")])
def test_default_hosts_pick_the_preferred_transport(prefer_quic, expect):
    from geventp2p.net.swarm import SwarmConfig

    server = geventp2p.new_host(services=["echo"])  # listens on TCP and QUIC by default
    # a long stagger: the second-ranked address is not dialled while the first one upgrades
    client = geventp2p.new_host(listen=[], swarm_config=SwarmConfig(prefer_quic=prefer_quic, stagger_local=5.0))
    try:
        assert {str(a).rsplit("/", 1)[-1] for a in server.addrs()} >= {"quic-v1"}
        conn = client.connect(server.peer_info(), timeout=10)  # every address: the ranking picks
        assert conn.muxer == expect
    finally:
        client.close()
        server.close()


# --------------------------------------------------------------------------- certificates


def _listen(transport):
    got: AsyncResult = AsyncResult()
    return transport.listen(QUIC, got.set), got


def _bad_server(make_cert):
    """A QUIC listener presenting the certificate ``make_cert(host_key)``."""
    t = QuicTransport(generate_key())
    t.certificate = make_cert(t.local_key)
    return t


def _expired(key):
    import datetime

    now = datetime.datetime.now(datetime.timezone.utc)
    return tlscert.make_certificate(key, not_before=now - datetime.timedelta(days=2),
                                    not_after=now - datetime.timedelta(days=1))


def _missing_extension(key):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    import datetime

    k = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(k.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(k, hashes.SHA256()))
    return cert, k


def _wrong_signature(key):
    from cryptography.hazmat.primitives.asymmetric import ec

    other = ec.generate_private_key(ec.SECP256R1())
    cert, _ = tlscert.make_certificate(key, cert_key=other)  # signed over another key's SPKI
    return tlscert.make_certificate(key, extension_value=cert.extensions.get_extension_for_oid(
        tlscert.EXTENSION_OID).value.value)


def _unknown_critical(key):
    from cryptography import x509
    from cryptography.x509.oid import ObjectIdentifier

    ext = x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00")
    return tlscert.make_certificate(key, extra_extensions=[(ext, True)])


@pytest.mark.parametrize("make_cert, error", [
    (_expired, TlsCertificateError),
    (_missing_extension, TlsCertificateError),
    (_wrong_signature, InvalidSignatureError),
    (_unknown_critical, TlsCertificateError),
])
def test_bad_server_certificate_is_refused_with_a_typed_error(make_cert, error):
    server = _bad_server(make_cert)
    lst, got = _listen(server)
    try:
        with pytest.raises(error):
            QuicTransport(generate_key()).dial(lst.multiaddr, timeout=10)
        assert not got.ready()
    finally:
        lst.close(stop_handlers=True)


def test_non_critical_extension_accepted_unless_required():
    from geventp2p.net.quic import QuicConfig

    server = _bad_server(lambda key: tlscert.make_certificate(key, critical=False))
    lst, got = _listen(server)
    try:
        raw = QuicTransport(generate_key()).dial(lst.multiaddr, timeout=10)
        raw.close()
        with pytest.raises(TlsCertificateError):
            QuicTransport(generate_key(), QuicConfig(require_critical_extension=True)).dial(
                lst.multiaddr, timeout=10)
    finally:
        lst.close(stop_handlers=True)


@pytest.mark.parametrize("make_cert", [_expired, _wrong_signature])
def test_bad_client_certificate_is_refused(make_cert):
    server = QuicTransport(generate_key())
    lst, got = _listen(server)
    client = _bad_server(make_cert)
    try:
        with pytest.raises(SecurityError):
            raw = client.dial(lst.multiaddr, timeout=10)
            # the client may finish its side first: the server's refusal closes it
            assert raw.muxed.wait_closed(timeout=10)
            raise SecurityError("closed by the server")
        assert not got.ready()
    finally:
        lst.close(stop_handlers=True)


def test_expected_peer_checked_when_dialling():
    server = QuicTransport(generate_key())
    lst, got = _listen(server)
    try:
        wrong = geventp2p.PeerId.from_public_key(generate_key().public_key())
        with pytest.raises(PeerIdMismatchError):
            QuicTransport(generate_key()).dial(lst.multiaddr, timeout=10, remote_peer=wrong)
        raw = QuicTransport(generate_key()).dial(maddr.join_p2p(lst.multiaddr, server.local_peer), timeout=10)
        assert raw.remote_peer == server.local_peer
        raw.close()
    finally:
        lst.close(stop_handlers=True)


def test_host_dial_checks_the_peer_id():
    client, server = _hosts()
    other = geventp2p.new_host(listen=[], transports=["quic"])
    try:
        addr = maddr.join_p2p(server.addrs()[0], other.id)
        with pytest.raises(Exception) as info:
            client.connect(addr, timeout=10)
        assert "PeerIdMismatch" in repr(info.value) or isinstance(info.value, PeerIdMismatchError) \
            or "expected" in str(info.value)
    finally:
        other.close()
        client.close()
        server.close()


def test_cli_serve_listens_on_quic():
    import json
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "geventp2p.cli", "serve", "--listen", QUIC],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        with gevent.Timeout(60):
            line = proc.stdout.readline()  # blocks this test only: no other greenlet runs here
        info = json.loads(line)
        assert len(info["addrs"]) == 1 and "/quic-v1/p2p/" in info["addrs"][0]
        client = geventp2p.new_host(listen=[])  # default transports: QUIC among them
        try:
            conn = client.connect(info["addrs"][0], timeout=20)
            assert conn.muxer == "/quic-v1"
            assert echo(client, conn.remote_peer, b"over quic", timeout=20) == b"over quic"
        finally:
            client.close()
    finally:
        proc.send_signal(signal.SIGTERM)  # serve closes cleanly and exits 0
        try:
            proc.communicate(input=b"", timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
