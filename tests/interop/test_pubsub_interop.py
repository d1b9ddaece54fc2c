"""PubSub interop: geventp2p's GossipSub/FloodSub against js-libp2p (@libp2p/gossipsub,
@libp2p/floodsub) and py-libp2p (gossipsub), both directions, on 127.0.0.1.

The remote peers are scripts speaking one JSON line protocol (stdin commands, stdout
events): tests/interop/js/pubsub_peer.mjs (installed with its npm packages into
``<cache>/npm-pubsub``) and tests/interop/peers/py/pubsub_peer.py (in the harness's
py-libp2p venv).  Our side is a host in this process.

For every remote (js gossipsub, js floodsub, py gossipsub): subscribe and publish both
ways (we dial / they dial), 1,000 messages of 1 KiB with none lost both ways, messages
of 1 B, 100 KiB and 900 KiB both ways, signatures checked (their signed messages pass
our StrictSign checks; a message we forge with a bad signature is dropped by them), and
two geventp2p hosts reaching each other only through the remote.  Gossipsub remotes
also: the mesh forms both ways and our leaving PRUNEs it; a leave's PRUNE backoff is
honoured both ways (no GRAFT before it ends); they send IDONTWANT for a 100 KiB message,
and honour ours (no copy of a message we said we don't want); outside each other's mesh
they fetch our message with IWANT after our IHAVE, and we fetch theirs (js; see the test
for why not py).  One mixed network: 4 geventp2p hosts, 2 js and 2 py peers on a
sparse ring, every message reaches every node, duplicates counted.  The js peer uses
go's message id (author || seqno), as py-libp2p and we do, so gossip ids agree.
A peer that cannot be installed skips, and fails under CI=true.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time

import gevent
import gevent.event
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # for the harness under any import mode

import interop_harness as ih  # noqa: E402
from _npm import NpmUnavailable, ensure_npm_packages, node_executable, skip_or_fail  # noqa: E402

import geventp2p  # noqa: E402
from geventp2p.core.peer import PeerId  # noqa: E402
from geventp2p.exceptions import P2PTimeoutError  # noqa: E402
from geventp2p.pubsub import ACCEPT, IGNORE, FloodSub, GossipSub  # noqa: E402

pytestmark = pytest.mark.interop

HERE = os.path.dirname(os.path.abspath(__file__))
JS_SCRIPT = os.path.join(HERE, "js", "pubsub_peer.mjs")
PY_SCRIPT = os.path.join(HERE, "peers", "py", "pubsub_peer.py")
#: Pinned to the js-libp2p release the harness's js peer uses (libp2p 3.3.11).
JS_PACKAGES = {
    "libp2p": "3.3.11",
    "@chainsafe/libp2p-noise": "17.0.0",
    "@chainsafe/libp2p-yamux": "8.0.1",
    "@libp2p/tcp": "11.0.28",
    "@libp2p/identify": "4.1.14",
    "@libp2p/ping": "3.1.13",
    "@libp2p/gossipsub": "17.1.1",
    "@libp2p/floodsub": "11.0.28",
    "@libp2p/crypto": "5.1.23",
    "@libp2p/peer-id": "6.0.15",
    "@multiformats/multiaddr": "13.0.3",
}
WAIT = 60.0
REMOTES = ["js-gossipsub", "js-floodsub", "py-gossipsub"]


def _argv(remote: str, args: list[str]) -> list[str]:
    kind, router = remote.split("-")
    if kind == "js":
        try:
            node = node_executable()
            folder = ensure_npm_packages("npm-pubsub", JS_PACKAGES)
        except NpmUnavailable as exc:
            skip_or_fail(str(exc))
        shutil.copyfile(JS_SCRIPT, folder / "pubsub_peer.mjs")  # ESM resolves packages next to the script
        return [node, str(folder / "pubsub_peer.mjs"), "--router", router, *args]
    python = ih.require_peer("py")
    return [str(python), PY_SCRIPT, "--router", router, *args]


class Remote:
    """A running remote pubsub peer; its stdout JSON lines are kept in order."""

    def __init__(self, remote: str, *args: str) -> None:
        self.name = remote
        self.proc = ih.PeerProcess(remote, _argv(remote, list(args)))
        self.proc.wait_ready(WAIT)
        self.peer_id = self.proc.info["peer_id"]
        self.addr = self.proc.info["addrs"][0]
        self.lines: list[dict] = []
        self._pos = 0

    def _pull(self) -> None:
        while True:
            line = self.proc._out.pop_line()
            if line is None:
                return
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                self.lines.append(obj)

    def send(self, **cmd) -> None:
        self.proc.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        self.proc.proc.stdin.flush()

    def wait(self, pred, what: str, timeout: float = WAIT) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            self._pull()
            for obj in self.lines:
                if pred(obj):
                    self.lines.remove(obj)
                    return obj
            if not self.proc.alive():
                raise AssertionError(f"{self.name} exited before {what}\n{self.proc.stderr_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no {what} within {timeout} s\n{self.proc.stderr_tail()}")
            gevent.sleep(0.02)

    def messages(self, n: int, topic: str, timeout: float = WAIT) -> list[dict]:
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            out.append(self.wait(lambda o: o.get("type") == "message" and o.get("topic") == topic,
                                 f"message {len(out) + 1}/{n}", max(0.1, deadline - time.monotonic())))
        return out

    def no_message(self, topic: str, quiet: float) -> None:
        end = time.monotonic() + quiet
        while time.monotonic() < end:
            self._pull()
            assert not [o for o in self.lines if o.get("type") == "message" and o.get("topic") == topic], self.lines
            gevent.sleep(0.05)

    def stop(self) -> None:
        self.proc.stop()


@pytest.fixture
def env():
    made = []

    def start_remote(remote: str, *args: str) -> Remote:
        r = Remote(remote, *args)
        made.append(r)
        return r

    def start_host(router: str, **kw):
        h = geventp2p.new_host(listen=["/ip4/127.0.0.1/tcp/0"])
        made.append(h)
        ps = FloodSub(h, **kw) if router == "floodsub" else GossipSub(h, **kw)
        return h, ps

    yield start_remote, start_host
    for x in reversed(made):
        if isinstance(x, Remote):
            x.stop()
        else:
            x.close()


def _router(remote: str) -> str:
    return remote.split("-")[1]


def _setup(env, remote: str, we_dial: bool = True, topic: str = "interop", extra: tuple = ()):
    """Our host + a remote peer, both subscribed to ``topic``, each knowing the other's subscription."""
    start_remote, start_host = env
    h, ps = start_host(_router(remote))
    t = ps.join(topic)
    sub = t.subscribe(buffer=4096)
    events = t.peer_events()
    if we_dial:
        r = start_remote(remote, "--topic", topic, *extra)
        h.connect(r.addr, timeout=WAIT)
    else:
        r = start_remote(remote, "--topic", topic, "--connect", str(h.p2p_addrs()[0]), *extra)
    rid = PeerId.from_string(r.peer_id)
    while True:
        evt = events.get(timeout=WAIT)
        if evt.peer == rid and evt.event == "joined":
            break
    events.cancel()
    r.wait(lambda o: o.get("type") == "peer" and o["peer"] == str(h.id) and o["event"] == "joined",
           "our subscription at the remote")
    if _router(remote) == "gossipsub":
        _wait_meshes(ps, r, topic, rid, h.id)
    return h, ps, t, sub, r


