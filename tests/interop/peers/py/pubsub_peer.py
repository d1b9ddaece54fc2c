"""py-libp2p pubsub peer (gossipsub or floodsub) for geventp2p's pubsub interop tests.

Runs in the interop venv (trio).  Same line protocol as tests/interop/js/pubsub_peer.mjs::

    python pubsub_peer.py --router gossipsub|floodsub [--listen MA] [--topic T]...
                          [--connect MA]... [--no-sign] [--meshsub13 [--test-extension]]

stdout (JSON lines): {"type": "ready", "peer_id", "addrs"} first, then "message",
"peer" and command answers; stdin (JSON lines): subscribe, unsubscribe, publish,
publish_many, connect, peers.  EOF on stdin or SIGTERM: exit 0.  Logs go to stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import sys

_STDOUT = sys.stdout
sys.stdout = sys.stderr  # anything py-libp2p prints goes to stderr

import multiaddr  # noqa: E402
import trio  # noqa: E402

from libp2p import new_host  # noqa: E402
from libp2p.crypto.ed25519 import create_new_key_pair  # noqa: E402
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair  # noqa: E402
from libp2p.custom_types import TProtocol  # noqa: E402
from libp2p.peer.id import ID  # noqa: E402
from libp2p.peer.peerinfo import info_from_p2p_addr  # noqa: E402
from libp2p.pubsub.floodsub import PROTOCOL_ID as FLOODSUB_ID, FloodSub  # noqa: E402
from libp2p.pubsub.gossipsub import (  # noqa: E402
    PROTOCOL_ID as MESHSUB_10,
    PROTOCOL_ID_V11 as MESHSUB_11,
    PROTOCOL_ID_V12 as MESHSUB_12,
    PROTOCOL_ID_V13 as MESHSUB_13,
    GossipSub,
)
import libp2p.pubsub.pubsub as _pubsub_mod  # noqa: E402
from libp2p.pubsub.pubsub import Pubsub  # noqa: E402
from libp2p.security.noise.transport import (  # noqa: E402
    PROTOCOL_ID as NOISE_PROTOCOL_ID,
    Transport as NoiseTransport,
)
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID, Yamux  # noqa: E402
from libp2p.tools.anyio_service import background_trio_service  # noqa: E402


def emit(obj: dict) -> None:
    _STDOUT.write(json.dumps(obj) + "\n")
    _STDOUT.flush()


def payload(i: int, size: int) -> bytes:
    b = bytearray(b"\xab" * size)
    if size >= 4:
        b[:4] = i.to_bytes(4, "big")
    return bytes(b)


def message_line(msg) -> dict:
    data = bytes(msg.data)
    topic = msg.topicIDs[0] if msg.topicIDs else ""
    out = {
        "type": "message",
        "topic": topic,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "signed": bool(msg.signature),
    }
    if msg.from_id:
        out["from"] = ID(msg.from_id).to_base58()
    if msg.seqno:
        out["seqno"] = bytes(msg.seqno).hex()
    if len(data) <= 256:
        out["data"] = data.decode("utf-8", "replace")
    if len(data) >= 4:
        out["index"] = int.from_bytes(data[:4], "big")
    return out


# Limits raised for the tests' bursts (1,000 messages back to back): py-libp2p drops a message
# when a subscription's channel (32) is full, and its gossipsub spam protection caps each
# peer at 10 messages per topic per second.
_pubsub_mod.SUBSCRIPTION_CHANNEL_SIZE = 8192


def make_host():
    key_pair = create_new_key_pair()
    sec_opt = {
        TProtocol(NOISE_PROTOCOL_ID): NoiseTransport(
            key_pair, noise_privkey=create_x25519_key_pair().private_key
        )
    }
    return new_host(key_pair=key_pair, muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux}, sec_opt=sec_opt)


async def run(opts: argparse.Namespace) -> None:
    host = make_host()
    if opts.router == "floodsub":
        router = FloodSub(protocols=[FLOODSUB_ID])
    else:
        from libp2p.pubsub.extensions import PeerExtensions

        router = GossipSub(
            protocols=([MESHSUB_13] if opts.meshsub13 else []) + [MESHSUB_12, MESHSUB_11, MESHSUB_10, FLOODSUB_ID],
            my_extensions=PeerExtensions(test_extension=opts.test_extension),
            degree=6, degree_low=4, degree_high=12,
            heartbeat_interval=1, heartbeat_initial_delay=0.1,
            spam_protection_enabled=False,
        )
    pubsub = Pubsub(host, router, strict_signing=not opts.no_sign)
    async with host.run(listen_addrs=[multiaddr.Multiaddr(opts.listen)]):
        async with background_trio_service(pubsub):
            async with trio.open_nursery() as nursery:
                if opts.router != "floodsub":
                    await nursery.start(_run_router, router)
                await pubsub.wait_until_ready()

                for t in opts.topic:
                    sub = await pubsub.subscribe(t)
                    nursery.start_soon(_reader, sub)
                emit({"type": "ready", "peer_id": host.get_id().to_base58(),
                      "addrs": [f"{a}/p2p/{host.get_id().to_base58()}" if "/p2p/" not in str(a) else str(a)
                                for a in host.get_addrs()]})
                for ma in opts.connect:
                    await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(ma)))
                nursery.start_soon(_watch_peers, pubsub)
                nursery.start_soon(_on_signal, nursery)
                await _commands(pubsub, host, nursery)
                nursery.cancel_scope.cancel()


async def _reader(sub) -> None:
    """Print the subscription's messages until it is closed (an unsubscribe closes it)."""
    try:
        while True:
            emit(message_line(await sub.get()))
    except (trio.EndOfChannel, trio.ClosedResourceError):
        return


