"""GossipSubRouter with a fake clock: mesh maintenance, fanout, backoff, gossip and
promises, PX, IDONTWANT, direct peers, floodsub peers, and a small network."""

from __future__ import annotations

import random

import pytest

from pubsub_helpers import Net, msg, of_type, pid, sends

from geventp2p.exceptions import ConfigError
from geventp2p.sansio.pubsub import (
    FLOODSUB_ID,
    MESHSUB_V10,
    MESHSUB_V11,
    MESHSUB_V12,
    MESHSUB_V13,
    RPC,
    ConnectPeer,
    ControlExtensions,
    ControlGraft,
    ControlIDontWant,
    ControlIHave,
    ControlIWant,
    ControlMessage,
    ControlPrune,
    GossipSubParams,
    GossipSubRouter,
    PeerInfoPX,
    PeerScoreParams,
    PeerScoreThresholds,
    SendRPC,
    SubOpts,
    TopicScoreParams,
    Validate,
    ValidationResult,
    default_msg_id,
)

ME = pid(100)
T = "t"


def router(**kw: object) -> GossipSubRouter:
    params = kw.pop("params", None) or GossipSubParams()
    return GossipSubRouter(ME, params, seed=1, **kw)  # type: ignore[arg-type]


def with_peers(r: GossipSubRouter, n: int, proto: str = MESHSUB_V12, subscribe: bool = True, start: int = 1, outbound: bool = False) -> list:
    ps = [pid(start + i) for i in range(n)]
    for p in ps:
        r.add_peer(p, proto, 0.0, outbound=outbound)
        if subscribe:
            r.handle_rpc(p, RPC(subscriptions=[SubOpts(True, T)]), 0.0)
    r.events()
    return ps


def ctl_of(evs: list, peer: object = None) -> list[ControlMessage]:
    return [e.rpc.control for e in sends(evs, peer) if e.rpc.control is not None]  # type: ignore[arg-type]


def grafts(evs: list) -> set:
    return {e.peer for e in sends(evs) if e.rpc.control and e.rpc.control.graft}


def prunes(evs: list) -> dict:
    return {e.peer: e.rpc.control.prune for e in sends(evs) if e.rpc.control and e.rpc.control.prune}


# --------------------------------------------------------------------------- params


def test_default_params_are_go_defaults() -> None:
    p = GossipSubParams()
    assert (p.d, p.d_lo, p.d_hi, p.d_score, p.d_out, p.d_lazy) == (6, 5, 12, 4, 2, 6)
    assert (p.history_length, p.history_gossip, p.gossip_factor, p.gossip_retransmission) == (5, 3, 0.25, 3)
    assert (p.heartbeat_initial_delay, p.heartbeat_interval, p.fanout_ttl) == (0.1, 1.0, 60.0)
    assert (p.prune_peers, p.prune_backoff, p.unsubscribe_backoff, p.graft_flood_threshold) == (16, 60.0, 10.0, 10.0)
    assert (p.max_ihave_length, p.max_ihave_messages, p.iwant_followup_time) == (5000, 10, 3.0)
    assert (p.max_idontwant_length, p.max_idontwant_messages, p.idontwant_message_threshold, p.idontwant_message_ttl) == (10, 1000, 1024, 3)
    assert (p.opportunistic_graft_ticks, p.opportunistic_graft_peers, p.direct_connect_ticks) == (60, 2, 300)
    assert (p.flood_publish, p.do_px) == (False, False)
    assert GossipSubRouter(ME).protocols == (MESHSUB_V13, MESHSUB_V12, MESHSUB_V11, MESHSUB_V10, FLOODSUB_ID)


@pytest.mark.parametrize(
    "kw",
    [dict(d_lo=7), dict(d_hi=5), dict(d_out=5), dict(d_out=3), dict(history_gossip=6), dict(heartbeat_interval=0), dict(d=-1)],
)
def test_bad_params(kw: dict) -> None:
    with pytest.raises(ConfigError):
        GossipSubParams(**kw)


# --------------------------------------------------------------------------- join / mesh


def test_join_grafts_d_peers_and_skips_floodsub_peers() -> None:
    r = router()
    mesh_peers = with_peers(r, 10)
    flood = with_peers(r, 3, proto=FLOODSUB_ID, start=50)
    r.join(T, 0.0)
    evs = r.events()
    g = grafts(evs)
    assert len(g) == 6 and g <= set(mesh_peers) and not g & set(flood)
    assert set(r.mesh_peers(T)) == g
    # every peer heard the subscription
    subs = {e.peer for e in sends(evs) if e.rpc.subscriptions == [SubOpts(True, T)]}
    assert subs == set(mesh_peers) | set(flood)


