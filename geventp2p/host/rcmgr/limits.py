"""Limits of the resource manager: go-libp2p's default table, scaling, and limit files.

* :class:`BaseLimit` -- the eight figures of one scope (streams in/out/total, conns
  in/out/total, file descriptors, memory); :data:`UNLIMITED` is "no limit".
* :class:`BaseLimitIncrease` -- what one more GiB of memory adds, and the share of the
  file-descriptor budget.
* :class:`ScalingLimitConfig` -- base + increase for every kind of scope, with keyed
  overrides (a service, a protocol, a peer); :meth:`ScalingLimitConfig.scale` turns it
  into a :class:`ConcreteLimitConfig` for a memory and fd budget, as go's ``Scale``.
  :func:`default_limits` is go's ``DefaultLimits`` plus ``SetDefaultServiceLimits``
  (identify and ping).
* :class:`LimitConfig` -- go's ``PartialLimitConfig`` JSON form, so a go user's limits
  file works unchanged: top-level keys ``System``, ``Transient``, ``AllowlistedSystem``,
  ``AllowlistedTransient``, ``ServiceDefault``, ``Service``, ``ServicePeerDefault``,
  ``ServicePeer``, ``ProtocolDefault``, ``Protocol``, ``ProtocolPeerDefault``,
  ``ProtocolPeer``, ``PeerDefault``, ``Peer``, ``Conn``, ``Stream``; each limit has
  ``Streams``, ``StreamsInbound``, ``StreamsOutbound``, ``Conns``, ``ConnsInbound``,
  ``ConnsOutbound``, ``FD``, ``Memory``, and a value is an integer (``0`` means block
  all, as in go), ``"unlimited"``, ``"blockAll"`` or ``"default"`` (``Memory`` may
  also be a decimal string, which is how go writes 64-bit values).

Scaling (go ``ScalingLimitConfig.Scale``): with ``memory`` bytes for libp2p, every
increase is multiplied by ``memory`` in MiB and divided by 1024 (integer arithmetic;
at or below 128 MiB only the base limits apply);
the fd limit of a scope is ``fd_fraction * num_fd`` but never below its base.  By
default libp2p gets 1/8 of the machine's memory and half of the process's fd limit
(go ``AutoScale``).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field, fields, replace
from typing import Any, Iterable, Mapping, Optional

from geventp2p.exceptions import ConfigError

__all__ = [
    "UNLIMITED",
    "BaseLimit",
    "BaseLimitIncrease",
    "ScalingLimitConfig",
    "ConcreteLimitConfig",
    "LimitConfig",
    "default_limits",
    "system_budget",
    "SCOPE_KINDS",
    "IDENTIFY_SERVICE",
    "PING_SERVICE",
]

#: "No limit" (go uses ``math.MaxInt``).
UNLIMITED = sys.maxsize

_MiB = 1 << 20
_GiB = 1 << 30

#: go's service names for the built-in services.
IDENTIFY_SERVICE = "libp2p.identify"
PING_SERVICE = "libp2p.ping"
_IDENTIFY_PROTOCOLS = ("/ipfs/id/1.0.0", "/ipfs/id/push/1.0.0")
_PING_PROTOCOL = "/ipfs/ping/1.0.0"


@dataclass(frozen=True, slots=True)
class BaseLimit:
    """The limits of one scope (go ``BaseLimit``)."""

    streams: int = 0
    streams_inbound: int = 0
    streams_outbound: int = 0
    conns: int = 0
    conns_inbound: int = 0
    conns_outbound: int = 0
    fd: int = 0
    memory: int = 0

    @classmethod
    def unlimited(cls) -> "BaseLimit":
        return cls(*([UNLIMITED] * 8))

    def stream_limit(self, inbound: bool) -> int:
        return self.streams_inbound if inbound else self.streams_outbound

    def conn_limit(self, inbound: bool) -> int:
        return self.conns_inbound if inbound else self.conns_outbound


@dataclass(frozen=True, slots=True)
class BaseLimitIncrease:
    """What each GiB of libp2p memory adds (go ``BaseLimitIncrease``)."""

    streams: int = 0
    streams_inbound: int = 0
    streams_outbound: int = 0
    conns: int = 0
    conns_inbound: int = 0
    conns_outbound: int = 0
    memory: int = 0
    fd_fraction: float = 0.0


def _scale(base: BaseLimit, inc: BaseLimitIncrease, mib: int, num_fd: int) -> BaseLimit:
    memory = base.memory
    if inc.memory > 0:
        memory += (inc.memory * mib) >> 10
    fd = base.fd
    if num_fd > 0 and inc.fd_fraction > 0:
        fd = max(int(inc.fd_fraction * num_fd), base.fd)
    return BaseLimit(
        streams=base.streams + ((inc.streams * mib) >> 10),
        streams_inbound=base.streams_inbound + ((inc.streams_inbound * mib) >> 10),
        streams_outbound=base.streams_outbound + ((inc.streams_outbound * mib) >> 10),
        conns=base.conns + ((inc.conns * mib) >> 10),
        conns_inbound=base.conns_inbound + ((inc.conns_inbound * mib) >> 10),
        conns_outbound=base.conns_outbound + ((inc.conns_outbound * mib) >> 10),
        fd=fd,
        memory=memory,
    )


_Scaling = tuple[BaseLimit, BaseLimitIncrease]


@dataclass(slots=True)
class ScalingLimitConfig:
    """Base limits for a minimal node (128 MiB, 256 fds) and their increase per GiB."""

    system: _Scaling
    transient: _Scaling
    allowlisted_system: _Scaling
    allowlisted_transient: _Scaling
    service_default: _Scaling
    service_peer_default: _Scaling
    protocol_default: _Scaling
    protocol_peer_default: _Scaling
    peer_default: _Scaling
    conn: _Scaling
    stream: _Scaling
    service: dict[str, _Scaling] = field(default_factory=dict)
    service_peer: dict[str, _Scaling] = field(default_factory=dict)
    protocol: dict[str, _Scaling] = field(default_factory=dict)
    protocol_peer: dict[str, _Scaling] = field(default_factory=dict)
    peer: dict[str, _Scaling] = field(default_factory=dict)

    def scale(self, memory: int, num_fd: int) -> "ConcreteLimitConfig":
        """Concrete limits for ``memory`` bytes and ``num_fd`` descriptors (go ``Scale``)."""
        mib = memory >> 20 if memory > 128 * _MiB else 0  # below 128 MiB: base limits only

        def s(pair: _Scaling) -> BaseLimit:
            return _scale(pair[0], pair[1], mib, num_fd)

        def smap(m: Mapping[str, _Scaling]) -> dict[str, BaseLimit]:
            return {k: s(v) for k, v in m.items()}

        return ConcreteLimitConfig(
            system=s(self.system),
            transient=s(self.transient),
            allowlisted_system=s(self.allowlisted_system),
            allowlisted_transient=s(self.allowlisted_transient),
            service_default=s(self.service_default),
            service_peer_default=s(self.service_peer_default),
            protocol_default=s(self.protocol_default),
            protocol_peer_default=s(self.protocol_peer_default),
            peer_default=s(self.peer_default),
            conn=s(self.conn),
            stream=s(self.stream),
            service=smap(self.service),
            service_peer=smap(self.service_peer),
            protocol=smap(self.protocol),
            protocol_peer=smap(self.protocol_peer),
            peer=smap(self.peer),
        )

    def auto_scale(self, total_memory: Optional[int] = None, fd_limit: Optional[int] = None) -> "ConcreteLimitConfig":
        """Scale to 1/8 of the machine's memory and half of the fd limit (go ``AutoScale``)."""
        memory, fds = system_budget(total_memory, fd_limit)
        return self.scale(memory, fds)


