"""Prometheus metrics for a host (the optional extra ``geventp2p[metrics]``).

``register_host_metrics(host)`` adds one collector to a ``prometheus_client``
registry; ``serve_metrics("127.0.0.1:9464", registry)`` serves it in the Prometheus
text format at ``/metrics`` from a ``gevent.pywsgi`` server (a greenlet, not a
thread, so a scrape never runs beside the hub and needs no locks; no monkey
patching needed).  ``geventp2p serve --metrics 127.0.0.1:9464`` does both.

Names and labels follow go-libp2p where go has the metric (``p2p/net/swarm/
swarm_metrics.go``, ``p2p/host/resource-manager/stats.go``), so go's Grafana
dashboards (go-libp2p ``dashboards/swarm``, ``dashboards/resource-manager``) work
unchanged; metrics go does not have are named ``geventp2p_*``.

Cost: gauges are read from live state when scraped (no per-frame or per-stream
work).  The event counters (connections opened/closed, dial errors, handshake
latency) run once per connection or dial attempt, from the swarm's notification
dispatcher and its ``metrics_tracer`` hook.  Bandwidth needs a byte meter on each
stream, which sends every ``read``/``write`` call through the stream's slow path:
``register_host_metrics`` installs a :class:`~geventp2p.net.bandwidth.BandwidthCounter`
only when the swarm has none and ``bandwidth=True`` (the default).  Measured on one
loopback stream (compiled build, busy 2-core machine): within noise for 64 KiB
writes, about a quarter slower for 1 KiB writes; pass ``bandwidth=False`` to avoid it.
Bytes that arrive in the same read as a stream's protocol negotiation (a lazily
negotiated stream's first data) count in the totals but under no protocol.

One host per registry: a second host on the same registry is refused (the names
would collide); give each host its own :class:`prometheus_client.CollectorRegistry`.

Exported (``dir`` is ``inbound``/``outbound``)::

    libp2p_rcmgr_connections{dir,scope}            gauge, scope system|transient
    libp2p_rcmgr_streams{dir,scope,protocol}       gauge, scope system|transient|protocol
    libp2p_rcmgr_memory{scope,protocol}            gauge (bytes)
    libp2p_rcmgr_fds{scope}                        gauge
    libp2p_rcmgr_blocked_resources{dir,scope,resource}   refusals so far (a gauge, as in go)
    libp2p_rcmgr_peer_connections{dir}, libp2p_rcmgr_previous_peer_connections{dir}
    libp2p_rcmgr_peer_streams{dir}, libp2p_rcmgr_previous_peer_streams{dir}
    libp2p_rcmgr_peer_memory, libp2p_rcmgr_previous_peer_memory
        histograms over peers; go's dashboards plot ``peer_* - previous_peer_*``; here
        ``peer_*`` is the distribution now and ``previous_peer_*`` stays zero
    geventp2p_rcmgr_limit{scope,resource}          limits of the system and transient scopes
    libp2p_swarm_connections_opened_total{dir,transport,security,muxer,early_muxer,ip_version}
    libp2p_swarm_connections_closed_total{...same}
    libp2p_swarm_connection_duration_seconds{...same}  histogram
    libp2p_swarm_key_types_total{dir,key_type}
    libp2p_swarm_dial_errors_total{transport,error,ip_version}
    libp2p_swarm_handshake_latency_seconds{transport,security,muxer,early_muxer,ip_version}
    geventp2p_swarm_connections{dir,transport,security,muxer,ip_version}  gauge, live
    geventp2p_swarm_streams{dir,protocol}          gauge, live (protocol "" until negotiated)
    geventp2p_swarm_peers                          gauge
    geventp2p_swarm_notification_backlog           gauge
    geventp2p_bandwidth_bytes_total{dir}           dir in|out
    geventp2p_bandwidth_protocol_bytes_total{dir,protocol}
    geventp2p_bandwidth_peer_bytes_total{dir,peer} (``per_peer_bandwidth=True`` only)
    geventp2p_connmgr_connections, geventp2p_connmgr_peers, geventp2p_connmgr_protected_peers,
    geventp2p_connmgr_watermark{level}             gauges (level low|high)
    geventp2p_connmgr_trimmed_total                counter
"""

from __future__ import annotations

import logging
import time
from collections import Counter as _Tally
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Optional

