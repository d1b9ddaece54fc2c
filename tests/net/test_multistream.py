"""Blocking multistream-select over socketpair-backed RawConns."""

from __future__ import annotations

import gevent
import gevent.socket as gsocket
import pytest

from geventp2p.exceptions import (
    MessageTooLargeError,
    NegotiationError,
    P2PTimeoutError,
    ProtocolError,
    RemoteProtocolError,
    TransportError,
)
from geventp2p.net import multistream
from geventp2p.net.rawconn import SocketConn
from geventp2p.sansio.multistream import encode_ls_response, encode_message
from _scripts_transport.leakcheck import no_leaks  # noqa: F401  (autouse fixture)

HEADER = encode_message("/multistream/1.0.0")
NA = encode_message("na")


class Recorder:
    """Wraps a RawConn and records each write call (to check pipelining)."""

    def __init__(self, conn):
        self.conn = conn
        self.writes = []

    def write(self, data):
        self.writes.append(bytes(data))
        self.conn.write(data)

    def read(self, n=65536, timeout=None):
        return self.conn.read(n, timeout=timeout)

    def unread(self, data):
        self.conn.unread(data)


class RecordingConn(SocketConn):
    """A SocketConn that records what each write hands to the socket (to check pipelining)."""

    def __init__(self, sock, **kw):
        super().__init__(sock, **kw)
        self.writes = []

    def _write_raw(self, data):
        self.writes.append(bytes(data))
        super()._write_raw(data)


@pytest.fixture
def pair():
    a, b = gsocket.socketpair()
    ca, cb = SocketConn(a, is_initiator=True), SocketConn(b)
    with gevent.Timeout(10):
        yield ca, cb
    ca.close()
    cb.close()


def read_exactly(conn, n, timeout=2):
    out = b""
    while len(out) < n:
        chunk = conn.read(n - len(out), timeout=timeout)
        assert chunk, "unexpected EOF"
        out += chunk
    return out


def test_round_trip_select_and_handle(pair):
    ca, cb = pair
    lst = gevent.spawn(multistream.handle, cb, ["/yamux/1.0.0", "/mplex/6.7.0"])
    proto = multistream.select_one_of(ca, ["/foo/1", "/mplex/6.7.0", "/yamux/1.0.0"])
    assert proto == "/mplex/6.7.0"
    assert lst.get(timeout=2) == "/mplex/6.7.0"
    ca.write(b"after")
    assert read_exactly(cb, 5) == b"after"
    cb.write(b"back")
    assert read_exactly(ca, 4) == b"back"


def test_select_writes_header_and_first_proposal_together(pair):
    ca, cb = pair
    rec = Recorder(ca)
    lst = gevent.spawn(multistream.handle, cb, ["/noise"])
    assert multistream.select_one_of(rec, ["/tls/1.0.0", "/noise"]) == "/noise"
    assert rec.writes[0] == HEADER + encode_message("/tls/1.0.0")
    assert rec.writes[1] == encode_message("/noise")  # alone after na
    assert len(rec.writes) == 2
    lst.get(timeout=2)


def test_handle_byte_exchange_from_reference(pair):
    """§3.1 go dialer -> Python listener, byte for byte."""
    ca, cb = pair
    lst = gevent.spawn(multistream.handle, cb, ["/noise"])
    ca.write(HEADER + encode_message("/tls/1.0.0"))
    assert read_exactly(ca, len(HEADER) + 4) == HEADER + NA
    ca.write(bytes.fromhex("072f6e6f6973650a"))
    assert read_exactly(ca, 8).hex() == "072f6e6f6973650a"
    assert lst.get(timeout=2) == "/noise"


def test_handle_sends_header_before_remote_header(pair):
    ca, cb = pair
    lst = gevent.spawn(multistream.handle, cb, ["/a"])
    assert read_exactly(ca, len(HEADER)) == HEADER  # nothing sent by us yet
    ca.write(HEADER + encode_message("/a"))
    assert lst.get(timeout=2) == "/a"


