"""``geventp2p pubsub``: the IPFS ``pubsub sub``/``pub`` workflow for scripts.

See ``geventp2p pubsub --help`` (parser in :mod:`geventp2p.cli`).  stdout gets JSON
lines only; stdin is read without blocking the hub; publishing applies back-pressure
(the next stdin line is read only once the previous message is queued to its peers).
"""

from __future__ import annotations

import base64
import json
import logging
import signal
import sys
from typing import Any, Callable

import gevent
from gevent.event import Event

from geventp2p.exceptions import P2PError, SubscriptionClosedError
from geventp2p.net._deadline import Deadline

__all__ = ["run_pubsub", "message_line", "peer_line"]

log = logging.getLogger(__name__)

#: Longest wait for a --connect peer's pubsub stream (and its subscriptions) before stdin is read.
PEER_READY_WAIT = 5.0


def message_line(msg: Any) -> dict[str, Any]:
    """The JSON object printed for a received message."""
    out: dict[str, Any] = {
        "type": "message",
        "topic": msg.topic,
        "from": str(msg.from_peer) if msg.from_peer is not None else None,
        "seqno": msg.seqno.hex(),
        "id": msg.id.hex(),
    }
    try:
        out["data"] = msg.data.decode("utf-8")
    except UnicodeDecodeError:
        out["data"] = base64.b64encode(msg.data).decode("ascii")
        out["encoding"] = "base64"
    return out


def peer_line(evt: Any) -> dict[str, Any]:
    """The JSON object printed when a peer joins or leaves a topic."""
    return {"type": "peer", "topic": evt.topic, "peer": str(evt.peer), "event": evt.event}


class _Out:
    """One JSON object per stdout line, flushed at once."""

    def __init__(self) -> None:
        self.broken = False

    def write(self, obj: dict[str, Any]) -> None:
        if self.broken:
            return
        try:
            sys.stdout.write(json.dumps(obj) + "\n")
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            self.broken = True


def _lines(fd: int, stop: Event) -> Any:
    """Yield stdin lines (bytes, without the newline) read without blocking the hub."""
    from gevent.os import nb_read

    buf = b""
    while not stop.is_set():
        chunk = nb_read(fd, 65536)
        if not chunk:
            if buf:
                yield buf
            return
        buf += chunk
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                break
            line, buf = buf[:nl], buf[nl + 1:]
            if line.endswith(b"\r"):
                line = line[:-1]
            yield line


def run_pubsub(args: Any, make_host: Callable[..., Any], signal_watchers: Callable[..., Any]) -> int:
    """Body of ``geventp2p pubsub`` (see the module docstring); returns the exit code."""
    from geventp2p.defaults import DEFAULT_LISTEN
    from geventp2p.protocols.pubsub import FloodSub, GossipSub, PubSubOptions

    topics = list(dict.fromkeys(args.topic))
    stop = Event()
    out = _Out()

    def on_signal() -> None:
        stop.set()

    watchers = signal_watchers({s: on_signal for s in (signal.SIGINT, signal.SIGTERM)})
    restore: Callable[[], None] | None = None
    host = None
    try:
        host = make_host(args, listen=args.listen or DEFAULT_LISTEN, services=("identify", "ping"))
        options = PubSubOptions(sign=not args.no_sign)
        if args.router == "floodsub":
            ps: Any = FloodSub(host, options)
        else:
            from geventp2p.sansio.pubsub.gossipsub import GossipSubParams

            # flood publishing (the spec's and js's default): a line goes to every peer known to
            # be in the topic at once, before the mesh has formed
            ps = GossipSub(host, GossipSubParams(flood_publish=True), options=options)
        handles = [ps.join(t) for t in topics]
        subs = [t.subscribe() for t in handles]
        peer_streams = [t.peer_events() for t in handles]
        out.write({"peer_id": str(host.id), "addrs": [str(a) for a in host.p2p_addrs()]})

        def pump_messages(sub: Any) -> None:
            try:
                for msg in sub:
                    out.write(message_line(msg))
            except SubscriptionClosedError:
                pass

        def pump_peers(events: Any) -> None:
            for evt in events:
                out.write(peer_line(evt))

        pumps = [gevent.spawn(pump_messages, s) for s in subs] + [gevent.spawn(pump_peers, e) for e in peer_streams]
        try:
            connected = []
            for ma in args.connect:
                conn = host.connect(ma, timeout=args.timeout)
                connected.append(conn.remote_peer)
            if connected:  # give subscriptions a moment to arrive, so the first line has somewhere to go
                dl = Deadline(PEER_READY_WAIT)
                while not stop.is_set() and not dl.expired() \
                        and not all(p in handles[0].list_peers() for p in connected):
                    gevent.sleep(0.05)
            from geventp2p.cli import _make_nonblocking

            fd = sys.stdin.fileno()
            restore = _make_nonblocking((fd,))
            reader = gevent.spawn(_publish_stdin, fd, stop, handles, ps)
            try:
                while not stop.is_set() and not reader.dead:
                    gevent.wait([reader], timeout=0.2)
                if reader.dead and not reader.successful():
                    raise reader.exception  # type: ignore[misc]
            finally:
                reader.kill()
            ps.close()  # PRUNE, flush, close streams
        finally:
            for s in subs:
                s.cancel()
            for e in peer_streams:
                e.cancel()
            gevent.killall(pumps)
    finally:
        if restore is not None:
            restore()
        if host is not None:
            host.close()
        watchers.cancel()
    return 0


def _publish_stdin(fd: int, stop: Event, handles: list[Any], ps: Any) -> None:
    by_name = {t.name: t for t in handles}
    for line in _lines(fd, stop):
        topic = handles[0]
        data = line
        stripped = line.strip()
        if stripped.startswith(b"{"):
            try:
                obj = json.loads(stripped)
            except ValueError:
                obj = None
            if isinstance(obj, dict) and isinstance(obj.get("publish"), str):
                data = obj["publish"].encode("utf-8")
                name = obj.get("topic")
                if isinstance(name, str) and name:
                    topic = by_name.get(name) or ps.join(name)
        try:
            topic.publish(data)
        except P2PError as exc:
            log.warning("publish on %r failed: %s", topic.name, exc)