from geventp2p.exceptions import ConfigError

try:
    from prometheus_client import CollectorRegistry, Counter, Histogram
    from prometheus_client import REGISTRY as _DEFAULT_REGISTRY
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )
    from prometheus_client.registry import Collector
    from prometheus_client.utils import floatToGoString

    _IMPORT_ERROR: Optional[ImportError] = None
except ImportError as exc:  # the extra is not installed: fail on use, with the fix
    _IMPORT_ERROR = exc
    Collector = object  # type: ignore[assignment,misc]

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

__all__ = [
    "register_host_metrics",
    "serve_metrics",
    "HostMetrics",
    "MetricsServer",
    "SwarmTracer",
    "available",
    "parse_listen",
    "start_host_metrics",
    "HostMetricsEndpoint",
]

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'geventp2p[metrics]'"

#: go ``connection_duration_seconds``: 1/16 s doubling 25 times (up to ~24 days).
DURATION_BUCKETS = tuple((1.0 / 16) * 2 ** i for i in range(25))
#: go ``handshake_latency_seconds``: 1 ms growing by 1.3x, 35 buckets.
HANDSHAKE_BUCKETS = tuple(0.001 * 1.3 ** i for i in range(35))
#: go ``peer_connections`` / ``peer_streams``.
COUNT_BUCKETS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 16, 32, 64, 128, 256)
#: go ``peer_memory``: 1 KiB .. 4 GiB.
MEMORY_BUCKETS = (1 << 10, 4 << 10, 32 << 10, 1 << 20, 32 << 20, 256 << 20, 512 << 20, 1 << 30, 2 << 30, 4 << 30)

_CONN_LABELS = ["dir", "transport", "security", "muxer", "early_muxer", "ip_version"]
#: Transport protocol names, most specific first (go ``metricshelper.GetTransport``, plus memory).
_TRANSPORTS = ("p2p-circuit", "webrtc", "webrtc-direct", "webtransport", "quic", "quic-v1",
               "wss", "ws", "tcp", "memory")


def available() -> bool:
    """True when ``prometheus_client`` (the ``metrics`` extra) is importable."""
    return _IMPORT_ERROR is None


def _require() -> None:
    if _IMPORT_ERROR is not None:
        raise ConfigError(f"metrics need the prometheus_client package ({INSTALL_HINT}): {_IMPORT_ERROR}")


# --------------------------------------------------------------------------- labels


def _parts(addr: Any) -> list[str]:
    return [p for p in str(addr).split("/") if p] if addr is not None else []


def transport_label(addr: Any) -> str:
    """The transport protocol of a multiaddr (``tcp``, ``quic-v1``, ``ws``, ``memory``...) or ``other``."""
    parts = _parts(addr)
    for name in _TRANSPORTS:
        if name in parts:
            return name
    return "other"


def ip_version_label(addr: Any) -> str:
    """``ip4``/``ip6`` from the first component of a multiaddr, else ``unknown``."""
    parts = _parts(addr)
    if parts:
        if parts[0] in ("ip4", "dns4"):
            return "ip4"
        if parts[0] in ("ip6", "dns6"):
            return "ip6"
    return "unknown"


def _dir(direction: Any) -> str:
    return str(getattr(direction, "value", direction) or "unknown")


def _conn_labels(conn: Any) -> tuple[str, ...]:
    """``dir, transport, security, muxer, early_muxer, ip_version`` of a connection."""
    laddr = getattr(conn, "local_addr", None)
    return (
        _dir(getattr(conn, "direction", None)),
        transport_label(laddr if laddr is not None else getattr(conn, "remote_addr", None)),
        str(getattr(conn, "security", "") or ""),
        str(getattr(conn, "muxer", "") or ""),
        "false",  # no early muxer negotiation (TLS ALPN / Noise extensions) yet
        ip_version_label(laddr),
    )


def dial_error_label(exc: BaseException) -> str:
    """go's causes (``timeout``, ``deadline``, ``canceled``, ``connection refused``, ``other``)
    plus ``gated`` and ``handshake`` (security or muxer negotiation failed)."""
    from geventp2p.exceptions import DialGatedError, NegotiationError, P2PTimeoutError, SecurityError

    seen: set[int] = set()
    e: Optional[BaseException] = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, ConnectionRefusedError) or "connection refused" in str(e).lower():
            return "connection refused"
        if isinstance(e, (P2PTimeoutError, TimeoutError)):
            return "timeout"
        if isinstance(e, DialGatedError):
            return "gated"
        if isinstance(e, (SecurityError, NegotiationError)):
            return "handshake"
        e = e.__cause__ or e.__context__
    return "other"


