"""Resource manager contracts (go-libp2p ``core/network/rcmgr.go``, in Python form).

Every connection, stream, file descriptor and buffer byte a node holds is charged to a
*scope*.  Scopes form a DAG: system at the root; transient (not yet attributed);
service, protocol and peer scopes; a connection or stream scope per connection and
stream; and service×peer and protocol×peer scopes.  A reservation must fit the scope
it is made in *and* every ancestor, or it fails with
:class:`~geventp2p.exceptions.ResourceLimitExceeded` and changes nothing.

The implementation lives in :mod:`geventp2p.host.rcmgr`; this module holds only the
contracts, the stat value type, the priorities, and the null objects that grant
everything (for components built without a resource manager).

Priorities have go's meaning: a memory reservation at priority ``p`` succeeds only if
the scope's usage after it stays within ``limit * (p + 1) / 256``.  ``LOW`` stops at
about 40% of the limit, ``MEDIUM`` at 60%, ``HIGH`` at 80%, ``ALWAYS`` at the limit.

Keep calls paired: every successful reservation is given back (``release_memory``,
``remove_stream``...) or released at once by ``done()``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Optional, Protocol, runtime_checkable

__all__ = [
    "Priority",
    "ScopeStat",
    "ResourceScope",
    "ResourceScopeSpan",
    "ResourceScopeViewer",
    "ConnManagementScope",
    "StreamManagementScope",
    "ResourceManager",
    "NullScope",
    "NULL_SCOPE",
    "NullResourceManager",
]


class Priority(enum.IntEnum):
    """Memory reservation priorities (go ``ReservationPriority*``)."""

    LOW = 101
    MEDIUM = 152
    HIGH = 203
    ALWAYS = 255


@dataclass(frozen=True, slots=True)
class ScopeStat:
    """Current usage of one scope (go ``network.ScopeStat``)."""

    num_streams_inbound: int = 0
    num_streams_outbound: int = 0
    num_conns_inbound: int = 0
    num_conns_outbound: int = 0
    num_fd: int = 0
    memory: int = 0

    @property
    def num_streams(self) -> int:
        return self.num_streams_inbound + self.num_streams_outbound

    @property
    def num_conns(self) -> int:
        return self.num_conns_inbound + self.num_conns_outbound

    def is_zero(self) -> bool:
        return not (
            self.num_streams_inbound
            or self.num_streams_outbound
            or self.num_conns_inbound
            or self.num_conns_outbound
            or self.num_fd
            or self.memory
        )


@runtime_checkable
class ResourceScope(Protocol):
    """A scope that memory can be reserved in."""

    def reserve_memory(self, size: int, priority: int = Priority.ALWAYS) -> None:
        """Reserve ``size`` bytes here and in every ancestor, or raise
        ``ResourceLimitExceeded`` (``ResourceScopeClosed`` once the scope is done)."""

    def release_memory(self, size: int) -> None:
        """Give back ``size`` bytes reserved earlier."""

    def stat(self) -> ScopeStat:
        """Current usage of this scope."""

    def begin_span(self) -> "ResourceScopeSpan":
        """A child scope whose reservations are all released by its ``done()``."""


@runtime_checkable
class ResourceScopeSpan(ResourceScope, Protocol):
    """A scope with a lifetime: ``done()`` releases everything still reserved in it."""

    def done(self) -> None:
        """Release all reservations of this scope (idempotent)."""


class ResourceScopeViewer(Protocol):
    """Read access to the shared scopes (go ``ResourceScopeViewer``, without callbacks)."""

    def view_system(self) -> ResourceScope: ...

    def view_transient(self) -> ResourceScope: ...

    def view_service(self, name: str) -> ResourceScope: ...

    def view_protocol(self, protocol: str) -> ResourceScope: ...

    def view_peer(self, peer: Any) -> ResourceScope: ...


class ConnManagementScope(ResourceScopeSpan, Protocol):
    """The scope of one connection: transient until the security handshake names the peer."""

    def peer_scope(self) -> Optional[ResourceScope]:
        """The peer's scope once :meth:`set_peer` succeeded, else ``None``."""

    def set_peer(self, peer: Any) -> None:
        """Move the connection (and what it reserved) from transient to ``peer``.

        Raises ``ResourceLimitExceeded`` if the peer's scope refuses it; the
        connection should then be closed (go: ``ConnResourceLimitExceeded``)."""


