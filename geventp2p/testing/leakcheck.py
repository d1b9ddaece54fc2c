"""Leak checks for tests: live greenlets and open sockets of this process.

Shipped so applications can test their own protocols the way geventp2p does::

    from geventp2p.testing.leakcheck import live_greenlets, open_sockets
"""

from __future__ import annotations

import gc
import os

import gevent.hub
import greenlet

__all__ = ["live_greenlets", "open_sockets"]


def live_greenlets() -> list:
    """Greenlets that are alive, other than the current one, the hub and resolver workers."""
    current = greenlet.getcurrent()
    return [
        o
        for o in gc.get_objects()
        if isinstance(o, greenlet.greenlet)
        and not o.dead
        and o is not current
        and o.parent is not None
        and not isinstance(o, gevent.hub.Hub)
        and type(o).__name__ != "_WorkerGreenlet"
    ]


def open_sockets() -> set:
    """``{(fd, "socket:[inode]")}`` for this process's open sockets (empty off Linux)."""
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
