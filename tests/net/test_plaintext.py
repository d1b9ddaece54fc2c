"""/plaintext/2.0.0 over socketpairs, memory pipes and TCP loopback."""

from __future__ import annotations

import gevent
import pytest

from geventp2p._speedups import varint
from geventp2p.core.peer import PeerId
from geventp2p.crypto.keys import KeyType, generate_key
from geventp2p.exceptions import P2PTimeoutError, PeerIdMismatchError, SecurityError
from geventp2p.net import multistream
from geventp2p.net.plaintext import PROTOCOL_ID, PlaintextConn, PlaintextTransport, encode_exchange
from geventp2p.net.rawconn import RawConn
from geventp2p.net.tcp import TcpTransport
from geventp2p.pb import plaintext_pb2
from geventp2p.testing.memory import memory_pipe
from _scripts_transport.leakcheck import no_leaks  # noqa: F401  (autouse fixture)


@pytest.fixture(scope="module")
def keys():
    return generate_key(KeyType.Ed25519), generate_key(KeyType.Ed25519), generate_key(KeyType.Secp256k1)


def handshake(ta, tb, ca, cb, expected=None, timeout=2):
    inbound = gevent.spawn(tb.secure_inbound, cb, timeout=timeout)
    try:
        out = ta.secure_outbound(ca, expected, timeout=timeout)
    except BaseException:
        inbound.kill()
        raise
    return out, inbound.get(timeout=timeout)


def test_exchange_encoding_matches_spec(keys):
    k = keys[0]
    raw = encode_exchange(k.public_key())
    payload, end = varint.decode_lp(raw)
    assert end == len(raw)
    ex = plaintext_pb2.Exchange()
    ex.ParseFromString(payload)
    assert ex.id == PeerId.from_public_key(k.public_key()).to_bytes()
    assert ex.pubkey.SerializeToString() == k.public_key().marshal()
    # field 1 bytes, field 2 embedded message (wire type 2), in order
    assert payload[0] == 0x0A
    assert payload[2 + len(ex.id)] == 0x12


def test_handshake_socketpair(socketpair, keys):
    ka, kb, _ = keys
    ta, tb = PlaintextTransport(ka), PlaintextTransport(kb)
    sa, sb = handshake(ta, tb, *socketpair, expected=tb.local_peer)
    for conn in (sa, sb):
        assert isinstance(conn, PlaintextConn) and isinstance(conn, RawConn)
        assert conn.security_protocol == PROTOCOL_ID == PlaintextTransport.PROTOCOL_ID
        assert conn.early_muxer is None
    assert sa.remote_peer == tb.local_peer and sb.remote_peer == ta.local_peer
    assert sa.local_peer == ta.local_peer
    assert sa.remote_public_key == kb.public_key()
    assert sa.is_initiator and not sb.is_initiator
    sa.write(b"hello")
    assert sb.read(10, timeout=1) == b"hello"
    sb.writev([b"wo", b"rld"])
    got = b""
    while len(got) < 5:
        got += sa.read(10, timeout=1)
    assert got == b"world"


def test_secp256k1_peer(socketpair, keys):
    ka, _, ks = keys
    sa, sb = handshake(PlaintextTransport(ka), PlaintextTransport(ks), *socketpair)
    assert sa.remote_peer == PeerId.from_public_key(ks.public_key())


def test_peer_id_mismatch_closes_raw(socketpair, keys):
    ka, kb, ks = keys
    wrong = PeerId.from_public_key(ks.public_key())
    ca, cb = socketpair
    inbound = gevent.spawn(PlaintextTransport(kb).secure_inbound, cb, timeout=2)
    with pytest.raises(PeerIdMismatchError) as info:
        PlaintextTransport(ka).secure_outbound(ca, wrong, timeout=2)
    assert info.value.expected == wrong
    assert ca.closed
    inbound.join(2)


def test_expected_peer_as_string(socketpair, keys):
    ka, kb, _ = keys
    tb = PlaintextTransport(kb)
    sa, _ = handshake(PlaintextTransport(ka), tb, *socketpair, expected=str(tb.local_peer))
    assert sa.remote_peer == tb.local_peer


def test_read_ahead_kept(socketpair, keys):
    """The peer pipelines application data right after its Exchange."""
    ka, kb, _ = keys
    ca, cb = socketpair
    cb.write(encode_exchange(kb.public_key()) + b"early-data")
    conn = PlaintextTransport(ka).secure_outbound(ca, None, timeout=2)
    assert conn.read(100, timeout=1) == b"early-data"


def test_exchange_split_into_bytes(keys):
    ka, kb, _ = keys
    a, b = memory_pipe(chunk_size=1)
    sa, sb = handshake(PlaintextTransport(ka), PlaintextTransport(kb), a, b)
    sa.write(b"xy")
    assert sb.read(10, timeout=1) == b"x"


