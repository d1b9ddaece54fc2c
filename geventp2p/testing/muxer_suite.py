"""Conformance tests every MuxedConn (yamux, mplex, over any transport) must pass.

Use from a pytest module by subclassing :class:`MuxerConformance` and giving it a
factory that returns a connected ``(client_conn, server_conn)`` pair of MuxedConns
(the client is the connection initiator)::

    from geventp2p.testing.muxer_suite import MuxerConformance, socketpair_factory
    from geventp2p.net.yamux import YamuxMuxer

    class TestYamuxConformance(MuxerConformance):
        make_pair = staticmethod(socketpair_factory(YamuxMuxer()))

Class attributes tune muxer differences:

``supports_reset_codes``
    The wire carries the reset error code (yamux: yes; mplex: no).
``has_flow_control``
    A sender to a stalled reader blocks (yamux) instead of having its stream
    reset when the receiver's buffer cap is exceeded (mplex).
``max_unread_per_stream``
    Bound on bytes a stalled receiving stream may hold (yamux: the 256 KiB
    initial window, never grown without reads; mplex: its buffer cap).

Each check is also a plain function ``check_<name>(make_pair)`` (see ``CHECKS``)
so it can run outside pytest.  Every check runs under a ``gevent.Timeout`` and
verifies that no greenlet or file descriptor outlives the pair once both
connections are closed.
"""

from __future__ import annotations

import gc
import os
import socket
import time

import gevent
import gevent.hub
import gevent.pool
import greenlet

from geventp2p.exceptions import (
    ConnectionClosedError,
    P2PTimeoutError,
    StreamClosedError,
    StreamResetError,
)

__all__ = ["MuxerConformance", "socketpair_factory", "CHECKS", "LeakChecker", "run_check"]

CHECK_TIMEOUT = 20.0


# --------------------------------------------------------------------------- helpers


def socketpair_factory(muxer, scope_factory=None):
    """Return ``make_pair()`` that runs ``muxer`` over a loopback socketpair (SocketConn)."""

    def make_pair():
        from geventp2p.net.rawconn import SocketConn

        a, b = socket.socketpair()
        ca = SocketConn(a, is_initiator=True)
        cb = SocketConn(b, is_initiator=False)
        if scope_factory is None:
            return muxer.create(ca, True), muxer.create(cb, False)
        return muxer.create(ca, True, scope_factory()), muxer.create(cb, False, scope_factory())

    return make_pair


# process-lifetime helpers gevent starts on demand (resolver thread pool): not leaks
_PROCESS_GREENLETS = frozenset({"ThreadPoolWorker", "_WorkerGreenlet"})


def _live_greenlets():
    cur = greenlet.getcurrent()
    return {
        id(o)
        for o in gc.get_objects()
        if isinstance(o, greenlet.greenlet) and not o.dead and o is not cur and o.parent is not None
        and not isinstance(o, gevent.hub.Hub)
        and type(o).__name__ not in _PROCESS_GREENLETS
    }


def _open_fds():
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # not Linux
        return None


class LeakChecker:
    """Snapshot of live greenlets and open fds; ``check()`` waits briefly for them to settle."""

    def __init__(self) -> None:
        gevent.get_hub()  # the hub (and its fds) may be created lazily by the first check
        gevent.sleep(0)
        gc.collect()
        self.greenlets = _live_greenlets()
        self.fds = _open_fds()

    def check(self, timeout: float = 2.0) -> None:
        end = time.monotonic() + timeout
        while True:
            gevent.sleep(0.01)
            gc.collect()
            extra = _live_greenlets() - self.greenlets
            fds = _open_fds()
            fd_ok = self.fds is None or fds is None or fds <= self.fds
            if not extra and fd_ok:
                return
            if time.monotonic() > end:
                leaked = [o for o in gc.get_objects() if id(o) in extra]
                raise AssertionError(f"leaked greenlets: {leaked!r}; fds {self.fds} -> {fds}")


