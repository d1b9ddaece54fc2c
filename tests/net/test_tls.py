"""libp2p TLS 1.3 (/tls/1.0.0): certificate vectors, refusals, handshakes, the full stack."""

from __future__ import annotations

import datetime

import gevent
import gevent.socket as gsocket
import pytest
from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier

from geventp2p.core.peer import PeerId
from geventp2p.crypto import tlscert
from geventp2p.crypto.keys import KeyType, generate_key
from geventp2p.exceptions import (
    InvalidSignatureError,
    PeerIdMismatchError,
    SecurityError,
    TlsCertificateError,
)
from geventp2p.net.memory import memory_pipe
from geventp2p.net.rawconn import SocketConn
from geventp2p.net.tls import TlsConfig, TlsTransport
from geventp2p.net.yamux import YamuxMuxer
from geventp2p.testing.muxer_suite import MuxerConformance

# The spec's test vectors (https://github.com/libp2p/specs/blob/master/tls/tls.md#test-vectors)
VECTORS = {
    "12D3KooWM6CgA9iBFZmcYAHA6A2qvbAxqfkmrYiRQuz3XEsk4Ksv": (
        "308201ae30820156a0030201020204499602d2300a06082a8648ce3d040302302031123010060355040a13096c69627032702e696f"
        "310a300806035504051301313020170d3735303130313133303030305a180f34303936303130313133303030305a30203112301006"
        "0355040a13096c69627032702e696f310a300806035504051301313059301306072a8648ce3d020106082a8648ce3d030107034200"
        "040c901d423c831ca85e27c73c263ba132721bb9d7a84c4f0380b2a6756fd601331c8870234dec878504c174144fa4b14b66a6516916"
        "06d8173e55bd37e381569ea37c307a3078060a2b0601040183a25a0101046a3068042408011220a77f1d92fedb59dddaea5a1c4abd"
        "1ac2fbde7d7b879ed364501809923d7c11b90440d90d2769db992d5e6195dbb08e706b6651e024fda6cfb8846694a435519941cac2"
        "15a8207792e42849cccc6cd8136c6e4bde92a58c5e08cfd4206eb5fe0bf909300a06082a8648ce3d0403020346003043021f50f6b6"
        "c52711a881778718238f650c9fb48943ae6ee6d28427dc6071ae55e702203625f116a7a454db9c56986c82a25682f7248ea1cb764d"
        "322ea983ed36a31b77"
    ),
    "QmfXbAwNjJLXfesgztEHe8HwgVDCMMpZ9Eax1HYq6hn9uE": (
        "308201f63082019da0030201020204499602d2300a06082a8648ce3d040302302031123010060355040a13096c69627032702e696f"
        "310a300806035504051301313020170d3735303130313133303030305a180f34303936303130313133303030305a30203112301006"
        "0355040a13096c69627032702e696f310a300806035504051301313059301306072a8648ce3d020106082a8648ce3d030107034200"
        "040c901d423c831ca85e27c73c263ba132721bb9d7a84c4f0380b2a6756fd601331c8870234dec878504c174144fa4b14b66a6516916"
        "06d8173e55bd37e381569ea381c23081bf3081bc060a2b0601040183a25a01010481ad3081aa045f0803125b3059301306072a8648"
        "ce3d020106082a8648ce3d03010703420004bf30511f909414ebdd3242178fd290f093a551cf75c973155de0bb5a96fedf6cb5d52d"
        "a7563e794b512f66e60c7f55ba8a3acf3dd72a801980d205e8a1ad29f2044730450220064ea8124774caf8f50e57f436aa62350ce6"
        "52418c019df5d98a3ac666c9386a022100aa59d704a931b5f72fb9222cb6cc51f954d04a4e2e5450f8805fe8918f71eaae300a0608"
        "2a8648ce3d04030203470030440220799395b0b6c1e940a7e4484705f610ab51ed376f19ff9d7c16757cfbf61b8d4302206205c03f"
        "bb0f95205c779be86581d3e31c01871ad5d1f3435bcf375cb0e5088a"
    ),
    "16Uiu2HAkutTMoTzDw1tCvSRtu6YoixJwS46S1ZFxW8hSx9fWHiPs": (
        "308201ba3082015fa0030201020204499602d2300a06082a8648ce3d040302302031123010060355040a13096c69627032702e696f"
        "310a300806035504051301313020170d3735303130313133303030305a180f34303936303130313133303030305a30203112301006"
        "0355040a13096c69627032702e696f310a300806035504051301313059301306072a8648ce3d020106082a8648ce3d030107034200"
        "040c901d423c831ca85e27c73c263ba132721bb9d7a84c4f0380b2a6756fd601331c8870234dec878504c174144fa4b14b66a6516916"
        "06d8173e55bd37e381569ea38184308181307f060a2b0601040183a25a01010471306f0425080212210206dc6968726765b820f050"
        "263ececf7f71e4955892776c0970542efd689d2382044630440220145e15a991961f0d08cd15425bb95ec93f6ffa03c5a385eedc34"
        "ecf464c7a8ab022026b3109b8a3f40ef833169777eb2aa337cfb6282f188de0666d1bcec2a4690dd300a06082a8648ce3d04030203"
        "49003046022100e1a217eeef9ec9204b3f774a08b70849646b6a1e6b8b27f93dc00ed58545d9fe022100b00dafa549d0f03547878338"
        "c7b15e7502888f6d45db387e5ae6b5d46899cef0"
    ),
}
# vector 4: the extension's key did not sign this certificate's key
INVALID_VECTOR = (
    "308201f73082019da0030201020204499602d2300a06082a8648ce3d040302302031123010060355040a13096c69627032702e696f31"
    "0a300806035504051301313020170d3735303130313133303030305a180f34303936303130313133303030305a302031123010060355"
    "040a13096c69627032702e696f310a300806035504051301313059301306072a8648ce3d020106082a8648ce3d030107034200040c90"
    "1d423c831ca85e27c73c263ba132721bb9d7a84c4f0380b2a6756fd601331c8870234dec878504c174144fa4b14b66a651691606d817"
    "3e55bd37e381569ea381c23081bf3081bc060a2b0601040183a25a01010481ad3081aa045f0803125b3059301306072a8648ce3d0201"
    "06082a8648ce3d03010703420004bf30511f909414ebdd3242178fd290f093a551cf75c973155de0bb5a96fedf6cb5d52da7563e794b"
    "512f66e60c7f55ba8a3acf3dd72a801980d205e8a1ad29f204473045022100bb6e03577b7cc7a3cd1558df0da2b117dfdcc0399bc250"
    "4ebe7de6f65cade72802206de96e2a5be9b6202adba24ee0362e490641ac45c240db71fe955f2c5cf8df6e300a06082a8648ce3d0403"
    "020348003045022100e847f267f43717358f850355bdcabbefb2cfbf8a3c043b203a14788a092fe8db022027c1d04a2d41fd6b57a7e8"
    "b3989e470325de4406e52e084e34a3fd56eef0d0df"
)


