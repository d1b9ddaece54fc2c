"""WebSocket transport (``/ws``): ``wsproto``'s sans-I/O WebSocket under a thin gevent shell.

https://github.com/libp2p/specs/blob/master/websockets/README.md (and RFC 6455)

* Addresses: ``/ip4|ip6|dns|dns4|dns6/<host>/tcp/<port>/ws`` with an optional
  trailing ``/p2p/<id>``.  ``/wss`` (WebSocket over TLS with a CA certificate) is
  not supported: such addresses are neither dialled nor listened on.
* Dialling opens a TCP connection, sends the HTTP/1.1 upgrade request for ``/``
  and waits for the ``101`` answer; listening accepts TCP connections and answers
  the upgrade.  Then binary messages carry the libp2p byte stream in both
  directions (frame boundaries mean nothing) and the normal upgrade
  (multistream, Noise/TLS, yamux/mplex) runs over it.
* Pings are answered; a close frame from the peer is answered and reads EOF;
  text messages are a protocol error (close code 1003).
* wsproto does the HTTP upgrade, the control frames and the refusal of bad frames;
  binary data frames are framed and parsed here (``_frame``, ``WsConn._feed``) with
  the masking in :mod:`geventp2p._speedups.wsmask`, because wsproto's pure-Python
  data path (four copies per frame, byte-table masking) capped a connection at
  about 200 MiB/s.  A write goes out as binary messages of at most 256 KiB.

``WsConn`` is a :class:`~geventp2p.net.rawconn.RawConn`; every method that waits
blocks the calling greenlet.
"""

from __future__ import annotations

import errno
import logging
import os
import struct
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional

from gevent.lock import Semaphore
from multiaddr import Multiaddr

from geventp2p._speedups import wsmask
from geventp2p.core import addr as maddr
from geventp2p.core.lazy import lazy_module
from geventp2p.core.transport import RawConn
from geventp2p.exceptions import ConfigError, MultiaddrError, P2PTimeoutError, TransportError
from geventp2p.net._deadline import Deadline, timeout_scope
from geventp2p.net.rawconn import Buffer
from geventp2p.net.rawconn import RawConn as _RawConnBase
from geventp2p.net.tcp import TcpConfig, TcpListener, TcpTransport

if TYPE_CHECKING:
    import wsproto as _wsproto
    from wsproto import connection as _wsconn
    from wsproto import events as _wsev
    from wsproto import utilities as _wsutil
else:
    # wsproto loads with the first WebSocket dial or accept (see geventp2p.core.lazy).
    _wsproto = lazy_module("wsproto")
    _wsconn = lazy_module("wsproto.connection")
    _wsev = lazy_module("wsproto.events")
    _wsutil = lazy_module("wsproto.utilities")

__all__ = ["WsConfig", "WsTransport", "WsListener", "WsConn"]

log = logging.getLogger(__name__)

_RECV_SIZE = 262144
#: Largest binary message we send.  py-libp2p (trio-websocket's default
#: ``max_message_size``) closes the connection on a message over 1 MiB, and a
#: muxer's batched write can be larger than that: it goes out as several messages.
_MAX_MESSAGE = 256 * 1024
_FIN_BINARY = 0x82  # FIN + opcode 2: one whole binary message per frame
_HEADER16 = struct.Struct("!BBH")
_HEADER64 = struct.Struct("!BBQ")
_MAX_HTTP_HEAD = 65536  # the upgrade request or answer, headers included
_OP_CONTINUATION, _OP_TEXT, _OP_BINARY = 0x0, 0x1, 0x2
_WS = Multiaddr("/ws")


@dataclass(frozen=True)
class WsConfig:
    """WebSocket transport settings.

    handshake_timeout: seconds for the HTTP upgrade, each side (the dialer's TCP
      connect has its own ``tcp.connect_timeout``).
    tcp: the TCP transport underneath.
    """

    handshake_timeout: float = 10.0
    tcp: TcpConfig = TcpConfig()

    def __post_init__(self) -> None:
        if not self.handshake_timeout > 0:
            raise ConfigError("handshake_timeout must be > 0")
        if not isinstance(self.tcp, TcpConfig):
            raise ConfigError("WsConfig.tcp must be a TcpConfig")


