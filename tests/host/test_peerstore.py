"""Tests for geventp2p.host.peerstore (fake clock, no sleeping)."""

from __future__ import annotations

import pytest

from geventp2p.core.addr import parse
from geventp2p.core.peer import PeerId, PeerInfo
from geventp2p.crypto.keys import KeyType, generate_key
from geventp2p.exceptions import MultiaddrError, PeerIdMismatchError, ResourceLimitExceeded
from geventp2p.host import peerstore as ps_mod
from geventp2p.host.peerstore import (
    ADDRESS_TTL,
    CONNECTED_ADDR_TTL,
    OWN_OBSERVED_ADDR_TTL,
    PERMANENT_ADDR_TTL,
    RECENTLY_CONNECTED_ADDR_TTL,
    TEMP_ADDR_TTL,
    Peerstore,
)


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


@pytest.fixture(scope="module")
def keys():
    ed = [generate_key(KeyType.Ed25519) for _ in range(3)]
    ec = generate_key(KeyType.ECDSA)  # > 42-byte public key: hashed (non-inline) peer ID
    return ed, ec


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def ps(clock):
    return Peerstore(clock=clock)


def pid(key) -> PeerId:
    return PeerId.from_public_key(key.public_key())


A1 = parse("/ip4/1.2.3.4/tcp/1")
A2 = parse("/ip4/1.2.3.4/tcp/2")
A3 = parse("/ip6/::1/tcp/3")


def test_ttl_constants_match_go():
    assert TEMP_ADDR_TTL == 120
    assert RECENTLY_CONNECTED_ADDR_TTL == 30 * 60
    assert OWN_OBSERVED_ADDR_TTL == 30 * 60
    assert ADDRESS_TTL == 3600
    assert PERMANENT_ADDR_TTL > CONNECTED_ADDR_TTL > 10**15  # distinct and effectively infinite
    assert ps_mod.LATENCY_EWMA_SMOOTHING == 0.1
    assert (ps_mod.AGENT_VERSION, ps_mod.PROTOCOL_VERSION) == ("AgentVersion", "ProtocolVersion")


# --------------------------------------------------------------------------- addresses


def test_add_and_expire(ps, clock, keys):
    p = pid(keys[0][0])
    ps.add_addrs(p, [A1, "/ip4/1.2.3.4/tcp/2"], TEMP_ADDR_TTL)
    assert ps.addrs(p) == [A1, A2]
    clock.advance(TEMP_ADDR_TTL - 1)
    assert ps.addrs(p) == [A1, A2]
    clock.advance(1)  # expiry is exclusive
    assert ps.addrs(p) == []
    assert ps.peers_with_addrs() == []


def test_add_only_extends(ps, clock, keys):
    p = pid(keys[0][0])
    ps.add_addr(p, A1, ADDRESS_TTL)
    clock.advance(100)
    ps.add_addr(p, A1, TEMP_ADDR_TTL)  # shorter: no effect on expiry or ttl
    assert ps.addr_ttl(p, A1) == ADDRESS_TTL
    clock.advance(ADDRESS_TTL - 100 - 1)
    assert ps.addrs(p) == [A1]
    clock.advance(1)
    assert ps.addrs(p) == []
    ps.add_addr(p, A1, TEMP_ADDR_TTL)
    clock.advance(60)
    ps.add_addr(p, A1, TEMP_ADDR_TTL)  # same ttl re-added later: expiry extended
    clock.advance(TEMP_ADDR_TTL - 1)
    assert ps.addrs(p) == [A1]


def test_add_zero_ttl_is_noop(ps, keys):
    p = pid(keys[0][0])
    ps.add_addrs(p, [A1], 0)
    ps.add_addrs(p, [A1], -5)
    assert ps.addrs(p) == [] and ps.peers() == []


def test_set_addrs_overrides_and_removes(ps, clock, keys):
    p = pid(keys[0][0])
    ps.add_addrs(p, [A1, A2], ADDRESS_TTL)
    ps.set_addr(p, A1, TEMP_ADDR_TTL)  # shortens
    assert ps.addr_ttl(p, A1) == TEMP_ADDR_TTL
    clock.advance(TEMP_ADDR_TTL)
    assert ps.addrs(p) == [A2]
    ps.set_addrs(p, [A2], 0)  # ttl 0 removes
    assert ps.addrs(p) == []
    ps.set_addrs(p, [A3], PERMANENT_ADDR_TTL)
    clock.advance(10**12)
    assert ps.addrs(p) == [A3]


