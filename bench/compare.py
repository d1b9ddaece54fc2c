"""Compare geventp2p with js-libp2p and py-libp2p servers, and its two builds (issue #5).

    python -m bench.compare [--quick] [--reps N] [--impls geventp2p,geventp2p-pure,js,py]
                            [--cases a,b,...] [--out bench/results] [--no-charts] [--ref-dialers]
                            [--pin off|split] [--many-conns N]

Every run starts a fresh server process of one implementation (geventp2p via
``geventp2p serve`` when the CLI has it, else ``bench/driver.py serve``; js/py via the
interop harness) and one client process, always geventp2p (``bench/driver.py client``;
build chosen by environment), then stops both.  Runs alternate between
implementations (``for rep: for case: for impl``, impl order rotated each rep) so drift
hits all alike; each figure is the median of ``--reps`` runs with min and max.
``geventp2p`` = compiled build for client and server; ``geventp2p-pure`` =
``GEVENTP2P_PURE_PYTHON=1`` for both.  Server RSS is sampled (psutil, 10 ms) while the
client runs; the client reports its own lifetime peak RSS.  With ``--pin split`` (2+
CPUs) clients run on the first CPU and servers on the last, for every implementation
and for the raw-socket ceiling alike (see ``pin_sets``); the default leaves placement
to the kernel.

Writes ``<out>/compare-<UTC date-time>.json`` (every run + summary + ceilings),
``.md`` (the table) and, with matplotlib (the ``bench`` extra), one PNG per case.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
DRIVER = BENCH / "driver.py"
HARNESS_DIR = ROOT / "tests" / "interop"
KiB = 1024
MiB = 1024 * 1024

GP, GP_PURE, JS, PY = "geventp2p", "geventp2p-pure", "js", "py"
IMPLS = (GP, GP_PURE, JS, PY)
REF_DIALERS = ("js->js", "py->py")
OWN_SECURITY = {GP: ("noise", "tls", "plaintext"), GP_PURE: ("noise", "tls", "plaintext"), JS: ("noise", "tls"),
                PY: ("noise", "tls")}
#: transport -> server listen address
LISTEN = {"tcp": "/ip4/127.0.0.1/tcp/0", "ws": "/ip4/127.0.0.1/tcp/0/ws", "quic": "/ip4/127.0.0.1/udp/0/quic-v1"}


def log(msg: str) -> None:
    print(f"[compare {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- cases


@dataclass
class Metric:
    key: str  # in the client's JSON result (or server_peak_rss)
    label: str
    unit: str
    higher_is_better: bool
    scale: float = 1.0  # divide raw value by this for display (RSS bytes -> MiB)


@dataclass
class Case:
    name: str
    title: str
    scenario: str  # driver scenario
    security: str = "noise"
    muxer: str = "yamux"
    # key of LISTEN: "tcp", "ws" (WebSocket over TCP) or "quic" (QUIC v1: TLS 1.3 and QUIC's own
    # streams; ``security``/``muxer`` then only fill the processes' required flags)
    transport: str = "tcp"
    args: dict[str, Any] = field(default_factory=dict)
    metrics: list[Metric] = field(default_factory=list)
    impls: tuple[str, ...] = IMPLS
    max_streams: int | None = None
    timeout: float = 60.0
    sample_rss: bool = False
    ref: str | None = None  # reference-dialer scenario of the peers' own CLI


MIB_S = Metric("mib_s", "throughput", "MiB/s", True)
RSS_SERVER = Metric("server_peak_rss", "server peak RSS", "MiB", False, MiB)
RSS_CLIENT = Metric("peak_rss", "client peak RSS", "MiB", False, MiB)


#: (client CPUs, server CPUs) with --pin split, else None; set by main().
PIN: tuple[frozenset, frozenset] | None = None


def pin_sets(mode: str) -> tuple[frozenset, frozenset] | None:
    """``split``: client and server CPU sets, the lowest and the highest CPU this process
    may use (None for ``off`` or a single CPU).

    On a 2-core machine the kernel's wake-up placement sometimes runs both ends of a
    loopback benchmark on one core, which halves throughput for that run (every
    implementation and the raw socket alike).  Pinning them apart removes that mode.
    A server's helper threads (Node's GC and libuv pool) share the server's core."""
    if mode == "off" or not hasattr(os, "sched_getaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    return frozenset({cpus[0]}), frozenset({cpus[-1]})


@contextlib.contextmanager
def _spawning_on(cpus):
    """Processes started inside run on ``cpus`` (affinity is inherited at fork)."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def build_cases(quick: bool) -> list[Case]:
    perf_bytes = 2 * MiB if quick else 64 * MiB  # quick stays under the 4 MiB mplex stream buffer cap
    frames_bytes = 1 * MiB if quick else 64 * MiB
    rounds = 20 if quick else 500
    conns = 5 if quick else 50
    ns = (50, 200) if quick else (1000, 5000, 10000)
    cases: list[Case] = []
    tmo = 15.0 if quick else 60.0
    for direction in ("up", "down"):
        for tr, sec, mux in (("tcp", "noise", "yamux"), ("tcp", "noise", "mplex"), ("tcp", "plaintext", "yamux"),
                             ("tcp", "tls", "yamux"), ("ws", "noise", "yamux")):
            pre = "ws-" if tr == "ws" else ""
            cases.append(Case(
                name=f"perf-{direction}-{pre}{sec}-{mux}",
                title=f"a. perf {direction}load {perf_bytes // MiB} MiB, {pre.replace('-', '+')}{sec}+{mux}",
                scenario=f"perf-{direction}", security=sec, muxer=mux, transport=tr,
                args={"bytes": perf_bytes}, metrics=[MIB_S], ref="perf" if sec != "plaintext" else None,
                timeout=tmo,
            ))
        cases.append(Case(
            name=f"perf-{direction}-quic", title=f"a. perf {direction}load {perf_bytes // MiB} MiB, quic-v1",
            scenario=f"perf-{direction}", security="tls", transport="quic", args={"bytes": perf_bytes},
            metrics=[MIB_S], ref="perf", timeout=tmo,
        ))
    cases.append(Case(
        name="echo-rounds", title=f"b. {rounds} sequential open+echo 1 KiB", scenario="echo-rounds",
        args={"count": rounds, "size": KiB}, timeout=tmo,
        metrics=[Metric("streams_per_s", "streams/s", "1/s", True), Metric("p50_ms", "p50", "ms", False),
                 Metric("p99_ms", "p99", "ms", False)],
    ))
    for n in ns:
        cases.append(Case(
            name=f"concurrent-{n}", title=f"c/e. {n} concurrent streams x 16 KiB echo", scenario="concurrent",
            args={"count": n, "size": 16 * KiB}, max_streams=n + 64, timeout=2 * tmo, sample_rss=True,
            metrics=[Metric("seconds", "wall", "s", False), Metric("failures", "failures", "", False),
                     RSS_SERVER, RSS_CLIENT],
            ref="streams",
        ))
    cases.append(Case(
        name="connections", title=f"d. {conns} fresh connections (noise+yamux)", scenario="connections",
        args={"count": conns}, timeout=tmo, metrics=[Metric("ms_per_conn", "per connection", "ms", False)],
    ))
    for tr, sec in (("tcp", "tls"), ("ws", "noise")):
        pre = "ws-" if tr == "ws" else ""
        cases.append(Case(
            name=f"connections-{pre}{sec}-yamux", title=f"d. {conns} fresh connections ({pre.replace('-', '+')}{sec}+yamux)",
            scenario="connections", security=sec, transport=tr, args={"count": conns}, timeout=tmo,
            metrics=[Metric("ms_per_conn", "per connection", "ms", False)],
        ))
    cases.append(Case(
        name="connections-quic", title=f"d. {conns} fresh connections (quic-v1)", scenario="connections",
        security="tls", transport="quic", args={"count": conns}, timeout=tmo,
        metrics=[Metric("ms_per_conn", "per connection", "ms", False)],
    ))
    cases.append(Case(
        name="frames", title=f"f. 1 KiB writes on one stream ({frames_bytes // MiB} MiB, perf upload)",
        scenario="frames", args={"bytes": frames_bytes, "write-size": KiB}, impls=(GP, GP_PURE), timeout=tmo,
        metrics=[Metric("writes_per_s", "1 KiB writes/s", "1/s", True), MIB_S],
    ))
    return cases


# (case, metric) -> (op, value, note); "ceil" values are resolved against the ceilings
TARGETS: dict[tuple[str, str], tuple[str, float, str]] = {
    ("perf-up-noise-yamux", "mib_s"): (">=", 600, "js 260, py 162 earlier"),
    ("perf-up-plaintext-yamux", "mib_s"): (">=raw", 0.5, "50% of raw gevent socket"),
    ("perf-up-tls-yamux", "mib_s"): (">=js", 2.0, "2x js's TLS+yamux in the same run"),
    ("perf-up-quic", "mib_s"): (">=js", 1.5, "1.5x js's QUIC in the same run"),
    ("connections-quic", "ms_per_conn"): ("<=js", 1.0, "js's QUIC in the same run"),
    ("echo-rounds", "streams_per_s"): (">=", 2000, "js 667, py 430"),
    ("echo-rounds", "p99_ms"): ("<=", 2.0, "js 5.3, py 4.6"),
    ("concurrent-1000", "seconds"): ("<=", 0.4, "js 1.19, py 1.71"),
    ("concurrent-10000", "seconds"): ("<=", 4.0, "py 18.8; js 6.2 at 5k"),
    ("concurrent-10000", "failures"): ("<=", 0, "no failures"),
    ("concurrent-1000", "server_peak_rss"): ("<=", 90 * MiB, "js 162, py 99"),
    ("concurrent-1000", "peak_rss"): ("<=", 90 * MiB, ""),
    ("connections", "ms_per_conn"): ("<=", 3.0, "js 8.0, py 6.5"),
    ("frames", "writes_per_s"): ("speedup>=", 1.5, "compiled / pure"),
}


# ----------------------------------------------------------------------------- processes


def _harness():
    if str(HARNESS_DIR) not in sys.path:
        sys.path.insert(0, str(HARNESS_DIR))
    import interop_harness  # noqa: PLC0415

    return interop_harness


def _impl_env(impl: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEVENTP2P_")}
    if impl == GP_PURE:
        env["GEVENTP2P_PURE_PYTHON"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


_cli_serve: dict[str, Any] = {}


def cli_serve_flags() -> str | None:
    """Help text of ``geventp2p serve`` if the CLI has it (cached), else None."""
    if "help" not in _cli_serve:
        try:
            p = subprocess.run([sys.executable, "-m", "geventp2p.cli", "serve", "--help"], cwd=ROOT,
                               capture_output=True, timeout=60, env=_impl_env(GP))
            _cli_serve["help"] = p.stdout.decode() if p.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired):
            _cli_serve["help"] = None
    return _cli_serve["help"]


def gp_server_argv(case: Case, mode: str) -> list[str]:
    """``geventp2p serve`` argv, or ``bench/driver.py serve`` when the CLI is missing, not
    wanted, or (in auto mode) cannot raise the muxer's inbound stream limit for the case."""
    help_text = cli_serve_flags() if mode in ("auto", "cli") else None
    if mode == "cli" and help_text is None:
        raise SystemExit("geventp2p serve is not available (use --gp-server driver)")
    if mode == "auto" and help_text is not None and case.max_streams and case.max_streams > 1000 \
            and "--max-streams" not in help_text:
        help_text = None  # default limits (yamux 1000 inbound) would reset the extra streams
    if help_text is not None:
        argv = [sys.executable, "-m", "geventp2p.cli", "serve", "--listen", LISTEN[case.transport],
                "--security", case.security, "--muxer", case.muxer]
        if "--max-streams" in help_text and case.max_streams:
            argv += ["--max-streams", str(case.max_streams)]
        for flag in ("--echo", "--perf", "--enable-echo", "--enable-perf"):
            if flag in help_text:
                argv.append(flag)
        return argv
    argv = [sys.executable, str(DRIVER), "serve", "--security", case.security, "--muxer", case.muxer,
            "--listen", LISTEN[case.transport]]
    if case.max_streams:
        argv += ["--max-streams", str(case.max_streams)]
    return argv


def peer_extra(case: Case) -> list[str]:
    """js/py peer flags for ``case`` besides the listen address and muxer."""
    extra = ["--max-streams", str(case.max_streams)] if case.max_streams else []
    if case.security != "noise" and case.transport != "quic":  # QUIC has its own TLS
        extra += ["--security", case.security]
    return extra


def start_server(impl: str, case: Case, gp_mode: str):
    ih = _harness()
    with _spawning_on(PIN[1] if PIN else None):
        if impl in (GP, GP_PURE):
            peer = ih.PeerProcess(impl, gp_server_argv(case, gp_mode), _impl_env(impl))
        else:
            return ih.start_peer(impl, muxer=case.muxer, listen=LISTEN[case.transport], extra_args=peer_extra(case),
                                 timeout=60)
    peer.wait_ready(60)
    return peer


class RssSampler(threading.Thread):
    """Peak RSS of one pid, sampled every ``interval`` seconds until stop()."""

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        super().__init__(daemon=True, name=f"rss-{pid}")
        import psutil

        self.proc = psutil.Process(pid)
        self.interval = interval
        self.before = self._rss()
        self.peak = self.before
        self._halt = threading.Event()

    def _rss(self) -> int:
        try:
            return self.proc.memory_info().rss
        except Exception:  # process gone
            return 0

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            self.peak = max(self.peak, self._rss())

    def stop(self) -> int:
        self._halt.set()
        self.join(2)
        self.peak = max(self.peak, self._rss())
        return self.peak


def run_client(impl: str, case: Case, target: str) -> dict[str, Any]:
    argv = [sys.executable, str(DRIVER), "client", "--target", target, "--scenario", case.scenario,
            "--security", case.security, "--muxer", case.muxer, "--timeout", str(case.timeout)]
    for k, v in case.args.items():
        argv += [f"--{k}", str(v)]
    try:
        cpus = PIN[0] if PIN else None
        p = subprocess.run(argv, capture_output=True, timeout=case.timeout * 3 + 60, env=_impl_env(impl),
                           stdin=subprocess.DEVNULL,
                           preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
    except subprocess.TimeoutExpired as exc:
        return {"ok": False, "error": f"client hung past {exc.timeout:.0f}s"}
    for line in reversed(p.stdout.decode("utf-8", "replace").splitlines()):
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                res = json.loads(line)
                if res.get("ok") is False and "error" in res:
                    res["stderr"] = p.stderr.decode("utf-8", "replace")[-1500:]
                return res
    return {"ok": False, "error": f"client exit {p.returncode}, no JSON",
            "stderr": p.stderr.decode("utf-8", "replace")[-2000:]}


def one_run(impl: str, case: Case, gp_mode: str) -> dict[str, Any]:
    t0 = time.monotonic()
    rec: dict[str, Any] = {"case": case.name, "impl": impl}
    try:
        server = start_server(impl, case, gp_mode)
    except Exception as exc:
        rec.update(ok=False, error=f"server start: {type(exc).__name__}: {str(exc)[:1500]}")
        return rec
    try:
        rec["server_build"] = server.info.get("build") or server.info.get("impl")
        rec["server_cmd"] = "driver" if str(DRIVER) in server.argv else server.argv[0] if impl in (JS, PY) else "cli"
        sampler = RssSampler(server.pid) if case.sample_rss else None
        if sampler:
            sampler.start()
        res = run_client(impl, case, server.addr)
        if sampler:
            res["server_peak_rss"] = sampler.stop()
            res["server_rss_before"] = sampler.before
        if not server.alive():
            res["ok"] = False
            res.setdefault("error", "server died during the run")
        if not res.get("ok"):
            res["server_stderr"] = server.stderr_tail(3000)
        rec.update({k: v for k, v in res.items() if k not in ("impl", "case")})
    finally:
        if impl in (GP, GP_PURE) and server.alive():
            with contextlib.suppress(OSError):
                server.proc.send_signal(signal.SIGTERM)  # `geventp2p serve` stops on signals only
        server.stop()
    rec["wall"] = time.monotonic() - t0
    return rec


def ref_run(kind: str, case: Case) -> dict[str, Any]:
    """The peer's own dialer against its own server (an extra reference point)."""
    ih = _harness()
    impl = kind.split("->")[0]
    rec: dict[str, Any] = {"case": case.name, "impl": kind}
    extra = peer_extra(case)
    sec_args = ["--security", case.security] if case.security != "noise" and case.transport != "quic" else []
    try:
        with ih.start_peer(impl, muxer=case.muxer, listen=LISTEN[case.transport], extra_args=extra,
                           timeout=60) as server:
            if case.ref == "perf":
                n = case.args["bytes"]
                up, down = (n, 0) if case.scenario == "perf-up" else (0, n)
                res = ih.run_dialer(impl, server.addr, "perf", muxer=case.muxer, timeout=case.timeout,
                                    extra_args=["--upload", str(up), "--download", str(down), *sec_args])
                if res.get("ok"):
                    res["mib_s"] = n / MiB / res["timeSeconds"]
            else:
                res = ih.run_dialer(impl, server.addr, "streams", muxer=case.muxer, timeout=case.timeout,
                                    count=case.args["count"], bytes=case.args["size"], extra_args=extra)
            rec.update({k: v for k, v in res.items() if k != "impl"})
            rec["peer_impl"] = res.get("impl")
    except Exception as exc:
        rec.update(ok=False, error=f"{type(exc).__name__}: {str(exc)[:1500]}")
    return rec


# ----------------------------------------------------------------------------- summary


def summarize(runs: list[dict], cases: list[Case]) -> dict:
    out: dict[str, dict] = {}
    for case in cases:
        per_impl: dict[str, dict] = {}
        for impl in [*IMPLS, *REF_DIALERS]:
            rs = [r for r in runs if r["case"] == case.name and r["impl"] == impl]
            if not rs:
                continue
            ok = [r for r in rs if r.get("ok")]
            entry: dict[str, Any] = {"runs": len(rs), "ok_runs": len(ok),
                                     "errors": sorted({str(r.get("error"))[:300] for r in rs if not r.get("ok")})}
            for m in case.metrics:
                # failures/RSS of failed runs still count (they are what failed)
                pool = rs if m.key in ("failures", "seconds", "server_peak_rss", "peak_rss") else ok
                vals = [r[m.key] for r in pool if isinstance(r.get(m.key), (int, float))]
                if vals:
                    entry[m.key] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals),
                                    "n": len(vals)}
            per_impl[impl] = entry
        out[case.name] = per_impl
    return out


