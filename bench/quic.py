"""QUIC v1 against TCP + Noise + yamux: upload throughput and new-connection time.

    python -m bench.quic [--mib 16] [--repeat 5] [--conns 20] [--profile FILE]

A server process (``--serve``) listens on TCP and QUIC with the perf service; the
client process uploads ``--mib`` MiB with ``/perf/1.0.0`` over each transport
``--repeat`` times (one connection per transport, reused) and times ``--conns``
fresh connections (dial + handshake, then close).  Prints medians with min-max.
``--profile FILE`` cProfiles the client during the QUIC uploads and prints the top
functions.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import statistics
import subprocess
import sys
import time
from typing import Any

import gevent


def _serve() -> None:
    from geventp2p.defaults import new_host, unlimited_limits

    host = new_host(listen=["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"],
                    security=["noise"], muxers=["yamux"], services=["perf"], limits=unlimited_limits())
    print(json.dumps({"addrs": [str(a) for a in host.p2p_addrs()]}), flush=True)
    gevent.get_hub().threadpool.spawn(sys.stdin.read).get()
    host.close()


def _stats(xs: list[float]) -> str:
    return f"{statistics.median(xs):8.2f} ({min(xs):.2f}-{max(xs):.2f})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mib", type=int, default=16)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--conns", type=int, default=20)
    p.add_argument("--profile", default=None, help="cProfile the QUIC uploads into this file")
    args = p.parse_args(argv)
    if args.serve:
        _serve()
        return 0

    from geventp2p.core import addr as maddr
    from geventp2p.core.peer import PeerId
    from geventp2p.defaults import new_host, unlimited_limits
    from geventp2p.protocols.perf import perf

    server = subprocess.Popen([sys.executable, "-m", "bench.quic", "--serve"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None
        info = json.loads(server.stdout.readline())
        addrs = {("quic" if "/quic-v1" in a else "tcp"): a for a in info["addrs"]}
        _base, pid_text = maddr.split_p2p(addrs["tcp"])
        pid = PeerId.from_string(str(pid_text))
        n = args.mib << 20
        out: dict[str, Any] = {}
        for name in ("tcp", "quic"):
            client = new_host(listen=[], security=["noise"], muxers=["yamux"], services=[],
                              limits=unlimited_limits())
            try:
                setups = []
                for _ in range(args.conns):
                    t0 = time.perf_counter()
                    client.connect(addrs[name], timeout=20)
                    setups.append((time.perf_counter() - t0) * 1000)
                    client.network.close_peer(pid)
                client.connect(addrs[name], timeout=20)
                perf(client, pid, 1 << 20, 0, timeout=60)  # warm-up
                prof = cProfile.Profile() if (args.profile and name == "quic") else None
                rates = []
                for _ in range(args.repeat):
                    if prof is not None:
                        prof.enable()
                    r = perf(client, pid, n, 0, timeout=300)
                    if prof is not None:
                        prof.disable()
                    rates.append(n / r.total_time / 1e6)
                out[name] = {"upload_MBps": rates, "connect_ms": setups}
                if prof is not None:
                    prof.dump_stats(args.profile)
                    buf = io.StringIO()
                    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(15)
                    print(buf.getvalue())
            finally:
                client.close()
        print(f"{'':6} {'upload MB/s median (min-max)':>30} {'new connection ms median (min-max)':>38}")
        for name, label in (("tcp", "TCP+Noise+yamux"), ("quic", "QUIC v1")):
            o = out[name]
            print(f"{label:16} {_stats(o['upload_MBps']):>24} {_stats(o['connect_ms']):>30}")
        print(json.dumps(out))
    finally:
        if server.stdin is not None:
            server.stdin.close()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
