"""Muxer frame headers: yamux (12-byte header) and mplex (varint header), with
incremental readers that return every complete frame of a receive buffer in one call.

Pure Python source; the build compiles this same file as ``_c_frames`` with
``_c_frames.pxd`` (reference §8.1, §8.3 for yamux, §9 for mplex).

Yamux constants: VERSION=0; TYPE_DATA=0, TYPE_WINDOW_UPDATE=1, TYPE_PING=2, TYPE_GO_AWAY=3;
FLAG_SYN=1, FLAG_ACK=2, FLAG_FIN=4, FLAG_RST=8; HEADER_SIZE=12.

``pack_yamux_header(ftype, flags, stream_id, length) -> bytes`` (12 bytes, big-endian).
``unpack_yamux_header(buf, offset=0) -> (ftype, flags, stream_id, length)``, or ``None``
if fewer than 12 bytes are available; raises ``FrameError`` on version != 0 or an
unknown type.

``YamuxFrameReader(max_data_length=16 MiB + 64 KiB)``:
    ``feed(data) -> list of (ftype, flags, stream_id, length, payload)``; ``payload`` is
    the body (``bytes``) of a Data frame, ``b""`` for the other types.

Mplex flags: NEW_STREAM=0, MESSAGE_RECEIVER=1, MESSAGE_INITIATOR=2, CLOSE_RECEIVER=3,
CLOSE_INITIATOR=4, RESET_RECEIVER=5, RESET_INITIATOR=6.
``pack_mplex_header(stream_id, flag, length) -> bytes`` = uvarint(id << 3 | flag) || uvarint(length).
``MplexFrameReader(max_message_size=1 MiB)``:
    ``feed(data) -> list of (stream_id, flag, payload)``.

Reader rules (both readers):

* ``feed(data)`` appends ``data`` to an internal buffer and returns *all* complete
  frames as a list (``[]`` when more bytes are needed; a partial frame stays buffered).
* At a malformed header (yamux: bad version or type; mplex: overlong or non-minimal
  varint, flag 7) or an oversized body (yamux Data length > ``max_data_length``:
  ``FrameError``; mplex length > ``max_message_size``: ``MessageTooLargeError``) the
  reader stops.  If frames were decoded before it in the same call they are returned,
  and the *next* ``feed()`` raises; otherwise the error is raised at once.  The error is
  sticky: every later ``feed()`` raises it again, and the offending bytes stay at the
  head of the buffer.  Callers end the session on these errors.
* Payloads are copied out as ``bytes``; the reader never exports its buffer.
* ``buffered``: bytes held that do not yet form a complete frame.
"""

from struct import Struct
from struct import error as StructError

from geventp2p.exceptions import FrameError, LocalProtocolError, MessageTooLargeError

# --------------------------------------------------------------------------- yamux

VERSION = 0
TYPE_DATA = 0
TYPE_WINDOW_UPDATE = 1
TYPE_PING = 2
TYPE_GO_AWAY = 3
FLAG_SYN = 1
FLAG_ACK = 2
FLAG_FIN = 4
FLAG_RST = 8
HEADER_SIZE = 12
U32_MAX = 0xFFFFFFFF
DEFAULT_MAX_DATA_LENGTH = 16 * 1024 * 1024 + 64 * 1024

# --------------------------------------------------------------------------- mplex

NEW_STREAM = 0
MESSAGE_RECEIVER = 1
MESSAGE_INITIATOR = 2
CLOSE_RECEIVER = 3
CLOSE_INITIATOR = 4
RESET_RECEIVER = 5
RESET_INITIATOR = 6
MPLEX_MAX_MESSAGE_SIZE = 1024 * 1024
MPLEX_MAX_STREAM_ID = (1 << 60) - 1
MAX_VARINT_LEN = 9
VARINT_MAX_VALUE = (1 << 63) - 1

# The read buffer is compacted (consumed bytes dropped) once this many consumed
# bytes sit at its head, and always when it has been consumed completely.
COMPACT_THRESHOLD = 256 * 1024

_YAMUX_HEADER = Struct(">BBHII")
_YAMUX_FIELDS = Struct(">BHII")  # the header after its version byte