def _ext(cert: x509.Certificate) -> x509.Extension:
    return cert.extensions.get_extension_for_oid(tlscert.EXTENSION_OID)


# --------------------------------------------------------------------------- encoding and vectors


def test_signed_key_encoding_bytes():
    # SEQUENCE { OCTET STRING 0x0102, OCTET STRING 0xaabbcc }
    assert tlscert.encode_signed_key(b"\x01\x02", b"\xaa\xbb\xcc") == bytes.fromhex("30090402010204 03aabbcc".replace(" ", ""))
    # long-form lengths (a 200-byte key): 0x81 0xc8
    der = tlscert.encode_signed_key(b"k" * 200, b"s" * 3)
    assert der[:6] == bytes.fromhex("3081d00481c8") and tlscert.decode_signed_key(der) == (b"k" * 200, b"s" * 3)


@pytest.mark.parametrize("peer_id", sorted(VECTORS))
def test_spec_vectors(peer_id):
    der = bytes.fromhex(VECTORS[peer_id])
    assert str(tlscert.peer_id_from_certificate(der)) == peer_id
    # the extension value re-encodes byte for byte from its two fields
    value = _ext(x509.load_der_x509_certificate(der)).value.value
    assert tlscert.encode_signed_key(*tlscert.decode_signed_key(value)) == value


