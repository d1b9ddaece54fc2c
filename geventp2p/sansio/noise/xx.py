"""The Noise protocol framework objects for ``Noise_XX_25519_ChaChaPoly_SHA256``.

``CipherState``, ``SymmetricState`` and ``NoiseXX`` (the HandshakeState of the XX
pattern) as the Noise specification defines them
(https://noiseprotocol.org/noise.html, sections 5 and 7), with injectable static and
ephemeral X25519 keys so published test vectors can be reproduced byte for byte.
Messages here are raw Noise messages, without the libp2p 2-byte length prefix
(https://github.com/libp2p/specs/blob/master/noise/README.md#wire-format).

No I/O, no clocks, no gevent; every error is a ``SecurityError``.
"""

from __future__ import annotations

import struct
from typing import Any, Optional

from geventp2p.crypto.backend import get_backend
from geventp2p.exceptions import SecurityError

__all__ = [
    "PROTOCOL_NAME",
    "DH_LEN",
    "HASH_LEN",
    "TAG_SIZE",
    "MAX_NONCE",
    "CipherState",
    "SymmetricState",
    "NoiseXX",
]

PROTOCOL_NAME = b"Noise_XX_25519_ChaChaPoly_SHA256"  # exactly 32 bytes: h = name, no hashing
DH_LEN = 32
HASH_LEN = 32
TAG_SIZE = 16
#: Reserved nonce: never used to encrypt (Noise specification, section 5.1).
MAX_NONCE = 2**64 - 1

pack_nonce = struct.Struct("<4xQ").pack  # ChaChaPoly nonce: 4 zero bytes || u64 little-endian
_EMPTY = b""


def resolve_backend(backend: Any) -> Any:
    """A backend object, a backend name, or None (``get_backend()``: env var or best available)."""
    if backend is None or isinstance(backend, str):
        return get_backend(backend)
    return backend


class CipherState:
    """A ChaCha20-Poly1305 key with its 64-bit nonce counter.

    The AEAD object is created once per key and reused for every message;
    :meth:`release_aead` drops it (about 2.8 KiB of OpenSSL state with the
    ``cryptography`` backend) while a connection idles, and :attr:`aead` makes it
    again from the kept key on the next use.  The counter ``n`` starts at 0;
    encrypting or decrypting with ``n == 2**64 - 1`` raises ``SecurityError`` (the
    connection must then be closed).
    """

    __slots__ = ("n", "_aead", "_key", "_has_key", "backend")

    def __init__(self, key: Optional[bytes] = None, *, backend: Any = None) -> None:
        self.backend = resolve_backend(backend)
        self.n = 0
        self._aead: Any = None
        self._key: Optional[bytes] = None
        self._has_key = False
        if key is not None:
            self.initialize_key(key)

    def initialize_key(self, key: bytes) -> None:
        if len(key) != 32:
            raise SecurityError(f"cipher key must be 32 bytes, got {len(key)}")
        self._key = bytes(key)
        self._aead = self.backend.aead(self._key)
        self._has_key = True
        self.n = 0

    def has_key(self) -> bool:
        return self._has_key

    @property
    def aead(self) -> Any:
        """The backend AEAD object (``encrypt``/``decrypt``, maybe ``*_into``); None without a key."""
        aead = self._aead
        if aead is None and self._key is not None:
            aead = self._aead = self.backend.aead(self._key)
        return aead

    def release_aead(self) -> None:
        """Drop the AEAD object (the key and the nonce stay); :attr:`aead` makes a new one."""
        self._aead = None

    def _next_nonce(self) -> bytes:
        n = self.n
        if n >= MAX_NONCE:
            raise SecurityError("noise nonce exhausted; the connection must be closed")
        self.n = n + 1
        return pack_nonce(n)

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        if not self._has_key:
            return bytes(plaintext)
        return bytes(self.aead.encrypt(self._next_nonce(), plaintext, ad))

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        if not self._has_key:
            return bytes(ciphertext)
        if len(ciphertext) < TAG_SIZE:
            raise SecurityError(f"noise ciphertext of {len(ciphertext)} bytes is shorter than the tag")
        n = self.n
        if n >= MAX_NONCE:
            raise SecurityError("noise nonce exhausted; the connection must be closed")
        try:
            plaintext = self.aead.decrypt(pack_nonce(n), ciphertext, ad)
        except SecurityError:
            raise
        except Exception as exc:  # a backend that raises its own error type
            raise SecurityError(f"noise decryption failed: {exc}") from exc
        self.n = n + 1  # only advance on success
        return bytes(plaintext)

    # Transport phase: empty associated data.
    def encrypt(self, plaintext: bytes) -> bytes:
        return self.encrypt_with_ad(_EMPTY, plaintext)

    def decrypt(self, ciphertext: bytes) -> bytes:
        return self.decrypt_with_ad(_EMPTY, ciphertext)


