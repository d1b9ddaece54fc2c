"""py-libp2p gossipsub subscriber for bench/pubsub_link.py (runs in the interop harness's venv).

    python _pubsub_link_py.py --topic T

Same JSON line protocol as ``pubsub_link.py --role sub``: stdout first
``{"type": "ready", "peer_id", "addrs"}``; stdin commands ``report`` (``lat``: include the
latencies) and ``reset``.  Receive times are ``time.monotonic_ns()`` (CLOCK_MONOTONIC, the
clock the publisher stamps into the payload).  StrictSign; gossipsub settings as the
interop tests' py peer (D=6, spam protection off, a deep subscription channel).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

_STDOUT = sys.stdout
sys.stdout = sys.stderr  # anything py-libp2p prints goes to stderr

import multiaddr  # noqa: E402
import trio  # noqa: E402

import libp2p.pubsub.pubsub as _pubsub_mod  # noqa: E402
from libp2p import new_host  # noqa: E402
from libp2p.crypto.ed25519 import create_new_key_pair  # noqa: E402
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair  # noqa: E402
from libp2p.custom_types import TProtocol  # noqa: E402
from libp2p.pubsub.gossipsub import (  # noqa: E402
    PROTOCOL_ID as MESHSUB_10,
    PROTOCOL_ID_V11 as MESHSUB_11,
    PROTOCOL_ID_V12 as MESHSUB_12,
    GossipSub,
)
from libp2p.pubsub.pubsub import Pubsub  # noqa: E402
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID, Transport as NoiseTransport  # noqa: E402
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_ID, Yamux  # noqa: E402
from libp2p.tools.anyio_service import background_trio_service  # noqa: E402

_pubsub_mod.SUBSCRIPTION_CHANNEL_SIZE = 1 << 16


def emit(obj: dict) -> None:
    _STDOUT.write(json.dumps(obj) + "\n")
    _STDOUT.flush()


async def run(topic: str) -> None:
    key_pair = create_new_key_pair()
    sec = {TProtocol(NOISE_ID): NoiseTransport(key_pair, noise_privkey=create_x25519_key_pair().private_key)}
    host = new_host(key_pair=key_pair, muxer_opt={TProtocol(YAMUX_ID): Yamux}, sec_opt=sec)
    router = GossipSub(protocols=[MESHSUB_12, MESHSUB_11, MESHSUB_10], degree=6, degree_low=4, degree_high=12,
                       heartbeat_interval=1, heartbeat_initial_delay=0.1, spam_protection_enabled=False)
    pubsub = Pubsub(host, router, strict_signing=True)
    state = {"count": 0, "first": 0, "last": 0, "lat": []}
    async with host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        async with background_trio_service(pubsub), background_trio_service(router):
            await pubsub.wait_until_ready()
            sub = await pubsub.subscribe(topic)
            async with trio.open_nursery() as nursery:

                async def reader() -> None:
                    while True:
                        msg = await sub.get()
                        now = time.monotonic_ns()
                        data = bytes(msg.data)
                        if len(data) < 12:
                            continue
                        if state["count"] == 0:
                            state["first"] = now
                        state["last"] = now
                        state["count"] += 1
                        state["lat"].append(now - int.from_bytes(data[4:12], "big"))

                nursery.start_soon(reader)
                pid = host.get_id().to_base58()
                emit({"type": "ready", "peer_id": pid,
                      "addrs": [str(a) if "/p2p/" in str(a) else f"{a}/p2p/{pid}" for a in host.get_addrs()]})
                stdin = trio.lowlevel.FdStream(os.dup(0))
                buf = b""
                while True:
                    chunk = await stdin.receive_some(65536)
                    if not chunk:
                        break
                    buf += chunk
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        if not line.strip():
                            continue
                        cmd = json.loads(line)
                        if cmd.get("cmd") == "report":
                            emit({"type": "report", "count": state["count"], "first_ns": state["first"],
                                  "last_ns": state["last"], "lat_ns": state["lat"] if cmd.get("lat") else []})
                        elif cmd.get("cmd") == "reset":
                            state.update(count=0, lat=[])
                            emit({"type": "reset"})
                nursery.cancel_scope.cancel()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--topic", default="bench")
    p.add_argument("--subscribe", action="store_true", help="accepted for symmetry (always subscribes)")
    opts = p.parse_args()
    try:
        trio.run(run, opts.topic)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