def test_select_all_refused_lists_proposals(pair):
    ca, cb = pair
    lst = gevent.spawn(multistream.handle, cb, ["/z"])
    with pytest.raises(NegotiationError) as info:
        multistream.select_one_of(ca, ["/a", "/b", "/c"])
    assert "/a, /b, /c" in str(info.value)
    assert info.value.error_code == 0x1001
    ca.close()
    with pytest.raises(NegotiationError):
        lst.get(timeout=2)


def test_handle_peer_pipelines_header_proposal_and_data(pair):
    """Header + proposal + application data in one segment: the data is not lost."""
    ca, cb = pair
    ca.write(HEADER + encode_message("/echo/1.0.0") + b"payload-bytes")
    assert multistream.handle(cb, ["/echo/1.0.0"], timeout=2) == "/echo/1.0.0"
    assert read_exactly(cb, 13) == b"payload-bytes"


def test_select_keeps_bytes_after_echo(pair):
    ca, cb = pair
    cb.write(HEADER + encode_message("/yamux/1.0.0") + b"\x00\x01\x00\x01yamux!")
    assert multistream.select_one_of(ca, ["/yamux/1.0.0"], timeout=2) == "/yamux/1.0.0"
    assert read_exactly(ca, 10) == b"\x00\x01\x00\x01yamux!"


def test_pipelined_byte_at_a_time(pair):
    """Peer dribbles its answer one byte per segment."""
    ca, cb = pair

    def dribble():
        data = HEADER + NA + encode_message("/b") + b"xyz"
        read_exactly(cb, len(HEADER) + 3)
        for i in range(len(HEADER) + 4):
            cb.write(data[i:i + 1])
            gevent.sleep(0)
        read_exactly(cb, 4)  # "/b" proposal
        for i in range(len(HEADER) + 4, len(data)):
            cb.write(data[i:i + 1])
            gevent.sleep(0)

    g = gevent.spawn(dribble)
    assert multistream.select_one_of(ca, ["/a", "/b"], timeout=2) == "/b"
    g.get(timeout=2)
    assert read_exactly(ca, 3) == b"xyz"


def test_handle_answers_na_and_keeps_going(pair):
    ca, cb = pair
    lst = gevent.spawn(multistream.handle, cb, lambda p: p.startswith("/ok/"))
    ca.write(HEADER + encode_message("/nope") + encode_message("/libp2p/simultaneous-connect"))
    assert read_exactly(ca, len(HEADER) + 8) == HEADER + NA + NA
    ca.write(encode_message("/ok/1"))
    assert read_exactly(ca, len(encode_message("/ok/1"))) == encode_message("/ok/1")
    assert lst.get(timeout=2) == "/ok/1"


def test_handle_ls(pair):
    ca, cb = pair
    lst = gevent.spawn(multistream.handle, cb, ["/a", "/b"])
    assert multistream.list_protocols(ca, timeout=2) == ["/a", "/b"]
    ca.write(encode_message("/b"))
    assert read_exactly(ca, 4) == encode_message("/b")
    assert lst.get(timeout=2) == "/b"


def test_list_protocols_against_na(pair):
    ca, cb = pair
    lst = gevent.spawn(multistream.handle, cb, lambda p: False)
    with pytest.raises(NegotiationError, match="ls"):
        multistream.list_protocols(ca, timeout=2)
    ca.close()
    with pytest.raises(NegotiationError):
        lst.get(timeout=2)


def test_ls_reply_raw_bytes(pair):
    ca, cb = pair
    lst = gevent.spawn(multistream.handle, cb, ["/noise"])
    ca.write(HEADER + encode_message("ls"))
    expected = HEADER + encode_ls_response(["/noise"])
    assert read_exactly(ca, len(expected)) == expected
    ca.close()
    with pytest.raises(NegotiationError):
        lst.get(timeout=2)


# ---------------------------------------------------------------- malformed input


def test_line_without_newline(pair):
    ca, cb = pair
    ca.write(HEADER + b"\x06/noise")
    with pytest.raises(RemoteProtocolError, match="newline"):
        multistream.handle(cb, ["/noise"], timeout=2)


def test_1025_byte_line(pair):
    ca, cb = pair
    ca.write(HEADER + bytes([0x81, 0x08]) + b"/" + b"x" * 1023 + b"\n")
    with pytest.raises(MessageTooLargeError):
        multistream.handle(cb, ["/noise"], timeout=2)


