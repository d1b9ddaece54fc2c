"""FloodSubRouter and the shared router pipeline (subscriptions, policy, seen cache, validation)."""

from __future__ import annotations

import pytest

from pubsub_helpers import Net, msg, of_type, pid, sends

from geventp2p.exceptions import ConfigError, LocalProtocolError
from geventp2p.sansio.pubsub import (
    FLOODSUB_ID,
    RPC,
    Deliver,
    DropPeer,
    FloodSubRouter,
    Message,
    MessageDropped,
    PeerJoinedTopic,
    PeerLeftTopic,
    SignaturePolicy,
    SubOpts,
    Validate,
    ValidationResult,
    content_msg_id,
    default_msg_id,
)

A, B, C, D = pid(1), pid(2), pid(3), pid(4)


def line(n: int = 3) -> tuple[Net, list]:
    net = Net()
    ids = [pid(i + 1) for i in range(n)]
    for i in ids:
        net.add(FloodSubRouter(i))
    for x, y in zip(ids, ids[1:]):
        net.connect(x, y)
    for i in ids:
        net.join(i)
    return net, ids


def test_hello_lists_subscriptions_and_peer_events() -> None:
    r = FloodSubRouter(A)
    r.join("b", 0.0)
    r.join("a", 0.0)
    assert r.events() == []  # no peers yet: nothing announced
    r.add_peer(B, FLOODSUB_ID, 0.0)
    [hello] = sends(r.events(), B)
    assert hello.rpc == RPC(subscriptions=[SubOpts(True, "a"), SubOpts(True, "b")])
    r.handle_rpc(B, RPC(subscriptions=[SubOpts(True, "x"), SubOpts(True, "x")]), 0.0)
    assert of_type(r.events(), PeerJoinedTopic) == [PeerJoinedTopic(topic="x", peer=B)]
    assert r.topic_peers("x") == [B]
    r.handle_rpc(B, RPC(subscriptions=[SubOpts(False, "x")]), 0.0)
    assert r.events() == [PeerLeftTopic(topic="x", peer=B)]
    r.handle_rpc(B, RPC(subscriptions=[SubOpts(True, "y")]), 0.0)
    r.events()
    r.remove_peer(B, 0.0)
    assert r.events() == [PeerLeftTopic(topic="y", peer=B)]
    assert r.topics == {}


def test_join_and_leave_are_announced_to_every_peer() -> None:
    r = FloodSubRouter(A)
    r.add_peer(B, FLOODSUB_ID, 0.0)
    r.add_peer(C, FLOODSUB_ID, 0.0)
    r.join("t", 0.0)
    assert {(e.peer, e.rpc.subscriptions[0].subscribe) for e in sends(r.events())} == {(B, True), (C, True)}
    r.leave("t", 0.0)
    assert {(e.peer, e.rpc.subscriptions[0].subscribe) for e in sends(r.events())} == {(B, False), (C, False)}


def test_floodsub_forwards_along_a_line_once() -> None:
    net, (a, b, c) = line()
    m = msg(a, 1)
    mid = net.publish(a, m)
    assert mid == default_msg_id(m)
    assert net.got(a) == [mid] and net.delivered[a][0].received_from is None
    assert net.got(b) == [mid] and net.got(c) == [mid]
    assert net.delivered[c][0].received_from == b
    # nothing goes back to the source or the author
    assert [(s, d) for s, d, rpc in net.sent if rpc.publish] == [(a, b), (b, c)]


def test_floodsub_skips_the_author_and_duplicates() -> None:
    net, (a, b, c) = line()
    net.connect(a, c)  # triangle
    net.publish(a, msg(a, 1))
    assert len(net.got(b)) == 1 and len(net.got(c)) == 1
    # b and c each forward to the other, which drops the duplicate
    drops = [e for e in net.other[b] + net.other[c] if isinstance(e, MessageDropped)]
    assert {e.reason for e in drops} == {"duplicate"}


def test_messages_for_unjoined_topics_are_dropped() -> None:
    r = FloodSubRouter(A)
    r.add_peer(B, FLOODSUB_ID, 0.0)
    r.events()
    r.handle_rpc(B, RPC(publish=[msg(B, 1, topic="nope")]), 0.0)
    [ev] = r.events()
    assert isinstance(ev, MessageDropped) and ev.reason == "not subscribed"


@pytest.mark.parametrize(
    "m,reason",
    [
        (Message(data=b"x", topic="t"), "missing signature"),
        (Message(data=b"x", topic="t", from_peer=B.to_bytes(), seqno=b"", signature=b"s"), "seqno must be 1 to 8 bytes"),
        (Message(data=b"x", topic="t", from_peer=B.to_bytes(), seqno=bytes(9), signature=b"s"), "seqno must be 1 to 8 bytes"),
        (msg(A, 1), "self origin"),
    ],
)
def test_strict_sign_policy_before_validation(m: Message, reason: str) -> None:
    r = FloodSubRouter(A)
    r.add_peer(B, FLOODSUB_ID, 0.0)
    r.join("t", 0.0)
    r.events()
    r.handle_rpc(B, RPC(publish=[m]), 0.0)
    [ev] = r.events()
    assert isinstance(ev, MessageDropped) and ev.reason == reason


