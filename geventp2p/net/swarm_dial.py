"""Swarm dialing helpers: per-(peer, address) dial backoff and address ranking.

No gevent here: both are pure functions / plain objects with time passed in
through an injectable clock, so they are tested without sleeping.

Backoff (go-libp2p ``swarm.DialBackoff``): the first failure of an
address blocks it for ``base`` (5 s); each later failure for
``min(base + coef * tries**2, max)`` where ``tries`` counts the earlier
failures (6 s, 9 s, 14 s, 21 s, ... capped at 300 s).  Any successful
connection to the peer clears all its entries; entries whose worst-case next
backoff has passed are purged lazily.

Ranking (a simplified go ``DefaultDialRanker`` for the transports we have):
addresses are split into a local group (loopback, private, memory, unix) and a
public group, dialed in parallel; inside a group the first address starts at
once and each next one ``step`` later (30 ms local, 250 ms public), loopback
before private, then QUIC before TCP (go's order; TCP first with ``prefer_quic=False``),
IPv6 before IPv4 (go's happy-eyeballs order), lower ports first.
Relay (``/p2p-circuit``) addresses come last, 500 ms after the last direct one
when direct public addresses exist.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Hashable, Iterable

from geventp2p.core import addr as _addr
from geventp2p.exceptions import ConfigError

__all__ = [
    "DialBackoff",
    "BACKOFF_BASE",
    "BACKOFF_COEF",
    "BACKOFF_MAX",
    "rank_addrs",
    "STAGGER_LOCAL",
    "STAGGER_PUBLIC",
    "RELAY_DELAY",
    "AddrInfo",
    "addr_info",
]

BACKOFF_BASE = 5.0
BACKOFF_COEF = 1.0
BACKOFF_MAX = 300.0

STAGGER_LOCAL = 0.030
STAGGER_PUBLIC = 0.250
RELAY_DELAY = 0.500


class _Entry:
    __slots__ = ("tries", "until")

    def __init__(self, tries: int, until: float) -> None:
        self.tries = tries
        self.until = until


class DialBackoff:
    """Which (peer, address) pairs failed recently and may not be dialed yet."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        base: float = BACKOFF_BASE,
        coef: float = BACKOFF_COEF,
        max_backoff: float = BACKOFF_MAX,
        purge_interval: float = 300.0,
    ) -> None:
        if base < 0 or coef < 0 or max_backoff < base:
            raise ConfigError("dial backoff needs 0 <= base <= max_backoff and coef >= 0")
        self._clock = clock
        self.base = base
        self.coef = coef
        self.max_backoff = max_backoff
        self._purge_interval = purge_interval
        self._next_purge = clock() + purge_interval
        self._entries: dict[Hashable, dict[Any, _Entry]] = {}

    def _duration(self, tries: int) -> float:
        return min(self.base + self.coef * tries * tries, self.max_backoff)

    def backoff(self, peer: Hashable, addr: Any) -> bool:
        """True while ``addr`` of ``peer`` is blocked by an earlier failure."""
        book = self._entries.get(peer)
        if not book:
            return False
        e = book.get(_key(addr))
        return e is not None and self._clock() < e.until

    def until(self, peer: Hashable, addr: Any) -> float | None:
        """Clock time when the address's backoff ends (None if it has no entry)."""
        book = self._entries.get(peer)
        e = book.get(_key(addr)) if book else None
        return None if e is None else e.until

    def tries(self, peer: Hashable, addr: Any) -> int:
        """How many failures are on record for the address."""
        book = self._entries.get(peer)
        e = book.get(_key(addr)) if book else None
        return 0 if e is None else e.tries

    def add_backoff(self, peer: Hashable, addr: Any) -> float:
        """Record a failed dial; returns the backoff duration now in force (seconds)."""
        now = self._clock()
        if now >= self._next_purge:
            self.purge(now)
        book = self._entries.setdefault(peer, {})
        key = _key(addr)
        e = book.get(key)
        if e is None:
            book[key] = _Entry(1, now + self.base)
            return self.base
        d = self._duration(e.tries)
        e.until = now + d
        e.tries += 1
        return d

    def clear(self, peer: Hashable) -> None:
        """Forget every entry of ``peer`` (after a successful connection)."""
        self._entries.pop(peer, None)

    def purge(self, now: float | None = None) -> int:
        """Drop entries whose next backoff would already have expired; returns how many."""
        if now is None:
            now = self._clock()
        self._next_purge = now + self._purge_interval
        dropped = 0
        for peer in list(self._entries):
            book = self._entries[peer]
            for key in [k for k, e in book.items() if now >= e.until + self._duration(e.tries)]:
                del book[key]
                dropped += 1
            if not book:
                del self._entries[peer]
        return dropped

    def peers(self) -> list[Hashable]:
        return list(self._entries)

    def __len__(self) -> int:
        return sum(len(b) for b in self._entries.values())

    def __repr__(self) -> str:
        return f"<DialBackoff peers={len(self._entries)} entries={len(self)}>"


