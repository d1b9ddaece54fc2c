"""multistream-select ``/multistream/1.0.0`` as a sans-I/O codec and negotiators.

Spec: https://github.com/multiformats/multistream-select and
https://github.com/libp2p/specs/blob/master/connections/README.md#protocol-negotiation.

Wire format: every message is ``uvarint(len(text) + 1) || text || "\\n"``.
Limits: a message may be at most 1024 bytes including the newline (go and
js reject larger ones); it must end with ``\\n`` and must not be empty; protocol IDs
must start with ``/`` (rust rejects others), the only other tokens are ``na`` and ``ls``.

Pieces:

* ``encode_message(token)`` / ``decode_message(buf, offset)`` - one message.
* ``encode_ls_response(protocols)`` / ``decode_ls_response(body)`` - the ``ls`` answer.
* ``MessageReader`` - incremental parser that stops where you tell it to, so bytes
  after the last negotiation message stay available (``unconsumed()``).
* ``Dialer`` / ``Listener`` - the initiator and responder state machines.  Feed bytes with
  ``receive_data``, send whatever ``data_to_send()`` returns; once ``done`` the chosen
  protocol is ``protocol`` and ``unconsumed()`` holds the bytes that followed the final
  message (they belong to the next layer).

No gevent, no sockets, no clocks.  Errors: ``VarintError`` (bad length prefix),
``MessageTooLargeError`` (over the limit), ``RemoteProtocolError`` (malformed
message), ``NegotiationError`` (wrong header, ``na`` for every proposal, unexpected
reply), ``LocalProtocolError`` (we were asked to send something invalid).
"""

from __future__ import annotations

from typing import Callable, Iterable, List, Optional, Sequence, Tuple

from geventp2p._speedups import varint
from geventp2p.exceptions import (
    LocalProtocolError,
    MessageTooLargeError,
    NegotiationError,
    RemoteProtocolError,
)

__all__ = [
    "PROTOCOL_ID",
    "NA",
    "LS",
    "SIMULTANEOUS_CONNECT",
    "MAX_MESSAGE_SIZE",
    "encode_message",
    "decode_message",
    "encode_ls_response",
    "decode_ls_response",
    "parse_ls_body",
    "validate_protocol_id",
    "MessageReader",
    "Dialer",
    "Listener",
]

PROTOCOL_ID = "/multistream/1.0.0"
NA = "na"
LS = "ls"
#: Deprecated simultaneous-open extension; always answered with ``na``.
SIMULTANEOUS_CONNECT = "/libp2p/simultaneous-connect"
#: Largest accepted message, newline included (go / js limit).
MAX_MESSAGE_SIZE = 1024

_SPECIAL = (NA, LS)


def validate_protocol_id(protocol: str) -> str:
    """Check a protocol ID we are about to send or register; return it."""
    if not isinstance(protocol, str):
        raise LocalProtocolError(f"protocol id must be str, got {type(protocol).__name__}")
    if not protocol.startswith("/"):
        raise LocalProtocolError(f"protocol id must start with '/': {protocol!r}")
    if "\n" in protocol:
        raise LocalProtocolError(f"protocol id must not contain a newline: {protocol!r}")
    if len(protocol.encode("utf-8")) + 1 > MAX_MESSAGE_SIZE:
        raise LocalProtocolError(f"protocol id longer than {MAX_MESSAGE_SIZE - 1} bytes")
    return protocol


def _encode_raw(body: bytes) -> bytes:
    return varint.encode_uvarint(len(body)) + body


_ENCODED: dict = {}


def encode_message(token: str) -> bytes:
    """Return ``LP(token + "\\n")``; ``token`` is a protocol ID, ``na`` or ``ls``."""
    msg = _ENCODED.get(token)
    if msg is not None:
        return msg
    if token not in _SPECIAL:
        validate_protocol_id(token)
    msg = _encode_raw(token.encode("utf-8") + b"\n")
    if len(_ENCODED) >= 1024:  # protocol ids are few; bound it anyway
        _ENCODED.clear()
    _ENCODED[token] = msg
    return msg


def _check_token(body: bytes) -> str:
    if not body:
        raise RemoteProtocolError("empty multistream message")
    if body[-1] != 0x0A:
        raise RemoteProtocolError("multistream message lacks the trailing newline")
    try:
        token = body[:-1].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RemoteProtocolError("multistream message is not valid UTF-8") from exc
    if token in _SPECIAL:
        return token
    if not token.startswith("/") or "\n" in token:
        raise RemoteProtocolError(f"invalid protocol id in multistream message: {token[:64]!r}")
    return token


