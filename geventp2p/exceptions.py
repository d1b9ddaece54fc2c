"""The single exception tree of geventp2p.

Every module raises from here, so callers can catch by role (``StreamError``,
``ProtocolError``, ...) without knowing which protocol raised.  Wire error codes
live on the class (``error_code``), as in h2 and go-libp2p, so a shell can reset
a stream or close a session with the right code directly.

The ``_speedups`` hot-path modules import only this module, so the pure and the
compiled builds raise the very same classes.
"""

from __future__ import annotations

from typing import Any, Optional

__all__ = [
    "P2PError",
    "ConfigError",
    "ProtocolError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "NegotiationError",
    "VarintError",
    "MessageTooLargeError",
    "FrameError",
    "WindowError",
    "SecurityError",
    "PeerIdMismatchError",
    "InvalidSignatureError",
    "TlsCertificateError",
    "InvalidKeyError",
    "InvalidPeerIdError",
    "MultiaddrError",
    "TransportError",
    "DialError",
    "NoConnError",
    "StreamError",
    "StreamResetError",
    "StreamClosedError",
    "ConnectionClosedError",
    "ResourceLimitExceeded",
    "ResourceScopeClosed",
    "P2PTimeoutError",
    "IncompleteReadError",
    "SubscriptionClosedError",
    "DialSelfError",
    "NoAddressesError",
    "NoGoodAddressesError",
    "DialBackoffError",
    "DialGatedError",
    "SwarmClosedError",
    "AllDialsFailedError",
    "DialTimeoutError",
    "DialResourceLimitError",
    "PubSubError",
    "RPCDecodeError",
    "RPCTooLargeError",
    "MessageSignatureError",
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


class P2PError(Exception):
    """Root of every error geventp2p raises on purpose."""


class ConfigError(P2PError, ValueError):
    """A configuration value or argument is invalid."""


# --------------------------------------------------------------------------- protocol


class ProtocolError(P2PError):
    """The byte stream broke a protocol rule.

    ``error_code`` is the wire code a shell should use when it ends the stream
    or connection because of this error (yamux GoAway code 1 = protocol error).
    """

    error_code = 1


class LocalProtocolError(ProtocolError):
    """We were asked to do something the protocol forbids."""


class RemoteProtocolError(ProtocolError):
    """The remote peer sent bytes that break the protocol."""


class NegotiationError(ProtocolError):
    """multistream-select failed: ``na`` for every proposal, or a bad exchange."""

    error_code = 0x1001  # go-libp2p stream code "protocol negotiation failed"


class VarintError(RemoteProtocolError, ValueError):
    """An unsigned varint is overlong (more than 9 bytes) or not minimally encoded."""


class MessageTooLargeError(RemoteProtocolError):
    """A length-prefixed message or frame declares more bytes than the limit allows."""


class FrameError(RemoteProtocolError):
    """A muxer frame header is malformed (bad version, type or flags)."""


class WindowError(RemoteProtocolError):
    """Flow-control violation: data beyond the granted window, or u32 overflow."""


# --------------------------------------------------------------------------- security / identity


class SecurityError(P2PError):
    """The security handshake failed."""


class PeerIdMismatchError(SecurityError):
    """The remote authenticated as a different peer than the one we dialed."""

    def __init__(self, expected: Any, actual: Any) -> None:
        super().__init__(f"remote peer is {actual}, expected {expected}")
        self.expected = expected
        self.actual = actual


class InvalidSignatureError(SecurityError):
    """A signature did not verify."""


class TlsCertificateError(SecurityError):
    """A peer's libp2p TLS certificate breaks a rule of the spec (count, validity, extensions)."""


class InvalidKeyError(P2PError, ValueError):
    """A key could not be parsed, or has an unsupported type or size."""



class InvalidPeerIdError(P2PError, ValueError):
    """A peer ID string or multihash is not valid."""


class MultiaddrError(P2PError, ValueError):
    """A multiaddr is malformed or lacks a component an operation needs."""


# --------------------------------------------------------------------------- network


class TransportError(P2PError, OSError):
    """A transport-level failure; the original ``OSError`` is the ``__cause__``."""


class DialError(P2PError):
    """Dialing a peer failed.

    ``peer_id`` names the peer, ``attempts`` lists ``(addr, exception)`` for each
    address tried, and ``cause`` is the overall reason when there was one.
    """

    def __init__(
        self,
        peer_id: Any,
        message: str = "",
        attempts: Optional[list[tuple[Any, BaseException]]] = None,
        cause: Optional[BaseException | str] = None,
    ) -> None:
        self.peer_id = peer_id
        self.attempts = list(attempts or [])
        self.cause = cause
        parts = [f"failed to dial {peer_id}"]
        if message:
            parts.append(message)
        if self.attempts:
            parts.append("; ".join(f"{a}: {e}" for a, e in self.attempts))
        super().__init__(": ".join(parts))


class NoConnError(DialError):
    """No connection to the peer exists and dialing was not allowed."""


class StreamError(P2PError):
    """Base class for errors on one stream."""


class StreamResetError(StreamError):
    """The stream was reset, locally or by the remote (``remote``), with ``error_code``."""

    def __init__(self, message: str = "stream reset", *, error_code: int = 0, remote: bool = False) -> None:
        super().__init__(f"{message} (code {error_code:#x}, {'remote' if remote else 'local'})")
        self.error_code = error_code
        self.remote = remote


class StreamClosedError(StreamError):
    """Use of a stream direction that is already closed (e.g. write after close_write)."""


class ConnectionClosedError(StreamResetError):
    """The underlying connection ended; the stream cannot continue."""

    def __init__(self, message: str = "connection closed", *, error_code: int = 0, remote: bool = True) -> None:
        super().__init__(message, error_code=error_code, remote=remote)


class ResourceLimitExceeded(P2PError):
    """A resource scope refused a reservation.

    ``scope`` names the scope (go's names: ``system``, ``transient``, ``peer:<id>``,
    ``protocol-peer:/echo/1.0.0``, ...), ``resource`` what was asked for (``memory``,
    ``streams (inbound)``, ``conns (outbound)``, ``fd``), and ``used``, ``requested``
    and ``limit`` the figures, when known.  The wire code is go's
    ``StreamResourceLimitExceeded`` (a stream reset with it tells the peer why).
    """

    error_code = 0x1002

    def __init__(
        self,
        scope: str = "",
        resource: str = "",
        stat: Any = None,
        *,
        used: int | None = None,
        requested: int | None = None,
        limit: int | None = None,
    ) -> None:
        figures = ""
        if limit is not None:
            figures = f" (used {used}, requested {requested}, limit {limit})"
        super().__init__(f"resource limit exceeded: {resource} in scope {scope}{figures}")
        self.scope = scope
        self.resource = resource
        self.stat = stat
        self.used = used
        self.requested = requested
        self.limit = limit


class ResourceScopeClosed(P2PError):
    """A reservation was asked of a resource scope that is already done."""


class P2PTimeoutError(P2PError, TimeoutError):
    """A blocking call ran past its timeout or deadline."""


class IncompleteReadError(StreamError, EOFError):
    """EOF arrived before the requested number of bytes (``read_exactly``).

    ``partial`` holds the bytes read before EOF, ``expected`` the number asked for.
    """

    def __init__(self, partial: bytes, expected: int) -> None:
        super().__init__(f"EOF after {len(partial)} of {expected} bytes")
        self.partial = partial
        self.expected = expected


class SubscriptionClosedError(P2PError):
    """An event-bus subscription or emitter was used after ``close()``."""


# --------------------------------------------------------------------------- swarm dial causes
# Each has a class-level ``reason``; ``DialError.cause`` holds the reason string,
# or the underlying exception for ``AllDialsFailedError``/``DialTimeoutError``.


class DialSelfError(DialError):
    """Refused to dial our own peer ID."""

    reason = "dial to self attempted"


class NoAddressesError(DialError):
    """The peerstore holds no address for the peer."""

    reason = "no addresses"


class NoGoodAddressesError(DialError):
    """Every known address was filtered out (no transport, own address, gated...)."""

    reason = "no good addresses"


class DialBackoffError(DialError):
    """Every dialable address is in dial backoff after recent failures."""

    reason = "dial backoff"


class DialGatedError(DialError):
    """The connection gater refused the dial or the resulting connection."""

    reason = "gater disallows connection to peer"


class SwarmClosedError(DialError):
    """The swarm is closed (or closed while the dial was in flight)."""

    reason = "swarm closed"


class AllDialsFailedError(DialError):
    """Every address was dialed and every attempt failed (see ``attempts``)."""

    reason = "all dials failed"


class DialResourceLimitError(AllDialsFailedError):
    """Our resource manager refused every attempt (``cause`` is the :class:`ResourceLimitExceeded`)."""

    reason = "resource limit exceeded"


class DialTimeoutError(DialError, P2PTimeoutError):
    """The whole dial ran past its deadline."""

    reason = "dial timed out"


# --------------------------------------------------------------------------- pubsub


class PubSubError(P2PError):
    """Base class for floodsub/gossipsub errors."""


class RPCDecodeError(PubSubError, RemoteProtocolError, ValueError):
    """A pubsub RPC is not a valid protobuf of the RPC schema (truncated, bad wire type...)."""


class RPCTooLargeError(RPCDecodeError, MessageTooLargeError):
    """A pubsub RPC is larger than the configured maximum (1 MiB by default)."""


class MessageSignatureError(PubSubError, InvalidSignatureError):
    """A pubsub message breaks the signature policy: missing, malformed or wrong signature or key."""


# --------------------------------------------------------------------------- p2p Server (geventp2p.p2p)


class P2PServerError(P2PError):
    """Base class for errors of the application-level :mod:`geventp2p.p2p` Server."""


class ServerStoppedError(P2PServerError):
    """The Server is not running (never started, or stopped); ``status()`` returns one."""


class TopicNotRegisteredError(P2PServerError, LookupError):
    """No topic is registered for this message type (or topic name)."""


class TopicAlreadyRegisteredError(P2PServerError, ValueError):
    """The message type or the topic is already registered (to another topic or type)."""


class FeedTimeoutError(P2PTimeoutError):
    """``Feed.send`` timed out; ``nsent`` subscribers had taken the value by then."""

    def __init__(self, message: str, nsent: int) -> None:
        super().__init__(message)
        self.nsent = nsent


class DirectSendError(P2PServerError):
    """A direct send failed: ``peer`` names the peer, ``cause`` the underlying error."""

    def __init__(self, peer: Any, cause: BaseException | str) -> None:
        super().__init__(f"direct send to {peer} failed: {cause}")
        self.peer = peer
        self.cause = cause


class DirectSendTimeoutError(DirectSendError, P2PTimeoutError):
    """A direct send did not finish within its timeout."""


class DirectMessageError(P2PServerError, RemoteProtocolError):
    """A peer sent a bad direct-protocol frame; its stream is reset with ``error_code``.

    ``peer`` is the sender, ``topic`` the frame's topic when it was read.
    """

    def __init__(self, message: str, *, peer: Any = None, topic: str | None = None) -> None:
        super().__init__(f"{message} (from {peer})" if peer is not None else message)
        self.peer = peer
        self.topic = topic


class UnknownTopicError(DirectMessageError):
    """A direct frame names a topic this Server has not registered."""


class UndecodableMessageError(DirectMessageError):
    """A direct frame's payload (or its topic header) does not decode."""


class DirectFrameTooLargeError(DirectMessageError, MessageTooLargeError):
    """A direct frame declares more bytes than ``max_frame_size``."""
