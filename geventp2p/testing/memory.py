"""In-process transport for tests: ``from geventp2p.testing.memory import MemoryTransport``.

Re-exports ``geventp2p.net.memory``; see that module for the knobs (latency,
bandwidth, chunk size, back-pressure buffer, abrupt close).
"""

from geventp2p.net.memory import (  # noqa: F401
    DEFAULT_NETWORK,
    MemoryConn,
    MemoryListener,
    MemoryNetwork,
    MemoryTransport,
    PipeConfig,
    memory_pipe,
)

__all__ = [
    "DEFAULT_NETWORK",
    "MemoryConn",
    "MemoryListener",
    "MemoryNetwork",
    "MemoryTransport",
    "PipeConfig",
    "memory_pipe",
]
