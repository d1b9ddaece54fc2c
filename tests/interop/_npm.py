"""Install npm packages for interop tests into a per-user cache folder, once.

``ensure_npm_packages("npm-keys", {"@libp2p/crypto": "5.1.23"})`` returns the
folder (``~/.cache/geventp2p/npm-keys``, or ``$GEVENTP2P_INTEROP_CACHE/npm-keys``)
whose ``node_modules`` holds exactly those packages, running
``npm install --no-audit --no-fund`` only when they are missing or the pinned
versions changed.  Failures raise :class:`NpmUnavailable`; tests turn that into
a skip, or a failure when ``CI=true`` (:func:`skip_or_fail`).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path

__all__ = ["NpmUnavailable", "cache_base", "ensure_npm_packages", "node_executable", "skip_or_fail", "in_ci"]

INSTALL_TIMEOUT = 600  # seconds for one `npm install`
_STAMP = ".geventp2p-npm-stamp.json"


class NpmUnavailable(RuntimeError):
    """node/npm is missing or the packages could not be installed."""


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def skip_or_fail(reason: str):
    """pytest.skip(reason) normally, pytest.fail(reason) when CI=true."""
    import pytest

    if in_ci():
        pytest.fail(f"interop prerequisite missing in CI: {reason}")
    pytest.skip(reason)


def cache_base() -> Path:
    env = os.environ.get("GEVENTP2P_INTEROP_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "geventp2p"


def node_executable() -> str:
    node = shutil.which("node")
    if node is None:
        raise NpmUnavailable("node is not installed")
    return node


def _installed(folder: Path, packages: dict) -> bool:
    try:
        stamp = json.loads((folder / _STAMP).read_text())
    except (OSError, ValueError):
        return False
    if stamp != packages:
        return False
    return all((folder / "node_modules" / name / "package.json").is_file() for name in packages)


def ensure_npm_packages(dirname: str, packages: dict, *, timeout: float = INSTALL_TIMEOUT) -> Path:
    """Make sure ``packages`` ({name: version spec}) are installed under cache_base()/dirname; return that folder."""
    node_executable()
    npm = shutil.which("npm")
    if npm is None:
        raise NpmUnavailable("npm is not installed")
    folder = cache_base() / dirname
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NpmUnavailable(f"cannot create {folder}: {exc}") from None
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test process may be installing right now
        try:
            if _installed(folder, packages):
                return folder
            manifest = {
                "name": f"geventp2p-interop-{dirname}",
                "private": True,
                "type": "module",
                "dependencies": dict(packages),
            }
            (folder / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
            try:
                proc = subprocess.run(
                    [npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
                    cwd=folder, capture_output=True, text=True, timeout=timeout,
                )
            except subprocess.TimeoutExpired:
                raise NpmUnavailable(f"npm install in {folder} timed out after {timeout}s") from None
            except OSError as exc:
                raise NpmUnavailable(f"cannot run npm: {exc}") from None
            if proc.returncode != 0:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
                raise NpmUnavailable(f"npm install failed in {folder}: {' | '.join(tail)}")
            (folder / _STAMP).write_text(json.dumps(packages))
            if not _installed(folder, packages):
                raise NpmUnavailable(f"npm install in {folder} did not produce {', '.join(packages)}")
            return folder
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
