"""``geventp2p demo``: two hosts in one process over real loopback TCP
(``geventp2p demo --pubsub``: N hosts gossiping on one topic, see :func:`run_pubsub_demo`).

:func:`run_demo` starts a server host (echo + perf) and a client host on
``127.0.0.1`` (Noise + yamux by default), then

1. pushes ``bulk_bytes`` through one ``/perf/1.0.0`` stream (upload phase:
   the server drains until our FIN and answers with 0 bytes), and
2. runs ``streams`` request/response streams on ``/echo/1.0.0`` (all launched
   at once unless ``concurrency`` caps them): each writes ``stream_bytes``
   distinct bytes, half-closes, reads the echo to EOF and compares it byte for
   byte.  Their *completion times* (from a stream's start to its verified echo,
   while all the others are in flight) measure the load, not one stream, and
3. runs up to ``latency_samples`` more echo streams one at a time: their
   *per-stream latency* (open, write, half-close, read the echo to EOF) is what
   one request costs on an idle connection.

Both hosts share this process, so one gevent hub and one core do the work of
both ends.  The spawn loop launches greenlets in batches of :data:`SPAWN_BATCH`
with ``gevent.sleep(0)`` between them, so the hub is never held for long.

A :class:`Progress` bar on stderr follows each phase; :func:`format_table`
renders the :class:`DemoResult` (throughput, completion times, per-stream
latency, failures, peak RSS, active build, crypto backend, versions) and
:meth:`DemoResult.to_json` gives the same as one JSON object (keys documented
there).
"""

from __future__ import annotations

import os
import platform
import resource
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Optional, TextIO

from geventp2p.exceptions import ConfigError, RemoteProtocolError

__all__ = [
    "DEFAULT_STREAMS",
    "DEFAULT_STREAM_BYTES",
    "DEFAULT_BULK_BYTES",
    "DEFAULT_LATENCY_SAMPLES",
    "SPAWN_BATCH",
    "DemoResult",
    "Progress",
    "run_demo",
    "format_table",
    "percentile",
    "build_description",
    "crypto_description",
    "PubSubDemoResult",
    "run_pubsub_demo",
    "format_pubsub_table",
]

KiB = 1024
MiB = 1024 * KiB

DEFAULT_STREAMS = 5000
DEFAULT_STREAM_BYTES = 16 * KiB
DEFAULT_BULK_BYTES = 256 * MiB
#: Sequential echo streams measured for the per-stream latency (at most ``streams``).
DEFAULT_LATENCY_SAMPLES = 100
#: Greenlets spawned between two yields to the hub in the launch loop.
SPAWN_BATCH = 100

ECHO_PROTOCOL = "/echo/1.0.0"
PERF_PROTOCOL = "/perf/1.0.0"

_BULK_BLOCK = 256 * KiB
_READ_CHUNK = 64 * KiB
#: Per echo stream (open + write + read back), and for the bulk phase.
STREAM_TIMEOUT = 60.0
BULK_TIMEOUT = 300.0
_MAX_ERROR_SAMPLES = 5


# --------------------------------------------------------------------------- progress bar


def _fmt_bytes(n: float) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


