"""BasicHost: handlers, negotiation (lazy and round trip), connect, close, new_host options."""

from __future__ import annotations

import gc
import time

import gevent
import pytest
from gevent.event import Event

import geventp2p
from geventp2p.core.event import EvtLocalAddressesUpdated, EvtLocalProtocolsUpdated
from geventp2p.core.peer import PeerInfo
from geventp2p.exceptions import ConfigError, NegotiationError, StreamResetError
from geventp2p.host.basic import BasicHost
from geventp2p.host.peerstore import TEMP_ADDR_TTL
from geventp2p.net.stream import Stream
from geventp2p.protocols.echo import echo
from tests.protocols._leaks import bounded_and_leak_free, open_sockets  # noqa: F401  (autouse)


@pytest.fixture
def pair(make_host):
    a = make_host(services=["identify", "ping", "echo"])
    b = make_host(services=["identify", "ping", "echo"])
    b.connect(a.p2p_addrs()[0], timeout=10)
    return a, b


def read_all(s, timeout=5):
    out = b""
    while True:
        chunk = s.read(timeout=timeout)
        if not chunk:
            return out
        out += chunk


# ---------------------------------------------------------------- handlers


def test_stream_closed_after_handler_returns(pair):
    a, b = pair
    done = Event()
    seen = {}

    def handler(stream):
        seen["protocol"] = stream.protocol
        seen["peer"] = stream.conn.remote_peer
        stream.write(b"hi")
        done.set()

    a.set_stream_handler("/t/1.0.0", handler)
    s = b.new_stream(a.id, "/t/1.0.0", timeout=5)
    assert s.protocol == "/t/1.0.0"
    s.write(b"ignored")  # triggers the lazy proposal
    assert read_all(s) == b"hi"  # EOF: the host closed it after the handler
    s.close()
    assert done.wait(5)
    assert seen == {"protocol": "/t/1.0.0", "peer": b.id}


def test_handler_exception_resets_stream(pair, caplog):
    a, b = pair

    def boom(stream):
        stream.read(1, timeout=5)
        raise RuntimeError("handler bug")

    a.set_stream_handler("/boom/1.0.0", boom)
    s = b.new_stream(a.id, "/boom/1.0.0", timeout=5)
    s.write(b"x")
    with pytest.raises(StreamResetError):
        read_all(s)
    s.close()
    assert any("handler bug" in (r.exc_text or "") or "handler for /boom/1.0.0" in r.getMessage()
               for r in caplog.records)


def test_handler_that_closes_itself(pair):
    a, b = pair

    def closer(stream):
        stream.write(b"bye")
        stream.close()

    a.set_stream_handler("/close/1.0.0", closer)
    s = b.new_stream(a.id, "/close/1.0.0", timeout=5)
    s.write(b"x")
    assert read_all(s) == b"bye"
    s.close()


def test_protocol_events_and_stateful_replay(make_host):
    a = make_host(services=[])
    with a.event_bus.subscribe(EvtLocalProtocolsUpdated) as sub:
        a.set_stream_handler("/x/1.0.0", lambda s: None)
        assert sub.get(timeout=2) == EvtLocalProtocolsUpdated(added=("/x/1.0.0",))
        a.set_stream_handler("/x/1.0.0", lambda s: None)  # replacement: no event
        a.remove_stream_handler("/x/1.0.0")
        assert sub.get(timeout=2) == EvtLocalProtocolsUpdated(removed=("/x/1.0.0",))
        a.remove_stream_handler("/x/1.0.0")  # unknown: no event
        assert sub.qsize() == 0
    with a.event_bus.subscribe(EvtLocalProtocolsUpdated) as late:
        assert late.get(timeout=1) == EvtLocalProtocolsUpdated(removed=("/x/1.0.0",))  # replayed
    with a.event_bus.subscribe(EvtLocalAddressesUpdated) as addrs:
        evt = addrs.get(timeout=1)
        assert [u.address for u in evt.current] == a.addrs()


