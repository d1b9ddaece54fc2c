"""libp2p identity keys: Ed25519, secp256k1, ECDSA (P-256/384/521) and RSA.

Byte encodings follow go-libp2p and
https://github.com/libp2p/specs/blob/master/peer-ids/peer-ids.md#keys :

============  ====================================  ===========================================
type          public ``Data``                       private ``Data``
============  ====================================  ===========================================
Ed25519       32-byte raw key                       seed(32) + pub(32); legacy 96 bytes accepted
                                                    only when both public copies are equal
Secp256k1     33-byte compressed point              32-byte scalar
ECDSA         DER PKIX SubjectPublicKeyInfo         DER SEC1 ``ECPrivateKey``
RSA           DER PKIX SubjectPublicKeyInfo         PKCS#1 DER (2048..8192 bits)
============  ====================================  ===========================================

``marshal()`` writes the key protobuf deterministically (``08 <type> 12 <len> <Data>``).
Unmarshalling is tolerant the way protobuf is (unknown fields skipped, last value
wins) but always re-marshals canonically, as go does before deriving a peer ID.
Every bad input raises :class:`~geventp2p.exceptions.InvalidKeyError`.

Each key is bound to a crypto backend (see :mod:`geventp2p.crypto.backend`);
pass ``backend=`` (a name or a backend object) to pick one explicitly.
"""

from __future__ import annotations

import hmac
import os
import secrets
import weakref
from typing import TYPE_CHECKING, Any, ClassVar, Union

from geventp2p._speedups import varint
from geventp2p.core import crypto as _contract
from geventp2p.core import protowire
from geventp2p.core.crypto import KeyType
from geventp2p.core.peer import PeerId
from geventp2p.crypto.backend import SECP256K1_N, Backend, get_backend
from geventp2p.exceptions import InvalidKeyError

__all__ = [
    "KeyType",
    "PublicKey",
    "PrivateKey",
    "Ed25519PublicKey",
    "Ed25519PrivateKey",
    "Secp256k1PublicKey",
    "Secp256k1PrivateKey",
    "EcdsaPublicKey",
    "EcdsaPrivateKey",
    "RsaPublicKey",
    "RsaPrivateKey",
    "generate_key",
    "unmarshal_private_key",
    "unmarshal_public_key",
    "extract_public_key",
    "private_key_from_raw",
    "public_key_from_raw",
    "parse_key_type",
    "RSA_MIN_BITS",
    "RSA_MAX_BITS",
    "MAX_KEY_PROTOBUF_SIZE",
]

RSA_MIN_BITS = 2048
RSA_MAX_BITS = 8192
# An RSA-8192 PKCS#1 private key is ~4.7 KB; anything far bigger is not a key.
MAX_KEY_PROTOBUF_SIZE = 16 * 1024

BackendLike = Union[str, Backend, None]


_TYPE_NAMES = {
    "rsa": KeyType.RSA,
    "ed25519": KeyType.Ed25519,
    "secp256k1": KeyType.Secp256k1,
    "ecdsa": KeyType.ECDSA,
}


def parse_key_type(value: Union[KeyType, int, str]) -> KeyType:
    """Accept a KeyType, its protobuf number, or a case-insensitive name ("ed25519", ...)."""
    if isinstance(value, KeyType):
        return value
    if isinstance(value, str):
        kt = _TYPE_NAMES.get(value.strip().lower())
        if kt is None:
            raise InvalidKeyError(f"unknown key type {value!r}; use one of: {', '.join(_TYPE_NAMES)}")
        return kt
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return KeyType(value)
        except ValueError:
            raise InvalidKeyError(f"unsupported key type {value}") from None
    raise InvalidKeyError(f"not a key type: {value!r}")


def _backend(backend: BackendLike) -> Backend:
    if isinstance(backend, Backend):
        return backend
    return get_backend(backend)


# --------------------------------------------------------------------------- protobuf codec


def _marshal(key_type: KeyType, data: bytes) -> bytes:
    return b"\x08" + varint.encode_uvarint(int(key_type)) + b"\x12" + varint.encode_uvarint(len(data)) + data


def _unmarshal(buf: bytes, what: str) -> tuple[KeyType, bytes]:
    """Parse a PublicKey/PrivateKey protobuf into (type, data)."""
    try:
        buf = bytes(buf)
    except TypeError:
        raise InvalidKeyError(f"{what} protobuf must be bytes, got {type(buf).__name__}") from None
    if len(buf) > MAX_KEY_PROTOBUF_SIZE:
        raise InvalidKeyError(f"{what} protobuf of {len(buf)} bytes exceeds {MAX_KEY_PROTOBUF_SIZE}")
    key_type: int | None = None
    data: bytes | None = None
    for field, wire, value in protowire.fields(buf, f"{what} protobuf", InvalidKeyError):
        if field == 1 and wire == 0:
            key_type = value
        elif field == 2 and wire == 2:
            data = value
    if key_type is None:
        raise InvalidKeyError(f"{what} protobuf lacks the required Type field")
    if data is None:
        raise InvalidKeyError(f"{what} protobuf lacks the required Data field")
    return parse_key_type(key_type), data


