# cython: annotation_typing=False
"""Resource scopes: counters with limits, linked into go-libp2p's scope DAG.

A scope counts inbound/outbound streams and connections, file descriptors and memory,
and holds a :class:`~geventp2p.host.rcmgr.limits.BaseLimit`.  ``edges`` lists every
ancestor the scope's usage is also charged to (flattened: a stream's edges are its
peer, its protocol, the protocol×peer scope, ..., and system).  A reservation is
checked against the scope and all edges first, then applied to all of them, so a
refusal changes nothing.  No method switches greenlets, so no locks are needed.

Spec of the model: https://github.com/libp2p/go-libp2p/tree/master/p2p/host/resource-manager

Pure Python source; the build compiles this same file as ``_c_scope`` with
``_c_scope.pxd`` (C counters, C calls between scopes): every stream opens, names and
closes a scope on each side, so this runs a handful of times per stream.  Import it as
:mod:`geventp2p.host.rcmgr.scope`.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Optional

from geventp2p.core.mux import Direction
from geventp2p.core.rcmgr import Priority, ScopeStat
from geventp2p.exceptions import ConfigError, ResourceLimitExceeded, ResourceScopeClosed

__all__ = ["Scope", "ConnScope", "StreamScope", "is_inbound"]

_span_ids = itertools.count(1)
_ALWAYS = int(Priority.ALWAYS)

#: What a refusal is reported to: ``(scope, resource, used, requested, limit)``.
RefusalHook = Callable[["Scope", str, int, int, int, Any], None]


def is_inbound(direction: Direction | str) -> bool:
    """``Direction.INBOUND`` / ``"inbound"`` -> True, outbound -> False."""
    if direction == Direction.INBOUND:  # a str enum: equal to "inbound" too
        return True
    if direction == Direction.OUTBOUND:
        return False
    raise ConfigError(f"direction must be 'inbound' or 'outbound', got {direction!r}")


class Scope:
    """One node of the DAG (go ``resourceScope``)."""

    __slots__ = (
        "name", "limit", "edges", "peer", "_hook",
        "streams_in", "streams_out", "conns_in", "conns_out", "fds", "memory",
        "closed", "refs",
    )

    def __init__(
        self,
        name: str,
        limit: Any,
        edges: list["Scope"],
        hook: Optional[RefusalHook] = None,
        peer: Any = None,
    ) -> None:
        self.name = name
        self.limit = limit
        self.edges = edges
        self.peer = peer
        self._hook = hook
        self.streams_in = self.streams_out = 0
        self.conns_in = self.conns_out = 0
        self.fds = 0
        self.memory = 0
        self.closed = False
        self.refs = 0  # child scopes attached (the manager may drop unused keyed scopes)

    # -- checks of this scope alone (no change) -------------------------------------
    def _refuse(self, resource: str, used: int, requested: int, limit: int, peer: Any = None) -> ResourceLimitExceeded:
        """``peer``: the peer of the scope the request started from (an ancestor that
        refuses, e.g. the system or a protocol scope, has none of its own)."""
        if self._hook is not None:
            self._hook(self, resource, used, requested, limit, peer if peer is not None else self.peer)
        return ResourceLimitExceeded(
            self.name, resource, self.stat(), used=used, requested=requested, limit=limit
        )

    def _check_memory(self, size: int, priority: int, peer: Any = None) -> None:
        limit = self.limit.memory
        threshold = limit * (1 + priority) // 256
        if self.memory + size > threshold:
            raise self._refuse("memory", self.memory, size, limit, peer)

    def _check_streams(self, inbound: bool, n: int = 1, peer: Any = None) -> None:
        lim = self.limit
        if inbound:
            if self.streams_in + n > lim.streams_inbound:
                raise self._refuse("streams (inbound)", self.streams_in, n, lim.streams_inbound, peer)
        elif self.streams_out + n > lim.streams_outbound:
            raise self._refuse("streams (outbound)", self.streams_out, n, lim.streams_outbound, peer)
        total = self.streams_in + self.streams_out
        if total + n > lim.streams:
            raise self._refuse("streams", total, n, lim.streams, peer)

    def _check_conns(self, inbound: bool, use_fd: bool, n: int = 1, peer: Any = None) -> None:
        lim = self.limit
        if inbound:
            if self.conns_in + n > lim.conns_inbound:
                raise self._refuse("conns (inbound)", self.conns_in, n, lim.conns_inbound, peer)
        elif self.conns_out + n > lim.conns_outbound:
            raise self._refuse("conns (outbound)", self.conns_out, n, lim.conns_outbound, peer)
        total = self.conns_in + self.conns_out
        if total + n > lim.conns:
            raise self._refuse("conns", total, n, lim.conns, peer)
        if use_fd and self.fds + n > lim.fd:
            raise self._refuse("fd", self.fds, n, lim.fd, peer)

    def _check_usage(self, src: "Scope", peer: Any = None) -> None:
        """Could this scope take ``src``'s usage on top of its own (go ``ReserveForChild``)?
        Reads ``src``'s counters directly: no ScopeStat per stream on the hot path."""
        if src.memory:
            self._check_memory(src.memory, _ALWAYS, peer)
        if src.streams_in:
            self._check_streams(True, src.streams_in, peer)
        if src.streams_out:
            self._check_streams(False, src.streams_out, peer)
        if src.conns_in:
            self._check_conns(True, bool(src.fds), src.conns_in, peer)
        if src.conns_out:
            self._check_conns(False, bool(src.fds), src.conns_out, peer)
        if src.fds and not (src.conns_in or src.conns_out):
            if self.fds + src.fds > self.limit.fd:
                raise self._refuse("fd", self.fds, src.fds, self.limit.fd, peer)

    def _add_usage(self, src: "Scope", sign: int) -> None:
        self.streams_in += sign * src.streams_in
        self.streams_out += sign * src.streams_out
        self.conns_in += sign * src.conns_in
        self.conns_out += sign * src.conns_out
        self.fds += sign * src.fds
        self.memory += sign * src.memory

    def _is_empty(self) -> bool:
        return not (self.streams_in or self.streams_out or self.conns_in or self.conns_out
                    or self.fds or self.memory)

    def _live(self) -> None:
        if self.closed:
            raise ResourceScopeClosed(f"resource scope {self.name} is done")

    # -- public: reservations charged to this scope and every edge ------------------
    def reserve_memory(self, size: int, priority: int = Priority.ALWAYS) -> None:
        """Reserve ``size`` bytes here and in every ancestor, or raise
        :class:`ResourceLimitExceeded` naming the scope that refused."""
        self._live()
        if size < 0:
            raise ValueError("cannot reserve a negative amount of memory")
        self._check_memory(size, priority)
        for e in self.edges:
            e._check_memory(size, priority, self.peer)
        self.memory += size
        for e in self.edges:
            e.memory += size

    def release_memory(self, size: int) -> None:
        size = min(size, self.memory)  # never below zero, whatever the caller thinks
        self.memory -= size
        for e in self.edges:
            e.memory -= size

    def add_stream(self, direction: Any) -> None:
        self._live()
        inbound = is_inbound(direction)
        self._check_streams(inbound)
        for e in self.edges:
            e._check_streams(inbound, 1, self.peer)
        self._count_stream(inbound, 1)

    def remove_stream(self, direction: Any) -> None:
        self._count_stream(is_inbound(direction), -1)

    def _count_stream(self, inbound: bool, n: int) -> None:
        if inbound:
            self.streams_in += n
            for e in self.edges:
                e.streams_in += n
        else:
            self.streams_out += n
            for e in self.edges:
                e.streams_out += n

    def add_conn(self, direction: Any, use_fd: bool) -> None:
        self._live()
        inbound = is_inbound(direction)
        self._check_conns(inbound, use_fd)
        for e in self.edges:
            e._check_conns(inbound, use_fd, 1, self.peer)
        self._count_conn(inbound, use_fd, 1)

    def remove_conn(self, direction: Any, use_fd: bool) -> None:
        self._count_conn(is_inbound(direction), use_fd, -1)

    def _count_conn(self, inbound: bool, use_fd: bool, n: int) -> None:
        for s in [self, *self.edges]:
            if inbound:
                s.conns_in += n
            else:
                s.conns_out += n
            if use_fd:
                s.fds += n

    def stat(self) -> ScopeStat:
        return ScopeStat(
            num_streams_inbound=self.streams_in,
            num_streams_outbound=self.streams_out,
            num_conns_inbound=self.conns_in,
            num_conns_outbound=self.conns_out,
            num_fd=self.fds,
            memory=self.memory,
        )

    def begin_span(self) -> "Scope":
        """A child scope whose reservations :meth:`done` gives back all at once."""
        self._live()
        # The owner's usage includes the span's, so the owner's limit (checked as an
        # edge) bounds the span too, and a refusal names the owner.
        return Scope(f"{self.name}.span-{next(_span_ids)}", type(self.limit).unlimited(), [self, *self.edges], self._hook, self.peer)

    def done(self) -> None:
        """Give back everything this scope still holds, in every ancestor (idempotent)."""
        if self.closed:
            return
        self.closed = True
        if not self._is_empty():
            for e in self.edges:
                e._add_usage(self, -1)
            self.streams_in = self.streams_out = self.conns_in = self.conns_out = self.fds = self.memory = 0

    def __repr__(self) -> str:
        return f"<Scope {self.name} {self.stat()}>"


