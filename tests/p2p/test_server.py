"""The p2p Server: two (or three) Servers over real TCP loopback."""

from __future__ import annotations

import contextlib
import time
from typing import Any, Iterator

import gevent
import pytest
from gevent.queue import Queue

from geventp2p.core.peer import PeerId, PeerInfo
from geventp2p.exceptions import (
    DirectFrameTooLargeError,
    DirectSendError,
    DirectSendTimeoutError,
    MultiaddrError,
    P2PError,
    P2PServerError,
    ServerStoppedError,
    StreamResetError,
    TopicAlreadyRegisteredError,
    TopicNotRegisteredError,
    UndecodableMessageError,
    UnknownTopicError,
)
from geventp2p.net.swarm import SwarmConfig
from geventp2p.p2p import (
    ACCEPT,
    DIRECT_PROTOCOL_ID,
    IGNORE,
    REJECT,
    Broadcaster,
    Message,
    RateLimiter,
    Sender,
    Server,
    ServerConfig,
    make_peer,
)
from geventp2p.p2p.adapters import Handler
from geventp2p.p2p.direct import encode_frame
from geventp2p._speedups import varint
from geventp2p.sansio.pubsub.gossipsub import GossipSubParams
from tests.p2p._msgs import Note, Other, Ping

WAIT = 20.0
FAST = GossipSubParams(heartbeat_interval=0.1, heartbeat_initial_delay=0.02)


def cfg(**kw: Any) -> ServerConfig:
    kw.setdefault("gossipsub", FAST)
    kw.setdefault("host_options", {"services": ["identify"]})
    return ServerConfig(**kw)


@contextlib.contextmanager
def servers(n: int, **kw: Any) -> Iterator[list[Server]]:
    srvs = [Server(cfg(**kw)) for _ in range(n)]
    try:
        for s in srvs:
            s.start()
        yield srvs
    finally:
        for s in srvs:
            s.stop()


def connect(a: Server, b: Server) -> None:
    b.host.connect(a.addrs()[0], timeout=WAIT)


def test_lifecycle_status_and_identity() -> None:
    s = Server(cfg())
    pid = s.peer_id
    assert isinstance(s.status(), ServerStoppedError)       # not started: returned, not raised
    assert s.addrs() == [] and s.host is None
    with s:
        assert s.status() is None
        assert s.peer_id == pid and s.host.id == pid
        addrs = s.addrs()
        assert addrs and all(a.endswith(f"/p2p/{pid}") for a in addrs)
        s.start()                                             # idempotent while running
    err = s.status()
    assert isinstance(err, ServerStoppedError) and isinstance(err, P2PServerError)
    s.stop()                                                  # idempotent
    with pytest.raises(ServerStoppedError):
        s.start()
    with pytest.raises(ServerStoppedError):
        s.register_topic("late", Ping)


def test_register_topic_rules() -> None:
    with servers(1) as (s,):
        s.register_topic("ping", Ping)
        with pytest.raises(TopicAlreadyRegisteredError):
            s.register_topic("ping2", Ping)                   # one type, two topics
        with pytest.raises(TopicAlreadyRegisteredError):
            s.register_topic("ping", Note)                    # one topic, two types
        with pytest.raises(TypeError):
            s.register_topic("x", dict)                       # not a protobuf class
        with pytest.raises(TypeError):
            s.register_topic("x", Note, 42)                   # type: ignore[arg-type]
        assert s.topic_of(Ping) == "ping"
        with pytest.raises(TopicNotRegisteredError):
            s.feed(Note)
        with pytest.raises(TopicNotRegisteredError):
            s.broadcast(Note(text="x"))
        with pytest.raises(TypeError):
            s.broadcast(b"raw bytes")
        with pytest.raises(TypeError):
            s.send({"n": 1}, s.peer_id)


def test_broadcast_before_start_and_after_stop() -> None:
    s = Server(cfg())
    s.register_topic("ping", Ping)                            # before start: fine
    with pytest.raises(ServerStoppedError):
        s.broadcast(Ping(n=1))
    s.start()
    s.stop()
    with pytest.raises(ServerStoppedError):
        s.broadcast(Ping(n=1))