# --------------------------------------------------------------------------- event-based (swarm)


class SwarmTracer:
    """Counters that need events: a swarm notifiee plus the swarm's ``metrics_tracer`` hook.

    ``connected``/``disconnected`` run on the swarm's notification dispatcher;
    ``completed_handshake``/``failed_dialing`` run once per outbound dial attempt
    (go ``swarm.MetricsTracer``).  No method blocks or switches greenlets.
    """

    def __init__(self) -> None:
        _require()
        self.opened = Counter("libp2p_swarm_connections_opened", "Connections Opened", _CONN_LABELS,
                              registry=None)
        self.closed = Counter("libp2p_swarm_connections_closed", "Connections Closed", _CONN_LABELS,
                              registry=None)
        self.duration = Histogram("libp2p_swarm_connection_duration_seconds", "Duration of a Connection",
                                  _CONN_LABELS, buckets=DURATION_BUCKETS, registry=None)
        self.key_types = Counter("libp2p_swarm_key_types", "key type", ["dir", "key_type"], registry=None)
        self.dial_errors = Counter("libp2p_swarm_dial_errors", "Dial Error", ["transport", "error", "ip_version"],
                                   registry=None)
        self.handshake = Histogram("libp2p_swarm_handshake_latency_seconds", "Duration of the libp2p Handshake",
                                   _CONN_LABELS[1:], buckets=HANDSHAKE_BUCKETS, registry=None)
        # connections counted as opened and not yet as closed: a notification queued
        # around attach time is then neither counted twice nor closed without opening
        self._open: set[Any] = set()

    def metrics(self) -> Iterator["Metric"]:
        for m in (self.opened, self.closed, self.duration, self.key_types, self.dial_errors, self.handshake):
            yield from m.collect()

    # Every method swallows its own errors: the dial worker calls them on its result path.

    # -- swarm notifiee
    def connected(self, net: Any, conn: Any) -> None:
        if conn in self._open:
            return
        self._open.add(conn)
        try:
            labels = _conn_labels(conn)
            self.opened.labels(*labels).inc()
            kt = getattr(getattr(conn, "remote_public_key", None), "key_type", None)
            self.key_types.labels(labels[0], getattr(kt, "name", str(kt))).inc()
        except Exception:  # pragma: no cover - metrics must never break the swarm
            log.debug("metrics: connected(%r) failed", conn, exc_info=True)

    def disconnected(self, net: Any, conn: Any) -> None:
        if conn not in self._open:
            return
        self._open.discard(conn)
        try:
            labels = _conn_labels(conn)
            self.closed.labels(*labels).inc()
            opened_at = getattr(conn, "opened_at", None)
            if opened_at is not None:
                self.duration.labels(*labels).observe(max(0.0, time.time() - opened_at))
        except Exception:  # pragma: no cover
            log.debug("metrics: disconnected(%r) failed", conn, exc_info=True)

    # -- the swarm's metrics_tracer hook (outbound dials)
    def completed_handshake(self, seconds: float, conn: Any) -> None:
        try:
            self.handshake.labels(*_conn_labels(conn)[1:]).observe(seconds)
        except Exception:  # pragma: no cover
            log.debug("metrics: completed_handshake failed", exc_info=True)

    def failed_dialing(self, addr: Any, exc: BaseException) -> None:
        try:
            self.dial_errors.labels(transport_label(addr), dial_error_label(exc), ip_version_label(addr)).inc()
        except Exception:  # pragma: no cover
            log.debug("metrics: failed_dialing(%s) failed", addr, exc_info=True)


# --------------------------------------------------------------------------- scrape-time readers


def _gauge(name: str, doc: str, labels: Iterable[str] = ()) -> "GaugeMetricFamily":
    return GaugeMetricFamily(name, doc, labels=list(labels))