def system_budget(total_memory: Optional[int] = None, fd_limit: Optional[int] = None) -> tuple[int, int]:
    """``(memory, fds)`` libp2p may use here: 1/8 of RAM and half of the soft fd limit."""
    if total_memory is None:
        total_memory = _total_memory()
    if fd_limit is None:
        fd_limit = _fd_limit()
    return total_memory // 8, fd_limit // 2


def _total_memory() -> int:
    # sysconf first: importing psutil costs ~1.7 MiB of RSS in every node that starts
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX (Windows)
        pass
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:  # pragma: no cover - psutil missing or unsupported platform
        return 1 * _GiB


def _fd_limit() -> int:
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        return soft if soft != resource.RLIM_INFINITY else 1 << 20
    except Exception:  # pragma: no cover - not POSIX
        return 1024


def _limit(streams: tuple[int, int, int] = (0, 0, 0), conns: tuple[int, int, int] = (0, 0, 0),
           fd: int = 0, memory: int = 0) -> BaseLimit:
    si, so, st = streams
    ci, co, ct = conns
    return BaseLimit(st, si, so, ct, ci, co, fd, memory)


def _inc(streams: tuple[int, int, int] = (0, 0, 0), conns: tuple[int, int, int] = (0, 0, 0),
         memory: int = 0, fd_fraction: float = 0.0) -> BaseLimitIncrease:
    si, so, st = streams
    ci, co, ct = conns
    return BaseLimitIncrease(st, si, so, ct, ci, co, memory, fd_fraction)


