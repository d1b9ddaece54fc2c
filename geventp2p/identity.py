"""Identity persistence: one private key file per node.

The file holds the libp2p ``PrivateKey`` protobuf (the bytes of
``PrivateKey.marshal()``; see
https://github.com/libp2p/specs/blob/master/peer-ids/peer-ids.md#keys), the
format ``geventp2p keygen`` writes and ``geventp2p serve --key`` reads.

* :func:`load_or_create_identity` loads the key, or creates an Ed25519 key when the
  file does not exist (mode 0600 from the moment it exists, published atomically:
  a reader never sees a half-written file, and two processes racing to create it
  end up with the same key).
* :func:`load_identity` only loads; :func:`save_identity` only writes.

A key file that cannot be parsed raises :class:`~geventp2p.exceptions.InvalidKeyError`;
an existing key file readable by group or others is used, with a WARNING log.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from typing import Union

from geventp2p.crypto import keys as _keys
from geventp2p.crypto.keys import KeyType, PrivateKey, PublicKey
from geventp2p.exceptions import InvalidKeyError, P2PError

__all__ = [
    "MAX_KEY_FILE_SIZE",
    "load_or_create",
    "load_or_create_identity",
    "load_identity",
    "read_key_file",
    "save_identity",
    "write_key_file",
]

log = logging.getLogger(__name__)

#: Larger files are refused before parsing (an RSA-8192 key is about 4.7 KiB).
MAX_KEY_FILE_SIZE = 64 * 1024

PathLike = Union[str, "os.PathLike[str]"]


def _read(path: PathLike) -> bytes:
    """The file's bytes; InvalidKeyError when it is empty or too large to be a key file."""
    with open(path, "rb") as f:
        data = f.read(MAX_KEY_FILE_SIZE + 1)
        mode = os.fstat(f.fileno()).st_mode
    if len(data) > MAX_KEY_FILE_SIZE:
        raise InvalidKeyError(f"{os.fspath(path)} is too large to be a key file")
    if not data:
        raise InvalidKeyError(f"{os.fspath(path)} is empty")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("key file %s is accessible by group or others (mode %03o); chmod 600 it",
                    os.fspath(path), stat.S_IMODE(mode))
    return data


def read_key_file(path: PathLike) -> Union[PrivateKey, PublicKey]:
    """A marshalled libp2p private key (or, failing that, public key) from ``path``.

    Raises OSError when the file cannot be read and InvalidKeyError when it holds
    neither kind of key.
    """
    data = _read(path)
    try:
        return _keys.unmarshal_private_key(data)
    except P2PError as exc:
        private_error = exc
    try:
        return _keys.unmarshal_public_key(data)
    except P2PError:
        pass
    raise InvalidKeyError(f"{os.fspath(path)} does not hold a marshalled libp2p key: {private_error}")


def load_identity(path: PathLike) -> PrivateKey:
    """The private key in ``path``; OSError if unreadable, InvalidKeyError if it is not one."""
    data = _read(path)
    try:
        return _keys.unmarshal_private_key(data)
    except P2PError as exc:
        raise InvalidKeyError(
            f"{os.fspath(path)} does not hold a marshalled libp2p private key: {exc}") from exc


def write_key_file(path: PathLike, data: bytes, *, overwrite: bool = False) -> bool:
    """Publish ``data`` at ``path`` with mode 0600; True if written, False if it already existed.

    The bytes go to a 0600 temporary file in the same folder, are flushed to disk,
    then appear at ``path`` in one step: without ``overwrite`` by a hard link (which
    fails when ``path`` exists, so a concurrent creator wins and nothing is
    clobbered); with ``overwrite`` by a rename over the old file.
    """
    target = os.fspath(path)
    if os.path.isdir(target):
        raise IsADirectoryError(f"{target} is a directory")
    directory = os.path.dirname(os.path.abspath(target))
    fd, tmp = tempfile.mkstemp(prefix=".geventp2p-key-", dir=directory)  # created 0600
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, target)
            tmp = ""
            return True
        try:
            os.link(tmp, target)
        except FileExistsError:
            return False
        except OSError:
            # a filesystem without hard links: exclusive create, then write (not atomic)
            try:
                out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return False
            with os.fdopen(out, "wb") as f:
                f.write(data)
        return True
    finally:
        if tmp:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def save_identity(path: PathLike, key: PrivateKey, *, overwrite: bool = False) -> None:
    """Write ``key`` to ``path`` (mode 0600, atomically); FileExistsError unless ``overwrite``."""
    if not write_key_file(path, key.marshal(), overwrite=overwrite):
        raise FileExistsError(f"{os.fspath(path)} already exists")


def load_or_create_identity(path: PathLike, *, key_type: Union[KeyType, str] = KeyType.Ed25519) -> PrivateKey:
    """The private key stored in ``path``, created (``key_type``, default Ed25519) if missing.

    A new key file gets mode 0600 and is published atomically; when another
    process creates the file first, its key is loaded and returned.  Raises
    InvalidKeyError for a file that holds no private key, OSError when the file
    cannot be read or created.
    """
    return load_or_create(path, key_type=key_type)[0]


def load_or_create(path: PathLike, *, key_type: Union[KeyType, str] = KeyType.Ed25519) -> tuple[PrivateKey, bool]:
    """:func:`load_or_create_identity`, also telling whether this call created the file."""
    try:
        return load_identity(path), False
    except FileNotFoundError:
        pass
    key = _keys.generate_key(key_type)
    if write_key_file(path, key.marshal()):
        log.info("created identity key file %s", os.fspath(path))
        return key, True
    return load_identity(path), False  # lost a creation race: use the winner's key
