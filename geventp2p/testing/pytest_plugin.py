"""pytest fixtures for testing libp2p protocols built on geventp2p.

The plugin is opt-in: name it in your top-level ``conftest.py``::

    pytest_plugins = ["geventp2p.testing.pytest_plugin"]

or pass ``-p geventp2p.testing.pytest_plugin`` on the command line.  (No ``pytest11``
entry point on purpose: it would import gevent into every pytest run of every project
that merely has geventp2p installed, and pytest would rewrite the asserts of the whole
installed package, hot-path modules included.)  Only this module of geventp2p imports
pytest.

Fixtures:

``host_pair``
    Two started hosts ``(a, b)`` over the in-process memory transport; ``b`` has
    dialed ``a``.  Both run the echo service.  They are closed after the test,
    then the leak check runs.
``tcp_host_pair``
    The same over TCP on 127.0.0.1 (port 0).
``host_pair_options``
    Extra :func:`geventp2p.new_host` keywords for both hosts of a pair (default
    ``{}``); ``services`` there lists service *classes* (or factories), made
    once per host.  Parametrize it to run a test over several stacks::

        @pytest.mark.parametrize("host_pair_options", [
            {"security": "noise", "muxers": "yamux"},
            {"security": "plaintext", "muxers": "mplex"},
        ])
        def test_my_protocol(host_pair):
            a, b = host_pair
            a.set_stream_handler("/my/1.0.0", my_handler)
            with b.new_stream(a.id, ["/my/1.0.0"], timeout=10) as s:
                s.write(b"hello")
                ...

``make_host``
    A factory: ``make_host(**new_host_kwargs)`` builds a host (TCP on
    127.0.0.1 unless told otherwise) that is closed after the test.
``socketpair``
    Two connected raw conns ``(initiator, responder)``
    (:class:`~geventp2p.net.rawconn.SocketConn` over ``gevent.socket.socketpair``;
    ``conn.socket`` is the gevent socket), closed after the test.
``virtual_clock``
    A fresh :class:`~geventp2p.testing.clock.VirtualClock` to inject where a
    component takes ``clock=``.
``leakcheck``
    Bounds the test with a gevent timeout (ini option ``geventp2p_timeout``,
    default 60 s) and fails it if greenlets or sockets it started outlive it
    (:func:`geventp2p.testing.leakcheck.no_leaks`).  The pair and host
    fixtures use it.

The leak check tracks only greenlets that ran during the test, and sockets
opened during it; close what you open (``with`` on streams) and let handlers
return.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, NamedTuple

import gevent.socket
import pytest

from geventp2p.net.rawconn import SocketConn
from geventp2p.testing.clock import VirtualClock
from geventp2p.testing.leakcheck import no_leaks

__all__ = ["HostPair", "DEFAULT_TIMEOUT", "connect_pair"]

#: Per-test gevent timeout of the leak-checked fixtures (seconds), unless the
#: ini option ``geventp2p_timeout`` says otherwise.
DEFAULT_TIMEOUT = 60.0

#: How long a pair's dial may take (seconds); the machine may be busy.
CONNECT_TIMEOUT = 10.0


class HostPair(NamedTuple):
    """Two hosts; ``b`` dialed ``a``.  Unpacks as ``a, b = host_pair``."""

    a: Any
    b: Any


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("geventp2p_timeout", f"gevent timeout (s) of geventp2p's leak-checked fixtures "
                  f"(default {DEFAULT_TIMEOUT:g}; 0 for none)", default=str(DEFAULT_TIMEOUT))


def _timeout(config: pytest.Config) -> float | None:
    value = float(config.getini("geventp2p_timeout") or 0)
    return value if value > 0 else None


@pytest.fixture
def leakcheck(request: pytest.FixtureRequest) -> Iterator[None]:
    """Bound the test with a gevent timeout; fail it on leaked greenlets or sockets."""
    with no_leaks(timeout=_timeout(request.config)):
        yield


@pytest.fixture
def virtual_clock() -> VirtualClock:
    """A new :class:`~geventp2p.testing.clock.VirtualClock` at time 0."""
    return VirtualClock()


@pytest.fixture
def socketpair(leakcheck: None) -> Iterator[tuple[SocketConn, SocketConn]]:
    """Two connected raw conns ``(initiator, responder)`` over a gevent socketpair."""
    a, b = gevent.socket.socketpair()
    ca, cb = SocketConn(a, is_initiator=True), SocketConn(b)
    try:
        yield ca, cb
    finally:
        ca.close()
        cb.close()


@pytest.fixture
def make_host(leakcheck: None) -> Iterator[Callable[..., Any]]:
    """Factory: ``make_host(**kwargs)`` is :func:`geventp2p.new_host`; all are closed after the test."""
    from geventp2p.defaults import new_host

    hosts: list[Any] = []

    def make(**kwargs: Any) -> Any:
        host = new_host(**kwargs)
        hosts.append(host)
        return host

    try:
        yield make
    finally:
        for host in reversed(hosts):
            host.close()


@pytest.fixture
def host_pair_options() -> dict[str, Any]:
    """Extra ``new_host`` keywords for both hosts of ``host_pair``/``tcp_host_pair``; parametrize it."""
    return {}


def _services(factories: Any) -> list[Any]:
    """One fresh service per factory: a service instance can serve only one host."""
    out = []
    for factory in factories:
        if hasattr(factory, "start") and not isinstance(factory, type):
            raise ValueError(f"host pair services must be classes or factories, not the instance {factory!r} "
                             "(one instance cannot serve two hosts)")
        out.append(factory())
    return out


def connect_pair(make: Callable[..., Any], transport: str, **kwargs: Any) -> HostPair:
    """Blocks the calling greenlet: two hosts from ``make`` over ``transport``; ``b`` dials ``a``.

    ``transport`` is ``"memory"`` or ``"tcp"`` (127.0.0.1, port 0); ``kwargs``
    go to both ``make`` calls and may replace the transport and listen
    addresses.  ``services`` lists service classes (or factories), each called
    once per host; without it both hosts run the echo service.
    """
    if transport == "memory":
        kwargs.setdefault("transports", ["memory"])
        kwargs.setdefault("listen", ["/memory/0"])
    elif transport == "tcp":
        kwargs.setdefault("transports", ["tcp"])
        kwargs.setdefault("listen", ["/ip4/127.0.0.1/tcp/0"])
    else:
        raise ValueError(f"transport must be 'memory' or 'tcp', not {transport!r}")
    if "services" in kwargs:
        factories = list(kwargs.pop("services"))
    else:
        from geventp2p.protocols.echo import EchoService

        factories = [EchoService]
    a = make(services=_services(factories), **kwargs)
    b = make(services=_services(factories), **kwargs)
    from geventp2p.core.event import Connectedness, EvtPeerConnectednessChanged

    # ``connect`` returns once the dialer's side is up; the listener may still be
    # adding the connection to its table.  Wait for it, so either side can open streams.
    with a.event_bus.subscribe(EvtPeerConnectednessChanged) as seen:
        b.connect(a.p2p_addrs()[0], timeout=CONNECT_TIMEOUT)
        while not a.network.conns_to_peer(b.id):
            evt = seen.get(timeout=CONNECT_TIMEOUT)
            if evt.peer == b.id and evt.connectedness == Connectedness.Connected:
                break
    return HostPair(a, b)


@pytest.fixture
def host_pair(make_host: Callable[..., Any], host_pair_options: dict[str, Any]) -> HostPair:
    """Two hosts over the memory transport, ``b`` connected to ``a``; closed and leak-checked after."""
    return connect_pair(make_host, "memory", **host_pair_options)


@pytest.fixture
def tcp_host_pair(make_host: Callable[..., Any], host_pair_options: dict[str, Any]) -> HostPair:
    """Two hosts over TCP on 127.0.0.1, ``b`` connected to ``a``; closed and leak-checked after."""
    return connect_pair(make_host, "tcp", **host_pair_options)
