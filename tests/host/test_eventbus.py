"""Tests for geventp2p.host.eventbus."""

from __future__ import annotations

import logging
import time

import gevent
import pytest

from geventp2p.core import event as E
from geventp2p.exceptions import ConfigError, P2PTimeoutError, SubscriptionClosedError
from geventp2p.host.eventbus import WILDCARD, EventBus

from geventp2p.testing.leakcheck import live_greenlets

LOGGER = "geventp2p.host.eventbus"


def reach(r=E.Reachability.Public):
    return E.EvtLocalReachabilityChanged(reachability=r)


def proto(added=()):
    return E.EvtLocalProtocolsUpdated(added=added)


@pytest.fixture
def bus():
    b = EventBus(slow_consumer_threshold=0.05)
    yield b
    b.close()


@pytest.fixture(autouse=True)
def no_greenlet_leak():
    gevent.get_hub()  # the hub itself is not a leak
    before = set(map(id, live_greenlets()))
    yield
    gevent.sleep(0)
    leaked = [g for g in live_greenlets() if id(g) not in before]
    assert not leaked, f"leaked greenlets: {leaked}"


def test_order_preserved(bus):
    em = bus.emitter(E.EvtLocalProtocolsUpdated)
    with bus.subscribe(E.EvtLocalProtocolsUpdated, buffer=64) as sub:
        for i in range(50):
            em.emit(proto((f"/p/{i}",)))
        got = [sub.get(timeout=1).added[0] for _ in range(50)]
    assert got == [f"/p/{i}" for i in range(50)]


def test_order_preserved_through_blocking(bus):
    em = bus.emitter(E.EvtLocalProtocolsUpdated)
    sub = bus.subscribe(E.EvtLocalProtocolsUpdated, buffer=2)
    got = []

    def consume():
        for ev in sub:
            got.append(ev.added[0])
            if len(got) == 20:
                return
            gevent.sleep(0.001)

    g = gevent.spawn(consume)
    with gevent.Timeout(5):
        for i in range(20):
            em.emit(proto((str(i),)))
        g.join()
    sub.close()
    assert got == [str(i) for i in range(20)]


def test_fan_out_and_type_filtering(bus):
    em_r = bus.emitter(E.EvtLocalReachabilityChanged)
    em_p = bus.emitter(E.EvtLocalProtocolsUpdated)
    s1 = bus.subscribe(E.EvtLocalReachabilityChanged)
    s2 = bus.subscribe(E.EvtLocalReachabilityChanged)
    s3 = bus.subscribe([E.EvtLocalReachabilityChanged, E.EvtLocalProtocolsUpdated])
    sp = bus.subscribe(E.EvtLocalProtocolsUpdated)
    em_r.emit(reach())
    em_p.emit(proto(("/x",)))
    assert s1.get(timeout=1) == reach() and s2.get(timeout=1) == reach()
    assert s1.qsize() == 0 and s2.qsize() == 0
    assert s3.get(timeout=1) == reach() and s3.get(timeout=1) == proto(("/x",))
    assert sp.get(timeout=1) == proto(("/x",)) and sp.qsize() == 0
    for s in (s1, s2, s3, sp):
        s.close()


def test_wildcard_gets_everything(bus):
    w = bus.subscribe(WILDCARD, name="all")
    assert w.wildcard and w.event_types == ()
    em_r = bus.emitter(E.EvtLocalReachabilityChanged)
    em_p = bus.emitter(E.EvtLocalProtocolsUpdated)
    em_r.emit(reach())
    em_p.emit(proto())
    em_r.emit(reach(E.Reachability.Private))
    assert [type(w.get(timeout=1)) for _ in range(3)] == [
        E.EvtLocalReachabilityChanged, E.EvtLocalProtocolsUpdated, E.EvtLocalReachabilityChanged]
    # mixing WILDCARD with a type does not double-deliver
    w2 = bus.subscribe([E.EvtLocalProtocolsUpdated, WILDCARD])
    em_p.emit(proto())
    assert w2.get(timeout=1) == proto()
    with pytest.raises(P2PTimeoutError):
        w2.get(timeout=0.01)
    w.close()
    w2.close()


