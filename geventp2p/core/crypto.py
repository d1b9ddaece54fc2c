"""Key contracts: what ``core`` needs from an identity key, with no implementation.

``core`` (peer IDs, signed peer records) types against the two small protocols
here; :mod:`geventp2p.crypto.keys` implements them (Ed25519, secp256k1, ECDSA,
RSA).  Nothing in ``core`` imports ``geventp2p.crypto``: turning key protobuf
bytes into a key object is the job of
:func:`geventp2p.crypto.keys.unmarshal_public_key`, and code that needs it passes
it in (see :func:`geventp2p.core.record.consume_peer_record`).

Key encodings: https://github.com/libp2p/specs/blob/master/peer-ids/peer-ids.md#keys
"""

from __future__ import annotations

import enum
from typing import Callable, Protocol, runtime_checkable

__all__ = ["KeyType", "PublicKey", "PrivateKey", "PublicKeyDecoder"]


class KeyType(enum.IntEnum):
    """The ``KeyType`` enum of the libp2p key protobuf (``PublicKey.Type`` / ``PrivateKey.Type``)."""

    RSA = 0
    Ed25519 = 1
    Secp256k1 = 2
    ECDSA = 3


@runtime_checkable
class PublicKey(Protocol):
    """A libp2p public key.

    ``marshal()`` is the deterministic ``PublicKey`` protobuf
    (``08 <type> 12 <len> <Data>``) that a peer ID is derived from.
    """

    __slots__ = ()

    @property
    def key_type(self) -> KeyType: ...

    def raw(self) -> bytes:
        """The ``Data`` field of the key protobuf."""
        ...

    def marshal(self) -> bytes:
        """The serialized ``PublicKey`` protobuf."""
        ...

    def verify(self, data: bytes, sig: bytes) -> bool:
        """True if ``sig`` signs ``data``; False (never an exception) for a bad signature."""
        ...


@runtime_checkable
class PrivateKey(Protocol):
    """A libp2p private key: signs, and knows its public half."""

    __slots__ = ()

    @property
    def key_type(self) -> KeyType: ...

    def sign(self, data: bytes) -> bytes:
        """Sign ``data`` with the key type's libp2p signature scheme."""
        ...

    def public_key(self) -> PublicKey: ...

    def marshal(self) -> bytes:
        """The serialized ``PrivateKey`` protobuf (secret)."""
        ...


#: Turns a serialized ``PublicKey`` protobuf into a key; raises ``InvalidKeyError`` on bad input.
PublicKeyDecoder = Callable[[bytes], PublicKey]
