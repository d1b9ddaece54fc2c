"""The swarm's dial engine: dial sync, address filtering, ranked parallel dialing.

Modelled on go-libp2p ``p2p/net/swarm`` (``dial_sync.go``, ``dial_worker.go``), in
blocking style:

* :class:`DialSync` keeps at most one dial job per peer; concurrent callers join it
  and share its result.  When the last caller gives up, the job is cancelled.
* A job's worker filters the peer's addresses (a transport can dial them, not our
  own listen addresses, not unspecified / IPv6 link-local, the gater agrees), skips
  addresses in dial backoff (:class:`~geventp2p.net.swarm_dial.DialBackoff`), ranks
  them (:func:`~geventp2p.net.swarm_dial.rank_addrs`) and dials them in parallel
  (``max_dials_per_peer`` per peer, ``max_concurrent_dials`` per swarm).  The first
  upgraded connection wins; the other attempts are cancelled and late winners closed.
* Every failure cause has its own ``DialError`` subclass.
* Each attempt first asks the swarm's resource manager for an outbound connection
  scope (``open_connection``, with a file descriptor when the transport says
  ``uses_fd``), before the transport dial; the upgrade moves it to the peer
  (``set_peer``).  A refusal fails the attempt with ``ResourceLimitExceeded`` and
  earns no dial backoff (the address is not at fault); when every attempt was
  refused the dial raises :class:`~geventp2p.exceptions.DialResourceLimitError`.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Iterable, cast

import gevent
from gevent.event import AsyncResult
from gevent.lock import BoundedSemaphore
from gevent.queue import Empty, Queue

from geventp2p.core import addr as _addr
from geventp2p.core.mux import Direction
from geventp2p.core.peer import PeerId
from geventp2p.exceptions import (
    AllDialsFailedError,
    DialBackoffError,
    DialError,
    DialGatedError,
    DialResourceLimitError,
    DialSelfError,
    DialTimeoutError,
    MultiaddrError,
    NoAddressesError,
    NoGoodAddressesError,
    P2PTimeoutError,
    PeerIdMismatchError,
    ResourceLimitExceeded,
    SwarmClosedError,
)
from geventp2p.net._deadline import timeout_scope
from geventp2p.net.swarm_dial import addr_info, rank_addrs

if TYPE_CHECKING:
    from geventp2p.net.swarm import Swarm
    from geventp2p.net.swarm_conn import SwarmConn

__all__ = ["DialSync", "DialJob"]

log = logging.getLogger(__name__)

_monotonic = time.monotonic


def _memo(cache: dict[Any, Any], key: Any, compute: Callable[[Any], Any]) -> Any:
    """``compute(key)``, remembered in ``cache`` (cleared when it reaches 4096 entries)."""
    try:
        return cache[key]
    except KeyError:
        pass
    value = compute(key)
    if len(cache) >= 4096:
        cache.clear()
    cache[key] = value
    return value


class DialJob:
    """One dial in flight to one peer, shared by every caller that wants the peer."""

    __slots__ = ("peer", "result", "waiters", "greenlet", "attempts", "force")

    def __init__(self, peer: PeerId, force: bool) -> None:
        self.peer = peer
        self.result: AsyncResult = AsyncResult()
        self.waiters = 0
        self.greenlet: gevent.Greenlet | None = None
        self.attempts: list[tuple[Any, BaseException]] = []
        self.force = force


class DialSync:
    """Dial jobs of one swarm (go ``dialSync`` + ``dialWorker``)."""

    def __init__(self, swarm: "Swarm") -> None:
        self.swarm = swarm
        self.jobs: dict[PeerId, DialJob] = {}
        self._limiter = BoundedSemaphore(swarm.config.max_concurrent_dials)
        self._split_cache: dict[Any, Any] = {}
        self._transport_cache: dict[Any, Any] = {}

    def transports_changed(self) -> None:
        self._transport_cache.clear()

    # ------------------------------------------------------------------ callers

    def dial(self, peer: PeerId, force: bool, timeout: float) -> "SwarmConn":
        """Blocks the calling greenlet until the peer's dial job ends or ``timeout`` passes."""
        swarm = self.swarm
        job = self.jobs.get(peer)
        if job is None:
            job = DialJob(peer, force)
            self.jobs[peer] = job
            job.greenlet = swarm.group.spawn(self._work, job, _monotonic() + timeout)
        job.waiters += 1
        try:
            job.result.wait(timeout)
            if not job.result.ready():
                raise DialTimeoutError(peer, f"no connection within {timeout:g}s", attempts=job.attempts,
                                       cause=P2PTimeoutError(f"dial timed out after {timeout:g}s"))
            return cast("SwarmConn", job.result.get(block=False))
        finally:
            job.waiters -= 1
            if job.waiters == 0 and not job.result.ready():
                # nobody waits any more: cancel the worker and its attempts
                if self.jobs.get(peer) is job:
                    del self.jobs[peer]
                g = job.greenlet
                if g is not None and g is not gevent.getcurrent():
                    g.kill(block=True, timeout=swarm.config.close_timeout)

    def close(self) -> None:
        """Fail every job in flight with SwarmClosedError and stop the workers."""
        cur = gevent.getcurrent()
        jobs = list(self.jobs.values())
        self.jobs.clear()
        for job in jobs:
            if not job.result.ready():
                job.result.set_exception(SwarmClosedError(job.peer, cause=SwarmClosedError.reason))
        workers = [j.greenlet for j in jobs if j.greenlet is not None and j.greenlet is not cur]
        if workers:
            gevent.killall(workers, block=True, timeout=self.swarm.config.close_timeout)

    # ------------------------------------------------------------------ the worker

    def _work(self, job: DialJob, deadline: float) -> None:
        swarm = self.swarm
        peer = job.peer
        try:
            conn = self._dial_addrs(job, deadline)
        except DialError as exc:
            if isinstance(exc, (AllDialsFailedError, DialBackoffError, DialTimeoutError)):
                swarm._remember(swarm._dial_failed, peer)
            job.result.set_exception(exc)
        except Exception as exc:  # a bug or an unexpected transport error: still fail every caller
            log.exception("dial worker for %s failed", peer)
            job.result.set_exception(AllDialsFailedError(peer, str(exc), attempts=job.attempts, cause=exc))
        else:
            job.result.set(conn)
        finally:
            if self.jobs.get(peer) is job:
                del self.jobs[peer]
            if not job.result.ready():  # killed
                if swarm.closed:
                    job.result.set_exception(SwarmClosedError(peer, cause=SwarmClosedError.reason))
                else:
                    job.result.set_exception(DialError(peer, "dial cancelled", attempts=job.attempts,
                                                       cause="cancelled"))

    def filter_addrs(self, peer: PeerId, addrs: Iterable[Any]) -> tuple[list[Any], list[tuple[Any, BaseException]]]:
        """The addresses worth dialing, and the rejected ones with the reason."""
        swarm = self.swarm
        good: list[Any] = []
        rejected: list[tuple[Any, BaseException]] = []
        own: set[Any] | None = None
        seen: set[Any] = set()
        for a in addrs:
            ma = self._transport_part(a)
            if ma is None:
                rejected.append((a, MultiaddrError(f"{a} has no transport part")))
                continue
            if ma in seen:
                continue
            seen.add(ma)
            info = addr_info(ma)
            if info.unspecified:
                rejected.append((ma, MultiaddrError("unspecified address")))
                continue
            if info.ip6_link_local:
                rejected.append((ma, MultiaddrError("IPv6 link-local address")))
                continue
            if own is None:
                own = set(swarm.listen_addresses())
                if any(_addr.is_unspecified(m) for m in own):
                    own.update(swarm.interface_listen_addresses())
            if ma in own:
                rejected.append((ma, DialSelfError(peer, f"{ma} is one of our listen addresses",
                                                   cause=DialSelfError.reason)))
                continue
            if self.dial_transport(ma) is None:
                rejected.append((ma, MultiaddrError(f"no transport for {ma}")))
                continue
            ok, _ = swarm._gate("intercept_addr_dial", peer, ma)
            if not ok:
                rejected.append((ma, DialGatedError(peer, f"gater refused {ma}", cause=DialGatedError.reason)))
                continue
            good.append(ma)
        return good, rejected

    def _transport_part(self, a: Any) -> Any:
        """``a`` without a trailing ``/p2p/<id>`` (None if nothing is left); cached."""
        return _memo(self._split_cache, a, lambda x: _addr.split_p2p(x)[0])

    def dial_transport(self, ma: Any) -> Any:
        """``swarm.transport_for_dial(ma)``, cached per address (cleared when a transport is added)."""
        return _memo(self._transport_cache, ma, self.swarm.transport_for_dial)

    def _dial_addrs(self, job: DialJob, deadline: float) -> "SwarmConn":
        swarm = self.swarm
        peer = job.peer
        if not job.force:
            conn = swarm._best_conn(peer)
            if conn is not None:  # e.g. an inbound connection arrived meanwhile
                return conn
        addrs = swarm.peerstore.addrs(peer) if swarm.peerstore is not None else []
        if not addrs:
            raise NoAddressesError(peer, "no addresses", cause=NoAddressesError.reason)
        good, rejected = self.filter_addrs(peer, addrs)
        if not good:
            raise NoGoodAddressesError(peer, "no good addresses", attempts=rejected,
                                       cause=NoGoodAddressesError.reason)
        backoff = swarm.backoff()
        if job.force:
            ready = good
        else:
            ready = [a for a in good if not backoff.backoff(peer, a)]
            if not ready:
                raise DialBackoffError(
                    peer, "all addresses in dial backoff",
                    attempts=[(a, DialBackoffError(peer, f"{a} in backoff", cause=DialBackoffError.reason))
                              for a in good],
                    cause=DialBackoffError.reason,
                )
        cfg = swarm.config
        plan = deque(rank_addrs(ready, step_local=cfg.stagger_local, step_public=cfg.stagger_public,
                                prefer_quic=cfg.prefer_quic))
        results: Queue = Queue()
        active: dict[gevent.Greenlet, Any] = {}
        attempts = job.attempts
        t0 = _monotonic()
        try:
            while plan or active:
                now = _monotonic()
                if now >= deadline:
                    raise DialTimeoutError(peer, "dial timed out", attempts=attempts,
                                           cause=P2PTimeoutError("dial deadline passed"))
                while plan and len(active) < cfg.max_dials_per_peer and (
                    t0 + plan[0][0] <= now or not active
                ):
                    _delay, a = plan.popleft()
                    g = swarm.group.spawn(self._dial_one, peer, a, deadline, results)
                    active[g] = a
                wait = deadline - now
                if plan and len(active) < cfg.max_dials_per_peer:
                    wait = min(wait, max(0.0, t0 + plan[0][0] - now))
                try:
                    g, a, conn, exc, cut_short = results.get(timeout=wait)
                except Empty:
                    continue
                active.pop(g, None)
                if conn is not None:
                    return swarm._add_conn(conn)
                attempts.append((a, exc))
                if not cut_short:
                    backoff.add_backoff(peer, a)
            if attempts and all(isinstance(e, ResourceLimitExceeded) for _a, e in attempts):
                raise DialResourceLimitError(peer, "resource limit exceeded", attempts=attempts,
                                             cause=attempts[-1][1])
            raise AllDialsFailedError(peer, "all dials failed", attempts=attempts,
                                      cause=attempts[-1][1] if attempts else None)
        finally:
            if active:
                gevent.killall(list(active), block=True, timeout=cfg.close_timeout)
            while True:  # late winners and results nobody read
                try:
                    _g, _a, conn, _e, _c = results.get_nowait()
                except Empty:
                    break
                if conn is not None:
                    conn.close()

    def _dial_one(self, peer: PeerId, addr: Any, deadline: float, results: Queue) -> None:
        """One address: transport dial + upgrade + checks; reports on ``results``."""
        swarm = self.swarm
        me = gevent.getcurrent()
        cfg = swarm.config
        per_addr = cfg.dial_timeout_local if addr_info(addr).local else cfg.dial_timeout_remote
        raw = conn = None
        scope = None  # the connection's resource scope until the upgrade takes it
        cut_short = True  # a timeout caused by the overall deadline earns no backoff
        try:
            left = deadline - _monotonic()
            if left <= 0:
                raise P2PTimeoutError("dial deadline passed before the dial started")
            transport = self.dial_transport(addr)
            if transport is None:
                raise MultiaddrError(f"no transport for {addr}")
            scope = swarm.resource_manager.open_connection(
                Direction.OUTBOUND, bool(getattr(transport, "uses_fd", False)), addr)
            if not self._limiter.acquire(timeout=left):
                raise P2PTimeoutError("no dial slot free before the deadline")
            try:
                now = _monotonic()
                left = deadline - now
                budget = min(per_addr, left)
                cut_short = left < per_addr
                try:
                    with timeout_scope(budget, "dial", addr):
                        raw = transport.dial(addr, timeout=budget)
                        owned, scope = scope, None  # the upgrade releases it on failure
                        conn = swarm.upgrader.upgrade_outbound(
                            raw, peer, timeout=max(0.001, now + budget - _monotonic()), scope=owned)
                except P2PTimeoutError:
                    if raw is not None and conn is None:
                        raw.close()
                    raise
            finally:
                self._limiter.release()
                if scope is not None:  # the transport dial failed: nothing else holds it
                    scope.done()
                    scope = None
            assert conn is not None
            if conn.remote_peer != peer:
                conn.close()
                raise PeerIdMismatchError(peer, conn.remote_peer)
            swarm._check_upgraded(conn, Direction.OUTBOUND)
            if swarm.metrics_tracer is not None:
                swarm.metrics_tracer.completed_handshake(_monotonic() - now, conn)
            results.put((me, addr, conn, None, False))
        except Exception as exc:
            if scope is not None:  # refused before the dial slot (or the slot wait failed)
                scope.done()
            log.debug("dial %s at %s failed: %s", peer, addr, exc)
            if swarm.metrics_tracer is not None:
                swarm.metrics_tracer.failed_dialing(addr, exc)
            # no backoff for a timeout the overall deadline caused, nor for our own limits
            no_backoff = (cut_short and isinstance(exc, P2PTimeoutError)) or isinstance(exc, ResourceLimitExceeded)
            results.put((me, addr, None, exc, no_backoff))
        except BaseException:  # killed (another address won, or the swarm closes)
            if scope is not None:
                scope.done()
            if conn is not None:
                conn.close()
            elif raw is not None:
                raw.close()
            raise
