"""The pubsub shell (FloodSub, GossipSub) on 2-5 real hosts over the memory transport.

Every test runs under the leak check of tests/protocols (no greenlet or socket
outlives it) and a gevent timeout.
"""

from __future__ import annotations

import time

import gevent
import pytest

from geventp2p.core.peer import PeerId
from geventp2p.exceptions import ConfigError, P2PTimeoutError, StreamResetError
from geventp2p.pubsub import (
    ACCEPT,
    FLOODSUB_ID,
    IGNORE,
    REJECT,
    FloodSub,
    GossipSub,
    PubSubOptions,
)
from geventp2p.protocols.pubsub.trace import EvtPubSubMessageDelivered, EvtPubSubPeerJoined
from geventp2p.testing.mocknet import MockNet

ROUTERS = {"floodsub": FloodSub, "gossipsub": GossipSub}
WAIT = 30.0


@pytest.fixture
def net():
    with MockNet() as n:
        yield n


def _make(kind, host, **opts):
    options = PubSubOptions(**opts) if opts else None
    return FloodSub(host, options) if kind == "floodsub" else GossipSub(host, options=options)


def wait_peers(topic, peers, timeout=WAIT):
    """Blocks until every peer in ``peers`` is subscribed to ``topic`` as far as we know."""
    want = set(peers)
    events = topic.peer_events()
    try:
        seen = set()
        while not want <= seen:
            evt = events.get(timeout=timeout)
            if evt.event == "joined":
                seen.add(evt.peer)
            else:
                seen.discard(evt.peer)
    finally:
        events.cancel()


def wait_mesh(ps, topic, peers, timeout=WAIT):
    """Blocks until ``peers`` are in our gossipsub mesh of ``topic`` (floodsub: no-op)."""
    if not isinstance(ps, GossipSub):
        return
    deadline = time.monotonic() + timeout
    while not set(peers) <= set(ps.router.mesh_peers(topic)):
        assert time.monotonic() < deadline, f"mesh of {topic!r}: {ps.router.mesh_peers(topic)}"
        gevent.sleep(0.05)


def drain(sub, n, timeout=WAIT):
    return [sub.get(timeout=timeout) for _ in range(n)]


@pytest.mark.parametrize("kind", sorted(ROUTERS))
def test_two_hosts_publish_both_ways(net, kind):
    a, b = net.gen_peers(2)
    net.connect_all()
    psa, psb = _make(kind, a), _make(kind, b)
    ta, tb = psa.join("t"), psb.join("t")
    sa, sb = ta.subscribe(), tb.subscribe()
    wait_peers(ta, [b.id])
    wait_peers(tb, [a.id])
    wait_mesh(psa, "t", [b.id])
    wait_mesh(psb, "t", [a.id])
    mid = ta.publish(b"hello from a", timeout=5)
    got = sb.get(timeout=WAIT)
    assert got.data == b"hello from a"
    assert got.topic == "t"
    assert got.from_peer == a.id
    assert got.received_from == a.id
    assert len(got.seqno) == 8
    assert got.id == mid
    own = sa.get(timeout=WAIT)  # own messages are delivered too
    assert own.data == b"hello from a" and own.received_from == a.id
    tb.publish(b"and back", timeout=5)
    assert sa.get(timeout=WAIT).data == b"and back"
    assert sorted(ta.list_peers(), key=bytes) == [b.id]
    assert psa.get_topics() == ["t"]


@pytest.mark.parametrize("kind", sorted(ROUTERS))
def test_line_of_five_forwards(net, kind):
    hosts = net.gen_peers(5)
    for x, y in zip(hosts, hosts[1:]):
        net.connect_peers(x, y)
    pss = [_make(kind, h) for h in hosts]
    topics = [p.join("line") for p in pss]
    subs = [t.subscribe() for t in topics]
    for i, t in enumerate(topics):
        wait_peers(t, [h.id for h in hosts[max(0, i - 1):i + 2] if h is not hosts[i]])
    for i, p in enumerate(pss):
        wait_mesh(p, "line", [h.id for h in hosts[max(0, i - 1):i + 2] if h is not hosts[i]])
    for i in range(20):
        topics[0].publish(b"m%d" % i, timeout=5)
    for s in subs:
        assert [m.data for m in drain(s, 20)] == [b"m%d" % i for i in range(20)]
    for s in subs[1:]:
        with pytest.raises(P2PTimeoutError):
            s.get(timeout=0.3)  # nothing twice
    last = subs[-1]
    topics[-1].publish(b"back", timeout=5)
    assert subs[0].get(timeout=WAIT).data == b"back"
    assert last.get(timeout=WAIT).data == b"back"