def _fmt(v: float | None, m: Metric) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    v = v / m.scale
    if m.key == "failures":
        return f"{v:.0f}"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def _cell(summary: dict, case: Case, impl: str, m: Metric, reps: int) -> str:
    e = summary.get(case.name, {}).get(impl)
    if e is None:
        return "n/a"
    s = e.get(m.key)
    if s is None:
        return f"FAIL ({e['runs'] - e['ok_runs']}/{e['runs']})"
    txt = _fmt(s["median"], m)
    if s["n"] > 1:
        txt += f" ({_fmt(s['min'], m)}–{_fmt(s['max'], m)})"
    if e["ok_runs"] < e["runs"] and m.key not in ("failures",):
        txt += f" ⚠{e['runs'] - e['ok_runs']} failed"
    return txt


def _median(summary, case, impl, key) -> float | None:
    s = summary.get(case.name, {}).get(impl, {}).get(key)
    return None if s is None else s["median"]


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}"


def target_text(case: Case, m: Metric, ceilings: dict, summary: dict) -> str:
    t = TARGETS.get((case.name, m.key))
    if t is None:
        return ""
    op, val, note = t
    gp = _median(summary, case, GP, m.key)
    if op == ">=raw":
        raw = ceilings.get("raw_socket_mib_s")
        goal = val * raw if raw else None
        txt = f">= {val:.0%} raw" + (f" ({goal:.0f})" if goal else "")
        ok = None if gp is None or goal is None else gp >= goal
    elif op == "speedup>=":
        pure = _median(summary, case, GP_PURE, m.key)
        txt = f"x{val} vs pure"
        ok = None if gp is None or not pure else gp / pure >= val
    elif op == ">=js":
        js = _median(summary, case, JS, m.key)
        txt = f">= {val:g}x js"
        ok = None if gp is None or not js else gp / js >= val
    elif op == "<=js":
        js = _median(summary, case, JS, m.key)
        txt = "<= js" if val == 1 else f"<= {val:g}x js"
        ok = None if gp is None or not js else gp <= val * js
    else:
        txt = f"{op} {_fmt(val, m)}"
        ok = None if gp is None else (gp >= val if op == ">=" else gp <= val)
    mark = "" if ok is None else (" ✅" if ok else " ❌")
    return txt + mark + (f" ({note})" if note else "")


