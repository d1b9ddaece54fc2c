"""The ``geventp2p`` command line.

Each subcommand is one ``_register_<name>(subparsers)`` function that adds its
parser and sets ``func`` to the handler; ``REGISTRARS`` lists them in help order.
A handler takes the parsed ``argparse.Namespace`` and returns an exit code.
Expected failures raise :class:`CLIError` (or a geventp2p error / OSError) and
end as one ``geventp2p: error: ...`` line on stderr with exit code 1; usage
errors exit 2; Ctrl-C exits 130 (``ping --count 0`` prints its summary, exit 0).

Commands::

    geventp2p --version                   "geventp2p <version>"
    geventp2p keygen -o FILE [--type ed25519|secp256k1|ecdsa|rsa]
    geventp2p id --key FILE
    geventp2p serve [--listen MA]... [--max-streams N] [--limits FILE] [--debug-rcmgr] [--metrics HOST:PORT]
                    [--key FILE] [--security LIST] [--muxer LIST]
        first stdout line: {"peer_id": ..., "addrs": [".../p2p/<id>", ...]} (+ "metrics": url);
        serves echo, perf, ping, identify until SIGINT/SIGTERM, then exit 0.
        Without --key, $GEVENTP2P_KEY_FILE names a key file (created if missing).
        --limits: go-libp2p limits JSON (PartialLimitConfig) or "unlimited";
        --debug-rcmgr: one WARNING line on stderr per refused reservation.
    geventp2p limits --show [--limits FILE] [--json]
        the effective resource limits on this machine, one row per scope (go's names);
        --json: go's limits JSON (usable as --limits FILE).
    geventp2p ping MA [--count N] [--interval S] [--timeout S] [--json]
        one "<rtt> ms" line per round trip (float milliseconds, 3 decimals);
        --json: one object {"peer_id", "count", "rtts_ms", "min_ms", "avg_ms", "max_ms"}
    geventp2p perf MA [--upload BYTES] [--download BYTES] [--json]
        --json: libp2p perf records, the last {"type":"final",...}
    geventp2p stream MA --protocol P      stdin -> stream -> stdout, half-close at EOF
    geventp2p demo [--streams N] [--bytes B] [--muxer yamux|mplex] [--json]
    geventp2p demo --pubsub [--nodes N] [--messages M] [--message-bytes B] [--router gossipsub|floodsub]
        --json: one object, keys documented in geventp2p.demo.DemoResult.to_json
    geventp2p pubsub --topic T [--topic T2]... [--listen MA]... [--connect MA]...
                     [--router gossipsub|floodsub] [--key FILE] [--no-sign]
        first stdout line as serve; then JSON lines per message / peer event;
        stdin lines are published on the first topic; EOF or SIGINT/SIGTERM -> exit 0.

MA must end in ``/p2p/<peer id>`` unless ``--peer-id`` is given.  Network
commands share ``--key``, ``--security``, ``--muxer`` and ``-v/--verbose``
(logs of the ``geventp2p`` loggers on stderr; ``-vv`` for DEBUG).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable, Optional, Sequence

from geventp2p.exceptions import InvalidKeyError, P2PError

__all__ = [
    "main",
    "build_parser",
    "CLIError",
    "REGISTRARS",
    "load_key_file",
    "write_key_file",
    "parse_size",
    "pipe_stream",
]

PROG = "geventp2p"
KEY_TYPES = ("ed25519", "secp256k1", "ecdsa", "rsa")
#: Key file used by ``serve`` when ``--key`` is not given (loaded, or created when missing).
KEY_FILE_ENV = "GEVENTP2P_KEY_FILE"


class CLIError(Exception):
    """A user-facing error: printed as one line, exit code 1."""


# --------------------------------------------------------------------------- key files


def write_key_file(path: str, data: bytes, *, force: bool = False) -> None:
    """Write ``data`` to ``path`` with mode 0600 from the moment the file exists, atomically.

    Without ``force`` an existing file is an error; with it the file is replaced.
    See :func:`geventp2p.identity.write_key_file`.
    """
    from geventp2p import identity

    try:
        written = identity.write_key_file(path, data, overwrite=force)
    except OSError as exc:
        raise CLIError(f"cannot write {path}: {exc.strerror or exc}") from None
    if not written:
        raise CLIError(f"{path} already exists (use --force to overwrite)")


def load_key_file(path: str) -> Any:
    """Read a marshalled libp2p private key (or, failing that, public key) from ``path``.

    Returns a PrivateKey or PublicKey; raises CLIError with a one-line reason.
    """
    from geventp2p import identity

    try:
        return identity.read_key_file(path)
    except OSError as exc:
        raise CLIError(f"cannot read key file {path}: {exc.strerror or exc}") from None
    except InvalidKeyError as exc:
        raise CLIError(str(exc)) from None


# --------------------------------------------------------------------------- keygen


def _register_keygen(sub) -> None:
    p = sub.add_parser(
        "keygen",
        help="generate an identity key",
        description="Generate a private key, write it (libp2p protobuf, mode 0600) and print its peer ID.",
    )
    p.add_argument("--type", "-t", choices=KEY_TYPES, default="ed25519", help="key type (default: ed25519)")
    p.add_argument("--bits", type=int, default=None, help="RSA modulus size (default 2048; 2048..8192)")
    p.add_argument("--out", "-o", required=True, metavar="FILE", help="where to write the private key")
    p.add_argument("--force", "-f", action="store_true", help="overwrite FILE if it exists")
    p.set_defaults(func=cmd_keygen)


def cmd_keygen(args: argparse.Namespace) -> int:
    from geventp2p.core.peer import PeerId
    from geventp2p.crypto.keys import generate_key

    if args.bits is not None and args.type != "rsa":
        raise CLIError("--bits only applies to --type rsa")
    if not args.force and os.path.lexists(args.out):  # fail before the (maybe slow) generation
        raise CLIError(f"{args.out} already exists (use --force to overwrite)")
    key = generate_key(args.type, bits=args.bits or 2048)
    write_key_file(args.out, key.marshal(), force=args.force)
    print(PeerId.from_public_key(key.public_key()))
    return 0


# --------------------------------------------------------------------------- id


def _register_id(sub) -> None:
    p = sub.add_parser(
        "id",
        help="print the peer ID of a key file",
        description="Print the peer ID of a marshalled libp2p private (or public) key file.",
    )
    p.add_argument("--key", "-k", required=True, metavar="FILE", help="key file written by 'geventp2p keygen'")
    p.add_argument("--format", choices=("base58", "cid"), default="base58", help="output form (default: base58)")
    p.set_defaults(func=cmd_id)


def cmd_id(args: argparse.Namespace) -> int:
    from geventp2p.core.peer import PeerId
    from geventp2p.crypto.keys import PrivateKey

    key = load_key_file(args.key)
    pub = key.public_key() if isinstance(key, PrivateKey) else key
    pid = PeerId.from_public_key(pub)
    print(pid.to_cid() if args.format == "cid" else pid.to_base58())
    return 0


# --------------------------------------------------------------------------- shared helpers

_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1 << 10, "kib": 1 << 10, "kb": 1000,
    "m": 1 << 20, "mib": 1 << 20, "mb": 1000 ** 2,
    "g": 1 << 30, "gib": 1 << 30, "gb": 1000 ** 3,
    "t": 1 << 40, "tib": 1 << 40, "tb": 1000 ** 4,
}


def parse_size(text: str) -> int:
    """``"1048576"``, ``"64MiB"``, ``"64M"`` (binary), ``"10MB"`` (decimal) -> bytes."""
    raw = text.strip().replace("_", "")
    num = raw.rstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ").strip()
    unit = raw[len(num):].strip().lower() if num else raw.lower()
    if not num or unit not in _SIZE_UNITS:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (e.g. 1048576, 64KiB, 16MiB, 1G)")
    try:
        value = float(num) if "." in num else int(num)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}") from None
    n = int(value * _SIZE_UNITS[unit])
    if n < 0:
        raise argparse.ArgumentTypeError(f"size must be >= 0, got {text!r}")
    return n


def _bounded(convert: Callable[[str], Any], what: str, *, positive: bool) -> Callable[[str], Any]:
    """argparse type: ``convert(text)``, which must be > 0 (``positive``) or >= 0."""

    def parse(text: str) -> Any:
        try:
            v = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {what} {text!r}") from None
        if not (v > 0 if positive else v >= 0):
            raise argparse.ArgumentTypeError(f"must be {'>' if positive else '>='} 0, got {text.strip()}")
        return v

    return parse


_nonneg_int = _bounded(int, "integer", positive=False)
_pos_int = _bounded(int, "integer", positive=True)
_pos_float = _bounded(float, "number", positive=True)
_nonneg_float = _bounded(float, "number", positive=False)


def _name_list(known: Sequence[str]) -> Callable[[str], list]:
    """argparse type: a comma-separated list of names out of ``known`` (order = preference)."""

    def parse(text: str) -> list:
        names = [n.strip().lower() for n in text.split(",") if n.strip()]
        if not names:
            raise argparse.ArgumentTypeError("empty list")
        bad = [n for n in names if n not in known]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(bad)} (choose from {', '.join(known)})")
        return list(dict.fromkeys(names))

    return parse


def _add_verbose(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="log to stderr (-v: INFO, -vv: DEBUG)")


def _add_stack_options(p: argparse.ArgumentParser, key_help: str = "a fresh Ed25519 key") -> None:
    """``--key``, ``--security``, ``--muxer``, ``-v``: shared by serve, ping, perf and stream."""
    from geventp2p.defaults import MUXER_NAMES, SECURITY_NAMES

    p.add_argument("--key", "-k", metavar="FILE", help=f"identity key file (default: {key_help})")
    p.add_argument("--security", type=_name_list(SECURITY_NAMES), default=None, metavar="LIST",
                   help=f"security protocols in preference order, comma-separated ({','.join(SECURITY_NAMES)}; "
                        "default: noise,tls)")
    p.add_argument("--muxer", type=_name_list(MUXER_NAMES), default=None, metavar="LIST",
                   help=f"stream muxers in preference order, comma-separated ({','.join(MUXER_NAMES)}; "
                        "default: yamux,mplex)")
    _add_verbose(p)


def _add_target(p: argparse.ArgumentParser, timeout: float, what: str) -> None:
    p.add_argument("multiaddr", metavar="MA", help="peer address, e.g. /ip4/127.0.0.1/tcp/4001/p2p/12D3Koo...")
    p.add_argument("--peer-id", metavar="ID", help="peer ID, required when MA has no /p2p/ part")
    p.add_argument("--timeout", type=_pos_float, default=timeout, metavar="S",
                   help=f"{what} (default: {timeout:g} s)")


def _setup_logging(verbose: int, quiet_level: Optional[int] = None) -> None:
    """Log the ``geventp2p`` loggers to stderr: INFO with ``-v``, DEBUG with ``-vv``;
    without ``-v`` at ``quiet_level`` if given (e.g. WARNING for ``--debug-rcmgr``)."""
    if not verbose and quiet_level is None:
        return
    import logging

    # Only our own loggers: third-party DEBUG output (multiaddr's) would drown them.
    logger = logging.getLogger("geventp2p")
    if not any(getattr(h, "_geventp2p_cli", False) for h in logger.handlers):  # main() may run repeatedly
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler._geventp2p_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    if verbose:
        logger.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
    else:
        assert quiet_level is not None
        logger.setLevel(quiet_level)


def _warnings_to_stderr(name: str) -> None:
    import logging

    logger = logging.getLogger(name)
    if not any(getattr(h, "_geventp2p_cli", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setLevel(logging.WARNING)
        handler.setFormatter(logging.Formatter("geventp2p: warning: %(message)s"))
        handler._geventp2p_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)


def _load_private_key(path: str) -> Any:
    from geventp2p.crypto.keys import PrivateKey

    key = load_key_file(path)
    if not isinstance(key, PrivateKey):
        raise CLIError(f"{path} holds a public key; an identity needs the private key")
    return key


def _make_host(args: argparse.Namespace, *, listen: Sequence[str] = (), services: Sequence[str] = (),
               key_file: Optional[str] = None, resource_manager: Any = None) -> Any:
    """A host from the shared options (no listener unless ``listen``; only ``services``)."""
    import geventp2p

    key = _load_private_key(args.key) if args.key else None
    return geventp2p.new_host(key=key, key_file=key_file if key is None else None, listen=list(listen),
                              security=args.security, muxers=args.muxer, services=list(services),
                              resource_manager=resource_manager)


# --------------------------------------------------------------------------- resource limits

#: ``--limits unlimited``: no resource limit at all.
UNLIMITED_WORD = "unlimited"


def _add_limits_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--limits", metavar="FILE",
                   help="resource limits: a go-libp2p limits JSON file (PartialLimitConfig: "
                        '{"System": {"Conns": 1024}, "ProtocolPeer": {"/echo/1.0.0": {"StreamsInbound": 8}}, '
                        f'...}}) applied over the defaults scaled to this machine, or "{UNLIMITED_WORD}"')


def _concrete_limits(limits_arg: Optional[str]) -> Any:
    """The effective ``ConcreteLimitConfig`` for ``--limits`` (None: the scaled defaults)."""
    from geventp2p.defaults import unlimited_limits
    from geventp2p.host.rcmgr import LimitConfig, default_limits

    if limits_arg == UNLIMITED_WORD:
        return unlimited_limits()
    concrete = default_limits().auto_scale()
    if limits_arg:
        concrete = LimitConfig.load(limits_arg).build(concrete)
    return concrete


def _limits_json(concrete: Any) -> dict:
    """go's limits JSON of every scope (keyed scopes as nested objects)."""
    from dataclasses import asdict

    from geventp2p.host.rcmgr.limits import limit_fields

    names = limit_fields()

    def one(lim: Any) -> dict:
        values = asdict(lim)
        return {name: _limit_value(values[attr]) for name, attr in zip(names, values)}

    out: dict = {}
    for row, lim in concrete.rows():
        kind, _, key = row.partition(":")
        if key:
            out.setdefault(kind, {})[key] = one(lim)
        else:
            out[kind] = one(lim)
    return out