def _wait_meshes(ps, r: Remote, topic: str, rid: PeerId, our_id: PeerId) -> None:
    """Blocks until our gossipsub mesh of ``topic`` holds the remote and theirs holds us."""
    deadline = time.monotonic() + WAIT
    while rid not in ps.router.mesh_peers(topic):
        assert time.monotonic() < deadline, "the remote never joined our mesh"
        gevent.sleep(0.05)
    _wait_in_their_mesh(r, topic, str(our_id), deadline)


def _wait_in_their_mesh(r: Remote, topic: str, peer: str, deadline: float) -> None:
    """Blocks until the remote's gossipsub mesh of ``topic`` holds ``peer`` (a peer ID string)."""
    while True:
        r.send(cmd="peers", topic=topic)
        mesh = r.wait(lambda o: o.get("type") == "peers", "their mesh")["mesh"]
        if peer in mesh:
            return
        assert time.monotonic() < deadline, f"{peer} never joined {r.name}'s mesh: {mesh}"
        gevent.sleep(0.1)


@pytest.mark.parametrize("we_dial", [True, False], ids=["we-dial", "they-dial"])
@pytest.mark.parametrize("remote", REMOTES)
def test_publish_both_ways(env, remote, we_dial):
    h, ps, t, sub, r = _setup(env, remote, we_dial)
    t.publish(b"hello from geventp2p", timeout=10)
    got = r.messages(1, "interop")[0]
    assert got["data"] == "hello from geventp2p"
    assert got["from"] == str(h.id) and got["signed"]
    assert len(bytes.fromhex(got["seqno"])) == 8
    own = sub.get(timeout=WAIT)  # ours, delivered locally
    assert own.data == b"hello from geventp2p"
    r.send(cmd="publish", topic="interop", data_hex=b"hello from the other side".hex())
    m = sub.get(timeout=WAIT)
    assert m.data == b"hello from the other side"
    assert m.from_peer == PeerId.from_string(r.peer_id)  # signed by them, verified by us
    assert m.received_from == m.from_peer
    # The spec's seqno is a 64-bit big-endian integer.  js-libp2p keeps it as a BigInt and
    # writes it without leading zero bytes, so one message in 256 carries a 7-byte seqno
    # (1 in 65,536 a 6-byte one); go treats the field as opaque bytes, and so do we.
    assert 1 <= len(m.seqno) <= 8 if remote.startswith("js") else len(m.seqno) == 8


@pytest.mark.parametrize("remote", REMOTES)
def test_thousand_messages_each_way(env, remote):
    h, ps, t, sub, r = _setup(env, remote)
    r.send(cmd="publish_many", topic="interop", count=1000, size=1024)
    seen = set()
    while len(seen) < 1000:
        m = sub.get(timeout=WAIT)
        assert len(m.data) == 1024
        seen.add(int.from_bytes(m.data[:4], "big"))
    assert seen == set(range(1000))
    assert r.wait(lambda o: o.get("type") == "publish_many", "publish_many done")["errors"] == 0
    for i in range(1000):
        t.publish(i.to_bytes(4, "big") + b"\xab" * 1020, timeout=30)
    got = r.messages(1000, "interop", timeout=120)
    assert sorted(o["index"] for o in got) == list(range(1000))
    assert ps.dropped_rpcs == 0


