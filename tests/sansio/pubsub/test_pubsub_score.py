"""Gossipsub v1.1 peer scoring: every parameter P1-P7, topic weights and cap, decay,
retention, thresholds, and scoring driven through the router."""

from __future__ import annotations

import math

import pytest

from pubsub_helpers import msg, of_type, pid, sends

from geventp2p.exceptions import ConfigError
from geventp2p.sansio.pubsub import (
    MESHSUB_V12,
    RPC,
    ControlGraft,
    ControlMessage,
    GossipSubParams,
    GossipSubRouter,
    PeerScore,
    PeerScoreParams,
    PeerScoreThresholds,
    SubOpts,
    TopicScoreParams,
    Validate,
    ValidationResult,
    score_parameter_decay,
)

P, Q, R = pid(1), pid(2), pid(3)
T = "t"


def scorer(topic: TopicScoreParams | None = None, **kw: object) -> PeerScore:
    topics = {T: topic} if topic is not None else {}
    ps = PeerScore(PeerScoreParams(topics=topics, **kw))  # type: ignore[arg-type]
    for p in (P, Q, R):
        ps.add_peer(p, None, 0.0)
    return ps


def test_p1_time_in_mesh_capped() -> None:
    s = scorer(TopicScoreParams(time_in_mesh_weight=0.5, time_in_mesh_quantum=2.0, time_in_mesh_cap=10.0))
    s.graft(P, T, 0.0)
    s.refresh(6.0)
    assert s.score(P) == pytest.approx(0.5 * 3)
    s.refresh(100.0)
    assert s.score(P) == pytest.approx(0.5 * 10)
    s.prune(P, T, 100.0)
    assert s.score(P) == 0.0


def test_p2_first_deliveries_capped_and_decayed() -> None:
    s = scorer(TopicScoreParams(first_message_deliveries_weight=2.0, first_message_deliveries_cap=3.0, first_message_deliveries_decay=0.5))
    for i in range(5):
        s.validate_message(P, b"%d" % i, 0.0)
        s.deliver_message(P, T, b"%d" % i, 0.0)
    assert s.score(P) == pytest.approx(2.0 * 3)
    s.refresh(1.0)
    assert s.score(P) == pytest.approx(2.0 * 1.5)


def _p3_params(**kw: float) -> TopicScoreParams:
    base = dict(
        mesh_message_deliveries_weight=-1.0,
        mesh_message_deliveries_threshold=4.0,
        mesh_message_deliveries_cap=10.0,
        mesh_message_deliveries_activation=2.0,
        mesh_message_deliveries_window=0.5,
        mesh_message_deliveries_decay=0.9,
        mesh_failure_penalty_weight=-2.0,
        mesh_failure_penalty_decay=0.5,
    )
    base.update(kw)
    return TopicScoreParams(**base)  # type: ignore[arg-type]


def test_p3_mesh_delivery_deficit_after_activation() -> None:
    s = scorer(_p3_params())
    s.graft(P, T, 0.0)
    s.refresh(1.0)
    assert s.score(P) == 0.0  # not active yet
    s.refresh(3.0)
    assert s.score(P) == pytest.approx(-16.0)  # deficit 4, squared
    s.validate_message(P, b"m1", 3.0)
    s.deliver_message(P, T, b"m1", 3.0)
    assert s.score(P) == pytest.approx(-9.0)


def test_p3_near_first_duplicates_count_within_the_window() -> None:
    s = scorer(_p3_params())
    for p in (P, Q, R):
        s.graft(p, T, 0.0)
    s.refresh(3.0)
    s.validate_message(P, b"m", 3.0)
    s.duplicate_message(Q, T, b"m", 3.1)  # during validation: counted when it is accepted
    s.deliver_message(P, T, b"m", 3.2)
    s.duplicate_message(R, T, b"m", 3.5)  # 0.3 s after validation: within the window
    assert [s.score(x) for x in (P, Q, R)] == [pytest.approx(-9.0)] * 3
    s.validate_message(P, b"n", 4.0)
    s.deliver_message(P, T, b"n", 4.0)
    s.duplicate_message(Q, T, b"n", 5.0)  # too late
    assert s.score(P) == pytest.approx(-4.0) and s.score(Q) == pytest.approx(-9.0)


