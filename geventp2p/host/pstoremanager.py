"""Forget peers some time after they disconnect (go-libp2p ``p2p/host/pstoremanager``).

Without it the peerstore keeps every peer it has ever met: keys, protocol lists and
metadata stay forever (only addresses have a TTL).  A peer that connects, advertises
a thousand protocols through identify and leaves would cost memory for good.

The manager listens for :class:`~geventp2p.core.event.EvtPeerConnectednessChanged`.
When a peer's last connection closes, it is marked; if it has not reconnected after
``grace_period`` seconds (go: one minute), ``peerstore.remove_peer`` drops its keys,
protocols, metadata and latency.  Addresses are left to their TTLs, as in go: the
host already moved them to ``RECENTLY_CONNECTED_ADDR_TTL`` on disconnect.

The decision logic (:class:`DisconnectedPeers`) takes time as an argument; the shell
(:class:`PeerstoreManager`) is one greenlet that waits on the bus subscription with a
timeout set by the next due peer, so an idle host wakes only when there is work.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Hashable, Optional

import gevent

from geventp2p.core.event import Connectedness, EvtPeerConnectednessChanged
from geventp2p.exceptions import ConfigError, P2PTimeoutError, SubscriptionClosedError

__all__ = ["DisconnectedPeers", "PeerstoreManager", "DEFAULT_GRACE_PERIOD"]

log = logging.getLogger(__name__)

#: go-libp2p's ``pstoremanager`` default grace period.
DEFAULT_GRACE_PERIOD = 60.0


class DisconnectedPeers:
    """Which disconnected peers are due for removal, by a clock passed in."""

    __slots__ = ("grace_period", "_due")

    def __init__(self, grace_period: float = DEFAULT_GRACE_PERIOD) -> None:
        if not grace_period >= 0:
            raise ConfigError(f"grace_period must be >= 0, got {grace_period!r}")
        self.grace_period = grace_period
        self._due: dict[Hashable, float] = {}  # insertion order == due order

    def disconnected(self, peer: Hashable, now: float) -> None:
        self._due.pop(peer, None)  # move to the end: due order stays insertion order
        self._due[peer] = now + self.grace_period

    def connected(self, peer: Hashable) -> None:
        self._due.pop(peer, None)

    def next_due(self) -> Optional[float]:
        for at in self._due.values():
            return at
        return None

    def pop_due(self, now: float) -> list[Hashable]:
        out = []
        for peer, at in self._due.items():
            if at > now:
                break
            out.append(peer)
        for peer in out:
            del self._due[peer]
        return out

    def __len__(self) -> int:
        return len(self._due)


class PeerstoreManager:
    """Removes disconnected peers from ``peerstore`` after ``grace_period`` seconds.

    ``keep(peer)`` may protect peers from removal (the host's own ID always is).
    ``start()`` spawns the greenlet; ``close()`` stops it (idempotent).
    """

    def __init__(
        self,
        peerstore: Any,
        event_bus: Any,
        *,
        grace_period: float = DEFAULT_GRACE_PERIOD,
        keep: Callable[[Hashable], bool] = lambda peer: False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.peerstore = peerstore
        self.event_bus = event_bus
        self.keep = keep
        self._clock = clock
        self._state = DisconnectedPeers(grace_period)
        self._sub: Any = None
        self._greenlet: Optional[gevent.Greenlet] = None
        self.removed = 0  #: peers removed so far

    @property
    def grace_period(self) -> float:
        return self._state.grace_period

    def start(self) -> None:
        if self._greenlet is not None:
            return
        self._sub = self.event_bus.subscribe(EvtPeerConnectednessChanged, name="pstoremanager")
        self._greenlet = gevent.spawn(self._run)

    def close(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            sub.close()
        g, self._greenlet = self._greenlet, None
        if g is not None:
            g.kill(block=True, timeout=5)

    def _run(self) -> None:
        sub = self._sub
        state = self._state
        while sub is not None and not sub.closed:
            due = state.next_due()
            wait = None if due is None else max(0.0, due - self._clock())
            try:
                evt = sub.get(timeout=wait)
            except P2PTimeoutError:
                evt = None
            except SubscriptionClosedError:
                return
            if evt is not None:
                if evt.connectedness == Connectedness.Connected:
                    state.connected(evt.peer)
                elif evt.connectedness != Connectedness.Limited:
                    state.disconnected(evt.peer, self._clock())
            for peer in state.pop_due(self._clock()):
                if self.keep(peer):
                    continue
                self.peerstore.remove_peer(peer)
                self.removed += 1
                log.debug("peerstore: forgot %s (disconnected for %gs)", peer, state.grace_period)