def test_update_addrs(ps, clock, keys):
    p = pid(keys[0][0])
    ps.add_addrs(p, [A1, A2], CONNECTED_ADDR_TTL)
    ps.add_addrs(p, [A3], PERMANENT_ADDR_TTL)
    clock.advance(10**9)
    assert set(ps.addrs(p)) == {A1, A2, A3}
    ps.update_addrs(p, CONNECTED_ADDR_TTL, RECENTLY_CONNECTED_ADDR_TTL)  # disconnect
    assert ps.addr_ttl(p, A1) == RECENTLY_CONNECTED_ADDR_TTL
    assert ps.addr_ttl(p, A3) == PERMANENT_ADDR_TTL  # permanent is not "connected"
    clock.advance(RECENTLY_CONNECTED_ADDR_TTL)
    assert ps.addrs(p) == [A3]
    ps.update_addrs(p, PERMANENT_ADDR_TTL, 0)  # new ttl 0 removes
    assert ps.addrs(p) == []
    ps.update_addrs(p, 1, 2)  # unknown peer: no-op


def test_p2p_suffix_stripped_and_foreign_ignored(ps, keys):
    p, q = pid(keys[0][0]), pid(keys[0][1])
    ps.add_addrs(p, [f"/ip4/1.2.3.4/tcp/1/p2p/{p}", f"/ip4/1.2.3.4/tcp/2/p2p/{q}"], ADDRESS_TTL)
    assert ps.addrs(p) == [A1]
    ps.add_addr(p, f"/ip4/1.2.3.4/tcp/1/p2p/{p.to_cid()}", ADDRESS_TTL)  # CID form of same peer
    assert ps.addrs(p) == [A1]
    # relay address keeps its relay part
    relay = f"/ip4/5.6.7.8/tcp/1/p2p/{q}/p2p-circuit/p2p/{p}"
    ps.add_addr(p, relay, ADDRESS_TTL)
    assert ps.addrs(p)[-1] == parse(f"/ip4/5.6.7.8/tcp/1/p2p/{q}/p2p-circuit")


def test_bad_address_raises(ps, keys):
    with pytest.raises(MultiaddrError):
        ps.add_addr(pid(keys[0][0]), "/ip4/999.1.1.1/tcp/1", ADDRESS_TTL)


def test_clear_addrs_peers_with_addrs_gc(ps, clock, keys):
    p, q = pid(keys[0][0]), pid(keys[0][1])
    ps.add_addrs(p, [A1], TEMP_ADDR_TTL)
    ps.add_addrs(q, [A1, A2], ADDRESS_TTL)
    assert set(ps.peers_with_addrs()) == {p, q}
    ps.clear_addrs(q)
    assert ps.peers_with_addrs() == [p]
    ps.add_addrs(q, [A2], ADDRESS_TTL)
    clock.advance(TEMP_ADDR_TTL)
    assert ps.gc() == 1
    assert ps.peers_with_addrs() == [q]


def test_address_cap(clock, keys):
    store = Peerstore(clock=clock, max_addrs_per_peer=3)
    p = pid(keys[0][0])
    store.add_addrs(p, [f"/ip4/1.1.1.1/tcp/{i}" for i in range(10)], ADDRESS_TTL)
    assert len(store.addrs(p)) == 3
    clock.advance(ADDRESS_TTL)
    store.add_addrs(p, [f"/ip4/1.1.1.1/tcp/{i}" for i in range(5, 10)], ADDRESS_TTL)
    assert [str(a) for a in store.addrs(p)] == [f"/ip4/1.1.1.1/tcp/{i}" for i in (5, 6, 7)]


def test_any_hashable_peer_key_for_addrs(ps):
    ps.add_addrs("peer-x", [A1], ADDRESS_TTL)
    assert ps.addrs("peer-x") == [A1]


# --------------------------------------------------------------------------- keys


def test_pubkey_inline_and_stored(ps, keys):
    (ed, _, _), ec = keys
    p = pid(ed)
    assert ps.pubkey(p) == ed.public_key()  # extracted from the identity multihash
    q = pid(ec)
    assert ps.pubkey(q) is None  # hashed id: nothing to extract
    ps.add_pubkey(q, ec.public_key())
    assert ps.pubkey(q) == ec.public_key()
    assert q in ps.peers_with_keys()


def test_add_pubkey_mismatch(ps, keys):
    (ed0, ed1, _), ec = keys
    with pytest.raises(PeerIdMismatchError) as ei:
        ps.add_pubkey(pid(ed0), ed1.public_key())
    assert ei.value.expected == pid(ed0) and ei.value.actual == pid(ed1)
    with pytest.raises(PeerIdMismatchError):
        ps.add_pubkey(pid(ec), ed1.public_key())
    assert ps.pubkey(pid(ec)) is None
    with pytest.raises(TypeError):
        ps.add_pubkey("not-a-peer-id", ed0.public_key())  # type: ignore[arg-type]


