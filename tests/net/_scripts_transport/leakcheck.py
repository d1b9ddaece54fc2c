"""Leak check shared by the transport tests: no new live greenlets or open sockets.

Greenlets are tracked with ``greenlet.settrace`` (every greenlet that ran during the
test), which is much cheaper than scanning ``gc.get_objects()`` per test.
"""

from __future__ import annotations

import os
import weakref

import gevent
import greenlet
import pytest


def _sockets():
    """Set of ``(fd, "socket:[inode]")`` for the open sockets of this process."""
    out = set()
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:  # pragma: no cover - not Linux
        return out
    for fd in names:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed meanwhile (e.g. the listing's own fd)
        if target.startswith("socket:"):
            out.add((fd, target))
    return out


def _interesting(g) -> bool:
    return (
        not g.dead
        and g is not greenlet.getcurrent()
        and g.parent is not None
        and not isinstance(g, gevent.hub.Hub)
        and type(g).__name__ != "_WorkerGreenlet"  # resolver threads are process infrastructure
    )


@pytest.fixture(autouse=True)
def no_leaks():
    seen: "weakref.WeakSet" = weakref.WeakSet()
    previous = greenlet.gettrace()

    def trace(event, args):
        if event in ("switch", "throw"):
            for g in args:
                try:
                    seen.add(g)
                except TypeError:  # pragma: no cover
                    pass
        if previous is not None:
            previous(event, args)

    before_socks = _sockets()
    current = greenlet.getcurrent()
    greenlet.settrace(trace)
    try:
        yield
        new = []
        for _ in range(100):  # let closing greenlets finish (up to ~1 s)
            new = [g for g in list(seen) if g is not current and _interesting(g)]
            if not new:
                break
            gevent.sleep(0.01)
    finally:
        greenlet.settrace(previous)
    assert not new, f"leaked greenlets: {new}"
    gevent.sleep(0)
    leaked = _sockets() - before_socks
    assert not leaked, f"leaked sockets: {sorted(leaked)}"
