"""The libp2p TLS certificate: build it, and verify a peer's exactly as the spec says.

https://github.com/libp2p/specs/blob/master/tls/tls.md

An endpoint presents one self-signed X.509 certificate on a fresh ephemeral key
(here ECDSA P-256, as go-libp2p).  The host identity is not the certificate key:
it travels in the *libp2p Public Key Extension* (OID ``1.3.6.1.4.1.53594.1.1``),
whose value is the DER of::

    SignedKey ::= SEQUENCE { publicKey OCTET STRING, signature OCTET STRING }

``publicKey`` is the host's serialized libp2p ``PublicKey`` protobuf and
``signature`` is the host key's signature over ``b"libp2p-tls-handshake:"`` followed
by the DER ``SubjectPublicKeyInfo`` of the certificate key.

:func:`verify_certificate` applies every rule of the spec to a received chain:
exactly one certificate, inside its validity window, a valid self-signature, no
critical extension we do not understand, the libp2p extension present (the spec
says it MAY be critical, so a non-critical one is accepted unless
``require_critical=True``), and the identity signature; it returns the host
public key (the peer ID follows from it).  Every refusal is a
:class:`~geventp2p.exceptions.TlsCertificateError` (or
:class:`~geventp2p.exceptions.InvalidSignatureError` for the identity signature).

No I/O; uses ``cryptography``'s X.509 support.
"""

from __future__ import annotations

import datetime
import os
from typing import Any, Optional, Sequence, Union

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import NameOID, ObjectIdentifier

from geventp2p.core.peer import PeerId
from geventp2p.crypto.keys import PrivateKey, PublicKey, unmarshal_public_key
from geventp2p.exceptions import InvalidKeyError, InvalidSignatureError, TlsCertificateError

__all__ = [
    "EXTENSION_OID",
    "SIGNING_PREFIX",
    "encode_signed_key",
    "decode_signed_key",
    "make_certificate",
    "verify_certificate",
    "peer_id_from_certificate",
]

#: The libp2p Public Key Extension (allocated by IANA to the libp2p project).
EXTENSION_OID = ObjectIdentifier("1.3.6.1.4.1.53594.1.1")
#: What the host key signs, before the certificate key's SubjectPublicKeyInfo.
SIGNING_PREFIX = b"libp2p-tls-handshake:"

# go-libp2p: valid from one hour ago (clock skew) for about a hundred years.
_BACKDATE = datetime.timedelta(hours=1)
_LIFETIME = datetime.timedelta(days=365 * 100)

CertLike = Union[x509.Certificate, bytes, bytearray, memoryview]


# --------------------------------------------------------------------------- SignedKey DER


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _der_tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _der_len(len(value)) + value


def encode_signed_key(public_key: bytes, signature: bytes) -> bytes:
    """DER of ``SignedKey ::= SEQUENCE { publicKey OCTET STRING, signature OCTET STRING }``."""
    return _der_tlv(0x30, _der_tlv(0x04, bytes(public_key)) + _der_tlv(0x04, bytes(signature)))