def _limit_value(v: int) -> Any:
    from geventp2p.host.rcmgr import UNLIMITED

    return UNLIMITED_WORD if v >= UNLIMITED else v


def _fmt_limit(v: int) -> str:
    from geventp2p.host.rcmgr import UNLIMITED

    return UNLIMITED_WORD if v >= UNLIMITED else str(v)


_LIMIT_COLUMNS = ("Streams", "StreamsIn", "StreamsOut", "Conns", "ConnsIn", "ConnsOut", "FD", "Memory")


def _limits_table(concrete: Any) -> str:
    from dataclasses import astuple

    rows = [(name, *(_fmt_limit(v) for v in astuple(lim))) for name, lim in concrete.rows()]
    header = ("Scope", *_LIMIT_COLUMNS[:-1], "Memory(bytes)")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for r in [header, *rows]:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(lines)


def _register_limits(sub) -> None:
    p = sub.add_parser(
        "limits",
        help="show the effective resource limits",
        description=(
            "Print the resource manager's limits as a node started with the same --limits would "
            "use them on this machine (go-libp2p's defaults scale with memory and the fd limit): "
            "one row per scope, under go's names (System, Transient, ..., Service:<name>, "
            "ProtocolPeer:<id>, PeerDefault, Conn, Stream)."
        ),
    )
    p.add_argument("--show", action="store_true", required=True, help="print the table")
    _add_limits_option(p)
    p.add_argument("--json", action="store_true", help="print go's limits JSON instead (usable as --limits FILE)")
    p.set_defaults(func=cmd_limits)


