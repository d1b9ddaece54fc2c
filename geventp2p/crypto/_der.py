"""Tiny strict DER codec for ECDSA signatures (``SEQUENCE { INTEGER r, INTEGER s }``).

Both crypto backends parse and emit signatures through this module, so they
accept exactly the same signature bytes and emit the same (low-S) encoding.
"""

from __future__ import annotations

__all__ = ["encode_sig", "decode_sig", "low_s"]


def _encode_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _encode_int(v: int) -> bytes:
    body = v.to_bytes(v.bit_length() // 8 + 1, "big")  # leading 0 byte when the top bit is set
    return b"\x02" + _encode_len(len(body)) + body


def encode_sig(r: int, s: int) -> bytes:
    """DER-encode a non-negative (r, s) pair."""
    if r < 0 or s < 0:
        raise ValueError("negative signature component")
    body = _encode_int(r) + _encode_int(s)
    return b"\x30" + _encode_len(len(body)) + body


def _read_len(buf: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(buf):
        raise ValueError("truncated DER length")
    first = buf[pos]
    pos += 1
    if first < 0x80:
        return first, pos
    nbytes = first & 0x7F
    if nbytes == 0 or nbytes > 2 or pos + nbytes > len(buf):
        raise ValueError("bad DER length")
    n = int.from_bytes(buf[pos:pos + nbytes], "big")
    if n < 0x80 or buf[pos] == 0:
        raise ValueError("non-minimal DER length")
    return n, pos + nbytes


def _read_int(buf: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(buf) or buf[pos] != 0x02:
        raise ValueError("expected DER INTEGER")
    n, pos = _read_len(buf, pos + 1)
    if n == 0 or pos + n > len(buf):
        raise ValueError("bad DER INTEGER length")
    body = buf[pos:pos + n]
    if body[0] & 0x80:
        raise ValueError("negative DER INTEGER")
    if n > 1 and body[0] == 0 and not body[1] & 0x80:
        raise ValueError("non-minimal DER INTEGER")
    return int.from_bytes(body, "big"), pos + n


def decode_sig(sig: bytes) -> tuple[int, int]:
    """Strictly parse a DER ECDSA signature; raises ValueError on any deviation."""
    sig = bytes(sig)
    if len(sig) < 8 or sig[0] != 0x30:
        raise ValueError("expected DER SEQUENCE")
    n, pos = _read_len(sig, 1)
    if pos + n != len(sig):
        raise ValueError("DER SEQUENCE length mismatch")
    r, pos = _read_int(sig, pos)
    s, pos = _read_int(sig, pos)
    if pos != len(sig):
        raise ValueError("trailing bytes in DER signature")
    return r, s


def low_s(r: int, s: int, order: int) -> tuple[int, int]:
    """Return (r, s) with s in the lower half of the group (Bitcoin/go/js canonical form)."""
    if s > order // 2:
        s = order - s
    return r, s
