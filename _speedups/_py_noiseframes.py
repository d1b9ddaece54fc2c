"""Noise transport framing hot path: seal a list of buffers into length-prefixed frames.

Pure Python source; the build compiles this same file as ``_c_noiseframes`` with
``_c_noiseframes.pxd``.  The wire format is ``u16be(len) || ciphertext`` per frame
(https://github.com/libp2p/specs/blob/master/noise/README.md#wire-format), with
ChaCha20-Poly1305 nonces ``4 zero bytes || u64le(n)``.

``seal_frames(buffers, step, seal, n, limit, out) -> (nbytes, next_n)``: the frames of
the concatenation of ``buffers`` written straight into a reusable output buffer through
an AEAD ``encrypt_into``-style callable.
"""

from struct import Struct

from geventp2p.exceptions import LocalProtocolError, SecurityError

_NONCE = Struct("<4xQ")  # Noise nonce: 4 zero bytes || u64 little-endian



def seal_frames(buffers, step, seal, n, limit, out):
    """Cut the concatenation of ``buffers`` into plaintexts of ``step`` bytes (the last
    one shorter) and write each as ``u16be(len + 16) || seal(plaintext)`` into ``out``.

    The transport framing of Noise: ``seal(nonce, plaintext, ad, dst)`` is an AEAD
    ``encrypt_into`` writing ``len(plaintext) + 16`` bytes into ``dst``; nonce ``i`` is
    ``4 zero bytes || u64le(n + i)``.  A plaintext inside one buffer is passed as a
    memoryview slice (no copy); one spanning buffers is gathered into a scratch buffer.
    ``out`` (a bytearray, not exported) is grown to ``total + 18 * frames`` bytes if
    shorter; ``step`` is 1..65519.  Raises ``SecurityError`` (nothing written) if the
    frames would need nonce ``limit`` or beyond.  Returns ``(bytes written, next n)``.
    """
    if step < 1 or step > 65519:
        raise LocalProtocolError("step out of range: %r" % (step,))
    stp = step  # range-checked: a C integer in the compiled build
    total = 0
    for b in buffers:
        total += len(b) if isinstance(b, (bytes, bytearray)) else memoryview(b).nbytes
    frames = (total + stp - 1) // stp
    if n + frames > limit:
        raise SecurityError("noise nonce exhausted; the connection must be closed")
    need = total + 18 * frames
    if len(out) < need:
        out += bytes(need - len(out))
    ov = memoryview(out)
    try:
        nonce = bytearray(12)
        scratch = None  # gathers a plaintext that spans buffers (or ends the input)
        seg = 0  # bytes gathered in scratch for the current plaintext
        pos = 0
        for b in buffers:
            obj = b if isinstance(b, memoryview) else memoryview(b)
            if obj.ndim != 1 or obj.itemsize != 1:
                obj = obj.cast("B")
            mv = obj
            size = len(obj)
            off = 0
            while off < size:
                take = stp - seg
                if take > size - off:
                    take = size - off
                if not seg and take == stp:
                    # a whole plaintext inside this buffer: sealed from a slice, no copy
                    pos = _seal_one(obj[off:off + take], take, seal, nonce, n, ov, pos)
                    n += 1
                else:
                    if scratch is None:
                        scratch = bytearray(stp if total > stp else total)
                        sv = scratch
                    sv[seg:seg + take] = mv[off:off + take]
                    seg += take
                    if seg == stp:
                        pos = _seal_one(memoryview(scratch), seg, seal, nonce, n, ov, pos)
                        n += 1
                        seg = 0
                off += take
        if seg:
            pos = _seal_one(memoryview(scratch)[:seg], seg, seal, nonce, n, ov, pos)
            n += 1
    finally:
        ov.release()
    return pos, n


def _seal_one(pt, seg, seal, nonce, n, ov, pos):
    _NONCE.pack_into(nonce, 0, n)
    ln = seg + 16
    ov[pos] = ln >> 8
    ov[pos + 1] = ln & 0xFF
    seal(nonce, pt, b"", ov[pos + 2:pos + 2 + ln])
    return pos + 2 + ln
