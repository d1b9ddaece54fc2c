"""Leak and time bounds for host/protocol tests: no new live greenlets or sockets per test."""

from __future__ import annotations

import pytest

from geventp2p.testing.leakcheck import no_leaks, open_sockets  # noqa: F401  (open_sockets re-exported)

#: Every host test runs under this gevent timeout (seconds).
TEST_TIMEOUT = 30


@pytest.fixture(autouse=True)
def bounded_and_leak_free():
    """Autouse: gevent timeout around the test, then no leaked greenlets/sockets."""
    with no_leaks(timeout=TEST_TIMEOUT):
        yield
