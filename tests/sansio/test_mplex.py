"""The sans-I/O mplex session: byte vectors, a session pair, limits and errors."""

from __future__ import annotations

import pytest

from geventp2p.exceptions import (
    ConfigError,
    ConnectionClosedError,
    FrameError,
    LocalProtocolError,
    MessageTooLargeError,
    RemoteProtocolError,
    StreamClosedError,
)
from geventp2p.sansio.mplex import (
    PROTOCOL_ID,
    DataReceived,
    EarlyOpensEnded,
    Flag,
    MplexConfig,
    Session,
    SessionError,
    StreamHalfClosed,
    StreamOpened,
    StreamRefused,
    StreamReset,
    is_outbound,
    stream_key as k,
    wire_id,
)

MiB = 1024 * 1024


def h(s: str) -> bytes:
    return bytes.fromhex(s.replace(" ", ""))


class Pair:
    """Two sessions wired back to back, no sockets (h11's ConnectionPair idea)."""

    def __init__(self, config: MplexConfig | None = None, config_b: MplexConfig | None = None) -> None:
        self.a = Session(config, is_initiator=True)
        self.b = Session(config_b or config, is_initiator=False)

    def a_to_b(self):
        return self.b.receive_data(self.a.data_to_send())

    def b_to_a(self):
        return self.a.receive_data(self.b.data_to_send())


def test_protocol_id_and_flags():
    assert PROTOCOL_ID == "/mplex/6.7.0"
    assert [f.value for f in Flag] == list(range(7))
    assert Flag.MESSAGE_INITIATOR == 2 and Flag.RESET_RECEIVER == 5


# --------------------------------------------------------------------------- byte vectors


def test_outbound_vectors_for_a_stream_we_opened():
    s = Session()
    assert wire_id(s.open_stream()) == 0
    assert s.data_to_send() == h("00 01 30")  # NewStream id 0, name "0"
    assert wire_id(s.open_stream()) == 1
    assert s.data_to_send() == h("08 01 31")  # NewStream id 1: header (1<<3|0)=08, len 01, "1"
    s.send_data(k(1, True), b"hi")
    assert s.data_to_send() == h("0a 02 6869")  # MessageInitiator (1<<3|2)
    s.close_write(k(1, True))
    assert s.data_to_send() == h("0c 00")  # CloseInitiator (1<<3|4)
    s.reset(k(1, True))
    assert s.data_to_send() == h("0e 00")  # ResetInitiator (1<<3|6)
    assert s.data_to_send() == b""


def test_outbound_vectors_for_a_stream_the_peer_opened():
    s = Session()
    assert s.receive_data(h("08 01 31")) == [StreamOpened(stream_id=k(1, False))]
    s.send_data(k(1, False), b"hi")
    assert s.data_to_send() == h("09 02 6869")  # MessageReceiver (1<<3|1)
    s.close_write(k(1, False))
    assert s.data_to_send() == h("0b 00")  # CloseReceiver (1<<3|3)
    s.reset(k(1, False))
    assert s.data_to_send() == h("0d 00")  # ResetReceiver (1<<3|5)


def test_multi_byte_varints():
    s = Session()
    s._next_id = 17  # 17 << 3 = 136 -> varint 88 01
    assert wire_id(s.open_stream()) == 17
    assert s.data_to_send() == h("88 01 02 3137")
    s.send_data(k(17, True), b"x" * 300)  # length 300 -> ac 02
    assert s.data_to_send() == h("8a 01 ac 02") + b"x" * 300


def test_inbound_vectors():
    s = Session()
    ev = s.receive_data(h("08 01 31") + h("0a 02 6869") + h("0c 00"))
    assert ev == [
        StreamOpened(stream_id=k(1, False)),
        DataReceived(stream_id=k(1, False), data=b"hi"),
        StreamHalfClosed(stream_id=k(1, False)),
    ]
    assert s.receive_data(h("0e 00")) == [
        StreamReset(stream_id=k(1, False), remote=True, error_code=0, reason="reset by peer")
    ]
    assert s.num_streams == 0


