"""`geventp2p limits --show` and `geventp2p serve --limits FILE --debug-rcmgr` (subprocesses)."""

from __future__ import annotations

import json
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import gevent
import pytest

import geventp2p
from geventp2p.exceptions import StreamResetError
from geventp2p.host.rcmgr import LimitConfig, default_limits

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "geventp2p.cli"]
TIMEOUT = 30
ECHO = "/echo/1.0.0"
COLUMNS = ["Scope", "Streams", "StreamsIn", "StreamsOut", "Conns", "ConnsIn", "ConnsOut", "FD", "Memory(bytes)"]
SERVE = [*CLI, "serve"]


def run_cli(*args):
    return subprocess.run([*CLI, *args], capture_output=True, timeout=TIMEOUT, cwd=ROOT)


def table(stdout: bytes) -> dict[str, list[str]]:
    lines = stdout.decode().splitlines()
    assert lines[0].split() == COLUMNS
    return {line.split()[0]: line.split()[1:] for line in lines[1:]}


def test_limits_show_prints_one_row_per_scope():
    p = run_cli("limits", "--show")
    assert p.returncode == 0, p.stderr
    rows = table(p.stdout)
    names = list(rows)
    for kind in ("System", "Transient", "AllowlistedSystem", "AllowlistedTransient", "ServiceDefault",
                 "ServicePeerDefault", "ProtocolDefault", "ProtocolPeerDefault", "PeerDefault", "Conn", "Stream"):
        assert kind in names
    assert names[0] == "System" and names[-2:] == ["Conn", "Stream"]
    # go's service overrides are there
    assert "Service:libp2p.identify" in names and "ProtocolPeer:/ipfs/ping/1.0.0" in names
    assert rows["ProtocolPeer:/ipfs/ping/1.0.0"][:3] == ["4", "2", "3"]
    assert rows["Conn"] == ["0", "0", "0", "1", "1", "1", "1", str(32 << 20)]
    # scaled to this machine exactly as the library scales it
    system = default_limits().auto_scale().system
    assert rows["System"][0] == str(system.streams) and rows["System"][7] == str(system.memory)