def run_check(check, make_pair, **opts) -> None:
    """Run one check with a timeout and a leak check around it."""
    leaks = LeakChecker()
    client, server = make_pair()
    try:
        with gevent.Timeout(opts.pop("timeout", CHECK_TIMEOUT)):
            check(client, server, **opts)
    finally:
        client.close()
        server.close()
        assert client.wait_closed(timeout=5) and server.wait_closed(timeout=5)
    leaks.check()


def _spawn_acceptor(conn, handler, group):
    """Accept streams on ``conn`` and run ``handler(stream)`` in ``group`` until the conn closes."""

    def loop():
        while True:
            try:
                stream = conn.accept_stream()
            except ConnectionClosedError:
                return
            group.spawn(handler, stream)

    return group.spawn(loop)


def _outcome(fn, *args):
    """Spawn ``fn(*args)``; the greenlet's value is ``("ok", result)`` or ``("error", exc)``
    (expected failures are not printed by the hub)."""

    def run():
        try:
            return "ok", fn(*args)
        except Exception as exc:
            return "error", exc

    return gevent.spawn(run)


def _expect_error(g, exc_type, timeout=5):
    kind, value = g.get(timeout=timeout)
    if kind != "error" or not isinstance(value, exc_type):
        raise AssertionError(f"expected {exc_type.__name__}, got {kind} {value!r}")
    return value


def _echo(stream):
    try:
        while True:
            data = stream.read()
            if not data:
                break
            stream.write(data)
        stream.close_write()
    except (StreamResetError, StreamClosedError):
        pass


def _read_all(stream, timeout=None):
    parts = []
    while True:
        data = stream.read(timeout=timeout)
        if not data:
            return b"".join(parts)
        parts.append(data)


# --------------------------------------------------------------------------- checks


def check_echo(client, server, **_):
    group = gevent.pool.Group()
    _spawn_acceptor(server, _echo, group)
    try:
        s = client.open_stream()
        assert s.direction == "outbound"
        s.write(b"hello")
        assert s.read_exactly(5) == b"hello"
        s.write(bytearray(b" world"))
        s.write(memoryview(b"!!"))
        assert s.read_exactly(8) == b" world!!"
        s.close_write()
        assert s.read() == b""
        s.close()
    finally:
        group.kill()


def check_inbound_stream_attributes(client, server, **_):
    s = client.open_stream()
    s.write(b"x")
    r = server.accept_stream(timeout=5)
    assert r.direction == "inbound"
    assert r.id == s.id
    assert r.conn is server and s.conn is client
    assert r.read(timeout=5) == b"x"
    r.protocol = "/test/1"
    assert r.protocol == "/test/1"
    s.close()
    r.close()


def check_server_opens_streams(client, server, **_):
    group = gevent.pool.Group()
    _spawn_acceptor(client, _echo, group)
    try:
        s = server.open_stream()
        s.write(b"from server")
        s.close_write()
        assert _read_all(s) == b"from server"
    finally:
        group.kill()


def check_half_close_both_ways(client, server, **_):
    s = client.open_stream()
    s.write(b"request")
    s.close_write()
    r = server.accept_stream(timeout=5)
    assert _read_all(r) == b"request"  # buffered data, then EOF
    assert r.read() == b""  # EOF is sticky
    r.write(b"response part 1, ")  # our side is still open after the remote FIN
    r.write(b"part 2")
    r.close_write()
    assert _read_all(s) == b"response part 1, part 2"
    # both directions are done: the stream leaves both tables
    deadline = time.monotonic() + 5
    while (client.num_streams or server.num_streams) and time.monotonic() < deadline:
        gevent.sleep(0.01)
    assert client.num_streams == 0 and server.num_streams == 0, (client.num_streams, server.num_streams)


