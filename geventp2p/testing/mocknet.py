"""MockNet: N full hosts over the in-process memory transport (go ``p2p/net/mock`` style).

For our tests and for users testing their own protocols::

    from geventp2p.testing.mocknet import MockNet

    with MockNet(latency=0.005) as net:
        a, b, c = net.gen_peers(3)
        net.connect_all()
        a.set_stream_handler("/my/1.0.0", handler)
        s = b.new_stream(a.id, "/my/1.0.0")

Every host is a real :class:`~geventp2p.host.basic.BasicHost` (Noise + yamux by
default, identify and ping on) listening on ``/memory/<n>`` of the MockNet's
own :class:`~geventp2p.net.memory.MemoryNetwork`.  As in go, peers can dial
each other only once *linked*: ``link_peers(a, b, latency=..., bandwidth=...)``
sets the per-link knobs (defaults: the MockNet's), ``link_all()`` links every
pair, ``connect_all()`` links and connects every pair.  Dialing an unlinked
peer fails with ``TransportError`` (connection refused).
"""

from __future__ import annotations

import errno
from typing import Any

import gevent

from geventp2p.core.peer import PeerId
from geventp2p.exceptions import ConfigError, TransportError
from geventp2p.net.memory import MemoryNetwork, PipeConfig

__all__ = ["MockNet", "LinkConfig"]

LinkConfig = PipeConfig


class _MockTransport:
    """A memory transport that consults the MockNet's links before dialing."""

    name = "mocknet"

    def __init__(self, net: "MockNet") -> None:
        self._net = net
        self.local_peer: PeerId | None = None

    def can_dial(self, ma: Any) -> bool:
        from geventp2p.core import addr as _addr

        try:
            _addr.memory_id(ma)
        except Exception:
            return False
        return True

    can_listen = can_dial

    def dial(self, ma: Any, timeout: float | None = None) -> Any:
        from geventp2p.core import addr as _addr

        target = self._net._owner_of(_addr.memory_id(ma))
        cfg = self._net.link_config(self.local_peer, target) if target is not None else None
        if cfg is None:
            raise TransportError(errno.ECONNREFUSED, f"mocknet: no link from {self.local_peer} to {ma}")
        return self._net.network.dial(ma, cfg)

    def listen(self, ma: Any, handler: Any) -> Any:
        return self._net.network.listen(ma, handler)


class MockNet:
    """A set of hosts on one in-process network; ``latency``/``bandwidth`` are link defaults."""

    def __init__(self, latency: float = 0.0, bandwidth: float | None = None, *,
                 security: Any = "noise", muxers: Any = "yamux") -> None:
        self.default_link = PipeConfig(latency=latency, bandwidth=bandwidth)  # validates
        self.network = MemoryNetwork()
        self._security = security
        self._muxers = muxers
        self.hosts: list[Any] = []
        self._mem_owner: dict[int, PeerId] = {}
        self._links: dict[frozenset, PipeConfig] = {}
        self._closed = False

    # ------------------------------------------------------------------ peers

    def add_peer(self, *, key: Any = None, **host_kwargs: Any) -> Any:
        """Create, start and return a host listening on a fresh ``/memory`` address.

        ``host_kwargs`` go to :func:`geventp2p.new_host` (e.g. ``services=["identify", "ping", "echo"]``).
        """
        from geventp2p.core import addr as _addr
        from geventp2p.defaults import new_host

        if self._closed:
            raise ConfigError("MockNet is closed")
        transport = _MockTransport(self)
        host_kwargs.setdefault("security", self._security)
        host_kwargs.setdefault("muxers", self._muxers)
        host = new_host(key=key, listen=("/memory/0",), transports=[transport], **host_kwargs)
        transport.local_peer = host.id
        for a in host.network.listen_addresses():
            self._mem_owner[_addr.memory_id(a)] = host.id
        self.hosts.append(host)
        return host

    def gen_peers(self, n: int, **host_kwargs: Any) -> list[Any]:
        """``n`` new hosts (see :meth:`add_peer`)."""
        return [self.add_peer(**host_kwargs) for _ in range(n)]

    def host(self, peer: PeerId) -> Any:
        for h in self.hosts:
            if h.id == peer:
                return h
        raise KeyError(peer)

    def _owner_of(self, mem_id: int) -> PeerId | None:
        return self._mem_owner.get(mem_id)

    # ------------------------------------------------------------------ links

    @staticmethod
    def _pid(h: Any) -> PeerId:
        return h if isinstance(h, PeerId) else h.id

    def link_peers(self, a: Any, b: Any, *, latency: float | None = None,
                   bandwidth: float | None = None, **knobs: Any) -> PipeConfig:
        """Link two hosts (or peer ids); knobs default to the MockNet's.  Returns the link config."""
        from dataclasses import replace

        cfg = self.default_link
        changes: dict[str, Any] = dict(knobs)
        if latency is not None:
            changes["latency"] = latency
        if bandwidth is not None:
            changes["bandwidth"] = bandwidth
        if changes:
            cfg = replace(cfg, **changes)
        pa, pb = self._pid(a), self._pid(b)
        self._links[frozenset((pa, pb))] = cfg
        for me, other in ((pa, pb), (pb, pa)):  # earlier failed dials must not block the new link
            for h in self.hosts:
                if h.id == me:
                    h.network.backoff().clear(other)
        return cfg

    def unlink_peers(self, a: Any, b: Any) -> None:
        """Remove a link (existing connections stay; new dials fail)."""
        self._links.pop(frozenset((self._pid(a), self._pid(b))), None)

    def link_config(self, a: Any, b: Any) -> PipeConfig | None:
        """The link's knobs, or None if not linked."""
        return self._links.get(frozenset((self._pid(a), self._pid(b))))

    def link_all(self) -> None:
        """Link every pair not linked yet (default knobs)."""
        for i, a in enumerate(self.hosts):
            for b in self.hosts[i + 1:]:
                if self.link_config(a, b) is None:
                    self.link_peers(a, b)

    # ------------------------------------------------------------------ connections

    def connect_peers(self, a: Any, b: Any, timeout: float | None = 10.0) -> Any:
        """Blocks the calling greenlet: ``a`` dials ``b`` (linking them if needed)."""
        if self.link_config(a, b) is None:
            self.link_peers(a, b)
        return a.connect(b.peer_info(), timeout=timeout)

    def connect_all(self, timeout: float | None = 10.0) -> None:
        """Blocks the calling greenlet until every pair is connected (and identified, bounded)."""
        self.link_all()
        jobs = []
        for i, a in enumerate(self.hosts):
            for b in self.hosts[i + 1:]:
                jobs.append(gevent.spawn(a.connect, b.peer_info(), timeout))
        try:
            gevent.joinall(jobs, raise_error=True)
        finally:
            gevent.killall([j for j in jobs if not j.dead])

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close every host (idempotent)."""
        if self._closed:
            return
        self._closed = True
        hosts, self.hosts = self.hosts, []
        for h in hosts:
            h.close()

    def __enter__(self) -> "MockNet":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<MockNet hosts={len(self.hosts)} links={len(self._links)}>"
