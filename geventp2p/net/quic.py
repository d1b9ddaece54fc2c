"""QUIC v1 transport (``/quic-v1``): aioquic's sans-I/O connection under a gevent UDP shell.

https://github.com/libp2p/specs/blob/master/quic/README.md

* :class:`QuicTransport` dials and listens on ``/ip4|ip6/<ip>/udp/<port>/quic-v1``.
  A listener owns one UDP socket that all its connections share: an endpoint
  greenlet receives every datagram and hands it to the connection of its source
  address (a new address sending an Initial packet starts a new server
  connection).  Each dial uses a UDP socket of its own.
* A QUIC connection is already secured and multiplexed: :class:`QuicConn` is the
  shared muxer shell (:class:`geventp2p.net._muxconn.MuxConn`: reader and writer
  greenlets, termination, the accept queue) around the sans-I/O
  :class:`geventp2p.sansio.quic.QuicSession`, and its streams are
  :class:`QuicStream`, the same blocking :class:`~geventp2p.net.stream.Stream` as
  yamux's.  Multistream still selects each stream's protocol.
* What the transport returns (``dial``, or the listener's handler argument) is a
  :class:`QuicRawConn` with ``secure_muxed = True``: the datagram pipe under the
  connection, which also names both peers (the secured side) and holds the
  muxed connection (``muxed``).  The upgrader adopts it as it is (no
  multistream, no security or muxer round).
* The handshake runs on the connection's own greenlets; ``dial`` (and the
  listener, before calling its handler) wait for it, at most
  ``QuicConfig.handshake_timeout``.  A refused certificate raises the typed
  error of the TLS transport (``TlsCertificateError``, ``InvalidSignatureError``,
  ``PeerIdMismatchError`` when the dialled peer is not the expected one).

Resources: a listener given a resource manager (``listen(..., resource_manager=)``,
as the swarm does) charges each new inbound connection before its handshake: a
client's Initial packet from a new address opens a connection scope (transient,
no file descriptor since the UDP socket is shared, the remote address as endpoint
so per-IP limits apply).  A refusal keeps no state: the listener answers with a
CONNECTION_CLOSE (CONNECTION_REFUSED) in an Initial packet, which the dialer
raises as ``TransportError`` (``errno.ECONNREFUSED``).  The scope travels with the
connection (:meth:`QuicRawConn.take_scope`, the swarm takes it instead of opening
another) and is released when a connection nobody took closes, a failed or timed
out handshake included.  Dials are charged by their caller (the swarm, before
``dial``); ``uses_fd`` says each holds a socket.

Close codes: ``close(code)`` sends an application CONNECTION_CLOSE with the
libp2p connection code; a stream ``reset(code)`` sends RESET_STREAM and
STOP_SENDING with the libp2p stream code.  Not supported: connection migration,
0-RTT and session resumption, path MTU discovery (datagrams are at most
``QuicConfig.max_datagram_size``), Retry / address validation tokens, version
negotiation beyond QUIC v1 and v2, draft-29 ``/quic``, and reusing the listen
socket for dials (hole punching).
"""

from __future__ import annotations

import errno
import logging
import socket
import struct
import sys
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional

import gevent
import gevent.socket as gsocket
from gevent.event import Event

from geventp2p.core import addr as maddr
from geventp2p.core.lazy import lazy_module
from geventp2p.core.mux import Direction
from geventp2p.core.peer import PeerId
from geventp2p.core.rcmgr import NULL_SCOPE, ConnManagementScope, ResourceManager, ResourceScope
from geventp2p.crypto.keys import PrivateKey
from geventp2p.exceptions import (
    ConfigError,
    ConnectionClosedError,
    MultiaddrError,
    P2PTimeoutError,
    ResourceLimitExceeded,
    SecurityError,
    StreamResetError,
    TransportError,
)
from geventp2p.net._deadline import Deadline
from geventp2p.net._muxconn import MuxConn, MuxStream
from geventp2p.sansio.quic import ALPN, HandshakeDone, QuicConfig, QuicSession, WriteStopped

if TYPE_CHECKING:
    from aioquic import buffer as _qbuffer
    from aioquic.quic import crypto as _qcrypto
    from aioquic.quic import packet as _qpacket
    from aioquic.quic import packet_builder as _qbuilder

    from geventp2p.crypto import tlscert