def test_match_predicate(pair):
    a, b = pair
    got = []

    def versioned(stream):
        got.append(stream.protocol)
        stream.write(stream.protocol.encode())

    a.set_stream_handler("/ver/1.0.0", versioned, match=lambda p: p.startswith("/ver/"))
    for proto in ("/ver/1.0.0", "/ver/1.5.0"):
        s = b.new_stream(a.id, ["/nope/1", proto], timeout=5)
        assert s.protocol == proto
        assert read_all(s) == proto.encode()
        s.close()
    assert got == ["/ver/1.0.0", "/ver/1.5.0"]
    assert "/ver/1.5.0" not in a.get_protocols()


def test_bad_registrations(make_host):
    a = make_host()
    with pytest.raises(Exception):
        a.set_stream_handler("no-slash", lambda s: None)
    with pytest.raises(TypeError):
        a.set_stream_handler("/x/1", None)
    with pytest.raises(TypeError):
        a.set_stream_handler("/x/1", lambda s: None, match="yes")


# ---------------------------------------------------------------- negotiation


def test_new_stream_lazy_when_peer_known_to_support(pair):
    a, b = pair
    s = b.new_stream(a.id, "/echo/1.0.0", timeout=5)
    assert isinstance(s, Stream) and not s.negotiated and s.protocol == "/echo/1.0.0"
    s.write(b"ping")
    assert s.read_exactly(4, timeout=5) == b"ping"
    assert s.negotiated
    s.close()


def test_new_stream_round_trip_when_unknown(pair):
    a, b = pair
    a.set_stream_handler("/late/1.0.0", lambda s: s.write(b"ok"))
    b.peerstore.remove_protocols(a.id, "/late/1.0.0")  # as if the push had not arrived
    s = b.new_stream(a.id, "/late/1.0.0", timeout=5)
    assert isinstance(s, Stream) and s.negotiated and s.protocol == "/late/1.0.0"
    assert read_all(s) == b"ok"
    s.close()


def test_multi_protocol_negotiation_with_na(pair):
    a, b = pair
    a.set_stream_handler("/b/1.0.0", lambda s: s.write(b"b"))
    s = b.new_stream(a.id, ["/a/1.0.0", "/b/1.0.0", "/c/1.0.0"], timeout=5)
    assert s.protocol == "/b/1.0.0"  # "/a" got "na", "/b" accepted, "/c" never proposed
    assert read_all(s) == b"b"
    s.close()
    with pytest.raises(NegotiationError):
        b.new_stream(a.id, ["/x/1.0.0", "/y/1.0.0"], timeout=5)
    assert echo(b, a.id, b"conn survives") == b"conn survives"


def test_lazy_na_path_fails_on_first_read(pair):
    a, b = pair
    b.peerstore.add_protocols(a.id, "/ghost/1.0.0")  # stale knowledge
    s = b.new_stream(a.id, "/ghost/1.0.0", timeout=5)
    assert isinstance(s, Stream) and not s.negotiated
    s.write(b"data for nobody")
    with pytest.raises((NegotiationError, StreamResetError)):
        s.read(timeout=5)
    s.reset()
    assert echo(b, a.id, b"still fine") == b"still fine"


def test_new_stream_argument_errors(pair):
    a, b = pair
    with pytest.raises(ValueError):
        b.new_stream(a.id, [], timeout=1)
    with pytest.raises(Exception):
        b.new_stream(a.id, "bad", timeout=1)


# ---------------------------------------------------------------- connect