def test_receiver_flags_name_streams_we_opened():
    s = Session()
    wire_id(s.open_stream())
    wire_id(s.open_stream())
    s.data_to_send()
    assert s.receive_data(h("09 02 6869") + h("0b 00")) == [
        DataReceived(stream_id=k(1, True), data=b"hi"),
        StreamHalfClosed(stream_id=k(1, True)),
    ]
    ev = s.receive_data(h("0d 00"))
    assert [(wire_id(e.stream_id), is_outbound(e.stream_id), e.remote) for e in ev] == [(1, True, True)]
    assert s.has_stream(k(0, True)) and not s.has_stream(k(1, True))


def test_initiator_flag_for_a_stream_only_we_opened_is_ignored():
    s = Session()
    wire_id(s.open_stream())  # our stream 0
    s.data_to_send()
    # MessageInitiator id 0 means "stream 0 that the *sender* opened": none exists.
    assert s.receive_data(h("02 01 78")) == []
    assert s.unknown_stream_frames == 1
    assert s.data_to_send() == b""


# --------------------------------------------------------------------------- session pair


def test_pair_open_write_close_both_ways():
    p = Pair()
    sid = wire_id(p.a.open_stream())
    p.a.send_data(k(sid, True), b"ping")
    assert p.a_to_b() == [
        StreamOpened(stream_id=k(sid, False)),
        DataReceived(stream_id=k(sid, False), data=b"ping"),
    ]
    p.b.send_data(k(sid, False), b"pong")
    p.b.close_write(k(sid, False))
    assert p.b.has_stream(k(sid, False))  # a has not closed yet
    assert p.b_to_a() == [
        DataReceived(stream_id=k(sid, True), data=b"pong"),
        StreamHalfClosed(stream_id=k(sid, True)),
    ]
    # a may still write after the remote half-closed
    p.a.send_data(k(sid, True), b"more")
    p.a.close_write(k(sid, True))
    assert not p.a.has_stream(k(sid, True))  # both directions done -> gone
    assert p.a.num_streams == 0
    assert p.a_to_b() == [
        DataReceived(stream_id=k(sid, False), data=b"more"),
        StreamHalfClosed(stream_id=k(sid, False)),
    ]
    assert p.b.num_streams == 0 and p.b.num_inbound_streams == 0


def test_write_after_close_write_raises():
    s = Session()
    sid = wire_id(s.open_stream())
    s.close_write(k(sid, True))
    with pytest.raises(StreamClosedError):
        s.send_data(k(sid, True), b"x")
    with pytest.raises(StreamClosedError):
        s.send_data(k(99, True), b"x")
    s.close_write(k(sid, True))  # idempotent
    assert s.data_to_send() == h("00 01 30 04 00")


def test_same_numeric_id_opened_concurrently_by_both_sides_is_two_streams():
    p = Pair()
    assert wire_id(p.a.open_stream()) == 0
    assert wire_id(p.b.open_stream()) == 0
    p.a.send_data(k(0, True), b"a-out")
    p.b.send_data(k(0, True), b"b-out")
    ev_b = p.a_to_b()
    ev_a = p.b_to_a()
    assert ev_b == [StreamOpened(stream_id=k(0, False)), DataReceived(stream_id=k(0, False), data=b"a-out")]
    assert ev_a == [StreamOpened(stream_id=k(0, False)), DataReceived(stream_id=k(0, False), data=b"b-out")]
    # each side now has two streams with id 0
    assert p.a.num_streams == 2 and p.b.num_streams == 2
    # replies on the inbound stream arrive on the opener's outbound stream
    p.a.send_data(k(0, False), b"a-reply")
    p.b.send_data(k(0, False), b"b-reply")
    assert p.a_to_b() == [DataReceived(stream_id=k(0, True), data=b"a-reply")]
    assert p.b_to_a() == [DataReceived(stream_id=k(0, True), data=b"b-reply")]
    # resetting one of them leaves the other alone
    p.a.reset(k(0, True))
    ev = p.a_to_b()
    assert [(wire_id(e.stream_id), is_outbound(e.stream_id), type(e)) for e in ev] == [(0, False, StreamReset)]
    assert p.b.has_stream(k(0, True)) and not p.b.has_stream(k(0, False))
    p.a.send_data(k(0, False), b"still")
    assert p.a_to_b() == [DataReceived(stream_id=k(0, True), data=b"still")]


