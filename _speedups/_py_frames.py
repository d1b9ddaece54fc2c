"""Muxer frame headers: yamux (12-byte header) and mplex (varint header), with
incremental readers that return every complete frame of a receive buffer in one call.

Pure Python source; the build compiles this same file as ``_c_frames`` with
``_c_frames.pxd`` (yamux: https://github.com/libp2p/specs/blob/master/yamux/README.md; mplex: https://github.com/libp2p/specs/tree/master/mplex).

Yamux constants: VERSION=0; TYPE_DATA=0, TYPE_WINDOW_UPDATE=1, TYPE_PING=2, TYPE_GO_AWAY=3;
FLAG_SYN=1, FLAG_ACK=2, FLAG_FIN=4, FLAG_RST=8; HEADER_SIZE=12.

``pack_yamux_header(ftype, flags, stream_id, length) -> bytes`` (12 bytes, big-endian).
``unpack_yamux_header(buf, offset=0) -> (ftype, flags, stream_id, length)``, or ``None``
if fewer than 12 bytes are available; raises ``FrameError`` on version != 0 or an
unknown type.

``YamuxWriteBuffer(max_body=65524)``: outbound frames as a flat list of buffers
(``frame()``, ``data()``, ``drain()``, ``nbytes``); consecutive Data of one stream is
coalesced into one frame while queued; immutable input is never copied.

``YamuxStreamSender(window, buffer, stream_id)``: one stream's send path (credit +
buffer) in one call, ``send(data, max_buffered) -> n``.

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
* yamux: after a call that stopped inside a Data frame's body, ``partial_stream``,
  ``partial_flags`` and ``partial_length`` give that frame's header (``partial_stream``
  is -1 otherwise), so a caller can reject a body the window does not allow before
  it is buffered.
* ``buffered``: bytes held that do not yet form a complete frame.
"""

from struct import Struct
from struct import error as StructError

