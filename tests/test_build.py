"""The build the environment asks for is the build that is live."""

import os
import subprocess
import sys

import geventp2p._speedups as speedups


def test_required_compiled_build_is_live():
    if os.environ.get("GEVENTP2P_REQUIRE_SPEEDUPS") != "1":
        import pytest

        pytest.skip("only meaningful with GEVENTP2P_REQUIRE_SPEEDUPS=1")
    for name in speedups.MODULES:
        mod = getattr(speedups, name)
        assert mod.__name__ == f"geventp2p._speedups._c_{name}", mod
        assert speedups.info()[name][0] == "cython"
        assert mod.__file__.endswith((".so", ".pyd")), mod.__file__
    assert speedups.IMPLEMENTATION == "cython"


def test_pure_build_is_live_when_forced():
    if os.environ.get("GEVENTP2P_PURE_PYTHON") != "1":
        import pytest

        pytest.skip("only meaningful with GEVENTP2P_PURE_PYTHON=1")
    for name in speedups.MODULES:
        assert getattr(speedups, name).__name__ == f"geventp2p._speedups.{name}"
    assert speedups.IMPLEMENTATION == "python"


def _report(env_extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEVENTP2P_")}
    env.update(env_extra)
    out = subprocess.run(
        [sys.executable, "-m", "geventp2p._speedups"], env=env, capture_output=True, text=True, timeout=60
    )
    return out


def test_main_reports_python_when_forced():
    out = _report({"GEVENTP2P_PURE_PYTHON": "1"})
    assert out.returncode == 0, out.stderr
    lines = [l for l in out.stdout.splitlines() if l.split()[0] in speedups.MODULES]
    assert len(lines) == len(speedups.MODULES)
    assert all(l.split()[1] == "python" for l in lines), out.stdout


def test_partial_pure_list():
    out = _report({"GEVENTP2P_PURE_PYTHON": "frames"})
    assert out.returncode == 0, out.stderr
    kinds = {l.split()[0]: l.split()[1] for l in out.stdout.splitlines()}
    assert kinds["frames"] == "python"
    assert "requested" in out.stdout


def test_unknown_pure_name_is_an_error():
    out = _report({"GEVENTP2P_PURE_PYTHON": "nosuchmodule"})
    assert out.returncode != 0
    assert "nosuchmodule" in out.stderr