def test_stateful_replays_last_to_new_subscribers(bus):
    em = bus.emitter(E.EvtLocalReachabilityChanged, stateful=True)
    early = bus.subscribe(E.EvtLocalReachabilityChanged)
    with pytest.raises(P2PTimeoutError):
        early.get(timeout=0)  # nothing emitted yet, nothing replayed
    em.emit(reach(E.Reachability.Private))
    em.emit(reach(E.Reachability.Public))
    assert early.get(timeout=1).reachability is E.Reachability.Private
    assert early.get(timeout=1).reachability is E.Reachability.Public
    assert early.qsize() == 0  # existing subscribers get no replay

    late = bus.subscribe(E.EvtLocalReachabilityChanged)
    assert late.qsize() == 1
    assert late.get(timeout=0).reachability is E.Reachability.Public
    em.emit(reach(E.Reachability.Unknown))
    assert late.get(timeout=1).reachability is E.Reachability.Unknown
    # wildcard subscribers are not replayed
    w = bus.subscribe(WILDCARD)
    assert w.qsize() == 0
    for s in (early, late, w):
        s.close()


def test_non_stateful_does_not_replay(bus):
    em = bus.emitter(E.EvtLocalReachabilityChanged)
    keep = bus.subscribe(E.EvtLocalReachabilityChanged)
    em.emit(reach())
    late = bus.subscribe(E.EvtLocalReachabilityChanged)
    assert late.qsize() == 0
    keep.close()
    late.close()


def test_wrong_type_and_closed_emitter(bus):
    em = bus.emitter(E.EvtLocalReachabilityChanged)
    with pytest.raises(TypeError, match="EvtLocalProtocolsUpdated"):
        em.emit(proto())
    with pytest.raises(TypeError):
        em.emit("not an event")
    em.close()
    em.close()  # idempotent
    assert em.closed
    with pytest.raises(SubscriptionClosedError):
        em.emit(reach())


def test_bad_arguments(bus):
    with pytest.raises(TypeError):
        bus.subscribe("EvtLocalReachabilityChanged")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        bus.subscribe([])
    with pytest.raises(ConfigError):
        bus.subscribe(E.EvtLocalReachabilityChanged, buffer=0)
    with pytest.raises(TypeError):
        bus.emitter("x")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        EventBus(slow_consumer_threshold=0)


def test_get_timeout(bus):
    with bus.subscribe(E.EvtLocalReachabilityChanged) as sub:
        t0 = time.monotonic()
        with pytest.raises(P2PTimeoutError):
            sub.get(timeout=0.05)
        assert time.monotonic() - t0 >= 0.04


