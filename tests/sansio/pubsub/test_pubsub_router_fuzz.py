"""Hypothesis: random RPCs, validation outcomes, joins and heartbeats from several peers
never break the gossipsub router's invariants (the core of a hostile-input test)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pubsub_helpers import pid

from geventp2p.sansio.pubsub import (
    FLOODSUB_ID,
    MESHSUB_V10,
    MESHSUB_V11,
    MESHSUB_V12,
    MESHSUB_V13,
    RPC,
    ControlExtensions,
    ControlGraft,
    ControlIDontWant,
    ControlIHave,
    ControlIWant,
    ControlMessage,
    ControlPrune,
    GossipSubParams,
    GossipSubRouter,
    Message,
    PeerInfoPX,
    PeerScoreParams,
    PeerScoreThresholds,
    SendRPC,
    SubOpts,
    TopicScoreParams,
    Validate,
    ValidationResult,
    decode_rpc,
    encode_rpc,
)

PEERS = [pid(700 + i) for i in range(6)]
ME = pid(799)
TOPICS = ["a", "b"]

_peer = st.integers(0, len(PEERS) - 1)
_topic = st.sampled_from(TOPICS + ["zz"])
_ids = st.lists(st.binary(min_size=1, max_size=6), max_size=4)
_msgs = st.builds(
    lambda author, n, topic, big: Message(
        data=b"x" * (2000 if big else 3),
        topic=topic,
        from_peer=PEERS[author].to_bytes(),
        seqno=n.to_bytes(8, "big"),
        signature=b"s",
    ),
    _peer,
    st.integers(0, 20),
    _topic,
    st.booleans(),
)
_ctl = st.builds(
    ControlMessage,
    ihave=st.lists(st.builds(ControlIHave, topic=_topic, message_ids=_ids), max_size=2),
    iwant=st.lists(st.builds(ControlIWant, message_ids=_ids), max_size=2),
    graft=st.lists(st.builds(ControlGraft, topic=_topic), max_size=2),
    prune=st.lists(
        st.builds(
            ControlPrune,
            topic=_topic,
            peers=st.lists(st.builds(PeerInfoPX, peer_id=st.sampled_from([p.to_bytes() for p in PEERS] + [b"\x00"])), max_size=2),
            backoff=st.none() | st.integers(0, 100),
        ),
        max_size=2,
    ),
    idontwant=st.lists(st.builds(ControlIDontWant, message_ids=_ids), max_size=2),
    extensions=st.none() | st.builds(ControlExtensions, partial_messages=st.none() | st.booleans()),
)
_rpc = st.builds(
    RPC,
    subscriptions=st.lists(st.builds(SubOpts, subscribe=st.booleans(), topic=_topic), max_size=2),
    publish=st.lists(_msgs, max_size=2),
    control=st.none() | _ctl,
)
_action = st.one_of(
    st.tuples(st.just("rpc"), _peer, _rpc),
    st.tuples(st.just("tick"), st.floats(0.1, 20.0)),
    st.tuples(st.just("join"), st.sampled_from(TOPICS)),
    st.tuples(st.just("leave"), st.sampled_from(TOPICS)),
    st.tuples(st.just("remove"), _peer),
    st.tuples(st.just("add"), _peer, st.sampled_from([MESHSUB_V13, MESHSUB_V12, MESHSUB_V11, MESHSUB_V10, FLOODSUB_ID]), st.booleans()),
    st.tuples(st.just("publish"), st.sampled_from(TOPICS), st.integers(0, 1000)),
    st.tuples(st.just("bad"), _peer),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_action, max_size=40), st.sampled_from([ValidationResult.ACCEPT, ValidationResult.REJECT, ValidationResult.IGNORE]), st.booleans())
def test_random_inputs_keep_invariants(actions: list, verdict: ValidationResult, scored: bool) -> None:
    params = GossipSubParams(d=3, d_lo=2, d_hi=4, d_score=1, d_out=0, d_lazy=2, do_px=True, opportunistic_graft_ticks=2, v13=True)
    sp = PeerScoreParams(
        topics={"a": TopicScoreParams(mesh_message_deliveries_weight=-1, mesh_message_deliveries_threshold=1, mesh_message_deliveries_cap=2, mesh_message_deliveries_activation=1, invalid_message_deliveries_weight=-1, first_message_deliveries_weight=1, first_message_deliveries_cap=5)},
        app_specific_weight=1,
        behaviour_penalty_weight=-1,
        behaviour_penalty_decay=0.5,
    )
    th = PeerScoreThresholds(gossip=-2, publish=-3, graylist=-5, accept_px=1, opportunistic_graft=1)
    r = GossipSubRouter(ME, params, sp if scored else None, th if scored else None, seed=0, direct_peers=[PEERS[5]])
    now = 0.0
    seq = 0
    for p in PEERS[:4]:
        r.add_peer(p, MESHSUB_V12, now, outbound=p == PEERS[0])
    for act in actions:
        kind = act[0]
        if kind == "rpc":
            peer = PEERS[act[1]]
            r.handle_rpc(peer, decode_rpc(encode_rpc(act[2])), now)
        elif kind == "tick":
            now += act[1]
            r.heartbeat(now)
        elif kind == "join":
            r.join(act[1], now)
        elif kind == "leave":
            r.leave(act[1], now)
        elif kind == "remove":
            r.remove_peer(PEERS[act[1]], now)
        elif kind == "add":
            r.add_peer(PEERS[act[1]], act[2], now, outbound=act[3])
        elif kind == "publish":
            seq += 1
            m = Message(data=b"%d" % act[2], topic=act[1], from_peer=ME.to_bytes(), seqno=seq.to_bytes(8, "big"), signature=b"s")
            r.publish(m, now)
        elif kind == "bad":
            r.handle_rpc_error(PEERS[act[1]], "bad", now)
        for ev in r.events():
            if isinstance(ev, Validate):
                r.validation_result(ev.msg_id, verdict, now)
            elif isinstance(ev, SendRPC):
                assert ev.peer in r.peers
                assert len(encode_rpc(ev.rpc)) < 1 << 20
        # invariants
        for topic, mesh in r.mesh.items():
            assert topic in r.joined
            for p in mesh:
                assert p in r.peers and r.peers[p] != FLOODSUB_ID
                assert p not in r.direct
        for topic, fan in r.fanout.items():
            assert topic not in r.mesh
            assert all(p in r.peers for p in fan)
        assert r.pending_validations == 0
    r.heartbeat(now + 1000.0)
    r.events()
    assert r.promises() == {}