def test_validators_accept_reject_ignore_inline_and_timeout(net):
    a, b = net.gen_peers(2)
    net.connect_all()
    psa, psb = FloodSub(a), FloodSub(b)
    ta, tb = psa.join("v"), psb.join("v")
    sb = tb.subscribe()
    wait_peers(ta, [b.id])
    seen = []

    def verdict(msg):
        seen.append(msg.data)
        if msg.data.startswith(b"reject"):
            return REJECT
        if msg.data.startswith(b"ignore"):
            return IGNORE
        if msg.data.startswith(b"slow"):
            gevent.sleep(5)
        if msg.data.startswith(b"boom"):
            raise RuntimeError("broken validator")
        return ACCEPT

    psb.register_validator("v", verdict, timeout=0.2)
    psb.register_validator("v", lambda msg: not msg.data.endswith(b"!"), inline=True)
    for data in (b"reject", b"ignore", b"slow", b"boom", b"no!", b"ok"):
        ta.publish(data, timeout=5)
    assert sb.get(timeout=WAIT).data == b"ok"
    with pytest.raises(P2PTimeoutError):
        sb.get(timeout=0.5)
    assert b"no!" not in seen  # the inline validator ran first and rejected it


@pytest.mark.parametrize("kind", sorted(ROUTERS))
def test_peer_events_and_unsubscribe(net, kind):
    a, b = net.gen_peers(2)
    net.connect_all()
    psa, psb = _make(kind, a), _make(kind, b)
    ta, tb = psa.join("pe"), psb.join("pe")
    ta.subscribe()
    events = ta.peer_events()
    sb = tb.subscribe()
    evt = events.get(timeout=WAIT)
    assert (evt.topic, evt.peer, evt.event) == ("pe", b.id, "joined")
    sb.cancel()
    evt = events.get(timeout=WAIT)
    assert (evt.peer, evt.event) == (b.id, "left")
    assert ta.list_peers() == []
    events.cancel()


def test_disconnect_is_a_leave(net):
    a, b = net.gen_peers(2)
    net.connect_all()
    psa, psb = FloodSub(a), FloodSub(b)
    ta = psa.join("d")
    ta.subscribe()
    psb.join("d").subscribe()
    events = ta.peer_events()
    assert events.get(timeout=WAIT).event == "joined"
    b.close()
    evt = events.get(timeout=WAIT)
    assert (evt.peer, evt.event) == (b.id, "left")
    events.cancel()


@pytest.mark.parametrize("kind", sorted(ROUTERS))
def test_no_sign(net, kind):
    a, b = net.gen_peers(2)
    net.connect_all()
    psa, psb = _make(kind, a, sign=False), _make(kind, b, sign=False)
    ta, tb = psa.join("ns"), psb.join("ns")
    sb = tb.subscribe()
    ta.subscribe()
    wait_peers(ta, [b.id])
    wait_mesh(psa, "ns", [b.id])
    ta.publish(b"unsigned", timeout=5)
    m = sb.get(timeout=WAIT)
    assert m.data == b"unsigned"
    assert m.from_peer is None and m.seqno == b"" and m.signature == b""
    assert m.received_from == a.id


def test_signed_rejects_unsigned(net):
    """StrictSign (default) drops messages of a StrictNoSign publisher."""
    a, b = net.gen_peers(2)
    net.connect_all()
    psa, psb = FloodSub(a, PubSubOptions(sign=False)), FloodSub(b)
    ta, tb = psa.join("mix"), psb.join("mix")
    sb = tb.subscribe()
    wait_peers(ta, [b.id])
    ta.publish(b"unsigned", timeout=5)
    with pytest.raises(P2PTimeoutError):
        sb.get(timeout=0.8)


def _raw_pubsub_stream(host, target, proto=FLOODSUB_ID):
    return host.new_stream(target.id, [proto], timeout=10)


