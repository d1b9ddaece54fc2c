"""Identify / identify push between real hosts (TCP + Noise + yamux)."""

from __future__ import annotations

import time

import gevent
import pytest

from geventp2p._speedups import varint
from geventp2p.core.addr import Multiaddr
from geventp2p.core.event import (
    EvtPeerIdentificationCompleted,
    EvtPeerIdentificationFailed,
    EvtPeerProtocolsUpdated,
)
from geventp2p.core.peer import PeerId
from geventp2p.core.record import PeerRecord, seal_peer_record
from geventp2p.crypto.keys import KeyType, generate_key
from geventp2p.host.peerstore import (
    AGENT_VERSION,
    CONNECTED_ADDR_TTL,
    PROTOCOL_VERSION,
    RECENTLY_CONNECTED_ADDR_TTL,
)
from geventp2p.net import multistream
from geventp2p.protocols.identify import ID, ID_PUSH, IdentifyService
from geventp2p.sansio.identify import IdentifyMessage, MessageReader


def wait_for(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        gevent.sleep(0.01)


def test_identify_fills_peerstore_both_ways(make_host):
    a = make_host(services=["identify", "ping", "echo"])
    b = make_host()
    sub_a = a.event_bus.subscribe(EvtPeerIdentificationCompleted)
    sub_b = b.event_bus.subscribe([EvtPeerIdentificationCompleted, EvtPeerProtocolsUpdated])
    try:
        b.connect(a.p2p_addrs()[0], timeout=10)
        # b waited for its own identify of a inside connect()
        assert set(b.peerstore.get_protocols(a.id)) == set(a.get_protocols())
        assert "/echo/1.0.0" in b.peerstore.get_protocols(a.id)
        assert b.peerstore.addrs(a.id) == a.addrs()
        assert b.peerstore.addr_ttl(a.id, a.addrs()[0]) == CONNECTED_ADDR_TTL
        assert b.peerstore.pubkey(a.id) == a.public_key
        assert b.peerstore.get(a.id, AGENT_VERSION).startswith("geventp2p/")
        assert b.peerstore.get(a.id, PROTOCOL_VERSION) == "ipfs/0.1.0"
        evt = sub_a.get(timeout=5)  # a identified b too
        assert evt.peer == b.id
        assert set(a.peerstore.get_protocols(b.id)) == set(b.get_protocols())
        assert a.peerstore.addrs(b.id) == b.addrs()
        seen = {type(e): e for e in (sub_b.get(timeout=5), sub_b.get(timeout=5))}
        done = seen[EvtPeerIdentificationCompleted]
        assert done.peer == a.id and set(done.protocols) == set(a.get_protocols())
        assert done.signed_peer_record is not None and done.signed_peer_record.signer() == a.id
        assert done.observed_addr is not None and done.observed_addr == done.conn.local_addr
        assert done.listen_addrs == tuple(a.addrs())
        upd = seen[EvtPeerProtocolsUpdated]
        assert set(upd.added) == set(a.get_protocols()) and upd.removed == ()
        ids_b = b.service(IdentifyService)
        assert ids_b.signed_record(a.id).signer() == a.id
    finally:
        sub_a.close()
        sub_b.close()


def test_responder_writes_one_message_then_fin(pair):
    a, b = pair
    conn = b.network.conns_to_peer(a.id)[0]
    s = conn.new_stream(timeout=5)
    try:
        assert multistream.select_one_of(s, [ID], timeout=5) == ID
        data = b""
        while True:
            chunk = s.read(timeout=5)
            if not chunk:
                break  # FIN
            data += chunk
    finally:
        s.close()
    payload, end = varint.decode_lp(data, 0)
    assert end == len(data) and len(payload) <= 4096
    msg = IdentifyMessage.parse(payload)
    assert msg.protocol_version == "ipfs/0.1.0"
    assert msg.agent_version.startswith("geventp2p/")
    assert [Multiaddr(x) for x in msg.listen_addrs] == a.addrs()
    assert Multiaddr(msg.observed_addr) == conn.local_addr
    assert PeerId.from_public_key(a.public_key) == a.id
    assert set(msg.protocols) == set(a.get_protocols())


def test_push_on_handler_change(pair):
    a, b = pair
    with b.event_bus.subscribe(EvtPeerProtocolsUpdated) as sub:
        a.set_stream_handler("/new/1.0.0", lambda s: None)
        evt = sub.get(timeout=5)
        assert evt.peer == a.id and evt.added == ("/new/1.0.0",) and evt.removed == ()
        assert "/new/1.0.0" in b.peerstore.get_protocols(a.id)
        a.remove_stream_handler("/new/1.0.0")
        evt = sub.get(timeout=5)
        assert evt.removed == ("/new/1.0.0",) and evt.added == ()
        assert "/new/1.0.0" not in b.peerstore.get_protocols(a.id)


@pytest.fixture
def quiet_pair(make_host):
    """Like ``pair`` but ``a`` never pushes on its own, so raw pushes in a test do not race."""
    a = make_host(services=["ping", "echo"])
    a.add_service(IdentifyService(push=False))
    b = make_host()
    b.connect(a.p2p_addrs()[0], timeout=10)
    return a, b


def _push_raw(sender, receiver_id, msg: IdentifyMessage) -> None:
    conn = sender.network.conns_to_peer(receiver_id)[0]
    s = conn.new_stream(timeout=5)
    multistream.select_one_of(s, [ID_PUSH], timeout=5)
    s.write(msg.encode(8192))
    s.close()


def test_push_replaces_whole_protocol_list_without_key(quiet_pair):
    a, b = quiet_pair
    with b.event_bus.subscribe(EvtPeerProtocolsUpdated) as sub:
        # js style: no publicKey, a partial list -> it replaces everything
        _push_raw(a, b.id, IdentifyMessage(protocols=("/only/1.0.0",)))
        evt = sub.get(timeout=5)
    assert evt.added == ("/only/1.0.0",)
    assert set(evt.removed) == set(a.get_protocols())
    assert b.peerstore.get_protocols(a.id) == ["/only/1.0.0"]
    assert b.peerstore.addrs(a.id) == a.addrs()  # a push without addresses keeps them


def test_push_with_wrong_key_is_ignored(quiet_pair):
    a, b = quiet_pair
    before = b.peerstore.get_protocols(a.id)
    other = generate_key(KeyType.Ed25519).public_key().marshal()
    _push_raw(a, b.id, IdentifyMessage(public_key=other, protocols=("/evil/1.0.0",)))
    gevent.sleep(0.2)
    assert b.peerstore.get_protocols(a.id) == before


def test_push_record_validation(quiet_pair):
    a, b = quiet_pair
    ids_b = b.service(IdentifyService)
    seq0 = PeerRecord.unmarshal(ids_b.signed_record(a.id).payload).seq
    listen = Multiaddr("/ip4/127.0.0.1/tcp/1111")
    good_addr = Multiaddr("/ip4/127.0.0.1/tcp/2222")

    def push_and_wait(record_bytes, marker):
        with b.event_bus.subscribe(EvtPeerProtocolsUpdated) as sub:
            _push_raw(a, b.id, IdentifyMessage(protocols=(marker,), listen_addrs=(listen.to_bytes(),),
                                               signed_peer_record=record_bytes))
            while marker not in sub.get(timeout=5).added:
                pass

    # bad signature -> record ignored, listenAddrs used
    good = seal_peer_record(a.private_key, PeerRecord(a.id, seq0 + 10, [good_addr])).marshal()
    push_and_wait(good[:-1] + bytes([good[-1] ^ 1]), "/m/1")
    assert listen in b.peerstore.addrs(a.id) and good_addr not in b.peerstore.addrs(a.id)
    assert PeerRecord.unmarshal(ids_b.signed_record(a.id).payload).seq == seq0
    # record of another peer -> ignored
    k = generate_key(KeyType.Ed25519)
    foreign = seal_peer_record(k, PeerRecord(PeerId.from_public_key(k.public_key()), seq0 + 10, [good_addr]))
    push_and_wait(foreign.marshal(), "/m/2")
    assert good_addr not in b.peerstore.addrs(a.id)
    # valid record -> its addresses win, old connected ones fade to a temporary TTL
    push_and_wait(good, "/m/3")
    assert b.peerstore.addr_ttl(a.id, good_addr) == CONNECTED_ADDR_TTL
    assert b.peerstore.addr_ttl(a.id, listen) < CONNECTED_ADDR_TTL
    assert PeerRecord.unmarshal(ids_b.signed_record(a.id).payload).seq == seq0 + 10


def test_identify_failure_event_when_peer_lacks_identify(make_host):
    a = make_host(services=["ping", "echo"])
    b = make_host()
    with b.event_bus.subscribe(EvtPeerIdentificationFailed) as sub:
        t0 = time.monotonic()
        b.connect(a.p2p_addrs()[0], timeout=10)
        assert time.monotonic() - t0 < 3  # "na" fails fast, no 5 s wait
        evt = sub.get(timeout=5)
    assert evt.peer == a.id
    assert b.peerstore.get_protocols(a.id) == []
    # streams still work without identify (negotiated, not lazy)
    from geventp2p.protocols.echo import echo

    assert echo(b, a.id, b"still works") == b"still works"


def test_disconnect_moves_addrs_to_recently_connected(pair):
    a, b = pair
    addr = a.addrs()[0]
    assert b.peerstore.addr_ttl(a.id, addr) == CONNECTED_ADDR_TTL
    b.network.close_peer(a.id)
    wait_for(lambda: b.peerstore.addr_ttl(a.id, addr) == RECENTLY_CONNECTED_ADDR_TTL)


def test_identify_timeout_against_silent_responder(make_host):
    a = make_host()
    b = make_host()
    a.remove_stream_handler(ID)
    block = gevent.event.Event()

    def silent(stream):
        block.wait(10)

    a.set_stream_handler(ID, silent)
    b.service(IdentifyService).timeout = 0.3
    with b.event_bus.subscribe(EvtPeerIdentificationFailed) as sub:
        b.connect(a.p2p_addrs()[0], timeout=10)
        evt = sub.get(timeout=5)
    assert evt.peer == a.id
    block.set()


def test_own_record_resigned_only_when_addrs_change(make_host):
    a = make_host()
    ids = a.service(IdentifyService)
    r1 = ids.own_record()
    assert ids.own_record() is r1
    a.listen("/ip4/127.0.0.1/tcp/0")
    r2 = ids.own_record()
    assert r2 is not r1
    rec1, rec2 = PeerRecord.unmarshal(r1.payload), PeerRecord.unmarshal(r2.payload)
    assert rec2.seq > rec1.seq and len(rec2.addrs) == len(rec1.addrs) + 1


def test_identify_config_errors():
    with pytest.raises(ValueError):
        IdentifyService(timeout=0)
    with pytest.raises(ValueError):
        IdentifyService(debounce=-1)


def test_message_reader_used_for_requests_handles_split_messages(make_host):
    """A responder that splits its answer in two (as go does above 2 KiB) is merged."""
    a = make_host()
    b = make_host()
    ids_a = a.service(IdentifyService)

    def split(stream):
        msg = ids_a.build_message(stream.conn.remote_addr)
        import dataclasses

        stream.write(dataclasses.replace(msg, signed_peer_record=None).encode(8192))
        stream.write(IdentifyMessage(signed_peer_record=msg.signed_peer_record).encode(8192))
        stream.close()

    a.set_stream_handler(ID, split)
    with b.event_bus.subscribe(EvtPeerIdentificationCompleted) as sub:
        b.connect(a.p2p_addrs()[0], timeout=10)
        evt = sub.get(timeout=5)
    assert evt.signed_peer_record is not None
    assert set(b.peerstore.get_protocols(a.id)) == set(a.get_protocols())
    assert MessageReader  # imported API stays public