@pytest.mark.parametrize("size", [1, 100 * 1024, 900 * 1024], ids=["1B", "100KiB", "900KiB"])
@pytest.mark.parametrize("remote", REMOTES)
def test_message_sizes(env, remote, size):
    h, ps, t, sub, r = _setup(env, remote)
    data = os.urandom(size)
    t.publish(data, timeout=30)
    got = r.messages(1, "interop")[0]
    assert got["size"] == size and got["sha256"] == hashlib.sha256(data).hexdigest()
    assert sub.get(timeout=WAIT).data == data  # own copy
    r.send(cmd="publish_many", topic="interop", count=1, size=size)
    m = sub.get(timeout=WAIT)
    assert len(m.data) == size and m.from_peer == PeerId.from_string(r.peer_id)


@pytest.mark.parametrize("remote", REMOTES)
def test_bad_signature_is_rejected_by_them(env, remote):
    """We forge a message whose signature does not verify: the remote drops it, takes the next."""
    from geventp2p.sansio.pubsub import rpc as _rpc
    from geventp2p.sansio.pubsub.sign import sign_message

    h, ps, t, sub, r = _setup(env, remote)
    rid = PeerId.from_string(r.peer_id)
    good = sign_message(_rpc.Message(data=b"good", topic="interop", from_peer=bytes(h.id),
                                     seqno=(1 << 62).to_bytes(8, "big")), h.private_key)
    bad = sign_message(_rpc.Message(data=b"bad", topic="interop", from_peer=bytes(h.id),
                                    seqno=((1 << 62) + 1).to_bytes(8, "big")), h.private_key)
    bad.signature = bytes([bad.signature[0] ^ 1]) + bad.signature[1:]
    bad.raw = None
    peer = ps._peers[rid]  # inject both frames into our one outbound stream to them
    peer.queue.append(_rpc.frame_rpc(_rpc.RPC(publish=[bad])))
    peer.queue.append(_rpc.frame_rpc(_rpc.RPC(publish=[good])))
    peer.wake.set()
    got = r.messages(1, "interop")[0]
    assert got["data"] == "good"
    r.no_message("interop", 1.0)


GOSSIP_REMOTES = [r for r in REMOTES if r.endswith("gossipsub")]


@pytest.mark.parametrize("remote", GOSSIP_REMOTES)
def test_mesh_forms_both_ways_and_prune_on_leave(env, remote):
    h, ps, t, sub, r = _setup(env, remote)
    rid = PeerId.from_string(r.peer_id)
    assert rid in ps.router.mesh_peers("interop")  # we grafted them (or accepted their GRAFT)
    r.send(cmd="peers", topic="interop")
    assert str(h.id) in r.wait(lambda o: o.get("type") == "peers", "their mesh")["mesh"]
    sub.cancel()  # we leave: PRUNE + unsubscribe
    deadline = time.monotonic() + WAIT
    while True:
        r.send(cmd="peers", topic="interop")
        got = r.wait(lambda o: o.get("type") == "peers", "their mesh")
        if str(h.id) not in got["mesh"] and str(h.id) not in got["peers"]:
            break
        assert time.monotonic() < deadline, got
        gevent.sleep(0.2)
    assert rid not in ps.router.mesh_peers("interop")


@pytest.mark.parametrize("remote", REMOTES)
def test_forwarded_through_their_node(env, remote):
    """Two geventp2p hosts linked only through the remote peer reach each other through it."""
    start_remote, start_host = env
    r = start_remote(remote, "--topic", "relay")
    rid = PeerId.from_string(r.peer_id)
    ends = []
    for _ in range(2):
        h, ps = start_host(_router(remote))
        t = ps.join("relay")
        sub = t.subscribe()
        events = t.peer_events()
        h.connect(r.addr, timeout=WAIT)
        while not (lambda e: e.peer == rid and e.event == "joined")(events.get(timeout=WAIT)):
            pass
        events.cancel()
        ends.append((h, ps, t, sub))
    for h, *_ in ends:
        r.wait(lambda o, h=h: o.get("type") == "peer" and o["peer"] == str(h.id) and o["event"] == "joined",
               "our subscription at the remote")
    if _router(remote) == "gossipsub":
        for h, ps, _t, _s in ends:
            _wait_meshes(ps, r, "relay", rid, h.id)
    (ha, _psa, ta, sa), (hb, _psb, tb, sb) = ends
    ta.publish(b"a to b through them", timeout=10)
    # first at the middle node, so a failure says which hop lost the message
    r.wait(lambda o: o.get("type") == "message" and o.get("data") == "a to b through them",
           "A's message at the remote (the hop A -> them)")
    try:
        m = sb.get(timeout=WAIT)
    except P2PTimeoutError:
        raise AssertionError(f"{remote} got A's message but did not forward it to B within {WAIT} s\n"
                             f"{r.proc.stderr_tail()}") from None
    assert m.data == b"a to b through them" and m.from_peer == ha.id and m.received_from == rid
    tb.publish(b"and back", timeout=10)
    while True:
        m = sa.get(timeout=WAIT)
        if m.from_peer == hb.id:
            break
    assert m.data == b"and back" and m.received_from == rid


