"""Smoke test of the comparison runner: ``python -m bench.compare --quick`` for geventp2p only.

Lives in bench/ (not tests/) so CI does not pay for it; run it with
``python -m pytest bench/test_bench_compare_smoke.py -q`` (about 15 s).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_compare_quick_geventp2p_only(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "bench.compare", "--quick", "--impls", "geventp2p", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, timeout=180,
    )
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 0, err[-3000:]
    [js] = tmp_path.glob("compare-*-quick.json")
    [md] = tmp_path.glob("compare-*-quick.md")
    result = json.loads(js.read_text())

    # every case ran once against a geventp2p server and succeeded with its figures present
    from bench.compare import build_cases

    cases = build_cases(quick=True)
    assert {c.name for c in cases} == set(result["summary"])
    # scenarios a and d over TLS and over WebSocket
    assert {"perf-up-tls-yamux", "perf-down-tls-yamux", "perf-up-ws-noise-yamux", "perf-down-ws-noise-yamux",
            "connections-tls-yamux", "connections-ws-noise-yamux"} <= set(result["summary"])
    meta_cases = {c["name"]: c for c in result["meta"]["cases"]}
    assert meta_cases["perf-up-ws-noise-yamux"]["transport"] == "ws"
    assert meta_cases["connections-tls-yamux"]["security"] == "tls"
    for case in cases:
        entry = result["summary"][case.name]["geventp2p"]
        assert entry["runs"] == entry["ok_runs"] == 1, (case.name, entry)
        for m in case.metrics:
            assert entry[m.key]["n"] == 1, (case.name, m.key)
    runs = {r["case"]: r for r in result["runs"]}
    assert runs["concurrent-200"]["failures"] == 0
    assert runs["concurrent-200"]["server_peak_rss"] > 10 * 2**20  # sampled, a real process
    assert all(r["build"] in ("cython", "mixed", "python") for r in result["runs"])  # client build recorded
    assert result["ceilings"]["raw_socket_mib_s"] > 0 and result["ceilings"]["chacha_mib_s"] > 0
    assert result["meta"]["impls"] == ["geventp2p"]

    text = md.read_text()
    assert "| case | metric | target | geventp2p | js | py |" in text
    assert "## Ceilings" in text
    # charts, or the documented warning when matplotlib is missing
    pngs = list(tmp_path.glob("*.png"))
    assert pngs or "matplotlib is not installed" in err
    assert len(pngs) in (0, len(cases))