def test_p3b_sticky_failure_penalty_on_prune_and_decay() -> None:
    s = scorer(_p3_params())
    s.graft(P, T, 0.0)
    s.refresh(3.0)
    s.prune(P, T, 3.0)
    assert s.score(P) == pytest.approx(-2.0 * 16)
    s.refresh(4.0)
    assert s.score(P) == pytest.approx(-2.0 * 8)


def test_p4_invalid_messages_squared_including_duplicates_during_validation() -> None:
    s = scorer(TopicScoreParams(invalid_message_deliveries_weight=-3.0, invalid_message_deliveries_decay=0.5))
    s.validate_message(P, b"bad", 0.0)
    s.duplicate_message(Q, T, b"bad", 0.0)
    s.reject_message(P, T, b"bad", 0.0)
    s.duplicate_message(R, T, b"bad", 1.0)  # after the verdict: invalid too
    assert [s.score(x) for x in (P, Q, R)] == [-3.0, -3.0, -3.0]
    s.reject_message(P, T, None, 1.0)  # rejected before validation (signature policy)
    assert s.score(P) == -12.0
    s.validate_message(P, b"meh", 0.0)
    s.reject_message(P, T, b"meh", 0.0, ignored=True)
    assert s.score(P) == -12.0
    s.refresh(2.0)
    assert s.score(P) == pytest.approx(-3.0)


def test_p5_p6_p7() -> None:
    s = PeerScore(
        PeerScoreParams(
            app_specific_weight=0.5,
            ip_colocation_factor_weight=-1.0,
            ip_colocation_factor_threshold=2.0,
            ip_colocation_factor_whitelist=frozenset({"10.0.0.9"}),
            behaviour_penalty_weight=-2.0,
            behaviour_penalty_threshold=1.0,
            behaviour_penalty_decay=0.5,
        )
    )
    peers = [pid(10 + i) for i in range(4)]
    for p in peers:
        s.add_peer(p, "1.2.3.4", 0.0)
    s.add_peer(P, "10.0.0.9", 0.0)
    s.add_peer(Q, "10.0.0.9", 0.0)
    s.add_peer(R, "10.0.0.9", 0.0)
    assert s.score(peers[0]) == -4.0  # 4 peers, threshold 2: surplus 2, squared
    assert s.score(P) == 0.0  # whitelisted
    s.set_app_score(P, 6.0)
    assert s.score(P) == 3.0
    s.add_penalty(Q, 1)
    assert s.score(Q) == 0.0  # at the threshold
    s.add_penalty(Q, 2)
    assert s.score(Q) == -8.0  # (3 - 1)^2 * -2
    s.refresh(1.0)
    assert s.score(Q) == pytest.approx(-2.0 * 0.5**2)  # 1.5 -> excess 0.5
    s.remove_peer(peers[3], 0.0)
    # a disconnected peer still counts for its IP until forgotten
    assert s.score(peers[0]) == -4.0


def test_topic_weight_and_cap() -> None:
    s = PeerScore(
        PeerScoreParams(
            topics={
                "a": TopicScoreParams(topic_weight=2.0, first_message_deliveries_weight=1.0, first_message_deliveries_cap=100),
                "b": TopicScoreParams(topic_weight=0.5, first_message_deliveries_weight=1.0, first_message_deliveries_cap=100),
            },
            topic_score_cap=25.0,
            app_specific_weight=1.0,
        )
    )
    s.add_peer(P, None, 0.0)
    for i in range(10):
        s.deliver_message(P, "a", b"a%d" % i, 0.0)
        s.deliver_message(P, "b", b"b%d" % i, 0.0)
        s.deliver_message(P, "unscored", b"c%d" % i, 0.0)
    assert s.score(P) == 25.0  # 20 + 5 capped
    s.set_app_score(P, 10)
    assert s.score(P) == 35.0  # the cap applies to topics only


