"""Leak checks for tests: live greenlets and open sockets of this process.

Shipped so applications can test their own protocols the way geventp2p does::

    from geventp2p.testing.leakcheck import live_greenlets, open_sockets
"""

from __future__ import annotations

import contextlib
import gc
import os
import time
import weakref
from typing import Any, Iterator, Literal

import gevent
import gevent.hub
import greenlet

__all__ = ["live_greenlets", "open_sockets", "no_leaks"]


def live_greenlets() -> list[greenlet.greenlet]:
    """Greenlets that are alive, other than the current one, the hub and resolver workers."""
    current = greenlet.getcurrent()
    return [o for o in gc.get_objects() if isinstance(o, greenlet.greenlet) and _counts(o, current)]


def open_sockets() -> set[tuple[str, str]]:
    """``{(fd, "socket:[inode]")}`` for this process's open sockets (empty off Linux)."""
    out: set[tuple[str, str]] = set()
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:  # pragma: no cover - not Linux
        return out
    for fd in names:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            out.add((fd, target))
    return out


def _counts(g: greenlet.greenlet, current: greenlet.greenlet) -> bool:
    """Alive, not ``current``, not the hub, not one of the resolver's worker greenlets."""
    return (
        not g.dead
        and g is not current
        and g.parent is not None
        and not isinstance(g, gevent.hub.Hub)
        and type(g).__name__ != "_WorkerGreenlet"
    )


@contextlib.contextmanager
def no_leaks(*, timeout: float | None = None, settle: float = 2.0) -> Iterator[None]:
    """Fail (AssertionError) if the block leaves greenlets alive or sockets open.

    Greenlets are tracked with ``greenlet.settrace`` (only those that ran inside the
    block), which is far cheaper than scanning the heap.  Closing greenlets get up to
    ``settle`` seconds to finish.  ``timeout`` bounds the block with a ``gevent.Timeout``.
    """
    seen: weakref.WeakSet[greenlet.greenlet] = weakref.WeakSet()
    previous = greenlet.gettrace()

    def trace(event: Literal["switch", "throw"], args: Any) -> None:
        if event in ("switch", "throw"):
            for g in args:
                try:
                    seen.add(g)
                except TypeError:  # pragma: no cover
                    pass
        if previous is not None:
            previous(event, args)

    socks = open_sockets()
    current = greenlet.getcurrent()
    greenlet.settrace(trace)
    timer = gevent.Timeout(timeout) if timeout else None
    if timer is not None:
        timer.start()
    try:
        yield
    finally:
        if timer is not None:
            timer.close()
        try:
            new: list[greenlet.greenlet] = []
            deadline = time.monotonic() + settle
            while True:
                new = [g for g in list(seen) if _counts(g, current)]
                if not new or time.monotonic() >= deadline:
                    break
                gevent.sleep(0.01)
        finally:
            greenlet.settrace(previous)
    assert not new, f"leaked greenlets: {new}"
    gevent.sleep(0)
    leaked = open_sockets() - socks
    assert not leaked, f"leaked sockets: {sorted(leaked)}"
