"""Hostile peers: crowds of TCP sockets that connect and never say a word.

A listener bounds handshakes in flight by its resource manager (transient scope,
per-IP rules), not by a fixed number of slots, and makes room by dropping the oldest
connection that has not sent a byte.  So 1,000 silent sockets neither exhaust it nor
make a real peer wait: the real peer's handshake completes within 2 s.

* over loopback (exempt from per-IP rules) with a transient limit the crowd exceeds:
  drop-oldest-silent makes room;
* from another address, in a network namespace the test builds (veth pair, own
  addresses): go's per-IP rules (8 concurrent, 16 burst) stop the crowd at once.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import textwrap
import time
from typing import Any

import gevent
import gevent.socket as gsocket
import pytest

from geventp2p.crypto.keys import KeyType, generate_key
from geventp2p.exceptions import AllDialsFailedError
from geventp2p.host.peerstore import Peerstore
from geventp2p.host.rcmgr import LimitConfig, new_resource_manager
from geventp2p.net.swarm import Swarm, SwarmConfig
from geventp2p.net.tcp import TcpTransport

CROWD = 1000
GiB = 1 << 30


@pytest.fixture(autouse=True)
def enough_fds():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 3 * CROWD + 512
    if soft != resource.RLIM_INFINITY and soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {want}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    yield
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def all_zero(m: Any) -> bool:
    st = m.stat()
    return all(st[k].is_zero() for k in ("system", "transient")) and not st["peers"]


def wait_for(pred, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        gevent.sleep(0.01)


def swarm(rm: Any = None, listen: str | None = None, **cfg: Any) -> Swarm:
    sw = Swarm(generate_key(KeyType.Ed25519), Peerstore(), TcpTransport(), resource_manager=rm,
               config=SwarmConfig(**cfg) if cfg else None)
    if listen:
        sw.listen(listen)
    return sw


def timed_handshake(a: Swarm, b: Swarm) -> float:
    a.peerstore.add_addrs(b.local_peer, b.listen_addresses(), 3600)
    t0 = time.monotonic()
    conn = a.dial_peer(b.local_peer, timeout=10)
    took = time.monotonic() - t0
    s = conn.new_stream(timeout=5)  # the connection really works
    s.write(b"x")
    s.close()
    return took


def open_silent(host: str, port: int, n: int, out: list[Any]) -> None:
    for _ in range(n):
        s = gsocket.socket(gsocket.AF_INET, gsocket.SOCK_STREAM)
        try:
            s.settimeout(5)
            s.connect((host, port))
        except OSError:
            s.close()
            continue
        out.append(s)


@pytest.mark.parametrize("limited", [False, True], ids=["no-rcmgr", "transient-64"])
def test_thousand_silent_loopback_sockets_do_not_delay_a_real_peer(limited):
    rb = None
    if limited:
        rb = new_resource_manager(
            LimitConfig.from_dict({"Transient": {"ConnsInbound": 64}, "System": {"ConnsInbound": 256}}),
            total_memory=8 * GiB, fd_limit=16384,
        )
    with gevent.Timeout(120):
        b = swarm(rb, "/ip4/127.0.0.1/tcp/0", inbound_first_byte_timeout=60)
        a = swarm()
        crowd: list[Any] = []
        try:
            port = int(str(b.listen_addresses()[0]).rsplit("/", 1)[1])
            attackers = [gevent.spawn(open_silent, "127.0.0.1", port, CROWD // 4, crowd) for _ in range(4)]
            gevent.joinall(attackers, raise_error=True)
            assert len(crowd) >= CROWD * 0.9
            if limited:
                wait_for(lambda: b.inbound_counts["dropped_silent"] >= CROWD - 64 - 16)
                assert rb.transient.stat().num_conns_inbound <= 64
            else:
                wait_for(lambda: len(b._silent) >= CROWD * 0.9)
            # more of them keep arriving while the real peer dials
            more = [gevent.spawn(open_silent, "127.0.0.1", port, 50, crowd) for _ in range(4)]
            took = timed_handshake(a, b)
            gevent.joinall(more, raise_error=True)
            assert took < 2.0, f"handshake took {took:.2f}s behind {len(crowd)} silent sockets"
            assert len(b.conns()) == 1
        finally:
            for s in crowd:
                s.close()
            a.close()
        if limited:
            wait_for(lambda: not b._silent and not b.conns())
            wait_for(lambda: all_zero(rb))
        b.close()


def test_per_ip_rules_cover_loopback_when_asked():
    """Loopback is exempt by default (above); ``limit_loopback=True`` applies go's rules."""
    rb = new_resource_manager(total_memory=8 * GiB, fd_limit=16384, limit_loopback=True)
    with gevent.Timeout(60):
        b = swarm(rb, "/ip4/127.0.0.1/tcp/0", inbound_first_byte_timeout=60)
        a = swarm()
        crowd: list[Any] = []
        try:
            port = int(str(b.listen_addresses()[0]).rsplit("/", 1)[1])
            open_silent("127.0.0.1", port, 20, crowd)
            wait_for(lambda: b.inbound_counts["refused"] == 12)  # 8 held; 8 over the cap, 4 over the burst
            assert rb.blocked[("conn-limiter", "connections per ip")] == 8
            assert rb.blocked[("conn-rate-limiter", "connection rate per ip")] == 4
            assert rb.transient.stat().num_conns_inbound == 8
            a.peerstore.add_addrs(b.local_peer, b.listen_addresses(), 3600)
            with pytest.raises(AllDialsFailedError):  # same address as the crowd
                a.dial_peer(b.local_peer, timeout=10)
        finally:
            for s in crowd:
                s.close()
            a.close()
        wait_for(lambda: not b._silent)
        wait_for(lambda: all_zero(rb) and len(rb.conn_limiter) == 0)
        b.close()


