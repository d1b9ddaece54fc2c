"""Adapters: chaining order, short-circuit, and the three shipped adapters."""

from __future__ import annotations

import logging

import pytest

from geventp2p.crypto.keys import KeyType, generate_key
from geventp2p.core.peer import PeerId
from geventp2p.p2p import DuplicateFilter, LoggingAdapter, Message, RateLimiter, chain
from geventp2p.p2p.adapters import Handler


def _peer() -> PeerId:
    return PeerId.from_public_key(generate_key(KeyType.Ed25519).public_key())


P1, P2 = _peer(), _peer()


def _msg(peer: PeerId = P1, raw: bytes = b"x", topic: str = "t", via: str = "pubsub") -> Message:
    return Message(peer, raw, topic, 0.0, via, raw)  # type: ignore[arg-type]


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_chain_order_outermost_first() -> None:
    calls: list[str] = []

    def tag(name: str):  # type: ignore[no-untyped-def]
        def adapter(nxt: Handler) -> Handler:
            def h(m: Message) -> None:
                calls.append(name)
                nxt(m)
            return h
        return adapter

    h = chain(lambda m: calls.append("end"), [tag("a"), tag("b"), tag("c")])
    h(_msg())
    assert calls == ["a", "b", "c", "end"]


def test_chain_short_circuit() -> None:
    calls: list[str] = []

    def stop(nxt: Handler) -> Handler:
        return lambda m: calls.append("stop")

    def never(nxt: Handler) -> Handler:
        def h(m: Message) -> None:
            calls.append("never")
            nxt(m)
        return h

    chain(lambda m: calls.append("end"), [stop, never])(_msg())
    assert calls == ["stop"]


def test_chain_rejects_non_handler() -> None:
    with pytest.raises(TypeError):
        chain(lambda m: None, [lambda nxt: 42])  # type: ignore[list-item,return-value]


def test_rate_limiter_token_bucket_per_peer() -> None:
    clock = Clock()
    rl = RateLimiter(rate=2, burst=3, clock=clock)
    out: list[Message] = []
    h = rl(out.append)
    for _ in range(5):
        h(_msg(P1))
    assert len(out) == 3 and rl.dropped == 2          # the burst, then empty
    h(_msg(P2))
    assert len(out) == 4                               # another peer has its own bucket
    clock.t += 0.5                                     # 1 token back for P1
    h(_msg(P1))
    h(_msg(P1))
    assert len(out) == 5 and rl.dropped == 3
    clock.t += 100                                     # refills, capped at burst
    for _ in range(5):
        h(_msg(P1))
    assert len(out) == 8 and rl.passed == 8


def test_rate_limiter_forgets_lru_peers() -> None:
    clock = Clock()
    rl = RateLimiter(rate=1, burst=1, clock=clock, max_peers=1)
    assert rl.allow("a") and not rl.allow("a")
    assert rl.allow("b")                               # evicts a
    assert rl.allow("a")                               # a starts with a full bucket again


def test_rate_limiter_validates() -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate=0, burst=1)
    with pytest.raises(ValueError):
        RateLimiter(rate=1, burst=0)


def test_duplicate_filter() -> None:
    clock = Clock()
    df = DuplicateFilter(capacity=2, ttl=10, clock=clock)
    out: list[Message] = []
    h = df(out.append)
    h(_msg(P1, b"a"))
    h(_msg(P2, b"a", via="direct"))                    # same content, other path: duplicate
    h(_msg(P1, b"a", topic="u"))                       # other topic: new
    assert len(out) == 2 and df.dropped == 1
    clock.t += 11                                      # expired
    h(_msg(P1, b"a"))
    assert len(out) == 3
    h(_msg(P1, b"b"))
    h(_msg(P1, b"c"))                                  # capacity 2: "a" falls out
    h(_msg(P1, b"a"))
    assert len(out) == 6


def test_logging_adapter(caplog: pytest.LogCaptureFixture) -> None:
    out: list[Message] = []
    h = LoggingAdapter(level=logging.INFO)(out.append)
    with caplog.at_level(logging.INFO, logger="geventp2p.p2p.adapters"):
        h(_msg(P1, b"secret-bytes"))
    assert len(out) == 1
    assert "on 't'" in caplog.text and str(P1) in caplog.text
    assert "secret-bytes" not in caplog.text
