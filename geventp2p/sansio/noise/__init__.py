"""Sans-I/O Noise for libp2p: ``Noise_XX_25519_ChaChaPoly_SHA256``.

Spec: https://github.com/libp2p/specs/blob/master/noise/README.md.  Three modules,
none of which touches sockets, greenlets or clocks:

:mod:`~geventp2p.sansio.noise.xx`
    The Noise protocol framework for the XX pattern: ``CipherState``,
    ``SymmetricState``, ``NoiseXX`` (raw Noise messages, injectable keys for vectors).
:mod:`~geventp2p.sansio.noise.handshake`
    The libp2p handshake on top: the signed identity payload, the remote ``PeerId``,
    early muxer negotiation; ``Handshake`` with ``receive_data``/``data_to_send``.
:mod:`~geventp2p.sansio.noise.framing`
    Transport frames: ``FrameEncryptor`` (one seal path) and ``FrameDecryptor``
    (owns its ciphertext buffer; ``receive_buffer``/``receive_into``, ``readinto``).

All errors are ``SecurityError`` subclasses (``InvalidSignatureError``,
``PeerIdMismatchError``) from :mod:`geventp2p.exceptions`.
"""

from __future__ import annotations

from geventp2p.sansio.noise.framing import (
    MAX_FRAME,
    MAX_PLAINTEXT,
    RECV_SIZE,
    FrameDecryptor,
    FrameEncryptor,
    frame_message,
    parse_frame,
)
from geventp2p.sansio.noise.handshake import (
    MAX_MUXERS,
    SIGNATURE_PREFIX,
    Handshake,
    HandshakeResult,
    decode_payload,
    encode_payload,
    negotiate_muxer,
)
from geventp2p.sansio.noise.xx import (
    MAX_NONCE,
    PROTOCOL_NAME,
    TAG_SIZE,
    CipherState,
    NoiseXX,
    SymmetricState,
)

__all__ = [
    "PROTOCOL_NAME",
    "SIGNATURE_PREFIX",
    "MAX_FRAME",
    "MAX_PLAINTEXT",
    "RECV_SIZE",
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