def cmd_limits(args: argparse.Namespace) -> int:
    import json

    concrete = _concrete_limits(args.limits)
    if args.json:
        print(json.dumps(_limits_json(concrete), indent=2))
    else:
        print(_limits_table(concrete))
    return 0


def _target(args: argparse.Namespace):
    """``PeerInfo`` from MA (and ``--peer-id``); CLIError when the peer ID is missing or conflicts."""
    from geventp2p.core import addr as _addr
    from geventp2p.core.peer import PeerId, PeerInfo

    transport, pid_text = _addr.split_p2p(args.multiaddr)
    given = PeerId.from_string(args.peer_id) if args.peer_id else None
    if pid_text is None:
        if given is None:
            raise CLIError(f"{args.multiaddr} has no /p2p/<peer id> part (append it or pass --peer-id)")
        pid = given
    else:
        pid = PeerId.from_string(pid_text)
        if given is not None and given != pid:
            raise CLIError(f"--peer-id {given} contradicts the /p2p/{pid} in {args.multiaddr}")
    if transport is None:
        raise CLIError(f"{args.multiaddr} has no transport address before /p2p/")
    return PeerInfo(pid, [transport])


def _connect(host, args: argparse.Namespace):
    """Dial the target of ``args`` (bounded by ``--timeout``); returns its PeerId."""
    info = _target(args)
    host.connect(info, timeout=args.timeout)
    return info.peer_id


