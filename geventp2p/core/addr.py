"""Multiaddr helpers on top of the ``multiaddr`` package.

Everything here is a pure function on :class:`multiaddr.Multiaddr` values: no I/O.
This host's interface addresses and name resolution live in
:mod:`geventp2p.net.addrutil`.

Why not use the package directly everywhere: ``multiaddr`` 0.2.0 accepts any
bytes in ``Multiaddr(b"...")`` without validating them, iterates variable-size
``ip6zone`` values wrongly, stores ``/p2p/<CIDv1>`` as CID bytes instead of the
multihash every other implementation puts on the wire, and
does not know the legacy ``/ipfs/`` name.  :func:`parse` and :func:`from_bytes`
walk the binary form themselves, reject malformed input with
:class:`~geventp2p.exceptions.MultiaddrError`, and normalise ``/p2p/`` values
to multihash bytes, so every ``Multiaddr`` leaving this module is well formed.

Memory transport addresses are ``/memory/<u64>``: the package registers code 777
with an 8-byte big-endian value (rust-libp2p's encoding; the multiaddr table in
protocols.csv lists it as variable-size).
"""

from __future__ import annotations

import ipaddress
import socket  # address-family constants and inet_pton
from typing import Any, Iterable, NamedTuple, Union

from multiaddr import Multiaddr
from multiaddr import exceptions as _ma_exc
from multiaddr.codecs import codec_by_name
from multiaddr.protocols import REGISTRY as _REGISTRY

from geventp2p.exceptions import MultiaddrError

__all__ = [
    "Multiaddr",
    "MultiaddrLike",
    "Component",
    "MAX_ADDR_LEN",
    "MEMORY_PROTOCOL_AVAILABLE",
    "P_IP4",
    "P_TCP",
    "P_UDP",
    "P_IP6",
    "P_IP6ZONE",
    "P_DNS",
    "P_DNS4",
    "P_DNS6",
    "P_DNSADDR",
    "P_P2P",
    "P_P2P_CIRCUIT",
    "P_MEMORY",
    "parse",
    "components",
    "to_bytes",
    "from_bytes",
    "split_p2p",
    "join_p2p",
    "tcp_host_port",
    "memory_id",
    "transports_needed",
    "is_loopback",
    "is_private",
    "is_link_local",
    "is_unspecified",
    "is_local",
    "expand_unspecified",
]

MultiaddrLike = Union[Multiaddr, str, bytes, bytearray, memoryview]

#: Longest binary multiaddr accepted (bytes).  Real addresses stay far below
#: (a webtransport address with two certhashes is ~100 bytes).
MAX_ADDR_LEN = 1024

P_IP4 = 0x04
P_TCP = 0x06
P_UDP = 0x0111
P_IP6 = 0x29
P_IP6ZONE = 0x2A
P_DNS = 0x35
P_DNS4 = 0x36
P_DNS6 = 0x37
P_DNSADDR = 0x38
P_UNIX = 0x0190
P_P2P = 0x01A5
P_TLS = 0x01C0
P_SNI = 0x01C1
P_QUIC = 0x01CC
P_QUIC_V1 = 0x01CD
P_WEBTRANSPORT = 0x01D1
P_CERTHASH = 0x01D2
P_WS = 0x01DD
P_WSS = 0x01DE
P_WEBRTC_DIRECT = 0x0118
P_WEBRTC = 0x0119
P_P2P_CIRCUIT = 0x0122
P_MEMORY = 0x0309


def _registry_has(code: int) -> bool:
    try:
        _REGISTRY.find_by_code(code)
    except _ma_exc.ProtocolNotFoundError:
        return False
    return True


#: True when the installed ``multiaddr`` package knows ``/memory`` (code 777).
MEMORY_PROTOCOL_AVAILABLE = _registry_has(P_MEMORY)

_IP_CODES = (P_IP4, P_IP6)
_HOST_CODES = (P_IP4, P_IP6, P_DNS, P_DNS4, P_DNS6)


class Component(NamedTuple):
    """One decoded multiaddr component."""

    code: int
    name: str
    value: str | None  # text form of the value; None for value-less protocols
    raw: bytes  # binary value (without the length prefix)


# --------------------------------------------------------------------------- binary walk


