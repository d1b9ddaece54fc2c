"""Crypto backend on top of ``cryptography`` (OpenSSL)."""

from __future__ import annotations

from typing import Callable, Optional

from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, x25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from geventp2p.crypto import _der
from geventp2p.crypto.backend import CURVE_ORDERS, Backend
from geventp2p.exceptions import InvalidKeyError, SecurityError

__all__ = ["CryptographyBackend"]

_DER = serialization.Encoding.DER
_RAW = serialization.Encoding.Raw
_SPKI = serialization.PublicFormat.SubjectPublicKeyInfo
_NOENC = serialization.NoEncryption()

_CURVES: dict[str, Callable[[], ec.EllipticCurve]] = {
    "P-256": ec.SECP256R1,
    "P-384": ec.SECP384R1,
    "P-521": ec.SECP521R1,
}
_CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}

try:  # cryptography >= 44: RFC 6979 nonces (same signatures as the pycryptodome backend)
    _ECDSA_DET = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
except TypeError:  # pragma: no cover - older cryptography
    _ECDSA_DET = ec.ECDSA(hashes.SHA256())
_ECDSA = ec.ECDSA(hashes.SHA256())
_PKCS1 = padding.PKCS1v15()
_SHA256 = hashes.SHA256()


class _ChaChaPoly:
    __slots__ = ("_c",)

    def __init__(self, key: bytes) -> None:
        self._c = ChaCha20Poly1305(key)

    def encrypt(self, nonce: bytes, plaintext: bytes, ad: bytes) -> bytes:
        return self._c.encrypt(nonce, plaintext, ad)

    def decrypt(self, nonce: bytes, ciphertext: bytes, ad: bytes) -> bytes:
        try:
            return self._c.decrypt(nonce, ciphertext, ad)
        except InvalidTag:
            raise SecurityError("ChaCha20-Poly1305 decryption failed (bad tag)") from None

    # In-place variants (cryptography >= 45): write into a caller buffer, no allocation.
    # Defined only when the installed cryptography has them; callers feature-test.
    if hasattr(ChaCha20Poly1305, "encrypt_into"):

        def encrypt_into(self, nonce: bytes, plaintext, ad, out) -> int:
            """Write ``len(plaintext) + 16`` bytes of ciphertext and tag into ``out``."""
            return self._c.encrypt_into(nonce, plaintext, ad, out)

        def decrypt_into(self, nonce: bytes, ciphertext, ad, out) -> int:
            """Write the plaintext into ``out``; a bad tag raises ``SecurityError``."""
            try:
                return self._c.decrypt_into(nonce, ciphertext, ad, out)
            except InvalidTag:
                raise SecurityError("ChaCha20-Poly1305 decryption failed (bad tag)") from None


# ------------------------------------------------------------------ Ed25519


class _Ed25519Verifier:
    """Keeps only the 32 bytes: OpenSSL's key object is made for each verification.

    Making it costs about 1.5 us, about 1% of a verification, but a key object kept for
    each peer is a small C allocation that lives as long as the connection, and one per
    connection keeps a page of freed handshake and buffer memory resident around it: a
    server with 1,000 idle connections held 6 KiB more per connection when its peers'
    keys were kept parsed."""

    __slots__ = ("_raw",)

    def __init__(self, raw: bytes) -> None:
        self._raw = raw

    def verify(self, data: bytes, sig: bytes) -> bool:
        if len(sig) != 64:
            return False
        try:
            key = ed25519.Ed25519PublicKey.from_public_bytes(self._raw)
        except ValueError:  # not a point: the key loads (as in go), verification fails
            return False
        try:
            key.verify(bytes(sig), bytes(data))
            return True
        except InvalidSignature:
            return False

    def public_bytes(self) -> bytes:
        return self._raw


class _Ed25519Signer:
    __slots__ = ("_k", "_pub")

    def __init__(self, seed: bytes) -> None:
        self._k = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
        self._pub = self._k.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw)

    def sign(self, data: bytes) -> bytes:
        return self._k.sign(bytes(data))

    def public_bytes(self) -> bytes:
        return self._pub

    def verifier(self) -> _Ed25519Verifier:
        return _Ed25519Verifier(self._pub)


# ------------------------------------------------------------------ ECDSA family


def _verify_ecdsa(key: ec.EllipticCurvePublicKey, order: int, data: bytes, sig: bytes) -> bool:
    try:
        r, s = _der.decode_sig(sig)
    except ValueError:
        return False
    if not (0 < r < order and 0 < s < order):
        return False
    try:
        key.verify(encode_dss_signature(r, s), bytes(data), _ECDSA)
        return True
    except InvalidSignature:
        return False