def test_reset_both_ways_and_late_frames_ignored():
    p = Pair()
    sid = wire_id(p.a.open_stream())
    p.a_to_b()
    p.b.reset(k(sid, False))
    assert p.b.num_streams == 0
    ev = p.b_to_a()
    assert ev == [StreamReset(stream_id=k(sid, True), remote=True, error_code=0, reason="reset by peer")]
    with pytest.raises(StreamClosedError):
        p.a.send_data(k(sid, True), b"x")
    # b's late frames for the reset stream are ignored by a
    assert p.a.receive_data(h("01 01 78 03 00")) == []
    assert p.a.unknown_stream_frames == 2


def test_close_read_discards_data_and_finishes_with_write_close():
    p = Pair()
    sid = wire_id(p.a.open_stream())
    p.a_to_b()
    p.a.close_read(k(sid, True))
    assert p.a.has_stream(k(sid, True))
    p.b.send_data(k(sid, False), b"ignored")
    assert p.b_to_a() == []
    p.a.close_write(k(sid, True))
    assert not p.a.has_stream(k(sid, True))
    assert p.a.num_streams == 0


def test_large_writes_are_split_into_chunks():
    cfg = MplexConfig(write_chunk_size=64 * 1024)
    p = Pair(cfg)
    sid = wire_id(p.a.open_stream())
    payload = bytes(range(256)) * 800  # 204,800 bytes -> 4 messages
    p.a.send_data(k(sid, True), payload)
    ev = p.a_to_b()
    data = [e for e in ev if isinstance(e, DataReceived)]
    assert [len(e.data) for e in data] == [65536, 65536, 65536, 8192]
    assert b"".join(e.data for e in data) == payload


def test_empty_write_sends_nothing_and_empty_message_is_ignored():
    s = Session()
    sid = wire_id(s.open_stream())
    s.data_to_send()
    s.send_data(k(sid, True), b"")
    assert s.data_to_send() == b""
    t = Session()
    assert t.receive_data(h("00 01 30 02 00")) == [StreamOpened(stream_id=k(0, False))]


# --------------------------------------------------------------------------- limits


def test_slow_reader_stream_is_reset_alone():
    cfg = MplexConfig(max_stream_buffer_size=100)
    p = Pair(cfg)
    slow = wire_id(p.a.open_stream())
    fast = wire_id(p.a.open_stream())
    p.a_to_b()
    p.a.send_data(k(slow, True), b"s" * 60)
    p.a.send_data(k(fast, True), b"f" * 60)
    p.a_to_b()
    p.b.consumed(k(fast, False), 60)  # the fast reader keeps up
    assert p.b.buffered(k(slow, False)) == 60
    p.a.send_data(k(slow, True), b"s" * 41)
    p.a.send_data(k(fast, True), b"f" * 60)
    ev = p.a_to_b()
    assert ev[0] == StreamReset(
        stream_id=k(slow, False), remote=False, error_code=0x1002,
        reason="receive buffer over 100 bytes (reader too slow)",
    )
    assert ev[1] == DataReceived(stream_id=k(fast, False), data=b"f" * 60)
    assert not p.b.closed and p.b.has_stream(k(fast, False)) and not p.b.has_stream(k(slow, False))
    # b told a: ResetReceiver (flag 5) for the slow stream, id 0
    assert slow == 0
    out = p.b.data_to_send()
    assert out == h("05 00")
    ev = p.a.receive_data(out)
    assert ev == [StreamReset(stream_id=k(slow, True), remote=True, error_code=0, reason="reset by peer")]


