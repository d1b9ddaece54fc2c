"""The connection manager: keep the number of connections between two watermarks.

go-libp2p's ``p2p/net/connmgr`` in Python form.  When more than ``high`` connections
are open, connections are closed until ``low`` remain, choosing victims in go's order:

1. protected peers (``protect(peer, tag)``) are never closed;
2. peers first seen less than ``grace_period`` ago are kept;
3. among the rest: temporary entries first (a peer tagged before it connected), then
   the lowest total tag value, then peers with no open streams, then peers whose
   connections are inbound, then fewer connections.

Trimming happens at most once per ``silence_period`` in the background and whenever
:meth:`BasicConnManager.trim_open_conns` is called.  Closed connections get go's code
``ConnGarbageCollected`` (0x1005).  Tags carry an ``int`` value per ``(peer, tag)``;
*decaying* tags lose value on a schedule (:meth:`BasicConnManager.register_decaying_tag`).

The selection (:meth:`BasicConnManager.select_victims`) is a pure function of the
state and the time passed in, tested with a virtual clock; the shell is one greenlet
woken every ``silence_period`` and the swarm notifications that keep the table.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Optional

import gevent
from gevent.pool import Group

from geventp2p.config import ConnManagerConfig
from geventp2p.core.event import EvtConnsTrimmed
from geventp2p.core.mux import Direction
from geventp2p.exceptions import ConfigError, P2PError

__all__ = ["BasicConnManager", "ConnManagerConfig", "DecayingTag", "TagInfo", "CONN_GARBAGE_COLLECTED"]

log = logging.getLogger(__name__)

#: go ``network.ConnGarbageCollected``.
CONN_GARBAGE_COLLECTED = 0x1005


@dataclass(slots=True)
class TagInfo:
    """What the manager knows of one peer (go ``connmgr.TagInfo``)."""

    first_seen: float
    value: int = 0
    tags: dict[str, int] = field(default_factory=dict)
    conns: dict[Any, float] = field(default_factory=dict)  # conn -> first seen
    temp: bool = False  # tagged before it had a connection


class DecayingTag:
    """A tag whose value ``decay(value) -> (new, remove)`` lowers every ``interval``."""

    def __init__(
        self,
        mgr: "BasicConnManager",
        name: str,
        interval: float,
        decay: Callable[[int], tuple[int, bool]],
        bump: Callable[[int, int], int],
    ) -> None:
        self.mgr = mgr
        self.name = name
        self.interval = interval
        self.decay = decay
        self.bump_fn = bump
        self.next_at = mgr._clock() + interval
        self.closed = False

    def bump(self, peer: Hashable, delta: int) -> None:
        self.mgr.upsert_tag(peer, self.name, lambda v: self.bump_fn(v, delta))

    def remove(self, peer: Hashable) -> None:
        self.mgr.untag_peer(peer, self.name)

    def close(self) -> None:
        self.closed = True
        self.mgr._decaying.pop(self.name, None)


def decay_linear(coef: float) -> Callable[[int], tuple[int, bool]]:
    """go ``DecayLinear``: multiply by ``coef`` each interval; gone at zero."""
    def fn(value: int) -> tuple[int, bool]:
        v = int(value * coef)
        return v, v <= 0
    return fn


def decay_fixed(minus: int) -> Callable[[int], tuple[int, bool]]:
    """go ``DecayFixed``: subtract ``minus`` each interval; gone at zero."""
    def fn(value: int) -> tuple[int, bool]:
        v = value - minus
        return v, v <= 0
    return fn


def bump_sum_bounded(lo: int, hi: int) -> Callable[[int, int], int]:
    """go ``BumpSumBounded``."""
    return lambda value, delta: max(lo, min(hi, value + delta))


class BasicConnManager:
    """Blocks nothing; see the module docstring.  ``attach(network)`` starts it.

    ``config`` (a :class:`ConnManagerConfig`) overrides the four positional knobs.
    ``event_bus``: where trims emit :class:`~geventp2p.core.event.EvtConnsTrimmed`;
    None: the bus of the network given to :meth:`attach`, if it has one.
    """

    def __init__(
        self,
        low: int = 160,
        high: int = 192,
        grace_period: float = 60.0,
        silence_period: float = 10.0,
        *,
        config: Optional[ConnManagerConfig] = None,
        clock: Callable[[], float] = time.monotonic,
        event_bus: Any = None,
    ) -> None:
        self.config = config or ConnManagerConfig(low, high, grace_period, silence_period)
        self._clock = clock
        self._peers: dict[Hashable, TagInfo] = {}
        self._protected: dict[Hashable, set[str]] = {}
        self._decaying: dict[str, DecayingTag] = {}
        self._last_trim = float("-inf")
        self._greenlet: Optional[gevent.Greenlet] = None
        self._network: Any = None
        self._emits = Group()  # pending EvtConnsTrimmed deliveries (emit blocks on slow subscribers)
        self._emitter = event_bus.emitter(EvtConnsTrimmed) if event_bus is not None else None
        self.trimmed = 0  #: connections closed by trimming so far

    # -- tags ---------------------------------------------------------------------------
    def _info(self, peer: Hashable, temp: bool) -> TagInfo:
        info = self._peers.get(peer)
        if info is None:
            info = self._peers[peer] = TagInfo(first_seen=self._clock(), temp=temp)
        return info

    def tag_peer(self, peer: Hashable, tag: str, value: int) -> None:
        info = self._info(peer, temp=True)
        info.value += value - info.tags.get(tag, 0)
        info.tags[tag] = value

    def untag_peer(self, peer: Hashable, tag: str) -> None:
        info = self._peers.get(peer)
        if info is not None and tag in info.tags:
            info.value -= info.tags.pop(tag)

    def upsert_tag(self, peer: Hashable, tag: str, fn: Callable[[int], int]) -> None:
        info = self._info(peer, temp=True)
        old = info.tags.get(tag, 0)
        new = fn(old)
        info.tags[tag] = new
        info.value += new - old

    def get_tag_info(self, peer: Hashable) -> Optional[TagInfo]:
        return self._peers.get(peer)

    def protect(self, peer: Hashable, tag: str) -> None:
        self._protected.setdefault(peer, set()).add(tag)

    def unprotect(self, peer: Hashable, tag: str) -> bool:
        """Remove one protection; True if the peer is still protected by another tag."""
        tags = self._protected.get(peer)
        if not tags:
            return False
        tags.discard(tag)
        if not tags:
            del self._protected[peer]
            return False
        return True

    def is_protected(self, peer: Hashable, tag: str = "") -> bool:
        tags = self._protected.get(peer)
        if not tags:
            return False
        return True if not tag else tag in tags

    def register_decaying_tag(
        self,
        name: str,
        interval: float,
        decay: Callable[[int], tuple[int, bool]],
        bump: Callable[[int, int], int] = lambda v, d: v + d,
    ) -> DecayingTag:
        if name in self._decaying:
            raise ConfigError(f"decaying tag {name!r} already exists")
        if interval <= 0:
            raise ConfigError("decaying tag interval must be > 0")
        tag = self._decaying[name] = DecayingTag(self, name, interval, decay, bump)
        return tag

    def apply_decay(self, now: Optional[float] = None) -> None:
        """Apply every decaying tag whose interval has passed (called by the heartbeat)."""
        now = self._clock() if now is None else now
        for tag in list(self._decaying.values()):
            while tag.next_at <= now:
                tag.next_at += tag.interval
                for info in self._peers.values():
                    if tag.name in info.tags:
                        value, remove = tag.decay(info.tags[tag.name])
                        old = info.tags[tag.name]
                        if remove:
                            del info.tags[tag.name]
                            info.value -= old
                        else:
                            info.tags[tag.name] = value
                            info.value += value - old

    # -- connection table (swarm notifications) -------------------------------------------
    def connected(self, net: Any, conn: Any) -> None:
        info = self._info(conn.remote_peer, temp=False)
        info.temp = False
        info.conns[conn] = self._clock()

    def disconnected(self, net: Any, conn: Any) -> None:
        peer = conn.remote_peer
        info = self._peers.get(peer)
        if info is None:
            return
        info.conns.pop(conn, None)
        if not info.conns:
            del self._peers[peer]

    # No listen/listen_close/opened_stream/closed_stream: a notifiee implementing
    # ``opened_stream`` makes the swarm queue one notification per stream.

    def connection_count(self) -> int:
        return sum(len(info.conns) for info in self._peers.values())

    # -- trimming -------------------------------------------------------------------------
    def select_victims(self, now: float, target_low: Optional[int] = None) -> list[Any]:
        """The connections to close to get down to ``low`` (go ``getConnsToClose``)."""
        low = self.config.low if target_low is None else target_low
        total = self.connection_count()
        if total <= low:
            return []
        grace_start = now - self.config.grace_period
        candidates: list[tuple[Hashable, TagInfo]] = []
        for peer, info in list(self._peers.items()):
            if peer in self._protected:
                continue
            if info.first_seen > grace_start:
                continue
            candidates.append((peer, info))

        def has_streams(info: TagInfo) -> bool:
            for c in info.conns:
                streams = c.streams()
                if streams:
                    return True
            return False

        def inbound(info: TagInfo) -> bool:
            return any(c.direction == Direction.INBOUND for c in info.conns)

        candidates.sort(key=lambda pi: (
            not pi[1].temp,
            pi[1].value,
            has_streams(pi[1]),
            not inbound(pi[1]),
            len(pi[1].conns),
        ))
        target = total - low
        victims: list[Any] = []
        for peer, info in candidates:
            if target <= 0:
                break
            if not info.conns:
                if info.temp:  # tagged, never connected, past its grace: forget it
                    del self._peers[peer]
                continue
            victims.extend(info.conns)
            target -= len(info.conns)
        return victims

    def trim_open_conns(self) -> int:
        """Close connections down to ``low`` now; returns how many were closed."""
        now = self._clock()
        self.apply_decay(now)
        self._last_trim = now
        victims = self.select_victims(now)
        peers = []
        for conn in victims:
            peers.append(conn.remote_peer)
            try:
                conn.close_with_error(CONN_GARBAGE_COLLECTED)
            except Exception:  # a failing close must not stop the trim
                log.debug("connmgr: closing %r failed", conn, exc_info=True)
            self.disconnected(None, conn)
        if victims:
            self.trimmed += len(victims)
            log.debug("connmgr: trimmed %d connections", len(victims))
            if self._emitter is not None:
                evt = EvtConnsTrimmed(peers=tuple(dict.fromkeys(peers)), conns=len(victims),
                                      remaining=self.connection_count())
                self._emits.spawn(self._emit, self._emitter, evt)
        return len(victims)

    @staticmethod
    def _emit(emitter: Any, evt: EvtConnsTrimmed) -> None:
        try:
            emitter.emit(evt)
        except P2PError:  # emitter or bus closed meanwhile
            log.debug("connmgr: could not emit %r", evt, exc_info=True)

    def maybe_trim(self) -> int:
        """Background rule: trim when above ``high`` and not within ``silence_period``."""
        now = self._clock()
        self.apply_decay(now)
        if self.connection_count() <= self.config.high:
            return 0
        if now - self._last_trim < self.config.silence_period:
            return 0
        return self.trim_open_conns()

    # -- lifecycle ------------------------------------------------------------------------
    def attach(self, network: Any, event_bus: Any = None) -> None:
        """Listen to ``network``'s notifications and start the background trimmer.

        Without a bus of its own the manager emits on ``event_bus``, else on the network's.
        """
        self._network = network
        if self._emitter is None:
            bus = event_bus if event_bus is not None else getattr(network, "event_bus", None)
            if bus is not None and not getattr(bus, "closed", False):
                self._emitter = bus.emitter(EvtConnsTrimmed)
        network.notify(self)
        for conn in network.conns():
            self.connected(network, conn)
        if self._greenlet is None:
            self._greenlet = gevent.spawn(self._run)

    def _run(self) -> None:
        interval = min(self.config.silence_period, 10.0)
        while True:
            gevent.sleep(interval)
            try:
                self.maybe_trim()
            except Exception:  # pragma: no cover - keep the trimmer alive
                log.exception("connmgr: trim failed")

    def close(self) -> None:
        """Stop the trimmer, detach from the network, release the emitter (idempotent).

        Connections stay open: the host closes them with the swarm.
        """
        g, self._greenlet = self._greenlet, None
        if g is not None:
            g.kill(block=True, timeout=5)
        net, self._network = self._network, None
        if net is not None:
            net.stop_notify(self)
        self._emits.kill(block=True, timeout=5)
        em, self._emitter = self._emitter, None
        if em is not None:
            em.close()