class AddrInfo:
    """What dialing needs to know about one transport address (computed once, cached).

    Inside a dial group addresses are ranked by :attr:`quic_first` (``prefer_quic``, go's
    order) or :attr:`tcp_first`: loopback first, then the preferred transport, then IPv6
    before IPv4, then the lower port."""

    __slots__ = ("relay", "local", "unspecified", "ip6_link_local", "quic_first", "tcp_first")

    def __init__(self, ma: Any) -> None:
        comps = _addr.components(ma)
        ip6 = comps[0].code in (_addr.P_IP6, _addr.P_IP6ZONE)
        self.relay = any(c.code == _addr.P_P2P_CIRCUIT for c in comps)
        self.local = _addr.is_local(ma)
        self.unspecified = _addr.is_unspecified(ma)
        self.ip6_link_local = _addr.is_link_local(ma) and ip6
        # rank keys (False sorts first): loopback, the transport, IPv6, the port
        loopback = _addr.is_loopback(ma)
        quic = any(c.code == _addr.P_QUIC_V1 for c in comps)
        port = _port(comps)
        self.quic_first: tuple[bool, bool, bool, int] = (not loopback, not quic, not ip6, port)
        self.tcp_first: tuple[bool, bool, bool, int] = (not loopback, quic, not ip6, port)

    @property
    def order(self) -> tuple[bool, bool, bool, int]:
        """The default rank key, :attr:`quic_first`."""
        return self.quic_first


_INFO: dict = {}
_INFO_MAX = 4096


def addr_info(ma: Any) -> AddrInfo:
    """Cached :class:`AddrInfo` of ``ma`` (parsing a multiaddr costs tens of microseconds)."""
    info = _INFO.get(ma)
    if info is None:
        info = AddrInfo(ma)
        if len(_INFO) >= _INFO_MAX:
            _INFO.clear()
        _INFO[ma] = info
    return info


def _key(addr: Any) -> Any:
    return _addr.parse(addr) if isinstance(addr, str) else addr


def _port(comps: tuple[_addr.Component, ...]) -> int:
    """The TCP or UDP port among an address's components (0 if it has none)."""
    for c in comps:
        if c.code in (_addr.P_TCP, _addr.P_UDP):
            try:
                return int(c.value or 0)
            except ValueError:
                return 0
    return 0


def rank_addrs(
    addrs: Iterable[Any],
    *,
    step_local: float = STAGGER_LOCAL,
    step_public: float = STAGGER_PUBLIC,
    relay_delay: float = RELAY_DELAY,
    prefer_quic: bool = True,
) -> list[tuple[float, Any]]:
    """``(delay seconds, addr)`` pairs sorted by delay: the dial schedule of one peer.

    ``prefer_quic``: QUIC addresses before TCP ones (go's ranking); False puts TCP first."""
    local, public, relay = [], [], []
    for ma in addrs:
        info = addr_info(ma)
        if info.relay:
            relay.append(ma)
        elif info.local:
            local.append(ma)
        else:
            public.append(ma)
    plan: list[tuple[float, int, Any]] = []
    seq = 0
    last_public = 0.0
    for group, step in ((local, step_local), (public, step_public)):
        if prefer_quic:
            group.sort(key=lambda m: addr_info(m).quic_first)
        else:
            group.sort(key=lambda m: addr_info(m).tcp_first)
        for i, ma in enumerate(group):
            plan.append((i * step, seq, ma))
            seq += 1
            if group is public:
                last_public = i * step
    base = last_public + relay_delay if public else 0.0
    for i, ma in enumerate(relay):
        plan.append((base + i * step_public, seq, ma))
        seq += 1
    plan.sort(key=lambda t: (t[0], t[1]))
    return [(d, ma) for d, _s, ma in plan]