def test_buffer_exactly_at_cap_is_fine_and_consumed_frees_room():
    cfg = MplexConfig(max_stream_buffer_size=100)
    p = Pair(cfg)
    sid = wire_id(p.a.open_stream())
    p.a.send_data(k(sid, True), b"x" * 100)
    p.a_to_b()
    assert p.b.buffered(k(sid, False)) == 100
    p.b.consumed(k(sid, False), 50)
    p.a.send_data(k(sid, True), b"y" * 50)
    assert p.a_to_b() == [DataReceived(stream_id=k(sid, False), data=b"y" * 50)]
    p.b.consumed(k(sid, False), 10**9)  # over-reporting clamps at zero
    assert p.b.buffered(k(sid, False)) == 0


def test_session_wide_buffer_cap_resets_the_receiving_stream():
    cfg = MplexConfig(max_stream_buffer_size=100, max_session_buffer_size=150)
    p = Pair(cfg)
    s1, s2, s3 = wire_id(p.a.open_stream()), wire_id(p.a.open_stream()), wire_id(p.a.open_stream())
    p.a.send_data(k(s1, True), b"1" * 80)
    p.a.send_data(k(s2, True), b"2" * 60)
    p.a.send_data(k(s3, True), b"3" * 20)  # 80 + 60 + 20 > 150
    ev = p.a_to_b()
    resets = [e for e in ev if isinstance(e, StreamReset)]
    assert [(e.stream_id, e.remote, e.error_code) for e in resets] == [(k(s3, False), False, 0x1002)]
    assert p.b.total_buffered == 140
    p.b.consumed(k(s1, False), 80)
    assert p.b.total_buffered == 60
    p.a.send_data(k(s2, True), b"2" * 40)
    assert p.a_to_b() == [DataReceived(stream_id=k(s2, False), data=b"2" * 40)]
    assert p.b.total_buffered == 100
    p.b.reset(k(s2, False))  # dropping a stream releases its bytes
    assert p.b.total_buffered == 0


def test_data_after_remote_close_resets_that_stream_only():
    p = Pair()
    bad = wire_id(p.a.open_stream())
    good = wire_id(p.a.open_stream())
    p.a.close_write(k(bad, True))
    p.a_to_b()
    # a misbehaving peer: MessageInitiator on a stream it already closed
    ev = p.b.receive_data(h("02 01 78"))
    assert ev == [
        StreamReset(stream_id=k(0, False), remote=False, error_code=0x1004,
                    reason="data after the remote closed the stream")
    ]
    assert p.b.data_to_send() == h("05 00")
    assert p.b.has_stream(k(good, False)) and not p.b.closed


def test_max_inbound_streams_refused_with_reset():
    cfg = MplexConfig(max_inbound_streams=2)
    p = Pair(cfg)
    for _ in range(3):
        wire_id(p.a.open_stream())
    ev = p.a_to_b()
    assert [type(e) for e in ev] == [StreamOpened, StreamOpened, StreamRefused]
    assert ev[2].stream_id == k(2, False)
    out = p.b.data_to_send()
    assert out == h("15 00")  # ResetReceiver id 2: (2<<3|5)=0x15
    assert p.b.num_inbound_streams == 2
    ev = p.a.receive_data(out)
    assert [(type(e), e.stream_id) for e in ev] == [(StreamReset, k(2, True))]
    # once one finishes, a new one is accepted
    p.b.reset(k(0, False))
    p.b_to_a()
    wire_id(p.a.open_stream())
    assert [type(e) for e in p.a_to_b()] == [StreamOpened]


def test_duplicate_new_stream_is_a_session_error():
    s = Session()
    ev = s.receive_data(h("00 01 30") + h("00 01 30"))
    assert ev[0] == StreamOpened(stream_id=k(0, False))
    assert isinstance(ev[1], SessionError) and isinstance(ev[1].error, FrameError)
    assert s.closed


def test_new_stream_may_reuse_a_finished_id():
    s = Session()
    s.receive_data(h("00 01 30 06 00"))  # open + remote reset
    assert s.receive_data(h("00 01 30")) == [StreamOpened(stream_id=k(0, False))]


# --------------------------------------------------------------------------- session errors