def _read_tlv(buf: bytes, pos: int, tag: int) -> tuple[bytes, int]:
    if pos + 2 > len(buf) or buf[pos] != tag:
        raise TlsCertificateError(f"SignedKey: expected DER tag {tag:#04x} at offset {pos}")
    first = buf[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        nbytes = first & 0x7F
        if nbytes == 0 or nbytes > 4 or pos + nbytes > len(buf):
            raise TlsCertificateError("SignedKey: bad DER length")
        length = int.from_bytes(buf[pos:pos + nbytes], "big")
        if length < 0x80 or buf[pos] == 0:  # DER: shortest length form only
            raise TlsCertificateError("SignedKey: non-minimal DER length")
        pos += nbytes
    end = pos + length
    if end > len(buf):
        raise TlsCertificateError("SignedKey: truncated")
    return buf[pos:end], end


def decode_signed_key(der: bytes) -> tuple[bytes, bytes]:
    """``(publicKey, signature)`` from the extension value; ``TlsCertificateError`` if malformed."""
    der = bytes(der)
    body, end = _read_tlv(der, 0, 0x30)
    if end != len(der):
        raise TlsCertificateError("SignedKey: trailing bytes")
    public_key, pos = _read_tlv(body, 0, 0x04)
    signature, pos = _read_tlv(body, pos, 0x04)
    if pos != len(body):
        raise TlsCertificateError("SignedKey: unexpected fields")
    return public_key, signature


# --------------------------------------------------------------------------- building


def _spki(public_key: Any) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def make_certificate(
    host_key: PrivateKey,
    *,
    cert_key: Optional[ec.EllipticCurvePrivateKey] = None,
    now: Optional[datetime.datetime] = None,
    not_before: Optional[datetime.datetime] = None,
    not_after: Optional[datetime.datetime] = None,
    critical: bool = True,
    extra_extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
    extension_value: Optional[bytes] = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed libp2p certificate for ``host_key`` and its (ephemeral) key.

    ``cert_key`` defaults to a new P-256 key.  The libp2p extension is marked
    critical (the spec allows either; rust-libp2p and js-libp2p mark it).  The
    remaining keywords exist for tests that need a bad certificate: a chosen
    validity window, extra extensions, or an arbitrary extension value.
    """
    if cert_key is None:
        cert_key = ec.generate_private_key(ec.SECP256R1())
    if now is None:
        now = datetime.datetime.now(datetime.timezone.utc)
    if extension_value is None:
        sig = host_key.sign(SIGNING_PREFIX + _spki(cert_key.public_key()))
        extension_value = encode_signed_key(host_key.public_key().marshal(), sig)
    # the subject carries nothing about the peer: the extension is the identity
    name = x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, os.urandom(8).hex())])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(cert_key.public_key())
        .serial_number(int.from_bytes(os.urandom(16), "big") >> 1)
        .not_valid_before(not_before if not_before is not None else now - _BACKDATE)
        .not_valid_after(not_after if not_after is not None else now + _LIFETIME)
        .add_extension(x509.UnrecognizedExtension(EXTENSION_OID, extension_value), critical=critical)
    )
    for ext, crit in extra_extensions:
        builder = builder.add_extension(ext, critical=crit)
    return builder.sign(cert_key, hashes.SHA256()), cert_key


# --------------------------------------------------------------------------- verifying


def _load(cert: CertLike) -> x509.Certificate:
    if isinstance(cert, x509.Certificate):
        return cert
    try:
        return x509.load_der_x509_certificate(bytes(cert))
    except ValueError as exc:
        raise TlsCertificateError(f"not a DER X.509 certificate: {exc}") from exc


def _check_self_signature(cert: x509.Certificate) -> None:
    """The certificate's signature verifies under its own key (any algorithm TLS 1.3 allows)."""
    key = cert.public_key()
    sig, tbs = cert.signature, cert.tbs_certificate_bytes
    algo = cert.signature_hash_algorithm
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            if algo is None:
                raise TlsCertificateError("ECDSA certificate without a hash algorithm")
            key.verify(sig, tbs, ec.ECDSA(algo))
        elif isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            key.verify(sig, tbs)
        elif isinstance(key, rsa.RSAPublicKey):
            if algo is None:
                raise TlsCertificateError("RSA certificate without a hash algorithm")
            pss = cert.signature_algorithm_parameters
            pad = pss if isinstance(pss, padding.PSS) else padding.PKCS1v15()
            key.verify(sig, tbs, pad, algo)
        else:
            raise TlsCertificateError(f"unsupported certificate key type {type(key).__name__}")
    except InvalidSignature as exc:
        raise TlsCertificateError("the certificate's self-signature is not valid") from exc
    except (ValueError, TypeError) as exc:  # e.g. an unsupported hash for the key
        raise TlsCertificateError(f"cannot check the certificate's self-signature: {exc}") from exc


def verify_certificate(
    chain: Union[CertLike, Sequence[CertLike]],
    *,
    now: Optional[datetime.datetime] = None,
    require_critical: bool = False,
) -> PublicKey:
    """The host public key a received libp2p certificate proves; raises if any rule fails.

    ``chain`` is one certificate or the list the peer sent (it must hold exactly
    one).  ``now`` defaults to the current time.  ``require_critical`` also
    refuses a libp2p extension that is not marked critical (stricter than the spec).
    """
    certs = [chain] if isinstance(chain, (x509.Certificate, bytes, bytearray, memoryview)) else list(chain)
    if len(certs) != 1:
        raise TlsCertificateError(f"expected exactly one certificate, got {len(certs)}")
    cert = _load(certs[0])
    if now is None:
        now = datetime.datetime.now(datetime.timezone.utc)
    if now < cert.not_valid_before_utc:
        raise TlsCertificateError(f"certificate not valid before {cert.not_valid_before_utc.isoformat()}")
    if now > cert.not_valid_after_utc:
        raise TlsCertificateError(f"certificate expired at {cert.not_valid_after_utc.isoformat()}")
    _check_self_signature(cert)
    try:
        extensions = list(cert.extensions)
    except ValueError as exc:  # duplicate or malformed extensions
        raise TlsCertificateError(f"bad certificate extensions: {exc}") from exc
    found: Optional[x509.Extension[Any]] = None
    for ext in extensions:
        if ext.oid == EXTENSION_OID:
            found = ext
        elif ext.critical and isinstance(ext.value, x509.UnrecognizedExtension):
            # the standard extensions cryptography parses are understood; anything else is not
            raise TlsCertificateError(f"unknown critical extension {ext.oid.dotted_string}")
    if found is None:
        raise TlsCertificateError("the libp2p public key extension is missing")
    if require_critical and not found.critical:
        raise TlsCertificateError("the libp2p public key extension is not marked critical")
    value = found.value.value if isinstance(found.value, x509.UnrecognizedExtension) else b""
    key_bytes, signature = decode_signed_key(value)
    try:
        host_key = unmarshal_public_key(key_bytes)
    except (InvalidKeyError, ValueError, KeyError) as exc:
        raise TlsCertificateError(f"the libp2p extension holds no valid public key: {exc}") from exc
    if not host_key.verify(SIGNING_PREFIX + _spki(cert.public_key()), signature):
        raise InvalidSignatureError("the libp2p extension's signature does not match the certificate key")
    return host_key


def peer_id_from_certificate(chain: Union[CertLike, Sequence[CertLike]], **kwargs: Any) -> PeerId:
    """:func:`verify_certificate`, then the peer ID of the proven key."""
    return PeerId.from_public_key(verify_certificate(chain, **kwargs))
