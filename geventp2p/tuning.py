"""Process-level tuning an application may opt into (the library never does it on import).

``tune_malloc()``: glibc returns freed memory at the top of the heap to the kernel as
soon as more than 128 KiB of it is free (``M_TRIM_THRESHOLD``).  A stream that
receives 64 KiB frames allocates and frees payloads of that size all the time, so the
heap shrinks and grows again on every burst, and each page comes back with a page
fault.  In a virtual machine those faults are expensive: on the development VM a fresh
``geventp2p serve`` took about 4,500 faults in its first 64 MiB Noise upload and ran at
about 950 MiB/s; with the threshold raised to 8 MiB it took about 280 faults and ran
at about 1,390 MiB/s.  (glibc raises the threshold on its own once a large mmapped
block is freed, which is why only a process's first connections were slow.)

The CLI (``geventp2p serve``, ``perf``, ``demo``...) calls it at start.  Embedding
applications can call it once at start-up; it changes the allocator for the whole
process, so it is the application's decision, not the library's.

``trim_after_idle()``: when connections go idle their greenlets end, their receive
buffers go back to the pool and their AEAD objects are dropped, but glibc keeps the
freed memory inside the heap, so RSS does not move.  With this on, each sweep of the
idle-connection sweeper (every ``GEVENTP2P_IDLE_RETIRE_AFTER`` seconds, 5 by default)
that retired at least one connection calls ``malloc_trim(0)``, which hands the free
pages back.  It costs a walk of the heap that blocks the hub (8-17 ms for a 225 MB
heap on the development VM) and, for connections still busy, page faults when the
heap grows again, at most once per sweep.  ``geventp2p serve`` turns it on.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any

__all__ = ["tune_malloc", "trim_after_idle", "DEFAULT_TRIM_THRESHOLD", "DEFAULT_MMAP_THRESHOLD"]

#: Freed heap memory glibc keeps for reuse before it gives any back.
DEFAULT_TRIM_THRESHOLD = 8 * 1024 * 1024
#: Blocks at least this large get their own mmap (and lose their pages on free).
DEFAULT_MMAP_THRESHOLD = 1024 * 1024

_M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
_M_MMAP_THRESHOLD = -3


def _check(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**31:
        raise ValueError(f"{name} must be an int in 0..2**31-1, got {value!r}")


def tune_malloc(trim_threshold: int = DEFAULT_TRIM_THRESHOLD,
                mmap_threshold: int = DEFAULT_MMAP_THRESHOLD) -> bool:
    """Keep up to ``trim_threshold`` bytes of freed heap for reuse, and serve blocks
    below ``mmap_threshold`` from the heap (glibc ``mallopt``).

    Both are set because setting either one turns off glibc's own adjustment of both:
    with the trim threshold alone, the mmap threshold would stay at 128 KiB, and every
    128 KiB+ receive buffer would be mapped and faulted in afresh (mplex, which reads
    256 KiB at a time, ran at half speed that way).  Returns True if applied, False
    where it does not apply (not Linux, not glibc).  Safe to call more than once.
    """
    _check("trim_threshold", trim_threshold)
    _check("mmap_threshold", mmap_threshold)
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc only (musl's mallopt does nothing)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1
    return mallopt(_M_TRIM_THRESHOLD, trim_threshold) == 1 and ok


def _glibc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc only
        libc.malloc_trim  # noqa: B018 - probe
    except (OSError, AttributeError):
        return None
    return libc


def trim_after_idle(enabled: bool = True) -> bool:
    """After a sweep that retired idle connections, hand free heap pages back to the
    kernel (glibc ``malloc_trim(0)``); ``enabled=False`` turns it off again.  Returns
    True if it is now on (False where it does not apply: not glibc, or turned off)."""
    from geventp2p.net._muxconn import _IdleSweeper

    if not enabled:
        _IdleSweeper.after_retire = None
        return False
    libc = _glibc()
    if libc is None:
        return False
    trim = libc.malloc_trim
    trim.argtypes = (ctypes.c_size_t,)
    trim.restype = ctypes.c_int

    def after_retire() -> None:
        trim(0)

    _IdleSweeper.after_retire = after_retire
    return True