def check_write_after_close_write(client, server, **_):
    s = client.open_stream()
    s.write(b"a")
    s.close_write()
    try:
        s.write(b"b")
    except StreamClosedError:
        pass
    else:
        raise AssertionError("write after close_write did not raise StreamClosedError")
    r = server.accept_stream(timeout=5)
    assert _read_all(r) == b"a"


def check_read_after_close_read(client, server, **_):
    s = client.open_stream()
    s.write(b"x")
    r = server.accept_stream(timeout=5)
    r.close_read()
    try:
        r.read()
    except StreamClosedError:
        pass
    else:
        raise AssertionError("read after close_read did not raise StreamClosedError")
    # the remote can keep writing without error; our write side is still open
    s.write(b"y" * 1000)
    r.write(b"still open")
    assert s.read_exactly(10, timeout=5) == b"still open"


def _check_reset(opener, accepter, reset_opener_side, codes):
    s = opener.open_stream()
    s.write(b"hi")
    r = accepter.accept_stream(timeout=5)
    assert r.read(timeout=5) == b"hi"
    victim, other = (s, r) if reset_opener_side else (r, s)
    blocked = _outcome(other.read)
    gevent.sleep(0.01)
    victim.reset(0x1004)
    exc = _expect_error(blocked, StreamResetError)
    assert exc.remote
    if codes:
        assert exc.error_code == 0x1004, exc.error_code
    # the resetting side raises a local reset error
    for call in (victim.read, lambda: victim.write(b"x")):
        try:
            call()
        except StreamResetError as exc:
            assert not exc.remote
        else:
            raise AssertionError("reset stream still usable")
    # the other side cannot write either (the reset may race the first write)
    deadline = time.monotonic() + 5
    while True:
        try:
            other.write(b"after reset")
        except StreamResetError:
            break
        assert time.monotonic() < deadline
        gevent.sleep(0.01)
    victim.close()  # never raises
    other.close()


def check_reset_from_opener(client, server, supports_reset_codes=True, **_):
    _check_reset(client, server, True, supports_reset_codes)


def check_reset_from_accepter(client, server, supports_reset_codes=True, **_):
    _check_reset(client, server, False, supports_reset_codes)


def check_reset_by_server_opened_stream(client, server, supports_reset_codes=True, **_):
    _check_reset(server, client, True, supports_reset_codes)


def check_read_timeout_and_deadline(client, server, **_):
    s = client.open_stream()
    s.write(b"x")
    r = server.accept_stream(timeout=5)
    assert r.read() == b"x"
    t0 = time.monotonic()
    try:
        r.read(timeout=0.05)
    except P2PTimeoutError:
        pass
    else:
        raise AssertionError("read did not time out")
    assert time.monotonic() - t0 < 2
    r.set_read_deadline(time.monotonic() + 0.05)
    try:
        r.read()
    except P2PTimeoutError:
        pass
    else:
        raise AssertionError("read deadline not honoured")
    r.set_read_deadline(None)
    s.write(b"after")
    assert r.read(timeout=5) == b"after"  # stream still usable after a timeout


def check_many_streams(client, server, streams=1000, messages=10, **_):
    group = gevent.pool.Group()
    _spawn_acceptor(server, _echo, group)
    errors = []
    # Every stream starts at once, so each step waits behind all the others: the
    # deadline grows with their number (3,000 QUIC streams take ~8 s on an idle 2-core
    # machine, in aioquic's Python, and more than 10 s beside other work).
    step = 10 + streams / 100

    def one(i):
        try:
            s = client.open_stream(timeout=step)
            for j in range(messages):
                msg = b"%d:%d|" % (i, j)
                s.write(msg)
                assert s.read_exactly(len(msg), timeout=step) == msg
            s.close_write()
            assert s.read(timeout=step) == b""
        except Exception as exc:  # collected and re-raised below
            errors.append(exc)

    try:
        workers = [gevent.spawn(one, i) for i in range(streams)]
        gevent.joinall(workers)
        if errors:
            raise errors[0]
    finally:
        group.kill()