class StreamManagementScope(ResourceScopeSpan, Protocol):
    """The scope of one stream: transient until its protocol is negotiated."""

    def protocol_scope(self) -> Optional[ResourceScope]: ...

    def service_scope(self) -> Optional[ResourceScope]: ...

    def peer_scope(self) -> ResourceScope: ...

    def set_protocol(self, protocol: str) -> None:
        """Move the stream from transient to ``protocol`` (and protocol×peer).

        On ``ResourceLimitExceeded`` reset the stream with code 0x1002."""

    def set_service(self, service: str) -> None:
        """Also charge the stream to ``service`` (and service×peer); needs a protocol."""


class ResourceManager(ResourceScopeViewer, Protocol):
    """Entry point (go ``network.ResourceManager``)."""

    def open_connection(self, direction: Any, use_fd: bool, endpoint: Any) -> ConnManagementScope:
        """Charge a new connection (``direction``: ``"inbound"``/``"outbound"``) to
        transient and system, or raise ``ResourceLimitExceeded``."""

    def open_stream(self, peer: Any, direction: Any) -> StreamManagementScope:
        """Charge a new stream of ``peer`` to transient, the peer and system."""

    def close(self) -> None: ...


# -- null objects -------------------------------------------------------------------


class NullScope:
    """A scope with no limits; it still counts memory, so tests can check that usage
    returns to zero.  Serves as every kind of scope of :class:`NullResourceManager`."""

    __slots__ = ("memory", "_peer", "_protocol", "_service")

    def __init__(self) -> None:
        self.memory = 0
        self._peer: Any = None
        self._protocol: Optional[str] = None
        self._service: Optional[str] = None

    def reserve_memory(self, size: int, priority: int = Priority.ALWAYS) -> None:
        self.memory += size

    def release_memory(self, size: int) -> None:
        self.memory -= size

    def stat(self) -> ScopeStat:
        return ScopeStat(memory=self.memory)

    def begin_span(self) -> "NullScope":
        return NullScope()

    def done(self) -> None:
        self.memory = 0

    # connection / stream management: accept everything
    def peer_scope(self) -> "NullScope":
        return NULL_SCOPE

    def protocol_scope(self) -> Optional["NullScope"]:
        return NULL_SCOPE if self._protocol is not None else None

    def service_scope(self) -> Optional["NullScope"]:
        return NULL_SCOPE if self._service is not None else None

    def set_peer(self, peer: Any) -> None:
        self._peer = peer

    def set_protocol(self, protocol: str) -> None:
        self._protocol = protocol

    def set_service(self, service: str) -> None:
        self._service = service


NULL_SCOPE = NullScope()


class NullResourceManager:
    """A resource manager that grants everything (go ``network.NullResourceManager``)."""

    def view_system(self) -> NullScope:
        return NULL_SCOPE

    def view_transient(self) -> NullScope:
        return NULL_SCOPE

    def view_service(self, name: str) -> NullScope:
        return NULL_SCOPE

    def view_protocol(self, protocol: str) -> NullScope:
        return NULL_SCOPE

    def view_peer(self, peer: Any) -> NullScope:
        return NULL_SCOPE

    def open_connection(self, direction: Any, use_fd: bool, endpoint: Any) -> NullScope:
        return NullScope()

    def open_stream(self, peer: Any, direction: Any) -> NullScope:
        return NullScope()

    def stat(self) -> dict[str, Any]:
        """The shape of the real manager's usage tree, all zero."""
        zero = ScopeStat()
        return {"system": zero, "transient": zero, "allowlisted_system": zero, "allowlisted_transient": zero,
                "services": {}, "protocols": {}, "peers": {}}

    def close(self) -> None:
        pass
