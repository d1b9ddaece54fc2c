"""Peer IDs and peer info.

A peer ID is a multihash of the serialized public key: the identity multihash
when the key protobuf is at most 42 bytes (Ed25519, secp256k1), else SHA-256.
Text forms: bare base58btc (``12D3KooW…``, ``16Uiu2…``, ``Qm…``) and CIDv1
with the ``libp2p-key`` codec in any supported multibase (``bafz…``).
Spec: https://github.com/libp2p/specs/blob/master/peer-ids/peer-ids.md#peer-ids

Keys are typed against the :mod:`geventp2p.core.crypto` protocols; this module
never imports an implementation.  To get a key object back out of an inline
peer ID use :func:`geventp2p.crypto.keys.extract_public_key`.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable, Union, cast

from geventp2p._speedups import varint
from geventp2p.core import multibase
from geventp2p.core.crypto import PrivateKey, PublicKey
from geventp2p.exceptions import InvalidPeerIdError, VarintError

__all__ = ["PeerId", "PeerInfo", "KeyLike", "MAX_INLINE_KEY_LENGTH", "LIBP2P_KEY_CODEC"]

MAX_INLINE_KEY_LENGTH = 42
LIBP2P_KEY_CODEC = 0x72
CIDV1 = 0x01
# Identity multihashes may inline keys; anything longer than this is not a peer ID.
_MAX_PEER_ID_BYTES = 256
_MAX_PEER_ID_TEXT = 512

#: What :meth:`PeerId.from_public_key` accepts.
KeyLike = Union[PublicKey, PrivateKey, bytes, bytearray, memoryview]


# Key classification by class: 2 = PrivateKey, 1 = PublicKey, 0 = neither.  A runtime
# protocol isinstance() walks the protocol's members on every call (~6 us); key classes
# are few and fixed, so the answer is kept per class (bounded, in case of odd callers).
_KEY_KIND: dict[type, int] = {}
_KEY_KIND_MAX = 64


def _key_kind(key: object) -> int:
    cls = type(key)
    kind = _KEY_KIND.get(cls)
    if kind is None:
        kind = 2 if isinstance(key, PrivateKey) else 1 if isinstance(key, PublicKey) else 0
        if len(_KEY_KIND) < _KEY_KIND_MAX:
            _KEY_KIND[cls] = kind
    return kind


def _public_key_bytes(key: object) -> bytes:
    """The serialized PublicKey protobuf of ``key`` (see :meth:`PeerId.from_public_key`)."""
    if isinstance(key, (bytes, bytearray, memoryview)):
        return bytes(key)
    kind = _key_kind(key)
    # PrivateKey first: a private key also has marshal(), of its *private* protobuf.
    if kind == 2:
        return cast(PrivateKey, key).public_key().marshal()
    if kind == 1:
        return cast(PublicKey, key).marshal()
    raise TypeError(f"expected a PublicKey or PrivateKey, got {type(key).__name__}")


class PeerId:
    """An immutable peer ID; equal, hashable and ordered by its multihash bytes."""

    __slots__ = ("_b", "_code", "_digest", "_b58")
    _b58: str | None

    def __init__(self, mh: bytes) -> None:
        mh = bytes(mh)
        if not mh:
            raise InvalidPeerIdError("empty peer ID")
        if len(mh) > _MAX_PEER_ID_BYTES:
            raise InvalidPeerIdError(f"peer ID of {len(mh)} bytes is too long")
        try:
            code, digest = multibase.multihash_decode(mh)
        except ValueError as exc:
            raise InvalidPeerIdError(f"peer ID is not a valid multihash: {exc}") from None
        if code == multibase.SHA2_256 and len(digest) != 32:
            raise InvalidPeerIdError(f"sha2-256 peer ID must carry 32 digest bytes, got {len(digest)}")
        if code != multibase.IDENTITY and not digest:
            raise InvalidPeerIdError("peer ID multihash has an empty digest")
        self._b = mh
        self._code = code
        self._digest = digest
        self._b58 = None

    # -- constructors
    @classmethod
    def from_bytes(cls, mh: bytes) -> "PeerId":
        """From the binary form (the multihash bytes)."""
        if not isinstance(mh, (bytes, bytearray, memoryview)):
            raise InvalidPeerIdError(f"binary peer ID must be bytes, got {type(mh).__name__}")
        return cls(mh)

    @classmethod
    def from_public_key(cls, key: KeyLike) -> "PeerId":
        """Derive the peer ID of a public key (a PublicKey, a serialized PublicKey protobuf, or a
        PrivateKey, whose public half is used).  Raises TypeError for anything else."""
        pk = _public_key_bytes(key)
        if len(pk) <= MAX_INLINE_KEY_LENGTH:
            return cls(multibase.multihash_encode(multibase.IDENTITY, pk))
        return cls(multibase.multihash_encode(multibase.SHA2_256, hashlib.sha256(pk).digest()))

    @classmethod
    def from_private_key(cls, key: PrivateKey) -> "PeerId":
        return cls.from_public_key(key.public_key())

    @classmethod
    def from_string(cls, s: str) -> "PeerId":
        """Parse a base58btc peer ID (``1…``/``Qm…``) or a CIDv1 ``libp2p-key`` in any supported multibase."""
        if not isinstance(s, str):
            raise InvalidPeerIdError(f"peer ID text must be str, got {type(s).__name__}")
        if not s or len(s) > _MAX_PEER_ID_TEXT:
            raise InvalidPeerIdError(f"invalid peer ID {s[:80]!r}: empty or too long")
        if s[0] == "1" or s.startswith("Qm"):
            try:
                return cls(multibase.b58decode(s))
            except ValueError as exc:
                raise InvalidPeerIdError(f"invalid peer ID {s!r}: {exc}") from None
            except InvalidPeerIdError as exc:
                raise InvalidPeerIdError(f"invalid peer ID {s!r}: {exc}") from None
        try:
            _, raw = multibase.multibase_decode(s)
        except ValueError as exc:
            raise InvalidPeerIdError(f"invalid peer ID {s!r}: {exc}") from None
        return cls._from_cid_bytes(raw, s)

    @classmethod
    def _from_cid_bytes(cls, raw: bytes, text: str) -> "PeerId":
        try:
            res = varint.decode_uvarint(raw, 0)
            if res is None:
                raise InvalidPeerIdError(f"invalid peer ID {text!r}: truncated CID")
            version, pos = res
            if version != CIDV1:
                raise InvalidPeerIdError(f"invalid peer ID {text!r}: CID version {version}, expected 1")
            res = varint.decode_uvarint(raw, pos)
            if res is None:
                raise InvalidPeerIdError(f"invalid peer ID {text!r}: truncated CID")
            codec, pos = res
        except VarintError as exc:
            raise InvalidPeerIdError(f"invalid peer ID {text!r}: {exc}") from None
        if codec != LIBP2P_KEY_CODEC:
            raise InvalidPeerIdError(f"invalid peer ID {text!r}: CID codec {codec:#x}, expected libp2p-key (0x72)")
        try:
            return cls(raw[pos:])
        except InvalidPeerIdError as exc:
            raise InvalidPeerIdError(f"invalid peer ID {text!r}: {exc}") from None

    # -- conversions
    def to_bytes(self) -> bytes:
        return self._b

    def __bytes__(self) -> bytes:
        return self._b

    def to_base58(self) -> str:
        s = self._b58
        if s is None:
            s = self._b58 = multibase.b58encode(self._b)
        return s

    def to_cid(self, base: str = "base32") -> str:
        """CIDv1 text (``bafz…`` in the default base32)."""
        return multibase.multibase_encode(base, b"\x01\x72" + self._b)

    def __str__(self) -> str:
        return self.to_base58()

    def short(self) -> str:
        """Abbreviated text for logs (like go's ShortString): last 6 characters."""
        s = self.to_base58()
        return f"{s[:2]}*{s[-6:]}"

    def __repr__(self) -> str:
        return f"<PeerId {self.to_base58()}>"

    # -- keys
    @property
    def is_inline(self) -> bool:
        """True when the public key is inlined (identity multihash)."""
        return self._code == multibase.IDENTITY

    def inline_public_key(self) -> bytes | None:
        """The serialized ``PublicKey`` protobuf inlined in an identity peer ID, or None when hashed.

        The bytes are not validated here; :func:`geventp2p.crypto.keys.extract_public_key`
        decodes them into a key object.
        """
        if self._code != multibase.IDENTITY:
            return None
        return self._digest

    def matches_public_key(self, key: object) -> bool:
        """True if ``key`` (as accepted by :meth:`from_public_key`) is this peer's key; False for
        anything else, including objects that are not keys."""
        try:
            return PeerId.from_public_key(_public_key_bytes(key))._b == self._b
        except (TypeError, InvalidPeerIdError):
            return False

    # -- value semantics
    def __eq__(self, other: object) -> bool:
        if isinstance(other, PeerId):
            return self._b == other._b
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        if isinstance(other, PeerId):
            return self._b != other._b
        return NotImplemented

    def __lt__(self, other: "PeerId") -> bool:
        if isinstance(other, PeerId):
            return self._b < other._b
        return NotImplemented

    def __le__(self, other: "PeerId") -> bool:
        if isinstance(other, PeerId):
            return self._b <= other._b
        return NotImplemented

    def __gt__(self, other: "PeerId") -> bool:
        if isinstance(other, PeerId):
            return self._b > other._b
        return NotImplemented

    def __ge__(self, other: "PeerId") -> bool:
        if isinstance(other, PeerId):
            return self._b >= other._b
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._b)

    def __reduce__(self) -> tuple[type["PeerId"], tuple[bytes]]:
        return (PeerId, (self._b,))

    def __copy__(self) -> "PeerId":
        return self

    def __deepcopy__(self, memo: object) -> "PeerId":
        return self


class PeerInfo:
    """A peer ID with its known addresses (multiaddrs, kept as given, in a tuple)."""

    __slots__ = ("peer_id", "addrs")
    peer_id: PeerId
    addrs: tuple[Any, ...]

    def __init__(self, peer_id: PeerId, addrs: Iterable[Any] = ()) -> None:
        if not isinstance(peer_id, PeerId):
            raise TypeError(f"peer_id must be a PeerId, got {type(peer_id).__name__}")
        object.__setattr__(self, "peer_id", peer_id)
        object.__setattr__(self, "addrs", tuple(addrs))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("PeerInfo is immutable")

    def __reduce__(self) -> tuple[type["PeerInfo"], tuple[PeerId, tuple[Any, ...]]]:
        return (PeerInfo, (self.peer_id, self.addrs))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PeerInfo):
            return self.peer_id == other.peer_id and self.addrs == other.addrs
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.peer_id, tuple(str(a) for a in self.addrs)))

    def __repr__(self) -> str:
        return f"PeerInfo({self.peer_id.to_base58()}, [{', '.join(str(a) for a in self.addrs)}])"