def test_protocols_and_make_peer() -> None:
    with servers(1) as (s,):
        assert isinstance(s, Sender) and isinstance(s, Broadcaster)
        info = make_peer(s.addrs()[0])
        assert info.peer_id == s.peer_id and len(info.addrs) == 1
    with pytest.raises(MultiaddrError):
        make_peer("/ip4/127.0.0.1/tcp/1")
    with pytest.raises(MultiaddrError):
        make_peer("not a multiaddr")
    with pytest.raises(P2PError):
        make_peer("/ip4/127.0.0.1/tcp/1/p2p/notapeerid")
    with pytest.raises(P2PError):
        ServerConfig(bootstrap=["/ip4/127.0.0.1/tcp/1"])
    with pytest.raises(P2PError):
        ServerConfig(router="carrier-pigeon")


@pytest.mark.parametrize("router", ["gossipsub", "floodsub"])
def test_broadcast_reaches_remote_feed(router: str) -> None:
    with servers(2, router=router) as (a, b):
        for s in (a, b):
            s.register_topic("ping", Ping)
        qa: Queue = Queue()
        qb: Queue = Queue()
        a.subscribe(Ping, qa)
        b.subscribe(Ping, qb)
        connect(a, b)
        a.wait_for_peers(Ping, timeout=WAIT)
        a.broadcast(Ping(n=1, body=b"hi"), timeout=WAIT)
        m = qb.get(timeout=WAIT)
        assert isinstance(m, Message) and m.via == "pubsub" and m.topic == "ping"
        assert m.peer == a.peer_id and m.data == Ping(n=1, body=b"hi") and m.msg_id
        b.wait_for_peers(Ping, timeout=WAIT)
        b.broadcast(Ping(n=2), timeout=WAIT)
        assert qa.get(timeout=WAIT).data.n == 2
        assert qa.qsize() == 0 and qb.qsize() == 0             # own broadcasts don't come back


def test_register_after_start_and_several_topics() -> None:
    with servers(2) as (a, b):
        connect(a, b)
        for s in (a, b):
            s.register_topic("ping", Ping)
            s.register_topic("note", Note)
        q1: Queue = Queue()
        q2: Queue = Queue()
        b.subscribe(Ping, q1)
        b.subscribe(Note, q2)
        a.wait_for_peers(Ping, timeout=WAIT)
        a.wait_for_peers(Note, timeout=WAIT)
        a.broadcast(Note(text="n"), timeout=WAIT)
        a.broadcast(Ping(n=5), timeout=WAIT)
        assert q2.get(timeout=WAIT).data.text == "n"
        assert q1.get(timeout=WAIT).data.n == 5


@pytest.mark.parametrize("how", ["peer_id", "string", "peerinfo", "multiaddr"])
def test_send_direct_reaches_feed(how: str) -> None:
    with servers(2) as (a, b):
        a.register_topic("ping", Ping)
        b.register_topic("ping", Ping)
        q: Queue = Queue()
        b.subscribe(Ping, q)
        target: Any = {"peer_id": b.peer_id, "string": str(b.peer_id),
                       "peerinfo": make_peer(b.addrs()[0]), "multiaddr": b.addrs()[0]}[how]
        if how in ("peer_id", "string"):
            connect(b, a)                                      # the peerstore needs addresses
        a.send(Ping(n=9, body=b"d"), target, timeout=WAIT)
        m = q.get(timeout=WAIT)
        assert m.via == "direct" and m.peer == a.peer_id and m.data.n == 9 and m.msg_id == b""
        assert a.stats["sent_direct"] == 1 and b.stats["direct_delivered"] == 1


def test_send_errors_name_the_peer() -> None:
    with servers(2) as (a, b):
        a.register_topic("ping", Ping)
        # b has not registered the topic: unknown topic on its side, the send itself succeeds
        a.send(Ping(n=1), make_peer(b.addrs()[0]), timeout=WAIT)
        _wait_for(lambda: len(b.errors) == 1)
        assert isinstance(b.errors[0], UnknownTopicError) and b.errors[0].peer == a.peer_id
        # a peer nobody listens for
        ghost = Server(cfg())
        with pytest.raises(DirectSendError) as ei:
            a.send(Ping(n=1), PeerInfo(ghost.peer_id, ["/ip4/127.0.0.1/tcp/1"]), timeout=WAIT)
        assert ei.value.peer == ghost.peer_id and ei.value.cause is not None
        assert str(ghost.peer_id) in str(ei.value)
        with pytest.raises(DirectSendError):
            a.send(Ping(n=1), a.peer_id)
        with pytest.raises(DirectSendError):
            a.send(Ping(n=1), "not-a-peer-id")
        with pytest.raises(DirectSendError):                  # over the frame limit, checked locally
            a.send(Ping(body=b"x" * (2 << 20)), b.peer_id)


