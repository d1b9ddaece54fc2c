"""PubSub for geventp2p: ``from geventp2p.pubsub import GossipSub, FloodSub``.

A blocking API over the floodsub and gossipsub routers (spec:
https://github.com/libp2p/specs/tree/master/pubsub)::

    ps = GossipSub(host)                 # or FloodSub(host); closed with the host
    # or: host = geventp2p.new_host(pubsub="gossipsub"); ps = host.pubsub
    topic = ps.join("news")
    sub = topic.subscribe()
    topic.publish(b"hello", timeout=5)   # blocks until queued to its peers
    for msg in sub:                      # msg.data .topic .from_peer .seqno .id .received_from
        ...
    ps.register_validator("news", lambda msg: ACCEPT, timeout=1.0)

See :mod:`geventp2p.protocols.pubsub` for the service and its options.
"""

from __future__ import annotations

from geventp2p.protocols.pubsub import (
    ACCEPT,
    FLOODSUB_ID,
    FLOODSUB_PROTOCOLS,
    GOSSIPSUB_PROTOCOLS,
    IGNORE,
    MESHSUB_IDS,
    REJECT,
    TRACE_EVENT_TYPES,
    FloodSub,
    GossipSub,
    Message,
    PeerEvent,
    PeerEvents,
    PubSub,
    PubSubOptions,
    Subscription,
    Topic,
    ValidationResult,
    make_pubsub,
)

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