def _decode_body(buf, offset: int) -> Optional[Tuple[bytes, int]]:
    res = varint.decode_uvarint(buf, offset)
    if res is None:
        return None
    length, start = res
    if length > MAX_MESSAGE_SIZE:
        raise MessageTooLargeError(
            f"multistream message of {length} bytes exceeds the limit of {MAX_MESSAGE_SIZE}"
        )
    end = start + length
    if end > len(buf):
        return None
    return bytes(buf[start:end]), end


def decode_message(buf, offset: int = 0) -> Optional[Tuple[str, int]]:
    """Decode one message at ``offset``: ``(token, next_offset)`` or ``None`` if incomplete.

    Raises VarintError, MessageTooLargeError or RemoteProtocolError on malformed input
    (as soon as the fault is visible, without waiting for the whole message).
    """
    res = _decode_body(buf, offset)
    if res is None:
        return None
    body, end = res
    return _check_token(body), end


def encode_ls_response(protocols: Iterable[str]) -> bytes:
    """The answer to ``ls``: ``LP( LP(p1 "\\n") ... LP(pn "\\n") "\\n" )``."""
    body = b"".join(encode_message(p) for p in protocols) + b"\n"
    if len(body) > MAX_MESSAGE_SIZE:
        raise LocalProtocolError("ls response exceeds the multistream message limit")
    return _encode_raw(body)


def decode_ls_response(buf, offset: int = 0) -> Optional[Tuple[List[str], int]]:
    """Decode an ``ls`` answer: ``(protocols, next_offset)`` or ``None`` if incomplete."""
    res = _decode_body(buf, offset)
    if res is None:
        return None
    body, end = res
    return parse_ls_body(body), end


def parse_ls_body(body: bytes) -> List[str]:
    """Parse the body of an ``ls`` answer (the message without its outer length)."""
    if not body or body[-1] != 0x0A:
        raise RemoteProtocolError("ls response lacks the trailing newline")
    inner = body[:-1]
    protocols = []
    pos = 0
    while pos < len(inner):
        item = decode_message(inner, pos)
        if item is None:
            raise RemoteProtocolError("truncated entry in ls response")
        token, pos = item
        protocols.append(token)
    return protocols


#: Parsed bytes kept at the head of a ``MessageReader`` buffer before it is compacted.
_COMPACT_AT = 4096

#: Refused proposals remembered by a negotiator, for log lines.  The count is unbounded
#: (``rejected_count``); the names are not, so a peer proposing protocol after
#: protocol costs CPU until the negotiation timeout, but no memory.
MAX_REMEMBERED_REJECTIONS = 16


class MessageReader:
    """Incremental message parser.

    ``feed(data)`` appends bytes; ``next_message()`` returns the next token or ``None``
    when more bytes are needed.  Bytes after the last returned message are never
    consumed: ``unconsumed()`` hands them out.  A failed parse changes nothing.
    """

    __slots__ = ("_buf", "_pos")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0

    def feed(self, data) -> None:
        pos = self._pos
        if pos:
            if pos == len(self._buf):
                self._buf.clear()
            elif pos >= _COMPACT_AT:
                # A peer streaming message after message never lets the buffer run
                # empty; drop what was parsed so it cannot grow without bound.
                del self._buf[:pos]
            else:
                pos = -1
            if pos >= 0:
                self._pos = 0
        self._buf += data

    def next_message(self) -> Optional[str]:
        res = decode_message(self._buf, self._pos)
        if res is None:
            return None
        token, self._pos = res
        return token

    def next_body(self) -> Optional[bytes]:
        """Next raw message body (newline included, unchecked) or ``None``; limits apply."""
        res = _decode_body(self._buf, self._pos)
        if res is None:
            return None
        body, self._pos = res
        return body

    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def unconsumed(self) -> bytes:
        """Return and drop the bytes not yet parsed."""
        data = bytes(self._buf[self._pos:])
        self._buf.clear()
        self._pos = 0
        return data