class ConnScope(Scope):
    """A connection: charged to transient until :meth:`set_peer` moves it to the peer."""

    __slots__ = ("_mgr", "_peer_scope", "inbound", "use_fd", "endpoint", "_transient", "ip")

    def __init__(
        self,
        mgr: Any,
        name: str,
        inbound: bool,
        use_fd: bool,
        endpoint: Any,
        transient: Scope,
        system: Scope,
    ) -> None:
        super().__init__(name, mgr.limits.conn, [transient, system], mgr._refused)
        self._mgr = mgr
        self._peer_scope: Optional[Scope] = None
        self._transient = transient
        self.inbound = inbound
        self.use_fd = use_fd
        self.endpoint = endpoint
        self.ip: Any = None  # the address the manager's per-IP limiter counted, if any

    def peer_scope(self) -> Optional[Scope]:
        return self._peer_scope

    def set_peer(self, peer: Any) -> None:
        """Move this connection and what it reserved from transient to ``peer``'s scope.

        Raises :class:`ResourceLimitExceeded` (and changes nothing) if the peer is full.
        """
        self._live()
        if self._peer_scope is not None:
            raise ConfigError(f"{self.name}: the peer is already set")
        ps = self._mgr._peer(peer)
        try:
            ps._check_usage(self, peer)
        except ResourceLimitExceeded:
            self._mgr._maybe_drop_peer(ps)
            raise
        ps._add_usage(self, +1)
        self._transient._add_usage(self, -1)
        ps.refs += 1
        self._peer_scope = ps
        self.peer = peer
        self.edges = [ps, *[e for e in self.edges if e is not self._transient]]

    def done(self) -> None:
        if self.closed:
            return
        Scope.done(self)
        if self.ip is not None:
            ip, self.ip = self.ip, None
            self._mgr._release_ip(ip)
        if self._peer_scope is not None:
            self._peer_scope.refs -= 1
            self._mgr._maybe_drop_peer(self._peer_scope)


