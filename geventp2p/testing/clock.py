"""Injectable clocks: the real monotonic one and a virtual one that tests move by hand.

Components that read time take a clock instead of calling ``time.monotonic``
(``Peerstore(clock=...)``, ``Swarm(clock=...)``, ``BandwidthCounter(clock)``,
``DialBackoff(clock)``).  They call it with no arguments, so any
``Callable[[], float]`` works; both clocks here are callable and also have
``now()``, which is what the :class:`Clock` protocol asks for::

    from geventp2p.host.peerstore import Peerstore, TEMP_ADDR_TTL
    from geventp2p.testing.clock import VirtualClock

    clock = VirtualClock()
    ps = Peerstore(clock=clock)
    ps.add_addrs(peer, addrs, TEMP_ADDR_TTL)
    clock.advance(TEMP_ADDR_TTL)          # no sleeping: the addresses expire now
    assert not ps.addrs(peer)

A :class:`VirtualClock` also schedules: ``call_later``/``call_at`` return a
:class:`TimerHandle` with ``cancel()``, and :meth:`VirtualClock.advance` runs
every timer that falls due, earliest first (ties in scheduling order), with
``now()`` set to each timer's own deadline while it runs.  Greenlets that call
:meth:`VirtualClock.sleep` block until another greenlet advances the clock past
their wake-up time; ``advance`` lets each woken greenlet run (until it blocks
again) before it moves time further, so a loop such as
``while True: clock.sleep(10); tick()`` ticks exactly once per 10 virtual
seconds, in a repeatable order.

Time in a :class:`VirtualClock` never moves by itself and never goes back.
"""

from __future__ import annotations

import heapq
import itertools
import time
from typing import Any, Callable, Protocol, runtime_checkable

import gevent
from gevent.hub import Waiter, get_hub

__all__ = ["Clock", "MonotonicClock", "VirtualClock", "TimerHandle"]


@runtime_checkable
class Clock(Protocol):
    """A source of monotonic time in float seconds (only differences mean anything)."""

    def now(self) -> float:
        """The current time, in seconds."""
        ...


class TimerHandle:
    """A scheduled call; :meth:`cancel` stops it from running (idempotent)."""

    __slots__ = ("when", "_callback", "_args", "_cancelled", "_cancel_hook")

    def __init__(self, when: float, callback: Callable[..., Any], args: tuple[Any, ...],
                 cancel_hook: Callable[["TimerHandle"], None] | None = None) -> None:
        #: The clock time at which the call is due.
        self.when = when
        self._callback: Callable[..., Any] | None = callback
        self._args = args
        self._cancelled = False
        self._cancel_hook = cancel_hook

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        """Do not run the call (no effect once it ran or was cancelled)."""
        if self._cancelled:
            return
        self._cancelled = True
        self._callback = None
        self._args = ()
        hook, self._cancel_hook = self._cancel_hook, None
        if hook is not None:
            hook(self)

    def _run(self) -> None:
        callback, args = self._callback, self._args
        self._callback, self._args, self._cancel_hook = None, (), None
        self._cancelled = True  # ran: a later cancel() is a no-op
        if callback is not None:
            callback(*args)

    def __repr__(self) -> str:
        state = "cancelled" if self._cancelled else "pending"
        return f"<TimerHandle when={self.when:.6f} {state}>"


class MonotonicClock:
    """The real clock: ``time.monotonic``, gevent sleeps and gevent loop timers."""

    __slots__ = ()

    def now(self) -> float:
        return time.monotonic()

    def __call__(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        """Blocks the calling greenlet for ``seconds`` (``gevent.sleep``)."""
        gevent.sleep(seconds)

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        """Run ``callback(*args)`` in the hub after ``delay`` seconds (it must not block)."""
        timer = get_hub().loop.timer(max(0.0, delay))
        handle = TimerHandle(self.now() + delay, callback, args, lambda h: timer.close())

        def fire() -> None:
            timer.close()
            handle._run()

        timer.start(fire)
        return handle

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        """Run ``callback(*args)`` in the hub at clock time ``when`` (it must not block)."""
        return self.call_later(when - self.now(), callback, *args)

    def __repr__(self) -> str:
        return "<MonotonicClock>"


class VirtualClock:
    """A clock that moves only through :meth:`advance`; runs its timers deterministically.

    ``start`` is the initial ``now()``.  Timer callbacks run in the greenlet that
    calls :meth:`advance`; an exception from one propagates out of ``advance``
    (the clock then stands at that timer's deadline, later timers stay queued).
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._seq = itertools.count()
        self._live = 0
        self._advancing = False

    # ------------------------------------------------------------------ time

    def now(self) -> float:
        return self._now

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (>= 0), running every timer that falls due.

        Blocks the calling greenlet only to let greenlets woken by :meth:`sleep`
        run; from inside a timer callback it is an error (``RuntimeError``).
        """
        if seconds < 0:
            raise ValueError(f"a clock does not go back (advance({seconds!r}))")
        self.advance_to(self._now + seconds)

    def advance_to(self, when: float) -> None:
        """Move time forward to ``when`` (no effect if ``when`` is not later), running due timers."""
        if self._advancing:
            raise RuntimeError("VirtualClock.advance called from a timer callback")
        self._advancing = True
        try:
            while self._heap and self._heap[0][0] <= when:
                deadline, _, handle = heapq.heappop(self._heap)
                if handle.cancelled:
                    continue
                self._live -= 1
                self._now = max(self._now, deadline)
                handle._run()
            self._now = max(self._now, when)
        finally:
            self._advancing = False

    def next_deadline(self) -> float | None:
        """When the earliest pending timer is due, or None without timers."""
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    @property
    def pending(self) -> int:
        """How many timers (and sleepers) wait to run."""
        return self._live

    # ------------------------------------------------------------------ scheduling

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        """Run ``callback(*args)`` once the clock reaches ``when`` (at the next advance if due)."""
        handle = TimerHandle(float(when), callback, args, self._cancelled)
        heapq.heappush(self._heap, (handle.when, next(self._seq), handle))
        self._live += 1
        return handle

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        """Run ``callback(*args)`` once the clock has moved ``delay`` seconds on."""
        return self.call_at(self._now + max(0.0, delay), callback, *args)

    def _cancelled(self, handle: TimerHandle) -> None:
        self._live -= 1

    def sleep(self, seconds: float) -> None:
        """Blocks the calling greenlet until the clock has moved ``seconds`` on.

        ``seconds <= 0`` only yields to other greenlets (``gevent.sleep(0)``).
        If no other greenlet ever advances the clock, gevent reports the
        deadlock (``LoopExit``) or the test's timeout fires.
        """
        if seconds <= 0:
            gevent.sleep(0)
            return
        hub = get_hub()
        waiter: Waiter[None] = Waiter(hub)
        handle = self.call_later(seconds, self._wake, hub, waiter)
        try:
            waiter.get()
        finally:
            handle.cancel()  # interrupted (e.g. gevent.Timeout, kill): drop the timer

    def _wake(self, hub: Any, waiter: "Waiter[None]") -> None:
        # Waiter.switch must run in the hub; queue it, then yield so the sleeper
        # runs (until it blocks again) before the clock moves past this deadline.
        hub.loop.run_callback(waiter.switch, None)
        gevent.sleep(0)

    def __repr__(self) -> str:
        return f"<VirtualClock now={self._now:.6f} pending={self._live}>"