def test_heartbeat_fills_mesh_below_d_lo() -> None:
    r = router()
    r.join(T, 0.0)
    r.events()
    ps = with_peers(r, 3)
    r.heartbeat(1.0)
    assert grafts(r.events()) == set(ps)
    more = with_peers(r, 10, start=10)
    r.heartbeat(2.0)
    # 3 in the mesh < d_lo=5: graft up to d=6
    assert len(grafts(r.events())) == 3 and len(r.mesh_peers(T)) == 6
    r.heartbeat(3.0)
    assert grafts(r.events()) == set() and len(set(r.mesh_peers(T)) & set(more)) == 3


def test_heartbeat_prunes_above_d_hi_keeping_outbound_quota() -> None:
    r = router()
    r.join(T, 0.0)
    inbound = with_peers(r, 14)
    outbound = with_peers(r, 2, start=40, outbound=True)
    for p in inbound + outbound:
        r.handle_rpc(p, RPC(control=ControlMessage(graft=[ControlGraft(T)])), 0.0)
    assert len(prunes(r.events())) == 2
    # the two outbound peers were accepted although the mesh passed d_hi
    assert set(outbound) <= set(r.mesh_peers(T))
    r.heartbeat(1.0)
    evs = r.events()
    pr = prunes(evs)
    # 12 inbound grafts accepted, 2 refused at d_hi, then the 2 outbound: 14 -> 6
    assert len(r.mesh_peers(T)) == 6 and len(pr) == 8
    assert set(outbound) <= set(r.mesh_peers(T))
    for peer, ps in pr.items():
        assert ps == [ControlPrune(T, [], 60)]
        assert r.in_backoff(T, peer, 1.0)


def test_graft_above_d_hi_from_inbound_peer_is_pruned() -> None:
    r = router()
    r.join(T, 0.0)
    ps = with_peers(r, 13)
    r.events()
    for p in ps[:12]:
        r.handle_rpc(p, RPC(control=ControlMessage(graft=[ControlGraft(T)])), 0.0)
    assert len(r.mesh_peers(T)) == 12
    r.events()
    r.handle_rpc(ps[12], RPC(control=ControlMessage(graft=[ControlGraft(T)])), 0.0)
    assert prunes(r.events()) == {ps[12]: [ControlPrune(T, [], 60)]}


def test_graft_for_unknown_topic_is_ignored_and_v10_prune_has_no_backoff() -> None:
    r = router()
    [v10] = with_peers(r, 1, proto=MESHSUB_V10)
    r.handle_rpc(v10, RPC(control=ControlMessage(graft=[ControlGraft("other")])), 0.0)
    assert r.events() == []
    r.join(T, 0.0)
    r.events()
    r.leave(T, 0.0)
    assert prunes(r.events()) == {v10: [ControlPrune(T)]}


def test_leave_prunes_with_unsubscribe_backoff_and_backs_off() -> None:
    r = router()
    ps = with_peers(r, 6)
    r.join(T, 0.0)
    r.events()
    r.leave(T, 5.0)
    evs = r.events()
    assert {p: v for p, v in prunes(evs).items()} == {p: [ControlPrune(T, [], 10)] for p in ps}
    unsub = [e for e in sends(evs) if e.rpc.subscriptions == [SubOpts(False, T)]]
    assert len(unsub) == 6
    assert r.mesh_peers(T) == []
    # rejoining within the backoff (+ one heartbeat of slack) grafts nobody
    r.join(T, 10.0)
    assert grafts(r.events()) == set()
    r.heartbeat(16.5)
    assert grafts(r.events()) == set(ps)


def test_received_prune_backoff_is_honoured() -> None:
    r = router()
    ps = with_peers(r, 6)
    r.join(T, 0.0)
    r.events()
    victim = ps[0]
    r.handle_rpc(ps[1], RPC(subscriptions=[SubOpts(False, T)]), 0.0)  # mesh of 5 - 1 < d_lo
    r.handle_rpc(victim, RPC(control=ControlMessage(prune=[ControlPrune(T, [], 30)])), 0.0)
    assert victim not in r.mesh_peers(T)
    for now in (1.0, 10.0, 30.5):
        r.heartbeat(now)
        assert victim not in grafts(r.events())
    r.heartbeat(31.5)  # backoff + one heartbeat of slack is over
    assert victim in grafts(r.events())
    # no backoff field: the local prune backoff (60 s) applies
    r.handle_rpc(victim, RPC(control=ControlMessage(prune=[ControlPrune(T)])), 40.0)
    assert r.in_backoff(T, victim, 100.5) and not r.in_backoff(T, victim, 101.0)