def default_limits() -> ScalingLimitConfig:
    """go-libp2p's ``DefaultLimits`` with ``SetDefaultServiceLimits`` for identify and ping.

    Figures are (inbound, outbound, total); see
    https://github.com/libp2p/go-libp2p/tree/master/p2p/host/resource-manager#limits
    """
    system = (_limit((1024, 2048, 2048), (64, 128, 128), 256, 128 * _MiB),
              _inc((1024, 2048, 2048), (64, 128, 128), 1 * _GiB, 1.0))
    transient = (_limit((128, 256, 256), (32, 64, 64), 64, 32 * _MiB),
                 _inc((128, 256, 256), (16, 32, 32), 128 * _MiB, 0.25))
    cfg = ScalingLimitConfig(
        system=system,
        transient=transient,
        allowlisted_system=system,
        allowlisted_transient=transient,
        service_default=(_limit((1024, 4096, 4096), memory=64 * _MiB),
                         _inc((512, 2048, 2048), memory=128 * _MiB)),
        service_peer_default=(_limit((128, 256, 256), memory=16 * _MiB),
                              _inc((4, 8, 8), memory=4 * _MiB)),
        protocol_default=(_limit((512, 2048, 2048), memory=64 * _MiB),
                          _inc((256, 512, 512), memory=164 * _MiB)),
        # go's increase of protocol×peer memory is 4 bytes per GiB (sic); kept as is.
        protocol_peer_default=(_limit((64, 128, 256), memory=16 * _MiB),
                               _inc((4, 8, 16), memory=4)),
        peer_default=(_limit((256, 512, 512), (8, 8, 8), 4, 64 * _MiB),
                      _inc((128, 256, 256), memory=128 * _MiB, fd_fraction=1 / 64)),
        conn=(_limit(conns=(1, 1, 1), fd=1, memory=32 * _MiB), _inc()),
        stream=(_limit((1, 1, 1), memory=16 * _MiB), _inc()),
    )
    # identify
    svc = (_limit((64, 64, 128), memory=4 * _MiB), _inc((64, 64, 128), memory=4 * _MiB))
    cfg.service[IDENTIFY_SERVICE] = svc
    cfg.service_peer[IDENTIFY_SERVICE] = (_limit((16, 16, 32), memory=1 * _MiB), _inc())
    for proto in _IDENTIFY_PROTOCOLS:
        cfg.protocol[proto] = svc
        cfg.protocol_peer[proto] = (_limit((16, 16, 32), memory=32 * (256 * _MiB + 16 * 1024)), _inc())
    # ping
    svc = (_limit((64, 64, 64), memory=4 * _MiB), _inc((64, 64, 64), memory=4 * _MiB))
    cfg.service[PING_SERVICE] = svc
    cfg.protocol[_PING_PROTOCOL] = svc
    per_peer = (_limit((2, 3, 4), memory=32 * (256 * _MiB + 16 * 1024)), _inc())
    cfg.service_peer[PING_SERVICE] = per_peer
    cfg.protocol_peer[_PING_PROTOCOL] = per_peer
    return cfg


