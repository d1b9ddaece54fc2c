"""Security contracts: a secure transport turns a :class:`RawConn` into a :class:`SecureConn`.

The second step of the upgrade order (raw -> secure -> muxed).  After the
handshake both peers are authenticated: ``remote_peer`` is derived from
``remote_public_key``, and a dialer that asked for a specific peer got that peer
or a ``PeerIdMismatchError``.  See
https://github.com/libp2p/specs/blob/master/noise/README.md and
https://github.com/libp2p/specs/blob/master/plaintext/README.md.

Structural ``typing.Protocol`` types; no I/O and no gevent here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from geventp2p.core.crypto import PublicKey
from geventp2p.core.transport import RawConn

if TYPE_CHECKING:
    from geventp2p.core.peer import PeerId

__all__ = ["PeerIdentity", "PublicKey", "SecureConn", "SecureTransport"]


class PeerIdentity(Protocol):
    """Who is on each end of an authenticated connection (a secure or a muxed one)."""

    @property
    def local_peer(self) -> PeerId:
        """Our peer id."""

    @property
    def remote_peer(self) -> PeerId:
        """The authenticated remote peer id."""

    @property
    def remote_public_key(self) -> PublicKey:
        """The remote peer's public key, as proven in the security handshake."""


class SecureConn(RawConn, PeerIdentity, Protocol):
    """A :class:`RawConn` whose bytes are protected and whose peers are known.

    Same read/write/close semantics as :class:`RawConn`; a frame that fails
    authentication makes ``read`` raise ``SecurityError`` and closes the connection.
    """

    @property
    def security_protocol(self) -> str:
        """The protocol id that secured this conn (e.g. ``"/noise"``)."""

    @property
    def early_muxer(self) -> str | None:
        """Muxer agreed inside the handshake (Noise extensions), else ``None``."""


class SecureTransport(Protocol):
    """Runs a security handshake over a raw connection (one per security protocol id)."""

    @property
    def PROTOCOL_ID(self) -> str:  # noqa: N802 - the multistream protocol id constant
        """The multistream-select id, e.g. ``"/noise"``."""

    def secure_inbound(self, raw: RawConn, timeout: float | None = None) -> SecureConn:
        """Blocks for the listener side of the handshake.

        Raises ``SecurityError``, ``P2PTimeoutError``, ``TransportError``; the
        caller closes ``raw`` on failure.
        """

    def secure_outbound(
        self, raw: RawConn, remote_peer: PeerId | None = None, timeout: float | None = None
    ) -> SecureConn:
        """Blocks for the dialer side; with ``remote_peer`` raises ``PeerIdMismatchError``
        if another peer answered.  Other errors as ``secure_inbound``."""
