"""Property tests of the sans-I/O yamux session: split invariance and window invariants."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from geventp2p.core.rcmgr import NullScope
from geventp2p.sansio import yamux as y
from geventp2p.sansio.yamux import DataReceived, Session, StreamHalfClosed, StreamOpened, StreamReset, YamuxConfig

U32_MAX = 0xFFFFFFFF


def _script_bytes(ops) -> bytes:
    """Run a list of client operations and return the bytes a client session emits."""
    c = Session(YamuxConfig(max_frame_body=100), is_initiator=True)
    open_ids = []
    out = []
    for op, arg in ops:
        if op == "open" or not open_ids:
            open_ids.append(c.open_stream())
        elif op == "data":
            try:
                c.send_data(open_ids[arg % len(open_ids)], bytes([arg % 256]) * (arg % 700))
            except y.StreamClosedError:
                pass
        elif op == "fin":
            c.close_write(open_ids[arg % len(open_ids)])
        elif op == "reset":
            sid = open_ids.pop(arg % len(open_ids))
            c.reset(sid, arg)
        elif op == "ping":
            out.append(bytes.fromhex("000200010000000000") + bytes([arg % 256, 0, arg % 7]))
        out.append(c.data_to_send())
    return b"".join(out)


ops_strategy = st.lists(
    st.tuples(st.sampled_from(["open", "data", "data", "fin", "reset", "ping"]), st.integers(0, 10_000)),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(ops=ops_strategy, cuts=st.lists(st.integers(0, 1 << 16), max_size=30), tail=st.binary(max_size=30))
def test_receive_data_split_invariance(ops, cuts, tail):
    data = _script_bytes(ops) + tail  # the tail may be garbage: errors must split-invariant too
    whole = Session(YamuxConfig(), is_initiator=False)
    ev_whole = whole.receive_data(data)
    out_whole = whole.data_to_send()

    split = Session(YamuxConfig(), is_initiator=False)
    points = sorted({c % (len(data) + 1) for c in cuts})
    ev_split = []
    prev = 0
    for p in points + [len(data)]:
        ev_split.extend(split.receive_data(data[prev:p]))
        prev = p
    out_split = split.data_to_send()
    # SessionError carries exception objects: compare by type and message
    norm = lambda evs: [(type(e).__name__, repr(getattr(e, "error", None)) if hasattr(e, "error") else e) for e in evs]
    assert norm(ev_whole) == norm(ev_split)
    assert out_whole == out_split
    assert whole.closed == split.closed


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=200))
def test_garbage_never_crashes(data):
    s = Session(YamuxConfig(), is_initiator=False)
    s.receive_data(data)
    s.data_to_send()
    assert s.num_streams >= 0


class WindowMachine(RuleBasedStateMachine):
    """Two honest sessions exchanging random traffic never violate the protocol, and
    every window stays within 0..max (and, once quiet, matches across the wire)."""

    def __init__(self):
        super().__init__()
        cfg = YamuxConfig(max_window_size=4 * y.INITIAL_WINDOW, max_frame_body=30000)
        self.sides = [
            Session(cfg, is_initiator=True, scope=NullScope()),
            Session(cfg, is_initiator=False, scope=NullScope()),
        ]
        self.unread = [{}, {}]  # side -> stream id -> bytes received but not read
        self.now = 0.0
        self.pending = [b"", b""]  # bytes from side i on their way to side 1-i

    def _deliver(self, i, n=None):
        self.pending[i] += self.sides[i].data_to_send()
        chunk = self.pending[i] if n is None else self.pending[i][:n]
        self.pending[i] = self.pending[i][len(chunk):]
        j = 1 - i
        for ev in self.sides[j].receive_data(chunk, self.now):
            if isinstance(ev, DataReceived):
                self.unread[j][ev.stream_id] = self.unread[j].get(ev.stream_id, 0) + len(ev.data)
            elif isinstance(ev, StreamOpened):
                self.unread[j].setdefault(ev.stream_id, 0)
                self.sides[j].mark_accepted(ev.stream_id)
            elif isinstance(ev, StreamReset):
                self.unread[j].pop(ev.stream_id, None)
            elif isinstance(ev, StreamHalfClosed):
                pass
            else:
                assert not isinstance(ev, y.SessionError), ev
        for sid in list(self.unread[j]):
            if not self.sides[j].has_stream(sid) and not self.unread[j][sid]:
                del self.unread[j][sid]

    @rule(i=st.integers(0, 1))
    def open(self, i):
        if self.sides[i].num_streams < 8:
            sid = self.sides[i].open_stream()
            self.unread[i][sid] = 0

    @rule(i=st.integers(0, 1), k=st.integers(0, 100), size=st.integers(1, 400_000))
    def send(self, i, k, size):
        ids = [s for s in self.sides[i].stream_ids()]
        if not ids:
            return
        sid = ids[k % len(ids)]
        try:
            n = self.sides[i].send_data(sid, b"d" * size)
        except y.StreamClosedError:
            return
        assert 0 <= n <= size

    @rule(i=st.integers(0, 1), n=st.none() | st.integers(1, 100_000))
    def deliver(self, i, n):
        self._deliver(i, n)

    @rule(i=st.integers(0, 1), k=st.integers(0, 100), frac=st.floats(0, 1))
    def read(self, i, k, frac):
        ids = list(self.unread[i])
        if not ids:
            return
        sid = ids[k % len(ids)]
        n = int(self.unread[i][sid] * frac)
        self.unread[i][sid] -= n
        self.sides[i].consumed(sid, n, self.now, rtt=0.05)

    @rule(i=st.integers(0, 1), k=st.integers(0, 100))
    def close_read(self, i, k):
        ids = list(self.unread[i])
        if not ids:
            return
        sid = ids[k % len(ids)]
        # like the shell: buffered bytes are dropped and reported as consumed first
        self.sides[i].consumed(sid, self.unread[i].pop(sid), self.now, rtt=0.05)
        self.sides[i].close_read(sid)

    @rule(i=st.integers(0, 1), k=st.integers(0, 100))
    def fin(self, i, k):
        ids = self.sides[i].stream_ids()
        if ids:
            self.sides[i].close_write(ids[k % len(ids)])

    @rule(i=st.integers(0, 1), k=st.integers(0, 100), code=st.integers(0, U32_MAX))
    def reset(self, i, k, code):
        ids = self.sides[i].stream_ids()
        if ids:
            sid = ids[k % len(ids)]
            self.sides[i].reset(sid, code)
            self.unread[i].pop(sid, None)

    @rule(dt=st.floats(0.001, 1.0))
    def tick(self, dt):
        self.now += dt

    @rule()
    def quiesce(self):
        for _ in range(3):
            self._deliver(0)
            self._deliver(1)
        for i in (0, 1):
            a, b = self.sides[i], self.sides[1 - i]
            for sid in a.stream_ids():
                if b.has_stream(sid):
                    st_b = b._streams[sid]
                    # nothing in flight: what a may send is exactly what b still grants
                    assert a.send_window(sid) == st_b.window.recv_window

    @invariant()
    def windows_in_range(self):
        for s in self.sides:
            assert not s.closed
            for sid in s.stream_ids():
                w = s._streams[sid].window
                assert 0 <= w.send_window <= U32_MAX
                assert 0 <= w.recv_window
                assert 0 <= w.recv_buffered
                assert w.recv_window + w.recv_buffered <= w.target <= w.max_window
            assert s.scope.memory == s.reserved_memory()


TestWindowMachine = WindowMachine.TestCase
TestWindowMachine.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