def _split(ma: Any) -> tuple[Multiaddr, str, int]:
    """``(tcp address, host, port)`` of a ``.../tcp/N/ws[/p2p/id]`` address; MultiaddrError otherwise."""
    transport, _peer = maddr.split_p2p(ma)
    comps = maddr.components(transport) if transport is not None else ()
    text = str(transport)
    if text.endswith(("/wss", "/tls/ws")) or "/tls/sni/" in text:
        raise MultiaddrError(f"{ma}: /wss (WebSocket over TLS) is not supported, only /ws")
    if not comps or comps[-1].code != maddr.P_WS:
        raise MultiaddrError(f"{ma} is not a /ws address")
    tcp = Multiaddr(text[: -len("/ws")])
    host, port, _family = maddr.tcp_host_port(tcp)  # strict: nothing else between /tcp and /ws
    return tcp, host, port


def _with_ws(ma: Optional[Multiaddr]) -> Optional[Multiaddr]:
    return None if ma is None else ma.encapsulate(_WS)


class WsTransport:
    """Dial and listen on ``/tcp/N/ws`` multiaddrs."""

    name = "ws"

    def __init__(self, config: Optional[WsConfig] = None) -> None:
        if config is None:
            config = WsConfig()
        elif not isinstance(config, WsConfig):
            raise ConfigError(f"expected WsConfig, got {type(config).__name__}")
        self.config = config
        self._tcp = TcpTransport(config.tcp)

    def can_dial(self, ma: Any) -> bool:
        """True for an ip4/ip6/dns/dns4/dns6 + tcp + ws address (optional /p2p)."""
        try:
            _split(ma)
        except Exception:
            return False
        return True

    can_listen = can_dial

    def dial(self, ma: Any, timeout: Optional[float] = None) -> "WsConn":
        """Blocks the calling greenlet until the WebSocket is open (TCP connect + upgrade).

        Raises MultiaddrError, TransportError (refused, or the upgrade was refused)
        and P2PTimeoutError.
        """
        tcp_ma, host, port = _split(ma)
        dl = Deadline(timeout)
        raw = self._tcp.dial(tcp_ma, timeout=dl.left() if timeout is not None else None)
        try:
            hs_timeout = self.config.handshake_timeout if timeout is None else dl.left()
            with timeout_scope(hs_timeout, "websocket upgrade to", ma):
                return WsConn.open_client(raw, _host_header(host, port))
        except BaseException:
            raw.close()
            raise

    def listen(self, ma: Any, handler: Callable[["WsConn"], None]) -> "WsListener":
        """Bind and start accepting; ``handler(conn)`` runs in its own greenlet per upgraded
        connection.  Does not block."""
        tcp_ma, _host, _port = _split(ma)
        if not callable(handler):
            raise TypeError("handler must be callable")
        return WsListener(self, tcp_ma, handler)


def _host_header(host: str, port: int) -> str:
    return f"[{host.split('%', 1)[0]}]:{port}" if ":" in host else f"{host}:{port}"


class WsListener:
    """A TCP listener that answers the WebSocket upgrade before handing connections on."""

    def __init__(self, transport: WsTransport, tcp_ma: Multiaddr, handler: Callable[["WsConn"], None]) -> None:
        self.transport = transport
        self._handler = handler
        self._tcp: TcpListener = transport._tcp.listen(tcp_ma, self._on_tcp)

    @property
    def multiaddr(self) -> Multiaddr:
        """The bound address (real port), ``.../tcp/N/ws``."""
        bound = self._tcp.multiaddr
        if bound is None:  # pragma: no cover - TCP listeners always have one
            raise TransportError(errno.EINVAL, "listener has no address")
        return bound.encapsulate(_WS)

    @property
    def closed(self) -> bool:
        return self._tcp.closed

    def _on_tcp(self, raw: RawConn) -> None:
        try:
            with timeout_scope(self.transport.config.handshake_timeout, "websocket upgrade"):
                conn = WsConn.open_server(raw)
        except (TransportError, P2PTimeoutError) as exc:
            log.debug("websocket upgrade from %s failed: %s", raw.remote_addr, exc)
            raw.close()
            return
        self._handler(conn)

    def close(self, stop_handlers: bool = False, timeout: Optional[float] = 5.0) -> None:
        """Stop accepting (idempotent); optionally kill handler greenlets too."""
        self._tcp.close(stop_handlers=stop_handlers, timeout=timeout)

    def __enter__(self) -> "WsListener":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close(stop_handlers=True)

    def __repr__(self) -> str:
        return f"<WsListener {self.multiaddr} {'closed' if self.closed else 'listening'}>"


