"""Dial backoff formula (virtual clock) and address ranking."""

from __future__ import annotations

import pytest

from geventp2p.core.addr import parse
from geventp2p.exceptions import ConfigError
from geventp2p.net.swarm_dial import DialBackoff, rank_addrs


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


A = parse("/ip4/1.2.3.4/tcp/4001")
B = parse("/ip4/1.2.3.4/tcp/4002")


def test_backoff_durations_follow_go_formula():
    clock = Clock()
    bo = DialBackoff(clock)
    got = []
    for _ in range(25):
        got.append(bo.add_backoff("p", A))
    # 5 s, then 5 + tries^2 (tries = earlier failures), capped at 300 s
    expected = [5.0] + [min(5.0 + n * n, 300.0) for n in range(1, 25)]
    assert got == expected
    assert got[:5] == [5.0, 6.0, 9.0, 14.0, 21.0]
    assert got[-1] == 300.0
    assert bo.tries("p", A) == 25


def test_backoff_window_from_the_clock():
    clock = Clock()
    bo = DialBackoff(clock)
    assert not bo.backoff("p", A)
    bo.add_backoff("p", A)
    assert bo.backoff("p", A) and not bo.backoff("p", B) and not bo.backoff("q", A)
    clock.advance(4.999)
    assert bo.backoff("p", A)
    clock.advance(0.002)
    assert not bo.backoff("p", A)
    bo.add_backoff("p", A)  # second failure: 6 s
    clock.advance(5.9)
    assert bo.backoff("p", A)
    clock.advance(0.2)
    assert not bo.backoff("p", A)
    bo.add_backoff("p", A)  # third: 9 s
    assert bo.until("p", A) == pytest.approx(clock() + 9.0)


def test_backoff_accepts_string_addresses_and_clear():
    clock = Clock()
    bo = DialBackoff(clock)
    bo.add_backoff("p", "/ip4/1.2.3.4/tcp/4001")
    assert bo.backoff("p", A)
    bo.add_backoff("p", B)
    assert len(bo) == 2 and bo.peers() == ["p"]
    bo.clear("p")
    assert not bo.backoff("p", A) and not bo.backoff("p", B) and len(bo) == 0
    bo.clear("nobody")  # no error


def test_backoff_purge_drops_stale_entries():
    clock = Clock()
    bo = DialBackoff(clock)
    bo.add_backoff("p", A)  # until +5, next would be 6 s -> stale after 11 s
    bo.add_backoff("q", B)
    clock.advance(10)
    assert bo.purge() == 0
    clock.advance(1.5)
    assert bo.purge() == 2 and len(bo) == 0


def test_backoff_custom_parameters_and_validation():
    clock = Clock()
    bo = DialBackoff(clock, base=1.0, coef=2.0, max_backoff=10.0)
    assert [bo.add_backoff("p", A) for _ in range(4)] == [1.0, 3.0, 9.0, 10.0]
    with pytest.raises(ConfigError):
        DialBackoff(clock, base=10, max_backoff=5)
    with pytest.raises(ConfigError):
        DialBackoff(clock, coef=-1)


def test_rank_local_before_public_and_stagger():
    addrs = [parse(a) for a in (
        "/ip4/8.8.8.8/tcp/4001",
        "/ip4/192.168.1.5/tcp/4001",
        "/ip4/127.0.0.1/tcp/4001",
        "/ip4/9.9.9.9/tcp/1000",
        "/memory/5",
    )]
    plan = rank_addrs(addrs, step_local=0.03, step_public=0.25)
    assert [d for d, _ in plan] == sorted(d for d, _ in plan)
    by_addr = {str(a): d for d, a in plan}
    # both groups start at once; loopback first inside the local group
    assert by_addr["/ip4/127.0.0.1/tcp/4001"] == 0.0
    assert min(by_addr["/ip4/8.8.8.8/tcp/4001"], by_addr["/ip4/9.9.9.9/tcp/1000"]) == 0.0
    # lower port first among public addresses
    assert by_addr["/ip4/9.9.9.9/tcp/1000"] == 0.0 and by_addr["/ip4/8.8.8.8/tcp/4001"] == 0.25
    local_delays = sorted(by_addr[a] for a in ("/ip4/192.168.1.5/tcp/4001", "/ip4/127.0.0.1/tcp/4001", "/memory/5"))
    assert local_delays == pytest.approx([0.0, 0.03, 0.06])


def test_rank_ipv6_before_ipv4_and_relay_last():
    addrs = [parse(a) for a in (
        "/ip4/8.8.8.8/tcp/4001",
        "/ip6/2001:db8::1/tcp/4001",
        "/ip4/8.8.4.4/tcp/4001/p2p/QmcgpsyWgH8Y8ajJz1Cu72KnS5uo2Aa2LpzU7kinSupNKC/p2p-circuit",
    )]
    plan = rank_addrs(addrs, step_public=0.25, relay_delay=0.5)
    assert [str(a) for _, a in plan][0] == "/ip6/2001:db8::1/tcp/4001"
    assert "p2p-circuit" in str(plan[-1][1]) and plan[-1][0] == pytest.approx(0.25 + 0.5)
    assert rank_addrs([]) == []


@pytest.mark.parametrize("prefer_quic", [True, False])
def test_rank_key_precedence_loopback_then_transport_then_ipv6_then_port(prefer_quic):
    quic = ["/ip6/2001:db8::1/udp/9000/quic-v1", "/ip4/8.8.8.8/udp/9000/quic-v1"]
    tcp = ["/ip6/2001:db8::1/tcp/1", "/ip4/8.8.8.8/tcp/1", "/ip4/8.8.8.8/tcp/500"]
    shuffled = [quic[1], tcp[2], tcp[0], quic[0], tcp[1]]
    plan = rank_addrs([parse(a) for a in shuffled], prefer_quic=prefer_quic)
    # the preferred transport beats IPv6-first and the port; IPv6 beats the port
    assert [str(a) for _, a in plan] == (quic + tcp if prefer_quic else tcp + quic)
    # loopback beats the preferred transport
    local = ["/ip4/127.0.0.1/tcp/4001", "/ip4/192.168.1.5/udp/1/quic-v1"]
    plan = rank_addrs([parse(a) for a in reversed(local)], prefer_quic=prefer_quic)
    assert [str(a) for _, a in plan] == local