def _histogram(family: "HistogramMetricFamily", values: Iterable[float], buckets: Iterable[float],
               labels: tuple[str, ...] = ()) -> "HistogramMetricFamily":
    """Add the cumulative buckets of ``values`` to ``family`` (under ``labels``)."""
    vals = sorted(values)
    out: list[tuple[str, float]] = []
    i = 0
    for b in buckets:
        while i < len(vals) and vals[i] <= b:
            i += 1
        out.append((floatToGoString(b), i))
    out.append(("+Inf", len(vals)))
    family.add_metric(list(labels), out, sum(vals))
    return family


#: Our refusal resources -> go's ``(dir, resource)`` labels of ``blocked_resources``.
_BLOCKED = {
    "streams (inbound)": ("inbound", "stream"),
    "streams (outbound)": ("outbound", "stream"),
    "streams": ("", "stream"),
    "conns (inbound)": ("inbound", "connection"),
    "conns (outbound)": ("outbound", "connection"),
    "conns": ("", "connection"),
    "fd": ("", "fd"),
    "memory": ("", "memory"),
}


def _scope_kind(kind: str) -> str:
    """go's top scope name: before ``:``, then before ``-`` (``protocol-peer`` -> ``protocol``)."""
    return kind.split(":", 1)[0].split("-", 1)[0]


def rcmgr_metrics(rcmgr: Any) -> Iterator["Metric"]:
    """The ``libp2p_rcmgr_*`` families of a resource manager with ``stat()`` and ``blocked``."""
    st = rcmgr.stat()
    top = (("system", st["system"]), ("transient", st["transient"]))
    conns = _gauge("libp2p_rcmgr_connections", "Number of Connections", ["dir", "scope"])
    streams = _gauge("libp2p_rcmgr_streams", "Number of Streams", ["dir", "scope", "protocol"])
    memory = _gauge("libp2p_rcmgr_memory", "Amount of memory reserved as reported to the Resource Manager",
                    ["scope", "protocol"])
    fds = _gauge("libp2p_rcmgr_fds", "Number of file descriptors reserved as reported to the Resource Manager",
                 ["scope"])
    for name, s in top:
        conns.add_metric(["inbound", name], s.num_conns_inbound)
        conns.add_metric(["outbound", name], s.num_conns_outbound)
        streams.add_metric(["inbound", name, ""], s.num_streams_inbound)
        streams.add_metric(["outbound", name, ""], s.num_streams_outbound)
        memory.add_metric([name, ""], s.memory)
        fds.add_metric([name], s.num_fd)
    for proto, s in sorted(st.get("protocols", {}).items()):
        streams.add_metric(["inbound", "protocol", proto], s.num_streams_inbound)
        streams.add_metric(["outbound", "protocol", proto], s.num_streams_outbound)
        memory.add_metric(["protocol", proto], s.memory)
    yield from (conns, streams, memory, fds)

    blocked = _gauge("libp2p_rcmgr_blocked_resources", "Number of blocked resources", ["dir", "scope", "resource"])
    tally: _Tally[tuple[str, str, str]] = _Tally()
    for (kind, resource), n in dict(getattr(rcmgr, "blocked", {})).items():
        d, res = _BLOCKED.get(resource, ("", resource))
        tally[(d, _scope_kind(kind), res)] += n
    for labels, n in sorted(tally.items()):
        blocked.add_metric(list(labels), n)
    yield blocked

    peers = list(st.get("peers", {}).values())
    for base, doc, attr_in, attr_out in (
        ("peer_connections", "Number of connections this peer has", "num_conns_inbound", "num_conns_outbound"),
        ("peer_streams", "Number of streams this peer has", "num_streams_inbound", "num_streams_outbound"),
    ):
        now = HistogramMetricFamily(f"libp2p_rcmgr_{base}", doc, labels=["dir"])
        prev = HistogramMetricFamily(f"libp2p_rcmgr_previous_{base}", f"{doc} (previously; stays zero here)",
                                     labels=["dir"])
        for d, attr in (("inbound", attr_in), ("outbound", attr_out)):
            vals = [getattr(s, attr) for s in peers if getattr(s, attr)]
            _histogram(now, vals, COUNT_BUCKETS, (d,))
            _histogram(prev, (), COUNT_BUCKETS, (d,))
        yield from (now, prev)
    yield _histogram(HistogramMetricFamily("libp2p_rcmgr_peer_memory",
                                           "How many peers have reserved this bucket of memory"),
                     [s.memory for s in peers if s.memory], MEMORY_BUCKETS)
    yield _histogram(HistogramMetricFamily("libp2p_rcmgr_previous_peer_memory",
                                           "Previous peer memory (stays zero here)"), (), MEMORY_BUCKETS)

    limits = getattr(rcmgr, "limits", None)
    if limits is not None:
        lim = _gauge("geventp2p_rcmgr_limit", "Limit of a resource manager scope", ["scope", "resource"])
        for name in ("system", "transient"):
            scope_limit = getattr(limits, name, None)
            if scope_limit is None:
                continue
            for res in ("streams", "streams_inbound", "streams_outbound", "conns", "conns_inbound",
                        "conns_outbound", "fd", "memory"):
                v = getattr(scope_limit, res, None)
                if isinstance(v, int):
                    lim.add_metric([name, res], v)
        yield lim


