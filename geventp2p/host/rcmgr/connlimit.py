"""Per-IP connection limits and connection rate limits (go-libp2p's defaults).

go's resource manager refuses a connection before any handshake when its remote
address already holds too many connections, or has opened them too fast:

* concurrent connections: 8 per IPv4 address (/32); for IPv6, 8 per /56 and 64 per
  /48 (one host often holds a whole /64 or more);
* connection rate, per remote subnet: IPv4 /32 0.2 per second with a burst of 16;
  IPv6 /56 the same, /48 0.5 per second with a burst of 80.

Loopback (``127.0.0.0/8``, ``::1``) is exempt by default; ``limit_loopback=True``
turns the rules on for it (the tests use that).  Everything here takes the time as
an argument and does no I/O.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from geventp2p.core.addr import P_IP4, P_IP6

__all__ = [
    "NetworkPrefixLimit",
    "NetworkPrefixRate",
    "DEFAULT_PREFIX_LIMITS",
    "DEFAULT_PREFIX_RATES",
    "ConnLimiter",
    "ConnRateLimiter",
    "remote_ip",
]

_IP = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


@dataclass(frozen=True, slots=True)
class NetworkPrefixLimit:
    """At most ``conns`` concurrent connections per /``prefix`` of one address family."""

    v6: bool
    prefix: int
    conns: int


@dataclass(frozen=True, slots=True)
class NetworkPrefixRate:
    """A token bucket per /``prefix``: ``rate`` connections per second, ``burst`` at once."""

    v6: bool
    prefix: int
    rate: float
    burst: int


DEFAULT_PREFIX_LIMITS = (
    NetworkPrefixLimit(False, 32, 8),
    NetworkPrefixLimit(True, 56, 8),
    NetworkPrefixLimit(True, 48, 64),
)
DEFAULT_PREFIX_RATES = (
    NetworkPrefixRate(False, 32, 0.2, 16),
    NetworkPrefixRate(True, 56, 0.2, 16),
    NetworkPrefixRate(True, 48, 0.5, 80),
)


def remote_ip(endpoint: Any) -> Optional[_IP]:
    """The IP of a multiaddr (``/ip4/1.2.3.4/tcp/1``) or ``(host, port)`` tuple, else ``None``."""
    if isinstance(endpoint, tuple) and endpoint:
        text = str(endpoint[0])
    else:
        # Binary form first: the multiaddr package's str() costs tens of microseconds,
        # and this runs once per connection.
        to_bytes = getattr(endpoint, "to_bytes", None)
        if to_bytes is not None:
            raw = to_bytes()
            first = raw[0] if raw else None  # ip4 and ip6 codes are one-byte uvarints
            if first == P_IP4 and len(raw) >= 5:
                return ipaddress.IPv4Address(raw[1:5])
            if first == P_IP6 and len(raw) >= 17:
                return ipaddress.IPv6Address(raw[1:17])
            return None
        parts = [p for p in str(endpoint).split("/") if p]
        if len(parts) < 2 or parts[0] not in ("ip4", "ip6"):
            return None
        text = parts[1]
    try:
        return ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return None


def _key(ip: _IP, prefix: int) -> tuple[int, int]:
    net = ipaddress.ip_network(f"{ip}/{prefix}", strict=False)
    return prefix, int(net.network_address)


class ConnLimiter:
    """Counts open connections per subnet; :meth:`add_conn` refuses past a limit."""

    def __init__(
        self,
        limits: tuple[NetworkPrefixLimit, ...] = DEFAULT_PREFIX_LIMITS,
        *,
        limit_loopback: bool = False,
    ) -> None:
        self.limits = limits
        self.limit_loopback = limit_loopback
        self._counts: dict[tuple[bool, int, int], int] = {}

    def _exempt(self, ip: Optional[_IP]) -> bool:
        return ip is None or (ip.is_loopback and not self.limit_loopback)

    def add_conn(self, ip: Optional[_IP]) -> bool:
        """Count a connection from ``ip``; False (and nothing counted) if over a limit."""
        if self._exempt(ip):
            return True
        assert ip is not None
        v6 = ip.version == 6
        keys = []
        for lim in self.limits:
            if lim.v6 != v6:
                continue
            key = (v6, *_key(ip, lim.prefix))
            if self._counts.get(key, 0) + 1 > lim.conns:
                return False
            keys.append(key)
        for key in keys:
            self._counts[key] = self._counts.get(key, 0) + 1
        return True

    def remove_conn(self, ip: Optional[_IP]) -> None:
        if self._exempt(ip):
            return
        assert ip is not None
        v6 = ip.version == 6
        for lim in self.limits:
            if lim.v6 != v6:
                continue
            key = (v6, *_key(ip, lim.prefix))
            n = self._counts.get(key, 0) - 1
            if n > 0:
                self._counts[key] = n
            else:
                self._counts.pop(key, None)

    def __len__(self) -> int:
        return len(self._counts)


class ConnRateLimiter:
    """Token buckets per subnet; :meth:`allow` spends one token or refuses."""

    def __init__(
        self,
        rates: tuple[NetworkPrefixRate, ...] = DEFAULT_PREFIX_RATES,
        *,
        limit_loopback: bool = False,
        clock: Callable[[], float] = time.monotonic,
        max_buckets: int = 65536,
    ) -> None:
        self.rates = rates
        self.limit_loopback = limit_loopback
        self._clock = clock
        self.max_buckets = max_buckets
        self._buckets: dict[tuple[bool, int, int], tuple[float, float]] = {}  # key -> (tokens, at)

    def allow(self, ip: Optional[_IP], now: Optional[float] = None) -> bool:
        if ip is None or (ip.is_loopback and not self.limit_loopback):
            return True
        now = self._clock() if now is None else now
        v6 = ip.version == 6
        updates = []
        for r in self.rates:
            if r.v6 != v6:
                continue
            key = (v6, *_key(ip, r.prefix))
            tokens, at = self._buckets.get(key, (float(r.burst), now))
            tokens = min(float(r.burst), tokens + (now - at) * r.rate)
            if tokens < 1.0:
                return False
            updates.append((key, tokens - 1.0))
        if len(self._buckets) + len(updates) > self.max_buckets:
            self._forget_full(now)
        for key, tokens in updates:
            self._buckets[key] = (tokens, now)
        return True

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled (they hold no information)."""
        rates = {(r.v6, r.prefix): r for r in self.rates}
        for key, (tokens, at) in list(self._buckets.items()):
            r = rates.get((key[0], key[1]))
            if r is None or tokens + (now - at) * r.rate >= r.burst:
                del self._buckets[key]
