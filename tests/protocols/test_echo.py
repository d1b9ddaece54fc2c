"""Echo /echo/1.0.0."""

from __future__ import annotations

import os

import gevent

import pytest

from geventp2p.exceptions import P2PTimeoutError, StreamError
from geventp2p.protocols.echo import PROTOCOL_ID, EchoService, echo


@pytest.mark.parametrize("size", [0, 1, 1000, 1 << 20])
def test_echo_sizes(pair, size):
    a, b = pair
    data = os.urandom(size)
    assert echo(b, a.id, data, timeout=10) == data


def test_echo_interactive(pair):
    a, b = pair
    s = b.new_stream(a.id, PROTOCOL_ID, timeout=5)
    for i in range(5):
        s.write(b"msg%d" % i)
        assert s.read_exactly(4, timeout=5) == b"msg%d" % i
    s.close_write()
    assert s.read(timeout=5) == b""
    s.close()


def test_idle_stream_is_reset(make_host):
    a = make_host(services=["identify", "ping"])
    a.add_service(EchoService(idle_timeout=0.2))
    b = make_host()
    b.connect(a.p2p_addrs()[0], timeout=10)
    s = b.new_stream(a.id, PROTOCOL_ID, timeout=5)
    s.write(b"x")
    assert s.read(timeout=5) == b"x"
    with pytest.raises(StreamError):
        s.read(timeout=5)
    s.close()


def test_echo_timeout(make_host):
    a = make_host()
    b = make_host()
    a.set_stream_handler(PROTOCOL_ID, lambda s: gevent.sleep(5))  # never answers
    b.connect(a.p2p_addrs()[0], timeout=10)
    with pytest.raises(P2PTimeoutError):
        echo(b, a.id, b"hello", timeout=0.3)


def test_config_error():
    with pytest.raises(ValueError):
        EchoService(idle_timeout=0)
