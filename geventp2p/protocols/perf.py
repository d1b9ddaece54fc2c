"""Perf - ``/perf/1.0.0`` (https://github.com/libp2p/specs/blob/master/perf/perf.md).

Client: write ``u64be(N)`` (bytes to download), upload any number of bytes,
close the write side, read until EOF expecting exactly N bytes.  Server: read
the 8-byte number, drain the upload until EOF, only then send N bytes and
close.  Never enable the server on public nodes (amplification); it is off in
``new_host`` unless asked for (``services=[..., "perf"]``).

Both sides charge their stream to the resource manager's ``libp2p.perf`` service
(a refusal resets the stream with code 0x1002).
"""

from __future__ import annotations

import logging
import struct
import time
from dataclasses import dataclass
from typing import Any

from geventp2p.exceptions import ConfigError, IncompleteReadError, RemoteProtocolError
from geventp2p.host.basic import set_stream_service

__all__ = ["PROTOCOL_ID", "SERVICE_NAME", "PerfService", "PerfResult", "perf"]

log = logging.getLogger(__name__)

PROTOCOL_ID = "/perf/1.0.0"
#: The resource manager service perf streams are charged to.
SERVICE_NAME = "libp2p.perf"
_BLOCK = 64 * 1024
_ZEROS = bytes(_BLOCK)
_MAX_U64 = (1 << 64) - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class PerfResult:
    """One perf run: byte counts and durations (seconds)."""

    upload_bytes: int
    download_bytes: int
    upload_time: float  # stream open -> write side closed
    download_time: float  # write side closed -> EOF
    total_time: float


class PerfService:
    """Perf server; ``max_download`` caps what one request may ask for (None: no cap)."""

    def __init__(self, *, max_download: int | None = None, timeout: float | None = 60.0) -> None:
        if max_download is not None and max_download < 0:
            raise ConfigError("max_download must be >= 0 or None")
        self.max_download = max_download
        self.timeout = timeout
        self.host: Any = None

    def start(self, host: Any) -> None:
        self.host = host
        host.set_stream_handler(PROTOCOL_ID, self.handle)

    def close(self) -> None:
        """Nothing to stop: handler greenlets belong to the swarm."""

    def handle(self, stream: Any) -> None:
        """Serve one perf request (runs on the stream's greenlet)."""
        set_stream_service(stream, SERVICE_NAME)
        if self.timeout is not None:
            stream.set_deadline(time.monotonic() + self.timeout)
        try:
            header = stream.read_exactly(8)
        except IncompleteReadError:
            log.debug("perf: stream ended before the 8-byte length")
            stream.reset()
            return
        (n,) = struct.unpack(">Q", header)
        if self.max_download is not None and n > self.max_download:
            log.debug("perf: request for %d bytes above the %d cap", n, self.max_download)
            stream.reset()
            return
        while stream.read(_BLOCK):
            pass
        _send(stream, n)
        stream.close()


def _send(stream: Any, n: int) -> None:
    full, rest = divmod(n, _BLOCK)
    for _ in range(full):
        stream.write(_ZEROS)
    if rest:
        stream.write(_ZEROS[:rest])


def perf(host: Any, peer: Any, upload_bytes: int, download_bytes: int, timeout: float | None = 60.0) -> PerfResult:
    """Blocks the calling greenlet: run one perf measurement against ``peer``.

    Raises RemoteProtocolError if the server sends a different number of bytes
    than requested, P2PTimeoutError after ``timeout`` (whole run).
    """
    if not 0 <= upload_bytes:
        raise ValueError("upload_bytes must be >= 0")
    if not 0 <= download_bytes <= _MAX_U64:
        raise ValueError("download_bytes must be a u64")
    t0 = time.monotonic()
    stream = host.new_stream(peer, [PROTOCOL_ID], timeout=timeout)
    set_stream_service(stream, SERVICE_NAME)
    try:
        if timeout is not None:
            stream.set_deadline(t0 + timeout)
        stream.write(struct.pack(">Q", download_bytes))
        _send(stream, upload_bytes)
        stream.close_write()
        t1 = time.monotonic()
        got = 0
        while True:
            chunk = stream.read(_BLOCK)
            if not chunk:
                break
            got += len(chunk)
            if got > download_bytes:
                raise RemoteProtocolError(f"perf: server sent more than the {download_bytes} bytes asked for")
        t2 = time.monotonic()
        if got != download_bytes:
            raise RemoteProtocolError(f"perf: expected {download_bytes} bytes, got {got} before EOF")
    except BaseException:
        stream.reset()
        raise
    stream.close()
    return PerfResult(upload_bytes=upload_bytes, download_bytes=got, upload_time=t1 - t0,
                      download_time=t2 - t1, total_time=t2 - t0)
