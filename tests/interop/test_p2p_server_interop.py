"""The p2p Server's topics are plain gossipsub: a js-libp2p gossipsub peer takes part.

The js peer (tests/interop/js/pubsub_peer.mjs, through the pubsub interop harness)
subscribes to a Server's topic; it must receive every ``broadcast`` as the protobuf
bytes of the message (decoded here), and its publishes must reach the Server's feed
(a payload that does not decode is REJECTed by the Server, never delivered).
"""

from __future__ import annotations

import hashlib
import os
import sys

import pytest
from gevent.queue import Queue

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # for the harness under any import mode

from test_pubsub_interop import WAIT, Remote, _wait_meshes  # noqa: E402

from geventp2p.core.peer import PeerId  # noqa: E402
from geventp2p.p2p import Message, Server, ServerConfig  # noqa: E402
from tests.p2p._msgs import Note  # noqa: E402

pytestmark = pytest.mark.interop

TOPIC = "/geventp2p/p2p-interop/note/proto"


def test_js_gossipsub_peer_on_a_server_topic() -> None:
    r = Remote("js-gossipsub", "--topic", TOPIC)
    srv = Server(ServerConfig(bootstrap=[r.addr]))  # the Server dials the js peer as a bootstrap peer
    try:
        srv.start()
        srv.register_topic(TOPIC, Note)
        q: Queue = Queue()
        srv.subscribe(Note, q)
        rid = PeerId.from_string(r.peer_id)
        r.wait(lambda o: o.get("type") == "peer" and o["peer"] == str(srv.peer_id) and o["event"] == "joined",
               "the Server's subscription at the js peer")
        _wait_meshes(srv.pubsub, r, TOPIC, rid, srv.peer_id)

        # every broadcast reaches the js peer, as the message's protobuf bytes
        notes = [Note(text=f"note {i:03d} from the Server") for i in range(50)]
        for n in notes:
            srv.broadcast(n, timeout=WAIT)
        got = r.messages(len(notes), TOPIC)
        for o in got:
            assert o["from"] == str(srv.peer_id) and o["signed"]
            raw = o["data"].encode()  # a short Note's protobuf bytes are all ASCII, so the JSON text is exact
            assert hashlib.sha256(raw).hexdigest() == o["sha256"]
        decoded = sorted((Note.FromString(o["data"].encode()) for o in got), key=lambda n: n.text)
        assert decoded == notes

        # the js peer's publishes reach the Server's feed, decoded
        for i in range(10):
            r.send(cmd="publish", topic=TOPIC, data_hex=Note(text=f"js {i}").SerializeToString().hex())
        received = [q.get(timeout=WAIT) for _ in range(10)]
        assert all(isinstance(m, Message) and m.via == "pubsub" and m.peer == rid for m in received)
        assert sorted(m.data.text for m in received) == [f"js {i}" for i in range(10)]

        # bytes that are not a Note: rejected by the Server's validation, not delivered
        r.send(cmd="publish", topic=TOPIC, data_hex="ffff")
        r.send(cmd="publish", topic=TOPIC, data_hex=Note(text="after").SerializeToString().hex())
        assert q.get(timeout=WAIT).data.text == "after"
        assert srv.stats.get("pubsub_undecodable") == 1
        assert q.qsize() == 0
    finally:
        srv.stop()
        r.stop()