def test_unsubscribing_peer_leaves_the_mesh() -> None:
    r = router()
    ps = with_peers(r, 6)
    r.join(T, 0.0)
    r.events()
    r.handle_rpc(ps[0], RPC(subscriptions=[SubOpts(False, T)]), 0.0)
    assert ps[0] not in r.mesh_peers(T)
    r.remove_peer(ps[1], 0.0)
    assert ps[1] not in r.mesh_peers(T)


# --------------------------------------------------------------------------- publishing


def test_publish_without_join_uses_fanout_then_expires() -> None:
    r = router()
    ps = with_peers(r, 10)
    flood = with_peers(r, 2, proto=FLOODSUB_ID, start=50)
    r.publish(msg(ME, 1), 0.0)
    evs = r.events()
    targets = {e.peer for e in sends(evs) if e.rpc.publish}
    fan = set(r.fanout_peers(T))
    assert len(fan) == 6 and fan <= set(ps)
    assert targets == fan | set(flood)
    assert not of_type(evs, type(None))
    # the same fanout is reused
    r.publish(msg(ME, 2), 1.0)
    assert {e.peer for e in sends(r.events()) if e.rpc.publish} == fan | set(flood)
    r.heartbeat(30.0)
    assert set(r.fanout_peers(T)) == fan
    r.heartbeat(61.5)
    assert r.fanout_peers(T) == []
    # joining adopts a fresh fanout as the mesh
    r.publish(msg(ME, 3), 62.0)
    fan = set(r.fanout_peers(T))
    r.events()
    r.join(T, 62.0)
    assert grafts(r.events()) == fan and r.fanout_peers(T) == []


def test_flood_publish_reaches_every_topic_peer() -> None:
    r = router(params=GossipSubParams(flood_publish=True))
    ps = with_peers(r, 10)
    r.join(T, 0.0)
    r.events()
    r.publish(msg(ME, 1), 0.0)
    assert {e.peer for e in sends(r.events()) if e.rpc.publish} == set(ps)


def test_forward_goes_to_mesh_and_floodsub_but_not_back() -> None:
    r = router()
    ps = with_peers(r, 10)
    flood = with_peers(r, 2, proto=FLOODSUB_ID, start=50)
    r.join(T, 0.0)
    r.events()
    mesh = r.mesh_peers(T)
    src = mesh[0]
    author = mesh[1]
    m = msg(author, 1)
    r.handle_rpc(src, RPC(publish=[m]), 0.0)
    [v] = of_type(r.events(), Validate)
    r.validation_result(v.msg_id, ValidationResult.ACCEPT, 0.0)
    targets = {e.peer for e in sends(r.events()) if e.rpc.publish}
    assert targets == (set(mesh) - {src, author}) | set(flood)
    assert v.msg_id in r.mcache


# --------------------------------------------------------------------------- gossip


def test_heartbeat_emits_ihave_to_non_mesh_peers() -> None:
    r = router()
    ps = with_peers(r, 20)
    r.join(T, 0.0)
    r.events()
    mid = r.publish(msg(ME, 1), 0.0)
    r.events()
    r.heartbeat(1.0)
    evs = r.events()
    ihave_peers = {e.peer for e in sends(evs) if e.rpc.control and e.rpc.control.ihave}
    assert not ihave_peers & set(r.mesh_peers(T))
    assert len(ihave_peers) == max(6, int(0.25 * 14))
    for c in ctl_of(evs):
        if c.ihave:
            assert c.ihave == [ControlIHave(T, [mid])]
    # after history_gossip heartbeats the ID is no longer advertised
    for now in (2.0, 3.0):
        r.heartbeat(now)
        r.events()
    r.heartbeat(4.0)
    assert not any(c.ihave for c in ctl_of(r.events()))


def test_ihave_iwant_and_promise_kept() -> None:
    r = router(score_params=PeerScoreParams(behaviour_penalty_weight=-1.0, behaviour_penalty_decay=0.9))
    [p] = with_peers(r, 1)
    r.join(T, 0.0)
    r.events()
    m = msg(p, 7)
    mid = default_msg_id(m)
    r.handle_rpc(p, RPC(control=ControlMessage(ihave=[ControlIHave(T, [mid]), ControlIHave("unjoined", [b"zz"])])), 0.0)
    [c] = ctl_of(r.events(), p)
    assert c.iwant == [ControlIWant([mid])]
    assert mid in r.promises()
    r.handle_rpc(p, RPC(publish=[m]), 1.0)
    assert r.promises() == {}
    r.heartbeat(5.0)
    assert r.peer_score is not None and r.peer_score.behaviour_penalty(p) == 0