async def _run_router(router, task_status=trio.TASK_STATUS_IGNORED) -> None:
    async with background_trio_service(router):
        task_status.started()
        await trio.sleep_forever()


async def _on_signal(nursery) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as sigs:
        async for _ in sigs:
            nursery.cancel_scope.cancel()
            return


async def _watch_peers(pubsub) -> None:
    """py-libp2p has no subscription-change event: report changes of peer_topics."""
    known: dict[str, set] = {}
    while True:
        current = {t: set(peers) for t, peers in pubsub.peer_topics.items()}
        for t in set(known) | set(current):
            before, now = known.get(t, set()), current.get(t, set())
            for p in now - before:
                emit({"type": "peer", "topic": t, "peer": p.to_base58(), "event": "joined"})
            for p in before - now:
                emit({"type": "peer", "topic": t, "peer": p.to_base58(), "event": "left"})
        known = current
        await trio.sleep(0.05)


async def _commands(pubsub, host, nursery) -> None:
    stdin = trio.lowlevel.FdStream(os.dup(0))
    buf = b""
    subs: dict = {}
    while True:
        chunk = await stdin.receive_some(65536)
        if not chunk:
            return
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if not line.strip():
                continue
            cmd = json.loads(line)
            name = cmd.get("cmd")
            try:
                if name == "subscribe":
                    sub = await pubsub.subscribe(cmd["topic"])
                    if subs.get(cmd["topic"]) is not sub:
                        subs[cmd["topic"]] = sub
                        nursery.start_soon(_reader, sub)
                    emit({"type": "subscribe", "topic": cmd["topic"]})
                elif name == "unsubscribe":
                    await pubsub.unsubscribe(cmd["topic"])
                    subs.pop(cmd["topic"], None)
                    emit({"type": "unsubscribe", "topic": cmd["topic"]})
                elif name == "publish":
                    await pubsub.publish(cmd["topic"], bytes.fromhex(cmd["data_hex"]))
                    emit({"type": "publish", "recipients": []})
                elif name == "publish_many":
                    errors = 0
                    for i in range(cmd["count"]):
                        try:
                            await pubsub.publish(cmd["topic"], payload(i, cmd["size"]))
                        except Exception as exc:  # noqa: BLE001
                            errors += 1
                            print(f"publish {i}: {exc!r}", file=sys.stderr)
                        # py-libp2p drops an RPC when a peer's outbound queue (32) is full, as
                        # go does: a publisher that wants every message out waits for room
                        while any(len(q) >= 16 for q in getattr(pubsub, "peer_queues", {}).values()):
                            await trio.sleep(0.001)
                    emit({"type": "publish_many", "count": cmd["count"], "errors": errors})
                elif name == "connect":
                    await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(cmd["addr"])))
                    emit({"type": "connect", "ok": True})
                elif name == "peers":
                    peers = [p.to_base58() for p in pubsub.peer_topics.get(cmd["topic"], ())]
                    mesh = [p.to_base58() for p in getattr(pubsub.router, "mesh", {}).get(cmd["topic"], ())]
                    emit({"type": "peers", "topic": cmd["topic"], "peers": peers, "mesh": mesh})
                else:
                    print(f"unknown command {name}", file=sys.stderr)
            except Exception as exc:  # noqa: BLE001
                print(f"{name} failed: {exc!r}", file=sys.stderr)
                emit({"type": name, "ok": False, "error": repr(exc)})


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--router", choices=("gossipsub", "floodsub"), default="gossipsub")
    p.add_argument("--listen", default="/ip4/127.0.0.1/tcp/0")
    p.add_argument("--topic", action="append", default=[])
    p.add_argument("--connect", action="append", default=[])
    p.add_argument("--no-sign", action="store_true")
    p.add_argument("--meshsub13", action="store_true", help="also offer /meshsub/1.3.0 (first)")
    p.add_argument("--test-extension", action="store_true",
                   help="announce the v1.3 test extension in the first RPC (with --meshsub13)")
    p.add_argument("--no-flood-publish", action="store_true", help="accepted for symmetry with the js peer")
    opts = p.parse_args()
    try:
        trio.run(run, opts)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
