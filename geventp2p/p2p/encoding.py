"""Message encodings for the p2p Server: protobuf by default, pluggable.

An :class:`Encoding` turns a registered message type's values into bytes and back,
and says what a topic's pubsub message id is::

    class Encoding(Protocol):
        name: str
        def check_type(self, message_type: type) -> None: ...   # TypeError if unusable
        def is_message(self, value: object) -> bool: ...
        def encode(self, msg: object) -> bytes: ...
        def decode(self, data: bytes, message_type: type) -> object: ...  # ValueError if bad
        def message_id(self, data: bytes) -> bytes: ...          # content id (StrictNoSign)

The message id follows the encoding: under StrictNoSign (``ServerConfig.sign=False``)
the Server sets each topic's id function to ``encoding.message_id(rpc.data)``, a
content address; under StrictSign pubsub's ``from || seqno`` stays.

**ssz_snappy.**  Ethereum's consensus topics use SSZ-encoded containers compressed
with snappy (block format for gossip), and the message id
``SHA-256(MESSAGE_DOMAIN_VALID_SNAPPY || snappy_decompress(data))[:20]``.  It is not
shipped: the Server's API keys topics by protobuf message *classes*, while SSZ
values are described by sedes/containers of another library (``ssz`` on PyPI,
``remerkleable``), neither of which is a dependency of geventp2p; snappy would add
``cramjam`` or ``python-snappy`` as well.  An application that needs it implements
:class:`Encoding` with those libraries (``check_type`` accepting its container
classes, ``encode = compress(serialize(v))``, ``message_id`` as above) and passes it
as ``ServerConfig(encoding=...)``; nothing in the Server assumes protobuf beyond
:class:`ProtobufEncoding`.
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol, runtime_checkable

__all__ = ["Encoding", "ProtobufEncoding", "PROTOBUF"]


@runtime_checkable
class Encoding(Protocol):
    """How a Server encodes messages and names their pubsub ids (see the module doc)."""

    name: str

    def check_type(self, message_type: type) -> None: ...

    def is_message(self, value: object) -> bool: ...

    def encode(self, msg: Any) -> bytes: ...

    def decode(self, data: bytes, message_type: type) -> Any: ...

    def message_id(self, data: bytes) -> bytes: ...


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

    def message_id(self, data: bytes) -> bytes:
        return hashlib.sha256(data).digest()[:20]

    def __repr__(self) -> str:
        return "ProtobufEncoding()"


#: The default encoding.
PROTOBUF = ProtobufEncoding()
