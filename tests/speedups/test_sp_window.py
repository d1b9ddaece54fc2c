"""window: StreamWindow accounting (yamux flow control) in both builds, parity, and a state machine
that keeps every value inside its u32 bounds."""

import importlib
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from geventp2p.exceptions import ConfigError, LocalProtocolError, P2PError, WindowError

U32 = 0xFFFFFFFF
KIB = 1024
HYP = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def state(w):
    return (w.send_window, w.recv_window, w.recv_buffered, w.target, w.max_window)


def test_defaults(impl):
    w = impl.window.StreamWindow()
    assert state(w) == (256 * KIB, 256 * KIB, 0, 256 * KIB, 16 * KIB * KIB)
    assert all(type(v) is int for v in state(w))


@pytest.mark.parametrize(
    "initial,max_window", [(0, 100), (-1, 100), (100, 99), (100, U32 + 1), (U32 + 1, U32 + 1), (1 << 80, 1 << 80)]
)
def test_config_errors(impl, initial, max_window):
    with pytest.raises(ConfigError):
        impl.window.StreamWindow(initial, max_window)


def test_u32_extremes_accepted(impl):
    w = impl.window.StreamWindow(U32, U32)
    assert state(w) == (U32, U32, 0, U32, U32)
    w = impl.window.StreamWindow(1, 1)
    assert w.consume_send(5) == 1


def test_consume_send(impl):
    w = impl.window.StreamWindow(100, 1000)
    assert w.consume_send(30) == 30
    assert w.send_window == 70
    assert w.consume_send(1 << 70) == 70  # huge requests are clamped, never overflow
    assert w.send_window == 0
    assert w.consume_send(5) == 0
    assert w.consume_send(0) == 0
    with pytest.raises(LocalProtocolError):
        w.consume_send(-1)


def test_add_send_credit(impl):
    w = impl.window.StreamWindow(100, 1000)
    w.add_send_credit(0)
    w.add_send_credit(50)
    assert w.send_window == 150
    w.add_send_credit(U32 - 150)
    assert w.send_window == U32
    for bad in (1, 1 << 64):
        with pytest.raises(WindowError):
            w.add_send_credit(bad)
    with pytest.raises(WindowError):
        w.add_send_credit(-1)
    assert w.send_window == U32


def test_on_data_and_on_read(impl):
    w = impl.window.StreamWindow(100, 1000)
    w.on_data(60)
    assert (w.recv_window, w.recv_buffered) == (40, 60)
    with pytest.raises(WindowError, match="received 41 bytes, window 40"):
        w.on_data(41)
    with pytest.raises(WindowError):
        w.on_data(1 << 70)
    assert (w.recv_window, w.recv_buffered) == (40, 60)  # failed calls change nothing
    w.on_data(40)
    assert w.recv_window == 0
    w.on_read(100)
    assert w.recv_buffered == 0
    with pytest.raises(LocalProtocolError):
        w.on_read(1)
    with pytest.raises(LocalProtocolError):
        w.on_read(-1)


def test_update_below_half_sends_nothing(impl):
    w = impl.window.StreamWindow(100, 1000)
    w.on_data(49)
    w.on_read(49)
    before = state(w)
    assert w.take_update(1.0, 0.1) == 0
    assert state(w) == before
    w.on_data(1)
    w.on_read(1)
    assert w.take_update(1.0, 0.1) == 50
    assert w.recv_window == 100


def test_update_counts_unread_data_as_not_freed(impl):
    w = impl.window.StreamWindow(100, 1000)
    w.on_data(100)
    assert w.take_update(0.0, 0.0) == 0  # received but unread: nothing freed
    w.on_read(60)
    assert w.take_update(0.0, 0.0) == 60
    assert (w.recv_window, w.recv_buffered) == (60, 40)


def test_force_update(impl):
    w = impl.window.StreamWindow(100, 1000)
    assert w.take_update(5.0, 0.1, force=True) == 0
    w.on_data(10)
    w.on_read(10)
    # a forced update right after the previous one (< 4 RTT) also auto-tunes
    assert w.take_update(5.1, 0.1, force=True) == 10 + 100
    assert (w.target, w.recv_window) == (200, 200)


def test_autotune_doubles_up_to_max(impl):
    w = impl.window.StreamWindow(256 * KIB, 16 * KIB * KIB)
    now, rtt = 0.0, 0.01
    targets = []
    for _ in range(10):
        n = w.recv_window
        w.on_data(n)
        w.on_read(n)
        delta = w.take_update(now, rtt)
        assert delta > 0
        targets.append(w.target)
        assert w.recv_window == w.target
        now += rtt  # well within 4 RTT of the previous update
    # the first update has no predecessor, so it does not grow
    assert targets[:7] == [256 * KIB * 2**i for i in range(7)]
    assert targets[6:] == [16 * KIB * KIB] * 4


