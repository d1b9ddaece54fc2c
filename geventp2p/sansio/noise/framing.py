"""Noise transport framing: ``u16be(len) || ciphertext`` frames, sealed and opened.

Every libp2p Noise message, handshake or transport, travels as a 2-byte big-endian
length and at most 65535 bytes of message
(https://github.com/libp2p/specs/blob/master/noise/README.md#wire-format).  A
transport message is a ChaCha20-Poly1305 ciphertext with a 16-byte tag, so one frame
carries at most ``MAX_PLAINTEXT`` (65519) plaintext bytes; nonces count up from 0
per direction and are never reused.

``FrameEncryptor``
    The one seal path: ``seal(buffers)`` cuts the concatenation of the buffers into
    frames and encrypts them into one pooled output buffer (the compiled
    ``seal_frames`` of :mod:`geventp2p._speedups.noiseframes`).

``FrameDecryptor``
    Owns its ciphertext buffer.  A shell receives into ``receive_buffer()`` (no copy)
    and reports the byte count with ``receive_into(n)``; ``readinto(dst)`` then
    decrypts complete frames straight into the caller's buffer, ``read(n)`` returns
    bytes.  A bad tag is a ``SecurityError`` that ends this direction for good.

No I/O, no gevent.
"""

from __future__ import annotations

import struct
from typing import Any, Callable, Optional, Sequence, Union

from geventp2p._speedups import noiseframes as _noiseframes
from geventp2p.exceptions import LocalProtocolError, SecurityError
from geventp2p.sansio.noise.xx import MAX_NONCE, TAG_SIZE, CipherState, pack_nonce

__all__ = [
    "MAX_FRAME",
    "MAX_PLAINTEXT",
    "RECV_SIZE",
    "MIN_RECV_BUFFER",
    "KEEP_BUFFER",
    "FrameEncryptor",
    "FrameDecryptor",
    "frame_message",
    "parse_frame",
]

Buffer = Union[bytes, bytearray, memoryview]

MAX_FRAME = 65535  # the u16 length field
MAX_PLAINTEXT = MAX_FRAME - TAG_SIZE  # 65519
#: Ciphertext bytes a shell asks from its transport per receive under bulk traffic.
#: The decryptor's largest buffer holds this plus one frame (320 KiB).
RECV_SIZE = 256 * 1024
#: The decryptor's first buffer (a few small messages; grown when a receive fills it).
MIN_RECV_BUFFER = 16 * 1024
#: The middle step of the buffer sizes: at least one whole frame (64 KiB) fits.
MID_RECV_BUFFER = 128 * 1024

_pack_len = struct.Struct(">H").pack
_EMPTY = b""


def frame_message(message: bytes) -> bytes:
    """``u16be(len) || message`` (a handshake message on the wire)."""
    if len(message) > MAX_FRAME:
        raise SecurityError(f"noise message of {len(message)} bytes exceeds {MAX_FRAME}")
    return _pack_len(len(message)) + message


def parse_frame(buf: Buffer, offset: int = 0) -> Optional[tuple[bytes, int]]:
    """Return ``(message, next_offset)`` for one complete frame in ``buf``, or None if incomplete."""
    if len(buf) - offset < 2:
        return None
    n = (buf[offset] << 8) | buf[offset + 1]
    end = offset + 2 + n
    if len(buf) < end:
        return None
    return bytes(buf[offset + 2 : end]), end


def _sealer(aead: Any) -> Callable[..., Any]:
    """``seal(nonce, plaintext, ad, dst)`` writing ciphertext + tag into ``dst``: the
    AEAD's own ``encrypt_into`` (cryptography >= 45), else ``encrypt`` and a copy."""
    into = getattr(aead, "encrypt_into", None)
    if into is not None:
        return into  # type: ignore[no-any-return]
    encrypt = aead.encrypt

    def seal(nonce: Buffer, plaintext: Buffer, ad: bytes, dst: memoryview) -> int:
        ct = encrypt(bytes(nonce), plaintext, ad)
        dst[: len(ct)] = ct
        return len(ct)

    return seal