def test_spec_ed25519_vector_extension_bytes():
    value = _ext(x509.load_der_x509_certificate(bytes.fromhex(VECTORS[
        "12D3KooWM6CgA9iBFZmcYAHA6A2qvbAxqfkmrYiRQuz3XEsk4Ksv"]))).value.value
    pub, sig = tlscert.decode_signed_key(value)
    assert value[:4] == bytes.fromhex("30680424") and pub[:4] == bytes.fromhex("08011220")
    assert len(pub) == 36 and len(sig) == 64


def test_spec_invalid_vector_is_refused():
    with pytest.raises(InvalidSignatureError):
        tlscert.verify_certificate(bytes.fromhex(INVALID_VECTOR))


@pytest.mark.parametrize("key_type", [KeyType.Ed25519, KeyType.Secp256k1, KeyType.ECDSA, KeyType.RSA])
def test_own_certificate_roundtrip(key_type):
    key = generate_key(key_type)
    cert, _ = tlscert.make_certificate(key)
    assert _ext(cert).critical
    assert tlscert.peer_id_from_certificate(cert.public_bytes(tlscert.serialization.Encoding.DER)) == \
        PeerId.from_public_key(key.public_key())


# --------------------------------------------------------------------------- refusals


def test_refuses_missing_extension():
    key = generate_key()
    good, cert_key = tlscert.make_certificate(key)
    bare = (x509.CertificateBuilder().subject_name(good.subject).issuer_name(good.issuer)
            .public_key(cert_key.public_key()).serial_number(1)
            .not_valid_before(good.not_valid_before_utc).not_valid_after(good.not_valid_after_utc)
            .sign(cert_key, tlscert.hashes.SHA256()))
    with pytest.raises(TlsCertificateError, match="missing"):
        tlscert.verify_certificate(bare)


def test_non_critical_extension_accepted_unless_strict():
    key = generate_key()
    cert, _ = tlscert.make_certificate(key, critical=False)
    assert tlscert.peer_id_from_certificate(cert) == PeerId.from_public_key(key.public_key())  # spec: MAY
    with pytest.raises(TlsCertificateError, match="not marked critical"):
        tlscert.verify_certificate(cert, require_critical=True)


def test_refuses_signature_over_another_key():
    key = generate_key()
    other_cert, other_key = tlscert.make_certificate(key)
    # the extension of a certificate made for other_key, on a certificate with a new key
    cert, _ = tlscert.make_certificate(key, extension_value=_ext(other_cert).value.value)
    with pytest.raises(InvalidSignatureError):
        tlscert.verify_certificate(cert)


def test_refuses_bad_self_signature():
    key = generate_key()
    cert, _ = tlscert.make_certificate(key)
    der = bytearray(cert.public_bytes(tlscert.serialization.Encoding.DER))
    der[-3] ^= 0x01  # flip a bit of the certificate signature
    with pytest.raises(TlsCertificateError):
        tlscert.verify_certificate(bytes(der))


def test_refuses_expired_and_not_yet_valid():
    key = generate_key()
    now = datetime.datetime.now(datetime.timezone.utc)
    old, _ = tlscert.make_certificate(key, not_before=now - datetime.timedelta(days=2),
                                      not_after=now - datetime.timedelta(days=1))
    with pytest.raises(TlsCertificateError, match="expired"):
        tlscert.verify_certificate(old)
    future, _ = tlscert.make_certificate(key, not_before=now + datetime.timedelta(days=1),
                                         not_after=now + datetime.timedelta(days=2))
    with pytest.raises(TlsCertificateError, match="not valid before"):
        tlscert.verify_certificate(future)