from geventp2p.exceptions import (
    FrameError,
    LocalProtocolError,
    MessageTooLargeError,
    StreamClosedError,
)

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
# get_buffer() trims a receive buffer grown beyond this (by a huge frame) once it is free.
_SHRINK_ABOVE = 1024 * 1024


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
    """Incremental yamux frame parser over an internal receive buffer.

    Bytes come in with ``feed(data)``, or without a copy: ``get_buffer(size)`` returns
    a writable memoryview of ``size`` free bytes at the end of the buffer, the caller
    receives into it, releases the view and calls ``commit(n)`` with the byte count.
    Both return the complete frames.  The buffer keeps its capacity between calls.
    """

    __slots__ = ("_buf", "_pos", "_end", "_error", "max_data_length", "partial_stream", "partial_flags",
                 "partial_length")

    def __init__(self, max_data_length=DEFAULT_MAX_DATA_LENGTH):
        if max_data_length < 0 or max_data_length > U32_MAX:
            raise LocalProtocolError("max_data_length out of range: %r" % (max_data_length,))
        self.max_data_length = max_data_length
        self._buf = bytearray()
        self._pos = 0
        self._end = 0
        self._error = None
        # header of a Data frame whose body is still incomplete (-1: none), so the caller
        # can check it against the stream's window before the body is buffered
        self.partial_stream = -1
        self.partial_flags = 0
        self.partial_length = 0

    @property
    def buffered(self):
        """Bytes held that do not form a complete frame yet."""
        return self._end - self._pos

    def feed(self, data):
        """Append ``data`` and return every complete frame as a list of
        ``(ftype, flags, stream_id, length, payload)`` tuples."""
        if self._error is not None:
            raise self._error.with_traceback(None)
        if not len(data):
            return self._parse()  # (re-checks the buffered bytes; leaves the buffer alone)
        buf = self._buf
        end = self._end
        pos = self._pos
        if pos >= _COMPACT_THRESHOLD:
            del buf[:pos]
            end -= pos
            self._pos = 0
        if end == len(buf):
            buf += data
        else:
            buf[end:] = data  # drops the spare capacity
        self._end = len(buf)
        return self._parse()

    def get_buffer(self, size):
        """A writable memoryview of ``size`` bytes after the buffered ones (release it
        before the next call); fill a prefix of it, then call ``commit``."""
        if self._error is not None:
            raise self._error.with_traceback(None)
        if size < 1 or size > U32_MAX:
            raise LocalProtocolError("buffer size out of range: %r" % (size,))
        buf = self._buf
        pos = self._pos
        end = self._end
        if pos:
            if pos == end:
                self._pos = self._end = end = 0
            elif pos >= _COMPACT_THRESHOLD or end + size > len(buf):
                mv = memoryview(buf)
                mv[0:end - pos] = mv[pos:end]
                mv.release()
                end -= pos
                self._pos = 0
                self._end = end
        cap = end + size
        if len(buf) < cap:
            buf += bytes(cap - len(buf))
        elif len(buf) > _SHRINK_ABOVE and cap <= _SHRINK_ABOVE:
            del buf[_SHRINK_ABOVE:]  # a huge frame passed: give the memory back
        mv = memoryview(buf)
        view = mv[end:cap]
        mv.release()
        return view

    def detach_buffer(self):
        """Hand over the receive buffer while no bytes are buffered (the reader keeps an
        empty one and grows it again on demand); None if bytes are buffered or no
        buffer is held.  No view of it may be alive."""
        if self._end != self._pos or not len(self._buf):
            return None
        buf = self._buf
        self._buf = bytearray()
        self._pos = self._end = 0
        return buf

    def attach_buffer(self, buf):
        """Receive into ``buf`` (a bytearray) from now on; only while no buffer is held
        and nothing is buffered (returns False otherwise and leaves ``buf`` alone)."""
        if not isinstance(buf, bytearray):
            raise TypeError("attach_buffer needs a bytearray, got %s" % type(buf).__name__)
        if self._end != self._pos or len(self._buf):
            return False
        self._buf = buf
        self._pos = self._end = 0
        return True

    def commit(self, n):
        """``n`` bytes were written at the start of the last ``get_buffer`` view; return
        every complete frame (as ``feed``)."""
        if self._error is not None:
            raise self._error.with_traceback(None)
        if n < 0 or n > len(self._buf) - self._end:
            raise LocalProtocolError("commit of %r bytes outside the free buffer" % (n,))
        self._end += n
        return self._parse()

    def _parse(self):
        buf = self._buf
        n = self._end
        pos = self._pos
        frames = []
        p = buf  # the compiled build reads through a C pointer; buf does not resize below
        limit = self.max_data_length
        self.partial_stream = -1
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
                    self.partial_stream = stream_id
                    self.partial_flags = flags
                    self.partial_length = length
                    break
                payload = bytes(p[start:end])
                pos = end
            else:
                payload = b""
                pos += _HEADER_SIZE
            frames.append((ftype, flags, stream_id, length, payload))
        if pos == n:
            self._pos = self._end = 0
        else:
            self._pos = pos
        if self._error is not None and not frames:
            raise self._error.with_traceback(None)
        return frames


