"""Deadlines and the one ``gevent.Timeout`` -> :class:`P2PTimeoutError` translation.

Every blocking call in geventp2p takes ``timeout=`` (seconds, ``None`` = no bound) or
honours a deadline (an absolute ``time.monotonic()`` value).  Two helpers cover every
case, so the translation lives here and nowhere else:

* :class:`Deadline` -- an absolute point in time that several waits share
  (``left()`` for the next wait, ``check()`` between them).
* :class:`timeout_scope` -- bounds a block of blocking code with a ``gevent.Timeout``
  and turns *its own* expiry into :class:`P2PTimeoutError` naming what timed out.
  A ``gevent.Timeout`` raised by an outer scope passes through untouched.

``timeout_scope`` is a plain class, not a ``@contextmanager`` generator: it is used
once per negotiated stream, and a generator frame per use showed in profiles.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Literal, Optional

import gevent

from geventp2p.exceptions import P2PTimeoutError

__all__ = ["Deadline", "effective_deadline", "timeout_scope"]

_monotonic = time.monotonic


def effective_deadline(timeout: Optional[float], deadline: Optional[float]) -> Optional[float]:
    """The earlier of ``now + timeout`` and ``deadline`` (either may be ``None``)."""
    if timeout is None:
        return deadline
    t = _monotonic() + timeout
    if deadline is None or t < deadline:
        return t
    return deadline


class Deadline:
    """An absolute deadline shared by several waits (``timeout=None``: unbounded)."""

    __slots__ = ("at",)

    def __init__(self, timeout: Optional[float]) -> None:
        self.at: Optional[float] = None if timeout is None else _monotonic() + timeout

    def left(self, default: Optional[float] = None) -> Optional[float]:
        """Seconds left (never below 0), capped by ``default``; ``default`` when unbounded."""
        if self.at is None:
            return default
        left = max(0.0, self.at - _monotonic())
        return left if default is None else min(left, default)

    def expired(self) -> bool:
        return self.at is not None and _monotonic() >= self.at

    def check(self, what: str) -> None:
        """Raise :class:`P2PTimeoutError` naming ``what`` if the deadline has passed."""
        if self.expired():
            raise P2PTimeoutError(f"{what} timed out")


class timeout_scope:
    """``with timeout_scope(5.0, "noise handshake"): ...`` -- a bounded block.

    Blocks the calling greenlet no longer than ``timeout`` seconds inside the block;
    on expiry raises :class:`P2PTimeoutError` ("<what> timed out after 5s").  With
    ``timeout=None`` the block is unbounded and the scope costs two attribute reads.
    ``subject``, when given, is appended to ``what`` in that message ("dial /ip4/...");
    it is only turned into text on expiry (a multiaddr's ``str()`` is not cheap).
    """

    __slots__ = ("timeout", "what", "subject", "_timer")

    def __init__(self, timeout: Optional[float], what: str, subject: object = None) -> None:
        self.timeout = timeout
        self.what = what
        self.subject = subject
        self._timer: Optional[gevent.Timeout] = None

    def __enter__(self) -> "timeout_scope":
        if self.timeout is not None:
            self._timer = gevent.Timeout(self.timeout)
            self._timer.start()
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> Literal[False]:
        timer = self._timer
        if timer is None:
            return False
        self._timer = None
        timer.close()
        if exc is not None and exc is timer:
            what = self.what if self.subject is None else f"{self.what} {self.subject}"
            raise P2PTimeoutError(f"{what} timed out after {self.timeout:g}s") from None
        return False