def test_1025_byte_reply_to_dialer(pair):
    ca, cb = pair
    cb.write(HEADER + bytes([0x81, 0x08]) + b"/" + b"x" * 1023 + b"\n")
    with pytest.raises(ProtocolError):
        multistream.select_one_of(ca, ["/a"], timeout=2)


def test_wrong_header(pair):
    ca, cb = pair
    ca.write(encode_message("/multistream/2.0.0"))
    with pytest.raises(NegotiationError, match="mismatch"):
        multistream.handle(cb, ["/a"], timeout=2)


def test_unrecognized_reply(pair):
    ca, cb = pair
    cb.write(HEADER + encode_message("/other"))
    with pytest.raises(NegotiationError, match="unrecognized"):
        multistream.select_one_of(ca, ["/a"], timeout=2)


# ---------------------------------------------------------------- EOF and timeouts

EOF_POINTS_DIALER = [
    b"",
    HEADER[:3],
    HEADER,
    HEADER + NA,
    HEADER + NA + encode_message("/b")[:2],
]


@pytest.mark.parametrize("sent", EOF_POINTS_DIALER)
def test_select_eof_at_each_step(pair, sent):
    ca, cb = pair
    cb.write(sent)
    cb.close_write()  # EOF for ca, our writes still succeed
    with pytest.raises(NegotiationError, match="EOF"):
        multistream.select_one_of(ca, ["/a", "/b"], timeout=2)


def test_select_peer_gone_is_transport_or_negotiation_error(pair):
    ca, cb = pair
    cb.close()
    with pytest.raises((NegotiationError, TransportError)):
        multistream.select_one_of(ca, ["/a", "/b"], timeout=2)


EOF_POINTS_LISTENER = [
    b"",
    HEADER[:5],
    HEADER,
    HEADER + encode_message("/x"),
    HEADER + encode_message("/x")[:2],
]


@pytest.mark.parametrize("sent", EOF_POINTS_LISTENER)
def test_handle_eof_at_each_step(pair, sent):
    ca, cb = pair
    ca.write(sent)
    ca.close_write()
    with pytest.raises(NegotiationError, match="EOF"):
        multistream.handle(cb, ["/a"], timeout=2)


def test_select_timeout(pair):
    ca, _ = pair
    with pytest.raises(P2PTimeoutError):
        multistream.select_one_of(ca, ["/a"], timeout=0.05)


def test_handle_timeout(pair):
    ca, cb = pair
    ca.write(HEADER)
    with pytest.raises(P2PTimeoutError):
        multistream.handle(cb, ["/a"], timeout=0.05)


def test_outer_timeout_passes_through(pair):
    ca, _ = pair
    outer = gevent.Timeout(0.05)
    outer.start()
    try:
        with pytest.raises(gevent.Timeout):
            multistream.select_one_of(ca, ["/a"], timeout=5)
    finally:
        outer.close()


# ---------------------------------------------------------------- lazy


def test_lazy_coalesces_proposal_with_first_write():
    a, b = gsocket.socketpair()
    ca, cb = RecordingConn(a, is_initiator=True), SocketConn(b)
    try:
        with gevent.Timeout(10):
            conn = multistream.select_lazy(ca, "/echo/1.0.0")
            assert conn is ca  # no wrapper: the state lives in the connection's slow path
            assert ca.writes == []
            conn.write(b"hello")
            assert ca.writes == [HEADER + encode_message("/echo/1.0.0") + b"hello"]
            # listener side sees the proposal and the data right after it
            assert multistream.handle(cb, ["/echo/1.0.0"], timeout=2) == "/echo/1.0.0"
            assert read_exactly(cb, 5) == b"hello"
            cb.write(b"HELLO")
            assert not conn.negotiated
            assert read_exactly(conn, 5) == b"HELLO"
            assert conn.negotiated
            conn.write(b"x")  # the fast path again: nothing in front
            assert ca.writes[-1] == b"x"
            assert not ca._pending
    finally:
        ca.close()
        cb.close()


