"""Bandwidth accounting: totals and smoothed rates per peer and per protocol.

``BandwidthCounter`` is what the swarm's ``bandwidth_reporter`` expects (go-libp2p
``core/metrics.Reporter`` / ``BandwidthCounter``): when a reporter is configured, the
swarm sets it as each stream's meter and the stream's slow path calls
``log_sent(n, peer, protocol)`` / ``log_recv(n, peer, protocol)`` once per
``write`` / ``read`` (no wrapper object; unmetered streams keep the fast path).

Rates are an exponentially weighted moving average over 1 s windows (the
go-flow-metrics model): bytes are summed per window and, when a window closes,
``rate = rate + ALPHA * (window_bytes / window_len - rate)``.  Windows are
closed lazily (on the next log or read of the meter), so there is no ticker
greenlet; empty windows that passed meanwhile decay the rate.  Time comes from
the injected ``clock`` (seconds, monotonic), so tests can drive it.

No greenlet switch happens inside any method: safe to call from any greenlet.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Hashable

from geventp2p.exceptions import ConfigError

__all__ = ["BandwidthCounter", "Stats", "Meter", "RATE_WINDOW", "ALPHA"]

#: Length of one rate window (seconds).
RATE_WINDOW = 1.0
#: Weight of the newest window in the EWMA (1 - 1/e: roughly "the last second or two").
ALPHA = 1.0 - math.exp(-1.0)


@dataclass(frozen=True, slots=True)
class Stats:
    """Byte totals and smoothed rates (bytes per second)."""

    total_in: int = 0
    total_out: int = 0
    rate_in: float = 0.0
    rate_out: float = 0.0


class Meter:
    """Total and EWMA rate of one byte stream (one direction)."""

    __slots__ = ("total", "_rate", "_acc", "_start", "_window", "_alpha")

    def __init__(self, now: float, window: float = RATE_WINDOW, alpha: float = ALPHA) -> None:
        self.total = 0
        self._rate = 0.0
        self._acc = 0
        self._start = now
        self._window = window
        self._alpha = alpha

    def _advance(self, now: float) -> None:
        elapsed = now - self._start
        if elapsed < self._window:
            return
        windows = int(elapsed // self._window)
        a = self._alpha
        # the first closed window holds every byte accumulated since _start
        self._rate += a * (self._acc / self._window - self._rate)
        if windows > 1:
            self._rate *= (1.0 - a) ** min(windows - 1, 10_000)
        if self._rate < 1e-9:
            self._rate = 0.0
        self._acc = 0
        self._start += windows * self._window

    def mark(self, n: int, now: float) -> None:
        self._advance(now)
        self.total += n
        self._acc += n

    def rate(self, now: float) -> float:
        self._advance(now)
        return self._rate


class _Pair:
    __slots__ = ("inb", "out", "last")

    def __init__(self, now: float, window: float, alpha: float) -> None:
        self.last = now
        self.inb = Meter(now, window, alpha)
        self.out = Meter(now, window, alpha)

    def stats(self, now: float) -> Stats:
        return Stats(self.inb.total, self.out.total, self.inb.rate(now), self.out.rate(now))


class BandwidthCounter:
    """Counts bytes sent/received in total, per peer and per protocol."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, *, window: float = RATE_WINDOW,
                 alpha: float = ALPHA) -> None:
        if not window > 0:
            raise ConfigError("bandwidth rate window must be > 0")
        if not 0 < alpha <= 1:
            raise ConfigError("bandwidth EWMA alpha must be in (0, 1]")
        self._clock = clock
        self._window = window
        self._alpha = alpha
        self._total = _Pair(clock(), window, alpha)
        self._peers: dict[Hashable, _Pair] = {}
        self._protocols: dict[str, _Pair] = {}

    def _pair(self, table: dict, key: Hashable, now: float) -> _Pair:
        p = table.get(key)
        if p is None:
            p = table[key] = _Pair(now, self._window, self._alpha)
        return p

    # -- reporting (called by the swarm)
    def log_sent(self, n: int, peer: Any = None, protocol: str | None = None) -> None:
        """Record ``n`` bytes written (to ``peer`` on ``protocol``, both optional)."""
        now = self._clock()
        self._total.out.mark(n, now)
        if peer is not None:
            p = self._pair(self._peers, peer, now)
            p.out.mark(n, now)
            p.last = now
        if protocol:
            p = self._pair(self._protocols, protocol, now)
            p.out.mark(n, now)
            p.last = now

    def log_recv(self, n: int, peer: Any = None, protocol: str | None = None) -> None:
        """Record ``n`` bytes read (from ``peer`` on ``protocol``, both optional)."""
        now = self._clock()
        self._total.inb.mark(n, now)
        if peer is not None:
            p = self._pair(self._peers, peer, now)
            p.inb.mark(n, now)
            p.last = now
        if protocol:
            p = self._pair(self._protocols, protocol, now)
            p.inb.mark(n, now)
            p.last = now

    # -- queries
    def totals(self) -> Stats:
        return self._total.stats(self._clock())

    def stats_for_peer(self, peer: Any) -> Stats:
        p = self._peers.get(peer)
        return p.stats(self._clock()) if p is not None else Stats()

    def stats_for_protocol(self, protocol: str) -> Stats:
        p = self._protocols.get(protocol)
        return p.stats(self._clock()) if p is not None else Stats()

    def stats_by_peer(self) -> dict[Any, Stats]:
        now = self._clock()
        return {k: p.stats(now) for k, p in self._peers.items()}

    def stats_by_protocol(self) -> dict[str, Stats]:
        now = self._clock()
        return {k: p.stats(now) for k, p in self._protocols.items()}

    def reset(self) -> None:
        """Forget everything (totals, peers, protocols)."""
        self._total = _Pair(self._clock(), self._window, self._alpha)
        self._peers.clear()
        self._protocols.clear()

    def trim_idle(self, idle_for: float = 3600.0) -> int:
        """Drop per-peer/protocol meters with no traffic for ``idle_for`` seconds; returns how many."""
        now = self._clock()
        dropped = 0
        tables: tuple[dict[Any, _Pair], ...] = (self._peers, self._protocols)
        for table in tables:
            for key in [k for k, p in table.items() if now - p.last >= idle_for]:
                del table[key]
                dropped += 1
        return dropped

    def __repr__(self) -> str:
        t = self.totals()
        return f"<BandwidthCounter in={t.total_in} out={t.total_out} peers={len(self._peers)}>"
