"""Typed in-process event bus (the go-libp2p ``core/event`` model, on greenlets).

* ``bus.emitter(EvtX, stateful=False)`` returns an :class:`Emitter`; emitters
  are made once and kept.  ``emit(evt)`` checks the type and delivers the event
  to every current subscriber of that type and to every wildcard subscriber.
* ``bus.subscribe(EvtX | [EvtX, EvtY] | WILDCARD, buffer=16)`` returns a
  :class:`Subscription`: iterate it (blocking), or ``get(timeout=...)``.
* **Back-pressure as in go**: each subscription has a bounded buffer; ``emit``
  blocks the calling greenlet until every subscriber has accepted the event.
  When a delivery waits longer than ``slow_consumer_threshold`` (1 s) the bus
  logs one warning for that subscription.  Emit from a dispatcher greenlet,
  never from a connection reader.
* A stateful emitter's type keeps its last event; a *new* subscriber of that
  type receives it first (wildcard subscribers do not get replays).
* Events of one type reach each subscriber in emit order; emits of one type
  are serialised.
* ``close()`` on a subscription wakes a greenlet blocked in ``get`` (it raises
  :class:`~geventp2p.exceptions.SubscriptionClosedError`) or in iteration (the
  loop ends), and unblocks emitters waiting on its full buffer.

The bus starts no greenlets.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any, Iterable, Iterator

import gevent
import gevent.event
import gevent.lock

from geventp2p.exceptions import ConfigError, P2PTimeoutError, SubscriptionClosedError

__all__ = ["EventBus", "Subscription", "Emitter", "WILDCARD", "DEFAULT_BUFFER"]

log = logging.getLogger(__name__)

#: Default subscription buffer (events), as go's ``eventbus.BufSize``.
DEFAULT_BUFFER = 16


class _Wildcard:
    """Subscribe to every event type (go ``event.WildcardSubscription``)."""

    _instance: "_Wildcard | None" = None

    def __new__(cls) -> "_Wildcard":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "WILDCARD"

    def __reduce__(self) -> str:
        return "WILDCARD"


WILDCARD = _Wildcard()


class _Closed(Exception):
    """Internal: the bounded queue was closed."""


class _BoundedQueue:
    """FIFO with a capacity whose ``close()`` wakes every waiting putter and getter."""

    __slots__ = ("_items", "_cap", "_closed", "_not_empty", "_not_full")

    def __init__(self, cap: int) -> None:
        self._items: deque[Any] = deque()
        self._cap = cap
        self._closed = False
        self._not_empty = gevent.event.Event()
        self._not_full = gevent.event.Event()
        self._not_full.set()

    def _update(self) -> None:
        if self._items or self._closed:
            self._not_empty.set()
        else:
            self._not_empty.clear()
        if len(self._items) < self._cap or self._closed:
            self._not_full.set()
        else:
            self._not_full.clear()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Any, timeout: float | None = None) -> bool:
        """Blocks the calling greenlet until there is room; False on timeout, _Closed if closed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._closed:
                raise _Closed()
            if len(self._items) < self._cap:
                self._items.append(item)
                self._update()
                return True
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            self._not_full.wait(remaining)

    def get(self, timeout: float | None = None) -> Any:
        """Blocks the calling greenlet for an item; raises P2PTimeoutError or _Closed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._closed:
                raise _Closed()
            if self._items:
                item = self._items.popleft()
                self._update()
                return item
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise P2PTimeoutError(f"no event within {timeout} s")
            self._not_empty.wait(remaining)

    def close(self) -> None:
        self._closed = True
        self._items.clear()
        self._update()


class _Node:
    """Per-event-type state: subscribers, emitter count, last value for stateful types."""

    __slots__ = ("event_type", "subs", "emitters", "stateful", "has_last", "last", "emit_lock")

    def __init__(self, event_type: type) -> None:
        self.event_type = event_type
        self.subs: list[Subscription] = []
        self.emitters = 0
        self.stateful = False
        self.has_last = False
        self.last: Any = None
        self.emit_lock = gevent.lock.Semaphore()


class Subscription:
    """A bounded, blocking stream of events of the subscribed types.

    Iterate it (``for evt in sub``: ends when the subscription is closed) or call
    :meth:`get`.  Use it as a context manager to close it on exit.
    """

    def __init__(self, bus: "EventBus", event_types: tuple[type, ...], wildcard: bool, buffer: int, name: str) -> None:
        self._bus = bus
        self._types = event_types
        self._wildcard = wildcard
        self._queue = _BoundedQueue(buffer)
        self._buffer = buffer
        self.name = name
        self._closed = False
        self._warned_slow = False

    # --------------------------------------------------------------- info

    @property
    def event_types(self) -> tuple[type, ...]:
        """The subscribed types (empty for a wildcard subscription)."""
        return self._types

    @property
    def wildcard(self) -> bool:
        return self._wildcard

    @property
    def buffer(self) -> int:
        return self._buffer

    @property
    def closed(self) -> bool:
        return self._closed

    def qsize(self) -> int:
        """Events waiting in the buffer."""
        return len(self._queue)

    def __repr__(self) -> str:
        what = "*" if self._wildcard else ",".join(t.__name__ for t in self._types)
        state = " closed" if self._closed else ""
        return f"<Subscription {self.name or hex(id(self))} [{what}]{state}>"

    # --------------------------------------------------------------- reading

    def get(self, timeout: float | None = None) -> Any:
        """Blocks the calling greenlet until the next event arrives and returns it.

        Raises :class:`P2PTimeoutError` after ``timeout`` seconds and
        :class:`SubscriptionClosedError` once the subscription is closed (also
        when it is closed while waiting).
        """
        try:
            return self._queue.get(timeout)
        except _Closed:
            raise SubscriptionClosedError(f"{self!r} is closed") from None

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        """Blocks the calling greenlet for the next event; stops when closed."""
        try:
            return self._queue.get(None)
        except _Closed:
            raise StopIteration from None

    # --------------------------------------------------------------- lifecycle

    def close(self) -> None:
        """Unsubscribe, drop buffered events and wake blocked readers and emitters (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._bus._remove_subscription(self)
        self._queue.close()

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --------------------------------------------------------------- delivery (bus side)

    def _deliver(self, evt: Any, threshold: float) -> None:
        """Blocks the calling (emitting) greenlet until this subscriber takes ``evt``."""
        try:
            if self._queue.put(evt, timeout=0 if self._warned_slow else threshold):
                return
            if not self._warned_slow:
                self._warned_slow = True
                log.warning(
                    "event bus: subscriber %r is a slow consumer: delivering %s has waited more "
                    "than %.3g s on its full buffer (%d events); every emitter of this type stalls "
                    "until it reads",
                    self, type(evt).__name__, threshold, self._buffer,
                )
            self._queue.put(evt)
        except _Closed:
            pass  # closed while we waited: nothing to deliver to


class Emitter:
    """Publishes events of one type on the bus. Made once per type by each producer."""

    def __init__(self, bus: "EventBus", node: _Node, stateful: bool) -> None:
        self._bus = bus
        self._node = node
        self._stateful = stateful
        self._closed = False

    @property
    def event_type(self) -> type:
        return self._node.event_type

    @property
    def stateful(self) -> bool:
        return self._stateful

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        return f"<Emitter {self._node.event_type.__name__}{' stateful' if self._stateful else ''}" \
               f"{' closed' if self._closed else ''}>"

    def emit(self, evt: Any) -> None:
        """Blocks the calling greenlet until every subscriber has accepted ``evt``.

        Raises ``TypeError`` if ``evt`` is not exactly this emitter's type and
        :class:`SubscriptionClosedError` after :meth:`close`.
        """
        if self._closed:
            raise SubscriptionClosedError(f"{self!r} is closed")
        node = self._node
        if type(evt) is not node.event_type:
            raise TypeError(f"emitter for {node.event_type.__name__} cannot emit {type(evt).__name__}")
        bus = self._bus
        with node.emit_lock:
            if self._closed:
                raise SubscriptionClosedError(f"{self!r} is closed")
            # No switch between recording the last value and taking the snapshot, so
            # a subscriber added later gets exactly this event by replay instead.
            if node.stateful:
                node.last = evt
                node.has_last = True
            targets = node.subs + bus._wildcard_subs
            threshold = bus.slow_consumer_threshold
            for sub in targets:
                if not sub._closed:
                    sub._deliver(evt, threshold)

    def close(self) -> None:
        """Release the emitter (idempotent). Further ``emit`` calls raise."""
        if self._closed:
            return
        self._closed = True
        self._bus._release_emitter(self)

    def __enter__(self) -> "Emitter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class EventBus:
    """Typed publish/subscribe between host components and applications.

    ``slow_consumer_threshold`` is how long (seconds) one delivery may wait on a
    full subscriber buffer before a warning is logged for that subscriber.
    """

    def __init__(self, *, slow_consumer_threshold: float = 1.0) -> None:
        if not isinstance(slow_consumer_threshold, (int, float)) or slow_consumer_threshold <= 0:
            raise ConfigError(f"slow_consumer_threshold must be > 0 seconds, got {slow_consumer_threshold!r}")
        self.slow_consumer_threshold = float(slow_consumer_threshold)
        self._nodes: dict[type, _Node] = {}
        self._wildcard_subs: list[Subscription] = []
        self._emitters: set[Emitter] = set()
        self._closed = False

    # --------------------------------------------------------------- public API

    def subscribe(
        self,
        event_types: "type | Iterable[type] | _Wildcard",
        buffer: int = DEFAULT_BUFFER,
        name: str = "",
    ) -> Subscription:
        """Subscribe to one type, a list of types, or ``WILDCARD`` (every event).

        A stateful type's last event (if any) is already waiting in the new
        subscription's buffer when this returns.
        """
        if self._closed:
            raise SubscriptionClosedError("event bus is closed")
        if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 1:
            raise ConfigError(f"subscription buffer must be an int >= 1, got {buffer!r}")
        wildcard = False
        types: list[type] = []
        items = [event_types] if isinstance(event_types, (type, _Wildcard)) else list(event_types)
        if not items:
            raise ValueError("subscribe() needs at least one event type or WILDCARD")
        for t in items:
            if t is WILDCARD:
                wildcard = True
            elif isinstance(t, type):
                if t not in types:
                    types.append(t)
            else:
                raise TypeError(f"event types must be classes or WILDCARD, got {t!r}")
        if wildcard:
            types = []  # a wildcard subscription already receives everything
        sub = Subscription(self, tuple(types), wildcard, buffer, name)
        if wildcard:
            self._wildcard_subs.append(sub)
            return sub
        for t in types:
            node = self._nodes.get(t)
            if node is None:
                node = self._nodes[t] = _Node(t)
            node.subs.append(sub)
            if node.has_last:
                sub._queue.put(node.last, timeout=0)  # never blocks: the buffer is new
        return sub

    def emitter(self, event_type: type, stateful: bool = False) -> Emitter:
        """Return a new emitter for ``event_type`` (a class)."""
        if self._closed:
            raise SubscriptionClosedError("event bus is closed")
        if not isinstance(event_type, type):
            raise TypeError(f"event type must be a class, got {event_type!r}")
        node = self._nodes.get(event_type)
        if node is None:
            node = self._nodes[event_type] = _Node(event_type)
        node.emitters += 1
        if stateful:
            node.stateful = True
        em = Emitter(self, node, stateful)
        self._emitters.add(em)
        return em

    def event_types(self) -> list[type]:
        """Event types that currently have an emitter or a subscriber."""
        return list(self._nodes)

    def close(self) -> None:
        """Close every subscription and emitter (host shutdown). Idempotent."""
        if self._closed:
            return
        self._closed = True
        for em in list(self._emitters):
            em.close()
        subs = list(self._wildcard_subs)
        for node in list(self._nodes.values()):
            subs.extend(node.subs)
        for sub in subs:
            sub.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        return f"<EventBus types={len(self._nodes)} wildcard_subs={len(self._wildcard_subs)}>"

    # --------------------------------------------------------------- internals

    def _drop_if_unused(self, node: _Node) -> None:
        if not node.subs and node.emitters == 0 and self._nodes.get(node.event_type) is node:
            del self._nodes[node.event_type]

    def _remove_subscription(self, sub: Subscription) -> None:
        if sub._wildcard:
            try:
                self._wildcard_subs.remove(sub)
            except ValueError:
                pass
            return
        for t in sub._types:
            node = self._nodes.get(t)
            if node is None:
                continue
            try:
                node.subs.remove(sub)
            except ValueError:
                pass
            self._drop_if_unused(node)

    def _release_emitter(self, em: Emitter) -> None:
        node = em._node
        node.emitters -= 1
        self._emitters.discard(em)
        self._drop_if_unused(node)