def test_mixed_network(env, record_property):
    """4 geventp2p hosts, 2 js and 2 py gossipsub peers in one topic on a sparse graph (a ring
    of 8 alternating implementations plus one chord): every message reaches every node."""
    start_remote, start_host = env
    remotes = [start_remote(kind, "--topic", "mix") for kind in
               ("js-gossipsub", "py-gossipsub", "js-gossipsub", "py-gossipsub")]
    ours = []
    for _ in range(4):
        h, ps = start_host("gossipsub")
        t = ps.join("mix")
        ours.append((h, ps, t, t.subscribe(buffer=256)))
    # ring: G0 - R0 - G1 - R1 - G2 - R2 - G3 - R3 - G0, plus the chord G0 - G2
    links = []
    for i in range(4):
        links.append((ours[i][0], remotes[i].addr, PeerId.from_string(remotes[i].peer_id)))
        links.append((ours[(i + 1) % 4][0], remotes[i].addr, PeerId.from_string(remotes[i].peer_id)))
    for h, addr, _pid in links:
        h.connect(addr, timeout=WAIT)
    ours[0][0].connect(ours[2][0].p2p_addrs()[0], timeout=WAIT)
    deadline = time.monotonic() + WAIT
    for h, ps, t, _sub in ours:
        want = {pid for hh, _a, pid in links if hh is h}
        while not want <= set(t.list_peers()):
            assert time.monotonic() < deadline, (h.id, want, t.list_peers())
            gevent.sleep(0.05)
    for h, ps, _t, _sub in ours:  # our meshes hold our remote neighbours (theirs form alike)
        want = {pid for hh, _a, pid in links if hh is h}
        while not want <= set(ps.router.mesh_peers("mix")):
            assert time.monotonic() < deadline, (h.id, want, ps.router.mesh_peers("mix"))
            gevent.sleep(0.05)
    for r in remotes:
        while True:
            r.send(cmd="peers", topic="mix")
            if len(r.wait(lambda o: o.get("type") == "peers", "their mesh")["mesh"]) >= 2:
                break
            assert time.monotonic() < deadline, r.name
            gevent.sleep(0.1)
    expected = set()
    for i, (h, ps, t, _sub) in enumerate(ours):
        data = f"from geventp2p {i}"
        t.publish(data.encode(), timeout=10)
        expected.add(data)
    for i, r in enumerate(remotes):
        data = f"from {r.name} {i}"
        r.send(cmd="publish", topic="mix", data_hex=data.encode().hex())
        expected.add(data)
    for h, ps, t, sub in ours:
        got = set()
        while got != expected:
            got.add(sub.get(timeout=WAIT).data.decode())
    for i, r in enumerate(remotes):
        own = f"from {r.name} {i}"
        for data in sorted(expected - {own}):  # py-libp2p also hands its own message to itself
            r.wait(lambda o, d=data: o.get("type") == "message" and o.get("data") == d, f"{data!r} at {r.name}")
    dups = {str(h.id): ps.drop_counts.get("duplicate", 0) for h, ps, _t, _s in ours}
    record_property("duplicates", json.dumps(dups))  # 8 messages; duplicates each geventp2p node saw
    print("duplicates per geventp2p node (8 messages):", sorted(dups.values()))
    assert all(n <= 8 * 3 for n in dups.values()), dups


@pytest.mark.parametrize("remote", GOSSIP_REMOTES)
def test_idontwant_from_them(env, remote):
    """Triangle G1 - R - G2 - G1: R receives a 100 KiB message from G1 and tells its other mesh
    peer G2 IDONTWANT with the message's id (gossipsub v1.2, same id function everywhere)."""
    start_remote, start_host = env
    r = start_remote(remote, "--topic", "idw")
    rid = PeerId.from_string(r.peer_id)
    (h1, ps1), (h2, ps2) = start_host("gossipsub"), start_host("gossipsub")
    t1, t2 = ps1.join("idw"), ps2.join("idw")
    t1.subscribe()
    s2 = t2.subscribe()
    idontwant: list[bytes] = []
    orig = ps2.router.handle_rpc

    def spy(peer, rpc, now):
        if peer == rid and rpc.control is not None:
            for d in rpc.control.idontwant:
                idontwant.extend(d.message_ids)
        return orig(peer, rpc, now)

    ps2.router.handle_rpc = spy
    for h in (h1, h2):
        h.connect(r.addr, timeout=WAIT)
    h2.connect(h1.p2p_addrs()[0], timeout=WAIT)
    deadline = time.monotonic() + WAIT
    while not ({rid, h2.id} <= set(ps1.router.mesh_peers("idw")) and rid in ps2.router.mesh_peers("idw")):
        assert time.monotonic() < deadline, (ps1.router.mesh_peers("idw"), ps2.router.mesh_peers("idw"))
        gevent.sleep(0.1)
    assert ps1._peers[rid].protocol == "/meshsub/1.2.0"
    mid = t1.publish(os.urandom(100 * 1024), timeout=10)
    assert s2.get(timeout=WAIT).id == mid
    while mid not in idontwant:
        assert time.monotonic() < deadline + WAIT, idontwant
        gevent.sleep(0.05)