def test_full_buffer_blocks_emitter_and_warns_once(bus, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    em = bus.emitter(E.EvtLocalProtocolsUpdated)
    slow = bus.subscribe(E.EvtLocalProtocolsUpdated, buffer=1, name="slowpoke")
    fast = bus.subscribe(E.EvtLocalProtocolsUpdated, buffer=8)
    em.emit(proto(("0",)))  # fills slow's buffer
    done = gevent.event.Event()

    def emitter_task():
        em.emit(proto(("1",)))  # blocks on slow
        em.emit(proto(("2",)))  # blocks again: no second warning
        done.set()

    g = gevent.spawn(emitter_task)
    gevent.sleep(0.15)  # > threshold (0.05 s)
    assert not done.is_set(), "emit must block while a subscriber buffer is full"
    warnings = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "slowpoke" in warnings[0].getMessage() and "slow consumer" in warnings[0].getMessage()
    with gevent.Timeout(5):
        assert [slow.get().added[0] for _ in range(3)] == ["0", "1", "2"]
        g.join()
    assert done.is_set()
    gevent.sleep(0.1)
    warnings = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 1, "one slow-consumer warning per subscription"
    assert [fast.get(timeout=1).added[0] for _ in range(3)] == ["0", "1", "2"]
    slow.close()
    fast.close()


def test_no_warning_when_consumer_keeps_up(bus, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    em = bus.emitter(E.EvtLocalProtocolsUpdated)
    sub = bus.subscribe(E.EvtLocalProtocolsUpdated, buffer=1)
    g = gevent.spawn(lambda: [sub.get(timeout=5) for _ in range(10)])
    with gevent.Timeout(5):
        for i in range(10):
            em.emit(proto((str(i),)))
        assert len(g.get()) == 10
    assert not [r for r in caplog.records if r.name == LOGGER]
    sub.close()


def test_close_unblocks_emitter_waiting_on_full_buffer(bus):
    em = bus.emitter(E.EvtLocalProtocolsUpdated)
    sub = bus.subscribe(E.EvtLocalProtocolsUpdated, buffer=1)
    em.emit(proto())
    g = gevent.spawn(em.emit, proto(("again",)))
    gevent.sleep(0.02)
    assert not g.dead
    sub.close()
    with gevent.Timeout(2):
        g.join()
    assert g.successful()


def test_close_unblocks_get(bus):
    sub = bus.subscribe(E.EvtLocalReachabilityChanged)
    g = gevent.spawn(sub.get)
    gevent.sleep(0.01)
    assert not g.dead
    sub.close()
    with gevent.Timeout(2):
        g.join()
    assert isinstance(g.exception, SubscriptionClosedError)
    with pytest.raises(SubscriptionClosedError):
        sub.get(timeout=0)


def test_close_ends_iteration(bus):
    em = bus.emitter(E.EvtLocalReachabilityChanged)
    sub = bus.subscribe(E.EvtLocalReachabilityChanged)
    seen = []

    def loop():
        for ev in sub:
            seen.append(ev)
        return "ended"

    g = gevent.spawn(loop)
    em.emit(reach())
    gevent.sleep(0.01)
    sub.close()
    with gevent.Timeout(2):
        assert g.get() == "ended"
    assert seen == [reach()]
    # emitting after the subscriber left is fine and reaches nobody
    em.emit(reach())


def test_closed_subscription_gets_no_more_events(bus):
    em = bus.emitter(E.EvtLocalReachabilityChanged)
    sub = bus.subscribe(E.EvtLocalReachabilityChanged)
    em.emit(reach())
    sub.close()
    assert sub.closed and sub.qsize() == 0
    em.emit(reach())
    assert list(sub) == []


def test_event_types_tracks_emitters_and_subscribers(bus):
    assert bus.event_types() == []
    em = bus.emitter(E.EvtLocalReachabilityChanged)
    sub = bus.subscribe([E.EvtLocalProtocolsUpdated, E.EvtPeerIdentificationFailed])
    assert set(bus.event_types()) == {
        E.EvtLocalReachabilityChanged, E.EvtLocalProtocolsUpdated, E.EvtPeerIdentificationFailed}
    w = bus.subscribe(WILDCARD)
    assert len(bus.event_types()) == 3  # wildcard adds no type
    sub.close()
    assert bus.event_types() == [E.EvtLocalReachabilityChanged]
    em.close()
    assert bus.event_types() == []
    w.close()


def test_bus_close_closes_everything():
    b = EventBus()
    em = b.emitter(E.EvtLocalReachabilityChanged)
    sub = b.subscribe(E.EvtLocalReachabilityChanged)
    w = b.subscribe(WILDCARD)
    g = gevent.spawn(lambda: list(sub))
    gevent.sleep(0)
    b.close()
    with gevent.Timeout(2):
        assert g.get() == []
    assert em.closed and sub.closed and w.closed and b.event_types() == []
    with pytest.raises(SubscriptionClosedError):
        b.subscribe(E.EvtLocalReachabilityChanged)
    with pytest.raises(SubscriptionClosedError):
        b.emitter(E.EvtLocalReachabilityChanged)


def test_concurrent_emitters_and_consumers_no_leak(bus):
    ems = [bus.emitter(E.EvtLocalProtocolsUpdated) for _ in range(4)]
    subs = [bus.subscribe(E.EvtLocalProtocolsUpdated, buffer=3) for _ in range(5)]
    counts = []

    def consume(s):
        n = 0
        for _ in s:
            n += 1
        counts.append(n)

    consumers = [gevent.spawn(consume, s) for s in subs]
    producers = [gevent.spawn(lambda e=e: [e.emit(proto()) for _ in range(25)]) for e in ems]
    with gevent.Timeout(10):
        gevent.joinall(producers, raise_error=True)
        while any(s.qsize() for s in subs):
            gevent.sleep(0.001)
        for s in subs:
            s.close()
        gevent.joinall(consumers, raise_error=True)
    assert counts == [100] * 5
    for e in ems:
        e.close()
    assert bus.event_types() == []


def test_stateful_subscribe_during_blocked_emit_gets_event_once(bus):
    em = bus.emitter(E.EvtLocalReachabilityChanged, stateful=True)
    slow = bus.subscribe(E.EvtLocalReachabilityChanged, buffer=1)
    em.emit(reach(E.Reachability.Private))  # fills slow
    g = gevent.spawn(em.emit, reach(E.Reachability.Public))  # blocks delivering to slow
    gevent.sleep(0.01)
    assert not g.dead
    late = bus.subscribe(E.EvtLocalReachabilityChanged)
    assert late.get(timeout=0).reachability is E.Reachability.Public  # replayed
    with gevent.Timeout(2):
        assert slow.get().reachability is E.Reachability.Private
        assert slow.get().reachability is E.Reachability.Public
        g.join()
    with pytest.raises(P2PTimeoutError):
        late.get(timeout=0.01)  # not delivered a second time
    slow.close()
    late.close()
