"""What the QUIC client offers in its ClientHello (sans-I/O, no sockets)."""

from __future__ import annotations

import time

import pytest

from geventp2p.crypto import tlscert
from geventp2p.crypto.keys import generate_key
from geventp2p.sansio.quic import QuicConfig, QuicSession

pytest.importorskip("aioquic")


def _session(is_client: bool, remote: tuple[str, int], **kw: object) -> QuicSession:
    return QuicSession(QuicConfig(), is_client, tlscert.make_certificate(generate_key()), remote,
                       time.monotonic, **kw)  # type: ignore[arg-type]


def test_client_offers_x25519_and_p256_key_shares_only() -> None:
    from aioquic.tls import Group

    client = _session(True, ("127.0.0.1", 4001))
    tls = client.quic.tls
    assert tls._supported_groups == [Group.X25519, Group.SECP256R1]
    assert tls._x25519_private_key is not None
    assert tls._x448_private_key is None  # aioquic alone would make one (and a P-384 key)
    assert [k.curve.name for k in tls._ec_private_keys] == ["secp256r1"]


def test_server_answers_the_smaller_client_hello() -> None:
    from aioquic.buffer import Buffer
    from aioquic.quic.packet import pull_quic_header

    client = _session(True, ("127.0.0.1", 4001))
    datagrams = client.buffers_to_send()
    assert datagrams and all(len(d) >= 1200 for d in datagrams)  # a padded Initial
    header = pull_quic_header(Buffer(data=bytes(datagrams[0])), host_cid_length=8)
    server = _session(False, ("127.0.0.1", 4000),
                      original_destination_connection_id=header.destination_cid)
    for d in datagrams:
        server.receive_data(bytes(d))
    assert server.error is None
    assert server.buffers_to_send(), "the server sent no ServerHello"
    assert server.quic.tls.key_schedule is not None  # the handshake keys: a key share was agreed
