"""The greenlet class of the stack's own per-connection greenlets.

gevent records, for every Greenlet it spawns, the ten frames that spawned it (one small
object per frame, for ``gevent.util.print_run_info``).  For the stack's own loops those
frames are always the same few lines of geventp2p, and they cost: a connection's reader,
writer, handshake, identify and stream-handler greenlets come and go while longer-lived
objects of the same connection are made, and the holes they leave in CPython's small-
object pools kept about 1.5 KiB per idle connection resident (bench.conns, 1,000
connections).  The spawning greenlet and the greenlet-tree locals are still recorded, as
``GEVENT_TRACK_GREENLET_TREE`` asks.
"""

from __future__ import annotations

from gevent import Greenlet
from gevent.pool import Group, Pool


class Worker(Greenlet):
    """A :class:`gevent.Greenlet` that does not keep its spawning stack."""

    spawning_stack_limit = 0


def worker_group() -> Group:
    """A :class:`gevent.pool.Group` that spawns :class:`Worker` greenlets."""
    group = Group()
    group.greenlet_class = Worker
    return group


def worker_pool(size: int) -> Pool:
    """A :class:`gevent.pool.Pool` of ``size`` that spawns :class:`Worker` greenlets."""
    return Pool(size, greenlet_class=Worker)