def test_broken_promise_is_penalised() -> None:
    r = router(score_params=PeerScoreParams(behaviour_penalty_weight=-1.0, behaviour_penalty_decay=0.9))
    [p] = with_peers(r, 1)
    r.join(T, 0.0)
    r.events()
    r.handle_rpc(p, RPC(control=ControlMessage(ihave=[ControlIHave(T, [b"a", b"b", b"c"])])), 0.0)
    [c] = ctl_of(r.events(), p)
    assert sorted(c.iwant[0].message_ids) == [b"a", b"b", b"c"]
    assert len(r.promises()) == 1  # one ID per IWANT is tracked
    r.heartbeat(2.0)
    assert r.peer_score.behaviour_penalty(p) == 0  # type: ignore[union-attr]
    r.heartbeat(3.5)
    assert r.peer_score.behaviour_penalty(p) == pytest.approx(0.9)  # type: ignore[union-attr]  # 1, then one decay
    assert r.score(p) == pytest.approx(-0.81)
    assert r.promises() == {}


def test_seen_ids_are_not_requested_and_ihave_caps() -> None:
    params = GossipSubParams(max_ihave_messages=2, max_ihave_length=5)
    r = router(params=params)
    [p] = with_peers(r, 1)
    r.join(T, 0.0)
    mine = r.publish(msg(ME, 1), 0.0)
    r.events()
    r.handle_rpc(p, RPC(control=ControlMessage(ihave=[ControlIHave(T, [mine, b"n1"])])), 0.0)
    assert ctl_of(r.events(), p)[0].iwant == [ControlIWant([b"n1"])]
    ids = [b"x%d" % i for i in range(10)]
    r.handle_rpc(p, RPC(control=ControlMessage(ihave=[ControlIHave(T, ids)])), 0.0)
    [c] = ctl_of(r.events(), p)
    assert len(c.iwant[0].message_ids) == 4  # 5 per heartbeat, one already asked
    r.handle_rpc(p, RPC(control=ControlMessage(ihave=[ControlIHave(T, [b"late"])])), 0.0)
    assert r.events() == []  # third IHAVE this heartbeat
    r.heartbeat(1.0)
    r.events()
    r.handle_rpc(p, RPC(control=ControlMessage(ihave=[ControlIHave(T, [b"late"])])), 1.0)
    assert ctl_of(r.events(), p)[0].iwant == [ControlIWant([b"late"])]


def test_iwant_is_answered_at_most_gossip_retransmission_times() -> None:
    r = router()
    [p] = with_peers(r, 1)
    r.join(T, 0.0)
    m = msg(ME, 1)
    mid = r.publish(m, 0.0)
    r.events()
    answers = []
    for _ in range(5):
        r.handle_rpc(p, RPC(control=ControlMessage(iwant=[ControlIWant([mid, b"unknown"])])), 0.0)
        answers.append([x.rpc.publish for x in sends(r.events(), p)])
    assert answers == [[[m]]] * 3 + [[]] * 2


def test_gossip_threshold_gates_ihave_and_iwant() -> None:
    r = router(
        score_params=PeerScoreParams(app_specific_weight=1.0),
        thresholds=PeerScoreThresholds(gossip=-10, publish=-20, graylist=-30),
    )
    [p] = with_peers(r, 1)
    r.join(T, 0.0)
    mid = r.publish(msg(ME, 1), 0.0)
    r.events()
    r.set_app_score(p, -15)
    r.handle_rpc(p, RPC(control=ControlMessage(ihave=[ControlIHave(T, [b"q"])], iwant=[ControlIWant([mid])])), 0.0)
    assert r.events() == []
    r.set_app_score(p, -35)  # graylisted: even subscriptions are ignored
    r.handle_rpc(p, RPC(subscriptions=[SubOpts(True, "new")]), 0.0)
    assert r.events() == [] and "new" not in r.topics


# --------------------------------------------------------------------------- GRAFT handling, backoff, scores


def test_graft_during_backoff_is_penalised_and_pruned() -> None:
    r = router(
        score_params=PeerScoreParams(behaviour_penalty_weight=-1.0, behaviour_penalty_decay=0.5),
        thresholds=PeerScoreThresholds(gossip=-100, publish=-100, graylist=-100),
    )
    ps = with_peers(r, 6)
    r.join(T, 0.0)
    r.events()
    p = ps[0]
    r.handle_rpc(p, RPC(control=ControlMessage(prune=[ControlPrune(T, [], 60)])), 0.0)
    # GRAFT 5 s after the PRUNE: inside the graft flood threshold -> 2 penalties
    r.handle_rpc(p, RPC(control=ControlMessage(graft=[ControlGraft(T)])), 5.0)
    assert prunes(r.events()) == {p: [ControlPrune(T, [], 60)]}
    assert r.peer_score.behaviour_penalty(p) == 2  # type: ignore[union-attr]
    # GRAFT later but still in the (refreshed) backoff -> 1 penalty
    r.handle_rpc(p, RPC(control=ControlMessage(graft=[ControlGraft(T)])), 30.0)
    assert r.peer_score.behaviour_penalty(p) == 3  # type: ignore[union-attr]
    assert p not in r.mesh_peers(T)