# --------------------------------------------------------------------------- serve


def _register_serve(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="run a host serving echo, perf, ping and identify",
        description=(
            "Listen and serve /echo/1.0.0, /perf/1.0.0, /ipfs/ping/1.0.0 and /ipfs/id/1.0.0 until "
            "SIGINT or SIGTERM, then close cleanly and exit 0.  The first stdout line is one JSON "
            'object: {"peer_id": "<id>", "addrs": ["<multiaddr>/p2p/<id>", ...]}.  Perf answers any '
            "requested size: do not expose it publicly."
        ),
    )
    p.add_argument("--listen", "-l", action="append", metavar="MA",
                   help="listen address (repeatable; default: /ip4/127.0.0.1/tcp/0 and /ip4/127.0.0.1/udp/0/quic-v1)")
    p.add_argument("--max-streams", type=_pos_int, default=None, metavar="N",
                   help="inbound streams one connection may hold open (and wait to be accepted); "
                        "more are refused with a reset (default: the muxer's, yamux 16384, mplex 1024); "
                        f"without --limits it also lifts the resource limits (--limits {UNLIMITED_WORD})")
    _add_limits_option(p)
    p.add_argument("--debug-rcmgr", action="store_true",
                   help="log every refused resource reservation as one WARNING line on stderr "
                        "(logger geventp2p.rcmgr: scope, resource, peer, figures)")
    p.add_argument("--metrics", metavar="HOST:PORT", default=None,
                   help="serve Prometheus metrics at http://HOST:PORT/metrics (port 0: any free port; the "
                        'first stdout line then also has "metrics": "<url>"); needs geventp2p[metrics]')
    _add_stack_options(p, key_help=f"${KEY_FILE_ENV} if set (created if missing), else a fresh Ed25519 key")
    p.set_defaults(func=cmd_serve)


def _limited_muxers(names: Sequence[str] | None, limit: int) -> list[Any]:
    """Muxer instances (by name) whose inbound stream limit and accept backlog are ``limit``."""
    from geventp2p.defaults import DEFAULT_MUXERS, make_muxer

    return [make_muxer(name, max_inbound_streams=limit, accept_backlog=limit) for name in names or DEFAULT_MUXERS]


