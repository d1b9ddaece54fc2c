"""One-to-many typed feeds with go-ethereum ``event.Feed`` semantics, for greenlets.

A :class:`Feed` carries values of one type to every subscribed *channel*: a
``gevent.queue.Queue`` (or any object with a blocking ``put(item)``; a
``put_nowait`` that raises ``queue.Full`` is used first when present)::

    feed = Feed()
    q = gevent.queue.Queue(16)
    sub = feed.subscribe(q)
    n = feed.send(block)            # blocks until every subscriber took it; n == 1
    sub.unsubscribe()               # idempotent; wakes a send blocked on q
    sub.err().wait()                # the err channel is closed on unsubscribe

The rules, as in go-ethereum's ``event.Feed``:

* the element type is fixed by the first :meth:`Feed.send` (or a
  :meth:`Feed.subscribe` that names ``etype``); a later value or ``etype`` of another
  type raises :class:`TypeError` (go panics);
* ``send`` offers the value to all subscribers at once and returns when each has
  taken it (or unsubscribed), with the number that took it;
* sends are serialised: a second ``send`` waits for the first;
* subscribing or unsubscribing during a send takes effect for the next send, except
  that unsubscribing a channel the send is blocked on releases that channel at once.

Feeds are for consumers: nothing a consumer sends into a feed goes onto the network.
"""

from __future__ import annotations

import queue as _stdqueue
from typing import Any, Iterator, Optional

import gevent
from gevent.event import Event
from gevent.lock import Semaphore

from geventp2p.exceptions import FeedTimeoutError, P2PTimeoutError
from geventp2p.net._deadline import Deadline

__all__ = ["Feed", "Subscription", "ErrChannel"]

_FULL: tuple[type[BaseException], ...] = (_stdqueue.Full,)
try:  # gevent's Full is the stdlib one on current gevent; keep both just in case
    from gevent.queue import Full as _GeventFull

    if _GeventFull is not _stdqueue.Full:
        _FULL = (_stdqueue.Full, _GeventFull)
except ImportError:  # pragma: no cover
    pass


class ErrChannel:
    """The channel ``Subscription.err()`` returns: closed when the subscription ends.

    Like go's ``Err() <-chan error`` of a feed subscription, it never carries an
    error; receiving from it returns ``None`` once it is closed.  ``wait(timeout)``
    returns whether it is closed; ``get(timeout)`` blocks until closed (None) or raises
    :class:`P2PTimeoutError`; iterating yields nothing and ends when closed.
    """

    __slots__ = ("_ev",)

    def __init__(self) -> None:
        self._ev = Event()

    @property
    def closed(self) -> bool:
        return self._ev.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Blocks the calling greenlet until closed or ``timeout``; True if closed."""
        return bool(self._ev.wait(timeout))

    def get(self, timeout: float | None = None) -> None:
        """Blocks the calling greenlet until closed (returns None); P2PTimeoutError after ``timeout``."""
        if not self._ev.wait(timeout):
            raise P2PTimeoutError(f"subscription still active after {timeout} s")
        return None

    def __iter__(self) -> Iterator[None]:
        self._ev.wait()
        return iter(())

    def _close(self) -> None:
        self._ev.set()


class Subscription:
    """One channel subscribed to a :class:`Feed`; ``unsubscribe()`` ends it."""

    __slots__ = ("_feed", "channel", "_err", "_pending", "__weakref__")

    def __init__(self, feed: "Feed", channel: Any) -> None:
        self._feed: Optional[Feed] = feed
        self.channel = channel
        self._err = ErrChannel()
        self._pending: Optional[gevent.Greenlet[..., Any]] = None  # the send blocked on this channel

    @property
    def active(self) -> bool:
        return self._feed is not None

    def unsubscribe(self) -> None:
        """Stop deliveries to the channel (idempotent); a ``send`` blocked on it moves on.

        The err channel is closed.
        """
        feed, self._feed = self._feed, None
        if feed is None:
            return
        feed._remove(self)
        g = self._pending
        if g is not None and not g.dead:
            g.kill(block=False)
        self._err._close()

    def err(self) -> ErrChannel:
        """A channel closed when this subscription ends (go's ``Subscription.Err()``)."""
        return self._err

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: object) -> None:
        self.unsubscribe()

    def __repr__(self) -> str:
        return f"<feed Subscription {'active' if self.active else 'ended'} {self.channel!r}>"