else:
    # Loaded with the first dial or listen (see geventp2p.core.lazy).
    _qbuffer = lazy_module("aioquic.buffer")
    _qpacket = lazy_module("aioquic.quic.packet")
    _qcrypto = lazy_module("aioquic.quic.crypto")
    _qbuilder = lazy_module("aioquic.quic.packet_builder")
    tlscert = lazy_module("geventp2p.crypto.tlscert")

__all__ = ["QuicTransport", "QuicListener", "QuicConn", "QuicStream", "QuicRawConn", "QuicConfig", "ALPN"]

log = logging.getLogger(__name__)

_monotonic = time.monotonic
#: Security and muxer names a QUIC ``Connection`` reports.
SECURITY = "/tls/1.0.0"
MUXER = "/quic-v1"
#: Datagrams queued for one connection before more are dropped (QUIC recovers losses).
_MAX_QUEUED = 4096
#: Handshakes a listener runs at once; further new peers are ignored until one ends.
_MAX_HANDSHAKES = 256
#: QUIC's CONNECTION_REFUSED transport error (RFC 9000, section 20.1).
CONNECTION_REFUSED = 0x2
_RECV_SIZE = 65535
#: Linux UDP generic segmentation offload (udp(7), ``UDP_SEGMENT``, Linux 4.18+): one
#: ``sendmsg`` carries a run of datagrams of one size (the last may be shorter) and the
#: kernel cuts it into those datagrams, one system call instead of one per datagram.
#: The option number is Linux's (Python 3.11's ``socket`` does not export it).
_GSO_PLATFORM = sys.platform.startswith("linux")
_UDP_SEGMENT: int = getattr(socket, "UDP_SEGMENT", 103)
_SOL_UDP: int = getattr(socket, "SOL_UDP", 17)
#: At most this many segments per send (the kernel's UDP_MAX_SEGMENTS) ...
_GSO_MAX_SEGMENTS = 64
#: ... and this many bytes (under the 65,507-byte UDP payload limit of IPv4).
_GSO_MAX_BYTES = 65000
#: What a kernel (or device) without UDP GSO answers; the endpoint then sends one
#: datagram per call from then on.
_GSO_REFUSED = frozenset({errno.EINVAL, errno.ENOPROTOOPT, errno.EIO, errno.EOPNOTSUPP})
_pack_u16 = struct.Struct("=H").pack
#: The receiving side (udp(7), ``UDP_GRO``, Linux 5.0+): the kernel may hand over a run of
#: equal-size datagrams from one source as one buffer, with the segment size in a
#: control message; the endpoint cuts it back into the datagrams.
_UDP_GRO: int = getattr(socket, "UDP_GRO", 104)
_GRO_ANCBUF = socket.CMSG_SPACE(4) if hasattr(socket, "CMSG_SPACE") else 0
_unpack_int = struct.Struct("=i").unpack
#: Send and receive buffer sizes asked for (the kernel caps them at net.core.wmem_max and
#: rmem_max).  A stream's receive window (1 MiB by default) is about 800 datagrams of
#: 1,350 bytes, more than the default buffer (about 200 KiB) holds while the receiving
#: greenlet waits for the CPU: the overflow is dropped, retransmitted, and halves the
#: sender's congestion window.
_SOCKET_BUFFER = 4 * 1024 * 1024


#: Set once the "buffers capped" warning was logged (one per process, as quic-go does).
_warned_small_buffers = False
#: Linux's privileged variants (CAP_NET_ADMIN) that may exceed rmem_max / wmem_max
#: (socket(7); the stdlib does not name them: 33 and 32 in asm-generic/socket.h).
_LINUX = sys.platform.startswith("linux")
_FORCE_OPTS: dict[int, Optional[int]] = {
    socket.SO_RCVBUF: getattr(socket, "SO_RCVBUFFORCE", 33 if _LINUX else None),
    socket.SO_SNDBUF: getattr(socket, "SO_SNDBUFFORCE", 32 if _LINUX else None),
}


