"""Receive buffers shared by all connections of the process: a size-classed free list.

A connection needs a receive buffer (Noise ciphertext, muxer frames) only while
bytes are arriving.  The gevent shells hand theirs back here when the connection has
nothing buffered and has waited for the socket for a short while (50 to 100 ms,
``net._muxconn.BUFFER_IDLE``; a blocking read hands back at once), and take one again
once the socket is readable, so an idle connection holds no receive buffer and a busy
one reuses warm memory (a fresh large allocation costs page faults; freeing and
reallocating it fragments the heap).

Buffers come in a few sizes (:data:`SIZES`); a caller asks for one of them and gets a
``bytearray`` of exactly that length.  The free lists hold at most ``max_bytes`` in
all (default :data:`DEFAULT_MAX_BYTES`); a buffer given back past that bound, of
another size, or still exported (a memoryview of it alive) is left to the garbage
collector instead.  When the idle sweeper retires connections it shrinks the free
lists to :data:`IDLE_MAX_BYTES`.

The pool does no I/O and never blocks: the gevent shells (one OS thread) share it
without a lock.  The sans-I/O cores only see an object with ``acquire(size)`` and
``release(buf)`` (:class:`BufferSource`).
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["BufferPool", "BufferSource", "POOL", "SIZES", "DEFAULT_MAX_BYTES", "IDLE_MAX_BYTES"]

KiB = 1024

#: Pooled buffer sizes: the ladders of the Noise decryptor (16 KiB, 128 KiB, 256 KiB
#: plus one frame) and of the muxer reader (16 KiB, 64 KiB, 256 KiB).
SIZES = (16 * KiB, 64 * KiB, 128 * KiB, 256 * KiB, 256 * KiB + 65537)
#: Bytes the free lists may hold in all (the process-wide bound).
DEFAULT_MAX_BYTES = 8 * 1024 * KiB
#: What the free lists keep once connections have gone idle (see :meth:`BufferPool.shrink`).
IDLE_MAX_BYTES = 256 * KiB


class BufferSource(Protocol):
    """Where a sans-I/O core takes its receive buffers from and gives them back to."""

    def acquire(self, size: int) -> bytearray:
        """A buffer of exactly ``size`` bytes (contents undefined)."""

    def release(self, buf: bytearray) -> bool:
        """Take ``buf`` back (the caller holds no view of it); True if it was pooled."""


class BufferPool:
    """A bounded, size-classed free list of ``bytearray`` receive buffers."""

    __slots__ = ("max_bytes", "_free", "_bytes", "hits", "misses")

    def __init__(self, sizes: tuple[int, ...] = SIZES, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.max_bytes = max_bytes
        self._free: dict[int, list[bytearray]] = {s: [] for s in sizes}
        self._bytes = 0
        #: acquire() calls served from the free lists / by a new allocation
        self.hits = 0
        self.misses = 0

    @property
    def pooled_bytes(self) -> int:
        """Bytes held in the free lists now."""
        return self._bytes

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(self._free)

    def acquire(self, size: int) -> bytearray:
        """A buffer of exactly ``size`` bytes: a pooled one if there is one, else a new one."""
        free = self._free.get(size)
        if free:
            self._bytes -= size
            self.hits += 1
            return free.pop()
        self.misses += 1
        return bytearray(size)

    def release(self, buf: bytearray) -> bool:
        """Give ``buf`` back; True if it was kept for reuse.

        Kept only if its length is a pooled size, the bound leaves room and no view
        of it is alive (a resize fails on an exported buffer: such a buffer may still
        be written by whoever holds the view, so it must never be handed out again).
        """
        size = len(buf)
        free = self._free.get(size)
        if free is None or self._bytes + size > self.max_bytes:
            return False
        try:
            last = buf.pop()  # a resize: raises BufferError while exported (no realloc)
        except BufferError:
            return False
        buf.append(last)
        free.append(buf)
        self._bytes += size
        return True

    def shrink(self, max_bytes: int) -> int:
        """Drop pooled buffers, largest first, until at most ``max_bytes`` are held;
        returns the bytes dropped.  (The idle sweeper calls it when connections go
        idle: a burst's buffers need not stay with a process that has gone quiet.)"""
        dropped = 0
        for size in sorted(self._free, reverse=True):
            free = self._free[size]
            while free and self._bytes > max_bytes:
                free.pop()
                self._bytes -= size
                dropped += size
        return dropped

    def clear(self) -> None:
        """Drop every pooled buffer."""
        for free in self._free.values():
            free.clear()
        self._bytes = 0


#: The process-wide pool the Noise connections and muxer readers share.
POOL = BufferPool()
