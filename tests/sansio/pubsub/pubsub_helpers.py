"""Helpers for the router tests: peer IDs, messages, and a Net that moves the RPCs of
several sans-I/O routers between them through the codec, with a fake clock."""

from __future__ import annotations

import struct
from typing import Callable, Iterable, Optional

from geventp2p.core.peer import PeerId
from geventp2p.crypto.keys import Ed25519PrivateKey
from geventp2p.sansio.pubsub import (
    RPC,
    Deliver,
    Event,
    Message,
    Router,
    SendRPC,
    Validate,
    ValidationResult,
    decode_rpc,
    encode_rpc,
)

_PIDS: dict[int, PeerId] = {}


def pid(i: int) -> PeerId:
    """A deterministic peer ID (Ed25519 key from seed ``i``)."""
    p = _PIDS.get(i)
    if p is None:
        key = Ed25519PrivateKey.from_seed(struct.pack(">I", i).rjust(32, b"\x07"))
        p = _PIDS[i] = PeerId.from_private_key(key)
    return p


def msg(author: PeerId, n: int, topic: str = "t", size: int = 8) -> Message:
    """A StrictSign-shaped message (the routers check presence; the signature is not verified)."""
    data = (b"%d:" % n).ljust(size, b"x")
    return Message(data=data, topic=topic, from_peer=author.to_bytes(), seqno=struct.pack(">Q", n), signature=b"sig")


def sends(events: Iterable[Event], peer: Optional[PeerId] = None) -> list[SendRPC]:
    out = [e for e in events if isinstance(e, SendRPC)]
    if peer is not None:
        out = [e for e in out if e.peer == peer]
    return out


def of_type(events: Iterable[Event], cls: type) -> list:
    return [e for e in events if isinstance(e, cls)]


class Net:
    """Routers by peer ID, wired by ``connect``; ``run()`` delivers RPCs until quiet.

    Every RPC goes through ``encode_rpc``/``decode_rpc``.  Validation answers come from
    ``validator`` (ACCEPT by default).  ``drop(src, dst)`` makes a link lose everything.
    """

    def __init__(
        self,
        validator: Optional[Callable[[PeerId, Validate], ValidationResult]] = None,
        async_validation: bool = False,
    ) -> None:
        self.routers: dict[PeerId, Router] = {}
        self.now = 0.0
        self.delivered: dict[PeerId, list[Deliver]] = {}
        self.sent: list[tuple[PeerId, PeerId, RPC]] = []
        self.other: dict[PeerId, list[Event]] = {}
        self.validator = validator
        self.async_validation = async_validation
        """Answer each Validate only when its turn comes in the RPC queue (validation takes time)."""
        self.lost: set[tuple[PeerId, PeerId]] = set()
        self.no_forward: set[PeerId] = set()
        """Nodes that drop every message they should forward (their own publishes still go)."""
        self._queue: list[tuple[PeerId, PeerId, object]] = []

    def add(self, router: Router) -> Router:
        self.routers[router.local_peer] = router
        self.delivered[router.local_peer] = []
        self.other[router.local_peer] = []
        return router

    def connect(
        self,
        a: PeerId,
        b: PeerId,
        proto_ab: Optional[str] = None,
        proto_ba: Optional[str] = None,
        ip_a: Optional[str] = None,
        ip_b: Optional[str] = None,
    ) -> None:
        """a dialed b; ``proto_ab`` is what a's outbound stream to b negotiated."""
        ra, rb = self.routers[a], self.routers[b]
        pa = proto_ab or _common(ra, rb)
        pb = proto_ba or _common(rb, ra)
        ra.add_peer(b, pa, self.now, outbound=True, ip=ip_a)
        rb.add_peer(a, pb, self.now, outbound=False, ip=ip_b)
        self.pump(a)
        self.pump(b)
        self.run()

    def disconnect(self, a: PeerId, b: PeerId) -> None:
        self.routers[a].remove_peer(b, self.now)
        self.routers[b].remove_peer(a, self.now)
        self.pump(a)
        self.pump(b)

    def pump(self, who: PeerId) -> None:
        r = self.routers[who]
        while True:
            evs = r.events()
            if not evs:
                return
            for e in evs:
                if isinstance(e, SendRPC):
                    rpc = e.rpc
                    if who in self.no_forward and rpc.publish:
                        mine = who.to_bytes()
                        kept = [m for m in rpc.publish if m.from_peer == mine]
                        if len(kept) != len(rpc.publish):
                            rpc = RPC(subscriptions=rpc.subscriptions, publish=kept, control=rpc.control)
                            if rpc.is_empty():
                                continue
                    self.sent.append((who, e.peer, rpc))
                    if (who, e.peer) not in self.lost:
                        self._queue.append((who, e.peer, encode_rpc(rpc)))
                elif isinstance(e, Validate):
                    res = self.validator(who, e) if self.validator else ValidationResult.ACCEPT
                    if self.async_validation:
                        self._queue.append((who, who, (e.msg_id, res)))
                    else:
                        r.validation_result(e.msg_id, res, self.now)
                elif isinstance(e, Deliver):
                    self.delivered[who].append(e)
                else:
                    self.other[who].append(e)

    def run(self, limit: int = 100000) -> None:
        n = 0
        while self._queue:
            src, dst, item = self._queue.pop(0)
            r = self.routers.get(dst)
            if isinstance(item, tuple):  # a deferred validation answer
                assert r is not None
                r.validation_result(item[0], item[1], self.now)
                self.pump(dst)
            elif r is not None and src in r.peers:
                assert isinstance(item, bytes)
                r.handle_rpc(src, decode_rpc(item), self.now)
                self.pump(dst)
            n += 1
            assert n < limit, "RPC storm"

    def tick(self, dt: float = 1.0, heartbeat: bool = True) -> None:
        self.now += dt
        if heartbeat:
            for who in sorted(self.routers):
                self.routers[who].heartbeat(self.now)
                self.pump(who)
        self.run()

    def publish(self, who: PeerId, m: Message) -> bytes:
        mid = self.routers[who].publish(m, self.now)
        self.pump(who)
        self.run()
        return mid

    def join(self, who: PeerId, topic: str = "t") -> None:
        self.routers[who].join(topic, self.now)
        self.pump(who)
        self.run()

    def got(self, who: PeerId) -> list[bytes]:
        return [d.msg_id for d in self.delivered[who]]


def _common(a: Router, b: Router) -> str:
    for proto in a.protocols:
        if proto in b.protocols:
            return proto
    raise AssertionError("no common protocol")
