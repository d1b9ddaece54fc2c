"""Message encodings for the p2p Server: protobuf by default, ssz_snappy optional, pluggable.

An :class:`Encoding` turns a registered message type's values into bytes and back,
and says what a topic's pubsub message id is::

    class Encoding(Protocol):
        name: str
        def check_type(self, message_type: type) -> None: ...   # TypeError if unusable
        def is_message(self, value: object) -> bool: ...
        def encode(self, msg: object) -> bytes: ...
        def decode(self, data: bytes, message_type: type) -> object: ...  # ValueError if bad
        def message_id(self, topic: str, data: bytes) -> bytes: ...  # content id (StrictNoSign)

The message id follows the encoding: under StrictNoSign (``ServerConfig.sign=False``)
the Server sets each topic's id function to ``encoding.message_id(topic, rpc.data)``, a
content address; under StrictSign pubsub's ``from || seqno`` stays.

* :class:`ProtobufEncoding` (the default, :data:`PROTOBUF`): protobuf message classes,
  ``SerializeToString``/``FromString``; id ``SHA-256(data)[:20]``.
* :class:`SszSnappyEncoding` (``ServerConfig(encoding=SszSnappyEncoding())``, as on
  Ethereum's consensus gossip topics): message types are ``ssz.sedes.Serializable``
  classes of the ``ssz`` package (py-ssz), compressed with snappy's block format
  (``cramjam``); id ``SHA-256(MESSAGE_DOMAIN_VALID_SNAPPY || uint64_le(len(topic)) ||
  topic || decompressed)[:20]`` (the Altair rule of the consensus p2p spec,
  https://github.com/ethereum/consensus-specs/blob/dev/specs/altair/p2p-interface.md).
  Both packages are optional (``pip install ssz cramjam``): neither is a dependency of
  geventp2p, and ``ssz`` pulls in ``eth-utils`` (with pydantic and cytoolz); the class
  raises ConfigError naming them when they are missing.
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol, runtime_checkable

__all__ = ["Encoding", "ProtobufEncoding", "SszSnappyEncoding", "PROTOBUF", "MESSAGE_DOMAIN_VALID_SNAPPY"]


@runtime_checkable
class Encoding(Protocol):
    """How a Server encodes messages and names their pubsub ids (see the module doc)."""

    name: str

    def check_type(self, message_type: type) -> None: ...

    def is_message(self, value: object) -> bool: ...

    def encode(self, msg: Any) -> bytes: ...

    def decode(self, data: bytes, message_type: type) -> Any: ...

    def message_id(self, topic: str, data: bytes) -> bytes: ...


class ProtobufEncoding:
    """Protobuf (``google.protobuf``) messages: ``SerializeToString`` / ``FromString``.

    The content id is ``SHA-256(data)[:20]`` (20 bytes, as Ethereum's gossip ids).
    """

    name = "protobuf"

    def __init__(self) -> None:
        from google.protobuf.message import DecodeError, Message

        self._base = Message
        self._decode_error = DecodeError

    def check_type(self, message_type: type) -> None:
        if not (isinstance(message_type, type) and issubclass(message_type, self._base)
                and message_type is not self._base):
            raise TypeError(f"{message_type!r} is not a protobuf message class")

    def is_message(self, value: object) -> bool:
        return isinstance(value, self._base)

    def encode(self, msg: Any) -> bytes:
        data: bytes = msg.SerializeToString()
        return data

    def decode(self, data: bytes, message_type: type) -> Any:
        try:
            return message_type.FromString(data)  # type: ignore[attr-defined]
        except self._decode_error as exc:
            raise ValueError(f"not a valid {message_type.__name__}: {exc}") from exc
        except (RuntimeWarning, ValueError) as exc:  # upb raises these for some bad input
            raise ValueError(f"not a valid {message_type.__name__}: {exc}") from exc

    def message_id(self, topic: str, data: bytes) -> bytes:
        return hashlib.sha256(data).digest()[:20]

    def __repr__(self) -> str:
        return "ProtobufEncoding()"


#: The consensus specs' domain of message ids of valid snappy data.
MESSAGE_DOMAIN_VALID_SNAPPY = bytes.fromhex("01000000")
MESSAGE_DOMAIN_INVALID_SNAPPY = bytes.fromhex("00000000")


class SszSnappyEncoding:
    """SSZ values (``ssz.sedes.Serializable`` classes) compressed with snappy (block format).

    ``max_decompressed`` bounds what one message may decompress to (the uncompressed
    length is read from the snappy header before decompressing; default 10 MiB, the
    consensus specs' ``GOSSIP_MAX_SIZE``).  Needs the optional packages ``ssz`` and
    ``cramjam``.
    """

    name = "ssz_snappy"

    def __init__(self, max_decompressed: int = 10 * 1024 * 1024) -> None:
        from importlib import import_module

        try:
            cramjam: Any = import_module("cramjam")
            ssz: Any = import_module("ssz")
            ssz_exceptions: Any = import_module("ssz.exceptions")
            ssz_sedes: Any = import_module("ssz.sedes")
        except ImportError as exc:
            from geventp2p.exceptions import ConfigError

            raise ConfigError(f"the ssz_snappy encoding needs the packages 'ssz' and 'cramjam' "
                              f"(pip install ssz cramjam): {exc}") from exc
        self._ssz = ssz
        self._snappy = cramjam.snappy
        self._ssz_error: type[Exception] = ssz_exceptions.SSZException
        self._base: type = ssz_sedes.Serializable
        self.max_decompressed = max_decompressed

    def check_type(self, message_type: type) -> None:
        if not (isinstance(message_type, type) and issubclass(message_type, self._base)
                and message_type is not self._base):
            raise TypeError(f"{message_type!r} is not an ssz Serializable class")

    def is_message(self, value: object) -> bool:
        return isinstance(value, self._base)

    def encode(self, msg: Any) -> bytes:
        return bytes(self._snappy.compress_raw(self._ssz.encode(msg)))

    def _decompress(self, data: bytes) -> bytes:
        from geventp2p._speedups import varint

        try:
            head = varint.decode_uvarint(data, 0)  # snappy's block header: the uncompressed length
        except ValueError as exc:
            raise ValueError(f"bad snappy header: {exc}") from exc
        if head is None:
            raise ValueError("empty snappy block")
        if head[0] > self.max_decompressed:
            raise ValueError(f"snappy block of {head[0]} bytes exceeds {self.max_decompressed}")
        try:
            return bytes(self._snappy.decompress_raw(data))
        except Exception as exc:  # noqa: BLE001 - cramjam raises its own DecompressionError
            raise ValueError(f"bad snappy block: {exc}") from exc

    def decode(self, data: bytes, message_type: type) -> Any:
        raw = self._decompress(data)
        try:
            return self._ssz.decode(raw, message_type)
        except (self._ssz_error, ValueError, TypeError, IndexError) as exc:
            raise ValueError(f"not a valid {message_type.__name__}: {exc}") from exc

    def message_id(self, topic: str, data: bytes) -> bytes:
        t = topic.encode()
        prefix = len(t).to_bytes(8, "little") + t
        try:
            raw = self._decompress(data)
        except ValueError:
            return hashlib.sha256(MESSAGE_DOMAIN_INVALID_SNAPPY + prefix + data).digest()[:20]
        return hashlib.sha256(MESSAGE_DOMAIN_VALID_SNAPPY + prefix + raw).digest()[:20]

    def __repr__(self) -> str:
        return "SszSnappyEncoding()"


#: The default encoding.
PROTOBUF = ProtobufEncoding()
