"""The libp2p Noise handshake: XX plus the identity payload and early muxer negotiation.

Each side sends a ``NoiseHandshakePayload`` inside its encrypted handshake message
(responder: message 2, initiator: message 3) holding its libp2p identity public key
and a signature with that key over ``"noise-libp2p-static-key:" || static X25519 key``;
the remote ``PeerId`` is derived from the verified identity key.  The optional
``extensions.stream_muxers`` lists carry the early muxer negotiation: the first
muxer of the initiator's list that the responder also lists is used without a
multistream-select round trip.
See https://github.com/libp2p/specs/blob/master/noise/README.md (handshake payload,
early data) and https://github.com/libp2p/specs/blob/master/connections/inlined-muxer-negotiation.md.

``Handshake`` is sans-I/O: feed received bytes with ``receive_data``, send what
``data_to_send`` returns, until ``finished``; then ``result`` holds the transport
cipher states and ``unused_data`` the bytes received past the last handshake message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, TypeVar, Union

from google.protobuf.message import DecodeError

from geventp2p.core.peer import PeerId
from geventp2p.crypto.keys import PrivateKey, PublicKey, unmarshal_public_key
from geventp2p.exceptions import InvalidSignatureError, PeerIdMismatchError, SecurityError
from geventp2p.pb import noise_pb2
from geventp2p.sansio.noise.framing import MAX_FRAME, frame_message
from geventp2p.sansio.noise.xx import CipherState, NoiseXX

__all__ = [
    "SIGNATURE_PREFIX",
    "MAX_MUXERS",
    "Handshake",
    "HandshakeResult",
    "encode_payload",
    "decode_payload",
    "negotiate_muxer",
]

SIGNATURE_PREFIX = b"noise-libp2p-static-key:"
#: Like go-libp2p, a remote stream_muxers list longer than this is ignored.
MAX_MUXERS = 100

_T = TypeVar("_T")


def encode_payload(identity_key: bytes, identity_sig: bytes, muxers: Sequence[str] = ()) -> bytes:
    """Serialize a ``NoiseHandshakePayload``; ``extensions`` only when muxers are given."""
    msg = noise_pb2.NoiseHandshakePayload()
    msg.identity_key = identity_key
    msg.identity_sig = identity_sig
    if muxers:
        msg.extensions.stream_muxers.extend(muxers)
    return bytes(msg.SerializeToString())


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
    return bytes(msg.identity_key), bytes(msg.identity_sig), muxers


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
    remote_muxers: tuple[str, ...]
    early_muxer: Optional[str]
    handshake_hash: bytes


class Handshake:
    """The libp2p Noise XX handshake (sans-I/O).

    Byte-stream driving (what the gevent shell does)::

        hs = Handshake(initiator, identity_key, muxers=("/yamux/1.0.0",))
        while True:
            send(hs.data_to_send())     # framed messages, b"" when none is due
            if hs.finished:
                break
            data = recv()
            if not data:
                hs.receive_eof()        # raises SecurityError naming the message
            hs.receive_data(data)
        hs.result, hs.unused_data

    Message-level driving (test vectors), raw Noise messages without the 2-byte
    length: initiator ``write_message_1``, ``read_message_2``, ``write_message_3``;
    responder ``read_message_1``, ``write_message_2``, ``read_message_3``.  The two
    styles must not be mixed on one object.

    Every failure is a ``SecurityError`` (``InvalidSignatureError``,
    ``PeerIdMismatchError``); after one the handshake is ``failed`` for good.
    """

    def __init__(
        self,
        initiator: bool,
        local_identity: PrivateKey,
        static_private: Optional[bytes] = None,
        ephemeral_private: Optional[bytes] = None,
        muxers: Sequence[str] = (),
        expected_remote_peer: Optional[Union[PeerId, str]] = None,
        *,
        prologue: bytes = b"",
        backend: Any = None,
    ) -> None:
        self.initiator = bool(initiator)
        self.local_identity = local_identity
        self.muxers = tuple(muxers)
        if isinstance(expected_remote_peer, str):
            expected_remote_peer = PeerId.from_string(expected_remote_peer)
        self.expected_remote_peer: Optional[PeerId] = expected_remote_peer
        self.noise = NoiseXX(
            initiator,
            static_private=static_private,
            ephemeral_private=ephemeral_private,
            prologue=prologue,
            backend=backend,
        )
        self.remote_peer: Optional[PeerId] = None
        self.remote_public_key: Optional[PublicKey] = None
        self.remote_muxers: tuple[str, ...] = ()
        self._result: Optional[HandshakeResult] = None
        self.failed = False
        self._inbuf = bytearray()  # received bytes not yet consumed
        self._outbuf = bytearray()  # framed messages not yet handed out

    # ------------------------------------------------------------------ state

    @property
    def step(self) -> int:
        """Handshake messages processed so far (0..3)."""
        return self.noise.step

    @property
    def finished(self) -> bool:
        """True once the last message was written or read: ``result`` is available."""
        return self._result is not None

    @property
    def complete(self) -> bool:
        """True once finished and everything to send was handed out by ``data_to_send``."""
        return self._result is not None and not self._outbuf

    @property
    def result(self) -> HandshakeResult:
        if self._result is None:
            raise SecurityError("noise handshake not finished")
        return self._result

    @property
    def unused_data(self) -> bytes:
        """Bytes received past the last handshake message (the first transport frames)."""
        return bytes(self._inbuf) if self._result is not None else b""

    # ------------------------------------------------------------------ byte stream

    def receive_data(self, data: bytes) -> None:
        """Consume received bytes: every complete handshake message due is processed
        (and the reply, if one is due, is queued for ``data_to_send``)."""
        if self.failed:
            raise SecurityError("noise handshake already failed")
        self._inbuf += data
        self._advance()

    def data_to_send(self) -> bytes:
        """The framed handshake bytes to send now (``b""`` when none is due)."""
        if self.failed:
            raise SecurityError("noise handshake already failed")
        self._advance()
        out = bytes(self._outbuf)
        self._outbuf.clear()
        return out

    def receive_eof(self) -> None:
        """The transport ended before the handshake did: raise the ``SecurityError``."""
        if self._result is not None:
            return
        self.failed = True
        raise SecurityError(f"noise: EOF during handshake msg {self.noise.step + 1}")

    def _advance(self) -> None:
        noise = self.noise
        while self._result is None:
            if noise.writes_next():
                self._outbuf += frame_message(self.write_message())
                continue
            buf = self._inbuf
            if len(buf) < 2:
                return
            end = 2 + ((buf[0] << 8) | buf[1])
            if len(buf) < end:
                return
            message = bytes(buf[2:end])
            del buf[:end]
            self.read_message(message)

    # ------------------------------------------------------------------ messages

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
        rs = self.noise.rs
        assert rs is not None  # read_message set it before the payload was decrypted
        try:
            ok = pk.verify(SIGNATURE_PREFIX + rs, identity_sig)
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

    def _guard(self, fn: Callable[[], _T]) -> _T:
        if self.failed:
            raise SecurityError("noise handshake already failed")
        try:
            return fn()
        except BaseException:
            self.failed = True
            raise

    # ---- initiator
    def write_message_1(self) -> bytes:
        self._check_role(True, 0)
        return self._guard(lambda: self.noise.write_message(b""))

    def read_message_2(self, message: bytes) -> None:
        self._check_role(True, 1)
        self._guard(lambda: self._verify_remote(self.noise.read_message(message)))

    def write_message_3(self) -> bytes:
        self._check_role(True, 2)

        def run() -> bytes:
            msg = self.noise.write_message(self.local_payload())
            self._finish()
            return msg

        return self._guard(run)

    # ---- responder
    def read_message_1(self, message: bytes) -> None:
        self._check_role(False, 0)
        # libp2p sends an empty payload in message 1; anything there is ignored.
        self._guard(lambda: self.noise.read_message(message))

    def write_message_2(self) -> bytes:
        self._check_role(False, 1)
        return self._guard(lambda: self.noise.write_message(self.local_payload()))

    def read_message_3(self, message: bytes) -> HandshakeResult:
        """Consume the initiator's last message; returns the ``HandshakeResult``."""
        self._check_role(False, 2)

        def run() -> None:
            self._verify_remote(self.noise.read_message(message))
            self._finish()

        self._guard(run)
        return self.result

    # ---- generic
    def write_message(self) -> bytes:
        """Write the next message due (raw, without the length prefix)."""
        step = self.noise.step
        if self.initiator:
            return self.write_message_1() if step == 0 else self.write_message_3()
        return self.write_message_2()

    def read_message(self, message: bytes) -> None:
        """Read the next message due (raw, without the length prefix)."""
        if len(message) > MAX_FRAME:
            raise SecurityError(f"noise message of {len(message)} bytes exceeds {MAX_FRAME}")
        step = self.noise.step
        if self.initiator:
            self.read_message_2(message)
        elif step == 0:
            self.read_message_1(message)
        else:
            self.read_message_3(message)

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
        assert self.remote_peer is not None and self.remote_public_key is not None and self.noise.rs is not None
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
