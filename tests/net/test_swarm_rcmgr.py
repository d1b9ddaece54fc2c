"""The swarm and the resource manager: connections, dials, file descriptors and streams.

Every refusal is checked on both sides (the typed error of the dialer or opener, the
listener's count and DEBUG line), and every test ends with all usage back at zero.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

import gevent
import gevent.event
import pytest

from geventp2p.core.rcmgr import NULL_SCOPE, NullResourceManager
from geventp2p.crypto.keys import KeyType, generate_key
from geventp2p.exceptions import (
    AllDialsFailedError,
    DialResourceLimitError,
    ResourceLimitExceeded,
    StreamResetError,
)
from geventp2p.host.peerstore import Peerstore
from geventp2p.host.rcmgr import LimitConfig, new_resource_manager
from geventp2p.host.rcmgr.scope import ConnScope, StreamScope
from geventp2p.net.memory import MemoryNetwork, MemoryTransport
from geventp2p.net.plaintext import PlaintextTransport
from geventp2p.net.swarm import Swarm
from geventp2p.net.tcp import TcpTransport
from geventp2p.net.upgrader import Upgrader
from geventp2p.net.yamux import YamuxMuxer
from geventp2p.testing.leakcheck import live_greenlets as _all_live
from _scripts_transport.counted import Counted as _Counted

TTL = 3600
GiB = 1 << 30


def rcm(limits: dict[str, Any] | None = None, **kw: Any):
    """A manager for a 1 GiB / 4096-fd budget with ``limits`` (go's JSON form) on top."""
    return new_resource_manager(LimitConfig.from_dict(limits or {}), total_memory=8 * GiB, fd_limit=4096, **kw)


def all_zero(m) -> bool:
    st = m.stat()
    return all(
        st[k].is_zero() for k in ("system", "transient", "allowlisted_system", "allowlisted_transient")
    ) and not (st["services"] or st["protocols"] or st["peers"])


def wait_for(pred, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        gevent.sleep(0.005)


class CountingManager:
    """Wraps a manager; counts ``done()`` per scope it hands out (exactly once, or a bug)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.conn_scopes: list[_Counted] = []
        self.stream_scopes: list[_Counted] = []

    def open_connection(self, direction, use_fd, endpoint):
        s = _Counted(self.inner.open_connection(direction, use_fd, endpoint))
        self.conn_scopes.append(s)
        return s

    def open_stream(self, peer, direction):
        s = _Counted(self.inner.open_stream(peer, direction))
        self.stream_scopes.append(s)
        return s

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _live():
    return [g for g in _all_live() if not isinstance(g, gevent.hub.Hub)
            and type(g).__name__ != "_WorkerGreenlet"]


class Env:
    def __init__(self) -> None:
        self.net = MemoryNetwork()
        self.swarms: list[Swarm] = []

    def make(self, rm: Any = None, *, tcp: bool = False, listen: bool = True, **kw: Any) -> Swarm:
        key = generate_key(KeyType.Ed25519)
        if tcp:
            sw = Swarm(key, Peerstore(), TcpTransport(), resource_manager=rm, **kw)
            addr = "/ip4/127.0.0.1/tcp/0"
        else:
            up = Upgrader([PlaintextTransport(key)], [YamuxMuxer()])
            sw = Swarm(key, Peerstore(), MemoryTransport(self.net), upgrader=up, resource_manager=rm, **kw)
            addr = "/memory/0"
        if listen:
            sw.listen(addr)
        self.swarms.append(sw)
        return sw

    @staticmethod
    def introduce(a: Swarm, b: Swarm) -> None:
        a.peerstore.add_addrs(b.local_peer, b.listen_addresses(), TTL)


@pytest.fixture
def env():
    gc.collect()
    before = {id(g) for g in _live()}
    e = Env()
    with gevent.Timeout(30):
        yield e
        for sw in e.swarms:
            sw.close()
    new = []
    for _ in range(100):
        gc.collect()
        new = [g for g in _live() if id(g) not in before]
        if not new:
            break
        gevent.sleep(0.01)
    assert not new, f"leaked greenlets: {new}"


def echo(stream) -> None:
    while True:
        data = stream.read(timeout=5)
        if not data:
            break
        stream.write(data)
    stream.close()


def close_all(*swarms: Swarm) -> None:
    for sw in swarms:
        for c in sw.conns():
            c.close()


# --------------------------------------------------------------------------- defaults


def test_swarm_defaults_to_a_null_resource_manager(env):
    a, b = env.make(), env.make()
    assert isinstance(a.resource_manager, NullResourceManager)
    b.set_stream_handler(echo)
    env.introduce(a, b)
    s = a.new_stream(b.local_peer, timeout=5)
    assert s.scope is not NULL_SCOPE  # a fresh null scope per stream
    s.write(b"x")
    assert s.read_exactly(1, timeout=5) == b"x"
    s.close()


# --------------------------------------------------------------------------- connections


def test_connection_scope_moves_to_the_peer_and_is_released_once(env):
    ra, rb = CountingManager(rcm()), CountingManager(rcm())
    a, b = env.make(ra), env.make(rb)
    env.introduce(a, b)
    conn = a.dial_peer(b.local_peer, timeout=5)
    wait_for(lambda: len(b.conns()) == 1)
    assert isinstance(conn.scope.inner, ConnScope)
    # transient before the handshake, the peer's scope after it
    assert ra.inner.transient.stat().is_zero() and rb.inner.transient.stat().is_zero()
    assert ra.inner.view_peer(b.local_peer).stat().num_conns_outbound == 1
    assert rb.inner.view_peer(a.local_peer).stat().num_conns_inbound == 1
    assert ra.inner.system.stat().num_fd == 0  # the memory transport holds no descriptor
    close_all(a)
    wait_for(lambda: not b.conns())
    wait_for(lambda: all_zero(ra.inner) and all_zero(rb.inner))
    assert [s.dones for s in ra.conn_scopes + rb.conn_scopes] == [1, 1]


@pytest.mark.parametrize("scope", ["System", "Transient"])
def test_outbound_connection_refused_by_our_limit(env, scope):
    ra = rcm({scope: {"ConnsOutbound": 0}})
    a, b = env.make(ra), env.make()
    env.introduce(a, b)
    with pytest.raises(DialResourceLimitError) as info:
        a.dial_peer(b.local_peer, timeout=5)
    err = info.value
    assert isinstance(err, AllDialsFailedError)  # callers catching the old error still do
    assert isinstance(err.cause, ResourceLimitExceeded)
    assert err.cause.scope == scope.lower() and err.cause.resource == "conns (outbound)"
    assert not a.backoff().backoff(b.local_peer, b.listen_addresses()[0])  # not the address's fault
    assert not b.conns() and all_zero(ra)


def test_outbound_connection_refused_by_the_peer_scope(env):
    ra = CountingManager(rcm({"PeerDefault": {"Conns": 1, "ConnsOutbound": 1}}))
    a, b = env.make(ra), env.make()
    env.introduce(a, b)
    first = a.dial_peer(b.local_peer, timeout=5)
    with pytest.raises(DialResourceLimitError) as info:
        a.dial_peer(b.local_peer, timeout=5, force_direct_dial=True)
    assert info.value.cause.scope == f"peer:{b.local_peer}"
    assert a.conns() == [first]
    wait_for(lambda: len(b.conns()) == 1)  # the refused connection was closed on both sides
    first.close()
    wait_for(lambda: all_zero(ra.inner))
    assert [s.dones for s in ra.conn_scopes] == [1, 1]


@pytest.mark.parametrize("scope", ["System", "Transient"])
def test_inbound_connection_refused_before_the_handshake(env, scope, caplog):
    rb = CountingManager(rcm({scope: {"ConnsInbound": 0}}))
    a, b = env.make(), env.make(rb)
    env.introduce(a, b)
    with caplog.at_level(logging.DEBUG, logger="geventp2p.net.swarm"):
        with pytest.raises(AllDialsFailedError) as info:
            a.dial_peer(b.local_peer, timeout=5)
    assert not isinstance(info.value, DialResourceLimitError)  # the remote refused, not us
    assert b.inbound_counts["refused"] == 1
    assert rb.inner.blocked[(scope.lower(), "conns (inbound)")] == 1
    assert any("inbound connection from" in r.getMessage() and "refused" in r.getMessage()
               for r in caplog.records)
    assert not rb.conn_scopes  # nothing was charged
    assert all_zero(rb.inner)


def test_inbound_connection_refused_by_the_peer_scope(env, caplog):
    rb = CountingManager(rcm({"PeerDefault": {"Conns": 1, "ConnsInbound": 1}}))
    a, b = env.make(), env.make(rb)
    env.introduce(a, b)
    a.dial_peer(b.local_peer, timeout=5)
    with caplog.at_level(logging.DEBUG, logger="geventp2p.net.swarm"):
        with pytest.raises(AllDialsFailedError):
            a.dial_peer(b.local_peer, timeout=5, force_direct_dial=True)
        wait_for(lambda: b.inbound_counts["failed"] == 1)
    assert len(b.conns()) == 1
    assert rb.inner.blocked[("peer", "conns (inbound)")] == 1
    assert any("resource limit exceeded" in r.getMessage() for r in caplog.records)
    close_all(a, b)
    wait_for(lambda: all_zero(rb.inner))
    assert [s.dones for s in rb.conn_scopes] == [1, 1]


def test_gated_connection_releases_its_scope_once(env):
    class Gater:
        def intercept_upgraded(self, conn):
            return False, 0

    ra, rb = CountingManager(rcm()), CountingManager(rcm())
    a, b = env.make(ra, gater=Gater()), env.make(rb)
    env.introduce(a, b)
    with pytest.raises(AllDialsFailedError):
        a.dial_peer(b.local_peer, timeout=5)
    wait_for(lambda: len(rb.conn_scopes) == 1 and rb.conn_scopes[0].dones == 1)
    wait_for(lambda: all_zero(ra.inner) and all_zero(rb.inner))
    assert [s.dones for s in ra.conn_scopes] == [1]


# --------------------------------------------------------------------------- file descriptors


def test_tcp_dial_and_accept_charge_one_fd_each(env):
    ra, rb = rcm(), rcm()
    a, b = env.make(ra, tcp=True), env.make(rb, tcp=True)
    env.introduce(a, b)
    a.dial_peer(b.local_peer, timeout=10)
    wait_for(lambda: len(b.conns()) == 1)
    assert ra.system.stat().num_fd == 1 and ra.system.stat().num_conns_outbound == 1
    assert rb.system.stat().num_fd == 1 and rb.system.stat().num_conns_inbound == 1
    close_all(a)
    wait_for(lambda: all_zero(ra) and all_zero(rb))


def test_fd_limit_refuses_a_second_tcp_dial(env):
    ra = rcm({"System": {"FD": 1}})
    a, b, c = env.make(ra, tcp=True), env.make(tcp=True), env.make(tcp=True)
    env.introduce(a, b)
    env.introduce(a, c)
    a.dial_peer(b.local_peer, timeout=10)
    with pytest.raises(DialResourceLimitError) as info:
        a.dial_peer(c.local_peer, timeout=10)
    assert info.value.cause.resource == "fd"
    assert not c.conns()
    close_all(a)
    wait_for(lambda: all_zero(ra))


# --------------------------------------------------------------------------- streams


def _held_handler(release: gevent.event.Event):
    def handler(stream) -> None:
        release.wait(10)
        stream.close()

    return handler


def test_outbound_stream_refused_opens_nothing(env):
    ra = CountingManager(rcm({"PeerDefault": {"StreamsOutbound": 1}}))
    a, b = env.make(ra), env.make()
    release = gevent.event.Event()
    b.set_stream_handler(_held_handler(release))
    env.introduce(a, b)
    s1 = a.new_stream(b.local_peer, timeout=5)
    assert isinstance(s1.scope.inner, StreamScope)
    conn = s1.conn
    with pytest.raises(ResourceLimitExceeded) as info:
        a.new_stream(b.local_peer, timeout=5)
    assert info.value.scope == f"peer:{b.local_peer}" and info.value.resource == "streams (outbound)"
    assert conn.streams() == [s1] and conn.muxed.num_streams == 1
    release.set()
    s1.close()
    wait_for(lambda: not conn.streams())
    assert [s.dones for s in ra.stream_scopes] == [1]
    close_all(a)
    wait_for(lambda: all_zero(ra.inner))


@pytest.mark.parametrize("limits, scope", [
    ({"PeerDefault": {"StreamsInbound": 2}}, "peer"),
    ({"System": {"StreamsInbound": 2}}, "system"),
    ({"Transient": {"StreamsInbound": 2}}, "transient"),
])
def test_inbound_stream_refused_is_reset_with_0x1002(env, limits, scope):
    rb = CountingManager(rcm(limits))
    a, b = env.make(), env.make(rb)
    release = gevent.event.Event()
    b.set_stream_handler(_held_handler(release))
    env.introduce(a, b)
    held = [a.new_stream(b.local_peer, timeout=5) for _ in range(2)]
    for s in held:
        s.write(b"x")
    wait_for(lambda: len(rb.stream_scopes) == 2)
    s3 = a.new_stream(b.local_peer, timeout=5)
    s3.write(b"x")
    with pytest.raises(StreamResetError) as info:
        s3.read(timeout=5)
    assert info.value.error_code == ResourceLimitExceeded.error_code == 0x1002
    assert info.value.remote
    assert rb.inner.blocked[(scope, "streams (inbound)")] == 1
    assert len(rb.stream_scopes) == 2  # the refused stream was never charged
    release.set()
    for s in held:
        s.close()
    wait_for(lambda: [x.dones for x in rb.stream_scopes] == [1, 1])
    close_all(a)
    wait_for(lambda: not b.conns())
    wait_for(lambda: all_zero(rb.inner))


def test_scopes_back_to_zero_after_streams_and_connections_close(env):
    ra, rb = CountingManager(rcm()), CountingManager(rcm())
    a, b = env.make(ra), env.make(rb)
    b.set_stream_handler(echo)
    env.introduce(a, b)
    streams = [a.new_stream(b.local_peer, timeout=5) for _ in range(20)]
    for s in streams:
        s.write(b"ping")
    for s in streams[:10]:  # half finish cleanly, half are cut by the connection's end
        assert s.read_exactly(4, timeout=5) == b"ping"
        s.close_write()
        assert s.read(timeout=5) == b""
        s.close()
    streams[10].reset()
    wait_for(lambda: len(rb.stream_scopes) == 20)
    assert ra.inner.view_peer(b.local_peer).stat().num_streams_outbound == 9
    close_all(a)
    wait_for(lambda: not b.conns())
    wait_for(lambda: all_zero(ra.inner) and all_zero(rb.inner))
    for m in (ra, rb):
        assert [s.dones for s in m.stream_scopes] == [1] * 20
        assert [s.dones for s in m.conn_scopes] == [1]


def test_remote_close_releases_connection_and_stream_scopes(env):
    ra, rb = rcm(), rcm()
    a, b = env.make(ra), env.make(rb)
    release = gevent.event.Event()
    b.set_stream_handler(_held_handler(release))
    env.introduce(a, b)
    for _ in range(3):
        a.new_stream(b.local_peer, timeout=5).write(b"x")
    wait_for(lambda: rb.system.stat().num_streams_inbound == 3)
    b.close()  # the remote goes away with streams open
    release.set()
    wait_for(lambda: not a.conns())
    wait_for(lambda: all_zero(ra) and all_zero(rb))


def test_stream_scope_attribute_is_shared_with_the_host(env):
    """``stream.scope`` is what the host names the protocol and service on."""
    ra, rb = rcm(), rcm()
    a, b = env.make(ra), env.make(rb)
    got: list[Any] = []

    def handler(stream) -> None:
        stream.scope.set_protocol("/echo/1.0.0")
        got.append(stream.scope)
        echo(stream)

    b.set_stream_handler(handler)
    env.introduce(a, b)
    s = a.new_stream(b.local_peer, timeout=5)
    s.scope.set_protocol("/echo/1.0.0")
    s.write(b"hi")
    assert s.read_exactly(2, timeout=5) == b"hi"
    assert "/echo/1.0.0" in rb.stat()["protocols"]
    assert ra.view_protocol("/echo/1.0.0").stat().num_streams_outbound == 1
    s.close_write()
    assert s.read(timeout=5) == b""
    s.close()
    wait_for(lambda: got and got[0].closed)
    close_all(a)
    wait_for(lambda: all_zero(ra) and all_zero(rb))


# --------------------------------------------------------------------------- per-IP rules


def test_per_ip_limit_applies_to_dials_too(env):
    """go applies the per-IP rules in both directions; loopback is exempt unless asked."""
    ra = rcm(limit_loopback=True, ip_limits=None)
    assert ra.conn_limiter is None and ra.conn_rate_limiter is not None
    strict = rcm(limit_loopback=True, ip_rates=None)
    scopes = [strict.open_connection("outbound", True, "/ip4/127.0.0.1/tcp/1") for _ in range(8)]
    with pytest.raises(ResourceLimitExceeded) as info:
        strict.open_connection("outbound", True, "/ip4/127.0.0.1/tcp/1")
    assert info.value.scope == "conn-limiter"
    scopes.pop().done()
    scopes.append(strict.open_connection("outbound", True, "/ip4/127.0.0.1/tcp/1"))
    for s in scopes:
        s.done()
    assert len(strict.conn_limiter) == 0 and all_zero(strict)
    lax = rcm()
    extra = [lax.open_connection("inbound", True, "/ip4/127.0.0.1/tcp/1") for _ in range(30)]  # > 8, < transient
    for s in extra:
        s.done()
    assert all_zero(lax)

