"""The ``geventp2p`` command line.

Each subcommand is one ``_register_<name>(subparsers)`` function that adds its
parser and sets ``func`` to the handler; ``REGISTRARS`` lists them in help order.
A handler takes the parsed ``argparse.Namespace`` and returns an exit code.
Expected failures raise :class:`CLIError` (or a geventp2p error / OSError) and
end as one ``geventp2p: error: ...`` line on stderr with exit code 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import Callable, Optional, Sequence

from geventp2p.exceptions import P2PError

__all__ = ["main", "build_parser", "CLIError", "REGISTRARS", "load_key_file", "write_key_file"]

PROG = "geventp2p"
KEY_TYPES = ("ed25519", "secp256k1", "ecdsa", "rsa")
MAX_KEY_FILE_SIZE = 64 * 1024


class CLIError(Exception):
    """A user-facing error: printed as one line, exit code 1."""


# --------------------------------------------------------------------------- key files


def write_key_file(path: str, data: bytes, *, force: bool = False) -> None:
    """Write ``data`` to ``path`` with mode 0600 from the moment the file exists.

    Without ``force`` an existing file is an error; with it the file is replaced
    atomically (a fresh 0600 temporary file renamed over it).
    """
    if not force:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise CLIError(f"{path} already exists (use --force to overwrite)") from None
        except OSError as exc:
            raise CLIError(f"cannot create {path}: {exc.strerror or exc}") from None
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        except OSError as exc:
            raise CLIError(f"cannot write {path}: {exc.strerror or exc}") from None
        return
    if os.path.isdir(path):
        raise CLIError(f"{path} is a directory")
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".geventp2p-key-", dir=directory)  # mkstemp creates with 0600
    except OSError as exc:
        raise CLIError(f"cannot create a file in {directory}: {exc.strerror or exc}") from None
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise CLIError(f"cannot write {path}: {exc.strerror or exc}") from None


def load_key_file(path: str):
    """Read a marshalled libp2p private key (or, failing that, public key) from ``path``.

    Returns a PrivateKey or PublicKey; raises CLIError with a one-line reason.
    """
    from geventp2p.crypto.keys import unmarshal_private_key, unmarshal_public_key

    try:
        with open(path, "rb") as f:
            data = f.read(MAX_KEY_FILE_SIZE + 1)
    except OSError as exc:
        raise CLIError(f"cannot read key file {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_KEY_FILE_SIZE:
        raise CLIError(f"{path} is too large to be a key file")
    if not data:
        raise CLIError(f"{path} is empty")
    try:
        return unmarshal_private_key(data)
    except P2PError as exc:
        private_error = exc
    try:
        return unmarshal_public_key(data)
    except P2PError:
        pass
    raise CLIError(f"{path} does not hold a marshalled libp2p key: {private_error}")


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


# --------------------------------------------------------------------------- demo


def _register_demo(sub) -> None:
    p = sub.add_parser("demo", help="run the demo (placeholder)")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    print("geventp2p demo: not yet implemented (needs the host layer)")
    return 0


# --------------------------------------------------------------------------- entry point

REGISTRARS: list[Callable] = [_register_keygen, _register_id, _register_demo]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="geventp2p: libp2p for gevent")
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
    try:
        return int(func(args) or 0)
    except (CLIError, P2PError, OSError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__  # always exactly one line
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # python -m geventp2p.cli
    sys.exit(main())