def test_send_timeout() -> None:
    """A peer that accepts TCP but never answers: the send times out, typed."""
    from gevent import socket

    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    port = lsock.getsockname()[1]
    ghost = Server(cfg())
    try:
        with servers(1) as (a,):
            a.register_topic("ping", Ping)
            with pytest.raises(DirectSendTimeoutError) as ei:
                a.send(Ping(n=1), PeerInfo(ghost.peer_id, [f"/ip4/127.0.0.1/tcp/{port}"]), timeout=0.5)
            assert ei.value.peer == ghost.peer_id and isinstance(ei.value, TimeoutError)
    finally:
        lsock.close()


def _wait_for(cond: Any, timeout: float = WAIT) -> None:
    with gevent.Timeout(timeout):
        while not cond():
            gevent.sleep(0.01)


def _stopper(nxt: Handler) -> Handler:
    def h(m: Message) -> None:
        if m.data.n % 2 == 0:  # odd ones only
            nxt(m)
    return h


def test_adapters_on_both_paths_and_dropped_messages_not_forwarded() -> None:
    """a - b - c in a line; b's adapter stops even n: c never sees them (not forwarded)."""
    with servers(3) as (a, b, c):
        seen_b: list[str] = []

        def tap(nxt: Handler) -> Handler:
            def h(m: Message) -> None:
                seen_b.append(m.via)
                nxt(m)
            return h

        a.register_topic("ping", Ping)
        b.register_topic("ping", Ping, tap, _stopper)
        c.register_topic("ping", Ping)
        qb: Queue = Queue()
        qc: Queue = Queue()
        b.subscribe(Ping, qb)
        c.subscribe(Ping, qc)
        connect(a, b)
        connect(b, c)
        a.wait_for_peers(Ping, timeout=WAIT)
        b.wait_for_peers(Ping, 2, timeout=WAIT)
        for n in range(1, 5):
            a.broadcast(Ping(n=n), timeout=WAIT)
        got_b = [qb.get(timeout=WAIT).data.n for _ in range(2)]
        got_c = [qc.get(timeout=WAIT).data.n for _ in range(2)]
        assert sorted(got_b) == [2, 4] and sorted(got_c) == [2, 4]
        # direct path: same chain
        a.send(Ping(n=7), b.peer_id, timeout=WAIT)
        a.send(Ping(n=8), b.peer_id, timeout=WAIT)
        m = qb.get(timeout=WAIT)
        assert m.via == "direct" and m.data.n == 8
        _wait_for(lambda: seen_b.count("direct") == 2)
        assert seen_b.count("pubsub") == 4
        assert b.stats["pubsub_dropped_by_adapter"] == 2 and b.stats["direct_dropped_by_adapter"] == 1
        assert qb.qsize() == 0 and qc.qsize() == 0


def test_rate_limiter_adapter_on_the_receiver() -> None:
    class Frozen:
        t = 0.0

        def __call__(self) -> float:
            return self.t

    rl = RateLimiter(rate=1, burst=2, clock=Frozen())
    with servers(2) as (a, b):
        a.register_topic("ping", Ping)
        b.register_topic("ping", Ping, rl)
        q: Queue = Queue()
        b.subscribe(Ping, q)
        for n in range(4):
            a.send(Ping(n=n), make_peer(b.addrs()[0]), timeout=WAIT)
        _wait_for(lambda: rl.passed + rl.dropped == 4)
        assert rl.passed == 2 and rl.dropped == 2
        assert [q.get(timeout=WAIT).data.n for _ in range(2)] == [0, 1] and q.qsize() == 0