def test_decay_to_zero_and_retention() -> None:
    s = scorer(TopicScoreParams(invalid_message_deliveries_weight=-1.0, invalid_message_deliveries_decay=0.1), retain_score=10.0, decay_to_zero=0.05)
    s.reject_message(P, T, None, 0.0)
    s.refresh(1.0)
    assert s.score(P) == pytest.approx(-0.01)
    s.refresh(2.0)  # 0.01 < decay_to_zero
    assert s.score(P) == 0.0
    s.reject_message(P, T, None, 2.0)
    s.remove_peer(P, 2.0)
    s.refresh(5.0)  # retained, and not decayed while disconnected
    assert s.score(P) == -1.0
    s.add_peer(P, None, 6.0)
    assert s.score(P) == -1.0
    s.remove_peer(P, 6.0)
    s.refresh(17.0)
    assert s.score(P) == 0.0 and P not in s.peers()


def test_positive_scores_are_not_retained() -> None:
    s = scorer(app_specific_weight=1.0)
    s.set_app_score(P, 5)
    s.remove_peer(P, 0.0)
    assert P not in s.peers()


def test_score_parameter_decay() -> None:
    f = score_parameter_decay(10.0, 1.0, 0.01)
    assert f**10 == pytest.approx(0.01)


@pytest.mark.parametrize(
    "make",
    [
        lambda: TopicScoreParams(topic_weight=-1),
        lambda: TopicScoreParams(time_in_mesh_quantum=0),
        lambda: TopicScoreParams(mesh_message_deliveries_weight=1),
        lambda: TopicScoreParams(invalid_message_deliveries_weight=1),
        lambda: TopicScoreParams(first_message_deliveries_decay=1.0),
        lambda: TopicScoreParams(time_in_mesh_weight=math.nan),
        lambda: PeerScoreParams(behaviour_penalty_weight=1),
        lambda: PeerScoreParams(ip_colocation_factor_weight=-1, ip_colocation_factor_threshold=0.5),
        lambda: PeerScoreParams(decay_interval=0),
        lambda: PeerScoreParams(decay_to_zero=1.5),
        lambda: PeerScoreThresholds(gossip=1),
        lambda: PeerScoreThresholds(gossip=-1, publish=0),
        lambda: PeerScoreThresholds(gossip=-1, publish=-2, graylist=-1),
        lambda: PeerScoreThresholds(accept_px=-1),
        lambda: PeerScoreThresholds(opportunistic_graft=-1),
    ],
)
def test_invalid_score_config(make: object) -> None:
    with pytest.raises(ConfigError):
        make()  # type: ignore[operator]


# --------------------------------------------------------------------------- through the router

ME = pid(100)


def scored_router(topic: TopicScoreParams, thresholds: PeerScoreThresholds | None = None, **kw: object) -> GossipSubRouter:
    sp = PeerScoreParams(topics={T: topic}, **kw)  # type: ignore[arg-type]
    return GossipSubRouter(ME, GossipSubParams(), sp, thresholds, seed=2)


def _peers(r: GossipSubRouter, n: int, start: int = 1) -> list:
    ps = [pid(start + i) for i in range(n)]
    for p in ps:
        r.add_peer(p, MESHSUB_V12, 0.0)
        r.handle_rpc(p, RPC(subscriptions=[SubOpts(True, T)]), 0.0)
    r.events()
    return ps


