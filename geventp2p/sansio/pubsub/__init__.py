"""Sans-I/O pubsub: the RPC codec, message signing and IDs, caches, the floodsub
and gossipsub routers and gossipsub v1.1 peer scoring.

Specs: https://github.com/libp2p/specs/tree/master/pubsub (floodsub, gossipsub
v1.0, v1.1, v1.2, v1.3; ``GossipSubParams(v13=False)`` leaves 1.3 out).  No sockets, greenlets, clocks or logging: every input takes
``now`` (float seconds, monotonic), every output is an event.

Modules
-------
* :mod:`.rpc` -- ``Message``, ``SubOpts``, ``ControlIHave``/``IWant``/``Graft``/
  ``Prune`` (``PeerInfoPX`` peers, ``backoff`` seconds)/``IDontWant``/``Extensions`` (v1.3),
  ``ControlMessage``, ``RPC``; ``encode_rpc(rpc) -> bytes``,
  ``decode_rpc(buf, max_size=MAX_RPC_SIZE) -> RPC`` (raises ``RPCTooLargeError``
  / ``RPCDecodeError`` from :mod:`geventp2p.exceptions`), ``frame_rpc`` (with the
  uvarint length prefix), ``split_rpc(rpc, limit)`` (into RPCs of at most ``limit``
  bytes each).  A decoded ``Message`` keeps its wire bytes in ``.raw``.
* :mod:`.sign` -- ``sign_message(msg, private_key)``, ``verify_message(msg)``
  (raises ``MessageSignatureError``), ``SignaturePolicy`` (STRICT_SIGN,
  STRICT_NO_SIGN), ``check_policy``, ``SeqnoCounter``, message-ID functions
  ``default_msg_id`` (go: from + seqno), ``js_msg_id``, ``py_msg_id``, ``content_msg_id``.
* :mod:`.cache` -- ``MessageCache`` (mcache), ``SeenCache``.
* :mod:`.router` -- the events, ``ValidationResult``, the base ``Router`` and
  ``FloodSubRouter``; protocol IDs.
* :mod:`.gossipsub` -- ``GossipSubParams``, ``GossipSubRouter``.
* :mod:`.score` -- ``PeerScoreParams``, ``TopicScoreParams``,
  ``PeerScoreThresholds``, ``PeerScore``.

The router contract (what a shell does)
---------------------------------------
Construct ``FloodSubRouter(local_peer)`` or ``GossipSubRouter(local_peer, params=None,
score_params=None, thresholds=None)`` (scoring is on when ``score_params`` is given);
both take the keywords ``signature_policy`` (STRICT_SIGN), ``msg_id_fn`` (go's
from + seqno; SHA-256 of the data under STRICT_NO_SIGN), ``seen_ttl`` (120 s),
``max_pending_validations`` (8192) and ``max_topics_per_peer`` (5000).  Gossipsub also
takes ``direct_peers``, ``peer_record`` (``PeerId -> signed peer record bytes or None``,
attached to the PX we send) and ``seed`` (for reproducible peer selection).
``router.protocols`` lists the protocol IDs to offer, most preferred first.

Inputs (all cheap, none blocks; call them from one greenlet):

* ``add_peer(peer, protocol, now, outbound=False, ip=None)`` once our outbound
  stream to ``peer`` (a :class:`~geventp2p.core.peer.PeerId`) negotiated
  ``protocol``; ``outbound`` = we dialed the connection; ``ip`` feeds the IP
  colocation score.  Emits the hello RPC (our subscriptions).
* ``remove_peer(peer, now)`` when the peer's streams or connection are gone.
* ``handle_rpc(peer, rpc, now)`` for each RPC read from the peer's inbound stream
  (the shell decodes with ``decode_rpc``).  On a decode error call
  ``handle_rpc_error(peer, reason, now)`` instead: the peer is penalised and a
  ``DropPeer`` comes out.
* ``join(topic, now)`` / ``leave(topic, now)``.
* ``publish(msg, now) -> msg_id`` for our own message, already signed and
  validated by the shell (raises ``LocalProtocolError`` on a policy violation or
  a duplicate ID).
* ``validation_result(msg_id, ValidationResult.ACCEPT|REJECT|IGNORE, now)``
  answering a ``Validate`` event.
* ``heartbeat(now)`` every ``params.heartbeat_interval`` (gossipsub; first one
  after ``params.heartbeat_initial_delay``).  Floodsub only needs it for the seen cache.
* ``set_msg_id_fn(topic, fn)``; gossipsub also ``set_app_score(peer, value)`` (P5),
  ``add_direct_peer(peer, now)``, and the query ``score(peer)``.

Outputs, drained with ``events()`` (a list, in order):

* ``SendRPC(peer, rpc)`` -- write ``frame_rpc(rpc)`` on the outbound stream (split
  with ``split_rpc`` when larger than the peer's limit).  One RPC object may be shared
  by several events: never mutate it; its encoding may be cached by identity.
* ``Validate(msg, msg_id, received_from)`` -- verify the signature (StrictSign:
  ``verify_message``) and run validators, then call ``validation_result``.
  Presence of the signature fields was already checked by the router.
* ``Deliver(msg, msg_id, received_from)`` -- to the local subscribers of
  ``msg.topic`` (``received_from`` None for own messages).
* ``PeerJoinedTopic(topic, peer)`` / ``PeerLeftTopic(topic, peer)``.
* ``DropPeer(peer, reason)`` -- reset the peer's pubsub streams.
* ``ConnectPeer(peer, signed_peer_record, reason)`` -- gossipsub wants a connection:
  ``reason`` "px" (a PRUNE's peer exchange; verify the record before using its
  addresses) or "direct" (a configured direct peer that is not connected).
* ``MessageDropped(msg, msg_id, received_from, reason)`` -- for tracers.

Queries: ``peers`` (peer -> protocol), ``topics`` (topic -> subscribed peers),
``peer_topics``, ``joined``, ``topic_peers(topic)``, ``mesh_peers(topic)``,
``msg_id(msg)``, ``pending_validations``; gossipsub also ``fanout_peers(topic)``,
``in_backoff(topic, peer, now)``, ``unwanted(peer)``, ``promises()``, ``mesh``,
``fanout``, ``backoff``, ``direct``, ``peer_score``.
"""