def swarm_metrics(swarm: Any) -> Iterator["Metric"]:
    """Live connections and streams of a swarm (``geventp2p_swarm_*``)."""
    conns: _Tally[tuple[str, ...]] = _Tally()
    streams: _Tally[tuple[str, str]] = _Tally()
    for c in swarm.conns():
        if getattr(c, "closed", False):
            continue
        d, transport, sec, mux, _early, ipv = _conn_labels(c)
        conns[(d, transport, sec, mux, ipv)] += 1
        for s in c.streams():
            streams[(_dir(getattr(s, "direction", None)), str(getattr(s, "protocol", None) or ""))] += 1
    g = _gauge("geventp2p_swarm_connections", "Open connections",
               ["dir", "transport", "security", "muxer", "ip_version"])
    for labels, n in sorted(conns.items()):
        g.add_metric(list(labels), n)
    yield g
    g = _gauge("geventp2p_swarm_streams", "Open streams by protocol (\"\" until negotiated)", ["dir", "protocol"])
    for labels2, n in sorted(streams.items()):
        g.add_metric(list(labels2), n)
    yield g
    g = _gauge("geventp2p_swarm_peers", "Peers with at least one open connection")
    g.add_metric([], len(swarm.peers()))
    yield g
    backlog = getattr(swarm, "notification_backlog", None)
    if isinstance(backlog, int):
        g = _gauge("geventp2p_swarm_notification_backlog", "Swarm notifications queued, not yet delivered")
        g.add_metric([], backlog)
        yield g


def bandwidth_metrics(counter: Any, per_peer: bool) -> Iterator["Metric"]:
    """Byte totals of a :class:`~geventp2p.net.bandwidth.BandwidthCounter`."""
    t = counter.totals()
    c = CounterMetricFamily("geventp2p_bandwidth_bytes", "Bytes read and written on streams", labels=["dir"])
    c.add_metric(["in"], t.total_in)
    c.add_metric(["out"], t.total_out)
    yield c
    c = CounterMetricFamily("geventp2p_bandwidth_protocol_bytes", "Stream bytes by protocol",
                            labels=["dir", "protocol"])
    for proto, s in sorted(counter.stats_by_protocol().items()):
        c.add_metric(["in", proto], s.total_in)
        c.add_metric(["out", proto], s.total_out)
    yield c
    if per_peer:
        c = CounterMetricFamily("geventp2p_bandwidth_peer_bytes", "Stream bytes by peer", labels=["dir", "peer"])
        for peer, s in sorted(counter.stats_by_peer().items(), key=lambda kv: str(kv[0])):
            c.add_metric(["in", str(peer)], s.total_in)
            c.add_metric(["out", str(peer)], s.total_out)
        yield c


def connmgr_metrics(cm: Any) -> Iterator["Metric"]:
    """The connection manager's figures (``geventp2p_connmgr_*``)."""
    g = _gauge("geventp2p_connmgr_connections", "Connections the connection manager counts")
    g.add_metric([], cm.connection_count())
    yield g
    g = _gauge("geventp2p_connmgr_peers", "Peers the connection manager tracks (connected or tagged)")
    g.add_metric([], len(getattr(cm, "_peers", ())))
    yield g
    g = _gauge("geventp2p_connmgr_protected_peers", "Peers protected from trimming")
    g.add_metric([], len(getattr(cm, "_protected", ())))
    yield g
    g = _gauge("geventp2p_connmgr_watermark", "Connection manager watermarks", ["level"])
    g.add_metric(["low"], cm.config.low)
    g.add_metric(["high"], cm.config.high)
    yield g
    c = CounterMetricFamily("geventp2p_connmgr_trimmed", "Connections closed by trimming")
    c.add_metric([], getattr(cm, "trimmed", 0))
    yield c


