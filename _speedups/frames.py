"""Muxer frame headers: yamux (12-byte header) and mplex (varint header), with
incremental readers that return every complete frame of a receive buffer in one call.

API CONTRACT (implementation pending):

Yamux constants: VERSION=0; TYPE_DATA=0, TYPE_WINDOW_UPDATE=1, TYPE_PING=2, TYPE_GO_AWAY=3;
FLAG_SYN=1, FLAG_ACK=2, FLAG_FIN=4, FLAG_RST=8; HEADER_SIZE=12.

pack_yamux_header(ftype, flags, stream_id, length) -> bytes (12 bytes, big-endian)
unpack_yamux_header(buf, offset=0) -> (ftype, flags, stream_id, length) | None if < 12 bytes
    raises FrameError on version != 0 or unknown type.

class YamuxFrameReader(max_data_length=16 MiB + 64 KiB):
    feed(data) -> list of (ftype, flags, stream_id, length, payload)
        payload is the body bytes for Data frames, b"" otherwise.
        Appends ``data`` to an internal buffer and returns all complete frames.
        Stops at a malformed header: returns the frames before it; the next call raises
        FrameError (the bad bytes stay at the head of the buffer).
        A Data frame longer than max_data_length raises FrameError.
    buffered -> int: bytes held that are not yet a complete frame

Mplex: flags NEW_STREAM=0, MESSAGE_RECEIVER=1, MESSAGE_INITIATOR=2, CLOSE_RECEIVER=3,
CLOSE_INITIATOR=4, RESET_RECEIVER=5, RESET_INITIATOR=6.
pack_mplex_header(stream_id, flag, length) -> bytes  (uvarint(id<<3|flag) + uvarint(length))
class MplexFrameReader(max_message_size=1 MiB):
    feed(data) -> list of (stream_id, flag, payload)   same error rules as above
"""
