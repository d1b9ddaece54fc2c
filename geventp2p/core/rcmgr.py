"""Resource scopes: the small interface the muxers use to ask for memory.

A full resource manager (scope DAG, limits, stats) comes later; today every
component takes a ``ResourceScope`` and the default is ``NULL_SCOPE``, which
grants everything.  Keep calls paired: every successful ``reserve_memory`` is
matched by a ``release_memory`` of the same size.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["ResourceScope", "NullScope", "NULL_SCOPE"]


class ResourceScope(Protocol):
    def reserve_memory(self, size: int, priority: int = 0) -> None:
        """Reserve ``size`` bytes, or raise ``ResourceLimitExceeded``."""

    def release_memory(self, size: int) -> None:
        """Give back ``size`` bytes reserved earlier."""


class NullScope:
    """A scope with no limits; it still counts, so tests can check that usage returns to zero."""

    __slots__ = ("memory",)

    def __init__(self) -> None:
        self.memory = 0

    def reserve_memory(self, size: int, priority: int = 0) -> None:
        self.memory += size

    def release_memory(self, size: int) -> None:
        self.memory -= size


NULL_SCOPE = NullScope()
