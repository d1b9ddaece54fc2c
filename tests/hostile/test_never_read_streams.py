"""Hostile peers: many yamux streams filled to their window and never read.

Each yamux stream lets the peer send 256 KiB before any window update, so a handler
that never reads is memory the peer chooses.  The session charges every stream's
initial window to the connection's resource scope (go-yamux does the same), so the
connection's and the peer's memory limits bound what one peer can pin: beyond them
new streams are reset with 0x1002 at the SYN and the connection itself carries on.
"""

from __future__ import annotations

import time

import gevent
import gevent.event
import pytest

import geventp2p
from geventp2p.exceptions import P2PError, StreamResetError
from geventp2p.host.rcmgr import LimitConfig, new_resource_manager

MiB = 1 << 20
WINDOW = 256 * 1024
SINK = "/sink/1.0.0"
CONN_MEMORY = 4 * MiB  # room for 16 initial windows (identify and ping use some)
ATTEMPTS = 60


@pytest.fixture(autouse=True)
def _deadline():
    with gevent.Timeout(120):
        yield


def test_never_read_streams_are_bounded_by_the_connection_memory_limit():
    rm = new_resource_manager(LimitConfig.from_dict({
        "Conn": {"Memory": CONN_MEMORY},
        "ProtocolPeerDefault": {"StreamsInbound": 1000, "Streams": 1000},
        "ProtocolDefault": {"StreamsInbound": 1000, "Streams": 1000},
        "PeerDefault": {"StreamsInbound": 1000, "Streams": 1000},
    }))
    never = gevent.event.Event()
    server = geventp2p.new_host(resource_manager=rm, services=["identify"])
    client = geventp2p.new_host(limits=geventp2p.defaults.unlimited_limits(), services=["identify"])
    held = []

    def sink(stream):  # the victim's handler: takes the stream, never reads
        held.append(stream)
        never.wait()

    server.set_stream_handler(SINK, sink)
    try:
        client.connect(server.p2p_addrs()[0], timeout=10)
        filled, refused = [], []

        def attack(i: int) -> None:
            try:
                s = client.new_stream(server.id, [SINK], timeout=10)
                s.write(b"\0" * (WINDOW - 64), timeout=10)  # with the proposal, fits the initial window
                filled.append(s)
            except StreamResetError as exc:
                refused.append(exc.error_code)
            except P2PError as exc:  # e.g. a write that waits for credit the victim never gives
                refused.append(type(exc).__name__)

        t0 = time.monotonic()
        gevent.joinall([gevent.spawn(attack, i) for i in range(ATTEMPTS)], raise_error=True)
        took = time.monotonic() - t0

        # what the victim holds is bounded by the connection's limit, not by the attacker
        assert rm.view_system().stat().memory <= CONN_MEMORY
        assert rm.view_peer(client.id).stat().memory <= CONN_MEMORY
        assert len(held) <= CONN_MEMORY // WINDOW
        assert refused and all(code == 0x1002 for code in refused), sorted(set(map(str, refused)))
        assert len(filled) + len(refused) == ATTEMPTS
        assert took < 30
        # the connection itself carries on: a stream the victim reads still works
        server.set_stream_handler("/echo-once/1.0.0", lambda s: (s.write(s.read(100, timeout=10)), s.close()))
        for s in filled:
            s.reset()
        with gevent.Timeout(20):  # the resets give the windows back
            while rm.view_system().stat().memory > CONN_MEMORY // 2:
                gevent.sleep(0.05)
        s = client.new_stream(server.id, ["/echo-once/1.0.0"], timeout=10)
        s.write(b"still here", timeout=10)
        assert s.read(100, timeout=10) == b"still here"
        s.close()
    finally:
        never.set()
        client.close()
        server.close()
    # nothing left behind
    with gevent.Timeout(20):
        while rm.view_system().stat().memory or rm.view_system().stat().num_streams:
            gevent.sleep(0.05)