def test_register_validator_feeds_gossipsub() -> None:
    with servers(3) as (a, b, c):
        verdicts = {1: ACCEPT, 2: REJECT, 3: IGNORE, 4: True}
        a.register_topic("ping", Ping)
        b.register_topic("ping", Ping)
        c.register_topic("ping", Ping)
        b.register_validator(Ping, lambda m: verdicts[m.data.n])
        qb: Queue = Queue()
        qc: Queue = Queue()
        b.subscribe(Ping, qb)
        c.subscribe(Ping, qc)
        connect(a, b)
        connect(b, c)
        a.wait_for_peers(Ping, timeout=WAIT)
        b.wait_for_peers(Ping, 2, timeout=WAIT)
        for n in (1, 2, 3, 4):
            a.broadcast(Ping(n=n), timeout=WAIT)
        assert sorted(qb.get(timeout=WAIT).data.n for _ in range(2)) == [1, 4]
        assert sorted(qc.get(timeout=WAIT).data.n for _ in range(2)) == [1, 4]
        assert b.stats["pubsub_rejected"] == 1 and b.stats["pubsub_ignored"] == 1
        assert b.pubsub.drop_counts.get("rejected") == 1
        with pytest.raises(TypeError):
            b.register_validator(Ping, "nope")  # type: ignore[arg-type]


def _raw_stream(a: Server, b: Server) -> Any:
    return a.host.new_stream(b.peer_id, [DIRECT_PROTOCOL_ID], timeout=WAIT)


def _expect_reset(stream: Any) -> None:
    with pytest.raises(StreamResetError):
        while stream.read(65536, timeout=WAIT):
            pass


@pytest.mark.parametrize("case", ["unknown_topic", "undecodable", "oversized", "bad_topic_header", "cut_frame"])
def test_direct_bad_input(case: str) -> None:
    """A typed error, that stream reset; a concurrent good send still arrives; no leaks."""
    with servers(2) as (a, b):
        b_cfg_errors = b.errors
        a.register_topic("ping", Ping)
        b.register_topic("ping", Ping)
        q: Queue = Queue()
        b.subscribe(Ping, q)
        connect(a, b)
        bad = _raw_stream(a, b)
        if case == "unknown_topic":
            bad.write(encode_frame("nope", Ping(n=1).SerializeToString()))
            want: type = UnknownTopicError
        elif case == "undecodable":
            bad.write(encode_frame("ping", b"\xff\xff\xff"))
            want = UndecodableMessageError
        elif case == "oversized":
            bad.write(varint.encode_uvarint((1 << 20) + 1) + b"\x04ping")  # body never sent
            want = DirectFrameTooLargeError
        elif case == "bad_topic_header":
            bad.write(varint.encode_uvarint(3) + b"\x09ab")
            want = UndecodableMessageError
        else:
            bad.write(varint.encode_uvarint(50) + b"\x04ping")
            bad.close_write()
            want = UndecodableMessageError
        good = gevent.spawn(a.send, Ping(n=42), b.peer_id, WAIT)
        _expect_reset(bad)
        good.get(timeout=WAIT)
        assert q.get(timeout=WAIT).data.n == 42
        _wait_for(lambda: len(b_cfg_errors) == 1)
        err = b_cfg_errors[0]
        assert isinstance(err, want) and err.peer == a.peer_id
        # the connection and the pubsub path are unaffected
        a.wait_for_peers(Ping, timeout=WAIT)
        a.broadcast(Ping(n=43), timeout=WAIT)
        assert q.get(timeout=WAIT).data.n == 43
        assert len(b_cfg_errors) == 1
        bad.reset()


def test_direct_on_error_callback_and_several_frames_per_stream() -> None:
    seen: list[P2PError] = []
    a = Server(cfg())
    b = Server(cfg(on_error=seen.append))
    with a, b:
        a.register_topic("ping", Ping)
        b.register_topic("ping", Ping)
        q: Queue = Queue()
        b.subscribe(Ping, q)
        connect(a, b)
        s = _raw_stream(a, b)
        s.write(encode_frame("ping", Ping(n=1).SerializeToString())
                + encode_frame("ping", Ping(n=2).SerializeToString()))
        assert [q.get(timeout=WAIT).data.n for _ in range(2)] == [1, 2]
        s.write(encode_frame("other", b""))
        _expect_reset(s)
        _wait_for(lambda: len(seen) == 1)
        assert isinstance(seen[0], UnknownTopicError) and seen[0].topic == "other"


