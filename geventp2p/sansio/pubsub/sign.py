"""Message authoring: signatures, the signature policy, sequence numbers, message IDs.

Signing (https://github.com/libp2p/specs/blob/master/pubsub/README.md#message-signing):
the author signs ``b"libp2p-pubsub:" || Message{from, data, seqno, topic}`` (the
message without ``signature`` and ``key``) with its identity key.  ``key`` carries
the serialized public key only when it is not inlined in ``from`` (RSA, ECDSA).
Verification removes both ``signature`` and ``key`` (as go, js and rust do; the
spec text names only ``signature``) and checks with the key from ``key``, which
must hash to ``from``, or with the key inlined in ``from``.

Message IDs travel in IHAVE/IWANT/IDONTWANT, so every peer of a topic must compute
the same ones.  The default, :func:`default_msg_id`, is the spec's and go's
``from || seqno``; :func:`js_msg_id` is js-libp2p's (``PublicKey(author) || seqno``),
:func:`py_msg_id` py-libp2p's (``seqno || from``), and :func:`content_msg_id`
(SHA-256 of the data) is the one to use with StrictNoSign.  Peers that disagree on IDs
still forward full messages, but IHAVE/IWANT/IDONTWANT miss and IWANT promises break.
"""

from __future__ import annotations

import hashlib
import os
import struct
from enum import Enum
from typing import Callable

from geventp2p.core.peer import PeerId
from geventp2p.crypto.keys import PrivateKey, PublicKey, extract_public_key, unmarshal_public_key
from geventp2p.exceptions import InvalidKeyError, InvalidPeerIdError, MessageSignatureError
from geventp2p.sansio.pubsub.rpc import Message, signed_part

__all__ = [
    "SIGN_PREFIX",
    "SignaturePolicy",
    "MsgIdFn",
    "sign_message",
    "verify_message",
    "check_policy",
    "SeqnoCounter",
    "default_msg_id",
    "js_msg_id",
    "py_msg_id",
    "content_msg_id",
]

SIGN_PREFIX = b"libp2p-pubsub:"

MsgIdFn = Callable[[Message], bytes]


class SignaturePolicy(Enum):
    """``STRICT_SIGN`` (default of go, js and rust): author, seqno and signature are
    required and checked.  ``STRICT_NO_SIGN``: ``from``, ``seqno``, ``signature`` and
    ``key`` must all be absent."""

    STRICT_SIGN = "strict-sign"
    STRICT_NO_SIGN = "strict-no-sign"


def sign_message(msg: Message, private_key: PrivateKey) -> Message:
    """Set ``from_peer`` (when unset), ``signature`` and, for non-inlined keys, ``key`` on ``msg``.

    ``msg`` needs ``seqno`` set; returns ``msg`` (changed in place, its ``raw`` cache reset).
    """
    author = PeerId.from_private_key(private_key)
    if msg.from_peer is None:
        msg.from_peer = author.to_bytes()
    elif msg.from_peer != author.to_bytes():
        raise MessageSignatureError("from_peer is not the peer ID of the signing key")
    msg.signature = None
    msg.key = None
    msg.raw = None
    sig = private_key.sign(SIGN_PREFIX + signed_part(msg))
    msg.signature = sig
    msg.key = None if author.is_inline else private_key.public_key().marshal()
    msg.raw = None
    return msg


def _author_key(msg: Message) -> PublicKey:
    if msg.from_peer is None:
        raise MessageSignatureError("message has no author (from)")
    try:
        author = PeerId.from_bytes(msg.from_peer)
    except InvalidPeerIdError as exc:
        raise MessageSignatureError(f"bad author peer ID: {exc}") from None
    try:
        if msg.key is not None:
            pub = unmarshal_public_key(msg.key)
            if not author.matches_public_key(msg.key):
                raise MessageSignatureError("the key field does not match the author peer ID")
            return pub
        inline = extract_public_key(author)
    except InvalidKeyError as exc:
        raise MessageSignatureError(f"bad author key: {exc}") from None
    if inline is None:
        raise MessageSignatureError("author key is neither inlined in from nor sent in key")
    return inline


def verify_message(msg: Message) -> None:
    """Check the signature of a StrictSign message; raises :class:`MessageSignatureError`."""
    if msg.signature is None:
        raise MessageSignatureError("message is not signed")
    if msg.seqno is None:
        raise MessageSignatureError("signed message has no seqno")
    pub = _author_key(msg)
    try:
        ok = pub.verify(SIGN_PREFIX + signed_part(msg), msg.signature)
    except Exception as exc:  # a backend may raise on malformed signatures
        raise MessageSignatureError(f"invalid signature: {exc}") from None
    if not ok:
        raise MessageSignatureError("invalid signature")


def check_policy(msg: Message, policy: SignaturePolicy) -> str | None:
    """The reason ``msg`` breaks ``policy`` by the presence of its fields, or None.

    This is the cheap check made before validation; the signature itself is checked
    by :func:`verify_message` during validation.
    """
    if policy is SignaturePolicy.STRICT_SIGN:
        if msg.signature is None:
            return "missing signature"
        if msg.from_peer is None:
            return "missing author"
        # 8 bytes on the wire; like go, accept 1..8 (js floodsub drops leading zero bytes)
        if msg.seqno is None or not 0 < len(msg.seqno) <= 8:
            return "seqno must be 1 to 8 bytes"
        return None
    if msg.from_peer is not None or msg.seqno is not None or msg.signature is not None or msg.key is not None:
        return "unexpected author, seqno, signature or key under StrictNoSign"
    return None


class SeqnoCounter:
    """8-byte big-endian sequence numbers: a counter starting at a random 64-bit value.

    (go starts at the Unix time in nanoseconds, js draws random bytes; any unique
    sequence is valid.)
    """

    __slots__ = ("_next",)

    def __init__(self, start: int | None = None) -> None:
        self._next = int.from_bytes(os.urandom(8), "big") if start is None else start

    def next(self) -> bytes:
        v = self._next & 0xFFFFFFFFFFFFFFFF
        self._next = v + 1
        return struct.pack(">Q", v)


def default_msg_id(msg: Message) -> bytes:
    """``from || seqno`` (the spec's and go's default)."""
    return (msg.from_peer or b"") + (msg.seqno or b"")


def js_msg_id(msg: Message) -> bytes:
    """js-libp2p's default: the serialized public key of the author ``|| seqno``."""
    if msg.key is not None:
        key = msg.key
    else:
        inline = PeerId.from_bytes(msg.from_peer).inline_public_key() if msg.from_peer else None
        key = inline if inline is not None else (msg.from_peer or b"")
    return key + (msg.seqno or b"")


def py_msg_id(msg: Message) -> bytes:
    """py-libp2p's default: ``seqno || from`` (the reverse of go's order)."""
    return (msg.seqno or b"") + (msg.from_peer or b"")


def content_msg_id(msg: Message) -> bytes:
    """SHA-256 of the data (js's StrictNoSign default)."""
    return hashlib.sha256(msg.data).digest()