def test_negative_score_graft_is_pruned_and_negative_mesh_peers_are_dropped() -> None:
    r = router(
        params=GossipSubParams(do_px=True),
        score_params=PeerScoreParams(app_specific_weight=1.0),
        thresholds=PeerScoreThresholds(gossip=-100, publish=-100, graylist=-100),
    )
    ps = with_peers(r, 8)
    r.join(T, 0.0)
    r.events()
    outsider = [p for p in ps if p not in r.mesh_peers(T)][0]
    r.set_app_score(outsider, -1)
    r.handle_rpc(outsider, RPC(control=ControlMessage(graft=[ControlGraft(T)])), 0.0)
    assert prunes(r.events()) == {outsider: [ControlPrune(T, [], 60)]}  # no PX for it
    member = r.mesh_peers(T)[0]
    r.set_app_score(member, -1)
    r.heartbeat(1.0)
    pr = prunes(r.events())
    assert pr[member] == [ControlPrune(T, [], 60)] and member not in r.mesh_peers(T)


def test_px_is_sent_with_records_and_accepted_by_threshold() -> None:
    records = {pid(2): b"record-2"}
    r = router(params=GossipSubParams(do_px=True), peer_record=records.get)
    ps = with_peers(r, 4)
    r.join(T, 0.0)
    r.events()
    r.leave(T, 1.0)
    pr = prunes(r.events())[ps[0]][0]
    assert pr.backoff == 10
    assert {x.peer_id for x in pr.peers} == {p.to_bytes() for p in ps[1:]}
    assert {x.peer_id: x.signed_peer_record for x in pr.peers}.get(pid(2).to_bytes(), b"record-2") == b"record-2"

    # accepting PX: only from peers at or above the accept-PX threshold, only unknown peers
    r2 = router(score_params=PeerScoreParams(app_specific_weight=1.0), thresholds=PeerScoreThresholds(accept_px=5))
    a, b = with_peers(r2, 2)
    r2.join(T, 0.0)
    r2.events()
    px = [PeerInfoPX(pid(60).to_bytes(), b"rec"), PeerInfoPX(b.to_bytes()), PeerInfoPX(b"\xff\xff"), PeerInfoPX(ME.to_bytes())]
    r2.handle_rpc(a, RPC(control=ControlMessage(prune=[ControlPrune(T, px, 60)])), 0.0)
    assert of_type(r2.events(), ConnectPeer) == []
    r2.set_app_score(b, 10)
    r2.handle_rpc(b, RPC(control=ControlMessage(prune=[ControlPrune(T, px, 60)])), 0.0)
    assert of_type(r2.events(), ConnectPeer) == [ConnectPeer(peer=pid(60), signed_peer_record=b"rec", reason="px")]


def test_px_is_capped_at_prune_peers() -> None:
    r = router(params=GossipSubParams(prune_peers=3))
    [p] = with_peers(r, 1)
    r.join(T, 0.0)
    r.events()
    px = [PeerInfoPX(pid(200 + i).to_bytes()) for i in range(10)]
    r.handle_rpc(p, RPC(control=ControlMessage(prune=[ControlPrune(T, px, 60)])), 0.0)
    assert len(of_type(r.events(), ConnectPeer)) == 3


def test_direct_peers() -> None:
    d = pid(77)
    r = GossipSubRouter(ME, direct_peers=[d], seed=1, params=GossipSubParams(direct_connect_ticks=2))
    ps = with_peers(r, 6)
    r.join(T, 0.0)
    assert d not in grafts(r.events())
    r.heartbeat(1.0)
    r.events()
    r.heartbeat(2.0)
    assert of_type(r.events(), ConnectPeer) == [ConnectPeer(peer=d, signed_peer_record=None, reason="direct")]
    r.add_peer(d, MESHSUB_V11, 3.0)
    r.handle_rpc(d, RPC(subscriptions=[SubOpts(True, T)], control=ControlMessage(graft=[ControlGraft(T)])), 3.0)
    assert prunes(r.events()) == {d: [ControlPrune(T, [], 60)]}
    assert d not in r.mesh_peers(T)
    m = msg(ps[0], 1)
    r.handle_rpc(ps[0], RPC(publish=[m]), 3.0)
    [v] = of_type(r.events(), Validate)
    r.validation_result(v.msg_id, ValidationResult.ACCEPT, 3.0)
    assert d in {e.peer for e in sends(r.events()) if e.rpc.publish}


# --------------------------------------------------------------------------- IDONTWANT


