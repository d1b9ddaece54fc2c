"""Noise security transport (``/noise``): blocking handshake driver and encrypted RawConn.

The protocol logic lives in :mod:`geventp2p.sansio.noise`; this module only
moves bytes.  ``NoiseTransport.secure_outbound`` / ``secure_inbound`` run the XX
handshake over a ``RawConn`` and return a ``NoiseConn``: a ``RawConn`` whose
bytes are carried in Noise transport frames.

Throughput notes: writes (and ``writev`` buffer lists) are cut into 65519-byte
plaintext frames encrypted straight into one reused output buffer (AEAD
``encrypt_into``; plaintexts inside one buffer are not copied) that goes out in one
``sendall``; reads receive up to ``RECV_SIZE`` bytes of ciphertext into a reused
buffer (``recv_into``), and ``readinto`` decrypts every complete frame straight into
the caller's buffer (AEAD ``decrypt_into``), so a muxer reading with ``readinto``
costs no allocation per frame.
"""

from __future__ import annotations

import errno
import logging
from collections import deque
from typing import Any, Iterable, Optional, Sequence

import gevent
from gevent.lock import Semaphore

from geventp2p.core.peer import PeerId
from geventp2p.crypto.backend import get_backend
from geventp2p.crypto.keys import PrivateKey
from geventp2p.exceptions import P2PTimeoutError, SecurityError, TransportError
from geventp2p.net.rawconn import RawConn
from geventp2p.sansio.noise import (
    MAX_FRAME,
    FrameDecryptor,
    FrameEncryptor,
    Handshake,
    HandshakeResult,
    frame_message,
)

__all__ = ["NoiseTransport", "NoiseConn", "PROTOCOL_ID", "RECV_SIZE"]

log = logging.getLogger(__name__)

PROTOCOL_ID = "/noise"
#: Bytes asked from the raw connection per read in the transport phase.
RECV_SIZE = 256 * 1024


class NoiseTransport:
    """The libp2p Noise security transport.

    ``muxers`` are advertised in the handshake payload for early muxer
    negotiation (in preference order); pass ``()`` to advertise none.
    ``backend`` overrides the crypto backend (tests).
    """

    PROTOCOL_ID = PROTOCOL_ID

    def __init__(self, local_key: PrivateKey, muxers: Sequence[str] = ("/yamux/1.0.0",), *, backend: Any = None) -> None:
        self.local_key = local_key
        self.local_peer = PeerId.from_public_key(local_key.public_key())
        self.muxers = tuple(muxers)
        #: crypto backend for the handshake and transport ciphers (object, name or None = default)
        self.backend = get_backend(backend) if backend is None or isinstance(backend, str) else backend

    def secure_outbound(self, raw: RawConn, remote_peer: Optional[PeerId] = None, timeout: Optional[float] = None) -> "NoiseConn":
        """Blocks the calling greenlet while running the handshake as initiator.

        ``remote_peer`` (a PeerId) is checked against the authenticated remote
        identity (``PeerIdMismatchError``).  On any failure ``raw`` is closed.
        """
        return self._secure(raw, True, remote_peer, timeout)

    def secure_inbound(self, raw: RawConn, timeout: Optional[float] = None) -> "NoiseConn":
        """Blocks the calling greenlet while running the handshake as responder.

        On any failure ``raw`` is closed.
        """
        return self._secure(raw, False, None, timeout)

    # ------------------------------------------------------------------ handshake driver

    def _secure(self, raw: RawConn, initiator: bool, remote_peer: Optional[PeerId], timeout: Optional[float]) -> "NoiseConn":
        hs = Handshake(
            initiator,
            self.local_key,
            muxers=self.muxers,
            expected_remote_peer=remote_peer,
            backend=self.backend,
        )
        timer = gevent.Timeout(timeout) if timeout is not None else None
        ok = False
        try:
            if timer is not None:
                timer.start()
            try:
                if initiator:
                    raw.write(frame_message(hs.write_message_1()))
                    hs.read_message_2(_read_handshake_frame(raw, 2))
                    raw.write(frame_message(hs.write_message_3()))
                else:
                    hs.read_message_1(_read_handshake_frame(raw, 1))
                    raw.write(frame_message(hs.write_message_2()))
                    hs.read_message_3(_read_handshake_frame(raw, 3))
            except gevent.Timeout as exc:
                if exc is not timer:
                    raise
                raise P2PTimeoutError(
                    f"noise handshake timed out after {timeout:g}s (step {hs.step + 1})"
                ) from None
            ok = True
        finally:
            if timer is not None:
                timer.close()
            if not ok:
                _close_quietly(raw)
        conn = NoiseConn(raw, hs.result, self.local_peer)
        log.debug(
            "noise %s handshake done with %s (early muxer %s)",
            "outbound" if initiator else "inbound",
            conn.remote_peer,
            conn.early_muxer,
        )
        return conn