def test_two_cli_processes_and_a_js_peer(env, record_property):
    """The README workflow: two `geventp2p pubsub` processes and a js peer exchange messages."""
    import subprocess

    start_remote, _start_host = env
    js = start_remote("js-gossipsub", "--topic", "cli")
    cli = [sys.executable, "-m", "geventp2p.cli", "pubsub", "--topic", "cli"]
    a = ih.PeerProcess("cli-a", [*cli, "--connect", js.addr])
    procs = [a]
    try:
        a.wait_ready(WAIT)
        b = ih.PeerProcess("cli-b", [*cli, "--connect", a.info["addrs"][0]])
        procs.append(b)
        b.wait_ready(WAIT)
        ra, rb = Remote.__new__(Remote), Remote.__new__(Remote)
        for r, p in ((ra, a), (rb, b)):
            r.name, r.proc, r.lines, r.peer_id = p.kind, p, [], p.info["peer_id"]
        js.wait(lambda o: o.get("type") == "peer" and o["peer"] == ra.peer_id and o["event"] == "joined",
                "cli-a at js")
        rb.wait(lambda o: o.get("type") == "peer" and o["peer"] == ra.peer_id, "cli-a at cli-b")
        # cli-b's line reaches js only through cli-a, which forwards to its mesh.  A line that
        # reaches cli-a before js is in that mesh goes to js as gossip at cli-a's next heartbeat,
        # unless the graft lands first: then js never gets it (gossipsub is best effort; on a
        # loaded machine `make test-stress` lost it this way).  So wait for the mesh, then send
        # lines until js gets one.
        deadline = time.monotonic() + WAIT
        _wait_in_their_mesh(js, "cli", ra.peer_id, deadline)
        for n in range(10_000):
            b.proc.stdin.write(f"hello from cli-b {n}\n".encode())
            b.proc.stdin.flush()
            try:
                got = js.wait(lambda o: o.get("type") == "message" and o.get("data", "").startswith("hello from cli-b"),
                              "b's line at js", timeout=1.0)
                break
            except AssertionError:
                if not js.proc.alive() or time.monotonic() > deadline + WAIT:
                    raise
        record_property("cli_b_lines_sent", n + 1)
        assert got["from"] == rb.peer_id
        line = got["data"]
        ra.wait(lambda o: o.get("type") == "message" and o.get("data") == line, "b's line at a")
        # cli-b joins cli-a's mesh at a heartbeat of cli-a; until then a message cli-a gets from
        # js is not forwarded to it (nor gossiped: the graft comes first).  Publish until it is.
        deadline = time.monotonic() + WAIT
        for n in range(10_000):
            js.send(cmd="publish", topic="cli", data_hex=f"hello from js {n}".encode().hex())
            try:
                m = rb.wait(lambda o: o.get("type") == "message" and o.get("data", "").startswith("hello from js"),
                            "js at cli-b", timeout=0.5)
                break
            except AssertionError:
                assert time.monotonic() < deadline, "js's messages never reached cli-b through cli-a"
        assert m["from"] == js.peer_id
        m = ra.wait(lambda o: o.get("type") == "message" and o.get("data") == f"hello from js {n}", "js at cli-a")
        assert m["from"] == js.peer_id
        for p in (b, a):
            p.proc.stdin.close()
            assert p.proc.wait(timeout=WAIT) == 0  # EOF: clean exit
    except subprocess.TimeoutExpired:
        pytest.fail("a geventp2p pubsub process did not exit at EOF")
    finally:
        for p in procs:
            p.stop()


@pytest.mark.parametrize("remote", GOSSIP_REMOTES)
def test_ihave_iwant_recovery(env, remote):
    """Out of each other's mesh (we PRUNE them, with backoff, and drop them from ours) and
    without flood publishing, our message reaches them only as gossip: our IHAVE at a
    heartbeat, their IWANT, then the message.  (Their own messages may still come straight:
    js and py send to non-mesh topic peers when their mesh is empty.)"""
    from geventp2p.sansio.pubsub import rpc as _rpc

    h, ps, t, sub, r = _setup(env, remote, topic="gossip", extra=("--no-flood-publish",))
    rid = PeerId.from_string(r.peer_id)
    iwant: list[bytes] = []
    orig = ps.router.handle_rpc

    def spy(peer, rpc, now):
        if peer == rid and rpc.control is not None:
            for iw in rpc.control.iwant:
                iwant.extend(iw.message_ids)
        return orig(peer, rpc, now)

    ps.router.handle_rpc = spy
    ps.router.mesh["gossip"].discard(rid)
    ps.router.backoff.setdefault("gossip", {})[rid] = time.monotonic() + 120
    peer = ps._peers[rid]
    prune = _rpc.RPC(control=_rpc.ControlMessage(prune=[_rpc.ControlPrune(topic="gossip", backoff=60)]))
    peer.queue.append(_rpc.frame_rpc(prune))
    peer.wake.set()
    deadline = time.monotonic() + WAIT
    while True:
        r.send(cmd="peers", topic="gossip")
        if str(h.id) not in r.wait(lambda o: o.get("type") == "peers", "their mesh")["mesh"]:
            break
        assert time.monotonic() < deadline, "the remote kept us in its mesh"
        gevent.sleep(0.1)
    mid = t.publish(b"gossiped to them", timeout=10)
    got = r.wait(lambda o: o.get("type") == "message" and o.get("data") == "gossiped to them",
                 "our message, fetched with IWANT")
    assert got["from"] == str(h.id)
    assert mid in iwant
    assert rid not in ps.router.mesh_peers("gossip")


