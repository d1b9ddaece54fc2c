"""Encodings: protobuf (default) and ssz_snappy (optional packages); ids follow the encoding."""

from __future__ import annotations

import hashlib
from typing import Any

import gevent
import pytest
from gevent.queue import Queue

from geventp2p.exceptions import LocalProtocolError
from geventp2p.p2p import PROTOBUF, Encoding, Server, ServerConfig
from geventp2p.sansio.pubsub.gossipsub import GossipSubParams
from tests.p2p._msgs import Note, Ping

WAIT = 20.0
FAST = GossipSubParams(heartbeat_interval=0.1, heartbeat_initial_delay=0.02)


def test_protobuf_encoding() -> None:
    assert isinstance(PROTOBUF, Encoding) and PROTOBUF.name == "protobuf"
    m = Ping(n=5, body=b"abc")
    data = PROTOBUF.encode(m)
    assert PROTOBUF.decode(data, Ping) == m
    assert PROTOBUF.is_message(m) and not PROTOBUF.is_message(b"x")
    with pytest.raises(ValueError):
        PROTOBUF.decode(b"\xff\xff", Ping)
    for bad in (dict, int, object()):
        with pytest.raises(TypeError):
            PROTOBUF.check_type(bad)  # type: ignore[arg-type]
    PROTOBUF.check_type(Note)
    assert PROTOBUF.message_id("t", data) == hashlib.sha256(data).digest()[:20]


def _pair(**kw: Any) -> tuple[Server, Server]:
    kw.setdefault("gossipsub", FAST)
    kw.setdefault("host_options", {"services": ["identify"]})
    return Server(ServerConfig(**kw)), Server(ServerConfig(**kw))


def _roundtrip_content_ids(a: Server, b: Server, cls: Any, make: Any) -> None:
    a.register_topic("t", cls)
    b.register_topic("t", cls)
    q: Queue = Queue()
    b.subscribe(cls, q)
    b.host.connect(a.addrs()[0], timeout=WAIT)
    a.wait_for_peers(cls, timeout=WAIT)
    a.broadcast(make(1), timeout=WAIT)
    with pytest.raises(LocalProtocolError):  # same content: same id, a duplicate
        a.broadcast(make(1), timeout=WAIT)
    a.broadcast(make(2), timeout=WAIT)
    m1, m2 = q.get(timeout=WAIT), q.get(timeout=WAIT)
    enc = a.config.encoding
    assert m1.msg_id == enc.message_id("t", enc.encode(make(1)))
    assert m2.msg_id == enc.message_id("t", enc.encode(make(2)))
    assert m1.data == make(1) and m2.data == make(2)
    with gevent.Timeout(0.3, False):
        q.get()
        raise AssertionError("the duplicate was delivered")


def test_strict_no_sign_ids_follow_protobuf_encoding() -> None:
    a, b = _pair(sign=False)
    with a, b:
        _roundtrip_content_ids(a, b, Ping, lambda n: Ping(n=n))


def test_ssz_snappy_encoding() -> None:
    pytest.importorskip("ssz")
    pytest.importorskip("cramjam")
    import cramjam
    from ssz.sedes import Serializable, bytes32, uint64

    from geventp2p.p2p import SszSnappyEncoding
    from geventp2p.p2p.encoding import MESSAGE_DOMAIN_VALID_SNAPPY

    class Block(Serializable):  # type: ignore[misc]
        fields = [("slot", uint64), ("parent_root", bytes32)]

    enc = SszSnappyEncoding(max_decompressed=1024)
    assert isinstance(enc, Encoding)
    b = Block(slot=7, parent_root=b"\x01" * 32)
    data = enc.encode(b)
    assert bytes(cramjam.snappy.decompress_raw(data)) == bytes.fromhex("0700000000000000") + b"\x01" * 32
    assert enc.decode(data, Block) == b
    with pytest.raises(TypeError):
        enc.check_type(Ping)
    for bad in (b"", b"\xff\xff\xff", bytes(cramjam.snappy.compress_raw(b"\x00" * 3)),
                bytes(cramjam.snappy.compress_raw(b"\x00" * 2000))):  # too short / over the limit
        with pytest.raises(ValueError):
            enc.decode(bad, Block)
    raw = bytes(cramjam.snappy.decompress_raw(data))
    want = hashlib.sha256(MESSAGE_DOMAIN_VALID_SNAPPY + (5).to_bytes(8, "little") + b"topic" + raw).digest()[:20]
    assert enc.message_id("topic", data) == want
    assert len(enc.message_id("topic", b"\xff")) == 20      # invalid snappy: the invalid domain

    a, c = _pair(sign=False, encoding=enc)
    with a, c:
        _roundtrip_content_ids(a, c, Block, lambda n: Block(slot=n, parent_root=b"\x02" * 32))