def _size_buffers(sock: Any, size: int = _SOCKET_BUFFER) -> dict[str, int]:
    """Ask for ``size``-byte receive and send buffers on ``sock`` (best effort).

    When the kernel caps a buffer below ``size`` (net.core.rmem_max / wmem_max; Linux's
    default is about 208 KiB), the privileged ``SO_*BUFFORCE`` is tried, and if the
    buffer is still short a warning naming the sysctls is logged once per process: QUIC
    then loses datagrams in bursts and runs far slower.  Returns the size granted per
    direction (Linux's ``getsockopt`` reports twice the size set, for its bookkeeping;
    that is halved here).
    """
    global _warned_small_buffers
    granted: dict[str, int] = {}
    for opt, name in ((socket.SO_RCVBUF, "receive"), (socket.SO_SNDBUF, "send")):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, size)
            got = _granted(sock, opt)
            force = _FORCE_OPTS.get(opt)
            if got < size and force is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, force, size)
                except OSError:  # not privileged: keep the capped size
                    pass
                else:
                    got = _granted(sock, opt)
        except OSError:  # pragma: no cover - a platform refusing the option keeps its default
            continue
        granted[name] = got
    short = [f"{name} {got // 1024} KiB" for name, got in granted.items() if got < size]
    if short and not _warned_small_buffers:
        _warned_small_buffers = True
        log.warning("quic: UDP socket buffers below the %d KiB asked for (%s); QUIC will drop "
                    "datagrams in bursts and run slowly.  Raise net.core.rmem_max and "
                    "net.core.wmem_max to at least %d (sysctl -w).", size // 1024,
                    ", ".join(short), size)
    return granted


def _granted(sock: Any, opt: int) -> int:
    got: int = sock.getsockopt(socket.SOL_SOCKET, opt)
    return got // 2 if _LINUX else got


def _udp_socket(family: int) -> Any:
    """A gevent UDP socket with large send and receive buffers (``_size_buffers``)."""
    sock = gsocket.socket(family, socket.SOCK_DGRAM)
    _size_buffers(sock)
    return sock


def quic_parts(ma: Any) -> tuple[str, int, int]:
    """``(ip, port, family)`` of ``/ip4|ip6/<ip>/udp/<port>/quic-v1`` (optional ``/p2p``)."""
    comps = maddr.components(ma)
    if len(comps) < 3 or comps[0].code not in (maddr.P_IP4, maddr.P_IP6) or comps[1].code != maddr.P_UDP \
            or comps[2].code != maddr.P_QUIC_V1:
        raise MultiaddrError(f"{ma} is not an ip4/ip6 + udp + quic-v1 address")
    tail = comps[3:]
    if tail and not (len(tail) == 1 and tail[0].code == maddr.P_P2P):
        raise MultiaddrError(f"{ma} is not a plain quic-v1 address")
    family = socket.AF_INET if comps[0].code == maddr.P_IP4 else socket.AF_INET6
    return comps[0].value or "", int(comps[1].value or 0), family


def _multiaddr(sockaddr: tuple[Any, ...], family: int) -> Any:
    """``/ip4|ip6/<ip>/udp/<port>/quic-v1`` for a socket address (twice per connection)."""
    return maddr.from_sockaddr(family, str(sockaddr[0]), int(sockaddr[1]), maddr.P_UDP, maddr.P_QUIC_V1)


# --------------------------------------------------------------------------- UDP endpoint