def test_oversized_message_is_a_session_error():
    s = Session()
    # MessageInitiator id 0 declaring 1 MiB + 1 bytes: fails at the header
    ev = s.receive_data(h("00 01 30") + h("02 81 80 40"))
    assert ev[0] == StreamOpened(stream_id=k(0, False))
    assert isinstance(ev[1], SessionError)
    assert isinstance(ev[1].error, MessageTooLargeError)
    assert s.closed and s.error is ev[1].error
    assert s.receive_data(b"\x00\x01\x30") == []
    with pytest.raises(ConnectionClosedError):
        wire_id(s.open_stream())


def test_message_of_exactly_one_mib_is_accepted():
    cfg = MplexConfig(max_stream_buffer_size=2 * MiB)
    s = Session(cfg)
    s.receive_data(h("00 01 30"))
    body = b"z" * MiB
    ev = s.receive_data(h("02 80 80 40") + body)
    assert ev == [DataReceived(stream_id=k(0, False), data=body)]


def test_smaller_configured_message_limit():
    s = Session(MplexConfig(max_message_size=10))
    ev = s.receive_data(h("00 01 30 02 0b") + b"x" * 11)
    assert isinstance(ev[-1], SessionError) and isinstance(ev[-1].error, MessageTooLargeError)


@pytest.mark.parametrize(
    "bad",
    [
        "ff ff ff ff ff ff ff ff ff ff",  # header varint longer than 9 bytes
        "80 00 00",  # non-minimal header varint
        "00 80 00",  # non-minimal length varint
        "07 00",  # flag 7 does not exist
    ],
)
def test_malformed_input_is_a_session_error(bad):
    s = Session()
    ev = s.receive_data(h(bad))
    assert len(ev) == 1 and isinstance(ev[0], SessionError)
    assert isinstance(ev[0].error, RemoteProtocolError)
    assert s.closed and s.data_to_send() == b""


def test_error_after_good_frames_surfaces_in_the_same_call():
    s = Session()
    ev = s.receive_data(h("00 01 30 02 01 61") + h("ff" * 10))
    assert ev[:2] == [
        StreamOpened(stream_id=k(0, False)),
        DataReceived(stream_id=k(0, False), data=b"a"),
    ]
    assert isinstance(ev[2], SessionError)


def test_partial_frame_is_not_an_error():
    s = Session()
    assert s.receive_data(h("00 01")) == []
    assert s.receive_data(h("30 02")) == [StreamOpened(stream_id=k(0, False))]
    assert s.receive_data(h("05 616263")) == []
    assert s.receive_data(h("6465")) == [DataReceived(stream_id=k(0, False), data=b"abcde")]


def test_local_close_ends_the_session():
    s = Session()
    wire_id(s.open_stream())
    s.close()
    assert s.closed and s.num_streams == 0
    with pytest.raises(ConnectionClosedError):
        wire_id(s.open_stream())
    assert s.receive_data(h("00 01 30")) == []


# --------------------------------------------------------------------------- early opens


def test_early_open_limit_until_the_peer_answers():
    """At most early_open_limit (8) streams before the peer answers on one of them: js
    aborts a connection when more than 10 arrive before it is ready.  A frame with a
    Receiver flag (the peer dispatched our stream) lifts the limit."""
    s = Session(MplexConfig())
    s.start(50.0)
    assert s.early_open_deadline == 51.0
    for _ in range(8):
        s.open_stream()
    assert s.open_blocked
    with pytest.raises(LocalProtocolError, match="8 streams"):
        s.open_stream()
    s.data_to_send()
    assert s.receive_data(h("08 00")) == [StreamOpened(stream_id=k(1, False))]  # their NewStream 1
    assert s.open_blocked  # an Initiator flag proves nothing about our streams
    # MessageReceiver on our 3: the limit ends, and the shell is told (openers wait)
    assert s.receive_data(h("19 01 61")) == [EarlyOpensEnded(), DataReceived(stream_id=k(3, True), data=b"a")]
    assert not s.open_blocked and s.early_open_deadline is None
    for _ in range(100):
        s.open_stream()
    assert s.receive_data(h("19 01 62")) == [DataReceived(stream_id=k(3, True), data=b"b")]  # once only


