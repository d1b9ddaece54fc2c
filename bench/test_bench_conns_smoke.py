"""Smoke test of ``python -m bench.conns`` with a few connections (geventp2p server only).

Lives in bench/ (not tests/) so CI does not pay for it; run it with
``python -m pytest bench/test_bench_conns_smoke.py -q`` (about 15 s).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_conns_few_connections():
    proc = subprocess.run(
        [sys.executable, "-m", "bench.conns", "--conns", "20", "--idle", "0.5", "--settle", "0.2", "--json"],
        cwd=ROOT, capture_output=True, timeout=170,
    )
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 0, err[-3000:]
    result = json.loads(proc.stdout)
    [run] = result["runs"]
    assert run["ok_run"] and run["failures"] == 0 and run["ok"] == 20, run
    assert run["server_conns_idle"] == 20  # every connection still open on the server
    assert run["fds_idle"] >= run["baseline_fds"] + 20
    assert run["greenlets_idle"] > run["baseline_greenlets"]
    assert run["conns_per_s"] > 0
    assert "kib_per_conn_idle" in result["summary"]["geventp2p"]
