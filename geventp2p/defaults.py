"""Default component choices, the name -> factory table, and host assembly (``new_host``).

Defaults (go-libp2p ``defaults.go`` style: they fill only what the caller left out):

* listen on ``/ip4/127.0.0.1/tcp/0`` and ``/ip4/127.0.0.1/udp/0/quic-v1``
* security: Noise, then TLS 1.3 (both offer our muxer ids, in order, for early muxer negotiation)
* muxers: yamux, then mplex
* transports: TCP, QUIC v1 (``/udp/N/quic-v1``), WebSocket (``/tcp/N/ws``; no ``/wss``)
* services: identify and ping; echo and perf are off (perf amplifies traffic).
* a connection manager with go's watermarks (``ConnManagerConfig()``: low 160,
  high 192, 60 s grace, 10 s silence);
* the peerstore forgets a disconnected peer's keys, protocols and metadata after
  60 s (go's ``pstoremanager``).
* a resource manager with go-libp2p's default limits, scaled to this machine (1/8
  of its memory, half of the process's fd limit); :func:`unlimited_limits` lifts
  every limit (tests, benchmarks).

``security``, ``muxers`` and ``transports`` take names or ready instances, in
order of preference.  The names are the keys of :data:`FACTORIES`, the one
table the CLI and the demo build from too:

====================  ==============================================
kind                  names
====================  ==============================================
``security``          ``noise``, ``tls``, ``plaintext`` (tests/debugging only)
``muxer``             ``yamux``, ``mplex``
``transport``         ``tcp``, ``ws``, ``quic``, ``memory``
``service``           ``identify``, ``ping``, ``echo``, ``perf``
====================  ==============================================

``services`` takes the same kind of list: names from the table, or objects with
``start(host)`` and ``close()``.  It replaces the default list, so
``services=["identify", "ping", "echo", MyService()]`` keeps the defaults and adds
two; ``services=[]`` starts none.  The ``enable_identify``/``enable_ping``/
``enable_echo``/``enable_perf`` flags still work for one release and warn
(``DeprecationWarning``).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Sequence, Union

from geventp2p.config import ConnManagerConfig, HostConfig, IdentifyConfig, NoiseConfig
from geventp2p.core.mux import Multiplexer
from geventp2p.exceptions import ConfigError

if TYPE_CHECKING:
    from geventp2p.crypto.keys import PrivateKey
    from geventp2p.host.basic import BasicHost

__all__ = [
    "DEFAULT_LISTEN",
    "DEFAULT_SECURITY",
    "DEFAULT_MUXERS",
    "DEFAULT_TRANSPORTS",
    "DEFAULT_SERVICES",
    "DEFAULT_CONNMGR",
    "DEFAULT_PEERSTORE_GRACE_PERIOD",
    "FACTORIES",
    "Factory",
    "BuildContext",
    "SECURITY_NAMES",
    "MUXER_NAMES",
    "TRANSPORT_NAMES",
    "SERVICE_NAMES",
    "build",
    "make_muxer",
    "make_muxers",
    "make_security",
    "make_services",
    "make_transports",
    "muxer_config",
    "new_host",
    "unlimited_limits",
]

DEFAULT_LISTEN = ("/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1")
DEFAULT_SECURITY = ("noise", "tls")
DEFAULT_MUXERS = ("yamux", "mplex")
DEFAULT_TRANSPORTS = ("tcp", "quic", "ws")
DEFAULT_SERVICES = ("identify", "ping")
#: go-libp2p's connection manager defaults (``libp2p.New``).
DEFAULT_CONNMGR = ConnManagerConfig()
#: Seconds a disconnected peer stays in the peerstore (go's ``pstoremanager``: one minute).
DEFAULT_PEERSTORE_GRACE_PERIOD = 60.0


# --------------------------------------------------------------------------- the factory table


@dataclass(frozen=True)
class BuildContext:
    """What a factory may need besides its own config."""

    key: Optional["PrivateKey"] = None
    #: Our muxer protocol ids, in preference order (Noise advertises them).
    muxer_ids: tuple[str, ...] = ()
    noise: NoiseConfig = NoiseConfig()
    identify: IdentifyConfig = IdentifyConfig()


@dataclass(frozen=True)
class Factory:
    """One named component: ``build(ctx, config)`` makes it.

    ``config_class`` (imported on use: ``"module:Class"``) is the component's own
    config dataclass, when it has one; ``config=None`` means its defaults.
    """

    kind: str
    name: str
    make: Callable[[BuildContext, Any], Any]
    config_path: Optional[str] = None

    def config_class(self) -> Any:
        if self.config_path is None:
            raise ConfigError(f"{self.kind} {self.name!r} has no config class")
        module, _, attr = self.config_path.partition(":")
        import importlib

        return getattr(importlib.import_module(module), attr)

    def build(self, ctx: BuildContext, config: Any = None) -> Any:
        return self.make(ctx, config)


def _noise(ctx: BuildContext, config: Any) -> Any:
    from geventp2p.net.noise import NoiseTransport

    if ctx.key is None:
        raise ConfigError("noise needs the host key")
    noise = config if config is not None else ctx.noise
    return NoiseTransport(ctx.key, muxers=ctx.muxer_ids if noise.early_muxer_negotiation else (),
                          backend=noise.crypto_backend)


def _tls(ctx: BuildContext, config: Any) -> Any:
    from geventp2p.net.tls import TlsTransport

    if ctx.key is None:
        raise ConfigError("tls needs the host key")
    return TlsTransport(ctx.key, muxers=ctx.muxer_ids, config=config)


def _plaintext(ctx: BuildContext, config: Any) -> Any:
    from geventp2p.net.plaintext import PlaintextTransport

    if ctx.key is None:
        raise ConfigError("plaintext needs the host key")
    return PlaintextTransport(ctx.key)


def _yamux(ctx: BuildContext, config: Any) -> Any:
    from geventp2p.net.yamux import YamuxMuxer

    return YamuxMuxer(config)


def _mplex(ctx: BuildContext, config: Any) -> Any:
    from geventp2p.net.mplex import MplexMuxer

    return MplexMuxer(config)


def _tcp(ctx: BuildContext, config: Any) -> Any:
    from geventp2p.net.tcp import TcpTransport

    return TcpTransport(config)


def _ws(ctx: BuildContext, config: Any) -> Any:
    from geventp2p.net.websocket import WsTransport

    return WsTransport(config)


def _quic(ctx: BuildContext, config: Any) -> Any:
    from geventp2p.net.quic import QuicTransport

    if ctx.key is None:
        raise ConfigError("quic needs the host key")
    return QuicTransport(ctx.key, config)


def _memory(ctx: BuildContext, config: Any) -> Any:
    from geventp2p.net.memory import MemoryTransport

    return MemoryTransport(config=config)


def _identify(ctx: BuildContext, config: Any) -> Any:
    from geventp2p.protocols.identify import IdentifyService

    return IdentifyService(config if config is not None else ctx.identify)


def _ping(ctx: BuildContext, config: Any) -> Any:
    from geventp2p.protocols.ping import PingService

    return PingService()


def _echo(ctx: BuildContext, config: Any) -> Any:
    from geventp2p.protocols.echo import EchoService

    return EchoService()


def _perf(ctx: BuildContext, config: Any) -> Any:
    from geventp2p.protocols.perf import PerfService

    return PerfService()


def _table(*entries: Factory) -> dict[str, Factory]:
    return {f.name: f for f in entries}


#: kind -> name -> :class:`Factory`; the only place a component name is bound to code.
FACTORIES: dict[str, dict[str, Factory]] = {
    "security": _table(
        Factory("security", "noise", _noise, "geventp2p.config:NoiseConfig"),
        Factory("security", "tls", _tls, "geventp2p.sansio.tls:TlsConfig"),
        Factory("security", "plaintext", _plaintext),
    ),
    "muxer": _table(
        Factory("muxer", "yamux", _yamux, "geventp2p.sansio.yamux:YamuxConfig"),
        Factory("muxer", "mplex", _mplex, "geventp2p.sansio.mplex:MplexConfig"),
    ),
    "transport": _table(
        Factory("transport", "tcp", _tcp, "geventp2p.net.tcp:TcpConfig"),
        Factory("transport", "ws", _ws, "geventp2p.net.websocket:WsConfig"),
        Factory("transport", "quic", _quic, "geventp2p.sansio.quic:QuicConfig"),
        Factory("transport", "memory", _memory, "geventp2p.net.memory:PipeConfig"),
    ),
    "service": _table(
        Factory("service", "identify", _identify, "geventp2p.config:IdentifyConfig"),
        Factory("service", "ping", _ping),
        Factory("service", "echo", _echo),
        Factory("service", "perf", _perf),
    ),
}

SECURITY_NAMES = tuple(FACTORIES["security"])
MUXER_NAMES = tuple(FACTORIES["muxer"])
TRANSPORT_NAMES = tuple(FACTORIES["transport"])
SERVICE_NAMES = tuple(FACTORIES["service"])


def _factory(kind: str, name: str) -> Factory:
    table = FACTORIES[kind]
    f = table.get(name.lower())
    if f is None:
        raise ConfigError(f"unknown {kind} {name!r} (known: {', '.join(table)})")
    return f


def build(kind: str, name: str, ctx: Optional[BuildContext] = None, config: Any = None) -> Any:
    """The component ``kind``/``name`` from :data:`FACTORIES`; ConfigError for an unknown name."""
    return _factory(kind, name).build(ctx if ctx is not None else BuildContext(), config)


def muxer_config(name: str, **overrides: Any) -> Any:
    """The config of muxer ``name`` with ``overrides`` (e.g. ``max_inbound_streams=...``)."""
    return _factory("muxer", name).config_class()(**overrides)


def make_muxer(name: str, config: Any = None, **overrides: Any) -> Any:
    """Muxer ``name`` built with ``config``, or with its default config plus ``overrides``."""
    if overrides:
        if config is not None:
            raise ConfigError("pass a muxer config or overrides, not both")
        config = muxer_config(name, **overrides)
    return build("muxer", name, config=config)


def _as_list(value: Any, what: str) -> list[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        value = [value]
    items = list(value)
    if not items:
        raise ConfigError(f"{what} must not be empty")
    return items


def make_muxers(muxers: Any = None) -> list[Any]:
    """Muxer instances from names/instances (default yamux, mplex)."""
    out = []
    for m in _as_list(DEFAULT_MUXERS if muxers is None else muxers, "muxers"):
        if isinstance(m, str):
            m = build("muxer", m)
        elif not isinstance(m, Multiplexer):
            raise ConfigError(f"{m!r} is not a muxer (needs PROTOCOL_ID and new_conn())")
        out.append(m)
    return out


def make_security(key: "PrivateKey", security: Any = None, muxer_ids: Iterable[str] = (),
                  noise: Optional[NoiseConfig] = None) -> list[Any]:
    """Security transport instances from names/instances (default Noise)."""
    ctx = BuildContext(key=key, muxer_ids=tuple(muxer_ids), noise=noise if noise is not None else NoiseConfig())
    out = []
    for s in _as_list(DEFAULT_SECURITY if security is None else security, "security"):
        if isinstance(s, str):
            s = build("security", s, ctx)
        elif not (hasattr(s, "PROTOCOL_ID") and callable(getattr(s, "secure_outbound", None))):
            raise ConfigError(f"{s!r} is not a security transport (needs PROTOCOL_ID and secure_outbound())")
        out.append(s)
    return out


def make_transports(transports: Any = None, key: Optional["PrivateKey"] = None) -> list[Any]:
    """Transport instances from names/instances (default TCP, QUIC, WebSocket; QUIC needs ``key``)."""
    ctx = BuildContext(key=key)
    return [build("transport", t, ctx) if isinstance(t, str) else t
            for t in _as_list(DEFAULT_TRANSPORTS if transports is None else transports, "transports")]


def make_services(services: Iterable[Any], identify: Optional[IdentifyConfig] = None) -> list[tuple[str, Any]]:
    """``(name, service)`` pairs from names/objects (objects are named by their class).

    A name given twice is built once.
    """
    ctx = BuildContext(identify=identify if identify is not None else IdentifyConfig())
    out: list[tuple[str, Any]] = []
    for svc in services:
        if isinstance(svc, str):
            name = svc.lower()
            if any(n == name for n, _ in out):
                continue
            out.append((name, build("service", name, ctx)))
        elif callable(getattr(svc, "start", None)) and callable(getattr(svc, "close", None)):
            out.append((type(svc).__name__, svc))
        else:
            raise ConfigError(f"{svc!r} is not a service (needs start(host) and close())")
    return out


# --------------------------------------------------------------------------- limits


def unlimited_limits() -> Any:
    """A ``ConcreteLimitConfig`` with no limit anywhere (every figure unlimited).

    For tests and benchmarks that open thousands of streams or connections; a node
    facing the network should keep the scaled defaults or a limits file."""
    from geventp2p.host.rcmgr.limits import BaseLimit, ConcreteLimitConfig

    u = BaseLimit.unlimited()
    return ConcreteLimitConfig(system=u, transient=u, allowlisted_system=u, allowlisted_transient=u,
                               service_default=u, service_peer_default=u, protocol_default=u,
                               protocol_peer_default=u, peer_default=u, conn=u, stream=u)


def _make_resource_manager(resource_manager: Any, limits: Any) -> Any:
    """The resource manager ``new_host`` hands the swarm (see its docstring)."""
    from geventp2p.host.rcmgr import new_resource_manager

    if resource_manager is not None:
        if limits is not None:
            raise ConfigError("pass resource_manager or limits, not both")
        if not callable(getattr(resource_manager, "open_stream", None)):
            raise ConfigError(f"{resource_manager!r} is not a resource manager (needs open_stream())")
        return resource_manager
    return new_resource_manager(limits)


# --------------------------------------------------------------------------- new_host

_FLAG_SERVICES = (("enable_identify", "identify"), ("enable_ping", "ping"), ("enable_echo", "echo"),
                  ("enable_perf", "perf"))


def _service_list(services: Optional[Iterable[Any]], flags: dict[str, Optional[bool]]) -> list[Any]:
    """The services to start: ``services`` (default: DEFAULT_SERVICES) edited by the deprecated flags."""
    chosen: list[Any] = list(DEFAULT_SERVICES if services is None else services)
    used = [flag for flag, _ in _FLAG_SERVICES if flags[flag] is not None]
    if used:
        warnings.warn(f"new_host({', '.join(f'{u}=...' for u in used)}) is deprecated; pass "
                      "services=[...] (names such as 'identify', 'ping', 'echo', 'perf', or objects)",
                      DeprecationWarning, stacklevel=3)
    for flag, name in _FLAG_SERVICES:
        on = flags[flag]
        names = [s.lower() for s in chosen if isinstance(s, str)]
        if on and name not in names:
            chosen.append(name)
        elif on is False:
            chosen = [s for s in chosen if not (isinstance(s, str) and s.lower() == name)]
    return chosen


def _load_key(key: Any, key_file: Optional[Union[str, "os.PathLike[str]"]]) -> tuple["PrivateKey", str]:
    """The host key and where it came from (``HostConfig.key_source``)."""
    from geventp2p.crypto.keys import KeyType, PrivateKey, generate_key, unmarshal_private_key

    if key_file is not None:
        if key is not None:
            raise ConfigError("pass key or key_file, not both")
        from geventp2p.identity import load_or_create

        priv, created = load_or_create(key_file)
        return priv, f"file:{os.fspath(key_file)}" + (" (created)" if created else "")
    if key is None:
        return generate_key(KeyType.Ed25519), "generated"
    if isinstance(key, PrivateKey):
        return key, "given"
    if isinstance(key, (bytes, bytearray, memoryview)):
        return unmarshal_private_key(bytes(key)), "given"
    raise ConfigError(f"key must be a PrivateKey or its protobuf bytes, got {type(key).__name__}")


def _names(items: Sequence[Any], given: Sequence[Any], attr: str) -> tuple[str, ...]:
    """Display names: the protocol id (``attr``) if the object has one, else the name it was asked by."""
    out = []
    for obj, asked in zip(items, given):
        pid = getattr(obj, attr, None)
        out.append(pid if isinstance(pid, str) and pid else asked if isinstance(asked, str) else type(obj).__name__)
    return tuple(out)


def new_host(
    *,
    key: Any = None,
    key_file: Optional[Union[str, "os.PathLike[str]"]] = None,
    listen: Iterable[Any] = DEFAULT_LISTEN,
    security: Any = None,
    muxers: Any = None,
    transports: Any = None,
    services: Optional[Iterable[Any]] = None,
    noise: Optional[NoiseConfig] = None,
    identify: Optional[IdentifyConfig] = None,
    peerstore: Any = None,
    event_bus: Any = None,
    gater: Any = None,
    agent_version: Optional[str] = None,
    swarm_config: Any = None,
    connmgr: Any = DEFAULT_CONNMGR,
    peerstore_grace_period: Optional[float] = DEFAULT_PEERSTORE_GRACE_PERIOD,
    resource_manager: Any = None,
    limits: Any = None,
    enable_identify: Optional[bool] = None,
    enable_ping: Optional[bool] = None,
    enable_echo: Optional[bool] = None,
    enable_perf: Optional[bool] = None,
    pubsub: Any = None,
) -> "BasicHost":
    """Build, start and return a :class:`~geventp2p.host.basic.BasicHost`.

    Blocks the calling greenlet only while binding the listen addresses (and
    reading or creating ``key_file``).

    * ``key``: a PrivateKey or its protobuf bytes (default: a new Ed25519 key);
      ``key_file``: a key file, loaded, or created with a new Ed25519 key (mode
      0600) when missing (see :func:`geventp2p.load_or_create_identity`).
    * ``security``, ``muxers``, ``transports``: names from :data:`FACTORIES` or
      instances, in preference order (defaults: noise, tls; yamux, mplex; tcp, quic, ws).
    * ``services``: names (``identify``, ``ping``, ``echo``, ``perf``) or objects
      with ``start(host)``/``close()``, started in order; default ``["identify",
      "ping"]``; the list replaces the default.
    * ``noise``, ``identify``: :class:`NoiseConfig`, :class:`IdentifyConfig` for
      the components built by name; ``agent_version`` is a shortcut for
      ``identify=IdentifyConfig(agent_version=...)``.
    * ``connmgr``: the connection manager, ``host.connmgr``: a
      :class:`ConnManagerConfig` (default: go's, low 160 / high 192 / 60 s grace /
      10 s silence), a ready :class:`~geventp2p.host.connmgr.BasicConnManager`, or
      None/False for none.  Trims emit ``EvtConnsTrimmed`` on the host's bus.
    * ``peerstore_grace_period``: seconds after its last connection closed that a
      peer's keys, protocols and metadata leave the peerstore (default 60, as go;
      0: at once; None: never).  Our own peer id is never removed.
    * ``resource_manager``: a ready resource manager (for instance
      ``geventp2p.core.rcmgr.NullResourceManager()``: no limits), or None for one
      built from ``limits``: None (go's default limits scaled to this machine), a
      ``LimitConfig`` (go's ``PartialLimitConfig``: overrides of the defaults), a
      ``ConcreteLimitConfig`` (every limit; :func:`unlimited_limits`), or the path
      of a limits file in go's JSON format.  ``host.resource_manager`` holds it.
    * ``pubsub``: start a pubsub service as ``host.pubsub`` (closed with the host):
      ``"gossipsub"``, ``"floodsub"``, a ``PubSubOptions``, a ``GossipSubParams``, a dict
      of ``GossipSub``/``FloodSub`` keywords with ``"router"``, or ``fn(host) -> service``
      (see :func:`geventp2p.protocols.pubsub.routers.make_pubsub`).  Default: none.
    * ``enable_*``: deprecated (``DeprecationWarning``), use ``services``.

    ``host.config`` (a :class:`HostConfig`) records what was built.  Raises
    ``ConfigError`` for unknown names and the transport error when no listen
    address can be bound.
    """
    from dataclasses import replace

    from geventp2p.core.peer import PeerId
    from geventp2p.host.basic import BasicHost
    from geventp2p.host.connmgr import BasicConnManager
    from geventp2p.host.eventbus import EventBus
    from geventp2p.host.peerstore import Peerstore
    from geventp2p.net.swarm import Swarm
    from geventp2p.net.upgrader import Upgrader

    wanted = _service_list(services, {"enable_identify": enable_identify, "enable_ping": enable_ping,
                                      "enable_echo": enable_echo, "enable_perf": enable_perf})
    noise_cfg = noise if noise is not None else NoiseConfig()
    identify_cfg = identify if identify is not None else IdentifyConfig()
    if agent_version is not None:
        identify_cfg = replace(identify_cfg, agent_version=agent_version)
    gp = peerstore_grace_period
    if gp is not None and (isinstance(gp, bool) or not isinstance(gp, (int, float)) or not gp >= 0):
        raise ConfigError(f"peerstore_grace_period must be a number >= 0 or None, got {gp!r}")
    if not (connmgr is None or connmgr is False or isinstance(connmgr, (ConnManagerConfig, BasicConnManager))):
        raise ConfigError(f"connmgr must be a ConnManagerConfig, a BasicConnManager, None or False, "
                          f"got {connmgr!r}")
    rcmgr = _make_resource_manager(resource_manager, limits)
    priv, key_source = _load_key(key, key_file)
    mux_given = _as_list(DEFAULT_MUXERS if muxers is None else muxers, "muxers")
    sec_given = _as_list(DEFAULT_SECURITY if security is None else security, "security")
    trans_given = _as_list(DEFAULT_TRANSPORTS if transports is None else transports, "transports")
    mux = make_muxers(mux_given)
    sec = make_security(priv, sec_given, [m.PROTOCOL_ID for m in mux], noise_cfg)
    trans = make_transports(trans_given, priv)
    if isinstance(listen, (str, bytes)):
        listen = [listen]
    listen = list(listen)
    ps = peerstore if peerstore is not None else Peerstore()
    bus = event_bus if event_bus is not None else EventBus()
    swarm = Swarm(priv, ps, *trans, upgrader=Upgrader(sec, mux), event_bus=bus, gater=gater,
                  config=swarm_config, resource_manager=rcmgr)
    if isinstance(connmgr, ConnManagerConfig):
        cm: Optional[BasicConnManager] = BasicConnManager(config=connmgr, event_bus=bus)
    else:
        cm = connmgr or None
    host = BasicHost(swarm, event_bus=bus, peerstore=ps, connmgr=cm,
                     peerstore_grace_period=None if gp is None else float(gp))
    if event_bus is None:
        host._own_bus = True  # the host made it, the host closes it
    try:
        started = make_services(wanted, identify_cfg)
        for _name, svc in started:
            host.add_service(svc)
        if pubsub is not None:
            from geventp2p.protocols.pubsub.routers import make_pubsub

            host.pubsub = make_pubsub(host, pubsub)
        host.config = HostConfig(
            peer_id=str(PeerId.from_public_key(priv.public_key())),
            key_source=key_source,
            key_type=priv.key_type.name,
            listen=tuple(str(a) for a in listen),
            transports=tuple(t if isinstance(t, str) else type(t).__name__ for t in trans_given),
            security=_names(sec, sec_given, "PROTOCOL_ID"),
            muxers=_names(mux, mux_given, "PROTOCOL_ID"),
            services=tuple(name for name, _svc in started),
            noise=noise_cfg,
            identify=identify_cfg if any(name == "identify" for name, _svc in started) else None,
            swarm=swarm.config,
            connmgr=cm.config if cm is not None else None,
            peerstore_grace_period=None if gp is None else float(gp),
            resource_manager=type(rcmgr).__name__,
            limits=getattr(rcmgr, "limits", None),
        )
        if listen:
            host.listen(*listen)
    except BaseException:
        host.close()
        raise
    return host

