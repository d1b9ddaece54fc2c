"""secp256k1 ECDSA *verification* in pure Python: the pycryptodome backend's fallback.

The ``cryptography`` backend does secp256k1 with OpenSSL (``ec.SECP256K1``).  The
pycryptodome backend uses pycryptodome's own curve when the installed version has
secp256k1; older versions (up to at least 3.23) do not, and then this module
verifies signatures so that secp256k1 *peers* still interoperate.

Only public data goes through here (the point, the message, the signature), so
the timing of this plain big-int arithmetic, which is not constant-time, leaks
nothing secret.  Signing and public-key derivation handle the private scalar, and
this module deliberately cannot do them: without a native curve the pycryptodome
backend refuses secp256k1 private keys with ``InvalidKeyError``.

Signatures are ECDSA over SHA-256(message), DER ``SEQUENCE{r, s}``; high-S
signatures verify too, as in go-libp2p.
"""

from __future__ import annotations

import hashlib
from typing import Tuple

from geventp2p.crypto import _der

__all__ = ["P", "N", "G", "decode_point", "encode_point", "verify"]

P = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
G = (
    0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798,
    0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8,
)

# Jacobian coordinates (X, Y, Z); Z == 0 is the point at infinity.
_Jacobian = Tuple[int, int, int]
_INF: _Jacobian = (0, 1, 0)


def _double(p1: _Jacobian) -> _Jacobian:
    x, y, z = p1
    if z == 0 or y == 0:
        return _INF
    yy = y * y % P
    s = 4 * x * yy % P
    m = 3 * x * x % P  # a == 0
    x3 = (m * m - 2 * s) % P
    y3 = (m * (s - x3) - 8 * yy * yy) % P
    z3 = 2 * y * z % P
    return x3, y3, z3


def _add(p1: _Jacobian, p2: _Jacobian) -> _Jacobian:
    x1, y1, z1 = p1
    x2, y2, z2 = p2
    if z1 == 0:
        return p2
    if z2 == 0:
        return p1
    z1z1 = z1 * z1 % P
    z2z2 = z2 * z2 % P
    u1 = x1 * z2z2 % P
    u2 = x2 * z1z1 % P
    s1 = y1 * z2 * z2z2 % P
    s2 = y2 * z1 * z1z1 % P
    if u1 == u2:
        if s1 != s2:
            return _INF
        return _double(p1)
    h = (u2 - u1) % P
    hh = h * h % P
    hhh = h * hh % P
    r = (s2 - s1) % P
    v = u1 * hh % P
    x3 = (r * r - hhh - 2 * v) % P
    y3 = (r * (v - x3) - s1 * hhh) % P
    z3 = h * z1 * z2 % P
    return x3, y3, z3


def _mul(k: int, point: tuple[int, int]) -> _Jacobian:
    result = _INF
    addend: _Jacobian = (point[0], point[1], 1)
    while k:
        if k & 1:
            result = _add(result, addend)
        addend = _double(addend)
        k >>= 1
    return result


def _affine(p1: _Jacobian) -> tuple[int, int] | None:
    x, y, z = p1
    if z == 0:
        return None
    zinv = pow(z, -1, P)
    zinv2 = zinv * zinv % P
    return x * zinv2 % P, y * zinv2 * zinv % P


def decode_point(data: bytes) -> tuple[int, int]:
    """Parse a compressed (33-byte) or uncompressed (65-byte) SEC1 point; ValueError if invalid."""
    data = bytes(data)
    if len(data) == 33 and data[0] in (2, 3):
        x = int.from_bytes(data[1:], "big")
        if x >= P:
            raise ValueError("x coordinate out of range")
        rhs = (pow(x, 3, P) + 7) % P
        y = pow(rhs, (P + 1) // 4, P)
        if y * y % P != rhs:
            raise ValueError("x is not on the curve")
        if (y & 1) != (data[0] & 1):
            y = P - y
        return x, y
    if len(data) == 65 and data[0] == 4:
        x = int.from_bytes(data[1:33], "big")
        y = int.from_bytes(data[33:], "big")
        if x >= P or y >= P or (y * y - x * x * x - 7) % P:
            raise ValueError("point is not on the curve")
        return x, y
    raise ValueError(f"bad SEC1 point encoding ({len(data)} bytes)")


def encode_point(point: tuple[int, int]) -> bytes:
    x, y = point
    return bytes([2 | (y & 1)]) + x.to_bytes(32, "big")


def verify(point: tuple[int, int], data: bytes, sig: bytes) -> bool:
    """True if ``sig`` (DER) is a valid ECDSA signature of SHA-256(``data``) by ``point``."""
    try:
        r, s = _der.decode_sig(sig)
    except ValueError:
        return False
    if not (0 < r < N and 0 < s < N):
        return False
    e = int.from_bytes(hashlib.sha256(bytes(data)).digest(), "big")
    w = pow(s, -1, N)
    u1 = e * w % N
    u2 = r * w % N
    pt = _affine(_add(_mul(u1, G), _mul(u2, point)))
    if pt is None:
        return False
    return pt[0] % N == r