def check_concurrent_streams(client, server, streams=10_000, **_):
    """Many streams opened at once, each a one-shot echo."""
    check_many_streams(client, server, streams=streams, messages=1)


def check_big_transfer_both_ways(client, server, size=4 * 1024 * 1024, **_):
    """Both sides write a large message before reading (the classic deadlock)."""
    payload = os.urandom(size)
    s = client.open_stream()
    s.write(b"!")
    r = server.accept_stream(timeout=5)
    assert r.read_exactly(1) == b"!"

    def send(stream):
        stream.write(payload)
        stream.close_write()

    ws = [gevent.spawn(send, s), gevent.spawn(send, r)]
    got_r = gevent.spawn(_read_all, r)
    got_s = gevent.spawn(_read_all, s)
    gevent.joinall(ws + [got_r, got_s], raise_error=True)
    assert got_r.value == payload
    assert got_s.value == payload


def check_slow_reader_does_not_stall_others(
    client, server, has_flow_control=True, max_unread_per_stream=256 * 1024, **_
):
    group = gevent.pool.Group()
    stalled = []

    def handler(stream):
        first = stream.read(1)
        if first == b"S":
            stalled.append(stream)  # never read again
            return
        stream.unread(first)
        _echo(stream)

    _spawn_acceptor(server, handler, group)
    try:
        slow = client.open_stream()
        slow.write(b"S")
        sent = [0]
        outcome = []

        def flood():
            chunk = b"z" * 65536
            try:
                while sent[0] < 64 * 1024 * 1024:
                    slow.write(chunk)
                    sent[0] += len(chunk)
                outcome.append("done")
            except StreamResetError:
                outcome.append("reset")

        flooder = gevent.spawn(flood)
        gevent.sleep(0.2)
        # other streams still work while the slow one is stalled
        for i in range(20):
            s = client.open_stream(timeout=5)
            msg = b"fast %d" % i
            s.write(msg)
            s.close_write()
            assert _read_all(s, timeout=5) == msg
        gevent.sleep(0.1)
        assert stalled, "server never saw the stalled stream"
        assert stalled[0].buffered <= max_unread_per_stream, stalled[0].buffered
        if has_flow_control:
            assert not flooder.ready(), outcome  # the sender is blocked on the window
            assert sent[0] <= max_unread_per_stream + 2 * 65536, sent[0]
        flooder.kill()
    finally:
        group.kill()


def check_close_codes_and_session_errors(client, server, **_):
    """The shared shell: ``close(code)`` on every muxer (GoAway where the protocol has
    one), ``error`` None after a clean local close and a typed ``ConnectionClosedError``
    on the side that did not close, a stream that got data + FIN before the end still
    readable, ``wait_closed``."""
    s = client.open_stream()
    s.write(b"last words")
    s.close_write()
    r = server.accept_stream(timeout=5)
    assert _read_all(r, timeout=5) == b"last words"
    keep = server.open_stream()
    keep.write(b"bye")
    keep.close_write()
    t = client.accept_stream(timeout=5)
    _deadline = time.monotonic() + 5
    while not t.read_eof and time.monotonic() < _deadline:
        gevent.sleep(0.005)
    assert t.read_eof
    client.close(0x1000)
    assert client.closed and client.wait_closed(timeout=5)
    assert client.error is not None and isinstance(client.error, ConnectionClosedError)
    assert server.wait_closed(timeout=5) and server.closed
    assert isinstance(server.error, ConnectionClosedError) and server.error.remote
    assert _read_all(t, timeout=5) == b"bye"  # data + FIN arrived before the end
    try:
        server.accept_stream(timeout=1)
    except ConnectionClosedError:
        pass
    else:
        raise AssertionError("accept_stream on a closed session did not raise")
    client.close()  # idempotent


