"""Identify / identify-push codec and validation, sans-I/O.

Spec: https://github.com/libp2p/specs/blob/master/identify/README.md

* :class:`IdentifyMessage` - the message as plain data (raw bytes for keys and
  addresses), with :meth:`IdentifyMessage.encode` (one ``LP(protobuf)`` frame,
  trimmed to fit the 4 KiB budget rust can read) and protobuf merge semantics.
* :class:`MessageReader` - feed bytes as they arrive; enforces the 8 KiB per
  message and 10 messages per stream limits; :meth:`MessageReader.result`
  merges everything read (repeated fields append, singular fields overwrite).
* :func:`validate` - turns a received message into an :class:`IdentifyInfo`
  for a known remote peer: key checked against the peer ID, addresses
  decoded (bad ones dropped), at most 500 addresses and 1024 protocols, the
  signed peer record verified (an invalid one is ignored and the listen
  addresses are used instead, as go does).

No gevent, sockets, clocks or logging.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterable

from google.protobuf.message import DecodeError

from geventp2p._speedups import varint
from geventp2p.core import addr as _addr
from geventp2p.core.addr import Multiaddr
from geventp2p.core.peer import PeerId
from geventp2p.core.record import Envelope, PeerRecord, consume_peer_record
from geventp2p.crypto.keys import PublicKey, unmarshal_public_key
from geventp2p.exceptions import (
    InvalidKeyError,
    MessageTooLargeError,
    MultiaddrError,
    P2PError,
    PeerIdMismatchError,
    RemoteProtocolError,
    VarintError,
)
from geventp2p.pb import identify_pb2

__all__ = [
    "ID",
    "ID_PUSH",
    "PROTOCOL_VERSION",
    "MAX_MESSAGE_SIZE",
    "MAX_MESSAGES",
    "MAX_OWN_MESSAGE_SIZE",
    "MAX_PROTOCOLS",
    "MAX_ADDRS",
    "IdentifyMessage",
    "IdentifyInfo",
    "MessageReader",
    "validate",
    "protocols_diff",
]

ID = "/ipfs/id/1.0.0"
ID_PUSH = "/ipfs/id/push/1.0.0"
#: What we send in ``protocolVersion`` (go's field is empty by default; js/rust send this).
PROTOCOL_VERSION = "ipfs/0.1.0"
#: Largest message we accept (go, js: 8 KiB).
MAX_MESSAGE_SIZE = 8 * 1024
#: Messages read from one stream at most (go, js: 10).
MAX_MESSAGES = 10
#: Budget for our own message so rust can decode it (4 KiB).
MAX_OWN_MESSAGE_SIZE = 4096
#: Protocols stored per peer (go truncates beyond this).
MAX_PROTOCOLS = 1024
#: Addresses stored per peer (go).
MAX_ADDRS = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentifyMessage:
    """One Identify message as plain data.  ``None`` means the field is absent."""

    public_key: bytes | None = None  # marshalled PublicKey protobuf
    listen_addrs: tuple[bytes, ...] = ()  # binary multiaddrs
    protocols: tuple[str, ...] = ()
    observed_addr: bytes | None = None  # binary multiaddr
    protocol_version: str | None = None
    agent_version: str | None = None
    signed_peer_record: bytes | None = None  # marshalled Envelope

    def __post_init__(self) -> None:
        object.__setattr__(self, "listen_addrs", tuple(bytes(a) for a in self.listen_addrs))
        object.__setattr__(self, "protocols", tuple(self.protocols))

    # ------------------------------------------------------------------ protobuf

    def to_pb(self) -> identify_pb2.Identify:
        m = identify_pb2.Identify()
        if self.public_key is not None:
            m.publicKey = self.public_key
        m.listenAddrs.extend(self.listen_addrs)
        m.protocols.extend(self.protocols)
        if self.observed_addr is not None:
            m.observedAddr = self.observed_addr
        if self.protocol_version is not None:
            m.protocolVersion = self.protocol_version
        if self.agent_version is not None:
            m.agentVersion = self.agent_version
        if self.signed_peer_record is not None:
            m.signedPeerRecord = self.signed_peer_record
        return m

    @classmethod
    def from_pb(cls, m: identify_pb2.Identify) -> "IdentifyMessage":
        return cls(
            public_key=m.publicKey if m.HasField("publicKey") else None,
            listen_addrs=tuple(m.listenAddrs),
            protocols=tuple(m.protocols),
            observed_addr=m.observedAddr if m.HasField("observedAddr") else None,
            protocol_version=m.protocolVersion if m.HasField("protocolVersion") else None,
            agent_version=m.agentVersion if m.HasField("agentVersion") else None,
            signed_peer_record=m.signedPeerRecord if m.HasField("signedPeerRecord") else None,
        )

    def serialize(self) -> bytes:
        """Protobuf bytes (deterministic)."""
        return self.to_pb().SerializeToString(deterministic=True)

    @classmethod
    def parse(cls, data: bytes) -> "IdentifyMessage":
        """Decode protobuf bytes; RemoteProtocolError if malformed."""
        m = identify_pb2.Identify()
        try:
            m.ParseFromString(bytes(data))
        except (DecodeError, ValueError, RuntimeError) as exc:
            raise RemoteProtocolError(f"malformed identify message: {exc}") from None
        return cls.from_pb(m)

    def merge(self, other: "IdentifyMessage") -> "IdentifyMessage":
        """Protobuf merge: repeated fields append, present singular fields overwrite."""
        def pick(a: Any, b: Any) -> Any:
            return a if b is None else b

        return IdentifyMessage(
            public_key=pick(self.public_key, other.public_key),
            listen_addrs=self.listen_addrs + other.listen_addrs,
            protocols=self.protocols + other.protocols,
            observed_addr=pick(self.observed_addr, other.observed_addr),
            protocol_version=pick(self.protocol_version, other.protocol_version),
            agent_version=pick(self.agent_version, other.agent_version),
            signed_peer_record=pick(self.signed_peer_record, other.signed_peer_record),
        )

    def encode(self, max_size: int = MAX_OWN_MESSAGE_SIZE) -> bytes:
        """``LP(protobuf)`` of this message, trimmed to at most ``max_size`` protobuf bytes.

        Trimming order (go drops listen addresses "to be compatible with rust"):
        listen addresses from the end, then the signed record (never sent
        half-valid), then protocols from the end.  Raises ``ValueError`` if even
        the stripped message does not fit.
        """
        msg = self
        body = msg.serialize()
        while len(body) > max_size:
            if msg.listen_addrs:
                msg = replace(msg, listen_addrs=msg.listen_addrs[:-1])
            elif msg.signed_peer_record is not None:
                msg = replace(msg, signed_peer_record=None)
            elif msg.protocols:
                msg = replace(msg, protocols=msg.protocols[:-1])
            else:
                raise ValueError(f"identify message cannot fit in {max_size} bytes")
            body = msg.serialize()
        return varint.encode_lp(body)


class MessageReader:
    """Incremental reader of ``LP(Identify)`` frames from one stream.

    ``feed(data)`` returns the messages completed by ``data``; ``result()`` merges
    every message read so far (after EOF).  Raises MessageTooLargeError for a
    frame over ``max_size`` and RemoteProtocolError past ``max_messages`` or for
    a truncated frame at EOF (``eof()``).
    """

    def __init__(self, max_size: int = MAX_MESSAGE_SIZE, max_messages: int = MAX_MESSAGES) -> None:
        self.max_size = max_size
        self.max_messages = max_messages
        self._buf = bytearray()
        self._messages: list[IdentifyMessage] = []

    @property
    def messages(self) -> list[IdentifyMessage]:
        return list(self._messages)

    def feed(self, data: bytes) -> list[IdentifyMessage]:
        self._buf += data
        out: list[IdentifyMessage] = []
        pos = 0
        try:
            while pos < len(self._buf):
                dec = varint.decode_lp(self._buf, pos, self.max_size)
                if dec is None:
                    break
                payload, pos = dec
                if len(self._messages) >= self.max_messages:
                    raise RemoteProtocolError(f"more than {self.max_messages} identify messages on one stream")
                msg = IdentifyMessage.parse(payload)
                self._messages.append(msg)
                out.append(msg)
        except (VarintError, MessageTooLargeError):
            raise
        finally:
            del self._buf[:pos]
        return out

    def eof(self) -> None:
        """The stream ended; raises RemoteProtocolError if a frame was cut short."""
        if self._buf:
            raise RemoteProtocolError(f"identify stream ended inside a message ({len(self._buf)} bytes left)")

    def result(self) -> IdentifyMessage:
        """Everything read, merged; RemoteProtocolError if nothing was read."""
        if not self._messages:
            raise RemoteProtocolError("identify stream ended without a message")
        merged = self._messages[0]
        for m in self._messages[1:]:
            merged = merged.merge(m)
        return merged


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentifyInfo:
    """A validated Identify message from ``peer``.

    ``addrs`` are the addresses to store: the signed record's when it is valid,
    else ``listen_addrs``.  ``record_error`` says why a present record was
    ignored.  ``dropped_addrs`` counts malformed or excess addresses.
    """

    peer: PeerId
    public_key: PublicKey | None = None
    listen_addrs: tuple[Multiaddr, ...] = ()
    protocols: tuple[str, ...] = ()
    observed_addr: Multiaddr | None = None
    protocol_version: str | None = None
    agent_version: str | None = None
    envelope: Envelope | None = None
    record: PeerRecord | None = None
    record_error: str | None = None
    dropped_addrs: int = 0
    addrs: tuple[Multiaddr, ...] = field(default=())


def _decode_addrs(raw: Iterable[bytes], limit: int) -> tuple[list[Multiaddr], int]:
    out: list[Multiaddr] = []
    dropped = 0
    for b in raw:
        if len(out) >= limit:
            dropped += 1
            continue
        try:
            ma = _addr.from_bytes(b)
        except MultiaddrError:
            dropped += 1
            continue
        if ma not in out:
            out.append(ma)
    return out, dropped


def validate(msg: IdentifyMessage, peer: PeerId) -> IdentifyInfo:
    """Check ``msg`` received from ``peer`` and decode it.

    Raises :class:`PeerIdMismatchError` if ``publicKey`` is present but is not
    ``peer``'s key, and :class:`RemoteProtocolError` if it is malformed.  An
    absent key is fine (js pushes omit it).  Everything else degrades: bad
    addresses are dropped, an invalid record is ignored.
    """
    key = None
    if msg.public_key is not None:
        try:
            key = unmarshal_public_key(msg.public_key)
        except InvalidKeyError as exc:
            raise RemoteProtocolError(f"identify: bad public key: {exc}") from None
        if not peer.matches_public_key(key):
            raise PeerIdMismatchError(peer, PeerId.from_public_key(key))
    listen, dropped = _decode_addrs(msg.listen_addrs, MAX_ADDRS)
    observed = None
    if msg.observed_addr:
        try:
            observed = _addr.from_bytes(msg.observed_addr)
        except MultiaddrError:
            observed = None
    protocols = tuple(dict.fromkeys(p for p in msg.protocols if p))[:MAX_PROTOCOLS]
    envelope = record = None
    record_error = None
    addrs: tuple[Multiaddr, ...] = tuple(listen)
    if msg.signed_peer_record is not None:
        try:
            envelope, record = consume_peer_record(msg.signed_peer_record, peer, decode_key=unmarshal_public_key)
        except (P2PError, ValueError) as exc:
            record_error = f"{type(exc).__name__}: {exc}"
        else:
            rec_addrs = [a for a in record.addrs]
            addrs = tuple(dict.fromkeys(rec_addrs))[:MAX_ADDRS]
    return IdentifyInfo(
        peer=peer,
        public_key=key,
        listen_addrs=tuple(listen),
        protocols=protocols,
        observed_addr=observed,
        protocol_version=msg.protocol_version,
        agent_version=msg.agent_version,
        envelope=envelope,
        record=record,
        record_error=record_error,
        dropped_addrs=dropped,
        addrs=addrs,
    )


def protocols_diff(old: Iterable[str], new: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(added, removed)`` between two protocol lists, in list order."""
    old_l = list(dict.fromkeys(old))
    new_l = list(dict.fromkeys(new))
    old_s, new_s = set(old_l), set(new_l)
    return tuple(p for p in new_l if p not in old_s), tuple(p for p in old_l if p not in new_s)
