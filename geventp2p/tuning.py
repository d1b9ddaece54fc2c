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
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["tune_malloc", "DEFAULT_TRIM_THRESHOLD"]

#: Freed heap memory glibc keeps for reuse before it gives any back.
DEFAULT_TRIM_THRESHOLD = 8 * 1024 * 1024

_M_TRIM_THRESHOLD = -1  # glibc <malloc.h>


def tune_malloc(trim_threshold: int = DEFAULT_TRIM_THRESHOLD) -> bool:
    """Keep up to ``trim_threshold`` bytes of freed heap for reuse (glibc ``mallopt``).

    Returns True if applied, False where it does not apply (not Linux, not glibc).
    Note that setting it also turns off glibc's dynamic adjustment of the mmap
    threshold (it stays at 128 KiB).  Safe to call more than once.
    """
    if not isinstance(trim_threshold, int) or isinstance(trim_threshold, bool) or not 0 <= trim_threshold < 2**31:
        raise ValueError(f"trim_threshold must be an int in 0..2**31-1, got {trim_threshold!r}")
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
    return mallopt(_M_TRIM_THRESHOLD, trim_threshold) == 1
