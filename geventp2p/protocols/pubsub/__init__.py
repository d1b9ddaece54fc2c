"""PubSub services: :class:`FloodSub` and :class:`GossipSub` (gevent shell).

Users import them from :mod:`geventp2p.pubsub`::

    from geventp2p.pubsub import GossipSub

    ps = GossipSub(host)
    topic = ps.join("news")
    sub = topic.subscribe()
    topic.publish(b"hello", timeout=5)
    msg = sub.get(timeout=5)          # msg.data, msg.from_peer, msg.id ...

The protocol rules live in the sans-I/O routers of :mod:`geventp2p.sansio.pubsub`;
:mod:`geventp2p.protocols.pubsub.service` is the shell that moves bytes and time.
"""

from __future__ import annotations

from geventp2p.protocols.pubsub.routers import FloodSub, GossipSub, make_pubsub
from geventp2p.protocols.pubsub.service import (
    ACCEPT,
    FLOODSUB_ID,
    FLOODSUB_PROTOCOLS,
    GOSSIPSUB_PROTOCOLS,
    IGNORE,
    MESHSUB_IDS,
    REJECT,
    Message,
    PeerEvent,
    PeerEvents,
    PubSub,
    PubSubOptions,
    Subscription,
    Topic,
    ValidationResult,
)
from geventp2p.protocols.pubsub.trace import TRACE_EVENT_TYPES

__all__ = [
    "FloodSub",
    "GossipSub",
    "PubSub",
    "PubSubOptions",
    "Topic",
    "Subscription",
    "Message",
    "PeerEvent",
    "PeerEvents",
    "ValidationResult",
    "ACCEPT",
    "REJECT",
    "IGNORE",
    "FLOODSUB_ID",
    "MESHSUB_IDS",
    "FLOODSUB_PROTOCOLS",
    "GOSSIPSUB_PROTOCOLS",
    "TRACE_EVENT_TYPES",
    "make_pubsub",
]
