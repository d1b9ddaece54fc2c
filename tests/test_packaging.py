"""The package installs and runs from its distributions, not only from the checkout.

Builds the sdist and the wheel of this checkout into a temporary folder (``python -m
build``: the wheel is built from the sdist, so a file missing from the sdist breaks the
wheel too), installs each into a fresh venv outside the checkout and runs there, with
the venv's own interpreter and cwd in the temporary folder:

- ``python -m geventp2p._speedups`` (``cython`` for the wheel, ``python`` for the sdist
  installed with ``GEVENTP2P_NO_EXTENSIONS=1``);
- ``geventp2p demo --streams 50``;
- a short client script: two hosts on loopback TCP, one echo over a stream.

Slow (minutes: it compiles the extensions and installs the dependencies from PyPI or
pip's cache).  Where it cannot build (no ``build`` module, no network) it skips, except
under ``CI=true``, where that is a failure.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.packaging, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}

CLIENT = textwrap.dedent(
    """
    import geventp2p, geventp2p._speedups as sp
    server = geventp2p.new_host(listen=["/ip4/127.0.0.1/tcp/0"])
    client = geventp2p.new_host(listen=["/ip4/127.0.0.1/tcp/0"])
    def echo(stream):
        stream.write(stream.read_exactly(12, timeout=30)); stream.close()
    server.set_stream_handler("/pkgtest/echo/1.0.0", echo)
    with client, server:
        client.connect(server.p2p_addrs()[0], timeout=30)
        s = client.new_stream(server.id, ["/pkgtest/echo/1.0.0"], timeout=30)
        s.write(b"hello, wheel"); assert s.read_exactly(12, timeout=30) == b"hello, wheel"; s.close()
    print("echo-ok", sp.IMPLEMENTATION, geventp2p.__file__)
    """
)


def _cannot(msg: str) -> None:
    if IN_CI:
        pytest.fail(f"{msg} (CI=true: the packaging test must run)")
    pytest.skip(msg)


def _env(**extra: str) -> dict[str, str]:
    """The caller's environment without anything that would point back at the checkout."""
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "PYTHONSAFEPATH"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("GEVENTP2P_")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env.update(extra)
    return env