def cmd_serve(args: argparse.Namespace) -> int:
    import json
    import logging
    import signal

    from gevent.event import Event

    from geventp2p.defaults import DEFAULT_LISTEN
    from geventp2p.host.rcmgr import new_resource_manager

    _setup_logging(args.verbose, logging.WARNING if args.debug_rcmgr else None)
    if not args.verbose:  # still say which --listen address no transport serves (and other swarm warnings)
        _warnings_to_stderr("geventp2p.net.swarm")
    stop = Event()
    received: list = []

    def on_signal(signum: int) -> Callable[[], None]:
        def handler() -> None:
            received.append(signum)
            stop.set()

        return handler

    watchers = _SignalWatchers({s: on_signal(s) for s in (signal.SIGINT, signal.SIGTERM)})
    limits_arg = args.limits
    if args.max_streams is not None:
        args.muxer = _limited_muxers(args.muxer, args.max_streams)
        if limits_arg is None:
            limits_arg = UNLIMITED_WORD  # the default limits would refuse what --max-streams allows
    try:
        rcmgr = new_resource_manager(_concrete_limits(limits_arg), debug=args.debug_rcmgr)
        host = _make_host(args, listen=args.listen or DEFAULT_LISTEN, services=("identify", "ping", "echo", "perf"),
                          key_file=os.environ.get(KEY_FILE_ENV) or None, resource_manager=rcmgr)
        metrics = None
        try:
            first: dict[str, Any] = {"peer_id": str(host.id), "addrs": [str(a) for a in host.p2p_addrs()]}
            if args.metrics:
                from geventp2p.metrics import start_host_metrics

                metrics = start_host_metrics(host, args.metrics)
                first["metrics"] = metrics.url
            line = json.dumps(first)
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
            logging.getLogger(__name__).info("serving %s on %s", host.id, ", ".join(map(str, host.addrs())))
            stop.wait()
            logging.getLogger(__name__).info("signal %d: closing", received[0] if received else 0)
        finally:
            if metrics is not None:
                metrics.close()
            host.close()
    finally:
        watchers.cancel()
    return 0


# --------------------------------------------------------------------------- ping


def _register_ping(sub) -> None:
    p = sub.add_parser(
        "ping",
        help="ping a peer (/ipfs/ping/1.0.0)",
        description=(
            "Ping a peer over one /ipfs/ping/1.0.0 stream.  stdout gets one line per round trip: the "
            "RTT in milliseconds as '<float> ms' (e.g. '0.412 ms'); a summary goes to stderr."
        ),
    )
    _add_target(p, 10.0, "timeout for connecting and for each round trip")
    p.add_argument("--count", "-c", type=_nonneg_int, default=5, metavar="N",
                   help="number of pings, 0 = until interrupted (default: 5)")
    p.add_argument("--interval", "-i", type=_nonneg_float, default=1.0, metavar="S",
                   help="pause between pings (default: 1 s)")
    p.add_argument("--json", action="store_true",
                   help='print one JSON object at the end instead: {"peer_id", "count", "rtts_ms", '
                        '"min_ms", "avg_ms", "max_ms"} (the last three null when no ping came back)')
    _add_stack_options(p)
    p.set_defaults(func=cmd_ping, gevent_sigint=True)


