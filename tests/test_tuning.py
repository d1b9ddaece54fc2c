"""geventp2p.tuning.tune_malloc: glibc keeps freed heap instead of faulting it back in."""

from __future__ import annotations

import subprocess
import sys

import pytest

from geventp2p.net import _muxconn
from geventp2p.tuning import trim_after_idle, tune_malloc

# 200 bursts of eight 64 KiB payloads allocated then freed, as a stream receiving 64 KiB
# frames does; prints the minor page faults the loop took
_CHURN = """
import resource, sys
from geventp2p.tuning import tune_malloc
if sys.argv[1] == "tuned":
    assert tune_malloc()
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(200):
    objs = [bytes(b"x" * 65524) for _ in range(8)]
    del objs
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
"""


def _faults(mode: str) -> int:
    p = subprocess.run([sys.executable, "-c", _CHURN, mode], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return int(p.stdout)


def _glibc() -> bool:
    import ctypes

    try:
        ctypes.CDLL(None).gnu_get_libc_version
    except (OSError, AttributeError):
        return False
    return sys.platform.startswith("linux")


@pytest.mark.skipif(not _glibc(), reason="glibc only")
def test_tuned_allocator_stops_refaulting_freed_payload_memory():
    default, tuned = _faults("default"), _faults("tuned")
    # default glibc trims the heap after each burst and faults the pages back in
    assert default > 2000, default
    assert tuned * 10 < default, (tuned, default)


def test_tune_malloc_validates_and_is_repeatable():
    for bad in (-1, 2**31, 1.5, True, "8M"):
        with pytest.raises(ValueError):
            tune_malloc(bad)
        with pytest.raises(ValueError):
            tune_malloc(mmap_threshold=bad)
    assert tune_malloc() == tune_malloc()
    assert tune_malloc() is _glibc()


def test_trim_after_idle_sets_and_clears_the_sweeper_hook():
    try:
        assert trim_after_idle() is _glibc()
        if _glibc():
            hook = _muxconn._IdleSweeper.after_retire
            assert hook is not None
            hook()  # malloc_trim(0) through ctypes: must not raise
    finally:
        assert trim_after_idle(False) is False
    assert _muxconn._IdleSweeper.after_retire is None
