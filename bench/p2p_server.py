"""The p2p Server's cost over raw pubsub, and Feed fan-out (issue #12).

    python -m bench.p2p_server [--runs 5] [--count 5000] [--size 1024] [--subscribers 100]
                               [--fanout-count 2000] [--json]

1. **Broadcast to a remote feed, two processes.**  This process (the sender) and a child
   process (the receiver, ``--receiver``) each hold two hosts on 127.0.0.1 TCP: one
   under a :class:`~geventp2p.p2p.Server` with a protobuf topic, one with a plain
   :class:`~geventp2p.pubsub.GossipSub`.  Each run sends ``--count`` messages of a
   ``--size``-byte protobuf both ways, alternating:

   * *raw pubsub*: ``topic.publish(msg.SerializeToString())``, the receiver counts
     ``sub.get()`` (bytes, not decoded);
   * *Server*: ``server.broadcast(msg)``, the receiver counts ``Message``\\ s taken from
     a ``gevent.queue.Queue`` subscribed to the topic's feed (decoded, validated by the
     Server's pipeline with one pass-through adapter).

   Each run has four phases in ABBA order (raw, Server, Server, raw).  The rate of a
   mode is ``2 * count / (time from the first publish to the receiver's report of the
   last message, summed over its two phases)``; the Server's cost is
   ``1 - server_rate / raw_rate`` of the same run (target: at most 15 %).  As the
   machine may be shared, the CPU time of both processes per message is reported too
   (``time.process_time``), with the Server's CPU overhead over raw pubsub.
2. **Feed fan-out**: one :class:`~geventp2p.p2p.Feed`, ``--subscribers`` consumer
   greenlets each draining its own queue; ``--fanout-count`` sends; reported as µs per
   message per subscriber (target: at most 20), with unbounded queues and with queues
   of 64 (where ``send`` has to wait for slow consumers).

Each figure is the median of ``--runs`` runs, with min and max.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

MODES = ("raw", "server")
TOPIC_SERVER = "/bench/p2p/server"
TOPIC_RAW = "/bench/p2p/raw"


def _msgs() -> Any:
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fdp = descriptor_pb2.FileDescriptorProto(name="bench/p2p_server.proto", package="geventp2p.bench",
                                             syntax="proto3")
    mt = fdp.message_type.add(name="Payload")
    mt.field.add(name="seq", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_UINT64,
                 label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    mt.field.add(name="body", number=2, type=descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
                 label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindFileByName(fdp.name).message_types_by_name["Payload"])


def _payload(cls: Any, seq: int, size: int) -> Any:
    m = cls(seq=seq, body=b"\xab" * size)
    over = len(m.SerializeToString()) - size
    return cls(seq=seq, body=b"\xab" * max(0, size - over))  # the encoded message is `size` bytes


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _nodes(heartbeat: float = 0.1) -> tuple[Any, Any, Any, Any]:
    """(server, raw host, raw pubsub, raw topic) of one process."""
    from geventp2p import new_host
    from geventp2p.p2p import Server, ServerConfig
    from geventp2p.pubsub import GossipSub, PubSubOptions
    from geventp2p.sansio.pubsub.gossipsub import GossipSubParams

    params = GossipSubParams(heartbeat_interval=heartbeat, heartbeat_initial_delay=0.02)
    srv = Server(ServerConfig(gossipsub=params, feed_buffer=8192, host_options={"services": ["identify"]}))
    srv.start()
    host = new_host(services=["identify"])
    ps = GossipSub(host, params, options=PubSubOptions(subscription_buffer=8192))
    return srv, host, ps, ps.join(TOPIC_RAW)


def _pass_through(nxt: Any) -> Any:
    return nxt


# ----------------------------------------------------------------------------- receiver process


def receiver_main() -> int:
    import gevent
    from gevent.fileobject import FileObjectPosix
    from gevent.queue import Queue

    Payload = _msgs()
    srv, host, ps, topic = _nodes()
    srv.register_topic(TOPIC_SERVER, Payload, _pass_through)
    feed_q: Queue = Queue()
    srv.subscribe(Payload, feed_q)
    raw_sub = topic.subscribe(buffer=8192)
    _emit({"type": "ready", "server": srv.addrs()[0], "raw": str(host.p2p_addrs()[0])})
    stdin = FileObjectPosix(sys.stdin.fileno(), "rb")
    try:
        while True:
            line = stdin.readline()
            if not line:
                return 0
            cmd = json.loads(line)
            if cmd["cmd"] == "wait_mesh":
                srv.wait_for_peers(Payload, 1, timeout=30)
                while not ps.router.mesh_peers(TOPIC_RAW):
                    gevent.sleep(0.02)
                _emit({"type": "mesh"})
            elif cmd["cmd"] == "expect":
                count, mode = cmd["count"], cmd["mode"]
                get = raw_sub.get if mode == "raw" else feed_q.get
                got = 0
                cpu0 = time.process_time()
                try:
                    while got < count:
                        get(timeout=10)
                        got += 1
                except Exception:  # noqa: BLE001 - report what arrived
                    pass
                _emit({"type": "done", "mode": mode, "got": got, "cpu": time.process_time() - cpu0,
                       "dropped_sub": raw_sub.dropped})
    finally:
        srv.stop()
        host.close()


# ----------------------------------------------------------------------------- sender process


def _median(xs: list[float]) -> dict[str, float]:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}


def remote_feed(runs: int, count: int, size: int) -> dict[str, Any]:
    import gevent
    from gevent import subprocess as gsub

    Payload = _msgs()
    child = gsub.Popen([sys.executable, "-m", "bench.p2p_server", "--receiver"], stdin=gsub.PIPE, stdout=gsub.PIPE)
    srv, host, ps, topic = _nodes()
    c_in, c_out = child.stdin, child.stdout
    assert c_in is not None and c_out is not None
    try:
        def send(**cmd: Any) -> None:
            c_in.write((json.dumps(cmd) + "\n").encode())
            c_in.flush()

        def recv(kind: str) -> dict[str, Any]:
            while True:
                line = c_out.readline()
                if not line:
                    raise RuntimeError("the receiver process exited")
                obj = json.loads(line)
                if obj.get("type") == kind:
                    return dict(obj)

        info = recv("ready")
        srv.register_topic(TOPIC_SERVER, Payload)
        topic.subscribe(buffer=16)  # join the mesh; our own messages come back here, unread
        srv.host.connect(info["server"], timeout=30)
        host.connect(info["raw"], timeout=30)
        send(cmd="wait_mesh")
        recv("mesh")
        srv.wait_for_peers(Payload, 1, timeout=30)
        while not ps.router.mesh_peers(TOPIC_RAW):
            gevent.sleep(0.02)
        msgs = [_payload(Payload, i, size) for i in range(count)]
        rates: dict[str, list[float]] = {m: [] for m in MODES}
        cpus: dict[str, list[float]] = {m: [] for m in MODES}
        ratios: list[float] = []
        cpu_ratios: list[float] = []
        for run in range(runs + 1):  # run 0 warms both paths up and is not reported
            this: dict[str, float] = {}
            cpu: dict[str, float] = {}
            # ABBA: raw, server, server, raw (one phase per mode and half-run; rates and CPU
            # time summed over both halves), so a drift of the machine's load hits both alike
            for mode in (*MODES, *reversed(MODES)):
                send(cmd="expect", mode=mode, count=count)
                t0 = time.perf_counter()
                c0 = time.process_time()
                if mode == "raw":
                    for m in msgs:
                        topic.publish(m.SerializeToString(), timeout=30)
                else:
                    for m in msgs:
                        srv.broadcast(m, timeout=30)
                done = recv("done")
                dt = time.perf_counter() - t0
                dc = time.process_time() - c0
                if done["got"] != count:
                    raise RuntimeError(f"{mode}: the receiver got {done['got']} of {count}: {done}")
                this[mode] = this.get(mode, 0.0) + dt
                cpu[mode] = cpu.get(mode, 0.0) + dc + done["cpu"]
            if run:
                for mode in MODES:
                    rates[mode].append(2 * count / this[mode])
                    cpus[mode].append(cpu[mode] / (2 * count) * 1e6)
                ratios.append(1 - rates["server"][-1] / rates["raw"][-1])
                cpu_ratios.append(cpus["server"][-1] / cpus["raw"][-1] - 1)
                print(f"  run {run}: raw {rates['raw'][-1]:.0f} msg/s {cpus['raw'][-1]:.0f} us CPU/msg, "
                      f"server {rates['server'][-1]:.0f} msg/s {cpus['server'][-1]:.0f} us CPU/msg; "
                      f"server cost {100 * ratios[-1]:.1f} % of the rate, {100 * cpu_ratios[-1]:.1f} % more CPU",
                      file=sys.stderr, flush=True)
        return {"count": count, "size": size, "raw_msgs_per_s": _median(rates["raw"]),
                "server_msgs_per_s": _median(rates["server"]), "server_cost": _median(ratios),
                "raw_cpu_us_per_msg": _median(cpus["raw"]), "server_cpu_us_per_msg": _median(cpus["server"]),
                "server_cpu_overhead": _median(cpu_ratios)}
    finally:
        try:
            c_in.close()
            child.wait(timeout=10)
        except Exception:  # noqa: BLE001
            child.kill()
        srv.stop()
        host.close()


def feed_fanout(runs: int, subscribers: int, count: int, bound: int) -> dict[str, Any]:
    import gevent
    from gevent.event import Event
    from gevent.queue import Queue

    from geventp2p.p2p import Feed

    per: list[float] = []
    for _ in range(runs + 1):
        feed = Feed()
        done = Event()
        left = [subscribers]

        def consume(q: Queue) -> None:
            for _i in range(count):
                q.get()
            left[0] -= 1
            if not left[0]:
                done.set()

        queues: list[Queue] = [Queue(bound) if bound else Queue() for _ in range(subscribers)]
        subs = [feed.subscribe(q) for q in queues]
        workers = [gevent.spawn(consume, q) for q in queues]
        gevent.sleep(0)
        t0 = time.perf_counter()
        for i in range(count):
            feed.send(i)
        done.wait()
        dt = time.perf_counter() - t0
        per.append(dt / (count * subscribers) * 1e6)
        for s in subs:
            s.unsubscribe()
        gevent.joinall(workers)
    return {"subscribers": subscribers, "count": count, "queue_bound": bound, "us_per_msg_per_sub": _median(per[1:])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--subscribers", type=int, default=100)
    ap.add_argument("--fanout-count", type=int, default=2000)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--receiver", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.receiver:
        return receiver_main()
    from geventp2p import _speedups

    result: dict[str, Any] = {"build": _speedups.IMPLEMENTATION}
    result["remote_feed"] = remote_feed(args.runs, args.count, args.size)
    result["fanout"] = [feed_fanout(args.runs, args.subscribers, args.fanout_count, bound) for bound in (0, 64)]
    if args.json:
        print(json.dumps(result))
        return 0
    rf = result["remote_feed"]

    def fmt(d: dict[str, float], scale: float = 1.0, unit: str = "") -> str:
        return f"{d['median'] * scale:.1f}{unit} (min {d['min'] * scale:.1f}, max {d['max'] * scale:.1f})"

    print(f"build: {result['build']}; {args.runs} runs, medians (min, max)")
    print(f"broadcast -> remote feed, {rf['count']} x {rf['size']} B protobufs, two processes:")
    print(f"  raw pubsub   {fmt(rf['raw_msgs_per_s'])} msg/s")
    print(f"  p2p Server   {fmt(rf['server_msgs_per_s'])} msg/s")
    print(f"  Server cost  {fmt(rf['server_cost'], 100, ' %')} of the raw rate   (target <= 15 %)")
    print(f"  CPU per message (both processes): raw {fmt(rf['raw_cpu_us_per_msg'], 1, ' us')}, "
          f"Server {fmt(rf['server_cpu_us_per_msg'], 1, ' us')}; Server overhead "
          f"{fmt(rf['server_cpu_overhead'], 100, ' %')}")
    for fo in result["fanout"]:
        bound = f"queues of {fo['queue_bound']}" if fo["queue_bound"] else "unbounded queues"
        print(f"feed fan-out to {fo['subscribers']} subscribers ({bound}): "
              f"{fmt(fo['us_per_msg_per_sub'], 1, ' us')} per message per subscriber   (target <= 20 us)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