# Private copies of the constants the reader loops use: the compiled build turns
# these into C constants (``_c_frames.pxd``); the public names stay Python globals.
_VERSION = VERSION
_TYPE_DATA = TYPE_DATA
_TYPE_GO_AWAY = TYPE_GO_AWAY
_HEADER_SIZE = HEADER_SIZE
_RESET_INITIATOR = RESET_INITIATOR
_MAX_VARINT_LEN = MAX_VARINT_LEN
_COMPACT_THRESHOLD = COMPACT_THRESHOLD


def pack_yamux_header(ftype, flags, stream_id, length):
    """Return the 12-byte big-endian yamux header.

    Raises ``LocalProtocolError`` for an unknown type or a field outside its range
    (flags: u16; stream id, length: u32)."""
    if ftype < 0 or ftype > _TYPE_GO_AWAY:
        raise LocalProtocolError("unknown yamux frame type %r" % (ftype,))
    try:
        return _YAMUX_HEADER.pack(0, ftype, flags, stream_id, length)
    except StructError:
        raise LocalProtocolError(
            "yamux header field out of range: flags %r, stream id %r, length %r"
            % (flags, stream_id, length)
        ) from None


def unpack_yamux_header(buf, offset=0):
    """Decode the yamux header at ``buf[offset:offset+12]``.

    Returns ``(ftype, flags, stream_id, length)``, or ``None`` if fewer than 12 bytes
    are available.  Raises ``FrameError`` on a version other than 0 or an unknown type.
    """
    if offset < 0:
        raise LocalProtocolError("negative offset %r" % (offset,))
    if len(buf) - offset < _HEADER_SIZE:
        return None
    if buf[offset] != _VERSION:
        raise FrameError("yamux: unsupported version %d" % buf[offset])
    fields = _YAMUX_FIELDS.unpack_from(buf, offset + 1)
    if fields[0] > _TYPE_GO_AWAY:
        raise FrameError("yamux: unknown frame type %d" % fields[0])
    return fields


class YamuxFrameReader:
    """Incremental yamux frame parser over an internal receive buffer."""

    __slots__ = ("_buf", "_pos", "_error", "max_data_length")

    def __init__(self, max_data_length=DEFAULT_MAX_DATA_LENGTH):
        if max_data_length < 0 or max_data_length > U32_MAX:
            raise LocalProtocolError("max_data_length out of range: %r" % (max_data_length,))
        self.max_data_length = max_data_length
        self._buf = bytearray()
        self._pos = 0
        self._error = None

    @property
    def buffered(self):
        """Bytes held that do not form a complete frame yet."""
        return len(self._buf) - self._pos

    def feed(self, data):
        """Append ``data`` and return every complete frame as a list of
        ``(ftype, flags, stream_id, length, payload)`` tuples."""
        if self._error is not None:
            raise self._error.with_traceback(None)
        buf = self._buf
        buf += data
        n = len(buf)
        pos = self._pos
        frames = []
        p = buf  # the compiled build reads through a C pointer; buf does not resize below
        limit = self.max_data_length
        while n - pos >= _HEADER_SIZE:
            if p[pos] != _VERSION:
                self._error = FrameError("yamux: unsupported version %d" % p[pos])
                break
            ftype = p[pos + 1]
            if ftype > _TYPE_GO_AWAY:
                self._error = FrameError("yamux: unknown frame type %d" % ftype)
                break
            flags = p[pos + 2]
            flags = (flags << 8) | p[pos + 3]
            stream_id = p[pos + 4]
            stream_id = (stream_id << 8) | p[pos + 5]
            stream_id = (stream_id << 8) | p[pos + 6]
            stream_id = (stream_id << 8) | p[pos + 7]
            length = p[pos + 8]
            length = (length << 8) | p[pos + 9]
            length = (length << 8) | p[pos + 10]
            length = (length << 8) | p[pos + 11]
            if ftype == _TYPE_DATA:
                if length > limit:
                    self._error = FrameError(
                        "yamux: data frame of %d bytes exceeds the limit of %d" % (length, limit)
                    )
                    break
                start = pos + _HEADER_SIZE
                end = start + length
                if end > n:
                    break
                payload = bytes(p[start:end])
                pos = end
            else:
                payload = b""
                pos += _HEADER_SIZE
            frames.append((ftype, flags, stream_id, length, payload))
        if pos == n:
            if n:
                del buf[:]
            self._pos = 0
        elif pos >= _COMPACT_THRESHOLD:
            del buf[:pos]
            self._pos = 0
        else:
            self._pos = pos
        if self._error is not None and not frames:
            raise self._error.with_traceback(None)
        return frames


