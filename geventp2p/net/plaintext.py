"""``/plaintext/2.0.0``: identity exchange without encryption (tests and interop debugging).

Spec: https://github.com/libp2p/specs/blob/master/plaintext/README.md.  After multistream picked this protocol, both sides send
``LP(Exchange{id, pubkey})`` at once (not lock-step) and read the peer's.  Each
side checks that ``id`` is the peer ID of ``pubkey``; the dialer also checks it is
the peer it meant to reach (PeerIdMismatchError).  Afterwards bytes flow unframed.
The exchange is capped at 65536 bytes (go's limit).

Never use this on a real network: nothing is encrypted or authenticated beyond the
claim of a public key.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Iterable, Optional, Union

from geventp2p._speedups import varint
from geventp2p.core.transport import RawConn
from geventp2p.exceptions import (
    P2PError,
    PeerIdMismatchError,
    ProtocolError,
    SecurityError,
)
from geventp2p.net._deadline import timeout_scope
from geventp2p.net.rawconn import DEFAULT_READ_SIZE, Buffer
from geventp2p.net.rawconn import SecuredConn, close_quietly

if TYPE_CHECKING:
    from geventp2p.core.peer import PeerId
    from geventp2p.crypto.keys import PrivateKey, PublicKey

__all__ = ["PROTOCOL_ID", "MAX_EXCHANGE_SIZE", "PlaintextTransport", "PlaintextConn", "encode_exchange"]

log = logging.getLogger(__name__)

PROTOCOL_ID = "/plaintext/2.0.0"
#: Largest accepted Exchange message (go-libp2p's cap).
MAX_EXCHANGE_SIZE = 65536


def encode_exchange(public_key: "PublicKey") -> bytes:
    """``LP(Exchange{id, pubkey})`` for ``public_key`` (a crypto PublicKey)."""
    from geventp2p.core.peer import PeerId
    from geventp2p.pb import plaintext_pb2

    ex = plaintext_pb2.Exchange()
    ex.id = PeerId.from_public_key(public_key).to_bytes()
    ex.pubkey.ParseFromString(public_key.marshal())
    return varint.encode_lp(ex.SerializeToString())


def _decode_exchange(payload: bytes) -> "tuple[PeerId, PublicKey]":
    """Return ``(peer_id, public_key)`` from an Exchange payload, verified to match."""
    from geventp2p.core.peer import PeerId
    from geventp2p.crypto.keys import unmarshal_public_key
    from geventp2p.pb import plaintext_pb2

    ex = plaintext_pb2.Exchange()
    try:
        ex.ParseFromString(payload)
    except Exception as exc:  # protobuf DecodeError
        raise SecurityError(f"plaintext: malformed Exchange message: {exc}") from exc
    if not ex.HasField("id") or not ex.HasField("pubkey"):
        raise SecurityError("plaintext: Exchange lacks id or pubkey")
    try:
        public_key = unmarshal_public_key(ex.pubkey.SerializeToString())
    except P2PError as exc:
        raise SecurityError(f"plaintext: invalid public key: {exc}") from exc
    try:
        peer_id = PeerId.from_bytes(ex.id)
    except P2PError as exc:
        raise SecurityError(f"plaintext: invalid peer id: {exc}") from exc
    if not peer_id.matches_public_key(public_key):
        raise SecurityError(f"plaintext: peer id {peer_id} does not match the public key it sent")
    return peer_id, public_key


class PlaintextTransport:
    """Security transport for ``/plaintext/2.0.0`` (same shape as NoiseTransport)."""

    PROTOCOL_ID = PROTOCOL_ID

    def __init__(self, local_key: "PrivateKey", **opts: object) -> None:
        from geventp2p.core.peer import PeerId

        if opts:
            raise TypeError(f"unexpected options: {sorted(opts)}")
        self.local_key = local_key
        self.local_public_key = local_key.public_key()
        self.local_peer = PeerId.from_public_key(self.local_public_key)
        self._exchange = encode_exchange(self.local_public_key)

    def secure_outbound(self, raw: RawConn, remote_peer: "Optional[Union[PeerId, str]]" = None,
                        timeout: Optional[float] = None) -> "PlaintextConn":
        """Blocks the calling greenlet during the exchange (initiator side).

        Raises PeerIdMismatchError if ``remote_peer`` is given and differs.  On any
        failure ``raw`` is closed.
        """
        return self._secure(raw, remote_peer, timeout)

    def secure_inbound(self, raw: RawConn, timeout: Optional[float] = None) -> "PlaintextConn":
        """Blocks the calling greenlet during the exchange (responder side)."""
        return self._secure(raw, None, timeout)

    def _secure(self, raw: RawConn, expected: "Optional[Union[PeerId, str]]",
                timeout: Optional[float]) -> "PlaintextConn":
        if isinstance(expected, str):
            from geventp2p.core.peer import PeerId

            expected = PeerId.from_string(expected)
        try:
            with timeout_scope(timeout, "plaintext exchange"):
                raw.write(self._exchange)  # eagerly: both sides send before reading
                payload = self._read_exchange(raw)
            peer_id, public_key = _decode_exchange(payload)
            if expected is not None and peer_id != expected:
                raise PeerIdMismatchError(expected, peer_id)
        except BaseException:
            close_quietly(raw)
            raise
        log.debug("plaintext exchange done with %s", peer_id)
        return PlaintextConn(raw, self.local_peer, peer_id, public_key)

    @staticmethod
    def _read_exchange(raw: RawConn) -> bytes:
        buf = b""
        while True:
            try:
                res = varint.decode_lp(buf, 0, MAX_EXCHANGE_SIZE)
            except ProtocolError as exc:
                raise SecurityError(f"plaintext: bad Exchange framing: {exc}") from exc
            if res is not None:
                payload, end = res
                if end < len(buf):
                    raw.unread(buf[end:])  # the peer's first application bytes
                return payload
            data = raw.read(DEFAULT_READ_SIZE)
            if not data:
                raise SecurityError("plaintext: connection closed during the Exchange")
            buf += data


class PlaintextConn(SecuredConn):
    """The RawConn after a plaintext exchange: bytes pass through unchanged (a SecureConn).

    Extra attributes: ``local_peer``, ``remote_peer``, ``remote_public_key``,
    ``security_protocol`` (``/plaintext/2.0.0``), ``early_muxer`` (always None).
    """

    security_protocol = PROTOCOL_ID

    def __init__(self, raw: RawConn, local_peer: "PeerId", remote_peer: "PeerId",
                 remote_public_key: "PublicKey") -> None:
        super().__init__(raw, local_peer, remote_peer, remote_public_key)

    def read(self, n: int = DEFAULT_READ_SIZE, timeout: Optional[float] = None) -> bytes:
        """Blocks the calling greenlet until 1..n bytes arrive; b"" at EOF."""
        if self._closed:
            return b""
        if self._pending:  # a lazily proposed protocol: the base class checks the echo
            return super().read(n, timeout)
        return self._raw.read(n, timeout=timeout)

    def readinto(self, buf: Union[bytearray, memoryview], timeout: Optional[float] = None) -> int:
        """Like ``read`` into ``buf``: straight from the transport (no copy here)."""
        if self._closed:
            return 0
        if self._pending:
            return super().readinto(buf, timeout)
        return self._raw.readinto(buf, timeout=timeout)

    def _read_raw(self, n: int) -> bytes:
        return self._raw.read(n)

    def unread(self, data: Buffer) -> None:
        self._raw.unread(bytes(data))

    def write(self, data: Buffer) -> None:
        if self._pending:
            prefix = self._take_prefix()
            if prefix:
                data = prefix + bytes(data)  # one write: proposal + first message
        self._raw.write(data)

    def writev(self, buffers: Iterable[Buffer]) -> None:
        if self._pending:
            buffers = [self._take_prefix(), *buffers]
        self._raw.writev(buffers)

    def _write_raw(self, data: Buffer) -> None:
        self._raw.write(data)

    def close_write(self) -> None:
        if self._prefix and not self._closed:
            self._flush_prefix()
        self._raw.close_write()
