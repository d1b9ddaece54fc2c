"""Tests for geventp2p.core.addr (multiaddr helpers)."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import given, strategies as st

from geventp2p.core import addr as A
from geventp2p.core.addr import Multiaddr
from geventp2p.exceptions import MultiaddrError
from geventp2p.net.addrutil import interface_addresses

# A sha256 peer id (RSA-style, CIDv0 text) and an identity-hash ed25519 one.
QM = "QmcgpsyWgH8Y8ajJz1Cu72KnS5uo2Aa2LpzU7kinSupNKC"
ED = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
ED_MH = bytes.fromhex("002408011220" "2ffa35a99d3a3cfbb17bb7c1dc5561b18a8dcca4df38dc613ea859c37eb1336b")
# The same key as a base32 CIDv1 (libp2p-key) and its base58 form.
CID_V1 = "bafzaajaiaejcbzdibmxyzdjbbehgvizh6g5tikvy47mshdy6gwbruvgwvd24seje"
CID_V1_B58 = "12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK"


# --------------------------------------------------------------------------- parse / binary


def test_binary_vector():
    assert A.to_bytes("/ip4/127.0.0.1/tcp/4001").hex() == "047f000001060fa1"
    assert str(A.from_bytes(bytes.fromhex("047f000001060fa1"))) == "/ip4/127.0.0.1/tcp/4001"


def test_binary_p2p_vector():
    b = A.to_bytes(f"/ip4/127.0.0.1/tcp/4001/p2p/{ED}")
    assert b == bytes.fromhex("047f000001060fa1") + b"\xa5\x03\x26" + ED_MH


def test_parse_accepts_str_bytes_and_multiaddr():
    m = A.parse("/ip4/1.2.3.4/tcp/80")
    assert isinstance(m, Multiaddr)
    assert A.parse(m) == m
    assert A.parse(m.to_bytes()) == m
    assert A.parse(bytearray(m.to_bytes())) == m
    assert A.parse(memoryview(m.to_bytes())) == m
    assert A.parse("/ip4/1.2.3.4/tcp/80/") == m  # trailing slash tolerated (as go)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "/",
        "ip4/1.2.3.4",
        "/ip4",
        "/ip4//tcp/1",
        "/ip4/300.1.1.1",
        "/ip4/1.2.3.4/tcp",
        "/ip4/1.2.3.4/tcp/65536",
        "/ip4/1.2.3.4/tcp/abc",
        "/nope/1",
        "/ip4/1.2.3.4/tcp/1/p2p/notapeer",
        "/memory/-1",
        "/memory/x",
    ],
)
def test_parse_bad_text_names_input(bad):
    with pytest.raises(MultiaddrError) as ei:
        A.parse(bad)
    assert isinstance(ei.value, ValueError)
    if bad:
        assert repr(bad) in str(ei.value)


@pytest.mark.parametrize(
    "hexdata, why",
    [
        ("", "empty"),
        ("047f00", "truncated"),
        ("ffffffff", "truncated varint"),
        ("047f000001060fa100", "unknown"),  # trailing code 0
        ("9f7f", "unknown"),  # unknown protocol code
        ("3505", "truncated"),  # dns with length 5, no bytes
        ("3500", "invalid /dns value"),  # dns with empty value
        ("8000", "minimal"),  # non-minimal varint code
        ("a50305deadbeef00", "invalid /p2p value"),  # junk peer id
    ],
)
def test_from_bytes_rejects_malformed(hexdata, why):
    with pytest.raises(MultiaddrError) as ei:
        A.from_bytes(bytes.fromhex(hexdata))
    assert why in str(ei.value)
    assert hexdata in str(ei.value)  # names the bad input


def test_parse_revalidates_unchecked_multiaddr():
    # multiaddr 0.2.0 does not validate bytes given to Multiaddr(); parse() does.
    raw = Multiaddr(b"\x04\x7f\x00")
    with pytest.raises(MultiaddrError):
        A.parse(raw)


def test_oversized_binary_rejected():
    big = b"\x35" + A._encode_uvarint(2000) + b"a" * 2000
    with pytest.raises(MultiaddrError, match="limit"):
        A.from_bytes(big)


def test_parse_wrong_type():
    with pytest.raises(TypeError):
        A.parse(1234)  # type: ignore[arg-type]


def test_legacy_ipfs_name():
    assert A.parse(f"/ip4/1.2.3.4/tcp/1/ipfs/{QM}") == A.parse(f"/ip4/1.2.3.4/tcp/1/p2p/{QM}")
    assert str(A.parse(f"/ipfs/{QM}")) == f"/p2p/{QM}"


def test_cidv1_peer_id_stored_as_multihash():
    m = A.parse(f"/ip4/1.2.3.4/tcp/1/p2p/{CID_V1}")
    assert str(m) == f"/ip4/1.2.3.4/tcp/1/p2p/{CID_V1_B58}"
    comps = A.components(m)
    assert comps[-1].raw[:2] == b"\x00\x24"  # identity multihash, not CID bytes
    # binary input carrying a CID is normalised too
    cid_bytes = bytes.fromhex("0172") + comps[-1].raw
    b = bytes.fromhex("0401020304060001") + b"\xa5\x03" + bytes([len(cid_bytes)]) + cid_bytes
    assert A.from_bytes(b) == m


def test_other_protocols_roundtrip():
    for text in [
        "/ip6/::1/tcp/4001",
        "/dns4/example.com/tcp/443/wss",
        "/ip4/1.2.3.4/udp/4001/quic-v1",
        "/ip6zone/eth0/ip6/fe80::1/tcp/1",
        "/unix/tmp/x.sock",
        "/memory/42",
        f"/ip4/1.2.3.4/tcp/1/p2p/{QM}/p2p-circuit/p2p/{ED}",
    ]:
        m = A.parse(text)
        assert str(m) == text
        assert A.from_bytes(A.to_bytes(m)) == m


def test_ip6zone_components():
    comps = A.components("/ip6zone/eth0/ip6/fe80::1/tcp/1")
    assert [c.name for c in comps] == ["ip6zone", "ip6", "tcp"]
    assert comps[0].value == "eth0"


@given(
    ip=st.ip_addresses(v=4),
    port=st.integers(0, 65535),
    proto=st.sampled_from(["tcp", "udp"]),
)
def test_hypothesis_ip4_roundtrip(ip, port, proto):
    text = f"/ip4/{ip}/{proto}/{port}"
    b = A.to_bytes(text)
    code = b"\x06" if proto == "tcp" else b"\x91\x02"
    assert b == b"\x04" + ip.packed + code + port.to_bytes(2, "big")
    assert str(A.from_bytes(b)) == text


@given(ip=st.ip_addresses(v=6), port=st.integers(0, 65535))
def test_hypothesis_ip6_roundtrip(ip, port):
    m = A.parse(f"/ip6/{ip}/tcp/{port}")
    assert A.from_bytes(m.to_bytes()) == m
    host, got_port, fam = A.tcp_host_port(m)
    assert (ipaddress.ip_address(host), got_port, fam) == (ip, port, socket.AF_INET6)


@given(st.binary(max_size=64))
def test_hypothesis_from_bytes_never_crashes(data):
    try:
        m = A.from_bytes(data)
    except MultiaddrError:
        return
    assert A.from_bytes(m.to_bytes()) == m


# --------------------------------------------------------------------------- /p2p


def test_split_p2p():
    t, p = A.split_p2p(f"/ip4/1.2.3.4/tcp/1/p2p/{QM}")
    assert t == A.parse("/ip4/1.2.3.4/tcp/1") and p == QM
    assert A.split_p2p(f"/ipfs/{QM}") == (None, QM)
    t, p = A.split_p2p("/ip4/1.2.3.4/tcp/1")
    assert t == A.parse("/ip4/1.2.3.4/tcp/1") and p is None


def test_split_p2p_relay_keeps_relay_part():
    t, p = A.split_p2p(f"/ip4/1.2.3.4/tcp/1/p2p/{QM}/p2p-circuit/p2p/{ED}")
    assert p == ED
    assert str(t) == f"/ip4/1.2.3.4/tcp/1/p2p/{QM}/p2p-circuit"
    t, p = A.split_p2p(f"/ip4/1.2.3.4/tcp/1/p2p/{QM}/p2p-circuit")
    assert p is None


def test_join_p2p():
    m = A.join_p2p("/ip4/1.2.3.4/tcp/1", QM)
    assert str(m) == f"/ip4/1.2.3.4/tcp/1/p2p/{QM}"
    assert A.join_p2p(m, QM) == m  # no double /p2p
    assert A.join_p2p("/ip4/1.2.3.4/tcp/1", ED_MH) == A.parse(f"/ip4/1.2.3.4/tcp/1/p2p/{ED}")
    assert A.join_p2p(f"/ip4/1.2.3.4/tcp/1/p2p/{CID_V1_B58}", CID_V1) == A.parse(
        f"/ip4/1.2.3.4/tcp/1/p2p/{CID_V1_B58}"
    )
    with pytest.raises(MultiaddrError, match="already names peer"):
        A.join_p2p(m, ED)
    with pytest.raises(MultiaddrError, match="invalid peer id"):
        A.join_p2p("/ip4/1.2.3.4/tcp/1", "garbage!")
    with pytest.raises(TypeError):
        A.join_p2p("/ip4/1.2.3.4/tcp/1", 42)


def test_join_p2p_with_peer_object():
    class FakePeer:  # anything with to_bytes() works (PeerId does)
        def to_bytes(self):
            return ED_MH

        def __str__(self):
            return ED

    assert str(A.join_p2p("/memory/7", FakePeer())) == f"/memory/7/p2p/{ED}"


# --------------------------------------------------------------------------- transports


def test_tcp_host_port():
    assert A.tcp_host_port("/ip4/127.0.0.1/tcp/4001") == ("127.0.0.1", 4001, socket.AF_INET)
    assert A.tcp_host_port("/ip6/::1/tcp/1") == ("::1", 1, socket.AF_INET6)
    assert A.tcp_host_port("/dns/example.com/tcp/2") == ("example.com", 2, socket.AF_UNSPEC)
    assert A.tcp_host_port("/dns4/example.com/tcp/3") == ("example.com", 3, socket.AF_INET)
    assert A.tcp_host_port("/dns6/example.com/tcp/4") == ("example.com", 4, socket.AF_INET6)
    assert A.tcp_host_port(f"/ip4/1.2.3.4/tcp/5/p2p/{QM}") == ("1.2.3.4", 5, socket.AF_INET)
    assert A.tcp_host_port("/ip6zone/eth0/ip6/fe80::1/tcp/1") == ("fe80::1%eth0", 1, socket.AF_INET6)
    assert A.tcp_host_port("/ip4/1.2.3.4/tcp/6/ws", strict=False) == ("1.2.3.4", 6, socket.AF_INET)


@pytest.mark.parametrize(
    "bad",
    ["/ip4/1.2.3.4/udp/1", "/ip4/1.2.3.4", "/memory/3", "/dnsaddr/x.io/tcp/1", "/ip4/1.2.3.4/tcp/6/ws",
     "/tcp/1"],
)
def test_tcp_host_port_rejects(bad):
    with pytest.raises(MultiaddrError):
        A.tcp_host_port(bad)


@pytest.mark.parametrize(
    "text, want",
    [
        ("/ip4/1.2.3.4/tcp/1", ("tcp",)),
        (f"/ip4/1.2.3.4/tcp/1/p2p/{QM}", ("tcp",)),
        ("/dns/x.io/tcp/1", ("tcp",)),
        ("/ip4/1.2.3.4/tcp/1/ws", ("ws",)),
        ("/ip4/1.2.3.4/tcp/1/wss", ("wss",)),
        ("/dns4/x.io/tcp/443/tls/ws", ("wss",)),
        ("/dns4/x.io/tcp/443/tls/sni/x.io/ws", ("wss",)),
        ("/ip4/1.2.3.4/udp/1/quic-v1", ("quic-v1",)),
        ("/ip4/1.2.3.4/udp/1/quic", ("quic",)),
        ("/ip4/1.2.3.4/udp/1/quic-v1/webtransport", ("webtransport",)),
        ("/ip4/1.2.3.4/udp/1/webrtc-direct", ("webrtc-direct",)),
        ("/memory/9", ("memory",)),
        (f"/memory/9/p2p/{ED}", ("memory",)),
        ("/unix/tmp/s", ("unix",)),
        (f"/ip4/1.2.3.4/tcp/1/p2p/{QM}/p2p-circuit/p2p/{ED}", ("tcp", "p2p-circuit")),
        (f"/ip4/1.2.3.4/udp/1/quic-v1/p2p/{QM}/p2p-circuit/webrtc/p2p/{ED}",
         ("quic-v1", "p2p-circuit", "webrtc")),
        (f"/p2p-circuit/p2p/{ED}", ("p2p-circuit",)),
        ("/ip4/1.2.3.4", ()),
        ("/ip4/1.2.3.4/udp/1", ()),
        (f"/dnsaddr/bootstrap.libp2p.io/p2p/{QM}", ()),
        (f"/p2p/{QM}", ()),
        ("/ip4/1.2.3.4/tcp/1/http", ()),
    ],
)
def test_transports_needed(text, want):
    assert A.transports_needed(text) == want


def test_memory_protocol_known():
    assert A.MEMORY_PROTOCOL_AVAILABLE
    m = A.parse("/memory/1234")
    assert m.to_bytes().hex() == "8906" + "00000000000004d2"
    assert A.memory_id(m) == 1234
    assert A.memory_id(f"/memory/5/p2p/{ED}") == 5
    with pytest.raises(MultiaddrError):
        A.memory_id("/ip4/1.2.3.4/tcp/1")


# --------------------------------------------------------------------------- classes


@pytest.mark.parametrize(
    "text, loop, priv, local",
    [
        ("/ip4/127.0.0.1/tcp/1", True, False, True),
        ("/ip4/127.9.9.9/tcp/1", True, False, True),
        ("/ip6/::1/tcp/1", True, False, True),
        ("/ip6/::ffff:127.0.0.1/tcp/1", True, False, True),
        ("/dns/localhost/tcp/1", True, False, True),
        ("/dns4/foo.localhost/tcp/1", True, False, True),
        ("/ip4/10.1.2.3/tcp/1", False, True, True),
        ("/ip4/172.16.0.1/tcp/1", False, True, True),
        ("/ip4/172.32.0.1/tcp/1", False, False, False),
        ("/ip4/192.168.1.1/udp/1/quic-v1", False, True, True),
        ("/ip4/100.64.0.1/tcp/1", False, True, True),
        ("/ip4/169.254.1.1/tcp/1", False, True, True),
        ("/ip6/fd00::1/tcp/1", False, True, True),
        ("/ip6/fe80::1/tcp/1", False, True, True),
        ("/ip6zone/eth0/ip6/fe80::1/tcp/1", False, True, True),
        ("/ip4/8.8.8.8/tcp/1", False, False, False),
        ("/ip6/2001:4860::8888/tcp/1", False, False, False),
        ("/dns4/example.com/tcp/1", False, False, False),
        ("/memory/1", False, False, True),
        ("/unix/tmp/x", False, False, True),
    ],
)
def test_address_classes(text, loop, priv, local):
    assert A.is_loopback(text) is loop
    assert A.is_private(text) is priv
    assert A.is_local(text) is local


def test_unspecified_and_link_local():
    assert A.is_unspecified("/ip4/0.0.0.0/tcp/0")
    assert A.is_unspecified("/ip6/::/tcp/0")
    assert not A.is_unspecified("/ip4/1.2.3.4/tcp/0")
    assert A.is_link_local("/ip6/fe80::1/tcp/1")
    assert not A.is_link_local("/ip4/10.0.0.1/tcp/1")


def test_expand_unspecified():
    ifaces = ["127.0.0.1", "::1", "192.168.1.5", ipaddress.ip_address("fd00::5"), "/ip4/10.0.0.1", "192.168.1.5"]
    got = A.expand_unspecified("/ip4/0.0.0.0/tcp/4001", ifaces)
    assert [str(m) for m in got] == [
        "/ip4/127.0.0.1/tcp/4001",
        "/ip4/192.168.1.5/tcp/4001",
        "/ip4/10.0.0.1/tcp/4001",
    ]
    got6 = A.expand_unspecified(f"/ip6/::/udp/1/quic-v1/p2p/{ED}", ifaces)
    assert [str(m) for m in got6] == [f"/ip6/::1/udp/1/quic-v1/p2p/{ED}", f"/ip6/fd00::5/udp/1/quic-v1/p2p/{ED}"]
    # specified and non-IP addresses come back unchanged
    assert A.expand_unspecified("/ip4/1.2.3.4/tcp/1", ifaces) == [A.parse("/ip4/1.2.3.4/tcp/1")]
    assert A.expand_unspecified("/memory/3", ifaces) == [A.parse("/memory/3")]
    assert A.expand_unspecified("/ip4/0.0.0.0/tcp/1", []) == []
    with pytest.raises(MultiaddrError):
        A.expand_unspecified("/ip4/0.0.0.0/tcp/1", ["not-an-ip"])


def test_interface_addresses_has_loopback():
    addrs = interface_addresses()
    assert addrs[0] == "127.0.0.1"
    assert len(set(addrs)) == len(addrs)
    for a in addrs:
        ip = ipaddress.ip_address(a)
        assert not (ip.version == 6 and ip.is_link_local)
    # usable for expansion
    assert A.parse("/ip4/127.0.0.1/tcp/9") in A.expand_unspecified("/ip4/0.0.0.0/tcp/9", addrs)


def test_join_split_with_real_peer_id():
    from geventp2p.core.peer import PeerId
    from geventp2p.crypto.keys import generate_key

    peer = PeerId.from_public_key(generate_key().public_key())
    m = A.join_p2p("/ip4/127.0.0.1/tcp/4001", peer)
    assert A.to_bytes(m) == bytes.fromhex("047f000001060fa1") + b"\xa5\x03" + bytes([len(peer.to_bytes())]) + peer.to_bytes()
    t, text = A.split_p2p(m)
    assert t == A.parse("/ip4/127.0.0.1/tcp/4001") and PeerId.from_string(text) == peer
    assert A.join_p2p(m, peer) == m
    assert A.join_p2p(f"/ip4/127.0.0.1/tcp/4001/p2p/{peer.to_cid()}", peer) == m


def test_components_cache_gives_equal_answers_and_still_refuses_bad_input():
    text = "/ip4/10.1.2.3/tcp/4001"
    first = A.components(text)
    assert A.components(Multiaddr(text)) == first  # a hit: same components
    assert [c.value for c in first] == ["10.1.2.3", "4001"]
    for _ in range(A._CACHE_MAX + 5):  # past the bound: cleared, never unbounded
        A.components(f"/ip4/10.0.0.1/tcp/{_ + 1}")
    assert len(A._WALK_CACHE) <= A._CACHE_MAX
    with pytest.raises(MultiaddrError):
        A.components(b"\x04\x01\x02")  # truncated ip4 value
    with pytest.raises(MultiaddrError):
        A.components(b"\x04\x01\x02")  # and again: errors are not cached as answers


def test_socket_addresses_become_multiaddrs():
    from geventp2p.net.tcp import sockaddr_to_multiaddr

    assert str(sockaddr_to_multiaddr(("127.0.0.1", 4001), socket.AF_INET)) == "/ip4/127.0.0.1/tcp/4001"
    six = sockaddr_to_multiaddr(("fe80::1%eth0", 9, 0, 2), socket.AF_INET6)
    assert six == Multiaddr("/ip6/fe80::1/tcp/9")  # the zone is not part of /ip6
    assert sockaddr_to_multiaddr(("not-an-ip", 1), socket.AF_INET) is None


def test_parse_cache_returns_validated_answers_and_never_caches_errors():
    text = "/ip4/10.9.8.7/tcp/1/ipfs/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
    first = A.parse(text)
    again = A.parse(text)  # from the text cache
    assert again == first and str(again).split("/")[5] == "p2p"  # /ipfs/ rewritten both times
    assert A.parse(Multiaddr(str(first))) == first
    for bad in ("/ip4/300.1.1.1/tcp/1", "/ip4/1.2.3.4/tcp"):
        for _ in range(2):
            with pytest.raises(MultiaddrError):
                A.parse(bad)
    for i in range(A._CACHE_MAX + 5):
        A.parse(f"/ip4/10.0.0.2/udp/{i + 1}")
    assert len(A._TEXT_CACHE) <= A._CACHE_MAX and len(A._WALK_CACHE) <= A._CACHE_MAX
