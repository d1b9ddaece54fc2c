"""PubSub tracer events, published on the host's event bus.

Subscribe to the concrete types (``host.events.subscribe(TRACE_EVENT_TYPES)`` for all
of them); :class:`EvtPubSubTrace` is only their common base.
They are emitted from the pubsub service's own dispatcher greenlet, never from a
stream reader; when no one subscribes to a type nothing is queued for it, and a
backlog past :data:`TRACE_BACKLOG` events is dropped (and counted) rather than
slowing the router down.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

__all__ = [
    "TRACE_BACKLOG",
    "TraceKind",
    "EvtPubSubTrace",
    "EvtPubSubPeerJoined",
    "EvtPubSubPeerLeft",
    "EvtPubSubPeerAdded",
    "EvtPubSubPeerRemoved",
    "EvtPubSubMessageDelivered",
    "EvtPubSubMessageRejected",
    "EvtPubSubMessageDropped",
    "EvtPubSubRPCDropped",
    "TRACE_EVENT_TYPES",
]

#: Trace events kept waiting for the dispatcher before new ones are dropped.
TRACE_BACKLOG = 4096


class TraceKind(enum.IntEnum):
    """What happened (numbers follow go-libp2p-pubsub's ``TraceEvent_Type`` where one exists)."""

    PUBLISH_MESSAGE = 0
    REJECT_MESSAGE = 1
    DUPLICATE_MESSAGE = 2
    DELIVER_MESSAGE = 3
    ADD_PEER = 4
    REMOVE_PEER = 5
    DROP_RPC = 8
    JOIN = 9
    LEAVE = 10
    UNDELIVERED_MESSAGE = 100  #: ours: a subscription's buffer was full


@dataclass(frozen=True, slots=True, kw_only=True)
class EvtPubSubTrace:
    """Base of every pubsub trace event; ``kind`` tells which."""

    kind: TraceKind


@dataclass(frozen=True, slots=True, kw_only=True)
class EvtPubSubPeerJoined(EvtPubSubTrace):
    """``peer`` subscribed to ``topic`` (one we know of)."""

    peer: Any
    topic: str
    kind: TraceKind = TraceKind.JOIN


@dataclass(frozen=True, slots=True, kw_only=True)
class EvtPubSubPeerLeft(EvtPubSubTrace):
    """``peer`` unsubscribed from ``topic`` or went away."""

    peer: Any
    topic: str
    kind: TraceKind = TraceKind.LEAVE


@dataclass(frozen=True, slots=True, kw_only=True)
class EvtPubSubPeerAdded(EvtPubSubTrace):
    """Our outbound pubsub stream to ``peer`` is open, speaking ``protocol``."""

    peer: Any
    protocol: str
    kind: TraceKind = TraceKind.ADD_PEER


@dataclass(frozen=True, slots=True, kw_only=True)
class EvtPubSubPeerRemoved(EvtPubSubTrace):
    """``peer`` is no longer a pubsub peer (``reason``: disconnected, stream error, misbehaviour...)."""

    peer: Any
    reason: str = ""
    kind: TraceKind = TraceKind.REMOVE_PEER


@dataclass(frozen=True, slots=True, kw_only=True)
class EvtPubSubMessageDelivered(EvtPubSubTrace):
    """A message passed validation and was delivered to our subscribers."""

    topic: str
    msg_id: bytes
    received_from: Any
    kind: TraceKind = TraceKind.DELIVER_MESSAGE


@dataclass(frozen=True, slots=True, kw_only=True)
class EvtPubSubMessageRejected(EvtPubSubTrace):
    """A message was rejected or ignored by validation (``reason``: reject, ignore, timeout, throttled...)."""

    topic: str
    msg_id: bytes
    received_from: Any
    reason: str
    kind: TraceKind = TraceKind.REJECT_MESSAGE


@dataclass(frozen=True, slots=True, kw_only=True)
class EvtPubSubMessageDropped(EvtPubSubTrace):
    """A delivered message did not fit a subscription's buffer (a slow consumer)."""

    topic: str
    msg_id: bytes
    kind: TraceKind = TraceKind.UNDELIVERED_MESSAGE


@dataclass(frozen=True, slots=True, kw_only=True)
class EvtPubSubRPCDropped(EvtPubSubTrace):
    """An RPC to ``peer`` did not fit its send queue and was dropped."""

    peer: Any
    kind: TraceKind = TraceKind.DROP_RPC


TRACE_EVENT_TYPES = (
    EvtPubSubPeerJoined,
    EvtPubSubPeerLeft,
    EvtPubSubPeerAdded,
    EvtPubSubPeerRemoved,
    EvtPubSubMessageDelivered,
    EvtPubSubMessageRejected,
    EvtPubSubMessageDropped,
    EvtPubSubRPCDropped,
)