# --------------------------------------------------------------------------- base classes


class PublicKey:
    """A public key; equal and hashable by (type, Data).

    Implements the :class:`geventp2p.core.crypto.PublicKey` contract.
    """

    __slots__ = ("_v", "_raw", "_backend", "__weakref__")
    key_type: ClassVar[KeyType]

    def __init__(self, verifier: Any, backend: Backend) -> None:
        self._v = verifier
        self._raw = verifier.public_bytes()
        self._backend = backend

    @property
    def backend(self) -> Backend:
        return self._backend

    def verify(self, data: bytes, sig: bytes) -> bool:
        """True if ``sig`` is a valid signature of ``data``; never raises for bad signatures."""
        try:
            return self._v.verify(data, sig)
        except (TypeError, ValueError):
            return False

    def raw(self) -> bytes:
        """The ``Data`` field of the key protobuf."""
        return self._raw

    def marshal(self) -> bytes:
        """The serialized libp2p ``PublicKey`` protobuf (deterministic)."""
        return _marshal(self.key_type, self._raw)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PublicKey):
            return NotImplemented
        return self.key_type == other.key_type and self._raw == other._raw

    def __hash__(self) -> int:
        return hash((int(self.key_type), self._raw))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._raw[:8].hex()}…>"


class PrivateKey:
    """A private key; ``repr`` never shows key material.

    Implements the :class:`geventp2p.core.crypto.PrivateKey` contract.
    """

    __slots__ = ("_s", "_backend", "_pub")
    key_type: ClassVar[KeyType]
    _public_cls: ClassVar[type[PublicKey]]

    def __init__(self, signer: Any, backend: Backend) -> None:
        self._s = signer
        self._backend = backend
        self._pub: PublicKey | None = None

    @property
    def backend(self) -> Backend:
        return self._backend

    def sign(self, data: bytes) -> bytes:
        return self._s.sign(data)

    def verify(self, data: bytes, sig: bytes) -> bool:
        return self.public_key().verify(data, sig)

    def public_key(self) -> PublicKey:
        pub = self._pub
        if pub is None:
            pub = self._pub = self._public_cls(self._s.verifier(), self._backend)
        return pub

    def raw(self) -> bytes:
        """The ``Data`` field of the key protobuf (secret!)."""
        return self._s.private_bytes()

    def marshal(self) -> bytes:
        """The serialized libp2p ``PrivateKey`` protobuf (secret!)."""
        return _marshal(self.key_type, self.raw())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PrivateKey):
            return NotImplemented
        return self.key_type == other.key_type and hmac.compare_digest(self.raw(), other.raw())

    def __hash__(self) -> int:
        return hash((int(self.key_type), self.public_key().raw()))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} public={self.public_key().raw()[:8].hex()}…>"


# --------------------------------------------------------------------------- Ed25519


class Ed25519PublicKey(PublicKey):
    __slots__ = ()
    key_type = KeyType.Ed25519

    @classmethod
    def from_raw(cls, data: bytes, backend: BackendLike = None) -> "Ed25519PublicKey":
        data = bytes(data)
        if len(data) != 32:
            raise InvalidKeyError(f"Ed25519 public key must be 32 bytes, got {len(data)}")
        b = _backend(backend)
        return cls(b.ed25519_verifier(data), b)


class _Ed25519Signer:
    """Adds the libp2p private encoding (seed || pub) to a backend signer."""

    __slots__ = ("_inner", "_seed", "_backend")

    def __init__(self, inner: Any, seed: bytes, backend: Backend) -> None:
        self._inner = inner
        self._seed = seed
        self._backend = backend

    def sign(self, data: bytes) -> bytes:
        return self._inner.sign(data)

    def private_bytes(self) -> bytes:
        return self._seed + self._inner.public_bytes()

    def verifier(self) -> Any:
        return self._inner.verifier()


