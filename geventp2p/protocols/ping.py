"""Ping - ``/ipfs/ping/1.0.0`` (https://github.com/libp2p/specs/blob/master/ping/ping.md).

* :class:`PingService` (host service) answers pings: it echoes 32-byte blocks
  until EOF.  The stream is dropped after ``idle_timeout`` seconds without a
  ping (go: 10 s) or, if set, after ``max_stream_lifetime``; at most
  ``max_inbound_streams_per_peer`` concurrent ping streams per peer (go/js: 2),
  further ones are reset.
* :func:`ping` opens one stream and yields one RTT (float seconds) per round:
  32 fresh random bytes out, the same 32 bytes expected back.  Each RTT is
  folded into the peerstore's latency EWMA.  A wrong echo raises
  :class:`~geventp2p.exceptions.RemoteProtocolError`; EOF or reset ends with the
  stream error.

Both sides charge their stream to the resource manager's ``libp2p.ping`` service
(go's name and default limits), and the responder reserves its 32-byte block in
the stream's scope; a refusal resets the stream with code 0x1002.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Iterator

import gevent

from geventp2p.exceptions import ConfigError, IncompleteReadError, P2PTimeoutError, RemoteProtocolError
from geventp2p.host.basic import reserve_stream_memory, set_stream_service

__all__ = ["PROTOCOL_ID", "PING_SIZE", "SERVICE_NAME", "PingService", "ping"]

log = logging.getLogger(__name__)

PROTOCOL_ID = "/ipfs/ping/1.0.0"
PING_SIZE = 32
#: The resource manager service ping streams are charged to (go's name).
SERVICE_NAME = "libp2p.ping"


class PingService:
    """Ping responder (see module docs)."""

    def __init__(
        self,
        *,
        idle_timeout: float = 10.0,
        max_stream_lifetime: float | None = None,
        max_inbound_streams_per_peer: int = 2,
    ) -> None:
        if not idle_timeout > 0:
            raise ConfigError("idle_timeout must be > 0")
        if max_stream_lifetime is not None and not max_stream_lifetime > 0:
            raise ConfigError("max_stream_lifetime must be > 0 or None")
        if max_inbound_streams_per_peer < 1:
            raise ConfigError("max_inbound_streams_per_peer must be >= 1")
        self.idle_timeout = float(idle_timeout)
        self.max_stream_lifetime = max_stream_lifetime
        self.max_inbound_streams_per_peer = max_inbound_streams_per_peer
        self.host: Any = None
        self._active: dict[Any, int] = {}

    def start(self, host: Any) -> None:
        self.host = host
        host.set_stream_handler(PROTOCOL_ID, self.handle)

    def close(self) -> None:
        """Nothing to stop: handler greenlets belong to the swarm."""

    def ping(self, peer: Any, **kwargs: Any) -> Iterator[float]:
        """``ping(self.host, peer, **kwargs)``."""
        return ping(self.host, peer, **kwargs)

    def handle(self, stream: Any) -> None:
        """Echo 32-byte blocks until EOF (runs on the stream's greenlet)."""
        peer = stream.conn.remote_peer
        n = self._active.get(peer, 0)
        if n >= self.max_inbound_streams_per_peer:
            log.debug("ping: %s already has %d inbound ping streams; resetting", peer, n)
            stream.reset()
            return
        set_stream_service(stream, SERVICE_NAME)  # refused: reset, the host logs it
        reserve_stream_memory(stream, PING_SIZE)
        self._active[peer] = n + 1
        try:
            if self.max_stream_lifetime is not None:
                stream.set_deadline(time.monotonic() + self.max_stream_lifetime)
            while True:
                try:
                    data = stream.read_exactly(PING_SIZE, timeout=self.idle_timeout)
                except IncompleteReadError as exc:
                    if exc.partial:
                        log.debug("ping: %s sent a partial block (%d bytes)", peer, len(exc.partial))
                    break
                except P2PTimeoutError:
                    log.debug("ping: stream from %s idle or expired; closing", peer)
                    stream.reset()
                    return
                stream.write(data)
        finally:
            stream.scope.release_memory(PING_SIZE)
            left = self._active.get(peer, 1) - 1
            if left:
                self._active[peer] = left
            else:
                self._active.pop(peer, None)
        stream.close()


def ping(host: Any, peer: Any, count: int | None = None, interval: float = 1.0,
         timeout: float = 10.0) -> Iterator[float]:
    """Ping ``peer`` over one stream; yields RTTs in seconds.

    Blocks the calling greenlet on each iteration.  ``count=None`` pings until
    the consumer stops iterating (the stream is closed then); ``interval`` is
    the pause between rounds; ``timeout`` bounds opening the stream and each
    round trip.
    """
    if count is not None and count < 0:
        raise ValueError("count must be >= 0 or None")
    if interval < 0:
        raise ValueError("interval must be >= 0")
    stream = host.new_stream(peer, [PROTOCOL_ID], timeout=timeout)
    set_stream_service(stream, SERVICE_NAME)
    try:
        n = 0
        while count is None or n < count:
            if n and interval:
                gevent.sleep(interval)
            payload = os.urandom(PING_SIZE)
            t0 = time.perf_counter()
            stream.write(payload, timeout=timeout)
            echo = stream.read_exactly(PING_SIZE, timeout=timeout)
            rtt = time.perf_counter() - t0
            if echo != payload:
                raise RemoteProtocolError("ping packet was incorrect")
            host.peerstore.record_latency(stream.conn.remote_peer, rtt)
            n += 1
            yield rtt
    except GeneratorExit:  # the consumer stopped iterating: a clean end
        stream.close()
        raise
    except BaseException:
        stream.reset()
        raise
    stream.close()
