"""Every ``GEVENTP2P_*`` environment variable, in one table.

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
from dataclasses import dataclass

__all__ = ["EnvVar", "ENV_VARS", "lookup", "current", "describe", "main"]


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


def current(environ=None) -> dict[str, str | None]:
    """Each registered name mapped to its value in ``environ`` (default ``os.environ``), or None."""
    env = os.environ if environ is None else environ
    return {v.name: env.get(v.name) for v in ENV_VARS}


def describe(environ=None) -> str:
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


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0] in ("-h", "--help"):
        print("usage: python -m geventp2p.config\n\n" + __doc__.strip().splitlines()[0])
        return 0
    if args:
        print(f"python -m geventp2p.config: unexpected argument {args[0]!r}", file=sys.stderr)
        return 2
    print(describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