class Ed25519PrivateKey(PrivateKey):
    __slots__ = ()
    key_type = KeyType.Ed25519
    _public_cls = Ed25519PublicKey

    @classmethod
    def from_seed(cls, seed: bytes, backend: BackendLike = None) -> "Ed25519PrivateKey":
        seed = bytes(seed)
        if len(seed) != 32:
            raise InvalidKeyError(f"Ed25519 seed must be 32 bytes, got {len(seed)}")
        b = _backend(backend)
        return cls(_Ed25519Signer(b.ed25519_signer(seed), seed, b), b)

    @classmethod
    def generate(cls, backend: BackendLike = None) -> "Ed25519PrivateKey":
        return cls.from_seed(os.urandom(32), backend)

    @classmethod
    def from_raw(cls, data: bytes, backend: BackendLike = None) -> "Ed25519PrivateKey":
        data = bytes(data)
        if len(data) == 96:
            if data[32:64] != data[64:96]:
                raise InvalidKeyError("legacy 96-byte Ed25519 private key: the two public key copies differ")
            data = data[:64]
        elif len(data) != 64:
            raise InvalidKeyError(f"Ed25519 private key must be 64 bytes (seed + public key), got {len(data)}")
        key = cls.from_seed(data[:32], backend)
        if not hmac.compare_digest(key.public_key().raw(), data[32:]):
            raise InvalidKeyError("Ed25519 private key: embedded public key does not match the seed")
        return key

    def seed(self) -> bytes:
        seed: bytes = self._s._seed
        return seed


# --------------------------------------------------------------------------- secp256k1


class Secp256k1PublicKey(PublicKey):
    __slots__ = ()
    key_type = KeyType.Secp256k1

    @classmethod
    def from_raw(cls, data: bytes, backend: BackendLike = None) -> "Secp256k1PublicKey":
        """Accepts a compressed (33-byte) or uncompressed (65-byte) point; stores it compressed."""
        data = bytes(data)
        if len(data) not in (33, 65):
            raise InvalidKeyError(f"secp256k1 public key must be 33 (or 65) bytes, got {len(data)}")
        b = _backend(backend)
        return cls(b.secp256k1_verifier(data), b)


class _ScalarSigner:
    __slots__ = ("_inner", "_d")

    def __init__(self, inner: Any, d: bytes) -> None:
        self._inner = inner
        self._d = d

    def sign(self, data: bytes) -> bytes:
        return self._inner.sign(data)

    def private_bytes(self) -> bytes:
        return self._d

    def verifier(self) -> Any:
        return self._inner.verifier()


class Secp256k1PrivateKey(PrivateKey):
    __slots__ = ()
    key_type = KeyType.Secp256k1
    _public_cls = Secp256k1PublicKey

    @classmethod
    def from_raw(cls, data: bytes, backend: BackendLike = None) -> "Secp256k1PrivateKey":
        data = bytes(data)
        if len(data) != 32:
            raise InvalidKeyError(f"secp256k1 private key must be 32 bytes, got {len(data)}")
        d = int.from_bytes(data, "big")
        if not 0 < d < SECP256K1_N:
            raise InvalidKeyError("secp256k1 private key scalar is out of range")
        b = _backend(backend)
        return cls(_ScalarSigner(b.secp256k1_signer(data), data), b)

    @classmethod
    def generate(cls, backend: BackendLike = None) -> "Secp256k1PrivateKey":
        d = secrets.randbelow(SECP256K1_N - 1) + 1
        return cls.from_raw(d.to_bytes(32, "big"), backend)


# --------------------------------------------------------------------------- ECDSA


class EcdsaPublicKey(PublicKey):
    __slots__ = ()
    key_type = KeyType.ECDSA

    @classmethod
    def from_raw(cls, data: bytes, backend: BackendLike = None) -> "EcdsaPublicKey":
        b = _backend(backend)
        return cls(b.ecdsa_verifier(bytes(data)), b)


class EcdsaPrivateKey(PrivateKey):
    __slots__ = ()
    key_type = KeyType.ECDSA
    _public_cls = EcdsaPublicKey

    @classmethod
    def from_raw(cls, data: bytes, backend: BackendLike = None) -> "EcdsaPrivateKey":
        b = _backend(backend)
        return cls(b.ecdsa_signer(bytes(data)), b)

    @classmethod
    def generate(cls, curve: str = "P-256", backend: BackendLike = None) -> "EcdsaPrivateKey":
        b = _backend(backend)
        return cls(b.ecdsa_generate(curve), b)

    @property
    def curve(self) -> str:
        curve: str = self._s.curve
        return curve


# --------------------------------------------------------------------------- RSA


def _check_bits(bits: int) -> None:
    if bits < RSA_MIN_BITS:
        raise InvalidKeyError(f"RSA key of {bits} bits is too small (minimum {RSA_MIN_BITS})")
    if bits > RSA_MAX_BITS:
        raise InvalidKeyError(f"RSA key of {bits} bits is too big (maximum {RSA_MAX_BITS})")


class RsaPublicKey(PublicKey):
    __slots__ = ()
    key_type = KeyType.RSA

    @classmethod
    def from_raw(cls, data: bytes, backend: BackendLike = None) -> "RsaPublicKey":
        b = _backend(backend)
        v = b.rsa_verifier(bytes(data))
        _check_bits(v.bits)
        return cls(v, b)

    @property
    def bits(self) -> int:
        return self._v.bits