def _order(curve: ec.EllipticCurve) -> int:
    return CURVE_ORDERS[curve.name]


def _load_secp256k1(point: bytes) -> ec.EllipticCurvePublicKey:
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), point)


def _load_ec_der(der: bytes) -> ec.EllipticCurvePublicKey:
    key = serialization.load_der_public_key(der)
    assert isinstance(key, ec.EllipticCurvePublicKey)  # checked when the verifier was made
    return key


class _EcVerifier:
    """With ``load``, a peer's key: only the encoding is kept and ``load(pub)`` makes the
    OpenSSL key object for each verification (10% of one on secp256k1; see
    _Ed25519Verifier for why); without, our own key, kept parsed."""

    __slots__ = ("_k", "_order", "_pub", "_load")

    def __init__(self, key: ec.EllipticCurvePublicKey, pub: bytes,
                 load: Optional[Callable[[bytes], ec.EllipticCurvePublicKey]] = None) -> None:
        self._k = key if load is None else None
        self._order = _order(key.curve)
        self._pub = pub
        self._load = load

    def verify(self, data: bytes, sig: bytes) -> bool:
        key = self._k
        if key is None:
            assert self._load is not None
            key = self._load(self._pub)
        return _verify_ecdsa(key, self._order, data, sig)

    def public_bytes(self) -> bytes:
        return self._pub


class _EcSigner:
    __slots__ = ("_k", "_order", "_pub", "_priv", "curve")

    def __init__(self, key: ec.EllipticCurvePrivateKey, pub: bytes, priv: bytes | None, curve: str) -> None:
        self._k = key
        self._order = _order(key.curve)
        self._pub = pub
        self._priv = priv
        self.curve = curve

    def sign(self, data: bytes) -> bytes:
        r, s = decode_dss_signature(self._k.sign(bytes(data), _ECDSA_DET))
        r, s = _der.low_s(r, s, self._order)
        return _der.encode_sig(r, s)

    def public_bytes(self) -> bytes:
        return self._pub

    def private_bytes(self) -> bytes:
        assert self._priv is not None
        return self._priv

    def verifier(self) -> _EcVerifier:
        return _EcVerifier(self._k.public_key(), self._pub)


def _ec_signer_from_key(k: ec.EllipticCurvePrivateKey) -> _EcSigner:
    curve = _CURVE_NAMES.get(k.curve.name)
    if curve is None:
        raise InvalidKeyError(f"unsupported ECDSA curve {k.curve.name!r} (supported: P-256, P-384, P-521)")
    pub = k.public_key().public_bytes(_DER, _SPKI)
    priv = k.private_bytes(_DER, serialization.PrivateFormat.TraditionalOpenSSL, _NOENC)
    return _EcSigner(k, pub, priv, curve)


# ------------------------------------------------------------------ RSA


class _RsaVerifier:
    __slots__ = ("_k", "_pub", "bits")

    def __init__(self, key: rsa.RSAPublicKey) -> None:
        self._k = key
        self.bits = key.key_size
        self._pub = key.public_bytes(_DER, _SPKI)

    def verify(self, data: bytes, sig: bytes) -> bool:
        try:
            self._k.verify(bytes(sig), bytes(data), _PKCS1, _SHA256)
            return True
        except (InvalidSignature, ValueError):
            return False

    def public_bytes(self) -> bytes:
        return self._pub


class _RsaSigner:
    __slots__ = ("_k", "_priv", "bits")

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        self._k = key
        self.bits = key.key_size
        self._priv = key.private_bytes(_DER, serialization.PrivateFormat.TraditionalOpenSSL, _NOENC)

    def sign(self, data: bytes) -> bytes:
        return self._k.sign(bytes(data), _PKCS1, _SHA256)

    def public_bytes(self) -> bytes:
        return self._k.public_key().public_bytes(_DER, _SPKI)

    def private_bytes(self) -> bytes:
        return self._priv

    def verifier(self) -> _RsaVerifier:
        return _RsaVerifier(self._k.public_key())


