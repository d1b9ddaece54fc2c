"""Receive buffers go back to the pool while a connection is idle (issue #10).

The pool itself; the Noise decryptor's buffer sizes and release; and Noise+yamux
connections over a socketpair: an idle connection holds no receive buffer, takes
one back once bytes arrive, and no byte is lost or reordered across many
release/reacquire cycles with random chunk sizes.  Runs in both builds (the yamux
frame reader's attach/detach is in ``_speedups``).
"""

from __future__ import annotations

import random
import time

import gevent
import gevent.socket as gsocket
import pytest

from geventp2p.crypto.keys import generate_key
from geventp2p.net import _muxconn, noise as noise_mod
from geventp2p.net.bufpool import SIZES, BufferPool
from geventp2p.net.noise import NoiseTransport
from geventp2p.net.rawconn import SocketConn
from geventp2p.net.yamux import YamuxConfig, YamuxMuxer
from geventp2p.sansio.noise import CipherState, FrameDecryptor, FrameEncryptor
from geventp2p.sansio.noise.framing import MAX_FRAME, MID_RECV_BUFFER, MIN_RECV_BUFFER, RECV_SIZE

T = 30.0
KEY = bytes(range(32))
POISON = 0xEE


class PoisonPool(BufferPool):
    """A pool that overwrites every buffer it takes back (a reader still using a
    released buffer would see the poison) and counts what is handed out."""

    def __init__(self, **kw: int) -> None:
        super().__init__(**kw)
        self.out = 0  # buffers acquired and not given back

    def acquire(self, size: int) -> bytearray:
        self.out += 1
        return super().acquire(size)

    def release(self, buf: bytearray) -> bool:
        self.out -= 1
        kept = super().release(buf)
        if kept:
            buf[:] = bytes([POISON]) * len(buf)  # same length: no resize
        return kept


