"""Noise security transport (``/noise``): the gevent shell around :mod:`geventp2p.sansio.noise`.

``NoiseTransport.secure_outbound`` / ``secure_inbound`` run the handshake core over a
``RawConn`` and return a ``NoiseConn``: a ``RawConn`` whose bytes travel in Noise
transport frames.  All framing lives in the core; this module only moves bytes:
``readinto`` receives ciphertext into the decryptor's own buffer and decrypts it
straight into the caller's buffer (no bytes object per receive), ``write``/``writev``
seal into one pooled buffer that goes out in one call.

The decryptor's buffer comes from the process-wide :data:`geventp2p.net.bufpool.POOL`
and goes back to it when the connection has nothing buffered and waits: at once for a
waiting read, and after a short idle period for the muxer's reader (which calls
:meth:`NoiseConn.release_buffers` from its buffer sweeper), so an idle connection holds
no receive buffer; it starts small and grows only while receives fill it (bulk
traffic).
"""

from __future__ import annotations

import errno
import logging
from typing import Any, Iterable, Optional, Sequence

from gevent.lock import Semaphore

from geventp2p.core.peer import PeerId
from geventp2p.core.transport import RawConn
from geventp2p.crypto.backend import get_backend
from geventp2p.crypto.keys import PrivateKey
from geventp2p.exceptions import SecurityError, TransportError
from geventp2p.net._deadline import timeout_scope
from geventp2p.net.bufpool import POOL
from geventp2p.net.rawconn import Buffer
from geventp2p.net.rawconn import SecuredConn, close_quietly
from geventp2p.sansio.noise import RECV_SIZE, FrameDecryptor, FrameEncryptor, Handshake, HandshakeResult

__all__ = ["NoiseTransport", "NoiseConn", "PROTOCOL_ID", "RECV_SIZE"]

log = logging.getLogger(__name__)

PROTOCOL_ID = "/noise"
_HANDSHAKE_READ = 4096


class NoiseTransport:
    """The libp2p Noise security transport.

    ``muxers`` are advertised in the handshake payload for early muxer negotiation
    (in preference order); pass ``()`` to advertise none.  ``backend`` overrides the
    crypto backend (an object or a name).
    """

    PROTOCOL_ID = PROTOCOL_ID

    def __init__(self, local_key: PrivateKey, muxers: Sequence[str] = ("/yamux/1.0.0",), *, backend: Any = None) -> None:
        self.local_key = local_key
        self.local_peer = PeerId.from_public_key(local_key.public_key())
        self.muxers = tuple(muxers)
        self.backend = get_backend(backend) if backend is None or isinstance(backend, str) else backend

    def secure_outbound(self, raw: RawConn, remote_peer: Optional[PeerId] = None, timeout: Optional[float] = None) -> "NoiseConn":
        """Blocks the calling greenlet while running the handshake as initiator; ``remote_peer``
        is checked against the authenticated identity (``PeerIdMismatchError``).  Closes ``raw`` on failure."""
        return self._secure(raw, True, remote_peer, timeout)

    def secure_inbound(self, raw: RawConn, timeout: Optional[float] = None) -> "NoiseConn":
        """Blocks the calling greenlet while running the handshake as responder; closes ``raw`` on failure."""
        return self._secure(raw, False, None, timeout)

    def _secure(self, raw: RawConn, initiator: bool, remote_peer: Optional[PeerId], timeout: Optional[float]) -> "NoiseConn":
        hs = Handshake(initiator, self.local_key, muxers=self.muxers, expected_remote_peer=remote_peer, backend=self.backend)
        try:
            with timeout_scope(timeout, "noise handshake"):
                while True:
                    out = hs.data_to_send()
                    if out:
                        raw.write(out)
                    if hs.finished:
                        break
                    data = raw.read(_HANDSHAKE_READ)
                    if not data:
                        hs.receive_eof()
                    hs.receive_data(data)
        except BaseException:
            close_quietly(raw)
            raise
        conn = NoiseConn(raw, hs.result, self.local_peer, hs.unused_data)
        log.debug("noise handshake done with %s (initiator %s, early muxer %s)", conn.remote_peer, initiator, conn.early_muxer)
        return conn


