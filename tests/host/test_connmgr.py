"""host/connmgr: go's trim order, watermarks, grace and silence periods, tags (virtual clock)."""

from __future__ import annotations

import pytest

from geventp2p.core.event import EvtConnsTrimmed
from geventp2p.exceptions import ConfigError
from geventp2p.host.connmgr import (
    CONN_GARBAGE_COLLECTED,
    BasicConnManager,
    bump_sum_bounded,
    decay_fixed,
    decay_linear,
)
from geventp2p.host.eventbus import EventBus


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class FakeConn:
    def __init__(self, peer, direction="outbound", streams=0):
        self.remote_peer = peer
        self.direction = direction
        self._streams = [object()] * streams
        self.closed_with = None

    def streams(self):
        return list(self._streams)

    def close_with_error(self, code):
        self.closed_with = code


def setup(low=2, high=4, **kw):
    clock = Clock()
    cm = BasicConnManager(low, high, grace_period=60, silence_period=10, clock=clock, **kw)
    return cm, clock


def connect(cm, *conns):
    for c in conns:
        cm.connected(None, c)
    return conns


def test_trim_order_temp_value_streams_direction():
    cm, clock = setup(low=1, high=2)
    valued = FakeConn("valued")
    busy = FakeConn("busy", streams=2)
    inbound = FakeConn("inbound", direction="inbound")
    outbound = FakeConn("outbound")
    connect(cm, valued, busy, inbound, outbound)
    cm.tag_peer("valued", "app", 100)
    clock.t += 61  # past the grace period
    victims = cm.select_victims(clock.t)
    # value 0 first; among those no streams before streams, inbound before outbound
    assert [c.remote_peer for c in victims] == ["inbound", "outbound", "busy"]
    assert cm.trim_open_conns() == 3
    assert inbound.closed_with == CONN_GARBAGE_COLLECTED
    assert valued.closed_with is None and cm.connection_count() == 1


def test_protected_and_grace_period_peers_are_kept():
    cm, clock = setup(low=0, high=1)
    old = FakeConn("old")
    prot = FakeConn("prot")
    connect(cm, old, prot)
    cm.protect("prot", "bootstrap")
    clock.t += 61
    young = FakeConn("young")
    connect(cm, young)  # seen now: within its grace period
    assert cm.trim_open_conns() == 1
    assert old.closed_with and not prot.closed_with and not young.closed_with
    assert cm.is_protected("prot") and cm.is_protected("prot", "bootstrap")
    assert not cm.is_protected("prot", "other")
    cm.protect("prot", "other")
    assert cm.unprotect("prot", "bootstrap") is True
    assert cm.unprotect("prot", "other") is False
    assert not cm.is_protected("prot")


def test_background_rule_high_watermark_and_silence():
    cm, clock = setup(low=2, high=4)
    conns = connect(cm, *[FakeConn(f"p{i}") for i in range(4)])
    clock.t += 61
    assert cm.maybe_trim() == 0  # at high: nothing to do
    connect(cm, FakeConn("p4"), FakeConn("p5"))
    clock.t += 61
    assert cm.maybe_trim() == 4  # 6 > 4: down to 2
    connect(cm, *[FakeConn(f"q{i}") for i in range(4)])
    clock.t += 61
    # 6 again, but the silence period is measured from the last trim
    cm._last_trim = clock.t - 5
    assert cm.maybe_trim() == 0
    clock.t += 5
    assert cm.maybe_trim() == 4
    assert sum(1 for c in conns if c.closed_with) >= 2


def test_temporary_entries_go_first_and_are_forgotten():
    cm, clock = setup(low=1, high=2)
    cm.tag_peer("early", "x", 1000)  # tagged before it connects: temporary
    clock.t += 61
    assert cm.get_tag_info("early").temp
    a, b = connect(cm, FakeConn("a"), FakeConn("b"))
    clock.t += 61
    cm.tag_peer("a", "keep", 5)
    assert cm.trim_open_conns() == 1
    assert b.closed_with and not a.closed_with
    assert cm.get_tag_info("early") is None  # no connection, past grace: dropped


def test_tags_upsert_untag_and_decay():
    cm, clock = setup()
    cm.tag_peer("p", "a", 10)
    cm.tag_peer("p", "a", 4)  # replaces
    cm.upsert_tag("p", "b", lambda v: v + 3)
    cm.upsert_tag("p", "b", lambda v: v + 3)
    assert cm.get_tag_info("p").value == 10
    cm.untag_peer("p", "a")
    assert cm.get_tag_info("p").value == 6
    lin = cm.register_decaying_tag("lin", 1.0, decay_linear(0.5))
    fix = cm.register_decaying_tag("fix", 2.0, decay_fixed(3), bump_sum_bounded(0, 10))
    with pytest.raises(ConfigError):
        cm.register_decaying_tag("lin", 1.0, decay_linear(0.5))
    lin.bump("p", 8)
    fix.bump("p", 50)  # bounded to 10
    assert cm.get_tag_info("p").tags == {"b": 6, "lin": 8, "fix": 10}
    clock.t += 2.0
    cm.apply_decay()
    assert cm.get_tag_info("p").tags == {"b": 6, "lin": 2, "fix": 7}
    clock.t += 2.0
    cm.apply_decay()
    assert cm.get_tag_info("p").tags == {"b": 6, "fix": 4}  # lin reached 0: removed
    assert cm.get_tag_info("p").value == 10
    fix.remove("p")
    lin.close()
    assert cm.get_tag_info("p").tags == {"b": 6}


def test_disconnect_forgets_peer_and_config_checked():
    cm, _ = setup()
    (c,) = connect(cm, FakeConn("p"))
    cm.disconnected(None, c)
    assert cm.get_tag_info("p") is None and cm.connection_count() == 0
    with pytest.raises(ConfigError):
        BasicConnManager(10, 5)


def test_trim_event_on_the_bus():
    bus = EventBus()
    cm, clock = setup(low=0, high=0, event_bus=bus)
    with bus.subscribe(EvtConnsTrimmed) as sub:
        connect(cm, FakeConn("p", "inbound"), FakeConn("p", "outbound"))
        clock.t += 61
        assert cm.trim_open_conns() == 2
        evt = sub.get(timeout=10)
    assert evt == EvtConnsTrimmed(peers=("p",), conns=2, remaining=0)
    bus.close()
