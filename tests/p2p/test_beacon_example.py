"""examples/beacon.py (five Servers over TCP) runs, exits 0 and prints its summary."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def test_beacon_example_runs() -> None:
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "beacon.py")],
                       capture_output=True, text=True, timeout=120, cwd=ROOT, env=dict(os.environ))
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "3 blocks (slots [1, 2, 3])" in out
    assert "6 attestations from validators [1, 2, 3]" in out
    assert "via=direct from_node1=True" in out
