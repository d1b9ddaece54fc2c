"""Latency / per-stream / per-connection benchmarks (issue #5 targets b-e).

geventp2p client and server in separate processes over loopback TCP, Noise + yamux
(``--muxer mplex`` too).  The server is this script (``serve``) started with the same
environment, so ``GEVENTP2P_PURE_PYTHON=1`` / ``GEVENTP2P_REQUIRE_SPEEDUPS=1`` select
the build of both sides.  Each scenario runs ``--runs`` times against one server and
prints one JSON object with the median of every figure (and the raw runs)::

    python -m bench.latency --scenario seq         # b: 500 x (new stream, 1 KiB echo)
    python -m bench.latency --scenario concurrent  # c: N concurrent 16 KiB echo streams
    python -m bench.latency --scenario connect     # d: 50 fresh connections + first stream
                                                   #    (dial_only_ms: without the stream)
    python -m bench.latency --scenario rss         # e: peak RSS with 1,000 concurrent streams

``--profile FILE`` writes a cProfile (CPU time) of the client (one extra run);
``--profile-server FILE`` profiles the server process.  Targets: seq >= 2,000
streams/s with p99 <= 2 ms; concurrent 1,000 <= 0.4 s and 10,000 <= 4 s; connect
<= 3 ms per connection; rss <= 90 MiB per process.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import signal
import statistics
import subprocess
import sys
import time

import gevent
import gevent.event
import gevent.socket
from gevent.pool import Group

KiB = 1024
MiB = 1024 * 1024
ECHO = "/echo/1.0.0"

TARGETS = {
    "seq": "streams_per_s >= 2000 and p99_ms <= 2",
    "concurrent": "seconds <= 0.4 (1,000) / 4 (10,000), failures == 0",
    "connect": "ms_per_conn <= 3",
    "rss": "client and server peak_rss <= 90 MiB",
}


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _build() -> str:
    from geventp2p import _speedups

    return _speedups.IMPLEMENTATION


def _muxer(name: str, max_streams: int):
    if name == "yamux":
        from geventp2p.net.yamux import YamuxConfig, YamuxMuxer

        return YamuxMuxer(YamuxConfig(max_inbound_streams=max_streams, accept_backlog=max_streams))
    from geventp2p.net.mplex import MplexConfig, MplexMuxer

    return MplexMuxer(MplexConfig(max_inbound_streams=max_streams, accept_backlog=max_streams))


def _host(args, *, listen, server: bool, identify: bool = True):
    from geventp2p import new_host
    from geventp2p.defaults import unlimited_limits

    return new_host(listen=listen, security=["noise"], muxers=[_muxer(args.muxer, args.max_streams)],
                    services=(["identify"] if identify else []) + (["ping", "echo"] if server else []),
                    limits=unlimited_limits())  # thousands of streams from one peer: no resource limits


# ----------------------------------------------------------------------------- server


def serve(args) -> int:
    prof = None
    if args.profile_server:
        import cProfile

        prof = cProfile.Profile(time.process_time)  # CPU time: idle waits drop out
    host = _host(args, listen=["/ip4/127.0.0.1/tcp/0"], server=True)
    stop = gevent.event.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(sig, stop.set)

    def stdin_watch() -> None:
        fd = sys.stdin.fileno()
        try:
            while True:
                gevent.socket.wait_read(fd)
                line = os.read(fd, 4096)
                if not line:
                    break
                if prof is not None and b"profile-on" in line:
                    prof.enable()
        except OSError:
            pass
        stop.set()

    watcher = gevent.spawn(stdin_watch)
    sys.stdout.write(json.dumps({"addr": str(host.p2p_addrs()[0]), "build": _build()}) + "\n")
    sys.stdout.flush()
    try:
        stop.wait()
    finally:
        if prof is not None:
            prof.disable()
            prof.dump_stats(args.profile_server)
        watcher.kill(block=False)
        host.close()
    sys.stdout.write(json.dumps({"server_peak_rss": _peak_rss()}) + "\n")
    sys.stdout.flush()
    return 0


class _Server:
    def __init__(self, args) -> None:
        cmd = [sys.executable, "-m", "bench.latency", "serve", "--muxer", args.muxer,
               "--max-streams", str(args.max_streams)]
        if args.profile_server:
            cmd += ["--profile-server", args.profile_server]
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=here)
        info = json.loads(self.proc.stdout.readline())
        self.addr = info["addr"]
        self.build = info["build"]

    def send(self, line: bytes) -> None:
        self.proc.stdin.write(line)
        self.proc.stdin.flush()

    def stop(self) -> dict:
        self.proc.stdin.close()
        out = self.proc.stdout.read()
        self.proc.wait(10)
        for line in out.splitlines():
            try:
                return json.loads(line)
            except ValueError:
                pass
        return {}


# ----------------------------------------------------------------------------- scenarios


def _echo_once(host, pid, data: bytes, timeout: float) -> None:
    s = host.new_stream(pid, [ECHO], timeout=timeout)
    try:
        s.set_deadline(time.monotonic() + timeout)
        s.write(data)
        s.close_write()
        got = 0
        while True:
            chunk = s.read(64 * KiB)
            if not chunk:
                break
            got += len(chunk)
        if got != len(data):
            raise RuntimeError(f"echo: sent {len(data)} bytes, got {got} back")
    except BaseException:
        s.reset()
        raise
    s.close()


def _pct(vals: list[float], p: float) -> float:
    vals = sorted(vals)
    return vals[max(0, math.ceil(p * len(vals)) - 1)]


def sc_seq(host, pid, args) -> dict:
    data = os.urandom(args.size or KiB)
    for _ in range(20):
        _echo_once(host, pid, data, args.timeout)  # warm-up
    lat = []
    t0 = time.perf_counter()
    for _ in range(args.count or 500):
        t = time.perf_counter()
        _echo_once(host, pid, data, args.timeout)
        lat.append(time.perf_counter() - t)
    total = time.perf_counter() - t0
    return {"streams_per_s": len(lat) / total, "p50_ms": _pct(lat, 0.5) * 1e3,
            "p99_ms": _pct(lat, 0.99) * 1e3, "max_ms": max(lat) * 1e3}


def sc_concurrent(host, pid, args) -> dict:
    count = args.count or 1000
    data = os.urandom(args.size or 16 * KiB)
    _echo_once(host, pid, data, args.timeout)
    failures = [0]

    def one() -> None:
        try:
            _echo_once(host, pid, data, args.timeout)
        except Exception:
            failures[0] += 1

    group = Group()
    t0 = time.perf_counter()
    for _ in range(count):
        group.spawn(one)
    done = group.join(timeout=args.timeout + 5)
    dt = time.perf_counter() - t0
    if not done:
        group.kill(block=True, timeout=5)
        failures[0] = count
    return {"streams": count, "seconds": dt, "failures": failures[0]}


def sc_connect(host, pid, args) -> dict:
    """Fresh connection (TCP + mss + Noise XX + yamux) and its first echo stream."""
    count = args.count or 50
    data = b"x" * 64
    net = host.network
    times = []
    dials = []
    for i in range(count + 5):
        t = time.perf_counter()
        conn = net.dial_peer(pid, timeout=args.timeout, force_direct_dial=True)
        t_dial = time.perf_counter()
        _echo_once(host, pid, data, args.timeout)
        dt = time.perf_counter() - t
        conn.close()
        if i >= 5:  # first few warm caches
            times.append(dt)
            dials.append(t_dial - t)
    return {"ms_per_conn": sum(times) / len(times) * 1e3, "p50_ms": _pct(times, 0.5) * 1e3,
            "max_ms": max(times) * 1e3, "dial_only_ms": sum(dials) / len(dials) * 1e3}


SCENARIOS = {"seq": sc_seq, "concurrent": sc_concurrent, "connect": sc_connect, "rss": sc_concurrent}


def _one_run(args, server: _Server, profile: str | None = None) -> dict:
    from geventp2p.core.peer import PeerId

    pid = PeerId.from_string(server.addr.rsplit("/p2p/", 1)[1])
    # 'connect' measures the bare handshake + first stream, like js/py drivers (no identify wait)
    host = _host(args, listen=[], server=False, identify=args.scenario != "connect")
    try:
        with gevent.Timeout(args.timeout * 3 + 60, RuntimeError("scenario timed out")):
            host.connect(server.addr, timeout=args.timeout)
            if args.scenario == "connect":
                host.peerstore.add_protocols(pid, ECHO)  # as identify would have
            prof = None
            if profile:
                import cProfile

                prof = cProfile.Profile(time.process_time)
                prof.enable()
            try:
                out = SCENARIOS[args.scenario](host, pid, args)
            finally:
                if prof is not None:
                    prof.disable()
                    prof.dump_stats(profile)
    finally:
        host.close()
    return out


def client_main(args) -> int:
    if args.scenario == "rss":
        args.count = args.count or 1000
        args.size = args.size or 16 * KiB
    server = _Server(args)
    runs = []
    try:
        for _ in range(args.runs):
            runs.append(_one_run(args, server))
        if args.profile_server:
            server.send(b"profile-on\n")
        if args.profile or args.profile_server:
            _one_run(args, server, profile=args.profile)
    finally:
        srv = server.stop()
    result: dict = {"scenario": args.scenario, "muxer": args.muxer, "build": server.build, "runs": len(runs)}
    for key in runs[0]:
        vals = [r[key] for r in runs]
        result[key] = statistics.median(vals) if key != "failures" else max(vals)
    if args.scenario == "rss":
        result["client_peak_rss_mib"] = _peak_rss() / MiB
        result["server_peak_rss_mib"] = srv.get("server_peak_rss", 0) / MiB
    result["target"] = TARGETS[args.scenario]
    result["raw"] = runs
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__.split("\n")[0])
    p.add_argument("mode", nargs="?", default="client", choices=("client", "serve"))
    p.add_argument("--scenario", choices=sorted(SCENARIOS), default="seq")
    p.add_argument("--muxer", choices=("yamux", "mplex"), default="yamux")
    p.add_argument("--count", type=int, default=0, help="rounds/streams/connections (scenario default)")
    p.add_argument("--size", type=int, default=0, help="echo payload bytes (scenario default)")
    p.add_argument("--runs", type=int, default=5, help="runs per scenario; figures are medians")
    p.add_argument("--max-streams", type=int, default=16384)
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--profile", metavar="FILE", help="cProfile the client over one extra run")
    p.add_argument("--profile-server", metavar="FILE", help="cProfile the server over one extra run")
    args = p.parse_args(argv)
    if args.mode == "serve":
        return serve(args)
    if args.scenario == "rss":
        args.runs = 1  # a lifetime peak: one run per process
    return client_main(args)


if __name__ == "__main__":
    sys.exit(main())
