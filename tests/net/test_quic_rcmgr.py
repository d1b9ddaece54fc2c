"""QUIC and the resource manager: inbound connections are charged before their handshake.

A refused connection costs the listener no state and the dialer gets a typed error at
once; other connections carry on; every scope is released once (closed connections,
failed and timed out handshakes); the per-IP rules apply to QUIC endpoints.
"""

from __future__ import annotations

import errno
import socket
import time
from typing import Any

import gevent
import pytest
from gevent.event import AsyncResult

import geventp2p
from geventp2p.crypto.keys import generate_key
from geventp2p.exceptions import (
    DialError,
    PeerIdMismatchError,
    ResourceLimitExceeded,
    StreamResetError,
    TransportError,
)
from geventp2p.host.rcmgr import LimitConfig, new_resource_manager
from geventp2p.net.quic import QuicConfig, QuicTransport
from _scripts_transport.counted import Counted as _Counted

pytest.importorskip("aioquic")

QUIC = "/ip4/127.0.0.1/udp/0/quic-v1"
GiB = 1 << 30


def rcm(limits: dict[str, Any] | None = None, **kw: Any) -> Any:
    return new_resource_manager(LimitConfig.from_dict(limits or {}), total_memory=8 * GiB, fd_limit=4096, **kw)


def all_zero(m: Any) -> bool:
    st = m.stat()
    return all(
        st[k].is_zero() for k in ("system", "transient", "allowlisted_system", "allowlisted_transient")
    ) and not (st["services"] or st["protocols"] or st["peers"])