def test_router_rejection_costs_p4_and_graylist_silences_the_peer() -> None:
    r = scored_router(
        TopicScoreParams(invalid_message_deliveries_weight=-10.0, invalid_message_deliveries_decay=0.5),
        PeerScoreThresholds(gossip=-5, publish=-20, graylist=-30),
    )
    [p] = _peers(r, 1)
    r.join(T, 0.0)
    r.events()
    r.handle_rpc(p, RPC(publish=[msg(p, 1)]), 0.0)
    [v] = of_type(r.events(), Validate)
    r.validation_result(v.msg_id, ValidationResult.REJECT, 0.0)
    assert r.score(p) == -10.0
    # unsigned message: rejected before validation, also P4
    bad = msg(p, 2)
    bad.signature = None
    r.handle_rpc(p, RPC(publish=[bad]), 0.0)
    assert r.score(p) == -40.0
    r.events()
    r.handle_rpc(p, RPC(publish=[msg(p, 3)]), 0.0)
    assert r.events() == []  # graylisted
    # the score decays back above the graylist threshold
    r.heartbeat(1.0)
    r.handle_rpc(p, RPC(publish=[msg(p, 4)]), 1.0)
    assert of_type(r.events(), Validate)


def test_router_first_deliveries_and_mesh_time() -> None:
    r = scored_router(
        TopicScoreParams(
            time_in_mesh_weight=1.0,
            time_in_mesh_quantum=1.0,
            time_in_mesh_cap=100.0,
            first_message_deliveries_weight=1.0,
            first_message_deliveries_cap=50.0,
            first_message_deliveries_decay=0.5,
        )
    )
    ps = _peers(r, 6)
    r.join(T, 0.0)
    r.events()
    src = ps[0]
    for i in range(3):
        r.handle_rpc(src, RPC(publish=[msg(src, i)]), 0.0)
        for v in of_type(r.events(), Validate):
            r.validation_result(v.msg_id, ValidationResult.ACCEPT, 0.0)
    r.events()
    assert r.score(src) == 3.0
    r.heartbeat(4.0)
    assert r.score(src) == pytest.approx(4.0 + 1.5)
    assert r.score(ps[1]) == pytest.approx(4.0)


def test_opportunistic_graft_when_median_is_low() -> None:
    params = GossipSubParams(opportunistic_graft_ticks=2)
    sp = PeerScoreParams(app_specific_weight=1.0)
    r = GossipSubRouter(ME, params, sp, PeerScoreThresholds(opportunistic_graft=5.0), seed=3)
    ps = _peers(r, 10)
    r.join(T, 0.0)
    r.events()
    mesh = set(r.mesh_peers(T))
    outside = [p for p in ps if p not in mesh]
    for p in outside[:3]:
        r.set_app_score(p, 10)
    r.heartbeat(1.0)
    assert not (set(r.mesh_peers(T)) - mesh)
    r.heartbeat(2.0)
    added = set(r.mesh_peers(T)) - mesh
    assert len(added) == 2 and added <= set(outside[:3])


def test_ip_colocation_through_add_peer() -> None:
    r = GossipSubRouter(ME, score_params=PeerScoreParams(ip_colocation_factor_weight=-1.0, ip_colocation_factor_threshold=1.0))
    for i in range(3):
        r.add_peer(pid(i + 1), MESHSUB_V12, 0.0, ip="9.9.9.9")
    r.add_peer(pid(9), MESHSUB_V12, 0.0, ip="8.8.8.8")
    assert r.score(pid(1)) == -4.0 and r.score(pid(9)) == 0.0


def test_graft_from_negative_peer_is_refused_with_backoff() -> None:
    r = scored_router(TopicScoreParams(), PeerScoreThresholds(gossip=-10, publish=-10, graylist=-10), app_specific_weight=1.0)
    [p] = _peers(r, 1, start=20)
    r.join(T, 0.0)
    r.leave(T, 0.0)
    r.set_app_score(p, -1)
    r.join(T, 100.0)
    r.events()
    assert r.mesh_peers(T) == []
    r.handle_rpc(p, RPC(control=ControlMessage(graft=[ControlGraft(T)])), 100.0)
    assert [e.peer for e in sends(r.events()) if e.rpc.control and e.rpc.control.prune] == [p]
    assert r.in_backoff(T, p, 150.0)
