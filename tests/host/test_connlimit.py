"""host/rcmgr/connlimit: go's per-IP connection limits and rate limits."""

from __future__ import annotations

import ipaddress

from geventp2p.host.rcmgr.connlimit import ConnLimiter, ConnRateLimiter, remote_ip

ip = ipaddress.ip_address


def test_remote_ip_forms():
    assert remote_ip("/ip4/1.2.3.4/tcp/5") == ip("1.2.3.4")
    assert remote_ip("/ip6/fe80::1%eth0/tcp/5") == ip("fe80::1")
    assert remote_ip(("10.0.0.1", 80)) == ip("10.0.0.1")
    assert remote_ip("/dns4/example.com/tcp/1") is None
    assert remote_ip("/memory/3") is None


def test_remote_ip_of_multiaddr_objects():
    # the swarm passes Multiaddr objects, read in binary form: same answers as text
    from multiaddr import Multiaddr

    assert remote_ip(Multiaddr("/ip4/1.2.3.4/tcp/5")) == ip("1.2.3.4")
    assert remote_ip(Multiaddr("/ip6/2001:db8::7/udp/5/quic-v1")) == ip("2001:db8::7")
    assert remote_ip(Multiaddr("/ip6zone/eth0/ip6/fe80::1/tcp/5")) is None  # as for the text form
    assert remote_ip(Multiaddr("/dns4/example.com/tcp/1")) is None
    assert remote_ip(Multiaddr("/ip4/1.2.3.4/tcp/5")).is_loopback is False


def test_eight_per_ipv4_address_others_unaffected():
    lim = ConnLimiter()
    a, b = ip("192.0.2.1"), ip("192.0.2.2")
    assert all(lim.add_conn(a) for _ in range(8))
    assert not lim.add_conn(a)
    assert lim.add_conn(b)  # another address has its own budget
    lim.remove_conn(a)
    assert lim.add_conn(a)
    for _ in range(8):
        lim.remove_conn(a)
    lim.remove_conn(b)
    assert len(lim) == 0


def test_ipv6_slash56_and_slash48():
    lim = ConnLimiter()
    same56 = [ip(f"2001:db8:0:1{i:02x}::1") for i in range(8)]  # all in 2001:db8:0:100::/56
    assert all(lim.add_conn(x) for x in same56)
    assert not lim.add_conn(ip("2001:db8:0:1ff::9"))  # same /56
    # 64 per /48: fill other /56s of the same /48
    ok = sum(lim.add_conn(ip(f"2001:db8:0:{n:02x}00::1")) for n in range(2, 80))
    assert ok == 64 - 8
    assert not lim.add_conn(ip("2001:db8:0:f000::1"))
    assert lim.add_conn(ip("2001:db9::1"))  # another /48


def test_loopback_exempt_unless_asked():
    assert all(ConnLimiter().add_conn(ip("127.0.0.1")) for _ in range(100))
    strict = ConnLimiter(limit_loopback=True)
    assert sum(strict.add_conn(ip("127.0.0.1")) for _ in range(100)) == 8
    assert ConnLimiter().add_conn(None)


def test_rate_limit_burst_then_refill():
    rl = ConnRateLimiter()
    a = ip("198.51.100.7")
    assert sum(rl.allow(a, now=0.0) for _ in range(40)) == 16
    assert not rl.allow(a, now=4.0)  # 0.2/s: 0.8 tokens after 4 s
    assert rl.allow(a, now=5.0)  # one token after 5 s
    assert not rl.allow(a, now=5.1)
    assert rl.allow(ip("198.51.100.8"), now=5.1)  # separate bucket
    assert all(rl.allow(ip("127.0.0.1"), now=0.0) for _ in range(100))


def test_rate_limit_buckets_are_bounded():
    rl = ConnRateLimiter(max_buckets=100)
    for i in range(1000):
        rl.allow(ip(f"10.{i // 250}.{i % 250}.1"), now=float(i) * 100)
    assert len(rl._buckets) <= 100
