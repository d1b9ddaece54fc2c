"""Sans-I/O yamux session: byte vectors (the yamux spec's frames), state, violations, ping, limits."""

from __future__ import annotations

import struct

import pytest

from geventp2p.core.rcmgr import NullScope
from geventp2p.exceptions import (
    ConfigError,
    ConnectionClosedError,
    LocalProtocolError,
    P2PTimeoutError,
    RemoteProtocolError,
    ResourceLimitExceeded,
    StreamClosedError,
)
from geventp2p.sansio import yamux as y
from geventp2p.sansio.yamux import (
    DataReceived,
    GoAwayReceived,
    PingReceived,
    PongReceived,
    Session,
    SessionError,
    StreamAcked,
    StreamHalfClosed,
    StreamOpened,
    StreamRefused,
    StreamReset,
    WindowUpdated,
    YamuxConfig,
)


def h(s: str) -> bytes:
    return bytes.fromhex(s.replace(" ", ""))


# frame catalogue of the yamux spec (stream 1)
OPEN = h("00 01 0001 00000001 00000000")
ACCEPT = h("00 01 0002 00000001 00000000")
DATA5 = h("00 00 0000 00000001 00000005")
GRANT_128K = h("00 01 0000 00000001 00020000")
FIN = h("00 01 0004 00000001 00000000")
RST = h("00 01 0008 00000001 00000000")
RST_1001 = h("00 01 0008 00000001 00001001")
PING7 = h("00 02 0001 00000000 00000007")
PONG7 = h("00 02 0002 00000000 00000007")
GOAWAY = [h("00 03 0000 00000000 000000" + c) for c in ("00", "01", "02")]


class SessionPair:
    """Two sessions wired back to back, without sockets."""

    def __init__(self, client_cfg=None, server_cfg=None, client_scope=None, server_scope=None):
        self.client = Session(client_cfg, is_initiator=True, scope=client_scope or NullScope())
        self.server = Session(server_cfg, is_initiator=False, scope=server_scope or NullScope())

    def to_server(self, now=None):
        return self.server.receive_data(self.client.data_to_send(), now)

    def to_client(self, now=None):
        return self.client.receive_data(self.server.data_to_send(), now)


def server():
    return Session(YamuxConfig(), is_initiator=False, scope=NullScope())


def client():
    return Session(YamuxConfig(), is_initiator=True, scope=NullScope())


# --------------------------------------------------------------------------- vectors: sending


def test_vector_open_data_fin_reset():
    c = client()
    assert c.open_stream() == 1
    assert c.data_to_send() == OPEN
    assert c.send_data(1, b"hello") == 5
    assert c.data_to_send() == DATA5 + b"hello"
    c.close_write(1)
    assert c.data_to_send() == FIN
    c.reset(1)
    assert c.data_to_send() == RST
    assert not c.has_stream(1)


def test_vector_reset_with_code():
    c = client()
    c.open_stream()
    c.data_to_send()
    c.reset(1, 0x1001)
    assert c.data_to_send() == RST_1001


def test_vector_accept_and_ping_answer():
    s = server()
    ev = s.receive_data(OPEN)
    assert ev == [StreamOpened(stream_id=1)]
    assert s.data_to_send() == ACCEPT
    assert s.receive_data(PING7) == [PingReceived(opaque=7)]
    assert s.data_to_send() == PONG7


def test_vector_ping_request_and_pong():
    c = client()
    c._ping_seq = 6
    assert c.ping(now=10.0) == 7
    assert c.data_to_send() == PING7
    ev = c.receive_data(PONG7, now=10.25)
    assert ev == [PongReceived(opaque=7, sent_at=10.0, rtt=0.25)]
    assert c.rtt == 0.25
    assert c.ping_outstanding is None


def test_vector_goaway_codes():
    for code, vec in enumerate(GOAWAY):
        c = client()
        c.go_away(code)
        assert c.data_to_send() == vec
        c.go_away(code)  # once only
        assert c.data_to_send() == b""
        s = server()
        assert s.receive_data(vec) == [GoAwayReceived(error_code=code)]
        assert s.closed


def test_vector_window_grant_received():
    c = client()
    c.open_stream()
    assert c.send_window(1) == y.INITIAL_WINDOW
    assert c.receive_data(GRANT_128K) == [WindowUpdated(stream_id=1, delta=0x20000)]
    assert c.send_window(1) == y.INITIAL_WINDOW + 0x20000


