"""Server memory per connection: N idle Noise+yamux connections (issue #10).

    python -m bench.conns [--conns 1000] [--server geventp2p|geventp2p-pure|js] [--reps 3]
                          [--idle 10] [--echo-size 1024] [--concurrency 64] [--json]

One server process (``geventp2p serve`` through :mod:`bench._conns_serve`, which adds a
stats dump on SIGUSR1, or the js-libp2p peer of the interop harness) and ONE client
process holding N geventp2p hosts, each with one connection to the server.  Phases:

1. warm-up: one host connects, echoes once and leaves (lazy imports and first-use
   caches of the server are loaded); then the server's **baseline** RSS is read;
2. the N hosts connect (``--concurrency`` dials at a time), each opens one
   ``/echo/1.0.0`` stream, echoes ``--echo-size`` bytes and closes the stream;
   connections per second = N / wall time of this phase;
3. server figures **after echo**, then again **after idle** (``--idle`` seconds
   later, no stream open; identify has run on every connection by then).

Reported per run: RSS per connection ``(RSS - baseline) / N`` after echo and after
idle (KiB), the connections the server still holds (geventp2p: its count; js: socket
fds) and the RSS per held connection, server fds and greenlets (geventp2p only),
connections/s and failures.  With ``--reps`` > 1 each figure is the median with min and max.  RSS comes
from ``/proc/<pid>/status`` (VmRSS), fds from ``/proc/<pid>/fd``.  RLIMIT_NOFILE is
raised for both processes (N + 256 descriptors are needed on each side).

The client is a separate process of this module (``--client``), driven by lines on its
stdin; it prints JSON lines.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
HARNESS_DIR = ROOT / "tests" / "interop"
LIMITS_FILE = ROOT / "bench" / "limits-many-conns.json"
KiB = 1024
ECHO = "/echo/1.0.0"
SERVERS = ("geventp2p", "geventp2p-pure", "js")


def log(msg: str) -> None:
    print(f"[conns {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def raise_nofile(need: int) -> int:
    """Raise the soft RLIMIT_NOFILE towards ``need`` (up to the hard limit); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = need if hard == resource.RLIM_INFINITY else min(need, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        soft = want
    return soft


# ----------------------------------------------------------------------------- client process


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def client_main(args: argparse.Namespace) -> int:
    import gevent
    import gevent.socket
    from gevent.pool import Pool

    from geventp2p import new_host
    from geventp2p.core import addr as _addr
    from geventp2p.core.peer import PeerId, PeerInfo

    raise_nofile(args.conns + 256)
    transport, pid_text = _addr.split_p2p(args.target)
    if pid_text is None or transport is None:
        raise SystemExit(f"--target {args.target} needs a transport address and /p2p/<id>")
    info = PeerInfo(PeerId.from_string(pid_text), [transport])
    payload = os.urandom(args.echo_size)
    timeout = args.timeout

    def one(host: Any) -> None:
        host.connect(info, timeout=timeout)
        s = host.new_stream(info.peer_id, [ECHO], timeout=timeout)
        try:
            s.set_deadline(time.monotonic() + timeout)
            s.write(payload)
            s.close_write()
            got = bytearray()
            while True:
                chunk = s.read(64 * KiB)
                if not chunk:
                    break
                got += chunk
            if got != payload:
                raise RuntimeError(f"echo: sent {len(payload)} bytes, got {len(got)} different ones back")
        except BaseException:
            s.reset()
            raise
        s.close()

    def make_host() -> Any:
        return new_host(listen=[], security=["noise"], muxers=["yamux"], services=["identify"], connmgr=None)

    stdin_fd = sys.stdin.fileno()

    def wait_line() -> str:
        buf = b""
        while not buf.endswith(b"\n"):
            gevent.socket.wait_read(stdin_fd)
            chunk = os.read(stdin_fd, 256)
            if not chunk:
                return ""
            buf += chunk
        return buf.decode().strip()

    # 1. warm-up
    warm = make_host()
    try:
        one(warm)
    finally:
        warm.close()
    _emit({"phase": "warm"})
    if wait_line() != "go":
        return 0
    # 2. N hosts, one connection each
    hosts: list[Any] = []
    failures: list[str] = []

    def task(i: int) -> None:
        try:
            h = make_host()
        except Exception as exc:  # noqa: BLE001 - counted as a failure
            failures.append(f"host: {exc!r}")
            return
        hosts.append(h)
        try:
            one(h)
        except Exception as exc:  # noqa: BLE001 - counted as a failure
            failures.append(f"{type(exc).__name__}: {exc}"[:300])

    t0 = time.perf_counter()
    pool = Pool(args.concurrency)
    for i in range(args.conns):
        pool.spawn(task, i)
    pool.join()
    dt = time.perf_counter() - t0
    ok = args.conns - len(failures)
    _emit({"phase": "echoed", "seconds": dt, "conns_per_s": args.conns / dt if dt > 0 else 0.0,
           "ok": ok, "failures": len(failures), "errors": sorted(set(failures))[:5],
           "client_rss": _rss(os.getpid())})
    wait_line()  # "close" or EOF: leave without a slow orderly teardown of N hosts
    sys.stdout.flush()
    os._exit(0)


# ----------------------------------------------------------------------------- orchestrator


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _harness() -> Any:
    if str(HARNESS_DIR) not in sys.path:
        sys.path.insert(0, str(HARNESS_DIR))
    import interop_harness  # type: ignore[import-not-found]  # noqa: PLC0415

    return interop_harness


def _serve_help() -> str:
    p = subprocess.run([sys.executable, "-m", "geventp2p.cli", "serve", "--help"], cwd=ROOT,
                       capture_output=True, timeout=60)
    return p.stdout.decode() if p.returncode == 0 else ""


def server_argv(kind: str) -> list[str]:
    argv = [sys.executable, "-m", "bench._conns_serve", "serve", "--listen", "/ip4/127.0.0.1/tcp/0",
            "--security", "noise", "--muxer", "yamux"]
    if "--limits" in _serve_help() and LIMITS_FILE.exists():
        argv += ["--limits", str(LIMITS_FILE)]
    return argv


def _env(kind: str, conns: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEVENTP2P_") or k.startswith("GEVENTP2P_BENCH")
           or k == "GEVENTP2P_INTEROP_CACHE"}
    if kind == "geventp2p-pure":
        env["GEVENTP2P_PURE_PYTHON"] = "1"
    env["GEVENTP2P_BENCH_CONNMGR_HIGH"] = str(conns + 64)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


class Server:
    """The server process and how to read its figures."""

    def __init__(self, kind: str, conns: int) -> None:
        ih = _harness()
        self.kind = kind
        self._tmp: Optional[tempfile.TemporaryDirectory[str]] = None
        if kind == "js":
            # this tree's peer.mjs (--max-connections) beside the harness's installed
            # node_modules: the harness's cached copy is shared by every checkout
            installed = Path(ih.ensure_js_peer())
            self._tmp = tempfile.TemporaryDirectory(prefix="geventp2p-conns-js-")
            script = Path(self._tmp.name) / "peer.mjs"
            shutil.copyfile(HARNESS_DIR / "peers" / "js" / "peer.mjs", script)
            os.symlink(installed.parent / "node_modules", Path(self._tmp.name) / "node_modules")
            argv = [shutil.which("node") or "node", str(script), "--listen", "/ip4/127.0.0.1/tcp/0",
                    "--muxer", "yamux", "--max-connections", str(conns + 64)]
            self.peer = ih.PeerProcess("js", argv)
            self.peer.wait_ready(60)
        else:
            self.peer = ih.PeerProcess(kind, server_argv(kind), _env(kind, conns))
            self.peer.wait_ready(60)
        self.pid: int = self.peer.pid
        self.addr: str = self.peer.addr

    def stats(self, timeout: float = 120.0) -> dict[str, Any]:
        """RSS (and fds, greenlets for geventp2p) of the server now."""
        if self.kind == "js":
            return {"rss": _rss(self.pid), "fds": _fds(self.pid)}
        before = len(self.peer.extra_stdout())
        os.kill(self.pid, signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = self.peer.extra_stdout()
            for line in lines[before:]:
                if line.startswith('{"stats"'):
                    st: dict[str, Any] = json.loads(line)["stats"]
                    return st
            time.sleep(0.05)
        raise RuntimeError(f"server printed no stats within {timeout:.0f}s:\n{self.peer.stderr_tail()}")

    def stop(self) -> None:
        if self.peer.alive():
            try:
                self.peer.proc.send_signal(signal.SIGTERM)
            except OSError:
                pass
        self.peer.stop()
        if self._tmp is not None:
            self._tmp.cleanup()


def _read_json(proc: subprocess.Popen, timeout: float) -> dict[str, Any]:
    import selectors

    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise RuntimeError(f"client printed nothing within {timeout:.0f}s")
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"client exited ({proc.wait()}) early")
            text = line.decode().strip()
            if text.startswith("{"):
                obj: dict[str, Any] = json.loads(text)
                return obj
    finally:
        sel.close()


def one_run(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    n = args.conns
    rec: dict[str, Any] = {"server": kind, "conns": n}
    server = Server(kind, n)
    client: Optional[subprocess.Popen] = None
    try:
        cenv = _env("geventp2p", n)
        cenv.pop("GEVENTP2P_BENCH_TRACEMALLOC", None)
        client = subprocess.Popen(
            [sys.executable, "-m", "bench.conns", "--client", "--target", server.addr, "--conns", str(n),
             "--echo-size", str(args.echo_size), "--concurrency", str(args.concurrency),
             "--timeout", str(args.timeout)],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=cenv,
        )
        assert client.stdin is not None
        _read_json(client, 120)  # warm
        time.sleep(args.settle)
        base = server.stats()
        rec["baseline_rss"] = base["rss"]
        client.stdin.write(b"go\n")
        client.stdin.flush()
        res = _read_json(client, args.timeout * 4 + n * 0.1)
        rec.update({k: res[k] for k in ("seconds", "conns_per_s", "ok", "failures", "errors", "client_rss")})
        time.sleep(args.settle)
        echo = server.stats()
        t_echo = time.monotonic()
        time.sleep(max(0.0, args.idle - (time.monotonic() - t_echo)))
        idle = server.stats()
        for name, st in (("echo", echo), ("idle", idle)):
            rec[f"rss_{name}"] = st["rss"]
            rec[f"kib_per_conn_{name}"] = (st["rss"] - base["rss"]) / n / KiB
            rec[f"fds_{name}"] = st["fds"]
            if "greenlets" in st:
                rec[f"greenlets_{name}"] = st["greenlets"]
                rec[f"greenlets_per_conn_{name}"] = (st["greenlets"] - base["greenlets"]) / n
            if "conns" in st:
                rec[f"server_conns_{name}"] = st["conns"]
            for key in ("malloc_used", "malloc_free"):  # the C heap (glibc), arenas apart
                if key in st and key in base:
                    rec[f"{key}_kib_per_conn_{name}"] = (st[key] - base[key]) / n / KiB
            if "pooled" in st:  # free receive buffers the server's pool keeps (part of the RSS)
                rec[f"pooled_kib_per_conn_{name}"] = st["pooled"] / n / KiB
            # connections the server still holds (js: its socket fds); a server that
            # dropped some has a lower RSS per N than per connection it holds
            held = st["conns"] if st.get("conns", -1) >= 0 else st["fds"] - base["fds"]
            rec[f"open_conns_{name}"] = held
            rec[f"kib_per_open_conn_{name}"] = (st["rss"] - base["rss"]) / max(1, held) / KiB
            if "traced" in st:
                rec[f"traced_kib_per_conn_{name}"] = (st["traced"] - base["traced"]) / n / KiB
            if "gc_collected" in st:
                rec[f"gc_collected_{name}"] = st["gc_collected"]
        rec["baseline_fds"] = base["fds"]
        if "greenlets" in base:
            rec["baseline_greenlets"] = base["greenlets"]
        rec["ok_run"] = server.peer.alive()
    except Exception as exc:  # noqa: BLE001 - reported
        rec["ok_run"] = False
        rec["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        rec["server_stderr"] = server.peer.stderr_tail(2000)
    finally:
        if client is not None:
            try:
                if client.stdin:
                    client.stdin.close()
                client.wait(30)
            except (OSError, subprocess.TimeoutExpired):
                client.kill()
                client.wait()
        server.stop()
    return rec


FIGURES = (
    ("kib_per_conn_echo", "KiB/conn after echo"),
    ("kib_per_conn_idle", "KiB/conn after idle"),
    ("open_conns_idle", "connections open on the server (idle)"),
    ("kib_per_open_conn_idle", "KiB per open connection (idle)"),
    ("conns_per_s", "conns/s"),
    ("failures", "failures"),
    ("fds_idle", "server fds (idle)"),
    ("greenlets_idle", "server greenlets (idle)"),
    ("greenlets_per_conn_idle", "greenlets/conn (idle)"),
)


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, _label in FIGURES:
        vals = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
        if vals:
            out[key] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}
    return out


def _fmt(s: Optional[dict[str, Any]]) -> str:
    if not s:
        return "-"

    def f(v: float) -> str:
        return f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}"

    txt = f(s["median"])
    if s["n"] > 1:
        txt += f" ({f(s['min'])}–{f(s['max'])})"
    return txt


def run(servers: list[str], args: argparse.Namespace) -> dict[str, Any]:
    raise_nofile(args.conns + 256)
    runs: list[dict[str, Any]] = []
    for rep in range(args.reps):
        for kind in servers:
            log(f"{kind}: {args.conns} connections, run {rep + 1}/{args.reps}")
            rec = run_one_logged(kind, args)
            runs.append(rec)
    summary = {k: summarize([r for r in runs if r["server"] == k]) for k in servers}
    return {"conns": args.conns, "idle": args.idle, "echo_size": args.echo_size, "reps": args.reps,
            "runs": runs, "summary": summary}


def run_one_logged(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    rec = one_run(kind, args)
    if rec.get("error"):
        log(f"  failed: {rec['error'][:300]}")
    else:
        log(f"  {rec.get('kib_per_conn_echo', 0):.1f} KiB/conn after echo, "
            f"{rec.get('kib_per_conn_idle', 0):.1f} after idle, {rec.get('conns_per_s', 0):.0f} conns/s, "
            f"{rec.get('failures')} failures")
    return rec


def table(result: dict[str, Any]) -> str:
    servers = list(result["summary"])
    lines = [f"{result['conns']} connections, {result['echo_size']} B echo each, idle {result['idle']:.0f} s, "
             f"median of {result['reps']} (min–max)",
             "| figure | " + " | ".join(servers) + " |", "|---|" + "---|" * len(servers)]
    for key, label in FIGURES:
        lines.append(f"| {label} | " + " | ".join(_fmt(result["summary"][s].get(key)) for s in servers) + " |")
    return "\n".join(lines)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.conns", description=__doc__.split("\n\n")[0])
    p.add_argument("--conns", type=int, default=1000, help="connections (default 1000)")
    p.add_argument("--server", default="geventp2p",
                   help=f"comma-separated servers among {', '.join(SERVERS)} (default geventp2p)")
    p.add_argument("--reps", type=int, default=1, help="runs per server (default 1)")
    p.add_argument("--idle", type=float, default=10.0, help="seconds idle before the last reading (default 10)")
    p.add_argument("--echo-size", type=int, default=KiB, help="bytes echoed per connection (default 1024)")
    p.add_argument("--concurrency", type=int, default=64, help="dials at a time (default 64)")
    p.add_argument("--settle", type=float, default=1.0, help="seconds before a reading (default 1)")
    p.add_argument("--timeout", type=float, default=60.0, help="per connect/echo timeout (default 60)")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    p.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--target", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.conns < 1:
        p.error("--conns must be >= 1")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    if args.client:
        return client_main(args)
    servers = [s.strip() for s in args.server.split(",") if s.strip()]
    for s in servers:
        if s not in SERVERS:
            raise SystemExit(f"unknown server {s!r} (expected {', '.join(SERVERS)})")
    result = run(servers, args)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(table(result))
    failed = [r for r in result["runs"] if not r.get("ok_run") or r.get("failures")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