def _both_connected(a: Server, b: Server) -> None:
    """Until each side holds the connection.  The dialer's Noise handshake (early muxer)
    ends when it sends the last message, before the listener has read it: closing from
    the listener's side at that moment closes nothing (the earlier flake of the test below)."""
    _wait_for(lambda: bool(b.host.network.conns_to_peer(a.peer_id)))
    _wait_for(lambda: bool(a.host.network.conns_to_peer(b.peer_id)))


class _Gater:
    """A bootstrap node's gater: never dials out (only the other side reconnects), refuses
    the next ``refuse_accept`` inbound connections at accept (the dialer's handshake then
    fails) and hangs up on every upgraded one while ``hang_up``."""

    def __init__(self) -> None:
        self.refuse_accept = 0
        self.refused = 0
        self.hang_up = False

    def intercept_peer_dial(self, peer: Any) -> bool:
        return False

    def intercept_accept(self, addrs: Any) -> bool:
        if self.refuse_accept:
            self.refuse_accept -= 1
            self.refused += 1
            return False
        return True

    def intercept_upgraded(self, conn: Any) -> bool:
        return not self.hang_up


def test_bootstrap_connects_and_reconnects() -> None:
    with servers(1) as (a,):
        a.register_topic("ping", Ping)
        b = Server(cfg(bootstrap=[a.addrs()[0]], reconnect_backoff=0.05, reconnect_backoff_max=0.2))
        with b:
            b.register_topic("ping", Ping)
            _both_connected(a, b)
            assert b.host.connmgr.is_protected(a.peer_id, "p2p-bootstrap")
            a.host.network.close_peer(b.peer_id)                 # the other side hangs up
            _wait_for(lambda: b.stats.get("bootstrap_connected", 0) >= 2)
            _wait_for(lambda: bool(b.host.network.conns_to_peer(a.peer_id)))
            q: Queue = Queue()
            a.subscribe(Ping, q)
            b.wait_for_peers(Ping, timeout=WAIT)
            b.broadcast(Ping(n=3), timeout=WAIT)
            assert q.get(timeout=WAIT).data.n == 3


def test_bootstrap_redial_is_not_held_back_by_the_swarm_dial_backoff() -> None:
    """A failed redial puts the address in the swarm's dial backoff (60 s here); the
    Server's own schedule (0.05-0.2 s) still decides when it dials again.  (The refused
    redial may be the Server's or another service's, e.g. pubsub's: the backoff is the
    swarm's either way.)"""
    gater = _Gater()
    a = Server(cfg(host_options={"services": ["identify"], "gater": gater}))
    slow = SwarmConfig(backoff_base=60.0, backoff_max=600.0)
    with a:
        b = Server(cfg(bootstrap=[a.addrs()[0]], reconnect_backoff=0.05, reconnect_backoff_max=0.2,
                       host_options={"services": ["identify"], "swarm_config": slow}))
        with b:
            _both_connected(a, b)
            gater.refuse_accept = 1
            a.host.network.close_peer(b.peer_id)
            _wait_for(lambda: gater.refused == 1)  # the first redial fails
            _both_connected(a, b)  # the next one gets through, not 60 s later


def test_bootstrap_peer_that_hangs_up_is_redialled_on_the_schedule() -> None:
    """A peer that accepts and at once closes is redialled after the backoff (doubling),
    not in a tight loop of handshakes."""
    gater = _Gater()
    a = Server(cfg(host_options={"services": ["identify"], "gater": gater}))
    backoff = 0.25
    with a:
        b = Server(cfg(bootstrap=[a.addrs()[0]], reconnect_backoff=backoff, reconnect_backoff_max=1.0))
        with b:
            _both_connected(a, b)
            dialled: list[float] = []
            connect = b.host.connect

            def timed_connect(*args: Any, **kw: Any) -> Any:
                conn = connect(*args, **kw)
                dialled.append(time.monotonic())
                return conn

            b.host.connect = timed_connect
            gater.hang_up = True
            a.host.network.close_peer(b.peer_id)
            _wait_for(lambda: len(dialled) >= 4)
            gaps = [y - x for x, y in zip(dialled, dialled[1:])]
            assert min(gaps) >= 0.8 * backoff, gaps  # jitter is 0.8-1.2x
            gater.hang_up = False
            _both_connected(a, b)  # A adds only connections it did not hang up on


