"""libp2p TLS 1.3 (``/tls/1.0.0``) as a sans-I/O session: bytes in, bytes out.

https://github.com/libp2p/specs/blob/master/tls/tls.md

:class:`TlsSession` drives OpenSSL over two memory BIOs: the shell feeds the
ciphertext it received (``receive_data``), collects what must be sent
(``data_to_send``), and after the handshake encrypts (``send``) and decrypts
(``recv_into``/``recv``) application bytes.  It never touches a socket or a clock.

Rules it enforces:

* TLS 1.3 only; both sides present a certificate and the server requires the
  client's (``VERIFY_PEER | VERIFY_FAIL_IF_NO_PEER_CERT``); the client sends no SNI.
* The peer's certificate is checked by :func:`geventp2p.crypto.tlscert.verify_certificate`
  (one certificate, validity, self-signature, extensions, identity signature).
  OpenSSL's own chain verification is only a carrier: its verify callback ignores
  OpenSSL's verdict (a self-signed certificate never chains to a trusted root) and
  answers with ours, so a bad certificate aborts the handshake with an alert.  The
  "exactly one certificate" rule is checked again on the chain once the handshake
  is done (OpenSSL does not expose the whole received chain inside the callback).
* A dialer that expects a peer ID gets ``PeerIdMismatchError`` for another one.
* ALPN: the client offers its muxer ids then ``"libp2p"`` (early muxer negotiation,
  https://github.com/libp2p/specs/blob/master/connections/inlined-muxer-negotiation.md);
  the server picks the first of its own list that the client offers and aborts the
  handshake when there is none.  A result of ``"libp2p"`` (or no ALPN) leaves the
  muxer to multistream-select, as before.

Why pyOpenSSL and not the standard library's ``ssl`` module: ``ssl.SSLObject``
over ``ssl.MemoryBIO`` is sans-I/O too, but it cannot install a verify callback.
A server that requires a client certificate (libp2p's mutual authentication)
then needs the client's self-signed certificate to chain to a CA it trusts, and
there is no CA here: with ``CERT_REQUIRED`` the handshake fails on every libp2p
certificate, and with ``CERT_OPTIONAL``/``CERT_NONE`` a server does not even ask
for one.  pyOpenSSL's ``Connection`` has memory BIOs *and* ``set_verify`` with a
callback, so the check is ours and the verdict still travels in the handshake.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Optional, Sequence

from geventp2p.core.lazy import lazy_module
from geventp2p.core.peer import PeerId
from geventp2p.crypto.keys import PrivateKey, PublicKey
from geventp2p.exceptions import ConfigError, PeerIdMismatchError, SecurityError, TlsCertificateError

if TYPE_CHECKING:
    from cryptography import x509
    from OpenSSL import SSL

    from geventp2p.crypto import tlscert
else:
    # pyOpenSSL and cryptography's X.509 code are imported at the first handshake
    # (about 10 MiB a Noise-only process never needs); see geventp2p.core.lazy.
    SSL = lazy_module("OpenSSL.SSL")
    tlscert = lazy_module("geventp2p.crypto.tlscert")

__all__ = ["TlsConfig", "TlsSession", "PROTOCOL_ID", "ALPN_LIBP2P"]

PROTOCOL_ID = "/tls/1.0.0"
#: The ALPN protocol every libp2p TLS endpoint offers (last, after any muxer ids).
ALPN_LIBP2P = "libp2p"
_READ_CHUNK = 120 * 1024  # below glibc's default mmap threshold (128 KiB)
_WRITE_PIECE = 7 * 16384  # plaintext per SSL_write: its ciphertext fits one _READ_CHUNK
_SLACK = 4096
_MAX_RECORD = 16384
_RECORD_OVERHEAD = 22
_SSL_MODE_ENABLE_PARTIAL_WRITE = 0x1  # OpenSSL's SSL_MODE_ENABLE_PARTIAL_WRITE (ssl.h)


@dataclass(frozen=True)
class TlsConfig:
    """Knobs of the TLS security transport.

    early_muxer_negotiation: offer our muxer ids in ALPN (else only ``"libp2p"``).
    require_critical_extension: refuse a peer whose libp2p extension is not marked
      critical.  The spec allows either (its own test vectors are non-critical and
      go-libp2p and py-libp2p send it non-critical), so the default accepts both.
    """

    early_muxer_negotiation: bool = True
    require_critical_extension: bool = False

    def __post_init__(self) -> None:
        for name in ("early_muxer_negotiation", "require_critical_extension"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"TlsConfig.{name} must be a bool")


class TlsSession:
    """One endpoint of a libp2p TLS connection over memory buffers.

    Handshake: call ``data_to_send()`` and send it, feed received bytes to
    ``receive_data()``, repeat until ``finished``.  Then ``send``/``recv_into`` move
    application bytes; every call may leave ciphertext in ``data_to_send()``.
    Failures raise ``SecurityError`` (``TlsCertificateError``,
    ``InvalidSignatureError``, ``PeerIdMismatchError`` for the certificate rules).
    """

    def __init__(
        self,
        initiator: bool,
        host_key: PrivateKey,
        *,
        muxers: Sequence[str] = (),
        expected_remote_peer: Optional[PeerId] = None,
        config: Optional[TlsConfig] = None,
        certificate: Optional[tuple[x509.Certificate, Any]] = None,
    ) -> None:
        self.initiator = initiator
        self.config = config or TlsConfig()
        self.expected_remote_peer = expected_remote_peer
        self._alpn = [m for m in muxers if m != ALPN_LIBP2P] + [ALPN_LIBP2P]
        cert, cert_key = certificate if certificate is not None else tlscert.make_certificate(host_key)
        ctx = SSL.Context(SSL.TLS_METHOD)
        ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
        # pyOpenSSL turns partial writes on: SSL_write then stops after one 16 KiB record
        # and every record costs a Python round (send + drain).  Into a memory BIO a write
        # cannot block, so whole writes are safe: up to _WRITE_PIECE per call.
        clear_mode = getattr(ctx, "clear_mode", None)  # absent in older pyOpenSSL: partial writes, still correct
        if clear_mode is not None:
            clear_mode(_SSL_MODE_ENABLE_PARTIAL_WRITE)
        ctx.use_certificate(cert)
        ctx.use_privatekey(cert_key)
        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, self._verify_callback)
        if not initiator:
            ctx.set_alpn_select_callback(self._select_alpn)
        conn = SSL.Connection(ctx, None)  # no socket: memory BIOs on both sides
        if initiator:
            conn.set_alpn_protos([p.encode() for p in self._alpn])  # and no SNI
            conn.set_connect_state()
        else:
            conn.set_accept_state()
        self._conn = conn
        self._verify_error: Optional[BaseException] = None
        self._verified = False
        self._eof = False
        self.finished = False
        self.remote_public_key: Optional[PublicKey] = None
        self.remote_peer: Optional[PeerId] = None
        self.alpn: Optional[str] = None
        if initiator:
            self._step()  # the ClientHello

    # ------------------------------------------------------------------ callbacks

    def _verify_callback(self, conn: Any, cert: Any, errnum: int, depth: int, ok: int) -> bool:
        if depth != 0:
            return True  # only the leaf counts; a longer chain is refused after the handshake
        if not self._verified:
            self._verified = True
            try:
                key = tlscert.verify_certificate(
                    cert.to_cryptography(), require_critical=self.config.require_critical_extension)
                peer = PeerId.from_public_key(key)
                if self.expected_remote_peer is not None and peer != self.expected_remote_peer:
                    raise PeerIdMismatchError(self.expected_remote_peer, peer)
                self.remote_public_key, self.remote_peer = key, peer
            except SecurityError as exc:
                self._verify_error = exc
            except Exception as exc:  # a certificate we cannot even parse
                self._verify_error = SecurityError(f"bad peer certificate: {exc}")
        return self._verify_error is None

    def _select_alpn(self, conn: Any, offered: list[bytes]) -> Any:
        names = [p.decode("utf-8", "replace") for p in offered]
        for ours in self._alpn:  # our preference order
            if ours in names:
                return ours.encode()
        return SSL.NO_OVERLAPPING_PROTOCOLS

    # ------------------------------------------------------------------ handshake

    def _step(self) -> None:
        try:
            self._conn.do_handshake()
        except SSL.WantReadError:
            return
        except SSL.Error as exc:
            raise self._failure(exc) from exc
        self._complete()

    def _failure(self, exc: BaseException) -> BaseException:
        if self._verify_error is not None:
            return self._verify_error
        return SecurityError(f"TLS handshake failed: {exc}")

    def _complete(self) -> None:
        conn = self._conn
        if conn.get_protocol_version_name() != "TLSv1.3":  # pragma: no cover - min version is 1.3
            raise SecurityError(f"negotiated {conn.get_protocol_version_name()}, need TLS 1.3")
        chain = conn.get_peer_cert_chain(as_cryptography=True) or []
        leaf = conn.get_peer_certificate(as_cryptography=True)
        # the client side's chain includes the leaf, the server side's does not
        count = len(chain) + (0 if any(c == leaf for c in chain) else 1 if leaf is not None else 0)
        if count != 1:
            raise TlsCertificateError(f"expected exactly one certificate, got {count}")
        if self._verify_error is not None:
            raise self._verify_error
        if self.remote_public_key is None:  # pragma: no cover - VERIFY_FAIL_IF_NO_PEER_CERT
            raise SecurityError("the peer presented no certificate")
        alpn = conn.get_alpn_proto_negotiated()
        self.alpn = alpn.decode("utf-8", "replace") if alpn else None
        self.finished = True

    @property
    def early_muxer(self) -> Optional[str]:
        """The muxer agreed in ALPN, or None when multistream must pick it."""
        return None if self.alpn in (None, ALPN_LIBP2P) else self.alpn

    # ------------------------------------------------------------------ bytes in / out

    def receive_data(self, data: bytes) -> None:
        """Feed received ciphertext; during the handshake this advances it (may raise)."""
        if data:
            self._conn.bio_write(data)
        if not self.finished:
            self._step()

    def receive_eof(self) -> None:
        """The transport reached EOF; raises during the handshake."""
        self._eof = True
        if not self.finished:
            if self._verify_error is not None:
                raise self._verify_error
            raise SecurityError("connection closed during the TLS handshake")
        self._conn.bio_shutdown()

    def data_to_send(self) -> bytes:
        """Ciphertext waiting to go out (b"" if none)."""
        out = self._drain(0)
        return out[0] if len(out) == 1 else b"".join(out)

    def _drain(self, expected: int) -> list[bytes]:
        """The queued ciphertext as chunks of at most ``_READ_CHUNK`` bytes.

        pyOpenSSL allocates the whole ``bufsiz`` on every ``bio_read``; a large one is a
        fresh mmap (page faults on every byte), so chunks stay below glibc's mmap
        threshold and the first read is sized to what ``send`` is known to have queued.
        """
        size = min(expected + _SLACK, _READ_CHUNK) if expected else _SLACK
        out: list[bytes] = []
        read = self._conn.bio_read
        while True:
            try:
                chunk = read(size)
            except SSL.WantReadError:
                return out
            out.append(chunk)
            if len(chunk) < size:
                return out  # a memory BIO hands out all it holds up to ``size``: now empty
            size = _READ_CHUNK

    def send(self, buffers: Iterable[Any]) -> list[bytes]:
        """Encrypt ``buffers`` (whole); returns all ciphertext now due, in order, as chunks."""
        conn = self._conn
        out: list[bytes] = []  # ciphertext left by a read (a KeyUpdate answer) comes first: the BIO is FIFO
        small: list[Any] = []
        small_len = 0
        try:
            for b in buffers:
                n = b.nbytes if type(b) is memoryview else len(b)
                if n < _MAX_RECORD:  # coalesce small buffers (frame headers) into one record
                    small.append(b)
                    small_len += n
                    if small_len < _MAX_RECORD:
                        continue
                    b, n = b"".join(small), small_len
                    small, small_len = [], 0
                elif small:
                    out += self._write(conn, b"".join(small), small_len)
                    small, small_len = [], 0
                out += self._write(conn, b, n)
            if small:
                out += self._write(conn, small[0] if len(small) == 1 else b"".join(small), small_len)
        except SSL.Error as exc:
            raise SecurityError(f"TLS send failed: {exc}") from exc
        return out

    def _write(self, conn: Any, data: Any, total: int) -> list[bytes]:
        view = data if type(data) is bytes else memoryview(data).cast("B")
        out: list[bytes] = []
        done = 0
        while done < total:  # pieces of at most _WRITE_PIECE plaintext bytes, drained at once
            end = min(done + _WRITE_PIECE, total)
            piece = view[done:end] if done or end < total else view
            k = conn.send(piece)
            done += k
            # TLS 1.3 record: 5-byte header + up to 16 KiB + content type + 16-byte tag
            out += self._drain(k + _RECORD_OVERHEAD * (-(-k // _MAX_RECORD)))
        return out

    def recv_into(self, buf: Any, nbytes: int) -> Optional[int]:
        """Decrypt up to ``nbytes`` into ``buf``: the count, 0 at the end of the stream
        (close_notify or transport EOF), or None when more ciphertext is needed."""
        view = buf if isinstance(buf, memoryview) else memoryview(buf)
        recv = self._conn.recv_into
        total = 0
        while total < nbytes:
            # one record per SSL_read (<= 16 KiB): ask for no more, pyOpenSSL allocates it all
            want = nbytes - total
            try:
                k = recv(view[total:] if total else view, want if want < _MAX_RECORD else _MAX_RECORD)
            except SSL.WantReadError:
                if total:
                    break
                return 0 if self._eof else None
            except SSL.ZeroReturnError:
                if total:
                    break
                return 0  # close_notify: the peer will send no more
            except SSL.SysCallError:
                if total:
                    break
                if self._eof:
                    return 0  # transport EOF without close_notify (lenient, as go)
                raise SecurityError("TLS record layer failed") from None
            except SSL.Error as exc:
                raise SecurityError(f"TLS record failed: {exc}") from exc
            total += k
        return total

    def close_notify(self) -> None:
        """Queue a close_notify alert (half-close: we send nothing more)."""
        try:
            self._conn.shutdown()
        except SSL.Error:
            pass
