"""Sans-I/O Noise for libp2p: ``Noise_XX_25519_ChaChaPoly_SHA256`` (LIBP2P-WIRE.md §5).

Three layers, none of which touches sockets, greenlets or clocks:

``CipherState`` / ``SymmetricState`` / ``NoiseXX``
    The Noise protocol framework objects for the XX pattern, with injectable
    static and ephemeral X25519 keys so the published vectors (§21.1) can be
    reproduced byte for byte.  Messages here are *raw* Noise messages, without
    the libp2p 2-byte length prefix.

``Handshake``
    The libp2p handshake on top of ``NoiseXX``: builds and checks the
    ``NoiseHandshakePayload`` (identity key, signature over the Noise static key,
    early-muxer list), derives the remote ``PeerId`` and, after the third message,
    yields a ``HandshakeResult`` with the two transport ``CipherState``\\ s and the
    early muxer.

``FrameEncryptor`` / ``FrameDecryptor``
    The transport-phase codec: ``u16be(len) || ciphertext`` frames carrying at
    most ``MAX_PLAINTEXT`` (65519) plaintext bytes each.  The decryptor is
    incremental and returns every complete frame of a receive buffer at once.

All errors are ``SecurityError`` subclasses (``InvalidSignatureError``,
``PeerIdMismatchError``) from :mod:`geventp2p.exceptions`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from google.protobuf.message import DecodeError

from geventp2p._speedups import frames as _frames
from geventp2p.core.peer import PeerId
from geventp2p.crypto.backend import get_backend
from geventp2p.crypto.keys import PrivateKey, PublicKey, unmarshal_public_key
from geventp2p.exceptions import InvalidSignatureError, PeerIdMismatchError, SecurityError
from geventp2p.pb import noise_pb2

__all__ = [
    "PROTOCOL_NAME",
    "SIGNATURE_PREFIX",
    "MAX_FRAME",
    "MAX_PLAINTEXT",
    "TAG_SIZE",
    "MAX_NONCE",
    "MAX_MUXERS",
    "CipherState",
    "SymmetricState",
    "NoiseXX",
    "Handshake",
    "HandshakeResult",
    "FrameEncryptor",
    "FrameDecryptor",
    "frame_message",
    "parse_frame",
    "negotiate_muxer",
    "encode_payload",
    "decode_payload",
]

PROTOCOL_NAME = b"Noise_XX_25519_ChaChaPoly_SHA256"  # exactly 32 bytes: h = name, no hashing
SIGNATURE_PREFIX = b"noise-libp2p-static-key:"
DH_LEN = 32
HASH_LEN = 32
TAG_SIZE = 16
MAX_FRAME = 65535  # the u16 length field
MAX_PLAINTEXT = MAX_FRAME - TAG_SIZE  # 65519
MAX_NONCE = 2**64 - 1  # reserved, never used for encryption (Noise spec §5.1)
#: Like go-libp2p, a remote stream_muxers list longer than this is ignored.
MAX_MUXERS = 100

_pack_nonce = struct.Struct("<4xQ").pack  # 4 zero bytes || u64 little-endian
_pack_len = struct.Struct(">H").pack
_EMPTY = b""


def _default_backend(backend: Any) -> Any:
    """A backend object, a backend name, or None (``get_backend()``: env var or best available)."""
    if backend is None or isinstance(backend, str):
        return get_backend(backend)
    return backend


# --------------------------------------------------------------------------- Noise core


class CipherState:
    """A ChaCha20-Poly1305 key with its 64-bit nonce counter.

    The AEAD object is created once per key and reused for every message.  The
    counter ``n`` starts at 0; encrypting or decrypting with ``n == 2**64 - 1``
    raises ``SecurityError`` (the connection must then be closed).
    """

    __slots__ = ("n", "_aead", "_has_key", "backend")

    def __init__(self, key: Optional[bytes] = None, *, backend: Any = None) -> None:
        self.backend = _default_backend(backend)
        self.n = 0
        self._aead = None
        self._has_key = False
        if key is not None:
            self.initialize_key(key)

    def initialize_key(self, key: bytes) -> None:
        if len(key) != 32:
            raise SecurityError(f"cipher key must be 32 bytes, got {len(key)}")
        self._aead = self.backend.aead(bytes(key))
        self._has_key = True
        self.n = 0

    def has_key(self) -> bool:
        return self._has_key

    def _next_nonce(self) -> bytes:
        n = self.n
        if n >= MAX_NONCE:
            raise SecurityError("noise nonce exhausted; the connection must be closed")
        self.n = n + 1
        return _pack_nonce(n)

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        if not self._has_key:
            return bytes(plaintext)
        return self._aead.encrypt(self._next_nonce(), plaintext, ad)

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        if not self._has_key:
            return bytes(ciphertext)
        if len(ciphertext) < TAG_SIZE:
            raise SecurityError(f"noise ciphertext of {len(ciphertext)} bytes is shorter than the tag")
        n = self.n
        if n >= MAX_NONCE:
            raise SecurityError("noise nonce exhausted; the connection must be closed")
        try:
            plaintext = self._aead.decrypt(_pack_nonce(n), ciphertext, ad)
        except SecurityError:
            raise
        except Exception as exc:  # a backend that raises its own error type
            raise SecurityError(f"noise decryption failed: {exc}") from exc
        self.n = n + 1  # only advance on success
        return plaintext

    # Transport phase: empty associated data.
    def encrypt(self, plaintext: bytes) -> bytes:
        return self.encrypt_with_ad(_EMPTY, plaintext)

    def decrypt(self, ciphertext: bytes) -> bytes:
        return self.decrypt_with_ad(_EMPTY, ciphertext)


class SymmetricState:
    """Handshake hash ``h``, chaining key ``ck`` and the handshake cipher."""

    __slots__ = ("h", "ck", "cipher", "backend")

    def __init__(self, protocol_name: bytes = PROTOCOL_NAME, *, backend: Any = None) -> None:
        self.backend = _default_backend(backend)
        if len(protocol_name) <= HASH_LEN:
            h = bytes(protocol_name) + bytes(HASH_LEN - len(protocol_name))
        else:
            h = self.backend.sha256(protocol_name)
        self.h = h
        self.ck = h
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
        self.backend = _default_backend(backend)
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
            return self.backend.x25519_generate()
        private = bytes(private)
        if len(private) != DH_LEN:
            raise SecurityError(f"X25519 private key must be 32 bytes, got {len(private)}")
        return private, self.backend.x25519_public(private)

    def _dh(self, priv: bytes, pub: bytes) -> bytes:
        try:
            return self.backend.x25519(priv, pub)
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

    def _expect(self, writing: bool) -> int:
        step = self.step
        if step >= 3:
            raise SecurityError("noise handshake already finished")
        # message index 0 and 2 are written by the initiator, 1 by the responder
        initiator_writes = step != 1
        if writing != (initiator_writes == self.initiator):
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


# --------------------------------------------------------------------------- libp2p payload


def encode_payload(identity_key: bytes, identity_sig: bytes, muxers: Sequence[str] = ()) -> bytes:
    """Serialize a ``NoiseHandshakePayload``; ``extensions`` only when muxers are given."""
    msg = noise_pb2.NoiseHandshakePayload()
    msg.identity_key = identity_key
    msg.identity_sig = identity_sig
    if muxers:
        msg.extensions.stream_muxers.extend(muxers)
    return msg.SerializeToString()


def decode_payload(data: bytes) -> tuple[bytes, bytes, list[str]]:
    """Parse a ``NoiseHandshakePayload`` into ``(identity_key, identity_sig, stream_muxers)``."""
    msg = noise_pb2.NoiseHandshakePayload()
    try:
        msg.ParseFromString(bytes(data))
    except (DecodeError, ValueError, TypeError) as exc:
        raise SecurityError(f"malformed noise handshake payload: {exc}") from exc
    if not msg.identity_key:
        raise SecurityError("noise handshake payload has no identity_key")
    if not msg.identity_sig:
        raise SecurityError("noise handshake payload has no identity_sig")
    muxers = list(msg.extensions.stream_muxers) if msg.HasField("extensions") else []
    return msg.identity_key, msg.identity_sig, muxers


def negotiate_muxer(initiator_muxers: Sequence[str], responder_muxers: Sequence[str]) -> Optional[str]:
    """First entry of the initiator's list that the responder also lists, else None.

    None also when either list is empty (or longer than ``MAX_MUXERS``): the
    upgrader then negotiates the muxer with multistream-select.
    """
    if not initiator_muxers or not responder_muxers:
        return None
    if len(initiator_muxers) > MAX_MUXERS or len(responder_muxers) > MAX_MUXERS:
        return None
    theirs = set(responder_muxers)
    for m in initiator_muxers:
        if m in theirs:
            return m
    return None


@dataclass(frozen=True)
class HandshakeResult:
    """What a finished libp2p Noise handshake yields."""

    send_cipher: CipherState
    recv_cipher: CipherState
    remote_peer: PeerId
    remote_public_key: PublicKey
    remote_static: bytes  # the remote X25519 static public key
    remote_muxers: tuple
    early_muxer: Optional[str]
    handshake_hash: bytes


class Handshake:
    """The libp2p Noise XX handshake (sans-I/O).

    Initiator::

        m1 = hs.write_message_1()
        hs.read_message_2(m2)          # verifies the responder
        m3 = hs.write_message_3()
        res = hs.result                # HandshakeResult

    Responder::

        hs.read_message_1(m1)
        m2 = hs.write_message_2()
        res = hs.read_message_3(m3)    # verifies the initiator; HandshakeResult

    Messages are raw Noise messages; ``frame_message``/``parse_frame`` add and
    strip the 2-byte length.  ``write_message()``/``read_message()`` dispatch on
    the current step.
    """

    def __init__(
        self,
        initiator: bool,
        local_identity: PrivateKey,
        static_private: Optional[bytes] = None,
        ephemeral_private: Optional[bytes] = None,
        muxers: Sequence[str] = (),
        expected_remote_peer: Optional[PeerId | str] = None,
        *,
        prologue: bytes = b"",
        backend: Any = None,
    ) -> None:
        self.initiator = bool(initiator)
        self.local_identity = local_identity
        self.muxers = tuple(muxers)
        if isinstance(expected_remote_peer, str):
            expected_remote_peer = PeerId.from_string(expected_remote_peer)
        self.expected_remote_peer = expected_remote_peer
        self.noise = NoiseXX(
            initiator,
            static_private=static_private,
            ephemeral_private=ephemeral_private,
            prologue=prologue,
            backend=backend,
        )
        self.remote_peer: Optional[PeerId] = None
        self.remote_public_key: Optional[PublicKey] = None
        self.remote_muxers: tuple = ()
        self._result: Optional[HandshakeResult] = None
        self.failed = False

    @property
    def step(self) -> int:
        return self.noise.step

    @property
    def finished(self) -> bool:
        return self._result is not None

    @property
    def result(self) -> HandshakeResult:
        if self._result is None:
            raise SecurityError("noise handshake not finished")
        return self._result

    def local_payload(self) -> bytes:
        sig = self.local_identity.sign(SIGNATURE_PREFIX + self.noise.s_pub)
        return encode_payload(self.local_identity.public_key().marshal(), sig, self.muxers)

    def _verify_remote(self, payload: bytes) -> None:
        identity_key, identity_sig, muxers = decode_payload(payload)
        try:
            pk = unmarshal_public_key(identity_key, backend=self.noise.backend)
        except SecurityError:
            raise
        except Exception as exc:
            raise SecurityError(f"noise handshake: bad remote identity key: {exc}") from exc
        try:
            ok = pk.verify(SIGNATURE_PREFIX + self.noise.rs, identity_sig)
        except Exception as exc:
            raise InvalidSignatureError(f"noise handshake: signature check failed: {exc}") from exc
        if not ok:
            raise InvalidSignatureError("noise handshake: invalid signature over the remote static key")
        peer = PeerId.from_public_key(pk)
        expected = self.expected_remote_peer
        if expected is not None and peer != expected:
            raise PeerIdMismatchError(expected, peer)
        self.remote_public_key = pk
        self.remote_peer = peer
        self.remote_muxers = tuple(muxers)

    def _guard(self, fn, *args):
        if self.failed:
            raise SecurityError("noise handshake already failed")
        try:
            return fn(*args)
        except BaseException:
            self.failed = True
            raise

    # ---- initiator
    def write_message_1(self) -> bytes:
        self._check_role(True, 0)
        return self._guard(self.noise.write_message, b"")

    def read_message_2(self, message: bytes) -> None:
        self._check_role(True, 1)

        def run():
            self._verify_remote(self.noise.read_message(message))

        self._guard(run)

    def write_message_3(self) -> bytes:
        self._check_role(True, 2)

        def run():
            msg = self.noise.write_message(self.local_payload())
            self._finish()
            return msg

        return self._guard(run)

    # ---- responder
    def read_message_1(self, message: bytes) -> None:
        self._check_role(False, 0)
        # libp2p sends an empty payload in message 1; anything there is ignored.
        self._guard(self.noise.read_message, message)

    def write_message_2(self) -> bytes:
        self._check_role(False, 1)
        return self._guard(lambda: self.noise.write_message(self.local_payload()))

    def read_message_3(self, message: bytes) -> HandshakeResult:
        """Consume the initiator's last message; returns the ``HandshakeResult``."""
        self._check_role(False, 2)

        def run():
            self._verify_remote(self.noise.read_message(message))
            self._finish()

        self._guard(run)
        return self.result

    # ---- generic
    def write_message(self) -> bytes:
        step = self.noise.step
        if self.initiator:
            return self.write_message_1() if step == 0 else self.write_message_3()
        return self.write_message_2()

    def read_message(self, message: bytes) -> None:
        step = self.noise.step
        if self.initiator:
            return self.read_message_2(message)
        return self.read_message_1(message) if step == 0 else self.read_message_3(message)

    def _check_role(self, initiator: bool, step: int) -> None:
        if self.initiator != initiator or self.noise.step != step:
            raise SecurityError(
                f"noise handshake out of order: step {self.noise.step}, "
                f"{'initiator' if self.initiator else 'responder'}"
            )

    def _finish(self) -> None:
        send, recv = self.noise.split()
        if self.initiator:
            early = negotiate_muxer(self.muxers, self.remote_muxers)
        else:
            early = negotiate_muxer(self.remote_muxers, self.muxers)
        self._result = HandshakeResult(
            send_cipher=send,
            recv_cipher=recv,
            remote_peer=self.remote_peer,
            remote_public_key=self.remote_public_key,
            remote_static=self.noise.rs,
            remote_muxers=self.remote_muxers,
            early_muxer=early,
            handshake_hash=self.noise.handshake_hash,
        )


