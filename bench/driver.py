"""Benchmark driver: one geventp2p process per run, as client or as server.

Run as a script (``python bench/driver.py ...``) or module (``python -m bench.driver``);
it imports nothing from ``bench`` so the runner can start it with any cwd and a
controlled environment (``GEVENTP2P_PURE_PYTHON=1`` selects the pure build).

Server (fallback when ``geventp2p serve`` is unavailable; same JSON line)::

    driver.py serve --security noise --muxer yamux [--max-streams N] [--listen MA]

prints ``{"peer_id", "addrs", "impl", "build", "pid"}`` and serves ``/echo/1.0.0`` and
``/perf/1.0.0`` until stdin reaches EOF or SIGTERM/SIGINT.  ``--listen`` picks the
transport (default ``/ip4/127.0.0.1/tcp/0``; ``.../tcp/0/ws``, ``.../udp/0/quic-v1``).
The client dials whatever ``--target`` names with the default transports (TCP, QUIC,
WebSocket); over QUIC, ``--security``/``--muxer`` play no part (QUIC brings its own
TLS 1.3 and streams).

Client::

    driver.py client --target MA --security noise --muxer yamux --scenario S [options]

runs one scenario after connecting (connection setup is not timed, except in
``connections``) and prints one JSON line: ``ok``, ``scenario``, the figures, ``build``
and ``peak_rss`` (bytes, this process, lifetime peak).  Scenarios:

* ``perf-up`` / ``perf-down``: /perf/1.0.0 with ``--bytes`` in ``--write-size`` writes
  (64 KiB); ``mib_s`` from stream open to EOF.  ``frames`` is ``perf-up`` with 1 KiB
  writes by default (the small-frame stream rate).
* ``echo-rounds``: ``--count`` sequential rounds of open stream + echo ``--size`` bytes;
  ``streams_per_s``, ``p50_ms``, ``p99_ms``.
* ``concurrent``: ``--count`` streams at once on one connection, each echoing ``--size``
  bytes; ``seconds`` (wall), ``failures``.
* ``connections``: ``--count`` fresh connections (dial + security + muxer, no identify),
  each closed before the next; ``ms_per_conn`` (mean), ``p50_ms``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import signal
import struct
import sys
import time
import traceback

import gevent
import gevent.event
import gevent.socket
from gevent.pool import Group

KiB = 1024
MiB = 1024 * 1024
ECHO = "/echo/1.0.0"
PERF = "/perf/1.0.0"


def _emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _build() -> str:
    from geventp2p import _speedups

    return _speedups.IMPLEMENTATION


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def _cur_rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _muxer(name: str, max_streams: int | None):
    if name == "yamux":
        from geventp2p.net.yamux import YamuxConfig, YamuxMuxer

        if max_streams is None:
            return YamuxMuxer()
        return YamuxMuxer(YamuxConfig(max_inbound_streams=max_streams, accept_backlog=max_streams))
    if name == "mplex":
        from geventp2p.net.mplex import MplexConfig, MplexMuxer

        if max_streams is None:
            return MplexMuxer()
        return MplexMuxer(MplexConfig(max_inbound_streams=max_streams, accept_backlog=max_streams))
    raise SystemExit(f"unknown muxer {name}")


def _host(args, *, listen, server: bool, identify: bool = True):
    from geventp2p import new_host
    from geventp2p.defaults import unlimited_limits

    return new_host(
        listen=listen,
        security=[args.security],
        muxers=[_muxer(args.muxer, args.max_streams)],
        services=(["identify"] if identify else []) + (["ping", "echo", "perf"] if server else []),
        limits=unlimited_limits(),  # thousands of streams from one peer: no resource limits
    )


# ----------------------------------------------------------------------------- server


def serve(args) -> int:
    host = _host(args, listen=[args.listen], server=True)
    stop = gevent.event.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(sig, stop.set)

    def stdin_watch() -> None:
        fd = sys.stdin.fileno()
        try:
            while True:
                gevent.socket.wait_read(fd)
                if not os.read(fd, 4096):
                    break
        except OSError:
            pass
        stop.set()

    watcher = gevent.spawn(stdin_watch)
    _emit({
        "peer_id": str(host.id),
        "addrs": [str(a) for a in host.p2p_addrs()],
        "impl": "geventp2p",
        "build": _build(),
        "security": args.security,
        "muxer": args.muxer,
        "pid": os.getpid(),
    })
    try:
        stop.wait()
    finally:
        watcher.kill(block=False)
        host.close()
    return 0


# ----------------------------------------------------------------------------- client scenarios


def _perf(host, pid, upload: int, download: int, write_size: int, timeout: float) -> float:
    """One /perf/1.0.0 exchange; returns seconds from stream open to EOF."""
    block = bytes(write_size)
    t0 = time.perf_counter()
    s = host.new_stream(pid, [PERF], timeout=timeout)
    try:
        s.set_deadline(time.monotonic() + timeout)
        s.write(struct.pack(">Q", download))
        full, rest = divmod(upload, write_size)
        write = s.write
        for _ in range(full):
            write(block)
        if rest:
            write(block[:rest])
        s.close_write()
        got = 0
        read = s.read
        while True:
            chunk = read(256 * KiB)
            if not chunk:
                break
            got += len(chunk)
        dt = time.perf_counter() - t0
        if got != download:
            raise RuntimeError(f"perf: expected {download} bytes back, got {got}")
    except BaseException:
        s.reset()
        raise
    s.close()
    return dt


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


def _pct(sorted_vals: list[float], p: float) -> float:
    if not sorted_vals:
        return float("nan")
    k = max(0, math.ceil(p * len(sorted_vals)) - 1)
    return sorted_vals[k]


def sc_perf(host, pid, args, direction: str) -> dict:
    up, down = (args.bytes, 0) if direction == "up" else (0, args.bytes)
    _perf(host, pid, min(args.bytes, MiB) if up else 0, min(args.bytes, MiB) if down else 0,
          args.write_size, args.timeout)  # warm-up
    dt = _perf(host, pid, up, down, args.write_size, args.timeout)
    out = {"bytes": args.bytes, "seconds": dt, "mib_s": args.bytes / MiB / dt, "write_size": args.write_size}
    if direction == "up":
        out["writes_per_s"] = math.ceil(args.bytes / args.write_size) / dt
    return out


def sc_echo_rounds(host, pid, args) -> dict:
    data = os.urandom(args.size)
    _echo_once(host, pid, data, args.timeout)  # warm-up
    lat = []
    t0 = time.perf_counter()
    for _ in range(args.count):
        t = time.perf_counter()
        _echo_once(host, pid, data, args.timeout)
        lat.append(time.perf_counter() - t)
    total = time.perf_counter() - t0
    lat.sort()
    return {
        "rounds": args.count,
        "size": args.size,
        "seconds": total,
        "streams_per_s": args.count / total,
        "p50_ms": _pct(lat, 0.50) * 1e3,
        "p99_ms": _pct(lat, 0.99) * 1e3,
        "max_ms": lat[-1] * 1e3,
    }


def sc_concurrent(host, pid, args) -> dict:
    data = os.urandom(args.size)
    _echo_once(host, pid, data, args.timeout)  # warm-up
    errors: dict[str, int] = {}
    ok = [0]

    def one() -> None:
        try:
            _echo_once(host, pid, data, args.timeout)
            ok[0] += 1
        except Exception as exc:  # counted, not fatal
            key = f"{type(exc).__name__}: {str(exc)[:120]}"
            errors[key] = errors.get(key, 0) + 1

    rss0 = _cur_rss()
    group = Group()
    t0 = time.perf_counter()
    for _ in range(args.count):
        group.spawn(one)
    finished = group.join(timeout=args.timeout + 5)
    dt = time.perf_counter() - t0
    if not finished:
        group.kill(block=True, timeout=5)
    failures = args.count - ok[0]
    top = sorted(errors.items(), key=lambda kv: -kv[1])[:5]
    return {
        "streams": args.count,
        "size": args.size,
        "seconds": dt,
        "failures": failures,
        "timed_out": not finished,
        "errors": [f"{n}x {k}" for k, n in top],
        "client_rss_before": rss0,
    }


def sc_connections(host, pid, args) -> dict:
    net = host.network
    conn = host.connect(args.target, timeout=args.timeout)  # warm-up; puts the address in the peerstore
    conn.close()
    times = []
    for _ in range(args.count):
        t = time.perf_counter()
        conn = net.dial_peer(pid, timeout=args.timeout, force_direct_dial=True)
        times.append(time.perf_counter() - t)
        conn.close()
    times.sort()
    total = sum(times)
    return {
        "connections": args.count,
        "seconds": total,
        "ms_per_conn": total / args.count * 1e3,
        "p50_ms": _pct(times, 0.5) * 1e3,
        "max_ms": times[-1] * 1e3,
    }


SCENARIOS = ("perf-up", "perf-down", "frames", "echo-rounds", "concurrent", "connections")


def client(args) -> int:
    from geventp2p.core.peer import PeerId

    result: dict = {"ok": False, "scenario": args.scenario, "security": args.security, "muxer": args.muxer}
    try:
        result["build"] = _build()
        pid = PeerId.from_string(args.target.rsplit("/p2p/", 1)[1])
        # 'connections' measures the bare handshake: no identify exchange on our side
        host = _host(args, listen=[], server=False, identify=args.scenario != "connections")
        try:
            with gevent.Timeout(args.timeout * 3 + 30, RuntimeError("scenario timed out")):
                if args.scenario != "connections":
                    host.connect(args.target, timeout=args.timeout)
                if args.scenario == "perf-up":
                    out = sc_perf(host, pid, args, "up")
                elif args.scenario == "perf-down":
                    out = sc_perf(host, pid, args, "down")
                elif args.scenario == "frames":
                    out = sc_perf(host, pid, args, "up")
                elif args.scenario == "echo-rounds":
                    out = sc_echo_rounds(host, pid, args)
                elif args.scenario == "concurrent":
                    out = sc_concurrent(host, pid, args)
                else:
                    out = sc_connections(host, pid, args)
        finally:
            host.close()
        result.update(out)
        result["ok"] = not out.get("failures") and not out.get("timed_out")
    except BaseException as exc:  # one JSON line whatever happens
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc()[-2000:]
    result["peak_rss"] = _peak_rss()
    _emit(result)
    return 0 if result["ok"] else 1


# ----------------------------------------------------------------------------- entry


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="bench.driver", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="mode", required=True)
    for name in ("serve", "client"):
        q = sub.add_parser(name)
        q.add_argument("--security", choices=("noise", "tls", "plaintext"), default="noise")
        q.add_argument("--muxer", choices=("yamux", "mplex"), default="yamux")
        q.add_argument("--max-streams", type=int, default=None,
                       help="inbound stream limit of the muxer (default: the muxer's own)")
        if name == "serve":
            q.add_argument("--listen", default="/ip4/127.0.0.1/tcp/0")
        else:
            q.add_argument("--target", required=True, help="multiaddr ending in /p2p/<peer id>")
            q.add_argument("--scenario", choices=SCENARIOS, required=True)
            q.add_argument("--bytes", type=int, default=64 * MiB)
            q.add_argument("--write-size", type=int, default=None)
            q.add_argument("--count", type=int, default=500)
            q.add_argument("--size", type=int, default=KiB)
            q.add_argument("--timeout", type=float, default=60.0)
    args = p.parse_args(argv)
    if args.mode == "client" and args.write_size is None:
        args.write_size = KiB if args.scenario == "frames" else 64 * KiB
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from geventp2p.tuning import tune_malloc

    tune_malloc()  # as the geventp2p CLI does (geventp2p.tuning)
    if args.mode == "serve":
        return serve(args)
    return client(args)


if __name__ == "__main__":
    sys.exit(main())
