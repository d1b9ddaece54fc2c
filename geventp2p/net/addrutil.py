"""This host's addresses and name resolution: the I/O half of the multiaddr helpers.

:mod:`geventp2p.core.addr` stays pure; what needs the operating system lives here:

* :func:`interface_addresses` lists the IP addresses of the local interfaces through
  ``psutil.net_if_addrs()`` (``getifaddrs(3)`` on POSIX; works on Linux, macOS, BSD and
  Windows alike, with no ``/proc`` parsing);
* :func:`resolve_host` resolves a name through gevent's resolver
  (``gevent.socket.getaddrinfo``), so only the calling greenlet waits, and never
  longer than ``timeout`` (:class:`~geventp2p.exceptions.P2PTimeoutError` after that).
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Iterable, Optional

from gevent import socket as gsocket

from geventp2p.exceptions import P2PTimeoutError
from geventp2p.net._deadline import timeout_scope

__all__ = ["interface_addresses", "resolve_host", "DEFAULT_RESOLVE_TIMEOUT"]

#: Default bound on one name resolution (seconds).
DEFAULT_RESOLVE_TIMEOUT = 5.0

_IP = ipaddress.IPv4Address | ipaddress.IPv6Address


def _parse_ip(text: str) -> Optional[_IP]:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 "%scope" suffix
    except ValueError:
        return None


def _psutil_addresses() -> list[_IP]:
    """IP addresses of every interface, as psutil reports them (link-layer entries skipped)."""
    import psutil  # imported here: it costs ~1.7 MiB of RSS, and only wildcard listens need it

    out: list[_IP] = []
    for entries in psutil.net_if_addrs().values():
        for entry in entries:
            if entry.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            ip = _parse_ip(entry.address)
            if ip is not None:
                out.append(ip)
    return out


def resolve_host(
    name: str,
    family: int = socket.AF_UNSPEC,
    *,
    timeout: Optional[float] = DEFAULT_RESOLVE_TIMEOUT,
) -> tuple[str, ...]:
    """The IP addresses ``name`` resolves to (each once, in resolver order).

    Uses gevent's resolver, so it blocks only the calling greenlet.  Raises
    :class:`P2PTimeoutError` after ``timeout`` seconds (``None``: no bound) and
    ``OSError`` (``socket.gaierror``) when the name does not resolve.
    """
    with timeout_scope(timeout, f"resolving {name!r}"):
        infos = gsocket.getaddrinfo(name, None, family, socket.SOCK_STREAM)
    out: list[str] = []
    for info in infos:
        ip = _parse_ip(str(info[4][0]))
        if ip is not None and str(ip) not in out:
            out.append(str(ip))
    return tuple(out)


def _ordered(candidates: Iterable[_IP]) -> tuple[str, ...]:
    seen: list[_IP] = []
    for ip in candidates:
        if isinstance(ip, ipaddress.IPv6Address) and ip.is_link_local:
            continue  # needs a zone to be dialable; not worth announcing
        if ip not in seen:
            seen.append(ip)
    seen.sort(key=lambda ip: (not ip.is_loopback, ip.version))  # stable: interface order kept
    return tuple(str(ip) for ip in seen)


def interface_addresses(*, resolve_timeout: Optional[float] = DEFAULT_RESOLVE_TIMEOUT) -> tuple[str, ...]:
    """IP addresses of this host, loopback first, then IPv4 before IPv6 (IPv6 link-local left out).

    Always includes ``127.0.0.1`` and, when the host supports IPv6, ``::1``.  If psutil
    cannot list the interfaces (an unsupported platform), falls back to resolving the
    host name, bounded by ``resolve_timeout``; a failed or timed-out lookup leaves only
    the loopback addresses.
    """
    try:
        found = _psutil_addresses()
    except (OSError, RuntimeError, NotImplementedError):
        found = []
    if not found:
        try:
            found = [ip for a in resolve_host(socket.gethostname(), timeout=resolve_timeout)
                     if (ip := _parse_ip(a)) is not None]
        except (OSError, P2PTimeoutError):
            found = []
    loopback: list[_IP] = [ipaddress.IPv4Address("127.0.0.1")]
    if socket.has_ipv6:
        loopback.append(ipaddress.IPv6Address("::1"))
    return _ordered([*loopback, *found])