def test_connect_forms(make_host):
    a = make_host(services=["identify", "ping", "echo"])
    b = make_host()
    conn = b.connect(PeerInfo(a.id, a.addrs()), timeout=10)
    assert conn.remote_peer == a.id
    assert b.peerstore.addrs(a.id) == a.addrs()
    c = make_host()
    c.connect(str(a.p2p_addrs()[0]), timeout=10)
    d = make_host()
    d.peerstore.add_addrs(a.id, a.addrs(), TEMP_ADDR_TTL)
    d.connect(a.id, timeout=10)
    with pytest.raises(ConfigError):
        d.connect(str(a.addrs()[0]), timeout=1)  # no /p2p part
    for h in (b, c, d):
        assert a.id in h.network.peers()
    # new_stream dials on its own
    e = make_host()
    e.peerstore.add_addrs(a.id, a.addrs(), TEMP_ADDR_TTL)
    assert echo(e, a.id, b"dialed") == b"dialed"


# ---------------------------------------------------------------- lifecycle


def test_close_leaves_nothing_running(make_host):
    from tests.conftest import live_greenlets

    gc.collect()
    g_before = {id(g) for g in live_greenlets()}
    s_before = open_sockets()
    a = geventp2p.new_host(services=["identify", "ping", "echo"])
    b = geventp2p.new_host(services=["identify", "ping", "echo"])
    with a, b:
        b.connect(a.p2p_addrs()[0], timeout=10)
        s = b.new_stream(a.id, "/echo/1.0.0", timeout=5)
        s.write(b"open stream left behind")
        assert s.read(timeout=5)
        assert open_sockets() - s_before
    assert a.closed and b.closed
    for _ in range(100):
        gc.collect()
        left = [g for g in live_greenlets()
                if id(g) not in g_before and not isinstance(g, gevent.hub.Hub)]
        if not left:
            break
        gevent.sleep(0.01)
    assert not left, left
    assert not (open_sockets() - s_before)
    a.close()  # idempotent


def test_new_host_options(make_host):
    a = make_host(security=["plaintext"], muxers=["mplex"], services=["identify", "ping", "echo"])
    b = make_host(security="plaintext", muxers="mplex")
    conn = b.connect(a.p2p_addrs()[0], timeout=10)
    assert conn.security == "/plaintext/2.0.0" and conn.muxer == "/mplex/6.7.0"
    assert echo(b, a.id, b"x" * 1000) == b"x" * 1000
    c = make_host()  # Noise only: no common security with a
    with pytest.raises(geventp2p.DialError):
        c.connect(a.p2p_addrs()[0], timeout=5)
    d = make_host(muxers=["mplex", "yamux"], services=["identify", "ping", "echo"])
    e = make_host()
    conn = e.connect(d.p2p_addrs()[0], timeout=10)
    assert conn.security == "/noise" and conn.muxer == "/yamux/1.0.0"  # initiator's order wins


def test_new_host_key_and_errors(make_host):
    key = geventp2p.generate_key(geventp2p.KeyType.Ed25519)
    h = make_host(key=key.marshal(), listen=())
    assert h.id == geventp2p.PeerId.from_public_key(key.public_key())
    assert h.addrs() == []
    for bad in ({"security": "ssl"}, {"muxers": "spdy"}, {"transports": "sctp"}, {"key": 42},
                {"muxers": []}, {"security": [object()]}):
        with pytest.raises(ConfigError):
            geventp2p.new_host(**bad)


def test_new_host_listen_failure_cleans_up(make_host):
    a = make_host()
    with pytest.raises(geventp2p.TransportError):
        geventp2p.new_host(listen=[str(a.addrs()[0])])  # in use
    with pytest.raises(geventp2p.TransportError):
        geventp2p.new_host(listen=["/ip4/203.0.113.7/tcp/0"])  # not our address


