"""Crypto backend selection and the interface every backend implements.

Two backends hold the same vectors: ``cryptography`` (preferred) and
``pycryptodome`` (portable fallback).  ``GEVENTP2P_CRYPTO=cryptography`` or
``GEVENTP2P_CRYPTO=pycryptodome`` forces one; any other non-empty value is a
:class:`~geventp2p.exceptions.ConfigError`.

Interface (shared with the Noise helper)::

    b = get_backend()
    b.name                                  # "cryptography" | "pycryptodome"
    b.x25519_generate() -> (priv32, pub32)
    b.x25519_public(priv32) -> pub32
    b.x25519(priv32, pub32) -> shared32     # SecurityError on an all-zero result
    b.aead(key32) -> AEAD                   # ChaCha20-Poly1305, reused per key
        .encrypt(nonce12, plaintext, ad) -> ciphertext || tag
        .decrypt(nonce12, ciphertext, ad) -> plaintext   # SecurityError on failure
    b.sha256(data) -> bytes
    b.hmac_sha256(key, data) -> bytes

Key-type primitives (used by :mod:`geventp2p.crypto.keys`; they return
signer/verifier handles, see :class:`Signer` and :class:`Verifier`)::

    b.ed25519_signer(seed32)      b.ed25519_verifier(pub32)
    b.secp256k1_signer(d32)       b.secp256k1_verifier(sec1_point)
    b.ecdsa_generate(curve)       b.ecdsa_signer(der)      b.ecdsa_verifier(spki_der)
    b.rsa_generate(bits)          b.rsa_signer(der)        b.rsa_verifier(spki_der)
"""

from __future__ import annotations

import hashlib
import hmac as _hmac
import os
from typing import Protocol

from geventp2p.exceptions import ConfigError

__all__ = [
    "Backend",
    "AEAD",
    "Signer",
    "Verifier",
    "KeySigner",
    "EcdsaSigner",
    "RsaSigner",
    "RsaVerifier",
    "get_backend",
    "available_backends",
    "BACKEND_NAMES",
    "ENV_VAR",
    "SECP256K1_N",
    "CURVE_ORDERS",
]

ENV_VAR = "GEVENTP2P_CRYPTO"
BACKEND_NAMES = ("cryptography", "pycryptodome")

# Order of the secp256k1 group.
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

# Group orders by OpenSSL curve name (for low-S normalisation and range checks).
CURVE_ORDERS = {
    "secp256k1": SECP256K1_N,
    "secp256r1": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    "secp384r1": int(
        "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973", 16
    ),
    "secp521r1": int(
        "1fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
        "a51868783bf2f966b7fcc0148f709a5d03bb5c9b8899c47aebb6fb71e91386409",
        16,
    ),
}


class AEAD(Protocol):
    def encrypt(self, nonce: bytes, plaintext: bytes, ad: bytes) -> bytes: ...

    def decrypt(self, nonce: bytes, ciphertext: bytes, ad: bytes) -> bytes: ...


class Verifier(Protocol):
    def verify(self, data: bytes, sig: bytes) -> bool: ...

    def public_bytes(self) -> bytes:
        """The libp2p ``Data`` encoding of the public key."""
        ...


class Signer(Protocol):
    def sign(self, data: bytes) -> bytes: ...

    def public_bytes(self) -> bytes:
        """The libp2p ``Data`` encoding of the public key."""
        ...

    def verifier(self) -> Verifier: ...


class KeySigner(Signer, Protocol):
    """A signer that also writes its private key's libp2p ``Data`` encoding (ECDSA, RSA).

    Ed25519 and secp256k1 signers do not: :mod:`geventp2p.crypto.keys` keeps their seed/scalar.
    """

    def private_bytes(self) -> bytes: ...


class EcdsaSigner(KeySigner, Protocol):
    @property
    def curve(self) -> str:
        """``P-256``, ``P-384`` or ``P-521``."""
        ...


class RsaSigner(KeySigner, Protocol):
    @property
    def bits(self) -> int: ...


class RsaVerifier(Verifier, Protocol):
    @property
    def bits(self) -> int: ...


class Backend:
    """Common part of the backends (hashing is stdlib: fast and identical) and the interface
    each backend implements; see the module docstring."""

    name = "abstract"

    # -- Noise primitives
    def x25519_generate(self) -> tuple[bytes, bytes]:
        raise NotImplementedError

    def x25519_public(self, priv: bytes) -> bytes:
        raise NotImplementedError

    def x25519(self, priv: bytes, pub: bytes) -> bytes:
        raise NotImplementedError

    def aead(self, key: bytes) -> AEAD:
        raise NotImplementedError

    # -- key types
    def ed25519_signer(self, seed: bytes) -> Signer:
        raise NotImplementedError

    def ed25519_verifier(self, pub: bytes) -> Verifier:
        raise NotImplementedError

    def secp256k1_signer(self, d: bytes) -> Signer:
        raise NotImplementedError

    def secp256k1_verifier(self, point: bytes) -> Verifier:
        raise NotImplementedError

    def ecdsa_generate(self, curve: str = "P-256") -> EcdsaSigner:
        raise NotImplementedError

    def ecdsa_signer(self, der: bytes) -> EcdsaSigner:
        raise NotImplementedError

    def ecdsa_verifier(self, der: bytes) -> Verifier:
        raise NotImplementedError

    def rsa_generate(self, bits: int) -> RsaSigner:
        raise NotImplementedError

    def rsa_signer(self, der: bytes) -> RsaSigner:
        raise NotImplementedError

    def rsa_verifier(self, der: bytes) -> RsaVerifier:
        raise NotImplementedError

    def sha256(self, data: bytes) -> bytes:
        return hashlib.sha256(data).digest()

    def hmac_sha256(self, key: bytes, data: bytes) -> bytes:
        return _hmac.new(key, data, hashlib.sha256).digest()

    def __repr__(self) -> str:
        return f"<geventp2p crypto backend {self.name}>"


_instances: dict[str, Backend] = {}


def _load(name: str) -> Backend:
    inst = _instances.get(name)
    if inst is not None:
        return inst
    try:
        if name == "cryptography":
            from geventp2p.crypto.backend_cryptography import CryptographyBackend

            inst = CryptographyBackend()
        else:
            from geventp2p.crypto.backend_pycryptodome import PycryptodomeBackend

            inst = PycryptodomeBackend()
    except ImportError as exc:
        raise ConfigError(f"crypto backend {name!r} is not available: {exc}") from exc
    _instances[name] = inst
    return inst


def get_backend(name: str | None = None) -> Backend:
    """Return the backend called ``name``, else the one ``GEVENTP2P_CRYPTO`` forces, else the best available.

    Raises ConfigError for an unknown name or a forced backend that cannot be imported.
    """
    if name is None:
        name = os.environ.get(ENV_VAR, "").strip().lower() or None
        if name is not None and name not in BACKEND_NAMES:
            raise ConfigError(
                f"{ENV_VAR}={os.environ.get(ENV_VAR)!r} is not a crypto backend; "
                f"use one of: {', '.join(BACKEND_NAMES)}"
            )
    elif name not in BACKEND_NAMES:
        raise ConfigError(f"unknown crypto backend {name!r}; use one of: {', '.join(BACKEND_NAMES)}")
    if name is not None:
        return _load(name)
    try:
        return _load("cryptography")
    except ConfigError:
        return _load("pycryptodome")


def available_backends() -> list[str]:
    """Names of the backends that import on this system."""
    out = []
    for n in BACKEND_NAMES:
        try:
            _load(n)
        except ConfigError:
            continue
        out.append(n)
    return out
