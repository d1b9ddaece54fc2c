"""geventp2p.host: event bus, peerstore and (later) the basic host."""

from geventp2p.host.eventbus import WILDCARD, Emitter, EventBus, Subscription
from geventp2p.host.peerstore import Peerstore

__all__ = ["EventBus", "Emitter", "Subscription", "WILDCARD", "Peerstore"]

from geventp2p.host.basic import BasicHost  # noqa: E402

__all__ += ["BasicHost"]
