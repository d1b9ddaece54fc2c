"""geventp2p.config: the one table of GEVENTP2P_* environment variables."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from geventp2p import config

ROOT = Path(__file__).resolve().parent.parent
NAME = re.compile(r"GEVENTP2P_[A-Z0-9_]+")
# where variables are read: the library, the hot-path sources, the build, the test harness
SOURCES = [*ROOT.joinpath("geventp2p").rglob("*.py"), *ROOT.joinpath("_speedups").rglob("*.py"),
           ROOT / "setup.py", *ROOT.joinpath("tests", "interop").glob("*.py")]


def _names_in_sources() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in SOURCES:
        if path.name == "config.py" and path.parent.name == "geventp2p":
            continue  # the registry itself
        for name in set(NAME.findall(path.read_text(encoding="utf-8"))):
            found.setdefault(name, []).append(str(path.relative_to(ROOT)))
    return found


def test_every_variable_the_sources_name_is_registered():
    unregistered = {n: where for n, where in _names_in_sources().items() if n not in {v.name for v in config.ENV_VARS}}
    assert not unregistered, f"register these in geventp2p/config.py: {unregistered}"


def test_every_registered_variable_is_read_somewhere():
    found = _names_in_sources()
    unused = [v.name for v in config.ENV_VARS if v.name not in found]
    assert not unused, f"registered but read nowhere: {unused}"


def test_registry_entries_are_well_formed_and_unique():
    names = [v.name for v in config.ENV_VARS]
    assert len(names) == len(set(names))
    for v in config.ENV_VARS:
        assert NAME.fullmatch(v.name)
        assert v.when in ("runtime", "build", "tests")
        assert v.effect and v.default and v.read_by
    assert config.lookup("GEVENTP2P_CRYPTO").when == "runtime"
    with pytest.raises(KeyError):
        config.lookup("GEVENTP2P_NOPE")


def test_readme_lists_the_runtime_and_build_variables():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [v.name for v in config.ENV_VARS if v.when != "tests" and f"`{v.name}`" not in readme]
    assert not missing, f"README's environment table lacks {missing}"


def test_describe_shows_values_set_and_defaults():
    text = config.describe({"GEVENTP2P_CRYPTO": "pycryptodome"})
    assert "GEVENTP2P_CRYPTO  [runtime; read by geventp2p.crypto.backend]" in text
    assert "set to 'pycryptodome'" in text
    assert "unset (compiled modules where built)" in text  # GEVENTP2P_PURE_PYTHON
    assert config.current({})["GEVENTP2P_CRYPTO"] is None


def test_python_m_geventp2p_config():
    env = {"GEVENTP2P_CRYPTO": "cryptography", "PATH": "/usr/bin:/bin"}
    p = subprocess.run([sys.executable, "-m", "geventp2p.config"], capture_output=True, text=True,
                       timeout=60, cwd=ROOT, env=env)
    assert p.returncode == 0, p.stderr
    for v in config.ENV_VARS:
        assert v.name in p.stdout
    assert "set to 'cryptography'" in p.stdout
    bad = subprocess.run([sys.executable, "-m", "geventp2p.config", "--bogus"], capture_output=True, text=True,
                         timeout=60, cwd=ROOT, env=env)
    assert bad.returncode == 2 and "--bogus" in bad.stderr
