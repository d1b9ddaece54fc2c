"""A minimal, strict walk over the top-level fields of a protobuf message.

Used where the exact received bytes matter (key protobufs, signed envelopes and
peer records), so parsing stays independent of the protobuf runtime's leniency.
No I/O, no gevent.
"""

from __future__ import annotations

from typing import Any

from geventp2p._speedups import varint
from geventp2p.exceptions import VarintError

__all__ = ["fields"]


def fields(buf: bytes, what: str, error: type[Exception]) -> list[tuple[int, int, Any]]:
    """Decode the top-level fields of ``buf`` as ``(number, wire_type, value)``.

    Varints come back as ints, length-delimited values as bytes, fixed64/fixed32
    as their raw bytes.  Any malformation (truncation, field number 0, an unknown
    wire type, a bad varint) raises ``error`` with a message starting with ``what``.
    """
    out: list[tuple[int, int, Any]] = []
    pos = 0
    n = len(buf)
    try:
        while pos < n:
            dec = varint.decode_uvarint(buf, pos)
            if dec is None:
                raise error(f"{what}: truncated field tag")
            tag, pos = dec
            num, wt = tag >> 3, tag & 7
            if num == 0:
                raise error(f"{what}: field number 0")
            if wt == 0:
                dec = varint.decode_uvarint(buf, pos)
                if dec is None:
                    raise error(f"{what}: truncated varint field {num}")
                val, pos = dec
                out.append((num, wt, val))
            elif wt == 2:
                dec = varint.decode_uvarint(buf, pos)
                if dec is None:
                    raise error(f"{what}: truncated length of field {num}")
                ln, pos = dec
                if pos + ln > n:
                    raise error(f"{what}: field {num} runs past the end (needs {ln} bytes, {n - pos} left)")
                out.append((num, wt, bytes(buf[pos:pos + ln])))
                pos += ln
            elif wt in (1, 5):
                size = 8 if wt == 1 else 4
                if pos + size > n:
                    raise error(f"{what}: truncated fixed{size * 8} field {num}")
                out.append((num, wt, bytes(buf[pos:pos + size])))
                pos += size
            else:
                raise error(f"{what}: unsupported wire type {wt} for field {num}")
    except VarintError as exc:
        raise error(f"{what}: bad varint: {exc}") from None
    return out