class StreamScope(Scope):
    """A stream: charged to transient until :meth:`set_protocol` names its protocol."""

    __slots__ = ("_mgr", "_peer_scope", "_transient", "_proto", "_proto_peer", "_svc", "_svc_peer",
                 "protocol", "service", "inbound")

    def __init__(
        self,
        mgr: Any,
        name: str,
        peer: Any,
        peer_scope: Scope,
        inbound: bool,
        transient: Scope,
        system: Scope,
    ) -> None:
        super().__init__(name, mgr.limits.stream, [peer_scope, transient, system], mgr._refused, peer)
        self._mgr = mgr
        self._peer_scope = peer_scope
        self._transient: Optional[Scope] = transient
        self._proto: Optional[Scope] = None
        self._proto_peer: Optional[Scope] = None
        self._svc: Optional[Scope] = None
        self._svc_peer: Optional[Scope] = None
        self.protocol: Optional[str] = None
        self.service: Optional[str] = None
        self.inbound = inbound
        peer_scope.refs += 1

    def peer_scope(self) -> Scope:
        return self._peer_scope

    def protocol_scope(self) -> Optional[Scope]:
        return self._proto

    def service_scope(self) -> Optional[Scope]:
        return self._svc

    def _attach(self, pair: tuple[Scope, Scope]) -> tuple[Scope, Scope]:
        """Charge this stream's usage to both scopes of ``pair`` (each checked alone) and
        return it; on refusal change nothing and let the manager forget unused scopes.

        A stream scope holds one stream and some memory, so the checks and the counters
        are written out here (no ScopeStat, few calls: this runs for every stream)."""
        inbound, mem, peer = self.inbound, self.memory, self.peer
        try:
            for s in pair:
                s._check_streams(inbound, 1, peer)
                if mem:
                    s._check_memory(mem, _ALWAYS, peer)
        except ResourceLimitExceeded:
            for s in pair:
                self._mgr._maybe_drop(s)
            raise
        for s in pair:
            if inbound:
                s.streams_in += 1
            else:
                s.streams_out += 1
            s.memory += mem
            s.refs += 1
        return pair

    def set_protocol(self, protocol: str) -> None:
        """Move the stream from transient to ``protocol`` and protocol×peer.

        On refusal the stream should be reset with code 0x1002 (go resets it after
        the multistream echo was already sent)."""
        self._live()
        if self._proto is not None:
            raise ConfigError(f"{self.name}: the protocol is already set")
        mgr = self._mgr
        pair = self._attach((mgr._protocol(protocol), mgr._protocol_peer(protocol, self.peer)))
        self._proto, self._proto_peer = pair
        self.protocol = protocol
        transient = self._transient
        self._transient = None
        if transient is not None:
            if self.inbound:
                transient.streams_in -= 1
            else:
                transient.streams_out -= 1
            transient.memory -= self.memory
        self.edges = [self._peer_scope, *pair, *[e for e in self.edges if e is not transient and e is not self._peer_scope]]

    def set_service(self, service: str) -> None:
        """Also charge the stream to ``service`` and service×peer (needs a protocol)."""
        self._live()
        if self._proto is None:
            raise ConfigError(f"{self.name}: set_service needs a protocol first")
        if self._svc is not None:
            raise ConfigError(f"{self.name}: the service is already set")
        mgr = self._mgr
        pair = self._attach((mgr._service(service), mgr._service_peer(service, self.peer)))
        self._svc, self._svc_peer = pair
        self.service = service
        edges = self.edges
        last = len(edges) - 1  # (no negative indices: the compiled build turns off wraparound)
        self.edges = [*edges[:last], *pair, edges[last]]  # system stays last

    def done(self) -> None:
        if self.closed:
            return
        self.closed = True
        si, so, mem = self.streams_in, self.streams_out, self.memory
        for e in self.edges:  # Scope.done without its generic bookkeeping: one stream, some memory
            e.streams_in -= si
            e.streams_out -= so
            e.memory -= mem
        self.streams_in = self.streams_out = self.memory = 0
        mgr = self._mgr
        for s in (self._proto, self._proto_peer, self._svc, self._svc_peer):
            if s is not None:
                s.refs -= 1
                mgr._maybe_drop(s)
        self._peer_scope.refs -= 1
        mgr._maybe_drop_peer(self._peer_scope)
