# Type information for the varint hot path (both builds share this API).  The .py
# source stays unannotated so that Cython types it from _c_varint.pxd alone.
from typing import Optional, Union

_Buffer = Union[bytes, bytearray, memoryview]

MAX_VARINT_LEN: int
MAX_VALUE: int
MESSAGE_SIZE_MAX: int

def encode_uvarint(value: int) -> bytes: ...
def decode_uvarint(buf: _Buffer, offset: int = 0) -> Optional[tuple[int, int]]: ...
def encode_lp(payload: _Buffer) -> bytes: ...
def decode_lp(buf: _Buffer, offset: int = 0, max_size: int = ...) -> Optional[tuple[bytes, int]]: ...
