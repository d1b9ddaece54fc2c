"""TCP transport over loopback (no monkey-patching in this process)."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys

import gevent
import gevent.socket as gsocket
import pytest
from multiaddr import Multiaddr

from geventp2p.exceptions import ConfigError, MultiaddrError, P2PTimeoutError, TransportError
from geventp2p.net import multistream
from geventp2p.net.rawconn import RawConn
from geventp2p.net.tcp import TcpConfig, TcpListener, TcpTransport
from _scripts_transport.leakcheck import no_leaks  # noqa: F401  (autouse fixture)


def _has_ipv6() -> bool:
    try:
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


HAS_IPV6 = _has_ipv6()


def echo_handler(conn):
    try:
        while True:
            data = conn.read(65536, timeout=5)
            if not data:
                break
            conn.write(data)
    finally:
        conn.close()


@pytest.fixture
def transport():
    return TcpTransport()


@pytest.fixture
def listener(transport):
    lst = transport.listen("/ip4/127.0.0.1/tcp/0", echo_handler)
    with gevent.Timeout(10):
        yield lst
    lst.close(stop_handlers=True)
    assert lst.join(2)


def test_listen_port_zero_resolves(listener):
    ma = listener.multiaddr
    assert isinstance(listener, TcpListener)
    assert isinstance(ma, Multiaddr)
    port = int(ma.value_for_protocol("tcp"))
    assert port != 0
    assert ma.value_for_protocol("ip4") == "127.0.0.1"


def test_dial_echo(transport, listener):
    conn = transport.dial(listener.multiaddr)
    try:
        assert isinstance(conn, RawConn)
        assert conn.is_initiator
        assert conn.remote_addr == listener.multiaddr
        assert conn.local_addr.value_for_protocol("ip4") == "127.0.0.1"
        conn.write(b"ping")
        assert conn.read(10, timeout=2) == b"ping"
        conn.writev([b"a", b"b", b"c"])
        got = b""
        while len(got) < 3:
            got += conn.read(10, timeout=2)
        assert got == b"abc"
    finally:
        conn.close()


def test_nodelay_set(transport, listener):
    conn = transport.dial(listener.multiaddr)
    try:
        assert conn.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        conn.close()


def test_reuseaddr_set(listener):
    assert listener._sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) != 0


def test_handler_gets_responder_conn_in_own_greenlet(transport):
    seen = []
    done = gevent.event.Event()

    def handler(conn):
        seen.append((conn.is_initiator, gevent.getcurrent(), conn.remote_addr))
        conn.close()
        done.set()

    lst = transport.listen("/ip4/127.0.0.1/tcp/0", handler)
    try:
        conn = transport.dial(lst.multiaddr)
        assert done.wait(2)
        is_init, glet, remote = seen[0]
        assert is_init is False
        assert glet is not lst._loop
        assert remote == conn.local_addr
        conn.close()
    finally:
        lst.close(stop_handlers=True)


def test_accepted_conns_share_their_local_multiaddr(transport):
    """A listener's connections all have its address: one Multiaddr object, not one each."""
    got = []
    done = gevent.event.Event()

    def handler(conn):
        got.append(conn.local_addr)
        conn.close()
        if len(got) == 3:
            done.set()

    lst = transport.listen("/ip4/127.0.0.1/tcp/0", handler)
    try:
        dialed = [transport.dial(lst.multiaddr) for _ in range(3)]
        assert done.wait(10)
        assert got[0] == lst.multiaddr and got[1] is got[0] and got[2] is got[0]
        assert dialed[0].local_addr != dialed[1].local_addr  # outbound: their own ports
        for c in dialed:
            c.close()
    finally:
        lst.close(stop_handlers=True)


def test_dial_with_p2p_suffix(transport, listener):
    ma = Multiaddr(str(listener.multiaddr) + "/p2p/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N")
    assert transport.can_dial(ma)
    transport.dial(ma).close()


def test_dial_dns4_localhost(transport, listener):
    port = listener.multiaddr.value_for_protocol("tcp")
    conn = transport.dial(f"/dns4/localhost/tcp/{port}")
    try:
        conn.write(b"dns")
        assert conn.read(10, timeout=2) == b"dns"
        assert conn.remote_addr == listener.multiaddr
    finally:
        conn.close()


def test_dial_dns_localhost(transport, listener):
    port = listener.multiaddr.value_for_protocol("tcp")
    conn = transport.dial(f"/dns/localhost/tcp/{port}")
    conn.close()


