"""`geventp2p stream` plumbing: pipe_stream over real pipes in-process, remote close, SIGINT handling."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time

import gevent
import pytest
from gevent.os import make_nonblocking, nb_read, nb_write

import geventp2p
from geventp2p import cli
from geventp2p._speedups import varint
from geventp2p.testing.leakcheck import live_greenlets

CLI = [sys.executable, "-m", "geventp2p.cli"]


@pytest.fixture
def host_pair():
    server = geventp2p.new_host(services=["identify", "ping", "echo"])
    client = geventp2p.new_host(listen=[])
    try:
        client.connect(server.p2p_addrs()[0], timeout=10)
        yield client, server
    finally:
        client.close()
        server.close()


def _nonblock(fd):
    return bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK)


def test_pipe_stream_keeps_the_hub_running(host_pair):
    """Piping through real pipes: the hub keeps ticking while stdin is idle; bytes arrive intact."""
    client, server = host_pair
    before = {id(g) for g in live_greenlets()}
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    make_nonblocking(in_w)
    make_nonblocking(out_r)
    ticks = [0]

    def ticker():
        while True:
            ticks[0] += 1
            gevent.sleep(0.005)

    payload = os.urandom(600_000)  # far more than a pipe buffer: both directions must flow concurrently
    received = bytearray()

    def feed():
        gevent.sleep(0.2)  # stdin idle for a while first
        view = memoryview(payload)
        while view:
            view = view[nb_write(in_w, view[:50_000]):]
        os.close(in_w)

    def drain():
        while True:
            chunk = nb_read(out_r, 65536)
            if not chunk:
                return
            received.extend(chunk)

    try:
        with gevent.Timeout(20):
            tick = gevent.spawn(ticker)
            stream = client.new_stream(server.id, ["/echo/1.0.0"], timeout=10)
            pipe = gevent.spawn(cli.pipe_stream, stream, in_r, out_w)
            feeder = gevent.spawn(feed)
            drainer = gevent.spawn(drain)
            gevent.sleep(0.1)
            assert _nonblock(in_r) and _nonblock(out_w)  # switched for the duration
            assert ticks[0] >= 5, "the hub was blocked while waiting on stdin"
            pipe.get()
            assert not _nonblock(in_r) and not _nonblock(out_w)  # restored
            os.close(out_w)
            drainer.get()
            feeder.get()
            tick.kill()
    finally:
        for fd in (in_r, out_r):
            os.close(fd)
    assert bytes(received) == payload
    # The hosts' own greenlets come and go (a stream's accepting greenlet hands the
    # accept loop to a fresh one), so check for leftovers once both hosts are closed.
    client.close()
    server.close()
    gevent.sleep(0.05)
    assert not [g for g in live_greenlets() if id(g) not in before]


def test_pipe_stream_restores_blocking_mode(host_pair):
    client, server = host_pair
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    try:
        os.close(in_w)  # immediate EOF on "stdin"
        with gevent.Timeout(10):
            stream = client.new_stream(server.id, ["/echo/1.0.0"], timeout=10)
            cli.pipe_stream(stream, in_r, out_w)
        assert not _nonblock(in_r) and not _nonblock(out_w)
        os.close(out_w)
        assert os.read(out_r, 10) == b""
    finally:
        os.close(in_r)
        os.close(out_r)


def test_pipe_stream_remote_reset_raises(host_pair):
    client, server = host_pair
    from geventp2p.exceptions import StreamResetError

    def resetter(stream):
        stream.read(1, timeout=5)
        stream.reset()

    server.set_stream_handler("/reset/1.0.0", resetter)
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    try:
        os.write(in_w, b"x")  # stdin stays open: the reset alone must end the pipe
        with gevent.Timeout(10):
            stream = client.new_stream(server.id, ["/reset/1.0.0"], timeout=10)
            with pytest.raises(StreamResetError):
                cli.pipe_stream(stream, in_r, out_w)
        assert not _nonblock(in_r)
    finally:
        for fd in (in_r, in_w, out_r, out_w):
            os.close(fd)


@pytest.fixture(scope="module")
def served():
    proc = subprocess.Popen([*CLI, "serve"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        info = json.loads(proc.stdout.readline())
        yield info
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0


def test_stream_exits_when_remote_closes_with_stdin_open(served):
    """identify: the remote writes one message and closes; our stdin never reaches EOF."""
    p = subprocess.Popen([*CLI, "stream", served["addrs"][0], "-p", "/ipfs/id/1.0.0"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = _wait_keep_stdin(p, 20)
    finally:
        p.stdin.close()
    assert p.returncode == 0, err
    decoded = varint.decode_lp(out)
    assert decoded is not None and decoded[1] == len(out), "expected exactly one length-prefixed message"
    from geventp2p.pb import identify_pb2

    msg = identify_pb2.Identify.FromString(decoded[0])
    assert "/echo/1.0.0" in msg.protocols and "/perf/1.0.0" in msg.protocols


def _wait_keep_stdin(p, timeout):
    """Collect stdout/stderr until exit without closing stdin."""
    deadline = time.monotonic() + timeout
    while p.poll() is None:
        if time.monotonic() > deadline:
            p.kill()
            raise AssertionError("stream did not exit after the remote closed")
        time.sleep(0.02)
    return p.stdout.read(), p.stderr.read()


def test_ping_until_interrupted(served):
    p = subprocess.Popen([*CLI, "ping", served["addrs"][0], "--count", "0", "--interval", "0.05"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        first = p.stdout.readline()
        assert first.endswith(b" ms\n"), first
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err
    lines = err.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("--- ") and " pings, rtt min/avg/max = " in lines[0], err


def test_sigint_during_stream_exits_130_one_line(served):
    p = subprocess.Popen([*CLI, "stream", served["addrs"][0], "-p", "/echo/1.0.0"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        p.stdin.write(b"hello\n")
        p.stdin.flush()
        assert p.stdout.readline() == b"hello\n"  # connected and piping: the SIGINT watcher is live
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 130, err
    assert err == b"geventp2p: interrupted\n" and out == b""


def test_in_process_main_gives_sigint_back_to_python():
    """After main() returns, SIGINT raises KeyboardInterrupt again (libev leaves SIG_DFL otherwise)."""
    code = (
        "import os, signal, time\n"
        "from geventp2p import cli\n"
        "assert cli.main(['ping', '/ip4/127.0.0.1/tcp/1']) == 1\n"  # error path, watcher installed + removed
        "try:\n"
        "    os.kill(os.getpid(), signal.SIGINT); time.sleep(2)\n"
        "except KeyboardInterrupt:\n"
        "    print('KI')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30)
    assert r.returncode == 0 and r.stdout == b"KI\n", (r.returncode, r.stderr)
