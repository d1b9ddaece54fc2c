"""Feed: go-ethereum event.Feed semantics for greenlets."""

from __future__ import annotations

import gevent
import pytest
from gevent.event import Event
from gevent.queue import Queue

from geventp2p.exceptions import FeedTimeoutError, P2PTimeoutError
from geventp2p.p2p import Feed


def test_send_without_subscribers_returns_zero_and_fixes_type() -> None:
    feed = Feed()
    assert feed.send(1) == 0
    assert feed.etype is int
    with pytest.raises(TypeError):
        feed.send("x")


def test_subscribe_with_etype_fixes_type() -> None:
    feed = Feed()
    feed.subscribe(Queue(), etype=str)
    with pytest.raises(TypeError):
        feed.send(1)
    with pytest.raises(TypeError):
        feed.subscribe(Queue(), etype=int)
    assert feed.send("ok") == 1


def test_typed_feed_and_subclasses() -> None:
    class A:
        pass

    class B(A):
        pass

    feed = Feed(etype=A)
    q: Queue = Queue()
    feed.subscribe(q)
    assert feed.send(B()) == 1
    with pytest.raises(TypeError):
        feed.send(object())


def test_channel_needs_put() -> None:
    with pytest.raises(TypeError):
        Feed().subscribe(object())


def test_send_delivers_to_all_and_returns_nsent() -> None:
    feed = Feed()
    queues = [Queue() for _ in range(5)]
    subs = [feed.subscribe(q) for q in queues]
    assert feed.send(7) == 5
    assert [q.get(timeout=1) for q in queues] == [7] * 5
    subs[0].unsubscribe()
    assert feed.send(8) == 4
    assert queues[0].qsize() == 0
    assert len(feed) == 4


def test_send_blocks_until_every_subscriber_took_it() -> None:
    feed = Feed()
    fast, slow = Queue(), Queue(maxsize=1)
    feed.subscribe(fast)
    feed.subscribe(slow)
    slow.put("filler")
    g = gevent.spawn(feed.send, 1)
    gevent.sleep(0.05)
    assert not g.ready()                       # blocked on the full channel
    assert fast.get(timeout=1) == 1            # the other one already has it
    assert slow.get(timeout=1) == "filler"     # room: the send completes
    assert g.get(timeout=5) == 2
    assert slow.get(timeout=1) == 1


def test_unsubscribe_wakes_a_blocked_send() -> None:
    feed = Feed()
    ok, stuck = Queue(), Queue(maxsize=1)
    feed.subscribe(ok)
    sub = feed.subscribe(stuck)
    stuck.put("filler")
    g = gevent.spawn(feed.send, 1)
    gevent.sleep(0.05)
    assert not g.ready()
    sub.unsubscribe()
    assert g.get(timeout=5) == 1               # only `ok` took it
    assert stuck.get(timeout=1) == "filler"
    assert stuck.qsize() == 0                  # the withdrawn value never landed


def test_unsubscribe_is_idempotent_and_closes_err() -> None:
    feed = Feed()
    sub = feed.subscribe(Queue())
    err = sub.err()
    assert not err.closed
    assert err.wait(0.01) is False
    with pytest.raises(P2PTimeoutError):
        err.get(timeout=0.01)
    waiter = gevent.spawn(err.get)
    gevent.sleep(0)
    sub.unsubscribe()
    sub.unsubscribe()
    assert waiter.get(timeout=5) is None
    assert err.closed and list(err) == []
    assert not sub.active and len(feed) == 0


def test_send_timeout_reports_nsent() -> None:
    feed = Feed()
    ok, stuck = Queue(), Queue(maxsize=1)
    feed.subscribe(ok)
    feed.subscribe(stuck)
    stuck.put("filler")
    with pytest.raises(FeedTimeoutError) as ei:
        feed.send(1, timeout=0.1)
    assert ei.value.nsent == 1
    assert isinstance(ei.value, P2PTimeoutError)
    assert stuck.get(timeout=1) == "filler" and stuck.qsize() == 0
    # the feed still works after a timeout
    assert feed.send(2, timeout=5) == 2


def test_sends_are_serialised() -> None:
    feed = Feed()
    q: Queue = Queue(maxsize=1)
    feed.subscribe(q)
    q.put(0)
    first = gevent.spawn(feed.send, 1)
    second = gevent.spawn(feed.send, 2)
    gevent.sleep(0.05)
    assert not first.ready() and not second.ready()
    assert [q.get(timeout=2) for _ in range(3)] == [0, 1, 2]
    assert first.get(timeout=2) == 1 and second.get(timeout=2) == 1


def test_plain_put_channel() -> None:
    """Anything with a blocking put works, even without put_nowait."""
    got: list[int] = []
    ready = Event()

    class Chan:
        def put(self, item: int) -> None:
            ready.wait()
            got.append(item)

    feed = Feed()
    feed.subscribe(Chan())
    g = gevent.spawn(feed.send, 3)
    gevent.sleep(0.02)
    assert not g.ready()
    ready.set()
    assert g.get(timeout=5) == 1 and got == [3]


def test_context_manager_unsubscribes() -> None:
    feed = Feed()
    with feed.subscribe(Queue()) as sub:
        assert sub.active
    assert not sub.active and sub.err().closed


def test_unbuffered_channel_like_go() -> None:
    """gevent.queue.Channel (no buffer): send waits until a receiver takes the value."""
    from gevent.queue import Channel

    feed = Feed()
    ch = Channel()
    feed.subscribe(ch)
    g = gevent.spawn(feed.send, "v")
    gevent.sleep(0.02)
    assert not g.ready()
    assert ch.get(timeout=5) == "v"
    assert g.get(timeout=5) == 1
