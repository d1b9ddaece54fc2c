"""The host and its services against the resource manager, end to end over TCP.

For each scope a stream is refused: the side that refuses resets it with 0x1002
("resource limit exceeded") and logs one WARNING line on ``geventp2p.rcmgr`` (the
manager runs with ``debug=True``, as ``serve --debug-rcmgr``), the other side reads
that reset; an outbound refusal raises ``ResourceLimitExceeded``.  Afterwards every
stream scope is back at zero.
"""

from __future__ import annotations

import logging
import time

import gevent
import pytest

import geventp2p
from geventp2p.core.rcmgr import NullResourceManager
from geventp2p.exceptions import ResourceLimitExceeded, StreamResetError
from geventp2p.host.basic import set_stream_service
from geventp2p.host.rcmgr import UNLIMITED, LimitConfig, ResourceManagerImpl, new_resource_manager
from geventp2p.protocols.echo import PROTOCOL_ID as ECHO, echo
from geventp2p.protocols.ping import ping

RESET_LIMIT = 0x1002


@pytest.fixture(autouse=True)
def _deadline():
    with gevent.Timeout(60):
        yield


@pytest.fixture
def make_host():
    hosts = []

    def make(limits=None, services=("identify", "echo"), **kw):
        if limits is not None:
            kw["resource_manager"] = new_resource_manager(LimitConfig.from_dict(limits), debug=True)
        h = geventp2p.new_host(services=list(services), **kw)
        hosts.append(h)
        return h

    yield make
    for h in hosts:
        h.close()


@pytest.fixture
def warnings(caplog):
    caplog.set_level(logging.WARNING, logger="geventp2p.rcmgr")

    def lines(*needles):
        return [r.getMessage() for r in caplog.records
                if r.name == "geventp2p.rcmgr" and r.levelno == logging.WARNING
                and all(n in r.getMessage() for n in needles)]

    return lines


