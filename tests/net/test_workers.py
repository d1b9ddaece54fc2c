"""The stack's own greenlets do not record their spawning stacks (net/_workers.py)."""

from __future__ import annotations

import gevent
from gevent import getcurrent

from geventp2p.net._workers import Worker, worker_group, worker_pool

ECHO = "/echo/1.0.0"


def test_worker_keeps_no_spawning_stack_but_its_tree():
    plain = gevent.spawn(lambda: None)
    worker = Worker.spawn(lambda: None)
    try:
        assert plain.spawning_stack is not None  # gevent's default records the frames
        assert worker.spawning_stack is None
        assert worker.spawning_greenlet() is getcurrent()  # the tree is still tracked
    finally:
        gevent.joinall([plain, worker], timeout=10)
    for group in (worker_group(), worker_pool(4)):
        g = group.spawn(lambda: 7)
        assert isinstance(g, Worker) and g.get(timeout=10) == 7


def test_a_hosts_connection_greenlets_are_workers(make_host):
    a = make_host(services=["identify", "echo"])
    b = make_host(services=["identify", "echo"])
    b.connect(a.p2p_addrs()[0], timeout=10)
    s = b.new_stream(a.id, ECHO, timeout=10)
    s.write(b"hi", timeout=10)
    assert s.read_exactly(2, timeout=10) == b"hi"
    for host, peer in ((a, b), (b, a)):
        muxed = host.network.conns_to_peer(peer.id)[0].muxed
        assert isinstance(muxed._reader, Worker) and isinstance(muxed._writer, Worker)
        assert host.network.group.greenlet_class is Worker  # stream handlers, dials
    tcp = [lst for lst in a.network._listeners if hasattr(lst, "handlers")]
    assert tcp and all(lst.handlers.greenlet_class is Worker for lst in tcp)
    s.close()