def test_vector_data_with_syn_and_fin_one_shot():
    s = server()
    frame = h("00 00 0005 00000001 00000003") + b"abc"  # SYN|FIN on the first Data frame
    ev = s.receive_data(frame)
    assert ev == [StreamOpened(stream_id=1), DataReceived(stream_id=1, data=b"abc"), StreamHalfClosed(stream_id=1)]
    assert s.data_to_send() == ACCEPT


def test_received_reset_codes_not_credit():
    c = client()
    c.open_stream()
    c.data_to_send()
    ev = c.receive_data(RST_1001)
    assert ev == [StreamReset(stream_id=1, error_code=0x1001)]
    assert not c.has_stream(1)


def test_ack_on_first_data_frame():
    c = client()
    c.open_stream()
    ev = c.receive_data(h("00 00 0002 00000001 00000002") + b"hi")
    assert ev == [StreamAcked(stream_id=1), DataReceived(stream_id=1, data=b"hi")]
    assert c.unacked_outbound == 0


# --------------------------------------------------------------------------- pair


def test_pair_round_trip_and_half_close_both_ways():
    p = SessionPair()
    sid = p.client.open_stream()
    p.client.send_data(sid, b"ping")
    assert p.to_server() == [StreamOpened(stream_id=sid), DataReceived(stream_id=sid, data=b"ping")]
    assert p.to_client() == [StreamAcked(stream_id=sid)]
    p.client.close_write(sid)
    assert p.to_server() == [StreamHalfClosed(stream_id=sid)]
    p.server.send_data(sid, b"pong")
    p.server.close_write(sid)
    assert not p.server.has_stream(sid)  # both FINs: forgotten
    assert p.to_client() == [DataReceived(stream_id=sid, data=b"pong"), StreamHalfClosed(stream_id=sid)]
    assert not p.client.has_stream(sid)
    assert p.client.num_streams == p.server.num_streams == 0


def test_ids_parity_and_increment():
    p = SessionPair()
    assert [p.client.open_stream() for _ in range(3)] == [1, 3, 5]
    assert [p.server.open_stream() for _ in range(3)] == [2, 4, 6]
    p.to_server()
    p.to_client()
    assert p.client.num_streams == p.server.num_streams == 6


def test_send_data_respects_window_and_splits_frames():
    cfg = YamuxConfig(max_frame_body=1000)
    p = SessionPair(client_cfg=cfg)
    sid = p.client.open_stream()
    data = bytes(range(256)) * 1200  # 307200 > 256 KiB window
    n = p.client.send_data(sid, data)
    assert n == y.INITIAL_WINDOW
    assert p.client.send_data(sid, data[n:]) == 0
    out = p.client.data_to_send()
    # the SYN window update, then 263 data frames of <= 1000 bytes
    assert len(out) == 12 + y.INITIAL_WINDOW + 12 * 263
    ev = p.server.receive_data(out)
    got = b"".join(e.data for e in ev if isinstance(e, DataReceived))
    assert got == data[:n]
    assert max(len(e.data) for e in ev if isinstance(e, DataReceived)) == 1000
    # no credit until the application reads half the window
    assert p.server.consumed(sid, 1000, now=1.0) == 0
    delta = p.server.consumed(sid, n - 1000, now=1.0)
    assert delta == n
    ev = p.to_client()
    assert WindowUpdated(stream_id=sid, delta=n) in ev
    assert p.client.send_data(sid, data[n:]) == len(data) - n


def test_window_autotune_grows_with_memory_reserved_and_released():
    scope = NullScope()
    p = SessionPair(server_scope=scope)
    sid = p.client.open_stream()
    p.to_server()
    assert scope.memory == y.INITIAL_WINDOW  # the initial window, charged at the SYN
    half = y.INITIAL_WINDOW // 2
    now = 0.0
    rtt = 1.0
    # first update: never grows
    p.client.send_data(sid, b"x" * half)
    p.to_server()
    assert p.server.consumed(sid, half, now, rtt) == half
    assert p.server.window_target(sid) == y.INITIAL_WINDOW
    # second update within 4 rtt: doubles, memory reserved
    now += 0.5
    p.to_client()
    p.client.send_data(sid, b"x" * half)
    p.to_server()
    delta = p.server.consumed(sid, half, now, rtt)
    assert p.server.window_target(sid) == 2 * y.INITIAL_WINDOW
    assert delta == half + y.INITIAL_WINDOW
    assert scope.memory == 2 * y.INITIAL_WINDOW
    p.server.reset(sid)
    assert scope.memory == 0


