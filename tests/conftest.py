"""Shared fixtures: build reporting, both-implementation fixture, leak checks.

The host-pair, socketpair, virtual-clock and leak-check fixtures come from the
plugin that geventp2p ships for its users (``geventp2p.testing.pytest_plugin``).
"""

from __future__ import annotations

import importlib
import os
import sys
import types

import pytest

import geventp2p._speedups as speedups
from geventp2p.testing.leakcheck import live_greenlets, open_sockets  # noqa: F401  (re-exported for tests)

# An installed geventp2p registers the plugin through its ``pytest11`` entry point,
# which pytest loads before any conftest.  If that entry point is named other than
# the module, naming the module again here would register it twice ("Plugin already
# registered under a different name"), so load it only when nothing has yet.
pytest_plugins = ["pytester"]
if "geventp2p.testing.pytest_plugin" not in sys.modules:
    pytest_plugins.append("geventp2p.testing.pytest_plugin")


def pytest_report_header(config):
    mods = ", ".join(f"{n}={k}" for n, (k, _) in speedups.info().items())
    return [f"geventp2p build: {speedups.IMPLEMENTATION} ({mods})"]


def pytest_addoption(parser):
    parser.addoption("--no-speedups", action="store_true", help="skip tests of the compiled build")


REQUIRE_SPEEDUPS = os.environ.get("GEVENTP2P_REQUIRE_SPEEDUPS", "").lower() in {"1", "true", "yes", "on"}


def load_impl(kind: str) -> types.SimpleNamespace:
    """Return the hot-path modules of one build ("python" or "cython") as a namespace.

    Both builds stay importable side by side, whatever the facade picked.
    """
    ns = types.SimpleNamespace(kind=kind)
    for name in speedups.MODULES:
        modname = f"geventp2p._speedups._py_{name}" if kind == "python" else f"geventp2p._speedups._c_{name}"
        setattr(ns, name, importlib.import_module(modname))
    return ns


@pytest.fixture(scope="session", params=["python", pytest.param("cython", marks=pytest.mark.speedups)])
def impl(request):
    """Each hot-path test runs against the pure and the compiled build."""
    kind = request.param
    if kind == "cython":
        if request.config.getoption("--no-speedups"):
            pytest.skip("--no-speedups")
        try:
            return load_impl(kind)
        except ImportError as exc:
            if REQUIRE_SPEEDUPS:
                pytest.fail(f"compiled build required but missing: {exc}")
            pytest.skip(f"compiled build not available: {exc}")
    return load_impl(kind)


@pytest.fixture(scope="session")
def both_impls():
    """(pure, compiled) for differential tests; skips if the compiled build is missing."""
    try:
        return load_impl("python"), load_impl("cython")
    except ImportError as exc:
        if REQUIRE_SPEEDUPS:
            pytest.fail(f"compiled build required but missing: {exc}")
        pytest.skip(f"compiled build not available: {exc}")