def markdown(result: dict, cases: list[Case]) -> str:
    summary, ceil, meta = result["summary"], result["ceilings"], result["meta"]
    reps = meta["reps"]
    refs = [k for k in REF_DIALERS if any(k in summary.get(c.name, {}) for c in cases)]
    lines = [
        f"# geventp2p vs js-libp2p {meta['versions'].get('js', '?')} vs py-libp2p "
        f"{meta['versions'].get('py', '?')} ({meta['date']})",
        "",
        f"Host: {meta['host']['cpus']} CPUs, {meta['host']['platform']}, Python {meta['host']['python']}; "
        f"load average at start {meta['load_start']}, at end {meta['load_end']}. "
        f"Client: geventp2p (`bench/driver.py`) for every server. Figures: median (min–max) of {reps} "
        f"run(s); ratio = geventp2p ÷ other (> 1 is better for rates, < 1 for times and RSS); "
        f"speed-up = compiled ÷ pure for rates, pure ÷ compiled for times. Wall time "
        f"{meta['wall_seconds']:.0f} s{' (--quick)' if meta['quick'] else ''}"
        + (f" ({meta['stopped_early']})" if meta.get("stopped_early") else "") + ". Builds seen: "
        + ", ".join(f"{k} = {'/'.join(v)}" for k, v in meta.get("builds", {}).items())
        + f". geventp2p server: {meta.get('gp_server')}"
        + (f" (`bench/driver.py serve` for {', '.join(meta['gp_server_driver_cases'])}: it raises the "
           f"muxer's inbound stream limit)" if meta.get("gp_server_driver_cases") and
           meta.get("gp_server") != "bench/driver.py serve" else "") + ". "
        + (f"CPU pinning: clients (and the raw-socket sender) on CPU {meta['pinned']['client_cpus']}, servers "
           f"(with all their threads) on CPU {meta['pinned']['server_cpus']}."
           if meta.get("pinned") else "CPU pinning: off (placement left to the kernel)."),
        "",
        "| case | metric | target | geventp2p | js | py | gp/js | gp/py | geventp2p-pure | speed-up |"
        + "".join(f" {k} |" for k in refs),
        "|---|---|---|---|---|---|---|---|---|---|" + "---|" * len(refs),
    ]
    if refs:
        lines[2] += (" Columns js->js / py->py: the peers' own dialers against their own servers (extra reference "
                     "points; their perf time includes dialing, their streams time opens the connection first).")
    for case in cases:
        for m in case.metrics:
            gp = _median(summary, case, GP, m.key)
            js = _median(summary, case, JS, m.key)
            py = _median(summary, case, PY, m.key)
            pure = _median(summary, case, GP_PURE, m.key)
            if m.key == "failures":
                speed = "-"
            elif m.higher_is_better:
                speed = _ratio(gp, pure)
            else:
                speed = _ratio(pure, gp)
            unit = f" ({m.unit})" if m.unit else ""
            row = (f"| {case.title} | {m.label}{unit} | {target_text(case, m, ceil, summary)} | "
                   f"{_cell(summary, case, GP, m, reps)} | {_cell(summary, case, JS, m, reps)} | "
                   f"{_cell(summary, case, PY, m, reps)} | {_ratio(gp, js) if m.key != 'failures' else '-'} | "
                   f"{_ratio(gp, py) if m.key != 'failures' else '-'} | {_cell(summary, case, GP_PURE, m, reps)} "
                   f"| {speed} |")
            row += "".join(f" {_cell(summary, case, k, m, reps)} |" for k in refs)
            lines.append(row)
    lines += ["", "## Ceilings", ""]
    if not ceil:
        lines.append("(not measured: --no-ceilings)")
    else:
        raw, cha, chb = ceil.get("raw_socket_mib_s"), ceil.get("chacha_mib_s"), ceil.get("chacha_backend_mib_s")
        lines.append(f"* raw gevent socket, loopback, 2 processes: **{raw:.0f} MiB/s** (best of 1 MiB sendall "
                     f"{ceil.get('raw_socket_1m_mib_s', 0):.0f}, 64 KiB sendall "
                     f"{ceil.get('raw_socket_64k_mib_s', 0):.0f})")
        lines.append(f"* ChaCha20-Poly1305 encrypt+decrypt, 65519-byte messages (cryptography): **{cha:.0f} MiB/s** "
                     f"(through geventp2p's backend wrapper: {chb:.0f} MiB/s)")
        lines.append("")
        lines.append("| geventp2p case | MiB/s | fraction of raw socket | fraction of ChaCha20-Poly1305 |")
        lines.append("|---|---|---|---|")
        for case in cases:
            if not case.name.startswith("perf-"):
                continue
            v = _median(summary, case, GP, "mib_s")
            if v is None:
                continue
            fc = f"{v / cha:.0%}" if case.security == "noise" and cha else "-"
            lines.append(f"| {case.title} | {v:.0f} | {v / raw:.0%} | {fc} |")
    failed = [(c.name, impl, e["errors"]) for c in cases for impl, e in summary.get(c.name, {}).items()
              if e["errors"]]
    if failed:
        lines += ["", "## Failed runs", ""]
        for name, impl, errs in failed:
            for err in errs[:3]:
                lines.append(f"* {name} / {impl}: {err.splitlines()[0][:300] if err else err}")
    return "\n".join(lines) + "\n"