# --------------------------------------------------------------------------- framing


def frame_message(message: bytes) -> bytes:
    """``u16be(len) || message`` (a handshake message on the wire)."""
    if len(message) > MAX_FRAME:
        raise SecurityError(f"noise message of {len(message)} bytes exceeds {MAX_FRAME}")
    return _pack_len(len(message)) + message


def parse_frame(buf: bytes, offset: int = 0) -> Optional[tuple[bytes, int]]:
    """Return ``(message, next_offset)`` for one complete frame in ``buf``, or None if incomplete."""
    if len(buf) - offset < 2:
        return None
    n = (buf[offset] << 8) | buf[offset + 1]
    end = offset + 2 + n
    if len(buf) < end:
        return None
    return bytes(buf[offset + 2 : end]), end


def _aead_into(aead: Any, name: str) -> Any:
    """The backend AEAD's ``encrypt_into``/``decrypt_into`` (write into a caller buffer), or None.

    The ``cryptography`` backend offers them with cryptography >= 45; otherwise the
    copying ``encrypt``/``decrypt`` path is used.
    """
    return getattr(aead, name, None)


#: Output buffers above this size are not pooled (a huge write does not pin its
#: ciphertext buffer); a yamux write batch (1 MiB) fits.
KEEP_BUFFER = 2 * 1024 * 1024
#: Ciphertext output buffers shared by all encryptors of the process: one is taken per
#: ``seal_v`` and given back by ``recycle`` once sent, so an idle connection holds none
#: and a busy one reuses warm memory (fresh large allocations cost page faults).
_POOL: list = []
_POOL_MAX = 4