def _inject(ps, peer: PeerId, *msgs) -> None:
    """Queue ``msgs`` on our outbound stream to ``peer`` as one RPC, bypassing our router."""
    from geventp2p.sansio.pubsub import rpc as _rpc

    p = ps._peers[peer]
    p.queue.append(_rpc.frame_rpc(_rpc.RPC(publish=list(msgs))))
    p.wake.set()


def _signed(host, topic: str, data: bytes, n: int):
    """A message of ``host`` signed with its key, with a seqno our own counter never reaches."""
    from geventp2p.sansio.pubsub import rpc as _rpc
    from geventp2p.sansio.pubsub.sign import sign_message

    return sign_message(_rpc.Message(data=data, topic=topic, from_peer=bytes(host.id),
                                     seqno=((1 << 62) + n).to_bytes(8, "big")), host.private_key)


def _spy_in(ps, rid: PeerId, log: list) -> None:
    """Record ``(time, rpc)`` of every RPC ``rid`` sends ``ps``."""
    orig = ps.router.handle_rpc

    def spy(peer, rpc, now):
        if peer == rid:
            log.append((time.monotonic(), rpc))
        return orig(peer, rpc, now)

    ps.router.handle_rpc = spy


def _spy_out(ps, rid: PeerId, log: list) -> None:
    """Record ``(time, rpc)`` of every RPC ``ps``'s router sends ``rid``."""
    from geventp2p.sansio.pubsub import SendRPC

    orig = ps.router.events

    def events():
        evs = orig()
        for ev in evs:
            if isinstance(ev, SendRPC) and ev.peer == rid:
                log.append((time.monotonic(), ev.rpc))
        return evs

    ps.router.events = events


def _grafts(log: list, topic: str) -> list[float]:
    return [t for t, rpc in log if rpc.control is not None and any(g.topic == topic for g in rpc.control.graft)]


def _their_mesh(r: Remote, topic: str) -> list[str]:
    r.send(cmd="peers", topic=topic)
    return r.wait(lambda o: o.get("type") == "peers", "their mesh")["mesh"]


@pytest.mark.parametrize("remote", GOSSIP_REMOTES)
def test_our_unsubscribe_prune_backoff_is_honoured_by_them(env, remote):
    """We leave (PRUNE with our 10 s unsubscribe backoff) and join again at once, keeping
    them out of our own mesh: they must not GRAFT us before the 10 s are over, and they do
    GRAFT us once they are (their own prune backoff, 60 s, would be too late)."""
    h, ps, t, sub, r = _setup(env, remote, topic="bo")
    rid = PeerId.from_string(r.peer_id)
    inbound: list = []
    _spy_in(ps, rid, inbound)
    backoff = ps.config.unsubscribe_backoff
    t_leave = time.monotonic()
    sub.cancel()  # PRUNE(backoff=10) + UNSUBSCRIBE
    sub = t.subscribe()  # SUBSCRIBE again; our own backoff keeps them out of our mesh
    ps.router.backoff["bo"][rid] = time.monotonic() + 120  # and we never GRAFT them in this test
    deadline = t_leave + backoff + 40
    while not _grafts(inbound, "bo"):
        assert time.monotonic() < deadline, f"{remote} never grafted us again"
        gevent.sleep(0.1)
    first = _grafts(inbound, "bo")[0] - t_leave
    print(f"{remote} grafted us {first:.2f} s after our PRUNE (backoff {backoff} s)")
    # py-libp2p 0.8.1 counts backoffs in its 1 s heartbeats and grafts up to one heartbeat
    # early (seen: 9.04 s and 9.98 s for 10 s); go and js check the expiry itself
    slack = 1.5 if remote.startswith("py") else 0.5
    assert first >= backoff - slack, f"{remote} grafted us {first:.2f} s after a PRUNE with a {backoff} s backoff"


