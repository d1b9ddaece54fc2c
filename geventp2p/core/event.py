"""Event-bus event types: host facts published to applications.

Names and enum orders follow go-libp2p ``core/event`` and ``core/network`` so
numbers mean the same across implementations.  Events are frozen, slotted,
keyword-only dataclasses holding plain data; sequences are tuples (lists given
to the constructor are converted), so events are immutable and hashable.

Subscribe with ``host.events.subscribe(EvtPeerIdentificationCompleted)``; see
:mod:`geventp2p.host.eventbus`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from geventp2p.core.mux import Direction  # the one definition, re-exported here

__all__ = [
    "Connectedness",
    "Reachability",
    "NATDeviceType",
    "NATTransportProtocol",
    "Direction",
    "AddrAction",
    "UpdatedAddress",
    "EvtLocalAddressesUpdated",
    "EvtLocalProtocolsUpdated",
    "EvtLocalReachabilityChanged",
    "EvtNATDeviceTypeChanged",
    "EvtPeerConnectednessChanged",
    "EvtPeerIdentificationCompleted",
    "EvtPeerIdentificationFailed",
    "EvtPeerProtocolsUpdated",
    "EvtConnsTrimmed",
    "EVENT_TYPES",
]


# --------------------------------------------------------------------------- enums


class Connectedness(enum.IntEnum):
    """Our connection state with a peer (go ``network.Connectedness``)."""

    NotConnected = 0  #: no connection, no extra information
    Connected = 1  #: at least one open connection
    CanConnect = 2  #: recently connected, terminated gracefully (deprecated in go)
    CannotConnect = 3  #: recently tried and failed (deprecated in go)
    Limited = 4  #: only limited (e.g. relayed) connections


class Reachability(enum.IntEnum):
    """Whether this node is reachable from the public internet (go ``network.Reachability``)."""

    Unknown = 0
    Public = 1
    Private = 2


class NATDeviceType(enum.IntEnum):
    """Kind of NAT in front of us (go ``network.NATDeviceType``)."""

    Unknown = 0
    Cone = 1  #: endpoint-independent mapping; hole punching can work
    Symmetric = 2  #: endpoint-dependent mapping; hole punching will not work


class NATTransportProtocol(enum.IntEnum):
    """Transport protocol a NAT type observation applies to (go ``network.NATTransportProtocol``)."""

    UDP = 0
    TCP = 1


class AddrAction(enum.IntEnum):
    """What happened to a local address (go ``event.AddrAction``)."""

    Unknown = 0
    Added = 1
    Maintained = 2
    Removed = 3


# --------------------------------------------------------------------------- events


def _tuple(obj: Any, name: str) -> None:
    """Freeze a sequence field given as a list (or other iterable) into a tuple."""
    value = getattr(obj, name)
    if not isinstance(value, tuple):
        if isinstance(value, (str, bytes)):
            raise TypeError(f"{type(obj).__name__}.{name} must be a sequence, not {type(value).__name__}")
        object.__setattr__(obj, name, tuple(value))


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdatedAddress:
    """One local address and what happened to it."""

    address: Any  # Multiaddr
    action: AddrAction


@dataclass(frozen=True, slots=True, kw_only=True)
class EvtLocalAddressesUpdated:
    """The set of addresses we listen on / advertise changed.

    ``current`` lists the addresses now in use (Added or Maintained);
    ``removed`` those dropped.  ``diffs`` is False when actions are not known
    (then every action is ``Unknown``).
    """

    diffs: bool
    current: tuple[UpdatedAddress, ...]
    removed: tuple[UpdatedAddress, ...]
    signed_peer_record: Any = None

    def __post_init__(self) -> None:
        _tuple(self, "current")
        _tuple(self, "removed")


@dataclass(frozen=True, slots=True, kw_only=True)
class EvtLocalProtocolsUpdated:
    """Protocol handlers were added to or removed from our host."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _tuple(self, "added")
        _tuple(self, "removed")


@dataclass(frozen=True, slots=True, kw_only=True)
class EvtLocalReachabilityChanged:
    """Our reachability (AutoNAT verdict) changed."""

    reachability: Reachability


@dataclass(frozen=True, slots=True, kw_only=True)
class EvtNATDeviceTypeChanged:
    """The inferred NAT type for a transport protocol changed."""

    transport_protocol: NATTransportProtocol
    nat_device_type: NATDeviceType


@dataclass(frozen=True, slots=True, kw_only=True)
class EvtPeerConnectednessChanged:
    """Our connectedness to ``peer`` changed (first connection opened / last closed)."""

    peer: Any  # PeerId
    connectedness: Connectedness


@dataclass(frozen=True, slots=True, kw_only=True)
class EvtPeerIdentificationCompleted:
    """Identify finished on a connection to ``peer``."""

    peer: Any  # PeerId
    conn: Any = None
    listen_addrs: tuple[Any, ...] = ()  # Multiaddrs
    protocols: tuple[str, ...] = ()
    signed_peer_record: Any = None
    agent_version: str = ""
    protocol_version: str = ""
    observed_addr: Any = None  # Multiaddr or None

    def __post_init__(self) -> None:
        _tuple(self, "listen_addrs")
        _tuple(self, "protocols")


@dataclass(frozen=True, slots=True, kw_only=True)
class EvtPeerIdentificationFailed:
    """Identify failed on a connection to ``peer``; ``reason`` is the error."""

    peer: Any  # PeerId
    reason: Any  # exception or message


@dataclass(frozen=True, slots=True, kw_only=True)
class EvtPeerProtocolsUpdated:
    """The protocols ``peer`` supports changed (identify / identify push)."""

    peer: Any  # PeerId
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _tuple(self, "added")
        _tuple(self, "removed")


@dataclass(frozen=True, slots=True, kw_only=True)
class EvtConnsTrimmed:
    """The connection manager closed connections to get back to its low watermark."""

    peers: tuple[Any, ...] = ()  # PeerIds whose connections were closed
    conns: int = 0  # connections closed
    remaining: int = 0  # connections open afterwards

    def __post_init__(self) -> None:
        _tuple(self, "peers")


#: Every bus event type defined here.
EVENT_TYPES = (
    EvtLocalAddressesUpdated,
    EvtLocalProtocolsUpdated,
    EvtLocalReachabilityChanged,
    EvtNATDeviceTypeChanged,
    EvtPeerConnectednessChanged,
    EvtPeerIdentificationCompleted,
    EvtPeerIdentificationFailed,
    EvtPeerProtocolsUpdated,
    EvtConnsTrimmed,
)
