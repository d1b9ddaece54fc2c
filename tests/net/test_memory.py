"""Memory transport: pipes, knobs, listeners."""

from __future__ import annotations

import time

import gevent
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multiaddr import Multiaddr

from geventp2p.exceptions import ConfigError, MultiaddrError, P2PTimeoutError, TransportError
from geventp2p.net import multistream
from geventp2p.net.rawconn import RawConn
from geventp2p.testing.memory import MemoryNetwork, MemoryTransport, PipeConfig, memory_pipe
from _scripts_transport.leakcheck import no_leaks  # noqa: F401  (autouse fixture)


def read_all(conn, n, timeout=2):
    out = b""
    with gevent.Timeout(timeout):
        while len(out) < n:
            chunk = conn.read(n - len(out))
            assert chunk, "unexpected EOF"
            out += chunk
    return out


def test_pipe_basic():
    a, b = memory_pipe()
    assert isinstance(a, RawConn) and a.is_initiator and not b.is_initiator
    a.write(b"hello")
    assert b.read(100, timeout=1) == b"hello"
    b.writev([b"x", b"y"])
    assert a.read(100, timeout=1) == b"xy"


def test_reads_coalesce_and_respect_n():
    a, b = memory_pipe()
    a.write(b"abc")
    a.write(b"def")
    assert b.read(4, timeout=1) == b"abcd"
    assert b.read(100, timeout=1) == b"ef"


def test_eof_after_data_and_close_write():
    a, b = memory_pipe()
    a.write(b"data")
    a.close_write()
    assert read_all(b, 4) == b"data"
    assert b.read(10, timeout=1) == b""
    b.write(b"reply")
    assert a.read(10, timeout=1) == b"reply"
    with pytest.raises(TransportError):
        a.write(b"more")


def test_close_wakes_own_reader_and_peer_sees_eof():
    a, b = memory_pipe()
    r_a = gevent.spawn(a.read, 10)
    r_b = gevent.spawn(b.read, 10)
    gevent.sleep(0)
    a.close()
    assert r_a.get(timeout=1) == b""
    assert r_b.get(timeout=1) == b""
    b.write(b"dropped")  # like TCP, no error on the first write after peer close
    a.close()


def test_read_timeout():
    a, b = memory_pipe()
    with pytest.raises(P2PTimeoutError):
        b.read(10, timeout=0.02)
    a.write(b"ok")
    assert b.read(10, timeout=1) == b"ok"


def test_unread():
    a, b = memory_pipe()
    a.write(b"xyz")
    first = b.read(10, timeout=1)
    b.unread(first[1:])
    assert b.read(10, timeout=1) == b"yz"


def test_chunk_size_one():
    a, b = memory_pipe(chunk_size=1)
    a.write(b"abcdef")
    pieces = [b.read(100, timeout=1) for _ in range(6)]
    assert pieces == [b"a", b"b", b"c", b"d", b"e", b"f"]


def test_latency():
    a, b = memory_pipe(latency=0.05)
    t0 = time.monotonic()
    a.write(b"x")
    assert b.read(10, timeout=1) == b"x"
    elapsed = time.monotonic() - t0
    assert 0.045 <= elapsed < 0.5
    # EOF travels with the same delay
    t0 = time.monotonic()
    a.close()
    assert b.read(10, timeout=1) == b""
    assert time.monotonic() - t0 >= 0.045


def test_latency_does_not_merge_undelivered_chunks():
    a, b = memory_pipe(latency=0.03)
    a.write(b"1")
    gevent.sleep(0.02)
    a.write(b"2")
    assert b.read(10, timeout=1) == b"1"
    assert b.read(10, timeout=1) == b"2"


def test_bandwidth():
    a, b = memory_pipe(bandwidth=100_000)  # 100 kB/s
    t0 = time.monotonic()
    a.write(b"z" * 10_000)  # ~0.1 s on the wire
    read_all(b, 10_000)
    elapsed = time.monotonic() - t0
    assert 0.09 <= elapsed < 1.0


