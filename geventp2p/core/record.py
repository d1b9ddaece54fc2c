"""Signed envelopes and peer records.

Specs: https://github.com/libp2p/specs/blob/master/RFC/0002-signed-envelopes.md and
https://github.com/libp2p/specs/blob/master/RFC/0003-routing-records.md

An :class:`Envelope` carries a payload signed by a libp2p identity key.  The
signature covers the *domain-separated* bytes::

    uvarint(len(domain)) || domain || uvarint(len(payload_type)) || payload_type
    || uvarint(len(payload)) || payload

A :class:`PeerRecord` (payload type ``03 01``, domain ``libp2p-peer-record``)
lists the addresses of a peer with a sequence number that grows with every new
record of the same signer.

Values only: no I/O, no gevent, no clocks (``PeerRecord.new_seq`` takes the time).
Marshalling is deterministic (fields in number order, empty proto3 fields left
out, as go-libp2p writes them): the envelope's ``public_key`` embeds the key's own
proto2 encoding, so an RSA key (type 0) keeps its ``Type`` field.

Keys are typed against :mod:`geventp2p.core.crypto`; nothing here imports an
implementation.  Parsing an envelope therefore takes ``decode_key``, the function
that turns the embedded ``PublicKey`` protobuf into a key object (normally
:func:`geventp2p.crypto.keys.unmarshal_public_key`).

Errors: malformed bytes raise :class:`~geventp2p.exceptions.RemoteProtocolError`
(or :class:`~geventp2p.exceptions.InvalidKeyError` for the key); a signature
that does not verify raises :class:`~geventp2p.exceptions.InvalidSignatureError`;
a record signed by, or naming, another peer raises
:class:`~geventp2p.exceptions.PeerIdMismatchError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from geventp2p._speedups import varint
from geventp2p.core import addr as _addr
from geventp2p.core import protowire
from geventp2p.core.addr import Multiaddr
from geventp2p.core.crypto import PrivateKey, PublicKey, PublicKeyDecoder
from geventp2p.core.peer import PeerId
from geventp2p.exceptions import (
    InvalidKeyError,
    InvalidPeerIdError,
    InvalidSignatureError,
    MultiaddrError,
    PeerIdMismatchError,
    RemoteProtocolError,
)

__all__ = [
    "PEER_RECORD_DOMAIN",
    "PEER_RECORD_PAYLOAD_TYPE",
    "MAX_ENVELOPE_SIZE",
    "Envelope",
    "PeerRecord",
    "signing_bytes",
    "seal",
    "seal_peer_record",
    "open_envelope",
    "consume_peer_record",
]

#: Signature domain of peer records (go ``PeerRecordEnvelopeDomain``).
PEER_RECORD_DOMAIN = "libp2p-peer-record"
#: Payload type of peer records: multicodec 0x0301 as two raw big-endian bytes (not a varint).
PEER_RECORD_PAYLOAD_TYPE = b"\x03\x01"
#: Largest envelope accepted by ``Envelope.unmarshal`` (identify caps messages at 8 KiB anyway).
MAX_ENVELOPE_SIZE = 64 * 1024

_MAX_U64 = (1 << 64) - 1


def _lp(data: bytes) -> bytes:
    return varint.encode_uvarint(len(data)) + data


def signing_bytes(domain: str | bytes, payload_type: bytes, payload: bytes) -> bytes:
    """The bytes an envelope signature covers: ``LP(domain) || LP(payload_type) || LP(payload)``."""
    d = domain.encode("utf-8") if isinstance(domain, str) else bytes(domain)
    return _lp(d) + _lp(bytes(payload_type)) + _lp(bytes(payload))


# --------------------------------------------------------------------------- minimal protobuf walk


def _fields(buf: bytes, what: str) -> list[tuple[int, int, Any]]:
    """Top-level protobuf fields; RemoteProtocolError on malformed input."""
    return protowire.fields(buf, what, RemoteProtocolError)


def _bytes_field(num: int, wt: int, val: Any, what: str) -> bytes:
    if wt != 2:
        raise RemoteProtocolError(f"{what}: field {num} has wire type {wt}, expected bytes")
    return val


# --------------------------------------------------------------------------- envelope


@dataclass(frozen=True, slots=True)
class Envelope:
    """A signed payload.  Build with :func:`seal`; parse with :meth:`unmarshal` + :meth:`verify`."""

    public_key: PublicKey
    payload_type: bytes
    payload: bytes
    signature: bytes

    def marshal(self) -> bytes:
        """Deterministic protobuf bytes (fields 1, 2, 3, 5; empty fields omitted as proto3 does)."""
        out = bytearray()
        out += b"\x0a" + _lp(self.public_key.marshal())
        if self.payload_type:
            out += b"\x12" + _lp(self.payload_type)
        if self.payload:
            out += b"\x1a" + _lp(self.payload)
        if self.signature:
            out += b"\x2a" + _lp(self.signature)
        return bytes(out)

    @classmethod
    def unmarshal(cls, data: bytes, decode_key: PublicKeyDecoder) -> "Envelope":
        """Parse (without verifying).  Raises RemoteProtocolError / InvalidKeyError.

        ``decode_key`` turns the embedded ``PublicKey`` protobuf into a key
        (:func:`geventp2p.crypto.keys.unmarshal_public_key`).
        """
        data = bytes(data)
        if len(data) > MAX_ENVELOPE_SIZE:
            raise RemoteProtocolError(f"envelope is {len(data)} bytes, more than {MAX_ENVELOPE_SIZE}")
        key_bytes: bytes | None = None
        payload_type = payload = signature = b""
        for num, wt, val in _fields(data, "envelope"):
            if num == 1:
                key_bytes = _bytes_field(num, wt, val, "envelope")
            elif num == 2:
                payload_type = _bytes_field(num, wt, val, "envelope")
            elif num == 3:
                payload = _bytes_field(num, wt, val, "envelope")
            elif num == 5:
                signature = _bytes_field(num, wt, val, "envelope")
        if key_bytes is None:
            raise RemoteProtocolError("envelope has no public key")
        key = decode_key(key_bytes)
        return cls(key, payload_type, payload, signature)

    def signer(self) -> PeerId:
        """The peer ID of the signing key."""
        return PeerId.from_public_key(self.public_key)

    def verify(self, domain: str | bytes) -> None:
        """Raise InvalidSignatureError unless the signature covers the payload in ``domain``."""
        msg = signing_bytes(domain, self.payload_type, self.payload)
        try:
            ok = self.public_key.verify(msg, self.signature)
        except Exception as exc:  # a backend rejecting a malformed signature
            raise InvalidSignatureError(f"envelope signature does not verify: {exc}") from None
        if not ok:
            raise InvalidSignatureError("envelope signature does not verify")

    def __repr__(self) -> str:
        return (f"<Envelope signer={self.signer()} type={self.payload_type.hex()} "
                f"payload={len(self.payload)}B>")


def seal(private_key: PrivateKey, domain: str | bytes, payload_type: bytes, payload: bytes) -> Envelope:
    """Sign ``payload`` under ``domain`` and return the envelope."""
    sig = private_key.sign(signing_bytes(domain, payload_type, payload))
    return Envelope(private_key.public_key(), bytes(payload_type), bytes(payload), sig)


def open_envelope(
    data: bytes, domain: str | bytes, payload_type: bytes | None = None, *, decode_key: PublicKeyDecoder
) -> Envelope:
    """Parse and verify an envelope (and its payload type when given); see :meth:`Envelope.unmarshal`."""
    env = Envelope.unmarshal(data, decode_key)
    if payload_type is not None and env.payload_type != payload_type:
        raise RemoteProtocolError(
            f"envelope payload type {env.payload_type.hex()} is not {bytes(payload_type).hex()}"
        )
    env.verify(domain)
    return env


# --------------------------------------------------------------------------- peer record


def _to_peer(value: Any) -> PeerId:
    if isinstance(value, PeerId):
        return value
    if isinstance(value, str):
        return PeerId.from_string(value)
    return PeerId.from_bytes(bytes(value))


@dataclass(frozen=True, slots=True)
class PeerRecord:
    """``{peer_id, seq, addrs}``; ``addrs`` are Multiaddrs without a ``/p2p`` suffix."""

    peer_id: PeerId
    seq: int
    addrs: tuple[Multiaddr, ...] = field(default=())

    DOMAIN = PEER_RECORD_DOMAIN
    PAYLOAD_TYPE = PEER_RECORD_PAYLOAD_TYPE

    def __post_init__(self) -> None:
        object.__setattr__(self, "peer_id", _to_peer(self.peer_id))
        if isinstance(self.seq, bool) or not isinstance(self.seq, int) or not 0 <= self.seq <= _MAX_U64:
            raise ValueError(f"seq must be a u64, got {self.seq!r}")
        object.__setattr__(self, "addrs", tuple(_addr.parse(a) for a in self.addrs))

    @staticmethod
    def new_seq(now_ns: int, last: int = 0) -> int:
        """go's rule: Unix time in nanoseconds, forced strictly above ``last``."""
        return max(int(now_ns), last + 1)

    def marshal(self) -> bytes:
        """Deterministic proto3 bytes (``seq`` 0 and an empty address list are omitted)."""
        out = bytearray(b"\x0a" + _lp(self.peer_id.to_bytes()))
        if self.seq:
            out += b"\x10" + varint.encode_uvarint(self.seq)
        for a in self.addrs:
            info = b"\x0a" + _lp(a.to_bytes())
            out += b"\x1a" + _lp(info)
        return bytes(out)

    @classmethod
    def unmarshal(cls, data: bytes) -> "PeerRecord":
        """Parse a record; RemoteProtocolError on malformed bytes or addresses."""
        peer_raw = None
        seq = 0
        addrs: list[Multiaddr] = []
        for num, wt, val in _fields(bytes(data), "peer record"):
            if num == 1:
                peer_raw = _bytes_field(num, wt, val, "peer record")
            elif num == 2:
                if wt != 0:
                    raise RemoteProtocolError("peer record: seq is not a varint")
                seq = val
            elif num == 3:
                info = _bytes_field(num, wt, val, "peer record")
                for n2, w2, v2 in _fields(info, "peer record address"):
                    if n2 == 1:
                        raw = _bytes_field(n2, w2, v2, "peer record address")
                        try:
                            addrs.append(_addr.from_bytes(raw))
                        except MultiaddrError as exc:
                            raise RemoteProtocolError(f"peer record: {exc}") from None
        if not peer_raw:
            raise RemoteProtocolError("peer record has no peer id")
        try:
            pid = PeerId.from_bytes(peer_raw)
        except (InvalidPeerIdError, ValueError) as exc:
            raise RemoteProtocolError(f"peer record: bad peer id: {exc}") from None
        if seq > _MAX_U64:
            raise RemoteProtocolError("peer record: seq overflows u64")
        return cls(pid, seq, tuple(addrs))

    def __repr__(self) -> str:
        return f"<PeerRecord {self.peer_id} seq={self.seq} addrs={[str(a) for a in self.addrs]}>"