def _run(cmd: list[str | Path], *, cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _tail(proc: subprocess.CompletedProcess[str], lines: int = 40) -> str:
    text = (proc.stdout + "\n" + proc.stderr).strip().splitlines()
    return "\n".join(text[-lines:])


def _check(proc: subprocess.CompletedProcess[str], what: str) -> str:
    assert proc.returncode == 0, f"{what} exited {proc.returncode}:\n{_tail(proc)}"
    return proc.stdout


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(sdist, wheel) of this checkout, built with ``python -m build``."""
    if not (REPO / "pyproject.toml").exists() or not (REPO / "_speedups").is_dir():
        _cannot(f"{REPO} is not a source checkout")
    try:
        import build  # noqa: F401
    except ImportError:
        _cannot("the 'build' package is not installed (pip install -e '.[test]')")
    out = tmp_path_factory.mktemp("dist")
    proc = _run([sys.executable, "-m", "build", "--outdir", out, REPO], cwd=out, env=_env(), timeout=800)
    if proc.returncode != 0:
        _cannot(f"python -m build failed:\n{_tail(proc)}")
    sdists, wheels = sorted(out.glob("geventp2p-*.tar.gz")), sorted(out.glob("geventp2p-*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, os.listdir(out)
    return sdists[0], wheels[0]


def _venv(where: Path, requirement: Path, env: dict[str, str]) -> Path:
    """A fresh venv at ``where`` with ``requirement`` and its dependencies; returns its bin/."""
    _check(_run([sys.executable, "-m", "venv", where], cwd=where.parent, env=env, timeout=300), "python -m venv")
    bindir = where / ("Scripts" if os.name == "nt" else "bin")
    # The build above already reached the index, so a failing install is a packaging bug.
    proc = _run([bindir / "python", "-m", "pip", "install", "-q", requirement], cwd=where.parent, env=env, timeout=600)
    _check(proc, f"pip install {requirement.name}")
    return bindir


def _exercise(bindir: Path, cwd: Path, expect: str) -> None:
    """Run the three checks with the venv's own interpreter, outside the checkout."""
    env = _env()
    out = _check(_run([bindir / "python", "-m", "geventp2p._speedups"], cwd=cwd, env=env, timeout=120), "_speedups")
    kinds = {line.split()[0]: line.split()[1] for line in out.splitlines() if line.strip()}
    modules = kinds.pop("build")
    assert kinds and set(kinds.values()) == {expect}, out
    assert modules == expect, out

    demo = _run([bindir / "geventp2p", "demo", "--streams", "50", "--bytes", "1MiB", "--no-progress"],
                cwd=cwd, env=env, timeout=300)
    out = _check(demo, "geventp2p demo")
    assert any(line.split()[:2] == ["failures", "0"] for line in out.splitlines()), out
    assert re.search(rf"^build\s+{expect}\b", out, re.M), out

    script = cwd / "client.py"
    script.write_text(CLIENT)
    out = _check(_run([bindir / "python", script], cwd=cwd, env=env, timeout=120), "client script")
    tag, impl, location = out.split()[-3:]
    assert (tag, impl) == ("echo-ok", expect), out
    assert not Path(location).resolve().is_relative_to(REPO), f"imported from the checkout: {location}"


def test_distributions_hold_sources_licences_and_pure_modules(dists: tuple[Path, Path]) -> None:
    sdist, wheel = dists
    pxds = sorted(os.path.basename(p) for p in glob.glob(str(REPO / "_speedups" / "_c_*.pxd")))
    names = [p[3:-4] for p in pxds]
    protos = sorted(os.path.basename(p) for p in glob.glob(str(REPO / "geventp2p" / "pb" / "*.proto")))
    assert names and protos

    with tarfile.open(sdist) as tf:
        root = tf.getnames()[0].split("/")[0]
        members = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    expected = {"LICENSE-MIT", "LICENSE-APACHE", "README.md", "pyproject.toml", "setup.py",
                "_speedups/__init__.py", "_speedups/__main__.py", "geventp2p/py.typed"}
    expected |= {f"_speedups/{p}" for p in pxds} | {f"_speedups/_py_{n}.py" for n in names}
    expected |= {f"geventp2p/pb/{p}" for p in protos}
    assert expected <= members, sorted(expected - members)
    assert not [m for m in members if m.endswith((".so", ".pyd", ".c")) or m.startswith("build/")], root

    with zipfile.ZipFile(wheel) as zf:
        files = set(zf.namelist())
        metadata = next(zf.read(n).decode() for n in files if n.endswith(".dist-info/METADATA"))
    sp = "geventp2p/_speedups/"
    for n in names:
        assert f"{sp}_py_{n}.py" in files, n
        assert any(f.startswith(f"{sp}_c_{n}.") and f.endswith((".so", ".pyd")) for f in files), n
        assert f"{sp}{n}.py" not in files, f"{n}.py would shadow the facade"
    assert {f"{sp}__init__.py", f"{sp}__main__.py", "geventp2p/py.typed"} <= files
    assert {f"geventp2p/pb/{p}" for p in protos} <= files
    assert {n.rsplit("/", 1)[1] for n in files if "/licenses/" in n} == {"LICENSE-MIT", "LICENSE-APACHE"}
    assert "License-Expression: MIT OR Apache-2.0" in metadata


def test_compiled_wheel_installs_and_runs(dists: tuple[Path, Path], tmp_path: Path) -> None:
    _, wheel = dists
    assert not wheel.name.endswith("-none-any.whl"), f"wheel has no compiled code: {wheel.name}"
    bindir = _venv(tmp_path / "venv", wheel, _env())
    _exercise(bindir, tmp_path, "cython")


def test_pure_sdist_installs_and_runs(dists: tuple[Path, Path], tmp_path: Path) -> None:
    sdist, _ = dists
    bindir = _venv(tmp_path / "venv", sdist, _env(GEVENTP2P_NO_EXTENSIONS="1"))
    _exercise(bindir, tmp_path, "python")
