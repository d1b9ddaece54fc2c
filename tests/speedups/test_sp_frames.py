"""frames: yamux and mplex headers and readers in both builds,
split invariance, and pure/compiled parity."""

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geventp2p.exceptions import (
    FrameError,
    VarintError,
    LocalProtocolError,
    MessageTooLargeError,
    RemoteProtocolError,
)

HYP = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# yamux frames for stream 1 (header layout of the yamux spec): (hex header, (type, flags, stream, length)).
YAMUX_TABLE = [
    ("00 01 0001 00000001 00000000", (1, 1, 1, 0)),  # open (WindowUpdate + SYN)
    ("00 01 0002 00000001 00000000", (1, 2, 1, 0)),  # accept
    ("00 00 0000 00000001 00000005", (0, 0, 1, 5)),  # 5 data bytes
    ("00 01 0000 00000001 00020000", (1, 0, 1, 0x20000)),  # grant 128 KiB
    ("00 01 0004 00000001 00000000", (1, 4, 1, 0)),  # FIN
    ("00 01 0008 00000001 00000000", (1, 8, 1, 0)),  # RST
    ("00 01 0008 00000001 00001001", (1, 8, 1, 0x1001)),  # RST with go code
    ("00 02 0001 00000000 00000007", (2, 1, 0, 7)),  # ping request
    ("00 02 0002 00000000 00000007", (2, 2, 0, 7)),  # ping reply
    ("00 03 0000 00000000 00000000", (3, 0, 0, 0)),  # GoAway normal
    ("00 03 0000 00000000 00000001", (3, 0, 0, 1)),  # GoAway protocol error
    ("00 03 0000 00000000 00000002", (3, 0, 0, 2)),  # GoAway internal error
]


def hx(s):
    return bytes.fromhex(s.replace(" ", ""))


def drive(reader, chunks):
    """Feed ``chunks`` then b""; return (frames, exception type or None)."""
    out = []
    for chunk in list(chunks) + [b""]:
        try:
            out.extend(reader.feed(chunk))
        except RemoteProtocolError as exc:
            return out, type(exc)
    return out, None


# --------------------------------------------------------------------------- yamux headers


def test_yamux_constants(impl):
    f = impl.frames
    assert (f.VERSION, f.HEADER_SIZE) == (0, 12)
    assert (f.TYPE_DATA, f.TYPE_WINDOW_UPDATE, f.TYPE_PING, f.TYPE_GO_AWAY) == (0, 1, 2, 3)
    assert (f.FLAG_SYN, f.FLAG_ACK, f.FLAG_FIN, f.FLAG_RST) == (1, 2, 4, 8)


@pytest.mark.parametrize("hexstr,fields", YAMUX_TABLE)
def test_yamux_table_pack_unpack(impl, hexstr, fields):
    raw = hx(hexstr)
    packed = impl.frames.pack_yamux_header(*fields)
    assert type(packed) is bytes and packed == raw
    assert impl.frames.unpack_yamux_header(raw) == fields
    assert impl.frames.unpack_yamux_header(bytearray(b"xx" + raw), 2) == fields
    assert impl.frames.unpack_yamux_header(memoryview(raw)) == fields


@pytest.mark.parametrize("hexstr,fields", YAMUX_TABLE)
def test_yamux_table_reader(impl, hexstr, fields):
    body = b"hello" if fields[0] == 0 else b""
    r = impl.frames.YamuxFrameReader()
    assert r.feed(hx(hexstr) + body) == [fields + (body,)]
    assert r.buffered == 0


def test_yamux_unpack_short(impl):
    raw = hx(YAMUX_TABLE[0][0])
    for cut in range(12):
        assert impl.frames.unpack_yamux_header(raw[:cut]) is None
    assert impl.frames.unpack_yamux_header(raw, 1) is None


@pytest.mark.parametrize("hexstr", ["01 00 0000 00000001 00000000", "00 04 0000 00000001 00000000", "ff ff 0000 00000000 00000000"])
def test_yamux_unpack_bad(impl, hexstr):
    with pytest.raises(FrameError):
        impl.frames.unpack_yamux_header(hx(hexstr))