def wait_for(pred, what, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        gevent.sleep(0.01)


def streams_released(host):
    """No stream is charged anywhere (connections may still be open)."""
    st = host.resource_manager.stat()
    return (st["system"].num_streams == 0 and st["transient"].num_streams == 0
            and not st["services"] and not st["protocols"]
            and all(s.num_streams == 0 and s.memory == 0 for s in st["peers"].values()))


def open_echo(client, server):
    s = client.new_stream(server.id, [ECHO], timeout=10)
    s.write(b"hi")
    assert s.read_exactly(2, timeout=10) == b"hi"
    return s


def assert_reset_by_limit(stream):
    with pytest.raises(StreamResetError) as info:
        stream.write(b"hi")
        while stream.read(timeout=10):
            pass
    assert info.value.error_code == RESET_LIMIT
    assert info.value.remote


# --------------------------------------------------------------------------- defaults


def test_new_host_has_a_scaled_resource_manager_by_default(make_host):
    h = make_host()
    assert isinstance(h.resource_manager, ResourceManagerImpl)
    assert h.network.resource_manager is h.resource_manager
    assert h.config.resource_manager == "ResourceManagerImpl"
    assert h.config.limits is h.resource_manager.limits
    assert h.config.limits.protocol_peer["/ipfs/ping/1.0.0"].streams_inbound == 2  # go's override
    assert set(h.resource_manager.stat()) >= {"system", "transient", "services", "protocols", "peers"}


def test_null_resource_manager_is_selectable(make_host):
    h = make_host(resource_manager=NullResourceManager())
    assert isinstance(h.resource_manager, NullResourceManager)
    assert h.config.resource_manager == "NullResourceManager"
    assert h.config.limits is None
    st = h.resource_manager.stat()  # the same tree as the real manager's (metrics read it)
    assert st["system"].is_zero() and st["transient"].is_zero() and st["protocols"] == {}


def test_limits_and_resource_manager_are_exclusive():
    with pytest.raises(geventp2p.ConfigError):
        geventp2p.new_host(resource_manager=NullResourceManager(), limits=LimitConfig())


def test_streams_are_charged_to_protocol_and_service_then_released(make_host):
    server = make_host()
    client = make_host()
    client.connect(server.p2p_addrs()[0], timeout=10)
    s = open_echo(client, server)
    assert s.scope.protocol == ECHO and s.scope.service is None  # new_stream sets the protocol only
    set_stream_service(s, "libp2p.echo")  # what echo() does
    assert s.scope.service == "libp2p.echo"
    st = server.resource_manager.stat()
    assert st["protocols"][ECHO].num_streams_inbound == 1
    assert st["services"]["libp2p.echo"].num_streams_inbound == 1
    assert client.resource_manager.stat()["services"]["libp2p.echo"].num_streams_outbound == 1
    s.close_write()
    assert s.read_all(timeout=10) == b""
    wait_for(lambda: streams_released(server) and streams_released(client), "scopes back at zero")


# --------------------------------------------------------------------------- refusals


def test_protocol_peer_inbound_limit(make_host, warnings):
    server = make_host({"ProtocolPeer": {ECHO: {"StreamsInbound": 2}}})
    client = make_host()
    client.connect(server.p2p_addrs()[0], timeout=10)
    held = [open_echo(client, server) for _ in range(2)]
    third = client.new_stream(server.id, [ECHO], timeout=10)
    assert_reset_by_limit(third)
    lines = warnings("protocol-peer:/echo/1.0.0")
    assert len(lines) == 1, lines
    assert "streams (inbound)" in lines[0] and str(client.id) in lines[0]
    assert "used 2" in lines[0] and "limit 2" in lines[0]
    for s in held:
        s.close()
    wait_for(lambda: streams_released(server), "server scopes back at zero")
    # the limit is per peer: freed slots can be used again
    open_echo(client, server).close()


def test_protocol_peer_outbound_limit(make_host, warnings):
    server = make_host()
    client = make_host({"ProtocolPeer": {ECHO: {"StreamsOutbound": 1}}})
    client.connect(server.p2p_addrs()[0], timeout=10)
    held = open_echo(client, server)
    with pytest.raises(ResourceLimitExceeded) as info:
        client.new_stream(server.id, [ECHO], timeout=10)
    assert info.value.scope == "protocol-peer:/echo/1.0.0"
    assert info.value.resource == "streams (outbound)"
    assert len(warnings("protocol-peer:/echo/1.0.0", str(server.id))) == 1
    held.close()
    wait_for(lambda: streams_released(client) and streams_released(server), "scopes back at zero")


def test_protocol_inbound_limit(make_host, warnings):
    server = make_host({"Protocol": {ECHO: {"StreamsInbound": 1}}})
    client = make_host()
    client.connect(server.p2p_addrs()[0], timeout=10)
    held = open_echo(client, server)
    assert_reset_by_limit(client.new_stream(server.id, [ECHO], timeout=10))
    assert len(warnings("protocol:/echo/1.0.0", "streams (inbound)")) == 1
    held.close()
    wait_for(lambda: streams_released(server), "server scopes back at zero")


def test_service_inbound_limit(make_host, warnings):
    server = make_host({"Service": {"libp2p.echo": {"StreamsInbound": 1}}})
    client = make_host()
    client.connect(server.p2p_addrs()[0], timeout=10)
    held = open_echo(client, server)
    assert_reset_by_limit(client.new_stream(server.id, [ECHO], timeout=10))
    assert len(warnings("service:libp2p.echo", "streams (inbound)")) == 1
    held.close()
    wait_for(lambda: streams_released(server), "server scopes back at zero")


def test_service_outbound_limit(make_host, warnings):
    server = make_host()
    client = make_host({"ServicePeer": {"libp2p.echo": {"StreamsOutbound": 1}}})
    client.connect(server.p2p_addrs()[0], timeout=10)
    held = client.new_stream(server.id, [ECHO], timeout=10)
    set_stream_service(held, "libp2p.echo")
    with pytest.raises(ResourceLimitExceeded) as info:
        echo(client, server.id, b"x")
    assert info.value.scope == "service-peer:libp2p.echo"
    assert len(warnings("service-peer:libp2p.echo", str(server.id))) == 1
    held.close()
    wait_for(lambda: streams_released(client), "client scopes back at zero")
    assert echo(client, server.id, b"again") == b"again"


def test_peer_memory_limit_refuses_the_streams_receive_window(make_host, warnings):
    """yamux charges each new stream's 256 KiB initial window to the connection's scope
    (and so to the peer's): a peer whose memory limit can't hold one gets its stream
    reset with 0x1002 at the SYN, before any protocol runs."""
    server = make_host({"PeerDefault": {"Memory": 16}}, services=["ping"])
    client = make_host(services=["ping"])
    client.connect(server.p2p_addrs()[0], timeout=10)
    with pytest.raises(StreamResetError) as info:
        next(ping(client, server.id, count=1, timeout=10))
    assert info.value.error_code == RESET_LIMIT
    lines = warnings(f"peer:{client.id}", "memory", "requested 262144")
    assert lines, "no WARNING line for the refused window"
    wait_for(lambda: streams_released(server), "server scopes back at zero")


def test_stream_memory_limit_refuses_the_ping_buffer(make_host, warnings):
    server = make_host({"Stream": {"Memory": 16}}, services=["ping"])
    client = make_host(services=["ping"])
    client.connect(server.p2p_addrs()[0], timeout=10)
    with pytest.raises(StreamResetError) as info:
        next(ping(client, server.id, count=1, timeout=10))
    assert info.value.error_code == RESET_LIMIT
    lines = warnings("in scope stream-", "memory", "requested 32")
    assert len(lines) == 1, lines
    wait_for(lambda: streams_released(server), "server scopes back at zero")
    # go's default per-peer ping limit is 2 inbound streams; within it ping works
    ok = make_host(services=["ping"])
    client.connect(ok.p2p_addrs()[0], timeout=10)
    assert next(ping(client, ok.id, count=1, timeout=10)) > 0


# --------------------------------------------------------------------------- yamux windows


def test_yamux_window_growth_declined_and_the_transfer_completes(make_host):
    # 512 KiB per stream: priority 128 allows about 258 KiB, so no growth at all
    server = make_host({"Stream": {"Memory": 512 * 1024}}, services=["echo"], muxers=["yamux"])
    client = make_host(services=["echo"], muxers=["yamux"], limits=None)
    client.connect(server.p2p_addrs()[0], timeout=10)
    data = bytes(range(256)) * (16 * 1024)  # 4 MiB
    assert echo(client, server.id, data, timeout=60) == data
    assert server.resource_manager.blocked[("stream", "memory")] >= 1  # growth was asked and declined
    wait_for(lambda: streams_released(server), "server scopes back at zero")


def test_new_host_takes_a_go_limits_file(tmp_path):
    f = tmp_path / "limits.json"
    f.write_text('{"ProtocolPeer": {"/echo/1.0.0": {"StreamsInbound": 3}}, "System": {"Conns": "unlimited"}}')
    h = geventp2p.new_host(services=[], limits=str(f))
    try:
        assert h.config.limits.protocol_peer[ECHO].streams_inbound == 3
        assert h.config.limits.system.conns == UNLIMITED
    finally:
        h.close()