def test_window_growth_refused_by_scope():
    class Tight(NullScope):  # grants the initial window (priority 255), nothing more
        def reserve_memory(self, size, priority=0):
            if priority < y.INITIAL_WINDOW_PRIORITY:
                raise ResourceLimitExceeded("test", "memory")
            super().reserve_memory(size, priority)

    scope = Tight()
    p = SessionPair(server_scope=scope)
    sid = p.client.open_stream()
    half = y.INITIAL_WINDOW // 2
    for i in range(3):
        p.to_client()
        p.client.send_data(sid, b"x" * half)
        p.to_server()
        assert p.server.consumed(sid, half, now=i * 0.1, rtt=1.0) == half
    assert p.server.window_target(sid) == y.INITIAL_WINDOW
    assert scope.memory == y.INITIAL_WINDOW
    p.server.reset(sid)
    assert scope.memory == 0


def test_initial_window_is_charged_and_a_stream_without_memory_is_refused():
    """Each stream's initial 256 KiB window is reserved in the session's scope when the
    stream opens (go-yamux does the same), so never-read streams are bounded by memory
    limits: an inbound SYN the scope can't cover gets RST 0x1002; an outbound open
    raises ResourceLimitExceeded and sends nothing."""

    class Capped(NullScope):
        def __init__(self, cap):
            super().__init__()
            self.cap = cap

        def reserve_memory(self, size, priority=0):
            if self.memory + size > self.cap:
                raise ResourceLimitExceeded("conn", "memory", used=self.memory, requested=size, limit=self.cap)
            super().reserve_memory(size, priority)

    server_scope, client_scope = Capped(2 * y.INITIAL_WINDOW), Capped(3 * y.INITIAL_WINDOW)
    p = SessionPair(server_scope=server_scope, client_scope=client_scope)
    sids = [p.client.open_stream() for _ in range(3)]
    ev = p.to_server()
    refused = [e for e in ev if isinstance(e, StreamRefused)]
    assert [e.stream_id for e in refused] == [sids[2]] and "memory" in refused[0].reason
    assert server_scope.memory == 2 * y.INITIAL_WINDOW
    with pytest.raises(ResourceLimitExceeded):
        p.client.open_stream()
    assert client_scope.memory == 3 * y.INITIAL_WINDOW
    ev = p.to_client()  # the RST for the third stream frees its window on our side
    assert client_scope.memory == 2 * y.INITIAL_WINDOW
    for sid in sids[:2]:
        p.server.reset(sid)
        p.client.reset(sid)
    assert server_scope.memory == 0 and client_scope.memory == 0


def test_window_grows_to_max_only():
    cfg = YamuxConfig(max_window_size=3 * y.INITIAL_WINDOW)
    p = SessionPair(server_cfg=cfg)
    sid = p.client.open_stream()
    for i in range(8):
        p.to_client()
        tgt = p.server.window_target(sid)
        sent = p.client.send_data(sid, b"z" * tgt)
        p.to_server()
        p.server.consumed(sid, sent, now=i * 0.01, rtt=1.0)
    assert p.server.window_target(sid) == 3 * y.INITIAL_WINDOW
    assert p.server.scope.memory == 3 * y.INITIAL_WINDOW  # initial window + growth
    p.server.close()
    assert p.server.scope.memory == 0


def test_close_read_style_discard_credits():
    p = SessionPair()
    sid = p.client.open_stream()
    p.client.send_data(sid, b"a" * y.INITIAL_WINDOW)
    p.to_server()
    assert p.client.send_window(sid) == 0
    p.server.consumed(sid, y.INITIAL_WINDOW, now=0.0)
    p.to_client()
    assert p.client.send_window(sid) == y.INITIAL_WINDOW


def test_send_after_fin_and_unknown_stream():
    c = client()
    sid = c.open_stream()
    c.close_write(sid)
    with pytest.raises(StreamClosedError):
        c.send_data(sid, b"x")
    with pytest.raises(StreamClosedError):
        c.send_data(99, b"x")
    c.reset(99)  # ignored
    c.close_write(99)  # ignored
    assert c.consumed(99, 5, now=0.0) == 0


