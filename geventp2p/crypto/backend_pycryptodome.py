"""Crypto backend on top of pycryptodome (portable fallback).

pycryptodome's ChaCha20-Poly1305 binds the nonce when the cipher is created, so
the AEAD object keeps the key and builds one cipher per message; everything else
(key parsing, curve set-up) happens once per key.

X25519 needs pycryptodome >= 3.21.  secp256k1 uses pycryptodome's own curve when
the installed version has it.  Older versions (up to at least 3.23) lack it; then
this backend still *verifies* secp256k1 signatures through the pure-Python
``_secp256k1`` module (public data only, so its non-constant-time arithmetic leaks
nothing secret), but refuses secp256k1 *private* keys with ``InvalidKeyError``
rather than sign with non-constant-time code.  The ``cryptography`` backend (the
default) always has secp256k1 through OpenSSL.
"""

from __future__ import annotations

import os
from typing import Optional

from Crypto.Cipher import ChaCha20_Poly1305
from Crypto.Hash import SHA256
from Crypto.Protocol.DH import import_x25519_private_key, import_x25519_public_key, key_agreement
from Crypto.PublicKey import ECC, RSA
from Crypto.Signature import DSS, eddsa, pkcs1_15

from geventp2p.crypto import _der, _secp256k1
from geventp2p.crypto.backend import CURVE_ORDERS, Backend
from geventp2p.exceptions import InvalidKeyError, SecurityError

__all__ = ["PycryptodomeBackend"]

# pycryptodome curve name -> (our name, OpenSSL name)
_CURVES = {
    "NIST P-256": ("P-256", "secp256r1"),
    "NIST P-384": ("P-384", "secp384r1"),
    "NIST P-521": ("P-521", "secp521r1"),
}


def _identity(x: bytes) -> bytes:
    return x


class _ChaChaPoly:
    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        self._key = key

    def encrypt(self, nonce: bytes, plaintext: bytes, ad: bytes) -> bytes:
        c = ChaCha20_Poly1305.new(key=self._key, nonce=bytes(nonce))
        if ad:
            c.update(ad)
        ct, tag = c.encrypt_and_digest(plaintext)
        return ct + tag

    def decrypt(self, nonce: bytes, ciphertext: bytes, ad: bytes) -> bytes:
        if len(ciphertext) < 16:
            raise SecurityError("ChaCha20-Poly1305 ciphertext shorter than its 16-byte tag")
        c = ChaCha20_Poly1305.new(key=self._key, nonce=bytes(nonce))
        if ad:
            c.update(ad)
        mv = memoryview(ciphertext)
        try:
            return c.decrypt_and_verify(mv[:-16], mv[-16:])
        except ValueError:
            raise SecurityError("ChaCha20-Poly1305 decryption failed (bad tag)") from None


# ------------------------------------------------------------------ Ed25519


class _Ed25519Verifier:
    __slots__ = ("_raw", "_v")

    def __init__(self, raw: bytes) -> None:
        self._raw = raw
        self._v: Optional[eddsa.EdDSASigScheme]
        try:
            self._v = eddsa.new(eddsa.import_public_key(raw), "rfc8032")
        except ValueError:  # not a point: the key loads (as in go), verification fails
            self._v = None

    def verify(self, data: bytes, sig: bytes) -> bool:
        if self._v is None or len(sig) != 64:
            return False
        try:
            self._v.verify(bytes(data), bytes(sig))
            return True
        except ValueError:
            return False

    def public_bytes(self) -> bytes:
        return self._raw


class _Ed25519Signer:
    __slots__ = ("_s", "_pub")

    def __init__(self, seed: bytes) -> None:
        key = eddsa.import_private_key(seed)
        self._s = eddsa.new(key, "rfc8032")
        self._pub = key.public_key().export_key(format="raw")

    def sign(self, data: bytes) -> bytes:
        return self._s.sign(bytes(data))

    def public_bytes(self) -> bytes:
        return self._pub

    def verifier(self) -> _Ed25519Verifier:
        return _Ed25519Verifier(self._pub)


# ------------------------------------------------------------------ ECDSA family


class _EcVerifier:
    __slots__ = ("_v", "_order", "_half", "_pub")

    def __init__(self, key: ECC.EccKey, order: int, pub: bytes) -> None:
        self._v = DSS.new(key, "deterministic-rfc6979", encoding="binary")  # mode only matters for signing
        self._order = order
        self._half = (order.bit_length() + 7) // 8
        self._pub = pub

    def verify(self, data: bytes, sig: bytes) -> bool:
        try:
            r, s = _der.decode_sig(sig)
        except ValueError:
            return False
        n = self._order
        if not (0 < r < n and 0 < s < n):
            return False
        raw = r.to_bytes(self._half, "big") + s.to_bytes(self._half, "big")
        try:
            self._v.verify(SHA256.new(bytes(data)), raw)
            return True
        except ValueError:
            return False

    def public_bytes(self) -> bytes:
        return self._pub


