"""A swarm's connections and the bookkeeping of their streams (go ``swarm_conn.go``).

:class:`SwarmConn` is an upgraded :class:`~geventp2p.net.upgrader.Connection` owned
by a :class:`~geventp2p.net.swarm.Swarm`.  It opens outbound streams, runs the
accept loop that hands inbound streams to the swarm's stream handler, and tracks
the streams it gave out.

Streams are the muxer's own :class:`~geventp2p.net.stream.Stream` objects: no
wrapper.  The connection sets four fields on each one: ``conn`` (this
connection), ``scope`` (the stream's resource scope), ``_watch`` (called by the
stream once it is finished, through the stream's state-change hook: the
``closed_stream`` notification) and, only when the swarm has a bandwidth
reporter, ``_meter``.

Resource accounting (go ``swarm_conn.go``): ``new_stream`` asks the swarm's
resource manager for an outbound stream scope *before* opening anything (a refusal
raises :class:`~geventp2p.exceptions.ResourceLimitExceeded` to the caller); the
accept loop asks for an inbound one for every stream the remote opens and resets
the stream with code 0x1002 (resource limit exceeded) when refused, as go does.
Each stream's ``scope.done()`` is called exactly once: when the stream is
finished (both directions closed, or reset) or, if the connection ends first,
when the connection forgets its streams.  The connection's own scope (from the
upgrade) is released once, when the swarm removes the connection.
"""

from __future__ import annotations

import itertools
import logging
from typing import TYPE_CHECKING, Callable

from geventp2p.core.mux import Direction, MuxedConn
from geventp2p.core.rcmgr import NULL_SCOPE
from geventp2p.exceptions import ConnectionClosedError, ResourceLimitExceeded, StreamError
from geventp2p.net.stream import Stream
from geventp2p.net.upgrader import Connection

if TYPE_CHECKING:
    from geventp2p.net.swarm import Swarm

__all__ = ["SwarmConn", "close_muxed"]

log = logging.getLogger(__name__)

_conn_ids = itertools.count(1)

StreamHandler = Callable[[Stream], None]


def close_muxed(muxed: MuxedConn, code: int) -> None:
    """Close a muxed session, with a close code where the muxer can send one (yamux GoAway)."""
    if code:
        muxed.close_with_error(code)
    else:
        muxed.close()


class SwarmConn(Connection):
    """A connection owned by a swarm: streams are tracked and notified, ``close`` unregisters.

    Same attributes as :class:`~geventp2p.net.upgrader.Connection` plus ``id``,
    ``swarm``, ``limited`` (False: relayed connections do not exist yet) and
    ``streams()``.  Inbound streams go straight from the muxer to the swarm's
    stream handler; do not call ``accept_stream``.
    """

    #: Who dialed (the enum member; the upgrader's ``Connection`` may still hold the string).
    direction: Direction

    def __init__(self, swarm: "Swarm", conn: Connection) -> None:
        super().__init__(conn.muxed, conn.secured, direction=Direction(conn.direction),
                         security=conn.security, muxer=conn.muxer, scope=conn.scope)
        conn.scope = NULL_SCOPE  # the scope is ours now (released once, in swarm._remove_conn)
        self.opened_at = conn.opened_at
        self.swarm = swarm
        self.id = next(_conn_ids)
        self.limited = False
        self._streams: dict[Stream, None] = {}
        self._removed = False

    # ------------------------------------------------------------------ streams

    def new_stream(self, timeout: float | None = None) -> Stream:
        """Blocks the calling greenlet until a new outbound stream is open.

        Raises :class:`ResourceLimitExceeded` (nothing opened) when the resource
        manager refuses the stream."""
        if self._removed or self.closed:
            raise ConnectionClosedError("connection is closed", remote=False)
        scope = self.swarm.resource_manager.open_stream(self.remote_peer, Direction.OUTBOUND)
        try:
            s = self.muxed.open_stream(timeout=timeout)
        except BaseException:
            scope.done()
            raise
        s.scope = scope
        return self._adopt(s)

    def streams(self) -> list[Stream]:
        """Streams opened or accepted on this connection and not yet finished."""
        return list(self._streams)

    def _adopt(self, s: Stream) -> Stream:
        """Make a muxer stream ours: ``conn``, close/reset watch, metering; notify."""
        s.conn = self
        s._watch = self._stream_finished
        rep = self.swarm.bandwidth_reporter
        if rep is not None:
            s._meter = rep
            s._slow_write = True
        self._streams[s] = None
        self.swarm._notify("opened_stream", s)
        if s.finished and s._watch is not None:  # finished before we watched it (e.g. reset at once)
            s._watch = None
            self._stream_finished(s)
        return s

    def _stream_finished(self, s: Stream) -> None:
        """The stream's state-change hook saw it finished (closed both ways or reset).

        The stream's ``_watch`` fires once, so its scope is released once."""
        s.scope.done()
        streams = self._streams
        if streams.pop(s, 0) is None:
            if not streams:  # an emptied dict keeps its grown table; a new one has none
                self._streams = {}
            self.swarm._notify("closed_stream", s)

    def _forget_streams(self) -> None:
        """The connection is gone: every stream still tracked is released and notified closed."""
        streams = list(self._streams)
        self._streams.clear()
        for s in streams:
            s._watch = None  # _stream_finished will not run for it any more
            s.scope.done()
            self.swarm._notify("closed_stream", s)

    def _serve(self) -> None:
        """Start taking inbound streams: the muxer hands each one over as it arrives
        (no greenlet waits for them) and says when the session is over."""
        self.muxed.serve(self._on_inbound, self._on_muxed_closed)

    def _on_inbound(self, inner: Stream) -> None:
        # on the muxer's reader: no blocking here, the stream's own greenlet does the rest
        self.swarm.group.spawn(self._serve_stream, inner)

    def _on_muxed_closed(self) -> None:
        self.swarm.group.spawn(self.swarm._close_conn, self, 0)

    def _serve_stream(self, inner: Stream) -> None:
        """Charges the inbound stream to the resource manager, makes it ours and runs the
        swarm's stream handler on it (one greenlet per stream)."""
        swarm = self.swarm
        if self._removed:
            inner.reset()
            return
        try:
            scope = swarm.resource_manager.open_stream(self.remote_peer, Direction.INBOUND)
        except ResourceLimitExceeded as exc:
            log.debug("inbound stream on %r refused: %s", self, exc)
            inner.reset(ResourceLimitExceeded.error_code)
            return
        inner.scope = scope
        s = self._adopt(inner)
        handler = swarm.stream_handler
        if handler is None:
            log.debug("no stream handler; resetting inbound stream on %r", self)
            s.reset()
            return
        _run_handler(handler, s)

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close the connection (idempotent); notifiees see ``closed_stream``s then ``disconnected``."""
        self.swarm._close_conn(self, 0)

    def close_with_error(self, code: int) -> None:
        """Close with a connection error code (yamux GoAway), e.g. ``0x1007`` gated."""
        self.swarm._close_conn(self, code)

    def __repr__(self) -> str:
        return (
            f"<SwarmConn #{self.id} {self.direction} {self.remote_peer} {self.remote_addr} "
            f"{self.security}+{self.muxer}{' closed' if self.closed else ''}>"
        )


def _run_handler(handler: StreamHandler, s: Stream) -> None:
    try:
        handler(s)
    except StreamError as exc:  # the stream or its connection died under the handler
        log.debug("stream handler on %r ended: %s", s, exc)
        s.reset()
    except Exception:
        log.exception("stream handler failed on %r", s)
        s.reset()