def test_sender_matches_send_data_and_closes_with_the_stream():
    cfg = YamuxConfig(max_frame_body=1000)
    p = SessionPair(client_cfg=cfg)
    sid = p.client.open_stream()
    snd = p.client.sender(sid)
    assert p.client.sender(sid) is snd  # one per stream
    data = bytes(range(256)) * 1200
    n = snd.send(data, 1 << 30)
    assert n == y.INITIAL_WINDOW and p.client.send_window(sid) == 0
    assert snd.send(data[n:], 1 << 30) == 0 and not snd.blocked_on_buffer(1 << 30)
    ev = p.to_server()
    assert b"".join(e.data for e in ev if isinstance(e, DataReceived)) == data[:n]
    # a bound on queued bytes: at most (bound - queued) body bytes are taken
    p.server.consumed(sid, n, now=1.0)
    p.to_client()
    assert snd.send(data[n:], 100) == 100 and snd.blocked_on_buffer(100)
    assert snd.send(data[n:], 100) == 0
    p.client.close_write(sid)
    assert not snd.open
    with pytest.raises(StreamClosedError):
        snd.send(b"x", 1 << 30)
    with pytest.raises(StreamClosedError):
        p.client.sender(sid)
    # reset and session close end a sender too
    sid2 = p.client.open_stream()
    snd2 = p.client.sender(sid2)
    p.client.reset(sid2)
    assert not snd2.open
    sid3 = p.client.open_stream()
    snd3 = p.client.sender(sid3)
    p.client.close()
    assert not snd3.open
    with pytest.raises(ConnectionClosedError):
        p.client.sender(sid3)


def test_rst_on_data_frame_has_code_zero():
    c = client()
    sid = c.open_stream()
    ev = c.receive_data(h("00 00 0008 00000001 00000002") + b"zz")
    assert ev[-1] == StreamReset(stream_id=sid, error_code=0)


def test_data_after_fin_dropped():
    s = server()
    s.receive_data(OPEN + FIN)
    ev = s.receive_data(DATA5 + b"hello")
    assert ev == []


# --------------------------------------------------------------------------- unknown streams


@pytest.mark.parametrize(
    "frame",
    [
        DATA5 + b"hello",
        GRANT_128K,
        FIN,
        RST,
        ACCEPT,
        h("00 00 0000 00000063 00000002") + b"zz",
    ],
)
def test_frames_for_unknown_streams_ignored(frame):
    s = server()
    assert s.receive_data(frame) == []
    assert not s.closed
    assert s.data_to_send() == b""


def test_frames_for_forgotten_stream_ignored():
    p = SessionPair()
    sid = p.client.open_stream()
    p.to_server()
    p.server.reset(sid)
    p.to_client()
    assert not p.client.has_stream(sid)
    assert p.client.receive_data(DATA5 + b"hello" + GRANT_128K + FIN) == []
    assert not p.client.closed


# --------------------------------------------------------------------------- violations -> GoAway(1)


VIOLATIONS = {
    "bad version": h("01 00 0000 00000001 00000000"),
    "bad type": h("00 04 0000 00000001 00000000"),
    "data on stream 0": h("00 00 0000 00000000 00000001") + b"x",
    "window update on stream 0": h("00 01 0000 00000000 00000001"),
    "ping on stream 1": h("00 02 0001 00000001 00000007"),
    "goaway on stream 1": h("00 03 0000 00000001 00000000"),
    "syn with our parity": h("00 01 0001 00000002 00000000"),
    "syn for existing stream": OPEN + OPEN,
    "data beyond window": OPEN + h("00 00 0000 00000001 00040001") + b"\0" * 0x40001,
    "syn data beyond window": h("00 00 0001 00000001 00040001") + b"\0" * 0x40001,
    "window overflow": OPEN + h("00 01 0000 00000001 ffffffff"),
    "data frame over max": h("00 00 0001 00000001 7fffffff"),
    # the header alone is enough: the body is not waited for (nor buffered)
    "data header beyond window": OPEN + h("00 00 0000 00000001 00040001") + b"\0" * 100,
    "syn data header beyond window": h("00 00 0001 00000001 00040001"),
}


