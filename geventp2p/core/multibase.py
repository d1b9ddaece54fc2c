"""Small multibase / multihash helpers.

Specs: https://github.com/multiformats/multibase, https://github.com/multiformats/multihash
and the CID form of peer IDs in
https://github.com/libp2p/specs/blob/master/peer-ids/peer-ids.md#string-representation

Only what peer IDs and CIDs need: base58btc, base32 (lower/upper, no padding),
base36, base16 and base64/base64url (no padding), plus multihash framing.
Decoders raise ``ValueError`` on any bad input; callers wrap it in their own
typed error.
"""

from __future__ import annotations

import base64
import binascii

from geventp2p._speedups import varint
from geventp2p.exceptions import VarintError

__all__ = [
    "b58encode",
    "b58decode",
    "b32encode",
    "b32decode",
    "b36encode",
    "b36decode",
    "multibase_encode",
    "multibase_decode",
    "multihash_encode",
    "multihash_decode",
    "IDENTITY",
    "SHA2_256",
]

IDENTITY = 0x00
SHA2_256 = 0x12

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58)}
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_B36_INDEX = {c: i for i, c in enumerate(_B36)}


def _encode_bigbase(data: bytes, alphabet: str) -> str:
    data = bytes(data)
    base = len(alphabet)
    stripped = data.lstrip(b"\x00")
    zeros = len(data) - len(stripped)
    n = int.from_bytes(stripped, "big")
    out = []
    while n:
        n, r = divmod(n, base)
        out.append(alphabet[r])
    return alphabet[0] * zeros + "".join(reversed(out))


def _decode_bigbase(s: str, index: dict, name: str) -> bytes:
    zero = next(iter(index))  # first alphabet character encodes a leading zero byte
    base = len(index)
    n = 0
    for ch in s:
        v = index.get(ch)
        if v is None:
            raise ValueError(f"invalid {name} character {ch!r}")
        n = n * base + v
    zeros = len(s) - len(s.lstrip(zero))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\x00" * zeros + body


def b58encode(data: bytes) -> str:
    """base58btc (bitcoin alphabet); each leading zero byte becomes ``1``."""
    return _encode_bigbase(data, _B58)


def b58decode(s: str) -> bytes:
    return _decode_bigbase(s, _B58_INDEX, "base58btc")


def b36encode(data: bytes) -> str:
    """base36 lowercase; each leading zero byte becomes ``0``."""
    return _encode_bigbase(data, _B36)


def b36decode(s: str) -> bytes:
    return _decode_bigbase(s.lower(), _B36_INDEX, "base36")


def b32encode(data: bytes) -> str:
    """RFC 4648 base32, lowercase, no padding."""
    return base64.b32encode(bytes(data)).decode("ascii").rstrip("=").lower()


def b32decode(s: str) -> bytes:
    """RFC 4648 base32 without padding, either case (not mixed)."""
    if s != s.lower() and s != s.upper():
        raise ValueError("mixed-case base32")
    if len(s) % 8 in (1, 3, 6):
        raise ValueError("impossible base32 length")
    try:
        return base64.b32decode(s.upper() + "=" * (-len(s) % 8))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"invalid base32: {exc}") from None


def _b64decode(s: str, altchars: bytes | None) -> bytes:
    if "=" in s:
        raise ValueError("padded base64 is not multibase")
    if len(s) % 4 == 1:
        raise ValueError("impossible base64 length")
    try:
        return base64.b64decode(s + "=" * (-len(s) % 4), altchars=altchars, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"invalid base64: {exc}") from None


# prefix -> (name, encode, decode)
_CODECS = {
    "z": ("base58btc", b58encode, b58decode),
    "b": ("base32", b32encode, lambda s: b32decode(s) if s == s.lower() else _bad("base32 must be lowercase")),
    "B": ("base32upper", lambda d: b32encode(d).upper(),
          lambda s: b32decode(s) if s == s.upper() else _bad("base32upper must be uppercase")),
    "k": ("base36", b36encode, lambda s: b36decode(s) if s == s.lower() else _bad("base36 must be lowercase")),
    "K": ("base36upper", lambda d: b36encode(d).upper(),
          lambda s: b36decode(s.lower()) if s == s.upper() else _bad("base36upper must be uppercase")),
    "f": ("base16", lambda d: bytes(d).hex(), lambda s: _hex(s, lower=True)),
    "F": ("base16upper", lambda d: bytes(d).hex().upper(), lambda s: _hex(s, lower=False)),
    "m": ("base64", lambda d: base64.b64encode(bytes(d)).decode().rstrip("="), lambda s: _b64decode(s, None)),
    "u": ("base64url", lambda d: base64.urlsafe_b64encode(bytes(d)).decode().rstrip("="),
          lambda s: _b64decode(s, b"-_")),
}
_NAMES = {v[0]: k for k, v in _CODECS.items()}


def _bad(msg: str):
    raise ValueError(msg)


def _hex(s: str, lower: bool) -> bytes:
    if (lower and s != s.lower()) or (not lower and s != s.upper()):
        raise ValueError("wrong hex case for the multibase prefix")
    try:
        return bytes.fromhex(s)
    except ValueError:
        raise ValueError("invalid base16") from None


def multibase_encode(name: str, data: bytes) -> str:
    """Encode ``data`` with the named multibase (``base32``, ``base58btc``, ...) and its prefix."""
    prefix = _NAMES.get(name)
    if prefix is None:
        raise ValueError(f"unsupported multibase {name!r}")
    return prefix + _CODECS[prefix][1](data)


def multibase_decode(s: str) -> tuple[str, bytes]:
    """Return ``(encoding name, bytes)``; ValueError for unknown prefixes or bad characters."""
    if not isinstance(s, str) or not s:
        raise ValueError("empty multibase string")
    codec = _CODECS.get(s[0])
    if codec is None:
        raise ValueError(f"unsupported multibase prefix {s[0]!r}")
    return codec[0], codec[2](s[1:])


def multihash_encode(code: int, digest: bytes) -> bytes:
    return varint.encode_uvarint(code) + varint.encode_uvarint(len(digest)) + bytes(digest)


def multihash_decode(mh: bytes) -> tuple[int, bytes]:
    """Strictly parse ``uvarint(code) || uvarint(len) || digest``; ValueError on mismatch."""
    mh = bytes(mh)
    try:
        res = varint.decode_uvarint(mh, 0)
        if res is None:
            raise ValueError("multihash truncated in its code")
        code, pos = res
        res = varint.decode_uvarint(mh, pos)
        if res is None:
            raise ValueError("multihash truncated in its length")
        length, pos = res
    except VarintError as exc:
        raise ValueError(f"multihash has a bad varint: {exc}") from None
    if len(mh) - pos != length:
        raise ValueError(f"multihash declares {length} digest bytes but has {len(mh) - pos}")
    return code, mh[pos:]