def _uvarint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode a minimal unsigned varint (at most 9 bytes) at ``pos``."""
    result = 0
    shift = 0
    start = pos
    n = len(buf)
    while True:
        if pos >= n:
            raise MultiaddrError(f"truncated varint at offset {start}")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            if b == 0 and pos - start > 1:
                raise MultiaddrError(f"varint at offset {start} is not minimally encoded")
            return result, pos
        shift += 7
        if pos - start >= 9:
            raise MultiaddrError(f"varint at offset {start} is longer than 9 bytes")


def _encode_uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _normalise_p2p(raw: bytes) -> bytes:
    """Return the multihash bytes of a ``/p2p/`` value given as multihash or CIDv1."""
    if raw[:1] == b"\x01":  # CIDv1 prefix: keep only the multihash, as go/js/rust do
        import cid as _cid  # dependency of ``multiaddr``

        try:
            parsed = _cid.from_bytes(raw)
        except Exception as exc:
            raise MultiaddrError(f"invalid CID in /p2p component: {exc}") from exc
        if parsed.codec != "libp2p-key":
            raise MultiaddrError(f"/p2p CID must use the libp2p-key codec, not {parsed.codec}")
        return bytes(parsed.multihash)
    return raw


def _walk(buf: bytes) -> tuple[list[Component], bool]:
    """Decode and validate every component; returns (components, changed).

    ``changed`` is True when a ``/p2p/`` value was normalised and the binary
    form must be rebuilt.
    """
    if not buf:
        raise MultiaddrError("empty multiaddr")
    if len(buf) > MAX_ADDR_LEN:
        raise MultiaddrError(f"multiaddr is {len(buf)} bytes, more than the {MAX_ADDR_LEN}-byte limit")
    comps: list[Component] = []
    changed = False
    pos = 0
    n = len(buf)
    while pos < n:
        code, pos = _uvarint(buf, pos)
        try:
            proto = _REGISTRY.find_by_code(code)
        except _ma_exc.ProtocolNotFoundError:
            raise MultiaddrError(f"unknown multiaddr protocol code {code}") from None
        if proto.codec is None:
            comps.append(Component(code, proto.name, None, b""))
            continue
        codec = codec_by_name(proto.codec)
        if codec.SIZE > 0:
            size = codec.SIZE // 8
        else:
            size, pos = _uvarint(buf, pos)
        if pos + size > n:
            raise MultiaddrError(
                f"truncated /{proto.name} value: need {size} bytes, {n - pos} left"
            )
        raw = bytes(buf[pos:pos + size])
        pos += size
        if code == P_P2P and raw:
            norm = _normalise_p2p(raw)
            if norm is not raw:
                changed = True
                raw = norm
        try:
            text = codec.to_string(proto, raw)
        except Exception as exc:
            raise MultiaddrError(f"invalid /{proto.name} value {raw.hex()}: {exc}") from exc
        if not text:
            raise MultiaddrError(f"empty /{proto.name} value")
        comps.append(Component(code, proto.name, text, raw))
    return comps, changed


def _encode(comps: Iterable[Component]) -> bytes:
    out = bytearray()
    for c in comps:
        out += _encode_uvarint(c.code)
        proto = _REGISTRY.find_by_code(c.code)
        if proto.codec is None:
            continue
        if codec_by_name(proto.codec).SIZE <= 0:
            out += _encode_uvarint(len(c.raw))
        out += c.raw
    return bytes(out)


def _from_components(comps: Iterable[Component]) -> Multiaddr:
    return Multiaddr(_encode(comps))


# --------------------------------------------------------------------------- text


def _normalise_text(text: str) -> str:
    """Check the text shape and rewrite the legacy ``/ipfs/`` name to ``/p2p/``."""
    if not text:
        raise MultiaddrError("empty multiaddr")
    if not text.startswith("/"):
        raise MultiaddrError(f"invalid multiaddr {text!r}: must begin with '/'")
    parts = text[1:].rstrip("/").split("/") if text != "/" else [""]
    i = 0
    while i < len(parts):
        name = parts[i]
        if not name:
            raise MultiaddrError(f"invalid multiaddr {text!r}: empty component")
        if name == "ipfs":
            parts[i] = name = "p2p"
        try:
            proto = _REGISTRY.find_by_name(name)
        except _ma_exc.ProtocolNotFoundError:
            raise MultiaddrError(f"invalid multiaddr {text!r}: unknown protocol {name!r}") from None
        if proto.codec is None:
            i += 1
            continue
        if codec_by_name(proto.codec).IS_PATH:  # /unix/<path>: the rest is the path
            break
        if i + 1 >= len(parts) or not parts[i + 1]:
            raise MultiaddrError(f"invalid multiaddr {text!r}: missing value for /{name}")
        i += 2
    return "/" + "/".join(parts)


# Decoding goes through the multiaddr package's codecs: ~12 us to read a text address,
# ~50 us to walk an /ip4/tcp/p2p one, and the same few addresses are parsed on every
# dial and accept.  Validated results are kept by binary form and by text (Multiaddr
# objects are immutable); each cache is cleared when it reaches _CACHE_MAX entries.
# Errors are not cached.
_CACHE_MAX = 512
_WALK_CACHE: dict[bytes, tuple[tuple[Component, ...], bool]] = {}
_TEXT_CACHE: dict[str, Multiaddr] = {}


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if len(cache) >= _CACHE_MAX:
        cache.clear()
    cache[key] = value


def _walk_cached(buf: bytes) -> tuple[tuple[Component, ...], bool]:
    """:func:`_walk` of ``buf`` (components as a tuple, changed), memoised."""
    hit = _WALK_CACHE.get(buf)
    if hit is None:
        comps, changed = _walk(buf)
        hit = (tuple(comps), changed)
        _remember(_WALK_CACHE, buf, hit)
    return hit


def parse(ma: MultiaddrLike) -> Multiaddr:
    """Return a validated ``Multiaddr`` from text, binary form or a ``Multiaddr``.

    Raises :class:`MultiaddrError` naming the bad input when it is malformed,
    and ``TypeError`` for other argument types.
    """
    if isinstance(ma, Multiaddr):
        buf = bytes(ma.to_bytes())
        try:
            comps, changed = _walk_cached(buf)
        except MultiaddrError as exc:
            raise MultiaddrError(f"invalid multiaddr {buf.hex()}: {exc}") from None
        return _from_components(comps) if changed else ma
    if isinstance(ma, str):
        hit = _TEXT_CACHE.get(ma)
        if hit is not None:
            return hit
        norm = _normalise_text(ma)
        try:
            buf = bytes(Multiaddr(norm).to_bytes())
        except Exception as exc:  # the package raises assorted ValueError/Error types
            msg = getattr(exc, "message", None) or str(exc)
            raise MultiaddrError(f"invalid multiaddr {ma!r}: {msg}") from exc
        try:
            comps, changed = _walk_cached(buf)
        except MultiaddrError as exc:
            raise MultiaddrError(f"invalid multiaddr {ma!r}: {exc}") from None
        hit = _from_components(comps) if changed else Multiaddr(buf)
        _remember(_TEXT_CACHE, ma, hit)
        return hit
    if isinstance(ma, (bytes, bytearray, memoryview)):
        return from_bytes(ma)
    raise TypeError(f"expected a Multiaddr, str or bytes, got {type(ma).__name__}")


def from_bytes(data: bytes | bytearray | memoryview) -> Multiaddr:
    """Decode and validate the binary form: ``uvarint(code) || value`` per component, with
    ``uvarint(len) || bytes`` values for variable-size protocols
    (https://github.com/multiformats/multiaddr#encoding)."""
    buf = bytes(data)
    try:
        comps, changed = _walk_cached(buf)
    except MultiaddrError as exc:
        shown = buf[:64].hex() + ("..." if len(buf) > 64 else "")
        raise MultiaddrError(f"invalid binary multiaddr {shown}: {exc}") from None
    return _from_components(comps) if changed else Multiaddr(buf)


def from_sockaddr(family: int, host: str, port: int, transport: int, *tail: int) -> Multiaddr:
    """``/ip4|ip6/<host>/<transport>/<port>`` plus value-less ``tail`` protocols, built
    directly in binary form (no text parse, no walk: ~4 us against ~12-100 us).

    For socket addresses: ``host`` must be a numeric IP (an IPv6 ``%zone`` is dropped);
    ``transport`` is :data:`P_TCP` or :data:`P_UDP`.  Raises ``OSError`` for a host that
    is not an address of ``family``.
    """
    ip_code = P_IP4 if family == socket.AF_INET else P_IP6
    buf = (_encode_uvarint(ip_code) + socket.inet_pton(family, host.split("%", 1)[0])
           + _encode_uvarint(transport) + port.to_bytes(2, "big")
           + b"".join(_encode_uvarint(code) for code in tail))
    return Multiaddr(buf)


def to_bytes(ma: MultiaddrLike) -> bytes:
    """Binary form of ``ma``: ``uvarint(code) || value`` per component."""
    return bytes(parse(ma).to_bytes())


def components(ma: MultiaddrLike) -> tuple[Component, ...]:
    """The decoded components of ``ma`` (validated)."""
    buf = bytes((ma if isinstance(ma, Multiaddr) else parse(ma)).to_bytes())
    try:
        return _walk_cached(buf)[0]
    except MultiaddrError as exc:
        raise MultiaddrError(f"invalid multiaddr {buf.hex()}: {exc}") from None


# --------------------------------------------------------------------------- /p2p


def split_p2p(ma: MultiaddrLike) -> tuple[Multiaddr | None, str | None]:
    """Split off a trailing ``/p2p/<id>``: ``(transport part or None, peer id text or None)``.

    Only the last component counts, so a relay address
    ``.../p2p/<relay>/p2p-circuit/p2p/<target>`` yields the target peer and keeps
    the relay part in the transport address.  Legacy ``/ipfs/`` is accepted.
    """
    comps = components(ma)
    last = comps[-1]
    if last.code != P_P2P:
        return _from_components(comps), None
    rest = comps[:-1]
    return (_from_components(rest) if rest else None), last.value


def _peer_id_raw(peer_id: Any) -> bytes:
    to_b = None if isinstance(peer_id, int) else getattr(peer_id, "to_bytes", None)
    if callable(to_b):  # a PeerId
        raw = bytes(to_b())
    elif isinstance(peer_id, (bytes, bytearray, memoryview)):
        raw = bytes(peer_id)
    elif isinstance(peer_id, str):
        try:
            return components("/p2p/" + peer_id)[0].raw
        except MultiaddrError as exc:
            raise MultiaddrError(f"invalid peer id {peer_id!r}: {exc}") from None
    else:
        raise TypeError(f"expected a PeerId, str or bytes peer id, got {type(peer_id).__name__}")
    try:
        return _walk(b"\xa5\x03" + _encode_uvarint(len(raw)) + raw)[0][0].raw
    except MultiaddrError as exc:
        raise MultiaddrError(f"invalid peer id bytes {raw.hex()}: {exc}") from None


def join_p2p(ma: MultiaddrLike, peer_id: Any) -> Multiaddr:
    """Append ``/p2p/<peer_id>`` unless ``ma`` already ends with it.

    Raises :class:`MultiaddrError` if ``ma`` already ends with a *different* peer id.
    """
    comps = components(ma)
    raw = _peer_id_raw(peer_id)
    last = comps[-1]
    if last.code == P_P2P:
        if last.raw == raw:
            return _from_components(comps)
        raise MultiaddrError(
            f"{_from_components(comps)} already names peer {last.value}, not {peer_id}"
        )
    proto = _REGISTRY.find_by_code(P_P2P)
    text = codec_by_name(proto.codec).to_string(proto, raw)
    return _from_components(comps + (Component(P_P2P, "p2p", text, raw),))


# --------------------------------------------------------------------------- transports


def tcp_host_port(ma: MultiaddrLike, *, strict: bool = True) -> tuple[str, int, int]:
    """``(host, port, family)`` of an ``/ip4|ip6|dns|dns4|dns6/<host>/tcp/<port>`` address.

    ``family`` is ``socket.AF_INET``, ``AF_INET6`` or ``AF_UNSPEC`` (``/dns``).
    A leading ``/ip6zone`` becomes a ``%zone`` suffix.  With ``strict`` only a
    trailing ``/p2p/`` may follow ``/tcp``; otherwise later components are ignored.
    """
    comps = components(ma)
    zone = None
    i = 0
    if comps[0].code == P_IP6ZONE:
        zone = comps[0].value
        i = 1
    if len(comps) < i + 2 or comps[i].code not in _HOST_CODES or comps[i + 1].code != P_TCP:
        raise MultiaddrError(f"{_from_components(comps)} is not an ip4/ip6/dns/dns4/dns6 + tcp address")
    if zone is not None and comps[i].code != P_IP6:
        raise MultiaddrError(f"{_from_components(comps)}: /ip6zone must precede /ip6")
    tail = comps[i + 2:]
    if strict and tail and not (len(tail) == 1 and tail[0].code == P_P2P):
        raise MultiaddrError(
            f"{_from_components(comps)} is not a plain tcp address "
            f"(has /{'/'.join(c.name for c in tail)} after /tcp)"
        )
    host_c = comps[i]
    host = host_c.value or ""
    if host_c.code in (P_IP4, P_DNS4):
        family = socket.AF_INET
    elif host_c.code in (P_IP6, P_DNS6):
        family = socket.AF_INET6
    else:
        family = socket.AF_UNSPEC
    if zone is not None:
        host = f"{host}%{zone}"
    return host, int(comps[i + 1].value or 0), family


def memory_id(ma: MultiaddrLike) -> int:
    """The id of a ``/memory/<id>`` address (an optional ``/p2p/`` may follow)."""
    comps = components(ma)
    if comps[0].code != P_MEMORY or not (len(comps) == 1 or (len(comps) == 2 and comps[1].code == P_P2P)):
        raise MultiaddrError(f"{_from_components(comps)} is not a /memory address")
    return int(comps[0].value or 0)


def _base_transport(comps: tuple[Component, ...]) -> str | None:
    """Transport name for an address without /p2p-circuit and trailing /p2p."""
    if not comps:
        return None
    codes = [c.code for c in comps]
    if codes == [P_MEMORY]:
        return "memory"
    if codes == [P_UNIX]:
        return "unix"
    i = 1 if codes[0] == P_IP6ZONE else 0
    if len(codes) < i + 2 or codes[i] not in _HOST_CODES:
        return None
    if i and codes[i] != P_IP6:
        return None
    tail = codes[i + 2:]
    if codes[i + 1] == P_TCP:
        if not tail:
            return "tcp"
        if tail == [P_WS]:
            return "ws"
        if tail == [P_WSS] or tail == [P_TLS, P_WS] or tail == [P_TLS, P_SNI, P_WS]:
            return "wss"
        return None
    if codes[i + 1] == P_UDP:
        while tail and tail[-1] == P_CERTHASH:
            tail = tail[:-1]
        has_certhash = len(tail) != len(codes) - i - 2
        if tail == [P_QUIC_V1] and not has_certhash:
            return "quic-v1"
        if tail == [P_QUIC] and not has_certhash:
            return "quic"
        if tail == [P_QUIC_V1, P_WEBTRANSPORT]:
            return "webtransport"
        if tail == [P_WEBRTC_DIRECT]:
            return "webrtc-direct"
        return None
    return None


def transports_needed(ma: MultiaddrLike) -> tuple[str, ...]:
    """Which transports dialing ``ma`` needs, outermost first.

    ``("tcp",)``, ``("ws",)``, ``("wss",)``, ``("quic-v1",)``, ``("quic",)``,
    ``("webtransport",)``, ``("webrtc-direct",)``, ``("memory",)``, ``("unix",)``;
    a relayed address adds the relay's transports before ``"p2p-circuit"``
    (and ``"webrtc"`` when it ends in ``/webrtc``).  The empty tuple means no
    transport can dial it as is (``/dnsaddr`` needs resolving first, a bare IP
    has no port, unknown stacks).
    """
    comps = list(components(ma))
    if comps[-1].code == P_P2P:
        comps.pop()
    if not comps:
        return ()
    circuit_at = max((k for k, c in enumerate(comps) if c.code == P_P2P_CIRCUIT), default=-1)
    if circuit_at < 0:
        name = _base_transport(tuple(comps))
        return (name,) if name else ()
    relay = comps[:circuit_at]
    after = [c.code for c in comps[circuit_at + 1:]]
    if after not in ([], [P_WEBRTC]):
        return ()
    if relay and relay[-1].code == P_P2P:
        relay = relay[:-1]
    if not relay:  # "/p2p-circuit/p2p/<id>": any relay we know of
        below: tuple[str, ...] = ()
    else:
        below = transports_needed(_from_components(relay))
        if not below:
            return ()
    result = below + ("p2p-circuit",)
    if after == [P_WEBRTC]:
        result += ("webrtc",)
    return result


# --------------------------------------------------------------------------- address classes

_PRIVATE_V4 = tuple(
    ipaddress.IPv4Network(n)
    for n in ("10.0.0.0/8", "100.64.0.0/10", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16")
)
_PRIVATE_V6 = tuple(ipaddress.IPv6Network(n) for n in ("fc00::/7", "fe80::/10"))
_LOCAL_DNS = ("localhost",)


def _first_host(ma: MultiaddrLike) -> Component | None:
    comps = components(ma)
    c = comps[1] if comps[0].code == P_IP6ZONE and len(comps) > 1 else comps[0]
    return c if c.code in _HOST_CODES else None


def _ip_of(ma: MultiaddrLike) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    c = _first_host(ma)
    if c is None or c.code not in _IP_CODES:
        return None
    ip = ipaddress.ip_address(c.raw)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _is_localhost_name(name: str) -> bool:
    name = name.rstrip(".").lower()
    return name in _LOCAL_DNS or name.endswith(".localhost")


def is_loopback(ma: MultiaddrLike) -> bool:
    """True for ``127.0.0.0/8``, ``::1`` and ``/dns*/localhost`` addresses."""
    c = _first_host(ma)
    if c is None:
        return False
    if c.code in _IP_CODES:
        ip = _ip_of(ma)
        return bool(ip is not None and ip.is_loopback)
    return _is_localhost_name(c.value or "")


def is_private(ma: MultiaddrLike) -> bool:
    """True for private-use IPs (RFC 1918, CGNAT 100.64/10, link-local, ULA fc00::/7).

    As in go-multiaddr, loopback is *not* private: use :func:`is_local` for
    "local enough for the short dial timeout".
    """
    ip = _ip_of(ma)
    if ip is None:
        return False
    nets = _PRIVATE_V4 if ip.version == 4 else _PRIVATE_V6
    return any(ip in n for n in nets)


def is_link_local(ma: MultiaddrLike) -> bool:
    """True for ``169.254.0.0/16`` and ``fe80::/10`` addresses."""
    ip = _ip_of(ma)
    return bool(ip is not None and ip.is_link_local)


def is_unspecified(ma: MultiaddrLike) -> bool:
    """True for ``0.0.0.0`` and ``::`` addresses."""
    ip = _ip_of(ma)
    return bool(ip is not None and ip.is_unspecified)


def is_local(ma: MultiaddrLike) -> bool:
    """Loopback, private, memory or unix-socket address: dials get the short (5 s) timeout."""
    first = components(ma)[0].code
    if first in (P_MEMORY, P_UNIX):
        return True
    return is_loopback(ma) or is_private(ma)


# --------------------------------------------------------------------------- unspecified expansion


def _as_ip(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return value
    if isinstance(value, Multiaddr) or (isinstance(value, str) and value.startswith("/")):
        ip = _ip_of(value)
        if ip is None:
            raise MultiaddrError(f"interface address {value} has no /ip4 or /ip6 component")
        return ip
    if isinstance(value, str):
        try:
            return ipaddress.ip_address(value.split("%", 1)[0])
        except ValueError:
            raise MultiaddrError(f"invalid interface address {value!r}") from None
    raise TypeError(f"expected an IP address, got {type(value).__name__}")


def expand_unspecified(ma: MultiaddrLike, interfaces: Iterable[Any]) -> list[Multiaddr]:
    """Replace an unspecified ``0.0.0.0`` / ``::`` host by each interface address of that family.

    ``interfaces`` holds IP strings, ``ipaddress`` objects or ``/ip4|/ip6``
    multiaddrs (this host's: :func:`geventp2p.net.addrutil.interface_addresses`).
    Other addresses come back unchanged as a one-element list.  Order follows
    ``interfaces``; duplicates are dropped.
    """
    comps = components(ma)
    if comps[0].code not in _IP_CODES:
        return [_from_components(comps)]
    ip = ipaddress.ip_address(comps[0].raw)
    if not ip.is_unspecified:
        return [_from_components(comps)]
    out: list[Multiaddr] = []
    seen: set[bytes] = set()
    for iface in interfaces:
        iface_ip = _as_ip(iface)
        if iface_ip.version != ip.version:
            continue
        code = P_IP4 if iface_ip.version == 4 else P_IP6
        new = _from_components((Component(code, comps[0].name, str(iface_ip), iface_ip.packed),) + comps[1:])
        key = new.to_bytes()
        if key not in seen:
            seen.add(key)
            out.append(new)
    return out
