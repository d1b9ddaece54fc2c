"""Leak check shared by the transport tests: no new live greenlets or open sockets."""

from __future__ import annotations

import pytest

from geventp2p.testing.leakcheck import no_leaks as _no_leaks


@pytest.fixture(autouse=True)
def no_leaks():
    with _no_leaks(settle=1.0):
        yield