def wait_for(pred: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        gevent.sleep(0.01)


class Counting:
    """Wraps a manager; records each connection scope and how often it was released."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.scopes: list[Any] = []
        self.opened: list[tuple[Any, bool, str]] = []
        self.on_open: Any = None

    def open_connection(self, direction: Any, use_fd: bool, endpoint: Any) -> Any:
        if self.on_open is not None:
            self.on_open()
        scope = self.inner.open_connection(direction, use_fd, endpoint)
        self.opened.append((direction, use_fd, str(endpoint)))
        counted = _Counted(scope)
        self.scopes.append(counted)
        return counted

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _half_open(addr: tuple[Any, ...]) -> socket.socket:
    """Send a client's first flight (a padded Initial) to ``addr`` and never answer."""
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.connection import QuicConnection

    client = QuicConnection(configuration=QuicConfiguration(is_client=True, alpn_protocols=["libp2p"]))
    client.connect(addr, now=time.monotonic())
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for data, _ in client.datagrams_to_send(now=time.monotonic()):
        sock.sendto(data, addr)
    return sock


def _addr(lst: Any) -> tuple[str, int]:
    return lst._endpoint.sock.getsockname()


def _inbound(m: Any) -> int:
    return m.transient.stat().num_conns_inbound


@pytest.mark.parametrize("scope", ["System", "Transient"])
def test_refused_inbound_connection_fails_the_dial_at_once(scope):
    rm = rcm({scope: {"ConnsInbound": 0}})
    got: AsyncResult = AsyncResult()
    lst = QuicTransport(generate_key()).listen(QUIC, got.set, resource_manager=rm)
    try:
        start = time.monotonic()
        with pytest.raises(TransportError) as info:
            QuicTransport(generate_key()).dial(lst.multiaddr, timeout=30)
        assert info.value.errno == errno.ECONNREFUSED
        assert time.monotonic() - start < 5  # refused, not timed out
        assert lst.refused >= 1 and rm.blocked[(scope.lower(), "conns (inbound)")] >= 1
        assert not got.ready() and not lst._endpoint.conns  # no state kept
        assert all_zero(rm)
    finally:
        lst.close(stop_handlers=True)


def test_listener_keeps_serving_while_full_and_releases_every_scope():
    rm = Counting(rcm({"Transient": {"ConnsInbound": 1}}))
    accepted: list[Any] = []
    lst = QuicTransport(generate_key()).listen(QUIC, accepted.append, resource_manager=rm)
    try:
        first = QuicTransport(generate_key()).dial(lst.multiaddr, timeout=30)
        wait_for(lambda: len(accepted) == 1)
        assert rm.opened == [("inbound", False, str(accepted[0].remote_addr))]  # no fd: the socket is shared
        assert _inbound(rm.inner) == 1
        with pytest.raises(TransportError):
            QuicTransport(generate_key()).dial(lst.multiaddr, timeout=30)
        # the first connection still works
        s = first.muxed.open_stream(timeout=10)
        s.write(b"ping")
        peer_side = accepted[0].muxed.accept_stream(timeout=10)
        assert peer_side.read(4, timeout=10) == b"ping"
        first.close()
        accepted[0].close()
        wait_for(lambda: all_zero(rm.inner))
        again = QuicTransport(generate_key()).dial(lst.multiaddr, timeout=30)
        wait_for(lambda: len(accepted) == 2)
        again.close()
        accepted[1].close()
        wait_for(lambda: all_zero(rm.inner))
        assert [s.dones for s in rm.scopes] == [1, 1]
    finally:
        lst.close(stop_handlers=True)


def test_failed_handshake_releases_its_scope():
    rm = Counting(rcm())
    got: AsyncResult = AsyncResult()
    server = QuicTransport(generate_key())
    lst = server.listen(QUIC, got.set, resource_manager=rm)
    try:
        with pytest.raises(PeerIdMismatchError):
            QuicTransport(generate_key()).dial(lst.multiaddr, timeout=30,
                                               remote_peer=QuicTransport(generate_key()).local_peer)
        assert len(rm.scopes) == 1  # charged although the handshake never finished
        wait_for(lambda: all_zero(rm.inner))
        assert [s.dones for s in rm.scopes] == [1] and not got.ready()
    finally:
        lst.close(stop_handlers=True)


def test_handshakes_in_flight_are_charged_and_released_on_timeout():
    rm = Counting(rcm())
    lst = QuicTransport(generate_key(), QuicConfig(handshake_timeout=1.0)).listen(
        QUIC, lambda raw: raw.close(), resource_manager=rm)
    socks = []
    try:
        socks = [_half_open(_addr(lst)) for _ in range(5)]
        wait_for(lambda: _inbound(rm.inner) == 5)  # charged while the handshakes run
        wait_for(lambda: all_zero(rm.inner))  # the handshake timeout released them
        assert [s.dones for s in rm.scopes] == [1] * 5
        assert not lst._endpoint.conns
    finally:
        for sock in socks:
            sock.close()
        lst.close(stop_handlers=True)


def test_per_ip_limit_applies_to_quic():
    rm = rcm(limit_loopback=True, ip_rates=None)  # 8 connections per IPv4 address
    lst = QuicTransport(generate_key()).listen(QUIC, lambda raw: raw.close(), resource_manager=rm)
    socks = []
    try:
        socks = [_half_open(_addr(lst)) for _ in range(8)]
        wait_for(lambda: _inbound(rm) == 8)
        with pytest.raises(TransportError) as info:
            QuicTransport(generate_key()).dial(lst.multiaddr, timeout=30)
        assert info.value.errno == errno.ECONNREFUSED
        assert rm.blocked[("conn-limiter", "connections per ip")] >= 1
    finally:
        for sock in socks:
            sock.close()
        lst.close(stop_handlers=True)
    wait_for(lambda: all_zero(rm) and len(rm.conn_limiter) == 0)


def test_swarm_takes_the_listeners_scope():
    """A host over QUIC: one scope per connection (the listener's, taken by the swarm), a
    refusal happens before the handshake (the swarm never sees the connection)."""
    rm = Counting(rcm())
    server = geventp2p.new_host(listen=[QUIC], transports=["quic"], resource_manager=rm)
    client = geventp2p.new_host(listen=[], transports=["quic"])
    (lst,) = server.network._listeners
    seen: list[Any] = []
    rm.on_open = lambda: seen.append([p.remote_peer for p in lst._endpoint.conns.values()])
    try:
        conn = client.connect(server.p2p_addrs()[0], timeout=30)
        wait_for(lambda: len(server.network.conns()) == 1)
        assert len(rm.scopes) == 1 and rm.opened[0][:2] == ("inbound", False)
        assert seen == [[]]  # charged before the connection (and its handshake) existed
        assert rm.inner.view_peer(client.id).stat().num_conns_inbound == 1
        conn.close()
        wait_for(lambda: not server.network.conns())
        wait_for(lambda: all_zero(rm.inner))
        assert [s.dones for s in rm.scopes] == [1]
    finally:
        client.close()
        server.close()


def test_swarm_refusal_happens_before_the_handshake():
    rm = rcm({"Transient": {"ConnsInbound": 0}})
    server = geventp2p.new_host(listen=[QUIC], transports=["quic"], resource_manager=rm)
    client = geventp2p.new_host(listen=[], transports=["quic"])
    try:
        with pytest.raises(DialError):
            client.connect(server.p2p_addrs()[0], timeout=30)
        assert server.network.inbound_counts["refused"] == 0  # the swarm never saw it
        assert sum(lst.refused for lst in server.network._listeners) >= 1
        assert all_zero(rm)
    finally:
        client.close()
        server.close()


# --------------------------------------------------------------------------- stream windows

WINDOW = 64 * 1024


def _windowed_pair(limits: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
    """A dialled connection and the accepted one, whose listener reserves stream windows."""
    cfg = QuicConfig(stream_receive_window=WINDOW, reserve_stream_windows=True)
    rm = rcm(limits)
    accepted: AsyncResult = AsyncResult()
    lst = QuicTransport(generate_key(), cfg).listen(QUIC, accepted.set, resource_manager=rm)
    client = QuicTransport(generate_key(), cfg).dial(lst.multiaddr, timeout=30)
    return rm, lst, client, accepted.get(timeout=30)


def _conn_memory(raw: Any) -> int:
    return raw.muxed.scope.stat().memory


def test_stream_windows_are_reserved_and_released():
    rm, lst, client, server = _windowed_pair({})
    try:
        assert _conn_memory(server) == 0
        s = client.muxed.open_stream(timeout=10)
        s.write(b"hello")
        peer = server.muxed.accept_stream(timeout=10)
        assert peer.read(5, timeout=10) == b"hello"
        assert _conn_memory(server) == WINDOW  # the peer's stream
        mine = server.muxed.open_stream(timeout=10)
        assert _conn_memory(server) == 2 * WINDOW  # and ours
        for st in (s, peer):
            st.close()
        wait_for(lambda: _conn_memory(server) == WINDOW)  # both halves ended: released
        mine.reset()
        wait_for(lambda: _conn_memory(server) == 0)
        client.close()
        server.close()
        wait_for(lambda: all_zero(rm))
    finally:
        lst.close(stop_handlers=True)


def test_stream_over_the_connection_memory_limit_is_refused():
    rm, lst, client, server = _windowed_pair({"Conn": {"Memory": 2 * WINDOW}})
    try:
        streams = []
        for i in range(2):
            s = client.muxed.open_stream(timeout=10)
            s.write(b"%d" % i)
            streams.append(s)
        peers = [server.muxed.accept_stream(timeout=10) for _ in range(2)]
        third = client.muxed.open_stream(timeout=10)
        third.write(b"3")
        with pytest.raises(StreamResetError) as info:
            third.read(1, timeout=10)
        assert info.value.error_code == 0x1002
        with pytest.raises(ResourceLimitExceeded):  # our own streams are refused too
            server.muxed.open_stream(timeout=10)
        # the streams that fit carry on
        assert [p.read(1, timeout=10) for p in peers] == [b"0", b"1"]
        peers[0].write(b"ok")
        assert streams[0].read(2, timeout=10) == b"ok"
        streams[0].reset()
        wait_for(lambda: _conn_memory(server) == WINDOW)
        again = client.muxed.open_stream(timeout=10)
        again.write(b"4")
        assert server.muxed.accept_stream(timeout=10).read(1, timeout=10) == b"4"
        client.close()
        server.close()
        wait_for(lambda: all_zero(rm))
    finally:
        lst.close(stop_handlers=True)