@pytest.mark.parametrize("name", sorted(VIOLATIONS))
def test_violation_sends_goaway_1(name):
    s = server()
    ev = s.receive_data(VIOLATIONS[name])
    assert isinstance(ev[-1], SessionError), ev
    assert isinstance(ev[-1].error, RemoteProtocolError)
    assert ev[-1].go_away_code == 1
    assert s.closed
    assert s.data_to_send().endswith(GOAWAY[1])
    assert s.receive_data(OPEN) == []  # ignored afterwards
    with pytest.raises(ConnectionClosedError):
        s.open_stream()
    assert s.num_streams == 0


def test_violation_after_good_frames_keeps_earlier_events():
    s = server()
    ev = s.receive_data(OPEN + DATA5 + b"hello" + h("07 00 0000 00000001 00000000"))
    assert ev[:2] == [StreamOpened(stream_id=1), DataReceived(stream_id=1, data=b"hello")]
    assert isinstance(ev[2], SessionError)
    assert s.data_to_send() == ACCEPT + GOAWAY[1]


def test_partial_data_frame_within_window_waits_for_its_body():
    s = server()
    body = bytes(range(256)) * 1024  # exactly the 256 KiB initial window
    wire = OPEN + h("00 00 0000 00000001 00040000") + body
    assert s.receive_data(wire[:5000]) == [StreamOpened(stream_id=1)]
    assert not s.closed
    ev = s.receive_data(wire[5000:])
    assert ev == [DataReceived(stream_id=1, data=body)]
    # one byte past the window, seen in the header of the next frame
    ev = s.receive_data(h("00 00 0000 00000001 00000001"))
    assert isinstance(ev[-1], SessionError) and "window 0" in str(ev[-1].error)


def test_partial_data_for_unknown_stream_is_not_a_violation():
    s = server()
    assert s.receive_data(h("00 00 0000 00000003 00100000") + b"\0" * 10) == []
    assert not s.closed


def test_client_rejects_odd_syn():
    c = client()
    ev = c.receive_data(OPEN)
    assert isinstance(ev[-1], SessionError)
    assert c.data_to_send() == GOAWAY[1]


def test_goaway_codes_over_2_are_not_violations():
    s = server()
    ev = s.receive_data(h("00 03 0000 00000000 00001005"))
    assert ev == [GoAwayReceived(error_code=0x1005)]
    assert s.data_to_send() == b""


def test_frames_after_goaway_ignored():
    s = server()
    ev = s.receive_data(GOAWAY[0] + OPEN)
    assert ev == [GoAwayReceived(error_code=0)]
    assert s.data_to_send() == b""


# --------------------------------------------------------------------------- ping


def test_every_syn_ping_answered_up_to_backlog():
    s = Session(YamuxConfig(max_ping_backlog=3), is_initiator=False)
    pings = b"".join(h("00 02 0001 00000000") + i.to_bytes(4, "big") for i in range(5))
    ev = s.receive_data(pings)
    assert len(ev) == 5 and all(isinstance(e, PingReceived) for e in ev)
    out = s.data_to_send()
    assert out == b"".join(h("00 02 0002 00000000") + i.to_bytes(4, "big") for i in range(3))
    s.receive_data(PING7)
    assert s.data_to_send() == PONG7  # backlog frees after draining


def test_unsolicited_or_mismatched_pong_ignored():
    c = client()
    assert c.receive_data(PONG7) == []
    assert c.data_to_send() == b""
    c.ping(now=0.0)
    assert c.receive_data(PONG7, now=1.0) == []  # opaque is 1, not 7
    assert c.ping_outstanding == 1


def test_one_outstanding_ping():
    c = client()
    a = c.ping(0.0)
    b = c.ping(1.0)
    assert a == b
    assert c.data_to_send() == h("00 02 0001 00000000") + a.to_bytes(4, "big")


# --------------------------------------------------------------------------- keepalive timers


def test_keepalive_ping_then_timeout_kills_session():
    cfg = YamuxConfig(keepalive_interval=30.0, ping_timeout=10.0, initial_ping=False, rtt_interval=0)
    c = Session(cfg, is_initiator=True)
    assert c.next_deadline() is None  # not started
    c.start(100.0)
    assert c.next_deadline() == 130.0
    assert c.handle_timer(120.0) == []
    assert c.data_to_send() == b""
    c.receive_data(PING7, now=125.0)  # any frame resets the idle timer
    c.data_to_send()
    assert c.next_deadline() == 155.0
    assert c.handle_timer(155.0) == []
    out = c.data_to_send()
    assert out[:4] == h("00 02 0001")
    assert c.next_deadline() == 165.0
    ev = c.handle_timer(165.0)
    assert len(ev) == 1 and isinstance(ev[0].error, P2PTimeoutError) and ev[0].go_away_code is None
    assert c.closed
    assert c.data_to_send() == b""  # no GoAway, like go


