"""Received messages, handlers and adapters (Prysm's ``p2p.Adapter`` middleware).

A :data:`Handler` takes one received :class:`Message`; an :data:`Adapter` wraps a
handler and returns a handler.  ``Server.register_topic(topic, T, a1, a2)`` builds
``a1(a2(deliver))``: ``a1`` is outermost and sees every message first.  An adapter
*stops the chain* by returning without calling the next handler (a rate limiter, a
blacklist), or *passes it on*, possibly with another :class:`Message`::

    def only_from(allowed: set[PeerId]) -> Adapter:
        def adapter(next_handler: Handler) -> Handler:
            def handle(msg: Message) -> None:
                if msg.peer in allowed:
                    next_handler(msg)
            return handle
        return adapter

On the pubsub path the chain runs inside gossipsub's validation: a message an
adapter stops is IGNOREd and not forwarded to other peers.  An adapter that raises
REJECTs the message.  Adapters run on the receiving greenlet by default
(``ServerConfig.inline_validation``), so they must not block.

Three adapters real clients need ship here: :class:`RateLimiter` (a token bucket
per peer), :class:`DuplicateFilter` (the same bytes on the same topic only once,
e.g. when a message comes both directly and by gossip) and :class:`LoggingAdapter`.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Literal

from geventp2p.core.peer import PeerId

__all__ = [
    "Message",
    "Handler",
    "Adapter",
    "chain",
    "RateLimiter",
    "DuplicateFilter",
    "LoggingAdapter",
]

log = logging.getLogger(__name__)

Via = Literal["pubsub", "direct"]


@dataclass(frozen=True, slots=True)
class Message:
    """A received message, as adapters and feeds see it.

    ``peer`` is the peer it came from (the forwarder on pubsub, the sender on a direct
    stream), ``data`` the decoded message, ``topic`` its topic, ``received_at`` a
    ``time.time()`` timestamp, ``via`` ``"pubsub"`` or ``"direct"``, ``raw`` the
    encoded bytes and ``msg_id`` the pubsub message id (``b""`` for direct messages).
    """

    peer: PeerId
    data: Any
    topic: str
    received_at: float
    via: Via
    raw: bytes = b""
    msg_id: bytes = b""


Handler = Callable[[Message], None]
Adapter = Callable[[Handler], Handler]


def chain(terminal: Handler, adapters: tuple[Adapter, ...] | list[Adapter]) -> Handler:
    """``adapters[0](adapters[1](...(terminal)))``: the first adapter is outermost."""
    handler = terminal
    for adapter in reversed(adapters):
        handler = adapter(handler)
        if not callable(handler):
            raise TypeError(f"adapter {adapter!r} returned {handler!r}, not a handler")
    return handler


def _by_peer(msg: Message) -> Hashable:
    return msg.peer


class RateLimiter:
    """A token bucket per peer: ``rate`` messages per second, bursts of up to ``burst``.

    A message from a peer whose bucket is empty stops the chain (counted in
    ``dropped``).  ``clock`` (default ``time.monotonic``) is injectable for tests;
    ``key`` picks the bucket (default: ``msg.peer``).  At most ``max_peers`` buckets
    are kept; the least recently used is forgotten first (a forgotten peer starts
    with a full bucket again).
    """

    def __init__(self, rate: float, burst: int | float, *, clock: Callable[[], float] = time.monotonic,
                 key: Callable[[Message], Hashable] = _by_peer, max_peers: int = 10_000) -> None:
        if not rate > 0:
            raise ValueError("rate must be > 0")
        if not burst >= 1:
            raise ValueError("burst must be >= 1")
        if max_peers < 1:
            raise ValueError("max_peers must be >= 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self.clock = clock
        self.key = key
        self.max_peers = max_peers
        self._buckets: OrderedDict[Hashable, list[float]] = OrderedDict()  # key -> [tokens, last]
        self.passed = 0
        self.dropped = 0

    def allow(self, key: Hashable) -> bool:
        """Take one token from ``key``'s bucket; False when it is empty."""
        now = self.clock()
        b = self._buckets.get(key)
        if b is None:
            if len(self._buckets) >= self.max_peers:
                self._buckets.popitem(last=False)
            b = self._buckets[key] = [self.burst, now]
        else:
            self._buckets.move_to_end(key)
            elapsed = now - b[1]
            if elapsed > 0:
                b[0] = min(self.burst, b[0] + elapsed * self.rate)
            b[1] = now
        if b[0] >= 1.0:
            b[0] -= 1.0
            return True
        return False

    def __call__(self, next_handler: Handler) -> Handler:
        def rate_limited(msg: Message) -> None:
            if self.allow(self.key(msg)):
                self.passed += 1
                next_handler(msg)
            else:
                self.dropped += 1
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("rate limit: dropped a %s message from %s on %r", msg.via, msg.peer, msg.topic)
        return rate_limited


def _content_key(msg: Message) -> Hashable:
    return hashlib.sha256(msg.topic.encode() + b"\0" + msg.raw).digest()


class DuplicateFilter:
    """Pass a message only the first time its content is seen on its topic.

    Pubsub already drops duplicates by message id; this filter also catches a message
    that arrives both on a direct stream and by gossip, or is re-published with a new
    seqno.  ``key`` (default: SHA-256 of topic and encoded bytes) identifies a
    message; the last ``capacity`` keys are remembered for ``ttl`` seconds of
    ``clock``.  Duplicates are counted in ``dropped``.
    """

    def __init__(self, capacity: int = 8192, ttl: float = 120.0, *,
                 clock: Callable[[], float] = time.monotonic,
                 key: Callable[[Message], Hashable] = _content_key) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        if not ttl > 0:
            raise ValueError("ttl must be > 0")
        self.capacity = capacity
        self.ttl = float(ttl)
        self.clock = clock
        self.key = key
        self._seen: OrderedDict[Hashable, float] = OrderedDict()  # key -> expiry, oldest first
        self.dropped = 0

    def seen(self, key: Hashable) -> bool:
        """Record ``key``; True if it was already recorded and not expired."""
        now = self.clock()
        seen = self._seen
        while seen:  # expire from the old end
            k, exp = next(iter(seen.items()))
            if exp > now:
                break
            del seen[k]
        if key in seen:
            return True
        if len(seen) >= self.capacity:
            seen.popitem(last=False)
        seen[key] = now + self.ttl
        return False

    def __call__(self, next_handler: Handler) -> Handler:
        def deduplicated(msg: Message) -> None:
            if self.seen(self.key(msg)):
                self.dropped += 1
                return
            next_handler(msg)
        return deduplicated


class LoggingAdapter:
    """Log each message (topic, type, peer, path, size; never the payload) and pass it on."""

    def __init__(self, logger: logging.Logger | None = None, level: int = logging.DEBUG) -> None:
        self.logger = logger if logger is not None else log
        self.level = level

    def __call__(self, next_handler: Handler) -> Handler:
        logger, level = self.logger, self.level

        def logged(msg: Message) -> None:
            if logger.isEnabledFor(level):
                logger.log(level, "p2p: %s on %r from %s via %s (%d bytes)", type(msg.data).__name__,
                           msg.topic, msg.peer, msg.via, len(msg.raw))
            next_handler(msg)
        return logged
