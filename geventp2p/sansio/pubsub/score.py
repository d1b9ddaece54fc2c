"""Gossipsub v1.1 peer scoring
(https://github.com/libp2p/specs/blob/master/pubsub/gossipsub/gossipsub-v1.1.md#peer-scoring).

::

    score(p) = TopicCap(Σ_t w_t·(w1·P1 + w2·P2 + w3·P3 + w3b·P3b + w4·P4)) + w5·P5 + w6·P6 + w7·P7

* P1 time in mesh, in ``time_in_mesh_quantum`` units, capped at ``time_in_mesh_cap``;
* P2 first message deliveries (a decaying counter capped at ``first_message_deliveries_cap``);
* P3 the square of the mesh delivery deficit below ``mesh_message_deliveries_threshold``,
  once the peer has been in the mesh for ``mesh_message_deliveries_activation``;
  duplicates within ``mesh_message_deliveries_window`` of the first delivery count;
* P3b a sticky penalty: the squared deficit at the time the peer left the mesh;
* P4 the square of the invalid message count;
* P5 the application score (``set_app_score``, go's ``AppSpecificScore``);
* P6 the square of the number of peers sharing an IP beyond ``ip_colocation_factor_threshold``;
* P7 the square of behaviour penalties beyond ``behaviour_penalty_threshold``.

Counters decay multiplicatively every ``decay_interval`` (``refresh(now)``), and a value
below ``decay_to_zero`` becomes 0.  A disconnected peer with a non-positive score keeps
its counters for ``retain_score`` seconds, so that reconnecting does not reset a penalty.
Weights and parameters follow go-libp2p-pubsub's ``PeerScoreParams``/``TopicScoreParams``
(their values have no defaults there: pick them per application); the thresholds default to 0.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Hashable, Optional

from geventp2p.exceptions import ConfigError

__all__ = ["TopicScoreParams", "PeerScoreParams", "PeerScoreThresholds", "PeerScore", "score_parameter_decay"]


def score_parameter_decay(decay: float, decay_interval: float = 1.0, decay_to_zero: float = 0.01) -> float:
    """The per-interval factor that brings a counter of 1 to ``decay_to_zero`` after ``decay``
    seconds (go's ``ScoreParameterDecayWithBase``)."""
    ticks = decay / decay_interval
    return math.pow(decay_to_zero, 1.0 / ticks)


def _finite(name: str, v: float) -> None:
    if not isinstance(v, (int, float)) or math.isnan(v) or math.isinf(v):
        raise ConfigError(f"{name} must be a finite number, got {v!r}")


@dataclass(frozen=True)
class TopicScoreParams:
    """Per-topic score parameters (P1-P4).  Weights of penalties must be ≤ 0, of rewards ≥ 0."""

    topic_weight: float = 1.0
    # P1
    time_in_mesh_weight: float = 0.0
    time_in_mesh_quantum: float = 1.0
    time_in_mesh_cap: float = 0.0
    # P2
    first_message_deliveries_weight: float = 0.0
    first_message_deliveries_decay: float = 0.5
    first_message_deliveries_cap: float = 0.0
    # P3
    mesh_message_deliveries_weight: float = 0.0
    mesh_message_deliveries_decay: float = 0.5
    mesh_message_deliveries_cap: float = 0.0
    mesh_message_deliveries_threshold: float = 0.0
    mesh_message_deliveries_window: float = 0.010
    mesh_message_deliveries_activation: float = 5.0
    # P3b
    mesh_failure_penalty_weight: float = 0.0
    mesh_failure_penalty_decay: float = 0.5
    # P4
    invalid_message_deliveries_weight: float = 0.0
    invalid_message_deliveries_decay: float = 0.5

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            _finite(name, getattr(self, name))
        if self.topic_weight < 0:
            raise ConfigError("topic_weight must be >= 0")
        if self.time_in_mesh_weight < 0 or self.first_message_deliveries_weight < 0:
            raise ConfigError("P1 and P2 weights must be >= 0")
        if self.time_in_mesh_quantum <= 0:
            raise ConfigError("time_in_mesh_quantum must be > 0")
        if self.mesh_message_deliveries_weight > 0 or self.mesh_failure_penalty_weight > 0:
            raise ConfigError("P3 and P3b weights must be <= 0")
        if self.invalid_message_deliveries_weight > 0:
            raise ConfigError("P4 weight must be <= 0")
        if self.mesh_message_deliveries_window < 0 or self.mesh_message_deliveries_activation < 0:
            raise ConfigError("P3 window and activation must be >= 0")
        for name in (
            "first_message_deliveries_decay",
            "mesh_message_deliveries_decay",
            "mesh_failure_penalty_decay",
            "invalid_message_deliveries_decay",
        ):
            v = getattr(self, name)
            if not 0 < v < 1:
                raise ConfigError(f"{name} must be in (0, 1)")


@dataclass(frozen=True)
class PeerScoreParams:
    """Score parameters: per-topic ``topics`` plus the peer-wide P5-P7 and decay."""

    topics: dict[str, TopicScoreParams] = field(default_factory=dict)
    topic_score_cap: float = 0.0
    """Cap on the positive sum of topic scores; 0 = no cap."""
    app_specific_weight: float = 0.0
    ip_colocation_factor_weight: float = 0.0
    ip_colocation_factor_threshold: float = 1.0
    ip_colocation_factor_whitelist: frozenset[str] = frozenset()
    behaviour_penalty_weight: float = 0.0
    behaviour_penalty_threshold: float = 0.0
    behaviour_penalty_decay: float = 0.5
    decay_interval: float = 1.0
    decay_to_zero: float = 0.01
    retain_score: float = 3600.0

    def __post_init__(self) -> None:
        for name in (
            "topic_score_cap",
            "app_specific_weight",
            "ip_colocation_factor_weight",
            "ip_colocation_factor_threshold",
            "behaviour_penalty_weight",
            "behaviour_penalty_threshold",
            "behaviour_penalty_decay",
            "decay_interval",
            "decay_to_zero",
            "retain_score",
        ):
            _finite(name, getattr(self, name))
        if self.topic_score_cap < 0:
            raise ConfigError("topic_score_cap must be >= 0")
        if self.ip_colocation_factor_weight > 0:
            raise ConfigError("ip_colocation_factor_weight must be <= 0")
        if self.ip_colocation_factor_weight != 0 and self.ip_colocation_factor_threshold < 1:
            raise ConfigError("ip_colocation_factor_threshold must be >= 1")
        if self.behaviour_penalty_weight > 0:
            raise ConfigError("behaviour_penalty_weight must be <= 0")
        if self.behaviour_penalty_weight != 0 and not 0 < self.behaviour_penalty_decay < 1:
            raise ConfigError("behaviour_penalty_decay must be in (0, 1)")
        if self.behaviour_penalty_threshold < 0:
            raise ConfigError("behaviour_penalty_threshold must be >= 0")
        if self.decay_interval <= 0:
            raise ConfigError("decay_interval must be > 0")
        if not 0 < self.decay_to_zero < 1:
            raise ConfigError("decay_to_zero must be in (0, 1)")
        if self.retain_score < 0:
            raise ConfigError("retain_score must be >= 0")


@dataclass(frozen=True)
class PeerScoreThresholds:
    """``gossip`` (no gossip to or from below), ``publish`` (no own messages below),
    ``graylist`` (all RPCs ignored below), ``accept_px`` (PX accepted only at or above),
    ``opportunistic_graft`` (median mesh score that triggers opportunistic grafting)."""

    gossip: float = 0.0
    publish: float = 0.0
    graylist: float = 0.0
    accept_px: float = 0.0
    opportunistic_graft: float = 0.0

    def __post_init__(self) -> None:
        for name in ("gossip", "publish", "graylist", "accept_px", "opportunistic_graft"):
            _finite(name, getattr(self, name))
        if self.gossip > 0:
            raise ConfigError("the gossip threshold must be <= 0")
        if self.publish > 0 or self.publish > self.gossip:
            raise ConfigError("the publish threshold must be <= 0 and <= the gossip threshold")
        if self.graylist > 0 or self.graylist > self.publish:
            raise ConfigError("the graylist threshold must be <= 0 and <= the publish threshold")
        if self.accept_px < 0:
            raise ConfigError("the accept-PX threshold must be >= 0")
        if self.opportunistic_graft < 0:
            raise ConfigError("the opportunistic-graft threshold must be >= 0")


class _TopicStats:
    __slots__ = (
        "in_mesh",
        "graft_time",
        "mesh_time",
        "first_deliveries",
        "mesh_deliveries",
        "mesh_deliveries_active",
        "mesh_failure_penalty",
        "invalid_deliveries",
    )

    def __init__(self) -> None:
        self.in_mesh = False
        self.graft_time = 0.0
        self.mesh_time = 0.0
        self.first_deliveries = 0.0
        self.mesh_deliveries = 0.0
        self.mesh_deliveries_active = False
        self.mesh_failure_penalty = 0.0
        self.invalid_deliveries = 0.0


class _PeerStats:
    __slots__ = ("connected", "expire", "topics", "ips", "behaviour_penalty", "app_score")

    def __init__(self) -> None:
        self.connected = True
        self.expire = 0.0
        self.topics: dict[str, _TopicStats] = {}
        self.ips: tuple[str, ...] = ()
        self.behaviour_penalty = 0.0
        self.app_score = 0.0


# Delivery record status
_UNKNOWN, _VALID, _INVALID, _IGNORED = 0, 1, 2, 3


class _DeliveryRecord:
    __slots__ = ("status", "first_seen", "validated", "peers", "expire")

    def __init__(self, now: float, expire: float) -> None:
        self.status = _UNKNOWN
        self.first_seen = now
        self.validated = 0.0
        self.peers: set[Hashable] = set()
        self.expire = expire


class PeerScore:
    """Score state of every peer; all times are passed in.

    The router reports what happens (``add_peer``, ``graft``, ``prune``, message
    outcomes, ``add_penalty``) and calls ``refresh(now)`` every ``decay_interval``.
    """

    def __init__(self, params: PeerScoreParams, *, deliveries_ttl: float = 120.0) -> None:
        self.params = params
        self._peers: dict[Hashable, _PeerStats] = {}
        self._ip_peers: dict[str, set[Hashable]] = {}
        self._deliveries: dict[bytes, _DeliveryRecord] = {}
        self._deliveries_order: deque[tuple[float, bytes]] = deque()
        self._deliveries_ttl = deliveries_ttl

    # ------------------------------------------------------------------ the score

    def score(self, peer: Hashable) -> float:
        ps = self._peers.get(peer)
        if ps is None:
            return 0.0
        params = self.params
        total = 0.0
        for topic, ts in ps.topics.items():
            tp = params.topics.get(topic)
            if tp is None:
                continue
            t = 0.0
            if ts.in_mesh:
                p1 = ts.mesh_time / tp.time_in_mesh_quantum
                if p1 > tp.time_in_mesh_cap:
                    p1 = tp.time_in_mesh_cap
                t += p1 * tp.time_in_mesh_weight
            t += ts.first_deliveries * tp.first_message_deliveries_weight
            if ts.mesh_deliveries_active and ts.mesh_deliveries < tp.mesh_message_deliveries_threshold:
                deficit = tp.mesh_message_deliveries_threshold - ts.mesh_deliveries
                t += deficit * deficit * tp.mesh_message_deliveries_weight
            t += ts.mesh_failure_penalty * tp.mesh_failure_penalty_weight
            t += ts.invalid_deliveries * ts.invalid_deliveries * tp.invalid_message_deliveries_weight
            total += t * tp.topic_weight
        if params.topic_score_cap > 0 and total > params.topic_score_cap:
            total = params.topic_score_cap
        total += ps.app_score * params.app_specific_weight
        total += self._ip_colocation(ps) * params.ip_colocation_factor_weight
        if ps.behaviour_penalty > params.behaviour_penalty_threshold:
            excess = ps.behaviour_penalty - params.behaviour_penalty_threshold
            total += excess * excess * params.behaviour_penalty_weight
        return total

    def _ip_colocation(self, ps: _PeerStats) -> float:
        out = 0.0
        threshold = self.params.ip_colocation_factor_threshold
        for ip in ps.ips:
            if ip in self.params.ip_colocation_factor_whitelist:
                continue
            n = len(self._ip_peers.get(ip, ()))
            if n > threshold:
                surplus = n - threshold
                out += surplus * surplus
        return out

    # ------------------------------------------------------------------ peers

    def add_peer(self, peer: Hashable, ip: Optional[str], now: float) -> None:
        ps = self._peers.get(peer)
        if ps is None:
            ps = self._peers[peer] = _PeerStats()
        ps.connected = True
        self._set_ips(peer, ps, (ip,) if ip else ())

    def _set_ips(self, peer: Hashable, ps: _PeerStats, ips: tuple[str, ...]) -> None:
        for ip in ps.ips:
            s = self._ip_peers.get(ip)
            if s is not None:
                s.discard(peer)
                if not s:
                    del self._ip_peers[ip]
        ps.ips = ips
        for ip in ips:
            self._ip_peers.setdefault(ip, set()).add(peer)

    def remove_peer(self, peer: Hashable, now: float) -> None:
        ps = self._peers.get(peer)
        if ps is None:
            return
        if self.score(peer) > 0:
            self._set_ips(peer, ps, ())
            del self._peers[peer]
            return
        for topic, ts in ps.topics.items():
            ts.first_deliveries = 0.0
            tp = self.params.topics.get(topic)
            if tp is not None and ts.in_mesh and ts.mesh_deliveries_active:
                if ts.mesh_deliveries < tp.mesh_message_deliveries_threshold:
                    deficit = tp.mesh_message_deliveries_threshold - ts.mesh_deliveries
                    ts.mesh_failure_penalty += deficit * deficit
            ts.mesh_deliveries_active = False
            ts.in_mesh = False
        ps.connected = False
        ps.expire = now + self.params.retain_score

    def set_app_score(self, peer: Hashable, value: float) -> None:
        ps = self._peers.get(peer)
        if ps is not None:
            ps.app_score = value

    def add_penalty(self, peer: Hashable, count: float) -> None:
        """Behaviour penalty (P7): broken promises, GRAFT during backoff, malformed RPCs."""
        ps = self._peers.get(peer)
        if ps is not None:
            ps.behaviour_penalty += count

    def behaviour_penalty(self, peer: Hashable) -> float:
        ps = self._peers.get(peer)
        return 0.0 if ps is None else ps.behaviour_penalty

    def _topic(self, peer: Hashable, topic: str) -> Optional[_TopicStats]:
        if topic not in self.params.topics:
            return None
        ps = self._peers.get(peer)
        if ps is None:
            return None
        ts = ps.topics.get(topic)
        if ts is None:
            ts = ps.topics[topic] = _TopicStats()
        return ts

    def graft(self, peer: Hashable, topic: str, now: float) -> None:
        ts = self._topic(peer, topic)
        if ts is None:
            return
        ts.in_mesh = True
        ts.graft_time = now
        ts.mesh_time = 0.0
        ts.mesh_deliveries_active = False

    def prune(self, peer: Hashable, topic: str, now: float) -> None:
        ts = self._topic(peer, topic)
        if ts is None:
            return
        tp = self.params.topics[topic]
        if ts.mesh_deliveries_active and ts.mesh_deliveries < tp.mesh_message_deliveries_threshold:
            deficit = tp.mesh_message_deliveries_threshold - ts.mesh_deliveries
            ts.mesh_failure_penalty += deficit * deficit
        ts.mesh_deliveries_active = False
        ts.in_mesh = False

    # ------------------------------------------------------------------ message outcomes

    def _record(self, msg_id: bytes, now: float) -> _DeliveryRecord:
        rec = self._deliveries.get(msg_id)
        if rec is None:
            rec = self._deliveries[msg_id] = _DeliveryRecord(now, now + self._deliveries_ttl)
            self._deliveries_order.append((rec.expire, msg_id))
        return rec

    def validate_message(self, peer: Hashable, msg_id: bytes, now: float) -> None:
        """A new message from ``peer`` entered validation."""
        self._record(msg_id, now)

    def deliver_message(self, peer: Hashable, topic: str, msg_id: bytes, now: float) -> None:
        """The message was accepted: a first delivery for ``peer``, near-first for duplicates."""
        self._mark_first_delivery(peer, topic)
        rec = self._record(msg_id, now)
        if rec.status != _UNKNOWN:
            return
        rec.status = _VALID
        rec.validated = now
        for p in rec.peers:
            if p != peer:
                self._mark_duplicate_delivery(p, topic, 0.0, now)

    def reject_message(self, peer: Hashable, topic: str, msg_id: Optional[bytes], now: float, *, ignored: bool = False) -> None:
        """The message was rejected (P4 for ``peer`` and for the peers that sent it during
        validation) or ignored (no penalty).  ``msg_id`` None: rejected before validation."""
        if msg_id is None:
            if not ignored:
                self._mark_invalid_delivery(peer, topic)
            return
        rec = self._record(msg_id, now)
        if rec.status != _UNKNOWN:
            return
        if ignored:
            rec.status = _IGNORED
            rec.peers.clear()
            return
        rec.status = _INVALID
        self._mark_invalid_delivery(peer, topic)
        for p in rec.peers:
            self._mark_invalid_delivery(p, topic)
        rec.peers.clear()

    def duplicate_message(self, peer: Hashable, topic: str, msg_id: bytes, now: float) -> None:
        rec = self._record(msg_id, now)
        if peer in rec.peers:
            return
        if rec.status == _UNKNOWN:
            rec.peers.add(peer)
        elif rec.status == _VALID:
            rec.peers.add(peer)
            self._mark_duplicate_delivery(peer, topic, rec.validated, now)
        elif rec.status == _INVALID:
            self._mark_invalid_delivery(peer, topic)

    def _mark_first_delivery(self, peer: Hashable, topic: str) -> None:
        ts = self._topic(peer, topic)
        if ts is None:
            return
        tp = self.params.topics[topic]
        ts.first_deliveries = min(ts.first_deliveries + 1, tp.first_message_deliveries_cap)
        if ts.in_mesh:
            ts.mesh_deliveries = min(ts.mesh_deliveries + 1, tp.mesh_message_deliveries_cap)

    def _mark_duplicate_delivery(self, peer: Hashable, topic: str, validated: float, now: float) -> None:
        ts = self._topic(peer, topic)
        if ts is None or not ts.in_mesh:
            return
        tp = self.params.topics[topic]
        if validated and now > validated + tp.mesh_message_deliveries_window:
            return
        ts.mesh_deliveries = min(ts.mesh_deliveries + 1, tp.mesh_message_deliveries_cap)

    def _mark_invalid_delivery(self, peer: Hashable, topic: str) -> None:
        ts = self._topic(peer, topic)
        if ts is not None:
            ts.invalid_deliveries += 1

    # ------------------------------------------------------------------ decay

    def refresh(self, now: float) -> None:
        """Decay every counter once (call every ``decay_interval``); forget expired peers."""
        params = self.params
        dz = params.decay_to_zero
        for peer in list(self._peers):
            ps = self._peers[peer]
            if not ps.connected:
                if now > ps.expire:
                    self._set_ips(peer, ps, ())
                    del self._peers[peer]
                continue
            for topic, ts in ps.topics.items():
                tp = params.topics.get(topic)
                if tp is None:
                    continue
                ts.first_deliveries *= tp.first_message_deliveries_decay
                if ts.first_deliveries < dz:
                    ts.first_deliveries = 0.0
                ts.mesh_deliveries *= tp.mesh_message_deliveries_decay
                if ts.mesh_deliveries < dz:
                    ts.mesh_deliveries = 0.0
                ts.mesh_failure_penalty *= tp.mesh_failure_penalty_decay
                if ts.mesh_failure_penalty < dz:
                    ts.mesh_failure_penalty = 0.0
                ts.invalid_deliveries *= tp.invalid_message_deliveries_decay
                if ts.invalid_deliveries < dz:
                    ts.invalid_deliveries = 0.0
                if ts.in_mesh:
                    ts.mesh_time = now - ts.graft_time
                    if ts.mesh_time > tp.mesh_message_deliveries_activation:
                        ts.mesh_deliveries_active = True
            ps.behaviour_penalty *= params.behaviour_penalty_decay
            if ps.behaviour_penalty < dz:
                ps.behaviour_penalty = 0.0
        order = self._deliveries_order
        while order and order[0][0] <= now:
            _exp, mid = order.popleft()
            self._deliveries.pop(mid, None)

    def peers(self) -> list[Hashable]:
        return list(self._peers)