class _EcSigner:
    __slots__ = ("_key", "_s", "_order", "_half", "_pub", "_priv", "curve")

    def __init__(self, key: ECC.EccKey, order: int, pub: bytes, priv: bytes | None, curve: str) -> None:
        self._key = key
        self._s = DSS.new(key, "deterministic-rfc6979", encoding="binary")
        self._order = order
        self._half = (order.bit_length() + 7) // 8
        self._pub = pub
        self._priv = priv
        self.curve = curve

    def sign(self, data: bytes) -> bytes:
        raw = self._s.sign(SHA256.new(bytes(data)))
        h = self._half
        r, s = _der.low_s(int.from_bytes(raw[:h], "big"), int.from_bytes(raw[h:], "big"), self._order)
        return _der.encode_sig(r, s)

    def public_bytes(self) -> bytes:
        return self._pub

    def private_bytes(self) -> bytes:
        assert self._priv is not None
        return self._priv

    def verifier(self) -> _EcVerifier:
        return _EcVerifier(self._key.public_key(), self._order, self._pub)


class _PureSecpVerifier:
    __slots__ = ("_point", "_pub")

    def __init__(self, point: tuple[int, int]) -> None:
        self._point = point
        self._pub = _secp256k1.encode_point(point)

    def verify(self, data: bytes, sig: bytes) -> bool:
        return _secp256k1.verify(self._point, data, sig)

    def public_bytes(self) -> bytes:
        return self._pub


def _has_native_secp256k1() -> bool:
    try:
        ECC.construct(curve="secp256k1", d=1)
    except (ValueError, KeyError, TypeError, ImportError):
        return False
    return True


def _nist_names(key: ECC.EccKey) -> tuple[str, str]:
    names = _CURVES.get(key.curve)
    if names is None:
        raise InvalidKeyError(f"unsupported ECDSA curve {key.curve!r} (supported: P-256, P-384, P-521)")
    return names


def _ec_signer_from_key(key: ECC.EccKey) -> _EcSigner:
    curve, ossl = _nist_names(key)
    pub = key.public_key().export_key(format="DER")
    priv = key.export_key(format="DER", use_pkcs8=False)
    return _EcSigner(key, CURVE_ORDERS[ossl], pub, priv, curve)


# ------------------------------------------------------------------ RSA


class _RsaVerifier:
    __slots__ = ("_v", "_pub", "bits")

    def __init__(self, key: RSA.RsaKey) -> None:
        self._v = pkcs1_15.new(key)
        self.bits = key.size_in_bits()
        self._pub = key.export_key(format="DER")

    def verify(self, data: bytes, sig: bytes) -> bool:
        try:
            self._v.verify(SHA256.new(bytes(data)), bytes(sig))
            return True
        except (ValueError, TypeError):
            return False

    def public_bytes(self) -> bytes:
        return self._pub


class _RsaSigner:
    __slots__ = ("_key", "_s", "_priv", "bits")

    def __init__(self, key: RSA.RsaKey) -> None:
        self._key = key
        self._s = pkcs1_15.new(key)
        self.bits = key.size_in_bits()
        self._priv = key.export_key(format="DER", pkcs=1)

    def sign(self, data: bytes) -> bytes:
        return self._s.sign(SHA256.new(bytes(data)))

    def public_bytes(self) -> bytes:
        return self._key.public_key().export_key(format="DER")

    def private_bytes(self) -> bytes:
        return self._priv

    def verifier(self) -> _RsaVerifier:
        return _RsaVerifier(self._key.public_key())


