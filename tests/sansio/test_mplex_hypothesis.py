"""Property tests for the mplex session: split invariance, round trip, hostile bytes."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geventp2p.sansio.mplex import (
    DataReceived,
    MplexConfig,
    Session,
    SessionError,
    StreamHalfClosed,
    StreamOpened,
    StreamReset,
    is_outbound,
    stream_key as k,
    wire_id,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ops = st.lists(
    st.one_of(
        st.tuples(st.just("open")),
        st.tuples(st.just("send"), st.integers(0, 7), st.binary(max_size=300)),
        st.tuples(st.just("close"), st.integers(0, 7)),
        st.tuples(st.just("reset"), st.integers(0, 7)),
    ),
    max_size=40,
)


def run_script(script, cfg):
    """Apply ``script`` to a fresh session; return (wire bytes, {id: bytes sent}, ids closed, ids reset)."""
    a = Session(cfg, is_initiator=True)
    sent: dict[int, bytearray] = {}
    closed, reset = set(), set()
    for op in script:
        if op[0] == "open":
            sent[wire_id(a.open_stream())] = bytearray()
            continue
        live = [i for i in sent if i not in reset]
        if not live:
            continue
        sid = live[op[1] % len(live)]
        if op[0] == "send":
            if sid in closed:
                continue
            a.send_data(k(sid, True), op[2])
            sent[sid] += op[2]
        elif op[0] == "close":
            a.close_write(k(sid, True))
            closed.add(sid)
        else:
            a.reset(k(sid, True))
            reset.add(sid)
    return a.data_to_send(), sent, closed, reset


@SETTINGS
@given(script=ops, cuts=st.lists(st.integers(0, 10_000), max_size=20))
def test_split_invariance(script, cuts):
    cfg = MplexConfig(write_chunk_size=64, early_open_timeout=0)
    wire, _, _, _ = run_script(script, cfg)
    whole = Session(cfg, is_initiator=False)
    expected = whole.receive_data(wire)
    expected_out = whole.data_to_send()

    chunked = Session(cfg, is_initiator=False)
    got = []
    points = sorted({c % (len(wire) + 1) for c in cuts} | {0, len(wire)})
    for lo, hi in zip(points, points[1:]):
        got.extend(chunked.receive_data(wire[lo:hi]))
    assert got == expected
    assert chunked.data_to_send() == expected_out
    assert not any(isinstance(e, SessionError) for e in got)


@SETTINGS
@given(script=ops)
def test_round_trip_per_stream(script):
    cfg = MplexConfig(write_chunk_size=50, early_open_timeout=0)
    wire, sent, closed, reset = run_script(script, cfg)
    b = Session(cfg, is_initiator=False)
    got: dict[int, bytearray] = {}
    half, was_reset = set(), set()
    for ev in b.receive_data(wire):
        assert not is_outbound(ev.stream_id)
        wid = wire_id(ev.stream_id)
        if isinstance(ev, StreamOpened):
            got[wid] = bytearray()
        elif isinstance(ev, DataReceived):
            assert 0 < len(ev.data) <= 50
            got[wid] += ev.data
            b.consumed(ev.stream_id, len(ev.data))
        elif isinstance(ev, StreamHalfClosed):
            half.add(wid)
        elif isinstance(ev, StreamReset):
            assert ev.remote
            was_reset.add(wid)
        else:  # pragma: no cover - a failure
            raise AssertionError(ev)
    assert set(got) == set(sent)
    for sid, data in sent.items():
        assert got[sid] == data
    assert half == closed
    assert was_reset == reset
    assert b.num_streams == len(set(sent) - reset)


@SETTINGS
@given(data=st.binary(max_size=400), cuts=st.lists(st.integers(0, 400), max_size=8))
def test_hostile_bytes_never_raise(data, cuts):
    s = Session(
        MplexConfig(max_message_size=64, max_inbound_streams=4, max_stream_buffer_size=128, max_session_buffer_size=300)
    )
    events = []
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    for lo, hi in zip(points, points[1:]):
        events.extend(s.receive_data(data[lo:hi]))
        s.data_to_send()
    errors = [i for i, e in enumerate(events) if isinstance(e, SessionError)]
    assert errors in ([], [len(events) - 1])
    if errors:
        assert s.closed
    assert 0 <= s.num_inbound_streams <= 4
    assert s.total_buffered == sum(st.buffered for st in s._streams.values()) >= 0
