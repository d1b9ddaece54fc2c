"""yamux also works in a process where the application ran gevent.monkey.patch_all()."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    from gevent import monkey; monkey.patch_all()
    from geventp2p.net.yamux import YamuxMuxer
    from geventp2p.testing import muxer_suite as ms
    mk = ms.socketpair_factory(YamuxMuxer())
    for name in ("echo", "half_close_both_ways", "reset_from_opener", "big_transfer_both_ways",
                 "close_resets_open_streams", "slow_reader_does_not_stall_others"):
        ms.run_check(ms.CHECKS[name], mk)
    ms.run_check(ms.CHECKS["many_streams"], mk, streams=200, messages=3)
    print("ALL OK")
    """
)


def test_conformance_subset_under_monkey_patching():
    env = dict(os.environ)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=90, env=env
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ALL OK" in proc.stdout
