"""The sans-I/O gossipsub router, v1.0 to v1.2
(https://github.com/libp2p/specs/blob/master/pubsub/gossipsub/gossipsub-v1.0.md,
gossipsub-v1.1.md, gossipsub-v1.2.md in the same folder).

Policies (go-libp2p-pubsub's behaviour unless said otherwise):

* Mesh per joined topic, kept between ``d_lo`` and ``d_hi`` at each heartbeat (graft
  up to ``d``; prune down to ``d`` keeping the ``d_score`` best-scoring peers and at
  least ``d_out`` outbound-connection peers); peers with a negative score are pruned
  without PX; opportunistic grafting every ``opportunistic_graft_ticks``.
* Fanout for topics we publish to without joining; forgotten ``fanout_ttl`` after the
  last publish.  Own messages go to the mesh (or fanout), direct peers and floodsub
  peers; with ``flood_publish`` (off by default, as in go) to every topic peer at or
  above the publish threshold.
* Received GRAFT: unknown topic -> ignored; direct peer -> PRUNE; in backoff -> P7
  penalty (+1 within ``graft_flood_threshold`` of our PRUNE), backoff refreshed, PRUNE;
  negative score -> PRUNE; mesh at ``d_hi`` and the peer is not outbound -> PRUNE.
* PRUNE: the peer leaves the mesh; its ``backoff`` (or ``prune_backoff``) is honoured,
  plus one heartbeat of slack; PX peers from a peer at or above the accept-PX threshold
  become :class:`~geventp2p.sansio.pubsub.router.ConnectPeer` events (at most
  ``prune_peers``).  We send PX only with ``do_px`` (off by default, as in go), never
  to peers with a negative score; a signed peer record is attached when the
  ``peer_record`` callback gives one.  Leaving a topic prunes with ``unsubscribe_backoff``.
* Gossip: IHAVE for the mcache's newest ``history_gossip`` windows to
  ``max(d_lazy, gossip_factor × eligible)`` non-mesh peers at or above the gossip threshold.
  Received IHAVE: at most ``max_ihave_messages`` per peer per heartbeat and
  ``max_ihave_length`` IDs asked per heartbeat; one ID of each IWANT is a promise, broken
  after ``iwant_followup_time`` (P7).  IWANT is answered at most ``gossip_retransmission``
  times per message and peer.
* v1.2 IDONTWANT: on the first receipt of a message with ``len(data) >=
  idontwant_message_threshold``, before validation, an IDONTWANT goes at once to the other
  mesh peers that speak ``/meshsub/1.2.0``.  Received IDONTWANT IDs (at most
  ``max_idontwant_length`` per RPC, ``max_idontwant_messages`` RPCs per heartbeat) are
  not forwarded or served to that peer for ``idontwant_message_ttl`` heartbeats.
* A peer that sends us a copy of a message while it is being validated is not sent the
  message when it is forwarded (it has it; an implicit IDONTWANT).
* Graylist: every RPC of a peer below the graylist threshold is ignored (direct peers
  excepted).  A malformed RPC costs a P7 penalty.
* Control messages of one heartbeat (GRAFT, PRUNE, IHAVE) are coalesced per peer in one RPC.
* v1.3 (on by default; ``v13=False`` offers 1.2.0 first): ``/meshsub/1.3.0`` is offered
  first and behaves as v1.2; we support no extension so we send no ``ControlExtensions``;
  a peer's first one is recorded in ``peer_extensions``, a repeated one costs a P7
  penalty of 10.  Peers without 1.3 (js-libp2p, py-libp2p unless it offers it) negotiate
  1.2.0 through multistream-select.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields
from typing import Callable, Iterable, Optional

from geventp2p.core.peer import PeerId
from geventp2p.exceptions import ConfigError, InvalidPeerIdError
from geventp2p.sansio.pubsub.cache import MessageCache
from geventp2p.sansio.pubsub.router import (
    FLOODSUB_ID,
    GOSSIPSUB_PROTOCOLS,
    MESHSUB_V10,
    MESHSUB_V11,
    MESHSUB_V12,
    MESHSUB_V13,
    ConnectPeer,
    Router,
)
from geventp2p.sansio.pubsub.rpc import (
    RPC,
    ControlGraft,
    ControlIDontWant,
    ControlIHave,
    ControlExtensions,
    ControlIWant,
    ControlMessage,
    ControlPrune,
    Message,
    PeerInfoPX,
)
from geventp2p.sansio.pubsub.score import PeerScore, PeerScoreParams, PeerScoreThresholds
from geventp2p.sansio.pubsub.sign import MsgIdFn, SignaturePolicy, default_msg_id

__all__ = ["GossipSubParams", "GossipSubRouter"]

_MESH_PROTOCOLS = frozenset((MESHSUB_V10, MESHSUB_V11, MESHSUB_V12, MESHSUB_V13))
_PX_PROTOCOLS = frozenset((MESHSUB_V11, MESHSUB_V12, MESHSUB_V13))
_IDONTWANT_PROTOCOLS = frozenset((MESHSUB_V12, MESHSUB_V13))


@dataclass(frozen=True)
class GossipSubParams:
    """Router parameters; defaults are go-libp2p-pubsub's.  Times in seconds."""

    d: int = 6
    d_lo: int = 5
    d_hi: int = 12
    d_score: int = 4
    d_out: int = 2
    d_lazy: int = 6
    history_length: int = 5
    history_gossip: int = 3
    gossip_factor: float = 0.25
    gossip_retransmission: int = 3
    heartbeat_initial_delay: float = 0.1
    heartbeat_interval: float = 1.0
    fanout_ttl: float = 60.0
    prune_peers: int = 16
    prune_backoff: float = 60.0
    unsubscribe_backoff: float = 10.0
    direct_connect_ticks: int = 300
    opportunistic_graft_ticks: int = 60
    opportunistic_graft_peers: int = 2
    graft_flood_threshold: float = 10.0
    max_ihave_length: int = 5000
    max_ihave_messages: int = 10
    max_idontwant_length: int = 10
    max_idontwant_messages: int = 1000
    iwant_followup_time: float = 3.0
    idontwant_message_threshold: int = 1024
    idontwant_message_ttl: int = 3
    flood_publish: bool = False
    do_px: bool = False
    v13: bool = True
    """Offer ``/meshsub/1.3.0`` first (v1.2 plus the Extensions control message; we
    announce no extension and accept one ``ControlExtensions`` per peer)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool):
                continue
            if not isinstance(v, (int, float)) or v < 0:
                raise ConfigError(f"{f.name} must be a non-negative number, got {v!r}")
        if not (0 < self.d_lo <= self.d <= self.d_hi):
            raise ConfigError("need 0 < d_lo <= d <= d_hi")
        if self.d_score > self.d:
            raise ConfigError("d_score must not exceed d")
        if self.d_out >= self.d_lo or (self.d_out > 0 and self.d_out >= self.d / 2):
            raise ConfigError("d_out must be below d_lo and below d / 2")
        if not (1 <= self.history_gossip <= self.history_length):
            raise ConfigError("need 1 <= history_gossip <= history_length")
        if self.heartbeat_interval <= 0 or self.opportunistic_graft_ticks < 1 or self.direct_connect_ticks < 1:
            raise ConfigError("heartbeat_interval and the tick counts must be positive")
        if self.idontwant_message_ttl < 1:
            raise ConfigError("idontwant_message_ttl must be >= 1 heartbeat")


class GossipSubRouter(Router):
    """Gossipsub v1.0-v1.2 with v1.1 peer scoring (enabled when ``score_params`` is given)."""

    protocols: tuple[str, ...] = GOSSIPSUB_PROTOCOLS

    def __init__(
        self,
        local_peer: PeerId,
        params: Optional[GossipSubParams] = None,
        score_params: Optional[PeerScoreParams] = None,
        thresholds: Optional[PeerScoreThresholds] = None,
        *,
        signature_policy: SignaturePolicy = SignaturePolicy.STRICT_SIGN,
        msg_id_fn: MsgIdFn = default_msg_id,
        seen_ttl: float = 120.0,
        max_pending_validations: int = 8192,
        max_topics_per_peer: int = 5000,
        direct_peers: Iterable[PeerId] = (),
        peer_record: Optional[Callable[[PeerId], Optional[bytes]]] = None,
        seed: Optional[int] = None,
    ) -> None:
        super().__init__(
            local_peer,
            signature_policy=signature_policy,
            msg_id_fn=msg_id_fn,
            seen_ttl=seen_ttl,
            max_pending_validations=max_pending_validations,
            max_topics_per_peer=max_topics_per_peer,
        )
        self.params = p = params if params is not None else GossipSubParams()
        if not p.v13:
            self.protocols = tuple(x for x in GOSSIPSUB_PROTOCOLS if x != MESHSUB_V13)
        self.thresholds = thresholds if thresholds is not None else PeerScoreThresholds()
        self.peer_score: Optional[PeerScore] = PeerScore(score_params, deliveries_ttl=seen_ttl) if score_params is not None else None
        self.direct: set[PeerId] = set(direct_peers)
        self._peer_record = peer_record
        self._rng = random.Random(seed)
        self.mcache: MessageCache[PeerId] = MessageCache(p.history_length, p.history_gossip)
        self.mesh: dict[str, set[PeerId]] = {}
        self.fanout: dict[str, set[PeerId]] = {}
        self._lastpub: dict[str, float] = {}
        self.backoff: dict[str, dict[PeerId, float]] = {}
        self.outbound: dict[PeerId, bool] = {}
        self._floodsub_peers: set[PeerId] = set()
        self._peerhave: dict[PeerId, int] = {}
        self._iasked: dict[PeerId, int] = {}
        self._peerdontwant: dict[PeerId, int] = {}
        self._unwanted: dict[PeerId, dict[bytes, int]] = {}
        self._promises: dict[bytes, dict[PeerId, float]] = {}
        self._gossip: dict[PeerId, list[ControlIHave]] = {}
        self.peer_extensions: dict[PeerId, ControlExtensions] = {}
        """The v1.3 extensions each peer announced."""
        self.heartbeat_ticks = 0
        self._last_refresh: Optional[float] = None

    # ------------------------------------------------------------------ queries / knobs

    def score(self, peer: PeerId) -> float:
        """The peer's current score (0 when scoring is off)."""
        ps = self.peer_score
        if ps is None:
            return 0.0
        return ps.score(peer)

    def set_app_score(self, peer: PeerId, value: float) -> None:
        """The application-specific score P5 of ``peer`` (weighted by ``app_specific_weight``)."""
        if self.peer_score is not None:
            self.peer_score.set_app_score(peer, value)

    def add_direct_peer(self, peer: PeerId, now: float = 0.0) -> None:
        """Make ``peer`` a direct peer: every message is forwarded to it, it is never in a mesh."""
        self.direct.add(peer)
        for topic in list(self.mesh):
            self._remove_from_mesh(topic, peer, now)

    def mesh_peers(self, topic: str) -> list[PeerId]:
        return list(self.mesh.get(topic, ()))

    def fanout_peers(self, topic: str) -> list[PeerId]:
        return list(self.fanout.get(topic, ()))

    def in_backoff(self, topic: str, peer: PeerId, now: float) -> bool:
        """True while we must not GRAFT ``peer`` in ``topic`` (backoff + one heartbeat of slack)."""
        exp = self.backoff.get(topic, {}).get(peer)
        return exp is not None and now < exp + self.params.heartbeat_interval

    def unwanted(self, peer: PeerId) -> set[bytes]:
        """Message IDs ``peer`` told us (IDONTWANT) not to send."""
        return set(self._unwanted.get(peer, ()))

    def promises(self) -> dict[bytes, dict[PeerId, float]]:
        """Open IWANT promises: message ID -> {peer: deadline}."""
        return {mid: dict(ps) for mid, ps in self._promises.items()}

    # ------------------------------------------------------------------ helpers

    def _supports_mesh(self, peer: PeerId) -> bool:
        return self.peers.get(peer) in _MESH_PROTOCOLS

    def _get_peers(self, topic: str, count: int, accept: Callable[[PeerId], bool]) -> list[PeerId]:
        peers = self.peers
        out = [p for p in self.topics.get(topic, ()) if peers.get(p) in _MESH_PROTOCOLS and accept(p)]
        out.sort()  # deterministic order before the seeded shuffle
        self._rng.shuffle(out)
        if count > 0 and len(out) > count:
            del out[count:]
        return out

    def _add_to_mesh(self, topic: str, peer: PeerId, now: float) -> None:
        self.mesh[topic].add(peer)
        if self.peer_score is not None:
            self.peer_score.graft(peer, topic, now)

    def _remove_from_mesh(self, topic: str, peer: PeerId, now: float) -> None:
        mesh = self.mesh.get(topic)
        if mesh is not None and peer in mesh:
            mesh.discard(peer)
            if self.peer_score is not None:
                self.peer_score.prune(peer, topic, now)

    def _add_backoff(self, peer: PeerId, topic: str, interval: float, now: float) -> None:
        b = self.backoff.setdefault(topic, {})
        exp = now + interval
        if b.get(peer, 0.0) < exp:
            b[peer] = exp

    def _make_prune(self, peer: PeerId, topic: str, do_px: bool, unsubscribe: bool, now: float) -> ControlPrune:
        if self.peers.get(peer) not in _PX_PROTOCOLS:
            return ControlPrune(topic)
        p = self.params
        backoff = int(p.unsubscribe_backoff if unsubscribe else p.prune_backoff)
        px: list[PeerInfoPX] = []
        if do_px:
            for xp in self._get_peers(topic, p.prune_peers, lambda xp: xp != peer and self.score(xp) >= 0):
                rec = self._peer_record(xp) if self._peer_record is not None else None
                px.append(PeerInfoPX(xp.to_bytes(), rec))
        return ControlPrune(topic, px, backoff)

    # ------------------------------------------------------------------ hooks: peers

    def _on_add_peer(self, peer: PeerId, protocol: str, now: float, outbound: bool, ip: Optional[str], known: bool) -> None:
        self.outbound[peer] = outbound
        if protocol == FLOODSUB_ID:
            self._floodsub_peers.add(peer)
            if known:  # a new stream negotiated floodsub: no longer a mesh peer
                for topic in list(self.mesh):
                    self._remove_from_mesh(topic, peer, now)
                for fan in self.fanout.values():
                    fan.discard(peer)
        else:
            self._floodsub_peers.discard(peer)
        if self.peer_score is not None:
            self.peer_score.add_peer(peer, ip, now)

    def _on_remove_peer(self, peer: PeerId, now: float) -> None:
        self._floodsub_peers.discard(peer)
        for topic, mesh in self.mesh.items():
            mesh.discard(peer)
        for peers in self.fanout.values():
            peers.discard(peer)
        for d in (self.outbound, self._peerhave, self._iasked, self._peerdontwant, self._unwanted, self._gossip, self.peer_extensions):
            d.pop(peer, None)  # type: ignore[attr-defined]
        if self.peer_score is not None:
            self.peer_score.remove_peer(peer, now)

    def _on_bad_rpc(self, peer: PeerId, now: float) -> None:
        if self.peer_score is not None:
            self.peer_score.add_penalty(peer, 1)

    def _accept_rpc(self, peer: PeerId, rpc: RPC, now: float) -> bool:
        return peer in self.direct or self.score(peer) >= self.thresholds.graylist

    def _on_peer_unsubscribed(self, peer: PeerId, topic: str, now: float) -> None:
        self._remove_from_mesh(topic, peer, now)
        fan = self.fanout.get(topic)
        if fan is not None:
            fan.discard(peer)

    # ------------------------------------------------------------------ hooks: messages

    def _on_invalid_before_validation(self, peer: PeerId, msg: Message, now: float) -> None:
        if self.peer_score is not None:
            self.peer_score.reject_message(peer, msg.topic, None, now)

    def _on_duplicate(self, peer: PeerId, msg: Message, msg_id: bytes, now: float) -> None:
        if self.peer_score is not None:
            self.peer_score.duplicate_message(peer, msg.topic, msg_id, now)
        promised = self._promises.get(msg_id)
        if promised is not None and peer in promised:
            del promised[peer]
            if not promised:
                del self._promises[msg_id]

    def _on_first_seen(self, peer: PeerId, msg: Message, msg_id: bytes, now: float) -> None:
        self._promises.pop(msg_id, None)
        if self.peer_score is not None:
            self.peer_score.validate_message(peer, msg_id, now)
        if len(msg.data) >= self.params.idontwant_message_threshold:
            mesh = self.mesh.get(msg.topic)
            if mesh:
                out = None
                peers = self.peers
                for p in mesh:
                    if p != peer and peers.get(p) in _IDONTWANT_PROTOCOLS:
                        if out is None:  # one RPC object shared by all the events
                            out = RPC(control=ControlMessage(idontwant=[ControlIDontWant([msg_id])]))
                        self._send(p, out)

    def _on_accepted(self, peer: PeerId, msg: Message, msg_id: bytes, now: float) -> None:
        if self.peer_score is not None:
            self.peer_score.deliver_message(peer, msg.topic, msg_id, now)
        self.mcache.put(msg_id, msg)

    def _on_rejected(self, peer: PeerId, msg: Message, msg_id: bytes, now: float) -> None:
        if self.peer_score is not None:
            self.peer_score.reject_message(peer, msg.topic, msg_id, now)

    def _on_ignored(self, peer: PeerId, msg: Message, msg_id: bytes, now: float) -> None:
        if self.peer_score is not None:
            self.peer_score.reject_message(peer, msg.topic, msg_id, now, ignored=True)

    def _targets(self, msg: Message, msg_id: bytes, src: Optional[PeerId], now: float) -> set[PeerId]:
        topic = msg.topic
        tmap = self.topics.get(topic)
        if not tmap:
            return set()
        publish_threshold = self.thresholds.publish
        tosend: set[PeerId] = set()
        if src is None and self.params.flood_publish:
            for p in tmap:
                if p in self.direct or self.score(p) >= publish_threshold:
                    tosend.add(p)
        else:
            for p in self.direct:
                if p in tmap:
                    tosend.add(p)
            if self._floodsub_peers:
                for p in tmap:
                    if p in self._floodsub_peers and self.score(p) >= publish_threshold:
                        tosend.add(p)
            gmap = self.mesh.get(topic)
            if gmap is None:
                gmap = self.fanout.get(topic)
                if not gmap:
                    chosen = self._get_peers(
                        topic,
                        self.params.d,
                        lambda p: p not in self.direct and self.score(p) >= publish_threshold,
                    )
                    gmap = set(chosen)
                    if gmap:
                        self.fanout[topic] = gmap
                self._lastpub[topic] = now
            unwanted = self._unwanted
            for p in gmap:
                u = unwanted.get(p)
                if u is not None and msg_id in u:
                    continue
                tosend.add(p)
        if src is not None:
            tosend.discard(src)
        author = msg.from_peer
        if author is not None:
            for p in list(tosend):
                if p.to_bytes() == author:
                    tosend.discard(p)
        return tosend

    def _forward(self, msg: Message, msg_id: bytes, src: PeerId, now: float, have: Optional[set[PeerId]] = None) -> None:
        out = RPC(publish=[msg])  # shared by the events: shells must not mutate it
        for p in self._targets(msg, msg_id, src, now):
            if have is None or p not in have:
                self._send(p, out)

    def _publish(self, msg: Message, msg_id: bytes, now: float) -> None:
        self.mcache.put(msg_id, msg)
        out = RPC(publish=[msg])
        for p in self._targets(msg, msg_id, None, now):
            self._send(p, out)

    # ------------------------------------------------------------------ hooks: topics

    def _on_join(self, topic: str, now: float) -> None:
        if topic in self.mesh:
            return
        d = self.params.d
        gmap = self.fanout.pop(topic, None)
        self._lastpub.pop(topic, None)
        if gmap is not None:
            gmap = {p for p in gmap if self.score(p) >= 0 and not self.in_backoff(topic, p, now) and p not in self.direct}
        else:
            gmap = set()
        if len(gmap) < d:
            more = self._get_peers(
                topic,
                d - len(gmap),
                lambda p: p not in gmap
                and p not in self.direct
                and not self.in_backoff(topic, p, now)
                and self.score(p) >= 0,
            )
            gmap.update(more)
        self.mesh[topic] = set()
        for p in sorted(gmap):
            self._add_to_mesh(topic, p, now)
            self._send(p, RPC(control=ControlMessage(graft=[ControlGraft(topic)])))

    def _on_leave(self, topic: str, now: float) -> None:
        gmap = self.mesh.get(topic)
        if gmap is None:
            return
        for p in sorted(gmap):
            self._remove_from_mesh(topic, p, now)
            prune = self._make_prune(p, topic, self.params.do_px, True, now)
            self._send(p, RPC(control=ControlMessage(prune=[prune])))
            self._add_backoff(p, topic, self.params.unsubscribe_backoff, now)
        del self.mesh[topic]

    # ------------------------------------------------------------------ control

    def _handle_control(self, peer: PeerId, rpc: RPC, now: float) -> None:
        ctl = rpc.control
        assert ctl is not None
        iwant = self._handle_ihave(peer, ctl, now) if ctl.ihave else []
        msgs = self._handle_iwant(peer, ctl) if ctl.iwant else []
        # a peer we speak floodsub to cannot be a mesh member: its GRAFTs are ignored
        prune = self._handle_graft(peer, ctl, now) if ctl.graft and self._supports_mesh(peer) else []
        if ctl.prune:
            self._handle_prune(peer, ctl, now)
        if ctl.idontwant:
            self._handle_idontwant(peer, ctl)
        if ctl.extensions is not None and self.peers.get(peer) == MESHSUB_V13:
            if peer in self.peer_extensions:  # allowed once per stream (go: penalty of 10)
                if self.peer_score is not None:
                    self.peer_score.add_penalty(peer, 10)
            else:
                self.peer_extensions[peer] = ctl.extensions
        if iwant or msgs or prune:
            out = RPC(publish=msgs)
            if iwant or prune:
                out.control = ControlMessage(iwant=iwant, prune=prune)
            self._send(peer, out)

    def _handle_ihave(self, peer: PeerId, ctl: ControlMessage, now: float) -> list[ControlIWant]:
        p = self.params
        if self.score(peer) < self.thresholds.gossip:
            return []
        n = self._peerhave.get(peer, 0) + 1
        self._peerhave[peer] = n
        if n > p.max_ihave_messages:
            return []
        asked = self._iasked.get(peer, 0)
        if asked >= p.max_ihave_length:
            return []
        want: dict[bytes, None] = {}
        seen = self.seen
        for ih in ctl.ihave:
            if ih.topic not in self.mesh:
                continue
            for i, mid in enumerate(ih.message_ids):
                if i >= p.max_ihave_length:
                    break
                if not seen.has(mid, now):
                    want[mid] = None
        if not want:
            return []
        ids = list(want)
        self._rng.shuffle(ids)
        iask = min(len(ids), p.max_ihave_length - asked)
        del ids[iask:]
        self._iasked[peer] = asked + iask
        # one random ID per IWANT is the promise we hold the peer to
        mid = ids[self._rng.randrange(len(ids))]
        promised = self._promises.setdefault(mid, {})
        if peer not in promised:
            promised[peer] = now + p.iwant_followup_time
        return [ControlIWant(ids)]

    def _handle_iwant(self, peer: PeerId, ctl: ControlMessage) -> list[Message]:
        if self.score(peer) < self.thresholds.gossip:
            return []
        out: dict[bytes, Message] = {}
        unwanted = self._unwanted.get(peer)
        limit = self.params.gossip_retransmission
        for iw in ctl.iwant:
            for mid in iw.message_ids:
                if mid in out or (unwanted is not None and mid in unwanted):
                    continue
                msg, count = self.mcache.get_for_peer(mid, peer)
                if msg is None or count > limit:
                    continue
                out[mid] = msg
        return list(out.values())

    def _handle_graft(self, peer: PeerId, ctl: ControlMessage, now: float) -> list[ControlPrune]:
        p = self.params
        prune: list[str] = []
        do_px = p.do_px
        score = self.score(peer)
        for g in ctl.graft:
            topic = g.topic
            mesh = self.mesh.get(topic)
            if mesh is None:
                do_px = False  # never leak peers of a topic we are not in
                continue
            if peer in mesh:
                continue
            if peer in self.direct:
                prune.append(topic)
                do_px = False
                continue
            exp = self.backoff.get(topic, {}).get(peer)
            if exp is not None and now < exp:
                if self.peer_score is not None:
                    self.peer_score.add_penalty(peer, 1)
                    if now < exp + p.graft_flood_threshold - p.prune_backoff:
                        self.peer_score.add_penalty(peer, 1)
                do_px = False
                self._add_backoff(peer, topic, p.prune_backoff, now)
                prune.append(topic)
                continue
            if score < 0:
                prune.append(topic)
                do_px = False
                self._add_backoff(peer, topic, p.prune_backoff, now)
                continue
            if len(mesh) >= p.d_hi and not self.outbound.get(peer, False):
                prune.append(topic)
                self._add_backoff(peer, topic, p.prune_backoff, now)
                continue
            self._add_to_mesh(topic, peer, now)
        return [self._make_prune(peer, t, do_px, False, now) for t in prune]

    def _handle_prune(self, peer: PeerId, ctl: ControlMessage, now: float) -> None:
        score = self.score(peer)
        for pr in ctl.prune:
            topic = pr.topic
            if topic not in self.mesh:
                continue
            self._remove_from_mesh(topic, peer, now)
            if pr.backoff:
                self._add_backoff(peer, topic, float(pr.backoff), now)
            else:
                self._add_backoff(peer, topic, self.params.prune_backoff, now)
            if pr.peers:
                if score < self.thresholds.accept_px:
                    continue
                self._px_connect(pr.peers)

    def _px_connect(self, infos: list[PeerInfoPX]) -> None:
        infos = list(infos)
        if len(infos) > self.params.prune_peers:
            self._rng.shuffle(infos)
            del infos[self.params.prune_peers :]
        for info in infos:
            if info.peer_id is None:
                continue
            try:
                pid = PeerId.from_bytes(info.peer_id)
            except InvalidPeerIdError:
                continue
            if pid in self.peers or pid == self.local_peer:
                continue
            self._events.append(ConnectPeer(peer=pid, signed_peer_record=info.signed_peer_record, reason="px"))

    def _handle_idontwant(self, peer: PeerId, ctl: ControlMessage) -> None:
        p = self.params
        n = self._peerdontwant.get(peer, 0)
        if n >= p.max_idontwant_messages:
            return
        self._peerdontwant[peer] = n + 1
        unwanted = self._unwanted.setdefault(peer, {})
        total = 0
        ttl = p.idontwant_message_ttl
        for d in ctl.idontwant:
            for mid in d.message_ids:
                if total >= p.max_idontwant_length:
                    return
                total += 1
                unwanted[mid] = ttl

    # ------------------------------------------------------------------ heartbeat

    def _on_heartbeat(self, now: float) -> None:
        p = self.params
        self.heartbeat_ticks += 1
        ticks = self.heartbeat_ticks
        ps = self.peer_score

        if ticks % 15 == 0:
            slack = 2 * p.heartbeat_interval
            for topic in list(self.backoff):
                b = self.backoff[topic]
                for peer in [x for x, exp in b.items() if exp + slack < now]:
                    del b[peer]
                if not b:
                    del self.backoff[topic]
        self._peerhave.clear()
        self._iasked.clear()
        self._peerdontwant.clear()
        for peer in list(self._unwanted):
            u = self._unwanted[peer]
            for mid in list(u):
                t = u[mid] - 1
                if t <= 0:
                    del u[mid]
                else:
                    u[mid] = t
            if not u:
                del self._unwanted[peer]
        # broken promises
        broken: dict[PeerId, int] = {}
        for mid in list(self._promises):
            promised = self._promises[mid]
            for peer in [x for x, exp in promised.items() if exp < now]:
                broken[peer] = broken.get(peer, 0) + 1
                del promised[peer]
            if not promised:
                del self._promises[mid]
        if ps is not None:
            for peer, count in broken.items():
                ps.add_penalty(peer, count)
            if self._last_refresh is None or now - self._last_refresh >= ps.params.decay_interval:
                self._last_refresh = now
                ps.refresh(now)
        if ticks % p.direct_connect_ticks == 0:
            for peer in sorted(self.direct):
                if peer not in self.peers:
                    self._events.append(ConnectPeer(peer=peer, signed_peer_record=None, reason="direct"))

        scores: dict[PeerId, float] = {}

        def score(x: PeerId) -> float:
            s = scores.get(x)
            if s is None:
                s = scores[x] = self.score(x)
            return s

        tograft: dict[PeerId, list[str]] = {}
        toprune: dict[PeerId, list[str]] = {}
        no_px: set[PeerId] = set()
        rng = self._rng

        for topic in sorted(self.mesh):
            peers = self.mesh[topic]

            def prune_peer(x: PeerId) -> None:
                self._remove_from_mesh(topic, x, now)
                self._add_backoff(x, topic, p.prune_backoff, now)
                toprune.setdefault(x, []).append(topic)

            def graft_peer(x: PeerId) -> None:
                self._add_to_mesh(topic, x, now)
                tograft.setdefault(x, []).append(topic)

            for x in sorted(peers):
                if score(x) < 0:
                    prune_peer(x)
                    no_px.add(x)

            if len(peers) < p.d_lo:
                for x in self._get_peers(
                    topic,
                    p.d - len(peers),
                    lambda x: x not in peers and not self.in_backoff(topic, x, now) and x not in self.direct and score(x) >= 0,
                ):
                    graft_peer(x)

            if len(peers) > p.d_hi:
                plst = sorted(peers)
                rng.shuffle(plst)
                plst.sort(key=score, reverse=True)
                rest = plst[p.d_score :]
                rng.shuffle(rest)
                plst[p.d_score :] = rest
                outbound = sum(1 for x in plst[: p.d] if self.outbound.get(x, False))
                if outbound < p.d_out:

                    def rotate(i: int) -> None:
                        x = plst.pop(i)
                        plst.insert(0, x)

                    if outbound > 0:
                        have = outbound
                        i = 1
                        while i < p.d and have > 0:
                            if self.outbound.get(plst[i], False):
                                rotate(i)
                                have -= 1
                            i += 1
                    need = p.d_out - outbound
                    i = p.d
                    while i < len(plst) and need > 0:
                        if self.outbound.get(plst[i], False):
                            rotate(i)
                            need -= 1
                        i += 1
                for x in plst[p.d :]:
                    prune_peer(x)

            if len(peers) >= p.d_lo:
                outbound = sum(1 for x in peers if self.outbound.get(x, False))
                if outbound < p.d_out:
                    for x in self._get_peers(
                        topic,
                        p.d_out - outbound,
                        lambda x: x not in peers
                        and not self.in_backoff(topic, x, now)
                        and x not in self.direct
                        and self.outbound.get(x, False)
                        and score(x) >= 0,
                    ):
                        graft_peer(x)

            if ticks % p.opportunistic_graft_ticks == 0 and len(peers) > 1:
                plst = sorted(peers, key=score)
                median = score(plst[len(plst) // 2])
                if median < self.thresholds.opportunistic_graft:
                    for x in self._get_peers(
                        topic,
                        p.opportunistic_graft_peers,
                        lambda x: x not in peers
                        and not self.in_backoff(topic, x, now)
                        and x not in self.direct
                        and score(x) > median,
                    ):
                        graft_peer(x)

            self._emit_gossip(topic, peers, score)

        # fanout
        for topic in [t for t, last in self._lastpub.items() if last + p.fanout_ttl < now]:
            self.fanout.pop(topic, None)
            del self._lastpub[topic]
        for topic in sorted(self.fanout):
            fpeers = self.fanout[topic]
            tmap = self.topics.get(topic, set())
            for x in [x for x in fpeers if x not in tmap or score(x) < self.thresholds.publish]:
                fpeers.discard(x)
            if len(fpeers) < p.d:
                fpeers.update(
                    self._get_peers(
                        topic,
                        p.d - len(fpeers),
                        lambda x: x not in fpeers and x not in self.direct and score(x) >= self.thresholds.publish,
                    )
                )
            self._emit_gossip(topic, fpeers, score)

        # coalesce GRAFT/PRUNE/IHAVE per peer
        targets = set(tograft) | set(toprune) | set(self._gossip)
        for x in sorted(targets):
            if x not in self.peers:
                continue
            ctl = ControlMessage(
                ihave=self._gossip.get(x, []),
                graft=[ControlGraft(t) for t in tograft.get(x, ())],
                prune=[self._make_prune(x, t, p.do_px and x not in no_px, False, now) for t in toprune.get(x, ())],
            )
            self._send(x, RPC(control=ctl))
        self._gossip.clear()
        self.mcache.shift()

    def _emit_gossip(self, topic: str, exclude: set[PeerId], score: Callable[[PeerId], float]) -> None:
        mids = self.mcache.gossip_ids(topic)
        if not mids:
            return
        p = self.params
        rng = self._rng
        rng.shuffle(mids)
        cands = [
            x
            for x in self.topics.get(topic, ())
            if x not in exclude and x not in self.direct and self._supports_mesh(x) and score(x) >= self.thresholds.gossip
        ]
        cands.sort()
        target = max(p.d_lazy, int(p.gossip_factor * len(cands)))
        if target < len(cands):
            rng.shuffle(cands)
            del cands[target:]
        for x in cands:
            ids = mids
            if len(ids) > p.max_ihave_length:
                ids = rng.sample(mids, p.max_ihave_length)
            self._gossip.setdefault(x, []).append(ControlIHave(topic, list(ids)))