def charts(result: dict, cases: list[Case], out: Path, stem: str) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("warning: matplotlib is not installed (pip install 'geventp2p[bench]'); no charts")
        return []
    files = []
    summary = result["summary"]
    colors = {GP: "#2a7ab9", GP_PURE: "#8fbfe0", JS: "#e0a526", PY: "#5b9e4d", "js->js": "#f3d48a",
              "py->py": "#a9d19f"}
    for case in cases:
        m = case.metrics[0]
        impls = [i for i in [*IMPLS, *REF_DIALERS] if m.key in summary.get(case.name, {}).get(i, {})]
        if not impls:
            continue
        med = [summary[case.name][i][m.key]["median"] / m.scale for i in impls]
        lo = [med[k] - summary[case.name][i][m.key]["min"] / m.scale for k, i in enumerate(impls)]
        hi = [summary[case.name][i][m.key]["max"] / m.scale - med[k] for k, i in enumerate(impls)]
        fig, ax = plt.subplots(figsize=(6, 3.6))
        ax.bar(impls, med, yerr=[lo, hi], capsize=4, color=[colors.get(i, "#999") for i in impls])
        t = TARGETS.get((case.name, m.key))
        ceil = result.get("ceilings") or {}
        if t and t[0] in ("<=", ">="):
            ax.axhline(t[1] / m.scale, color="#c33", linestyle="--", linewidth=1, label=f"target {t[0]} {t[1] / m.scale:g}")
        elif t and t[0] == ">=raw" and ceil.get("raw_socket_mib_s"):
            goal = t[1] * ceil["raw_socket_mib_s"]
            ax.axhline(goal, color="#c33", linestyle="--", linewidth=1, label=f"target {t[1]:.0%} of raw socket ({goal:.0f})")
        if case.scenario.startswith("perf") and ceil:
            key, what = (("chacha_mib_s", "ChaCha20-Poly1305 enc+dec") if case.security == "noise"
                         else ("raw_socket_mib_s", "raw gevent socket"))
            if ceil.get(key):
                ax.axhline(ceil[key], color="#555", linestyle=":", linewidth=1, label=f"ceiling: {what} ({ceil[key]:.0f})")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=7)
        ax.set_title(case.title, fontsize=9)
        ax.set_ylabel(f"{m.label} ({m.unit})" + ("  ↑ better" if m.higher_is_better else "  ↓ better"), fontsize=8)
        for k, v in enumerate(med):
            ax.annotate(_fmt(v * m.scale, m), (k, v), ha="center", va="bottom", fontsize=7,
                        xytext=(0, 2), textcoords="offset points")
        fig.tight_layout()
        path = out / f"{stem}-{case.name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        files.append(path.name)
    return files


