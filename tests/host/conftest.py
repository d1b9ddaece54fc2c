"""Fixtures shared by the host tests (``make_host`` is the protocol tests' factory)."""

from __future__ import annotations

from tests.protocols.conftest import make_host  # noqa: F401  (fixture)