def test_unknown_critical_extension_refused_unknown_non_critical_ignored():
    key = generate_key()
    unknown = x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00")
    ok, _ = tlscert.make_certificate(key, extra_extensions=[(unknown, False)])
    assert tlscert.peer_id_from_certificate(ok) == PeerId.from_public_key(key.public_key())
    bad, _ = tlscert.make_certificate(key, extra_extensions=[(unknown, True)])
    with pytest.raises(TlsCertificateError, match="unknown critical extension"):
        tlscert.verify_certificate(bad)


def test_refuses_more_than_one_certificate_and_garbage():
    key = generate_key()
    a, _ = tlscert.make_certificate(key)
    b, _ = tlscert.make_certificate(key)
    with pytest.raises(TlsCertificateError, match="exactly one"):
        tlscert.verify_certificate([a, b])
    with pytest.raises(TlsCertificateError):
        tlscert.verify_certificate(b"\x30\x03\x02\x01\x00")
    with pytest.raises(TlsCertificateError):
        tlscert.decode_signed_key(b"\x30\x02\x04\x00\x00")


# --------------------------------------------------------------------------- handshakes


def test_handshake_alpn_muxer_and_data():
    kc, ks = generate_key(), generate_key()
    c = TlsTransport(kc, ("/yamux/1.0.0", "/mplex/6.7.0"))
    s = TlsTransport(ks, ("/mplex/6.7.0", "/yamux/1.0.0"))
    a, b = memory_pipe()
    g = gevent.spawn(s.secure_inbound, b, 10)
    ca = c.secure_outbound(a, PeerId.from_public_key(ks.public_key()), 10)
    cb = g.get(timeout=10)
    assert ca.security_protocol == "/tls/1.0.0"
    assert ca.remote_peer == PeerId.from_public_key(ks.public_key())
    assert cb.remote_peer == PeerId.from_public_key(kc.public_key())
    assert ca.early_muxer == cb.early_muxer == "/mplex/6.7.0"  # the server's preference
    big = bytes(range(256)) * 4096
    w = gevent.spawn(cb.write, big)
    got = bytearray()
    while len(got) < len(big):
        got += ca.read(65536, timeout=10)
    w.get(timeout=10)
    assert bytes(got) == big
    ca.close_write()
    assert cb.read(10, timeout=10) == b""
    cb.write(b"after half-close")
    assert ca.read(100, timeout=10) == b"after half-close"
    ca.close()
    cb.close()


def test_no_common_muxer_falls_back_to_multistream():
    c = TlsTransport(generate_key(), ())
    s = TlsTransport(generate_key(), ("/yamux/1.0.0",))
    a, b = memory_pipe()
    g = gevent.spawn(s.secure_inbound, b, 10)
    ca = c.secure_outbound(a, None, 10)
    cb = g.get(timeout=10)
    assert ca.early_muxer is None and cb.early_muxer is None  # "libp2p": multistream picks
    ca.close()
    cb.close()


def test_wrong_peer_id_refused_when_dialling():
    c = TlsTransport(generate_key())
    s = TlsTransport(generate_key())
    a, b = memory_pipe()
    g = gevent.spawn(s.secure_inbound, b, 10)
    wrong = PeerId.from_public_key(generate_key().public_key())
    with pytest.raises(PeerIdMismatchError):
        c.secure_outbound(a, wrong, 10)
    with pytest.raises(SecurityError):
        g.get(timeout=10)  # the server sees the alert / the close
    assert a.closed


def test_server_refuses_client_with_bad_certificate():
    from geventp2p.sansio import tls as stls

    kc = generate_key()
    expired, ekey = tlscert.make_certificate(
        kc, not_before=datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc),
        not_after=datetime.datetime(2001, 1, 1, tzinfo=datetime.timezone.utc))
    client = stls.TlsSession(True, kc, certificate=(expired, ekey))
    server = stls.TlsSession(False, generate_key())
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())  # the client finishes first (TLS 1.3)
    with pytest.raises(TlsCertificateError, match="expired"):
        server.receive_data(client.data_to_send())
    assert server.data_to_send()  # an alert for the client