def test_bootstrap_unreachable_retries_until_stop() -> None:
    ghost = Server(cfg())
    s = Server(cfg(bootstrap=[f"/ip4/127.0.0.1/tcp/1/p2p/{ghost.peer_id}"],
                   reconnect_backoff=0.01, reconnect_backoff_max=0.05, dial_timeout=1))
    with s:
        _wait_for(lambda: s.stats.get("bootstrap_failed", 0) >= 3)
        assert s.status() is None


def test_bootstrap_loop_survives_an_unexpected_error() -> None:
    ghost = Server(cfg())
    s = Server(cfg(bootstrap=[f"/ip4/127.0.0.1/tcp/1/p2p/{ghost.peer_id}"],
                   reconnect_backoff=0.01, reconnect_backoff_max=0.05, dial_timeout=1))
    with s:
        calls: list[float] = []

        def broken(*args: Any, **kw: Any) -> Any:
            calls.append(time.monotonic())
            raise RuntimeError("a bug in a dial")

        s.host.connect = broken
        _wait_for(lambda: len(calls) >= 2)  # logged and retried, the loop did not end
        assert s.stats["bootstrap_failed"] >= 2


def test_stop_with_a_blocked_feed_consumer() -> None:
    """A full feed channel blocks delivery; stop() still ends every greenlet."""
    with servers(2) as (a, b):
        a.register_topic("ping", Ping)
        b.register_topic("ping", Ping)
        q: Queue = Queue(maxsize=1)
        b.subscribe(Ping, q)
        connect(a, b)
        for n in range(3):
            a.send(Ping(n=n), b.peer_id, timeout=WAIT)
        a.wait_for_peers(Ping, timeout=WAIT)
        a.broadcast(Ping(n=10), timeout=WAIT)
        _wait_for(lambda: q.full())


def test_feed_values_are_not_relayed() -> None:
    """What a consumer sends into a feed stays local."""
    with servers(2) as (a, b):
        a.register_topic("ping", Ping)
        b.register_topic("ping", Ping)
        qb: Queue = Queue()
        b.subscribe(Ping, qb)
        connect(a, b)
        a.wait_for_peers(Ping, timeout=WAIT)
        fake = Message(a.peer_id, Ping(n=1), "ping", 0.0, "pubsub")
        qa: Queue = Queue()
        a.subscribe(Ping, qa)
        assert a.feed(Ping).send(fake) == 1
        a.broadcast(Ping(n=2), timeout=WAIT)
        assert qb.get(timeout=WAIT).data.n == 2 and qb.qsize() == 0


def test_other_type_for_feed() -> None:
    with servers(1) as (s,):
        s.register_topic("other", Other)
        with pytest.raises(TypeError):
            s.feed(Other).send(Other(x=1))                     # a feed carries Message values
        assert isinstance(s.peer_id, PeerId)


def test_pooled_validation_adapter_errors_and_direct_validators() -> None:
    """inline_validation=False: adapters may block; an adapter that raises REJECTs; direct
    messages pass the validators too."""
    def slow(nxt: Handler) -> Handler:
        def h(m: Message) -> None:
            gevent.sleep(0.01)  # blocking is fine on the validation pool
            if m.data.n == 13:
                raise RuntimeError("unlucky")
            nxt(m)
        return h

    with servers(2, inline_validation=False) as (a, b):
        a.register_topic("ping", Ping)
        b.register_topic("ping", Ping, slow)
        b.register_validator(Ping, lambda m: m.data.n != 666)
        q: Queue = Queue()
        b.subscribe(Ping, q)
        connect(a, b)
        a.wait_for_peers(Ping, timeout=WAIT)
        for n in (13, 666, 1):
            a.broadcast(Ping(n=n), timeout=WAIT)
        assert q.get(timeout=WAIT).data.n == 1
        a.send(Ping(n=666), b.peer_id, timeout=WAIT)
        a.send(Ping(n=2), b.peer_id, timeout=WAIT)
        assert q.get(timeout=WAIT).data.n == 2 and q.qsize() == 0
        assert b.stats["pubsub_rejected"] == 2 and b.stats["direct_rejected"] == 1


def test_status_reports_a_host_closed_underneath() -> None:
    with servers(1) as (s,):
        s.register_topic("ping", Ping)
        assert s.status() is None
        s.host.close()
        err = s.status()
        assert isinstance(err, ServerStoppedError) and "host" in str(err)
        with pytest.raises(ServerStoppedError):
            s.broadcast(Ping(n=1))
