"""TLS 1.3 security transport (``/tls/1.0.0``): the gevent shell around :mod:`geventp2p.sansio.tls`.

``TlsTransport.secure_outbound``/``secure_inbound`` run the handshake over a
``RawConn`` and return a ``TlsConn``: a ``RawConn`` (and ``SecureConn``) whose
bytes travel in TLS records.  The session (certificates, ALPN, the record
layer) lives in the sans-I/O core; this module only moves bytes and holds the
write lock that keeps records in wire order.
"""

from __future__ import annotations

import errno
import logging
from typing import Iterable, Optional, Sequence

from gevent.lock import Semaphore

from geventp2p.core.peer import PeerId
from geventp2p.core.transport import RawConn
from geventp2p.crypto.keys import PrivateKey
from geventp2p.exceptions import SecurityError, TransportError
from geventp2p.net._deadline import timeout_scope
from geventp2p.net.rawconn import Buffer
from geventp2p.net.rawconn import SecuredConn, close_quietly
from geventp2p.sansio.tls import PROTOCOL_ID, TlsConfig, TlsSession

__all__ = ["TlsTransport", "TlsConn", "TlsConfig", "PROTOCOL_ID"]

log = logging.getLogger(__name__)

_HANDSHAKE_READ = 16384
_RECV_SIZE = 262144


class TlsTransport:
    """The libp2p TLS security transport.

    ``muxers`` are offered in ALPN for early muxer negotiation (in preference
    order) unless ``config.early_muxer_negotiation`` is off.
    """

    PROTOCOL_ID = PROTOCOL_ID

    def __init__(self, local_key: PrivateKey, muxers: Sequence[str] = ("/yamux/1.0.0",),
                 config: Optional[TlsConfig] = None) -> None:
        self.local_key = local_key
        self.local_peer = PeerId.from_public_key(local_key.public_key())
        self.config = config or TlsConfig()
        self.muxers = tuple(muxers) if self.config.early_muxer_negotiation else ()

    def secure_outbound(self, raw: RawConn, remote_peer: Optional[PeerId] = None,
                        timeout: Optional[float] = None) -> "TlsConn":
        """Blocks the calling greenlet while running the handshake as client; ``remote_peer``
        is checked against the certificate (``PeerIdMismatchError``).  Closes ``raw`` on failure."""
        return self._secure(raw, True, remote_peer, timeout)

    def secure_inbound(self, raw: RawConn, timeout: Optional[float] = None) -> "TlsConn":
        """Blocks the calling greenlet while running the handshake as server; closes ``raw`` on failure."""
        return self._secure(raw, False, None, timeout)

    def _secure(self, raw: RawConn, initiator: bool, remote_peer: Optional[PeerId],
                timeout: Optional[float]) -> "TlsConn":
        try:
            with timeout_scope(timeout, "tls handshake"):
                session = TlsSession(initiator, self.local_key, muxers=self.muxers,
                                     expected_remote_peer=remote_peer, config=self.config)
                conn = self._drive(raw, session)
        except BaseException:
            close_quietly(raw)
            raise
        log.debug("tls handshake done with %s (initiator %s, early muxer %s)", conn.remote_peer, initiator,
                  conn.early_muxer)
        return conn

    def _drive(self, raw: RawConn, session: TlsSession) -> "TlsConn":
        failure: Optional[BaseException] = None
        while True:
            out = session.data_to_send()
            if out:
                raw.write(out)
            if failure is not None:
                raise failure  # the alert went out first
            if session.finished:
                break
            data = raw.read(_HANDSHAKE_READ)
            try:
                if not data:
                    session.receive_eof()
                session.receive_data(data)
            except SecurityError as exc:
                failure = exc
        return TlsConn(raw, session, self.local_peer)


class TlsConn(SecuredConn):
    """A RawConn carried in TLS 1.3 records (the result of a handshake): a SecureConn.

    Beyond RawConn: ``local_peer``, ``remote_peer``, ``remote_public_key``,
    ``security_protocol`` (``"/tls/1.0.0"``) and ``early_muxer`` (agreed in ALPN, or
    None).  A record that fails authentication ends the connection: the read raises
    ``SecurityError`` and closes it.
    """

    security_protocol = PROTOCOL_ID

    def __init__(self, raw: RawConn, session: TlsSession, local_peer: PeerId) -> None:
        assert session.remote_peer is not None and session.remote_public_key is not None
        super().__init__(raw, local_peer, session.remote_peer, session.remote_public_key, session.early_muxer)
        self._session = session
        self._wlock = Semaphore()  # one writer at a time: records go out in order

    # ------------------------------------------------------------------ reading

    def _readinto_raw(self, mv: memoryview) -> int:
        session = self._session
        size = len(mv)
        try:
            while True:
                k = session.recv_into(mv, size)
                if k is not None:
                    self._flush_generated()
                    return k
                if not self._fill():
                    return 0
        except SecurityError:
            self.close()
            raise

    def _read_raw(self, n: int) -> bytes:
        buf = bytearray(n)
        k = self._readinto_raw(memoryview(buf))
        return bytes(buf[:k])

    def _fill(self) -> bool:
        """Receive ciphertext into the session; False once closed (EOF is passed on)."""
        if self._closed:
            return False
        data = self._raw.read(_RECV_SIZE)
        if self._closed:
            return False
        if not data:
            self._session.receive_eof()
        else:
            self._session.receive_data(data)
        return True

    def _flush_generated(self) -> None:
        """Send what reading produced (e.g. a KeyUpdate answer) if no writer is busy;
        otherwise the next write takes it along."""
        if self._wlock.locked() or self._closed:
            return
        with self._wlock:
            out = self._session.data_to_send()
            if out:
                self._raw.write(out)

    # ------------------------------------------------------------------ writing

    def write(self, data: Buffer) -> None:
        """Blocks the calling greenlet until all of ``data`` is encrypted and handed to the transport."""
        if self._closed:
            raise TransportError(errno.EBADF, "write on a closed connection")
        if self._pending:
            self.writev((data,))
        elif data:
            self._send((data,))

    def writev(self, buffers: Iterable[Buffer]) -> None:
        """Blocks the calling greenlet until all buffers are written."""
        if self._closed:
            raise TransportError(errno.EBADF, "write on a closed connection")
        bufs: list[Buffer] = [b for b in buffers if b]
        if self._pending:
            prefix = self._take_prefix()
            if prefix:
                bufs.insert(0, prefix)
        if bufs:
            self._send(bufs)  # small buffers share a record, large ones are not copied

    def _write_raw(self, data: Buffer) -> None:
        self._send((data,))

    def _send(self, buffers: Sequence[Buffer]) -> None:
        with self._wlock:
            chunks = self._session.send(buffers)
            if len(chunks) == 1:
                self._raw.write(chunks[0])
            elif chunks:
                self._raw.writev(chunks)  # no join: one sendmsg

    # ------------------------------------------------------------------ closing

    def close_write(self) -> None:
        """Half-close: a pending negotiation prefix, then close_notify, then the transport's FIN."""
        if self._closed:
            return
        if self._prefix:
            self._flush_prefix()
        with self._wlock:
            self._session.close_notify()
            out = self._session.data_to_send()
            if out:
                self._raw.write(out)
        close_write = getattr(self._raw, "close_write", None)
        if close_write is not None:
            close_write()

    def __repr__(self) -> str:
        return f"<TlsConn {self.remote_peer} {self.remote_addr} {'closed' if self.closed else 'open'}>"