class FrameEncryptor:
    """Transport-phase sender: plaintext in, length-prefixed encrypted frames out."""

    __slots__ = ("cipher", "max_plaintext", "_seal", "_out")  # _out: the buffer of the last seal_v

    def __init__(self, cipher: CipherState, max_plaintext: int = MAX_PLAINTEXT) -> None:
        if not 1 <= max_plaintext <= MAX_PLAINTEXT:
            raise ValueError(f"max_plaintext must be in 1..{MAX_PLAINTEXT}")
        self.cipher = cipher
        self.max_plaintext = max_plaintext
        self._seal = _aead_into(cipher._aead, "encrypt_into") if cipher._aead is not None else None
        self._out = None

    def seal_v(self, buffers: Sequence) -> Any:
        """Encrypt the concatenation of ``buffers`` into consecutive frames; return one
        buffer holding all of them.

        With an AEAD that encrypts in place (``encrypt_into``) the frames are written
        into a pooled buffer and a memoryview of it is returned: send it, release the
        view, then call :meth:`recycle`.  Otherwise the frames are joined into a new
        bytes object.
        """
        seal = self._seal
        if seal is None:
            parts = self.encrypt_frame_parts_v(buffers)
            return parts[0] + parts[1] if len(parts) == 2 else b"".join(parts)
        cipher = self.cipher
        out = _POOL.pop() if _POOL else bytearray()
        try:
            size, cipher.n = _frames.seal_frames(buffers, self.max_plaintext, seal, cipher.n, MAX_NONCE, out)
        except BufferError:  # a view of it is still alive somewhere: leave it, take a new one
            out = bytearray()
            size, cipher.n = _frames.seal_frames(buffers, self.max_plaintext, seal, cipher.n, MAX_NONCE, out)
        self._out = out
        return memoryview(out)[:size]

    def recycle(self) -> None:
        """The result of the last :meth:`seal_v` was sent (and its view released):
        its buffer goes back to the pool."""
        out = self._out
        self._out = None
        if out is not None and len(_POOL) < _POOL_MAX and len(out) <= KEEP_BUFFER:
            _POOL.append(out)

    def encrypt_frame_parts(self, plaintext) -> list:
        """Encrypt into a list of buffers ``[len1, ct1, len2, ct2, ...]`` (for writev)."""
        cipher = self.cipher
        aead = cipher._aead
        if aead is None:
            raise SecurityError("noise cipher has no key")
        mv = memoryview(plaintext)
        total = len(mv)
        step = self.max_plaintext
        out = []
        append = out.append
        enc = aead.encrypt
        n = cipher.n
        pos = 0
        if total == 0:
            return out
        nframes = (total + step - 1) // step
        if n + nframes > MAX_NONCE:
            raise SecurityError("noise nonce exhausted; the connection must be closed")
        while pos < total:
            chunk = mv[pos : pos + step]
            ct = enc(_pack_nonce(n), chunk, _EMPTY)
            n += 1
            append(_pack_len(len(ct)))
            append(ct)
            pos += step
        cipher.n = n
        return out

    def encrypt_frame_parts_v(self, buffers: Sequence) -> list:
        """Like ``encrypt_frame_parts`` for the concatenation of ``buffers``, without joining them.

        The byte stream is cut into ``max_plaintext`` segments; a segment inside
        one buffer is encrypted from a memoryview slice, only segments spanning
        buffers are joined.
        """
        step = self.max_plaintext
        segments = []
        pending: list = []
        pending_len = 0
        for b in buffers:
            mv = memoryview(b)
            size = len(mv)
            pos = 0
            if pending_len:
                take = min(step - pending_len, size)
                pending.append(mv[:take])
                pending_len += take
                pos = take
                if pending_len < step:
                    continue
                segments.append(b"".join(pending))
                pending = []
                pending_len = 0
            while size - pos >= step:
                segments.append(mv[pos : pos + step])
                pos += step
            if pos < size:
                pending.append(mv[pos:])
                pending_len = size - pos
        if pending_len:
            segments.append(pending[0] if len(pending) == 1 else b"".join(pending))
        cipher = self.cipher
        aead = cipher._aead
        if aead is None:
            raise SecurityError("noise cipher has no key")
        n = cipher.n
        if n + len(segments) > MAX_NONCE:
            raise SecurityError("noise nonce exhausted; the connection must be closed")
        enc = aead.encrypt
        out = []
        append = out.append
        for seg in segments:
            ct = enc(_pack_nonce(n), seg, _EMPTY)
            n += 1
            append(_pack_len(len(ct)))
            append(ct)
        cipher.n = n
        return out

    def encrypt_frames(self, plaintext) -> bytes:
        """Encrypt ``plaintext`` (any length) into one bytes object of consecutive frames."""
        parts = self.encrypt_frame_parts(plaintext)
        if len(parts) == 2:
            return parts[0] + parts[1]
        return b"".join(parts)


