"""net/_deadline: the one Timeout -> P2PTimeoutError translation."""

import time

import gevent
import pytest

from geventp2p.exceptions import P2PTimeoutError
from geventp2p.net._deadline import Deadline, effective_deadline, timeout_scope


def test_timeout_scope_translates_its_own_expiry():
    with pytest.raises(P2PTimeoutError, match="thing timed out after 0.01s"):
        with timeout_scope(0.01, "thing"):
            gevent.sleep(5)


def test_timeout_scope_passes_outer_timeouts_through():
    outer = gevent.Timeout(0.01)
    outer.start()
    try:
        with pytest.raises(gevent.Timeout) as info:
            with timeout_scope(10, "inner"):
                gevent.sleep(5)
        assert info.value is outer
    finally:
        outer.close()


def test_timeout_scope_none_is_unbounded_and_exceptions_pass():
    with pytest.raises(KeyError):
        with timeout_scope(None, "x"):
            raise KeyError("k")
    with timeout_scope(1.0, "x"):
        pass  # no timer left armed: the next sleep is not interrupted
    gevent.sleep(0.001)


def test_deadline_left_check_and_effective():
    d = Deadline(None)
    assert d.left() is None and d.left(3.0) == 3.0 and not d.expired()
    d = Deadline(0.0)
    assert d.left() == 0.0 and d.expired()
    with pytest.raises(P2PTimeoutError, match="dial timed out"):
        d.check("dial")
    now = time.monotonic()
    assert effective_deadline(None, None) is None
    assert effective_deadline(None, now + 5) == now + 5
    assert effective_deadline(0.5, now + 100) < now + 1
    assert effective_deadline(100, now + 1) == now + 1