def test_non_critical_peer_refused_by_strict_config():
    from geventp2p.sansio import tls as stls

    kc = generate_key()
    cert = tlscert.make_certificate(kc, critical=False)
    client = stls.TlsSession(True, kc, certificate=cert)
    server = stls.TlsSession(False, generate_key(), config=TlsConfig(require_critical_extension=True))
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    with pytest.raises(TlsCertificateError, match="critical"):
        server.receive_data(client.data_to_send())


def _tls_tcp_factory(muxer):
    """yamux over TLS over a real loopback TCP connection."""

    def make_pair():
        lsock = gsocket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(1)
        try:
            csock = gsocket.create_connection(lsock.getsockname())
            ssock, _ = lsock.accept()
        finally:
            lsock.close()
        craw, sraw = SocketConn(csock, is_initiator=True), SocketConn(ssock, is_initiator=False)
        inbound = gevent.spawn(TlsTransport(generate_key()).secure_inbound, sraw, 10)
        csec = TlsTransport(generate_key()).secure_outbound(craw, None, 10)
        ssec = inbound.get(timeout=10)
        return muxer.create(csec, True), muxer.create(ssec, False)

    return make_pair


class TestYamuxConformanceTlsTcp(MuxerConformance):
    """yamux over TLS over loopback TCP: the muxer suite on a TLS connection."""

    make_pair = staticmethod(_tls_tcp_factory(YamuxMuxer()))
    test_concurrent_streams_10k = None


# --------------------------------------------------------------------------- hosts


def test_hosts_default_reaches_tls_only_peer_and_noise_stays_first():
    import geventp2p
    from geventp2p.protocols.echo import echo
    from geventp2p.protocols.ping import ping

    tls_only = geventp2p.new_host(security=["tls"], services=["identify", "ping", "echo"])
    default = geventp2p.new_host(services=["identify", "ping", "echo"])
    noise_only = geventp2p.new_host(security=["noise"])
    try:
        assert default.config.security == ("/noise", "/tls/1.0.0")
        conn = default.connect(tls_only.p2p_addrs()[0], timeout=10)
        assert conn.security == "/tls/1.0.0" and conn.muxer == "/yamux/1.0.0"
        assert len(list(ping(default, tls_only.id, count=2, interval=0))) == 2
        data = bytes(range(256)) * 4096  # 1 MiB
        assert echo(default, tls_only.id, data, timeout=30) == data
        conn = noise_only.connect(default.p2p_addrs()[0], timeout=10)
        assert conn.security == "/noise"
    finally:
        for h in (tls_only, default, noise_only):
            h.close()


def test_session_writes_whole_pieces_and_drains_them_at_once():
    """One SSL_write per piece of up to 7 records (partial writes off), its ciphertext
    drained as one chunk; the other side decrypts it all, in order."""
    from geventp2p.sansio import tls as stls

    client, server = stls.TlsSession(True, generate_key()), stls.TlsSession(False, generate_key())
    while not (client.finished and server.finished):
        server.receive_data(client.data_to_send())
        client.receive_data(server.data_to_send())
    piece = bytes(range(256)) * (stls._WRITE_PIECE // 256)
    chunks = server.send([piece])
    assert len(chunks) == 1  # with partial writes: one chunk per 16 KiB record
    records = -(-len(piece) // stls._MAX_RECORD)
    assert len(chunks[0]) == len(piece) + records * stls._RECORD_OVERHEAD
    data = piece * 3 + b"tail"
    chunks += server.send([b"hdr", memoryview(data), b"x" * 100])
    assert server.data_to_send() == b""  # nothing left behind in the BIO
    client.receive_data(b"".join(chunks))
    buf = bytearray(1 << 20)
    got = bytearray()
    while (k := client.recv_into(buf, len(buf))):
        got += buf[:k]
    assert bytes(got) == piece + b"hdr" + data + b"x" * 100