class FrameDecryptor:
    """Transport-phase receiver: feed raw bytes, get every complete frame's plaintext.

    ``feed(data)`` returns a list of plaintext chunks (possibly empty; an empty
    frame yields no chunk).  Bytes of an incomplete frame are kept for the next
    call.  A frame whose ciphertext is shorter than the tag, or that fails
    authentication, is a ``SecurityError``: the frames before it in the same
    ``feed`` are still returned, ``error`` is set and every later ``feed``
    raises (the connection must be closed).
    """

    __slots__ = ("cipher", "_buf", "error", "_open")

    def __init__(self, cipher: CipherState) -> None:
        self.cipher = cipher
        self._buf = bytearray()
        #: The SecurityError that ended this direction, or None.
        self.error: Optional[SecurityError] = None
        self._open = _aead_into(cipher._aead, "decrypt_into") if cipher._aead is not None else None

    @property
    def can_open_into(self) -> bool:
        """True if :meth:`open_into` is available (the AEAD decrypts into a buffer)."""
        return self._open is not None

    # Buffer API: the caller keeps the ciphertext (e.g. a reused receive buffer) and
    # passes a view of its unconsumed part; ``feed`` and these must not be mixed.

    def _check(self) -> None:
        err = self.error
        if err is not None:
            raise SecurityError(f"noise transport failed: {err}") from err
        if self.cipher._aead is None:
            raise SecurityError("noise cipher has no key")

    def open_into(self, src, dst) -> tuple[int, int]:
        """Decrypt the complete frames at the start of ``src`` back to back into ``dst``
        while each plaintext fits in what is left of ``dst``.

        Returns ``(bytes of src consumed, bytes written to dst)``; ``(0, 0)`` when the
        first frame is incomplete or larger than ``dst`` (see :meth:`open_one`).  A bad
        frame sets ``error``: the frames before it are still returned, the next call raises.
        """
        self._check()
        open_ = self._open
        cipher = self.cipher
        n = cipher.n
        total = len(src)
        room = len(dst)
        pos = 0
        out = 0
        try:
            while total - pos >= 2:
                ln = (src[pos] << 8) | src[pos + 1]
                end = pos + 2 + ln
                if end > total:
                    break
                if ln < TAG_SIZE:
                    raise SecurityError(f"noise frame of {ln} bytes is shorter than the {TAG_SIZE}-byte tag")
                k = ln - TAG_SIZE
                if k > room - out:
                    break
                if n >= MAX_NONCE:
                    raise SecurityError("noise nonce exhausted; the connection must be closed")
                try:
                    open_(_pack_nonce(n), src[pos + 2 : end], _EMPTY, dst[out : out + k])
                except Exception as exc:
                    raise SecurityError(f"noise frame failed authentication: {exc!r}") from exc
                n += 1
                out += k
                pos = end
        except SecurityError as exc:
            self.error = exc
            if pos:
                return pos, out
            raise
        finally:
            cipher.n = n
        return pos, out

    def open_one(self, src) -> tuple[int, Optional[bytes]]:
        """Decrypt the first frame of ``src`` into a new bytes object.

        Returns ``(bytes of src consumed, plaintext)``, or ``(0, None)`` if the frame
        is incomplete.  A bad frame raises ``SecurityError`` (and sets ``error``).
        """
        self._check()
        total = len(src)
        if total < 2:
            return 0, None
        ln = (src[0] << 8) | src[1]
        end = 2 + ln
        if end > total:
            return 0, None
        cipher = self.cipher
        n = cipher.n
        try:
            if ln < TAG_SIZE:
                raise SecurityError(f"noise frame of {ln} bytes is shorter than the {TAG_SIZE}-byte tag")
            if n >= MAX_NONCE:
                raise SecurityError("noise nonce exhausted; the connection must be closed")
            try:
                pt = cipher._aead.decrypt(_pack_nonce(n), src[2:end], _EMPTY)
            except Exception as exc:
                raise SecurityError(f"noise frame failed authentication: {exc}") from exc
        except SecurityError as exc:
            self.error = exc
            raise
        cipher.n = n + 1
        return end, pt

    @property
    def buffered(self) -> int:
        """Bytes held of a not yet complete frame."""
        return len(self._buf)

    def feed(self, data) -> list:
        err = self.error
        if err is not None:
            raise SecurityError(f"noise transport failed: {err}") from err
        out: list = []
        cipher = self.cipher
        aead = cipher._aead
        if aead is None:
            raise SecurityError("noise cipher has no key")
        dec = aead.decrypt
        n = cipher.n
        buf = self._buf
        try:
            mv = memoryview(data)
            total = len(mv)
            pos = 0
            if buf:
                # Complete the pending frame first, copying only the bytes it needs.
                if len(buf) < 2:
                    take = min(2 - len(buf), total)
                    buf += mv[:take]
                    pos = take
                    if len(buf) < 2:
                        return out
                need = 2 + ((buf[0] << 8) | buf[1]) - len(buf)
                if total - pos < need:
                    buf += mv[pos:]
                    return out
                buf += mv[pos : pos + need]
                pos += need
                frame = bytes(buf)
                buf.clear()
                ln = len(frame) - 2
                if ln < TAG_SIZE:
                    raise SecurityError(f"noise frame of {ln} bytes is shorter than the {TAG_SIZE}-byte tag")
                if n >= MAX_NONCE:
                    raise SecurityError("noise nonce exhausted; the connection must be closed")
                try:
                    pt = dec(_pack_nonce(n), memoryview(frame)[2:], _EMPTY)
                except Exception as exc:
                    raise SecurityError(f"noise frame failed authentication: {exc}") from exc
                n += 1
                if pt:
                    out.append(pt)
            while total - pos >= 2:
                ln = (mv[pos] << 8) | mv[pos + 1]
                end = pos + 2 + ln
                if end > total:
                    break
                if ln < TAG_SIZE:
                    raise SecurityError(f"noise frame of {ln} bytes is shorter than the {TAG_SIZE}-byte tag")
                if n >= MAX_NONCE:
                    raise SecurityError("noise nonce exhausted; the connection must be closed")
                try:
                    pt = dec(_pack_nonce(n), mv[pos + 2 : end], _EMPTY)
                except Exception as exc:
                    raise SecurityError(f"noise frame failed authentication: {exc}") from exc
                n += 1
                if pt:
                    out.append(pt)
                pos = end
            if pos < total:
                buf += mv[pos:]
        except SecurityError as exc:
            self.error = exc
            buf.clear()
            if out:
                return out  # deliver the authenticated frames first; the next feed raises
            raise
        finally:
            cipher.n = n
        return out