# ----------------------------------------------------------------------------- main


def _versions() -> dict[str, str]:
    v: dict[str, str] = {}
    with contextlib.suppress(Exception):
        import geventp2p

        v["geventp2p"] = geventp2p.__version__
    with contextlib.suppress(Exception):
        pkg = json.loads((HARNESS_DIR / "peers" / "js" / "package.json").read_text())
        v["js"] = pkg["dependencies"]["libp2p"]
    with contextlib.suppress(Exception):
        for ln in (HARNESS_DIR / "peers" / "py" / "requirements.txt").read_text().splitlines():
            if ln.startswith("libp2p=="):
                v["py"] = ln.split("==", 1)[1].strip()
    return v


def _load() -> str:
    with contextlib.suppress(OSError):
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    return "?"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes, 1 rep: a smoke test, not a measurement")
    p.add_argument("--reps", type=int, default=None, help="runs per figure (default 5; 1 with --quick)")
    p.add_argument("--impls", default=",".join(IMPLS), help=f"comma list of {', '.join(IMPLS)}")
    p.add_argument("--cases", default="", help="comma list of case names (default: all)")
    p.add_argument("--out", default=str(BENCH / "results"), help="output folder (default bench/results)")
    p.add_argument("--no-charts", action="store_true")
    p.add_argument("--no-ceilings", action="store_true")
    p.add_argument("--ref-dialers", action="store_true",
                   help="also run js->js and py->py with the peers' own dialers (perf, streams)")
    p.add_argument("--budget", type=float, default=19 * 60,
                   help="after 3 reps, start no further rep once another would end past this many seconds (default 1140)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a geventp2p run failed")
    p.add_argument("--pin", choices=("off", "split"), default="off",
                   help="off (default): leave placement to the kernel; split: clients on the first CPU, "
                        "servers (and all their threads) on the last, when there are 2 or more (steadier "
                        "figures, but it slows js-libp2p, whose helper threads then share one core)")
    p.add_argument("--many-conns", type=int, default=0, metavar="N",
                   help="also run bench.conns: server RSS per connection with N idle noise+yamux "
                        "connections (slow: ~1 min per run at N=1000; default 0 = off)")
    p.add_argument("--gp-server", choices=("auto", "cli", "driver"), default="auto",
                   help="geventp2p server: `geventp2p serve` (cli), bench/driver.py serve, or cli if present")
    args = p.parse_args(argv)
    args.reps = args.reps or (1 if args.quick else 5)
    args.impls = [i.strip() for i in args.impls.split(",") if i.strip()]
    bad = [i for i in args.impls if i not in IMPLS]
    if bad:
        p.error(f"unknown impl(s) {bad}; known: {IMPLS}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    t_start = time.monotonic()
    cases = build_cases(args.quick)
    if args.cases:
        want = {c.strip() for c in args.cases.split(",")}
        unknown = want - {c.name for c in cases}
        if unknown:
            raise SystemExit(f"unknown case(s) {sorted(unknown)}; known: {[c.name for c in cases]}")
        cases = [c for c in cases if c.name in want]
    impls = list(args.impls)
    for kind in (JS, PY):
        if kind in impls:
            try:
                _harness().ensure_peer(kind)
            except Exception as exc:
                log(f"warning: {kind} peer unavailable, skipped: {exc}")
                impls.remove(kind)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    now = _dt.datetime.now(_dt.timezone.utc)
    stem = f"compare-{now.strftime('%Y%m%d-%H%M%S')}{'-quick' if args.quick else ''}"
    load_start = _load()
    gp_server = "n/a"
    if GP in impls or GP_PURE in impls:
        gp_server = "geventp2p serve" if args.gp_server != "driver" and cli_serve_flags() else "bench/driver.py serve"
    log(f"impls {impls}, {len(cases)} cases, {args.reps} rep(s); geventp2p server: {gp_server}")

    global PIN
    PIN = pin_sets(args.pin)
    log(f"CPU pinning: clients on {sorted(PIN[0])}, servers on {sorted(PIN[1])}" if PIN else "CPU pinning: off")
    ceilings: dict[str, Any] = {}
    if not args.no_ceilings:
        from bench import ceilings as _ceil

        ceilings = _ceil.measure(quick=args.quick, pin=PIN)
        log(f"ceilings: raw socket {ceilings['raw_socket_mib_s']:.0f} MiB/s, "
            f"chacha {ceilings['chacha_mib_s']:.0f} MiB/s")

    runs: list[dict] = []
    reps_done, stopped = 0, None
    t_reps = time.monotonic()
    for rep in range(args.reps):
        if rep >= 3:  # at least 3 runs per figure, whatever the budget
            per_rep = (time.monotonic() - t_reps) / rep
            if time.monotonic() - t_start + per_rep > args.budget:
                stopped = f"stopped after {rep} rep(s): another (~{per_rep:.0f} s) would pass --budget {args.budget:.0f} s"
                log(stopped)
                break
        order = impls[rep % len(impls):] + impls[: rep % len(impls)] if impls else []
        for case in cases:
            for impl in order:
                if impl not in case.impls or case.security not in OWN_SECURITY[impl]:
                    continue
                rec = one_run(impl, case, args.gp_server)
                rec["rep"] = rep
                runs.append(rec)
                main_m = case.metrics[0]
                shown = _fmt(rec.get(main_m.key), main_m) if isinstance(rec.get(main_m.key), (int, float)) else "-"
                log(f"rep {rep} {case.name:<26} {impl:<15} {'ok ' if rec.get('ok') else 'ERR'} "
                    f"{main_m.label}={shown} {main_m.unit} ({rec.get('wall', 0):.1f}s)"
                    + ("" if rec.get("ok") else f"  {str(rec.get('error'))[:200]}"))
            if args.ref_dialers and case.ref:
                for kind in REF_DIALERS:
                    if kind.split("->")[0] in impls:
                        rec = ref_run(kind, case)
                        rec["rep"] = rep
                        runs.append(rec)
                        log(f"rep {rep} {case.name:<26} {kind:<15} {'ok ' if rec.get('ok') else 'ERR'}")
        reps_done = rep + 1
        if reps_done < args.reps:  # keep what we have if a later rep crashes or is interrupted
            partial = assemble(args, cases, runs, ceilings, impls, now, t_start, load_start, gp_server,
                               reps_done, stopped)
            (out / f"{stem}.partial.json").write_text(json.dumps(partial, indent=1, default=str))

    result = assemble(args, cases, runs, ceilings, impls, now, t_start, load_start, gp_server, reps_done, stopped)
    md = markdown(result, cases)
    if args.many_conns > 0:
        from bench import conns as _conns

        servers = [i for i in impls if i in _conns.SERVERS]
        log(f"many-conns: {args.many_conns} connections, servers {servers}")
        cargs = _conns.parse_args(["--conns", str(args.many_conns), "--reps", str(min(args.reps, 3))])
        result["many_conns"] = many = _conns.run(servers, cargs)
        md += "\n\n## Server memory per connection (bench.conns)\n\n" + _conns.table(many) + "\n"
    pngs = [] if args.no_charts else charts(result, cases, out, stem)
    result["meta"]["charts"] = pngs
    result["meta"]["wall_seconds"] = time.monotonic() - t_start
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1, default=str))
    (out / f"{stem}.md").write_text(md)
    with contextlib.suppress(OSError):
        (out / f"{stem}.partial.json").unlink()
    print(md)
    log(f"wrote {out / (stem + '.json')}, {stem}.md and {len(pngs)} chart(s); "
        f"wall {result['meta']['wall_seconds']:.0f} s")
    gp_failed = any(not r.get("ok") for r in runs if r["impl"] in (GP, GP_PURE))
    return 1 if args.strict and gp_failed else 0