# --------------------------------------------------------------------------- mplex


def _encode_uvarint(value, out):
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def pack_mplex_header(stream_id, flag, length):
    """Return ``uvarint(stream_id << 3 | flag) || uvarint(length)``."""
    if stream_id < 0 or stream_id > MPLEX_MAX_STREAM_ID:
        raise LocalProtocolError("mplex stream id out of range: %r" % (stream_id,))
    if flag < 0 or flag > _RESET_INITIATOR:
        raise LocalProtocolError("unknown mplex flag %r" % (flag,))
    if length < 0 or length > VARINT_MAX_VALUE:
        raise LocalProtocolError("mplex length out of range: %r" % (length,))
    out = bytearray()
    _encode_uvarint((stream_id << 3) | flag, out)
    _encode_uvarint(length, out)
    return bytes(out)


class MplexFrameReader:
    """Incremental mplex frame parser over an internal receive buffer."""

    __slots__ = ("_buf", "_pos", "_error", "_value", "max_message_size")

    def __init__(self, max_message_size=MPLEX_MAX_MESSAGE_SIZE):
        if max_message_size < 0 or max_message_size > U32_MAX:
            raise LocalProtocolError("max_message_size out of range: %r" % (max_message_size,))
        self.max_message_size = max_message_size
        self._buf = bytearray()
        self._pos = 0
        self._error = None
        self._value = 0

    @property
    def buffered(self):
        """Bytes held that do not form a complete frame yet."""
        return len(self._buf) - self._pos

    def _uvarint(self, p, n, i):
        """Decode a varint at ``p[i]`` (same rules as ``varint.decode_uvarint``).

        Stores the value in ``self._value`` and returns the next offset; returns
        ``-1`` if ``p`` ends inside the varint and ``-2`` if it is malformed (after
        storing a ``FrameError`` in ``self._error``).
        """
        start = i
        value = 0
        shift = 0
        while i < n:
            b = p[i]
            value |= (b & 0x7F) << shift
            i += 1
            if b < 0x80:
                if b == 0 and i - start > 1:
                    self._error = FrameError("mplex: varint not minimally encoded")
                    return -2
                self._value = value
                return i
            shift += 7
            if i - start >= _MAX_VARINT_LEN:
                self._error = FrameError("mplex: varint longer than 9 bytes")
                return -2
        return -1

    def feed(self, data):
        """Append ``data`` and return every complete frame as a list of
        ``(stream_id, flag, payload)`` tuples."""
        if self._error is not None:
            raise self._error.with_traceback(None)
        buf = self._buf
        buf += data
        n = len(buf)
        pos = self._pos
        frames = []
        p = buf  # the compiled build reads through a C pointer; buf does not resize below
        limit = self.max_message_size
        while pos < n:
            i = self._uvarint(p, n, pos)
            if i < 0:
                break
            header = self._value
            i = self._uvarint(p, n, i)
            if i < 0:
                break
            length = self._value
            flag = header & 7
            if flag > _RESET_INITIATOR:
                self._error = FrameError("mplex: unknown flag %d" % flag)
                break
            if length > limit:
                self._error = MessageTooLargeError(
                    "mplex: message of %d bytes exceeds the limit of %d" % (length, limit)
                )
                break
            end = i + length
            if end > n:
                break
            frames.append((header >> 3, flag, bytes(p[i:end])))
            pos = end
        if pos == n:
            if n:
                del buf[:]
            self._pos = 0
        elif pos >= _COMPACT_THRESHOLD:
            del buf[:pos]
            self._pos = 0
        else:
            self._pos = pos
        if self._error is not None and not frames:
            raise self._error.with_traceback(None)
        return frames
