"""Host-level config dataclasses and every ``GEVENTP2P_*`` environment variable, in one table.

Config dataclasses (frozen, validated in ``__post_init__`` with :class:`ConfigError`):

* :class:`HostConfig` -- what :func:`geventp2p.new_host` built (``host.config``);
* :class:`NoiseConfig` -- knobs of the Noise security transport;
* :class:`IdentifyConfig` -- knobs of the identify service;
* :class:`ConnManagerConfig` -- the connection manager's watermarks (re-exported by
  ``geventp2p.host.connmgr``, which holds the manager).

The other components keep their config next to their code (``SwarmConfig`` in
``net/swarm.py``, ``YamuxConfig`` in ``sansio/yamux.py``, ``TcpConfig``...).

Environment variables are for process-level switches and debugging only; components
are configured with their config dataclasses (``YamuxConfig``, ``TcpConfig``...).
Each variable is read where it acts (the hot-path facade reads its two at import, the
crypto backend its one on first use), and is registered here so that one place lists
them all::

    python -m geventp2p.config          # the table, with the values set in this shell

``tests/test_config.py`` fails when the source tree reads a ``GEVENTP2P_*`` name that
is not registered here, or when a registered one is read nowhere.

This module imports nothing heavy (no gevent): it is safe to run anywhere.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from geventp2p.exceptions import ConfigError

__all__ = [
    "HostConfig",
    "NoiseConfig",
    "IdentifyConfig",
    "ConnManagerConfig",
    "EnvVar",
    "ENV_VARS",
    "lookup",
    "current",
    "describe",
    "main",
]

#: Names of the crypto backends (``GEVENTP2P_CRYPTO`` takes the same).
CRYPTO_BACKENDS = ("cryptography", "pycryptodome")


def _check_timeout(owner: str, name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{owner}.{name} must be a number > 0, got {value!r}")


def _check_bool(owner: str, name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{owner}.{name} must be a bool, got {value!r}")


def _check_names(owner: str, name: str, value: object, *, allow_empty: bool = False) -> None:
    if not isinstance(value, tuple) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{owner}.{name} must be a tuple of non-empty strings, got {value!r}")
    if not value and not allow_empty:
        raise ConfigError(f"{owner}.{name} must not be empty")


@dataclass(frozen=True)
class NoiseConfig:
    """Noise security transport (``/noise``) knobs.

    See https://github.com/libp2p/specs/blob/master/noise/README.md.
    """

    #: Advertise our muxers in the handshake payload so both sides can skip the
    #: multistream muxer negotiation (the spec's "early muxer negotiation").
    early_muxer_negotiation: bool = True
    #: Crypto backend for the handshake and the transport ciphers: ``"cryptography"``,
    #: ``"pycryptodome"``, or None for the process default (``GEVENTP2P_CRYPTO``, else
    #: cryptography when installed).
    crypto_backend: Optional[str] = None

    def __post_init__(self) -> None:
        _check_bool("NoiseConfig", "early_muxer_negotiation", self.early_muxer_negotiation)
        if self.crypto_backend is not None and self.crypto_backend not in CRYPTO_BACKENDS:
            raise ConfigError(f"NoiseConfig.crypto_backend must be one of {CRYPTO_BACKENDS} or None, "
                              f"got {self.crypto_backend!r}")


@dataclass(frozen=True)
class IdentifyConfig:
    """Identify service (``/ipfs/id/1.0.0``, ``/ipfs/id/push/1.0.0``) knobs.

    See https://github.com/libp2p/specs/blob/master/identify/README.md.
    """

    #: ``AgentVersion`` we announce; None: ``geventp2p/<version>``.
    agent_version: Optional[str] = None
    #: ``ProtocolVersion`` we announce (every libp2p implementation sends ``ipfs/0.1.0``).
    protocol_version: str = "ipfs/0.1.0"
    #: Seconds one identify or push exchange may take (go, js: 5 s).
    timeout: float = 5.0
    #: Push our changed protocols/addresses to connected peers.
    push: bool = True
    #: Seconds over which bursts of local changes merge into one push round.
    debounce: float = 0.05
    #: Send (and prefer) signed peer records.
    signed_record: bool = True

    def __post_init__(self) -> None:
        if self.agent_version is not None and not isinstance(self.agent_version, str):
            raise ConfigError(f"IdentifyConfig.agent_version must be a str or None, got {self.agent_version!r}")
        if not isinstance(self.protocol_version, str):
            raise ConfigError(f"IdentifyConfig.protocol_version must be a str, got {self.protocol_version!r}")
        _check_timeout("IdentifyConfig", "timeout", self.timeout)
        if isinstance(self.debounce, bool) or not isinstance(self.debounce, (int, float)) or self.debounce < 0:
            raise ConfigError(f"IdentifyConfig.debounce must be a number >= 0, got {self.debounce!r}")
        _check_bool("IdentifyConfig", "push", self.push)
        _check_bool("IdentifyConfig", "signed_record", self.signed_record)


@dataclass(frozen=True, slots=True)
class ConnManagerConfig:
    """Connection manager watermarks (go-libp2p ``connmgr.NewConnManager``; go's defaults).

    Above ``high`` open connections the manager closes connections until ``low``
    remain, sparing peers first seen less than ``grace_period`` seconds ago; the
    background trimmer runs at most once per ``silence_period`` seconds.
    """

    low: int = 160
    high: int = 192
    grace_period: float = 60.0
    silence_period: float = 10.0

    def __post_init__(self) -> None:
        for name in ("low", "high"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(f"ConnManagerConfig.{name} must be an int, got {v!r}")
        if self.low < 0 or self.high < self.low:
            raise ConfigError(f"connection manager needs 0 <= low <= high, got low={self.low} high={self.high}")
        gp = self.grace_period
        if isinstance(gp, bool) or not isinstance(gp, (int, float)) or not gp >= 0:
            raise ConfigError(f"ConnManagerConfig.grace_period must be a number >= 0, got {gp!r}")
        _check_timeout("ConnManagerConfig", "silence_period", self.silence_period)


@dataclass(frozen=True)
class HostConfig:
    """What :func:`geventp2p.new_host` built; read it as ``host.config``.

    Names are protocol ids where the component has one (``/noise``,
    ``/yamux/1.0.0``), registry names otherwise (``tcp``, ``identify``), and the
    class name for objects passed in that have neither.  ``dataclasses.replace``
    derives variants for display or comparison; the host does not re-read it.
    """

    #: The host's peer id (base58).
    peer_id: str
    #: Where the identity came from: ``generated``, ``given``, ``file:<path>`` (loaded)
    #: or ``file:<path> (created)``.
    key_source: str
    #: ``Ed25519``, ``Secp256k1``, ``ECDSA`` or ``RSA``.
    key_type: str
    #: Listen addresses asked for (``host.addrs()`` has the bound ones).
    listen: tuple[str, ...]
    #: Transports, security protocols and muxers, in preference order.
    transports: tuple[str, ...]
    security: tuple[str, ...]
    muxers: tuple[str, ...]
    #: Services started on the host, in start order.
    services: tuple[str, ...]
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    #: None when identify is not among the services.
    identify: Optional[IdentifyConfig] = None
    #: The swarm's ``SwarmConfig`` (typed loosely: this module does not import net/).
    swarm: Any = None
    #: The connection manager's watermarks; None when the host runs without one.
    connmgr: Optional[ConnManagerConfig] = None
    #: Seconds a disconnected peer's keys, protocols and metadata stay in the
    #: peerstore (go: 60); None when the peerstore keeps them forever.
    peerstore_grace_period: Optional[float] = None
    #: Class name of the resource manager (``ResourceManagerImpl``,
    #: ``NullResourceManager``...); None for a host without one.
    resource_manager: Optional[str] = None
    #: The effective limits (a ``ConcreteLimitConfig``; typed loosely: this module
    #: does not import host/), or None when the manager has no limits table.
    limits: Any = None

    def __post_init__(self) -> None:
        for name in ("peer_id", "key_source", "key_type"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(f"HostConfig.{name} must be a non-empty str")
        _check_names("HostConfig", "listen", self.listen, allow_empty=True)
        _check_names("HostConfig", "transports", self.transports)
        _check_names("HostConfig", "security", self.security)
        _check_names("HostConfig", "muxers", self.muxers)
        _check_names("HostConfig", "services", self.services, allow_empty=True)
        if not isinstance(self.noise, NoiseConfig):
            raise ConfigError("HostConfig.noise must be a NoiseConfig")
        if self.identify is not None and not isinstance(self.identify, IdentifyConfig):
            raise ConfigError("HostConfig.identify must be an IdentifyConfig or None")
        if self.connmgr is not None and not isinstance(self.connmgr, ConnManagerConfig):
            raise ConfigError("HostConfig.connmgr must be a ConnManagerConfig or None")
        gp = self.peerstore_grace_period
        if gp is not None and (isinstance(gp, bool) or not isinstance(gp, (int, float)) or not gp >= 0):
            raise ConfigError(f"HostConfig.peerstore_grace_period must be a number >= 0 or None, got {gp!r}")
        if self.resource_manager is not None and not (isinstance(self.resource_manager, str)
                                                      and self.resource_manager):
            raise ConfigError("HostConfig.resource_manager must be a non-empty str or None")


@dataclass(frozen=True)
class EnvVar:
    """One environment variable: who reads it, when, and what it does."""

    name: str
    #: ``runtime`` (read by the library), ``build`` (setup.py), or ``tests`` (the test suite).
    when: str
    #: the module or file that reads it
    read_by: str
    #: what happens when it is unset
    default: str
    effect: str


ENV_VARS: tuple[EnvVar, ...] = (
    EnvVar("GEVENTP2P_PURE_PYTHON", "runtime", "geventp2p._speedups", "compiled modules where built",
           "1/true/yes/all forces the pure-Python hot paths; a comma list (frames,window) forces "
           "only those modules. Read once, at import."),
    EnvVar("GEVENTP2P_REQUIRE_SPEEDUPS", "runtime", "geventp2p._speedups", "silent fallback to pure",
           "1 turns a missing or broken compiled module into an ImportError (unless that module "
           "was forced pure). Read once, at import."),
    EnvVar("GEVENTP2P_CRYPTO", "runtime", "geventp2p.crypto.backend", "cryptography if installed",
           "cryptography or pycryptodome: the crypto backend (ChaCha20-Poly1305, X25519, SHA-256)."),
    EnvVar("GEVENTP2P_KEY_FILE", "runtime", "geventp2p.cli", "a fresh Ed25519 key per run",
           "identity key file for `geventp2p serve` when --key is not given: loaded, or created "
           "(Ed25519, mode 0600) when missing."),
    EnvVar("GEVENTP2P_IDLE_RETIRE_AFTER", "runtime", "geventp2p.net._muxconn", "5.0",
           "seconds a muxed connection idles before its reader and writer greenlets end (they "
           "start again on traffic or a timer); 0 turns it off. Read once, at import."),
    EnvVar("GEVENTP2P_NO_EXTENSIONS", "build", "setup.py", "compile when Cython and a C compiler exist",
           "1 skips compiling the Cython extensions; the install runs pure."),
    EnvVar("GEVENTP2P_CYTHON_ANNOTATE", "build", "setup.py", "no reports",
           "1 writes `cython -a` HTML reports next to the generated C in build/cython_src/."),
    EnvVar("GEVENTP2P_CYTHON_TRACE", "build", "setup.py", "no tracing",
           "1 compiles with line tracing (coverage of compiled code; slower)."),
    EnvVar("GEVENTP2P_INTEROP_CACHE", "tests", "tests/interop/interop_harness.py", "~/.cache/geventp2p/interop",
           "where the interop tests install the js-libp2p and py-libp2p peers."),
    EnvVar("GEVENTP2P_INTEROP_PYTHON", "tests", "tests/interop/interop_harness.py", "python3",
           "interpreter for the py-libp2p peer's virtualenv."),
    EnvVar("GEVENTP2P_INTEROP_SKIP", "tests", "tests/interop/interop_harness.py", "peers are set up",
           "1 treats every interop peer as unavailable (skip; a failure when CI=true)."),
    EnvVar("GEVENTP2P_INTEROP_INSTALL_TIMEOUT", "tests", "tests/interop/interop_harness.py", "900",
           "seconds one peer installation (npm ci / pip install) may take."),
)

_BY_NAME = {v.name: v for v in ENV_VARS}


def lookup(name: str) -> EnvVar:
    """The registered variable ``name``; KeyError if it is not registered."""
    return _BY_NAME[name]


def current(environ: Optional[Mapping[str, str]] = None) -> dict[str, str | None]:
    """Each registered name mapped to its value in ``environ`` (default ``os.environ``), or None."""
    env = os.environ if environ is None else environ
    return {v.name: env.get(v.name) for v in ENV_VARS}


def describe(environ: Optional[Mapping[str, str]] = None) -> str:
    """The table as text: one block per variable, with its value when set."""
    values = current(environ)
    lines = []
    for v in ENV_VARS:
        val = values[v.name]
        state = f"set to {val!r}" if val is not None else f"unset ({v.default})"
        lines.append(f"{v.name}  [{v.when}; read by {v.read_by}]")
        lines.append(f"    {state}")
        lines.append(f"    {v.effect}")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0] in ("-h", "--help"):
        print("usage: python -m geventp2p.config\n\n" + (__doc__ or "").strip().splitlines()[0])
        return 0
    if args:
        print(f"python -m geventp2p.config: unexpected argument {args[0]!r}", file=sys.stderr)
        return 2
    print(describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