class NoiseConn(SecuredConn):
    """A RawConn carried in Noise transport frames (the result of a handshake): a SecureConn.

    Beyond RawConn: ``local_peer``, ``remote_peer``, ``remote_public_key``,
    ``security_protocol`` (``"/noise"``), ``early_muxer`` (agreed in the handshake, or
    None) and ``handshake_hash``.  A frame that fails authentication ends the
    connection: the read raises ``SecurityError`` and closes it.  It reads and
    writes the transport's connection directly (no negotiation state is left on it
    after the handshake).
    """

    security_protocol = PROTOCOL_ID

    def __init__(self, raw: RawConn, result: HandshakeResult, local_peer: PeerId,
                 received: bytes = b"") -> None:
        super().__init__(raw, local_peer, result.remote_peer, result.remote_public_key, result.early_muxer)
        self._enc = FrameEncryptor(result.send_cipher)
        self._dec = FrameDecryptor(result.recv_cipher, pool=POOL)  # a buffer only while reading
        if received:
            self._dec.receive_data(received)
        self._wlock = Semaphore()  # one writer at a time: nonce order is wire order
        self.handshake_hash = result.handshake_hash

    # A frame that fails authentication (SecurityError) closes the connection.

    def _readinto_raw(self, mv: memoryview) -> int:
        dec = self._dec
        try:
            while True:
                k = dec.readinto(mv)  # decrypts straight into mv
                if k or not self._fill():
                    return k
        except SecurityError:
            self.close()
            raise

    def _read_raw(self, n: int) -> bytes:
        dec = self._dec
        try:
            while True:
                data = dec.read(n)
                if data or not self._fill():
                    return data
        except SecurityError:
            self.close()
            raise

    def wait_readable(self) -> None:
        """Blocks the calling greenlet until a read would not wait.  The decryptor keeps
        its buffer: a caller that waits long hands it back with :meth:`release_buffers`
        (the muxer's reader does, through its buffer sweeper)."""
        if self._rbuf or self._pending or self._closed:
            return
        if self._dec.readable:
            return
        wait = getattr(self._raw, "wait_readable", None)
        if wait is not None:
            wait()

    def release_buffers(self) -> None:
        """Hand the decryptor's ciphertext buffer back to the pool unless it holds part
        of a frame; the next read takes one again."""
        self._dec.release_buffer()

    def release_idle_state(self) -> None:
        """The connection is idle (the muxer retired its reader and writer): drop both
        directions' AEAD objects; the next read or write makes them again."""
        self._enc.release_cipher()
        self._dec.release_cipher()

    def readable_fileno(self) -> Optional[int]:
        if self._rbuf or self._pending or self._closed or self._dec.readable:
            return None
        fileno = getattr(self._raw, "readable_fileno", None)  # an optional RawConn method
        return fileno() if fileno is not None else None

    def _readinto_nowait_raw(self, mv: memoryview) -> Optional[int]:
        dec = self._dec
        try:
            while True:
                k = dec.readinto(mv)
                if k:
                    return k
                got = self._fill_nowait()
                if got is None:
                    return None
                if not got:
                    return 0
        except SecurityError:
            self.close()
            raise

    def _fill(self) -> bool:
        """Receive ciphertext into the decryptor's own buffer; False at EOF or once closed.

        Tries without waiting first; if nothing is there the buffer goes back to the
        pool while the transport is waited for."""
        got = self._fill_nowait()
        if got is not None:
            return got
        self._dec.release_buffer()  # a waiting read: wait for the transport without it
        self.wait_readable()
        return bool(self._receive(self._raw.readinto))  # (a waiting read never gives None)

    def _fill_nowait(self) -> Optional[bool]:
        """``_fill`` without waiting: None when no ciphertext is available now."""
        return self._receive(getattr(self._raw, "readinto_nowait", self._raw.readinto))

    def _receive(self, readinto: Any) -> Optional[bool]:
        if self._closed:
            return False
        dec = self._dec
        view = dec.receive_buffer()
        try:
            k = readinto(view)
        finally:
            view.release()
        if self._closed:
            return False
        if k is None:
            return None
        if not k:
            dec.receive_eof()  # raises if EOF cut a frame
            return False
        dec.receive_into(k)
        return True

    def write(self, data: Buffer) -> None:
        """Blocks the calling greenlet until all of ``data`` is encrypted and handed to the transport."""
        if self._closed:
            raise TransportError(errno.EBADF, "write on a closed connection")
        if self._pending:  # a lazily proposed protocol (multistream inside the secure channel)
            self.writev((data,))
        elif data:
            self._send((data,))

    def writev(self, buffers: Iterable[Buffer]) -> None:
        """Blocks the calling greenlet until all buffers are written, as few frames as possible."""
        if self._closed:
            raise TransportError(errno.EBADF, "write on a closed connection")
        bufs: list[Buffer] = [b for b in buffers if b]
        if self._pending:
            prefix = self._take_prefix()
            if prefix:
                bufs.insert(0, prefix)  # same frame as the first message
        if bufs:
            self._send(bufs)

    def _write_raw(self, data: Buffer) -> None:
        self._send((data,))

    def _send(self, buffers: Sequence[Buffer]) -> None:
        enc = self._enc
        with self._wlock:
            frames = enc.seal(buffers)
            self._raw.write(frames)
            # sent: hand the buffer back (not after a failure: a dead send may still hold it)
            frames.release()
            enc.recycle()

    def _close_raw(self) -> None:
        self._dec.release()  # (a reader blocked in readinto keeps its view until it returns)
        super()._close_raw()

    def close_write(self) -> None:
        """Half-close the underlying transport (TCP FIN); a pending negotiation prefix goes first."""
        if self._prefix and not self._closed:
            self._flush_prefix()
        self._raw.close_write()

    def __repr__(self) -> str:
        return f"<NoiseConn {self.remote_peer} {self.remote_addr} {'closed' if self.closed else 'open'}>"