def assemble(args, cases, runs, ceilings, impls, now, t_start, load_start, gp_server, reps_done, stopped) -> dict:
    result: dict[str, Any] = {
        "meta": {
            "date": now.isoformat(timespec="seconds"),
            "quick": args.quick,
            "reps": reps_done,
            "reps_requested": args.reps,
            "stopped_early": stopped,
            "budget_seconds": args.budget,
            "impls": impls,
            "gp_server": gp_server,
            "pinned": {"client_cpus": sorted(PIN[0]), "server_cpus": sorted(PIN[1])} if PIN else None,
            "versions": _versions(),
            "host": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
            "load_start": load_start,
            "load_end": _load(),
            "wall_seconds": time.monotonic() - t_start,
            "cases": [{"name": c.name, "title": c.title, "scenario": c.scenario, "security": c.security,
                       "muxer": c.muxer, "transport": c.transport, "args": c.args} for c in cases],
        },
        "ceilings": ceilings,
        "summary": summarize(runs, cases),
        "runs": runs,
    }
    builds: dict[str, set] = {}
    for r in runs:
        if r["impl"] in (GP, GP_PURE):
            builds.setdefault(r["impl"], set()).update(
                str(b) for b in (r.get("build"), r.get("server_build")) if b)
    result["meta"]["builds"] = {k: sorted(v) for k, v in builds.items()}
    via_driver = sorted({r["case"] for r in runs if r["impl"] in (GP, GP_PURE) and r.get("server_cmd") == "driver"})
    result["meta"]["gp_server_driver_cases"] = via_driver
    return result


if __name__ == "__main__":
    sys.exit(main())