def _close_quietly(raw: RawConn) -> None:
    try:
        raw.close()
    except Exception:  # pragma: no cover - close errors are not actionable
        log.debug("error closing raw connection", exc_info=True)


def _read_handshake_frame(raw: RawConn, msg_no: int) -> bytes:
    """Read one ``u16be(len) || message`` frame; bytes read past it are pushed back."""
    buf = b""
    need = 2
    while True:
        if len(buf) >= 2:
            need = 2 + ((buf[0] << 8) | buf[1])
            if len(buf) >= need:
                if len(buf) > need:
                    raw.unread(buf[need:])
                return buf[2:need]
        chunk = raw.read(max(need - len(buf), 4096) if len(buf) >= 2 else 4096)
        if not chunk:
            raise SecurityError(f"noise: EOF during handshake msg {msg_no}")
        buf += chunk


# --------------------------------------------------------------------------- secured conn


class NoiseConn(RawConn):
    """A RawConn carried in Noise transport frames (the result of a handshake).

    Attributes beyond RawConn: ``local_peer``, ``remote_peer``,
    ``remote_public_key``, ``security_protocol`` (``"/noise"``), ``early_muxer``
    (the muxer agreed in the handshake, or None), ``handshake_hash``.

    A frame that fails authentication ends this connection: ``read`` raises
    ``SecurityError`` and the raw connection is closed.
    """

    security_protocol = PROTOCOL_ID

    def __init__(self, raw: RawConn, result: HandshakeResult, local_peer: Optional[PeerId] = None) -> None:
        super().__init__()
        self._raw = raw
        self._enc = FrameEncryptor(result.send_cipher)
        self._dec = FrameDecryptor(result.recv_cipher)
        self._pending: deque = deque()  # decrypted chunks not yet read
        self._off = 0  # bytes of _pending[0] already returned
        # received ciphertext: _cbuf[_cpos:_cend] (reused; sized for a read + one frame,
        # allocated by the first read)
        self._cbuf = bytearray()
        self._cpos = 0
        self._cend = 0
        self._wlock = Semaphore()
        self._error: Optional[BaseException] = None
        self.local_peer = local_peer
        self.remote_peer = result.remote_peer
        self.remote_public_key = result.remote_public_key
        self.early_muxer = result.early_muxer
        self.handshake_hash = result.handshake_hash
        self.local_addr = raw.local_addr
        self.remote_addr = raw.remote_addr
        self.is_initiator = raw.is_initiator

    @property
    def raw(self) -> RawConn:
        """The underlying (ciphertext) connection."""
        return self._raw

    @property
    def closed(self) -> bool:
        return self._closed or self._raw.closed

    # ------------------------------------------------------------------ reading

    def _fill(self) -> bool:
        """Receive more ciphertext into the reused buffer; False at EOF."""
        cbuf = self._cbuf
        if not cbuf:
            cbuf = self._cbuf = bytearray(RECV_SIZE + MAX_FRAME + 2)
        pos = self._cpos
        end = self._cend
        if pos == end:
            pos = end = self._cpos = self._cend = 0
        elif pos and (end == len(cbuf) or pos >= RECV_SIZE):
            # move the partial frame to the front (< 64 KiB; no allocation)
            with memoryview(cbuf) as mv:
                mv[: end - pos] = mv[pos:end]
            end -= pos
            pos = self._cpos = 0
            self._cend = end
        readinto = getattr(self._raw, "readinto", None)  # (multistream wrappers forward it)
        with memoryview(cbuf) as mv, mv[end:] as space:
            if readinto is not None:
                k = readinto(space)
            else:
                data = self._raw.read(len(space))
                k = len(data)
                space[:k] = data
        if not k:
            return False
        self._cend = end + k
        return True

    def _eof(self) -> None:
        if self._cend > self._cpos and not self._closed:
            self._fail(SecurityError(
                f"noise: EOF inside a transport frame ({self._cend - self._cpos} bytes buffered)"
            ))

    def _check_failed(self) -> None:
        if self._error is not None:
            raise SecurityError(f"noise connection failed: {self._error}")
        if self._dec.error is not None:
            self._fail(self._dec.error)

    def _readinto_raw(self, mv: memoryview) -> int:
        """Decrypt straight into ``mv`` (every complete frame that fits, back to back)."""
        if self._pending or not self._dec.can_open_into:
            data = self._read_raw(len(mv))
            k = len(data)
            mv[:k] = data
            return k
        dec = self._dec
        while True:
            self._check_failed()
            if self._closed:
                return 0
            if self._cend > self._cpos:
                with memoryview(self._cbuf) as cv, cv[self._cpos : self._cend] as src:
                    try:
                        used, produced = dec.open_into(src, mv)
                    except SecurityError as exc:
                        self._fail(exc)
                self._cpos += used
                if produced:
                    return produced
                if not used and self._frame_complete():
                    # the next frame is larger than ``mv``: serve it in parts
                    data = self._read_raw(len(mv))
                    k = len(data)
                    mv[:k] = data
                    return k
                if used:
                    continue  # empty frames only
            if not self._fill():
                self._eof()
                return 0

    def _frame_complete(self) -> bool:
        avail = self._cend - self._cpos
        if avail < 2:
            return False
        cbuf = self._cbuf
        p = self._cpos
        return avail >= 2 + ((cbuf[p] << 8) | cbuf[p + 1])

    def _read_raw(self, n: int) -> bytes:
        pending = self._pending
        dec = self._dec
        while not pending:
            self._check_failed()
            if self._closed:
                return b""
            if self._frame_complete():
                with memoryview(self._cbuf) as cv, cv[self._cpos : self._cend] as src:
                    try:
                        used, pt = dec.open_one(src)
                    except SecurityError as exc:
                        self._fail(exc)
                self._cpos += used
                if pt:
                    pending.append(pt)
                continue
            if not self._fill():
                self._eof()
                return b""
        # Serve from the decrypted chunks; ``_off`` indexes into the first one, so
        # small reads cost a copy of what they return, never of the remainder.
        first = pending[0]
        off = self._off
        avail = len(first) - off
        if avail >= n:
            if avail == n:
                pending.popleft()
                self._off = 0
                return first[off:] if off else first
            self._off = off + n
            return first[off : off + n]
        pending.popleft()
        self._off = 0
        piece = first[off:] if off else first
        if not pending or avail + len(pending[0]) > n:
            return piece
        parts = [piece]
        size = avail
        while pending and size + len(pending[0]) <= n:
            chunk = pending.popleft()
            parts.append(chunk)
            size += len(chunk)
        return b"".join(parts)

    def _fail(self, exc: BaseException):
        self._error = exc
        log.debug("noise connection to %s failed: %s", self.remote_peer, exc)
        self.close()
        raise exc

    # ------------------------------------------------------------------ writing

    def write(self, data) -> None:
        """Blocks the calling greenlet until all of ``data`` is encrypted and handed to the transport."""
        if self._closed:
            raise TransportError(errno.EBADF, "write on a closed connection")
        if not data:
            return
        with self._wlock:
            self._send(self._enc.seal_v((data,)))

    def writev(self, buffers: Iterable) -> None:
        """Blocks the calling greenlet until all buffers are written, as few frames as possible."""
        if self._closed:
            raise TransportError(errno.EBADF, "write on a closed connection")
        bufs = [b for b in buffers if b]
        if not bufs:
            return
        with self._wlock:
            self._send(self._enc.seal_v(bufs))

    def _send(self, frames) -> None:
        # ``frames`` may be a view of a pooled buffer: release it and hand the buffer
        # back once sent (not after a failure: a dead send may still reference it)
        self._raw.write(frames)
        if isinstance(frames, memoryview):
            frames.release()
            self._enc.recycle()

    def _write_raw(self, data) -> None:  # pragma: no cover - write() is overridden
        self.write(data)

    # ------------------------------------------------------------------ closing

    def _close_raw(self) -> None:
        self._pending.clear()
        self._off = 0
        self._cpos = self._cend = 0
        self._cbuf = bytearray()  # (a reader blocked in readinto keeps the old one until it returns)
        _close_quietly(self._raw)

    def close_write(self) -> None:
        """Half-close the underlying transport if it supports it (TCP FIN)."""
        cw = getattr(self._raw, "close_write", None)
        if cw is not None:
            cw()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<NoiseConn {self.remote_peer} {self.remote_addr} {state}>"
