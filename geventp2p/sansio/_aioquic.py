"""aioquic's ``QuicConnection`` with libp2p's certificate rules and consumption-driven credit.

Kept apart from :mod:`geventp2p.sansio.quic` so that importing the QUIC session module
does not import aioquic; the session loads this module with its first connection.
The overridden hooks are private to aioquic 1.x (the pin in ``pyproject.toml``); the
QUIC tests exercise each of them.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from aioquic import tls as _tls
from aioquic.quic import connection as _aioquic_connection
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicFrameType

from geventp2p.exceptions import SecurityError

if TYPE_CHECKING:
    from geventp2p.sansio.quic import QuicSession

__all__ = ["Libp2pQuicConnection"]

# aioquic's QuicConnection.__init__ builds its frame-handler table with 33 calls of
# EPOCHS(shortcut), each making the same frozenset again: about half the constructor's
# time (~130 -> ~55 us, once per connection on each side).  The answer depends only on
# the shortcut string and is immutable, so the module's function is memoised; the
# change is process-wide and gives every aioquic user the same values.
if not hasattr(_aioquic_connection.EPOCHS, "cache_info"):
    _aioquic_connection.EPOCHS = functools.lru_cache(maxsize=64)(_aioquic_connection.EPOCHS)

#: Frame type (1) + stream id (<= 8) + maximum (<= 8).
MAX_STREAM_DATA_CAPACITY = 17


class Libp2pQuicConnection(QuicConnection):
    """aioquic's connection with libp2p's certificate rules and consumption-driven credit."""

    def __init__(self, *, configuration: QuicConfiguration, session: "QuicSession", **kwargs: Any) -> None:
        self._p2p = session
        super().__init__(configuration=configuration, **kwargs)

    def _initialize(self, peer_cid: bytes) -> None:
        super()._initialize(peer_cid)
        ctx: Any = self.tls
        session = self._p2p
        if self._is_client:
            # aioquic's client makes a key share for each of P-256, P-384, X25519 and
            # X448; the P-384 and X448 keys cost ~0.35 ms per dial and no libp2p peer
            # picks them.  Offer X25519 first and P-256 (TLS 1.3's mandatory group).
            ctx._supported_groups = [g for g in (_tls.Group.X25519, _tls.Group.SECP256R1)
                                     if g in ctx._supported_groups]
            original = ctx._client_handle_certificate_verify

            def client_verify(input_buf: Any) -> None:
                original(input_buf)  # the CertificateVerify signature over the transcript
                session._check_peer(ctx)

            ctx._client_handle_certificate_verify = client_verify
        else:
            ctx._request_client_certificate = True
            handle_cert = ctx._server_handle_certificate
            handle_verify = ctx._server_handle_certificate_verify

            def server_certificate(input_buf: Any) -> None:
                handle_cert(input_buf)
                if ctx._peer_certificate is None:  # an empty Certificate message
                    session._refuse(SecurityError("the peer presented no certificate"), ctx)

            def server_verify(input_buf: Any) -> None:
                handle_verify(input_buf)
                session._check_peer(ctx)

            ctx._server_handle_certificate = server_certificate
            ctx._server_handle_certificate_verify = server_verify

    def _get_or_create_stream(self, frame_type: int, stream_id: int) -> Any:
        stream = super()._get_or_create_stream(frame_type, stream_id)
        self._p2p._peer_opened(stream_id)
        return stream

    def _write_stream_limits(self, builder: Any, space: Any, stream: Any) -> None:
        local = stream.max_stream_data_local
        if not local:
            return
        session = self._p2p
        sid = stream.stream_id
        window = session._window
        target = session._consumed.get(sid, 0) + window
        if target - local >= window >> 1 and not stream.receiver.is_finished:
            stream.max_stream_data_local = local = target
        if stream.max_stream_data_local_sent != local:
            buf = builder.start_frame(
                QuicFrameType.MAX_STREAM_DATA,
                capacity=MAX_STREAM_DATA_CAPACITY,
                handler=self._on_max_stream_data_delivery,
                handler_args=(stream,),
            )
            buf.push_uint_var(sid)
            buf.push_uint_var(local)
            stream.max_stream_data_local_sent = local

