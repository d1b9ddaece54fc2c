"""Default component choices and host assembly (``new_host``).

Defaults (go-libp2p ``defaults.go`` style: they fill only what the caller left out):

* listen on ``/ip4/127.0.0.1/tcp/0``
* security: Noise (its early-muxer list is our muxer ids, in order)
* muxers: yamux, then mplex
* transports: TCP
* services: identify and ping on; echo and perf off (perf amplifies traffic).

``security``, ``muxers`` and ``transports`` take names (``"noise"``,
``"plaintext"``, ``"yamux"``, ``"mplex"``, ``"tcp"``, ``"memory"``) or ready
instances, in order of preference.
"""

from __future__ import annotations

from typing import Any, Iterable

from geventp2p.exceptions import ConfigError

__all__ = [
    "DEFAULT_LISTEN",
    "DEFAULT_SECURITY",
    "DEFAULT_MUXERS",
    "DEFAULT_TRANSPORTS",
    "SECURITY_NAMES",
    "MUXER_NAMES",
    "TRANSPORT_NAMES",
    "make_muxers",
    "make_security",
    "make_transports",
    "new_host",
]

DEFAULT_LISTEN = ("/ip4/127.0.0.1/tcp/0",)
DEFAULT_SECURITY = ("noise",)
DEFAULT_MUXERS = ("yamux", "mplex")
DEFAULT_TRANSPORTS = ("tcp",)

SECURITY_NAMES = ("noise", "plaintext")
MUXER_NAMES = ("yamux", "mplex")
TRANSPORT_NAMES = ("tcp", "memory")


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
            name = m.lower()
            if name == "yamux":
                from geventp2p.net.yamux import YamuxMuxer

                m = YamuxMuxer()
            elif name == "mplex":
                from geventp2p.net.mplex import MplexMuxer

                m = MplexMuxer()
            else:
                raise ConfigError(f"unknown muxer {m!r} (known: {', '.join(MUXER_NAMES)})")
        elif not (hasattr(m, "PROTOCOL_ID") and callable(getattr(m, "create", None))):
            raise ConfigError(f"{m!r} is not a muxer (needs PROTOCOL_ID and create())")
        out.append(m)
    return out


def make_security(key: Any, security: Any = None, muxer_ids: Iterable[str] = ()) -> list[Any]:
    """Security transport instances from names/instances (default Noise)."""
    out = []
    mux_ids = tuple(muxer_ids)
    for s in _as_list(DEFAULT_SECURITY if security is None else security, "security"):
        if isinstance(s, str):
            name = s.lower()
            if name == "noise":
                from geventp2p.net.noise import NoiseTransport

                s = NoiseTransport(key, muxers=mux_ids)
            elif name == "plaintext":
                from geventp2p.net.plaintext import PlaintextTransport

                s = PlaintextTransport(key)
            else:
                raise ConfigError(f"unknown security {s!r} (known: {', '.join(SECURITY_NAMES)})")
        elif not (hasattr(s, "PROTOCOL_ID") and callable(getattr(s, "secure_outbound", None))):
            raise ConfigError(f"{s!r} is not a security transport (needs PROTOCOL_ID and secure_outbound())")
        out.append(s)
    return out


def make_transports(transports: Any = None) -> list[Any]:
    """Transport instances from names/instances (default TCP)."""
    out = []
    for t in _as_list(DEFAULT_TRANSPORTS if transports is None else transports, "transports"):
        if isinstance(t, str):
            name = t.lower()
            if name == "tcp":
                from geventp2p.net.tcp import TcpTransport

                t = TcpTransport()
            elif name == "memory":
                from geventp2p.net.memory import MemoryTransport

                t = MemoryTransport()
            else:
                raise ConfigError(f"unknown transport {t!r} (known: {', '.join(TRANSPORT_NAMES)})")
        out.append(t)
    return out


def _load_key(key: Any) -> Any:
    from geventp2p.crypto.keys import KeyType, PrivateKey, generate_key, unmarshal_private_key

    if key is None:
        return generate_key(KeyType.Ed25519)
    if isinstance(key, PrivateKey):
        return key
    if isinstance(key, (bytes, bytearray, memoryview)):
        return unmarshal_private_key(bytes(key))
    raise ConfigError(f"key must be a PrivateKey or its protobuf bytes, got {type(key).__name__}")


def new_host(
    *,
    key: Any = None,
    listen: Iterable[Any] = DEFAULT_LISTEN,
    security: Any = None,
    muxers: Any = None,
    transports: Any = None,
    peerstore: Any = None,
    event_bus: Any = None,
    gater: Any = None,
    enable_identify: bool = True,
    enable_ping: bool = True,
    enable_echo: bool = False,
    enable_perf: bool = False,
    agent_version: str | None = None,
    swarm_config: Any = None,
    services: Iterable[Any] = (),
) -> Any:
    """Build, start and return a :class:`~geventp2p.host.basic.BasicHost`.

    Blocks the calling greenlet only while binding the listen addresses.
    ``key``: a PrivateKey or its protobuf bytes (default: a new Ed25519 key).
    ``services``: extra objects with ``start(host)``/``close()``, started after
    the built-in ones.  Raises ``ConfigError`` for unknown names and the
    transport error when no listen address can be bound.
    """
    from geventp2p.host.basic import BasicHost
    from geventp2p.host.eventbus import EventBus
    from geventp2p.host.peerstore import Peerstore
    from geventp2p.net.swarm import Swarm
    from geventp2p.net.upgrader import Upgrader

    priv = _load_key(key)
    mux = make_muxers(muxers)
    sec = make_security(priv, security, [m.PROTOCOL_ID for m in mux])
    trans = make_transports(transports)
    if isinstance(listen, (str, bytes)):
        listen = [listen]
    listen = list(listen)
    ps = peerstore if peerstore is not None else Peerstore()
    bus = event_bus if event_bus is not None else EventBus()
    swarm = Swarm(priv, ps, *trans, upgrader=Upgrader(sec, mux), event_bus=bus, gater=gater,
                  config=swarm_config)
    host = BasicHost(swarm, event_bus=bus, peerstore=ps)
    if event_bus is None:
        host._own_bus = True  # the host made it, the host closes it
    try:
        if enable_identify:
            from geventp2p.protocols.identify import IdentifyService

            host.add_service(IdentifyService(agent_version=agent_version))
        if enable_ping:
            from geventp2p.protocols.ping import PingService

            host.add_service(PingService())
        if enable_echo:
            from geventp2p.protocols.echo import EchoService

            host.add_service(EchoService())
        if enable_perf:
            from geventp2p.protocols.perf import PerfService

            host.add_service(PerfService())
        for svc in services:
            host.add_service(svc)
        if listen:
            host.listen(*listen)
    except BaseException:
        host.close()
        raise
    return host