def seal_peer_record(private_key: PrivateKey, record: PeerRecord) -> Envelope:
    """Sign ``record``; the key must belong to ``record.peer_id``."""
    if not record.peer_id.matches_public_key(private_key.public_key()):
        raise PeerIdMismatchError(record.peer_id, PeerId.from_public_key(private_key.public_key()))
    return seal(private_key, PEER_RECORD_DOMAIN, PEER_RECORD_PAYLOAD_TYPE, record.marshal())


def consume_peer_record(
    data: bytes, expected_peer: PeerId | None = None, *, decode_key: PublicKeyDecoder
) -> tuple[Envelope, PeerRecord]:
    """Parse and fully validate a signed peer record.

    ``decode_key`` decodes the signer's key, normally
    :func:`geventp2p.crypto.keys.unmarshal_public_key`.

    Checks: well-formed envelope and record, payload type ``03 01``, signature
    under ``libp2p-peer-record``, record peer ID == signer, and (when given)
    signer == ``expected_peer``.
    """
    try:
        env = open_envelope(data, PEER_RECORD_DOMAIN, PEER_RECORD_PAYLOAD_TYPE, decode_key=decode_key)
    except InvalidKeyError as exc:
        raise RemoteProtocolError(f"envelope key: {exc}") from None
    rec = PeerRecord.unmarshal(env.payload)
    signer = env.signer()
    if rec.peer_id != signer:
        raise PeerIdMismatchError(signer, rec.peer_id)
    if expected_peer is not None and signer != expected_peer:
        raise PeerIdMismatchError(expected_peer, signer)
    return env, rec

