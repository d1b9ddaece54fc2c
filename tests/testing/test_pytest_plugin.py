"""geventp2p.testing.pytest_plugin: each fixture in use, and the plugin as a user loads it."""

from __future__ import annotations

import textwrap

import gevent
import gevent.event
import pytest

from geventp2p.net.rawconn import SocketConn
from geventp2p.testing.clock import VirtualClock
from geventp2p.protocols.echo import EchoService
from geventp2p.protocols.perf import PROTOCOL_ID as PERF_ID
from geventp2p.protocols.perf import PerfService
from geventp2p.testing.pytest_plugin import HostPair, connect_pair

T = 10
MY_PROTO = "/test/upper/1.0.0"


def upper(stream) -> None:
    """A user's protocol handler: upper-cases everything until EOF."""
    while True:
        data = stream.read(65536)
        if not data:
            break
        stream.write(data.upper())
    stream.close()


def read_to_eof(stream) -> bytes:
    out = b""
    while True:
        chunk = stream.read(65536, timeout=T)
        if not chunk:
            return out
        out += chunk


def round_trip(a, b, proto: str, payload: bytes) -> bytes:
    s = b.new_stream(a.id, [proto], timeout=T)
    try:  # no ``with``: until one Stream type lands, a lazily negotiated stream is no context manager
        s.write(payload)
        s.close_write()
        return read_to_eof(s)
    finally:
        s.close()


def transports_of(host) -> set[str]:
    return {p.name for a in host.addrs() for p in a.protocols()}


def test_host_pair_runs_a_users_handler_over_memory(host_pair):
    a, b = host_pair
    assert isinstance(host_pair, HostPair) and host_pair.a is a and host_pair.b is b
    assert "memory" in transports_of(a) and "tcp" not in transports_of(a)
    assert b.network.conns_to_peer(a.id) and a.network.conns_to_peer(b.id)
    a.set_stream_handler(MY_PROTO, upper)
    assert round_trip(a, b, MY_PROTO, b"hello") == b"HELLO"
    assert round_trip(a, b, "/echo/1.0.0", b"echo") == b"echo"  # both run echo


def test_tcp_host_pair_over_loopback(tcp_host_pair):
    a, b = tcp_host_pair
    assert "tcp" in transports_of(a)
    assert all(str(addr).startswith("/ip4/127.0.0.1/tcp/") for addr in a.addrs())
    b.set_stream_handler(MY_PROTO, upper)  # either side may serve
    assert round_trip(b, a, MY_PROTO, b"x" * 100_000) == b"X" * 100_000


@pytest.mark.parametrize("host_pair_options", [
    {"security": "noise", "muxers": "yamux"},
    {"security": "noise", "muxers": "mplex"},
    {"security": "plaintext", "muxers": "yamux"},
    {"security": "plaintext", "muxers": "mplex"},
], ids=lambda o: f"{o['security']}-{o['muxers']}")
def test_host_pair_options_pick_the_stack(host_pair, host_pair_options):
    a, b = host_pair
    (conn,) = b.network.conns_to_peer(a.id)
    assert conn.security.startswith(f"/{host_pair_options['security']}")
    assert conn.muxer.startswith(f"/{host_pair_options['muxers']}/")
    assert round_trip(a, b, "/echo/1.0.0", b"ping") == b"ping"


@pytest.mark.parametrize("host_pair_options", [{"services": []}])
def test_host_pair_services_replace_echo(host_pair):
    a, b = host_pair
    assert "/echo/1.0.0" not in a.get_protocols()


@pytest.mark.parametrize("host_pair_options", [{"services": [EchoService, PerfService]}])
def test_host_pair_makes_each_service_once_per_host(host_pair):
    a, b = host_pair
    for h in host_pair:
        assert {"/echo/1.0.0", PERF_ID} <= set(h.get_protocols())
    assert round_trip(b, a, "/echo/1.0.0", b"back") == b"back"  # a's echo serves b's stream


def test_host_pair_refuses_a_shared_service_instance(make_host):
    with pytest.raises(ValueError, match="one instance cannot serve two hosts"):
        connect_pair(make_host, "memory", services=[EchoService()])
    with pytest.raises(ValueError, match="transport"):
        connect_pair(make_host, "quic")


def test_make_host_closes_its_hosts(make_host):
    h = make_host(listen=[])
    assert not h.addrs()


def test_socketpair_is_two_connected_raw_conns(socketpair):
    ca, cb = socketpair
    assert isinstance(ca, SocketConn) and isinstance(cb, SocketConn)
    assert ca.is_initiator and not cb.is_initiator
    ca.write(b"abc")
    assert cb.read(10, timeout=T) == b"abc"
    cb.write(b"xyz")
    assert ca.read(10, timeout=T) == b"xyz"
    assert ca.socket.fileno() == ca.fileno()


def test_virtual_clock_fixture_is_fresh(virtual_clock):
    assert isinstance(virtual_clock, VirtualClock)
    assert virtual_clock.now() == 0 and virtual_clock.pending == 0
    fired = []
    virtual_clock.call_later(30, fired.append, True)
    virtual_clock.advance(30)
    assert fired == [True]


def test_leakcheck_passes_when_greenlets_end(leakcheck):
    done = gevent.event.Event()
    g = gevent.spawn(done.set)
    assert done.wait(T)
    g.join(T)


USER_TESTS = '''
    import gevent
    import gevent.socket
    import pytest


    def test_leaks_a_greenlet(leakcheck):
        gevent.spawn(gevent.sleep, 1000)
        gevent.sleep(0)


    def test_leaks_a_socket(leakcheck):
        global KEEP
        KEEP = gevent.socket.socket()


    HOSTS = []


    def test_pair_works(host_pair):
        a, b = host_pair
        HOSTS.extend(host_pair)
        s = b.new_stream(a.id, ["/echo/1.0.0"], timeout=10)
        try:
            s.write(b"hi")
            assert s.read(2, timeout=10) == b"hi"
        finally:
            s.close()


    def test_pair_was_closed():
        assert HOSTS and all(h.network.closed for h in HOSTS)


    def test_clock(virtual_clock):
        virtual_clock.advance(5)
        assert virtual_clock() == 5
'''


@pytest.mark.slow
def test_a_users_project_loads_the_plugin_from_conftest(pytester):
    """The documented set-up in a fresh project: pytest_plugins in conftest, leak checks bite."""
    pytester.makeconftest('pytest_plugins = ["geventp2p.testing.pytest_plugin"]\n')
    pytester.makeini("[pytest]\ngeventp2p_timeout = 30\n")
    pytester.makepyfile(test_user=textwrap.dedent(USER_TESTS))
    # The plugin is opt-in (no pytest11 entry point): the conftest line loads it.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=5, errors=2)  # the leakers pass, then error in teardown
    result.stdout.fnmatch_lines(["*leaked greenlets*", "*leaked sockets*"])