def test_idontwant_sent_to_v12_mesh_peers_for_large_messages() -> None:
    r = router()
    v12 = with_peers(r, 3)
    v11 = with_peers(r, 3, proto=MESHSUB_V11, start=20)
    r.join(T, 0.0)
    r.events()
    assert set(r.mesh_peers(T)) == set(v12) | set(v11)
    src = v12[0]
    small, big = msg(src, 1, size=1023), msg(src, 2, size=1024)
    r.handle_rpc(src, RPC(publish=[small]), 0.0)
    assert not [e for e in sends(r.events()) if e.rpc.control]
    r.handle_rpc(src, RPC(publish=[big]), 0.0)
    evs = r.events()
    idw = {e.peer: e.rpc.control.idontwant for e in sends(evs) if e.rpc.control}
    assert idw == {p: [ControlIDontWant([default_msg_id(big)])] for p in v12[1:]}
    assert isinstance(evs[-1], Validate)  # IDONTWANT goes out before validation


def test_received_idontwant_suppresses_forwarding_for_a_few_heartbeats() -> None:
    r = router()
    ps = with_peers(r, 3)
    r.join(T, 0.0)
    r.events()
    a, b, c = ps
    m1, m2 = msg(a, 1), msg(a, 2)
    for m in (m1, m2):
        r.handle_rpc(b, RPC(control=ControlMessage(idontwant=[ControlIDontWant([default_msg_id(m)])])), 0.0)
    assert r.unwanted(b) == {default_msg_id(m1), default_msg_id(m2)}
    r.handle_rpc(a, RPC(publish=[m1]), 0.0)
    [v] = of_type(r.events(), Validate)
    r.validation_result(v.msg_id, ValidationResult.ACCEPT, 0.0)
    assert {e.peer for e in sends(r.events()) if e.rpc.publish} == {c}
    # not served through IWANT either
    r.handle_rpc(b, RPC(control=ControlMessage(iwant=[ControlIWant([v.msg_id])])), 0.0)
    assert r.events() == []
    for now in (1.0, 2.0, 3.0):
        r.heartbeat(now)
        r.events()
    assert r.unwanted(b) == set()
    r.handle_rpc(a, RPC(publish=[m2]), 3.0)
    [v] = of_type(r.events(), Validate)
    r.validation_result(v.msg_id, ValidationResult.ACCEPT, 3.0)
    assert {e.peer for e in sends(r.events()) if e.rpc.publish} == {b, c}


def test_idontwant_caps() -> None:
    r = router(params=GossipSubParams(max_idontwant_messages=2, max_idontwant_length=3))
    [p] = with_peers(r, 1)
    r.handle_rpc(p, RPC(control=ControlMessage(idontwant=[ControlIDontWant([b"a", b"b"]), ControlIDontWant([b"c", b"d"])])), 0.0)
    assert r.unwanted(p) == {b"a", b"b", b"c"}
    r.handle_rpc(p, RPC(control=ControlMessage(idontwant=[ControlIDontWant([b"e"])])), 0.0)
    r.handle_rpc(p, RPC(control=ControlMessage(idontwant=[ControlIDontWant([b"f"])])), 0.0)
    assert r.unwanted(p) == {b"a", b"b", b"c", b"e"}


# --------------------------------------------------------------------------- bad input


def test_malformed_rpc_costs_a_behaviour_penalty() -> None:
    r = router(score_params=PeerScoreParams(behaviour_penalty_weight=-1.0))
    [p] = with_peers(r, 1)
    r.handle_rpc_error(p, "malformed RPC", 0.0)
    evs = r.events()
    assert evs[-1].__class__.__name__ == "DropPeer"
    assert r.score(p) == -1.0


# --------------------------------------------------------------------------- networks


def _network(n: int, degree: int, seed: int, proto_mix: bool = False) -> tuple[Net, list]:
    rng = random.Random(seed)
    net = Net()
    ids = [pid(300 + i) for i in range(n)]
    for i, x in enumerate(ids):
        net.add(GossipSubRouter(x, GossipSubParams(), seed=seed + i))
    edges = set()
    for i in range(n):  # a ring keeps it connected, then random chords
        edges.add((i, (i + 1) % n))
    while len(edges) < n * degree // 2:
        a, b = rng.sample(range(n), 2)
        if (b, a) not in edges:
            edges.add((a, b))
    for a, b in sorted(edges):
        proto = rng.choice([MESHSUB_V10, MESHSUB_V11, MESHSUB_V12]) if proto_mix else None
        net.connect(ids[a], ids[b], proto, proto)
    for x in ids:
        net.join(x)
    for _ in range(3):
        net.tick()
    return net, ids


