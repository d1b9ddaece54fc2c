"""The pubsub RPC: value types and a hand-written protobuf codec.

Schema: https://github.com/libp2p/specs/blob/master/pubsub/README.md#the-rpc and
https://github.com/libp2p/specs/blob/master/pubsub/gossipsub/gossipsub-v1.2.md
(``geventp2p/pb/rpc.proto`` holds the same schema; the tests decode with it too).

Why by hand and not the protobuf runtime: one pass turns the bytes straight into
the slotted types below (no second conversion), every malformation becomes a
typed :class:`~geventp2p.exceptions.RPCDecodeError`, unknown fields are skipped
as proto2 requires, and each decoded :class:`Message` keeps its exact wire bytes
(``raw``) so forwarding it to many peers never re-encodes it and the signed part
can be taken from the bytes the author produced.

Encoding is canonical: fields in number order, optional fields only when set,
``bool`` as one byte.  Topic strings and ``messageIDs`` carry raw bytes: topics
are decoded with ``surrogateescape`` so that any byte string survives a round trip,
and message IDs are ``bytes`` (go declares them ``string`` but sends arbitrary bytes).
The v1.3 ``ControlExtensions`` message is decoded (known flags only); the
partial-messages extension's RPC field is skipped when received and never sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from geventp2p._speedups import varint
from geventp2p.exceptions import LocalProtocolError, RPCDecodeError, RPCTooLargeError, VarintError

__all__ = [
    "MAX_RPC_SIZE",
    "Message",
    "SubOpts",
    "PeerInfoPX",
    "ControlIHave",
    "ControlIWant",
    "ControlGraft",
    "ControlPrune",
    "ControlIDontWant",
    "ControlExtensions",
    "ControlMessage",
    "RPC",
    "encode_message",
    "decode_message",
    "encode_rpc",
    "decode_rpc",
    "frame_rpc",
    "signed_part",
    "split_rpc",
]

MAX_RPC_SIZE = 1024 * 1024
"""go's limit for one RPC (``DefaultMaxMessageSize``); larger ones are rejected."""

_uv = varint.encode_uvarint