#: go's scope kinds in the order ``geventp2p limits --show`` prints them.
SCOPE_KINDS = (
    "System", "Transient", "AllowlistedSystem", "AllowlistedTransient",
    "ServiceDefault", "Service", "ServicePeerDefault", "ServicePeer",
    "ProtocolDefault", "Protocol", "ProtocolPeerDefault", "ProtocolPeer",
    "PeerDefault", "Peer", "Conn", "Stream",
)
_SINGLE = {
    "System": "system", "Transient": "transient",
    "AllowlistedSystem": "allowlisted_system", "AllowlistedTransient": "allowlisted_transient",
    "ServiceDefault": "service_default", "ServicePeerDefault": "service_peer_default",
    "ProtocolDefault": "protocol_default", "ProtocolPeerDefault": "protocol_peer_default",
    "PeerDefault": "peer_default", "Conn": "conn", "Stream": "stream",
}
# keyed kind -> (attribute, attribute of its default)
_KEYED = {
    "Service": ("service", "service_default"),
    "ServicePeer": ("service_peer", "service_peer_default"),
    "Protocol": ("protocol", "protocol_default"),
    "ProtocolPeer": ("protocol_peer", "protocol_peer_default"),
    "Peer": ("peer", "peer_default"),
}
_JSON_FIELDS = {
    "Streams": "streams", "StreamsInbound": "streams_inbound", "StreamsOutbound": "streams_outbound",
    "Conns": "conns", "ConnsInbound": "conns_inbound", "ConnsOutbound": "conns_outbound",
    "FD": "fd", "Memory": "memory",
}


@dataclass(frozen=True, slots=True)
class ConcreteLimitConfig:
    """Every limit decided (go ``ConcreteLimitConfig``); keyed maps fall back to defaults."""

    system: BaseLimit
    transient: BaseLimit
    allowlisted_system: BaseLimit
    allowlisted_transient: BaseLimit
    service_default: BaseLimit
    service_peer_default: BaseLimit
    protocol_default: BaseLimit
    protocol_peer_default: BaseLimit
    peer_default: BaseLimit
    conn: BaseLimit
    stream: BaseLimit
    service: Mapping[str, BaseLimit] = field(default_factory=dict)
    service_peer: Mapping[str, BaseLimit] = field(default_factory=dict)
    protocol: Mapping[str, BaseLimit] = field(default_factory=dict)
    protocol_peer: Mapping[str, BaseLimit] = field(default_factory=dict)
    peer: Mapping[str, BaseLimit] = field(default_factory=dict)

    def for_service(self, name: str) -> BaseLimit:
        return self.service.get(name, self.service_default)

    def for_service_peer(self, name: str) -> BaseLimit:
        return self.service_peer.get(name, self.service_peer_default)

    def for_protocol(self, proto: str) -> BaseLimit:
        return self.protocol.get(proto, self.protocol_default)

    def for_protocol_peer(self, proto: str) -> BaseLimit:
        return self.protocol_peer.get(proto, self.protocol_peer_default)

    def for_peer(self, peer: Any) -> BaseLimit:
        return self.peer.get(str(peer), self.peer_default)

    def rows(self) -> Iterable[tuple[str, BaseLimit]]:
        """``(go scope name, limit)`` rows, keyed scopes as ``Protocol:/ipfs/ping/1.0.0``."""
        for kind in SCOPE_KINDS:
            if kind in _SINGLE:
                yield kind, getattr(self, _SINGLE[kind])
            else:
                for key, lim in sorted(getattr(self, _KEYED[kind][0]).items()):
                    yield f"{kind}:{key}", lim


