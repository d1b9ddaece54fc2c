"""Identify (``/ipfs/id/1.0.0``) and identify push (``/ipfs/id/push/1.0.0``).

Spec: https://github.com/libp2p/specs/blob/master/identify/README.md

:class:`IdentifyService` is a host service (``start(host)`` / ``close()``):

* **Responder**: writes one ``LP(Identify)`` (≤ 4 KiB) with our key, listen
  addresses, the observed address of the requester, our protocols, versions
  and a signed peer record, then closes the stream (FIN).
* **Requester**: runs automatically on every new connection, in both
  directions, on its own greenlet: opens a stream on *that* connection, reads
  messages until EOF (8 KiB per message, 10 messages, 5 s), validates them
  (:func:`geventp2p.sansio.identify.validate`) and fills the peerstore:
  addresses (``CONNECTED_ADDR_TTL``), protocols (replaced), public key,
  ``AgentVersion`` and ``ProtocolVersion``.  Emits
  ``EvtPeerIdentificationCompleted`` or ``EvtPeerIdentificationFailed``, and
  ``EvtPeerProtocolsUpdated`` when the peer's protocol set changed.
  :meth:`IdentifyService.identify_wait` lets ``host.new_stream`` wait for it.
* **Push**: when our protocols or addresses change (``EvtLocalProtocolsUpdated`` /
  ``EvtLocalAddressesUpdated`` on the bus), a full message is pushed to every
  connected peer that supports push or has not told us yet (≤ 32 in parallel).
  Received pushes replace the peer's protocol list, may omit ``publicKey``.
* On the last disconnect from a peer its connected addresses drop to
  ``RECENTLY_CONNECTED_ADDR_TTL``.

Signed peer records: ours is re-signed whenever our addresses change (seq =
Unix time in ns, strictly increasing).  A received record is used only when it
verifies, is signed by the connection's peer and has a higher seq than the one
stored; otherwise ``listenAddrs`` are used.  The latest valid envelope of each
peer is available from :meth:`IdentifyService.signed_record`.

Resources: every identify and push stream, both sides, is charged to the resource
manager's ``libp2p.identify`` service (go's name and default limits); a side that
reads messages first reserves ``MAX_MESSAGE_SIZE`` in the stream's scope.  A
refusal resets the stream with code 0x1002.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import replace
from typing import Any

import gevent
from gevent.event import AsyncResult
from gevent.pool import Pool

import geventp2p
from geventp2p.config import IdentifyConfig
from geventp2p.core import addr as _addr
from geventp2p.core.event import (
    EvtLocalAddressesUpdated,
    EvtLocalProtocolsUpdated,
    EvtPeerIdentificationCompleted,
    EvtPeerIdentificationFailed,
    EvtPeerProtocolsUpdated,
)
from geventp2p.core.peer import PeerId
from geventp2p.core.record import Envelope, PeerRecord, seal_peer_record
from geventp2p.exceptions import ConfigError, P2PError, ResourceLimitExceeded
from geventp2p.net._workers import worker_group
from geventp2p.host.basic import reserve_stream_memory, set_stream_protocol, set_stream_service
from geventp2p.host.peerstore import (
    AGENT_VERSION,
    CONNECTED_ADDR_TTL,
    PROTOCOL_VERSION as PS_PROTOCOL_VERSION,
    RECENTLY_CONNECTED_ADDR_TTL,
    TEMP_ADDR_TTL,
)
from geventp2p.net import multistream
from geventp2p.net._deadline import Deadline
from geventp2p.sansio.identify import (
    ID,
    ID_PUSH,
    MAX_MESSAGE_SIZE,
    MAX_MESSAGES,
    MAX_OWN_MESSAGE_SIZE,
    PROTOCOL_VERSION,
    IdentifyInfo,
    IdentifyMessage,
    MessageReader,
    protocols_diff,
    validate,
)

__all__ = [
    "ID",
    "ID_PUSH",
    "PROTOCOL_VERSION",
    "IdentifyConfig",
    "IdentifyService",
    "SERVICE_NAME",
    "default_agent_version",
]

log = logging.getLogger(__name__)

#: The resource manager service identify streams are charged to (go's name).
SERVICE_NAME = "libp2p.identify"
#: Timeout of one identify or push exchange (go, js: 5 s).
DEFAULT_TIMEOUT = IdentifyConfig.timeout
#: Pushes sent in parallel (go: 32).
MAX_PARALLEL_PUSHES = 32
#: Signed records remembered (one per peer, oldest dropped first).
MAX_RECORDS = 10_000


def default_agent_version() -> str:
    return f"geventp2p/{geventp2p.__version__}"


class _ConnState:
    __slots__ = ("result", "greenlet")

    def __init__(self) -> None:
        self.result: AsyncResult[Any] = AsyncResult()
        self.greenlet: gevent.Greenlet | None = None


class IdentifyService:
    """Identify + identify push for one host, configured by an :class:`IdentifyConfig`.

    ``IdentifyService(IdentifyConfig(timeout=2.0))``; keyword overrides are applied
    on top of ``config`` (``IdentifyService(push=False)``).  ``agent_version``
    defaults to ``geventp2p/<version>``; ``timeout`` bounds each exchange; ``push``
    enables sending pushes; ``debounce`` merges bursts of local changes into one
    push round.  Invalid values raise ConfigError.
    """

    def __init__(self, config: IdentifyConfig | None = None, **overrides: Any) -> None:
        cfg = config if config is not None else IdentifyConfig()
        if not isinstance(cfg, IdentifyConfig):
            raise ConfigError(f"IdentifyService config must be an IdentifyConfig, got {type(cfg).__name__}")
        if overrides:
            try:
                cfg = replace(cfg, **overrides)
            except TypeError as exc:  # an unknown keyword
                raise ConfigError(f"IdentifyService: {exc}") from None
        self.config = cfg
        self.agent_version = cfg.agent_version if cfg.agent_version is not None else default_agent_version()
        self.protocol_version = cfg.protocol_version
        self.timeout = float(cfg.timeout)
        self.push_enabled = cfg.push
        self.debounce = float(cfg.debounce)
        self.signed_record_enabled = cfg.signed_record
        self.host: Any = None
        self.group = worker_group()
        self._conns: dict[Any, _ConnState] = {}
        self._records: OrderedDict[PeerId, Envelope] = OrderedDict()
        self._own_record: Envelope | None = None
        self._own_record_addrs: tuple | None = None
        self._own_seq = 0
        self._sub: Any = None
        self._em_done: Any = None
        self._em_failed: Any = None
        self._em_protos: Any = None
        self._closed = False

    # ================================================================ lifecycle

    def start(self, host: Any) -> None:
        """Register the handlers, the connection notifiee and the push loop on ``host``."""
        if self.host is not None:
            raise ConfigError("IdentifyService already started")
        self.host = host
        bus = host.event_bus
        self._em_done = bus.emitter(EvtPeerIdentificationCompleted)
        self._em_failed = bus.emitter(EvtPeerIdentificationFailed)
        self._em_protos = bus.emitter(EvtPeerProtocolsUpdated)
        host.set_stream_handler(ID, self._handle_identify)
        host.set_stream_handler(ID_PUSH, self._handle_push)
        if self.push_enabled:
            self._sub = bus.subscribe([EvtLocalProtocolsUpdated, EvtLocalAddressesUpdated], buffer=64,
                                      name="identify-push")
            self.group.spawn(self._push_loop, self._sub)
        host.network.notify(self)
        for conn in host.network.conns():  # connections that predate us
            self._ensure(conn)

    def close(self) -> None:
        """Stop every identify/push greenlet (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self.host is not None:
            try:
                self.host.network.stop_notify(self)
            except Exception:  # pragma: no cover - swarm without stop_notify
                pass
        if self._sub is not None:
            self._sub.close()
        self.group.kill(block=True, timeout=2.0)
        for st in list(self._conns.values()):
            if not st.result.ready():
                st.result.set(False)
        self._conns.clear()
        for em in (self._em_done, self._em_failed, self._em_protos):
            if em is not None:
                em.close()

    # ================================================================ notifiee (swarm dispatcher greenlet)

    def connected(self, net: Any, conn: Any) -> None:
        if not self._closed:
            self._ensure(conn)

    def disconnected(self, net: Any, conn: Any) -> None:
        st = self._conns.pop(conn, None)
        if st is not None and not st.result.ready():
            if st.greenlet is not None:
                st.greenlet.kill(block=False)
            st.result.set(False)
        peer = conn.remote_peer
        if self.host is not None and not self.host.network.conns_to_peer(peer):
            self.host.peerstore.update_addrs(peer, CONNECTED_ADDR_TTL, RECENTLY_CONNECTED_ADDR_TTL)

    # ================================================================ requester

    def _ensure(self, conn: Any) -> _ConnState:
        st = self._conns.get(conn)
        if st is None:
            st = self._conns[conn] = _ConnState()
            if self._closed or conn.closed:
                st.result.set(False)
            else:
                st.greenlet = self.group.spawn(self._identify_conn, conn, st)
        return st

    def identify_wait(self, conn: Any, timeout: float | None = None) -> bool:
        """Blocks the calling greenlet until identify on ``conn`` finished (True) or failed (False).

        Starts identify if it has not started.  Returns False on timeout too.
        """
        st = self._ensure(conn)
        st.result.wait(timeout)
        return bool(st.result.ready() and st.result.value)

    def identify_conn(self, conn: Any, timeout: float | None = None) -> IdentifyInfo:
        """Blocks the calling greenlet: run one identify exchange on ``conn`` now and apply it."""
        info = self._request(conn, self.timeout if timeout is None else timeout)
        self._apply(conn, info, push=False)
        return info

    def _identify_conn(self, conn: Any, st: _ConnState) -> None:
        peer = conn.remote_peer
        ok = False
        try:
            info = self._request(conn, self.timeout)
            self._apply(conn, info, push=False)
            ok = True
        except Exception as exc:  # gevent.GreenletExit/Timeout pass through (BaseException)
            log.debug("identify %s on %r failed: %s", peer, conn, exc)
            st.result.set(False)
            self._emit(self._em_failed, EvtPeerIdentificationFailed(peer=peer, reason=exc))
            return
        finally:
            st.greenlet = None  # a finished greenlet keeps its spawning stack alive
            if not ok and not st.result.ready():  # killed
                st.result.set(False)
        st.result.set(True)
        self._emit(self._em_done, EvtPeerIdentificationCompleted(
            peer=peer,
            conn=conn,
            listen_addrs=info.addrs,
            protocols=info.protocols,
            signed_peer_record=info.envelope,
            agent_version=info.agent_version or "",
            protocol_version=info.protocol_version or "",
            observed_addr=info.observed_addr,
        ))

    def _request(self, conn: Any, timeout: float) -> IdentifyInfo:
        deadline = Deadline(timeout)
        stream = conn.new_stream(timeout=timeout)
        try:
            stream.set_deadline(deadline.at)
            multistream.select_one_of(stream, [ID], timeout=max(0.001, deadline.left(timeout) or 0.0))
            set_stream_protocol(stream, ID)
            set_stream_service(stream, SERVICE_NAME)
            reserve_stream_memory(stream, MAX_MESSAGE_SIZE)
            try:
                msg = _read_all(stream)
            finally:
                stream.scope.release_memory(MAX_MESSAGE_SIZE)
        except BaseException:
            stream.reset()
            raise
        stream.close()
        return validate(msg, conn.remote_peer)

    # ================================================================ applying results

    def _apply(self, conn: Any, info: IdentifyInfo, *, push: bool) -> None:
        host = self.host
        ps = host.peerstore
        peer = info.peer
        if info.public_key is not None:
            ps.add_pubkey(peer, info.public_key)
        if info.record_error is not None:
            log.debug("identify: ignoring invalid signed record from %s: %s", peer, info.record_error)
        addrs = info.addrs
        if info.envelope is not None and info.record is not None:
            old = self._records.get(peer)
            old_seq = PeerRecord.unmarshal(old.payload).seq if old is not None else -1
            if info.record.seq > old_seq:
                self._records[peer] = info.envelope
                self._records.move_to_end(peer)
                while len(self._records) > MAX_RECORDS:
                    self._records.popitem(last=False)
            else:
                addrs = info.listen_addrs  # stale record: fall back as for an invalid one
        if addrs or not push:
            # replace: addresses no longer announced fade out after TEMP_ADDR_TTL
            ttl = CONNECTED_ADDR_TTL if host.network.conns_to_peer(peer) else RECENTLY_CONNECTED_ADDR_TTL
            ps.update_addrs(peer, CONNECTED_ADDR_TTL, TEMP_ADDR_TTL)
            if addrs:
                ps.add_addrs(peer, addrs, ttl)
        old_protos = ps.get_protocols(peer)
        try:
            ps.set_protocols(peer, info.protocols)
        except ResourceLimitExceeded:
            ps.set_protocols(peer, info.protocols[: ps.max_protocols_per_peer])
        new_protos = ps.get_protocols(peer)
        if info.agent_version is not None:
            ps.put(peer, AGENT_VERSION, info.agent_version)
        if info.protocol_version is not None:
            ps.put(peer, PS_PROTOCOL_VERSION, info.protocol_version)
        added, removed = protocols_diff(old_protos, new_protos)
        if added or removed:
            self._emit(self._em_protos, EvtPeerProtocolsUpdated(peer=peer, added=added, removed=removed))

    def signed_record(self, peer: PeerId) -> Envelope | None:
        """The latest valid signed peer record received from ``peer``."""
        return self._records.get(peer)

    @staticmethod
    def _emit(em: Any, evt: Any) -> None:
        if em is None or em.closed:
            return
        try:
            em.emit(evt)
        except P2PError:
            log.debug("identify: could not emit %s", type(evt).__name__, exc_info=True)

    # ================================================================ responder

    def own_record(self) -> Envelope | None:
        """Our signed peer record for the current addresses (re-signed when they change)."""
        if not self.signed_record_enabled:
            return None
        key = getattr(self.host, "private_key", None)
        if key is None:
            return None
        addrs = tuple(self.host.addrs())
        if self._own_record is None or addrs != self._own_record_addrs:
            self._own_seq = PeerRecord.new_seq(time.time_ns(), self._own_seq)
            rec = PeerRecord(self.host.id, self._own_seq, addrs)
            self._own_record = seal_peer_record(key, rec)
            self._own_record_addrs = addrs
        return self._own_record

    def build_message(self, observed: Any = None) -> IdentifyMessage:
        """Our full Identify message (``observed``: the remote's address as we see it)."""
        host = self.host
        obs = None
        if observed is not None:
            try:
                obs = _addr.to_bytes(observed)
            except (P2PError, TypeError, ValueError):
                obs = None
        key = getattr(host, "public_key", None)
        env = self.own_record()
        return IdentifyMessage(
            public_key=key.marshal() if key is not None else None,
            listen_addrs=tuple(a.to_bytes() for a in host.addrs()),
            protocols=tuple(host.get_protocols()),
            observed_addr=obs,
            protocol_version=self.protocol_version,
            agent_version=self.agent_version,
            signed_peer_record=env.marshal() if env is not None else None,
        )

    def _handle_identify(self, stream: Any) -> None:
        set_stream_service(stream, SERVICE_NAME)
        stream.set_deadline(time.monotonic() + self.timeout)
        msg = self.build_message(getattr(stream.conn, "remote_addr", None))
        stream.write(msg.encode(MAX_OWN_MESSAGE_SIZE))
        stream.close()

    def _handle_push(self, stream: Any) -> None:
        stream.set_deadline(time.monotonic() + self.timeout)
        conn = stream.conn
        set_stream_service(stream, SERVICE_NAME)
        reserve_stream_memory(stream, MAX_MESSAGE_SIZE)
        try:
            msg = _read_all(stream)
            info = validate(msg, conn.remote_peer)
        except (P2PError, OSError) as exc:
            log.debug("identify push from %s rejected: %s", conn.remote_peer, exc)
            stream.reset()
            return
        finally:
            stream.scope.release_memory(MAX_MESSAGE_SIZE)
        stream.close()
        self._apply(conn, info, push=True)

    # ================================================================ push

    def _push_loop(self, sub: Any) -> None:
        for _evt in sub:
            if self.debounce:
                gevent.sleep(self.debounce)
            while sub.qsize():  # merge a burst into one round
                try:
                    sub.get(timeout=0)
                except P2PError:
                    break
            self.push_all()

    def push_all(self, timeout: float | None = None) -> int:
        """Blocks the calling greenlet: push our Identify to every connected peer; returns successes."""
        host = self.host
        ps = host.peerstore
        targets = []
        for peer in host.network.peers():
            protos = ps.get_protocols(peer)
            if protos and ID_PUSH not in protos:
                continue  # identified and not a push peer
            conns = host.network.conns_to_peer(peer)
            if conns:
                targets.append(conns[0])
        if not targets:
            return 0
        pool = Pool(MAX_PARALLEL_PUSHES)
        results = [pool.spawn(self._push_one, c, self.timeout if timeout is None else timeout) for c in targets]
        pool.join()
        return sum(1 for g in results if g.value)

    def _push_one(self, conn: Any, timeout: float) -> bool:
        deadline = Deadline(timeout)
        try:
            stream = conn.new_stream(timeout=timeout)
        except P2PError as exc:
            log.debug("identify push to %s: no stream: %s", conn.remote_peer, exc)
            return False
        try:
            stream.set_deadline(deadline.at)
            multistream.select_one_of(stream, [ID_PUSH], timeout=max(0.001, deadline.left(timeout) or 0.0))
            set_stream_protocol(stream, ID_PUSH)
            set_stream_service(stream, SERVICE_NAME)
            stream.write(self.build_message(conn.remote_addr).encode(MAX_OWN_MESSAGE_SIZE))
            stream.close()
            return True
        except (P2PError, OSError) as exc:
            log.debug("identify push to %s failed: %s", conn.remote_peer, exc)
            stream.reset()
            return False


def _read_all(stream: Any) -> IdentifyMessage:
    """Blocks the calling greenlet: read LP(Identify) frames until EOF (stream deadline applies)."""
    reader = MessageReader(MAX_MESSAGE_SIZE, MAX_MESSAGES)
    while True:
        data = stream.read(MAX_MESSAGE_SIZE)
        if not data:
            break
        reader.feed(data)
    reader.eof()
    return reader.result()