def _opener(aead: Any) -> Callable[..., Any]:
    """``open(nonce, ciphertext, ad, dst)`` writing the plaintext into ``dst``: the
    AEAD's own ``decrypt_into``, else ``decrypt`` and a copy."""
    into = getattr(aead, "decrypt_into", None)
    if into is not None:
        return into  # type: ignore[no-any-return]
    decrypt = aead.decrypt

    def open_(nonce: bytes, ciphertext: Buffer, ad: bytes, dst: memoryview) -> int:
        pt = decrypt(nonce, ciphertext, ad)
        dst[: len(pt)] = pt
        return len(pt)

    return open_


def _no_key(cipher: CipherState) -> Any:
    aead = cipher.aead
    if aead is None:
        raise SecurityError("noise cipher has no key")
    return aead


# --------------------------------------------------------------------------- sending

#: Output buffers above this size are not pooled (a huge write does not pin its
#: ciphertext buffer); a yamux write batch (1 MiB) fits.
KEEP_BUFFER = 2 * 1024 * 1024
#: Ciphertext output buffers shared by all encryptors of the process: one is taken per
#: ``seal`` and given back by ``recycle`` once sent, so an idle connection holds none
#: and a busy one reuses warm memory (fresh large allocations cost page faults).
_POOL: list[bytearray] = []
_POOL_MAX = 4


class FrameEncryptor:
    """Transport-phase sender: plaintext buffers in, length-prefixed encrypted frames out."""

    __slots__ = ("cipher", "max_plaintext", "_seal", "_out")

    def __init__(self, cipher: CipherState, max_plaintext: int = MAX_PLAINTEXT) -> None:
        if not 1 <= max_plaintext <= MAX_PLAINTEXT:
            raise ValueError(f"max_plaintext must be in 1..{MAX_PLAINTEXT}")
        self.cipher = cipher
        self.max_plaintext = max_plaintext
        self._seal: Optional[Callable[..., Any]] = _sealer(_no_key(cipher))
        self._out: Optional[bytearray] = None  # the buffer of the last seal, until recycled

    def release_cipher(self) -> None:
        """Drop the AEAD object while the connection idles (the next :meth:`seal` makes
        it again from the key; the nonce counter is kept)."""
        self._seal = None
        self.cipher.release_aead()

    def seal(self, buffers: Sequence[Buffer]) -> memoryview:
        """Encrypt the concatenation of ``buffers`` into consecutive frames; return a
        view of the pooled buffer that holds all of them.

        Send the view, release it, then call :meth:`recycle`.  Plaintext inside one
        buffer is encrypted from a slice (no copy).  Raises ``SecurityError`` (nothing
        sealed) if the frames would exhaust the nonces.
        """
        cipher = self.cipher
        seal = self._seal
        if seal is None:  # released while idle (release_cipher)
            seal = self._seal = _sealer(_no_key(cipher))
        out = _POOL.pop() if _POOL else bytearray()
        try:
            size, cipher.n = _noiseframes.seal_frames(buffers, self.max_plaintext, seal, cipher.n, MAX_NONCE, out)
        except BufferError:  # a view of it is still alive somewhere: leave it, take a new one
            out = bytearray()
            size, cipher.n = _noiseframes.seal_frames(buffers, self.max_plaintext, seal, cipher.n, MAX_NONCE, out)
        self._out = out
        with memoryview(out) as mv:
            return mv[:size]

    def recycle(self) -> None:
        """The result of the last :meth:`seal` was sent (and its view released): its
        buffer goes back to the pool.  Not called after a failed send (a dead send may
        still hold the buffer)."""
        out = self._out
        self._out = None
        if out is not None and len(_POOL) < _POOL_MAX and len(out) <= KEEP_BUFFER:
            _POOL.append(out)

    def encrypt_frames(self, *buffers: Buffer) -> bytes:
        """The frames of ``buffers`` as one bytes object (tests, one-off messages)."""
        view = self.seal(buffers)
        try:
            return bytes(view)
        finally:
            view.release()
            self.recycle()


# --------------------------------------------------------------------------- receiving


