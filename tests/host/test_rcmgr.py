"""host/rcmgr: the scope DAG, priorities, spans, limits and go's JSON limit files."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import pytest

from geventp2p.core.rcmgr import (
    NULL_SCOPE,
    NullResourceManager,
    Priority,
    ResourceScope,
    ResourceScopeSpan,
    ScopeStat,
)
from geventp2p.exceptions import ConfigError, P2PError, ResourceLimitExceeded, ResourceScopeClosed
from geventp2p.host.rcmgr import (
    UNLIMITED,
    BaseLimit,
    LimitConfig,
    default_limits,
    new_resource_manager,
)
from geventp2p.host.rcmgr.limits import IDENTIFY_SERVICE, PING_SERVICE, system_budget

GiB = 1 << 30
MiB = 1 << 20
PEER_A = "12D3KooWA"
PEER_B = "12D3KooWB"


def mgr(limits: LimitConfig | None = None, **kw):
    """A manager scaled for a 16 GiB machine with 4096 fds (2 GiB / 2048 fds for libp2p)."""
    return new_resource_manager(limits, total_memory=16 * GiB, fd_limit=4096, **kw)


def all_zero(m) -> bool:
    st = m.stat()
    return all(
        st[k].is_zero() for k in ("system", "transient", "allowlisted_system", "allowlisted_transient")
    ) and not (st["services"] or st["protocols"] or st["peers"])


# -- limits ---------------------------------------------------------------------------


def test_scaling_matches_gos_worked_example():
    c = default_limits().auto_scale(total_memory=16 * GiB, fd_limit=4096)
    assert (c.system.conns_inbound, c.system.conns_outbound, c.system.conns) == (192, 384, 384)
    assert (c.system.streams_inbound, c.system.streams_outbound) == (3072, 6144)
    assert c.system.memory == 128 * MiB + 2 * GiB
    assert c.system.fd == 2048  # 100% of the fd budget (half the process limit)
    assert (c.transient.conns_inbound, c.transient.conns_outbound) == (64, 128)
    assert (c.transient.streams_inbound, c.transient.streams_outbound) == (384, 768)
    assert c.transient.fd == 512
    assert c.peer_default.conns == 8 and c.peer_default.streams_inbound == 512
    assert c.peer_default.fd == 32  # 1/64 of 2048
    assert c.for_protocol_peer("/echo/1.0.0").streams_inbound == 72
    assert c.conn == BaseLimit(conns=1, conns_inbound=1, conns_outbound=1, fd=1, memory=32 * MiB)
    assert c.stream.streams == 1 and c.stream.memory == 16 * MiB


def test_small_machines_get_base_limits_and_fd_floor():
    c = default_limits().scale(64 * MiB, 8)
    assert c.system.conns_inbound == 64 and c.system.memory == 128 * MiB
    assert c.system.fd == 256  # fd_fraction * 8 is below the base: the base wins
    assert c.peer_default.fd == 4


def test_default_service_limits_identify_and_ping():
    c = default_limits().scale(0, 0)
    assert c.for_service(IDENTIFY_SERVICE).streams_inbound == 64
    assert c.for_service_peer(IDENTIFY_SERVICE).streams == 32
    assert c.for_protocol("/ipfs/id/push/1.0.0").streams == 128
    ping_peer = c.for_protocol_peer("/ipfs/ping/1.0.0")
    assert (ping_peer.streams_inbound, ping_peer.streams_outbound, ping_peer.streams) == (2, 3, 4)
    assert c.for_service_peer(PING_SERVICE) == ping_peer
    assert c.for_protocol("/other/1.0.0") == c.protocol_default


def test_system_budget_reads_the_machine():
    mem, fds = system_budget()
    assert mem > 0 and fds > 0
    assert system_budget(8 * GiB, 1000) == (GiB, 500)


def test_limit_file_in_gos_json_form():
    text = json.dumps({
        "System": {"Conns": 10, "ConnsInbound": "unlimited", "Memory": "1073741824", "FD": "default"},
        "Transient": {"StreamsInbound": 0},  # explicit 0 means block all, as in go
        "ProtocolPeer": {"/echo/1.0.0": {"StreamsInbound": 2}},
        "Peer": {PEER_A: {"Conns": "blockAll"}},
        "ServiceDefault": {"Streams": 7},
        "Service": {"svc": {"StreamsOutbound": 3}},
    })
    base = default_limits().scale(2 * GiB, 2048)
    c = LimitConfig.from_json(text).build(base)
    assert c.system.conns == 10 and c.system.conns_inbound == UNLIMITED
    assert c.system.memory == GiB and c.system.fd == base.system.fd
    assert c.system.conns_outbound == base.system.conns_outbound
    assert c.transient.streams_inbound == 0
    echo = c.for_protocol_peer("/echo/1.0.0")
    assert echo.streams_inbound == 2 and echo.streams == base.protocol_peer_default.streams
    assert c.for_peer(PEER_A).conns == 0 and c.for_peer(PEER_B) == base.peer_default
    # a keyed entry not in the defaults falls back to the (overridden) default
    assert c.for_service("svc") == replace(base.service_default, streams=7, streams_outbound=3)
    # keyed defaults from the table are kept and overridden field by field
    assert c.for_protocol("/ipfs/ping/1.0.0") == base.for_protocol("/ipfs/ping/1.0.0")


@pytest.mark.parametrize(
    "text, match",
    [
        ("[]", "top level"),
        ('{"Sistem": {}}', "unknown scope kind 'Sistem'"),
        ('{"System": {"Conn": 1}}', r"unknown field System\.Conn"),
        ('{"System": {"Conns": -1}}', "must not be negative"),
        ('{"System": {"Conns": 1.5}}', "must be an integer"),
        ('{"System": {"Memory": "lots"}}', "not a number"),
        ('{"Protocol": []}', "must map names"),
        ("{not json", "invalid JSON"),
    ],
)
def test_limit_file_errors_are_typed(text, match):
    with pytest.raises(ConfigError, match=match):
        LimitConfig.from_json(text)


def test_limit_file_load(tmp_path):
    p = tmp_path / "limits.json"
    p.write_text('{"ProtocolPeer": {"/echo/1.0.0": {"StreamsInbound": 2}}}')
    m = new_resource_manager(str(p), total_memory=16 * GiB, fd_limit=4096)
    assert m.limits.for_protocol_peer("/echo/1.0.0").streams_inbound == 2
    with pytest.raises(ConfigError, match="cannot read"):
        LimitConfig.load(str(tmp_path / "missing.json"))


def test_rows_use_gos_scope_names():
    names = [n for n, _ in default_limits().scale(0, 0).rows()]
    assert names[:4] == ["System", "Transient", "AllowlistedSystem", "AllowlistedTransient"]
    assert "Protocol:/ipfs/ping/1.0.0" in names and "ServicePeer:libp2p.identify" in names
    assert names[-2:] == ["Conn", "Stream"]


# -- scopes ---------------------------------------------------------------------------


def test_priorities_have_gos_thresholds():
    lim = replace(default_limits().scale(0, 0).system, memory=256 * 1000)
    m = new_resource_manager(LimitConfig.from_dict({"System": {"Memory": 256 * 1000}}),
                             total_memory=0, fd_limit=0)
    assert m.system.limit.memory == lim.memory
    span = m.system.begin_span()
    span.reserve_memory(101 * 1000 + 1000, Priority.LOW)  # exactly (101+1)/256 of the limit
    with pytest.raises(ResourceLimitExceeded) as info:
        span.reserve_memory(1, Priority.LOW)
    err = info.value
    assert err.scope == "system" and err.resource == "memory"
    assert (err.used, err.requested, err.limit) == (102_000, 1, 256_000)
    assert err.error_code == 0x1002 and isinstance(err, P2PError)
    span.reserve_memory(1, Priority.MEDIUM)
    with pytest.raises(ResourceLimitExceeded):
        span.reserve_memory(256_000 - 102_001 + 1, Priority.ALWAYS)
    span.reserve_memory(256_000 - 102_001, Priority.ALWAYS)  # up to the limit itself
    assert m.system.stat().memory == 256_000
    span.done()
    assert m.system.stat().memory == 0


def test_refusal_changes_nothing_anywhere():
    m = mgr(LimitConfig.from_dict({"Transient": {"Memory": 1000}}))
    conn = m.open_connection("inbound", True, "/ip4/1.2.3.4/tcp/1")
    conn.reserve_memory(600)
    before = (conn.stat(), m.transient.stat(), m.system.stat())
    with pytest.raises(ResourceLimitExceeded) as info:
        conn.reserve_memory(500)
    assert info.value.scope == "transient"
    assert (conn.stat(), m.transient.stat(), m.system.stat()) == before
    conn.done()
    assert all_zero(m)


def test_connection_moves_from_transient_to_peer():
    m = mgr()
    conn = m.open_connection("inbound", True, "/ip4/1.2.3.4/tcp/1")
    conn.reserve_memory(4096)
    assert m.transient.stat() == ScopeStat(num_conns_inbound=1, num_fd=1, memory=4096)
    assert conn.peer_scope() is None
    conn.set_peer(PEER_A)
    assert m.transient.stat().is_zero()
    peer = m.view_peer(PEER_A)
    assert conn.peer_scope() is peer
    assert peer.stat() == ScopeStat(num_conns_inbound=1, num_fd=1, memory=4096)
    assert m.system.stat() == ScopeStat(num_conns_inbound=1, num_fd=1, memory=4096)
    with pytest.raises(ConfigError):
        conn.set_peer(PEER_B)
    conn.done()
    conn.done()  # idempotent
    assert all_zero(m)
    with pytest.raises(ResourceScopeClosed):
        conn.reserve_memory(1)


def test_peer_connection_limit_refuses_and_leaves_transient_charged():
    m = mgr(LimitConfig.from_dict({"PeerDefault": {"Conns": 1, "ConnsInbound": 1}}))
    c1 = m.open_connection("inbound", True, None)
    c1.set_peer(PEER_A)
    c2 = m.open_connection("inbound", True, None)
    with pytest.raises(ResourceLimitExceeded) as info:
        c2.set_peer(PEER_A)
    assert info.value.scope == f"peer:{PEER_A}"
    assert m.transient.stat().num_conns_inbound == 1  # still transient: the caller closes it
    c2.done()
    c1.done()
    assert all_zero(m)


def test_system_and_transient_connection_limits_and_allowlist():
    m = mgr(
        LimitConfig.from_dict({"Transient": {"ConnsInbound": 2}}),
        allowlist=["/ip4/10.1.0.0/ipcidr/16", "/ip6/::1"],
    )
    a = m.open_connection("inbound", True, "/ip4/1.2.3.4/tcp/1")
    b = m.open_connection("inbound", True, "/ip4/1.2.3.5/tcp/1")
    with pytest.raises(ResourceLimitExceeded) as info:
        m.open_connection("inbound", True, "/ip4/1.2.3.6/tcp/1")
    assert info.value.scope == "transient" and info.value.resource == "conns (inbound)"
    # outbound has its own figure
    out = m.open_connection("outbound", True, "/ip4/1.2.3.6/tcp/1")
    # allowlisted endpoints fall back to the allowlisted pair
    c = m.open_connection("inbound", True, "/ip4/10.1.2.3/tcp/9")
    d = m.open_connection("inbound", False, "/ip6/::1/tcp/9")
    assert m.allowlisted_transient.stat().num_conns_inbound == 2
    assert m.allowlisted_system.stat().num_fd == 1
    for s in (a, b, out, c, d):
        s.done()
    assert all_zero(m)
    assert m.blocked[("transient", "conns (inbound)")] >= 1
    with pytest.raises(ConfigError):
        mgr(allowlist=["/dns4/example.com"])


def test_fd_limit_counts_only_fd_connections():
    m = mgr(LimitConfig.from_dict({"System": {"FD": 1}}))
    a = m.open_connection("outbound", True, None)
    with pytest.raises(ResourceLimitExceeded) as info:
        m.open_connection("outbound", True, None)
    assert info.value.resource == "fd"
    b = m.open_connection("outbound", False, None)  # e.g. a QUIC conn sharing a socket
    a.done()
    b.done()
    assert all_zero(m)


def test_stream_lifecycle_transient_protocol_service():
    m = mgr()
    s = m.open_stream(PEER_A, "inbound")
    assert m.transient.stat().num_streams_inbound == 1
    assert m.view_peer(PEER_A).stat().num_streams_inbound == 1
    assert s.protocol_scope() is None
    with pytest.raises(ConfigError):
        s.set_service("svc")  # needs a protocol first
    s.set_protocol("/echo/1.0.0")
    assert m.transient.stat().is_zero()
    assert m.view_protocol("/echo/1.0.0").stat().num_streams_inbound == 1
    s.set_service("echo")
    assert m.view_service("echo").stat().num_streams_inbound == 1
    s.reserve_memory(1000)
    for scope in (s, s.peer_scope(), s.protocol_scope(), s.service_scope(), m.system):
        assert scope.stat().memory == 1000, scope
    assert m.stat()["protocols"]["/echo/1.0.0"].memory == 1000
    s.done()
    assert all_zero(m)


def test_protocol_peer_limit_refuses_set_protocol():
    m = mgr(LimitConfig.from_dict({"ProtocolPeer": {"/echo/1.0.0": {"StreamsInbound": 2}}}))
    ok = [m.open_stream(PEER_A, "inbound") for _ in range(2)]
    for s in ok:
        s.set_protocol("/echo/1.0.0")
    third = m.open_stream(PEER_A, "inbound")
    with pytest.raises(ResourceLimitExceeded) as info:
        third.set_protocol("/echo/1.0.0")
    assert info.value.scope == "protocol-peer:/echo/1.0.0"
    assert info.value.error_code == 0x1002
    assert m.view_protocol("/echo/1.0.0").stat().num_streams_inbound == 2  # unchanged
    other = m.open_stream(PEER_B, "inbound")
    other.set_protocol("/echo/1.0.0")  # another peer has its own budget
    for s in (*ok, third, other):
        s.done()
    assert all_zero(m)


def test_peer_stream_limit_and_blocked_counts(caplog):
    m = mgr(LimitConfig.from_dict({"PeerDefault": {"StreamsOutbound": 1}}), debug=True)
    s = m.open_stream(PEER_A, "outbound")
    with caplog.at_level(logging.WARNING, logger="geventp2p.rcmgr"):
        with pytest.raises(ResourceLimitExceeded):
            m.open_stream(PEER_A, "outbound")
    line = [r.getMessage() for r in caplog.records if r.name == "geventp2p.rcmgr"]
    assert len(line) == 1
    assert f"scope peer:{PEER_A}" in line[0] and "streams (outbound)" in line[0]
    assert "limit 1" in line[0] and f"peer={PEER_A}" in line[0]
    assert m.blocked[("peer", "streams (outbound)")] == 1
    s.done()
    assert all_zero(m)


@pytest.mark.parametrize("limits,scope,step", [
    ({"System": {"StreamsInbound": 0}}, "scope system", "open"),
    ({"Transient": {"StreamsInbound": 0}}, "scope transient", "open"),
    ({"ProtocolDefault": {"StreamsInbound": 0}}, "scope protocol:/echo/1.0.0", "protocol"),
    ({"ServiceDefault": {"StreamsInbound": 0}}, "scope service:echo", "service"),
])
def test_refusal_by_a_shared_scope_names_the_peer(caplog, limits, scope, step):
    """A system, transient, protocol or service scope has no peer of its own; the log
    line names the peer whose stream asked (what --debug-rcmgr promises)."""
    m = mgr(LimitConfig.from_dict(limits), debug=True)
    with caplog.at_level(logging.WARNING, logger="geventp2p.rcmgr"):
        s = None
        with pytest.raises(ResourceLimitExceeded):
            s = m.open_stream(PEER_A, "inbound")
            s.set_protocol("/echo/1.0.0")
            if step == "service":
                s.set_service("echo")
        if s is not None:
            s.done()
    lines = [r.getMessage() for r in caplog.records if r.name == "geventp2p.rcmgr"]
    assert len(lines) == 1 and scope in lines[0] and f"peer={PEER_A}" in lines[0], lines
    assert all_zero(m)


def test_spans_release_everything_and_nest():
    m = mgr()
    s = m.open_stream(PEER_A, "outbound")
    span = s.begin_span()
    inner = span.begin_span()
    span.reserve_memory(100)
    inner.reserve_memory(50)
    assert s.stat().memory == 150 and m.system.stat().memory == 150
    inner.done()
    assert s.stat().memory == 100
    span.done()
    assert s.stat().memory == 0
    with pytest.raises(ResourceScopeClosed):
        span.reserve_memory(1)
    s.done()
    assert all_zero(m)


def test_release_never_goes_negative():
    m = mgr()
    span = m.system.begin_span()
    span.reserve_memory(10)
    span.release_memory(100)
    assert span.stat().memory == 0 and m.system.stat().memory == 0


def test_keyed_scopes_are_dropped_when_unused():
    m = mgr()
    for i in range(100):
        c = m.open_connection("inbound", True, None)
        c.set_peer(f"peer-{i}")
        s = m.open_stream(f"peer-{i}", "inbound")
        s.set_protocol("/echo/1.0.0")
        s.done()
        c.done()
    m.stat()  # sweeps the unused keyed scopes (also done every IDLE_SWEEP of them)
    assert not m._peers and not m._protocol_peers and not m._service_peers
    assert all_zero(m)


def test_contracts_and_null_objects():
    m = mgr()
    assert isinstance(m.system, ResourceScope)
    assert isinstance(m.open_connection("outbound", False, None), ResourceScopeSpan)
    null = NullResourceManager()
    c = null.open_connection("inbound", True, None)
    c.set_peer(PEER_A)
    s = null.open_stream(PEER_A, "inbound")
    s.set_protocol("/x")
    s.set_service("y")
    s.reserve_memory(10)
    assert s.stat().memory == 10 and s.protocol_scope() is NULL_SCOPE
    s.done()
    assert s.stat().is_zero()
    assert isinstance(null.view_system(), ResourceScope)


def test_direction_is_checked():
    m = mgr()
    with pytest.raises(ConfigError):
        m.open_stream(PEER_A, "sideways")