@pytest.mark.skipif(not HAS_IPV6, reason="no IPv6 loopback")
def test_ip6_listen_and_dial(transport):
    lst = transport.listen("/ip6/::1/tcp/0", echo_handler)
    try:
        assert lst.multiaddr.value_for_protocol("ip6") == "::1"
        conn = transport.dial(lst.multiaddr)
        conn.write(b"v6")
        assert conn.read(10, timeout=2) == b"v6"
        conn.close()
    finally:
        lst.close(stop_handlers=True)


def test_dial_refused_is_transport_error(transport):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(TransportError) as info:
        transport.dial(f"/ip4/127.0.0.1/tcp/{port}", timeout=2)
    assert isinstance(info.value.__cause__, ConnectionRefusedError)


def test_dial_timeout(transport, monkeypatch):
    # a connect that never completes: stub the socket's connect to block
    orig_socket = gsocket.socket

    class SlowSocket(orig_socket):
        def connect(self, addr):
            gevent.sleep(10)

    monkeypatch.setattr("geventp2p.net.tcp.gsocket.socket", SlowSocket)
    with pytest.raises(P2PTimeoutError):
        transport.dial("/ip4/127.0.0.1/tcp/9", timeout=0.05)


def test_dial_unresolvable(transport):
    with pytest.raises(TransportError):
        transport.dial("/dns4/no-such-host.invalid/tcp/1", timeout=5)


@pytest.mark.parametrize("ma", [
    "/ip4/127.0.0.1/udp/1",
    "/memory/5",
    "/ip4/127.0.0.1/tcp/1/ws",
    "/unix/tmp/x",
])
def test_unsupported_addrs(transport, ma):
    assert not transport.can_dial(ma)
    with pytest.raises(MultiaddrError):
        transport.dial(ma)
    with pytest.raises(MultiaddrError):
        transport.listen(ma, echo_handler)


def test_garbage_addr(transport):
    assert not transport.can_dial("not a multiaddr")
    with pytest.raises(MultiaddrError):
        transport.dial("not a multiaddr")


def test_dial_port_zero_rejected(transport):
    with pytest.raises(MultiaddrError):
        transport.dial("/ip4/127.0.0.1/tcp/0")


def test_listen_in_use(transport, listener):
    cfg = TcpTransport(TcpConfig(reuse_addr=False))
    with pytest.raises(TransportError):
        cfg.listen(listener.multiaddr, echo_handler)


def test_config_validation():
    with pytest.raises(ConfigError):
        TcpConfig(connect_timeout=0)
    with pytest.raises(ConfigError):
        TcpConfig(accept_backoff_min=2, accept_backoff_max=1)
    with pytest.raises(ConfigError):
        TcpConfig(nodelay=1)
    with pytest.raises(ConfigError):
        TcpConfig(max_handlers=0)
    with pytest.raises(ConfigError):
        TcpTransport(config={})


def test_accept_emfile_backoff_keeps_loop(transport, caplog):
    accepted = gevent.event.Event()

    def handler(conn):
        accepted.set()
        conn.close()

    transport = TcpTransport(TcpConfig(accept_backoff_min=0.01, accept_backoff_max=0.04))
    lst = transport.listen("/ip4/127.0.0.1/tcp/0", handler)
    real_accept = lst._accept
    sleeps = []
    fails = {"n": 5}

    def flaky_accept():
        if fails["n"]:
            fails["n"] -= 1
            raise OSError(errno.EMFILE, "Too many open files")
        return real_accept()

    orig_sleep = gevent.sleep

    def record_sleep(seconds=0, *a, **kw):
        sleeps.append(seconds)
        return orig_sleep(seconds, *a, **kw)

    lst._accept = flaky_accept  # patched before the loop first runs
    import geventp2p.net.tcp as tcpmod
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(tcpmod.gevent, "sleep", record_sleep)
            conn = transport.dial(lst.multiaddr)
            assert accepted.wait(3)
        conn.close()
        assert lst.accept_errors == 5
        backoffs = [s for s in sleeps if s]
        assert backoffs[:5] == [0.01, 0.02, 0.04, 0.04, 0.04]
        assert not lst._loop.dead
        assert any("Too many open files" in r.getMessage() for r in caplog.records)
    finally:
        lst.close(stop_handlers=True)
    assert lst.join(2)


