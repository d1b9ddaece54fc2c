"""`geventp2p serve` as a subprocess, driven by `geventp2p ping / perf / stream` subprocesses."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

CLI = [sys.executable, "-m", "geventp2p.cli"]
TIMEOUT = 30  # generous per subprocess on a loaded 2-core box; each normally takes < 1 s


def run_cli(*args, input=None, timeout=TIMEOUT):
    return subprocess.run([*CLI, *args], input=input, capture_output=True, timeout=timeout)


def start_server(*args, env=None):
    """Start `geventp2p serve`; return (Popen, parsed first stdout line)."""
    proc = subprocess.Popen([*CLI, "serve", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        line = _readline(proc, TIMEOUT)
        info = json.loads(line)
    except BaseException:
        proc.kill()
        proc.communicate(timeout=TIMEOUT)
        raise
    return proc, info


def _readline(proc, timeout):
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        if not sel.select(timeout):
            raise AssertionError(f"serve printed nothing within {timeout} s")
    finally:
        sel.close()
    line = proc.stdout.readline()
    if not line:
        raise AssertionError(f"serve exited early: rc={proc.wait(timeout=5)} stderr={proc.stderr.read()!r}")
    return line


def stop_server(proc, sig=signal.SIGTERM):
    proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("serve did not exit after the signal")
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def server():
    proc, info = start_server()
    yield info
    if proc.poll() is None:
        rc, _out, err = stop_server(proc)
        assert rc == 0, err


def test_serve_first_line_is_json(server):
    pid = server["peer_id"]
    assert set(server) == {"peer_id", "addrs"}
    assert pid.startswith("12D3KooW")  # Ed25519 identity by default
    assert server["addrs"], "no listen address"
    for a in server["addrs"]:
        assert re.fullmatch(rf"/ip4/127\.0\.0\.1/(tcp/[1-9]\d*|udp/[1-9]\d*/quic-v1)/p2p/{pid}", a), a


def test_ping(server):
    r = run_cli("ping", server["addrs"][0], "--count", "3", "--interval", "0")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert len(lines) == 3
    for line in lines:
        m = re.fullmatch(r"(\d+\.\d{3}) ms", line)
        assert m, line
        assert 0 < float(m.group(1)) < 10_000
    assert b"3 pings" in r.stderr


def test_ping_json(server):
    r = run_cli("ping", server["addrs"][0], "--count", "3", "--interval", "0", "--json")
    assert r.returncode == 0, r.stderr
    (line,) = r.stdout.decode().splitlines()  # one object, no per-ping lines
    doc = json.loads(line)
    assert set(doc) == {"peer_id", "count", "rtts_ms", "min_ms", "avg_ms", "max_ms"}
    assert doc["peer_id"] == server["peer_id"] and doc["count"] == 3 and len(doc["rtts_ms"]) == 3
    assert 0 < doc["min_ms"] <= doc["avg_ms"] <= doc["max_ms"] < 10_000
    assert doc["min_ms"] == min(doc["rtts_ms"]) and doc["max_ms"] == max(doc["rtts_ms"])
    assert r.stderr == b""


def test_version():
    from geventp2p import __version__

    r = run_cli("--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == f"geventp2p {__version__}\n"


def test_serve_key_file_from_environment(tmp_path):
    """Without --key, serve uses $GEVENTP2P_KEY_FILE: created (0600) on the first run, reused after."""
    import stat

    key = tmp_path / "node.key"
    env = {**os.environ, "GEVENTP2P_KEY_FILE": str(key)}
    ids = []
    for _ in range(2):
        proc, info = start_server(env=env)
        rc, _out, err = stop_server(proc)
        assert rc == 0, err
        ids.append(info["peer_id"])
    assert ids[0] == ids[1]
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    r = run_cli("id", "--key", str(key))
    assert r.stdout.decode().strip() == ids[0]
    # --key wins over the environment
    other = tmp_path / "other.key"
    assert run_cli("keygen", "-o", str(other)).returncode == 0
    proc, info = start_server("--key", str(other), env=env)
    rc, _out, err = stop_server(proc)
    assert rc == 0, err
    assert info["peer_id"] == run_cli("id", "--key", str(other)).stdout.decode().strip() != ids[0]


def test_perf_json(server):
    up, down = 1_000_000, 3 << 20
    r = run_cli("perf", server["addrs"][0], "--upload", str(up), "--download", "3MiB", "--json")
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in r.stdout.decode().splitlines()]
    final = records[-1]
    assert final["type"] == "final"
    assert final["uploadBytes"] == up and final["downloadBytes"] == down
    assert final["timeSeconds"] > 0
    assert all(rec["type"] == "intermediary" for rec in records[:-1])
    assert sum(rec["uploadBytes"] for rec in records[:-1]) == up
    assert sum(rec["downloadBytes"] for rec in records[:-1]) == down


def test_perf_human(server):
    r = run_cli("perf", server["addrs"][0], "--upload", "1MiB", "--download", "0")
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert "MiB/s" in out and out.count("\n") >= 3


def test_stream_echo_half_close(server):
    payload = os.urandom(300_000) + b"\nend"
    r = run_cli("stream", server["addrs"][0], "--protocol", "/echo/1.0.0", input=payload)
    assert r.returncode == 0, r.stderr
    assert r.stdout == payload


def test_stream_empty_stdin(server):
    r = run_cli("stream", server["addrs"][0], "-p", "/echo/1.0.0", input=b"")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b""


def test_stream_unknown_protocol(server):
    r = run_cli("stream", server["addrs"][0], "-p", "/no/such/1.0.0", input=b"x")
    assert r.returncode == 1
    err = r.stderr.decode()
    assert err.startswith("geventp2p: error: ") and err.count("\n") == 1, err
    assert "/no/such/1.0.0" in err


def test_peer_id_option_with_bare_address(server):
    bare, _, pid = server["addrs"][0].rpartition("/p2p/")
    r = run_cli("ping", bare, "--peer-id", pid, "-c", "1")
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(rb"\d+\.\d{3} ms\n", r.stdout)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_exits_zero(sig):
    proc, info = start_server("--muxer", "mplex,yamux", "--security", "noise,plaintext")
    # a live connection at shutdown must not prevent a clean exit
    r = run_cli("ping", info["addrs"][0], "-c", "1", "--muxer", "mplex")
    assert r.returncode == 0, r.stderr
    t0 = time.monotonic()
    rc, out, err = stop_server(proc, sig)
    assert rc == 0, err
    assert out == b"" and err == b""
    assert time.monotonic() - t0 < 10


def test_serve_with_key_file_and_plaintext(tmp_path):
    key = tmp_path / "node.key"
    r = run_cli("keygen", "-o", str(key))
    assert r.returncode == 0, r.stderr
    pid = r.stdout.decode().strip()
    proc, info = start_server("--key", str(key), "--security", "plaintext", "--listen", "/ip4/127.0.0.1/tcp/0")
    try:
        assert info["peer_id"] == pid
        r = run_cli("stream", info["addrs"][0], "-p", "/echo/1.0.0", "--security", "plaintext", input=b"abc")
        assert r.returncode == 0, r.stderr
        assert r.stdout == b"abc"
        # our client insists on noise: no common security protocol
        r = run_cli("ping", info["addrs"][0], "-c", "1", "--security", "noise", "--timeout", "5")
        assert r.returncode == 1
        assert r.stderr.startswith(b"geventp2p: error: ") and r.stderr.count(b"\n") == 1
    finally:
        rc, _out, err = stop_server(proc)
    assert rc == 0, err


def test_serve_max_streams_limits_inbound_streams():
    """--max-streams N: the (N+1)th concurrent stream on one connection is refused
    (reset), the first N echo; --max-streams 0 is a usage error."""
    import gevent

    from geventp2p import new_host
    from geventp2p.exceptions import StreamError

    bad = run_cli("serve", "--max-streams", "0")
    assert bad.returncode == 2 and b"max-streams" in bad.stderr

    proc, info = start_server("--max-streams", "3", "--muxer", "yamux")
    # No services on the client: its own identify stream is inbound at the server too,
    # and while it is still open (a busy machine) it holds one of the three slots.
    host = new_host(muxers=["yamux"], services=[])
    try:
        with gevent.Timeout(TIMEOUT):
            host.connect(info["addrs"][0], timeout=TIMEOUT)
            pid = info["peer_id"]
            held = []
            for i in range(3):
                s = host.new_stream(pid, ["/echo/1.0.0"], timeout=TIMEOUT)
                s.write(b"x%d" % i)
                assert s.read_exactly(2, timeout=TIMEOUT) == b"x%d" % i
                held.append(s)
            with pytest.raises(StreamError):  # refused at open (no identify: negotiated eagerly)
                extra = host.new_stream(pid, ["/echo/1.0.0"], timeout=TIMEOUT)
                extra.write(b"y")
                extra.read_exactly(1, timeout=TIMEOUT)
            for s in held:  # the first three still work
                s.write(b"z")
                assert s.read_exactly(1, timeout=TIMEOUT) == b"z"
                s.close()
    finally:
        host.close()
        rc, _out, err = stop_server(proc)
        assert rc == 0, err
