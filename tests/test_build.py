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
        assert getattr(speedups, name).__name__ == f"geventp2p._speedups._py_{name}"
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


# --------------------------------------------------------------------------- naming hazard
# The pure sources are private modules (_py_<name>), so the one spelling of a hot-path
# import is the facade's: ``from geventp2p._speedups import frames``.  A submodule
# spelling (``geventp2p._speedups.frames``) would bypass the facade's choice.


def _speedups_dir():
    return os.path.dirname(speedups.__file__)


def test_facade_names_are_not_submodules():
    import importlib

    import pytest

    for name in speedups.MODULES:
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(f"geventp2p._speedups.{name}")
        # ... while the facade attribute is the active build
        kind = speedups.info()[name][0]
        assert getattr(speedups, name) is speedups.module(name, kind)


def test_every_pxd_pairs_with_a_private_pure_source():
    import glob

    folder = _speedups_dir()
    pxd_names = sorted(os.path.basename(p)[3:-4] for p in glob.glob(os.path.join(folder, "_c_*.pxd")))
    assert pxd_names, f"no _c_*.pxd in {folder}"
    assert set(pxd_names) == set(speedups.MODULES)
    for name in pxd_names:
        assert os.path.exists(os.path.join(folder, f"_py_{name}.py")), name
        assert not os.path.exists(os.path.join(folder, f"{name}.py")), (
            f"_speedups/{name}.py would shadow the facade; name the pure source _py_{name}.py"
        )


def test_module_helper_rejects_unknown_names():
    import pytest

    with pytest.raises(ValueError):
        speedups.module("nosuchmodule", "python")
    with pytest.raises(ValueError):
        speedups.module("frames", "rust")
    assert speedups.module("frames", "python").__name__ == "geventp2p._speedups._py_frames"