def test_basic_host_on_plain_swarm():
    from geventp2p.host.peerstore import Peerstore
    from geventp2p.net.memory import MemoryNetwork, MemoryTransport
    from geventp2p.net.swarm import Swarm

    net = MemoryNetwork()
    k1 = geventp2p.generate_key(geventp2p.KeyType.Ed25519)
    k2 = geventp2p.generate_key(geventp2p.KeyType.Ed25519)
    h1 = BasicHost(Swarm(k1, Peerstore(), MemoryTransport(net)))
    h2 = BasicHost(Swarm(k2, Peerstore(), MemoryTransport(net)))
    with h1, h2:
        h1.listen("/memory/0")
        h1.set_stream_handler("/hello/1", lambda s: s.write(b"hello " + s.read(timeout=5)))
        h2.connect(h1.p2p_addrs()[0], timeout=5)
        s = h2.new_stream(h1.id, "/hello/1", timeout=5)  # no identify: round trip
        s.write(b"world")
        assert read_all(s) == b"hello world"
        s.close()
        assert repr(h1).startswith("<BasicHost")


def test_new_stream_waits_for_identify_but_bounded(make_host):
    from geventp2p.protocols.identify import ID

    a = make_host(services=["identify", "ping", "echo"])
    b = make_host()
    release = Event()
    a.set_stream_handler(ID, lambda s: release.wait(10))  # identify never answers
    b.identify_wait_timeout = 0.3
    t0 = time.monotonic()
    b.connect(a.p2p_addrs()[0], timeout=10)
    assert 0.25 <= time.monotonic() - t0 < 3
    t0 = time.monotonic()
    assert echo(b, a.id, b"after wait") == b"after wait"  # not identified: round-trip select
    release.set()


def test_many_concurrent_streams(pair):
    a, b = pair
    jobs = [gevent.spawn(echo, b, a.id, b"m%d" % i * 100) for i in range(50)]
    gevent.joinall(jobs, timeout=20, raise_error=True)
    assert [j.value for j in jobs] == [b"m%d" % i * 100 for i in range(50)]


def test_unknown_protocol_never_reaches_a_handler(pair):
    a, b = pair
    called = []
    a.set_stream_handler("/known/1.0.0", lambda s: called.append(s))
    with pytest.raises(NegotiationError):
        b.new_stream(a.id, "/unknown/1.0.0", timeout=5)
    assert called == []


def test_address_events_from_swarm_listeners(make_host):
    a = make_host(listen=())
    with a.event_bus.subscribe(EvtLocalAddressesUpdated) as sub:
        bound = a.network.listen("/ip4/127.0.0.1/tcp/0")  # bypassing host.listen
        evt = sub.get(timeout=5)
        assert [u.address for u in evt.current] == bound
        assert evt.current[0].action.name == "Added" and evt.removed == ()
        a.listen("/ip4/127.0.0.1/tcp/0")
        evt = sub.get(timeout=5)
        assert [u.action.name for u in evt.current] == ["Maintained", "Added"]
        assert a.network.wait_notifications(2)
        assert sub.qsize() == 0  # the swarm's own listen notification was deduplicated


def test_lazy_close_write_confirms_protocol_first(pair):
    a, b = pair
    b.peerstore.put(a.id, "AgentVersion", "js-libp2p/3.3.11")  # not known to take a pipelined FIN
    s = b.new_stream(a.id, "/echo/1.0.0", timeout=5)
    s.write(b"abc")
    s.close_write()  # reads the echo before sending FIN (js drops FIN+data pipelined with a proposal)
    assert s.negotiated
    assert read_all(s) == b"abc"
    s.close()
    b.peerstore.add_protocols(a.id, "/ghost/2.0.0")
    g = b.new_stream(a.id, "/ghost/2.0.0", timeout=5)
    g.write(b"x")
    with pytest.raises((NegotiationError, StreamResetError)):
        g.close_write()
    g.reset()


def test_lazy_reader_and_half_closing_writer_share_the_echo(pair):
    a, b = pair
    for _ in range(20):
        s = b.new_stream(a.id, "/echo/1.0.0", timeout=5)
        w = gevent.spawn(lambda: (s.write(b"0123456789"), s.close_write()))
        assert read_all(s) == b"0123456789"
        w.get(timeout=5)
        s.close()