class RsaPrivateKey(PrivateKey):
    __slots__ = ()
    key_type = KeyType.RSA
    _public_cls = RsaPublicKey

    @classmethod
    def from_raw(cls, data: bytes, backend: BackendLike = None) -> "RsaPrivateKey":
        b = _backend(backend)
        s = b.rsa_signer(bytes(data))
        _check_bits(s.bits)
        return cls(s, b)

    @classmethod
    def generate(cls, bits: int = 2048, backend: BackendLike = None) -> "RsaPrivateKey":
        _check_bits(bits)
        b = _backend(backend)
        return cls(b.rsa_generate(bits), b)

    @property
    def bits(self) -> int:
        return self._s.bits


# --------------------------------------------------------------------------- module API

_PUBLIC: dict[KeyType, type[Ed25519PublicKey | Secp256k1PublicKey | EcdsaPublicKey | RsaPublicKey]] = {
    KeyType.Ed25519: Ed25519PublicKey,
    KeyType.Secp256k1: Secp256k1PublicKey,
    KeyType.ECDSA: EcdsaPublicKey,
    KeyType.RSA: RsaPublicKey,
}
_PRIVATE: dict[KeyType, type[Ed25519PrivateKey | Secp256k1PrivateKey | EcdsaPrivateKey | RsaPrivateKey]] = {
    KeyType.Ed25519: Ed25519PrivateKey,
    KeyType.Secp256k1: Secp256k1PrivateKey,
    KeyType.ECDSA: EcdsaPrivateKey,
    KeyType.RSA: RsaPrivateKey,
}


def generate_key(
    key_type: Union[KeyType, int, str] = KeyType.Ed25519,
    *,
    bits: int = 2048,
    curve: str = "P-256",
    backend: BackendLike = None,
) -> PrivateKey:
    """Generate a new private key (Ed25519 by default, like go-libp2p)."""
    kt = parse_key_type(key_type)
    if kt is KeyType.RSA:
        return RsaPrivateKey.generate(bits, backend)
    if kt is KeyType.ECDSA:
        return EcdsaPrivateKey.generate(curve, backend)
    return _PRIVATE[kt].generate(backend=backend)


def private_key_from_raw(key_type: Union[KeyType, int, str], data: bytes, backend: BackendLike = None) -> PrivateKey:
    """Build a private key from its ``Data`` encoding."""
    return _PRIVATE[parse_key_type(key_type)].from_raw(data, backend)


def public_key_from_raw(key_type: Union[KeyType, int, str], data: bytes, backend: BackendLike = None) -> PublicKey:
    """Build a public key from its ``Data`` encoding."""
    return _PUBLIC[parse_key_type(key_type)].from_raw(data, backend)


def unmarshal_private_key(data: bytes, backend: BackendLike = None) -> PrivateKey:
    """Parse a serialized libp2p ``PrivateKey`` protobuf."""
    kt, raw = _unmarshal(data, "PrivateKey")
    return _PRIVATE[kt].from_raw(raw, backend)


#: Public keys parsed by :func:`unmarshal_public_key` that are still in use, by their
#: encoding and backend: a peer's key arrives in the Noise handshake, in identify and
#: in its signed peer record, and every connection to it would otherwise keep three
#: copies (each with its backend's key object: about 0.5 KiB with ``cryptography``).
_PARSED: "weakref.WeakValueDictionary[tuple[bytes, Any], PublicKey]" = weakref.WeakValueDictionary()


def unmarshal_public_key(data: bytes, backend: BackendLike = None) -> PublicKey:
    """Parse a serialized libp2p ``PublicKey`` protobuf.

    This is the ``decode_key`` that :mod:`geventp2p.core.record` takes.  Keys are
    immutable, so a key parsed again while the first copy is alive is that copy.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):  # the typed error, or an odd buffer
        kt, raw = _unmarshal(data, "PublicKey")
        return _PUBLIC[kt].from_raw(raw, backend)
    b = _backend(backend)
    cache_key = (bytes(data), b)
    key = _PARSED.get(cache_key)
    if key is None:
        kt, raw = _unmarshal(data, "PublicKey")
        key = _PARSED[cache_key] = _PUBLIC[kt].from_raw(raw, b)
    return key


def extract_public_key(peer_id: PeerId, backend: BackendLike = None) -> PublicKey | None:
    """The public key inlined in an identity peer ID (Ed25519, secp256k1), or None when the ID is
    a SHA-256 hash of the key.  Raises InvalidKeyError if the inlined bytes are not a valid key."""
    inline = peer_id.inline_public_key()
    if inline is None:
        return None
    return unmarshal_public_key(inline, backend)


if TYPE_CHECKING:  # the implementations satisfy the core contracts (checked by mypy)
    _pub_contract: type[_contract.PublicKey] = PublicKey
    _priv_contract: type[_contract.PrivateKey] = PrivateKey