# --------------------------------------------------------------------------- the host collector


class HostMetrics(Collector):
    """One host's metrics: a ``prometheus_client`` collector (see the module docstring).

    Made by :func:`register_host_metrics`; :meth:`close` unregisters it and detaches
    from the swarm.  ``resource_manager``, ``connmgr`` and ``bandwidth`` are what is
    read on each scrape (None: that group is left out).
    """

    def __init__(self, host: Any, *, resource_manager: Any = None, bandwidth: Any = None,
                 per_peer_bandwidth: bool = False) -> None:
        _require()
        self.host = host
        self.swarm = getattr(host, "network", host)
        self.resource_manager = resource_manager
        self.connmgr = getattr(host, "connmgr", None)
        self.bandwidth = bandwidth
        self.per_peer_bandwidth = per_peer_bandwidth
        self.tracer = SwarmTracer()
        self.registry: Optional["CollectorRegistry"] = None
        self._attached = False
        self._installed_meter = False

    def attach(self) -> None:
        """Count the connections open now as opened, then follow the swarm's events."""
        swarm = self.swarm
        for c in swarm.conns():
            self.tracer.connected(swarm, c)
        swarm.notify(self.tracer)
        if getattr(swarm, "metrics_tracer", None) is None:
            swarm.metrics_tracer = self.tracer
        self._attached = True

    def describe(self) -> Iterator["Metric"]:
        # what the registry checks for name collisions (the families are cheap to build)
        return self.collect()

    def collect(self) -> Iterator["Metric"]:
        yield from self.tracer.metrics()
        yield from swarm_metrics(self.swarm)
        rm = self.resource_manager
        if rm is not None:
            yield from rcmgr_metrics(rm)
        if self.bandwidth is not None:
            yield from bandwidth_metrics(self.bandwidth, self.per_peer_bandwidth)
        if self.connmgr is not None:
            yield from connmgr_metrics(self.connmgr)

    def close(self) -> None:
        """Unregister from the registry and stop following the swarm (idempotent)."""
        reg, self.registry = self.registry, None
        if reg is not None:
            try:
                reg.unregister(self)
            except KeyError:
                pass
        if self._attached:
            self._attached = False
            self.swarm.stop_notify(self.tracer)
            self.tracer._open.clear()
            if getattr(self.swarm, "metrics_tracer", None) is self.tracer:
                self.swarm.metrics_tracer = None
        if self._installed_meter and getattr(self.swarm, "bandwidth_reporter", None) is self.bandwidth:
            self._installed_meter = False
            self.swarm.bandwidth_reporter = None  # streams opened from now on are not metered


def _find_rcmgr(host: Any) -> Any:
    for obj in (host, getattr(host, "network", None)):
        rm = getattr(obj, "resource_manager", None) if obj is not None else None
        if callable(rm):
            rm = rm()
        if rm is not None and callable(getattr(rm, "stat", None)):
            return rm
    return None


def register_host_metrics(
    host: Any,
    registry: Optional["CollectorRegistry"] = None,
    *,
    resource_manager: Any = None,
    bandwidth: bool = True,
    per_peer_bandwidth: bool = False,
) -> HostMetrics:
    """Blocks no greenlet.  Collect ``host``'s metrics into ``registry`` (default: the
    ``prometheus_client`` global registry) and return the :class:`HostMetrics`.

    * ``resource_manager``: the resource manager to report (default: the host's or its
      swarm's ``resource_manager``, if it has one with ``stat()``).
    * ``bandwidth``: report the swarm's bandwidth reporter; when the swarm has none, a
      :class:`~geventp2p.net.bandwidth.BandwidthCounter` is installed, which meters
      the streams opened from now on (each read/write takes the slow path).
      False: no bandwidth metrics and no meter.
    * ``per_peer_bandwidth``: also export bytes per peer (one series per peer).

    Raises :class:`~geventp2p.exceptions.ConfigError` when ``prometheus_client`` is
    missing or the registry already holds these names (another host).
    """
    _require()
    reg = _DEFAULT_REGISTRY if registry is None else registry
    swarm = getattr(host, "network", host)
    meter = None
    install = False
    if bandwidth:
        meter = getattr(swarm, "bandwidth_reporter", None)
        if meter is None:
            from geventp2p.net.bandwidth import BandwidthCounter

            meter, install = BandwidthCounter(), True
        elif not callable(getattr(meter, "stats_by_protocol", None)):
            meter = None  # a reporter of the user's own kind: nothing to read back
    rm = resource_manager if resource_manager is not None else _find_rcmgr(host)
    hm = HostMetrics(host, resource_manager=rm, bandwidth=meter, per_peer_bandwidth=per_peer_bandwidth)
    try:
        reg.register(hm)
    except ValueError as exc:
        raise ConfigError(f"cannot register host metrics: {exc} (one host per registry)") from exc
    hm.registry = reg
    if install:
        swarm.bandwidth_reporter = meter
        hm._installed_meter = True
    hm.attach()
    return hm


