"""Five p2p Servers in one process over real TCP, gossiping beacon-chain style messages.

* ``Block`` and ``Attestation`` protobufs on two gossipsub topics, each topic with a
  validator (its verdict feeds gossipsub scoring) and a per-peer rate-limit adapter;
* node i keeps node i-1 as its bootstrap peer (a line, so messages are forwarded);
* a local consumer on the last node reads both feeds through one queue;
* node 1 sends a direct ``Status`` to node 3.

Run: .venv/bin/python examples/beacon.py     (exits 0 in a few seconds)
"""

from __future__ import annotations

import os
import sys
import time

import gevent
from gevent.queue import Queue

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from beacon_pb import Attestation, Block, Status  # noqa: E402

from geventp2p.p2p import ACCEPT, REJECT, Message, RateLimiter, Server, ServerConfig  # noqa: E402
from geventp2p.sansio.pubsub.gossipsub import GossipSubParams  # noqa: E402

N = 5
BLOCK_TOPIC = "/eth2/beacon_block/proto"
ATTESTATION_TOPIC = "/eth2/beacon_attestation/proto"
STATUS_TOPIC = "/eth2/status/proto"
#: A short heartbeat so the meshes form quickly in a demo (go's default is 1 s).
PARAMS = GossipSubParams(heartbeat_interval=0.2, heartbeat_initial_delay=0.05)


def validate_block(msg: Message) -> int:
    b = msg.data
    return ACCEPT if b.slot > 0 and len(b.parent_root) == 32 else REJECT


def validate_attestation(msg: Message) -> int:
    a = msg.data
    return ACCEPT if a.slot > 0 and len(a.signature) == 96 else REJECT


def make_node(bootstrap: list[str]) -> Server:
    srv = Server(ServerConfig(bootstrap=bootstrap, gossipsub=PARAMS, host_options={"services": ["identify"]}))
    srv.start()
    srv.register_topic(BLOCK_TOPIC, Block, RateLimiter(rate=10, burst=20))
    srv.register_topic(ATTESTATION_TOPIC, Attestation, RateLimiter(rate=100, burst=200))
    srv.register_topic(STATUS_TOPIC, Status)
    srv.register_validator(Block, validate_block)
    srv.register_validator(Attestation, validate_attestation)
    return srv


def main() -> int:
    t0 = time.monotonic()
    nodes: list[Server] = []
    try:
        for i in range(N):
            nodes.append(make_node([nodes[i - 1].addrs()[0]] if i else []))
        for i, srv in enumerate(nodes):  # the line 0-1-2-3-4: ends have one mesh peer, the rest two
            want = 1 if i in (0, N - 1) else 2
            srv.wait_for_peers(Block, want, timeout=20)
            srv.wait_for_peers(Attestation, want, timeout=20)

        last = nodes[-1]
        q: Queue = Queue()
        last.subscribe(Block, q)
        last.subscribe(Attestation, q)
        status_q: Queue = Queue()
        nodes[3].subscribe(Status, status_q)

        for slot in range(1, 4):
            nodes[0].broadcast(Block(slot=slot, proposer_index=0, parent_root=bytes(32), body=b"txs" * 100),
                               timeout=10)
        nodes[0].broadcast(Block(slot=0, parent_root=b""), timeout=10)  # invalid: rejected by node 1
        for i in range(1, N - 1):
            for slot in (1, 2):
                nodes[i].broadcast(Attestation(slot=slot, validator_index=i, block_root=bytes(32),
                                               signature=bytes(96)), timeout=10)
        nodes[1].send(Status(head_slot=3, head_root=bytes(32), finalized_epoch=0), nodes[3].peer_info(), timeout=10)

        blocks: list[Message] = []
        attestations: list[Message] = []
        with gevent.Timeout(20):
            while len(blocks) < 3 or len(attestations) < 2 * (N - 2):
                m = q.get()
                (blocks if isinstance(m.data, Block) else attestations).append(m)
            status = status_q.get()

        rejected = sum(s.stats.get("pubsub_rejected", 0) for s in nodes)
        print(f"{N} nodes, line topology over TCP, gossipsub on {BLOCK_TOPIC} and {ATTESTATION_TOPIC}")
        print(f"node 4 feed: {len(blocks)} blocks (slots {sorted(m.data.slot for m in blocks)}), "
              f"{len(attestations)} attestations from validators "
              f"{sorted({m.data.validator_index for m in attestations})}")
        print(f"invalid block rejected by validators: {rejected}")
        print(f"direct Status from node 1 to node 3: head_slot={status.data.head_slot} via={status.via} "
              f"from_node1={status.peer == nodes[1].peer_id}")
        print(f"done in {time.monotonic() - t0:.2f} s")
        ok = (len(blocks) == 3 and rejected >= 1 and status.via == "direct"
              and {m.data.validator_index for m in attestations} == set(range(1, N - 1)))
        return 0 if ok else 1
    finally:
        for srv in nodes:
            srv.stop()


if __name__ == "__main__":
    sys.exit(main())
