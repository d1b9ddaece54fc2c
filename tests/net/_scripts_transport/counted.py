"""A resource manager wrapper for the rcmgr tests: counts ``done()`` per scope."""

from __future__ import annotations

from typing import Any


class Counted:
    """Wraps a scope; ``dones`` counts ``done()`` calls (exactly one, or a bug)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.dones = 0

    def done(self) -> None:
        self.dones += 1
        self.inner.done()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