@pytest.mark.parametrize("proto_mix", [False, True])
def test_network_delivers_every_message_to_every_node(proto_mix: bool) -> None:
    net, ids = _network(30, 8, seed=3, proto_mix=proto_mix)
    for x in ids:
        mesh = net.routers[x].mesh_peers(T)
        assert 1 <= len(mesh) <= 12
        for y in mesh:  # meshes are symmetric after GRAFT/PRUNE settle
            assert x in net.routers[y].mesh_peers(T)
    mids = [net.publish(ids[i], msg(ids[i], i)) for i in range(0, 30, 3)]
    for x in ids:
        assert sorted(net.got(x)) == sorted(mids)


def test_gossip_recovers_a_message_lost_on_the_mesh() -> None:
    net, ids = _network(16, 10, seed=5)
    src = ids[0]
    # the source's mesh links lose everything: only IHAVE/IWANT gossip can spread the message
    for y in net.routers[src].mesh_peers(T):
        net.lost.add((src, y))
    r = net.routers[src]
    non_mesh = [y for y in r.topic_peers(T) if y not in r.mesh_peers(T)]
    assert non_mesh
    mid = net.publish(src, msg(src, 1))
    assert all(mid not in net.got(x) for x in ids[1:])
    for _ in range(3):
        net.tick()
    assert all(mid in net.got(x) for x in ids)


def test_scoring_pushes_nodes_that_do_not_forward_out_of_the_meshes() -> None:
    topic_params = TopicScoreParams(
        time_in_mesh_weight=0.01,
        time_in_mesh_quantum=1.0,
        time_in_mesh_cap=10.0,
        first_message_deliveries_weight=1.0,
        first_message_deliveries_decay=0.9,
        first_message_deliveries_cap=20.0,
        mesh_message_deliveries_weight=-1.0,
        mesh_message_deliveries_decay=0.9,
        mesh_message_deliveries_threshold=4.0,
        mesh_message_deliveries_cap=40.0,
        mesh_message_deliveries_activation=5.0,
        mesh_message_deliveries_window=0.5,
        mesh_failure_penalty_weight=-1.0,
        mesh_failure_penalty_decay=0.95,
        invalid_message_deliveries_weight=-10.0,
        invalid_message_deliveries_decay=0.5,
    )
    sp = PeerScoreParams(topics={T: topic_params}, behaviour_penalty_weight=-1.0, behaviour_penalty_decay=0.9)
    th = PeerScoreThresholds(gossip=-10, publish=-50, graylist=-80)
    rng = random.Random(11)
    net = Net()
    n = 24
    ids = [pid(500 + i) for i in range(n)]
    for i, x in enumerate(ids):
        net.add(GossipSubRouter(x, GossipSubParams(), sp, th, seed=i))
    edges = {(i, (i + 1) % n) for i in range(n)}
    while len(edges) < n * 5:
        a, b = rng.sample(range(n), 2)
        if (b, a) not in edges:
            edges.add((a, b))
    for a, b in sorted(edges):
        net.connect(ids[a], ids[b])
    for x in ids:
        net.join(x)
    droppers = set(ids[:3])
    net.no_forward |= droppers
    honest = [x for x in ids if x not in droppers]
    seq = 0
    for _ in range(30):
        for _ in range(4):
            seq += 1
            author = rng.choice(honest)
            net.publish(author, msg(author, seq))
        net.tick()
    penalised = 0
    gs = {x: r for x, r in net.routers.items() if isinstance(r, GossipSubRouter)}
    for x in honest:
        r = gs[x]
        assert not set(r.mesh_peers(T)) & droppers
        for d in droppers:
            if d in r.peers:
                assert r.score(d) <= 0  # 0 where it never was a mesh peer
                penalised += r.score(d) < 0
        assert len(net.got(x)) == seq  # everything still arrives
    assert penalised >= len(droppers) * 3
    assert min(gs[x].score(y) for x in honest for y in gs[x].peers if y in honest) >= 0


# --------------------------------------------------------------------------- v1.3


def test_v13_is_on_by_default_can_be_left_out_and_behaves_as_v12() -> None:
    assert GossipSubRouter(ME).protocols[0] == MESHSUB_V13
    assert GossipSubRouter(ME, GossipSubParams(v13=False)).protocols == (MESHSUB_V12, MESHSUB_V11, MESHSUB_V10, FLOODSUB_ID)
    r = router(params=GossipSubParams(), score_params=PeerScoreParams(behaviour_penalty_weight=-1.0), thresholds=PeerScoreThresholds(graylist=-1000, publish=-1000, gossip=-1000))
    assert r.protocols[0] == MESHSUB_V13
    ps = with_peers(r, 3, proto=MESHSUB_V13)
    r.join(T, 0.0)
    hello_and_grafts = r.events()
    # we announce no extension
    assert not any(e.rpc.control and e.rpc.control.extensions for e in sends(hello_and_grafts))
    ext = ControlExtensions(test_extension=True)
    r.handle_rpc(ps[0], RPC(control=ControlMessage(extensions=ext)), 0.0)
    assert r.peer_extensions == {ps[0]: ext}
    r.handle_rpc(ps[0], RPC(control=ControlMessage(extensions=ext)), 0.0)  # a second one: P7
    assert r.score(ps[0]) == -100.0
    # IDONTWANT goes to v1.3 peers too
    r.handle_rpc(ps[1], RPC(publish=[msg(ps[1], 1, size=2000)]), 0.0)
    idw = {e.peer for e in sends(r.events()) if e.rpc.control and e.rpc.control.idontwant}
    assert idw == {ps[0], ps[2]}
    r.remove_peer(ps[0], 0.0)
    assert r.peer_extensions == {}