def test_early_open_limit_lifted_before_it_blocks_says_nothing():
    s = Session(MplexConfig())
    s.start(0.0)
    s.open_stream()
    s.data_to_send()
    assert s.early_open_deadline == 1.0
    # the peer answers on our stream 0 before the limit blocked anything: no event
    assert s.receive_data(h("01 01 61")) == [DataReceived(stream_id=k(0, True), data=b"a")]
    assert not s.open_blocked and s.early_open_deadline is None


def test_early_open_limit_ends_at_its_deadline_or_is_off():
    s = Session(MplexConfig(early_open_timeout=0.5))
    assert s.early_open_deadline is None  # not started
    s.start(10.0)
    for _ in range(8):
        s.open_stream()
    assert not s.expire_early_opens(10.4) and s.open_blocked
    assert s.expire_early_opens(10.5)
    assert not s.open_blocked and s.early_open_deadline is None
    s.open_stream()
    off = Session(MplexConfig(early_open_timeout=0))
    off.start(0.0)
    for _ in range(20):
        off.open_stream()
    assert not off.open_blocked and off.early_open_deadline is None


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_message_size": 0},
        {"write_chunk_size": 2 * MiB},
        {"max_stream_buffer_size": -1},
        {"max_session_buffer_size": 0},
        {"max_inbound_streams": True},
        {"accept_backlog": 1.5},
        {"early_open_limit": 0},
        {"early_open_timeout": -1},
    ],
)
def test_config_validation(kwargs):
    with pytest.raises(ConfigError):
        MplexConfig(**kwargs)


def test_buffers_to_send_drains_the_same_bytes_as_data_to_send():
    a, b = Session(), Session()
    for s in (a, b):
        sid = wire_id(s.open_stream())
        s.send_data(k(sid, True), b"hello")
        s.send_data(k(sid, True), b"world" * 1000)
    bufs = a.buffers_to_send()
    assert isinstance(bufs, list) and len(bufs) > 1
    assert b"".join(bytes(x) for x in bufs) == b.data_to_send()
    assert a.bytes_to_send == 0 and a.buffers_to_send() == [] and a.data_to_send() == b""


# --------------------------------------------------------------------------- shared verbs and limits


def test_stream_keys_name_the_opener():
    assert k(0, True) == 1 and k(0, False) == 0 and k(17, True) == 35
    assert wire_id(35) == 17 and is_outbound(35) and not is_outbound(34)


def test_accept_backlog_refuses_until_streams_are_accepted():
    cfg = MplexConfig(accept_backlog=2)
    p = Pair(cfg)
    for _ in range(3):
        p.a.open_stream()
    ev = p.a_to_b()
    assert [type(e) for e in ev] == [StreamOpened, StreamOpened, StreamRefused]
    assert "accept backlog" in ev[2].reason
    assert p.b.data_to_send() == h("15 00")  # ResetReceiver id 2
    p.b.mark_accepted(ev[0].stream_id)
    p.b.mark_accepted(ev[0].stream_id)  # counted once
    p.a.open_stream()
    assert [type(e) for e in p.a_to_b()] == [StreamOpened]
    p.a.open_stream()
    assert [type(e) for e in p.a_to_b()] == [StreamRefused]


def test_go_away_refuses_inbound_streams_and_sends_nothing():
    p = Pair()
    p.b.go_away(0)
    assert p.b.data_to_send() == b""
    p.a.open_stream()
    ev = p.a_to_b()
    assert [type(e) for e in ev] == [StreamRefused] and ev[0].reason == "session is going away"
    assert p.b.go_away_sent is None and p.b.go_away_received is None


def test_consumed_releases_the_scope_reservation():
    from geventp2p.core.rcmgr import NullScope

    scope = NullScope()
    a, b = Session(), Session(is_initiator=False, scope=scope)
    sid = a.open_stream()
    a.send_data(sid, b"x" * 100)
    ev = b.receive_data(a.data_to_send())
    key = ev[0].stream_id
    assert scope.memory == 100 and b.buffered(key) == 100
    assert b.consumed(key, 60) == 0  # no flow control: no credit
    assert scope.memory == 40
    b.reset(key)
    b.consumed(key, 40)  # the application drops what it still held
    assert scope.memory == 0