def check_close_resets_open_streams(client, server, **_):
    s = client.open_stream()
    s.write(b"x")
    r = server.accept_stream(timeout=5)
    assert r.read() == b"x"
    blocked_remote = _outcome(r.read)
    blocked_local = _outcome(s.read)
    accepting = _outcome(server.accept_stream)
    gevent.sleep(0.01)
    client.close()
    assert client.closed
    for g in (blocked_remote, blocked_local):
        _expect_error(g, StreamResetError)  # ConnectionClosedError is a StreamResetError
    _expect_error(accepting, ConnectionClosedError)
    assert server.wait_closed(timeout=5)
    assert server.closed
    for conn in (client, server):
        try:
            conn.open_stream()
        except ConnectionClosedError:
            pass
        else:
            raise AssertionError("open_stream on a closed session did not raise")
    try:
        s.write(b"y")
    except StreamResetError:
        pass
    else:
        raise AssertionError("write on a closed session did not raise")


def check_stream_left_open(client, server, **_):
    """Streams nobody closes must not keep the session or its greenlets alive."""
    for _ in range(10):
        s = client.open_stream()
        s.write(b"open")
    for _ in range(10):
        server.accept_stream(timeout=5)
    # run_check closes both sessions and checks for leaks


def check_accept_timeout(client, server, **_):
    try:
        server.accept_stream(timeout=0.05)
    except P2PTimeoutError:
        pass
    else:
        raise AssertionError("accept_stream did not time out")


CHECKS = {
    name[len("check_"):]: fn
    for name, fn in sorted(globals().items())
    if name.startswith("check_") and callable(fn)
}


# --------------------------------------------------------------------------- pytest mix-in


class MuxerConformance:
    """Mix-in with one pytest test per check; set ``make_pair`` (a staticmethod)."""

    make_pair = None
    supports_reset_codes = True
    has_flow_control = True
    max_unread_per_stream = 256 * 1024

    def _run(self, check, **opts):
        run_check(check, type(self).make_pair, **opts)

    def test_echo(self):
        self._run(check_echo)

    def test_inbound_stream_attributes(self):
        self._run(check_inbound_stream_attributes)

    def test_server_opens_streams(self):
        self._run(check_server_opens_streams)

    def test_half_close_both_ways(self):
        self._run(check_half_close_both_ways)

    def test_write_after_close_write(self):
        self._run(check_write_after_close_write)

    def test_read_after_close_read(self):
        self._run(check_read_after_close_read)

    def test_reset_from_opener(self):
        self._run(check_reset_from_opener, supports_reset_codes=self.supports_reset_codes)

    def test_reset_from_accepter(self):
        self._run(check_reset_from_accepter, supports_reset_codes=self.supports_reset_codes)

    def test_reset_by_server_opened_stream(self):
        self._run(check_reset_by_server_opened_stream, supports_reset_codes=self.supports_reset_codes)

    def test_read_timeout_and_deadline(self):
        self._run(check_read_timeout_and_deadline)

    def test_accept_timeout(self):
        self._run(check_accept_timeout)

    def test_many_streams(self):
        self._run(check_many_streams)

    def test_big_transfer_both_ways(self):
        self._run(check_big_transfer_both_ways)

    def test_slow_reader_does_not_stall_others(self):
        self._run(
            check_slow_reader_does_not_stall_others,
            has_flow_control=self.has_flow_control,
            max_unread_per_stream=self.max_unread_per_stream,
        )

    def test_close_resets_open_streams(self):
        self._run(check_close_resets_open_streams)

    def test_close_codes_and_session_errors(self):
        self._run(check_close_codes_and_session_errors)

    def test_stream_left_open(self):
        self._run(check_stream_left_open)

    def test_concurrent_streams_10k(self):
        """Heavy: mark it slow in your module if needed (``pytest.mark.slow``)."""
        self._run(check_concurrent_streams, timeout=60)