def test_eof_during_exchange(socketpair, keys):
    ca, cb = socketpair
    cb.close()
    with pytest.raises((SecurityError, OSError)):
        PlaintextTransport(keys[0]).secure_outbound(ca, None, timeout=2)


def test_eof_after_partial_exchange(keys):
    a, b = memory_pipe()
    b.write(encode_exchange(keys[1].public_key())[:10])
    b.close()
    with pytest.raises(SecurityError, match="closed"):
        PlaintextTransport(keys[0]).secure_outbound(a, None, timeout=2)
    assert a.closed


def test_timeout(keys):
    a, _b = memory_pipe()
    with pytest.raises(P2PTimeoutError):
        PlaintextTransport(keys[0]).secure_inbound(a, timeout=0.05)
    assert a.closed


def test_oversized_exchange(keys):
    a, b = memory_pipe()
    b.write(varint.encode_uvarint(65537))
    with pytest.raises(SecurityError):
        PlaintextTransport(keys[0]).secure_inbound(a, timeout=2)


def _send_exchange(ex, keys):
    a, b = memory_pipe()
    b.write(varint.encode_lp(ex.SerializeToString()))
    return PlaintextTransport(keys[0]).secure_inbound(a, timeout=2)


def test_id_not_matching_pubkey(keys):
    ex = plaintext_pb2.Exchange()
    ex.id = PeerId.from_public_key(keys[2].public_key()).to_bytes()
    ex.pubkey.ParseFromString(keys[1].public_key().marshal())
    with pytest.raises(SecurityError, match="does not match"):
        _send_exchange(ex, keys)


def test_missing_fields(keys):
    ex = plaintext_pb2.Exchange()
    ex.id = PeerId.from_public_key(keys[1].public_key()).to_bytes()
    with pytest.raises(SecurityError, match="lacks"):
        _send_exchange(ex, keys)


def test_garbage_payload(keys):
    a, b = memory_pipe()
    b.write(varint.encode_lp(b"\xff\xff\xff"))
    with pytest.raises(SecurityError):
        PlaintextTransport(keys[0]).secure_inbound(a, timeout=2)


def test_bad_pubkey(keys):
    ex = plaintext_pb2.Exchange()
    ex.id = PeerId.from_public_key(keys[1].public_key()).to_bytes()
    ex.pubkey.Type = 1
    ex.pubkey.Data = b"short"
    with pytest.raises(SecurityError):
        _send_exchange(ex, keys)


def test_close_wakes_reader_and_closed_reflects_raw(socketpair, keys):
    sa, sb = handshake(PlaintextTransport(keys[0]), PlaintextTransport(keys[1]), *socketpair)
    r = gevent.spawn(sb.read, 10)
    gevent.sleep(0.01)
    sb.close()
    assert r.get(timeout=1) == b""
    assert sb.closed and sb.raw.closed
    assert sa.read(10, timeout=1) == b""
    sa.raw.close()
    assert sa.closed


def test_rejects_unknown_options(keys):
    with pytest.raises(TypeError):
        PlaintextTransport(keys[0], bogus=1)


def test_full_stack_over_tcp(keys):
    """TCP -> multistream(/plaintext/2.0.0) -> exchange -> multistream(app) -> echo."""
    ka, kb, _ = keys
    tcp = TcpTransport()
    server = PlaintextTransport(kb)
    result = gevent.event.AsyncResult()

    def handler(raw):
        try:
            assert multistream.handle(raw, ["/noise", PROTOCOL_ID], timeout=2) == PROTOCOL_ID
            sec = server.secure_inbound(raw, timeout=2)
            proto = multistream.handle(sec, ["/echo/1.0.0"], timeout=2)
            data = sec.read(100, timeout=2)
            sec.write(data.upper())
            result.set((proto, sec.remote_peer))
        except Exception as exc:
            result.set_exception(exc)

    with gevent.Timeout(10):
        lst = tcp.listen("/ip4/127.0.0.1/tcp/0", handler)
        try:
            raw = tcp.dial(lst.multiaddr)
            assert multistream.select_one_of(raw, ["/tls/1.0.0", PROTOCOL_ID], timeout=2) == PROTOCOL_ID
            sec = PlaintextTransport(ka).secure_outbound(raw, server.local_peer, timeout=2)
            assert sec.remote_addr == lst.multiaddr
            app = multistream.select_lazy(sec, "/echo/1.0.0")
            app.write(b"shout")
            got = b""
            while len(got) < 5:
                got += app.read(100, timeout=2)
            assert got == b"SHOUT"
            assert result.get(timeout=2) == ("/echo/1.0.0", PeerId.from_public_key(ka.public_key()))
            app.close()
        finally:
            lst.close(stop_handlers=True)
