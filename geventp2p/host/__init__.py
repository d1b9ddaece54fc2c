"""geventp2p.host: event bus, peerstore and (later) the basic host."""

from geventp2p.host.eventbus import WILDCARD, Emitter, EventBus, Subscription
from geventp2p.host.peerstore import Peerstore

__all__ = ["EventBus", "Emitter", "Subscription", "WILDCARD", "Peerstore"]