def test_keepalive_answered_keeps_session():
    cfg = YamuxConfig(initial_ping=False, rtt_interval=0)
    p = SessionPair(client_cfg=cfg)
    p.client.start(0.0)
    p.client.handle_timer(30.0)
    p.to_server(now=30.1)
    ev = p.to_client(now=30.2)
    assert isinstance(ev[0], PongReceived) and ev[0].rtt == pytest.approx(0.2)
    assert p.client.handle_timer(40.5) == []
    assert not p.client.closed
    assert p.client.next_deadline() == pytest.approx(60.2)


def test_initial_rtt_ping_unanswered_is_dropped():
    cfg = YamuxConfig(enable_keepalive=False, rtt_interval=30.0)
    c = Session(cfg, is_initiator=True)
    c.start(0.0)
    assert c.data_to_send()[:4] == h("00 02 0001")
    assert c.next_deadline() == 10.0
    assert c.handle_timer(10.0) == []
    assert not c.closed and c.ping_outstanding is None
    assert c.next_deadline() == 30.0
    c.handle_timer(30.0)
    assert c.ping_outstanding is not None


def test_keepalive_without_now_uses_timer_checks():
    cfg = YamuxConfig(initial_ping=False, rtt_interval=0)
    c = Session(cfg, is_initiator=True)
    c.start(0.0)
    c.receive_data(PING7)  # no now given: marks activity
    c.data_to_send()
    c.handle_timer(20.0)
    assert c.next_deadline() == 50.0


# --------------------------------------------------------------------------- limits


def test_accept_backlog_refusal_with_rst():
    s = Session(YamuxConfig(accept_backlog=2), is_initiator=False)
    syns = b"".join(h("00 01 0001") + i.to_bytes(4, "big") + h("00000000") for i in (1, 3, 5))
    ev = s.receive_data(syns)
    assert ev[:2] == [StreamOpened(stream_id=1), StreamOpened(stream_id=3)]
    assert isinstance(ev[2], StreamRefused) and ev[2].stream_id == 5
    out = s.data_to_send()
    assert out.endswith(h("00 01 0008 00000005 00001002"))
    s.mark_accepted(1)
    assert s.receive_data(h("00 01 0001 00000007 00000000")) == [StreamOpened(stream_id=7)]
    assert not s.closed


def test_max_inbound_streams_refusal():
    s = Session(YamuxConfig(max_inbound_streams=3), is_initiator=False)
    for i in range(3):
        sid = 2 * i + 1
        s.receive_data(h("00 01 0001") + sid.to_bytes(4, "big") + h("00000000"))
        s.mark_accepted(sid)
    ev = s.receive_data(h("00 01 0001 00000007 00000000"))
    assert isinstance(ev[0], StreamRefused)
    s.reset(1)
    assert s.receive_data(h("00 01 0001 00000009 00000000")) == [StreamOpened(stream_id=9)]


def test_syn_after_goaway_sent_refused():
    s = server()
    s.go_away(0)
    s.data_to_send()
    ev = s.receive_data(OPEN)
    assert isinstance(ev[0], StreamRefused)
    assert s.data_to_send() == h("00 01 0008 00000001 00001002")
    with pytest.raises(LocalProtocolError):
        s.open_stream()


def test_ack_backlog_counter():
    p = SessionPair()
    for _ in range(5):
        p.client.open_stream()
    assert p.client.unacked_outbound == 5
    p.to_server()
    p.to_client()
    assert p.client.unacked_outbound == 0


def test_reset_while_unacked_decrements_backlog():
    c = client()
    sid = c.open_stream()
    c.reset(sid)
    assert c.unacked_outbound == 0


