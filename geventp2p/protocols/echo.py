"""Echo - ``/echo/1.0.0``: the server writes back every byte until EOF, then closes.

Not a libp2p standard protocol; the interop test peers and our tests use it.
Both sides charge their stream to the resource manager's ``libp2p.echo`` service
(a refusal resets the stream with code 0x1002).
"""

from __future__ import annotations

import time
from typing import Any

import gevent

from geventp2p.exceptions import ConfigError, P2PTimeoutError
from geventp2p.host.basic import set_stream_service

__all__ = ["PROTOCOL_ID", "SERVICE_NAME", "EchoService", "echo"]

PROTOCOL_ID = "/echo/1.0.0"
#: The resource manager service echo streams are charged to.
SERVICE_NAME = "libp2p.echo"

_CHUNK = 64 * 1024


class EchoService:
    """Echo responder; ``idle_timeout`` ends a stream that stays silent that long."""

    def __init__(self, *, idle_timeout: float = 60.0, protocol_id: str = PROTOCOL_ID) -> None:
        if not idle_timeout > 0:
            raise ConfigError("idle_timeout must be > 0")
        self.idle_timeout = float(idle_timeout)
        self.protocol_id = protocol_id
        self.host: Any = None

    def start(self, host: Any) -> None:
        self.host = host
        host.set_stream_handler(self.protocol_id, self.handle)

    def close(self) -> None:
        """Nothing to stop: handler greenlets belong to the swarm."""

    def handle(self, stream: Any) -> None:
        """Echo until EOF, then close (runs on the stream's greenlet)."""
        set_stream_service(stream, SERVICE_NAME)
        while True:
            try:
                data = stream.read(_CHUNK, timeout=self.idle_timeout)
            except P2PTimeoutError:
                stream.reset()
                return
            if not data:
                break
            stream.write(data, timeout=self.idle_timeout)
        stream.close()


def echo(host: Any, peer: Any, data: bytes, timeout: float = 10.0, protocol_id: str = PROTOCOL_ID) -> bytes:
    """Blocks the calling greenlet: send ``data``, half-close, return everything echoed until EOF.

    ``timeout`` bounds the whole exchange (P2PTimeoutError).
    """
    deadline = time.monotonic() + timeout
    stream = host.new_stream(peer, [protocol_id], timeout=timeout)
    set_stream_service(stream, SERVICE_NAME)
    writer = None
    try:
        stream.set_deadline(deadline)
        # write on a helper greenlet while we read: the echo comes back while we
        # still send, and a sender that never reads would stall both windows
        writer = gevent.spawn(_send_all, stream, data)
        parts = []
        while True:
            chunk = stream.read(_CHUNK)
            if not chunk:
                break
            parts.append(chunk)
        writer.get()
    except BaseException:
        stream.reset()
        raise
    finally:
        if writer is not None:
            writer.kill()
    stream.close()
    return b"".join(parts)


def _send_all(stream: Any, data: bytes) -> None:
    view = memoryview(data)
    for off in range(0, len(view), _CHUNK):
        stream.write(view[off:off + _CHUNK])
    stream.close_write()