def test_limits_show_applies_a_limits_file_and_json_round_trips(tmp_path):
    f = tmp_path / "limits.json"
    f.write_text(json.dumps({"System": {"Conns": 7, "Memory": "unlimited"},
                             "ProtocolPeer": {ECHO: {"StreamsInbound": 2}}}))
    rows = table(run_cli("limits", "--show", "--limits", str(f)).stdout)
    assert rows["System"][3] == "7" and rows["System"][7] == "unlimited"
    assert rows[f"ProtocolPeer:{ECHO}"][1] == "2"
    p = run_cli("limits", "--show", "--limits", str(f), "--json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["System"]["Conns"] == 7 and doc["System"]["Memory"] == "unlimited"
    assert doc["ProtocolPeer"][ECHO]["StreamsInbound"] == 2
    assert set(doc["Conn"]) == {"Streams", "StreamsInbound", "StreamsOutbound", "Conns", "ConnsInbound",
                                "ConnsOutbound", "FD", "Memory"}
    # go's JSON form: it loads back as a limits file and gives the same table
    again = tmp_path / "again.json"
    again.write_text(p.stdout.decode())
    assert LimitConfig.load(str(again)).build(default_limits().auto_scale()).protocol_peer[ECHO].streams_inbound == 2
    assert run_cli("limits", "--show", "--limits", str(again)).stdout == run_cli(
        "limits", "--show", "--limits", str(f)).stdout


def test_limits_bad_file_is_one_error_line(tmp_path):
    f = tmp_path / "bad.json"
    f.write_text('{"System": {"Conns": -1}}')
    p = run_cli("limits", "--show", "--limits", str(f))
    assert p.returncode == 1
    assert p.stderr.decode().count("\n") == 1 and "must not be negative" in p.stderr.decode()


def test_bench_limits_file_lifts_conns_and_streams():
    p = run_cli("limits", "--show", "--limits", str(ROOT / "bench" / "limits-many-conns.json"))
    assert p.returncode == 0, p.stderr
    rows = table(p.stdout)
    for scope in ("System", "Transient"):
        streams, streams_in, _out, conns, conns_in, _co, fd, _mem = rows[scope]
        assert {streams, streams_in, conns, conns_in, fd} == {"unlimited"}, rows[scope]


# --------------------------------------------------------------------------- serve


class Served:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([*SERVE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
        self.stderr_lines: list[str] = []
        try:
            self.info = json.loads(self._line(self.proc.stdout, TIMEOUT))
        except BaseException:
            self.stop()
            raise

    @staticmethod
    def _line(pipe, timeout: float) -> str:
        sel = selectors.DefaultSelector()
        sel.register(pipe, selectors.EVENT_READ)
        try:
            if not sel.select(timeout):
                raise AssertionError(f"no line within {timeout} s")
        finally:
            sel.close()
        line = pipe.readline()
        if not line:
            raise AssertionError("serve exited early")
        return line.decode()

    def wait_stderr(self, *needles: str, timeout: float = TIMEOUT) -> str:
        """Blocks until serve writes a stderr line containing every needle; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.stderr_lines:
                if all(n in line for n in needles):
                    return line
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no stderr line with {needles}: {self.stderr_lines}")
            # the pipe is read off the gevent hub: a blocking read here would stall our host
            line = gevent.get_hub().threadpool.spawn(self._line, self.proc.stderr, left).get()
            self.stderr_lines.append(line)

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _out, err = self.proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _out, err = self.proc.communicate()
        return self.proc.returncode, "".join(self.stderr_lines) + err.decode()


@pytest.fixture
def client():
    h = geventp2p.new_host(services=["identify"])
    yield h
    h.close()


def _open_echo(client, peer):
    s = client.new_stream(peer, [ECHO], timeout=10)
    s.write(b"hi")
    assert s.read_exactly(2, timeout=10) == b"hi"
    return s


def test_serve_limits_file_refuses_the_third_echo_stream_and_logs_it(tmp_path, client):
    f = tmp_path / "limits.json"
    f.write_text(json.dumps({"ProtocolPeer": {ECHO: {"StreamsInbound": 2}}}))
    served = Served("--limits", str(f), "--debug-rcmgr")
    try:
        with gevent.Timeout(60):
            client.connect(served.info["addrs"][0], timeout=10)
            peer = client.network.peers()[0]
            held = [_open_echo(client, peer) for _ in range(2)]
            third = client.new_stream(peer, [ECHO], timeout=10)
            with pytest.raises(StreamResetError) as info:
                third.write(b"hi")
                while third.read(timeout=10):
                    pass
            assert info.value.error_code == 0x1002
            line = served.wait_stderr("WARNING", "geventp2p.rcmgr")
            assert "protocol-peer:/echo/1.0.0" in line and "streams (inbound)" in line
            assert str(client.id) in line and "used 2" in line and "limit 2" in line
            for s in held:
                s.close()
    finally:
        rc, err = served.stop()
    assert rc == 0, err
    assert err.count("geventp2p.rcmgr") == 1, err  # one line per refusal


def test_serve_without_debug_rcmgr_logs_no_refusal(tmp_path, client):
    f = tmp_path / "limits.json"
    f.write_text(json.dumps({"ProtocolPeer": {ECHO: {"StreamsInbound": 0}}}))
    served = Served("--limits", str(f))
    try:
        with gevent.Timeout(60):
            client.connect(served.info["addrs"][0], timeout=10)
            s = client.new_stream(client.network.peers()[0], [ECHO], timeout=10)
            with pytest.raises(StreamResetError) as info:
                s.write(b"hi")
                while s.read(timeout=10):
                    pass
            assert info.value.error_code == 0x1002
    finally:
        rc, err = served.stop()
    assert rc == 0, err
    assert "refused" not in err


def test_serve_rejects_a_bad_limits_file(tmp_path):
    f = tmp_path / "limits.json"
    f.write_text('{"Nope": {}}')
    p = subprocess.run([*CLI, "serve", "--limits", str(f)], capture_output=True, timeout=TIMEOUT, cwd=ROOT)
    assert p.returncode == 1
    assert "unknown scope kind" in p.stderr.decode()
