"""Test-only stand-in for the swarm's stream scopes, until the swarm opens them itself.

The swarm is meant to give every stream it adopts a scope of its resource manager
(``stream.scope = rm.open_stream(peer, direction)``) and to end it (``done()``) when
the stream finishes.  Where the swarm already does so while adopting a stream,
the wrappers change nothing (a stream that already has a scope is left alone, and
``done()`` is idempotent); where it does not, it wraps ``SwarmConn._adopt`` and the two
stream-finished paths so the host-level tests see real scopes.

``python -c "import tests.host._rcmgr_shim as s; s.install(); ..."`` does the same in
a subprocess (the CLI tests).
"""

from __future__ import annotations

from typing import Any, Callable

from geventp2p.core.rcmgr import NULL_SCOPE
from geventp2p.exceptions import ResourceLimitExceeded
from geventp2p.net.stream import Stream
from geventp2p.net.swarm_conn import SwarmConn

_saved: dict[str, Callable[..., Any]] = {}


def swarm_opens_stream_scopes() -> bool:
    """True once the swarm's connections open stream scopes themselves."""
    import inspect

    from geventp2p.net import swarm_conn

    return "resource_manager.open_stream" in inspect.getsource(swarm_conn)


def install() -> None:
    """Wrap the swarm's stream adoption (idempotent; no-op if the swarm opens scopes)."""
    if _saved or swarm_opens_stream_scopes():
        return
    adopt = _saved["_adopt"] = SwarmConn._adopt
    finished = _saved["_stream_finished"] = SwarmConn._stream_finished
    forget = _saved["_forget_streams"] = SwarmConn._forget_streams

    def _adopt(self: SwarmConn, s: Stream) -> Stream:
        s = adopt(self, s)
        rm = getattr(self.swarm, "resource_manager", None)
        if rm is not None and s.scope is NULL_SCOPE:  # the swarm did not attach one itself
            try:
                s.scope = rm.open_stream(self.remote_peer, s.direction)
            except ResourceLimitExceeded:
                s.reset(ResourceLimitExceeded.error_code)
        return s

    def _stream_finished(self: SwarmConn, s: Stream) -> None:
        finished(self, s)
        s.scope.done()

    def _forget_streams(self: SwarmConn) -> None:
        streams = list(self._streams)
        forget(self)
        for s in streams:
            s.scope.done()

    SwarmConn._adopt = _adopt  # type: ignore[method-assign]
    SwarmConn._stream_finished = _stream_finished  # type: ignore[method-assign]
    SwarmConn._forget_streams = _forget_streams  # type: ignore[method-assign]


def uninstall() -> None:
    for name, fn in _saved.items():
        setattr(SwarmConn, name, fn)
    _saved.clear()


# loaded as a pytest plugin (-p tests.host._rcmgr_shim): on for the whole run
def pytest_configure(config: Any) -> None:
    install()
