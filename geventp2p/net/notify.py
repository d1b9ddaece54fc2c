"""Swarm notifications: the ``Notifiee`` interface and the dispatcher that delivers them.

Notifiees (go ``network.Notifiee``) learn about listeners, connections and
streams.  Every call runs on the swarm's single dispatcher greenlet, never on a
connection's reader greenlet, so a slow notifiee delays only later
notifications, never stream I/O.  Calls are delivered in the order the swarm
queued them: a connection's ``connected`` before its streams'
``opened_stream``, those before their ``closed_stream``, all of them before the
connection's ``disconnected``.

The queue is unbounded (the swarm must never block on it) but monitored: its
length is logged at WARNING each time it doubles past ``warn_backlog``, and a
single callback that runs longer than ``slow_threshold`` seconds is logged too.
Exceptions raised by a notifiee are logged and otherwise ignored.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any, Callable

import gevent
from gevent.event import Event

__all__ = ["Notifiee", "NotifyBundle", "Dispatcher", "NOTIFICATIONS", "wants"]

log = logging.getLogger(__name__)


class Notifiee:
    """Base class with no-op methods; override the ones you need.

    ``net`` is the swarm, ``conn`` a swarm connection, ``stream`` a muxed
    :class:`~geventp2p.net.stream.Stream` (``stream.conn`` is its swarm connection),
    ``addr`` a listen multiaddr.
    """

    def listen(self, net: Any, addr: Any) -> None:
        pass

    def listen_close(self, net: Any, addr: Any) -> None:
        pass

    def connected(self, net: Any, conn: Any) -> None:
        pass

    def disconnected(self, net: Any, conn: Any) -> None:
        pass

    def opened_stream(self, net: Any, stream: Any) -> None:
        pass

    def closed_stream(self, net: Any, stream: Any) -> None:
        pass


_Callback = Callable[[Any, Any], None]

#: Every notification name a Notifiee may implement.
NOTIFICATIONS = ("listen", "listen_close", "connected", "disconnected", "opened_stream", "closed_stream")


def wants(notifiee: Any, what: str) -> bool:
    """True if ``notifiee`` implements ``what`` with more than :class:`Notifiee`'s no-op.

    Lets the swarm skip queueing (per stream!) what nobody listens to.
    """
    fn = getattr(notifiee, what, None)
    if fn is None:
        return False
    return getattr(fn, "__func__", None) is not getattr(Notifiee, what)


class NotifyBundle(Notifiee):
    """A Notifiee built from callbacks: ``NotifyBundle(connected=lambda net, c: ...)``."""

    def __init__(
        self,
        *,
        listen: _Callback | None = None,
        listen_close: _Callback | None = None,
        connected: _Callback | None = None,
        disconnected: _Callback | None = None,
        opened_stream: _Callback | None = None,
        closed_stream: _Callback | None = None,
    ) -> None:
        for name, fn in (
            ("listen", listen),
            ("listen_close", listen_close),
            ("connected", connected),
            ("disconnected", disconnected),
            ("opened_stream", opened_stream),
            ("closed_stream", closed_stream),
        ):
            if fn is not None:
                if not callable(fn):
                    raise TypeError(f"NotifyBundle {name} must be callable")
                setattr(self, name, fn)


class Dispatcher:
    """FIFO of callables run one after another on one greenlet (spawned by ``spawn``).

    ``put(fn, *args)`` never blocks and never switches greenlets.
    """

    def __init__(self, spawn: Callable[..., Any], *, name: str = "swarm", warn_backlog: int = 1024,
                 slow_threshold: float = 1.0) -> None:
        self._queue: deque = deque()
        self._wake = Event()
        self._idle = Event()
        self._idle.set()
        self._name = name
        self._warn_at = warn_backlog
        self._warn_backlog = warn_backlog
        self._slow = slow_threshold
        self._stopped = False
        self.delivered = 0
        self.max_backlog = 0
        self._greenlet = spawn(self._run)

    def __len__(self) -> int:
        return len(self._queue)

    def put(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._stopped:
            return
        q = self._queue
        q.append((fn, args))
        n = len(q)
        if n > self.max_backlog:
            self.max_backlog = n
        if n >= self._warn_at:
            log.warning("%s notification backlog is %d (a notifiee or event subscriber is slow)", self._name, n)
            self._warn_at *= 2
        self._idle.clear()
        self._wake.set()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Blocks the calling greenlet until the queue is empty and nothing runs."""
        return self._idle.wait(timeout)

    def stop(self, drain_timeout: float | None = 1.0) -> None:
        """Deliver what is queued (for at most ``drain_timeout`` s), then stop the greenlet."""
        if self._stopped:
            return
        if drain_timeout and gevent.getcurrent() is not self._greenlet:
            self._idle.wait(drain_timeout)
        self._stopped = True
        self._queue.clear()
        self._wake.set()
        if gevent.getcurrent() is not self._greenlet:
            self._greenlet.kill(block=True, timeout=1.0)

    def _run(self) -> None:
        q = self._queue
        while not self._stopped:
            if not q:
                self._idle.set()
                self._wake.clear()
                self._wake.wait()
                continue
            fn, args = q.popleft()
            t0 = time.monotonic()
            try:
                fn(*args)
            except Exception:
                log.exception("%s notification %s failed", self._name, getattr(fn, "__qualname__", fn))
            took = time.monotonic() - t0
            self.delivered += 1
            if took > self._slow:
                log.warning("%s notification %s took %.2fs", self._name, getattr(fn, "__qualname__", fn), took)
            if len(q) < self._warn_backlog // 2:
                self._warn_at = self._warn_backlog
        self._idle.set()
