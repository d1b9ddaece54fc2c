"""Smoke test of ``python -m bench.p2p_server`` with few messages and runs.

Lives in bench/ (not tests/) so CI does not pay for it; run it with
``python -m pytest bench/test_bench_p2p_server_smoke.py -q`` (a few seconds).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_p2p_server_bench_smoke() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.p2p_server", "--runs", "1", "--count", "200", "--subscribers", "10",
         "--fanout-count", "100", "--json"],
        cwd=ROOT, capture_output=True, timeout=170,
    )
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 0, err[-3000:]
    result = json.loads(proc.stdout)
    rf = result["remote_feed"]
    assert rf["count"] == 200 and rf["size"] == 1024
    assert rf["raw_msgs_per_s"]["median"] > 0 and rf["server_msgs_per_s"]["median"] > 0
    assert -1 < rf["server_cost"]["median"] < 1
    assert [f["queue_bound"] for f in result["fanout"]] == [0, 64]
    assert all(f["us_per_msg_per_sub"]["median"] > 0 for f in result["fanout"])