def test_strict_no_sign_policy() -> None:
    r = FloodSubRouter(A, signature_policy=SignaturePolicy.STRICT_NO_SIGN, msg_id_fn=content_msg_id)
    r.add_peer(B, FLOODSUB_ID, 0.0)
    r.join("t", 0.0)
    r.events()
    r.handle_rpc(B, RPC(publish=[msg(B, 1)]), 0.0)
    assert of_type(r.events(), MessageDropped)[0].reason.startswith("unexpected author")
    bare = Message(data=b"hi", topic="t")
    r.handle_rpc(B, RPC(publish=[bare]), 0.0)
    [v] = r.events()
    assert isinstance(v, Validate) and v.msg_id == content_msg_id(bare)
    with pytest.raises(LocalProtocolError):
        r.publish(msg(A, 1), 0.0)


def test_validation_outcomes() -> None:
    r = FloodSubRouter(A)
    r.add_peer(B, FLOODSUB_ID, 0.0)
    r.add_peer(C, FLOODSUB_ID, 0.0)
    r.join("t", 0.0)
    r.handle_rpc(C, RPC(subscriptions=[SubOpts(True, "t")]), 0.0)
    r.events()
    for n, res in enumerate((ValidationResult.ACCEPT, ValidationResult.REJECT, ValidationResult.IGNORE)):
        m = msg(B, n)
        r.handle_rpc(B, RPC(publish=[m]), 0.0)
        [v] = r.events()
        assert isinstance(v, Validate) and v.received_from == B
        assert r.pending_validations == 1
        r.validation_result(v.msg_id, res, 0.0)
        evs = r.events()
        if res is ValidationResult.ACCEPT:
            assert isinstance(evs[0], Deliver) and [s.peer for s in sends(evs)] == [C]
        else:
            assert evs == [MessageDropped(msg=m, msg_id=v.msg_id, received_from=B, reason={"reject": "rejected", "ignore": "ignored"}[res.value])]
    r.validation_result(b"unknown", ValidationResult.ACCEPT, 0.0)
    assert r.events() == [] and r.pending_validations == 0


def test_seen_cache_expires() -> None:
    r = FloodSubRouter(A, seen_ttl=5.0)
    r.add_peer(B, FLOODSUB_ID, 0.0)
    r.join("t", 0.0)
    r.events()
    r.handle_rpc(B, RPC(publish=[msg(B, 1)]), 0.0)
    assert of_type(r.events(), Validate)
    r.handle_rpc(B, RPC(publish=[msg(B, 1)]), 4.0)
    assert of_type(r.events(), MessageDropped)[0].reason == "duplicate"
    r.heartbeat(6.0)
    r.handle_rpc(B, RPC(publish=[msg(B, 1)]), 6.0)
    assert of_type(r.events(), Validate)


def test_pending_validation_cap() -> None:
    r = FloodSubRouter(A, max_pending_validations=2)
    r.add_peer(B, FLOODSUB_ID, 0.0)
    r.join("t", 0.0)
    r.events()
    r.handle_rpc(B, RPC(publish=[msg(B, i) for i in range(3)]), 0.0)
    evs = r.events()
    assert len(of_type(evs, Validate)) == 2
    assert of_type(evs, MessageDropped)[0].reason == "validation queue full"


def test_publish_rejects_duplicates_and_policy_violations() -> None:
    r = FloodSubRouter(A)
    r.publish(msg(A, 1), 0.0)
    with pytest.raises(LocalProtocolError):
        r.publish(msg(A, 1), 0.0)
    with pytest.raises(LocalProtocolError):
        r.publish(Message(data=b"", topic="t"), 0.0)


def test_per_topic_message_id_function() -> None:
    r = FloodSubRouter(A)
    r.set_msg_id_fn("c", content_msg_id)
    m = msg(A, 1, topic="c")
    assert r.msg_id(m) == content_msg_id(m)
    r.set_msg_id_fn("c", None)
    assert r.msg_id(m) == default_msg_id(m)


def test_failing_message_id_function_drops_the_message() -> None:
    def boom(m: Message) -> bytes:
        raise ValueError("no")

    r = FloodSubRouter(A, msg_id_fn=boom)
    r.add_peer(B, FLOODSUB_ID, 0.0)
    r.join("t", 0.0)
    r.events()
    r.handle_rpc(B, RPC(publish=[msg(B, 1)]), 0.0)
    assert of_type(r.events(), MessageDropped)[0].reason == "message id function failed"


def test_bad_rpc_drops_the_peer_and_unknown_peers_are_ignored() -> None:
    r = FloodSubRouter(A)
    r.add_peer(B, FLOODSUB_ID, 0.0)
    r.events()
    r.handle_rpc_error(B, "RPC too large", 0.0)
    assert r.events() == [DropPeer(peer=B, reason="RPC too large")]
    r.handle_rpc(C, RPC(subscriptions=[SubOpts(True, "t")]), 0.0)
    assert r.events() == [] and r.topics == {}


def test_config_and_protocol_checks() -> None:
    with pytest.raises(ConfigError):
        FloodSubRouter(A, seen_ttl=0)
    with pytest.raises(ConfigError):
        FloodSubRouter(b"x")  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        FloodSubRouter(A).add_peer(B, "/meshsub/1.1.0", 0.0)


def test_strict_no_sign_defaults_to_content_ids_and_topic_cap() -> None:
    r = FloodSubRouter(A, signature_policy=SignaturePolicy.STRICT_NO_SIGN)
    m = Message(data=b"abc", topic="t")
    assert r.msg_id(m) == content_msg_id(m)
    r = FloodSubRouter(A, max_topics_per_peer=2)
    r.add_peer(B, FLOODSUB_ID, 0.0)
    r.handle_rpc(B, RPC(subscriptions=[SubOpts(True, t) for t in "xyz"]), 0.0)
    assert sorted(r.peer_topics[B]) == ["x", "y"]