# --------------------------------------------------------------------------- HTTP endpoint


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or ``:PORT`` (all interfaces) -> ``(host, port)``."""
    text = text.strip()
    host, sep, port_s = text.rpartition(":")
    if not sep:
        raise ConfigError(f"metrics address must be HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_s)
    except ValueError:
        raise ConfigError(f"metrics address must be HOST:PORT, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"metrics port out of range: {port}")
    return host or "0.0.0.0", port


class MetricsServer:
    """A ``gevent.pywsgi`` server answering ``GET /metrics`` (anything else: 404)."""

    def __init__(self, listen: str | tuple[str, int], registry: Optional["CollectorRegistry"] = None) -> None:
        _require()
        from gevent.pywsgi import WSGIServer
        from prometheus_client import make_wsgi_app

        addr = parse_listen(listen) if isinstance(listen, str) else listen
        metrics_app = make_wsgi_app(_DEFAULT_REGISTRY if registry is None else registry)

        def app(environ: dict, start_response: Any) -> Any:
            if environ.get("PATH_INFO", "/") not in ("/metrics", "/metrics/"):
                start_response("404 Not Found", [("Content-Type", "text/plain")])
                return [b"not found: try /metrics\n"]
            return metrics_app(environ, start_response)

        self._server = WSGIServer(addr, app, log=None, error_log=log)
        self._server.start()  # binds now: errors (address in use) surface here

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)``."""
        a = self._server.address
        return str(a[0]), int(a[1])

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}/metrics"

    def close(self) -> None:
        """Stop listening (idempotent)."""
        self._server.stop(timeout=1)


def serve_metrics(listen: str | tuple[str, int], registry: Optional["CollectorRegistry"] = None) -> MetricsServer:
    """Blocks the calling greenlet only to bind.  Serve ``registry`` at
    ``http://<listen>/metrics`` on a greenlet until ``close()``."""
    return MetricsServer(listen, registry)


class HostMetricsEndpoint:
    """What :func:`start_host_metrics` returns: the collector, the server, ``url`` and ``close()``."""

    def __init__(self, metrics: HostMetrics, server: MetricsServer, registry: "CollectorRegistry") -> None:
        self.metrics = metrics
        self.server = server
        self.registry = registry

    @property
    def url(self) -> str:
        return self.server.url

    def close(self) -> None:
        """Stop the server and detach the collector (idempotent)."""
        self.server.close()
        self.metrics.close()


def start_host_metrics(host: Any, listen: str | tuple[str, int], registry: Optional["CollectorRegistry"] = None,
                       **options: Any) -> HostMetricsEndpoint:
    """Blocks the calling greenlet only to bind.  :func:`register_host_metrics` plus
    :func:`serve_metrics` (what ``geventp2p serve --metrics`` runs).

    Without ``registry`` the host gets a registry of its own, with ``prometheus_client``'s
    process, platform and garbage-collector collectors beside it.  ``options`` go to
    :func:`register_host_metrics`.  Raises :class:`~geventp2p.exceptions.ConfigError`
    without ``prometheus_client``, ``OSError`` when the address cannot be bound.
    """
    _require()
    if registry is None:
        from prometheus_client import GCCollector, PlatformCollector, ProcessCollector

        registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    hm = register_host_metrics(host, registry, **options)
    try:
        server = serve_metrics(listen, registry)
    except BaseException:
        hm.close()
        raise
    return HostMetricsEndpoint(hm, server, registry)