# --------------------------------------------------------------------------- per-IP, namespaces

_ATTACKER = textwrap.dedent("""
    import socket, sys
    host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    held = []
    for _ in range(n):
        s = socket.socket()
        s.settimeout(5)
        try:
            s.connect((host, port))
        except OSError:
            s.close()
            continue
        held.append(s)
    print("ready", len(held), flush=True)
    sys.stdin.read()  # hold the sockets until the test closes our stdin
""")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=20)


@pytest.fixture
def netns():
    """A network namespace joined to ours by a veth pair: (our address, its address)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to create a network namespace")
    tag = os.getpid() % 100000
    ns, host_if, ns_if = f"gp2p{tag}", f"gp2p{tag}a", f"gp2p{tag}b"
    net = f"10.{200 + tag % 50}.{(tag // 50) % 250}"
    ours, theirs = f"{net}.1", f"{net}.2"
    # leftovers of an earlier run that was killed (same pid, same names)
    subprocess.run(["ip", "link", "del", host_if], capture_output=True)
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    if f" {net}." in subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout:
        pytest.skip(f"{net}.0/24 is in use here")
    try:
        _ip("netns", "add", ns)
    except (subprocess.CalledProcessError, OSError) as exc:
        pytest.skip(f"cannot create a network namespace: {exc}")
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", ns)
        _ip("addr", "add", f"{ours}/24", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("-n", ns, "addr", "add", f"{theirs}/24", "dev", ns_if)
        _ip("-n", ns, "link", "set", ns_if, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
    except (subprocess.CalledProcessError, OSError) as exc:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        pytest.skip(f"cannot wire the network namespace: {exc}")
    try:
        yield ns, ours, theirs
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_thousand_silent_sockets_from_one_address_do_not_stop_another(netns):
    ns, ours, theirs = netns
    rb = new_resource_manager(total_memory=8 * GiB, fd_limit=16384)  # go's defaults, per-IP rules on
    with gevent.Timeout(120):
        b = swarm(rb, f"/ip4/{ours}/tcp/0", inbound_first_byte_timeout=60)
        a = swarm()  # dials from our address, not the crowd's
        port = int(str(b.listen_addresses()[0]).rsplit("/", 1)[1])
        # a plain Popen, read and reaped cooperatively: gevent.subprocess would install a
        # process-wide SIGCHLD child watcher that reaps every later test's children
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", _ATTACKER, ours, str(port), str(CROWD)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        try:
            line = _read_line(proc.stdout)
            assert line.startswith("ready"), line
            # the crowd's address got 16 connections (the burst), 8 held at a time; the
            # rest were refused before any handshake
            wait_for(lambda: b.inbound_counts["refused"] >= CROWD - 16)
            assert rb.blocked[("conn-rate-limiter", "connection rate per ip")] >= CROWD - 16
            assert rb.blocked[("conn-limiter", "connections per ip")] >= 1
            assert rb.transient.stat().num_conns_inbound <= 8
            assert b.inbound_counts["dropped_silent"] == 0  # the per-IP rules sufficed
            took = timed_handshake(a, b)
            assert took < 2.0, f"handshake took {took:.2f}s"
        finally:
            proc.stdin.close()
            _reap(proc, 20)
            a.close()
        wait_for(lambda: not b._silent and not b.conns())
        wait_for(lambda: all_zero(rb) and len(rb.conn_limiter) == 0)
        b.close()


def _read_line(pipe: Any) -> str:
    """One line from ``pipe`` without blocking the hub (our listener keeps accepting)."""
    fd = pipe.fileno()
    os.set_blocking(fd, False)
    buf = b""
    while not buf.endswith(b"\n"):
        gsocket.wait_read(fd)
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        buf += chunk
    return buf.decode()


def _reap(proc: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait(5)
            break
        gevent.sleep(0.05)