class Progress:
    """A small text progress bar.

    On a terminal it redraws one line with ``\\r`` at most every ``min_interval``
    seconds (0.1: ~10 redraws/s); otherwise it prints a plain line at most every
    ``line_interval`` seconds.  ``finish()`` always prints the final state on its
    own line.  ``unit="bytes"`` shows sizes and MiB/s, anything else counts and ``/s``.
    """

    WIDTH = 28

    def __init__(self, label: str, total: int, *, unit: str = "items", out: Optional[TextIO] = None,
                 tty: Optional[bool] = None, min_interval: float = 0.1, line_interval: float = 2.0) -> None:
        self.label = label
        self.total = max(0, int(total))
        self.unit = unit
        self.out = out
        if tty is None and out is not None:
            isatty = getattr(out, "isatty", None)
            try:
                tty = bool(isatty()) if callable(isatty) else False
            except (OSError, ValueError):
                tty = False
        self.tty = bool(tty)
        self.interval = min_interval if self.tty else line_interval
        self.done = 0
        self.started = time.monotonic()
        self._last_draw = self.started
        self._finished = False

    def update(self, done: int) -> None:
        """Record progress ``done`` (absolute) and redraw if the interval passed."""
        self.done = done
        if self.out is None:
            return
        now = time.monotonic()
        if now - self._last_draw >= self.interval:
            self._last_draw = now
            self._draw(now, final=False)

    def finish(self, note: str = "") -> None:
        if self._finished:
            return
        self._finished = True
        if self.out is not None:
            self._draw(time.monotonic(), final=True, note=note)

    def render(self, now: Optional[float] = None, note: str = "") -> str:
        """The bar as text (no ``\\r`` / newline)."""
        now = time.monotonic() if now is None else now
        elapsed = max(now - self.started, 1e-9)
        frac = min(1.0, self.done / self.total) if self.total else 1.0
        filled = int(round(frac * self.WIDTH))
        bar = "#" * filled + "." * (self.WIDTH - filled)
        if self.unit == "bytes":
            amount = f"{_fmt_bytes(self.done)}/{_fmt_bytes(self.total)}"
            rate = f"{self.done / elapsed / MiB:.1f} MiB/s"
        else:
            amount = f"{self.done}/{self.total}"
            rate = f"{self.done / elapsed:.0f}/s"
        text = f"{self.label:<8} [{bar}] {frac * 100:5.1f}%  {amount}  {rate}  {elapsed:.1f}s"
        return f"{text}  {note}" if note else text

    def _draw(self, now: float, *, final: bool, note: str = "") -> None:
        out = self.out
        if out is None:
            return
        text = self.render(now, note)
        try:
            if self.tty:
                out.write("\r\x1b[K" + text + ("\n" if final else ""))
            else:
                out.write(text + "\n")
            out.flush()
        except (OSError, ValueError):  # stderr gone: keep running, stop drawing
            self.out = None


# --------------------------------------------------------------------------- result


@dataclass
class DemoResult:
    """Everything the summary table shows."""

    security: str
    muxer: str
    bulk_bytes: int
    bulk_seconds: float
    streams: int
    stream_bytes: int
    concurrency: int
    streams_ok: int
    streams_seconds: float
    #: completion times of the concurrent echo streams (seconds, ascending, successful ones only)
    latencies: list = field(default_factory=list)
    #: per-stream latency of the sequential echo streams (seconds, ascending)
    seq_latencies: list = field(default_factory=list)
    latency_samples: int = 0
    failures: int = 0
    bulk_error: Optional[str] = None
    errors: list = field(default_factory=list)  # up to a few "stream i: message" samples
    peak_rss_bytes: int = 0
    build: str = ""
    crypto: str = ""
    python: str = ""
    gevent: str = ""
    wall_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.failures == 0 and self.bulk_error is None and self.streams_ok == self.streams

    @property
    def bulk_mib_s(self) -> float:
        return self.bulk_bytes / MiB / self.bulk_seconds if self.bulk_seconds > 0 else 0.0

    @property
    def streams_per_s(self) -> float:
        return self.streams_ok / self.streams_seconds if self.streams_seconds > 0 else 0.0

    @property
    def all_failures(self) -> int:
        """Failed echo streams plus a failed bulk transfer."""
        return self.failures + (1 if self.bulk_error is not None else 0)

    def to_json(self) -> dict[str, Any]:
        """The result as one JSON-ready object (``geventp2p demo --json``).

        Keys: ``ok`` (bool); ``hosts`` ("2 hosts, 1 process, 1 core": both ends
        share one gevent hub); ``security``, ``muxer`` (protocol ids);
        ``bulk_bytes``, ``bulk_seconds``, ``bulk_mib_per_s``, ``bulk_error`` (str
        or null); ``streams`` (asked), ``streams_ok``, ``stream_bytes``,
        ``concurrency`` (streams in flight at once), ``streams_seconds``,
        ``streams_per_s``; ``completion_p50_ms``, ``completion_p99_ms``
        (completion time of one stream while ``concurrency`` streams run at
        once); ``latency_samples``, ``latency_p50_ms``, ``latency_p99_ms``
        (per-stream latency, streams run one at a time: open to EOF);
        ``failures`` (failed streams plus a failed bulk transfer);
        ``errors`` (a few samples); ``peak_rss_bytes``, ``build``, ``crypto``,
        ``python``, ``gevent``, ``wall_seconds``.
        """
        ms = 1000.0
        return {
            "ok": self.ok,
            "hosts": "2 hosts, 1 process, 1 core",
            "security": self.security,
            "muxer": self.muxer,
            "bulk_bytes": self.bulk_bytes,
            "bulk_seconds": self.bulk_seconds,
            "bulk_mib_per_s": self.bulk_mib_s,
            "bulk_error": self.bulk_error,
            "streams": self.streams,
            "streams_ok": self.streams_ok,
            "stream_bytes": self.stream_bytes,
            "concurrency": self.concurrency,
            "streams_seconds": self.streams_seconds,
            "streams_per_s": self.streams_per_s,
            "completion_p50_ms": percentile(self.latencies, 50) * ms,
            "completion_p99_ms": percentile(self.latencies, 99) * ms,
            "latency_samples": self.latency_samples,
            "latency_p50_ms": percentile(self.seq_latencies, 50) * ms,
            "latency_p99_ms": percentile(self.seq_latencies, 99) * ms,
            "failures": self.all_failures,
            "errors": list(self.errors),
            "peak_rss_bytes": self.peak_rss_bytes,
            "build": self.build,
            "crypto": self.crypto,
            "python": self.python,
            "gevent": self.gevent,
            "wall_seconds": self.wall_seconds,
        }