def test_lazy_readinto_checks_echo_first(pair):
    ca, cb = pair
    conn = multistream.select_lazy(ca, "/p")
    cb.write(HEADER + encode_message("/p") + b"data")
    buf = bytearray(16)
    k = conn.readinto(memoryview(buf), timeout=2)
    assert bytes(buf[:k]) == b"data"
    assert conn.negotiated
    assert read_exactly(cb, len(HEADER) + len(encode_message("/p"))) == HEADER + encode_message("/p")


def test_lazy_readinto_na_raises(pair):
    ca, cb = pair
    conn = multistream.select_lazy(ca, "/p")
    cb.write(HEADER + NA)
    with pytest.raises(NegotiationError):
        conn.readinto(bytearray(16), timeout=2)
    with pytest.raises(NegotiationError):  # sticky
        conn.read(16, timeout=2)


def test_select_lazy_rejects_other_channels(pair):
    with pytest.raises(TypeError):
        multistream.select_lazy(Recorder(pair[0]), "/p")
    with pytest.raises(ValueError):
        multistream.select_lazy(pair[0], "/p", confirm_before_fin=True)


def test_lazy_echo_and_data_in_one_segment(pair):
    ca, cb = pair
    conn = multistream.select_lazy(ca, "/p")
    cb.write(HEADER + encode_message("/p") + b"appdata")
    assert conn.read(100, timeout=2) == b"appdata"


def test_lazy_read_before_write_flushes_proposal(pair):
    ca, cb = pair
    conn = multistream.select_lazy(ca, "/p")
    lst = gevent.spawn(multistream.handle, cb, ["/p"])
    reader = gevent.spawn(conn.read, 100)
    assert lst.get(timeout=2) == "/p"
    cb.write(b"server-first")
    assert reader.get(timeout=2) == b"server-first"


def test_lazy_na_raises_on_read(pair):
    ca, cb = pair
    conn = multistream.select_lazy(ca, "/p")
    conn.write(b"data")
    cb.write(HEADER + NA)
    with pytest.raises(NegotiationError):
        conn.read(100, timeout=2)
    with pytest.raises(NegotiationError):  # sticky
        conn.read(100, timeout=2)


def test_lazy_eof_before_echo(pair):
    ca, cb = pair
    conn = multistream.select_lazy(ca, "/p")
    cb.write(HEADER)
    cb.close_write()
    with pytest.raises(NegotiationError, match="EOF"):
        conn.read(100, timeout=2)


def test_lazy_timeout_waiting_for_echo(pair):
    ca, _ = pair
    conn = multistream.select_lazy(ca, "/p", timeout=0.05)
    with pytest.raises(P2PTimeoutError):
        conn.read(100)


def test_lazy_close_flushes_proposal(pair):
    ca, cb = pair
    conn = multistream.select_lazy(ca, "/p")
    conn.close()
    assert conn.closed  # delegated attribute
    got = b""
    while True:
        chunk = cb.read(100, timeout=2)
        if not chunk:
            break
        got += chunk
    assert got == HEADER + encode_message("/p")


def test_lazy_writev(pair):
    ca, cb = pair
    conn = multistream.select_lazy(ca, "/p")
    conn.writev([b"a", b"b"])
    assert conn is ca and conn.is_initiator is True
    expected = HEADER + encode_message("/p") + b"ab"
    assert read_exactly(cb, len(expected)) == expected


def test_lazy_close_write_sends_proposal_then_fin(pair):
    ca, cb = pair
    conn = multistream.select_lazy(ca, "/p")
    conn.close_write()
    expected = HEADER + encode_message("/p")
    assert read_exactly(cb, len(expected)) == expected
    assert cb.read(10, timeout=2) == b""


def test_lazy_over_memory_pipe():
    from geventp2p.net.memory import memory_pipe

    ca, cb = memory_pipe(chunk_size=1)  # byte-at-a-time delivery
    try:
        with gevent.Timeout(10):
            conn = multistream.select_lazy(ca, "/p")
            conn.writev([b"x", b"y"])
            assert multistream.handle(cb, ["/p"], timeout=5) == "/p"
            assert read_exactly(cb, 2) == b"xy"
            cb.write(b"reply")
            assert read_exactly(conn, 5) == b"reply"
            assert conn.negotiated and not conn._pending
    finally:
        ca.close()
        cb.close()