def test_ack_backlog_policy_lives_in_the_session():
    """go's rule: at most max_ack_backlog opened streams wait for their ACK; a shell that
    waits claims slots with reserve_open() and opens with reserved=True."""
    p = SessionPair(y.YamuxConfig(max_ack_backlog=2, initial_ping=False))
    c = p.client
    assert c.reserve_open() and c.reserve_open()
    assert c.ack_backlog_full and not c.reserve_open()
    with pytest.raises(LocalProtocolError):
        c.open_stream()  # no slot of its own: the backlog is full
    first = c.open_stream(reserved=True)
    c.release_open()  # the second caller gave up
    assert not c.ack_backlog_full
    c.open_stream()
    assert c.unacked_outbound == 2 and not c.reserve_open()
    with pytest.raises(LocalProtocolError):
        c.open_stream(reserved=True)  # nothing reserved
    p.to_server()
    ev = p.to_client()
    assert [type(e) for e in ev].count(y.StreamAcked) == 2
    assert c.unacked_outbound == 0 and c.reserve_open()
    assert first == 1


def _ack_frame(sid: int) -> bytes:
    """WindowUpdate|ACK, delta 0, for stream ``sid`` (what a remote accepting it sends)."""
    return struct.pack(">BBHII", 0, 1, 0x2, sid, 0)


def test_early_ack_backlog_until_the_first_ack():
    """Until the remote ACKs one of our streams, only early_ack_backlog (8) may wait for
    an ACK: js-libp2p aborts a session on which more than 10 streams arrive before it
    has wired up the connection.  The first ACK lifts the limit to max_ack_backlog."""
    c = Session(YamuxConfig(initial_ping=False), is_initiator=True, scope=NullScope())
    c.start(100.0)
    assert c.ack_limit == 8 and c.early_ack_deadline == 101.0
    sids = [c.open_stream() for _ in range(8)]
    assert c.ack_backlog_full and not c.reserve_open()
    with pytest.raises(LocalProtocolError, match="8 opened streams"):
        c.open_stream()
    c.data_to_send()
    ev = c.receive_data(_ack_frame(sids[3]), 100.5)
    assert [type(e) for e in ev] == [y.StreamAcked]
    assert c.ack_limit == 256 and c.early_ack_deadline is None
    assert not c.expire_early_acks(200.0)  # already over
    more = [c.open_stream() for _ in range(249)]
    assert c.unacked_outbound == 256 and not c.reserve_open() and len(more) == 249


def test_early_ack_backlog_ends_at_its_deadline():
    c = Session(YamuxConfig(initial_ping=False, early_ack_timeout=0.5), is_initiator=True, scope=NullScope())
    assert c.early_ack_deadline is None  # not started: no deadline yet
    c.start(10.0)
    for _ in range(8):
        c.open_stream()
    assert not c.reserve_open()
    assert not c.expire_early_acks(10.49)
    assert c.ack_limit == 8 and c.early_ack_deadline == 10.5
    assert c.expire_early_acks(10.5)
    assert c.ack_limit == 256 and c.early_ack_deadline is None and c.reserve_open()


def test_early_ack_backlog_off_and_smaller_max():
    off = Session(YamuxConfig(initial_ping=False, early_ack_timeout=0), is_initiator=True, scope=NullScope())
    off.start(0.0)
    assert off.ack_limit == 256 and off.early_ack_deadline is None
    small = Session(YamuxConfig(initial_ping=False, max_ack_backlog=3), is_initiator=True, scope=NullScope())
    small.start(0.0)
    assert small.ack_limit == 3 and small.early_ack_deadline is None


def test_early_ack_backlog_an_inbound_ack_of_theirs_does_not_count():
    """Only an ACK of one of *our* streams ends the early limit (the remote's SYN does not,
    and neither does a ping: js pings before its connection is wired up)."""
    p = SessionPair(YamuxConfig(initial_ping=False), YamuxConfig(initial_ping=False))
    p.client.start(0.0)
    p.server.start(0.0)
    p.server.open_stream()  # stream 2, server -> client
    p.to_client()  # the client ACKs it
    p.to_server()
    p.client.ping(0.0)
    p.to_server()
    p.to_client()
    assert p.client.ack_limit == 8
    p.client.open_stream()
    p.to_server()
    p.to_client()
    assert p.client.ack_limit == 256


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_window_size": 1000},
        {"max_window_size": 1 << 32},
        {"max_frame_body": 0},
        {"accept_backlog": -1},
        {"max_inbound_streams": True},
        {"keepalive_interval": 0},
        {"ping_timeout": "10"},
        {"rtt_interval": -1},
        {"enable_keepalive": 1},
        {"early_ack_backlog": 0},
        {"early_ack_timeout": -1},
    ],
)
def test_config_validation(kwargs):
    with pytest.raises(ConfigError):
        YamuxConfig(**kwargs)


