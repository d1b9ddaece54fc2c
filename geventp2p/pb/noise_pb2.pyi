# Type stub for the generated noise_pb2 (protoc --python_out; see noise.proto).
from typing import Any, Iterable, Optional

from google.protobuf.message import Message

DESCRIPTOR: Any

class NoiseExtensions(Message):
    webtransport_certhashes: Any  # repeated bytes
    stream_muxers: Any  # repeated string
    def __init__(self, *, webtransport_certhashes: Optional[Iterable[bytes]] = ..., stream_muxers: Optional[Iterable[str]] = ...) -> None: ...

class NoiseHandshakePayload(Message):
    identity_key: bytes
    identity_sig: bytes
    @property
    def extensions(self) -> NoiseExtensions: ...
    def __init__(self, *, identity_key: Optional[bytes] = ..., identity_sig: Optional[bytes] = ..., extensions: Optional[NoiseExtensions] = ...) -> None: ...
