"""Fixtures for the crypto tests: every test taking ``backend`` runs under both backends."""

from __future__ import annotations

import pytest

from geventp2p.crypto.backend import BACKEND_NAMES, ENV_VAR, get_backend
from geventp2p.exceptions import ConfigError


def _load(name):
    try:
        return get_backend(name)
    except ConfigError as exc:  # pragma: no cover - both are project dependencies
        pytest.fail(f"crypto backend {name} must be installed: {exc}")


@pytest.fixture(params=BACKEND_NAMES)
def backend(request, monkeypatch):
    """A backend object; GEVENTP2P_CRYPTO is set to it too, so default-backend code paths use it."""
    monkeypatch.setenv(ENV_VAR, request.param)
    return _load(request.param)


@pytest.fixture(params=[("cryptography", "pycryptodome"), ("pycryptodome", "cryptography")], ids=["c->p", "p->c"])
def backend_pair(request):
    """(signing backend, verifying backend) for cross-backend checks."""
    a, b = request.param
    return _load(a), _load(b)
