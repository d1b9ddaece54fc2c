"""The connection manager and the peerstore manager wired into real hosts (``new_host``)."""

from __future__ import annotations

import time

import gevent
import pytest

import geventp2p
from geventp2p.config import ConnManagerConfig
from geventp2p.core.event import EvtConnsTrimmed
from geventp2p.exceptions import ConfigError
from geventp2p.host.connmgr import CONN_GARBAGE_COLLECTED, BasicConnManager
from geventp2p.host.peerstore import AGENT_VERSION
from geventp2p.protocols.ping import ping
from geventp2p.testing.leakcheck import no_leaks

SERVICES = ["identify", "ping"]


def _wait_for(cond, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        gevent.sleep(0.02)


def _close(*hosts):
    for h in hosts:
        h.close()


def test_new_host_defaults_to_gos_connmgr_and_peerstore_manager():
    with no_leaks():
        h = geventp2p.new_host(services=[])
        try:
            assert isinstance(h.connmgr, BasicConnManager)
            assert h.connmgr.config == ConnManagerConfig() == ConnManagerConfig(160, 192, 60.0, 10.0)
            assert h.config.connmgr == ConnManagerConfig()
            assert h.peerstore_manager is not None and h.peerstore_manager.grace_period == 60.0
            assert h.config.peerstore_grace_period == 60.0
            # the connmgr follows connections only: no notification queued per stream
            assert {"connected", "disconnected"} <= h.network._wanted
            assert not {"opened_stream", "closed_stream"} & h.network._wanted
        finally:
            h.close()


@pytest.mark.parametrize("off", [None, False])
def test_connmgr_and_peerstore_manager_can_be_turned_off(off):
    h = geventp2p.new_host(services=[], connmgr=off, peerstore_grace_period=None)
    try:
        assert h.connmgr is None and h.config.connmgr is None
        assert h.peerstore_manager is None and h.config.peerstore_grace_period is None
    finally:
        h.close()


def test_connmgr_config_or_instance_given():
    cfg = ConnManagerConfig(low=3, high=5, grace_period=1.0, silence_period=2.0)
    cm = BasicConnManager(config=cfg)
    a = geventp2p.new_host(services=[], connmgr=cfg)
    b = geventp2p.new_host(services=[], connmgr=cm)
    try:
        assert a.connmgr.config is cfg and a.config.connmgr is cfg
        assert b.connmgr is cm and b.config.connmgr is cfg
    finally:
        _close(a, b)
    for bad in (dict(connmgr="yes"), dict(connmgr=3), dict(peerstore_grace_period=-1),
                dict(peerstore_grace_period=True), dict(peerstore_grace_period="60")):
        with pytest.raises(ConfigError):
            geventp2p.new_host(services=[], **bad)
    for bad_cfg in (dict(low=3, high=2), dict(low=-1), dict(low=True), dict(silence_period=0),
                    dict(grace_period=-1.0)):
        with pytest.raises(ConfigError):
            ConnManagerConfig(**bad_cfg)


@pytest.mark.parametrize("muxer", ["yamux", "mplex"])
def test_trim_closes_unprotected_untagged_conns_with_gc_code(muxer):
    with no_leaks():
        hub = geventp2p.new_host(services=SERVICES, muxers=[muxer],
                                 connmgr=ConnManagerConfig(low=2, high=10, grace_period=0, silence_period=60))
        peers = [geventp2p.new_host(services=SERVICES, muxers=[muxer], connmgr=None) for _ in range(4)]
        try:
            protected, tagged, victim1, victim2 = peers
            cm = hub.connmgr
            cm.tag_peer(tagged.id, "important", 100)  # tagged before it connects
            cm.protect(protected.id, "test")
            conns = {p.id: p.connect(hub.p2p_addrs()[0], timeout=15) for p in peers}
            _wait_for(lambda: cm.connection_count() == 4, what="4 connections in the connmgr")
            with hub.event_bus.subscribe(EvtConnsTrimmed) as sub:
                assert cm.trim_open_conns() == 2
                evt = sub.get(timeout=15)
            assert set(evt.peers) == {victim1.id, victim2.id}
            assert evt.conns == 2 and evt.remaining == 2
            assert cm.trimmed == 2
            _wait_for(lambda: not hub.network.conns_to_peer(victim1.id)
                      and not hub.network.conns_to_peer(victim2.id), what="victims gone from the hub")
            assert hub.network.conns_to_peer(protected.id) and hub.network.conns_to_peer(tagged.id)
            # the victims see their connection end; yamux carries the code in its GoAway
            for v in (victim1, victim2):
                c = conns[v.id]
                _wait_for(lambda: c.closed or c.muxed.closed, what="victim side closed")
                if muxer == "yamux":
                    assert c.muxed.error is not None
                    assert c.muxed.error.error_code == CONN_GARBAGE_COLLECTED and c.muxed.error.remote
            # the kept ones still work
            for p in (protected, tagged):
                assert p.network.conns_to_peer(hub.id)
                assert list(ping(p, hub.id, count=1, timeout=10))
            assert cm.trim_open_conns() == 0  # at low already
        finally:
            _close(hub, *peers)


def test_background_trimmer_trims_above_high():
    with no_leaks():
        hub = geventp2p.new_host(services=SERVICES,
                                 connmgr=ConnManagerConfig(low=1, high=2, grace_period=0, silence_period=0.2))
        peers = [geventp2p.new_host(services=SERVICES, connmgr=None) for _ in range(3)]
        try:
            with hub.event_bus.subscribe(EvtConnsTrimmed) as sub:
                for p in peers:
                    p.connect(hub.p2p_addrs()[0], timeout=15)
                evt = sub.get(timeout=30)  # no trim_open_conns(): the trimmer's own
            assert evt.conns >= 2 and evt.remaining <= 1
            _wait_for(lambda: len(hub.network.conns()) <= 1, what="hub down to low")
        finally:
            _close(hub, *peers)
        assert hub.connmgr._greenlet is None


def test_peerstore_forgets_disconnected_peer_keeps_connected_one():
    with no_leaks():
        hub = geventp2p.new_host(services=SERVICES, peerstore_grace_period=0.3)
        leaver = geventp2p.new_host(services=SERVICES, agent_version="leaver/1")
        stayer = geventp2p.new_host(services=SERVICES, agent_version="stayer/1")
        ps = hub.peerstore
        try:
            for p in (leaver, stayer):
                p.connect(hub.p2p_addrs()[0], timeout=15)

            def identified(p):
                return (ps.get(p.id, AGENT_VERSION, None) is not None and bool(ps.get_protocols(p.id))
                        and p.id in ps.peers_with_keys())

            _wait_for(lambda: identified(leaver) and identified(stayer), what="hub identified both")
            assert ps.get(leaver.id, AGENT_VERSION) == "leaver/1"
            removed_before = hub.peerstore_manager.removed
            leaver.close()
            _wait_for(lambda: not ps.get_protocols(leaver.id), what="leaver forgotten")
            assert ps.get(leaver.id, AGENT_VERSION, None) is None
            assert leaver.id not in ps.peers_with_keys()
            assert hub.peerstore_manager.removed == removed_before + 1
            # the connected peer and the host itself are kept
            assert identified(stayer) and ps.get(stayer.id, AGENT_VERSION) == "stayer/1"
            assert ps.pubkey(hub.id) is not None and ps.privkey(hub.id) is not None
        finally:
            _close(hub, leaver, stayer)