def test_backpressure_blocks_writer():
    a, b = memory_pipe(max_buffer=100)
    a.write(b"x" * 150)  # accepted: buffer was empty
    w = gevent.spawn(a.write, b"y")
    gevent.sleep(0.02)
    assert not w.ready()
    assert read_all(b, 150) == b"x" * 150
    w.get(timeout=1)
    assert b.read(10, timeout=1) == b"y"


def test_abort_error_mode():
    a, b = memory_pipe()
    r = gevent.spawn(b.read, 10)
    own = gevent.spawn(a.read, 10)
    gevent.sleep(0)
    a.abort()
    with pytest.raises(TransportError):
        r.get(timeout=1)
    assert own.get(timeout=1) == b""  # our own blocked reader just sees EOF
    with pytest.raises(TransportError):
        b.write(b"x")
    with pytest.raises(TransportError):
        b.read(10, timeout=1)
    assert a.closed
    with pytest.raises(TransportError):
        a.write(b"x")


def test_abort_drops_in_flight_data():
    a, b = memory_pipe(latency=0.05)
    a.write(b"in flight")
    a.abort()
    with pytest.raises(TransportError):
        b.read(10, timeout=1)


def test_abort_eof_mode():
    a, b = memory_pipe(abort_error=False)
    a.write(b"lost")
    a.break_()
    assert b.read(10, timeout=1) == b""
    b.write(b"ignored")  # no error in EOF mode
    a2, b2 = memory_pipe()
    a2.abort(error=False)
    assert b2.read(10, timeout=1) == b""


def test_configure_at_runtime():
    a, b = memory_pipe()
    a.configure(chunk_size=2)
    a.write(b"abcd")
    assert b.read(10, timeout=1) == b"ab"
    a.configure(chunk_size=None, latency=0.0)
    assert b.read(10, timeout=1) == b"cd"


def test_pipe_config_validation():
    with pytest.raises(ConfigError):
        PipeConfig(latency=-1)
    with pytest.raises(ConfigError):
        PipeConfig(bandwidth=0)
    with pytest.raises(ConfigError):
        PipeConfig(chunk_size=0)
    with pytest.raises(ConfigError):
        PipeConfig(max_buffer=0)
    with pytest.raises(ConfigError):
        PipeConfig(abort_error="yes")


# ---------------------------------------------------------------- transport / listener


def echo(conn):
    while True:
        data = conn.read(65536, timeout=5)
        if not data:
            break
        conn.write(data)
    conn.close()


@pytest.fixture
def net():
    return MemoryNetwork()


def test_listen_dial_echo(net):
    tr = MemoryTransport(net)
    lst = tr.listen("/memory/0", echo)
    try:
        assert lst.multiaddr.value_for_protocol("memory") != "0"
        conn = tr.dial(lst.multiaddr)
        assert conn.remote_addr == lst.multiaddr
        assert isinstance(conn.local_addr, Multiaddr)
        conn.write(b"ping")
        assert read_all(conn, 4) == b"ping"
        conn.close()
    finally:
        lst.close(stop_handlers=True)


def test_explicit_id_and_in_use(net):
    tr = MemoryTransport(net)
    lst = tr.listen("/memory/1234", echo)
    try:
        assert str(lst.multiaddr) == "/memory/1234"
        with pytest.raises(TransportError):
            tr.listen("/memory/1234", echo)
    finally:
        lst.close()
    lst2 = tr.listen("/memory/1234", echo)  # free again
    lst2.close()


def test_named_listener(net):
    tr = MemoryTransport(net)
    lst = tr.listen("alice", echo)
    try:
        conn = tr.dial("alice")
        conn.write(b"hi")
        assert read_all(conn, 2) == b"hi"
        conn.close()
        assert tr.dial(lst.multiaddr) is not None
        with pytest.raises(TransportError):
            tr.listen("alice", echo)
    finally:
        lst.close(stop_handlers=True)
    with pytest.raises(TransportError):
        tr.dial("alice")