def test_extensions_from_pre_v13_peers_are_ignored() -> None:
    r = router(params=GossipSubParams(v13=True))
    [p] = with_peers(r, 1)
    r.handle_rpc(p, RPC(control=ControlMessage(extensions=ControlExtensions(partial_messages=True))), 0.0)
    assert r.peer_extensions == {}


def test_copies_received_during_validation_are_not_sent_back() -> None:
    r = router()
    ps = with_peers(r, 6)
    r.join(T, 0.0)
    r.events()
    a, b = r.mesh_peers(T)[:2]
    m = msg(ps[5] if ps[5] not in (a, b) else ps[4], 1)
    r.handle_rpc(a, RPC(publish=[m]), 0.0)
    [v] = of_type(r.events(), Validate)
    r.handle_rpc(b, RPC(publish=[m]), 0.0)  # a copy while validating
    r.events()
    r.validation_result(v.msg_id, ValidationResult.ACCEPT, 0.0)
    targets = {e.peer for e in sends(r.events()) if e.rpc.publish}
    assert a not in targets and b not in targets and targets
    # and nothing is left behind
    assert r._have == {}


@pytest.mark.parametrize("size", [100, 2000])
def test_network_with_slow_validation_delivers_everything(size: int) -> None:
    rng = random.Random(9)
    net = Net(async_validation=True)
    n = 40
    ids = [pid(900 + i) for i in range(n)]
    for i, x in enumerate(ids):
        net.add(GossipSubRouter(x, seed=i))
    edges = {(i, (i + 1) % n) for i in range(n)}
    while len(edges) < n * 6:
        a, b = rng.sample(range(n), 2)
        if (b, a) not in edges:
            edges.add((a, b))
    for a, b in sorted(edges):
        net.connect(ids[a], ids[b])
    for x in ids:
        net.join(x)
    for _ in range(3):
        net.tick()
    mids = []
    for k in range(10):
        author = rng.choice(ids)
        mids.append(net.publish(author, msg(author, k, size=size)))
    for x in ids:
        assert sorted(net.got(x)) == sorted(mids)


def test_heartbeat_grafts_outbound_peers_up_to_d_out() -> None:
    r = router()
    r.join(T, 0.0)
    inbound = with_peers(r, 6)
    for p in inbound:
        r.handle_rpc(p, RPC(control=ControlMessage(graft=[ControlGraft(T)])), 0.0)
    outbound = with_peers(r, 3, start=60, outbound=True)
    r.events()
    r.heartbeat(1.0)
    added = grafts(r.events())
    assert len(added) == 2 and added <= set(outbound)
    assert len(r.mesh_peers(T)) == 8


def test_graft_refused_at_d_hi_carries_px_when_enabled() -> None:
    r = router(params=GossipSubParams(do_px=True, d=2, d_lo=2, d_hi=3, d_score=1, d_out=0, prune_peers=2))
    ps = with_peers(r, 5)
    r.join(T, 0.0)
    r.events()
    for p in ps:
        r.handle_rpc(p, RPC(control=ControlMessage(graft=[ControlGraft(T)])), 0.0)
    pr = prunes(r.events())
    assert len(pr) == 2
    for peer, [prune] in pr.items():
        assert prune.backoff == 60 and len(prune.peers) == 2
        assert peer.to_bytes() not in {x.peer_id for x in prune.peers}
    # a GRAFT mentioning an unknown topic suppresses PX for the whole RPC
    r2 = router(params=GossipSubParams(do_px=True, d=2, d_lo=2, d_hi=3, d_score=1, d_out=0))
    qs = with_peers(r2, 5)
    r2.join(T, 0.0)
    for p in qs[:3]:
        r2.handle_rpc(p, RPC(control=ControlMessage(graft=[ControlGraft(T)])), 0.0)
    r2.events()
    r2.handle_rpc(qs[3], RPC(control=ControlMessage(graft=[ControlGraft(T), ControlGraft("unknown")])), 0.0)
    assert prunes(r2.events()) == {qs[3]: [ControlPrune(T, [], 60)]}
