"""The README's API tour (examples/tour.py) runs and prints what the README says."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_tour_runs():
    r = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "tour.py")],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env=dict(os.environ),
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "b'HELLO'"
    assert lines[1] == "b''"
    assert set(lines[2:4]) == {"EvtPeerConnectednessChanged", "EvtPeerIdentificationCompleted"}
    assert sum(1 for line in lines if line.startswith("ping ") and line.endswith(" ms")) == 3
    assert lines[-1].startswith("geventp2p/")
