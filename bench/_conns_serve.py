"""``geventp2p serve`` for :mod:`bench.conns`, with a stats dump on SIGUSR1.

    python -m bench._conns_serve serve [serve options...]

Runs ``geventp2p.cli.main`` unchanged, plus:

* SIGUSR1 prints one JSON line ``{"stats": {...}}`` on stdout: ``rss`` (bytes, VmRSS),
  ``fds`` (open descriptors), ``greenlets`` (live greenlets), ``conns`` (open
  connections of the host when it can be found), ``rss_anon`` (bytes, RssAnon),
  ``pooled`` (bytes of free receive buffers in ``net.bufpool.POOL``), and with glibc
  ``malloc_used``/``malloc_free`` (bytes of the C heap in use and free inside it,
  ``mallinfo2``; CPython's object arenas are mmapped apart and count in neither);
* ``GEVENTP2P_BENCH_CONNMGR_HIGH=N``: connection manager watermarks above ``N``
  (the default ``high=192`` would trim the run's connections once their grace period
  passed; go-libp2p's benchmarks raise it the same way);
* ``GEVENTP2P_BENCH_MALLOC_TRIM=1``: each stats dump calls glibc ``malloc_trim(0)``
  first, so RSS shows live memory rather than free heap kept for reuse (for example
  the stacks of greenlets that ended when their connections went idle);
* ``GEVENTP2P_BENCH_TRACEMALLOC=1``: tracemalloc runs from the start; each SIGUSR1 also
  writes the top allocation sites grown since the previous dump to stderr (profiling
  only: it slows the server several times), or appends them to the file named by
  ``GEVENTP2P_BENCH_TRACEMALLOC_OUT``; with ``GEVENTP2P_BENCH_TRACEMALLOC_FROM_FIRST=1``
  every dump compares with the first one (the baseline) instead;
  ``GEVENTP2P_BENCH_TRACEMALLOC_FRAMES=N`` keeps N frames per allocation, and
  ``GEVENTP2P_BENCH_TRACEMALLOC_BY=traceback`` groups by whole tracebacks (printed)
  instead of lines; ``GEVENTP2P_BENCH_TRACEMALLOC_TOP=N`` entries (40);
* ``GEVENTP2P_BENCH_GC_COLLECT=1``: each dump runs ``gc.collect()`` first (to tell
  garbage waiting in reference cycles from live memory; it adds ``gc_collected``);
* ``GEVENTP2P_BENCH_MALLOCSTATS=FILE``: each dump also appends CPython's small-object
  allocator statistics (``sys._debugmallocstats()``: arenas, pools, used and free
  blocks) to ``FILE``, to tell live objects from a fragmented object heap.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import json
import os
import signal
import sys
import tracemalloc
from typing import Any, Optional

_last_snapshot: Optional[tracemalloc.Snapshot] = None


def _status_field(name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _count_greenlets() -> int:
    from greenlet import greenlet

    return sum(1 for o in gc.get_objects() if isinstance(o, greenlet) and not o.dead)


def _count_conns() -> int:
    from geventp2p.host.basic import BasicHost

    total = 0
    for o in gc.get_objects():
        if isinstance(o, BasicHost):
            try:
                total += sum(1 for c in o.network.conns() if not c.closed)
            except Exception:  # an API drift: the figure is optional
                return -1
    return total


def _pooled_bytes() -> int:
    """Bytes the process-wide receive-buffer pool holds (free buffers kept for reuse)."""
    from geventp2p.net.bufpool import POOL

    return POOL.pooled_bytes


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _mallinfo() -> dict[str, int]:
    """glibc's view of its heap: in use (small chunks and mmapped big ones) and free."""
    try:
        fn = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):  # not glibc, or older than 2.33
        return {}
    fn.restype = _Mallinfo2
    mi = fn()
    return {"malloc_used": mi.uordblks + mi.hblkhd, "malloc_free": mi.fordblks}


def dump_stats() -> dict[str, Any]:
    global _last_snapshot
    if os.environ.get("GEVENTP2P_BENCH_MALLOC_TRIM") == "1":
        # hand free heap pages back first: RSS then shows live memory, not what the
        # allocator keeps for reuse (e.g. the stacks of greenlets that ended)
        try:
            ctypes.CDLL(None).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc
            pass
    collected = gc.collect() if os.environ.get("GEVENTP2P_BENCH_GC_COLLECT") == "1" else None
    stats: dict[str, Any] = {
        "rss": _status_field("VmRSS"),
        "rss_anon": _status_field("RssAnon"),
        "fds": len(os.listdir("/proc/self/fd")),
        "greenlets": _count_greenlets(),
        "conns": _count_conns(),
        "pooled": _pooled_bytes(),
        **_mallinfo(),
    }
    if collected is not None:
        stats["gc_collected"] = collected
    if tracemalloc.is_tracing():
        stats["traced"] = tracemalloc.get_traced_memory()[0]
    sys.stdout.write(json.dumps({"stats": stats}) + "\n")
    sys.stdout.flush()
    mallocstats = os.environ.get("GEVENTP2P_BENCH_MALLOCSTATS")
    if mallocstats:  # the C function writes to fd 2: point fd 2 at the file meanwhile
        sys.stderr.flush()
        saved = os.dup(2)
        with open(mallocstats, "a") as f:
            f.write("---- sys._debugmallocstats()\n")
            f.flush()
            os.dup2(f.fileno(), 2)
            try:
                sys._debugmallocstats()
            finally:
                os.dup2(saved, 2)
                os.close(saved)
    if tracemalloc.is_tracing():
        snap = tracemalloc.take_snapshot().filter_traces((tracemalloc.Filter(False, tracemalloc.__file__),))
        if _last_snapshot is not None:
            by = os.environ.get("GEVENTP2P_BENCH_TRACEMALLOC_BY", "lineno")
            top = snap.compare_to(_last_snapshot, by)[:int(os.environ.get("GEVENTP2P_BENCH_TRACEMALLOC_TOP", "40"))]
            if by == "traceback":
                text = "---- tracemalloc growth since the last dump\n" + "".join(
                    f"{st}\n" + "".join(f"      {line}\n" for line in st.traceback.format()[-12:]) for st in top)
            else:
                text = "---- tracemalloc growth since the last dump\n" + "".join(f"{st}\n" for st in top)
            out = os.environ.get("GEVENTP2P_BENCH_TRACEMALLOC_OUT")
            if out:
                with open(out, "a") as f:
                    f.write(text)
            else:
                sys.stderr.write(text)
                sys.stderr.flush()
        if _last_snapshot is None or os.environ.get("GEVENTP2P_BENCH_TRACEMALLOC_FROM_FIRST") != "1":
            _last_snapshot = snap
    return stats


def main() -> int:
    if os.environ.get("GEVENTP2P_BENCH_TRACEMALLOC") == "1":
        tracemalloc.start(int(os.environ.get("GEVENTP2P_BENCH_TRACEMALLOC_FRAMES", "1")))
    high = int(os.environ.get("GEVENTP2P_BENCH_CONNMGR_HIGH", "0") or 0)
    import gevent

    import geventp2p
    from geventp2p.config import ConnManagerConfig

    if high > 0:
        geventp2p.new_host = functools.partial(  # type: ignore[assignment]
            geventp2p.new_host, connmgr=ConnManagerConfig(low=high, high=high + 1)
        )
    gevent.signal_handler(signal.SIGUSR1, dump_stats)
    from geventp2p.cli import main as cli_main

    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
