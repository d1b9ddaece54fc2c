"""p2p Server tests: every test under a gevent timeout and the leak check."""

from __future__ import annotations

import pytest

from geventp2p.testing.leakcheck import no_leaks

TEST_TIMEOUT = 60


@pytest.fixture(autouse=True)
def bounded_and_leak_free():
    with no_leaks(timeout=TEST_TIMEOUT):
        yield