@pytest.mark.parametrize(
    "args", [(4, 0, 1, 0), (-1, 0, 1, 0), (0, 0x10000, 1, 0), (0, -1, 1, 0), (0, 0, 1 << 32, 0), (0, 0, -1, 0), (0, 0, 1, 1 << 32), (0, 0, 1, 1 << 80)]
)
def test_yamux_pack_out_of_range(impl, args):
    with pytest.raises(LocalProtocolError):
        impl.frames.pack_yamux_header(*args)


def test_yamux_pack_extremes(impl):
    raw = impl.frames.pack_yamux_header(3, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
    assert raw == b"\x00\x03" + b"\xff" * 10
    assert impl.frames.unpack_yamux_header(raw) == (3, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF)


# --------------------------------------------------------------------------- yamux reader


def yframe(f, ftype, flags, sid, length, body=b""):
    return f.pack_yamux_header(ftype, flags, sid, length) + body


def test_yamux_reader_many_frames_one_call(impl):
    f = impl.frames
    data = (
        yframe(f, 0, 1, 3, 3, b"abc")
        + yframe(f, 1, 0, 3, 1000)
        + yframe(f, 2, 1, 0, 42)
        + yframe(f, 0, 4, 3, 0)
        + yframe(f, 0, 0, 5, 4, b"wxyz")[:14]  # partial Data frame
    )
    r = f.YamuxFrameReader()
    frames = r.feed(data)
    assert frames == [(0, 1, 3, 3, b"abc"), (1, 0, 3, 1000, b""), (2, 1, 0, 42, b""), (0, 4, 3, 0, b"")]
    assert all(type(fr[4]) is bytes for fr in frames)
    assert r.buffered == 14
    assert r.feed(b"") == []
    assert r.feed(b"yz") == [(0, 0, 5, 4, b"wxyz")]
    assert r.buffered == 0


def test_yamux_reader_need_more_consumes_nothing(impl):
    f = impl.frames
    raw = yframe(f, 0, 0, 1, 5, b"12345")
    r = f.YamuxFrameReader()
    for i, byte in enumerate(raw[:-1]):
        assert r.feed(bytes([byte])) == []
        assert r.buffered == i + 1
    assert r.feed(raw[-1:]) == [(0, 0, 1, 5, b"12345")]


def test_yamux_reader_accepts_bytearray_and_memoryview(impl):
    f = impl.frames
    raw = yframe(f, 0, 0, 1, 2, b"hi")
    r = f.YamuxFrameReader()
    assert r.feed(bytearray(raw[:5])) == []
    assert r.feed(memoryview(raw)[5:]) == [(0, 0, 1, 2, b"hi")]


def test_yamux_reader_payload_is_a_copy(impl):
    f = impl.frames
    r = f.YamuxFrameReader()
    (fr,) = r.feed(yframe(f, 0, 0, 1, 3, b"abc") + b"\x00")
    r.feed(b"\x00" * 200000)  # the buffer grows and is reused; the payload must not change
    assert fr[4] == b"abc"


@pytest.mark.parametrize("bad", ["01 00 0000 00000001 00000000", "00 05 0000 00000001 00000000"])
def test_yamux_reader_malformed_after_frames(impl, bad):
    f = impl.frames
    good = yframe(f, 2, 1, 0, 9) + yframe(f, 0, 0, 1, 1, b"x")
    r = f.YamuxFrameReader()
    assert r.feed(good + hx(bad) + b"junk") == [(2, 1, 0, 9, b""), (0, 0, 1, 1, b"x")]
    with pytest.raises(FrameError):
        r.feed(b"")
    with pytest.raises(FrameError):  # sticky, and new data is not parsed
        r.feed(yframe(f, 2, 1, 0, 9))
    assert r.buffered == 12 + 4  # the bad bytes stay at the head


def test_yamux_reader_malformed_first_raises_now(impl):
    r = impl.frames.YamuxFrameReader()
    with pytest.raises(FrameError):
        r.feed(hx("00 07 0000 00000001 00000000"))
    with pytest.raises(FrameError):
        r.feed(b"")


def test_yamux_reader_data_limit(impl):
    f = impl.frames
    r = f.YamuxFrameReader(max_data_length=10)
    assert r.max_data_length == 10
    assert r.feed(yframe(f, 0, 0, 1, 10, b"0123456789")) == [(0, 0, 1, 10, b"0123456789")]
    # the oversized header is rejected before its body arrives
    with pytest.raises(FrameError):
        r.feed(f.pack_yamux_header(0, 0, 1, 11))
    # WindowUpdate deltas are not body lengths: no limit
    r2 = f.YamuxFrameReader(max_data_length=10)
    assert r2.feed(yframe(f, 1, 0, 1, 0xFFFFFFFF)) == [(1, 0, 1, 0xFFFFFFFF, b"")]


def test_yamux_reader_default_limit(impl):
    f = impl.frames
    r = f.YamuxFrameReader()
    assert r.max_data_length == 16 * 1024 * 1024 + 64 * 1024
    with pytest.raises(FrameError):
        r.feed(f.pack_yamux_header(0, 0, 1, 16 * 1024 * 1024 + 64 * 1024 + 1))


@pytest.mark.parametrize("bad", [-1, 1 << 32, 1 << 80])
def test_yamux_reader_bad_limit(impl, bad):
    with pytest.raises(LocalProtocolError):
        impl.frames.YamuxFrameReader(max_data_length=bad)


def test_yamux_reader_large_and_compaction(impl):
    f = impl.frames
    body = bytes(range(256)) * 1024  # 256 KiB
    stream = b"".join(yframe(f, 0, 0, 1, len(body), body) for _ in range(5))
    r = f.YamuxFrameReader()
    got = []
    step = 100_003
    for i in range(0, len(stream), step):
        got.extend(r.feed(stream[i : i + step]))
        assert r.buffered < len(body) + 12
    assert [g[4] for g in got] == [body] * 5
    assert r.buffered == 0


# --------------------------------------------------------------------------- mplex

MPLEX_VECTORS = [
    # (stream_id, flag, payload, expected hex of header)
    (0, 0, b"0", "00 01"),
    (1, 0, b"1", "08 01"),
    (1, 2, b"hello", "0a 05"),
    (1, 1, b"", "09 00"),
    (17, 2, b"x", "8a01 01"),  # 17<<3|2 = 138
    (3, 4, b"", "1c 00"),
    (3, 6, b"", "1e 00"),
    (300, 5, b"", "e512 00"),  # 300<<3|5 = 2405
]


def test_mplex_constants(impl):
    f = impl.frames
    assert (
        f.NEW_STREAM,
        f.MESSAGE_RECEIVER,
        f.MESSAGE_INITIATOR,
        f.CLOSE_RECEIVER,
        f.CLOSE_INITIATOR,
        f.RESET_RECEIVER,
        f.RESET_INITIATOR,
    ) == (0, 1, 2, 3, 4, 5, 6)


@pytest.mark.parametrize("sid,flag,payload,hexhdr", MPLEX_VECTORS)
def test_mplex_vectors(impl, sid, flag, payload, hexhdr):
    f = impl.frames
    hdr = f.pack_mplex_header(sid, flag, len(payload))
    assert type(hdr) is bytes and hdr == hx(hexhdr)
    r = f.MplexFrameReader()
    assert r.feed(hdr + payload) == [(sid, flag, payload)]
    assert r.buffered == 0


def test_mplex_header_matches_varint(impl):
    f, v = impl.frames, impl.varint
    for sid, flag, length in [(0, 0, 0), (5, 2, 1 << 20), ((1 << 60) - 1, 6, (1 << 63) - 1)]:
        assert f.pack_mplex_header(sid, flag, length) == v.encode_uvarint(sid << 3 | flag) + v.encode_uvarint(length)


@pytest.mark.parametrize("args", [(-1, 0, 0), (1 << 60, 0, 0), (1, 7, 0), (1, -1, 0), (1, 0, -1), (1, 0, 1 << 63)])
def test_mplex_pack_out_of_range(impl, args):
    with pytest.raises(LocalProtocolError):
        impl.frames.pack_mplex_header(*args)


def test_mplex_reader_many_and_partial(impl):
    f = impl.frames
    data = (
        f.pack_mplex_header(1, 0, 1) + b"1"
        + f.pack_mplex_header(1, 2, 3) + b"abc"
        + f.pack_mplex_header(1, 4, 0)
        + f.pack_mplex_header(2, 1, 300) + b"z" * 100
    )
    r = f.MplexFrameReader()
    assert r.feed(data) == [(1, 0, b"1"), (1, 2, b"abc"), (1, 4, b"")]
    assert r.buffered == 3 + 100
    assert r.feed(b"z" * 199) == []
    assert r.feed(b"z") == [(2, 1, b"z" * 300)]
    assert r.buffered == 0


@pytest.mark.parametrize(
    "bad,exc",
    [
        ("8000 00", FrameError),  # header varint not minimal
        ("08 8000", FrameError),  # length varint not minimal
        ("ffffffffffffffffff01 00", FrameError),  # header varint too long
        ("0f 00", FrameError),  # flag 7
        ("0a 8180 40", MessageTooLargeError),  # 1 MiB + 1
    ],
)
def test_mplex_reader_bad(impl, bad, exc):
    f = impl.frames
    good = f.pack_mplex_header(1, 2, 2) + b"ok"
    r = f.MplexFrameReader()
    assert r.feed(good + hx(bad)) == [(1, 2, b"ok")]
    with pytest.raises(exc):
        r.feed(b"")
    with pytest.raises(exc):
        r.feed(good)
    r2 = f.MplexFrameReader()
    with pytest.raises(exc):
        r2.feed(hx(bad))


def test_mplex_reader_limit(impl):
    f = impl.frames
    r = f.MplexFrameReader()
    assert r.max_message_size == 1024 * 1024
    r = f.MplexFrameReader(max_message_size=4)
    assert r.feed(f.pack_mplex_header(1, 2, 4) + b"abcd") == [(1, 2, b"abcd")]
    with pytest.raises(MessageTooLargeError):
        r.feed(f.pack_mplex_header(1, 2, 5))  # rejected before the body arrives
    with pytest.raises(LocalProtocolError):
        f.MplexFrameReader(max_message_size=-1)


# --------------------------------------------------------------------------- split invariance


def _yamux_stream(f, rnd, nframes, bad_tail=False):
    parts = []
    for _ in range(nframes):
        kind = rnd.random()
        if kind < 0.5:
            n = rnd.choice([0, 1, 7, 100, 1500])
            parts.append(yframe(f, 0, rnd.choice([0, 1, 2, 4]), rnd.randrange(1, 1 << 32), n, rnd.randbytes(n)))
        elif kind < 0.8:
            parts.append(yframe(f, 1, rnd.choice([0, 1, 2, 8]), rnd.randrange(1, 99), rnd.randrange(1 << 32)))
        else:
            parts.append(yframe(f, rnd.choice([2, 3]), rnd.choice([0, 1, 2]), 0, rnd.randrange(1 << 32)))
    if bad_tail:
        parts.append(hx("00 09 0000 00000001 00000000"))
    return b"".join(parts)


def _mplex_stream(f, rnd, nframes, bad_tail=False):
    parts = []
    for _ in range(nframes):
        n = rnd.choice([0, 1, 50, 200, 3000])
        parts.append(f.pack_mplex_header(rnd.randrange(1 << 40), rnd.randrange(7), n) + rnd.randbytes(n))
    if bad_tail:
        parts.append(hx("8000"))
    return b"".join(parts)


READERS = {
    "yamux": (lambda f: f.YamuxFrameReader(), _yamux_stream),
    "mplex": (lambda f: f.MplexFrameReader(), _mplex_stream),
}


@pytest.mark.parametrize("kind", sorted(READERS))
@pytest.mark.parametrize("bad_tail", [False, True])
def test_split_at_every_point(impl, kind, bad_tail):
    make, gen = READERS[kind]
    stream = gen(impl.frames, random.Random(7), 12, bad_tail)
    expected = drive(make(impl.frames), [stream])
    assert len(expected[0]) == 12
    assert expected[1] is (FrameError if bad_tail else None)
    for cut in range(len(stream) + 1):
        assert drive(make(impl.frames), [stream[:cut], stream[cut:]]) == expected, cut


@pytest.mark.parametrize("kind", sorted(READERS))
@pytest.mark.parametrize("bad_tail", [False, True])
def test_split_bytewise(impl, kind, bad_tail):
    make, gen = READERS[kind]
    stream = gen(impl.frames, random.Random(11), 8, bad_tail)
    expected = drive(make(impl.frames), [stream])
    assert drive(make(impl.frames), [stream[i : i + 1] for i in range(len(stream))]) == expected


def _chunk(data, cuts):
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, prev = [], 0
    for p in points:
        out.append(data[prev:p])
        prev = p
    out.append(data[prev:])
    return out


@HYP
@given(
    kind=st.sampled_from(sorted(READERS)),
    seed=st.integers(0, 2**32),
    nframes=st.integers(0, 15),
    bad_tail=st.booleans(),
    cuts=st.lists(st.integers(0, 1 << 20), max_size=20),
)
def test_split_random_chunkings(impl, kind, seed, nframes, bad_tail, cuts):
    make, gen = READERS[kind]
    stream = gen(impl.frames, random.Random(seed), nframes, bad_tail)
    expected = drive(make(impl.frames), [stream])
    assert len(expected[0]) == nframes
    assert drive(make(impl.frames), _chunk(stream, cuts)) == expected


# --------------------------------------------------------------------------- differential


def _garbage_stream(f, kind, seed, junk):
    """A valid prefix, then arbitrary bytes (usually a protocol error somewhere)."""
    rnd = random.Random(seed)
    return READERS[kind][1](f, rnd, rnd.randrange(4)) + junk


@HYP
@given(
    kind=st.sampled_from(sorted(READERS)),
    seed=st.integers(0, 2**32),
    junk=st.binary(max_size=64),
    cuts=st.lists(st.integers(0, 1 << 16), max_size=8),
    limit=st.sampled_from([0, 1, 16, 200, 4096]),
)
def test_differential_readers(both_impls, kind, seed, junk, cuts, limit):
    pure, comp = both_impls
    stream = _garbage_stream(pure.frames, kind, seed, junk)
    chunks = _chunk(stream, cuts)
    if kind == "yamux":
        results = [drive(m.frames.YamuxFrameReader(max_data_length=limit), chunks) for m in (pure, comp)]
    else:
        results = [drive(m.frames.MplexFrameReader(max_message_size=limit), chunks) for m in (pure, comp)]
    assert results[0] == results[1]


@HYP
@given(data=st.binary(min_size=0, max_size=16), offset=st.integers(0, 5))
def test_differential_unpack(both_impls, data, offset):
    pure, comp = both_impls

    def run(m):
        try:
            return m.frames.unpack_yamux_header(data, offset)
        except RemoteProtocolError as exc:
            return type(exc)

    assert run(pure) == run(comp)


@HYP
@given(st.tuples(*(st.integers(-2, 1 << 33) for _ in range(4))))
def test_differential_pack(both_impls, args):
    pure, comp = both_impls

    def run(m, fn):
        try:
            return getattr(m.frames, fn)(*args[: 4 if fn == "pack_yamux_header" else 3])
        except LocalProtocolError as exc:
            return type(exc)

    for fn in ("pack_yamux_header", "pack_mplex_header"):
        assert run(pure, fn) == run(comp, fn)


def test_compiled_classes_are_compiled(both_impls):
    pure, comp = both_impls
    assert comp.frames.YamuxFrameReader.__module__ == "geventp2p._speedups._c_frames"
    assert pure.frames.YamuxFrameReader.__module__ == "geventp2p._speedups._py_frames"
    assert comp.window.StreamWindow.__module__ == "geventp2p._speedups._c_window"


@HYP
@given(
    cont=st.lists(st.integers(0x80, 0xFF), max_size=10),
    last=st.integers(0, 0x7F),
)
def test_mplex_varint_rules_match_varint_module(impl, cont, last):
    """The reader's header varint follows varint.decode_uvarint exactly
    (VarintError there is FrameError in the reader)."""
    header = bytes(cont) + bytes([last])
    data = header + b"\x00"  # zero-length body
    try:
        value, end = impl.varint.decode_uvarint(data)
    except Exception as exc:  # noqa: BLE001
        expected = type(exc)
    else:
        assert end == len(header)
        expected = FrameError if value & 7 == 7 else [(value >> 3, value & 7, b"")]
    try:
        got = impl.frames.MplexFrameReader().feed(data)
    except RemoteProtocolError as exc:
        got = type(exc)
    if expected is VarintError:
        assert got is FrameError
    else:
        assert got == expected


@pytest.mark.parametrize("name", ["varint", "frames", "window"])
def test_same_public_names(both_impls, name):
    pure, comp = (getattr(m, name) for m in both_impls)

    def public(mod):
        return {k for k in vars(mod) if not k.startswith("_")}

    assert public(pure) == public(comp)
