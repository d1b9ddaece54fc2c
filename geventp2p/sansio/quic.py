"""QUIC v1 for libp2p (``/quic-v1``), sans-I/O: a muxer session over aioquic's ``QuicConnection``.

https://github.com/libp2p/specs/blob/master/quic/README.md

A QUIC connection is secured and multiplexed by itself, so :class:`QuicSession`
answers to the same verbs as the yamux and mplex cores
(:class:`geventp2p.sansio._mux.MuxSession`) and returns the same events, and the
shared gevent muxer shell (:mod:`geventp2p.net._muxconn`) drives it.  The
"connection" under it carries whole UDP datagrams: ``receive_data`` takes one
datagram, ``buffers_to_send`` returns datagrams.

libp2p's rules, and how they are met here:

* TLS 1.3 with ALPN ``"libp2p"`` (no multistream for security or muxing);
* each side presents the libp2p certificate (:mod:`geventp2p.crypto.tlscert`) and
  checks the peer's with :func:`~geventp2p.crypto.tlscert.verify_certificate`
  *inside* the handshake: a refusal aborts it with a TLS alert and the verifying
  side raises the same typed error as the TCP TLS transport
  (``TlsCertificateError``, ``InvalidSignatureError``, ``PeerIdMismatchError``);
  the server requires a client certificate;
* only bidirectional streams are used; a stream's reset carries the libp2p stream
  error code in RESET_STREAM / STOP_SENDING; the connection's close code goes in
  the application CONNECTION_CLOSE.

What aioquic does not expose is added by :mod:`geventp2p.sansio._aioquic`, which
overrides three private hooks of ``QuicConnection`` (pinned to aioquic 1.x, checked by
the tests):

* ``_initialize``: ask for the client certificate (aioquic's server never does
  otherwise), run our certificate check in the TLS state machine, and have the
  client offer key shares for X25519 and P-256 only (not also P-384 and X448);
* ``_get_or_create_stream``: learn of a peer's new stream when its first frame
  arrives, even an empty one (aioquic reports only data);
* ``_write_stream_limits``: grant receive credit (MAX_STREAM_DATA) as the
  application *consumes* data, one ``stream_receive_window`` ahead, instead of
  aioquic's doubling on receipt: a stream whose reader stalls stops its sender
  (back-pressure, as yamux's window).

Memory (opt-in, ``QuicConfig.reserve_stream_windows``): each stream's receive window
(``stream_receive_window``, the most a peer can make us buffer for it, all of it
granted at once by the transport parameters) is reserved from ``QuicSession.scope``
(the connection's resource scope; the shell sets it) when the stream opens, at the
priority yamux uses for its initial window, and released when the stream ends
(``stream_done``, a reset, the connection's end).  ``open_stream`` raises the
refusal; a peer's stream the scope cannot take is reset (RESET_STREAM and
STOP_SENDING, code 0x1002 "resource limit exceeded") and reported as
:class:`~geventp2p.sansio._mux.StreamRefused`.  Off by default: with the 1 MiB window
and go's 32 MiB connection memory limit a connection would hold at most 32 streams
(yamux reserves 256 KiB, 128 streams).

Keep-alive: aioquic has none, so the session sends a PING every
``keepalive_interval`` while the connection is idle.  Not supported (aioquic or
here): connection migration, 0-RTT, session resumption, datagrams, draft-29
(``/quic``).  No I/O, no clocks of its own (the shell passes ``now`` and a clock).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, NoReturn, Optional

from geventp2p.core.lazy import lazy_module
from geventp2p.core.mux import StreamErrorCode
from geventp2p.core.peer import PeerId
from geventp2p.core.rcmgr import NULL_SCOPE, Priority, ResourceScope
from geventp2p.exceptions import (
    ConfigError,
    PeerIdMismatchError,
    ProtocolError,
    ResourceLimitExceeded,
    ResourceScopeClosed,
    SecurityError,
    TransportError,
)
from geventp2p.sansio._mux import (
    DataReceived,
    GoAwayReceived,
    SessionError,
    StreamHalfClosed,
    StreamOpened,
    StreamRefused,
    StreamReset,
    check_positive_ints,
)

if TYPE_CHECKING:
    import ssl

    from aioquic import tls as _tls
    from aioquic.quic import configuration as _qconfig
    from aioquic.quic import connection as _qconn
    from aioquic.quic import events as _ev
    from aioquic.quic import packet as _qpacket

    from geventp2p.crypto import tlscert
    from geventp2p.sansio import _aioquic
else:
    # aioquic (and cryptography's X.509 code under it) load with the first QUIC
    # session, not with new_host: about 10 MiB a TCP-only process never needs
    # (the stdlib's ssl alone maps libssl, ~5 MiB).
    ssl = lazy_module("ssl")
    _tls = lazy_module("aioquic.tls")
    _qconfig = lazy_module("aioquic.quic.configuration")
    _qconn = lazy_module("aioquic.quic.connection")
    _ev = lazy_module("aioquic.quic.events")
    _qpacket = lazy_module("aioquic.quic.packet")
    tlscert = lazy_module("geventp2p.crypto.tlscert")
    _aioquic = lazy_module("geventp2p.sansio._aioquic")

__all__ = [
    "ALPN",
    "QuicConfig",
    "QuicSession",
    "HandshakeDone",
    "WriteStopped",
]

#: The one ALPN protocol libp2p offers over QUIC.
ALPN = "libp2p"
#: QUIC's CONNECTION_REFUSED transport error (RFC 9000, section 20.1).
_CONNECTION_REFUSED = 0x2
#: Priority of a stream's receive-window reservation (yamux's for its initial window:
#: granted while the scope stays within its limit).
WINDOW_PRIORITY = Priority.ALWAYS
_RESET_RESOURCE_LIMIT = int(StreamErrorCode.RESOURCE_LIMIT_EXCEEDED)


@dataclass(frozen=True)
class QuicConfig:
    """Knobs of one QUIC connection (sizes in bytes, times in seconds)."""

    #: Receive credit each stream keeps ahead of what its application consumed
    #: (the most bytes a stalled stream buffers).
    stream_receive_window: int = 1024 * 1024
    #: Initial connection-wide receive credit (aioquic doubles it as data arrives).
    connection_receive_window: int = 16 * 1024 * 1024
    #: Streams the peer may have open at once (MAX_STREAMS; aioquic raises it as they end).
    max_incoming_streams: int = 1024
    #: Unsent bytes a stream may queue before ``write`` blocks.
    max_send_buffer_size: int = 64 * 1024
    #: Inbound streams waiting for ``accept_stream``.
    accept_backlog: int = 1024
    #: The reader lets other greenlets run after this many events.
    frames_per_yield: int = 64
    #: Largest UDP payload sent (no path MTU discovery in aioquic).
    max_datagram_size: int = 1350
    #: The connection ends after this long without a packet from the peer.
    idle_timeout: float = 30.0
    #: A PING goes out after this long without one (keeps NAT bindings and the idle timer).
    keepalive_interval: float = 15.0
    #: Handshake (dial or accept) time limit.
    handshake_timeout: float = 10.0
    #: Refuse a libp2p extension not marked critical (stricter than the spec).
    require_critical_extension: bool = False
    #: aioquic's congestion controller: ``"reno"`` or ``"cubic"``.
    congestion_control: str = "cubic"
    #: Reserve each stream's receive window in the connection's resource scope (and
    #: refuse streams it cannot take); see the module docstring.
    reserve_stream_windows: bool = False

    def __post_init__(self) -> None:
        check_positive_ints(self, (
            "stream_receive_window", "connection_receive_window", "max_incoming_streams",
            "max_send_buffer_size", "accept_backlog", "frames_per_yield", "max_datagram_size",
        ))
        for name in ("idle_timeout", "keepalive_interval", "handshake_timeout"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"QuicConfig.{name} must be > 0")
        if self.max_datagram_size < 1200:
            raise ConfigError("QuicConfig.max_datagram_size must be at least 1200 (RFC 9000)")


@dataclass(frozen=True, slots=True, kw_only=True)
class HandshakeDone:
    """The handshake finished and the peer's certificate proved ``remote_peer``."""

    remote_peer: PeerId


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteStopped:
    """The peer sent STOP_SENDING: our write side of the stream is gone (its reads stay)."""

    stream_id: int
    error_code: int


