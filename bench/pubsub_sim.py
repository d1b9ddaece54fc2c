"""Pubsub dissemination simulation: N hosts in one process (issue #11).

    python -m bench.pubsub_sim [--nodes 100,1000] [--routers gossipsub,floodsub] [--faults 0,0.1]
                               [--messages 64] [--size 1024] [--seed 1] [--out bench/results] [--json]

Every scenario (nodes x router x fault fraction) runs in a fresh child process of this
module (``--scenario``), which prints one JSON object; the parent collects them, prints a
table and writes ``pubsub-sim-<UTC>.{json,md,csv}`` plus one chart per measure.

One scenario:

1. **Network.**  N full hosts (Noise + yamux, no identify or ping) on
   :class:`~geventp2p.testing.mocknet.MockNet`'s memory transport.  A seeded random
   graph gives every host 10-20 links (``--degree``); every link has its own one-way
   latency drawn from 20-80 ms (``--latency``).  Bytes each host writes to its
   connections are counted below the security layer (so they include Noise and yamux).
2. **Pubsub.**  Every host runs :class:`~geventp2p.pubsub.GossipSub` (go's defaults: D=6,
   D_lo=5, D_hi=12, heartbeat 1 s, IDONTWANT for messages of 1 KiB or more) with peer
   scoring when there are droppers (:func:`score_params`, thresholds gossip -10 / publish
   -50 / graylist -80), or :class:`~geventp2p.pubsub.FloodSub`; all subscribe to one
   topic, StrictSign.  Pubsub starts once every link is up.
3. **Faults.**  With ``--faults 0.1`` a seeded 10% of the hosts are *droppers*: an inline
   validator answers IGNORE for every message, so they deliver and forward nothing (nor
   keep it for gossip) while staying connected and grafted.  A monitor samples every
   honest host's score of every dropper it has had in its mesh, each 0.25 s, and records
   when it first falls below the graylist threshold (time counted from the first message).
4. **Warm-up.**  Warm-up messages flow from the moment pubsub starts, at the pace of the
   measured ones, until the meshes have formed (every host has ``min(D_lo, degree)`` mesh
   peers, at most 30 s) and at least ``--warmup`` were sent (with faults: enough for 16 s
   of traffic, so that scores have moved before the measured messages).
5. **Measure.**  ``--messages`` (64) messages of ``--size`` bytes, each from a different
   random honest publisher, one every ``--interval`` s (default ``max(0.25, 0.003 x N)``),
   then up to ``--drain`` s for the last ones to arrive.

Reported per scenario: reliability (honest non-publisher receipts / expected, %), the
latency to reach 90%, 99% and 100% of the honest hosts (median over messages, and the
worst message), duplicates per host per message (copies the router dropped as
``duplicate``, over the measured window), bytes sent per host (per message, and in
total over the window), wall time of the whole scenario, and with faults the graylist
times.  All hosts share one gevent hub on one core, so a busy CPU adds queueing delay
to every hop: the ``cpu_busy`` figure (process CPU time / wall time during the measured
window) says how loaded the run was.

Charts: matplotlib when it is installed (PNG); otherwise a plain SVG bar chart written
by this module (one per measure) and a CSV of the same rows.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
TOPIC = "sim"
KiB = 1024


def log(msg: str) -> None:
    print(f"[pubsub_sim {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- topology


def random_graph(n: int, lo: int, hi: int, rng: random.Random) -> list[tuple[int, int]]:
    """Undirected edges giving every node between ``lo`` and ``hi`` neighbours (seeded).

    Each node draws a target degree in [lo, hi]; stubs are paired at random (no self
    loops or double edges); nodes still below ``lo`` are then linked to random nodes
    below ``hi``.  Needs ``n > hi``.
    """
    if n <= hi:
        lo, hi = min(lo, n - 1), n - 1
    target = [rng.randint(lo, hi) for _ in range(n)]
    adj: list[set[int]] = [set() for _ in range(n)]
    stubs = [i for i in range(n) for _ in range(target[i])]
    rng.shuffle(stubs)
    for _ in range(3):  # a few passes pair most stubs
        left: list[int] = []
        while len(stubs) > 1:
            a, b = stubs.pop(), stubs.pop()
            if a == b or b in adj[a]:
                left += [a, b]
                continue
            adj[a].add(b)
            adj[b].add(a)
        stubs = left + stubs
        rng.shuffle(stubs)
    for i in range(n):
        tries = 0
        while len(adj[i]) < lo and tries < 10 * n:
            tries += 1
            j = rng.randrange(n)
            if j != i and j not in adj[i] and len(adj[j]) < hi:
                adj[i].add(j)
                adj[j].add(i)
    return sorted({(min(i, j), max(i, j)) for i in range(n) for j in adj[i]})


# ----------------------------------------------------------------------------- scoring


GRAYLIST = -80.0
#: Indices of warm-up messages start here (the measured ones count from 0).
WARM_BASE = 1 << 30


def score_params(rate: float = 4.0) -> tuple[Any, Any]:
    """Peer scoring for the simulation's topic, for ``rate`` messages per second.

    P3 is scaled to the traffic: a mesh peer is credited with each message it sends us
    first or within ``max(2, 1 / rate)`` s of the first (a counter decaying x0.9 per second, so an honest
    mesh peer that sends half the messages holds about ``5 x rate``), and once it has
    been in the mesh for ``max(5, 5 / rate)`` s it must hold ``rate`` deliveries.  A
    dropper holds 0: its deficit costs 100 (P3), below the graylist threshold (-80), and
    once pruned 150 (P3b, x0.99 per second: below the threshold for about a minute).
    First deliveries earn up to +10 (P2), time in mesh up to +1 (P1).  P3 expects traffic:
    the simulation publishes from the moment pubsub starts, and turns scoring on only with
    droppers (``--scoring``).
    """
    from geventp2p.sansio.pubsub.score import PeerScoreParams, PeerScoreThresholds, TopicScoreParams

    threshold = rate
    tp = TopicScoreParams(
        topic_weight=1.0,
        time_in_mesh_weight=0.1, time_in_mesh_quantum=1.0, time_in_mesh_cap=10.0,
        first_message_deliveries_weight=1.0, first_message_deliveries_decay=0.9,
        first_message_deliveries_cap=10.0,
        mesh_message_deliveries_weight=-100.0 / (threshold * threshold), mesh_message_deliveries_decay=0.9,
        mesh_message_deliveries_cap=max(20.0, 10 * threshold), mesh_message_deliveries_threshold=threshold,
        mesh_message_deliveries_window=max(2.0, 1.0 / rate), mesh_message_deliveries_activation=activation(rate),
        mesh_failure_penalty_weight=-150.0 / (threshold * threshold), mesh_failure_penalty_decay=0.99,
        invalid_message_deliveries_weight=-100.0, invalid_message_deliveries_decay=0.5,
    )
    params = PeerScoreParams(topics={TOPIC: tp}, topic_score_cap=50.0,
                             behaviour_penalty_weight=-10.0, behaviour_penalty_threshold=6.0,
                             behaviour_penalty_decay=0.9, decay_interval=1.0, decay_to_zero=0.01)
    thresholds = PeerScoreThresholds(gossip=-10.0, publish=-50.0, graylist=GRAYLIST, accept_px=10.0,
                                     opportunistic_graft=2.0)
    return params, thresholds


def activation(rate: float) -> float:
    """P3 activation (seconds in the mesh before deliveries are judged) at ``rate`` msgs/s."""
    return max(5.0, 5.0 / rate)


# ----------------------------------------------------------------------------- one scenario


def _percentile_time(times: list[float], frac: float, total: int) -> Optional[float]:
    """Seconds until ``frac`` of ``total`` receivers had the message (None: never)."""
    need = max(1, -(-int(round(frac * total * 1000)) // 1000))  # ceil without float noise
    if len(times) < need:
        return None
    return sorted(times)[need - 1]


def make_net(n: int, args: argparse.Namespace, rng: random.Random) -> tuple[Any, list[Any], list[list[int]], Any]:
    """The MockNet with ``n`` byte-counting hosts and the seeded links; returns (net, hosts, adj, counters)."""
    from geventp2p.core import addr as _addr
    from geventp2p.defaults import new_host
    from geventp2p.testing import mocknet

    sent: dict[Any, int] = {}

    class CountingTransport(mocknet._MockTransport):
        """The mocknet transport, counting what its host writes on every connection."""

        def _count(self, conn: Any) -> Any:
            raw = conn._write_raw
            me = self.local_peer

            def write_raw(data: Any) -> None:
                sent[me] = sent.get(me, 0) + len(data)
                raw(data)

            conn._write_raw = write_raw
            return conn

        def dial(self, ma: Any, timeout: Optional[float] = None) -> Any:
            return self._count(super().dial(ma, timeout))

        def listen(self, ma: Any, handler: Any) -> Any:
            return super().listen(ma, lambda conn: handler(self._count(conn)))

    net = mocknet.MockNet(security=args.security, muxers="yamux")
    hosts = []
    for _ in range(n):
        tr = CountingTransport(net)
        h = new_host(listen=("/memory/0",), transports=[tr], security=args.security, muxers="yamux",
                     services=[], connmgr=None)
        tr.local_peer = h.id
        for a in h.network.listen_addresses():
            net._mem_owner[_addr.memory_id(a)] = h.id
        net.hosts.append(h)
        hosts.append(h)
    lo, hi = args.degree
    edges = random_graph(n, lo, hi, rng)
    adj: list[list[int]] = [[] for _ in range(n)]
    llo, lhi = args.latency
    from dataclasses import replace

    for a, b in edges:
        # MockNet.link_peers also clears dial backoffs, scanning every host: not needed before any dial
        net._links[frozenset((hosts[a].id, hosts[b].id))] = replace(net.default_link,
                                                                    latency=rng.uniform(llo, lhi) / 1000.0)
        adj[a].append(b)
        adj[b].append(a)
    return net, hosts, adj, sent


def run_scenario(args: argparse.Namespace) -> dict[str, Any]:
    import gevent
    from gevent.pool import Pool

    from geventp2p.pubsub import IGNORE, FloodSub, GossipSub, PubSubOptions

    n, router, fault = args.nodes[0], args.routers[0], args.faults[0]
    scoring = router == "gossipsub" and (args.scoring == "on" or (args.scoring == "auto" and fault > 0))
    rng = random.Random(args.seed)
    wall0 = time.monotonic()
    net, hosts, adj, sent = make_net(n, args, rng)
    # ---- connect
    t0 = time.monotonic()
    pool = Pool(args.concurrency)
    failures: list[str] = []

    def connect(a: int, b: int) -> None:
        try:
            hosts[a].connect(hosts[b].peer_info(), timeout=60.0)
        except Exception as exc:  # noqa: BLE001 - counted
            failures.append(f"{type(exc).__name__}: {exc}"[:200])

    for a in range(n):
        for b in adj[a]:
            if a < b:
                pool.spawn(connect, a, b) if rng.random() < 0.5 else pool.spawn(connect, b, a)
    pool.join()
    connect_s = time.monotonic() - t0
    log(f"{n} hosts, {sum(len(x) for x in adj) // 2} links connected in {connect_s:.1f} s"
        f" ({len(failures)} failures)")

    # pubsub starts once every link is up (it adopts the connections it finds): with it
    # running during a long connect phase, early meshes would idle past the P3 activation
    # and every honest peer would be penalised for not delivering messages nobody sent
    # a generous open timeout: N x degree pubsub streams open at once on one busy core, and
    # a peer whose stream does not open in time is never tried again
    options = PubSubOptions(trace=False, subscription_buffer=4096, open_timeout=300.0)
    pss: list[Any] = []
    for h in hosts:
        if router == "floodsub":
            pss.append(FloodSub(h, options))
        else:
            from geventp2p.sansio.pubsub.gossipsub import GossipSubParams

            sp, th = score_params(1.0 / args.interval)
            gp = GossipSubParams(d=args.d, d_lo=min(args.d, 5), d_hi=max(args.d, 12), d_score=min(args.d, 4),
                                 d_out=min(2, (args.d - 1) // 2),
                                 idontwant_message_threshold=(1 << 30) if args.no_idontwant else 1024)
            pss.append(GossipSub(h, gp, options=options, score_params=sp if scoring else None,
                                 score_thresholds=th if scoring else None))
    droppers = set(rng.sample(range(n), int(round(fault * n)))) if fault > 0 else set()
    honest = [i for i in range(n) if i not in droppers]
    for i in droppers:
        pss[i].register_validator(TOPIC, lambda msg: IGNORE, inline=True)

    total = args.messages
    arrivals: list[dict[int, float]] = [dict() for _ in range(total)]

    def reader(i: int, sub: Any) -> None:
        for msg in sub:
            k = int.from_bytes(msg.data[:4], "big")
            if 0 <= k < total:
                arrivals[k].setdefault(i, time.monotonic())

    group = gevent.pool.Group()
    for i, ps in enumerate(pss):
        group.spawn(reader, i, ps.join(TOPIC).subscribe())

    # ---- graylist monitor
    first_msg_at: list[float] = []
    graylisted: dict[tuple[int, int], float] = {}
    meshed: set[tuple[int, int]] = set()  # dropper in the honest host's mesh for >= P3 activation
    in_mesh_since: dict[tuple[int, int], float] = {}
    monitor_stop = [False]

    act = activation(1.0 / args.interval)

    def monitor() -> None:
        while not monitor_stop[0]:
            now = time.monotonic()
            for d in droppers:
                did = hosts[d].id
                for h in adj[d]:
                    if h in droppers:
                        continue
                    r = pss[h].router
                    if did in r.mesh.get(TOPIC, ()):
                        since = in_mesh_since.setdefault((h, d), now)
                        if now - since >= act:
                            meshed.add((h, d))
                    else:
                        in_mesh_since.pop((h, d), None)
                    if (h, d) in meshed and (h, d) not in graylisted and r.score(did) < GRAYLIST:
                        graylisted[(h, d)] = now
            gevent.sleep(0.25)

    if droppers and scoring:
        group.spawn(monitor)

    base = os.urandom(max(args.size, 8))

    def payload(k: int) -> bytes:
        return k.to_bytes(4, "big") + base[4:args.size] if args.size >= 4 else k.to_bytes(4, "big")

    publishers: list[int] = []
    pub_times: list[float] = []
    last_pub = -1

    def publish_one(k: int) -> None:
        """Message ``k`` from a random honest host (not the previous publisher)."""
        nonlocal last_pub
        p = rng.choice([i for i in honest if i != last_pub])
        last_pub = p
        now = time.monotonic()
        if k < WARM_BASE:
            publishers.append(p)
            pub_times.append(now)
        if not first_msg_at:
            first_msg_at.append(now)
        try:
            pss[p].join(TOPIC).publish(payload(k), timeout=30.0)
        except Exception as exc:  # noqa: BLE001 - counted as a failure
            failures.append(f"publish {k}: {type(exc).__name__}: {exc}"[:200])

    def publish_range(start: int, stop: int) -> None:
        nxt = time.monotonic()
        for k in range(start, stop):
            publish_one(k)
            nxt += args.interval
            gevent.sleep(max(0.0, nxt - time.monotonic()))

    # ---- warm-up traffic from the start: P3 judges mesh peers 5 s after the GRAFT, so
    # meshes must carry messages from the moment they form (an idle mesh fails everyone)
    warm = {"sent": 0, "stop": False}

    def warm_up() -> None:
        k = WARM_BASE
        while not warm["stop"]:
            publish_one(k)
            warm["sent"] += 1
            k += 1
            gevent.sleep(args.interval)

    warm_g = group.spawn(warm_up)

    # ---- meshes / subscriptions known
    t1 = time.monotonic()
    deadline = t1 + args.mesh_timeout
    while time.monotonic() < deadline:
        if router == "floodsub":
            ready = sum(1 for i, ps in enumerate(pss) if len(ps.list_peers(TOPIC)) >= len(adj[i]))
        else:
            ready = sum(1 for i, ps in enumerate(pss)
                        if len(ps.router.mesh_peers(TOPIC)) >= min(ps.config.d_lo, len(adj[i])))
        if ready == n:
            break
        gevent.sleep(0.2)
    mesh_s = time.monotonic() - t1
    mesh_sizes = [len(ps.router.mesh_peers(TOPIC)) for ps in pss] if router == "gossipsub" else []
    log(f"{'meshes' if router == 'gossipsub' else 'subscriptions'} ready at {ready}/{n} hosts in {mesh_s:.1f} s")

    # ---- rest of the warm-up
    while warm["sent"] < args.warmup:
        gevent.sleep(0.05)
    warm["stop"] = True
    warm_g.join()
    warm_n = warm["sent"]

    # ---- measure
    dups0 = [ps.drop_counts.get("duplicate", 0) for ps in pss]
    sent0 = {h.id: sent.get(h.id, 0) for h in hosts}
    cpu0 = time.process_time()
    m0 = time.monotonic()
    publish_range(0, total)
    receivers = len(honest) - 1
    drain_end = time.monotonic() + args.drain
    honest_set = set(honest)
    while time.monotonic() < drain_end:
        if all(len([i for i in arrivals[k] if i in honest_set]) >= len(honest) for k in range(total)):
            break
        gevent.sleep(0.1)
    m1 = time.monotonic()
    cpu1 = time.process_time()
    monitor_stop[0] = True
    dups = [ps.drop_counts.get("duplicate", 0) - d0 for ps, d0 in zip(pss, dups0)]
    sent_window = [sent.get(h.id, 0) - sent0[h.id] for h in hosts]

    # ---- figures
    honest_set = set(honest)
    got = 0
    expected = 0
    lat90: list[Optional[float]] = []
    lat99: list[Optional[float]] = []
    lat100: list[Optional[float]] = []
    for k in range(total):
        p = publishers[k]
        ts = [t - pub_times[k] for i, t in arrivals[k].items() if i in honest_set and i != p]
        got += len(ts)
        expected += receivers
        lat90.append(_percentile_time(ts, 0.90, receivers))
        lat99.append(_percentile_time(ts, 0.99, receivers))
        lat100.append(_percentile_time(ts, 1.00, receivers))

    def lat_summary(vals: list[Optional[float]]) -> dict[str, Any]:
        """Median and worst over the messages that reached the fraction (``reached`` of them)."""
        done = [v * 1000 for v in vals if v is not None]
        return {"median_ms": statistics.median(done) if done else None, "max_ms": max(done) if done else None,
                "reached": len(done), "messages": len(vals)}

    msgs = args.messages
    lat_links = sorted(cfg.latency for cfg in net._links.values())
    res: dict[str, Any] = {
        "nodes": n, "router": router, "fault": fault, "droppers": len(droppers), "seed": args.seed,
        "security": args.security, "size": args.size, "d": args.d, "idontwant": not args.no_idontwant,
        "scoring": scoring, "messages": msgs, "warmup": warm_n,
        "interval_s": args.interval,
        "links": len(lat_links), "degree_min": min(len(a) for a in adj), "degree_max": max(len(a) for a in adj),
        "link_latency_mean_ms": statistics.mean(lat_links) * 1000,
        "target_99_ms": 4 * statistics.mean(lat_links) * 1000 + 50,
        "connect_s": connect_s, "mesh_s": mesh_s, "mesh_ready": ready,
        "mesh_size_median": statistics.median(mesh_sizes) if mesh_sizes else None,
        "reliability_pct": 100.0 * got / expected if expected else 0.0,
        "missing": expected - got,
        "lat90": lat_summary(lat90), "lat99": lat_summary(lat99), "lat100": lat_summary(lat100),
        "dups_per_node_msg": sum(dups[i] for i in honest) / (len(honest) * msgs) if msgs else 0.0,
        "bytes_per_node_msg": sum(sent_window[i] for i in honest) / (len(honest) * msgs) if msgs else 0.0,
        "bytes_per_node": sum(sent_window[i] for i in honest) / len(honest),
        "measure_s": m1 - m0, "cpu_busy": (cpu1 - cpu0) / (m1 - m0) if m1 > m0 else 0.0,
        "dropped_rpcs": sum(ps.dropped_rpcs for ps in pss), "failures": len(failures),
        "errors": sorted(set(failures))[:5],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if droppers and scoring:
        t_first = first_msg_at[0] if first_msg_at else m0
        times = sorted(t - t_first for t in graylisted.values())
        res["graylist"] = {
            "pairs": len(meshed), "below": len(graylisted),
            "below_30s": sum(1 for t in times if t <= 30.0),
            "median_s": statistics.median(times) if times else None,
            "max_s": max(times) if times else None,
            "droppers_all_below_30s": sum(
                1 for d in droppers
                if all((h, d) in graylisted and graylisted[(h, d)] - t_first <= 30.0
                       for h in adj[d] if (h, d) in meshed)),
            "observed_s": m1 - t_first, "activation_s": act,
            "droppers_in_honest_mesh_at_end": sum(
                1 for d in droppers if any(hosts[d].id in pss[h].router.mesh.get(TOPIC, ()) for h in honest)),
            "honest_pairs_below_graylist_at_end": sum(
                1 for h in honest for j in adj[h] if j not in droppers and pss[h].router.score(hosts[j].id) < GRAYLIST),
            "honest_penalties_at_end": _penalties(pss, honest, adj, droppers, hosts),
        }
    res["wall_s"] = time.monotonic() - wall0
    return res


def _penalties(pss: list[Any], honest: list[int], adj: list[list[int]], droppers: set[int],
               hosts: list[Any]) -> dict[str, float]:
    """Sum over (honest host, honest neighbour) pairs of each negative score term at the end."""
    out = {"p3": 0.0, "p3b": 0.0, "p4": 0.0, "p7": 0.0, "pairs_negative": 0}
    for h in honest:
        ps_ = pss[h].router.peer_score
        if ps_ is None:
            continue
        tp = ps_.params.topics[TOPIC]
        for j in adj[h]:
            if j in droppers:
                continue
            st = ps_._peers.get(hosts[j].id)
            if st is None:
                continue
            if ps_.score(hosts[j].id) < 0:
                out["pairs_negative"] += 1
            ts = st.topics.get(TOPIC)
            if ts is not None:
                if ts.mesh_deliveries_active and ts.mesh_deliveries < tp.mesh_message_deliveries_threshold:
                    d = tp.mesh_message_deliveries_threshold - ts.mesh_deliveries
                    out["p3"] += d * d * tp.mesh_message_deliveries_weight
                out["p3b"] += ts.mesh_failure_penalty * tp.mesh_failure_penalty_weight
                out["p4"] += ts.invalid_deliveries ** 2 * tp.invalid_message_deliveries_weight
            pp = ps_.params
            if st.behaviour_penalty > pp.behaviour_penalty_threshold:
                x = st.behaviour_penalty - pp.behaviour_penalty_threshold
                out["p7"] += x * x * pp.behaviour_penalty_weight
    return out


# ----------------------------------------------------------------------------- charts


def _svg_bars(title: str, unit: str, labels: list[str], series: dict[str, list[Optional[float]]]) -> str:
    """A grouped bar chart as SVG text (no dependencies)."""
    width, height, left, bottom, top = 820, 360, 70, 90, 40
    plot_w, plot_h = width - left - 20, height - top - bottom
    vals = [v for s in series.values() for v in s if v is not None]
    vmax = max(vals) if vals else 1.0
    vmax = vmax * 1.1 if vmax > 0 else 1.0
    groups = len(labels)
    per = len(series)
    gw = plot_w / max(1, groups)
    bw = gw * 0.8 / max(1, per)
    colors = ["#4878d0", "#ee854a", "#6acc64", "#d65f5f", "#956cb4"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
           f'font-size="11">',
           f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14">{_esc(title)}</text>',
           f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="black"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="black"/>']
    for t in range(5):
        tick = vmax * t / 4
        y = top + plot_h - plot_h * t / 4
        out.append(f'<text x="{left - 5}" y="{y + 4:.1f}" text-anchor="end">{tick:.3g}</text>')
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#ddd"/>')
    out.append(f'<text x="15" y="{top + plot_h / 2}" transform="rotate(-90 15 {top + plot_h / 2})" '
               f'text-anchor="middle">{_esc(unit)}</text>')
    for g, label in enumerate(labels):
        x0 = left + g * gw + gw * 0.1
        for s, (name, vs) in enumerate(series.items()):
            v = vs[g]
            x = x0 + s * bw
            if v is None:
                out.append(f'<text x="{x + bw / 2:.1f}" y="{top + plot_h - 4}" text-anchor="middle">n/a</text>')
                continue
            h = plot_h * v / vmax
            out.append(f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bw:.1f}" height="{h:.1f}" '
                       f'fill="{colors[s % len(colors)]}"><title>{_esc(name)}: {v:.4g}</title></rect>')
        out.append(f'<text x="{left + g * gw + gw / 2:.1f}" y="{top + plot_h + 14}" text-anchor="middle">'
                   f'{_esc(label)}</text>')
    for s, name in enumerate(series):
        y = height - 40 + 14 * (s // 3)
        x = left + (s % 3) * 240
        out.append(f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{colors[s % len(colors)]}"/>')
        out.append(f'<text x="{x + 14}" y="{y}">{_esc(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _label(r: dict[str, Any]) -> str:
    f = f", {r['fault'] * 100:.0f}% droppers" if r["fault"] else ""
    return f"{r['nodes']} {r['router']}{f}"


MEASURES: list[tuple[str, str, str, list[tuple[str, Any]]]] = [
    ("reliability", "Reliability", "% of receipts", [("reliability", lambda r: r["reliability_pct"])]),
    ("latency", "Latency to reach 90/99/100% of nodes (median over messages)", "ms",
     [("90%", lambda r: r["lat90"]["median_ms"]), ("99%", lambda r: r["lat99"]["median_ms"]),
      ("100%", lambda r: r["lat100"]["median_ms"])]),
    ("duplicates", "Duplicates per node per message", "copies", [("duplicates", lambda r: r["dups_per_node_msg"])]),
    ("bytes", "Bytes sent per node per message (wire, incl. Noise + yamux)", "bytes",
     [("bytes", lambda r: r["bytes_per_node_msg"])]),
]


def write_charts(results: list[dict[str, Any]], out: Path, stamp: str) -> list[Path]:
    ok = [r for r in results if "error" not in r]
    labels = [_label(r) for r in ok]
    paths: list[Path] = []
    try:
        import matplotlib  # type: ignore[import-not-found]  # noqa: F401

        have_mpl = True
    except ImportError:
        have_mpl = False
    for key, title, unit, series_def in MEASURES:
        series = {name: [fn(r) for r in ok] for name, fn in series_def}
        if have_mpl:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt  # type: ignore[import-not-found]

            fig, ax = plt.subplots(figsize=(9, 4))
            w = 0.8 / len(series)
            for s, (name, vs) in enumerate(series.items()):
                ax.bar([g + s * w for g in range(len(labels))], [v if v is not None else 0 for v in vs], w, label=name)
            ax.set_xticks([g + 0.4 - w / 2 for g in range(len(labels))], labels, fontsize=8)
            ax.set_title(title)
            ax.set_ylabel(unit)
            ax.legend()
            fig.tight_layout()
            p = out / f"pubsub-sim-{stamp}-{key}.png"
            fig.savefig(p)
            plt.close(fig)
        else:
            p = out / f"pubsub-sim-{stamp}-{key}.svg"
            p.write_text(_svg_bars(title, unit, labels, series))
        paths.append(p)
    return paths


CSV_COLUMNS = ["nodes", "router", "fault", "reliability_pct", "lat90_median_ms", "lat99_median_ms",
               "lat100_median_ms", "lat99_max_ms", "target_99_ms", "dups_per_node_msg", "bytes_per_node_msg",
               "bytes_per_node", "cpu_busy", "wall_s"]


def _csv_row(r: dict[str, Any]) -> list[str]:
    vals = {**r, "lat90_median_ms": r["lat90"]["median_ms"], "lat99_median_ms": r["lat99"]["median_ms"],
            "lat100_median_ms": r["lat100"]["median_ms"], "lat99_max_ms": r["lat99"]["max_ms"]}
    return ["" if vals.get(c) is None else (f"{vals[c]:.4g}" if isinstance(vals[c], float) else str(vals[c]))
            for c in CSV_COLUMNS]


# ----------------------------------------------------------------------------- report


def _ms(v: Optional[float]) -> str:
    return "never" if v is None else f"{v:.0f}"


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| scenario | reliability | 90% / 99% / 100% reached, ms (median; worst msg; over the messages that "
             "reached that fraction) | target 99% | "
             "dups/node/msg | bytes/node/msg | CPU busy | wall s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r.get('label', '?')} | failed: {r['error'][:80]} | | | | | | |")
            continue
        lat = " / ".join(_ms(r[k]["median_ms"]) + _short(r[k]) for k in ("lat90", "lat99", "lat100"))
        worst = " / ".join(_ms(r[k]["max_ms"]) for k in ("lat90", "lat99", "lat100"))
        lines.append(f"| {_label(r)} | {r['reliability_pct']:.3f}% ({r['missing']} missing) | {lat}; {worst} | "
                     f"{r['target_99_ms']:.0f} | {r['dups_per_node_msg']:.2f} | {r['bytes_per_node_msg']:.0f} | "
                     f"{r['cpu_busy'] * 100:.0f}% | {r['wall_s']:.0f} |")
    gl = [r for r in results if r.get("graylist")]
    for r in gl:
        g = r["graylist"]
        lines.append("")
        lines.append(f"{_label(r)}: {g['below']}/{g['pairs']} (honest host, dropper) pairs with the dropper in the "
                     f"mesh for >= {g['activation_s']:.0f} s (P3 activation) went below the graylist threshold "
                     f"({g['below_30s']} within 30 s of the first message; median {_s(g['median_s'])} s, max "
                     f"{_s(g['max_s'])} s); {g['droppers_all_below_30s']}/{r['droppers']} droppers below it at every such "
                     f"host within 30 s; droppers still in an honest mesh at the end: "
                     f"{g['droppers_in_honest_mesh_at_end']}; honest peers below it at an honest neighbour at the end: "
                     f"{g['honest_pairs_below_graylist_at_end']}")
    return "\n".join(lines)


def _short(lat: dict[str, Any]) -> str:
    """`` (k/n msgs)`` when only k of the n messages reached that fraction of the hosts."""
    return "" if lat["reached"] == lat["messages"] else f" ({lat['reached']}/{lat['messages']} msgs)"


def _s(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.1f}"


def _range(text: str) -> tuple[float, float]:
    a, _, b = text.partition("-")
    return float(a), float(b or a)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.pubsub_sim", description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", default="100,1000", help="comma-separated host counts (default 100,1000)")
    p.add_argument("--routers", default="gossipsub,floodsub", help="comma-separated (default gossipsub,floodsub)")
    p.add_argument("--faults", default="0,0.1", help="comma-separated dropper fractions (default 0,0.1)")
    p.add_argument("--messages", type=int, default=64, help="measured messages (default 64)")
    p.add_argument("--warmup", type=int, default=None,
                   help="warm-up messages (default 4; with faults enough for 16 s of traffic)")
    p.add_argument("--size", type=int, default=KiB, help="message size in bytes (default 1024)")
    p.add_argument("--interval", type=float, default=None, help="seconds between messages (default max(0.25, 0.003 x N))")
    p.add_argument("--drain", type=float, default=10.0, help="seconds to wait for the last messages (default 10)")
    p.add_argument("--degree", type=_range, default=(10, 20), help="links per host, LO-HI (default 10-20)")
    p.add_argument("--latency", type=_range, default=(20, 80), help="one-way link latency in ms, LO-HI (default 20-80)")
    p.add_argument("--d", type=int, default=6, help="gossipsub D (default 6; D_lo 5, D_hi 12)")
    p.add_argument("--no-idontwant", action="store_true", help="gossipsub: send no IDONTWANT")
    p.add_argument("--scoring", choices=("auto", "on", "off"), default="auto",
                   help="gossipsub peer scoring (default auto: on with droppers, off without)")
    p.add_argument("--security", default="noise", help="security protocol of the hosts (default noise)")
    p.add_argument("--seed", type=int, default=1, help="topology, latency, droppers and publishers (default 1)")
    p.add_argument("--concurrency", type=int, default=64, help="dials at a time while connecting (default 64)")
    p.add_argument("--mesh-timeout", type=float, default=30.0, help="seconds to wait for meshes (default 30)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per scenario process (default 900)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results"), help="output folder (default bench/results)")
    p.add_argument("--no-files", action="store_true", help="write no files, only print")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    p.add_argument("--profile", default=None, help="cProfile each scenario into PROFILE-<scenario>.prof")
    p.add_argument("--scenario", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.nodes = [int(x) for x in str(args.nodes).split(",") if x]
    args.routers = [x.strip() for x in str(args.routers).split(",") if x.strip()]
    args.faults = [float(x) for x in str(args.faults).split(",") if x]
    args.degree = (int(args.degree[0]), int(args.degree[1]))
    for r in args.routers:
        if r not in ("gossipsub", "floodsub"):
            p.error(f"unknown router {r!r}")
    if any(n < 3 for n in args.nodes) or args.messages < 1:
        p.error("need at least 3 nodes and 1 message")
    return args


def default_interval(n: int) -> float:
    """Seconds between messages for ``n`` hosts: one message costs the one process about
    1.2 ms of CPU per host (100 hosts: 0.12 s, 1000: 1.2 s, plus the heartbeats), so this
    keeps the core below saturation while the run stays short (1000 hosts: about 4.5 min)."""
    return max(0.25, 0.003 * n)


def _child_argv(args: argparse.Namespace, n: int, router: str, fault: float) -> list[str]:
    interval = args.interval if args.interval is not None else default_interval(n)
    warmup = args.warmup if args.warmup is not None else (max(4, int(16 / interval)) if fault else 4)
    argv = [sys.executable, "-m", "bench.pubsub_sim", "--scenario", "--nodes", str(n), "--routers", router,
            "--faults", str(fault), "--messages", str(args.messages), "--warmup", str(warmup),
            "--size", str(args.size), "--interval", str(interval), "--drain", str(args.drain),
            "--degree", f"{args.degree[0]}-{args.degree[1]}",
            "--latency", f"{args.latency[0]:g}-{args.latency[1]:g}", "--security", args.security,
            "--seed", str(args.seed), "--concurrency", str(args.concurrency),
            "--mesh-timeout", str(args.mesh_timeout), "--d", str(args.d)]
    if args.no_idontwant:
        argv.append("--no-idontwant")
    argv += ["--scoring", args.scoring]
    if args.profile:
        argv += ["--profile", f"{args.profile}-{n}-{router}-{fault:g}.prof"]
    return argv


def scenario_main(args: argparse.Namespace) -> int:
    import gevent

    raise_nofile()
    if args.profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    res = gevent.spawn(run_scenario, args).get()
    if args.profile:
        prof.disable()
        prof.dump_stats(args.profile)
    sys.stdout.write(json.dumps(res) + "\n")
    sys.stdout.flush()
    os._exit(0)  # skip the slow orderly teardown of N hosts


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    if args.scenario:
        return scenario_main(args)
    results: list[dict[str, Any]] = []
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for n in args.nodes:
        for router in args.routers:
            for fault in args.faults:
                label = f"{n} {router} fault={fault:g}"
                log(f"scenario {label}")
                try:
                    proc = subprocess.run(_child_argv(args, n, router, fault), cwd=ROOT, env=env,
                                          stdout=subprocess.PIPE, timeout=args.timeout)
                    lines = [x for x in proc.stdout.decode().splitlines() if x.startswith("{")]
                    if proc.returncode != 0 or not lines:
                        raise RuntimeError(f"scenario process exited {proc.returncode} without a result")
                    r = json.loads(lines[-1])
                except (subprocess.TimeoutExpired, RuntimeError, ValueError) as exc:
                    r = {"label": label, "error": f"{type(exc).__name__}: {exc}"}
                    log(f"  failed: {r['error']}")
                else:
                    log(f"  reliability {r['reliability_pct']:.3f}%, 99% in {_ms(r['lat99']['median_ms'])} ms, "
                        f"{r['dups_per_node_msg']:.2f} dups/node/msg, wall {r['wall_s']:.0f} s")
                results.append(r)
    doc: dict[str, Any] = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "loadavg": os.getloadavg(),
           "cpus": os.cpu_count(), "argv": sys.argv[1:], "results": results}
    if not args.no_files:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        (out / f"pubsub-sim-{stamp}.json").write_text(json.dumps(doc, indent=1))
        ok = [r for r in results if "error" not in r]
        with open(out / f"pubsub-sim-{stamp}.csv", "w") as f:
            f.write(",".join(CSV_COLUMNS) + "\n")
            for r in ok:
                f.write(",".join(_csv_row(r)) + "\n")
        md = (f"pubsub simulation {doc['date']}, load average {doc['loadavg'][0]:.2f}, {doc['cpus']} CPUs\n\n"
              + table(results) + "\n")
        (out / f"pubsub-sim-{stamp}.md").write_text(md)
        charts = write_charts(results, out, stamp) if ok else []
        log(f"wrote {out}/pubsub-sim-{stamp}.{{json,csv,md}} and {len(charts)} chart(s)"
            f" ({'PNG' if charts and charts[0].suffix == '.png' else 'SVG: matplotlib is not installed'})")
    print(json.dumps(doc, indent=1) if args.json else table(results))
    return 1 if any("error" in r or r.get("failures") for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
