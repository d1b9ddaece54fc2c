"""Byte vectors for the sans-I/O Noise core, both crypto backends.

The raw XX vectors are the Noise_XX_25519_ChaChaPoly_SHA256 case of flynn/noise's
vectors.txt; the libp2p vectors put the handshake payloads of
https://github.com/libp2p/specs/blob/master/noise/README.md on top of the same keys.
"""

from __future__ import annotations

import pytest

from geventp2p.crypto.backend import get_backend
from geventp2p.sansio.noise import (
    PROTOCOL_NAME,
    SIGNATURE_PREFIX,
    CipherState,
    FrameDecryptor,
    FrameEncryptor,
    Handshake,
    NoiseXX,
    frame_message,
    parse_frame,
)

H = bytes.fromhex

INIT_STATIC = H("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
RESP_STATIC = H("0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20")
INIT_EPHEMERAL = H("202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f")
RESP_EPHEMERAL = H("4142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f60")

# flynn/noise vectors.txt, Noise_XX_25519_ChaChaPoly_SHA256
MSG1 = H("358072d6365880d1aeea329adf9121383851ed21a28e3b75e965d0d2cd166254")
MSG2 = H(
    "64b101b1d0be5a8704bd078f9895001fc03e8e9f9522f188dd128d9846d484663414af878d3e46a2f58911a816d6e834"
    "6d4ea17a6f2a0bb4ef4ed56c133cff4560a34e36ea82109f26cf2e5a5caf992b608d55c747f615e5a3425a7a19eefb8f"
)
MSG3 = H(
    "87f864c11ba449f46a0a4f4e2eacbb7b0457784f4fca1937f572c93603e9c4d97e5ea11b16f3968710b23a3be3202dc1"
    "b5e1ce3c963347491e74f5c0768a9b42"
)
T_I2R = H("a52ef02ba60e12696d1d6b9ef4245c88fca757b6134ad6e76b56e310a6adf6")
T_R2I = H("2445aa438ebd649281c636cc7269ca82f1d9023d72520943aeabf909cdf521")

# libp2p payloads on top of the same keys
RESP_IDENTITY = H(
    "080112407e0830617c4a7de83925dfb2694556b12936c477a0e1feb2e148ec9da60fee7d1ed1e8fae2c4a144b8be8fd4"
    "b47bf3d3b34b871c3cacf6010f0e42d474fce27e"
)
RESP_PEER = "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq"
INIT_PEER = "12D3KooWA4Xop1JaT3MHxwYMkCepYsv4iPVopMXwCz5iHYdBfeSB"
RESP_STATIC_PUB = H("07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c")
RESP_SIG = H(
    "e50bee9de7af956f6f42ff71195b76f47ea095d2f4c6a57cf588887bed31f78346151ce5458182eb7fae8111ad60cf76"
    "d4303391165284ff683988e1c7843304"
)
RESP_PAYLOAD = H(
    "0a24080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e1240e50bee9de7af956f"
    "6f42ff71195b76f47ea095d2f4c6a57cf588887bed31f78346151ce5458182eb7fae8111ad60cf76d4303391165284ff"
    "683988e1c7843304220e120c2f79616d75782f312e302e30"
)
INIT_PAYLOAD = H(
    "0a240801122003a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b812406ceca91982116689"
    "e12270a1b71dd25715017192a6ac958b674e2cacb589f7eaad9d438fd764e76537aaee8764329bd8689293e36e49ae39"
    "938bc5a7a44fe108220e120c2f79616d75782f312e302e30"
)
WIRE_MSG1 = H("0020358072d6365880d1aeea329adf9121383851ed21a28e3b75e965d0d2cd166254")
WIRE_MSG2 = H(
    "00d864b101b1d0be5a8704bd078f9895001fc03e8e9f9522f188dd128d9846d484663414af878d3e46a2f58911a816d6"
    "e8346d4ea17a6f2a0bb4ef4ed56c133cff4560a34e36ea82109f26cf2e5a5caf992b8b4dc7d75b055773dc07caf8d46b"
    "ebe3276950e5fecceca62e33db713adc27973f86e02ea66d87e8b218daecaa065cae0041147cebad3bafbfec9b8e87d5"
    "9110c31be52a5f1d2924076f33ca4663c1cc571724bf427386002651431bd9143e98df7ed476a848385594216610cafd"
    "32b1ac73bf9b837316a61d26ab459f528f42256187a7e4cdb293"
)
WIRE_MSG3 = H(
    "00b887f864c11ba449f46a0a4f4e2eacbb7b0457784f4fca1937f572c93603e9c4d9d7afed975e6d6bdf18e951939496"
    "974902320cd7b9b4648d778191f04c2cba90c149dc665d92624ccb0c138f2f0f9739f627eb188fa35ce112bb0c038111"
    "1643df13c16575805e5dab8bc1e34ae1a28ffbc699c4d1e38f2f034ba8fc5b89abd8977e63e9b7840067407970f3138e"
    "471cd1cc5ed36cef85858cbc9debef6fdb1c510dfc961b06f8a78d4a3a94573b6d7f46a44d5e0c6a424c"
)
FINAL_H = H("67b0a911a119b8be4628d7c4df8726f401793a2790d4e77a03adaa785a469263")
FRAME_HELLO = H("0015b42ef02ba64ca5462c152305239cdc119c12e46dd8")
FRAME_WORLD = H("0015205fba428bd2b9e097db69e14bbb943978ff11d775")


@pytest.fixture(scope="module", params=["cryptography", "pycryptodome"])
def backend(request):
    return get_backend(request.param)


def test_protocol_name_is_32_bytes():
    assert len(PROTOCOL_NAME) == 32
    assert SIGNATURE_PREFIX == b"noise-libp2p-static-key:"


def test_raw_noise_vectors(backend):
    i = NoiseXX(True, static_private=INIT_STATIC, ephemeral_private=INIT_EPHEMERAL, backend=backend)
    r = NoiseXX(False, static_private=RESP_STATIC, ephemeral_private=RESP_EPHEMERAL, backend=backend)
    m1 = i.write_message(b"")
    assert m1 == MSG1
    assert r.read_message(m1) == b""
    m2 = r.write_message(b"")
    assert m2 == MSG2
    assert i.read_message(m2) == b""
    assert i.rs == RESP_STATIC_PUB
    m3 = i.write_message(b"")
    assert m3 == MSG3
    assert r.read_message(m3) == b""
    assert i.finished and r.finished
    assert i.handshake_hash == r.handshake_hash
    i_send, i_recv = i.split()
    r_send, r_recv = r.split()
    assert i_send.encrypt(b"yellowsubmarine") == T_I2R
    assert r_recv.decrypt(T_I2R) == b"yellowsubmarine"
    assert r_send.encrypt(b"submarineyellow") == T_R2I
    assert i_recv.decrypt(T_R2I) == b"submarineyellow"


def _identities():
    from geventp2p.crypto.keys import unmarshal_private_key
    from geventp2p.pb import crypto_pb2

    resp = unmarshal_private_key(RESP_IDENTITY)
    seed = bytes(range(32))
    pub = get_backend("cryptography").ed25519_signer(seed).public_bytes()
    pb = crypto_pb2.PrivateKey(Type=1, Data=seed + pub)
    init = unmarshal_private_key(pb.SerializeToString())
    return init, resp


def test_libp2p_handshake_vectors(backend):
    from geventp2p.core.peer import PeerId

    init_id, resp_id = _identities()
    muxers = ("/yamux/1.0.0",)
    i = Handshake(
        True,
        init_id,
        static_private=INIT_STATIC,
        ephemeral_private=INIT_EPHEMERAL,
        muxers=muxers,
        expected_remote_peer=PeerId.from_string(RESP_PEER),
        backend=backend,
    )
    r = Handshake(False, resp_id, static_private=RESP_STATIC, ephemeral_private=RESP_EPHEMERAL, muxers=muxers, backend=backend)
    # payloads (Ed25519 signatures are deterministic)
    assert r.noise.s_pub == RESP_STATIC_PUB
    assert resp_id.sign(SIGNATURE_PREFIX + RESP_STATIC_PUB) == RESP_SIG
    assert r.local_payload() == RESP_PAYLOAD
    assert i.local_payload() == INIT_PAYLOAD

    w1 = frame_message(i.write_message_1())
    assert w1 == WIRE_MSG1
    r.read_message_1(parse_frame(w1)[0])
    w2 = frame_message(r.write_message_2())
    assert w2 == WIRE_MSG2
    i.read_message_2(parse_frame(w2)[0])
    w3 = frame_message(i.write_message_3())
    assert w3 == WIRE_MSG3
    r.read_message_3(parse_frame(w3)[0])

    ri, rr = i.result, r.result
    assert ri.handshake_hash == rr.handshake_hash == FINAL_H
    assert str(ri.remote_peer) == RESP_PEER
    assert str(rr.remote_peer) == INIT_PEER
    assert ri.early_muxer == rr.early_muxer == "/yamux/1.0.0"
    assert ri.remote_static == RESP_STATIC_PUB

    hello = FrameEncryptor(ri.send_cipher).encrypt_frames(b"hello")
    world = FrameEncryptor(rr.send_cipher).encrypt_frames(b"world")
    assert hello == FRAME_HELLO
    assert world == FRAME_WORLD
    assert FrameDecryptor(rr.recv_cipher).feed(hello) == [b"hello"]
    assert FrameDecryptor(ri.recv_cipher).feed(world) == [b"world"]


def test_libp2p_handshake_vectors_as_a_byte_stream(backend):
    """receive_data/data_to_send give the same wire bytes; data pipelined behind msg 3
    comes out as unused_data and decrypts as the first transport frame."""
    from geventp2p.core.peer import PeerId

    init_id, resp_id = _identities()
    muxers = ("/yamux/1.0.0",)
    i = Handshake(True, init_id, INIT_STATIC, INIT_EPHEMERAL, muxers, PeerId.from_string(RESP_PEER), backend=backend)
    r = Handshake(False, resp_id, RESP_STATIC, RESP_EPHEMERAL, muxers, backend=backend)
    assert r.data_to_send() == b""  # the responder speaks second
    w1 = i.data_to_send()
    assert w1 == WIRE_MSG1 and i.data_to_send() == b""
    for k in range(len(w1)):  # one byte at a time
        r.receive_data(w1[k : k + 1])
    w2 = r.data_to_send()
    assert w2 == WIRE_MSG2
    i.receive_data(w2)
    assert i.finished and not i.complete
    w3 = i.data_to_send()
    assert w3 == WIRE_MSG3 and i.complete and i.unused_data == b""
    hello = FrameEncryptor(i.result.send_cipher).encrypt_frames(b"hello")
    r.receive_data(w3[:100])
    assert not r.finished
    r.receive_data(w3[100:] + hello)
    assert r.complete and r.data_to_send() == b""
    assert r.unused_data == hello == FRAME_HELLO
    assert i.result.handshake_hash == r.result.handshake_hash == FINAL_H
    assert str(r.result.remote_peer) == INIT_PEER and r.result.early_muxer == "/yamux/1.0.0"
    assert FrameDecryptor(r.result.recv_cipher).feed(r.unused_data) == [b"hello"]


def test_payload_sizes_match_reference(backend):
    """msg2 = e (32) + encrypted s (48) + payload tag (16) + payload; msg3 = 48 + 16 + payload."""
    init_id, resp_id = _identities()
    i = Handshake(True, init_id, muxers=("/yamux/1.0.0",), backend=backend)
    r = Handshake(False, resp_id, muxers=("/yamux/1.0.0",), backend=backend)
    m1 = i.write_message_1()
    assert len(m1) == 32
    r.read_message_1(m1)
    m2 = r.write_message_2()
    assert len(m2) == 96 + 120
    i.read_message_2(m2)
    m3 = i.write_message_3()
    assert len(m3) == 64 + 120
    r.read_message_3(m3)


def test_cipher_state_nonce_is_little_endian(backend):
    key = bytes(range(32))
    a = CipherState(key, backend=backend)
    a.n = 0x0102030405060708
    ct = a.encrypt(b"x")
    aead = backend.aead(key)
    assert aead.decrypt(bytes(4) + bytes.fromhex("0807060504030201"), ct, b"") == b"x"