@pytest.mark.parametrize("remote", GOSSIP_REMOTES)
def test_their_unsubscribe_prune_backoff_is_honoured_by_us(env, remote):
    """They leave (PRUNE with their backoff) and join again at once: we do not GRAFT them
    before their backoff is over, and the mesh forms again afterwards."""
    h, ps, t, sub, r = _setup(env, remote, topic="bo2")
    rid = PeerId.from_string(r.peer_id)
    inbound: list = []
    outbound: list = []
    _spy_in(ps, rid, inbound)
    _spy_out(ps, rid, outbound)
    r.send(cmd="unsubscribe", topic="bo2")
    deadline = time.monotonic() + WAIT
    while True:
        prunes = [(ts, p) for ts, rpc in inbound if rpc.control is not None
                  for p in rpc.control.prune if p.topic == "bo2"]
        if prunes:
            break
        assert time.monotonic() < deadline, f"{remote} left without a PRUNE"
        gevent.sleep(0.05)
    t_prune, prune = prunes[0]
    backoff = prune.backoff or ps.config.prune_backoff
    assert rid not in ps.router.mesh_peers("bo2")
    r.send(cmd="subscribe", topic="bo2")
    r.wait(lambda o: o.get("type") == "subscribe", "their subscribe")
    deadline = t_prune + backoff + 40
    while rid not in ps.router.mesh_peers("bo2") or str(h.id) not in _their_mesh(r, "bo2"):
        early = [x for x in _grafts(inbound, "bo2") if x - t_prune < backoff]
        if early and not _grafts(outbound, "bo2") and time.monotonic() > t_prune + backoff + 5:
            # py-libp2p grafts when its own timer ends, a few ms before ours (it starts first):
            # like go we answer a GRAFT in backoff with PRUNE, so no mesh for another backoff
            print(f"{remote} grafted us {early[0] - t_prune:.3f} s after its {backoff} s PRUNE")
            break
        assert time.monotonic() < deadline, (
            "the mesh never formed again", backoff, ps.router.mesh_peers("bo2"), _their_mesh(r, "bo2"),
            [x - t_prune for x in _grafts(outbound, "bo2")], [x - t_prune for x in _grafts(inbound, "bo2")],
            [rpc.control for _t, rpc in inbound if rpc.control is not None][-5:])
        gevent.sleep(0.2)
    ours = _grafts(outbound, "bo2")
    print(f"{remote}: PRUNE backoff {backoff} s; our GRAFTs at",
          [round(x - t_prune, 2) for x in ours], "theirs at", [round(x - t_prune, 2) for x in _grafts(inbound, "bo2")])
    assert all(x - t_prune >= backoff for x in ours), (backoff, [x - t_prune for x in ours])


@pytest.mark.parametrize("remote", GOSSIP_REMOTES)
def test_idontwant_to_them_is_honoured(env, remote):
    """G1 - R - G2 - G1, every mesh holding both neighbours.  G2 gets a 100 KiB message M
    from G1 first (G1's router bypassed; G2 holds it in validation so it forwards nothing)
    and sends R IDONTWANT(M).  Then R gets M from G1: it must not send M to G2, though G2
    is in R's mesh.  A small message G1 -> R afterwards, which R does forward to G2, marks
    the point by which M would have come."""
    start_remote, start_host = env
    topic = "idw2"
    r = start_remote(remote, "--topic", topic)
    rid = PeerId.from_string(r.peer_id)
    (h1, ps1), (h2, ps2) = start_host("gossipsub"), start_host("gossipsub")
    t1, t2 = ps1.join(topic), ps2.join(topic)
    t1.subscribe()
    t2.subscribe()
    hold = gevent.event.Event()
    big = b"\x01" + os.urandom(100 * 1024)

    def validator(msg):
        if msg.data == big:
            hold.wait(WAIT * 3)
            return IGNORE
        return ACCEPT

    ps2.register_validator(topic, validator)
    inbound: list = []
    outbound: list = []
    _spy_in(ps2, rid, inbound)
    _spy_out(ps2, rid, outbound)
    for h in (h1, h2):
        h.connect(r.addr, timeout=WAIT)
    h2.connect(h1.p2p_addrs()[0], timeout=WAIT)
    deadline = time.monotonic() + WAIT
    while not (rid in ps2.router.mesh_peers(topic) and h1.id in ps2.router.mesh_peers(topic)
               and {str(h1.id), str(h2.id)} <= set(_their_mesh(r, topic))):
        assert time.monotonic() < deadline, (ps2.router.mesh_peers(topic), _their_mesh(r, topic))
        gevent.sleep(0.1)
    assert ps2._peers[rid].protocol == "/meshsub/1.2.0"
    m = _signed(h1, topic, big, 1)
    mid = ps2.router.msg_id(m)
    _inject(ps1, h2.id, m)  # 1. G1 -> G2 only
    deadline = time.monotonic() + WAIT
    while not any(rpc.control is not None and any(mid in d.message_ids for d in rpc.control.idontwant)
                  for _t, rpc in outbound):
        assert time.monotonic() < deadline, "G2 sent R no IDONTWANT"
        gevent.sleep(0.02)
    _inject(ps2, rid, _signed(h2, topic, b"barrier 1", 2))  # 2. after the IDONTWANT on the same stream
    r.wait(lambda o: o.get("type") == "message" and o.get("data") == "barrier 1", "barrier 1 at R")
    _inject(ps1, rid, m)  # 3. now R gets M, from G1
    r.wait(lambda o: o.get("type") == "message" and o.get("size") == len(big), "M at R")
    m3 = _signed(h1, topic, b"barrier 2", 3)
    _inject(ps1, rid, m3)  # 4. R forwards this one to G2
    mid3 = ps2.router.msg_id(m3)
    deadline = time.monotonic() + WAIT
    while not any(mid3 == ps2.router.msg_id(x) for _t, rpc in inbound for x in rpc.publish):
        assert time.monotonic() < deadline, "R did not forward barrier 2 to G2"
        gevent.sleep(0.02)
    copies = [x for _t, rpc in inbound for x in rpc.publish if ps2.router.msg_id(x) == mid]
    hold.set()
    assert not copies, f"{remote} sent M to G2 after G2's IDONTWANT"