def _frame(out: list[Buffer], payload: memoryview, masked: bool) -> None:
    """Append one final binary frame carrying ``payload`` to ``out`` (RFC 6455 section 5.2):
    the header and the payload itself (unmasked, no copy), or one buffer with the payload
    masked under a fresh random key (a client's frames)."""
    n = len(payload)
    mbit = 0x80 if masked else 0
    if n < 126:
        header = bytes((_FIN_BINARY, mbit | n))
    elif n < 65536:
        header = _HEADER16.pack(_FIN_BINARY, mbit | 126, n)
    else:
        header = _HEADER64.pack(_FIN_BINARY, mbit | 127, n)
    if not masked:
        out += (header, payload)
        return
    key = os.urandom(4)
    hl = len(header) + 4
    buf = bytearray(hl + n)
    buf[: hl - 4] = header
    buf[hl - 4 : hl] = key
    buf[hl:] = payload
    wsmask.mask_into(buf, hl, key)
    out.append(buf)


class WsConn(_RawConnBase):
    """A RawConn carried in WebSocket binary messages over a TCP ``RawConn``."""

    def __init__(self, raw: RawConn, ws: _wsproto.WSConnection) -> None:
        super().__init__()
        self._raw = raw
        self._ws = ws
        self._chunks: deque[bytes] = deque()
        self._eof = False
        # frame reader state: bytes of an incomplete header or control frame, payload
        # bytes left of the current binary frame, its masking key (rotated to the next
        # byte; None: unmasked), and whether a fragmented binary message is open
        self._carry = b""
        self._left = 0
        self._key: Optional[bytes] = None
        self._in_binary = False
        self._wlock = Semaphore()  # one writer at a time: frames go out whole and in order
        self.local_addr = _with_ws(raw.local_addr)
        self.remote_addr = _with_ws(raw.remote_addr)
        self.is_initiator = raw.is_initiator

    # ------------------------------------------------------------------ handshakes

    @classmethod
    def open_client(cls, raw: RawConn, host: str) -> "WsConn":
        """Blocks the calling greenlet for the client upgrade (the caller bounds it)."""
        ws = _wsproto.WSConnection(_wsproto.ConnectionType.CLIENT)
        raw.write(ws.send(_wsev.Request(host=host, target="/")))
        conn = cls(raw, ws)
        rest = conn._read_http_head()
        for ev in conn._events:
            if isinstance(ev, _wsev.AcceptConnection):
                conn._feed(rest)  # frames that came with the answer
                return conn
            if isinstance(ev, _wsev.RejectConnection):
                raise TransportError(errno.ECONNREFUSED, f"websocket upgrade refused (HTTP {ev.status_code})")
        raise TransportError(errno.EPROTO, "no websocket upgrade answer")

    @classmethod
    def open_server(cls, raw: RawConn) -> "WsConn":
        """Blocks the calling greenlet for the server side of the upgrade (the caller bounds it)."""
        ws = _wsproto.WSConnection(_wsproto.ConnectionType.SERVER)
        conn = cls(raw, ws)
        rest = conn._read_http_head()
        for ev in conn._events:
            if isinstance(ev, _wsev.Request):
                raw.write(ws.send(_wsev.AcceptConnection()))
                conn._feed(rest)  # frames pipelined after the request
                return conn
        raise TransportError(errno.EPROTO, "no websocket upgrade request")

    def _read_http_head(self) -> bytes:
        """Read the HTTP upgrade request or answer (up to its blank line) into wsproto;
        return the bytes after it (frames), which wsproto never sees."""
        head = b""
        while True:
            data = self._raw.read(_RECV_SIZE)
            if not data:
                raise TransportError(errno.ECONNRESET, "connection closed during the websocket upgrade")
            head += data
            end = head.find(b"\r\n\r\n")
            if end >= 0:
                self._receive(head[: end + 4])
                return head[end + 4:]
            if len(head) > _MAX_HTTP_HEAD:
                raise TransportError(errno.EPROTO, "websocket upgrade: HTTP head too long")

    # ------------------------------------------------------------------ reading

    _events: list[Any] = []

    def _receive(self, data: bytes) -> None:
        try:
            self._ws.receive_data(data if data else None)
            self._events = list(self._ws.events())
        except _wsutil.RemoteProtocolError as exc:
            raise TransportError(errno.EPROTO, f"websocket protocol error: {exc}") from exc

    def _handle_events(self) -> None:
        for ev in self._events:
            if isinstance(ev, _wsev.BytesMessage):
                if ev.data:
                    self._chunks.append(bytes(ev.data))
            elif isinstance(ev, _wsev.Ping):
                self._send_control(ev.response())
            elif isinstance(ev, _wsev.CloseConnection):
                if self._ws.state is _wsconn.ConnectionState.REMOTE_CLOSING:
                    self._send_control(ev.response())
                self._eof = True
            elif isinstance(ev, _wsev.TextMessage):
                self._send_control(_wsev.CloseConnection(code=1003, reason="libp2p needs binary messages"))
                raise TransportError(errno.EPROTO, "websocket text message (libp2p uses binary messages)")
        self._events = []

    def _send_control(self, event: Any) -> None:
        try:
            with self._wlock:
                data = self._ws.send(event)
                if data:
                    self._raw.write(data)
        except (_wsutil.LocalProtocolError, TransportError):
            log.debug("could not send websocket %s", type(event).__name__, exc_info=True)

    def _feed(self, data: bytes) -> None:
        """Split received bytes into frames.  Binary data frames (and their continuations)
        are read here, unmasked by :mod:`geventp2p._speedups.wsmask`, streamed as they
        arrive; every other frame (ping, pong, close, text, anything invalid) is handed
        whole to wsproto, which answers it or raises.  wsproto copies a payload four times
        and unmasks it in pure Python, which capped what a server could receive."""
        if self._carry:
            data = self._carry + data
            self._carry = b""
        mv = memoryview(data)
        end = len(data)
        pos = 0
        chunks = self._chunks
        while pos < end:
            left = self._left
            if left:
                take = left if left <= end - pos else end - pos
                key = self._key
                if key is None:
                    chunks.append(data if take == end else data[pos:pos + take])
                else:
                    buf = bytearray(mv[pos:pos + take])
                    wsmask.mask_into(buf, 0, key)
                    r = take & 3
                    if r:
                        self._key = key[r:] + key[:r]
                    chunks.append(bytes(buf))
                pos += take
                self._left = left - take
                continue
            # a frame header: 2 bytes, then 0/2/8 bytes of length, then 0/4 of masking key
            if end - pos < 2:
                break
            b0 = data[pos]
            b1 = data[pos + 1]
            n = b1 & 0x7F
            hl = 2 + (2 if n == 126 else 8 if n == 127 else 0) + (4 if b1 & 0x80 else 0)
            if end - pos < hl:
                break
            if n == 126:
                n = int.from_bytes(data[pos + 2:pos + 4], "big")
            elif n == 127:
                n = int.from_bytes(data[pos + 2:pos + 10], "big")
            opcode = b0 & 0x0F
            # no extension bits, masked exactly when we are the server, a sane length
            sound = b0 & 0x70 == 0 and bool(b1 & 0x80) is not self._ws.client and n < 1 << 63
            if sound and opcode in (_OP_BINARY, _OP_CONTINUATION):
                if (opcode == _OP_BINARY) is self._in_binary:
                    raise TransportError(errno.EPROTO, "websocket protocol error: "
                                         + ("a binary frame inside a fragmented message" if self._in_binary
                                            else "a continuation frame outside a message"))
                self._in_binary = not b0 & 0x80  # FIN clear: continuations follow
                self._key = data[pos + hl - 4:pos + hl] if b1 & 0x80 else None
                self._left = n
                pos += hl
                continue
            if sound and opcode == _OP_TEXT:
                self._send_control(_wsev.CloseConnection(code=1003, reason="libp2p needs binary messages"))
                raise TransportError(errno.EPROTO, "websocket text message (libp2p uses binary messages)")
            # control frames (<= 125 bytes) go to wsproto whole; a frame it must refuse
            # (bad bits, opcode, masking or length) fails there at its header
            size = hl + n if n <= 125 else hl
            if end - pos < size:
                break
            self._receive(data[pos:pos + size])
            self._handle_events()
            if n > 125:  # pragma: no cover - wsproto refuses such a header itself
                raise TransportError(errno.EPROTO, f"websocket protocol error: frame opcode {opcode:#x}, {n} bytes")
            pos += size
            if self._eof:
                return
        if pos < end:
            self._carry = data[pos:]

    def _read_raw(self, n: int) -> bytes:
        chunks = self._chunks
        while not chunks:
            if self._eof or self._closed:
                return b""
            data = self._raw.read(_RECV_SIZE)
            if self._closed:
                return b""
            if not data:
                self._receive(data)  # wsproto reports the abrupt end (close code 1006)
                self._handle_events()
                self._eof = True
            else:
                self._feed(data)
        first = chunks[0]
        if len(first) <= n:
            return chunks.popleft()
        chunks[0] = first[n:]
        return first[:n]

    # ------------------------------------------------------------------ writing

    def writev(self, buffers: Iterable[Buffer]) -> None:
        """Blocks the calling greenlet until all buffers are written, in order."""
        if self._closed:
            raise TransportError(errno.EBADF, "write on a closed connection")
        bufs: list[Buffer] = [b for b in buffers if b]
        if self._pending:
            prefix = self._take_prefix()
            if prefix:
                bufs.insert(0, prefix)  # same message: negotiation + first message
        if bufs:
            self._write_raw(bufs[0] if len(bufs) == 1 else b"".join(bufs))

    def _write_raw(self, data: Buffer) -> None:
        """Binary data frames are framed here, not by wsproto, which copies the payload
        four times and masks it in pure Python (client frames: ~200 MiB/s); the mask is
        :mod:`geventp2p._speedups.wsmask`.  wsproto still frames the handshake and the
        control frames and parses everything received.  No extension is ever negotiated
        (we offer none and accept none), so a data frame is just header + payload."""
        view = memoryview(data).cast("B") if type(data) is not bytes else memoryview(data)
        total = len(view)
        client = self._ws.client
        with self._wlock:
            if self._ws.state is not _wsconn.ConnectionState.OPEN:
                raise TransportError(errno.EPIPE, f"websocket closed for writing ({self._ws.state.name})")
            frames: list[Buffer] = []
            for i in range(0, total, _MAX_MESSAGE):
                _frame(frames, view[i:i + _MAX_MESSAGE] if total > _MAX_MESSAGE else view, client)
            if len(frames) == 1:
                self._raw.write(frames[0])
            else:
                self._raw.writev(frames)  # one sendmsg for all of them

    # ------------------------------------------------------------------ closing

    def close_write(self) -> None:
        """Send a close frame (the peer reads EOF); reading goes on until the peer's close."""
        if self._closed:
            return
        if self._prefix:
            self._flush_prefix()
        if self._ws.state is _wsconn.ConnectionState.OPEN:
            self._send_control(_wsev.CloseConnection(code=1000))

    def _close_raw(self) -> None:
        if self._ws.state is _wsconn.ConnectionState.OPEN and not self._wlock.locked():
            try:  # a polite close frame if it can go out at once; the socket closes anyway
                with timeout_scope(0.5, "websocket close"):
                    self._send_control(_wsev.CloseConnection(code=1000))
            except P2PTimeoutError:
                pass
        try:
            self._raw.close()
        except Exception:  # pragma: no cover - close errors are not actionable
            log.debug("error closing websocket transport", exc_info=True)

    @property
    def closed(self) -> bool:
        return self._closed or self._raw.closed

    def __repr__(self) -> str:
        return f"<WsConn {self.local_addr} <-> {self.remote_addr} {'closed' if self.closed else 'open'}>"