class QuicSession:
    """One QUIC connection as a muxer core (see the module docstring).

    ``clock`` gives the current time (``time.monotonic`` in the shell) for the
    calls the shared shell makes without one (``buffers_to_send``).  ``remote``
    is the peer's UDP address (aioquic keys paths by it).  The client starts its
    handshake at once.
    """

    def __init__(
        self,
        config: QuicConfig,
        is_client: bool,
        certificate: tuple[Any, Any],
        remote: tuple[Any, ...],
        clock: Callable[[], float],
        *,
        expected_peer: Optional[PeerId] = None,
        original_destination_connection_id: Optional[bytes] = None,
    ) -> None:
        self.config = config
        self.is_client = is_client
        self.remote = remote
        self.clock = clock
        self.expected_peer = expected_peer
        self.remote_peer: Optional[PeerId] = None
        self.remote_public_key: Any = None
        #: Why the handshake or the connection failed (the first typed error), else None.
        self.error: Optional[Exception] = None
        self.handshake_complete = False
        self._window = config.stream_receive_window
        #: The connection's resource scope, where each stream's receive window is reserved.
        self.scope: ResourceScope = NULL_SCOPE
        #: stream id -> the scope its window was reserved in (released once, there)
        self._reserved: dict[int, ResourceScope] = {}
        self._reserve_windows = config.reserve_stream_windows
        self._consumed: dict[int, int] = {}
        self._closed_read: set[int] = set()
        self._streams: set[int] = set()
        self._new_peer_streams: list[int] = []
        #: the lowest bidirectional stream id the peer has not opened yet (client: 0, 4, ...)
        self._next_peer_stream = 1 if is_client else 0
        self._dirty = False
        self._closed = False
        self._go_away_sent: Optional[int] = None
        self._go_away_received: Optional[int] = None
        self._keepalive_at = clock() + config.keepalive_interval
        cert, key = certificate
        qc = _qconfig.QuicConfiguration(
            alpn_protocols=[ALPN],
            is_client=is_client,
            certificate=cert,
            private_key=key,
            verify_mode=ssl.CERT_NONE,  # the libp2p check runs in the handshake instead
            max_stream_data=config.stream_receive_window,
            max_data=config.connection_receive_window,
            max_datagram_size=config.max_datagram_size,
            idle_timeout=config.idle_timeout,
            congestion_control_algorithm=config.congestion_control,
        )
        self.quic = _aioquic.Libp2pQuicConnection(
            configuration=qc, session=self,
            original_destination_connection_id=original_destination_connection_id,
        )
        self.quic._local_max_streams_bidi.value = config.max_incoming_streams
        self.quic._local_max_streams_uni.value = 0  # libp2p uses no unidirectional streams
        if is_client:
            self.quic.connect(remote, now=clock())
            self._dirty = True

    # ------------------------------------------------------------------ certificate

    def _check_peer(self, ctx: Any) -> None:
        """Inside the handshake: the peer's chain must prove a libp2p identity (the
        expected one, when dialling); else abort with a bad_certificate alert."""
        chain = [ctx._peer_certificate] + list(ctx._peer_certificate_chain or ())
        try:
            key = tlscert.verify_certificate(chain, require_critical=self.config.require_critical_extension)
            peer = PeerId.from_public_key(key)
            if self.expected_peer is not None and peer != self.expected_peer:
                raise PeerIdMismatchError(self.expected_peer, peer)
        except SecurityError as exc:
            self._refuse(exc, ctx)
        except Exception as exc:  # a certificate we cannot even parse
            self._refuse(SecurityError(f"bad peer certificate: {exc}"), ctx)
        self.remote_public_key, self.remote_peer = key, peer

    def _refuse(self, exc: Exception, ctx: Any) -> NoReturn:
        if self.error is None:
            self.error = exc
        raise _tls.AlertBadCertificate(str(exc))

    # ------------------------------------------------------------------ state

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def go_away_sent(self) -> Optional[int]:
        return self._go_away_sent

    @property
    def go_away_received(self) -> Optional[int]:
        return self._go_away_received

    @property
    def num_streams(self) -> int:
        return len(self._streams)

    def has_stream(self, stream_id: int) -> bool:
        return stream_id in self._streams

    @property
    def bytes_to_send(self) -> int:
        """Not a byte count: 1 while aioquic may have datagrams to send, else 0."""
        return 1 if self._dirty else 0

    @property
    def control_backlog_full(self) -> bool:
        return False

    # ------------------------------------------------------------------ output

    def buffers_to_send(self) -> list[Any]:
        self._dirty = False
        return [data for data, _addr in self.quic.datagrams_to_send(now=self.clock())]

    def data_to_send(self) -> bytes:  # pragma: no cover - datagrams are never joined
        raise NotImplementedError("QUIC sends datagrams: use buffers_to_send()")

    # ------------------------------------------------------------------ input

    def receive_data(self, data: bytes, now: Optional[float] = None) -> list[Any]:
        """One received UDP datagram; returns the events it caused."""
        if self._closed:
            return []
        self.quic.receive_datagram(data, self.remote, now=self.clock() if now is None else now)
        self._dirty = True
        return self._events()

    def _peer_opened(self, stream_id: int) -> None:
        """A frame named ``stream_id``: a new peer stream opens every lower-numbered one of
        its kind that is not open yet (RFC 9000 section 3.2; aioquic creates them too)."""
        nxt = self._next_peer_stream
        if stream_id < nxt or stream_id & 3 != nxt & 3:
            return  # known, or ours, or unidirectional (refused by MAX_STREAMS_UNI = 0 anyway)
        self._new_peer_streams.extend(range(nxt, stream_id + 4, 4))
        self._next_peer_stream = stream_id + 4

    def _events(self) -> list[Any]:
        out: list[Any] = []
        quic = self.quic
        streams = self._streams
        while True:
            ev: Any = quic.next_event()
            new = self._new_peer_streams
            if new:
                self._new_peer_streams = []
                for sid in new:
                    why = self._reserve(sid)
                    if why is None:
                        streams.add(sid)
                        out.append(StreamOpened(stream_id=sid))
                    else:
                        self._abort(sid, _RESET_RESOURCE_LIMIT)
                        self._dirty = True
                        out.append(StreamRefused(stream_id=sid, reason=f"no memory for its receive window: {why}"))
            if ev is None:
                # aioquic reports the end only after its closing/draining period: act now
                ce = quic._close_event
                if ce is not None and not self._closed:
                    out.append(self._terminated(ce))
                return out
            cls = type(ev)
            if cls is _ev.StreamDataReceived:
                sid = ev.stream_id
                if sid not in streams:
                    continue  # reset or finished here: aioquic still delivers late data
                if ev.data:
                    if sid in self._closed_read:
                        self.consumed(sid, len(ev.data))
                    else:
                        out.append(DataReceived(stream_id=sid, data=ev.data))
                if ev.end_stream:
                    out.append(StreamHalfClosed(stream_id=sid))
            elif cls is _ev.StreamReset:
                sid = ev.stream_id
                if sid in streams:
                    self._forget(sid)
                    self._abort(sid, ev.error_code)
                    out.append(StreamReset(stream_id=sid, error_code=ev.error_code, remote=True))
            elif cls is _ev.StopSendingReceived:
                if ev.stream_id in streams:
                    out.append(WriteStopped(stream_id=ev.stream_id, error_code=ev.error_code))
            elif cls is _ev.HandshakeCompleted:
                out.extend(self._handshake_completed(ev))
            elif cls is _ev.ConnectionTerminated:
                if not self._closed:
                    out.append(self._terminated(ev))
                return out

    def _handshake_completed(self, ev: Any) -> list[Any]:
        if self.remote_peer is None or ev.alpn_protocol != ALPN:
            why = (SecurityError("the peer presented no certificate") if self.remote_peer is None
                   else SecurityError(f"the peer negotiated ALPN {ev.alpn_protocol!r}, not {ALPN!r}"))
            if self.error is None:
                self.error = why
            # CRYPTO_ERROR(bad_certificate), a transport close
            self.quic.close(error_code=0x100 + 42, frame_type=_qpacket.QuicFrameType.CRYPTO, reason_phrase=str(why))
            self._dirty = True
            return []  # the close event follows
        self.handshake_complete = True
        return [HandshakeDone(remote_peer=self.remote_peer)]

    def _terminated(self, ev: Any) -> Any:
        """The connection ended: GoAwayReceived when the peer closed it, else SessionError."""
        self._closed = True
        self._release_all()
        code = ev.error_code
        remote = self.quic._state == _qconn.QuicConnectionState.DRAINING
        if self.error is None and not self.handshake_complete:
            if remote and code == _CONNECTION_REFUSED:
                # a listener (its resource manager) turned the connection down before any handshake
                self.error = TransportError(
                    errno.ECONNREFUSED, f"the peer refused the QUIC connection: {ev.reason_phrase or 'no reason given'}")
            elif remote and 0x100 <= code <= 0x1FF:
                self.error = SecurityError(
                    f"the peer refused the QUIC handshake (TLS alert {code - 0x100}): {ev.reason_phrase}")
            else:
                self.error = SecurityError(
                    f"the QUIC handshake failed ({code:#x}): {ev.reason_phrase or 'no reason given'}")
        if remote:
            self._go_away_received = code
            if self.error is not None:
                return SessionError(error=self.error)
            return GoAwayReceived(error_code=code)
        # we (aioquic) ended it: a protocol violation, a refused certificate, the idle timer
        self._go_away_sent = code  # the shell flushes the queued CONNECTION_CLOSE
        err = self.error or ProtocolError(f"QUIC connection closed ({code:#x}): {ev.reason_phrase}")
        return SessionError(error=err, go_away_code=code)

    # ------------------------------------------------------------------ streams

    def _reserve(self, stream_id: int) -> Optional[Exception]:
        """Reserve the stream's receive window in ``scope``: None, or the refusal."""
        if not self._reserve_windows:
            return None
        scope = self.scope
        try:
            scope.reserve_memory(self._window, WINDOW_PRIORITY)
        except (ResourceLimitExceeded, ResourceScopeClosed) as exc:
            return exc
        self._reserved[stream_id] = scope
        return None

    def _release(self, stream_id: int) -> None:
        scope = self._reserved.pop(stream_id, None)
        if scope is not None:
            scope.release_memory(self._window)

    def _release_all(self) -> None:
        reserved, self._reserved = self._reserved, {}
        for scope in reserved.values():
            scope.release_memory(self._window)

    @property
    def reserved_memory(self) -> int:
        """Bytes of receive windows held in resource scopes now."""
        return len(self._reserved) * self._window

    def open_stream(self) -> int:
        """A new stream's id; raises ``ResourceLimitExceeded`` (nothing sent) when the
        connection's scope cannot take its receive window."""
        quic = self.quic
        sid = quic.get_next_available_stream_id(is_unidirectional=False)
        exc = self._reserve(sid)
        if exc is not None:
            raise exc
        try:
            quic.send_stream_data(sid, b"", end_stream=False)  # creates it (nothing on the wire)
        except BaseException:
            self._release(sid)
            raise
        self._streams.add(sid)
        return sid

    def send_data(self, stream_id: int, data: Any) -> int:
        """Queue up to ``max_send_buffer_size`` unsent bytes of the stream; returns how many."""
        stream = self.quic._streams.get(stream_id)
        if stream is None:
            return 0
        sender = stream.sender
        room = self.config.max_send_buffer_size - (sender._buffer_stop - sender.next_offset)
        if room <= 0:
            return 0
        n = len(data)
        if n > room:
            n = room
            data = data[:n]
        sender.write(data, end_stream=False)
        self._dirty = True
        return n

    def send_blocked(self, stream_id: int) -> bool:
        """True while the stream's unsent bytes fill ``max_send_buffer_size``."""
        stream = self.quic._streams.get(stream_id)
        if stream is None:
            return False
        sender = stream.sender
        return sender._buffer_stop - sender.next_offset >= self.config.max_send_buffer_size

    def close_write(self, stream_id: int) -> None:
        if self._closed:
            return
        try:
            self.quic.send_stream_data(stream_id, b"", end_stream=True)
        except Exception:  # the stream is gone (reset, or finished and discarded)
            return
        self._dirty = True
        self._maybe_forget(stream_id)

    def close_read(self, stream_id: int) -> None:
        self._closed_read.add(stream_id)
        self._maybe_forget(stream_id)

    def consumed(self, stream_id: int, n: int, now: float = 0.0) -> int:
        consumed = self._consumed
        total = consumed.get(stream_id, 0) + n
        consumed[stream_id] = total
        stream = self.quic._streams.get(stream_id)
        if stream is not None and total + self._window - stream.max_stream_data_local >= self._window >> 1:
            self._dirty = True
            return 1
        return 0

    def reset(self, stream_id: int, code: int = 0) -> None:
        if stream_id in self._streams:
            self._forget(stream_id)
        if not self._closed:
            self._abort(stream_id, code)
            self._dirty = True

    def _abort(self, stream_id: int, code: int) -> None:
        """RESET_STREAM and STOP_SENDING with ``code`` (whichever side is still open)."""
        quic = self.quic
        stream = quic._streams.get(stream_id)
        if stream is None:
            return
        if not stream.sender.is_finished:
            quic.reset_stream(stream_id, code)
        if not stream.receiver.is_finished:
            try:
                quic.stop_stream(stream_id, code)
            except ValueError:
                pass

    def stream_done(self, stream_id: int) -> None:
        """The shell is done with the stream (both halves ended, or reset): its receive
        window goes back to the scope."""
        self._release(stream_id)

    def _forget(self, stream_id: int) -> None:
        self._release(stream_id)
        self._streams.discard(stream_id)
        self._consumed.pop(stream_id, None)
        self._closed_read.discard(stream_id)

    def _maybe_forget(self, stream_id: int) -> None:
        """Drop the bookkeeping of a stream both sides are done with (the shell forgets it too)."""
        if stream_id not in self._closed_read:
            return
        stream = self.quic._streams.get(stream_id)
        if stream is None or stream.sender.is_finished or stream.sender._buffer_fin is not None:
            # our FIN is queued: aioquic finishes the stream; late data is consumed above
            self._streams.discard(stream_id)

    def mark_accepted(self, stream_id: int) -> None:
        pass

    # ------------------------------------------------------------------ session

    def go_away(self, code: int = 0) -> None:
        self._go_away_sent = code

    def close(self) -> None:
        """Queue CONNECTION_CLOSE (application code: the ``go_away`` code, else 0)."""
        if self._closed:
            return
        self._closed = True
        self._release_all()
        self.quic.close(error_code=self._go_away_sent or 0)
        self._dirty = True

    def next_deadline(self) -> Optional[float]:
        if self._closed:
            return None
        timer = self.quic.get_timer()
        keep = self._keepalive_at
        if timer is None or keep < timer:
            return keep
        return timer

    def handle_timer(self, now: float) -> list[Any]:
        if self._closed:
            return []
        quic = self.quic
        timer = quic.get_timer()
        if timer is not None and now >= timer:
            quic.handle_timer(now)
        if now >= self._keepalive_at:
            self._keepalive_at = now + self.config.keepalive_interval
            if self.handshake_complete:
                quic.send_ping(0)
        self._dirty = True
        return self._events()