def test_scope_refusal_resets_only_that_stream():
    from geventp2p.exceptions import ResourceLimitExceeded

    class Tight:
        memory = 0

        def reserve_memory(self, size, priority=0):
            if self.memory + size > 50:
                raise ResourceLimitExceeded("test", "memory")
            self.memory += size

        def release_memory(self, size):
            self.memory -= size

    a, b = Session(), Session(is_initiator=False, scope=Tight())
    sid = a.open_stream()
    a.send_data(sid, b"x" * 40)
    a.send_data(sid, b"y" * 40)
    ev = b.receive_data(a.data_to_send())
    assert [type(e) for e in ev] == [StreamOpened, DataReceived, StreamReset]
    assert ev[2].remote is False and ev[2].error_code == 0x1002 and "memory limit" in ev[2].reason
    assert not b.closed and b.data_to_send() == h("05 00")


def test_no_timers():
    s = Session()
    assert s.next_deadline() is None and s.handle_timer(123.0) == []


# --------------------------------------------------------------------------- read timeout


def _timed(read_timeout: float = 10.0) -> Session:
    s = Session(MplexConfig(read_timeout=read_timeout), is_initiator=False)
    s.start(100.0)
    return s


def test_read_timeout_is_off_until_started_and_when_zero():
    assert Session(MplexConfig()).next_deadline() is None
    s = Session(MplexConfig(read_timeout=0))
    s.start(0.0)
    assert s.next_deadline() is None
    assert s.handle_timer(1e9) == []


def test_read_timeout_ends_an_idle_session_without_streams():
    s = _timed()
    assert s.next_deadline() == 110.0
    assert s.handle_timer(109.9) == []
    ev = s.handle_timer(110.0)
    assert len(ev) == 1 and isinstance(ev[0], SessionError)
    assert "no open stream" in str(ev[0].error)
    assert s.closed and s.next_deadline() is None


def test_a_frame_restarts_the_read_timeout():
    s = _timed()
    s.receive_data(h("08 00"), 105.0)  # NewStream 1 then...
    s.receive_data(h("0e 00"), 106.0)  # ...its Reset: no stream left
    assert s.handle_timer(110.0) == []  # first check: the last frame was at 106
    assert s.next_deadline() == 116.0
    assert isinstance(s.handle_timer(116.0)[0], SessionError)


def test_silent_peer_with_open_streams_is_kept_and_rechecked():
    s = _timed()
    s.receive_data(h("08 00"), 100.0)  # NewStream: one stream open
    assert s.handle_timer(110.0) == []
    assert s.next_deadline() == 112.5  # re-checked every quarter of the timeout
    assert not s.closed


def test_a_trickled_partial_frame_times_out_even_with_streams_open():
    s = _timed()
    s.receive_data(h("08 00"), 100.0)  # one stream open
    s.receive_data(h("0a 40"), 101.0)  # a 64-byte message on it, then its body at 1 B/s
    for t in range(102, 110):
        assert s.receive_data(b"x", float(t)) == []
    ev = s.handle_timer(110.0)
    assert len(ev) == 1 and isinstance(ev[0], SessionError)
    assert "partly received" in str(ev[0].error)


@pytest.mark.parametrize("field", ["read_timeout", "write_timeout"])
def test_timeouts_must_not_be_negative(field):
    with pytest.raises(ConfigError):
        MplexConfig(**{field: -1})


def test_compact_gives_back_an_emptied_stream_table():
    import sys

    p = Pair()
    sids = [p.a.open_stream() for _ in range(6)]
    p.a_to_b()
    grown = sys.getsizeof(p.a._streams)
    assert grown > sys.getsizeof({})
    p.a.compact()  # streams open: kept as they are
    assert p.a.num_streams == 6
    for sid in sids:
        p.a.reset(sid)
    assert p.a.num_streams == 0 and sys.getsizeof(p.a._streams) == grown
    p.a.compact()
    assert sys.getsizeof(p.a._streams) == sys.getsizeof({})
    again = p.a.open_stream()
    assert p.a.has_stream(again) and p.a.num_streams == 1
