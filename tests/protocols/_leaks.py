"""Leak and time bounds for host/protocol tests: no new live greenlets or sockets per test."""

from __future__ import annotations

import os
import weakref

import gevent
import greenlet
import pytest

#: Every host test runs under this gevent timeout (seconds).
TEST_TIMEOUT = 30


def open_sockets() -> set:
    """``(fd, "socket:[inode]")`` pairs of this process's open sockets."""
    out = set()
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


def _alive(g, current) -> bool:
    return (
        not g.dead
        and g is not current
        and g.parent is not None
        and not isinstance(g, gevent.hub.Hub)
        and type(g).__name__ != "_WorkerGreenlet"
    )


@pytest.fixture(autouse=True)
def bounded_and_leak_free():
    """Autouse: gevent timeout around the test, then no leaked greenlets/sockets."""
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

    socks = open_sockets()
    current = greenlet.getcurrent()
    greenlet.settrace(trace)
    timer = gevent.Timeout(TEST_TIMEOUT)
    timer.start()
    try:
        yield
    finally:
        timer.close()
        try:
            new = []
            for _ in range(200):  # closing greenlets may need a few loop turns
                new = [g for g in list(seen) if _alive(g, current)]
                if not new:
                    break
                gevent.sleep(0.01)
        finally:
            greenlet.settrace(previous)
    assert not new, f"leaked greenlets: {new}"
    leaked = open_sockets() - socks
    assert not leaked, f"leaked sockets: {sorted(leaked)}"
