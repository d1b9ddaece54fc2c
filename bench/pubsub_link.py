"""Pubsub over one link: a publisher and a subscriber in separate processes (issue #11).

    python -m bench.pubsub_link [--pairs geventp2p,js,py,js-js] [--sizes 1024,65536] [--reps 3]
                                [--count 20000] [--json] [--out bench/results]

Each run starts a fresh **subscriber** process, then a fresh **publisher** process that
dials it over TCP on 127.0.0.1 (Noise + yamux), both gossipsub with StrictSign on one topic:

| pair | publisher | subscriber |
|---|---|---|
| ``geventp2p`` | geventp2p (this module, ``--role pub``) | geventp2p (``--role sub``) |
| ``js`` | geventp2p | js-libp2p 3.3.11 + @libp2p/gossipsub (``bench/_pubsub_link_js.mjs``) |
| ``py`` | geventp2p | py-libp2p 0.8.1 gossipsub (``bench/_pubsub_link_py.py``) |
| ``js-js`` | js-libp2p | js-libp2p (js's own rate, the reference of the 3x target) |
| ``py-py`` | - | not offered: py-libp2p's publisher is too slow to be a reference |

The js and py peers come from the interop harness's cache (the same pinned packages as
tests/interop/test_pubsub_interop.py).  Every payload carries its index and the
publisher's CLOCK_MONOTONIC send time in ns (Python ``time.monotonic_ns``, Node
``process.hrtime``: the same clock on Linux); the subscriber stamps the receive time.

Phases of one run: the publisher waits until it sees the subscriber's subscription, then

1. warm-up: 200 messages, then the subscriber's counters are reset;
2. **maximum rate**: ``--count`` messages (64 KiB: ``--count-large``) as fast as the
   publisher's ``publish`` returns (geventp2p's blocks while its send queue to the peer
   is full; js's has no back-pressure and a 256 MiB buffer).  messages/s =
   delivered / (last receive - first send); MiB/s = that x size; ``lost`` = sent - delivered;
3. **latency at half rate**: messages paced at half the measured rate for ``--latency-secs``
   (5 s, at most ``--count`` messages): p50 / p99 / max of receive - send time.

Runs alternate (``for rep: for size: for pair``); each figure is the median of ``--reps``
(default 3) with min and max.  The table gives the ratios geventp2p / js-js (the target: at
least 3x js's messages/s at 1 KiB; p99 at most 5 ms at half rate) and geventp2p / js,
geventp2p / py subscribers.  Output in ``--out``: ``pubsub-link-<UTC>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
HARNESS_DIR = ROOT / "tests" / "interop"
TOPIC = "bench"
KiB = 1024
MiB = 1024 * KiB
PAIRS = ("geventp2p", "js", "py", "js-js")
WARMUP = 200


def log(msg: str) -> None:
    print(f"[pubsub_link {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- geventp2p roles


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def role_main(args: argparse.Namespace) -> int:
    """``--role pub|sub``: a geventp2p peer driven by JSON lines on stdin (see the js peer)."""
    import gevent
    import gevent.socket

    import geventp2p
    from geventp2p.pubsub import GossipSub, PubSubOptions

    host = geventp2p.new_host(listen=["/ip4/127.0.0.1/tcp/0"], security=["noise"], muxers=["yamux"],
                              services=["identify"])
    ps = GossipSub(host, options=PubSubOptions(trace=False, subscription_buffer=1 << 17))
    topic = ps.join(TOPIC)
    st = {"count": 0, "first": 0, "last": 0}
    lat: list[int] = []

    def reader(sub: Any) -> None:
        mono = time.monotonic_ns
        for msg in sub:
            now = mono()
            d = msg.data
            if len(d) < 12:
                continue
            if st["count"] == 0:
                st["first"] = now
            st["last"] = now
            st["count"] += 1
            lat.append(now - int.from_bytes(d[4:12], "big"))

    if args.role == "sub":
        gevent.spawn(reader, topic.subscribe())
    _emit({"type": "ready", "peer_id": str(host.id), "addrs": [str(a) for a in host.p2p_addrs()]})

    filler = b"\xab" * max(args.size_hint, 12)

    def publish(n: int, size: int, rate: float) -> dict[str, Any]:
        body = filler if len(filler) >= size else b"\xab" * size
        start = time.monotonic_ns()
        errors = 0
        for i in range(n):
            if rate > 0:
                due = start + int(i * 1e9 / rate)
                ahead = (due - time.monotonic_ns()) / 1e9
                if ahead > 0.0005:
                    gevent.sleep(ahead)
            data = i.to_bytes(4, "big") + time.monotonic_ns().to_bytes(8, "big") + body[12:size]
            try:
                topic.publish(data, timeout=60.0)
            except Exception:  # noqa: BLE001 - counted
                errors += 1
        return {"start_ns": start, "errors": errors}

    fd = sys.stdin.fileno()
    buf = b""
    while True:
        gevent.socket.wait_read(fd)
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if not line.strip():
                continue
            cmd = json.loads(line)
            c = cmd.get("cmd")
            if c == "connect":
                host.connect(cmd["addr"], timeout=30.0)
                _emit({"type": "connect"})
            elif c == "wait_peer":
                while not topic.list_peers():
                    gevent.sleep(0.02)
                _emit({"type": "wait_peer"})
            elif c == "publish":
                _emit({"type": "publish", **publish(cmd["count"], cmd["size"], cmd.get("rate") or 0)})
            elif c == "report":
                _emit({"type": "report", "count": st["count"], "first_ns": st["first"], "last_ns": st["last"],
                       "lat_ns": list(lat) if cmd.get("lat") else []})
            elif c == "reset":
                st["count"] = 0
                lat.clear()
                _emit({"type": "reset"})
    sys.stdout.flush()
    os._exit(0)


# ----------------------------------------------------------------------------- orchestrator


def _harness() -> Any:
    if str(HARNESS_DIR) not in sys.path:
        sys.path.insert(0, str(HARNESS_DIR))
    import interop_harness  # type: ignore[import-not-found]  # noqa: PLC0415

    return interop_harness


def _js_packages() -> dict[str, str]:
    """The pinned packages of the pubsub interop tests (one source of truth)."""
    import ast

    src = (HARNESS_DIR / "test_pubsub_interop.py").read_text()
    for node in ast.parse(src).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "JS_PACKAGES" for t in node.targets):
            value: dict[str, str] = ast.literal_eval(node.value)
            return value
    raise RuntimeError("JS_PACKAGES not found in tests/interop/test_pubsub_interop.py")


class Peer:
    """One peer process speaking the JSON line protocol."""

    def __init__(self, kind: str, role: str, size: int) -> None:
        ih = _harness()
        self.kind = kind
        self._tmp: Optional[tempfile.TemporaryDirectory[str]] = None
        if kind == "geventp2p":
            env = {"PYTHONPATH": str(ROOT)}
            for k in ("GEVENTP2P_PURE_PYTHON", "GEVENTP2P_REQUIRE_SPEEDUPS"):
                if k in os.environ:
                    env[k] = os.environ[k]
            argv = [sys.executable, "-m", "bench.pubsub_link", "--role", role, "--size-hint", str(size)]
        elif kind == "js":
            # (_harness() above put tests/interop on sys.path)
            from _npm import ensure_npm_packages, node_executable  # type: ignore[import-not-found]  # noqa: PLC0415

            folder = ensure_npm_packages("npm-pubsub", _js_packages())
            # this script beside the cached node_modules, without writing into the shared cache
            self._tmp = tempfile.TemporaryDirectory(prefix="geventp2p-pslink-js-")
            script = Path(self._tmp.name) / "peer.mjs"
            shutil.copyfile(ROOT / "bench" / "_pubsub_link_js.mjs", script)
            os.symlink(folder / "node_modules", Path(self._tmp.name) / "node_modules")
            argv = [node_executable(), str(script), "--topic", TOPIC] + (["--subscribe"] if role == "sub" else [])
            env = None
        elif kind == "py":
            python = ih.ensure_peer("py")
            argv = [str(python), str(ROOT / "bench" / "_pubsub_link_py.py"), "--topic", TOPIC]
            env = None
        else:
            raise ValueError(kind)
        self.proc = ih.PeerProcess(f"{kind}-{role}", argv, env)
        self.proc.wait_ready(90)
        self.addr: str = self.proc.addr

    def cmd(self, timeout: float, **cmd: Any) -> dict[str, Any]:
        p = self.proc.proc
        assert p.stdin is not None
        p.stdin.write((json.dumps(cmd) + "\n").encode())
        p.stdin.flush()
        deadline = time.monotonic() + timeout
        while True:
            line = self.proc._out.pop_line()
            if line is not None:
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if isinstance(obj, dict) and obj.get("type") == cmd["cmd"]:
                    return obj
                continue
            if not self.proc.alive():
                raise RuntimeError(f"{self.kind} exited during {cmd['cmd']}\n{self.proc.stderr_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.kind}: no answer to {cmd['cmd']} within {timeout:.0f}s\n"
                                   f"{self.proc.stderr_tail()}")
            time.sleep(0.005)

    def stop(self) -> None:
        self.proc.stop()
        if self._tmp is not None:
            self._tmp.cleanup()


def _wait_delivered(sub: Peer, want: int, settle: float, timeout: float) -> dict[str, Any]:
    """Poll the subscriber until it has ``want`` messages or no progress for ``settle`` s."""
    deadline = time.monotonic() + timeout
    last_count, last_change = -1, time.monotonic()
    while True:
        rep = sub.cmd(60, cmd="report")
        if rep["count"] >= want:
            break
        if rep["count"] != last_count:
            last_count, last_change = rep["count"], time.monotonic()
        elif time.monotonic() - last_change > settle or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    return sub.cmd(60, cmd="report", lat=True)


def _pct(vals: list[float], p: float) -> float:
    s = sorted(vals)
    k = max(1, -(-len(s) * p // 100))
    return s[min(len(s), int(k)) - 1]


def one_run(pair: str, size: int, args: argparse.Namespace) -> dict[str, Any]:
    pub_kind, sub_kind = ("js", "js") if pair == "js-js" else ("geventp2p", pair)
    count = args.count if size <= 4 * KiB else args.count_large
    rec: dict[str, Any] = {"pair": pair, "size": size, "count": count}
    sub = pub = None
    try:
        sub = Peer(sub_kind, "sub", size)
        pub = Peer(pub_kind, "pub", size)
        pub.cmd(60, cmd="connect", addr=sub.addr)
        pub.cmd(60, cmd="wait_peer")
        # warm-up
        pub.cmd(120, cmd="publish", count=WARMUP, size=size, rate=0)
        _wait_delivered(sub, WARMUP, 5.0, 60)
        sub.cmd(30, cmd="reset")
        # maximum rate
        ans = pub.cmd(args.timeout, cmd="publish", count=count, size=size, rate=0)
        rep = _wait_delivered(sub, count, args.settle, args.timeout)
        got = rep["count"]
        secs = (rep["last_ns"] - ans["start_ns"]) / 1e9 if got else 0.0
        rate = got / secs if secs > 0 else 0.0
        rec.update(delivered=got, lost=count - got, publish_errors=ans["errors"], seconds=secs,
                   msgs_per_s=rate, mib_per_s=rate * size / MiB)
        # latency at half the maximum rate
        sub.cmd(30, cmd="reset")
        half = rate / 2
        n = max(50, min(count, int(half * args.latency_secs)))
        ans = pub.cmd(args.timeout, cmd="publish", count=n, size=size, rate=half)
        rep = _wait_delivered(sub, n, args.settle, args.timeout)
        lat_ms = [x / 1e6 for x in rep["lat_ns"]]
        rec.update(half_rate=half, half_count=n, half_delivered=rep["count"])
        if lat_ms:
            rec.update(p50_ms=_pct(lat_ms, 50), p99_ms=_pct(lat_ms, 99), max_ms=max(lat_ms))
        rec["ok_run"] = got > 0 and bool(lat_ms)
    except Exception as exc:  # noqa: BLE001 - reported
        rec["ok_run"] = False
        rec["error"] = f"{type(exc).__name__}: {exc}"[:2000]
    finally:
        for p in (pub, sub):
            if p is not None:
                p.stop()
    return rec


FIGURES = (
    ("msgs_per_s", "messages/s"),
    ("mib_per_s", "MiB/s delivered"),
    ("lost", "lost at max rate"),
    ("half_rate", "half rate, msgs/s"),
    ("p50_ms", "p50 ms at half rate"),
    ("p99_ms", "p99 ms at half rate"),
    ("max_ms", "max ms at half rate"),
)


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, _ in FIGURES:
        vals = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
        if vals:
            out[key] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}
    return out


def _fmt(s: Optional[dict[str, Any]]) -> str:
    if not s:
        return "-"

    def f(v: float) -> str:
        return f"{v:.0f}" if abs(v) >= 100 else f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}"

    txt = f(s["median"])
    if s["n"] > 1:
        txt += f" ({f(s['min'])}–{f(s['max'])})"
    return txt


LABELS = {"geventp2p": "geventp2p → geventp2p", "js": "geventp2p → js", "py": "geventp2p → py",
          "js-js": "js → js"}


def table(result: dict[str, Any]) -> str:
    lines = []
    for size in result["sizes"]:
        summ = result["summary"][str(size)]
        pairs = [p for p in result["pairs"] if p in summ]
        lines.append(f"### {size // KiB} KiB messages, StrictSign, median of {result['reps']} (min–max)")
        lines.append("| figure | " + " | ".join(LABELS[p] for p in pairs) + " |")
        lines.append("|---|" + "---|" * len(pairs))
        for key, label in FIGURES:
            lines.append(f"| {label} | " + " | ".join(_fmt(summ[p].get(key)) for p in pairs) + " |")
        g = summ.get("geventp2p", {}).get("msgs_per_s")
        ratios = []
        for p in ("js-js", "js", "py"):
            o = summ.get(p, {}).get("msgs_per_s")
            if g and o and o["median"] > 0:
                ratios.append(f"geventp2p / {LABELS[p]}: {g['median'] / o['median']:.2f}x")
        if ratios:
            lines.append("")
            lines.append("messages/s ratios (medians): " + "; ".join(ratios))
        lines.append("")
    return "\n".join(lines)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.pubsub_link", description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", default="geventp2p,js,py,js-js", help=f"comma-separated among {', '.join(PAIRS)}")
    p.add_argument("--sizes", default="1024,65536", help="message sizes in bytes (default 1024,65536)")
    p.add_argument("--reps", type=int, default=3, help="runs per pair and size (default 3)")
    p.add_argument("--count", type=int, default=20000, help="messages at max rate, small sizes (default 20000)")
    p.add_argument("--count-large", type=int, default=1000, help="messages at max rate above 4 KiB (default 1000)")
    p.add_argument("--latency-secs", type=float, default=5.0, help="length of the half-rate phase (default 5 s)")
    p.add_argument("--settle", type=float, default=5.0, help="seconds without progress that end a phase (default 5)")
    p.add_argument("--timeout", type=float, default=300.0, help="per phase (default 300 s)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results"), help="output folder (default bench/results)")
    p.add_argument("--no-files", action="store_true", help="write no files, only print")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    p.add_argument("--role", choices=("pub", "sub"), help=argparse.SUPPRESS)
    p.add_argument("--size-hint", type=int, default=KiB, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.pairs = [x.strip() for x in args.pairs.split(",") if x.strip()]
    for x in args.pairs:
        if x not in PAIRS:
            p.error(f"unknown pair {x!r} (expected {', '.join(PAIRS)})")
    args.sizes = [int(x) for x in args.sizes.split(",") if x]
    if any(s < 12 for s in args.sizes):
        p.error("sizes must be >= 12 bytes (index + timestamp)")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    if args.role:
        return role_main(args)
    runs: list[dict[str, Any]] = []
    for rep in range(args.reps):
        for size in args.sizes:
            k = rep % len(args.pairs)
            for pair in args.pairs[k:] + args.pairs[:k]:  # rotate the order per rep
                log(f"{LABELS[pair]}, {size} B, run {rep + 1}/{args.reps}")
                rec = one_run(pair, size, args)
                if rec.get("error"):
                    log(f"  failed: {rec['error'][:400]}")
                else:
                    log(f"  {rec['msgs_per_s']:.0f} msgs/s ({rec['lost']} lost), half rate p50 "
                        f"{rec.get('p50_ms', 0):.2f} ms p99 {rec.get('p99_ms', 0):.2f} ms")
                runs.append(rec)
    summary = {str(s): {p: summarize([r for r in runs if r["pair"] == p and r["size"] == s]) for p in args.pairs}
               for s in args.sizes}
    result = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "loadavg": os.getloadavg(),
              "cpus": os.cpu_count(), "pairs": args.pairs, "sizes": args.sizes, "reps": args.reps,
              "runs": runs, "summary": summary}
    text = table(result)
    if not args.no_files:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        (out / f"pubsub-link-{stamp}.json").write_text(json.dumps(result, indent=1))
        (out / f"pubsub-link-{stamp}.md").write_text(
            f"pubsub one link, {result['date']}, load average {result['loadavg'][0]:.2f}, {result['cpus']} CPUs\n\n"
            + text + "\n")
        log(f"wrote {out}/pubsub-link-{stamp}.{{json,md}}")
    print(json.dumps(result, indent=1) if args.json else text)
    return 1 if any(not r.get("ok_run") for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