def _load_private_der(der: bytes, what: str):
    try:
        return serialization.load_der_private_key(bytes(der), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InvalidKeyError(f"malformed {what} private key DER: {exc}") from None


def _load_public_der(der: bytes, what: str):
    try:
        return serialization.load_der_public_key(bytes(der))
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InvalidKeyError(f"malformed {what} public key DER: {exc}") from None


class _X25519Keys:
    """The last few X25519 private-key objects, by their raw bytes.

    ``X25519PrivateKey.from_private_bytes`` costs about as much as the key exchange
    itself (OpenSSL derives the public key on load), and one Noise handshake uses
    each of its private keys two or three times.  Only a handful of entries are
    kept, so ephemeral keys do not outlive the next few handshakes in here.
    """

    __slots__ = ("_keys",)
    SIZE = 16

    def __init__(self) -> None:
        self._keys: dict = {}

    def put(self, raw: bytes, key) -> None:
        keys = self._keys
        if len(keys) >= self.SIZE:
            del keys[next(iter(keys))]  # oldest first (dicts keep insertion order)
        keys[raw] = key

    def get(self, raw) -> "x25519.X25519PrivateKey":
        raw = bytes(raw)
        key = self._keys.get(raw)
        if key is None:
            key = x25519.X25519PrivateKey.from_private_bytes(raw)
            self.put(raw, key)
        return key


class CryptographyBackend(Backend):
    name = "cryptography"

    def __init__(self) -> None:
        self._x25519 = _X25519Keys()

    # -- Noise primitives
    def x25519_generate(self) -> tuple[bytes, bytes]:
        k = x25519.X25519PrivateKey.generate()
        priv = k.private_bytes(_RAW, serialization.PrivateFormat.Raw, _NOENC)
        self._x25519.put(priv, k)
        return priv, k.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw)

    def x25519_public(self, priv: bytes) -> bytes:
        k = self._x25519.get(priv)
        return k.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw)

    def x25519(self, priv: bytes, pub: bytes) -> bytes:
        if len(pub) != 32:
            raise SecurityError(f"X25519 public key must be 32 bytes, got {len(pub)}")
        k = self._x25519.get(priv)
        try:
            shared = k.exchange(x25519.X25519PublicKey.from_public_bytes(bytes(pub)))
        except ValueError:  # OpenSSL refuses an all-zero (low-order) result
            raise SecurityError("X25519 produced an all-zero shared secret (low-order point)") from None
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
        k = ec.derive_private_key(int.from_bytes(d, "big"), ec.SECP256K1())
        pub = k.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
        return _EcSigner(k, pub, None, "secp256k1")

    def secp256k1_verifier(self, point: bytes) -> _EcVerifier:
        try:
            k = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), bytes(point))
        except ValueError as exc:
            raise InvalidKeyError(f"invalid secp256k1 public key: {exc}") from None
        pub = k.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
        return _EcVerifier(k, pub, _load_secp256k1)

    # -- ECDSA (NIST curves)
    def ecdsa_generate(self, curve: str = "P-256") -> _EcSigner:
        if curve not in _CURVES:
            raise InvalidKeyError(f"unsupported ECDSA curve {curve!r}")
        return _ec_signer_from_key(ec.generate_private_key(_CURVES[curve]()))

    def ecdsa_signer(self, der: bytes) -> _EcSigner:
        k = _load_private_der(der, "ECDSA")
        if not isinstance(k, ec.EllipticCurvePrivateKey):
            raise InvalidKeyError("ECDSA private key DER holds a different key type")
        return _ec_signer_from_key(k)

    def ecdsa_verifier(self, der: bytes) -> _EcVerifier:
        k = _load_public_der(der, "ECDSA")
        if not isinstance(k, ec.EllipticCurvePublicKey):
            raise InvalidKeyError("ECDSA public key DER holds a different key type")
        if k.curve.name not in _CURVE_NAMES:
            raise InvalidKeyError(f"unsupported ECDSA curve {k.curve.name!r} (supported: P-256, P-384, P-521)")
        return _EcVerifier(k, k.public_bytes(_DER, _SPKI), _load_ec_der)

    # -- RSA
    def rsa_generate(self, bits: int) -> _RsaSigner:
        return _RsaSigner(rsa.generate_private_key(public_exponent=65537, key_size=bits))

    def rsa_signer(self, der: bytes) -> _RsaSigner:
        k = _load_private_der(der, "RSA")
        if not isinstance(k, rsa.RSAPrivateKey):
            raise InvalidKeyError("RSA private key DER holds a different key type")
        return _RsaSigner(k)

    def rsa_verifier(self, der: bytes) -> _RsaVerifier:
        k = _load_public_der(der, "RSA")
        if not isinstance(k, rsa.RSAPublicKey):
            raise InvalidKeyError("RSA public key DER holds a different key type")
        return _RsaVerifier(k)
