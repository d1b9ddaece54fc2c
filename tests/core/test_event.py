"""Tests for geventp2p.core.event (bus event types)."""

from __future__ import annotations

import dataclasses

import pytest

from geventp2p.core import event as E
from geventp2p.core.addr import parse


def test_enum_values_follow_go_order():
    assert [(m.name, int(m)) for m in E.Connectedness][:4] == [
        ("NotConnected", 0), ("Connected", 1), ("CanConnect", 2), ("CannotConnect", 3)]
    assert [int(m) for m in E.Reachability] == [0, 1, 2]
    assert E.Reachability.Public == 1 and E.Reachability.Private == 2
    assert E.NATDeviceType.Cone == 1 and E.NATDeviceType.Symmetric == 2
    assert E.NATTransportProtocol.UDP == 0 and E.NATTransportProtocol.TCP == 1
    # Direction is core.mux's str enum; go's numbers 0/1/2 still parse to its members
    assert [E.Direction.parse(n) for n in (0, 1, 2)] == [
        E.Direction.Unknown, E.Direction.Inbound, E.Direction.Outbound]
    assert [m.name for m in E.AddrAction] == ["Unknown", "Added", "Maintained", "Removed"]


def test_direction_parse():
    assert E.Direction.parse("inbound") is E.Direction.Inbound
    assert E.Direction.parse("Outbound") is E.Direction.Outbound
    assert E.Direction.parse(2) is E.Direction.Outbound
    assert str(E.Direction.Inbound) == "inbound"
    assert f"{E.Direction.Outbound}" == "outbound" and "%s" % E.Direction.Inbound == "inbound"


def test_event_direction_is_the_one_in_core_mux():
    from geventp2p.core import mux, network

    assert E.Direction is mux.Direction is network.Direction
    with pytest.raises(ValueError):
        E.Direction.parse("sideways")


@pytest.mark.parametrize("cls", E.EVENT_TYPES + (E.UpdatedAddress,))
def test_events_are_frozen_slotted_kw_only(cls):
    params = dataclasses.fields(cls)
    assert all(f.kw_only for f in params)
    assert hasattr(cls, "__slots__")
    assert cls.__dataclass_params__.frozen


def test_sequences_become_tuples_and_events_hash():
    a = parse("/ip4/127.0.0.1/tcp/1")
    ev = E.EvtPeerIdentificationCompleted(
        peer="peer-a", listen_addrs=[a], protocols=["/ipfs/ping/1.0.0"], agent_version="x/1"
    )
    assert ev.listen_addrs == (a,) and ev.protocols == ("/ipfs/ping/1.0.0",)
    assert ev.conn is None and ev.observed_addr is None and ev.protocol_version == ""
    same = E.EvtPeerIdentificationCompleted(
        peer="peer-a", listen_addrs=(a,), protocols=("/ipfs/ping/1.0.0",), agent_version="x/1"
    )
    assert ev == same and hash(ev) == hash(same)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.agent_version = "y"  # type: ignore[misc]

    up = E.EvtLocalAddressesUpdated(
        diffs=True,
        current=[E.UpdatedAddress(address=a, action=E.AddrAction.Added)],
        removed=[],
    )
    assert isinstance(up.current, tuple) and up.removed == () and up.signed_peer_record is None
    hash(up)
    assert E.EvtLocalProtocolsUpdated(added=["/a"]).removed == ()
    assert E.EvtPeerProtocolsUpdated(peer="p", removed={"/b"}).removed == ("/b",)


def test_positional_args_rejected_and_strings_not_sequences():
    with pytest.raises(TypeError):
        E.EvtLocalReachabilityChanged(E.Reachability.Public)  # type: ignore[misc]
    with pytest.raises(TypeError):
        E.EvtLocalProtocolsUpdated(added="/ipfs/id/1.0.0")


def test_other_events_construct():
    E.EvtLocalReachabilityChanged(reachability=E.Reachability.Private)
    E.EvtNATDeviceTypeChanged(transport_protocol=E.NATTransportProtocol.UDP,
                              nat_device_type=E.NATDeviceType.Cone)
    E.EvtPeerConnectednessChanged(peer="p", connectedness=E.Connectedness.Connected)
    f = E.EvtPeerIdentificationFailed(peer="p", reason="timeout")
    assert f.reason == "timeout"