class _Negotiator:
    def __init__(self) -> None:
        self._reader = MessageReader()
        self._out: List[bytes] = []
        self._header_received = False
        self.done = False
        self.protocol: Optional[str] = None
        #: The first refused protocols (at most ``MAX_REMEMBERED_REJECTIONS``).
        self.rejected: List[str] = []
        self.rejected_count = 0

    def _reject(self, protocol: str) -> None:
        self.rejected_count += 1
        if len(self.rejected) < MAX_REMEMBERED_REJECTIONS:
            self.rejected.append(protocol[:128])

    def data_to_send(self) -> bytes:
        """Drain the bytes queued for the peer."""
        out = b"".join(self._out)
        self._out.clear()
        return out

    def unconsumed(self) -> bytes:
        """Bytes received after the final negotiation message (belong to the next layer)."""
        return self._reader.unconsumed()

    def _take_header(self) -> bool:
        token = self._reader.next_message()
        if token is None:
            return False
        if token != PROTOCOL_ID:
            raise NegotiationError(
                f"received mismatch in protocol id: expected {PROTOCOL_ID!r}, got {token[:64]!r}"
            )
        self._header_received = True
        return True


class Dialer(_Negotiator):
    """Initiator side: propose ``protocols`` in order until one is echoed.

    The header and the first proposal are queued together.  After an ``na`` the next
    proposal is queued alone.  ``receive_data`` returns True once a protocol was
    accepted; then ``protocol`` is set and no more bytes are consumed.

    ``lazy=True`` is the pipelined single-protocol variant: identical on the wire,
    the shell just does not wait for the echo before sending application data; an
    ``na`` then fails negotiation at once.
    """

    def __init__(self, protocols: Sequence[str], *, lazy: bool = False) -> None:
        super().__init__()
        protocols = list(protocols)
        if not protocols:
            raise LocalProtocolError("no protocols to propose")
        for p in protocols:
            validate_protocol_id(p)
        if lazy and len(protocols) != 1:
            raise LocalProtocolError("lazy negotiation proposes exactly one protocol")
        self.protocols = tuple(protocols)
        self.lazy = lazy
        self._index = 0
        self._out.append(encode_message(PROTOCOL_ID) + encode_message(protocols[0]))

    @property
    def proposing(self) -> str:
        """The protocol currently awaiting an answer."""
        return self.protocols[self._index]

    def receive_data(self, data) -> bool:
        """Feed bytes from the peer; return True once negotiation succeeded."""
        if self.done:
            raise LocalProtocolError("negotiation already finished")
        self._reader.feed(data)
        if not self._header_received and not self._take_header():
            return False
        while True:
            token = self._reader.next_message()
            if token is None:
                return False
            current = self.protocols[self._index]
            if token == current:
                self.done = True
                self.protocol = current
                return True
            if token == NA:
                self._reject(current)
                self._index += 1
                if self._index >= len(self.protocols):
                    raise NegotiationError(
                        "protocols not supported by the peer: " + ", ".join(self.protocols)
                    )
                self._out.append(encode_message(self.protocols[self._index]))
                continue
            raise NegotiationError(f"unrecognized response to {current!r}: {token[:64]!r}")


class Listener(_Negotiator):
    """Responder side: echo the first supported proposal, ``na`` the others.

    ``supports`` is either a callable ``protocol -> bool`` or an iterable of protocol
    IDs.  ``ls`` is answered with ``ls_protocols`` (defaults to the iterable's items;
    with only a predicate, ``ls`` gets ``na`` as go does).  The header is queued at
    construction, so the shell can send it before anything arrives.
    """

    def __init__(self, supports, *, ls_protocols: Optional[Iterable[str]] = None) -> None:
        super().__init__()
        if callable(supports) and not isinstance(supports, (list, tuple, set, frozenset, dict)):
            self._supports: Callable[[str], bool] = supports
            self._ls = ls_protocols  # listed only if ``ls`` arrives
        else:
            table = frozenset(supports)
            self._supports = table.__contains__
            self._ls = ls_protocols if ls_protocols is not None else list(supports)
        self._out.append(encode_message(PROTOCOL_ID))

    def receive_data(self, data) -> bool:
        """Feed bytes from the peer; return True once a proposal was accepted (and echoed)."""
        if self.done:
            raise LocalProtocolError("negotiation already finished")
        self._reader.feed(data)
        if not self._header_received and not self._take_header():
            return False
        while True:
            token = self._reader.next_message()
            if token is None:
                return False
            if token == LS:
                if self._ls is None:
                    self._out.append(encode_message(NA))
                else:
                    self._out.append(encode_ls_response(list(self._ls)))
                continue
            if token != NA and token != SIMULTANEOUS_CONNECT and self._supports(token):
                self._out.append(encode_message(token))
                self.done = True
                self.protocol = token
                return True
            self._reject(token)
            self._out.append(encode_message(NA))