def _ld(num: int, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    return _uv((num << 3) | 2) + _uv(len(payload)) + payload


_TOPIC_ENC = "utf-8"
_TOPIC_ERR = "surrogateescape"


def _topic_bytes(topic: str) -> bytes:
    return topic.encode(_TOPIC_ENC, _TOPIC_ERR)


# --------------------------------------------------------------------------- types


@dataclass(slots=True, eq=True)
class Message:
    """A published message (``RPC.publish``).

    ``from_peer`` is the author's binary peer ID (multihash bytes), ``seqno`` 8
    big-endian bytes; both, ``signature`` and ``key`` are None when absent (StrictNoSign).
    ``raw`` caches the encoded protobuf (set by decoding or :func:`encode_message`;
    not part of equality); code that changes a field afterwards must reset it to None.
    """

    data: bytes = b""
    topic: str = ""
    from_peer: Optional[bytes] = None
    seqno: Optional[bytes] = None
    signature: Optional[bytes] = None
    key: Optional[bytes] = None
    raw: Optional[bytes] = field(default=None, compare=False, repr=False)

    @property
    def size(self) -> int:
        """Encoded size in bytes."""
        return len(encode_message(self))


@dataclass(slots=True, eq=True)
class SubOpts:
    """A subscription change: ``subscribe`` True to join ``topic``, False to leave."""

    subscribe: bool
    topic: str


@dataclass(slots=True, eq=True)
class PeerInfoPX:
    """A peer offered in PRUNE (peer exchange): binary peer ID + optional signed peer record."""

    peer_id: Optional[bytes] = None
    signed_peer_record: Optional[bytes] = None


@dataclass(slots=True, eq=True)
class ControlIHave:
    topic: str
    message_ids: list[bytes] = field(default_factory=list)


@dataclass(slots=True, eq=True)
class ControlIWant:
    message_ids: list[bytes] = field(default_factory=list)


@dataclass(slots=True, eq=True)
class ControlGraft:
    topic: str


@dataclass(slots=True, eq=True)
class ControlPrune:
    """``backoff`` is in seconds (v1.1; None when absent); ``peers`` are PX candidates."""

    topic: str
    peers: list[PeerInfoPX] = field(default_factory=list)
    backoff: Optional[int] = None


@dataclass(slots=True, eq=True)
class ControlIDontWant:
    message_ids: list[bytes] = field(default_factory=list)


@dataclass(slots=True, eq=True)
class ControlExtensions:
    """The v1.3 extensions a peer supports (sent once, in the first RPC of a stream).

    Known flags: ``partial_messages`` (field 10) and ``test_extension`` (field 6492434);
    None when absent.  Unknown extension fields are ignored.
    """

    partial_messages: Optional[bool] = None
    test_extension: Optional[bool] = None


@dataclass(slots=True, eq=True)
class ControlMessage:
    ihave: list[ControlIHave] = field(default_factory=list)
    iwant: list[ControlIWant] = field(default_factory=list)
    graft: list[ControlGraft] = field(default_factory=list)
    prune: list[ControlPrune] = field(default_factory=list)
    idontwant: list[ControlIDontWant] = field(default_factory=list)
    extensions: Optional[ControlExtensions] = None  # v1.3

    def is_empty(self) -> bool:
        return not (self.ihave or self.iwant or self.graft or self.prune or self.idontwant) and self.extensions is None


@dataclass(slots=True, eq=True)
class RPC:
    """One RPC frame: subscription changes, messages and control messages."""

    subscriptions: list[SubOpts] = field(default_factory=list)
    publish: list[Message] = field(default_factory=list)
    control: Optional[ControlMessage] = None

    def is_empty(self) -> bool:
        return not self.subscriptions and not self.publish and (self.control is None or self.control.is_empty())


# --------------------------------------------------------------------------- encoding


def encode_message(msg: Message) -> bytes:
    """The protobuf bytes of ``msg`` (cached in ``msg.raw``)."""
    raw = msg.raw
    if raw is not None:
        return raw
    raw = _encode_message_fields(msg, with_signature=True)
    msg.raw = raw
    return raw


def signed_part(msg: Message) -> bytes:
    """The bytes a signature covers: the message without ``signature`` and ``key``.

    For a decoded message these are its received fields minus fields 5 and 6, in
    their received order; otherwise the canonical encoding.
    """
    raw = msg.raw
    if raw is None:
        return _encode_message_fields(msg, with_signature=False)
    parts = []
    for num, start, end in _field_spans(raw, "Message"):
        if num != 5 and num != 6:
            parts.append(raw[start:end])
    return b"".join(parts)


def _encode_message_fields(msg: Message, *, with_signature: bool) -> bytes:
    out = []
    if msg.from_peer is not None:
        out.append(_ld(1, msg.from_peer))
    if msg.data is not None:
        out.append(_ld(2, msg.data))
    if msg.seqno is not None:
        out.append(_ld(3, msg.seqno))
    out.append(_ld(4, _topic_bytes(msg.topic)))
    if with_signature:
        if msg.signature is not None:
            out.append(_ld(5, msg.signature))
        if msg.key is not None:
            out.append(_ld(6, msg.key))
    return b"".join(out)


def _encode_control(ctl: ControlMessage) -> bytes:
    out = []
    for ih in ctl.ihave:
        out.append(_ld(1, _ld(1, _topic_bytes(ih.topic)) + b"".join(_ld(2, m) for m in ih.message_ids)))
    for iw in ctl.iwant:
        out.append(_ld(2, b"".join(_ld(1, m) for m in iw.message_ids)))
    for g in ctl.graft:
        out.append(_ld(3, _ld(1, _topic_bytes(g.topic))))
    for p in ctl.prune:
        body = [_ld(1, _topic_bytes(p.topic))]
        for px in p.peers:
            pb = b""
            if px.peer_id is not None:
                pb += _ld(1, px.peer_id)
            if px.signed_peer_record is not None:
                pb += _ld(2, px.signed_peer_record)
            body.append(_ld(2, pb))
        if p.backoff is not None:
            body.append(b"\x18" + _uv(p.backoff))
        out.append(_ld(4, b"".join(body)))
    for d in ctl.idontwant:
        out.append(_ld(5, b"".join(_ld(1, m) for m in d.message_ids)))
    ext = ctl.extensions
    if ext is not None:
        ext_body = b""
        if ext.partial_messages is not None:
            ext_body += _uv(10 << 3) + (b"\x01" if ext.partial_messages else b"\x00")
        if ext.test_extension is not None:
            ext_body += _uv(6492434 << 3) + (b"\x01" if ext.test_extension else b"\x00")
        out.append(_ld(6, ext_body))
    return b"".join(out)


def encode_rpc(rpc: RPC) -> bytes:
    """The protobuf bytes of ``rpc`` (no length prefix)."""
    out = []
    for s in rpc.subscriptions:
        out.append(_ld(1, (b"\x08\x01" if s.subscribe else b"\x08\x00") + _ld(2, _topic_bytes(s.topic))))
    for m in rpc.publish:
        out.append(_ld(2, encode_message(m)))
    if rpc.control is not None:
        out.append(_ld(3, _encode_control(rpc.control)))
    return b"".join(out)


def frame_rpc(rpc: RPC) -> bytes:
    """``uvarint(len) || encode_rpc(rpc)``, as written on a pubsub stream."""
    body = encode_rpc(rpc)
    return _uv(len(body)) + body


# --------------------------------------------------------------------------- decoding


def _field_spans(buf: bytes, what: str) -> list[tuple[int, int, int]]:
    """``(number, start, end)`` of every top-level field of ``buf`` (start at the tag)."""
    out = []
    pos = 0
    n = len(buf)
    while pos < n:
        start = pos
        num, wt, pos, _v = _next_field(buf, pos, n, what)
        out.append((num, start, pos))
    return out


def _next_field(buf: bytes, pos: int, n: int, what: str) -> tuple[int, int, int, Any]:
    """Parse one field at ``pos``: ``(number, wire_type, next_pos, value)``.

    Varints come back as ints, length-delimited values as ``(start, end)`` offsets.
    """
    try:
        dec = varint.decode_uvarint(buf, pos)
        if dec is None:
            raise RPCDecodeError(f"{what}: truncated field tag")
        tag, pos = dec
        num = tag >> 3
        wt = tag & 7
        if num == 0:
            raise RPCDecodeError(f"{what}: field number 0")
        if wt == 2:
            dec = varint.decode_uvarint(buf, pos)
            if dec is None:
                raise RPCDecodeError(f"{what}: truncated length of field {num}")
            ln, pos = dec
            end = pos + ln
            if end > n:
                raise RPCDecodeError(f"{what}: field {num} runs past the end ({ln} bytes, {n - pos} left)")
            return num, wt, end, (pos, end)
        if wt == 0:
            dec = varint.decode_uvarint(buf, pos)
            if dec is None:
                raise RPCDecodeError(f"{what}: truncated varint field {num}")
            val, pos = dec
            return num, wt, pos, val
        if wt == 1 or wt == 5:
            size = 8 if wt == 1 else 4
            if pos + size > n:
                raise RPCDecodeError(f"{what}: truncated fixed{size * 8} field {num}")
            return num, wt, pos + size, None
    except VarintError as exc:
        raise RPCDecodeError(f"{what}: bad varint: {exc}") from None
    raise RPCDecodeError(f"{what}: unsupported wire type {wt} for field {num}")


def _want(wt: int, expected: int, num: int, what: str) -> None:
    if wt != expected:
        raise RPCDecodeError(f"{what}: field {num} has wire type {wt}, expected {expected}")


def _fields(buf: bytes, what: str) -> list[tuple[int, int, Any]]:
    out = []
    pos = 0
    n = len(buf)
    nf = _next_field
    while pos < n:
        num, wt, pos, v = nf(buf, pos, n, what)
        out.append((num, wt, v))
    return out


def _bytes_of(buf: bytes, v: Any) -> bytes:
    return buf[v[0]:v[1]]


def _topic_of(buf: bytes, v: Any) -> str:
    return buf[v[0]:v[1]].decode(_TOPIC_ENC, _TOPIC_ERR)


def decode_message(buf: bytes) -> Message:
    """Decode one ``Message``; raises :class:`RPCDecodeError` when malformed."""
    msg = Message(data=b"", topic="", raw=buf)
    for num, wt, v in _fields(buf, "Message"):
        if num <= 6:
            _want(wt, 2, num, "Message")
            if num == 1:
                msg.from_peer = _bytes_of(buf, v)
            elif num == 2:
                msg.data = _bytes_of(buf, v)
            elif num == 3:
                msg.seqno = _bytes_of(buf, v)
            elif num == 4:
                msg.topic = _topic_of(buf, v)
            elif num == 5:
                msg.signature = _bytes_of(buf, v)
            else:
                msg.key = _bytes_of(buf, v)
    return msg


def _ids(buf: bytes, fnum: int, what: str) -> list[bytes]:
    out = []
    for num, wt, v in _fields(buf, what):
        if num == fnum:
            _want(wt, 2, num, what)
            out.append(_bytes_of(buf, v))
    return out


def _topic_only(buf: bytes, what: str) -> str:
    topic = ""
    for num, wt, v in _fields(buf, what):
        if num == 1:
            _want(wt, 2, num, what)
            topic = _topic_of(buf, v)
    return topic


def _decode_prune(buf: bytes) -> ControlPrune:
    p = ControlPrune(topic="")
    for num, wt, v in _fields(buf, "ControlPrune"):
        if num == 1:
            _want(wt, 2, num, "ControlPrune")
            p.topic = _topic_of(buf, v)
        elif num == 2:
            _want(wt, 2, num, "ControlPrune")
            sub = _bytes_of(buf, v)
            px = PeerInfoPX()
            for n2, w2, v2 in _fields(sub, "PeerInfo"):
                if n2 == 1:
                    _want(w2, 2, n2, "PeerInfo")
                    px.peer_id = _bytes_of(sub, v2)
                elif n2 == 2:
                    _want(w2, 2, n2, "PeerInfo")
                    px.signed_peer_record = _bytes_of(sub, v2)
            p.peers.append(px)
        elif num == 3:
            _want(wt, 0, num, "ControlPrune")
            p.backoff = v
    return p


def _decode_control(buf: bytes) -> ControlMessage:
    ctl = ControlMessage()
    for num, wt, v in _fields(buf, "ControlMessage"):
        if 1 <= num <= 5:
            _want(wt, 2, num, "ControlMessage")
            sub = _bytes_of(buf, v)
            if num == 1:
                ih = ControlIHave(topic="")
                for n2, w2, v2 in _fields(sub, "ControlIHave"):
                    if n2 == 1:
                        _want(w2, 2, n2, "ControlIHave")
                        ih.topic = _topic_of(sub, v2)
                    elif n2 == 2:
                        _want(w2, 2, n2, "ControlIHave")
                        ih.message_ids.append(_bytes_of(sub, v2))
                ctl.ihave.append(ih)
            elif num == 2:
                ctl.iwant.append(ControlIWant(_ids(sub, 1, "ControlIWant")))
            elif num == 3:
                ctl.graft.append(ControlGraft(_topic_only(sub, "ControlGraft")))
            elif num == 4:
                ctl.prune.append(_decode_prune(sub))
            else:
                ctl.idontwant.append(ControlIDontWant(_ids(sub, 1, "ControlIDontWant")))
        elif num == 6:
            _want(wt, 2, num, "ControlMessage")
            sub = _bytes_of(buf, v)
            ext = ctl.extensions if ctl.extensions is not None else ControlExtensions()
            for n2, w2, v2 in _fields(sub, "ControlExtensions"):
                if n2 == 10:
                    _want(w2, 0, n2, "ControlExtensions")
                    ext.partial_messages = bool(v2)
                elif n2 == 6492434:
                    _want(w2, 0, n2, "ControlExtensions")
                    ext.test_extension = bool(v2)
            ctl.extensions = ext
    return ctl


def decode_rpc(buf: bytes, max_size: int = MAX_RPC_SIZE) -> RPC:
    """Decode one RPC body (without its length prefix).

    Raises :class:`RPCTooLargeError` when ``buf`` is longer than ``max_size`` and
    :class:`RPCDecodeError` when it is not a valid RPC.  Unknown fields are skipped.
    """
    if len(buf) > max_size:
        raise RPCTooLargeError(f"RPC of {len(buf)} bytes exceeds the limit of {max_size}")
    buf = bytes(buf)
    rpc = RPC()
    for num, wt, v in _fields(buf, "RPC"):
        if num == 1:
            _want(wt, 2, num, "RPC")
            sub = _bytes_of(buf, v)
            subscribe = False
            topic = ""
            for n2, w2, v2 in _fields(sub, "SubOpts"):
                if n2 == 1:
                    _want(w2, 0, n2, "SubOpts")
                    subscribe = bool(v2)
                elif n2 == 2:
                    _want(w2, 2, n2, "SubOpts")
                    topic = _topic_of(sub, v2)
            rpc.subscriptions.append(SubOpts(subscribe, topic))
        elif num == 2:
            _want(wt, 2, num, "RPC")
            rpc.publish.append(decode_message(_bytes_of(buf, v)))
        elif num == 3:
            _want(wt, 2, num, "RPC")
            ctl = _decode_control(_bytes_of(buf, v))
            if rpc.control is None:
                rpc.control = ctl
            else:  # protobuf merges repeated occurrences of a message field
                rpc.control.ihave += ctl.ihave
                rpc.control.iwant += ctl.iwant
                rpc.control.graft += ctl.graft
                rpc.control.prune += ctl.prune
                rpc.control.idontwant += ctl.idontwant
                if ctl.extensions is not None:
                    if rpc.control.extensions is None:
                        rpc.control.extensions = ctl.extensions
                    else:
                        if ctl.extensions.partial_messages is not None:
                            rpc.control.extensions.partial_messages = ctl.extensions.partial_messages
                        if ctl.extensions.test_extension is not None:
                            rpc.control.extensions.test_extension = ctl.extensions.test_extension
    return rpc


# --------------------------------------------------------------------------- splitting


def split_rpc(rpc: RPC, limit: int = MAX_RPC_SIZE) -> list[RPC]:
    """Split ``rpc`` into RPCs whose encodings are at most ``limit`` bytes each.

    Subscriptions, messages and control entries are packed greedily in order; IHAVE,
    IWANT and IDONTWANT ID lists are cut into pieces when needed.  A single message
    (or subscription, GRAFT, PRUNE, ID) that cannot fit on its own raises
    ``LocalProtocolError``.  (Use 65536 for peers with rust-libp2p's default limit.)
    """
    if len(encode_rpc(rpc)) <= limit:
        return [rpc]
    # each piece: (kind, object, encoded size of the piece as a field of RPC or ControlMessage)
    out: list[RPC] = []
    cur = RPC()
    cur_size = 0
    ctl_size = 0  # size of the control entries in ``cur`` (without the field 3 header)
    budget = limit - 12  # room for the control field header and varint growth

    def flush() -> None:
        nonlocal cur, cur_size, ctl_size
        if not cur.is_empty():
            out.append(cur)
        cur = RPC()
        cur_size = 0
        ctl_size = 0

    def add_top(kind: str, obj: object, size: int) -> None:
        nonlocal cur_size
        if size > budget:
            raise LocalProtocolError(f"a single {kind} of {size} bytes exceeds the RPC limit of {limit}")
        if cur_size + ctl_size + size > budget:
            flush()
        if kind == "subscription":
            cur.subscriptions.append(obj)  # type: ignore[arg-type]
        else:
            cur.publish.append(obj)  # type: ignore[arg-type]
        cur_size += size

    def add_ctl(kind: str, obj: object, size: int) -> None:
        nonlocal ctl_size
        if size > budget:
            raise LocalProtocolError(f"a single {kind} of {size} bytes exceeds the RPC limit of {limit}")
        if cur_size + ctl_size + size > budget:
            flush()
        if cur.control is None:
            cur.control = ControlMessage()
        getattr(cur.control, kind).append(obj)
        ctl_size += size

    for s in rpc.subscriptions:
        add_top("subscription", s, len(encode_rpc(RPC(subscriptions=[s]))))
    for m in rpc.publish:
        add_top("message", m, len(_ld(2, encode_message(m))))
    ctl = rpc.control
    if ctl is not None:
        if ctl.extensions is not None:
            one = ControlMessage(extensions=ctl.extensions)
            size = len(_encode_control(one))
            if cur_size + size > budget:
                flush()
            cur.control = ControlMessage(extensions=ctl.extensions)
            ctl_size += size
        for g in ctl.graft:
            add_ctl("graft", g, len(_encode_control(ControlMessage(graft=[g]))))
        for p in ctl.prune:
            add_ctl("prune", p, len(_encode_control(ControlMessage(prune=[p]))))
        for kind in ("ihave", "iwant", "idontwant"):
            for entry in getattr(ctl, kind):
                for piece in _split_ids(kind, entry, budget):
                    one = ControlMessage()
                    getattr(one, kind).append(piece)
                    add_ctl(kind, piece, len(_encode_control(one)))
    flush()
    return out


def _split_ids(kind: str, entry: object, budget: int) -> list[object]:
    ids: list[bytes] = entry.message_ids  # type: ignore[attr-defined]
    head = 16 + (len(_topic_bytes(entry.topic)) if kind == "ihave" else 0)  # type: ignore[attr-defined]
    pieces: list[list[bytes]] = [[]]
    size = head
    for mid in ids:
        s = len(mid) + 6
        if s + head > budget:
            raise LocalProtocolError(f"a message ID of {len(mid)} bytes exceeds the RPC limit")
        if size + s > budget and pieces[-1]:
            pieces.append([])
            size = head
        pieces[-1].append(mid)
        size += s
    if kind == "ihave":
        return [ControlIHave(entry.topic, p) for p in pieces]  # type: ignore[attr-defined]
    if kind == "iwant":
        return [ControlIWant(p) for p in pieces]
    return [ControlIDontWant(p) for p in pieces]