def _blocking_put(sub: Subscription, value: Any) -> bool:
    sub.channel.put(value)
    return True


class Feed:
    """A one-to-many feed of values of one type (go-ethereum's ``event.Feed``).

    ``Feed()`` takes its type from the first value sent; ``Feed(etype=T)`` fixes it
    up front.  Values are type-checked with ``isinstance``.
    """

    __slots__ = ("_etype", "_subs", "_send_lock", "__weakref__")

    def __init__(self, etype: type | None = None) -> None:
        self._etype: type | None = etype
        self._subs: list[Subscription] = []
        self._send_lock = Semaphore(1)

    @property
    def etype(self) -> type | None:
        """The element type, once fixed."""
        return self._etype

    def __len__(self) -> int:
        """Number of active subscriptions."""
        return len(self._subs)

    def _fix_type(self, t: type) -> None:
        if self._etype is None:
            self._etype = t
        elif not issubclass(t, self._etype):
            raise TypeError(f"feed carries {self._etype.__name__}, not {t.__name__}")

    def subscribe(self, channel: Any, etype: type | None = None) -> Subscription:
        """Deliver every later ``send`` to ``channel`` until unsubscribed.

        ``channel`` needs a blocking ``put(item)``.  ``etype`` (optional) is the type
        the channel expects: it fixes the feed's type, or must match it (TypeError).
        """
        if not callable(getattr(channel, "put", None)):
            raise TypeError(f"a feed channel needs a put() method, got {type(channel).__name__}")
        if etype is not None:
            self._fix_type(etype)
        sub = Subscription(self, channel)
        self._subs.append(sub)
        return sub

    def _remove(self, sub: Subscription) -> None:
        try:
            self._subs.remove(sub)
        except ValueError:
            pass

    def send(self, value: Any, timeout: float | None = None) -> int:
        """Blocks the calling greenlet until every subscriber took ``value``; returns how many did.

        A subscriber that unsubscribes meanwhile is skipped (not counted).  Raises
        :class:`TypeError` for a value of another type than the feed's and
        :class:`FeedTimeoutError` (a :class:`P2PTimeoutError`, with ``nsent``) when
        ``timeout`` seconds pass first; the value is then withdrawn from the
        channels that had not taken it.
        """
        self._fix_type(type(value))
        dl = Deadline(timeout)
        if not self._send_lock.acquire(timeout=dl.left()):
            raise FeedTimeoutError(f"feed send waited {timeout} s for an earlier send", 0)
        try:
            subs = self._subs
            if not subs:
                return 0
            nsent = 0
            pending: list[Subscription] | None = None
            for sub in list(subs):
                ch = sub.channel
                put_nowait = getattr(ch, "put_nowait", None)
                if put_nowait is not None:
                    try:
                        put_nowait(value)
                    except _FULL:
                        pass
                    else:
                        nsent += 1
                        continue
                if pending is None:
                    pending = []
                pending.append(sub)
            if pending:
                nsent += self._send_blocking(pending, value, dl, timeout, nsent)
            return nsent
        finally:
            self._send_lock.release()

    @staticmethod
    def _send_blocking(pending: list[Subscription], value: Any, dl: Deadline, timeout: float | None,
                       nsent: int) -> int:
        """Block on every full channel at once: one short-lived greenlet per channel."""
        greenlets = []
        for sub in pending:
            if sub._feed is None:
                continue  # unsubscribed while we were offering to the others
            g = gevent.spawn(_blocking_put, sub, value)
            sub._pending = g
            greenlets.append((sub, g))
        try:
            done = gevent.joinall([g for _s, g in greenlets], timeout=dl.left())
            if len(done) < len(greenlets):
                took = sum(1 for _s, g in greenlets if g.dead and g.successful() and g.value)
                raise FeedTimeoutError(f"feed send: {len(greenlets) - len(done)} subscriber(s) did not take "
                                       f"the value within {timeout} s", nsent + took)
        finally:
            for sub, g in greenlets:
                if sub._pending is g:
                    sub._pending = None
                if not g.dead:
                    g.kill(block=True)
        return sum(1 for _s, g in greenlets if g.successful() and g.value is True)

    def __repr__(self) -> str:
        t = self._etype.__name__ if self._etype is not None else "?"
        return f"<Feed[{t}] subs={len(self._subs)}>"
