"""Smoke tests of ``python -m bench.pubsub_sim`` and ``python -m bench.pubsub_link`` at tiny sizes.

Live in bench/ (not tests/) so CI does not pay for them; run them with
``python -m pytest bench/test_bench_pubsub_smoke.py -q`` (about a minute).  The js and py
subscribers of pubsub_link need the interop harness's cached peers: that case skips
when they are missing.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import pubsub_sim  # noqa: E402


def test_random_graph_degrees_within_bounds():
    edges = pubsub_sim.random_graph(200, 10, 20, random.Random(7))
    deg = [0] * 200
    for a, b in edges:
        assert a < b
        deg[a] += 1
        deg[b] += 1
    assert len(set(edges)) == len(edges)
    assert min(deg) >= 10 and max(deg) <= 20
    assert edges == pubsub_sim.random_graph(200, 10, 20, random.Random(7))  # seeded


def test_svg_chart_is_well_formed():
    import xml.etree.ElementTree as ET

    svg = pubsub_sim._svg_bars("t <1>", "ms", ["a", "b"], {"90%": [1.0, None], "99%": [2.0, 3.5]})
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    assert svg.count("<rect") == 3 + 2  # three bars + two legend boxes
    assert "n/a" in svg and "t &lt;1&gt;" in svg


@pytest.mark.slow
def test_pubsub_sim_tiny(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "bench.pubsub_sim", "--nodes", "12", "--routers", "gossipsub,floodsub",
         "--faults", "0,0.2", "--messages", "4", "--warmup", "2", "--interval", "0.2", "--degree", "3-5",
         "--latency", "5-10", "--drain", "3", "--out", str(tmp_path), "--json"],
        cwd=ROOT, capture_output=True, timeout=300,
    )
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 0, err[-3000:]
    doc = json.loads(proc.stdout)
    results = doc["results"]
    assert [(r["router"], r["fault"]) for r in results] == [
        ("gossipsub", 0.0), ("gossipsub", 0.2), ("floodsub", 0.0), ("floodsub", 0.2)]
    for r in results:
        assert "error" not in r, r
        assert r["nodes"] == 12 and r["messages"] == 4 and r["failures"] == 0
        assert 3 <= r["degree_min"] <= r["degree_max"] <= 5
        assert r["reliability_pct"] > 0 and r["bytes_per_node_msg"] > 0
        assert r["lat90"]["messages"] == 4
    no_fault = [r for r in results if r["fault"] == 0]
    assert all(r["reliability_pct"] == 100.0 for r in no_fault), no_fault
    assert results[1]["droppers"] == 2 and "graylist" in results[1]
    files = sorted(p.name for p in tmp_path.iterdir())
    assert sum(f.endswith(".json") for f in files) == 1 and sum(f.endswith(".csv") for f in files) == 1
    assert sum(f.endswith((".svg", ".png")) for f in files) == len(pubsub_sim.MEASURES)
    csv = next(p for p in tmp_path.iterdir() if p.suffix == ".csv").read_text().splitlines()
    assert csv[0].startswith("nodes,router,fault,reliability_pct") and len(csv) == 5


@pytest.mark.slow
def test_pubsub_link_geventp2p_tiny():
    proc = subprocess.run(
        [sys.executable, "-m", "bench.pubsub_link", "--pairs", "geventp2p", "--sizes", "1024,65536", "--reps", "1",
         "--count", "300", "--count-large", "40", "--latency-secs", "0.5", "--settle", "3", "--no-files", "--json"],
        cwd=ROOT, capture_output=True, timeout=300,
    )
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 0, err[-3000:]
    result = json.loads(proc.stdout)
    runs = result["runs"]
    assert [(r["pair"], r["size"]) for r in runs] == [("geventp2p", 1024), ("geventp2p", 65536)]
    for r in runs:
        assert r["ok_run"] and r["lost"] == 0 and r["publish_errors"] == 0, r
        assert r["msgs_per_s"] > 0 and r["mib_per_s"] > 0
        assert r["half_delivered"] == r["half_count"] >= 50
        assert 0 < r["p50_ms"] <= r["p99_ms"] <= r["max_ms"]
    assert result["summary"]["1024"]["geventp2p"]["msgs_per_s"]["n"] == 1


@pytest.mark.slow
@pytest.mark.interop
def test_pubsub_link_js_and_py_subscribers_tiny():
    sys.path.insert(0, str(ROOT / "tests" / "interop"))
    import interop_harness as ih

    try:
        ih.ensure_peer("py")
        ih.ensure_peer("js")
    except Exception as exc:  # noqa: BLE001 - the peers are optional here
        pytest.skip(f"interop peers unavailable: {exc}")
    proc = subprocess.run(
        [sys.executable, "-m", "bench.pubsub_link", "--pairs", "js,py,js-js", "--sizes", "1024", "--reps", "1",
         "--count", "200", "--latency-secs", "0.5", "--settle", "5", "--no-files", "--json"],
        cwd=ROOT, capture_output=True, timeout=400,
    )
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 0, err[-3000:]
    runs = json.loads(proc.stdout)["runs"]
    assert sorted(r["pair"] for r in runs) == ["js", "js-js", "py"]
    for r in runs:
        assert r["ok_run"] and r["delivered"] == 200, r
        assert 0 < r["p50_ms"] <= r["p99_ms"]