@pytest.mark.parametrize("payload", [
    b"\x05\xff\xff\xff\xff\xff",  # a frame that is not a protobuf RPC
    b"\xff\xff\xff\xff\x7f",  # a length prefix far over max_rpc_size
    b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80",  # a varint that never ends
])
def test_malformed_rpc_costs_the_stream_not_the_node(net, payload):
    a, b, c = net.gen_peers(3)
    net.connect_all()
    psa = FloodSub(a)
    psc = FloodSub(c)
    ta, tc = psa.join("x"), psc.join("x")
    sa = ta.subscribe()
    wait_peers(tc, [a.id])
    s = _raw_pubsub_stream(b, a)
    s.write(payload)
    with pytest.raises(StreamResetError):
        while s.read(timeout=WAIT):
            pass
    assert psa.bad_rpcs == 1
    tc.publish(b"still alive", timeout=5)
    assert sa.get(timeout=WAIT).data == b"still alive"


def test_oversized_rpc_limit_is_configurable(net):
    a, b = net.gen_peers(2)
    net.connect_all()
    psa = FloodSub(a, PubSubOptions(max_rpc_size=2048))
    psb = FloodSub(b)
    ta, tb = psa.join("big"), psb.join("big")
    sa = ta.subscribe()
    wait_peers(tb, [a.id])
    tb.publish(b"x" * 4096, timeout=5)  # b's RPC is over a's limit: a drops b's stream
    with pytest.raises(P2PTimeoutError):
        sa.get(timeout=0.8)
    assert psa.bad_rpcs == 1


def test_blacklist(net):
    a, b = net.gen_peers(2)
    net.connect_all()
    psa, psb = FloodSub(a), FloodSub(b)
    ta, tb = psa.join("bl"), psb.join("bl")
    sa = ta.subscribe()
    wait_peers(tb, [a.id])
    psa.blacklist_peer(b.id)
    tb.publish(b"from a blacklisted peer", timeout=5)
    with pytest.raises(P2PTimeoutError):
        sa.get(timeout=0.8)


@pytest.mark.parametrize("size", [1, 100 * 1024, 900 * 1024])
def test_message_sizes(net, size):
    a, b = net.gen_peers(2)
    net.connect_all()
    psa, psb = _make("gossipsub", a), _make("gossipsub", b)
    ta, tb = psa.join("sz"), psb.join("sz")
    ta.subscribe()
    sb = tb.subscribe()
    wait_peers(ta, [b.id])
    wait_mesh(psa, "sz", [b.id])
    data = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    ta.publish(data, timeout=10)
    assert sb.get(timeout=WAIT).data == data


def test_thousand_messages_none_lost(net):
    a, b = net.gen_peers(2)
    net.connect_all()
    psa, psb = _make("gossipsub", a), _make("gossipsub", b)
    ta, tb = psa.join("many"), psb.join("many")
    ta.subscribe()
    sb = tb.subscribe(buffer=2000)
    wait_peers(ta, [b.id])
    wait_mesh(psa, "many", [b.id])
    for i in range(1000):
        ta.publish(i.to_bytes(4, "big") + b"\xab" * 1020, timeout=10)
    got = [int.from_bytes(m.data[:4], "big") for m in drain(sb, 1000)]
    assert got == list(range(1000))
    assert psa.dropped_rpcs == 0


def test_trace_events_on_the_bus(net):
    a, b = net.gen_peers(2)
    net.connect_all()
    with b.events.subscribe([EvtPubSubPeerJoined, EvtPubSubMessageDelivered], buffer=64) as bus:
        psa, psb = FloodSub(a), FloodSub(b)
        ta, tb = psa.join("tr"), psb.join("tr")
        ta.subscribe()
        tb.subscribe()
        evt = bus.get(timeout=WAIT)
        assert isinstance(evt, EvtPubSubPeerJoined) and evt.peer == a.id and evt.topic == "tr"
        ta.publish(b"traced", timeout=5)
        evt = bus.get(timeout=WAIT)
        assert isinstance(evt, EvtPubSubMessageDelivered) and evt.received_from == a.id


def test_topic_close_and_pubsub_close(net):
    a, b = net.gen_peers(2)
    net.connect_all()
    psa, psb = FloodSub(a), FloodSub(b)
    ta = psa.join("c")
    assert psa.join("c") is ta
    sub = ta.subscribe()
    stop_relay = ta.relay()
    assert psa.get_topics() == ["c"]
    ta.close()
    assert sub.cancelled or sub.qsize() == 0
    assert psa.get_topics() == []
    with pytest.raises(ConfigError):
        ta.subscribe()
    stop_relay()
    psb.close()
    psb.close()  # idempotent
    with pytest.raises(ConfigError):
        psb.join("c")
    psa.close()


