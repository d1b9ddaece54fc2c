"""Fixtures for protocol tests: host pairs over TCP, leak checks."""

from __future__ import annotations

import pytest

import geventp2p
from tests.protocols._leaks import bounded_and_leak_free  # noqa: F401  (autouse)


@pytest.fixture
def make_host():
    """Factory for hosts that are all closed after the test."""
    hosts = []

    def make(**kwargs):
        h = geventp2p.new_host(**kwargs)
        hosts.append(h)
        return h

    yield make
    for h in hosts:
        h.close()


@pytest.fixture
def pair(make_host):
    """Two hosts (echo and perf on), ``b`` connected to ``a``."""
    a = make_host(services=["identify", "ping", "echo", "perf"])
    b = make_host(services=["identify", "ping", "echo", "perf"])
    b.connect(a.p2p_addrs()[0], timeout=10)
    return a, b
