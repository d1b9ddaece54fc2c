"""The message cache (mcache) and the seen cache of the pubsub routers.

* :class:`MessageCache`: the messages of the last ``history_length`` heartbeats,
  in windows; IHAVE gossip advertises the IDs of the newest ``history_gossip``
  windows; IWANT is answered from all of them, at most ``retransmission`` times
  per peer and message (gossipsub v1.1 spam hardening).
* :class:`SeenCache`: message IDs seen in the last ``ttl`` seconds, so that a
  message is validated and forwarded once.  Entries expire in insertion order.

No clocks here: times are passed in.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, Hashable, Optional, TypeVar

from geventp2p.sansio.pubsub.rpc import Message

__all__ = ["MessageCache", "SeenCache"]

P = TypeVar("P", bound=Hashable)


class MessageCache(Generic[P]):
    """Sliding windows of messages; ``shift()`` once per heartbeat."""

    __slots__ = ("history_length", "history_gossip", "_msgs", "_peertx", "_windows")

    def __init__(self, history_length: int = 5, history_gossip: int = 3) -> None:
        if history_gossip > history_length or history_gossip < 1:
            raise ValueError("history_gossip must be in 1..history_length")
        self.history_length = history_length
        self.history_gossip = history_gossip
        self._msgs: dict[bytes, Message] = {}
        self._peertx: dict[bytes, dict[P, int]] = {}
        self._windows: list[list[tuple[bytes, str]]] = [[] for _ in range(history_length)]

    def __len__(self) -> int:
        return len(self._msgs)

    def __contains__(self, msg_id: bytes) -> bool:
        return msg_id in self._msgs

    def put(self, msg_id: bytes, msg: Message) -> None:
        if msg_id in self._msgs:
            return
        self._msgs[msg_id] = msg
        self._windows[0].append((msg_id, msg.topic))

    def get(self, msg_id: bytes) -> Optional[Message]:
        return self._msgs.get(msg_id)

    def get_for_peer(self, msg_id: bytes, peer: P) -> tuple[Optional[Message], int]:
        """The message and how many times ``peer`` has now asked for it (counting this time)."""
        msg = self._msgs.get(msg_id)
        if msg is None:
            return None, 0
        tx = self._peertx.get(msg_id)
        if tx is None:
            tx = self._peertx[msg_id] = {}
        n = tx.get(peer, 0) + 1
        tx[peer] = n
        return msg, n

    def gossip_ids(self, topic: str) -> list[bytes]:
        """IDs of ``topic``'s messages in the newest ``history_gossip`` windows."""
        out = []
        for window in self._windows[: self.history_gossip]:
            for mid, t in window:
                if t == topic:
                    out.append(mid)
        return out

    def shift(self) -> None:
        """Drop the oldest window and open a new one."""
        last = self._windows.pop()
        for mid, _t in last:
            self._msgs.pop(mid, None)
            self._peertx.pop(mid, None)
        self._windows.insert(0, [])


class SeenCache:
    """Message IDs with a time-to-live, first-seen wins (go's ``FirstSeenCache``)."""

    __slots__ = ("ttl", "_exp", "_order")

    def __init__(self, ttl: float = 120.0) -> None:
        self.ttl = ttl
        self._exp: dict[bytes, float] = {}
        self._order: deque[tuple[float, bytes]] = deque()

    def __len__(self) -> int:
        return len(self._exp)

    def __contains__(self, msg_id: bytes) -> bool:
        return msg_id in self._exp

    def has(self, msg_id: bytes, now: float) -> bool:
        exp = self._exp.get(msg_id)
        return exp is not None and exp > now

    def add(self, msg_id: bytes, now: float) -> bool:
        """Mark ``msg_id`` seen; False if it already was (and has not expired)."""
        exp = self._exp.get(msg_id)
        if exp is not None and exp > now:
            return False
        e = now + self.ttl
        self._exp[msg_id] = e
        self._order.append((e, msg_id))
        return True

    def sweep(self, now: float) -> None:
        order = self._order
        exp = self._exp
        while order and order[0][0] <= now:
            e, mid = order.popleft()
            if exp.get(mid) == e:
                del exp[mid]