def percentile(sorted_values: list, p: float) -> float:
    """Nearest-rank percentile ``p`` (0..100) of an ascending list (0.0 if empty)."""
    if not sorted_values:
        return 0.0
    if p <= 0:
        return sorted_values[0]
    k = -(-len(sorted_values) * p // 100)  # ceil(n * p / 100)
    return sorted_values[min(len(sorted_values), int(k)) - 1]


def build_description() -> str:
    """Active hot-path build, e.g. ``cython (varint=cython, frames=cython, window=cython)``."""
    from geventp2p import _speedups

    info = _speedups.info()
    per_module = ", ".join(f"{name}={kind}" for name, (kind, _reason) in info.items())
    reasons = {reason for kind, reason in info.values() if kind == "python"}
    text = f"{_speedups.IMPLEMENTATION} ({per_module})"
    if len(reasons) == 1:
        text += f"; {reasons.pop()}"
    return text


def crypto_description() -> str:
    """Name (and library version) of the crypto backend Noise uses."""
    from geventp2p.crypto.backend import get_backend

    name = get_backend().name
    version = None
    try:
        if name == "cryptography":
            import cryptography

            version = cryptography.__version__
        elif name == "pycryptodome":
            import Crypto

            version = Crypto.__version__
    except (ImportError, AttributeError):
        pass
    return f"{name} {version}" if version else name


def _peak_rss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # Linux reports KiB


# --------------------------------------------------------------------------- hosts


def _muxer_instance(name: str, concurrency: int) -> Any:
    """A muxer whose inbound-stream limits admit ``concurrency`` streams at once."""
    from geventp2p.defaults import make_muxer, muxer_config

    slack = concurrency + 64
    base = muxer_config(name)
    limits = dict(max_inbound_streams=max(base.max_inbound_streams, slack),
                  accept_backlog=max(base.accept_backlog, slack))
    if hasattr(base, "max_stream_buffer_size"):
        # mplex has no flow control: give one fast bulk stream room to outrun
        # its reader for a while instead of being reset
        limits.update(max_stream_buffer_size=max(base.max_stream_buffer_size, 32 * MiB),
                      max_session_buffer_size=max(base.max_session_buffer_size, 256 * MiB))
    return make_muxer(name, **limits)


# --------------------------------------------------------------------------- phases


def _bulk(client: Any, server_id: Any, nbytes: int, progress: Progress) -> float:
    """Upload ``nbytes`` over /perf/1.0.0 (asking for 0 back); returns seconds until the server's EOF."""
    block = os.urandom(_BULK_BLOCK)
    t0 = time.monotonic()
    stream = client.new_stream(server_id, [PERF_PROTOCOL], timeout=30.0)
    try:
        stream.set_deadline(t0 + BULK_TIMEOUT)
        stream.write(struct.pack(">Q", 0))
        sent = 0
        view = memoryview(block)
        while sent < nbytes:
            n = min(_BULK_BLOCK, nbytes - sent)
            stream.write(view[:n] if n < _BULK_BLOCK else block)
            sent += n
            progress.update(sent)
        stream.close_write()
        extra = stream.read(_READ_CHUNK)  # the server answers only after draining everything
        if extra:
            raise RemoteProtocolError(f"perf server sent {len(extra)} bytes, 0 were asked for")
    except BaseException:
        stream.reset()
        raise
    stream.close()
    return time.monotonic() - t0


def _payload(base: bytes, i: int, size: int) -> bytes:
    """Distinct bytes for stream ``i``: its index, then a window into ``base``."""
    head = struct.pack(">Q", i)[:size]
    off = (i * 7919) % (len(base) - size + 1)
    return head + base[off:off + size - len(head)]


def _echo_once(client: Any, server_id: Any, payload: bytes) -> float:
    t0 = time.perf_counter()
    stream = client.new_stream(server_id, [ECHO_PROTOCOL], timeout=STREAM_TIMEOUT)
    try:
        stream.set_deadline(time.monotonic() + STREAM_TIMEOUT)
        stream.write(payload)
        stream.close_write()
        got = bytearray()
        while True:
            chunk = stream.read(_READ_CHUNK)
            if not chunk:
                break
            got += chunk
            if len(got) > len(payload):
                raise RemoteProtocolError(f"echo returned more than the {len(payload)} bytes sent")
    except BaseException:
        stream.reset()
        raise
    stream.close()
    if got != payload:
        where = next((k for k, (a, b) in enumerate(zip(got, payload)) if a != b), min(len(got), len(payload)))
        raise RemoteProtocolError(f"echo mismatch at byte {where} ({len(got)} of {len(payload)} bytes back)")
    return time.perf_counter() - t0


def run_demo(
    *,
    streams: int = DEFAULT_STREAMS,
    bulk_bytes: int = DEFAULT_BULK_BYTES,
    stream_bytes: int = DEFAULT_STREAM_BYTES,
    muxer: str = "yamux",
    security: str = "noise",
    concurrency: Optional[int] = None,
    latency_samples: int = DEFAULT_LATENCY_SAMPLES,
    progress_out: Optional[TextIO] = None,
    tty: Optional[bool] = None,
) -> DemoResult:
    """Blocks the calling greenlet: run the three phases and return the measurements.

    ``concurrency`` caps the echo streams in flight (default: all ``streams`` at
    once); ``latency_samples`` sequential streams (at most ``streams``) measure
    the per-stream latency.  Progress goes to ``progress_out`` (None: no
    progress output).  Setup failures (hosts, connect) raise; per-stream
    failures are counted.
    """
    if streams < 0 or bulk_bytes < 0 or stream_bytes < 1 or latency_samples < 0:
        raise ConfigError("streams, bytes and latency samples must be >= 0, stream size >= 1")
    from geventp2p.defaults import MUXER_NAMES, SECURITY_NAMES

    if muxer not in MUXER_NAMES or security not in SECURITY_NAMES:
        raise ConfigError(f"unknown muxer {muxer!r} or security {security!r} "
                          f"(known: {', '.join(MUXER_NAMES)}; {', '.join(SECURITY_NAMES)})")
    if concurrency is not None and concurrency < 1:
        raise ConfigError("concurrency must be >= 1")
    conc = max(1, min(streams, concurrency) if concurrency else streams)
    import gevent
    from gevent.pool import Pool

    import geventp2p
    from geventp2p.defaults import unlimited_limits

    wall0 = time.monotonic()
    mux_id = _muxer_instance(muxer, conc).PROTOCOL_ID
    result = DemoResult(security=security, muxer=mux_id, bulk_bytes=bulk_bytes, bulk_seconds=0.0,
                        streams=streams, stream_bytes=stream_bytes, concurrency=conc,
                        streams_ok=0, streams_seconds=0.0)
    # thousands of concurrent streams from one peer: lift the resource limits
    server = geventp2p.new_host(listen=["/ip4/127.0.0.1/tcp/0"], security=[security],
                                muxers=[_muxer_instance(muxer, conc)],
                                services=["identify", "ping", "echo", "perf"], limits=unlimited_limits())
    try:
        client = geventp2p.new_host(listen=["/ip4/127.0.0.1/tcp/0"], security=[security],
                                    muxers=[_muxer_instance(muxer, conc)], limits=unlimited_limits())
        try:
            target = server.p2p_addrs()[0]
            client.connect(target, timeout=15.0)
            _record_protocols(result, client, server.id)

            # ---- phase 1: bulk
            bar = Progress("bulk", bulk_bytes, unit="bytes", out=progress_out, tty=tty)
            try:
                result.bulk_seconds = _bulk(client, server.id, bulk_bytes, bar)
            except Exception as exc:
                result.bulk_error = " ".join(str(exc).split()) or type(exc).__name__
                bar.finish(f"FAILED: {result.bulk_error}")
            else:
                bar.finish()

            # ---- phase 2: echo streams
            base = os.urandom(max(stream_bytes * 2, 64 * KiB))
            bar = Progress("streams", streams, out=progress_out, tty=tty)
            lat: list = []
            done = [0]

            def echo_into(i: int, out: list) -> None:
                try:
                    out.append(_echo_once(client, server.id, _payload(base, i, stream_bytes)))
                except Exception as exc:
                    result.failures += 1
                    if len(result.errors) < _MAX_ERROR_SAMPLES:
                        result.errors.append(f"stream {i}: {type(exc).__name__}: {' '.join(str(exc).split())}")

            def one(i: int) -> None:
                echo_into(i, lat)
                done[0] += 1
                bar.update(done[0])

            t0 = time.monotonic()
            pool = Pool(conc)
            try:
                for i in range(streams):
                    pool.spawn(one, i)
                    if i % SPAWN_BATCH == SPAWN_BATCH - 1:
                        gevent.sleep(0)  # let the launched streams and the hub run
                pool.join()
            finally:
                pool.kill()
            result.streams_seconds = time.monotonic() - t0
            result.streams_ok = len(lat)
            lat.sort()
            result.latencies = lat
            bar.finish(f"{result.failures} failed" if result.failures else "")

            # ---- phase 3: per-stream latency, one stream at a time (new stream indices)
            seq: list = []
            for j in range(min(latency_samples, streams)):
                echo_into(streams + j, seq)
            seq.sort()
            result.seq_latencies = seq
            result.latency_samples = len(seq)
        finally:
            client.close()
    finally:
        server.close()
    result.peak_rss_bytes = _peak_rss_bytes()
    result.build = build_description()
    result.crypto = crypto_description()
    result.python = f"{platform.python_version()} ({platform.python_implementation()})"
    result.gevent = gevent.__version__
    result.wall_seconds = time.monotonic() - wall0
    return result


def _record_protocols(result: DemoResult, client: Any, peer: Any) -> None:
    """Put the negotiated security and muxer protocol ids into ``result``."""
    conns = client.network.conns_to_peer(peer)
    if conns:
        result.security = getattr(conns[0], "security", None) or result.security
        result.muxer = getattr(conns[0], "muxer", None) or result.muxer


# --------------------------------------------------------------------------- table


def format_table(r: DemoResult) -> str:
    """The summary table (plain text, one metric per row)."""
    rows: list[tuple[str, str]] = []
    if r.bulk_error is not None:
        rows.append(("bulk transfer", f"FAILED: {r.bulk_error}"))
    else:
        rows.append(("bulk transfer", f"{r.bulk_mib_s:.1f} MiB/s  ({_fmt_bytes(r.bulk_bytes)} in {r.bulk_seconds:.2f} s)"))
    rows.append(("echo streams", f"{r.streams_per_s:.0f} streams/s  ({r.streams_ok}/{r.streams} x "
                                 f"{_fmt_bytes(r.stream_bytes)}, {r.concurrency} concurrent, {r.streams_seconds:.2f} s)"))
    launched = (f"{r.streams} streams launched at once" if r.concurrency >= r.streams
                else f"{r.streams} streams, {r.concurrency} at a time")
    rows.append((f"completion time of {launched}",
                 f"p50 {percentile(r.latencies, 50) * 1000:.2f} ms, p99 {percentile(r.latencies, 99) * 1000:.2f} ms"))
    rows.append((f"per-stream latency, {r.latency_samples} streams one at a time",
                 f"p50 {percentile(r.seq_latencies, 50) * 1000:.2f} ms, "
                 f"p99 {percentile(r.seq_latencies, 99) * 1000:.2f} ms  (open, write, read echo to EOF)"))
    rows.append(("failures", str(r.all_failures)))
    rows.append(("peak RSS", f"{r.peak_rss_bytes / MiB:.1f} MiB"))
    rows.append(("build", r.build))
    rows.append(("crypto backend", r.crypto))
    rows.append(("python", r.python))
    rows.append(("gevent", r.gevent))
    rows.append(("wall time", f"{r.wall_seconds:.2f} s"))
    title = f"geventp2p demo: 2 hosts, loopback TCP, {r.security} + {r.muxer}"
    note = "both hosts share this process and one core: every figure includes both ends' work"
    width = max(len(k) for k, _ in rows)
    lines = [title, note, "-" * max(len(title), len(note))]
    lines += [f"{k:<{width}}  {v}" for k, v in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- pubsub demo

DEFAULT_PUBSUB_NODES = 10
DEFAULT_PUBSUB_MESSAGES = 2000
DEFAULT_PUBSUB_MESSAGE_BYTES = 1 * KiB
PUBSUB_TOPIC = "geventp2p-demo"
#: Links each node dials (to the next ones on a ring), so every node has about twice as many.
PUBSUB_DIALS = 2
#: Longest wait for the meshes to form, and for the last deliveries without progress.
PUBSUB_SETUP_TIMEOUT = 30.0
PUBSUB_DRAIN_TIMEOUT = 10.0
#: Messages in flight at once: message ``k`` is published once message ``k - PUBSUB_WINDOW``
#: reached every node (or after :data:`PUBSUB_WINDOW_WAIT` seconds).  Without it the
#: publishers outrun the relays, whose full send queues drop forwarded RPCs (as go does).
PUBSUB_WINDOW = 32
PUBSUB_WINDOW_WAIT = 2.0


@dataclass
class PubSubDemoResult:
    """Everything the pubsub summary table shows."""

    nodes: int
    router: str
    messages: int
    message_bytes: int
    links: int = 0
    published: int = 0
    publish_errors: int = 0
    delivered: int = 0
    seconds: float = 0.0
    #: publish-to-delivery latencies (seconds, ascending), one per delivery
    latencies: list = field(default_factory=list)
    duplicates: int = 0
    setup_seconds: float = 0.0
    errors: list = field(default_factory=list)
    peak_rss_bytes: int = 0
    build: str = ""
    python: str = ""
    gevent: str = ""
    wall_seconds: float = 0.0

    @property
    def expected(self) -> int:
        """Deliveries if every node but the publisher got every message."""
        return self.messages * (self.nodes - 1)

    @property
    def reliability(self) -> float:
        """Delivered / expected, in percent."""
        return 100.0 * self.delivered / self.expected if self.expected else 100.0

    @property
    def msgs_per_s(self) -> float:
        return self.published / self.seconds if self.seconds > 0 else 0.0

    @property
    def dups_per_node_msg(self) -> float:
        return self.duplicates / self.expected if self.expected else 0.0

    @property
    def ok(self) -> bool:
        return self.delivered == self.expected and self.publish_errors == 0 and not self.errors

    def to_json(self) -> dict[str, Any]:
        """The result as one JSON-ready object (``geventp2p demo --pubsub --json``).

        Keys: ``ok`` (bool); ``nodes``, ``links``, ``router`` (protocol family),
        ``messages``, ``message_bytes``, ``published``, ``publish_errors``; ``delivered``
        and ``expected`` (every node but the publisher, per message); ``reliability_pct``;
        ``seconds`` (first publish to last delivery) and ``msgs_per_s``; ``latency_p50_ms``,
        ``latency_p99_ms`` (publish to delivery, over all deliveries);
        ``duplicates_per_node_msg``; ``setup_seconds`` (hosts, links, meshes);
        ``errors`` (a few samples); ``peak_rss_bytes``, ``build``, ``python``, ``gevent``,
        ``wall_seconds``.
        """
        ms = 1000.0
        return {
            "ok": self.ok, "nodes": self.nodes, "links": self.links, "router": self.router,
            "messages": self.messages, "message_bytes": self.message_bytes, "published": self.published,
            "publish_errors": self.publish_errors, "delivered": self.delivered, "expected": self.expected,
            "reliability_pct": self.reliability, "seconds": self.seconds, "msgs_per_s": self.msgs_per_s,
            "latency_p50_ms": percentile(self.latencies, 50) * ms,
            "latency_p99_ms": percentile(self.latencies, 99) * ms,
            "duplicates_per_node_msg": self.dups_per_node_msg, "setup_seconds": self.setup_seconds,
            "errors": list(self.errors), "peak_rss_bytes": self.peak_rss_bytes, "build": self.build,
            "python": self.python, "gevent": self.gevent, "wall_seconds": self.wall_seconds,
        }


def run_pubsub_demo(
    *,
    nodes: int = DEFAULT_PUBSUB_NODES,
    messages: int = DEFAULT_PUBSUB_MESSAGES,
    message_bytes: int = DEFAULT_PUBSUB_MESSAGE_BYTES,
    router: str = "gossipsub",
    progress_out: Optional[TextIO] = None,
    tty: Optional[bool] = None,
) -> PubSubDemoResult:
    """Blocks the calling greenlet: ``nodes`` hosts over loopback TCP gossip ``messages``
    messages on one topic; returns the measurements.

    Each node dials the next :data:`PUBSUB_DIALS` nodes of a ring (Noise + yamux), runs
    GossipSub (or FloodSub) with StrictSign and subscribes.  Once every node has mesh peers
    (or, for floodsub, knows its neighbours' subscriptions), the nodes publish in turn
    (node ``i % nodes`` publishes message ``i``; ``publish`` blocks while a send queue is
    full) with at most :data:`PUBSUB_WINDOW` messages in flight.  Every payload carries its index; each delivery's latency is measured from its
    publish call.  The progress bar counts deliveries.  Setup failures raise.
    """
    if nodes < 2 or messages < 0 or message_bytes < 4:
        raise ConfigError("the pubsub demo needs >= 2 nodes, >= 0 messages of >= 4 bytes")
    if router not in ("gossipsub", "floodsub"):
        raise ConfigError(f"unknown router {router!r} (known: gossipsub, floodsub)")
    import gevent
    import gevent.event

    import geventp2p
    from geventp2p.pubsub import FloodSub, GossipSub, PubSubOptions

    wall0 = time.monotonic()
    result = PubSubDemoResult(nodes=nodes, router=router, messages=messages, message_bytes=message_bytes)
    hosts: list[Any] = []
    readers: list[Any] = []
    try:
        options = PubSubOptions(trace=False, subscription_buffer=max(256, messages + 16))
        pss = []
        for _ in range(nodes):
            h = geventp2p.new_host(listen=["/ip4/127.0.0.1/tcp/0"], security=["noise"], muxers=["yamux"],
                                   services=["identify"])
            hosts.append(h)
            pss.append(FloodSub(h, options) if router == "floodsub" else GossipSub(h, options=options))
        t_pub: list[float] = [0.0] * messages
        got = [0]
        last_at = [0.0]
        per_msg = [0] * messages
        done_ev = gevent.event.Event()
        bar = Progress("pubsub", result.expected, out=progress_out, tty=tty)

        def reader(sub: Any, me: int) -> None:
            for msg in sub:
                now = time.monotonic()
                k = int.from_bytes(msg.data[:4], "big")
                if msg.received_from == hosts[me].id or not 0 <= k < messages:
                    continue  # our own message
                result.latencies.append(now - t_pub[k])
                last_at[0] = now
                per_msg[k] += 1
                if per_msg[k] == nodes - 1:
                    done_ev.set()
                got[0] += 1
                bar.update(got[0])

        topics = [ps.join(PUBSUB_TOPIC) for ps in pss]
        for i, t in enumerate(topics):
            readers.append(gevent.spawn(reader, t.subscribe(), i))
        pairs = {(i, (i + k) % nodes) for i in range(nodes) for k in range(1, PUBSUB_DIALS + 1) if (i + k) % nodes != i}
        pairs = {(a, b) for a, b in pairs if (b, a) not in pairs or a < b}
        result.links = len(pairs)
        jobs = [gevent.spawn(hosts[a].connect, hosts[b].p2p_addrs()[0], 15.0) for a, b in sorted(pairs)]
        gevent.joinall(jobs, raise_error=True)
        degree = [0] * nodes
        for a, b in pairs:
            degree[a] += 1
            degree[b] += 1
        deadline = time.monotonic() + PUBSUB_SETUP_TIMEOUT
        while True:
            if router == "floodsub":
                ready = all(len(t.list_peers()) >= degree[i] for i, t in enumerate(topics))
            else:
                ready = all(ps.router.mesh_peers(PUBSUB_TOPIC) for ps in pss)
            if ready:
                break
            if time.monotonic() > deadline:
                raise RemoteProtocolError(f"pubsub demo: meshes not formed within {PUBSUB_SETUP_TIMEOUT:.0f} s")
            gevent.sleep(0.05)
        result.setup_seconds = time.monotonic() - wall0
        dups0 = sum(ps.drop_counts.get("duplicate", 0) for ps in pss)

        filler = os.urandom(max(message_bytes, 4))
        t0 = time.monotonic()
        for k in range(messages):
            if k >= PUBSUB_WINDOW:  # flow control: at most PUBSUB_WINDOW messages still spreading
                j = k - PUBSUB_WINDOW
                wait_until = time.monotonic() + PUBSUB_WINDOW_WAIT
                while per_msg[j] < nodes - 1 and time.monotonic() < wait_until:
                    done_ev.clear()
                    done_ev.wait(max(0.0, wait_until - time.monotonic()))
            t_pub[k] = time.monotonic()
            try:
                topics[k % nodes].publish(k.to_bytes(4, "big") + filler[4:message_bytes], timeout=STREAM_TIMEOUT)
                result.published += 1
            except Exception as exc:
                result.publish_errors += 1
                if len(result.errors) < _MAX_ERROR_SAMPLES:
                    result.errors.append(f"publish {k}: {type(exc).__name__}: {' '.join(str(exc).split())}")
            if k % SPAWN_BATCH == SPAWN_BATCH - 1:
                gevent.sleep(0)
        last, last_change = -1, time.monotonic()
        while got[0] < result.expected and time.monotonic() - last_change < PUBSUB_DRAIN_TIMEOUT:
            if got[0] != last:
                last, last_change = got[0], time.monotonic()
            gevent.sleep(0.02)
        result.delivered = got[0]
        result.seconds = (last_at[0] or time.monotonic()) - t0
        result.duplicates = sum(ps.drop_counts.get("duplicate", 0) for ps in pss) - dups0
        note = "" if result.delivered == result.expected else f"{result.expected - result.delivered} missing"
        bar.finish(note)
    finally:
        for g in readers:
            g.kill(block=False)
        for h in hosts:
            h.close()
    result.latencies.sort()
    result.peak_rss_bytes = _peak_rss_bytes()
    result.build = build_description()
    result.python = f"{platform.python_version()} ({platform.python_implementation()})"
    import gevent as _gevent

    result.gevent = _gevent.__version__
    result.wall_seconds = time.monotonic() - wall0
    return result


def format_pubsub_table(r: PubSubDemoResult) -> str:
    """The pubsub summary table (plain text, one metric per row)."""
    rows: list[tuple[str, str]] = [
        ("messages/s", f"{r.msgs_per_s:.0f}  ({r.published}/{r.messages} x {_fmt_bytes(r.message_bytes)} "
                       f"in {r.seconds:.2f} s, first publish to last delivery)"),
        ("latency", f"p50 {percentile(r.latencies, 50) * 1000:.2f} ms, p99 {percentile(r.latencies, 99) * 1000:.2f} ms"
                    "  (publish to delivery)"),
        ("duplicates", f"{r.dups_per_node_msg:.2f} per node per message"),
        ("reliability", f"{r.reliability:.2f}%  ({r.delivered}/{r.expected} deliveries)"),
        ("publish errors", str(r.publish_errors)),
        ("setup", f"{r.setup_seconds:.2f} s  ({r.nodes} hosts, {r.links} links, meshes)"),
        ("peak RSS", f"{r.peak_rss_bytes / MiB:.1f} MiB"),
        ("build", r.build),
        ("python", r.python),
        ("gevent", r.gevent),
        ("wall time", f"{r.wall_seconds:.2f} s"),
    ]
    title = f"geventp2p demo --pubsub: {r.nodes} hosts, loopback TCP, {r.router}, one topic"
    note = "all hosts share this process and one core: every figure includes every node's work"
    width = max(len(k) for k, _ in rows)
    lines = [title, note, "-" * max(len(title), len(note))]
    lines += [f"{k:<{width}}  {v}" for k, v in rows]
    return "\n".join(lines)