from __future__ import annotations

from geventp2p.sansio.pubsub.cache import MessageCache, SeenCache
from geventp2p.sansio.pubsub.gossipsub import GossipSubParams, GossipSubRouter
from geventp2p.sansio.pubsub.router import (
    FLOODSUB_ID,
    GOSSIPSUB_PROTOCOLS,
    MESHSUB_V10,
    MESHSUB_V11,
    MESHSUB_V12,
    MESHSUB_V13,
    ConnectPeer,
    Deliver,
    DropPeer,
    Event,
    FloodSubRouter,
    MessageDropped,
    PeerJoinedTopic,
    PeerLeftTopic,
    Router,
    SendRPC,
    Validate,
    ValidationResult,
)
from geventp2p.sansio.pubsub.rpc import (
    MAX_RPC_SIZE,
    RPC,
    ControlExtensions,
    ControlGraft,
    ControlIDontWant,
    ControlIHave,
    ControlIWant,
    ControlMessage,
    ControlPrune,
    Message,
    PeerInfoPX,
    SubOpts,
    decode_message,
    decode_rpc,
    encode_message,
    encode_rpc,
    frame_rpc,
    split_rpc,
)
from geventp2p.sansio.pubsub.score import (
    PeerScore,
    PeerScoreParams,
    PeerScoreThresholds,
    TopicScoreParams,
    score_parameter_decay,
)
from geventp2p.sansio.pubsub.sign import (
    SIGN_PREFIX,
    MsgIdFn,
    SeqnoCounter,
    SignaturePolicy,
    check_policy,
    content_msg_id,
    default_msg_id,
    js_msg_id,
    py_msg_id,
    sign_message,
    verify_message,
)

__all__ = [
    "MAX_RPC_SIZE",
    "RPC",
    "ControlExtensions",
    "ControlGraft",
    "ControlIDontWant",
    "ControlIHave",
    "ControlIWant",
    "ControlMessage",
    "ControlPrune",
    "Message",
    "PeerInfoPX",
    "SubOpts",
    "decode_message",
    "decode_rpc",
    "encode_message",
    "encode_rpc",
    "frame_rpc",
    "split_rpc",
    "SIGN_PREFIX",
    "MsgIdFn",
    "SeqnoCounter",
    "SignaturePolicy",
    "check_policy",
    "content_msg_id",
    "default_msg_id",
    "js_msg_id",
    "py_msg_id",
    "sign_message",
    "verify_message",
    "MessageCache",
    "SeenCache",
    "FLOODSUB_ID",
    "GOSSIPSUB_PROTOCOLS",
    "MESHSUB_V10",
    "MESHSUB_V11",
    "MESHSUB_V12",
    "MESHSUB_V13",
    "ConnectPeer",
    "Deliver",
    "DropPeer",
    "Event",
    "FloodSubRouter",
    "MessageDropped",
    "PeerJoinedTopic",
    "PeerLeftTopic",
    "Router",
    "SendRPC",
    "Validate",
    "ValidationResult",
    "GossipSubParams",
    "GossipSubRouter",
    "PeerScore",
    "PeerScoreParams",
    "PeerScoreThresholds",
    "TopicScoreParams",
    "score_parameter_decay",
]