def test_no_growth_when_slow_or_disabled(impl):
    for kwargs, gap, rtt in [({}, 1.0, 0.1), ({}, 0.01, 0.0), ({"can_grow": False}, 0.01, 0.1)]:
        w = impl.window.StreamWindow(100, 1000)
        now = 0.0
        for _ in range(3):
            w.on_data(100)
            w.on_read(100)
            assert w.take_update(now, rtt, **kwargs) == 100
            now += gap
        assert w.target == 100


def test_growth_capped_at_max_not_power_of_two(impl):
    w = impl.window.StreamWindow(100, 150)
    w.take_update(0.0, 1.0, force=True)
    w.on_data(100)
    w.on_read(100)
    assert w.take_update(0.5, 1.0) == 150
    assert (w.target, w.recv_window) == (150, 150)


def test_u32_growth_never_overflows(impl):
    w = impl.window.StreamWindow(1 << 31, U32)
    w.take_update(0.0, 1.0, force=True)
    w.on_data(1 << 31)
    w.on_read(1 << 31)
    assert w.take_update(0.1, 1.0) == U32
    assert (w.target, w.recv_window) == (U32, U32)


# --------------------------------------------------------------------------- differential

OPS = st.one_of(
    st.tuples(st.just("consume_send"), st.integers(-5, 1 << 34)),
    st.tuples(st.just("add_send_credit"), st.integers(-5, 1 << 33)),
    st.tuples(st.just("on_data"), st.integers(-5, 1 << 20)),
    st.tuples(st.just("on_read"), st.integers(-5, 1 << 20)),
    st.tuples(
        st.just("take_update"),
        st.floats(0, 100, allow_nan=False),
        st.sampled_from([0.0, 0.001, 0.5, 3.0]),
        st.booleans(),
        st.booleans(),
    ),
)


def apply(w, op):
    name, *args = op
    try:
        return getattr(w, name)(*args)
    except P2PError as exc:
        return type(exc)


@HYP
@given(
    initial=st.integers(1, 1 << 20),
    extra=st.integers(0, 1 << 24),
    ops=st.lists(OPS, max_size=40),
)
def test_differential_operation_sequences(both_impls, initial, extra, ops):
    pure, comp = both_impls
    wp = pure.window.StreamWindow(initial, initial + extra)
    wc = comp.window.StreamWindow(initial, initial + extra)
    for op in ops:
        assert apply(wp, op) == apply(wc, op), op
        assert state(wp) == state(wc)


@HYP
@given(initial=st.integers(-3, U32 + 3), max_window=st.integers(-3, U32 + 3))
def test_differential_config(both_impls, initial, max_window):
    pure, comp = both_impls

    def build(m):
        try:
            return state(m.window.StreamWindow(initial, max_window))
        except P2PError as exc:
            return type(exc)

    assert build(pure) == build(comp)


# --------------------------------------------------------------------------- state machine


def _builds():
    mods = [importlib.import_module("geventp2p._speedups._py_window")]
    try:
        mods.append(importlib.import_module("geventp2p._speedups._c_window"))
    except ImportError:
        if os.environ.get("GEVENTP2P_REQUIRE_SPEEDUPS") == "1":
            raise
    return mods


class WindowMachine(RuleBasedStateMachine):
    """Drive every build with the same operations; values stay within 0..max."""

    @initialize(initial=st.integers(1, 1 << 20), extra=st.integers(0, 1 << 22))
    def setup(self, initial, extra):
        self.windows = [m.StreamWindow(initial, initial + extra) for m in _builds()]
        self.now = 0.0

    def _all(self, name, *args):
        results = {repr(apply(w, (name,) + args)) for w in self.windows}
        assert len(results) == 1, results

    @rule(n=st.integers(0, 1 << 21))
    def send(self, n):
        self._all("consume_send", n)

    @rule(delta=st.integers(0, 1 << 33))
    def credit(self, delta):
        self._all("add_send_credit", delta)

    @rule(frac=st.floats(0, 1.2, allow_nan=False))
    def receive(self, frac):
        self._all("on_data", int(self.windows[0].recv_window * frac))

    @precondition(lambda self: self.windows[0].recv_buffered > 0)
    @rule(frac=st.floats(0, 1, allow_nan=False))
    def read(self, frac):
        self._all("on_read", int(self.windows[0].recv_buffered * frac))

    @rule(gap=st.sampled_from([0.0, 0.01, 1.0]), rtt=st.sampled_from([0.0, 0.05]), force=st.booleans())
    def update(self, gap, rtt, force):
        self.now += gap
        self._all("take_update", self.now, rtt, force, True)

    @invariant()
    def bounded(self):
        for w in self.windows:
            assert 0 <= w.send_window <= U32
            assert 0 <= w.recv_window
            assert 0 <= w.recv_buffered
            assert w.recv_window + w.recv_buffered <= w.target <= w.max_window <= U32
        assert len({state(w) for w in self.windows}) == 1


WindowMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestWindowMachine = WindowMachine.TestCase
