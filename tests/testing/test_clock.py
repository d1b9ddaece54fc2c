"""geventp2p.testing.clock: VirtualClock scheduling and sleeping, MonotonicClock, injection."""

from __future__ import annotations

import time

import gevent
import gevent.event
import pytest

from geventp2p.testing.clock import Clock, MonotonicClock, TimerHandle, VirtualClock

T = 10  # generous bound for anything that really waits


def test_now_advance_and_call():
    c = VirtualClock(5.0)
    assert c.now() == c() == 5.0
    c.advance(2.5)
    assert c.now() == 7.5
    c.advance(0)
    assert c() == 7.5
    with pytest.raises(ValueError):
        c.advance(-1)
    c.advance_to(3.0)  # earlier than now: no effect
    assert c.now() == 7.5


def test_both_clocks_satisfy_the_protocol():
    assert isinstance(VirtualClock(), Clock)
    assert isinstance(MonotonicClock(), Clock)
    assert not isinstance(object(), Clock)


def test_timers_run_in_deadline_order_at_their_deadline():
    c = VirtualClock()
    seen = []
    c.call_later(3, lambda: seen.append(("c", c.now())))
    c.call_at(1, lambda: seen.append(("a", c.now())))
    c.call_later(2, lambda tag: seen.append((tag, c.now())), "b")
    c.call_later(2, lambda: seen.append(("b2", c.now())))  # same deadline: scheduling order
    assert c.pending == 4 and c.next_deadline() == 1
    c.advance(1.5)
    assert seen == [("a", 1.0)]
    assert c.now() == 1.5
    c.advance(10)
    assert seen == [("a", 1.0), ("b", 2.0), ("b2", 2.0), ("c", 3.0)]
    assert c.now() == 11.5
    assert c.pending == 0 and c.next_deadline() is None


def test_due_timer_waits_for_the_next_advance():
    c = VirtualClock(10)
    seen = []
    c.call_at(4, seen.append, "past")  # already due: runs at the next advance, at the current time
    c.call_later(-1, seen.append, "negative")
    assert seen == []
    c.advance(0)
    assert seen == ["past", "negative"]


def test_cancel():
    c = VirtualClock()
    seen = []
    h = c.call_later(1, seen.append, 1)
    keep = c.call_later(2, seen.append, 2)
    assert isinstance(h, TimerHandle) and not h.cancelled and h.when == 1
    h.cancel()
    h.cancel()  # idempotent
    assert h.cancelled and c.pending == 1 and c.next_deadline() == 2
    c.advance(5)
    assert seen == [2]
    assert keep.cancelled  # ran: cancelling it now does nothing
    keep.cancel()
    assert c.pending == 0
    assert "cancelled" in repr(h)


def test_timers_scheduled_by_timers_run_in_the_same_advance_when_due():
    c = VirtualClock()
    seen = []

    def tick():
        seen.append(c.now())
        if len(seen) < 5:
            c.call_later(1, tick)

    c.call_later(1, tick)
    c.advance(3)
    assert seen == [1, 2, 3]
    c.advance(10)
    assert seen == [1, 2, 3, 4, 5]


def test_error_in_timer_propagates_and_keeps_later_timers():
    c = VirtualClock()
    seen = []

    def boom():
        raise RuntimeError("boom")

    c.call_later(1, boom)
    c.call_later(2, seen.append, "later")
    with pytest.raises(RuntimeError, match="boom"):
        c.advance(5)
    assert c.now() == 1 and seen == []
    c.advance(4)
    assert seen == ["later"] and c.now() == 5


def test_advance_from_a_timer_is_refused():
    c = VirtualClock()
    errors = []

    def nested():
        try:
            c.advance(1)
        except RuntimeError as exc:
            errors.append(exc)

    c.call_later(1, nested)
    c.advance(1)
    assert len(errors) == 1


def test_sleepers_wake_in_order_and_each_tick_once():
    c = VirtualClock()
    ticks: list[tuple[str, float]] = []

    def loop(name: str, interval: float) -> None:
        while True:
            c.sleep(interval)
            ticks.append((name, c.now()))

    g1 = gevent.spawn(loop, "ten", 10)
    g2 = gevent.spawn(loop, "four", 4)
    try:
        gevent.sleep(0)  # both asleep on the virtual clock
        assert c.pending == 2
        c.advance(9.9)
        assert ticks == [("four", 4.0), ("four", 8.0)]
        c.advance_to(20)
        assert ticks == [("four", 4.0), ("four", 8.0), ("ten", 10.0), ("four", 12.0),
                         ("four", 16.0), ("ten", 20.0), ("four", 20.0)]
    finally:
        gevent.killall([g1, g2])
    assert c.pending == 0  # killed sleepers drop their timers


def test_sleep_zero_only_yields():
    c = VirtualClock()
    other = gevent.spawn(lambda: None)
    c.sleep(0)
    assert other.dead and c.now() == 0 and c.pending == 0


def test_sleep_interrupted_by_timeout_drops_its_timer():
    c = VirtualClock()
    with pytest.raises(gevent.Timeout):
        with gevent.Timeout(0.05):
            c.sleep(100)
    assert c.pending == 0


def test_peerstore_ttls_follow_the_virtual_clock():
    from geventp2p.core.addr import parse
    from geventp2p.core.peer import PeerId
    from geventp2p.crypto.keys import generate_key
    from geventp2p.host.peerstore import TEMP_ADDR_TTL, Peerstore

    c = VirtualClock()
    ps = Peerstore(clock=c)
    peer = PeerId.from_public_key(generate_key().public_key())
    ps.add_addrs(peer, [parse("/ip4/1.2.3.4/tcp/1")], TEMP_ADDR_TTL)
    c.advance(TEMP_ADDR_TTL - 1)
    assert ps.addrs(peer)
    c.advance(1)
    assert not ps.addrs(peer)


def test_monotonic_clock():
    c = MonotonicClock()
    a = c.now()
    assert abs(a - time.monotonic()) < 1 and c() >= a
    t0 = time.monotonic()
    c.sleep(0.01)
    assert time.monotonic() - t0 >= 0.009


def test_monotonic_clock_timers_fire_and_cancel():
    c = MonotonicClock()
    fired = gevent.event.Event()
    seen = []
    h = c.call_later(0.01, lambda: (seen.append("later"), fired.set()))
    dropped = c.call_at(c.now() + 0.01, seen.append, "dropped")
    dropped.cancel()
    assert fired.wait(T)
    gevent.sleep(0.05)
    assert seen == ["later"] and h.cancelled and dropped.cancelled