class PycryptodomeBackend(Backend):
    name = "pycryptodome"

    def __init__(self, *, secp256k1_native: bool | None = None) -> None:
        # None: use pycryptodome's curve when it has one (tests force False to cover the fallback)
        self.secp256k1_native = _has_native_secp256k1() if secp256k1_native is None else secp256k1_native

    # -- Noise primitives
    def x25519_generate(self) -> tuple[bytes, bytes]:
        priv = os.urandom(32)
        return priv, self.x25519_public(priv)

    def x25519_public(self, priv: bytes) -> bytes:
        return import_x25519_private_key(bytes(priv)).public_key().export_key(format="raw")

    def x25519(self, priv: bytes, pub: bytes) -> bytes:
        if len(pub) != 32:
            raise SecurityError(f"X25519 public key must be 32 bytes, got {len(pub)}")
        try:
            shared = key_agreement(
                static_priv=import_x25519_private_key(bytes(priv)),
                static_pub=import_x25519_public_key(bytes(pub)),
                kdf=_identity,
            )
        except ValueError:  # pycryptodome refuses low-order points
            raise SecurityError("X25519 with a low-order public key (all-zero shared secret)") from None
        if shared == bytes(32):
            raise SecurityError("X25519 produced an all-zero shared secret (low-order point)")
        return shared

    def aead(self, key: bytes) -> _ChaChaPoly:
        if len(key) != 32:
            raise ValueError(f"ChaCha20-Poly1305 key must be 32 bytes, got {len(key)}")
        return _ChaChaPoly(bytes(key))

    # -- Ed25519
    def ed25519_signer(self, seed: bytes) -> _Ed25519Signer:
        return _Ed25519Signer(bytes(seed))

    def ed25519_verifier(self, pub: bytes) -> _Ed25519Verifier:
        return _Ed25519Verifier(bytes(pub))

    # -- secp256k1
    def secp256k1_signer(self, d: bytes) -> _EcSigner:
        if not self.secp256k1_native:
            raise InvalidKeyError(
                "secp256k1 private keys need the 'cryptography' backend or a pycryptodome with the "
                "secp256k1 curve; this pycryptodome lacks it (verification of secp256k1 peers still works)"
            )
        key = ECC.construct(curve="secp256k1", d=int.from_bytes(d, "big"))
        pub = key.public_key().export_key(format="SEC1", compress=True)
        return _EcSigner(key, CURVE_ORDERS["secp256k1"], pub, None, "secp256k1")

    def secp256k1_verifier(self, point: bytes) -> _EcVerifier | _PureSecpVerifier:
        point = bytes(point)
        if len(point) not in (33, 65) or point[0] not in ((2, 3) if len(point) == 33 else (4,)):
            raise InvalidKeyError(f"invalid secp256k1 public key encoding ({len(point)} bytes)")
        if not self.secp256k1_native:
            try:
                return _PureSecpVerifier(_secp256k1.decode_point(point))
            except ValueError as exc:
                raise InvalidKeyError(f"invalid secp256k1 public key: {exc}") from None
        try:
            key = ECC.import_key(point, curve_name="secp256k1")
        except ValueError as exc:
            raise InvalidKeyError(f"invalid secp256k1 public key: {exc}") from None
        if key.pointQ.is_point_at_infinity():
            raise InvalidKeyError("invalid secp256k1 public key: point at infinity")
        pub = key.export_key(format="SEC1", compress=True)
        return _EcVerifier(key, CURVE_ORDERS["secp256k1"], pub)

    # -- ECDSA (NIST curves)
    def ecdsa_generate(self, curve: str = "P-256") -> _EcSigner:
        if curve not in ("P-256", "P-384", "P-521"):
            raise InvalidKeyError(f"unsupported ECDSA curve {curve!r}")
        return _ec_signer_from_key(ECC.generate(curve=curve))

    def ecdsa_signer(self, der: bytes) -> _EcSigner:
        try:
            key = ECC.import_key(bytes(der))
        except (ValueError, IndexError, TypeError) as exc:
            raise InvalidKeyError(f"malformed ECDSA private key DER: {exc}") from None
        if not key.has_private():
            raise InvalidKeyError("ECDSA private key DER holds only a public key")
        return _ec_signer_from_key(key)

    def ecdsa_verifier(self, der: bytes) -> _EcVerifier:
        der = bytes(der)
        try:
            key = ECC.import_key(der)
        except (ValueError, IndexError, TypeError) as exc:
            raise InvalidKeyError(f"malformed ECDSA public key DER: {exc}") from None
        if key.has_private():
            raise InvalidKeyError("ECDSA public key DER holds a private key")
        if key.pointQ.is_point_at_infinity():
            raise InvalidKeyError("ECDSA public key is the point at infinity")
        _, ossl = _nist_names(key)
        return _EcVerifier(key, CURVE_ORDERS[ossl], key.export_key(format="DER"))

    # -- RSA
    def rsa_generate(self, bits: int) -> _RsaSigner:
        return _RsaSigner(RSA.generate(bits))

    def rsa_signer(self, der: bytes) -> _RsaSigner:
        try:
            key = RSA.import_key(bytes(der))
        except (ValueError, IndexError, TypeError) as exc:
            raise InvalidKeyError(f"malformed RSA private key DER: {exc}") from None
        if not key.has_private():
            raise InvalidKeyError("RSA private key DER holds only a public key")
        return _RsaSigner(key)

    def rsa_verifier(self, der: bytes) -> _RsaVerifier:
        try:
            key = RSA.import_key(bytes(der))
        except (ValueError, IndexError, TypeError) as exc:
            raise InvalidKeyError(f"malformed RSA public key DER: {exc}") from None
        if key.has_private():
            raise InvalidKeyError("RSA public key DER holds a private key")
        return _RsaVerifier(key)
