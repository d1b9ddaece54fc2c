"""Fixtures for the micro-benchmarks (self-contained: tests/conftest.py is not visible here)."""

from __future__ import annotations

import importlib
import os
import types

import pytest

MODULES = ("varint", "frames", "window")


def _load(kind: str) -> types.SimpleNamespace:
    ns = types.SimpleNamespace(kind=kind)
    for name in MODULES:
        modname = f"geventp2p._speedups._py_{name}" if kind == "python" else f"geventp2p._speedups._c_{name}"
        setattr(ns, name, importlib.import_module(modname))
    return ns


@pytest.fixture(scope="session", params=["python", "cython"])
def build(request):
    """The hot-path modules of one build; the compiled one is skipped if it is not built."""
    try:
        return _load(request.param)
    except ImportError as exc:
        if os.environ.get("GEVENTP2P_REQUIRE_SPEEDUPS", "").lower() in {"1", "true", "yes", "on"}:
            pytest.fail(f"compiled build required but missing: {exc}")
        pytest.skip(f"compiled build not available: {exc}")
