"""TCP transport on ``gevent.socket`` (works with and without monkey-patching).

* ``TcpTransport(config=None)``: ``dial(ma, timeout=5.0) -> SocketConn``,
  ``listen(ma, handler) -> TcpListener``, ``can_dial(ma)``, ``can_listen(ma)``.
* Addresses: ``/ip4|ip6|dns|dns4|dns6/<host>/tcp/<port>`` with an optional trailing
  ``/p2p/<id>`` (parsed by ``geventp2p.core.addr.tcp_host_port``).  DNS names are
  resolved with gevent's resolver (``gevent.socket.getaddrinfo``).
* A listener runs one accept-loop greenlet and one handler greenlet per accepted
  connection, all in a group it owns.  Accept errors (EMFILE, ENFILE, ENOBUFS, ...)
  are logged and retried after an exponential back-off capped at ``accept_backoff_max``.
  During a burst of connections the accept loop yields to the handlers after every
  ``_ACCEPT_BURST`` accepts, so a flood cannot starve the handshakes already running.
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass
from typing import Callable, Optional

import gevent
import gevent.socket as gsocket
from gevent.pool import Group
from multiaddr import Multiaddr

from geventp2p.core import addr as maddr
from geventp2p.exceptions import ConfigError, MultiaddrError, P2PTimeoutError, TransportError
from geventp2p.net._deadline import timeout_scope
from geventp2p.net._workers import worker_group, worker_pool
from geventp2p.net.rawconn import SocketConn, stop_handlers_of

__all__ = ["TcpConfig", "TcpTransport", "TcpListener", "sockaddr_to_multiaddr"]

log = logging.getLogger(__name__)

#: go-libp2p's TCP connect timeout (``DialTimeout`` in p2p/transport/tcp).
DEFAULT_CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True)
class TcpConfig:
    """TCP transport settings.

    connect_timeout: default ``dial`` timeout (seconds).
    nodelay: set TCP_NODELAY on every connection.
    reuse_addr: set SO_REUSEADDR on listening sockets.
    backlog: ``listen()`` backlog.
    accept_backoff_min / accept_backoff_max: back-off after a failed ``accept`` (seconds).
    max_handlers: cap on concurrent handler greenlets per listener (None = unbounded);
      when reached the accept loop waits, which pushes back through the kernel backlog.
    """

    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    nodelay: bool = True
    reuse_addr: bool = True
    backlog: int = 1024
    accept_backoff_min: float = 0.005
    accept_backoff_max: float = 1.0
    max_handlers: Optional[int] = None

    def __post_init__(self) -> None:
        if not (self.connect_timeout > 0):
            raise ConfigError("connect_timeout must be > 0")
        if self.backlog < 1:
            raise ConfigError("backlog must be >= 1")
        if not (0 < self.accept_backoff_min <= self.accept_backoff_max):
            raise ConfigError("need 0 < accept_backoff_min <= accept_backoff_max")
        if self.max_handlers is not None and self.max_handlers < 1:
            raise ConfigError("max_handlers must be >= 1 or None")
        for name in ("nodelay", "reuse_addr"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be a bool")


#: Local addresses of accepted connections (the listeners' addresses, a handful), so
#: that a listener's connections share one Multiaddr instead of one each.
_LOCAL_ADDRS: dict = {}


def _local_addr(sockaddr, family) -> Optional[Multiaddr]:
    key = (family, sockaddr[0], sockaddr[1])
    ma = _LOCAL_ADDRS.get(key)
    if ma is None:
        ma = sockaddr_to_multiaddr(sockaddr, family)
        if len(_LOCAL_ADDRS) >= 64:  # many local addresses (a wildcard on many IPs): start over
            _LOCAL_ADDRS.clear()
        _LOCAL_ADDRS[key] = ma
    return ma


def sockaddr_to_multiaddr(sockaddr, family) -> Optional[Multiaddr]:
    """``/ip4/<ip>/tcp/<port>`` or ``/ip6/<ip>/tcp/<port>`` for a socket address."""
    try:
        if family in (gsocket.AF_INET, gsocket.AF_INET6):
            return maddr.from_sockaddr(family, sockaddr[0], sockaddr[1], maddr.P_TCP)
    except Exception:  # pragma: no cover - odd platform address
        log.debug("cannot express %r as a multiaddr", sockaddr, exc_info=True)
    return None


def _is_numeric_host(host: str) -> bool:
    try:
        gsocket.inet_pton(gsocket.AF_INET, host)
        return True
    except OSError:
        pass
    try:
        gsocket.inet_pton(gsocket.AF_INET6, host.split("%", 1)[0])
        return True
    except OSError:
        return False


def _numeric_info(host: str, port: int, family: int):
    """getaddrinfo-shaped result for an IP literal, without touching the resolver."""
    if family in (gsocket.AF_INET, gsocket.AF_UNSPEC):
        try:
            gsocket.inet_pton(gsocket.AF_INET, host)
            return [(gsocket.AF_INET, gsocket.SOCK_STREAM, gsocket.IPPROTO_TCP, "", (host, port))]
        except OSError:
            pass
    if family in (gsocket.AF_INET6, gsocket.AF_UNSPEC) and "%" not in host:
        try:
            gsocket.inet_pton(gsocket.AF_INET6, host)
            return [(gsocket.AF_INET6, gsocket.SOCK_STREAM, gsocket.IPPROTO_TCP, "", (host, port, 0, 0))]
        except OSError:
            pass
    return None


def _resolve(host: str, port: int, family: int, *, passive: bool = False):
    infos = _numeric_info(host, port, family)
    if infos is not None:
        return infos
    flags = gsocket.AI_NUMERICHOST if _is_numeric_host(host) else 0
    if passive:
        flags |= gsocket.AI_PASSIVE
    try:
        infos = gsocket.getaddrinfo(host, port, family, gsocket.SOCK_STREAM, gsocket.IPPROTO_TCP, flags)
    except gsocket.gaierror as exc:
        raise TransportError(errno.EHOSTUNREACH, f"cannot resolve {host!r}: {exc}") from exc
    infos = [i for i in infos if i[0] in (gsocket.AF_INET, gsocket.AF_INET6)]
    if not infos:
        raise TransportError(errno.EHOSTUNREACH, f"no usable address for {host!r}")
    return infos


def _tcp_parts(ma):
    try:
        return maddr.tcp_host_port(ma)
    except MultiaddrError:
        raise
    except (TypeError, ValueError) as exc:
        raise MultiaddrError(f"not a TCP multiaddr: {ma!r} ({exc})") from exc


class TcpTransport:
    """Dial and listen on TCP multiaddrs."""

    name = "tcp"
    #: Each connection holds a file descriptor (the resource manager's ``fd`` count).
    uses_fd = True

    def __init__(self, config: Optional[TcpConfig] = None) -> None:
        if config is None:
            config = TcpConfig()
        elif not isinstance(config, TcpConfig):
            raise ConfigError(f"expected TcpConfig, got {type(config).__name__}")
        self.config = config

    def can_dial(self, ma) -> bool:
        """True if ``ma`` is an ip4/ip6/dns/dns4/dns6 + tcp address (optional /p2p)."""
        try:
            maddr.tcp_host_port(ma)
        except Exception:
            return False
        return True

    can_listen = can_dial

    # ------------------------------------------------------------------ dial

    def dial(self, ma, timeout: Optional[float] = None) -> SocketConn:
        """Blocks the calling greenlet until connected (or ``timeout``, default 5 s, passes).

        Raises MultiaddrError for unsupported addresses, P2PTimeoutError on timeout and
        TransportError when every resolved address refused or failed.
        """
        host, port, family = _tcp_parts(ma)
        if port == 0:
            raise MultiaddrError(f"cannot dial port 0: {ma}")
        if timeout is None:
            timeout = self.config.connect_timeout
        with timeout_scope(timeout, "dial", ma):
            return self._dial(host, port, family, ma)

    def _dial(self, host, port, family, ma) -> SocketConn:
        last_exc: Optional[BaseException] = None
        for af, socktype, proto, _canon, sockaddr in _resolve(host, port, family):
            sock = gsocket.socket(af, socktype, proto)
            try:
                sock.connect(sockaddr)
            except BaseException as exc:
                sock.close()
                if not isinstance(exc, OSError):
                    raise
                last_exc = exc
                log.debug("dial %s via %s failed: %s", ma, sockaddr, exc)
                continue
            return self._wrap(sock, is_initiator=True)
        assert last_exc is not None
        if isinstance(last_exc, gsocket.timeout):  # pragma: no cover - we use gevent.Timeout
            raise P2PTimeoutError(f"dial {ma} timed out") from last_exc
        raise TransportError(
            getattr(last_exc, "errno", None) or errno.ECONNREFUSED,
            f"dial {ma} failed: {getattr(last_exc, 'strerror', None) or last_exc}",
        ) from last_exc

    def _wrap(self, sock, *, is_initiator: bool) -> SocketConn:
        family = sock.family
        try:
            local = _local_addr(sock.getsockname(), family) if not is_initiator else \
                sockaddr_to_multiaddr(sock.getsockname(), family)
            remote = sockaddr_to_multiaddr(sock.getpeername(), family)
        except OSError as exc:
            sock.close()
            raise TransportError(exc.errno, f"connection lost during setup: {exc.strerror or exc}") from exc
        conn = SocketConn(sock, local, remote, is_initiator)
        if self.config.nodelay:
            conn.set_nodelay(True)
        return conn

    # ------------------------------------------------------------------ listen

    def listen(self, ma, handler: Callable[[SocketConn], None]) -> "TcpListener":
        """Bind and start accepting; ``handler(conn)`` runs in its own greenlet per connection.

        Does not block.  ``/tcp/0`` picks a free port: see ``listener.multiaddr``.
        """
        host, port, family = _tcp_parts(ma)
        if not callable(handler):
            raise TypeError("handler must be callable")
        af, socktype, proto, _canon, sockaddr = _resolve(host, port, family, passive=True)[0]
        sock = gsocket.socket(af, socktype, proto)
        try:
            if self.config.reuse_addr:
                sock.setsockopt(gsocket.SOL_SOCKET, gsocket.SO_REUSEADDR, 1)
            if af == gsocket.AF_INET6:
                sock.setsockopt(gsocket.IPPROTO_IPV6, gsocket.IPV6_V6ONLY, 1)
            sock.bind(sockaddr)
            sock.listen(self.config.backlog)
        except OSError as exc:
            sock.close()
            raise TransportError(exc.errno, f"cannot listen on {ma}: {exc.strerror or exc}") from exc
        return TcpListener(self, sock, handler)


_ACCEPT_RETRY_NOW = {errno.ECONNABORTED, errno.EPROTO, errno.EINTR, errno.EAGAIN}

#: Accepts in a row before the accept loop lets other greenlets run.
_ACCEPT_BURST = 32


class TcpListener:
    """A listening socket with its accept loop and handler greenlets.

    ``multiaddr`` is the bound address (real port).  ``close(stop_handlers=False)``
    closes the socket and ends the accept loop; with ``stop_handlers=True`` it also
    kills the handler greenlets (their connections are closed).
    """

    def __init__(self, transport: TcpTransport, sock, handler) -> None:
        self.transport = transport
        self._sock = sock
        self._handler = handler
        self._closed = False
        cfg = transport.config
        self._handlers = worker_pool(cfg.max_handlers) if cfg.max_handlers else worker_group()
        self.multiaddr = sockaddr_to_multiaddr(sock.getsockname(), sock.family)
        self.accept_errors = 0
        self._loop = gevent.spawn(self._accept_loop)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def handlers(self) -> Group:
        """The group of running handler greenlets."""
        return self._handlers

    def _accept(self):
        return self._sock.accept()

    def _accept_loop(self) -> None:
        cfg = self.transport.config
        backoff = 0.0
        burst = 0
        while not self._closed:
            try:
                sock, _peer = self._accept()
            except OSError as exc:
                if self._closed:
                    break
                self.accept_errors += 1
                if exc.errno in _ACCEPT_RETRY_NOW:
                    log.debug("accept on %s: %s (retrying)", self.multiaddr, exc)
                    continue
                backoff = cfg.accept_backoff_min if not backoff else min(backoff * 2, cfg.accept_backoff_max)
                log.warning("accept on %s failed: %s; retrying in %.3fs", self.multiaddr, exc, backoff)
                gevent.sleep(backoff)
                continue
            except Exception:
                if self._closed:
                    break
                self.accept_errors += 1
                log.exception("unexpected accept error on %s", self.multiaddr)
                backoff = min(max(backoff * 2, cfg.accept_backoff_min), cfg.accept_backoff_max)
                gevent.sleep(backoff)
                continue
            backoff = 0.0
            if self._closed:
                sock.close()
                break
            burst += 1
            if burst >= _ACCEPT_BURST:  # a backlog full of arrivals: let the handlers run
                burst = 0
                gevent.sleep(0)
                if self._closed:
                    sock.close()
                    break
            try:
                conn = self.transport._wrap(sock, is_initiator=False)
            except TransportError as exc:
                log.debug("accepted connection on %s lost during setup: %s", self.multiaddr, exc)
                continue
            self._handlers.spawn(self._run_handler, conn)

    def _run_handler(self, conn: SocketConn) -> None:
        ok = False
        try:
            self._handler(conn)
            ok = True
        except Exception:
            log.exception("connection handler failed for %s", conn.remote_addr)
        finally:
            if not ok:  # raised or killed: the connection is ours to close
                conn.close()

    def close(self, stop_handlers: bool = False, timeout: Optional[float] = 5.0) -> None:
        """Stop accepting (idempotent); optionally kill handler greenlets too."""
        if not self._closed:
            self._closed = True
            self._sock.close()
            if self._loop is not gevent.getcurrent():
                self._loop.kill(block=True, timeout=timeout)
        if stop_handlers:
            stop_handlers_of(self._handlers, timeout)

    def join(self, timeout: Optional[float] = None) -> bool:
        """Blocks the calling greenlet until the accept loop ends; True if it did."""
        self._loop.join(timeout)
        return self._loop.dead

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close(stop_handlers=True)

    def __repr__(self) -> str:
        return f"<TcpListener {self.multiaddr} {'closed' if self._closed else 'listening'}>"
