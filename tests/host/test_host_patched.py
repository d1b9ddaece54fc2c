"""The host stack under ``gevent.monkey.patch_all()`` (in a subprocess: patching is global)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent('''
    from gevent import monkey
    monkey.patch_all()

    import gevent
    import geventp2p
    from geventp2p.protocols.echo import echo
    from geventp2p.protocols.perf import perf
    from geventp2p.protocols.ping import ping

    def live_greenlets():
        import gc, greenlet
        cur = greenlet.getcurrent()
        return [g for g in gc.get_objects() if isinstance(g, greenlet.greenlet) and not g.dead
                and g is not cur and g.parent is not None and not isinstance(g, gevent.hub.Hub)
                and type(g).__name__ != "_WorkerGreenlet"]

    def open_sockets():
        import os
        out = set()
        for fd in os.listdir("/proc/self/fd"):
            try:
                t = os.readlink("/proc/self/fd/" + fd)
            except OSError:
                continue
            if t.startswith("socket:"):
                out.add((fd, t))
        return out

    assert monkey.is_module_patched("socket")
    socks = open_sockets()
    with gevent.Timeout(30):
        a = geventp2p.new_host(services=["identify", "ping", "echo", "perf"])
        b = geventp2p.new_host(muxers=["mplex"])
        with a, b:
            b.connect(a.p2p_addrs()[0], timeout=10)
            assert "/echo/1.0.0" in b.peerstore.get_protocols(a.id)
            assert echo(b, a.id, b"x" * 300000) == b"x" * 300000
            assert len(list(ping(b, a.id, count=3, interval=0))) == 3
            assert perf(b, a.id, 50000, 70000).download_bytes == 70000
        for _ in range(100):
            if not live_greenlets():
                break
            gevent.sleep(0.01)
        assert not live_greenlets(), live_greenlets()
        assert not (open_sockets() - socks), open_sockets() - socks
    print("OK")
''')


def test_host_with_monkey_patching():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=root, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith("OK")
