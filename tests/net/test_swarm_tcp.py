"""Swarm over TCP loopback with the default Noise + yamux upgrader."""

from __future__ import annotations

import gc
import os
import socket

import gevent
import pytest

from geventp2p.core import addr as maddr
from geventp2p.core.event import Connectedness
from geventp2p.crypto.keys import KeyType, generate_key
from geventp2p.exceptions import AllDialsFailedError, DialBackoffError, TransportError
from geventp2p.host.peerstore import Peerstore
from geventp2p.net.swarm import Swarm
from geventp2p.net.tcp import TcpTransport
from geventp2p.testing.leakcheck import live_greenlets as _all_live


def _live():
    return [g for g in _all_live() if not isinstance(g, gevent.hub.Hub)
            and type(g).__name__ != "_WorkerGreenlet"]


def _sockets():
    out = set()
    try:
        for fd in os.listdir("/proc/self/fd"):
            try:
                if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                    out.add(fd)
            except OSError:
                pass
    except OSError:  # pragma: no cover - not Linux
        pass
    return out


@pytest.fixture
def make():
    gc.collect()
    before_g = {id(g) for g in _live()}
    before_s = _sockets()
    swarms = []

    def factory(listen="/ip4/127.0.0.1/tcp/0"):
        sw = Swarm(generate_key(KeyType.Ed25519), Peerstore(), TcpTransport())
        if listen:
            sw.listen(listen)
        swarms.append(sw)
        return sw

    with gevent.Timeout(20):
        yield factory
        for sw in swarms:
            sw.close()
    new = []
    for _ in range(100):
        gc.collect()
        new = [g for g in _live() if id(g) not in before_g]
        if not new:
            break
        gevent.sleep(0.01)
    assert not new, f"leaked greenlets: {new}"
    gc.collect()
    gevent.sleep(0.01)
    leaked = _sockets() - before_s
    assert not leaked, f"leaked sockets: {leaked}"


def echo(s):
    while True:
        d = s.read(timeout=5)
        if not d:
            break
        s.write(d)
    s.close()


def test_listen_port_zero_and_echo_over_noise(make):
    a, b = make(), make()
    (addr,) = b.listen_addresses()
    host, port, _ = maddr.tcp_host_port(addr)
    assert host == "127.0.0.1" and port != 0
    b.set_stream_handler(echo)
    a.peerstore.add_addrs(b.local_peer, [addr], 3600)
    s = a.new_stream(b.local_peer, timeout=5)
    assert s.conn.security == "/noise" and s.conn.muxer == "/yamux/1.0.0"
    payload = os.urandom(200_000)
    s.write(payload)
    s.close_write()
    got = bytearray()
    while True:
        chunk = s.read(timeout=5)
        if not chunk:
            break
        got += chunk
    assert bytes(got) == payload
    s.close()
    assert a.connectedness(b.local_peer) == Connectedness.Connected
    assert b.conns()[0].remote_peer == a.local_peer


def test_unspecified_listen_expands_to_interfaces(make):
    b = make("/ip4/0.0.0.0/tcp/0")
    (bound,) = b.listen_addresses()
    _, port, _ = maddr.tcp_host_port(bound)
    expanded = [str(m) for m in b.interface_listen_addresses()]
    assert f"/ip4/127.0.0.1/tcp/{port}" in expanded
    assert all("0.0.0.0" not in m for m in expanded)
    a = make(None)
    # the unspecified address itself is not dialable; the expanded loopback one is
    a.peerstore.add_addrs(b.local_peer, [bound, f"/ip4/127.0.0.1/tcp/{port}"], 3600)
    conn = a.dial_peer(b.local_peer, timeout=5)
    assert str(conn.remote_addr) == f"/ip4/127.0.0.1/tcp/{port}"


def test_refused_port_fails_then_backs_off(make):
    a = make(None)
    b = make(None)  # never listens
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    addr = f"/ip4/127.0.0.1/tcp/{port}"
    a.peerstore.add_addrs(b.local_peer, [addr], 3600)
    with pytest.raises(AllDialsFailedError) as ei:
        a.dial_peer(b.local_peer, timeout=5)
    ((ma, exc),) = ei.value.attempts
    assert str(ma) == addr and isinstance(exc, TransportError)
    with pytest.raises(DialBackoffError):
        a.dial_peer(b.local_peer, timeout=5)
    assert a.connectedness(b.local_peer) == Connectedness.CannotConnect


def test_both_sides_dial_and_close_everything(make):
    a, b = make(), make()
    a.peerstore.add_addrs(b.local_peer, b.listen_addresses(), 3600)
    b.peerstore.add_addrs(a.local_peer, a.listen_addresses(), 3600)
    jobs = [gevent.spawn(a.dial_peer, b.local_peer, 5), gevent.spawn(b.dial_peer, a.local_peer, 5)]
    gevent.joinall(jobs, timeout=5, raise_error=True)
    assert 1 <= len(a.conns()) <= 2
    a.close()
    gevent.sleep(0.05)
    for _ in range(100):
        if not b.conns():
            break
        gevent.sleep(0.01)
    assert b.conns() == []


_PATCHED_SCRIPT = r'''
from gevent import monkey
monkey.patch_all()
import gevent
from geventp2p.crypto.keys import KeyType, generate_key
from geventp2p.host.peerstore import Peerstore
from geventp2p.net.swarm import Swarm
from geventp2p.net.tcp import TcpTransport

def echo(s):
    d = s.read(timeout=5)
    s.write(d)
    s.close()

with gevent.Timeout(20):
    a = Swarm(generate_key(KeyType.Ed25519), Peerstore(), TcpTransport())
    b = Swarm(generate_key(KeyType.Ed25519), Peerstore(), TcpTransport())
    b.listen("/ip4/127.0.0.1/tcp/0")
    b.set_stream_handler(echo)
    a.peerstore.add_addrs(b.local_peer, b.listen_addresses(), 3600)
    s = a.new_stream(b.local_peer, timeout=5)
    s.write(b"patched")
    assert s.read_exactly(7, timeout=5) == b"patched"
    s.close()
    a.close()
    b.close()
print("OK")
'''


def test_swarm_under_monkey_patch_subprocess():
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run([sys.executable, "-c", _PATCHED_SCRIPT], capture_output=True, text=True,
                          timeout=60, cwd=root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("OK")