class SymmetricState:
    """Handshake hash ``h``, chaining key ``ck`` and the handshake cipher."""

    __slots__ = ("h", "ck", "cipher", "backend")

    def __init__(self, protocol_name: bytes = PROTOCOL_NAME, *, backend: Any = None) -> None:
        self.backend = resolve_backend(backend)
        if len(protocol_name) <= HASH_LEN:
            h = bytes(protocol_name) + bytes(HASH_LEN - len(protocol_name))
        else:
            h = self.backend.sha256(protocol_name)
        self.h: bytes = h
        self.ck: bytes = h
        self.cipher = CipherState(backend=self.backend)

    def _hkdf2(self, ikm: bytes) -> tuple[bytes, bytes]:
        hmac = self.backend.hmac_sha256
        t = hmac(self.ck, ikm)
        o1 = hmac(t, b"\x01")
        o2 = hmac(t, o1 + b"\x02")
        return o1, o2

    def mix_hash(self, data: bytes) -> None:
        self.h = self.backend.sha256(self.h + bytes(data))

    def mix_key(self, ikm: bytes) -> None:
        self.ck, k = self._hkdf2(ikm)
        self.cipher.initialize_key(k)

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        c = self.cipher.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(c)
        return c

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        p = self.cipher.decrypt_with_ad(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return p

    def split(self) -> tuple[CipherState, CipherState]:
        k1, k2 = self._hkdf2(_EMPTY)
        return CipherState(k1, backend=self.backend), CipherState(k2, backend=self.backend)


class NoiseXX:
    """HandshakeState for the XX pattern (``-> e``, ``<- e, ee, s, es``, ``-> s, se``).

    ``write_message(payload)`` / ``read_message(message)`` must be called in
    pattern order (initiator: write, read, write; responder: read, write, read).
    Keys are 32-byte X25519 private keys; missing ones are generated.
    After the third message ``finished`` is true and ``split()`` returns
    ``(send, recv)`` cipher states for this side.
    """

    def __init__(
        self,
        initiator: bool,
        *,
        static_private: Optional[bytes] = None,
        ephemeral_private: Optional[bytes] = None,
        prologue: bytes = b"",
        backend: Any = None,
    ) -> None:
        self.backend = resolve_backend(backend)
        self.initiator = bool(initiator)
        self.symmetric = SymmetricState(PROTOCOL_NAME, backend=self.backend)
        self.symmetric.mix_hash(prologue)
        self.s_priv, self.s_pub = self._keypair(static_private)
        self._e_injected = ephemeral_private
        self.e_priv: Optional[bytes] = None
        self.e_pub: Optional[bytes] = None
        self.rs: Optional[bytes] = None  # remote static public key
        self.re: Optional[bytes] = None  # remote ephemeral public key
        self.step = 0  # messages processed so far (0..3)

    def _keypair(self, private: Optional[bytes]) -> tuple[bytes, bytes]:
        if private is None:
            priv, pub = self.backend.x25519_generate()
            return priv, pub
        private = bytes(private)
        if len(private) != DH_LEN:
            raise SecurityError(f"X25519 private key must be 32 bytes, got {len(private)}")
        return private, self.backend.x25519_public(private)

    def _dh(self, priv: Optional[bytes], pub: Optional[bytes]) -> bytes:
        if priv is None or pub is None:
            raise SecurityError("noise handshake: X25519 key missing (messages out of order)")
        try:
            return bytes(self.backend.x25519(priv, pub))
        except SecurityError:
            raise
        except Exception as exc:  # e.g. a low-order point giving an all-zero secret
            raise SecurityError(f"X25519 failed: {exc}") from exc

    @property
    def finished(self) -> bool:
        return self.step == 3

    @property
    def handshake_hash(self) -> bytes:
        return self.symmetric.h

    def writes_next(self) -> bool:
        """True if the next message of the pattern is ours to write (False once finished)."""
        step = self.step
        return step < 3 and (step != 1) == self.initiator

    def _expect(self, writing: bool) -> int:
        step = self.step
        if step >= 3:
            raise SecurityError("noise handshake already finished")
        if writing != self.writes_next():
            raise SecurityError(
                f"noise handshake: cannot {'write' if writing else 'read'} message {step + 1} as "
                f"{'initiator' if self.initiator else 'responder'}"
            )
        return step

    def write_message(self, payload: bytes = b"") -> bytes:
        step = self._expect(writing=True)
        ss = self.symmetric
        out = []
        if step == 0:  # -> e
            self.e_priv, self.e_pub = self._keypair(self._e_injected)
            out.append(self.e_pub)
            ss.mix_hash(self.e_pub)
        elif step == 1:  # <- e, ee, s, es
            self.e_priv, self.e_pub = self._keypair(self._e_injected)
            out.append(self.e_pub)
            ss.mix_hash(self.e_pub)
            ss.mix_key(self._dh(self.e_priv, self.re))
            out.append(ss.encrypt_and_hash(self.s_pub))
            ss.mix_key(self._dh(self.s_priv, self.re))
        else:  # -> s, se
            out.append(ss.encrypt_and_hash(self.s_pub))
            ss.mix_key(self._dh(self.s_priv, self.re))
        out.append(ss.encrypt_and_hash(payload))
        self.step = step + 1
        return b"".join(out)

    def read_message(self, message: bytes) -> bytes:
        step = self._expect(writing=False)
        ss = self.symmetric
        message = bytes(message)
        if step == 0:  # -> e
            if len(message) < DH_LEN:
                raise SecurityError(f"noise message 1 too short ({len(message)} bytes)")
            self.re = message[:DH_LEN]
            ss.mix_hash(self.re)
            rest = message[DH_LEN:]
        elif step == 1:  # <- e, ee, s, es
            if len(message) < DH_LEN + DH_LEN + TAG_SIZE + TAG_SIZE:
                raise SecurityError(f"noise message 2 too short ({len(message)} bytes)")
            self.re = message[:DH_LEN]
            ss.mix_hash(self.re)
            ss.mix_key(self._dh(self.e_priv, self.re))
            self.rs = ss.decrypt_and_hash(message[DH_LEN : 2 * DH_LEN + TAG_SIZE])
            ss.mix_key(self._dh(self.e_priv, self.rs))
            rest = message[2 * DH_LEN + TAG_SIZE :]
        else:  # -> s, se
            if len(message) < DH_LEN + TAG_SIZE + TAG_SIZE:
                raise SecurityError(f"noise message 3 too short ({len(message)} bytes)")
            self.rs = ss.decrypt_and_hash(message[: DH_LEN + TAG_SIZE])
            ss.mix_key(self._dh(self.e_priv, self.rs))
            rest = message[DH_LEN + TAG_SIZE :]
        payload = ss.decrypt_and_hash(rest)
        self.step = step + 1
        return payload

    def split(self) -> tuple[CipherState, CipherState]:
        """Return ``(send, recv)`` transport cipher states for this side."""
        if not self.finished:
            raise SecurityError("noise handshake not finished")
        c1, c2 = self.symmetric.split()
        return (c1, c2) if self.initiator else (c2, c1)
