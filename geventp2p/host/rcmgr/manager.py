"""The resource manager: the scope DAG, allowlisting, refusal reporting and stats.

Scope names follow go's: ``system``, ``transient``, ``allowlisted-system``,
``allowlisted-transient``, ``service:<name>``, ``protocol:<id>``, ``peer:<id>``,
``service-peer:<name>``, ``protocol-peer:<id>`` (the last two also carry ``.peer``),
``conn-<n>``, ``stream-<n>``.  Keyed scopes (peer, protocol×peer, ...) are created on
first use and dropped once nothing is charged to them and no child refers to them.

Before any scope is charged, :meth:`ResourceManagerImpl.open_connection` applies go's
per-IP rules (:mod:`.connlimit`, both directions): a connection rate per remote subnet
and a cap on concurrent connections per remote subnet.  A refusal raises
:class:`~geventp2p.exceptions.ResourceLimitExceeded` with scope ``conn-rate-limiter``
or ``conn-limiter``; loopback is exempt unless ``limit_loopback=True``.

Refusals are counted per ``(scope kind, resource)`` in :attr:`blocked` (the metrics
read it) and reported to the ``geventp2p.rcmgr`` logger: DEBUG by default, one
WARNING line each with ``debug=True`` (``geventp2p serve --debug-rcmgr``).
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
from collections import Counter
from typing import Any, Iterable, Optional, Union

from geventp2p.core.rcmgr import ScopeStat
from geventp2p.exceptions import ConfigError, ResourceLimitExceeded
from geventp2p.host.rcmgr.connlimit import (
    DEFAULT_PREFIX_LIMITS,
    DEFAULT_PREFIX_RATES,
    ConnLimiter,
    ConnRateLimiter,
    NetworkPrefixLimit,
    NetworkPrefixRate,
    remote_ip,
)
from geventp2p.host.rcmgr.limits import ConcreteLimitConfig, LimitConfig, default_limits
from geventp2p.host.rcmgr.scope import ConnScope, Scope, StreamScope, is_inbound

__all__ = ["ResourceManagerImpl", "new_resource_manager"]

log = logging.getLogger("geventp2p.rcmgr")

_IpNet = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


def _parse_allow(entry: str) -> _IpNet:
    """``/ip4/1.2.3.4``, ``/ip4/10.0.0.0/ipcidr/8``, ``/ip6/::1`` (a trailing /p2p is ignored)."""
    parts = [p for p in str(entry).split("/") if p]
    try:
        if len(parts) >= 2 and parts[0] in ("ip4", "ip6"):
            if len(parts) >= 4 and parts[2] == "ipcidr":
                return ipaddress.ip_network(f"{parts[1]}/{parts[3]}", strict=False)
            return ipaddress.ip_network(parts[1])
    except ValueError:
        pass
    raise ConfigError(f"allowlist entry must be /ip4/... or /ip6/... (optionally /ipcidr/N): {entry!r}")


def _endpoint_ip(endpoint: Any) -> Optional[Union[ipaddress.IPv4Address, ipaddress.IPv6Address]]:
    if endpoint is None:
        return None
    parts = [p for p in str(endpoint).split("/") if p]
    if len(parts) >= 2 and parts[0] in ("ip4", "ip6"):
        try:
            return ipaddress.ip_address(parts[1].split("%")[0])
        except ValueError:
            return None
    return None


class ResourceManagerImpl:
    """go-libp2p's ``resourceManager`` in Python form; see :mod:`geventp2p.core.rcmgr`."""

    def __init__(
        self,
        limits: ConcreteLimitConfig,
        *,
        allowlist: Iterable[str] = (),
        debug: bool = False,
        conn_limiter: Optional[ConnLimiter] = None,
        conn_rate_limiter: Optional[ConnRateLimiter] = None,
    ) -> None:
        self.limits = limits
        self.debug = debug
        #: Per-IP concurrent connection cap and rate limit (``None``: not applied).
        self.conn_limiter = conn_limiter
        self.conn_rate_limiter = conn_rate_limiter
        self.allowlist: list[_IpNet] = [_parse_allow(a) for a in allowlist]
        self.blocked: Counter[tuple[str, str]] = Counter()
        self.system = Scope("system", limits.system, [], self._refused)
        self.transient = Scope("transient", limits.transient, [self.system], self._refused)
        self.allowlisted_system = Scope("allowlisted-system", limits.allowlisted_system, [], self._refused)
        self.allowlisted_transient = Scope(
            "allowlisted-transient", limits.allowlisted_transient, [self.allowlisted_system], self._refused
        )
        self._services: dict[str, Scope] = {}
        self._protocols: dict[str, Scope] = {}
        self._peers: dict[Any, Scope] = {}
        self._service_peers: dict[tuple[str, Any], Scope] = {}
        self._protocol_peers: dict[tuple[str, Any], Scope] = {}
        self._ids = itertools.count(1)
        # keyed scopes that became unused, forgotten in batches (go sweeps them every
        # minute): a peer's next stream finds its scopes still there instead of
        # building and dropping them for every stream
        self._idle: dict[Scope, None] = {}
        self.closed = False

    # -- refusal reporting ------------------------------------------------------------
    def _refused(self, scope: Scope, resource: str, used: int, requested: int, limit: int, peer: Any = None) -> None:
        name = scope.name.split(".span-", 1)[0]
        kind = name.split("-", 1)[0] if name.startswith(("conn-", "stream-")) else name.split(":", 1)[0]
        self.blocked[(kind, resource)] += 1
        level = logging.WARNING if self.debug else logging.DEBUG
        if log.isEnabledFor(level):
            if peer is None:
                peer = scope.peer
            peer = f" peer={peer}" if peer is not None else ""
            log.log(
                level,
                "rcmgr: refused %s in scope %s%s: used %d + requested %d > limit %d",
                resource, scope.name, peer, used, requested, limit,
            )

    def _refused_ip(self, limiter: str, resource: str, endpoint: Any) -> ResourceLimitExceeded:
        self.blocked[(limiter, resource)] += 1
        level = logging.WARNING if self.debug else logging.DEBUG
        if log.isEnabledFor(level):
            log.log(level, "rcmgr: refused connection %s: %s", endpoint, resource)
        return ResourceLimitExceeded(limiter, resource)

    # -- keyed scopes -----------------------------------------------------------------
    def _service(self, name: str) -> Scope:
        s = self._services.get(name)
        if s is None:
            s = self._services[name] = Scope(f"service:{name}", self.limits.for_service(name), [self.system], self._refused)
        return s

    def _protocol(self, proto: str) -> Scope:
        s = self._protocols.get(proto)
        if s is None:
            s = self._protocols[proto] = Scope(f"protocol:{proto}", self.limits.for_protocol(proto), [self.system], self._refused)
        return s

    def _peer(self, peer: Any) -> Scope:
        s = self._peers.get(peer)
        if s is None:
            s = self._peers[peer] = Scope(f"peer:{peer}", self.limits.for_peer(peer), [self.system], self._refused, peer)
        return s

    def _service_peer(self, name: str, peer: Any) -> Scope:
        key = (name, peer)
        s = self._service_peers.get(key)
        if s is None:
            s = self._service_peers[key] = Scope(
                f"service-peer:{name}", self.limits.for_service_peer(name), [], self._refused, peer
            )
        return s

    def _protocol_peer(self, proto: str, peer: Any) -> Scope:
        key = (proto, peer)
        s = self._protocol_peers.get(key)
        if s is None:
            s = self._protocol_peers[key] = Scope(
                f"protocol-peer:{proto}", self.limits.for_protocol_peer(proto), [], self._refused, peer
            )
        return s

    #: unused keyed scopes kept before a sweep forgets them
    IDLE_SWEEP = 1024

    def _maybe_drop(self, scope: Scope) -> None:
        """Note a keyed scope nothing may be charged to any more; forgotten at the next sweep."""
        if scope.refs:
            return
        idle = self._idle
        idle[scope] = None
        if len(idle) >= self.IDLE_SWEEP:
            self._sweep()

    def _sweep(self) -> None:
        """Forget the noted keyed scopes that are still unused and empty."""
        idle, self._idle = self._idle, {}
        for scope in idle:
            if scope.refs or not scope._is_empty():
                continue
            name = scope.name
            if name.startswith("service-peer:"):
                d: dict[Any, Scope] = self._service_peers
                key: Any = (name[13:], scope.peer)
            elif name.startswith("protocol-peer:"):
                d, key = self._protocol_peers, (name[14:], scope.peer)
            elif name.startswith("peer:"):
                d, key = self._peers, scope.peer
            else:
                continue  # service and protocol scopes are few and kept for the stats
            if d.get(key) is scope:
                del d[key]

    _maybe_drop_peer = _maybe_drop

    # -- views ------------------------------------------------------------------------
    def view_system(self) -> Scope:
        return self.system

    def view_transient(self) -> Scope:
        return self.transient

    def view_service(self, name: str) -> Scope:
        return self._service(name)

    def view_protocol(self, protocol: str) -> Scope:
        return self._protocol(protocol)

    def view_peer(self, peer: Any) -> Scope:
        return self._peer(peer)

    # -- connections and streams ------------------------------------------------------
    def is_allowlisted(self, endpoint: Any) -> bool:
        ip = _endpoint_ip(endpoint)
        return ip is not None and any(ip in net for net in self.allowlist)

    def open_connection(self, direction: Any, use_fd: bool, endpoint: Any) -> ConnScope:
        """A new connection's scope, charged to transient and system.

        First the per-IP rules of ``endpoint`` (rate, then concurrent connections), as
        go does for both directions.  When transient or system is full and ``endpoint``
        is allowlisted, the allowlisted pair is used instead (go's rule).  Raises
        :class:`ResourceLimitExceeded`; the scope's ``done()`` gives everything back,
        the per-IP count included."""
        inbound = is_inbound(direction)
        ip = None
        if self.conn_rate_limiter is not None or self.conn_limiter is not None:
            ip = remote_ip(endpoint)
        if ip is not None and self.conn_rate_limiter is not None and not self.conn_rate_limiter.allow(ip):
            raise self._refused_ip("conn-rate-limiter", "connection rate per ip", endpoint)
        if ip is not None and self.conn_limiter is not None:
            if not self.conn_limiter.add_conn(ip):
                raise self._refused_ip("conn-limiter", "connections per ip", endpoint)
        else:
            ip = None  # nothing counted: nothing to give back
        name = f"conn-{next(self._ids)}"
        try:
            scope = ConnScope(self, name, inbound, use_fd, endpoint, self.transient, self.system)
            try:
                scope.add_conn(direction, use_fd)
            except ResourceLimitExceeded:
                if not self.allowlist or not self.is_allowlisted(endpoint):
                    raise
                scope = ConnScope(self, name, inbound, use_fd, endpoint,
                                  self.allowlisted_transient, self.allowlisted_system)
                scope.add_conn(direction, use_fd)
        except BaseException:
            if ip is not None:
                self._release_ip(ip)
            raise
        scope.ip = ip
        return scope

    def _release_ip(self, ip: Any) -> None:
        """A connection counted by the per-IP limiter ended (called by ``ConnScope.done``)."""
        if self.conn_limiter is not None:
            self.conn_limiter.remove_conn(ip)

    def open_stream(self, peer: Any, direction: Any) -> StreamScope:
        """A new stream's scope, charged to transient, the peer and system."""
        inbound = is_inbound(direction)
        ps = self._peer(peer)
        scope = StreamScope(self, f"stream-{next(self._ids)}", peer, ps, inbound, self.transient, self.system)
        try:
            scope.add_stream(direction)
        except ResourceLimitExceeded:
            ps.refs -= 1
            scope.closed = True
            self._maybe_drop(ps)
            raise
        return scope

    # -- stats ------------------------------------------------------------------------
    def stat(self) -> dict[str, Any]:
        """A tree of usage: system, transient, services, protocols, peers (non-zero only)."""
        self._sweep()

        def nz(items: Iterable[tuple[Any, Scope]]) -> dict[str, ScopeStat]:
            return {str(k): s.stat() for k, s in items if not s.stat().is_zero()}

        return {
            "system": self.system.stat(),
            "transient": self.transient.stat(),
            "allowlisted_system": self.allowlisted_system.stat(),
            "allowlisted_transient": self.allowlisted_transient.stat(),
            "services": nz(self._services.items()),
            "protocols": nz(self._protocols.items()),
            "peers": nz(self._peers.items()),
        }

    def close(self) -> None:
        self.closed = True

    def __repr__(self) -> str:
        return f"<ResourceManager system={self.system.stat()}>"


