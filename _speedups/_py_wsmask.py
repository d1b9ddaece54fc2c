"""WebSocket payload masking: XOR with a repeating 4-byte key, in place.

Pure Python source; the build compiles this same file as ``_c_wsmask`` with
``_c_wsmask.pxd``.  A client masks every frame it sends, and a server unmasks every
frame it receives (https://www.rfc-editor.org/rfc/rfc6455#section-5.3): octet ``i``
of the payload is XORed with octet ``i % 4`` of the frame's masking key.

``mask_into(buf, start, key)``: XOR ``buf[start:]`` (a bytearray) in place with ``key`` (4 bytes), the key starting at ``buf[start]``.
The compiled build runs one C loop over the bytes; the pure build XORs each of the
four interleaved slices ``buf[start + j::4]`` with a 256-byte translation table
(a few C-level passes instead of a Python loop per byte).
"""

from geventp2p.exceptions import LocalProtocolError

#: _TABLES[k] maps a byte b to b ^ k (built on first use: 64 KiB)
_TABLES: list = []


def _probe():
    pass


#: True in the compiled build (its functions are not plain Python functions)
COMPILED = type(_probe).__name__ != "function"


def _tables():
    if not _TABLES:
        _TABLES.extend(bytes([b ^ k for b in range(256)]) for k in range(256))
    return _TABLES


def mask_into(buf, start, key):
    """XOR ``buf[start:]`` in place with the repeating 4-byte ``key``; returns None.

    Masking and unmasking are the same operation.  Raises ``TypeError`` unless ``buf``
    is a bytearray, ``LocalProtocolError`` for a key that is not 4 bytes or a ``start``
    outside ``0..len(buf)``.
    """
    if type(buf) is not bytearray:
        raise TypeError("mask_into needs a bytearray, not %s" % (type(buf).__name__,))
    kv = memoryview(key).cast("B")
    if len(kv) != 4:
        raise LocalProtocolError("a websocket masking key is 4 bytes, not %d" % (len(kv),))
    n = len(buf)
    if start < 0 or start > n:
        raise LocalProtocolError("start %r outside the buffer (%d bytes)" % (start, n))
    if COMPILED:
        sv = buf  # a typed view in the compiled build (the pure build must not hold one)
        k0 = kv[0]
        k1 = kv[1]
        k2 = kv[2]
        k3 = kv[3]
        i = start
        while i + 4 <= n:
            sv[i] ^= k0
            sv[i + 1] ^= k1
            sv[i + 2] ^= k2
            sv[i + 3] ^= k3
            i += 4
        j = 0
        while i < n:
            sv[i] ^= kv[j]
            i += 1
            j += 1
        return
    tables = _tables()
    for j in range(4):  # bytearray's strided slices are C loops (a memoryview's are not)
        buf[start + j::4] = buf[start + j::4].translate(tables[kv[j]])