def cmd_ping(args: argparse.Namespace) -> int:
    import json

    from geventp2p.protocols.ping import ping

    _setup_logging(args.verbose)
    rtts: list[float] = []
    host = _make_host(args, services=("identify",))
    try:
        pid = _connect(host, args)
        try:
            for rtt in ping(host, pid, count=args.count or None, interval=args.interval, timeout=args.timeout):
                rtts.append(rtt)
                if not args.json:
                    sys.stdout.write(f"{rtt * 1000:.3f} ms\n")
                    sys.stdout.flush()
        except KeyboardInterrupt:
            if args.count:
                raise
    finally:
        host.close()
    ms = [r * 1000 for r in rtts]
    if args.json:
        print(json.dumps({"peer_id": str(pid), "count": len(ms), "rtts_ms": ms,
                          "min_ms": min(ms) if ms else None, "avg_ms": sum(ms) / len(ms) if ms else None,
                          "max_ms": max(ms) if ms else None}), flush=True)
    elif ms:
        print(f"--- {pid}: {len(ms)} pings, rtt min/avg/max = "
              f"{min(ms):.3f}/{sum(ms) / len(ms):.3f}/{max(ms):.3f} ms", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- perf


def _register_perf(sub) -> None:
    p = sub.add_parser(
        "perf",
        help="measure throughput against a perf server (/perf/1.0.0)",
        description=(
            "Run one /perf/1.0.0 measurement: upload BYTES, then download BYTES.  Sizes accept "
            "suffixes (KiB, MiB, GiB or K, M, G binary; kB, MB, GB decimal).  With --json stdout "
            'gets libp2p perf records, one per line: {"type":"intermediary",...} for the upload and '
            'the download phase, and last {"type":"final","timeSeconds":...,"uploadBytes":...,'
            '"downloadBytes":...}.'
        ),
    )
    _add_target(p, 60.0, "timeout for the whole run")
    p.add_argument("--upload", type=parse_size, default=16 << 20, metavar="BYTES",
                   help="bytes to send (default: 16MiB)")
    p.add_argument("--download", type=parse_size, default=16 << 20, metavar="BYTES",
                   help="bytes to receive (default: 16MiB)")
    p.add_argument("--json", action="store_true", help="print libp2p perf JSON records")
    _add_stack_options(p)
    p.set_defaults(func=cmd_perf, gevent_sigint=True)


def _mib_s(nbytes: int, seconds: float) -> str:
    return f"{nbytes / (1 << 20) / seconds:.1f} MiB/s" if seconds > 0 else "-"


def cmd_perf(args: argparse.Namespace) -> int:
    import json
    import time

    from geventp2p.protocols.perf import perf

    _setup_logging(args.verbose)
    if args.download >= 1 << 64:
        raise CLIError("--download must be below 2^64")
    host = _make_host(args, services=("identify",))
    try:
        t0 = time.monotonic()
        pid = _connect(host, args)
        left = max(0.001, args.timeout - (time.monotonic() - t0))
        r = perf(host, pid, args.upload, args.download, timeout=left)
    finally:
        host.close()
    if args.json:
        records = [
            {"type": "intermediary", "timeSeconds": r.upload_time, "uploadBytes": r.upload_bytes, "downloadBytes": 0},
            {"type": "intermediary", "timeSeconds": r.download_time, "uploadBytes": 0,
             "downloadBytes": r.download_bytes},
            {"type": "final", "timeSeconds": r.total_time, "uploadBytes": r.upload_bytes,
             "downloadBytes": r.download_bytes},
        ]
        for rec in records:
            print(json.dumps(rec, separators=(",", ":")))
    else:
        mib = 1 << 20
        print(f"peer      {pid}")
        print(f"upload    {r.upload_bytes / mib:10.2f} MiB in {r.upload_time:8.3f} s  "
              f"{_mib_s(r.upload_bytes, r.upload_time)}")
        print(f"download  {r.download_bytes / mib:10.2f} MiB in {r.download_time:8.3f} s  "
              f"{_mib_s(r.download_bytes, r.download_time)}")
        print(f"total     {(r.upload_bytes + r.download_bytes) / mib:10.2f} MiB in {r.total_time:8.3f} s  "
              f"{_mib_s(r.upload_bytes + r.download_bytes, r.total_time)}")
    return 0


# --------------------------------------------------------------------------- stream

_PIPE_CHUNK = 64 * 1024


def _register_stream(sub) -> None:
    p = sub.add_parser(
        "stream",
        help="pipe stdin/stdout through a stream of any protocol",
        description=(
            "Open a stream speaking PROTOCOL, copy stdin into it and the stream to stdout.  At stdin "
            "EOF the write side is closed (half-close); the command exits when the remote closes "
            "its side (exit 0) or resets the stream (exit 1)."
        ),
    )
    _add_target(p, 10.0, "timeout for connecting and negotiating")
    p.add_argument("--protocol", "-p", required=True, metavar="P", help="protocol id, e.g. /echo/1.0.0")
    _add_stack_options(p)
    p.set_defaults(func=cmd_stream, gevent_sigint=True)


def cmd_stream(args: argparse.Namespace) -> int:
    _setup_logging(args.verbose)
    host = _make_host(args, services=("identify",))
    try:
        pid = _connect(host, args)
        stream = host.new_stream(pid, [args.protocol], timeout=args.timeout)
        sys.stdout.flush()
        pipe_stream(stream, sys.stdin.fileno(), sys.stdout.fileno())
    finally:
        host.close()
    return 0


def _make_nonblocking(fds: Sequence[int]) -> Callable[[], None]:
    """Set O_NONBLOCK on ``fds``; returns a function restoring the previous flags."""
    import fcntl

    saved = []
    for fd in dict.fromkeys(fds):
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        if not flags & os.O_NONBLOCK:
            fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
            saved.append((fd, flags))

    def restore() -> None:
        for fd, flags in saved:
            try:
                fcntl.fcntl(fd, fcntl.F_SETFL, flags)
            except OSError:
                pass

    return restore


def pipe_stream(stream, in_fd: int, out_fd: int) -> None:
    """Blocks the calling greenlet: copy ``in_fd`` -> ``stream`` and ``stream`` -> ``out_fd``.

    Both descriptors are switched to non-blocking mode for the duration (and
    restored), and read/written with ``gevent.os.nb_read``/``nb_write``, so the
    hub never blocks on a terminal or pipe.  At ``in_fd`` EOF the stream's write
    side is closed; returns when the remote closes its side.  Errors (reset,
    broken pipe) reset the stream and propagate.
    """
    import gevent
    from gevent.os import nb_read, nb_write

    in_errors: list = []

    def pump_in() -> None:
        try:
            while True:
                data = nb_read(in_fd, _PIPE_CHUNK)
                if not data:
                    break
                stream.write(data)
            stream.close_write()
        except (P2PError, OSError) as exc:
            in_errors.append(exc)
            stream.reset()  # wakes the reader below

    restore = _make_nonblocking((in_fd, out_fd))
    writer = None
    try:
        writer = gevent.spawn(pump_in)
        try:
            while True:
                data = stream.read(_PIPE_CHUNK)
                if not data:
                    break
                view = memoryview(data)
                while view:
                    view = view[nb_write(out_fd, view):]
        except BaseException as exc:
            stream.reset()
            if in_errors and isinstance(exc, (P2PError, OSError)):
                raise in_errors[0] from None
            raise
    finally:
        if writer is not None:
            writer.kill()
        restore()
    stream.close()


# --------------------------------------------------------------------------- demo


def _register_demo(sub) -> None:
    from geventp2p.defaults import MUXER_NAMES, SECURITY_NAMES
    from geventp2p.demo import DEFAULT_BULK_BYTES, DEFAULT_LATENCY_SAMPLES, DEFAULT_STREAM_BYTES, DEFAULT_STREAMS

    p = sub.add_parser(
        "demo",
        help="two hosts in this process: bulk transfer + many echo streams, then a summary",
        description=(
            "Start two hosts in this process over loopback TCP (Noise + yamux by default), push a "
            "bulk transfer through /perf/1.0.0, launch N /echo/1.0.0 request/response streams at "
            "once (their completion times), then run some one at a time (per-stream latency), "
            "each checked byte for byte; print a summary table on stdout (progress on stderr).  "
            "Both hosts share this process and one core.  Exits 1 if anything failed."
        ),
    )
    p.add_argument("--streams", "-n", type=_nonneg_int, default=DEFAULT_STREAMS, metavar="N",
                   help=f"echo streams (default: {DEFAULT_STREAMS})")
    p.add_argument("--bytes", "-b", dest="bulk_bytes", type=parse_size, default=DEFAULT_BULK_BYTES, metavar="B",
                   help=f"bulk transfer size (default: {DEFAULT_BULK_BYTES >> 20}MiB)")
    p.add_argument("--stream-bytes", type=parse_size, default=DEFAULT_STREAM_BYTES, metavar="B",
                   help=f"bytes echoed per stream (default: {DEFAULT_STREAM_BYTES >> 10}KiB)")
    p.add_argument("--concurrency", "-c", type=_nonneg_int, default=0, metavar="C",
                   help="echo streams in flight at once (default 0: all of them)")
    p.add_argument("--latency-samples", type=_nonneg_int, default=DEFAULT_LATENCY_SAMPLES, metavar="K",
                   help=f"echo streams run one at a time for the per-stream latency, at most N "
                        f"(default: {DEFAULT_LATENCY_SAMPLES})")
    p.add_argument("--muxer", choices=MUXER_NAMES, default="yamux", help="stream muxer (default: yamux)")
    p.add_argument("--security", choices=SECURITY_NAMES, default="noise",
                   help="security protocol (default: noise)")
    p.add_argument("--no-progress", action="store_true", help="no progress output on stderr")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object instead of the table (keys: see geventp2p.demo.DemoResult.to_json)")
    from geventp2p.demo import DEFAULT_PUBSUB_MESSAGE_BYTES, DEFAULT_PUBSUB_MESSAGES, DEFAULT_PUBSUB_NODES

    g = p.add_argument_group("pubsub demo (--pubsub)")
    g.add_argument("--pubsub", action="store_true",
                   help="instead: N hosts gossip on one topic over loopback TCP (summary: messages/s, latency, "
                        "duplicates, reliability; JSON keys: geventp2p.demo.PubSubDemoResult.to_json)")
    g.add_argument("--nodes", type=_nonneg_int, default=DEFAULT_PUBSUB_NODES, metavar="N",
                   help=f"hosts (default: {DEFAULT_PUBSUB_NODES})")
    g.add_argument("--messages", type=_nonneg_int, default=DEFAULT_PUBSUB_MESSAGES, metavar="M",
                   help=f"messages published, by the nodes in turn (default: {DEFAULT_PUBSUB_MESSAGES})")
    g.add_argument("--message-bytes", type=parse_size, default=DEFAULT_PUBSUB_MESSAGE_BYTES, metavar="B",
                   help=f"message size (default: {DEFAULT_PUBSUB_MESSAGE_BYTES >> 10}KiB)")
    g.add_argument("--router", choices=("gossipsub", "floodsub"), default="gossipsub",
                   help="pubsub router (default: gossipsub)")
    _add_verbose(p)
    p.set_defaults(func=cmd_demo, gevent_sigint=True)


def cmd_demo(args: argparse.Namespace) -> int:
    from geventp2p.demo import format_table, run_demo

    _setup_logging(args.verbose)
    if args.pubsub:
        return _cmd_demo_pubsub(args)
    if args.stream_bytes < 1:
        raise CLIError("--stream-bytes must be >= 1")
    result = run_demo(streams=args.streams, bulk_bytes=args.bulk_bytes, stream_bytes=args.stream_bytes,
                      muxer=args.muxer, security=args.security, concurrency=args.concurrency or None,
                      latency_samples=args.latency_samples, progress_out=None if args.no_progress else sys.stderr)
    if args.json:
        import json

        print(json.dumps(result.to_json()), flush=True)
    else:
        print(format_table(result), flush=True)
    for line in result.errors:
        print(f"{PROG}: demo: {line}", file=sys.stderr)
    if not result.ok:
        print(f"{PROG}: error: demo had {result.failures} failed stream(s)"
              + (f" and a failed bulk transfer ({result.bulk_error})" if result.bulk_error else ""),
              file=sys.stderr)
        return 1
    return 0


def _cmd_demo_pubsub(args: argparse.Namespace) -> int:
    from geventp2p.demo import format_pubsub_table, run_pubsub_demo

    if args.nodes < 2 or args.message_bytes < 4:
        raise CLIError("--pubsub needs --nodes >= 2 and --message-bytes >= 4")
    result = run_pubsub_demo(nodes=args.nodes, messages=args.messages, message_bytes=args.message_bytes,
                             router=args.router, progress_out=None if args.no_progress else sys.stderr)
    if args.json:
        import json

        print(json.dumps(result.to_json()), flush=True)
    else:
        print(format_pubsub_table(result), flush=True)
    for line in result.errors:
        print(f"{PROG}: demo: {line}", file=sys.stderr)
    if not result.ok:
        print(f"{PROG}: error: pubsub demo delivered {result.delivered} of {result.expected} messages"
              f" ({result.publish_errors} publish errors)", file=sys.stderr)
        return 1
    return 0


# --------------------------------------------------------------------------- pubsub


def _register_pubsub(sub) -> None:
    p = sub.add_parser(
        "pubsub",
        help="subscribe to topics and publish stdin lines (gossipsub or floodsub)",
        description=(
            "Join --topic topics and serve ping and identify.  stdout: first "
            '{"peer_id": ..., "addrs": [...]} as serve prints, then one JSON line per message '
            '{"type": "message", "topic", "from", "seqno", "id", "data"} (own messages too; data that '
            'is not UTF-8 is base64 with "encoding": "base64") and per peer event {"type": "peer", '
            '"topic", "peer", "event": "joined"|"left"}.  stdin: each line is published without its '
            'newline on the first --topic (a JSON object {"publish": TEXT, "topic": T} publishes TEXT '
            "on T), the next line read only once the previous message is queued to its peers.  EOF, "
            "SIGINT or SIGTERM: leave the meshes, close, exit 0."
        ),
    )
    p.add_argument("--topic", "-t", action="append", required=True, metavar="T",
                   help="topic to subscribe to (repeatable; the first one gets stdin lines)")
    p.add_argument("--listen", "-l", action="append", metavar="MA",
                   help="listen address (repeatable; default: /ip4/127.0.0.1/tcp/0 and /ip4/127.0.0.1/udp/0/quic-v1)")
    p.add_argument("--connect", "-c", action="append", default=[], metavar="MA",
                   help="peer to connect to, ending in /p2p/<id> (repeatable)")
    p.add_argument("--router", choices=("gossipsub", "floodsub"), default="gossipsub",
                   help="pubsub router (default: gossipsub)")
    p.add_argument("--no-sign", action="store_true",
                   help="StrictNoSign: publish unsigned messages without from/seqno, accept only those")
    p.add_argument("--timeout", type=_pos_float, default=30.0, metavar="S",
                   help="timeout for each --connect (default: 30 s)")
    _add_stack_options(p)
    p.set_defaults(func=cmd_pubsub)


def cmd_pubsub(args: argparse.Namespace) -> int:
    from geventp2p.protocols.pubsub.cli import run_pubsub

    _setup_logging(args.verbose)
    return run_pubsub(args, _make_host, _SignalWatchers)


# --------------------------------------------------------------------------- entry point

REGISTRARS: list[Callable] = [
    _register_keygen,
    _register_id,
    _register_serve,
    _register_limits,
    _register_ping,
    _register_perf,
    _register_stream,
    _register_demo,
    _register_pubsub,
]


def build_parser() -> argparse.ArgumentParser:
    from geventp2p import __version__

    parser = argparse.ArgumentParser(prog=PROG, description="geventp2p: libp2p for gevent")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in REGISTRARS:
        register(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    # an application's choice, made here for the console script: see geventp2p.tuning
    from geventp2p.tuning import trim_after_idle, tune_malloc

    tune_malloc()
    if func is cmd_serve:  # a long-running server: idle connections give their memory back
        trim_after_idle()
    watcher = _sigint_watcher() if getattr(args, "gevent_sigint", False) else None
    try:
        return int(func(args) or 0)
    except (CLIError, P2PError, OSError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__  # always exactly one line
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    finally:
        if watcher is not None:
            watcher.cancel()


def _sigint_watcher():
    """Deliver SIGINT as KeyboardInterrupt in the calling (main) greenlet.

    Without this, Python's own handler raises it inside the hub, and gevent prints
    the exception with a timestamp before passing it on.  Thrown from a hub
    callback, exactly like ``gevent.kill`` does for raw greenlets.
    """
    import signal

    import gevent

    main_greenlet = gevent.getcurrent()
    hub = gevent.get_hub()
    return _SignalWatchers(
        {signal.SIGINT: lambda: hub.loop.run_callback(main_greenlet.throw, KeyboardInterrupt)})


class _SignalWatchers:
    """gevent signal watchers that put the previous Python handlers back on ``cancel()``.

    Stopping a libev signal watcher leaves the signal at SIG_DFL, even though
    ``signal.getsignal`` still reports Python's handler; re-installing the
    previous handler restores, e.g., KeyboardInterrupt for an embedding process.
    """

    def __init__(self, handlers: dict) -> None:
        import signal

        import gevent

        self._previous = {signum: signal.getsignal(signum) for signum in handlers}
        self._watchers = [gevent.signal_handler(signum, fn) for signum, fn in handlers.items()]

    def cancel(self) -> None:
        import signal

        for w in self._watchers:
            w.cancel()
        self._watchers = []
        for signum, prev in self._previous.items():
            if prev is not None:
                try:
                    signal.signal(signum, prev)
                except (OSError, ValueError):  # not the main thread, or an invalid handler
                    pass
        self._previous = {}


if __name__ == "__main__":  # python -m geventp2p.cli
    sys.exit(main())