def _parse_value(kind: str, name: str, value: Any) -> Optional[int]:
    """``None`` for "default", else the concrete figure."""
    if value == "default":
        return None
    if value == "unlimited":
        return UNLIMITED
    if value == "blockAll":
        return 0
    if isinstance(value, str) and name == "Memory":
        try:
            value = int(value, 10)
        except ValueError:
            raise ConfigError(f"limits: {kind}.{name}: not a number: {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(
            f"limits: {kind}.{name} must be an integer, \"unlimited\", \"blockAll\" or "
            f"\"default\", got {value!r}"
        )
    if value < 0:
        raise ConfigError(f"limits: {kind}.{name} must not be negative, got {value}")
    return value  # 0 means block all, as in go


def _parse_limits(kind: str, obj: Any) -> dict[str, int]:
    if not isinstance(obj, Mapping):
        raise ConfigError(f"limits: {kind} must be an object, got {type(obj).__name__}")
    out: dict[str, int] = {}
    for key, value in obj.items():
        attr = _JSON_FIELDS.get(key)
        if attr is None:
            raise ConfigError(f"limits: unknown field {kind}.{key} (expected one of {', '.join(_JSON_FIELDS)})")
        parsed = _parse_value(kind, key, value)
        if parsed is not None:
            out[attr] = parsed
    return out


@dataclass(frozen=True, slots=True)
class LimitConfig:
    """Partial limits that override the defaults (go ``PartialLimitConfig``).

    Each entry maps a go scope kind (``"System"``, ``"ProtocolPeer"``...) to field
    overrides; the keyed kinds map a service name, protocol ID or peer ID to them.
    Build it from go's JSON with :meth:`from_json` / :meth:`load`.
    """

    single: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    keyed: Mapping[str, Mapping[str, Mapping[str, int]]] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> "LimitConfig":
        if not isinstance(obj, Mapping):
            raise ConfigError("limits: the top level must be a JSON object")
        single: dict[str, dict[str, int]] = {}
        keyed: dict[str, dict[str, dict[str, int]]] = {}
        for kind, value in obj.items():
            if kind in _SINGLE:
                single[kind] = _parse_limits(kind, value)
            elif kind in _KEYED:
                if not isinstance(value, Mapping):
                    raise ConfigError(f"limits: {kind} must map names to limits")
                keyed[kind] = {str(k): _parse_limits(f"{kind}[{k}]", v) for k, v in value.items()}
            else:
                raise ConfigError(f"limits: unknown scope kind {kind!r} (expected one of {', '.join(SCOPE_KINDS)})")
        return cls(single, keyed)

    @classmethod
    def from_json(cls, text: str) -> "LimitConfig":
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"limits: invalid JSON: {exc}") from None
        return cls.from_dict(obj)

    @classmethod
    def load(cls, path: str) -> "LimitConfig":
        try:
            with open(path, encoding="utf-8") as fh:
                return cls.from_json(fh.read())
        except OSError as exc:
            raise ConfigError(f"limits: cannot read {path}: {exc.strerror}") from None

    def build(self, defaults: ConcreteLimitConfig) -> ConcreteLimitConfig:
        """Apply the overrides to ``defaults`` (go ``PartialLimitConfig.Build``)."""
        changes: dict[str, Any] = {}
        for kind, attr in _SINGLE.items():
            over = self.single.get(kind)
            if over:
                changes[attr] = replace(getattr(defaults, attr), **over)
        for kind, (attr, default_attr) in _KEYED.items():
            entries = self.keyed.get(kind)
            if not entries:
                continue
            fallback = changes.get(default_attr, getattr(defaults, default_attr))
            table = dict(getattr(defaults, attr))
            for key, over in entries.items():
                table[key] = replace(table.get(key, fallback), **over)
            changes[attr] = table
        return replace(defaults, **changes)


def limit_fields() -> tuple[str, ...]:
    """The JSON field names of one limit, in go's order."""
    return tuple(_JSON_FIELDS)


def format_limit_value(value: int) -> str:
    return "unlimited" if value >= UNLIMITED else str(value)


assert tuple(f.name for f in fields(BaseLimit)) == tuple(_JSON_FIELDS.values())
