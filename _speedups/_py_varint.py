"""Unsigned varints (multiformats) and varint-length-prefixed messages.

Pure Python source; the build compiles this same file as ``_c_varint`` with
``_c_varint.pxd``.  Rules (https://github.com/multiformats/unsigned-varint):

* little-endian base-128, at most 9 bytes (values < 2**63);
* minimal encoding only: no trailing ``0x00`` continuation byte except the value 0;
* a length-prefixed message is ``uvarint(len) || payload``; the default size cap
  is 4 MiB (``MESSAGE_SIZE_MAX``).

"Need more bytes" returns ``None`` and consumes nothing; malformed input raises
``VarintError`` / ``MessageTooLargeError``.
"""

from geventp2p.exceptions import LocalProtocolError, MessageTooLargeError, VarintError

MAX_VARINT_LEN = 9
MAX_VALUE = (1 << 63) - 1
MESSAGE_SIZE_MAX = 4 * 1024 * 1024

# Private copies used by the functions below: C constants in the compiled build
# (``_c_varint.pxd``); the public names above stay Python globals in both builds.
_MAX_VARINT_LEN = MAX_VARINT_LEN
_MAX_VALUE = MAX_VALUE
_BYTE = tuple(bytes((i,)) for i in range(0x100))


def encode_uvarint(value):
    """Encode a non-negative int below 2**63 as a minimal unsigned varint."""
    if value < 0 or value > _MAX_VALUE:
        raise LocalProtocolError("uvarint out of range: %r" % (value,))
    v = value
    if v < 0x80:
        return _BYTE[v]
    if v < 0x4000:
        return _BYTE[(v & 0x7F) | 0x80] + _BYTE[v >> 7]
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def decode_uvarint(buf, offset=0):
    """Decode a varint from ``buf`` at ``offset``.

    Returns ``(value, next_offset)``, or ``None`` if ``buf`` ends inside the varint.
    Raises ``VarintError`` if it is longer than 9 bytes or not minimally encoded.
    """
    if offset < 0:
        raise LocalProtocolError("negative offset %r" % (offset,))
    n = len(buf)
    value = 0
    shift = 0
    i = offset
    while i < n:
        b = buf[i]
        value |= (b & 0x7F) << shift
        i += 1
        if b < 0x80:
            if b == 0 and i - offset > 1:
                raise VarintError("varint not minimally encoded")
            return value, i
        shift += 7
        if i - offset >= _MAX_VARINT_LEN:
            raise VarintError("varint longer than 9 bytes")
    return None


def encode_lp(payload):
    """Return ``uvarint(len(payload)) || payload``."""
    return encode_uvarint(len(payload)) + bytes(payload)


def decode_lp(buf, offset=0, max_size=MESSAGE_SIZE_MAX):
    """Decode one length-prefixed message from ``buf`` at ``offset``.

    Returns ``(payload, next_offset)`` or ``None`` if incomplete.  Raises
    ``MessageTooLargeError`` as soon as the prefix declares more than ``max_size``.
    """
    res = decode_uvarint(buf, offset)
    if res is None:
        return None
    length, start = res
    if length > max_size:
        raise MessageTooLargeError(
            "length-prefixed message of %d bytes exceeds the limit of %d" % (length, max_size)
        )
    end = start + length
    if end > len(buf):
        return None
    return bytes(buf[start:end]), end
