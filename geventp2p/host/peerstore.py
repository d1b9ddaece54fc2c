"""In-memory peerstore: address, key, protocol, metadata and latency books.

Semantics follow go-libp2p ``core/peerstore`` and ``p2p/host/peerstore/pstoremem``:

* **Addresses** carry a TTL (seconds).  ``add_addrs`` only ever extends an
  address's life; ``set_addrs`` overwrites it (TTL <= 0 deletes);
  ``update_addrs(old_ttl, new_ttl)`` moves every address stored with exactly
  ``old_ttl`` (how the host turns ``CONNECTED_ADDR_TTL`` into
  ``RECENTLY_CONNECTED_ADDR_TTL`` on disconnect).  Expired addresses vanish on
  read; time comes from the injected ``clock``, so tests advance a fake clock.
  A trailing ``/p2p/<id>`` is stripped; one naming another peer is ignored.
* **Keys**: ``add_pubkey`` refuses a key that does not hash to the peer ID;
  ``pubkey`` falls back to the key inlined in the peer ID.
* **Protocols**: a set per peer (insertion ordered); ``set_protocols`` replaces
  it, as identify does.
* **Metadata**: free-form ``put``/``get`` (``AGENT_VERSION``, ``PROTOCOL_VERSION``).
* **Latency**: EWMA of RTT samples with smoothing 0.1.
* ``remove_peer`` drops keys, protocols, metadata and latency but, as in go,
  not addresses: they run out by TTL (``clear_addrs`` removes them now).

Every method runs without a greenlet switch, so the store needs no lock under
gevent.  Not for use from several OS threads.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable, Hashable, Iterable

from geventp2p.core import addr as _addr
from geventp2p.core.addr import Multiaddr
from geventp2p.core.peer import PeerId, PeerInfo
from geventp2p.crypto.keys import extract_public_key
from geventp2p.exceptions import (
    ConfigError,
    InvalidKeyError,
    MultiaddrError,
    PeerIdMismatchError,
    ResourceLimitExceeded,
)

__all__ = [
    "Peerstore",
    "ADDRESS_TTL",
    "TEMP_ADDR_TTL",
    "RECENTLY_CONNECTED_ADDR_TTL",
    "OWN_OBSERVED_ADDR_TTL",
    "PERMANENT_ADDR_TTL",
    "CONNECTED_ADDR_TTL",
    "LATENCY_EWMA_SMOOTHING",
    "AGENT_VERSION",
    "PROTOCOL_VERSION",
]

log = logging.getLogger(__name__)

#: Default lifetime of an address learnt from others (go ``AddressTTL``, 1 h).
ADDRESS_TTL = 3600.0
#: Short-lived address (go ``TempAddrTTL``, 2 min).
TEMP_ADDR_TTL = 120.0
#: Address of a peer we were connected to recently (go ``RecentlyConnectedAddrTTL``, 30 min).
RECENTLY_CONNECTED_ADDR_TTL = 1800.0
#: Our own addresses as observed by peers (go ``OwnObservedAddrTTL``, 30 min).
OWN_OBSERVED_ADDR_TTL = 1800.0
#: Never expires (bootstrap peers); distinct from CONNECTED_ADDR_TTL so
#: ``update_addrs`` can tell them apart (go: MaxInt64 and MaxInt64 - 1).
PERMANENT_ADDR_TTL = 1 << 62
#: Addresses of a peer we are connected to: effectively permanent until the
#: host moves them to RECENTLY_CONNECTED_ADDR_TTL on disconnect.
CONNECTED_ADDR_TTL = PERMANENT_ADDR_TTL - 1

#: Weight of a new RTT sample in the latency EWMA (go ``LatencyEWMASmoothing``).
LATENCY_EWMA_SMOOTHING = 0.1

#: Metadata keys written by identify (go uses the same strings).
AGENT_VERSION = "AgentVersion"
PROTOCOL_VERSION = "ProtocolVersion"

_MISSING = object()


def _expiry(now: float, ttl: float) -> float:
    return math.inf if ttl >= CONNECTED_ADDR_TTL else now + ttl


def _protos(args: tuple[Any, ...]) -> list[str]:
    """Accept ``f(p, "/a", "/b")`` and ``f(p, ["/a", "/b"])``; return unique strings in order."""
    if len(args) == 1 and not isinstance(args[0], str):
        args = tuple(args[0])
    out: list[str] = []
    for a in args:
        if not isinstance(a, str):
            raise TypeError(f"protocol IDs must be str, got {type(a).__name__}")
        if a not in out:
            out.append(a)
    return out


class _AddrEntry:
    __slots__ = ("ttl", "expiry")

    def __init__(self, ttl: float, expiry: float) -> None:
        self.ttl = ttl
        self.expiry = expiry


class Peerstore:
    """What we know about other peers (and our own keys).

    ``clock`` returns seconds (monotonic); ``max_addrs_per_peer`` and
    ``max_protocols_per_peer`` bound memory per peer.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_addrs_per_peer: int = 1000,
        max_protocols_per_peer: int = 1024,
    ) -> None:
        if max_addrs_per_peer < 1 or max_protocols_per_peer < 1:
            raise ConfigError("peerstore limits must be >= 1")
        self._clock = clock
        self.max_addrs_per_peer = max_addrs_per_peer
        self.max_protocols_per_peer = max_protocols_per_peer
        self._addrs: dict[Hashable, dict[Multiaddr, _AddrEntry]] = {}
        self._pubkeys: dict[Hashable, Any] = {}
        self._privkeys: dict[Hashable, Any] = {}
        self._protocols: dict[Hashable, dict[str, None]] = {}
        self._meta: dict[Hashable, dict[str, Any]] = {}
        self._latency: dict[Hashable, float] = {}

    # =============================================================== address book

    def _normalise(self, peer: Hashable, addr: Any) -> Multiaddr | None:
        """Validated address without a trailing /p2p/ of ``peer``; None to skip it."""
        ma = _addr.parse(addr)
        transport, pid = _addr.split_p2p(ma)
        if pid is None:
            return ma
        if not self._same_peer(peer, pid):
            log.debug("peerstore: ignoring %s given for peer %s", ma, peer)
            return None
        return transport

    @staticmethod
    def _same_peer(peer: Hashable, pid_text: str) -> bool:
        if isinstance(peer, PeerId):
            try:
                return PeerId.from_string(pid_text) == peer
            except Exception:
                return False
        return str(peer) == pid_text

    def _live(self, peer: Hashable) -> dict[Multiaddr, _AddrEntry] | None:
        """The peer's address map with expired entries removed (None if empty)."""
        book = self._addrs.get(peer)
        if book is None:
            return None
        now = self._clock()
        dead = [a for a, e in book.items() if e.expiry <= now]
        for a in dead:
            del book[a]
        if not book:
            del self._addrs[peer]
            return None
        return book

    def add_addr(self, peer: Hashable, addr: Any, ttl: float) -> None:
        """``add_addrs(peer, [addr], ttl)``."""
        self.add_addrs(peer, (addr,), ttl)

    def add_addrs(self, peer: Hashable, addrs: Iterable[Any], ttl: float) -> None:
        """Add addresses valid for ``ttl`` seconds; never shortens a known address's life.

        ``ttl <= 0`` does nothing.  Raises :class:`MultiaddrError` for a malformed address.
        """
        if ttl <= 0:
            return
        norm = [m for m in (self._normalise(peer, a) for a in addrs) if m is not None]
        if not norm:
            return
        now = self._clock()
        exp = _expiry(now, ttl)
        book = self._live(peer)
        if book is None:
            book = self._addrs[peer] = {}
        for ma in norm:
            entry = book.get(ma)
            if entry is None:
                if len(book) >= self.max_addrs_per_peer:
                    log.debug("peerstore: %s has %d addresses; dropping %s", peer, len(book), ma)
                    continue
                book[ma] = _AddrEntry(ttl, exp)
            else:
                if exp > entry.expiry:
                    entry.expiry = exp
                if ttl > entry.ttl:
                    entry.ttl = ttl
        if not book:
            del self._addrs[peer]

    def set_addr(self, peer: Hashable, addr: Any, ttl: float) -> None:
        """``set_addrs(peer, [addr], ttl)``."""
        self.set_addrs(peer, (addr,), ttl)

    def set_addrs(self, peer: Hashable, addrs: Iterable[Any], ttl: float) -> None:
        """Set the TTL of each address, replacing the old one; ``ttl <= 0`` removes them."""
        norm = [m for m in (self._normalise(peer, a) for a in addrs) if m is not None]
        book = self._live(peer)
        if ttl <= 0:
            if book is not None:
                for ma in norm:
                    book.pop(ma, None)
                if not book:
                    del self._addrs[peer]
            return
        if not norm:
            return
        if book is None:
            book = self._addrs[peer] = {}
        exp = _expiry(self._clock(), ttl)
        for ma in norm:
            entry = book.get(ma)
            if entry is None:
                if len(book) >= self.max_addrs_per_peer:
                    log.debug("peerstore: %s has %d addresses; dropping %s", peer, len(book), ma)
                    continue
                book[ma] = _AddrEntry(ttl, exp)
            else:
                entry.ttl = ttl
                entry.expiry = exp
        if not book:
            del self._addrs[peer]

    def update_addrs(self, peer: Hashable, old_ttl: float, new_ttl: float) -> None:
        """Give every address stored with exactly ``old_ttl`` the TTL ``new_ttl`` (from now).

        ``new_ttl <= 0`` removes those addresses.
        """
        book = self._live(peer)
        if book is None:
            return
        exp = _expiry(self._clock(), new_ttl)
        for ma in [a for a, e in book.items() if e.ttl == old_ttl]:
            if new_ttl <= 0:
                del book[ma]
            else:
                book[ma].ttl = new_ttl
                book[ma].expiry = exp
        if not book:
            del self._addrs[peer]

    def addrs(self, peer: Hashable) -> list[Multiaddr]:
        """The peer's unexpired addresses, oldest first."""
        book = self._live(peer)
        return list(book) if book else []

    def addr_ttl(self, peer: Hashable, addr: Any) -> float | None:
        """The TTL an address is stored with, or None if unknown/expired."""
        book = self._live(peer)
        if not book:
            return None
        try:
            ma = self._normalise(peer, addr)
        except MultiaddrError:
            return None
        entry = book.get(ma) if ma is not None else None
        return entry.ttl if entry else None

    def clear_addrs(self, peer: Hashable) -> None:
        """Forget all addresses of ``peer``."""
        self._addrs.pop(peer, None)

    def peers_with_addrs(self) -> list[Hashable]:
        """Peers with at least one unexpired address."""
        return [p for p in list(self._addrs) if self._live(p)]

    def gc(self) -> int:
        """Drop every expired address now; returns how many were dropped."""
        before = sum(len(b) for b in self._addrs.values())
        for p in list(self._addrs):
            self._live(p)
        return before - sum(len(b) for b in self._addrs.values())

    # =============================================================== key book

    def add_pubkey(self, peer: PeerId, key: Any) -> None:
        """Store ``peer``'s public key; raises :class:`PeerIdMismatchError` if it is not that peer's key."""
        if not isinstance(peer, PeerId):
            raise TypeError(f"peer must be a PeerId, got {type(peer).__name__}")
        if not peer.matches_public_key(key):
            try:
                actual: Any = PeerId.from_public_key(key)
            except Exception:
                actual = "an unusable key"
            raise PeerIdMismatchError(peer, actual)
        self._pubkeys[peer] = key

    def pubkey(self, peer: Hashable) -> Any:
        """The stored public key, else the one inlined in the peer ID, else None."""
        key = self._pubkeys.get(peer)
        if key is not None or not isinstance(peer, PeerId):
            return key
        try:
            key = extract_public_key(peer)
        except InvalidKeyError as exc:
            log.debug("peerstore: peer %s inlines an invalid key: %s", peer, exc)
            return None
        if key is not None:
            self._pubkeys[peer] = key
        return key

    def add_privkey(self, peer: PeerId, key: Any) -> None:
        """Store a private key (normally only our own); it must belong to ``peer``."""
        if not isinstance(peer, PeerId):
            raise TypeError(f"peer must be a PeerId, got {type(peer).__name__}")
        try:
            pub = key.public_key()
        except AttributeError:
            raise TypeError(f"expected a PrivateKey, got {type(key).__name__}") from None
        if not peer.matches_public_key(pub):
            raise PeerIdMismatchError(peer, PeerId.from_public_key(pub))
        self._privkeys[peer] = key

    def privkey(self, peer: Hashable) -> Any:
        """The stored private key, or None."""
        return self._privkeys.get(peer)

    def peers_with_keys(self) -> list[Hashable]:
        """Peers with a stored public or private key."""
        return list(dict.fromkeys([*self._pubkeys, *self._privkeys]))

    # =============================================================== protocol book

    def _check_proto_limit(self, peer: Hashable, n: int) -> None:
        if n > self.max_protocols_per_peer:
            raise ResourceLimitExceeded(
                scope=f"peerstore:{peer}", resource=f"protocols ({n} > {self.max_protocols_per_peer})"
            )

    def set_protocols(self, peer: Hashable, *protocols: Any) -> None:
        """Replace the peer's protocol set (identify semantics)."""
        protos = _protos(protocols)
        self._check_proto_limit(peer, len(protos))
        if protos:
            self._protocols[peer] = dict.fromkeys(protos)
        else:
            self._protocols.pop(peer, None)

    def add_protocols(self, peer: Hashable, *protocols: Any) -> None:
        """Add protocols to the peer's set."""
        protos = _protos(protocols)
        if not protos:
            return
        cur = self._protocols.get(peer, {})
        merged = dict(cur)
        merged.update(dict.fromkeys(protos))
        self._check_proto_limit(peer, len(merged))
        self._protocols[peer] = merged

    def remove_protocols(self, peer: Hashable, *protocols: Any) -> None:
        """Remove protocols from the peer's set (unknown ones are ignored)."""
        cur = self._protocols.get(peer)
        if cur is None:
            return
        for p in _protos(protocols):
            cur.pop(p, None)
        if not cur:
            del self._protocols[peer]

    def get_protocols(self, peer: Hashable) -> list[str]:
        """The peer's protocols, in the order learnt."""
        return list(self._protocols.get(peer, ()))

    def supports_protocols(self, peer: Hashable, *protocols: Any) -> list[str]:
        """Those of ``protocols`` the peer supports, in the order asked."""
        cur = self._protocols.get(peer, {})
        return [p for p in _protos(protocols) if p in cur]

    def first_supported_protocol(self, peer: Hashable, *protocols: Any) -> str | None:
        """The first of ``protocols`` the peer supports, or None."""
        cur = self._protocols.get(peer, {})
        for p in _protos(protocols):
            if p in cur:
                return p
        return None

    def peers_for_protocol(self, protocol: str) -> list[Hashable]:
        """Peers known to support ``protocol``."""
        return [p for p, cur in self._protocols.items() if protocol in cur]

    # =============================================================== metadata

    def put(self, peer: Hashable, key: str, value: Any) -> None:
        """Store a metadata value (e.g. ``AGENT_VERSION``)."""
        self._meta.setdefault(peer, {})[key] = value

    def get(self, peer: Hashable, key: str, default: Any = _MISSING) -> Any:
        """A metadata value; ``default`` if given, else ``KeyError`` when missing."""
        try:
            return self._meta[peer][key]
        except KeyError:
            if default is _MISSING:
                raise KeyError(f"no {key!r} stored for peer {peer}") from None
            return default

    # =============================================================== metrics

    def record_latency(self, peer: Hashable, rtt: float) -> None:
        """Fold one RTT sample (seconds) into the peer's EWMA."""
        if not isinstance(rtt, (int, float)) or rtt < 0 or rtt != rtt or rtt == math.inf:
            raise ValueError(f"rtt must be a finite number of seconds >= 0, got {rtt!r}")
        old = self._latency.get(peer)
        s = LATENCY_EWMA_SMOOTHING
        self._latency[peer] = float(rtt) if old is None else (1.0 - s) * old + s * float(rtt)

    def latency_ewma(self, peer: Hashable) -> float | None:
        """Smoothed RTT in seconds, or None before the first sample."""
        return self._latency.get(peer)

    # =============================================================== whole peers

    def peers(self) -> list[Hashable]:
        """Every peer any book knows about (addresses counted only while unexpired)."""
        out: dict[Hashable, None] = {}
        for p in self.peers_with_addrs():
            out[p] = None
        for book in (self._pubkeys, self._privkeys, self._protocols, self._meta, self._latency):
            for p in book:
                out[p] = None
        return list(out)

    def peer_info(self, peer: PeerId) -> PeerInfo:
        """``PeerInfo(peer, addrs)`` with the unexpired addresses."""
        return PeerInfo(peer, self.addrs(peer))

    def remove_peer(self, peer: Hashable) -> None:
        """Forget keys, protocols, metadata and latency of ``peer``; addresses stay until their TTL."""
        self._pubkeys.pop(peer, None)
        self._privkeys.pop(peer, None)
        self._protocols.pop(peer, None)
        self._meta.pop(peer, None)
        self._latency.pop(peer, None)

    def __repr__(self) -> str:
        return f"<Peerstore peers={len(self.peers())}>"
