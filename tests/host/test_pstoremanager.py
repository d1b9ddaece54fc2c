"""host/pstoremanager: disconnected peers are forgotten after the grace period."""

from __future__ import annotations

import gevent
import pytest

from geventp2p.core.event import Connectedness, EvtPeerConnectednessChanged
from geventp2p.crypto.keys import KeyType, generate_key
from geventp2p.core.peer import PeerId
from geventp2p.exceptions import ConfigError
from geventp2p.host.eventbus import EventBus
from geventp2p.host.peerstore import AGENT_VERSION, Peerstore
from geventp2p.host.pstoremanager import DisconnectedPeers, PeerstoreManager


def _peer() -> PeerId:
    return PeerId.from_public_key(generate_key(KeyType.Ed25519).public_key())


def test_disconnected_peers_due_order_and_reconnect():
    st = DisconnectedPeers(10.0)
    a, b, c = "a", "b", "c"
    st.disconnected(a, 0.0)
    st.disconnected(b, 1.0)
    st.disconnected(c, 2.0)
    st.connected(b)  # came back: never due
    assert st.next_due() == 10.0
    assert st.pop_due(9.9) == []
    assert st.pop_due(10.0) == [a]
    st.disconnected(a, 5.0)  # left again later: due after c
    assert st.pop_due(100.0) == [c, a]
    assert len(st) == 0 and st.next_due() is None
    with pytest.raises(ConfigError):
        DisconnectedPeers(-1)


def test_manager_forgets_keys_protocols_metadata_after_grace():
    bus = EventBus()
    store = Peerstore()
    gone, back, me = _peer(), _peer(), _peer()
    for p in (gone, back, me):
        store.set_protocols(p, *[f"/p/{i}" for i in range(100)])
        store.put(p, AGENT_VERSION, "x")
    mgr = PeerstoreManager(store, bus, grace_period=0.2, keep=lambda p: p == me)
    mgr.start()
    try:
        emit = bus.emitter(EvtPeerConnectednessChanged)
        for p in (gone, back, me):
            emit.emit(EvtPeerConnectednessChanged(peer=p, connectedness=Connectedness.NotConnected))
        emit.emit(EvtPeerConnectednessChanged(peer=back, connectedness=Connectedness.Connected))
        with gevent.Timeout(10):
            while mgr.removed < 1:
                gevent.sleep(0.02)
        gevent.sleep(0.3)  # a wrongly-removed peer would be gone by now
        assert store.get_protocols(gone) == []
        assert store.get(gone, AGENT_VERSION, None) is None
        assert len(store.get_protocols(back)) == 100  # reconnected in time
        assert len(store.get_protocols(me)) == 100  # protected
        assert mgr.removed == 1
    finally:
        mgr.close()
        bus.close()
    assert mgr._greenlet is None