class YamuxWriteBuffer:
    """Outbound yamux bytes as a flat list of buffers for ``writev``.

    ``frame(ftype, flags, stream_id, length)`` queues a header-only frame;
    ``data(stream_id, data, n)`` queues the first ``n`` bytes of ``data`` as Data
    frames of at most ``max_body`` bytes.  Immutable input (``bytes``, or a read-only
    memoryview of ``bytes``) is queued as zero-copy memoryview slices; other input is
    copied (the caller may reuse its buffer).  While nothing else was queued after it,
    the last Data frame stays open: the next ``data()`` for the same stream appends its
    bytes as further buffers of that frame (the header is rewritten, up to ``max_body``)
    instead of adding a frame, so many small writes leave as few large frames and
    nothing is copied twice.  ``drain()`` returns the buffers and starts over;
    ``nbytes`` counts the queued wire bytes.
    """

    __slots__ = ("_out", "nbytes", "_tail_sid", "_tail_len", "_tail_hdr", "max_body")

    def __init__(self, max_body=65524):
        if max_body < 1 or max_body > U32_MAX:
            raise LocalProtocolError("max_body out of range: %r" % (max_body,))
        self.max_body = max_body
        self._out = []
        self.nbytes = 0
        self._tail_sid = -1
        self._tail_len = 0
        self._tail_hdr = None  # the open Data frame's header (a bytearray, patched in place)

    def __len__(self):
        return len(self._out)

    def frame(self, ftype, flags, stream_id, length):
        """Queue a frame without body (WindowUpdate, Ping, GoAway, or a Data frame with flags)."""
        self._out.append(pack_yamux_header(ftype, flags, stream_id, length))
        self.nbytes += _HEADER_SIZE
        self._tail_hdr = None

    def data(self, stream_id, data, n):
        """Queue ``data[:n]`` for ``stream_id`` as Data frames (no flags)."""
        if type(data) is bytes:
            view = None  # made only if a slice is needed
            size = len(data)
            immutable = True
        else:
            view = data if isinstance(data, memoryview) else memoryview(data)
            if view.ndim != 1 or view.itemsize != 1:
                view = view.cast("B")
            size = len(view)
            immutable = isinstance(data, bytes) or (view.readonly and isinstance(view.obj, bytes))
        if n < 0 or n > size:
            raise LocalProtocolError("data length %r outside 0..%d" % (n, size))
        count = n  # range-checked: a C integer in the compiled build
        if not count:
            return
        out = self._out
        body_max = self.max_body
        off = 0
        hdr = self._tail_hdr
        if hdr is not None and self._tail_len < body_max and self._tail_sid == stream_id:
            take = body_max - self._tail_len
            if take > count:
                take = count
            if take == size and view is None:
                out.append(data)
            else:
                if view is None:
                    view = memoryview(data)
                out.append(view[:take] if immutable else bytes(view[:take]))
            length = self._tail_len + take
            self._tail_len = length
            hdr[8] = (length >> 24) & 0xFF
            hdr[9] = (length >> 16) & 0xFF
            hdr[10] = (length >> 8) & 0xFF
            hdr[11] = length & 0xFF
            self.nbytes += take
            off = take
        while off < count:
            end = off + body_max
            if end > count:
                end = count
            k = end - off
            hdr = bytearray(pack_yamux_header(_TYPE_DATA, 0, stream_id, k))
            out.append(hdr)
            if k == size and view is None:
                out.append(data)
            else:
                if view is None:
                    view = memoryview(data)
                out.append(view[off:end] if immutable else bytes(view[off:end]))
            self._tail_hdr = hdr
            self._tail_sid = stream_id
            self._tail_len = k
            self.nbytes += _HEADER_SIZE + k
            off = end

    def drain(self):
        """Return the queued buffers (a list) and empty the queue."""
        out = self._out
        self._out = []
        self.nbytes = 0
        self._tail_hdr = None
        return out


class YamuxStreamSender:
    """The sending half of one yamux stream in one call: flow-control credit plus the
    session's write buffer, so a stream write costs a single (compiled) call.

    ``YamuxStreamSender(window, buffer, stream_id)``; ``window`` has
    ``consume_send(n) -> k`` (``window.StreamWindow``), ``buffer`` is the session's
    ``YamuxWriteBuffer``.  ``send(data, max_buffered) -> n`` queues the first ``n`` bytes
    of ``data`` (``bytes`` or a byte memoryview; mutable input is copied by the buffer)
    as Data frames, where ``n`` is bounded by the send credit and by the room left below
    ``max_buffered`` queued wire bytes (body bytes; the frame headers may go past it); 0 means no credit or no room (``blocked_on_buffer``
    tells which).  ``open`` turns False once the stream is closed for writing or forgotten
    by the session; ``send`` then raises ``StreamClosedError``.
    """

    __slots__ = ("window", "buffer", "stream_id", "open")

    def __init__(self, window, buffer, stream_id):
        self.window = window
        self.buffer = buffer
        self.stream_id = stream_id
        self.open = True

    def send(self, data, max_buffered):
        if not self.open:
            raise StreamClosedError("yamux stream %d is closed or reset" % (self.stream_id,))
        buf = self.buffer
        room = max_buffered - buf.nbytes
        if room <= 0:
            return 0
        if type(data) is bytes:
            size = len(data)
        else:
            size = memoryview(data).nbytes
        if size > room:
            size = room
        n = self.window.consume_send(size)
        if n:
            buf.data(self.stream_id, data, n)
        return n

    def blocked_on_buffer(self, max_buffered):
        """True if the write buffer (not the send window) is what stops sending."""
        return self.buffer.nbytes >= max_buffered


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
