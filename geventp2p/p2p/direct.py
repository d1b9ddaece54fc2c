"""The direct-send stream protocol of the p2p Server (``/geventp2p/p2p/direct/1.0.0``).

One stream per ``Server.send``, negotiated with multistream-select
(https://github.com/multiformats/multistream-select).  The sender writes one or
more frames, then closes its side; the receiver reads frames until EOF::

    frame = uvarint(len(body)) || body
    body  = uvarint(len(topic)) || topic (UTF-8) || encoded message

Each frame is checked in this order; the first failure resets the stream with
:attr:`DirectMessageError.error_code` (the protocol-error code, 1) and raises a
typed :class:`~geventp2p.exceptions.DirectMessageError` naming the peer:

* a body longer than ``max_frame_size`` -> :class:`DirectFrameTooLargeError`
  (checked from the length prefix, before the body is read);
* a bad topic header (or bad UTF-8) -> :class:`UndecodableMessageError`;
* a topic with no registered type -> :class:`UnknownTopicError`;
* a payload the topic's type cannot decode -> :class:`UndecodableMessageError`.

Other streams, and the connection, are not affected.  The protocol id is
``ServerConfig.direct_protocol``.
"""

from __future__ import annotations

from typing import Any

from geventp2p._speedups import varint
from geventp2p.exceptions import (
    DirectFrameTooLargeError,
    IncompleteReadError,
    LocalProtocolError,
    UndecodableMessageError,
    VarintError,
)

__all__ = ["PROTOCOL_ID", "DEFAULT_MAX_FRAME_SIZE", "encode_frame", "parse_body", "read_frame"]

PROTOCOL_ID = "/geventp2p/p2p/direct/1.0.0"
#: Largest frame body accepted and sent (1 MiB, as pubsub's RPC limit).
DEFAULT_MAX_FRAME_SIZE = 1 << 20
_READ_SIZE = 64 * 1024


def encode_frame(topic: str, payload: bytes, max_size: int = DEFAULT_MAX_FRAME_SIZE) -> bytes:
    """The frame carrying ``payload`` on ``topic``; LocalProtocolError if over ``max_size``."""
    t = topic.encode()
    head = varint.encode_uvarint(len(t)) + t
    size = len(head) + len(payload)
    if size > max_size:
        raise LocalProtocolError(f"direct frame of {size} bytes exceeds the limit of {max_size}")
    return b"".join((varint.encode_uvarint(size), head, payload))


def parse_body(body: bytes, peer: Any = None) -> tuple[str, bytes]:
    """``(topic, payload)`` of a frame body; UndecodableMessageError for a bad topic header."""
    try:
        res = varint.decode_uvarint(body, 0)
    except VarintError as exc:
        raise UndecodableMessageError(f"bad topic length in direct frame: {exc}", peer=peer) from exc
    if res is None:
        raise UndecodableMessageError("direct frame too short for its topic header", peer=peer)
    n, start = res
    end = start + n
    if n == 0 or end > len(body):
        raise UndecodableMessageError("direct frame topic length out of range", peer=peer)
    try:
        topic = body[start:end].decode()
    except UnicodeDecodeError as exc:
        raise UndecodableMessageError("direct frame topic is not UTF-8", peer=peer) from exc
    return topic, body[end:]


def read_frame(stream: Any, buf: bytearray, max_size: int, timeout: float | None, peer: Any = None) -> bytes | None:
    """Blocks the calling greenlet until one frame body is read; None at a clean EOF.

    ``buf`` holds bytes read past the previous frame.  ``timeout`` bounds each read.
    Raises DirectFrameTooLargeError (from the prefix alone), IncompleteReadError for a
    frame cut by EOF, VarintError for a bad prefix, and the stream's own errors.
    """
    while True:
        res = varint.decode_uvarint(buf, 0)
        if res is not None:
            length, start = res
            if length > max_size:
                raise DirectFrameTooLargeError(
                    f"direct frame of {length} bytes exceeds the limit of {max_size}", peer=peer)
            have = len(buf) - start
            if have >= length:
                body = bytes(buf[start:start + length])
                del buf[:start + length]
                return body
            rest: bytes = stream.read_exactly(length - have, timeout=timeout)
            body = bytes(buf[start:]) + rest
            buf.clear()
            return body
        chunk = stream.read(_READ_SIZE, timeout=timeout)
        if not chunk:
            if buf:
                raise IncompleteReadError(bytes(buf), len(buf) + 1)
            return None
        buf += chunk