def test_privkey(ps, keys):
    (ed0, ed1, _), _ = keys
    assert ps.privkey(pid(ed0)) is None
    ps.add_privkey(pid(ed0), ed0)
    assert ps.privkey(pid(ed0)) is ed0
    with pytest.raises(PeerIdMismatchError):
        ps.add_privkey(pid(ed1), ed0)
    with pytest.raises(TypeError):
        ps.add_privkey(pid(ed1), ed1.public_key())


# --------------------------------------------------------------------------- protocols


def test_protocol_book(ps, keys):
    p = pid(keys[0][0])
    assert ps.get_protocols(p) == []
    ps.set_protocols(p, "/ipfs/id/1.0.0", "/ipfs/ping/1.0.0")
    ps.add_protocols(p, ["/meshsub/1.1.0", "/ipfs/ping/1.0.0"])
    assert ps.get_protocols(p) == ["/ipfs/id/1.0.0", "/ipfs/ping/1.0.0", "/meshsub/1.1.0"]
    assert ps.supports_protocols(p, "/meshsub/1.1.0", "/x", "/ipfs/id/1.0.0") == [
        "/meshsub/1.1.0", "/ipfs/id/1.0.0"]
    assert ps.first_supported_protocol(p, "/meshsub/1.2.0", "/meshsub/1.1.0") == "/meshsub/1.1.0"
    assert ps.first_supported_protocol(p, "/nope") is None
    assert ps.peers_for_protocol("/ipfs/ping/1.0.0") == [p]
    ps.set_protocols(p, ["/only/1"])  # replaces
    assert ps.get_protocols(p) == ["/only/1"]
    ps.remove_protocols(p, "/only/1", "/absent")
    assert ps.get_protocols(p) == [] and p not in ps.peers()
    ps.remove_protocols(p, "/x")  # unknown peer: no-op
    with pytest.raises(TypeError):
        ps.add_protocols(p, b"/bytes")


def test_protocol_cap(clock, keys):
    store = Peerstore(clock=clock, max_protocols_per_peer=2)
    p = pid(keys[0][0])
    store.set_protocols(p, "/a", "/b")
    with pytest.raises(ResourceLimitExceeded):
        store.add_protocols(p, "/c")
    with pytest.raises(ResourceLimitExceeded):
        store.set_protocols(p, "/a", "/b", "/c")
    assert store.get_protocols(p) == ["/a", "/b"]


# --------------------------------------------------------------------------- metadata, latency, peers


def test_metadata(ps, keys):
    p = pid(keys[0][0])
    ps.put(p, ps_mod.AGENT_VERSION, "go-libp2p/0.36")
    assert ps.get(p, "AgentVersion") == "go-libp2p/0.36"
    with pytest.raises(KeyError):
        ps.get(p, ps_mod.PROTOCOL_VERSION)
    assert ps.get(p, ps_mod.PROTOCOL_VERSION, None) is None


def test_latency_ewma(ps, keys):
    p = pid(keys[0][0])
    assert ps.latency_ewma(p) is None
    ps.record_latency(p, 0.100)
    assert ps.latency_ewma(p) == pytest.approx(0.100)
    ps.record_latency(p, 0.200)
    assert ps.latency_ewma(p) == pytest.approx(0.9 * 0.100 + 0.1 * 0.200)
    for bad in (-1, float("nan"), float("inf"), "1"):
        with pytest.raises(ValueError):
            ps.record_latency(p, bad)  # type: ignore[arg-type]


def test_peers_peer_info_remove_peer(ps, clock, keys):
    (ed0, ed1, ed2), _ = keys
    p, q, r = pid(ed0), pid(ed1), pid(ed2)
    ps.add_addrs(p, [A1], TEMP_ADDR_TTL)
    ps.set_protocols(q, "/x")
    ps.put(r, "k", 1)
    ps.record_latency(r, 0.01)
    assert set(ps.peers()) == {p, q, r}
    assert ps.peer_info(p) == PeerInfo(p, [A1])
    assert ps.peer_info(q) == PeerInfo(q, [])
    ps.add_pubkey(p, ed0.public_key())
    ps.set_protocols(p, "/y")
    ps.remove_peer(p)
    assert ps.get_protocols(p) == [] and ps.privkey(p) is None
    assert ps.addrs(p) == [A1]  # addresses stay until their TTL, as in go
    ps.remove_peer(r)
    assert ps.latency_ewma(r) is None and ps.get(r, "k", None) is None
    clock.advance(TEMP_ADDR_TTL)
    assert set(ps.peers()) == {q}
