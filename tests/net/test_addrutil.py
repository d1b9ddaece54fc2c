"""net/addrutil: interface enumeration through psutil and name resolution through gevent."""

from __future__ import annotations

import psutil
import ipaddress
import socket
from types import SimpleNamespace

import gevent.event
import pytest

from geventp2p.core import addr as A
from geventp2p.exceptions import P2PTimeoutError
from geventp2p.net import addrutil


def _snic(family, address):
    return SimpleNamespace(family=family, address=address, netmask=None, broadcast=None, ptp=None)


FAKE_IFACES = {
    "lo": [_snic(socket.AF_INET, "127.0.0.1"), _snic(socket.AF_INET6, "::1")],
    "eth0": [
        _snic(getattr(socket, "AF_PACKET", 17), "02:fc:00:00:00:01"),  # link layer: skipped
        _snic(socket.AF_INET6, "fe80::fc:ff:fe00:1%eth0"),  # IPv6 link-local: left out
        _snic(socket.AF_INET6, "fd00::2"),
        _snic(socket.AF_INET, "192.0.2.2"),
    ],
    "eth1": [_snic(socket.AF_INET, "10.1.2.3"), _snic(socket.AF_INET, "192.0.2.2")],  # duplicate dropped
    "weird": [_snic(socket.AF_INET, "not-an-ip")],
}


def test_real_interfaces_have_loopback_first():
    addrs = addrutil.interface_addresses()
    assert addrs[0] == "127.0.0.1"
    assert len(set(addrs)) == len(addrs)
    for a in addrs:
        ip = ipaddress.ip_address(a)
        assert not (ip.version == 6 and ip.is_link_local)
    assert A.parse("/ip4/127.0.0.1/tcp/9") in A.expand_unspecified("/ip4/0.0.0.0/tcp/9", addrs)


def test_interfaces_from_psutil(monkeypatch):
    monkeypatch.setattr(psutil, "net_if_addrs", lambda: FAKE_IFACES)
    monkeypatch.setattr(addrutil.socket, "has_ipv6", True)
    assert addrutil.interface_addresses() == ("127.0.0.1", "::1", "192.0.2.2", "10.1.2.3", "fd00::2")


def test_interfaces_without_ipv6_support(monkeypatch):
    monkeypatch.setattr(psutil, "net_if_addrs", lambda: {"eth0": [_snic(socket.AF_INET, "10.0.0.1")]})
    monkeypatch.setattr(addrutil.socket, "has_ipv6", False)
    assert addrutil.interface_addresses() == ("127.0.0.1", "10.0.0.1")


def _psutil_fails():
    raise OSError("getifaddrs failed")


def test_falls_back_to_resolving_the_host_name(monkeypatch):
    monkeypatch.setattr(psutil, "net_if_addrs", _psutil_fails)
    monkeypatch.setattr(addrutil.socket, "has_ipv6", True)
    asked = []

    def fake_getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        asked.append(host)
        return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("fd00::9%eth0", 0, 0, 2)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.9.9.9", 0))]

    monkeypatch.setattr(addrutil.gsocket, "getaddrinfo", fake_getaddrinfo)
    assert addrutil.interface_addresses() == ("127.0.0.1", "::1", "10.9.9.9", "fd00::9")
    assert asked == [socket.gethostname()]


def test_fallback_resolution_is_bounded(monkeypatch):
    monkeypatch.setattr(psutil, "net_if_addrs", _psutil_fails)
    never = gevent.event.Event()
    monkeypatch.setattr(addrutil.gsocket, "getaddrinfo", lambda *a, **k: never.wait())
    addrs = addrutil.interface_addresses(resolve_timeout=0.05)
    assert addrs[0] == "127.0.0.1" and all(ipaddress.ip_address(a).is_loopback for a in addrs)


def test_resolve_host_localhost():
    assert "127.0.0.1" in addrutil.resolve_host("localhost", socket.AF_INET, timeout=30)


def test_resolve_host_ip_literal_and_dedup():
    assert addrutil.resolve_host("127.0.0.1", timeout=30) == ("127.0.0.1",)


def test_resolve_host_timeout(monkeypatch):
    never = gevent.event.Event()
    monkeypatch.setattr(addrutil.gsocket, "getaddrinfo", lambda *a, **k: never.wait())
    with pytest.raises(P2PTimeoutError, match="resolving 'slow.example'"):
        addrutil.resolve_host("slow.example", timeout=0.05)


def test_resolve_host_unknown_name_is_oserror(monkeypatch):
    def fail(*a, **k):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(addrutil.gsocket, "getaddrinfo", fail)
    with pytest.raises(OSError):
        addrutil.resolve_host("nope.invalid", timeout=30)


def test_loopback_host_does_not_import_psutil():
    """psutil costs ~1.7 MiB of RSS per process; only wildcard listens need it."""
    import subprocess
    import sys

    code = (
        "import sys, geventp2p\n"
        "h = geventp2p.new_host(listen=['/ip4/127.0.0.1/tcp/0'])\n"
        "print('psutil' in sys.modules)\n"
        "h.close()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"
