"""``new_host(pubsub=...)``, peer exchange (PX) and direct peers, on real hosts over the
memory transport (MockNet).

PX: a gossipsub node that leaves a topic with ``do_px`` sends its mesh peers a PRUNE
offering the other topic peers with their signed peer records; the pruned peer dials
them (go's connector pool).  Direct peers: dialled after start, kept connected, every
message is sent to them, they are never in a mesh.
"""

from __future__ import annotations

import time

import gevent
import pytest

from geventp2p.core.peer import PeerId
from geventp2p.core.record import PeerRecord, seal_peer_record
from geventp2p.crypto.keys import KeyType, generate_key
from geventp2p.exceptions import ConfigError
from geventp2p.pubsub import FloodSub, GossipSub, PubSub, PubSubOptions
from geventp2p.sansio.pubsub import GossipSubParams
from geventp2p.testing.mocknet import MockNet

WAIT = 30.0


@pytest.fixture
def net():
    with MockNet() as n:
        yield n


def wait_for(pred, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, what
        gevent.sleep(0.02)


def wait_subscribed(ps, topic: str, peers) -> None:
    wait_for(lambda: set(peers) <= set(ps.list_peers(topic)), f"{peers} in {topic!r} at {ps}")


# ---------------------------------------------------------------- new_host(pubsub=...)


@pytest.mark.parametrize("spec, kind", [("gossipsub", GossipSub), ("floodsub", FloodSub),
                                        ("GossipSub", GossipSub)])
def test_new_host_pubsub_by_name(net, spec, kind):
    a, b = net.gen_peers(2, pubsub=spec)
    assert type(a.pubsub) is kind and a.pubsub.host is a
    net.connect_all()
    ta, tb = a.pubsub.join("nh"), b.pubsub.join("nh")
    sa, sb = ta.subscribe(), tb.subscribe()
    wait_subscribed(a.pubsub, "nh", [b.id])
    wait_subscribed(b.pubsub, "nh", [a.id])
    if kind is GossipSub:
        wait_for(lambda: b.id in a.pubsub.router.mesh_peers("nh"), "mesh")
    ta.publish(b"a->b", timeout=10)
    assert sb.get(timeout=WAIT).data == b"a->b"
    tb.publish(b"b->a", timeout=10)
    got = {sa.get(timeout=WAIT).data, sa.get(timeout=WAIT).data}
    assert got == {b"a->b", b"b->a"}
    ps = a.pubsub
    a.close()
    assert ps.closed  # closed with the host


def test_new_host_pubsub_options_params_dict_and_factory(net):
    h1 = net.add_peer(pubsub=PubSubOptions(sign=False))
    assert type(h1.pubsub) is GossipSub and h1.pubsub.options.sign is False
    params = GossipSubParams(d=4, d_lo=3, d_hi=8, d_score=2, d_out=1)
    h2 = net.add_peer(pubsub=params)
    assert h2.pubsub.config is params
    h3 = net.add_peer(pubsub={"router": "floodsub", "options": PubSubOptions(peer_queue_size=4)})
    assert type(h3.pubsub) is FloodSub and h3.pubsub.options.peer_queue_size == 4
    made = []

    def factory(host):
        made.append(GossipSub(host, direct_peers=[h1.id]))
        return made[-1]

    h4 = net.add_peer(pubsub=factory)
    assert h4.pubsub is made[0] and h4.pubsub.direct_peers == {h1.id: []}
    h5 = net.add_peer()
    assert h5.pubsub is None


@pytest.mark.parametrize("spec", ["meshsub", {"router": "gossipsub", "no_such_option": 1}, 42,
                                  lambda host: object()])
def test_new_host_pubsub_bad_spec(net, spec):
    with pytest.raises(ConfigError):
        net.add_peer(pubsub=spec)


# ---------------------------------------------------------------- PX


def _px_node(host, **params):
    cfg = GossipSubParams(heartbeat_interval=0.2, **params)
    return GossipSub(host, cfg)


def test_px_prune_makes_the_pruned_peer_dial_the_offered_peer(net):
    """a is connected to b and c; b and c do not know each other.  a leaves with do_px:
    its PRUNE to b offers c with c's signed peer record, and b dials c from that record."""
    a, b, c = net.gen_peers(3)
    net.link_all()
    net.connect_peers(a, b)
    net.connect_peers(a, c)
    psa = _px_node(a, do_px=True)
    psb, psc = _px_node(b), _px_node(c)
    ta = psa.join("px")
    sub_a = ta.subscribe()
    for ps in (psb, psc):
        ps.join("px").subscribe()
    wait_subscribed(psa, "px", [b.id, c.id])
    wait_for(lambda: {b.id, c.id} <= set(psa.router.mesh_peers("px")), "a's mesh")
    assert not b.peerstore.addrs(c.id) and not b.network.conns_to_peer(c.id)
    sub_a.cancel()  # leave: PRUNE with PX to b and c
    wait_for(lambda: b.network.conns_to_peer(c.id), "b dialled c from the PX record")
    wait_for(lambda: psb.connect_counts.get("px:connected", 0) + psc.connect_counts.get("px:connected", 0) >= 1,
             "a PX dial counted")
    wait_subscribed(psb, "px", [c.id])  # and they speak pubsub to each other
    wait_for(lambda: c.id in psb.router.mesh_peers("px"), "b grafted c")


def test_no_px_without_do_px(net):
    a, b, c = net.gen_peers(3)
    net.link_all()
    net.connect_peers(a, b)
    net.connect_peers(a, c)
    psa, psb, psc = _px_node(a), _px_node(b), _px_node(c)
    sub_a = psa.join("px").subscribe()
    for ps in (psb, psc):
        ps.join("px").subscribe()
    wait_for(lambda: {b.id, c.id} <= set(psa.router.mesh_peers("px")), "a's mesh")
    sub_a.cancel()
    wait_for(lambda: a.id not in psb.router.mesh_peers("px"), "b got the PRUNE")
    for _ in range(3):  # three heartbeats of b: nothing to dial
        n = psb.router.heartbeat_ticks
        wait_for(lambda n=n: psb.router.heartbeat_ticks > n, "b's heartbeat")
    assert not b.network.conns_to_peer(c.id) and psb.connect_counts == {}


def test_px_record_checks_and_bounded_queue(net):
    """A record that does not verify, or names another peer, drops the offer; an offer
    without a record and without known addresses is not dialled; the queue is bounded."""
    (a,) = net.gen_peers(1)
    ps = GossipSub(a, options=PubSubOptions(connectors=1, max_pending_connections=1))
    k1, k2 = generate_key(KeyType.Ed25519), generate_key(KeyType.Ed25519)
    p1, p2 = PeerId.from_public_key(k1.public_key()), PeerId.from_public_key(k2.public_key())
    rec = seal_peer_record(k2, PeerRecord(p2, 1, ("/memory/999999",))).marshal()
    ps._queue_connect(p1, rec, "px")  # p2's record offered for p1
    ps._queue_connect(p2, rec, "px")  # queue full: dropped
    wait_for(lambda: ps.connect_counts.get("px:bad_record") == 1, "mismatched record refused")
    assert ps.connect_counts.get("dropped") == 1
    forged = bytearray(rec)
    forged[-1] ^= 1  # the signature's last byte
    ps._queue_connect(p2, bytes(forged), "px")
    wait_for(lambda: ps.connect_counts.get("px:bad_record") == 2, "forged record refused")
    ps._queue_connect(p1, None, "px")
    wait_for(lambda: ps.connect_counts.get("px:no_addrs") == 1, "no address, no dial")
    assert not a.peerstore.addrs(p1) and not a.peerstore.addrs(p2)
    ps._queue_connect(p2, rec, "px")  # a good record: its address is used (the dial fails: no listener)
    wait_for(lambda: ps.connect_counts.get("px:failed") == 1, "dial from a good record")
    assert [str(x) for x in a.peerstore.addrs(p2)] == ["/memory/999999"]
    wait_for(lambda: ps._connectors == 0, "the connector ended")


# ---------------------------------------------------------------- direct peers


def test_direct_peers_connect_reconnect_and_get_every_message(net):
    a, b, c = net.gen_peers(3)
    net.link_all()
    cfg = GossipSubParams(heartbeat_interval=0.1, direct_connect_ticks=3)
    opts = PubSubOptions(direct_connect_initial_delay=0.05)
    psa = GossipSub(a, cfg, options=opts, direct_peers=[str(b.p2p_addrs()[0])])
    psb = GossipSub(b, cfg, options=opts, direct_peers=[a.peer_info()])
    psc = GossipSub(c, cfg, options=opts)
    assert psa.direct_peers == {b.id: [b.network.listen_addresses()[0]]}
    assert a.connmgr.is_protected(b.id, "pubsub:direct")
    wait_for(lambda: a.network.conns_to_peer(b.id), "a dialled its direct peer b")
    ta, tb = psa.join("dp"), psb.join("dp")
    sa, sb = ta.subscribe(), tb.subscribe()
    wait_subscribed(psa, "dp", [b.id])
    wait_subscribed(psb, "dp", [a.id])
    ta.publish(b"to my direct peer", timeout=10)
    assert sb.get(timeout=WAIT).data == b"to my direct peer"
    assert b.id not in psa.router.mesh_peers("dp") and a.id not in psb.router.mesh_peers("dp")
    # a third, ordinary peer meshes with a but never with ... a direct peer: b stays out of meshes
    net.connect_peers(c, a)
    psc.join("dp").subscribe()
    wait_for(lambda: c.id in psa.router.mesh_peers("dp"), "c in a's mesh")
    assert b.id not in psa.router.mesh_peers("dp")
    assert sa.get(timeout=WAIT).data == b"to my direct peer"  # own copy
    before = psa.connect_counts.get("direct:connected", 0) + psb.connect_counts.get("direct:connected", 0)
    a.network.close_peer(b.id)
    wait_for(lambda: not psa.list_peers("dp") or b.id not in psa.list_peers("dp"), "b gone from a")
    wait_for(lambda: a.network.conns_to_peer(b.id), "the direct link came back")
    wait_for(lambda: psa.connect_counts.get("direct:connected", 0)
             + psb.connect_counts.get("direct:connected", 0) > before, "a direct re-dial counted")
    wait_subscribed(psa, "dp", [b.id])
    ta.publish(b"again", timeout=10)
    assert sb.get(timeout=WAIT).data == b"again"
    psa.close()
    assert not a.connmgr.is_protected(b.id, "pubsub:direct")


def test_direct_peers_are_validated(net):
    (a,) = net.gen_peers(1)
    with pytest.raises(ConfigError):
        GossipSub(a, direct_peers=["/memory/1"])  # no /p2p/ part
    with pytest.raises(ConfigError):
        GossipSub(a, direct_peers=[42])
    assert a.pubsub is None and not [s for s in a.services if isinstance(s, PubSub)]


# ---------------------------------------------------------------- /meshsub/1.3.0


@pytest.mark.parametrize("v13_a, v13_b, want", [(True, True, "/meshsub/1.3.0"), (True, False, "/meshsub/1.2.0"),
                                                (False, True, "/meshsub/1.2.0")])
def test_meshsub_13_by_default_and_fallback(net, v13_a, v13_b, want):
    a, b = net.gen_peers(2)
    net.connect_all()
    psa = GossipSub(a, GossipSubParams(v13=v13_a))
    psb = GossipSub(b, GossipSubParams(v13=v13_b))
    if v13_a and v13_b:
        assert GossipSub(net.add_peer(), None).protocols[0] == "/meshsub/1.3.0"  # the default
    ta, tb = psa.join("v"), psb.join("v")
    ta.subscribe()
    sb = tb.subscribe()
    wait_subscribed(psa, "v", [b.id])
    wait_subscribed(psb, "v", [a.id])
    assert psa._peers[b.id].protocol == want and psb._peers[a.id].protocol == want
    wait_for(lambda: b.id in psa.router.mesh_peers("v"), "mesh")
    ta.publish(b"x" * 2000, timeout=10)
    assert sb.get(timeout=WAIT).data == b"x" * 2000