class FrameDecryptor:
    """Transport-phase receiver that owns its ciphertext buffer.

    Filling, without a copy::

        view = dec.receive_buffer()    # free space at the end of the buffer
        n = sock.recv_into(view)
        view.release()
        dec.receive_into(n)            # (or receive_data(bytes) for bytes in hand)

    Draining: ``readinto(dst)`` decrypts the complete frames at the head of the buffer
    back to back straight into ``dst`` while each fits and returns the byte count;
    ``read(n)`` returns up to ``n`` bytes of one frame.  Both return 0 / ``b""`` when
    more ciphertext is needed.  A frame larger than ``dst`` (or ``n``) is decrypted
    aside and served in parts.  Empty frames (a bare tag) are consumed silently.

    A frame shorter than the tag, a bad tag or nonce exhaustion is a ``SecurityError``:
    plaintext decrypted before it in the same call is still returned, ``error`` is set,
    the buffered ciphertext is dropped and every later call raises.

    Buffer sizes: the first ``receive_buffer`` takes ``MIN_RECV_BUFFER`` bytes; a
    receive that fills the free space asks for the next size (``MID_RECV_BUFFER``,
    then ``recv_size`` plus one frame), one of less than an eighth of it for the size
    below, and a frame larger than the buffer grows it at once.  ``release_buffer()``
    hands the buffer back while nothing is buffered (an idle connection);
    ``release()`` drops it (closing).
    With a ``pool`` (``acquire(size)`` / ``release(buf)``, e.g.
    :data:`geventp2p.net.bufpool.POOL`) buffers come from it and go back to it.
    """

    __slots__ = ("cipher", "recv_size", "error", "_buf", "_pos", "_end", "_pt", "_ptpos", "_open", "_decrypt",
                 "_pool", "_want", "_free")

    def __init__(self, cipher: CipherState, recv_size: int = RECV_SIZE, pool: Any = None) -> None:
        if recv_size < 1:
            raise ValueError("recv_size must be positive")
        aead = _no_key(cipher)
        self.cipher = cipher
        self.recv_size = recv_size
        self._pool = pool
        self._want = self._sizes()[0]  # the size of the next buffer taken
        self._free = 0  # length of the last receive_buffer view
        #: The SecurityError that ended this direction, or None.
        self.error: Optional[SecurityError] = None
        self._buf = bytearray()  # ciphertext: _buf[_pos:_end] not yet decrypted
        self._pos = 0
        self._end = 0
        self._pt: Optional[bytes] = None  # a frame decrypted aside: _pt[_ptpos:] not yet returned
        self._ptpos = 0
        self._open: Optional[Callable[..., Any]] = _opener(aead)
        self._decrypt: Optional[Callable[..., Any]] = aead.decrypt

    def release_cipher(self) -> None:
        """Drop the AEAD object while the connection idles (the next decryption makes
        it again from the key; buffered ciphertext and the nonce counter are kept)."""
        self._open = self._decrypt = None
        self.cipher.release_aead()

    def _rebind(self) -> Callable[..., Any]:
        aead = _no_key(self.cipher)
        self._decrypt = aead.decrypt
        open_ = self._open = _opener(aead)
        return open_

    # ------------------------------------------------------------------ state

    @property
    def buffered(self) -> int:
        """Ciphertext bytes received and not yet decrypted."""
        return self._end - self._pos

    @property
    def pending(self) -> int:
        """Plaintext bytes decrypted aside and not yet returned."""
        pt = self._pt
        return 0 if pt is None else len(pt) - self._ptpos

    @property
    def capacity(self) -> int:
        """Size of the ciphertext buffer (0 while none is held)."""
        return len(self._buf)

    @property
    def readable(self) -> bool:
        """A read returns data (or raises) without more ciphertext: plaintext decrypted
        aside, a complete frame buffered, or a failure."""
        if self._pt is not None or self.error is not None:
            return True
        pos = self._pos
        end = self._end
        if end - pos < 2:
            return False
        buf = self._buf
        return pos + 2 + ((buf[pos] << 8) | buf[pos + 1]) <= end

    @property
    def idle(self) -> bool:
        """Nothing buffered: no ciphertext, no plaintext decrypted aside."""
        return self._end == self._pos and self._pt is None

    # ------------------------------------------------------------------ filling

    def _sizes(self) -> tuple[int, int, int]:
        top = self.recv_size + MAX_FRAME + 2
        return (min(MIN_RECV_BUFFER, top), min(MID_RECV_BUFFER, top), top)

    def _take(self, size: int) -> bytearray:
        pool = self._pool
        return bytearray(size) if pool is None else pool.acquire(size)  # type: ignore[no-any-return]

    def _give(self, buf: bytearray) -> None:
        pool = self._pool
        if pool is not None and buf:
            pool.release(buf)

    def receive_buffer(self) -> memoryview:
        """A writable view of the free space at the end of the buffer (never empty).

        Receive into it, release it, then call :meth:`receive_into` with the count.
        """
        buf = self._buf
        pos = self._pos
        end = self._end
        if pos == end:
            pos = end = self._pos = self._end = 0
        if not buf:
            buf = self._buf = self._take(self._want)
        cap = len(buf)
        if pos and (end == cap or pos >= cap - MAX_FRAME - 2):
            # move the partial frame (< 64 KiB) to the front
            with memoryview(buf) as mv:
                mv[: end - pos] = mv[pos:end]
            end -= pos
            self._pos = pos = 0
            self._end = end
        if end == cap or cap < self._want:
            buf = self._grow(buf, end)
        self._free = len(buf) - end
        with memoryview(buf) as mv:
            return mv[end:]

    def _grow(self, buf: bytearray, end: int) -> bytearray:
        """Move the ``end`` buffered bytes into the next larger buffer (a frame that
        does not fit, or bulk traffic that fills every receive)."""
        cap = len(buf)
        size = self._want
        if size <= cap:
            size = next((s for s in self._sizes() if s > cap), cap + MAX_FRAME + 2)
        self._want = size
        new = self._take(size)
        if end:
            new[:end] = memoryview(buf)[:end]
        self._buf = new
        self._give(buf)
        return new

    def receive_into(self, n: int) -> None:
        """``n`` bytes were written at the start of the last :meth:`receive_buffer` view."""
        if n < 0 or n > len(self._buf) - self._end:
            raise LocalProtocolError(f"receive_into of {n!r} bytes outside the free buffer")
        self._end += n
        want = self._want
        if n == self._free:  # the receive filled the buffer: bulk traffic, a larger one next
            for size in self._sizes():
                if size > want:
                    self._want = size
                    break
        elif n * 8 < want:  # a small receive: the next buffer taken is a size smaller
            sizes = self._sizes()
            for size in reversed(sizes):
                if size < want:
                    self._want = size
                    break

    def release_buffer(self) -> bool:
        """Hand the buffer back (to the pool, if any) when nothing is buffered; the next
        :meth:`receive_buffer` takes one again.  True if no buffer is held now."""
        if self._end != self._pos or self._pt is not None:
            return False
        buf = self._buf
        self._pos = self._end = 0
        if buf:
            self._buf = bytearray()
            self._give(buf)
        return True

    def receive_data(self, data: Buffer) -> None:
        """Append ``data`` (bytes in hand, e.g. read past the handshake) with a copy.

        The buffer grows past its usual size if ``data`` does not fit (no view of it
        may be alive then)."""
        size = len(data)
        if not size:
            return
        with self.receive_buffer() as view:
            free = len(view)
        if free < size:
            self._buf += bytes(size - free)
        end = self._end
        self._buf[end : end + size] = data
        self._end = end + size

    def receive_eof(self) -> None:
        """The transport reached EOF (call once ``readinto``/``read`` found no complete
        frame): ciphertext left over is a partial frame, a ``SecurityError``."""
        if self._end > self._pos and self.error is None:
            self.error = err = SecurityError(
                f"noise: EOF inside a transport frame ({self._end - self._pos} bytes buffered)"
            )
            self._pos = self._end = 0
            raise err

    def release(self) -> None:
        """Drop the buffers (closing); a view handed out earlier stays valid on its own."""
        self._buf = bytearray()
        self._pos = self._end = 0
        self._pt = None
        self._ptpos = 0

    # ------------------------------------------------------------------ draining

    def _check(self) -> None:
        err = self.error
        if err is not None:
            raise SecurityError(f"noise transport failed: {err}") from err

    def readinto(self, dst: memoryview) -> int:
        """Decrypt into ``dst`` (a writable byte memoryview); bytes written, 0 = need more."""
        if self._pt is not None:
            return self._serve_into(dst)
        self._check()
        pos = self._pos
        end = self._end
        if end - pos < 2:
            return 0
        buf = self._buf
        room = len(dst)
        cipher = self.cipher
        n = cipher.n
        open_ = self._open
        if open_ is None:  # released while idle (release_cipher)
            open_ = self._rebind()
        out = 0
        src = memoryview(buf)
        try:
            while end - pos >= 2:
                ln = (buf[pos] << 8) | buf[pos + 1]
                fend = pos + 2 + ln
                if fend > end:
                    break
                if ln < TAG_SIZE:
                    raise SecurityError(f"noise frame of {ln} bytes is shorter than the {TAG_SIZE}-byte tag")
                if n >= MAX_NONCE:
                    raise SecurityError("noise nonce exhausted; the connection must be closed")
                k = ln - TAG_SIZE
                if k > room - out:
                    if out:
                        break
                    # the plaintext does not fit: decrypt it aside, serve it in parts
                    self._pt = self._open_aside(src[pos + 2 : fend], n)
                    n += 1
                    pos = fend
                    out = self._serve_into(dst)
                    break
                try:
                    open_(pack_nonce(n), src[pos + 2 : fend], _EMPTY, dst[out : out + k])
                except Exception as exc:
                    raise SecurityError(f"noise frame failed authentication: {exc!r}") from exc
                n += 1
                out += k
                pos = fend
        except SecurityError as exc:
            self.error = exc
            pos = self._end = 0  # a dead direction holds no ciphertext
            if not out:
                raise
        finally:
            src.release()
            cipher.n = n
            self._pos = pos
        return out

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes of plaintext (of one frame); ``b""`` = need more ciphertext."""
        while self._pt is None:
            self._check()
            pos = self._pos
            end = self._end
            if end - pos < 2:
                return _EMPTY
            buf = self._buf
            ln = (buf[pos] << 8) | buf[pos + 1]
            fend = pos + 2 + ln
            if fend > end:
                return _EMPTY
            cipher = self.cipher
            try:
                if ln < TAG_SIZE:
                    raise SecurityError(f"noise frame of {ln} bytes is shorter than the {TAG_SIZE}-byte tag")
                with memoryview(buf) as src:
                    pt = self._open_aside(src[pos + 2 : fend], cipher.n)
            except SecurityError as exc:
                self.error = exc
                self._pos = self._end = 0
                raise
            cipher.n += 1
            self._pos = fend
            if pt:
                if len(pt) <= size:
                    return pt
                self._pt = pt
        pt = self._pt
        p = self._ptpos
        left = len(pt) - p
        if left <= size:
            self._pt = None
            self._ptpos = 0
            return pt[p:] if p else pt
        self._ptpos = p + size
        return pt[p : p + size]

    def feed(self, data: Buffer) -> list[bytes]:
        """``receive_data(data)``, then the plaintext of every complete frame as a list
        (an empty frame yields no chunk).  After a bad frame the chunks before it are
        returned and the next call raises."""
        self._check()
        self.receive_data(data)
        out: list[bytes] = []
        while True:
            try:
                chunk = self.read(MAX_PLAINTEXT)
            except SecurityError:
                if out:
                    return out
                raise
            if not chunk:
                return out
            out.append(chunk)

    def _open_aside(self, ciphertext: memoryview, n: int) -> bytes:
        if n >= MAX_NONCE:
            raise SecurityError("noise nonce exhausted; the connection must be closed")
        decrypt = self._decrypt
        if decrypt is None:  # released while idle (release_cipher)
            self._rebind()
            decrypt = self._decrypt
            assert decrypt is not None
        try:
            return bytes(decrypt(pack_nonce(n), ciphertext, _EMPTY))
        except Exception as exc:
            raise SecurityError(f"noise frame failed authentication: {exc!r}") from exc

    def _serve_into(self, dst: memoryview) -> int:
        pt = self._pt
        assert pt is not None
        p = self._ptpos
        k = min(len(pt) - p, len(dst))
        dst[:k] = memoryview(pt)[p : p + k]
        if p + k == len(pt):
            self._pt = None
            self._ptpos = 0
        else:
            self._ptpos = p + k
        return k