class _Endpoint:
    """One UDP socket and the greenlet that receives on it, demultiplexing by source address.

    ``on_new(addr, datagram)`` is called for a datagram from an unknown address
    (listeners start a connection there; a dialer's endpoint has none).
    """

    def __init__(self, sock: Any, on_new: Optional[Callable[[tuple[Any, ...], bytes], None]] = None) -> None:
        self.sock = sock
        self.family = sock.family
        self.local_addr = _multiaddr(sock.getsockname(), self.family)
        self.conns: dict[tuple[Any, ...], QuicRawConn] = {}
        self._on_new = on_new
        self.closed = False
        #: Coalesce runs of equal-size datagrams with UDP GSO (off once the kernel refuses it).
        self.gso = _GSO_PLATFORM and hasattr(sock, "sendmsg")
        #: The kernel may coalesce received datagrams (UDP GRO), see ``_recv_loop``.
        self.gro = False
        if _GSO_PLATFORM and _GRO_ANCBUF and hasattr(sock, "recvmsg"):
            try:
                sock.setsockopt(_SOL_UDP, _UDP_GRO, 1)
                self.gro = True
            except OSError:
                pass
        self._recv = gevent.spawn(self._recv_loop)

    def _recv_loop(self) -> None:
        sock = self.sock
        conns = self.conns
        gro = self.gro
        try:
            while True:
                if gro:
                    data, anc, _flags, addr = sock.recvmsg(_RECV_SIZE, _GRO_ANCBUF)
                    if anc:
                        self._dispatch_segments(data, anc, addr)
                        continue
                else:
                    data, addr = sock.recvfrom(_RECV_SIZE)
                pipe = conns.get(addr)
                if pipe is not None:
                    pipe._feed(data)
                elif self._on_new is not None:
                    self._on_new(addr, data)
        except OSError as exc:
            if not self.closed:
                log.debug("quic endpoint %s: receive failed: %s", self.local_addr, exc)
        finally:
            for pipe in list(conns.values()):
                pipe._feed_eof()

    def _dispatch_segments(self, data: bytes, anc: list[tuple[int, int, bytes]], addr: tuple[Any, ...]) -> None:
        """Hand a GRO buffer over as the datagrams it joins (``seg``-byte ones, the last
        possibly shorter)."""
        seg = 0
        for level, kind, value in anc:
            if level == _SOL_UDP and kind == _UDP_GRO and len(value) >= 4:
                seg = _unpack_int(value[:4])[0]
        if seg <= 0 or seg >= len(data):
            parts: Iterable[bytes] = (data,)
        else:
            parts = [data[k:k + seg] for k in range(0, len(data), seg)]
        pipe = self.conns.get(addr)
        for part in parts:
            if pipe is not None:
                pipe._feed(part)
            elif self._on_new is not None:
                self._on_new(addr, part)
                pipe = self.conns.get(addr)

    def sendto(self, data: Any, addr: tuple[Any, ...]) -> None:
        self.sock.sendto(data, addr)

    def send_many(self, datagrams: list[Any], addr: tuple[Any, ...]) -> None:
        """Send each of ``datagrams`` as one datagram to ``addr``, in order.

        With GSO, each run of equal-size datagrams (ended by at most one shorter
        datagram, as aioquic's full packets and the last one of a flush are) goes out
        in one ``sendmsg`` whose ``UDP_SEGMENT`` is that size; the receiver sees the
        same datagrams.  Errors other than GSO being refused raise ``OSError``.
        """
        sock = self.sock
        count = len(datagrams)
        if not self.gso or count < 2:
            for data in datagrams:
                sock.sendto(data, addr)
            return
        i = 0
        while i < count:
            size = len(datagrams[i])
            limit = min(_GSO_MAX_SEGMENTS, _GSO_MAX_BYTES // size) if size else 1
            j = i + 1
            while j < count and j - i < limit:
                n = len(datagrams[j])
                if n > size:
                    break
                j += 1
                if n < size:  # a shorter datagram ends the run
                    break
            if j - i == 1:
                sock.sendto(datagrams[i], addr)
            elif not self._send_segments(datagrams[i:j], size, addr):
                for data in datagrams[i:]:  # GSO refused: one datagram per call from now on
                    sock.sendto(data, addr)
                return
            i = j

    def _send_segments(self, run: list[Any], size: int, addr: tuple[Any, ...]) -> bool:
        """One GSO ``sendmsg`` of ``run``; False (and GSO off) when the kernel refuses it."""
        try:
            self.sock.sendmsg(run, ((_SOL_UDP, _UDP_SEGMENT, _pack_u16(size)),), 0, addr)
        except OSError as exc:
            if exc.errno not in _GSO_REFUSED:
                raise
            self.gso = False
            log.debug("quic endpoint %s: UDP GSO refused (%s), one datagram per send", self.local_addr, exc)
            return False
        return True

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.sock.close()
        finally:
            if self._recv is not gevent.getcurrent():
                self._recv.kill(block=False)


class QuicRawConn:
    """The datagram pipe under one QUIC connection, and its secured identity.

    ``read`` returns one received datagram (``b""`` once closed); ``writev`` sends
    each buffer as one datagram (runs of equal-size ones in one call with UDP GSO on
    Linux, see :meth:`_Endpoint.send_many`).  After the handshake it names both peers
    (``local_peer``, ``remote_peer``, ``remote_public_key``) like a SecureConn;
    ``muxed`` is the :class:`QuicConn` running over it.
    """

    #: The upgrader adopts this connection as it is (already secured and muxed).
    secure_muxed = True
    early_muxer: Optional[str] = None
    #: What the ``Connection`` reports as its security and muxer protocols.
    SECURITY = SECURITY
    MUXER = MUXER

    def __init__(self, endpoint: _Endpoint, remote: tuple[Any, ...], is_initiator: bool,
                 local_peer: PeerId, owns_endpoint: bool,
                 on_close: Optional[Callable[["QuicRawConn"], None]] = None) -> None:
        self._endpoint = endpoint
        self._remote = remote
        self.is_initiator = is_initiator
        self.local_peer = local_peer
        self.remote_peer: Optional[PeerId] = None
        self.remote_public_key: Any = None
        self.local_addr = endpoint.local_addr
        self.remote_addr = _multiaddr(remote, endpoint.family)
        self.muxed: Optional[QuicConn] = None
        self._queue: deque[bytes] = deque()
        self._readable = Event()
        self._closed = False
        self._eof = False
        self._owns_endpoint = owns_endpoint
        self._on_close = on_close
        #: The resource scope a listener charged this connection to, until taken.
        self._scope: Optional[ConnManagementScope] = None
        endpoint.conns[remote] = self

    def __repr__(self) -> str:
        role = "client" if self.is_initiator else "server"
        return f"<QuicRawConn {role} {self.remote_addr} {self.remote_peer}>"

    @property
    def closed(self) -> bool:
        return self._closed

    def take_scope(self) -> Optional[ConnManagementScope]:
        """The resource scope the listener charged this connection to (once; None after,
        or for a dialled connection).  Whoever takes it releases it (``done()``); a
        scope nobody took is released when the connection closes."""
        scope, self._scope = self._scope, None
        return scope

    # -- fed by the endpoint
    def _feed(self, data: bytes) -> None:
        queue = self._queue
        if len(queue) < _MAX_QUEUED:
            queue.append(data)
            self._readable.set()

    def _feed_eof(self) -> None:
        self._eof = True
        self._readable.set()

    # -- the muxer shell's side
    def read(self, n: int = 65536, timeout: Optional[float] = None) -> bytes:
        """Blocks the calling greenlet until a datagram arrived; ``b""`` once closed."""
        queue = self._queue
        while not queue:
            if self._closed or self._eof:
                return b""
            self._readable.clear()
            if not self._readable.wait(timeout):
                raise P2PTimeoutError("quic: read timed out")
        return queue.popleft()

    def readinto(self, buf: bytearray | memoryview, timeout: Optional[float] = None) -> int:
        """``read`` into ``buf`` (a datagram longer than ``buf`` is cut: size it for 64 KiB)."""
        data = self.read(len(buf), timeout)
        n = min(len(data), len(buf))
        buf[:n] = data[:n]
        return n

    def write(self, data: Any) -> None:
        self.writev((data,))

    def writev(self, buffers: Iterable[Any]) -> None:
        if self._closed:
            raise TransportError("quic: connection closed")
        try:
            self._endpoint.send_many(buffers if isinstance(buffers, list) else list(buffers), self._remote)
        except OSError as exc:
            raise TransportError(exc.errno, f"quic: send to {self.remote_addr} failed: {exc}") from exc

    def unread(self, data: bytes) -> None:  # pragma: no cover - never needed for datagrams
        self._queue.appendleft(data)

    def close_write(self) -> None:  # pragma: no cover - QUIC half-closes per stream
        pass

    def close(self) -> None:
        """Close the QUIC connection (if it still runs) and release the datagram pipe."""
        muxed = self.muxed
        if muxed is not None and not muxed.closed and muxed._reader is not gevent.getcurrent() \
                and muxed._writer is not gevent.getcurrent():
            muxed.close()
        if self._closed:
            return
        self._closed = True
        self._readable.set()
        ep = self._endpoint
        if ep.conns.get(self._remote) is self:
            del ep.conns[self._remote]
        if self._owns_endpoint:
            ep.close()
        scope, self._scope = self._scope, None
        if scope is not None:
            scope.done()
        cb = self._on_close
        if cb is not None:
            self._on_close = None
            cb(self)


# --------------------------------------------------------------------------- streams and conn


class QuicStream(MuxStream):
    """One bidirectional QUIC stream; the blocking API is :class:`~geventp2p.net.stream.Stream`'s."""

    __slots__ = ()
    _mux: "QuicConn"

    def __init__(self, mux: "QuicConn", stream_id: int, direction: Direction) -> None:
        super().__init__(mux, stream_id, stream_id, direction)

    def _try_write(self, view: memoryview | bytes) -> int:
        mux = self._mux
        if mux._terminated or mux._write_failure is not None:
            mux._check_alive(write=True)
        n = mux._session.send_data(self._key, view)
        if n:
            if not mux._wake_pending:
                mux._wake_pending = True
                mux._wake_writer.set()
        else:
            mux._blocked[self] = None
            mux._wake_writer.set()
        return n


class QuicConn(MuxConn[QuicSession, QuicStream]):
    """A QUIC connection as a muxed connection (the MuxedConn API)."""

    NAME = "quic"
    READ_SIZE = _RECV_SIZE
    YIELD_BYTES = 256 * 1024
    FLOW_CONTROLLED = False
    STREAM_CLASS = QuicStream

    def __init__(self, pipe: QuicRawConn, session: QuicSession, config: QuicConfig,
                 scope: ResourceScope = NULL_SCOPE) -> None:
        self._handshake = Event()
        self._core = session
        pipe.muxed = self
        super().__init__(pipe, session.is_client, config, scope, session)

    @property  # type: ignore[override]
    def scope(self) -> ResourceScope:
        """The connection's resource scope; each stream's receive window is reserved there."""
        return self._core.scope

    @scope.setter
    def scope(self, value: ResourceScope) -> None:
        self._core.scope = value

    @property
    def remote_peer(self) -> Optional[PeerId]:
        return self._session.remote_peer

    def wait_handshake(self, timeout: Optional[float]) -> None:
        """Blocks the calling greenlet until the handshake finished; raises its typed
        error (``SecurityError`` family), ``ConnectionClosedError`` or ``P2PTimeoutError``."""
        if not self._handshake.wait(timeout):
            raise P2PTimeoutError("quic: handshake timed out")
        session = self._session
        if session.handshake_complete and not self._terminated:
            return
        if session.error is not None:
            raise session.error
        self._check_alive()
        raise SecurityError("quic: handshake failed")

    # ------------------------------------------------------------------ MuxConn hooks

    def _on_event(self, ev: object) -> None:
        cls = type(ev)
        if cls is HandshakeDone:
            pipe: Any = self.conn
            pipe.remote_peer = self._session.remote_peer
            pipe.remote_public_key = self._session.remote_public_key
            self._handshake.set()
        elif cls is WriteStopped:
            stream = self._streams.get(ev.stream_id)  # type: ignore[attr-defined]
            if stream is not None and stream._write_error is None and stream._reset_error is None:
                stream._write_error = StreamResetError(
                    f"quic stream {stream.id}: the remote stopped reading",
                    error_code=ev.error_code, remote=True)  # type: ignore[attr-defined]
                self._blocked.pop(stream, None)
                stream._notify_writable()
                stream._state_changed()

    def _after_flush(self) -> None:
        blocked = self._blocked
        session = self._session
        ready = [s for s in blocked if not session.send_blocked(s._key)]
        for stream in ready:
            del blocked[stream]
            stream._notify_writable()

    def _forget(self, stream: MuxStream) -> None:
        super()._forget(stream)
        self._session.stream_done(stream._key)

    def _on_terminate(self, error: ConnectionClosedError) -> None:
        self._handshake.set()


# --------------------------------------------------------------------------- transport


class QuicTransport:
    """Dial and listen on ``/quic-v1`` addresses with the host's identity ``local_key``."""

    name = "quic"
    #: Each dialled connection holds a UDP socket (the resource manager's ``fd`` count).
    uses_fd = True
    #: ``listen`` takes the swarm's resource manager and charges connections itself.
    charges_inbound = True

    def __init__(self, local_key: PrivateKey, config: Optional[QuicConfig] = None) -> None:
        if config is None:
            config = QuicConfig()
        elif not isinstance(config, QuicConfig):
            raise ConfigError(f"expected QuicConfig, got {type(config).__name__}")
        self.config = config
        self.local_key = local_key
        self.local_peer = PeerId.from_public_key(local_key.public_key())
        self._certificate: Optional[tuple[Any, Any]] = None

    @property
    def certificate(self) -> tuple[Any, Any]:
        """The libp2p TLS certificate and its key, made on first use (one per transport)."""
        if self._certificate is None:
            self._certificate = tlscert.make_certificate(self.local_key)
        return self._certificate

    @certificate.setter
    def certificate(self, value: tuple[Any, Any]) -> None:
        self._certificate = value

    def __repr__(self) -> str:
        return "<QuicTransport /quic-v1>"

    def can_dial(self, ma: Any) -> bool:
        try:
            quic_parts(ma)
        except Exception:
            return False
        return True

    can_listen = can_dial

    def dial(self, ma: Any, timeout: Optional[float] = None, remote_peer: Optional[PeerId] = None) -> QuicRawConn:
        """Blocks the calling greenlet until the QUIC handshake with ``ma`` finished.

        ``remote_peer`` (or a ``/p2p`` suffix of ``ma``) is checked inside the
        handshake (``PeerIdMismatchError``).  Raises ``MultiaddrError``,
        ``TransportError``, ``P2PTimeoutError`` and the ``SecurityError`` family.
        """
        host, port, family = quic_parts(ma)
        if port == 0:
            raise MultiaddrError(f"cannot dial port 0: {ma}")
        if remote_peer is None:
            _base, pid = maddr.split_p2p(ma)
            if pid is not None:
                remote_peer = PeerId.from_string(pid) if isinstance(pid, str) else pid
        deadline = Deadline(self.config.handshake_timeout if timeout is None else
                            min(timeout, self.config.handshake_timeout))
        sock = _udp_socket(family)
        try:
            sock.bind(("0.0.0.0", 0) if family == socket.AF_INET else ("::", 0))
            endpoint = _Endpoint(sock)
        except OSError as exc:
            sock.close()
            raise TransportError(exc.errno, f"quic: cannot open a UDP socket: {exc}") from exc
        remote = (host, port) if family == socket.AF_INET else (host, port, 0, 0)
        pipe = QuicRawConn(endpoint, remote, True, self.local_peer, owns_endpoint=True)
        conn: Optional[QuicConn] = None
        try:
            session = QuicSession(self.config, True, self.certificate, remote, _monotonic,
                                  expected_peer=remote_peer)
            conn = QuicConn(pipe, session, self.config)
            conn.wait_handshake(deadline.left())
        except BaseException:
            if conn is not None:
                conn.close()
            pipe.close()
            raise
        return pipe

    def listen(self, ma: Any, handler: Callable[[QuicRawConn], None], *,
               resource_manager: Optional[ResourceManager] = None) -> "QuicListener":
        """Bind ``ma`` and run ``handler(conn)`` on a new greenlet per connection whose
        handshake succeeded.  Does not block.

        With ``resource_manager`` each new connection is charged before its handshake
        (see the module docstring); ``handler`` then takes the scope with
        :meth:`QuicRawConn.take_scope`."""
        host, port, family = quic_parts(ma)
        if not callable(handler):
            raise TypeError("handler must be callable")
        sock = _udp_socket(family)
        try:
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise TransportError(exc.errno, f"quic: cannot listen on {ma}: {exc.strerror or exc}") from exc
        return QuicListener(self, sock, handler, resource_manager)


class QuicListener:
    """Accepts QUIC connections on one UDP socket (shared by all of them)."""

    def __init__(self, transport: QuicTransport, sock: Any, handler: Callable[[QuicRawConn], None],
                 resource_manager: Optional[ResourceManager] = None) -> None:
        self._transport = transport
        self._handler = handler
        self._rcmgr = resource_manager
        #: Connection attempts the resource manager refused (a retransmitted Initial counts again).
        self.refused = 0
        self._closed = False
        self._handshaking = 0
        self._greenlets: set[gevent.Greenlet] = set()
        self._endpoint = _Endpoint(sock, self._on_new)
        self.multiaddr = self._endpoint.local_addr

    def __repr__(self) -> str:
        return f"<QuicListener {self.multiaddr}{' closed' if self._closed else ''}>"

    @property
    def closed(self) -> bool:
        return self._closed

    def _on_new(self, addr: tuple[Any, ...], data: bytes) -> None:
        if self._closed or self._handshaking >= _MAX_HANDSHAKES:
            return
        try:
            header = _qpacket.pull_quic_header(_qbuffer.Buffer(data=data), host_cid_length=8)
        except ValueError:
            return
        if header.packet_type != _qpacket.QuicPacketType.INITIAL or len(data) < 1200:
            return  # only a client's padded Initial starts a connection
        scope: Optional[ConnManagementScope] = None
        if self._rcmgr is not None:
            endpoint = _multiaddr(addr, self._endpoint.family)
            try:
                scope = self._rcmgr.open_connection(Direction.INBOUND, False, endpoint)
            except ResourceLimitExceeded as exc:
                self.refused += 1
                log.debug("quic listener %s: inbound connection from %s refused: %s", self.multiaddr, endpoint, exc)
                self._refuse(addr, header)
                return
        cfg = self._transport.config
        pipe = QuicRawConn(self._endpoint, addr, False, self._transport.local_peer, owns_endpoint=False,
                           on_close=self._conn_closed)
        pipe._scope = scope  # released when pipe closes, unless taken
        try:
            session = QuicSession(cfg, False, self._transport.certificate, addr, _monotonic,
                                  original_destination_connection_id=header.destination_cid)
            conn = QuicConn(pipe, session, cfg, NULL_SCOPE if scope is None else scope)
        except Exception as exc:
            log.debug("quic listener %s: cannot start a connection from %s: %s", self.multiaddr, addr, exc)
            pipe.close()
            return
        pipe._feed(data)
        self._handshaking += 1
        g = gevent.spawn(self._accept, pipe, conn)
        self._greenlets.add(g)
        g.link(self._greenlets.discard)

    def _refuse(self, addr: tuple[Any, ...], header: Any) -> None:
        """Answer a refused Initial with CONNECTION_CLOSE(CONNECTION_REFUSED), keeping no
        state (RFC 9000, section 10.2.3: a server refusing a connection closes it in an
        Initial packet).  Best effort: a client that misses it times out."""
        try:
            version = header.version
            crypto = _qcrypto.CryptoPair()
            crypto.setup_initial(cid=header.destination_cid, is_client=False, version=version)
            builder = _qbuilder.QuicPacketBuilder(
                host_cid=header.destination_cid, peer_cid=header.source_cid, version=version, is_client=False,
                max_datagram_size=self._transport.config.max_datagram_size)
            builder.start_packet(_qpacket.QuicPacketType.INITIAL, crypto)
            buf = builder.start_frame(_qpacket.QuicFrameType.TRANSPORT_CLOSE)
            buf.push_uint_var(CONNECTION_REFUSED)
            buf.push_uint_var(0)  # the frame type that caused it: none
            buf.push_uint_var(0)  # no reason phrase
            datagrams, _packets = builder.flush()
            for datagram in datagrams:
                self._endpoint.sendto(datagram, addr)
        except Exception as exc:  # a malformed header, a closed socket: the client times out
            log.debug("quic listener %s: cannot refuse %s: %s", self.multiaddr, addr, exc)

    def _accept(self, pipe: QuicRawConn, conn: QuicConn) -> None:
        try:
            try:
                conn.wait_handshake(self._transport.config.handshake_timeout)
            finally:
                self._handshaking -= 1
        except Exception as exc:
            log.debug("quic listener %s: handshake with %s failed: %s", self.multiaddr, pipe.remote_addr, exc)
            conn.close()
            pipe.close()
            return
        if self._closed:
            pipe.close()
            return
        try:
            self._handler(pipe)
        except Exception:
            log.exception("quic listener %s: connection handler failed", self.multiaddr)
            pipe.close()

    def _conn_closed(self, pipe: QuicRawConn) -> None:
        if self._closed and not self._endpoint.conns:
            self._endpoint.close()

    def close(self, stop_handlers: bool = False, timeout: Optional[float] = 5.0) -> None:
        """Stop accepting; the socket stays open while accepted connections use it.

        With ``stop_handlers`` the handler greenlets are killed and every
        connection of this listener is closed (then the socket too)."""
        if self._closed:
            return
        self._closed = True
        if stop_handlers:
            gevent.killall(list(self._greenlets), timeout=timeout)
            for pipe in list(self._endpoint.conns.values()):
                pipe.close()
        else:
            # connections still handshaking are not handed out any more
            for pipe in list(self._endpoint.conns.values()):
                if pipe.remote_peer is None:
                    pipe.close()
        if not self._endpoint.conns:
            self._endpoint.close()