def test_iterating_a_subscription(net):
    a, b = net.gen_peers(2)
    net.connect_all()
    psa, psb = FloodSub(a), FloodSub(b)
    ta, tb = psa.join("it"), psb.join("it")
    sub = tb.subscribe()
    wait_peers(ta, [b.id])
    for i in range(3):
        ta.publish(b"%d" % i, timeout=5)
    out = []
    for msg in sub:
        out.append(msg.data)
        if len(out) == 3:
            sub.cancel()
    assert out == [b"0", b"1", b"2"]


def test_options_are_validated():
    with pytest.raises(ConfigError):
        PubSubOptions(max_rpc_size=0)
    with pytest.raises(ConfigError):
        PubSubOptions(heartbeat_interval=0)
    with pytest.raises(ConfigError):
        PubSubOptions(sign="yes")


def test_received_from_is_the_forwarder(net):
    a, b, c = net.gen_peers(3)
    net.connect_peers(a, b)
    net.connect_peers(b, c)
    pss = [FloodSub(h) for h in (a, b, c)]
    ts = [p.join("fw") for p in pss]
    subs = [t.subscribe() for t in ts]
    wait_peers(ts[1], [a.id, c.id])
    wait_peers(ts[2], [b.id])
    ts[0].publish(b"via b", timeout=5)
    m = subs[2].get(timeout=WAIT)
    assert m.from_peer == a.id and m.received_from == b.id
    assert isinstance(m.from_peer, PeerId)


def test_peer_that_starts_pubsub_later(net):
    """No stream toward a peer without pubsub; once it starts pubsub (identify push), one opens."""
    a, b = net.gen_peers(2)
    net.connect_all()
    psa = FloodSub(a)
    ta = psa.join("late")
    sa = ta.subscribe()
    assert psa.list_peers() == []
    psb = FloodSub(b)
    tb = psb.join("late")
    tb.subscribe()
    wait_peers(ta, [b.id])
    wait_peers(tb, [a.id])
    tb.publish(b"late but here", timeout=5)
    assert sa.get(timeout=WAIT).data == b"late but here"
    assert psa.list_peers() == [b.id]


def test_slow_peer_queue_overflows_and_is_counted(net):
    """A forwarder never blocks on a slow peer: RPCs past its queue are dropped and counted (go)."""
    a, b, c = net.gen_peers(3)
    net.connect_peers(a, b)
    net.link_peers(b, c, bandwidth=50_000, max_buffer=64 * 1024)
    net.connect_peers(b, c)
    psa, psb, psc = (FloodSub(h, PubSubOptions(peer_queue_size=8)) for h in (a, b, c))
    ta, tb, tc = psa.join("slow"), psb.join("slow"), psc.join("slow")
    sb = tb.subscribe(buffer=1000)
    tc.subscribe()
    wait_peers(tb, [c.id])
    wait_peers(ta, [b.id])
    for i in range(100):
        ta.publish(i.to_bytes(4, "big") + b"\0" * (16 * 1024), timeout=10)
    assert len(drain(sb, 100)) == 100  # b got all of them, while c's queue was full
    assert psb.dropped_rpcs > 0
    assert len(psb._peers[c.id].queue) <= 8


def test_hello_before_our_stream_is_up_is_not_lost(net):
    """Our attempts to open the outbound stream end without one (as when identify had not
    yet listed the peer's pubsub protocols) until the peer's hello comes on its inbound
    stream: that makes us try again, and the hello is processed once our stream is up,
    not dropped."""
    a, b = net.gen_peers(2)
    psa = GossipSub(a)
    ta = psa.join("hello")
    ta.subscribe()
    real = psa._try_open
    calls = []

    def fails_until_the_peer_talks(p):
        calls.append(p.id)
        if p.inbound is None:
            p.ready.set()
            return False
        return real(p)

    psa._try_open = fails_until_the_peer_talks
    psb = GossipSub(b)
    tb = psb.join("hello")
    tb.subscribe()
    net.connect_all()
    wait_peers(ta, [b.id])  # b's hello reached a's router
    wait_peers(tb, [a.id])
    assert len(calls) >= 2