def test_dial_refused_and_bad_addrs(net):
    tr = MemoryTransport(net)
    with pytest.raises(TransportError):
        tr.dial("/memory/99")
    with pytest.raises(MultiaddrError):
        tr.dial("/ip4/127.0.0.1/tcp/1")
    assert not tr.can_dial("/ip4/127.0.0.1/tcp/1")
    assert tr.can_dial("/memory/5")
    assert tr.can_dial("bob")


def test_networks_are_isolated():
    n1, n2 = MemoryNetwork(), MemoryNetwork()
    lst = MemoryTransport(n1).listen("/memory/7", echo)
    try:
        with pytest.raises(TransportError):
            MemoryTransport(n2).dial("/memory/7")
    finally:
        lst.close()


def test_transport_knobs_apply_to_dialed_conns(net):
    server = MemoryTransport(net)
    got = gevent.event.AsyncResult()

    def handler(conn):
        got.set([conn.read(100, timeout=1) for _ in range(3)])
        conn.close()

    lst = server.listen("/memory/0", handler)
    try:
        client = MemoryTransport(net, chunk_size=1)
        conn = client.dial(lst.multiaddr)
        conn.write(b"abc")
        assert got.get(timeout=1) == [b"a", b"b", b"c"]
        conn.close()
    finally:
        lst.close(stop_handlers=True)


def test_handler_exception_closes_conn(net):
    tr = MemoryTransport(net)

    def bad(conn):
        raise RuntimeError("boom")

    lst = tr.listen("/memory/0", bad)
    try:
        conn = tr.dial(lst.multiaddr)
        assert conn.read(10, timeout=1) == b""
    finally:
        lst.close(stop_handlers=True)


def test_close_listener_stops_handlers(net):
    tr = MemoryTransport(net)
    started = gevent.event.Event()

    def handler(conn):
        started.set()
        conn.read(10)

    lst = tr.listen("/memory/0", handler)
    conn = tr.dial(lst.multiaddr)
    assert started.wait(1)
    lst.close(stop_handlers=True)
    assert len(lst.handlers) == 0
    assert conn.read(10, timeout=1) == b""
    with pytest.raises(TransportError):
        tr.dial(lst.multiaddr)


@pytest.mark.parametrize("knobs", [{}, {"chunk_size": 1}, {"latency": 0.002}])
def test_multistream_over_memory(net, knobs):
    tr = MemoryTransport(net, **knobs)
    res = gevent.event.AsyncResult()

    def handler(conn):
        try:
            res.set((multistream.handle(conn, ["/b"], timeout=2), read_all(conn, 4)))
        except Exception as exc:
            res.set_exception(exc)

    lst = tr.listen("/memory/0", handler)
    try:
        conn = tr.dial(lst.multiaddr)
        lazy = multistream.select_lazy(conn, "/b")
        lazy.write(b"DATA")
        assert res.get(timeout=3) == ("/b", b"DATA")
    finally:
        lst.close(stop_handlers=True)


def test_bulk_transfer_with_small_buffer():
    a, b = memory_pipe(max_buffer=4096)
    payload = bytes(range(256)) * 2000
    w = gevent.spawn(a.write, payload)
    got = read_all(b, len(payload), timeout=5)
    w.get(timeout=1)
    assert got == payload


@settings(max_examples=60, deadline=None)
@given(writes=st.lists(st.binary(min_size=0, max_size=300), max_size=12),
       chunk=st.one_of(st.none(), st.integers(1, 50)),
       read_sizes=st.lists(st.integers(1, 400), min_size=1, max_size=5),
       max_buffer=st.integers(1, 500))
def test_pipe_preserves_bytes_any_knobs(writes, chunk, read_sizes, max_buffer):
    a, b = memory_pipe(chunk_size=chunk, max_buffer=max_buffer)

    def writer():
        for w in writes:
            a.write(w)
        a.close_write()

    g = gevent.spawn(writer)
    out = bytearray()
    i = 0
    with gevent.Timeout(5):
        while True:
            n = read_sizes[i % len(read_sizes)]
            i += 1
            data = b.read(n)
            if not data:
                break
            assert len(data) <= n and (chunk is None or len(data) <= chunk)
            out += data
    g.get(timeout=1)
    assert bytes(out) == b"".join(writes)
    a.close()
    b.close()