def test_config_frozen():
    cfg = YamuxConfig()
    with pytest.raises(Exception):
        cfg.max_window_size = 5  # type: ignore[misc]


def test_session_close_releases_and_rejects():
    c = client()
    c.open_stream()
    c.close()
    with pytest.raises(ConnectionClosedError):
        c.send_data(1, b"x")
    assert c.receive_data(ACCEPT) == []


def test_close_read_credits_automatically_then_forgets_after_fin():
    p = SessionPair()
    sid = p.client.open_stream()
    p.to_server()
    p.to_client()
    p.server.close_read(sid)
    total = 0
    for _ in range(6):  # the sender never stalls: discarded data is credited straight back
        n = p.client.send_data(sid, b"d" * y.INITIAL_WINDOW)
        assert n >= y.INITIAL_WINDOW // 2
        total += n
        assert p.to_server() == []  # discarded, not reported
        p.to_client()
    assert total > 4 * y.INITIAL_WINDOW
    assert p.server.num_inbound_streams == 1
    p.server.close_write(sid)
    assert not p.server.has_stream(sid)
    assert p.server.num_inbound_streams == 0
    assert p.to_client() == [StreamHalfClosed(stream_id=sid)]
    p.client.send_data(sid, b"late")
    assert p.to_server() == []  # forgotten: ignored
    assert not p.server.closed


def test_fin_then_close_read_forgets():
    s = server()
    s.receive_data(OPEN)
    s.close_write(1)
    assert s.has_stream(1)
    s.close_read(1)
    assert not s.has_stream(1)
    s.close_read(1)  # ignored


# --------------------------------------------------------------------------- control backlog


def _syn_rst(sid: int) -> bytes:
    """A peer (the client: odd ids) opening stream ``sid`` and resetting it at once."""
    syn = bytes([0, 1]) + (1).to_bytes(2, "big") + sid.to_bytes(4, "big") + bytes(4)
    rst = bytes([0, 1]) + (8).to_bytes(2, "big") + sid.to_bytes(4, "big") + bytes(4)
    return syn + rst


def test_control_backlog_full_after_the_bound_and_cleared_by_a_drain():
    server = Session(YamuxConfig(max_control_backlog=100, initial_ping=False), is_initiator=False)
    server.start(0.0)
    assert not server.control_backlog_full
    # SYN+RST churn: every SYN is ACKed, nothing is read by the peer
    server.receive_data(b"".join(_syn_rst(2 * i + 1) for i in range(99)), 0.0)
    assert not server.control_backlog_full
    assert server.bytes_to_send == 99 * 12
    server.receive_data(_syn_rst(199), 0.0)
    assert server.control_backlog_full
    server.buffers_to_send()
    assert not server.control_backlog_full
    server.receive_data(b"".join(_syn_rst(2 * i + 201) for i in range(100)), 0.0)
    assert server.control_backlog_full
    assert server.data_to_send()
    assert not server.control_backlog_full


def test_control_backlog_counts_pongs_and_window_updates_not_data():
    p = SessionPair(YamuxConfig(max_control_backlog=3, initial_ping=False))
    sid = p.client.open_stream()  # SYN: 1 control frame
    p.client.send_data(sid, b"x" * 1000)  # data: not counted
    assert not p.client.control_backlog_full
    p.client.receive_data(PING7 + PING7)  # two pongs
    assert p.client.control_backlog_full


def test_max_control_backlog_must_be_positive():
    with pytest.raises(ConfigError):
        YamuxConfig(max_control_backlog=0)


def test_compact_gives_back_an_emptied_stream_table():
    import sys

    p = SessionPair()
    sids = [p.client.open_stream() for _ in range(8)]
    p.to_server()
    grown = sys.getsizeof(p.client._streams)
    assert grown > sys.getsizeof({})
    p.client.compact()  # streams open: kept as they are
    assert sorted(p.client.stream_ids()) == sorted(sids)
    for sid in sids[1:]:
        p.client.reset(sid)
    p.client.compact()
    assert p.client.stream_ids() == [sids[0]]
    p.client.reset(sids[0])
    assert p.client.stream_ids() == [] and sys.getsizeof(p.client._streams) == grown
    p.client.compact()
    assert sys.getsizeof(p.client._streams) == sys.getsizeof({})
    again = p.client.open_stream()  # the table works as before
    assert p.client.stream_ids() == [again]
