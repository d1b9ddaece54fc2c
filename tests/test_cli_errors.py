"""CLI error paths (one `geventp2p: error:` line, non-zero exit) and the small helpers."""

from __future__ import annotations

import argparse
import io
import socket
import subprocess
import sys

import gevent
import pytest

from geventp2p import cli
from geventp2p.testing.leakcheck import live_greenlets, open_sockets
from geventp2p.demo import Progress, percentile

CLI = [sys.executable, "-m", "geventp2p.cli"]
PID = "12D3KooWDT3PUQYRbV3FuE997yhE4bbSniuTiGz8vEGvARSzWapb"


def run_cli(*args, timeout=30):
    return subprocess.run([*CLI, *args], capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def assert_one_line_error(r, *fragments):
    assert r.returncode == 1, (r.returncode, r.stderr)
    err = r.stderr.decode()
    assert err.startswith("geventp2p: error: "), err
    assert err.count("\n") == 1, err  # one line, no traceback
    assert "Traceback" not in err
    for f in fragments:
        assert f in err, err
    assert r.stdout == b""


# --------------------------------------------------------------------------- subprocess


def test_unreachable_address():
    r = run_cli("ping", f"/ip4/127.0.0.1/tcp/{closed_port()}/p2p/{PID}", "--timeout", "5")
    assert_one_line_error(r, "failed to dial", PID)


def test_multiaddr_without_p2p():
    r = run_cli("perf", f"/ip4/127.0.0.1/tcp/{closed_port()}", "--json")
    assert_one_line_error(r, "/p2p/", "--peer-id")


def test_bad_key_file(tmp_path):
    bad = tmp_path / "bad.key"
    bad.write_bytes(b"this is not a key\n")
    r = run_cli("serve", "--key", str(bad))
    assert_one_line_error(r, str(bad))


# --------------------------------------------------------------------------- in-process


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["stream", "/ip4/127.0.0.1/tcp/1", "-p", "/echo/1.0.0"], "no /p2p/"),
        (["ping", f"/ip4/127.0.0.1/tcp/1/p2p/{PID}", "--peer-id",
          "12D3KooWEgCAyBPow5i2JXhnfsP7c5BGyag8mKtR7NuoHa5VDZdX"], "contradicts"),
        (["ping", "/garbage/1"], "garbage"),
        (["ping", "/ip4/127.0.0.1/tcp/1/p2p/notapeer"], "notapeer"),
        (["ping", f"/p2p/{PID}"], "no transport address"),
        (["ping", f"/ip4/127.0.0.1/tcp/1/p2p/{PID}", "--timeout", "5"], "failed to dial"),
        (["ping", f"/ip4/127.0.0.1/tcp/1/p2p/{PID}", "--key", "/nonexistent/key"], "cannot read key file"),
    ],
)
def test_errors_in_process(argv, fragment, capsys):
    before_g = {id(g) for g in live_greenlets()}
    before_s = open_sockets()
    assert cli.main(argv) == 1
    gevent.sleep(0.01)
    assert not [g for g in live_greenlets() if id(g) not in before_g]
    assert open_sockets() <= before_s
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("geventp2p: error: ") and err.count("\n") == 1, err
    assert fragment in err


def test_public_key_file_is_not_an_identity(tmp_path, capsys):
    from geventp2p.crypto.keys import generate_key

    path = tmp_path / "pub.key"
    path.write_bytes(generate_key("ed25519").public_key().marshal())
    assert cli.main(["serve", "--key", str(path)]) == 1
    err = capsys.readouterr().err
    assert "public key" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "--muxer", "bogus"],
        ["serve", "--security", ""],
        ["perf", f"/ip4/127.0.0.1/tcp/1/p2p/{PID}", "--upload", "12XB"],
        ["ping", f"/ip4/127.0.0.1/tcp/1/p2p/{PID}", "--count", "-1"],
        ["ping", f"/ip4/127.0.0.1/tcp/1/p2p/{PID}", "--timeout", "0"],
        ["stream", f"/ip4/127.0.0.1/tcp/1/p2p/{PID}"],  # --protocol is required
        ["demo", "--muxer", "spdy"],
    ],
)
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as ei:
        cli.main(argv)
    assert ei.value.code == 2
    assert "usage:" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text, expected",
    [("0", 0), ("1048576", 1 << 20), ("64KiB", 64 << 10), ("64k", 64 << 10), ("16MiB", 16 << 20),
     ("16M", 16 << 20), ("10MB", 10_000_000), ("1.5GiB", 3 << 29), ("2 kB", 2000), ("1_000", 1000)],
)
def test_parse_size(text, expected):
    assert cli.parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "MiB", "12XB", "-1", "1.2.3M", "k5"])
def test_parse_size_rejects(text):
    with pytest.raises(argparse.ArgumentTypeError):
        cli.parse_size(text)


def test_percentile_nearest_rank():
    vals = list(range(1, 101))
    assert percentile(vals, 50) == 50
    assert percentile(vals, 99) == 99
    assert percentile(vals, 100) == 100
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) == 0.0
    assert percentile([1, 2, 3], 0) == 1


def test_progress_plain_lines_when_not_a_tty():
    out = io.StringIO()
    bar = Progress("bulk", 1 << 20, unit="bytes", out=out, tty=False, line_interval=3600)
    for i in range(1, 101):
        bar.update(i * (1 << 20) // 100)
    bar.finish()
    lines = out.getvalue().splitlines()
    assert len(lines) == 1  # interval not reached: only the final line
    assert "\r" not in out.getvalue()
    assert "100.0%" in lines[0] and "1.0 MiB/1.0 MiB" in lines[0] and "MiB/s" in lines[0]


def test_progress_tty_redraws_in_place():
    out = io.StringIO()
    bar = Progress("streams", 10, out=out, tty=True, min_interval=0.0)
    for i in range(1, 11):
        bar.update(i)
    bar.finish("done")
    text = out.getvalue()
    assert text.count("\r") == 11 and text.endswith("done\n") and text.count("\n") == 1
    assert "10/10" in text and "[" + "#" * Progress.WIDTH + "]" in text


def test_progress_rate_limited():
    out = io.StringIO()
    bar = Progress("streams", 1000, out=out, tty=True)  # 0.1 s between redraws
    for i in range(1000):
        bar.update(i)
    assert out.getvalue().count("\r") <= 1