def test_handler_exception_closes_conn_and_loop_survives(transport):
    calls = []

    def handler(conn):
        calls.append(conn)
        raise RuntimeError("boom")

    lst = transport.listen("/ip4/127.0.0.1/tcp/0", handler)
    try:
        for _ in range(2):
            c = transport.dial(lst.multiaddr)
            assert c.read(10, timeout=2) == b""  # server side closed after the error
            c.close()
        assert len(calls) == 2 and all(x.closed for x in calls)
    finally:
        lst.close(stop_handlers=True)


def test_close_stops_loop_and_handlers(transport):
    started = gevent.event.Event()
    server_conns = []

    def handler(conn):
        server_conns.append(conn)
        started.set()
        conn.read(10)  # blocks until killed

    lst = transport.listen("/ip4/127.0.0.1/tcp/0", handler)
    c = transport.dial(lst.multiaddr)
    assert started.wait(2)
    lst.close(stop_handlers=False)
    assert lst.closed and lst.join(2)
    assert len(lst.handlers) == 1  # handler still running
    with pytest.raises((TransportError, P2PTimeoutError)):
        transport.dial(lst.multiaddr, timeout=1)
    lst.close(stop_handlers=True)
    assert len(lst.handlers) == 0
    assert server_conns[0].closed
    assert c.read(10, timeout=2) == b""
    c.close()
    lst.close()  # idempotent


def test_many_connections_and_context_manager(transport):
    with transport.listen("/ip4/127.0.0.1/tcp/0", echo_handler) as lst:
        conns = [transport.dial(lst.multiaddr) for _ in range(20)]
        for i, c in enumerate(conns):
            c.write(b"%d" % i)
        for i, c in enumerate(conns):
            assert c.read(10, timeout=2) == b"%d" % i
            c.close()
    assert lst.closed


def test_max_handlers_pool(transport):
    gate = gevent.event.Event()
    running = []

    def handler(conn):
        running.append(conn)
        gate.wait(5)
        conn.close()

    tr = TcpTransport(TcpConfig(max_handlers=2))
    lst = tr.listen("/ip4/127.0.0.1/tcp/0", handler)
    try:
        conns = [tr.dial(lst.multiaddr) for _ in range(4)]
        gevent.sleep(0.1)
        assert len(running) == 2
        gate.set()
        with gevent.Timeout(3):
            while len(running) < 4:
                gevent.sleep(0.01)
        for c in conns:
            c.close()
    finally:
        lst.close(stop_handlers=True)


def test_multistream_over_tcp_pipelined_data(transport):
    result = gevent.event.AsyncResult()

    def handler(conn):
        try:
            proto = multistream.handle(conn, ["/echo/1.0.0"], timeout=2)
            data = conn.read(100, timeout=2)
            result.set((proto, data))
        except Exception as exc:  # pragma: no cover - reported through result
            result.set_exception(exc)
        finally:
            conn.close()

    lst = transport.listen("/ip4/127.0.0.1/tcp/0", handler)
    try:
        conn = transport.dial(lst.multiaddr)
        lazy = multistream.select_lazy(conn, "/echo/1.0.0")
        lazy.write(b"first-bytes")
        assert result.get(timeout=3) == ("/echo/1.0.0", b"first-bytes")
        lazy.close()
    finally:
        lst.close(stop_handlers=True)


def test_loopback_with_monkey_patch_subprocess():
    script = os.path.join(os.path.dirname(__file__), "_scripts_transport", "tcp_patched.py")
    proc = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK" in proc.stdout


def test_abort_sends_reset(transport, listener):
    conn = transport.dial(listener.multiaddr)
    conn.write(b"x")
    assert conn.read(10, timeout=2) == b"x"
    conn.abort()
    assert conn.closed
    conn.abort()  # idempotent


def test_peer_abort_seen_as_transport_error(transport):
    got = gevent.event.AsyncResult()

    def handler(conn):
        conn.read(10, timeout=2)
        conn.abort()
        got.set(True)

    lst = transport.listen("/ip4/127.0.0.1/tcp/0", handler)
    try:
        conn = transport.dial(lst.multiaddr)
        conn.write(b"go")
        assert got.get(timeout=2)
        with pytest.raises(TransportError) as info:
            with gevent.Timeout(2):
                while conn.read(10):
                    pass
                # some kernels report EOF first; the next write then fails
                for _ in range(100):
                    conn.write(b"y" * 1000)
                    gevent.sleep(0.001)
        assert isinstance(info.value.__cause__, OSError)
        conn.close()
    finally:
        lst.close(stop_handlers=True)