def _connect_retry(h, addr: str, tries: int = 8) -> None:
    """Dial, retrying: js-libp2p refuses more than 5 inbound connections a second from one IP."""
    from geventp2p.exceptions import P2PError

    for i in range(tries):
        try:
            h.connect(addr, timeout=WAIT)
            return
        except P2PError:
            if i == tries - 1:
                raise
            gevent.sleep(0.5)
            h.network.backoff().clear(PeerId.from_string(addr.rsplit("/", 1)[1]))


# py-libp2p is left out: it sends no IHAVE to a peer in backoff and grafts any other
# non-mesh topic peer at its next heartbeat (opportunistic grafting at every heartbeat),
# so no py node gossips to a non-mesh peer here.  Our IHAVE to py is tested above.
@pytest.mark.parametrize("remote", ["js-gossipsub"])
def test_ihave_iwant_recovery_from_them(env, remote):
    """R's mesh is full enough (G1 and seven more of our hosts: py-libp2p raises its D_lo by
    up to 3 when it judges the network unhealthy) not to take G2, and G2 keeps
    R out of its own mesh: a message G1 publishes reaches R but has no mesh path to G2;
    G2 gets it from R's IHAVE with its IWANT.  (No PRUNE: py-libp2p sends no IHAVE to a
    peer in backoff.)"""
    start_remote, start_host = env
    topic = "gossip2"
    r = start_remote(remote, "--topic", topic)
    rid = PeerId.from_string(r.peer_id)
    meshed = [start_host("gossipsub") for _ in range(8)]
    for h, ps in meshed:
        ps.join(topic).subscribe()
        _connect_retry(h, r.addr)
    deadline = time.monotonic() + WAIT
    while not {str(h.id) for h, _ps in meshed} <= set(_their_mesh(r, topic)):
        assert time.monotonic() < deadline, "R's mesh never held our eight hosts"
        gevent.sleep(0.1)
    h2, ps2 = start_host("gossipsub")
    ps2.router.backoff.setdefault(topic, {})[rid] = time.monotonic() + 300  # G2 never grafts R
    s2 = ps2.join(topic).subscribe()
    inbound: list = []
    outbound: list = []
    _spy_in(ps2, rid, inbound)
    _spy_out(ps2, rid, outbound)
    _connect_retry(h2, r.addr)
    r.wait(lambda o: o.get("type") == "peer" and o["peer"] == str(h2.id) and o["event"] == "joined", "G2 at R")
    assert str(h2.id) not in _their_mesh(r, topic)
    (h1, ps1) = meshed[0]
    mid = ps1.join(topic).publish(b"recovered by IWANT", timeout=10)
    try:
        m = s2.get(timeout=WAIT)
    except Exception:
        print("controls from R:", [rpc.control for _t, rpc in inbound if rpc.control is not None][-8:])
        raise
    assert m.data == b"recovered by IWANT" and m.id == mid and m.received_from == rid
    ihave = [x for _t, rpc in inbound if rpc.control is not None for ih in rpc.control.ihave for x in ih.message_ids]
    iwant = [x for _t, rpc in outbound if rpc.control is not None for iw in rpc.control.iwant for x in iw.message_ids]
    assert mid in ihave and mid in iwant
    assert not _grafts(inbound, topic) and not _grafts(outbound, topic)


@pytest.mark.parametrize("v13", [True, False], ids=["we-offer-1.3", "we-offer-1.2"])
@pytest.mark.parametrize("remote", ["js-gossipsub", "py-gossipsub", "py-gossipsub-1.3", "py-gossipsub-1.3-ext"])
def test_meshsub_13_negotiation(env, remote, v13):
    """/meshsub/1.3.0 where both speak it (py-libp2p when told to offer it), a clean fall
    back to 1.2.0 otherwise (js, py by default, or we without v13); the mesh forms and
    messages flow both ways on whatever was chosen.  A peer's v1.3 Extensions (py's test
    extension) are recorded."""
    from geventp2p.sansio.pubsub import GossipSubParams

    start_remote, start_host = env
    base, *flags = remote.split("-1.3")
    extra = ["--meshsub13"] if flags else []
    if flags and flags[0] == "-ext":
        extra.append("--test-extension")
    r = start_remote(base, "--topic", "v13", *extra)
    rid = PeerId.from_string(r.peer_id)
    h, ps = start_host("gossipsub", config=GossipSubParams(v13=v13))
    assert ("/meshsub/1.3.0" in ps.protocols) is v13
    t = ps.join("v13")
    sub = t.subscribe()
    h.connect(r.addr, timeout=WAIT)
    r.wait(lambda o: o.get("type") == "peer" and o["peer"] == str(h.id) and o["event"] == "joined", "us at R")
    _wait_meshes(ps, r, "v13", rid, h.id)
    want = "/meshsub/1.3.0" if v13 and flags else "/meshsub/1.2.0"
    assert ps._peers[rid].protocol == want
    t.publish(b"v13 to them", timeout=10)
    assert r.messages(1, "v13")[0]["data"] == "v13 to them"
    r.send(cmd="publish", topic="v13", data_hex=b"v13 to us".hex())
    while True:
        m = sub.get(timeout=WAIT)
        if m.data == b"v13 to us":
            break
    ext = ps.router.peer_extensions.get(rid)
    if want == "/meshsub/1.3.0" and flags[0] == "-ext":
        assert ext is not None and ext.test_extension
    elif want != "/meshsub/1.3.0":
        assert ext is None
