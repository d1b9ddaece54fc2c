"""Micro-benchmarks of the hot paths, pure vs compiled build.

Run: ``python -m pytest bench --benchmark-only``.  Each benchmark runs once per build;
``extra_info["build"]`` says which, and the benchmark group pairs the two runs.
"""

from __future__ import annotations

import random

import pytest

MIB = 1024 * 1024


def _mixed_yamux_stream(frames, size=MIB, seed=1):
    """About ``size`` bytes of yamux frames: Data bodies of various sizes,
    WindowUpdates and pings, roughly the mix a busy session receives."""
    rnd = random.Random(seed)
    sizes = [0, 8, 64, 256, 1024, 1400, 4096, 16384]
    parts, total = [], 0
    while total < size:
        r = rnd.random()
        if r < 0.5:
            n = rnd.choice(sizes)
            part = frames.pack_yamux_header(0, 0, rnd.randrange(1, 200, 2), n) + rnd.randbytes(n)
        elif r < 0.85:
            part = frames.pack_yamux_header(1, 0, rnd.randrange(1, 200, 2), rnd.randrange(1 << 20))
        else:
            part = frames.pack_yamux_header(2, rnd.choice([1, 2]), 0, rnd.randrange(1 << 32))
        parts.append(part)
        total += len(part)
    return b"".join(parts), len(parts)


def _mixed_mplex_stream(frames, size=MIB, seed=2):
    rnd = random.Random(seed)
    sizes = [0, 8, 64, 256, 1024, 1400, 4096, 16384]
    parts, total = [], 0
    while total < size:
        n = rnd.choice(sizes)
        part = frames.pack_mplex_header(rnd.randrange(1, 200), rnd.choice([1, 2]), n) + rnd.randbytes(n)
        parts.append(part)
        total += len(part)
    return b"".join(parts), len(parts)


def _tag(benchmark, build):
    benchmark.extra_info["build"] = build.kind


@pytest.mark.benchmark(group="varint-encode")
def test_varint_encode(benchmark, build):
    _tag(benchmark, build)
    enc = build.varint.encode_uvarint
    assert benchmark(enc, 300) == b"\xac\x02"


@pytest.mark.benchmark(group="varint-decode")
def test_varint_decode(benchmark, build):
    _tag(benchmark, build)
    dec = build.varint.decode_uvarint
    assert benchmark(dec, b"\xac\x02rest") == (300, 2)


@pytest.mark.benchmark(group="yamux-header-pack")
def test_yamux_pack(benchmark, build):
    _tag(benchmark, build)
    pack = build.frames.pack_yamux_header
    assert len(benchmark(pack, 0, 1, 3, 65524)) == 12


@pytest.mark.benchmark(group="yamux-header-unpack")
def test_yamux_unpack(benchmark, build):
    _tag(benchmark, build)
    raw = bytes.fromhex("000000010000000300010000")
    assert benchmark(build.frames.unpack_yamux_header, raw) == (0, 1, 3, 0x10000)


@pytest.mark.benchmark(group="yamux-reader-1MiB")
def test_yamux_reader_one_feed(benchmark, build):
    _tag(benchmark, build)
    stream, nframes = _mixed_yamux_stream(build.frames)
    benchmark.extra_info["frames"] = nframes
    benchmark.extra_info["bytes"] = len(stream)

    def run():
        return build.frames.YamuxFrameReader().feed(stream)

    assert len(benchmark(run)) == nframes


@pytest.mark.benchmark(group="yamux-reader-1MiB-64KiB-chunks")
def test_yamux_reader_chunked(benchmark, build):
    _tag(benchmark, build)
    stream, nframes = _mixed_yamux_stream(build.frames)
    chunks = [stream[i : i + 65536] for i in range(0, len(stream), 65536)]
    benchmark.extra_info["frames"] = nframes

    def run():
        r = build.frames.YamuxFrameReader()
        n = 0
        for c in chunks:
            n += len(r.feed(c))
        return n

    assert benchmark(run) == nframes


@pytest.mark.benchmark(group="mplex-reader-1MiB")
def test_mplex_reader_one_feed(benchmark, build):
    _tag(benchmark, build)
    stream, nframes = _mixed_mplex_stream(build.frames)
    benchmark.extra_info["frames"] = nframes

    def run():
        return build.frames.MplexFrameReader().feed(stream)

    assert len(benchmark(run)) == nframes


@pytest.mark.benchmark(group="window-cycle")
def test_window_cycle(benchmark, build):
    """One receive/read/update plus send/credit cycle, as a stream does per frame."""
    _tag(benchmark, build)
    w = build.window.StreamWindow()

    def run():
        w.on_data(16384)
        w.on_read(16384)
        d = w.take_update(1.0, 0.0)
        k = w.consume_send(16384)
        w.add_send_credit(k)
        return d

    benchmark(run)


@pytest.mark.benchmark(group="yamux-send-1KiB")
def test_yamux_sender_1k_writes(benchmark, build):
    """1,000 writes of 1 KiB through YamuxStreamSender (credit + coalescing queue), as
    a stream's write fast path makes them, then one drain."""
    _tag(benchmark, build)
    w = build.window.StreamWindow(1 << 30, 1 << 30)
    wb = build.frames.YamuxWriteBuffer()
    snd = build.frames.YamuxStreamSender(w, wb, 1)
    block = bytes(1024)

    def run():
        send = snd.send
        for _ in range(1000):
            send(block, 1 << 30)
        w.add_send_credit(1024 * 1000)
        return len(wb.drain())

    assert benchmark(run) > 0
