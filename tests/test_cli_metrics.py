"""`geventp2p serve --metrics HOST:PORT` as a subprocess, scraped over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from geventp2p import metrics as gm
from tests.test_cli_serve import TIMEOUT, run_cli, start_server, stop_server

IN_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}
needs_extra = pytest.mark.skipif(not gm.available() and not IN_CI,
                                 reason="prometheus_client not installed (pip install 'geventp2p[metrics]')")


def scrape(url: str) -> dict[tuple, float]:
    """``{(name, (label, value)...): value}`` of one scrape (urllib: the server is another process)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=TIMEOUT) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def total(scraped: dict, name: str, **labels) -> float:
    return sum(v for (n, lab), v in scraped.items()
               if n == name and all(dict(lab).get(k) == want for k, want in labels.items()))


@needs_extra
def test_serve_metrics_endpoint_moves_with_traffic():
    proc, info = start_server("--metrics", "127.0.0.1:0")
    try:
        url = info["metrics"]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
        assert not url.startswith("http://127.0.0.1:0/")
        before = scrape(url)
        assert total(before, "libp2p_swarm_connections_opened_total") == 0
        assert total(before, "process_resident_memory_bytes") > 0  # the CLI's registry has process metrics

        r = run_cli("ping", info["addrs"][0], "--count", "2", "--interval", "0")
        assert r.returncode == 0, r.stderr
        after = scrape(url)
        # the ping client's connection was opened; it closed when the client exited (or is closing)
        assert total(after, "libp2p_swarm_connections_opened_total", dir="inbound", transport="tcp") == 1
        assert total(after, "libp2p_swarm_key_types_total", dir="inbound", key_type="Ed25519") == 1
        # two 32-byte pings echoed back
        assert total(after, "geventp2p_bandwidth_protocol_bytes_total", dir="out",
                     protocol="/ipfs/ping/1.0.0") >= 64
        assert total(after, "geventp2p_bandwidth_bytes_total", dir="in") > \
            total(before, "geventp2p_bandwidth_bytes_total", dir="in")

        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url.replace("/metrics", "/other"), timeout=TIMEOUT)
        assert err.value.code == 404
    finally:
        rc, _out, err_text = stop_server(proc)
    assert rc == 0, err_text


@needs_extra
def test_serve_metrics_bad_address_is_one_line_error():
    r = run_cli("serve", "--metrics", "nowhere")
    assert r.returncode == 1
    assert r.stderr.decode().startswith("geventp2p: error: metrics address must be HOST:PORT")


def test_serve_metrics_without_the_extra(tmp_path):
    """With prometheus_client unimportable, --metrics fails with the install hint (exit 1)."""
    (tmp_path / "prometheus_client.py").write_text("raise ImportError('prometheus_client is hidden')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), *sys.path]))
    r = subprocess.run([sys.executable, "-m", "geventp2p.cli", "serve", "--metrics", "127.0.0.1:0"],
                       capture_output=True, timeout=TIMEOUT, env=env)
    assert r.returncode == 1, r.stderr
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "pip install 'geventp2p[metrics]'" in lines[0], lines
    assert r.stdout == b""  # the JSON line is printed only once the endpoint is up
