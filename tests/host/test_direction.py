"""Streams and connections carry the one ``core.mux.Direction`` enum member, which
prints and compares as the old strings."""

from __future__ import annotations

import json

import gevent.event

import geventp2p
from geventp2p.core.mux import Direction


def test_stream_and_conn_directions_are_enum_members() -> None:
    a = geventp2p.new_host(services=[])
    b = geventp2p.new_host(services=[])
    got: gevent.event.AsyncResult = gevent.event.AsyncResult()

    def handler(s: geventp2p.Stream) -> None:
        got.set((s.direction, s.conn.direction))
        s.close()

    with a, b:
        a.set_stream_handler("/dir/1.0.0", handler)
        b.connect(a.p2p_addrs()[0], timeout=10)
        s = b.new_stream(a.id, "/dir/1.0.0", timeout=10)
        s.write(b"x")
        in_stream, in_conn = got.get(timeout=10)
        for d in (s.direction, s.conn.direction):
            assert d is Direction.OUTBOUND
        for d in (in_stream, in_conn):
            assert d is Direction.INBOUND
        # the text forms the CLI and logs print are unchanged
        assert f"{s.direction}" == str(s.direction) == "outbound"
        assert "%s" % in_stream == "{}".format(in_stream) == "inbound"
        assert json.dumps({"direction": in_conn}) == '{"direction": "inbound"}'
        assert s.direction == "outbound" and in_stream != "outbound"
        s.close()
