"""The p2p Server: how applications use geventp2p without touching streams.

After Prysm's ``p2p`` package: typed topics over gossipsub (or floodsub), direct
sends over one stream protocol, one-to-many :class:`Feed`\\ s of received messages,
and :data:`Adapter` middleware::

    from geventp2p.p2p import Server, ServerConfig, RateLimiter

    with Server(ServerConfig(bootstrap=["/ip4/10.0.0.1/tcp/9000/p2p/12D3Koo..."])) as srv:
        srv.register_topic("blocks", Block, RateLimiter(rate=10, burst=20))
        q = gevent.queue.Queue(64)
        srv.subscribe(Block, q)
        srv.broadcast(Block(slot=1))
        msg = q.get()        # Message(peer, data, topic, received_at, via)

See :mod:`geventp2p.p2p.server` for the details and the mapping to Prysm's names.
"""

from __future__ import annotations

from geventp2p.exceptions import (
    DirectFrameTooLargeError,
    DirectMessageError,
    DirectSendError,
    DirectSendTimeoutError,
    FeedTimeoutError,
    P2PServerError,
    ServerStoppedError,
    TopicAlreadyRegisteredError,
    TopicNotRegisteredError,
    UndecodableMessageError,
    UnknownTopicError,
)
from geventp2p.p2p.adapters import Adapter, DuplicateFilter, Handler, LoggingAdapter, Message, RateLimiter, chain
from geventp2p.p2p.encoding import PROTOBUF, Encoding, ProtobufEncoding, SszSnappyEncoding
from geventp2p.p2p.feed import ErrChannel, Feed, Subscription
from geventp2p.p2p.server import DIRECT_PROTOCOL_ID, Broadcaster, Sender, Server, ServerConfig, make_peer
from geventp2p.protocols.pubsub import ACCEPT, IGNORE, REJECT, ValidationResult

__all__ = [
    "Server",
    "ServerConfig",
    "Sender",
    "Broadcaster",
    "make_peer",
    "DIRECT_PROTOCOL_ID",
    "Message",
    "Handler",
    "Adapter",
    "chain",
    "RateLimiter",
    "DuplicateFilter",
    "LoggingAdapter",
    "Feed",
    "Subscription",
    "ErrChannel",
    "Encoding",
    "ProtobufEncoding",
    "SszSnappyEncoding",
    "PROTOBUF",
    "ValidationResult",
    "ACCEPT",
    "REJECT",
    "IGNORE",
    "P2PServerError",
    "ServerStoppedError",
    "TopicNotRegisteredError",
    "TopicAlreadyRegisteredError",
    "FeedTimeoutError",
    "DirectSendError",
    "DirectSendTimeoutError",
    "DirectMessageError",
    "UnknownTopicError",
    "UndecodableMessageError",
    "DirectFrameTooLargeError",
]