def wait_until(cond, timeout: float = T) -> None:
    """Let the other greenlets run until ``cond()`` holds (bounded)."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        gevent.sleep(0.001)


# ----------------------------------------------------------------- the pool


def test_pool_exact_sizes_bound_and_exported_buffers():
    pool = BufferPool(max_bytes=3 * SIZES[0])
    a = pool.acquire(SIZES[0])
    assert len(a) == SIZES[0] and pool.misses == 1
    assert pool.release(a) and pool.pooled_bytes == SIZES[0]
    assert pool.acquire(SIZES[0]) is a and pool.hits == 1 and pool.pooled_bytes == 0
    odd = pool.acquire(1000)  # not a pooled size: served, never kept
    assert len(odd) == 1000 and not pool.release(odd)
    view = memoryview(a)  # exported: whoever holds the view may still write it
    assert not pool.release(a) and pool.pooled_bytes == 0
    view.release()
    bufs = [pool.acquire(SIZES[0]) for _ in range(4)]
    assert [pool.release(b) for b in bufs] == [True, True, True, False]  # the bound
    assert pool.pooled_bytes == 3 * SIZES[0] and all(len(b) == SIZES[0] for b in bufs)
    pool.clear()
    assert pool.pooled_bytes == 0


def test_shrink_drops_largest_first_down_to_the_bound():
    pool = BufferPool(max_bytes=10 * SIZES[-1])
    small = [pool.acquire(SIZES[0]) for _ in range(3)]
    large = [pool.acquire(SIZES[-1]) for _ in range(2)]
    for b in small + large:
        assert pool.release(b)
    total = 3 * SIZES[0] + 2 * SIZES[-1]
    assert pool.pooled_bytes == total
    assert pool.shrink(total) == 0
    assert pool.shrink(3 * SIZES[0]) == 2 * SIZES[-1]  # the large ones go first
    assert pool.pooled_bytes == 3 * SIZES[0]
    got_small, got_large = pool.acquire(SIZES[0]), pool.acquire(SIZES[-1])
    assert any(got_small is b for b in small) and not any(got_large is b for b in large)
    assert pool.shrink(0) == 2 * SIZES[0] and pool.pooled_bytes == 0


# ----------------------------------------------------------------- the decryptor


def _push(d: FrameDecryptor, data: bytes) -> list[int]:
    """Receive ``data`` through receive_buffer/receive_into; returns the view sizes."""
    sizes = []
    off = 0
    while off < len(data):
        view = d.receive_buffer()
        sizes.append(len(view))
        k = min(len(view), len(data) - off)
        view[:k] = data[off:off + k]
        view.release()
        d.receive_into(k)
        off += k
    return sizes


def _drain(d: FrameDecryptor) -> bytes:
    out = bytearray()
    buf = memoryview(bytearray(MAX_FRAME))
    while True:
        k = d.readinto(buf)
        if not k:
            return bytes(out)
        out += buf[:k]


def test_decryptor_sizes_and_release():
    pool = PoisonPool()
    e = FrameEncryptor(CipherState(KEY))
    d = FrameDecryptor(CipherState(KEY), pool=pool)
    assert d.capacity == 0 and d.idle and d.release_buffer()
    small = e.encrypt_frames(b"x" * 100)
    _push(d, small)
    assert d.capacity == MIN_RECV_BUFFER and pool.out == 1
    assert not d.release_buffer()  # ciphertext buffered: kept
    assert _drain(d) == b"x" * 100
    assert d.release_buffer() and d.capacity == 0 and pool.out == 0
    # bulk: receives that fill the buffer step the size up to RECV_SIZE plus one frame
    payload = random.Random(1).randbytes(4 * RECV_SIZE)
    wire = e.encrypt_frames(payload)
    got = bytearray()
    caps = set()
    off = 0
    while off < len(wire):
        view = d.receive_buffer()
        k = min(len(view), len(wire) - off)
        view[:k] = wire[off:off + k]
        view.release()
        d.receive_into(k)
        off += k
        caps.add(d.capacity)
        got += _drain(d)
    assert bytes(got) == payload
    assert {MID_RECV_BUFFER, RECV_SIZE + MAX_FRAME + 2} <= caps
    assert d.release_buffer() and pool.out == 0
    # small receives step it down again
    for _ in range(3):
        _push(d, e.encrypt_frames(b"y"))
        assert _drain(d) == b"y"
        d.release_buffer()
    _push(d, e.encrypt_frames(b"z"))
    assert d.capacity == MIN_RECV_BUFFER and _drain(d) == b"z"


def test_decryptor_frame_larger_than_the_first_buffer():
    pool = PoisonPool()
    e = FrameEncryptor(CipherState(KEY))
    d = FrameDecryptor(CipherState(KEY), pool=pool)
    body = bytes(range(256)) * 256  # one 64 KiB frame: does not fit 16 KiB
    _push(d, e.encrypt_frames(body))
    assert d.capacity >= MAX_FRAME + 2
    assert _drain(d) == body
    assert d.release_buffer() and pool.out == 0


# ----------------------------------------------------------------- noise + yamux connections


@pytest.fixture
def pool(monkeypatch):
    p = PoisonPool()
    monkeypatch.setattr(noise_mod, "POOL", p)
    monkeypatch.setattr(_muxconn, "_POOL", p)
    monkeypatch.setattr(_muxconn, "BUFFER_IDLE", 0.02)  # hand back soon after a wait begins
    return p


def _mux_pair():
    a, b = gsocket.socketpair()
    ra, rb = SocketConn(a, is_initiator=True), SocketConn(b)
    ti, tr = NoiseTransport(generate_key("ed25519")), NoiseTransport(generate_key("ed25519"))
    with gevent.Timeout(T):
        g = gevent.spawn(tr.secure_inbound, rb, timeout=T)
        sa = ti.secure_outbound(ra, timeout=T)
        sb = g.get()
    cfg = YamuxConfig(initial_ping=False, enable_keepalive=False, rtt_interval=0)
    mux = YamuxMuxer(cfg)
    return mux.create(sa, True), mux.create(sb, False)


def _idle(pool: PoisonPool, *conns) -> bool:
    """Both readers wait for their sockets, holding no receive buffer."""
    return pool.out == 0 and all(c.conn._dec.capacity == 0 for c in conns)


def test_idle_connections_hand_buffers_back_and_reacquire(pool):
    ca, cb = _mux_pair()
    try:
        wait_until(lambda: _idle(pool, ca, cb))
        s = ca.open_stream(timeout=T)
        s.write(b"ping" * 256)
        t = cb.accept_stream(timeout=T)
        assert t.read(4096, timeout=T) == b"ping" * 256
        hits = pool.hits
        wait_until(lambda: _idle(pool, ca, cb))  # idle again: all buffers back
        t.write(b"pong")
        assert s.read(10, timeout=T) == b"pong"
        wait_until(lambda: _idle(pool, ca, cb))
        assert pool.hits > hits  # buffers were taken back from the pool on readability
        s.close()
        t.close()
    finally:
        ca.close()
        cb.close()


def test_buffers_kept_between_rounds_of_a_conversation(pool, monkeypatch):
    """A reader that waits only briefly keeps its buffers (no pool round trip per
    wait); they go back once it has waited for a whole BUFFER_IDLE period."""
    monkeypatch.setattr(_muxconn, "BUFFER_IDLE", 60.0)
    ca, cb = _mux_pair()
    try:
        s = ca.open_stream(timeout=T)
        s.write(b"ping")
        t = cb.accept_stream(timeout=T)
        for _ in range(20):
            assert t.read(4, timeout=T) == b"ping"
            t.write(b"pong")
            assert s.read(4, timeout=T) == b"pong"
            s.write(b"ping")
        assert t.read(4, timeout=T) == b"ping"
        hits, out = pool.hits, pool.out
        for _ in range(20):  # the readers wait between rounds, and keep their buffers
            t.write(b"pong")
            assert s.read(4, timeout=T) == b"pong"
            s.write(b"ping")
            assert t.read(4, timeout=T) == b"ping"
        assert pool.hits == hits and pool.out == out > 0
        assert ca.conn._dec.capacity and cb.conn._dec.capacity
        # a short period from now on: the waiting readers hand everything back
        monkeypatch.setattr(_muxconn, "BUFFER_IDLE", 0.02)
        sweeper = _muxconn._BufferSweeper.of_current_hub()
        sweeper.timer.stop()
        sweeper.running = False
        sweeper.fresh.update({ca: ca._reader_wakes, cb: cb._reader_wakes})
        sweeper.note(ca)  # (restarts the timer with the new period)
        wait_until(lambda: _idle(pool, ca, cb))
        t.write(b"pong")
        assert s.read(4, timeout=T) == b"pong"
        s.close()
        t.close()
    finally:
        ca.close()
        cb.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_data_lost_across_release_and_reacquire(pool, seed):
    rng = random.Random(seed)
    ca, cb = _mux_pair()
    try:
        s = ca.open_stream(timeout=T)
        s.write(b"!")
        t = cb.accept_stream(timeout=T)
        assert t.read(1, timeout=T) == b"!"
        sent = bytearray()
        got = bytearray()
        cycles = 0

        def reader():
            while True:
                chunk = t.read(rng.choice((1, 7, 100, 4096, 70000)), timeout=T)
                if not chunk:
                    return
                got.extend(chunk)

        g = gevent.spawn(reader)
        for _ in range(60):
            n = rng.choice((1, 3, 1000, 16 * 1024, 65519, 65520, 200 * 1024, 600 * 1024))
            data = rng.randbytes(n)
            s.write(data)
            sent += data
            if rng.random() < 0.5:  # go idle: both sides hand their buffers back
                wait_until(lambda: len(got) == len(sent) and _idle(pool, ca, cb))
                cycles += 1
        s.close_write()
        g.get(timeout=T)
        assert bytes(got) == bytes(sent)
        assert cycles >= 10
        wait_until(lambda: _idle(pool, ca, cb))
    finally:
        ca.close()
        cb.close()