def new_resource_manager(
    limits: Optional[Union[LimitConfig, ConcreteLimitConfig, str]] = None,
    *,
    total_memory: Optional[int] = None,
    fd_limit: Optional[int] = None,
    allowlist: Iterable[str] = (),
    debug: bool = False,
    ip_limits: Optional[Iterable[NetworkPrefixLimit]] = DEFAULT_PREFIX_LIMITS,
    ip_rates: Optional[Iterable[NetworkPrefixRate]] = DEFAULT_PREFIX_RATES,
    limit_loopback: bool = False,
) -> ResourceManagerImpl:
    """Blocks no greenlet.  go's default limits scaled to this machine, with overrides.

    ``limits``: ``None`` (defaults), a :class:`LimitConfig` (partial overrides, go's
    ``PartialLimitConfig``), a :class:`ConcreteLimitConfig`, or the path of a JSON
    limits file in go's format.  ``total_memory``/``fd_limit`` replace the machine's
    figures (tests, or a node that should assume less than the whole machine).

    ``ip_limits`` / ``ip_rates``: the per-IP connection caps and rates (go's defaults:
    8 per IPv4 address, 8 per IPv6 /56 and 64 per /48; 0.2 connections per second with
    a burst of 16 per address or /56, 0.5 per second burst 80 per /48); ``None`` or
    ``()`` turns a rule off.  Loopback is exempt unless ``limit_loopback``.
    """
    if isinstance(limits, ConcreteLimitConfig):
        concrete = limits
    else:
        concrete = default_limits().auto_scale(total_memory, fd_limit)
        if isinstance(limits, str):
            limits = LimitConfig.load(limits)
        if limits is not None:
            concrete = limits.build(concrete)
    prefix_limits = tuple(ip_limits or ())
    prefix_rates = tuple(ip_rates or ())
    return ResourceManagerImpl(
        concrete, allowlist=allowlist, debug=debug,
        conn_limiter=ConnLimiter(prefix_limits, limit_loopback=limit_loopback) if prefix_limits else None,
        conn_rate_limiter=ConnRateLimiter(prefix_rates, limit_loopback=limit_loopback) if prefix_rates else None,
    )