def test_outbound_open_timeout_is_retried(net):
    """A stream open that times out (a busy peer or link) is tried again, bounded, instead
    of leaving the peer without our outbound stream for good."""
    from geventp2p.protocols.pubsub import service as _service

    a, b = net.gen_peers(2)
    psa = GossipSub(a)
    ta = psa.join("retry")
    ta.subscribe()
    real_new_stream = a.new_stream
    timeouts = []

    def slow_thrice(peer, protos, timeout=None):
        if peer == b.id and len(timeouts) < 3 and any("meshsub" in x or "floodsub" in x for x in protos):
            timeouts.append(peer)
            raise P2PTimeoutError("simulated: the stream open timed out")
        return real_new_stream(peer, protos, timeout=timeout)

    a.new_stream = slow_thrice
    psb = GossipSub(b)
    tb = psb.join("retry")
    subb = tb.subscribe()
    net.connect_all()
    wait_peers(tb, [a.id])  # b heard a's subscription: a's outbound stream is up
    assert len(timeouts) == 3
    wait_mesh(psa, "retry", [b.id])
    ta.publish(b"after three timeouts", timeout=WAIT)
    assert subb.get(timeout=WAIT).data == b"after three timeouts"


def test_outbound_stream_whose_negotiation_timed_out_is_reset(net):
    """A stream opened but not confirmed in time is reset before the retry opens another:
    a pubsub peer reads only its newest inbound stream from us (js replaces the older),
    so a stream left open could be the one it keeps while we write on the other."""
    a, b = net.gen_peers(2)
    psa = FloodSub(a)
    ta = psa.join("reset")
    ta.subscribe()
    real_new_stream = a.new_stream
    abandoned = []

    class _Unconfirmed:
        """The real stream, except that its first read(0) times out."""

        def __init__(self, stream):
            self._s = stream
            self.was_reset = False

        def read(self, n=-1, timeout=None):
            raise P2PTimeoutError("simulated: the protocol echo did not come in time")

        def reset(self, *args):
            self.was_reset = True
            self._s.reset(*args)

        def __getattr__(self, name):
            return getattr(self._s, name)

    def unconfirmed_once(peer, protos, timeout=None):
        s = real_new_stream(peer, protos, timeout=timeout)
        if peer == b.id and not abandoned and any("floodsub" in x for x in protos):
            abandoned.append(_Unconfirmed(s))
            return abandoned[0]
        return s

    a.new_stream = unconfirmed_once
    psb = FloodSub(b)
    tb = psb.join("reset")
    subb = tb.subscribe()
    net.connect_all()
    wait_peers(tb, [a.id])  # the retry's stream carried a's subscription
    assert len(abandoned) == 1 and abandoned[0].was_reset
    ta.publish(b"on the second stream", timeout=WAIT)
    assert subb.get(timeout=WAIT).data == b"on the second stream"


def test_a_backlog_of_buffered_rpcs_does_not_hold_back_delivery(net):
    """Many RPCs buffered at once on one inbound stream: the stream's greenlet lets
    the subscriber take the first messages long before the backlog is worked off
    (it yields after INBOUND_YIELD_AFTER of work; before, nothing was delivered until
    the stream had to wait for more bytes)."""
    import hashlib

    from geventp2p._speedups import varint
    from geventp2p.sansio.pubsub import rpc as _rpc

    n = 3000
    a, b = net.gen_peers(2)
    net.connect_all()
    opts = {"sign": False, "subscription_buffer": n + 10}
    psa, psb = FloodSub(a, PubSubOptions(**opts)), FloodSub(b, PubSubOptions(**opts))
    for ps in (psa, psb):
        ps.set_msg_id_fn("t", lambda m: hashlib.sha256(m.data).digest())
    ta, tb = psa.join("t"), psb.join("t")
    validated = [0]

    def count(msg):
        validated[0] += 1
        return ACCEPT

    psa.register_validator("t", count, inline=True)
    sub = ta.subscribe()
    wait_peers(tb, [a.id])
    frames = bytearray()
    for i in range(n):
        data = _rpc.encode_rpc(_rpc.RPC(publish=[_rpc.Message(data=i.to_bytes(4, "big") + b"x" * 60, topic="t")]))
        frames += varint.encode_uvarint(len(data)) + data
    s = _raw_pubsub_stream(b, a)  # replaces b's own stream to a (newest wins, as in go)
    s.write(bytes(frames))  # one write: the whole backlog arrives buffered
    first = sub.get(timeout=WAIT)
    seen_at_first = validated[0]
    assert first.data[:4] == (0).to_bytes(4, "big")
    assert seen_at_first < n, "the first message was delivered only after the whole backlog"
    rest = drain(sub, n - 1)
    assert [int.from_bytes(m.data[:4], "big") for m in rest] == list(range(1, n))
    s.close()
