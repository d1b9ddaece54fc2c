"""Blocking multistream-select over anything with ``read``/``write``/``unread``.

Works on a RawConn (security negotiation on a raw socket, muxer negotiation inside a
secured conn) and on a muxed Stream (protocol negotiation per stream).  The protocol
logic is ``geventp2p.sansio.multistream``; this module only moves bytes and keeps
time.  Bytes that follow the final negotiation message in the same read are pushed
back with ``rw.unread()`` so the next layer (or the stream handler) sees them.
Spec: https://github.com/multiformats/multistream-select

* ``select_one_of(rw, protocols, timeout=10.0) -> str`` - initiator, round-trip.
* ``select_lazy(rw, protocol)`` - initiator, pipelined (go ``NewMSSelect``).  On a
  muxed :class:`~geventp2p.net.stream.Stream` it returns the stream itself: the
  proposal becomes the stream's pending prefix and the echo its pending check (both
  in the stream's slow path, no wrapper).  On a raw connection (security
  negotiation in the upgrader) it returns a :class:`LazyConn`.
* ``handle(rw, protocols_or_predicate, timeout=10.0) -> str`` - responder.

Failures raise ``NegotiationError`` (no common protocol, wrong header, unexpected
reply, EOF), ``ProtocolError`` subclasses for malformed messages (``VarintError``,
``MessageTooLargeError``, ``RemoteProtocolError``) and ``P2PTimeoutError``.  The
channel is left as is; the caller closes or resets it (go-libp2p resets streams with
code 0x1001, ``NegotiationError.error_code``).
"""

from __future__ import annotations

import logging
from typing import Any, Optional, Sequence

from gevent.lock import Semaphore

from geventp2p.exceptions import NegotiationError, P2PTimeoutError
from geventp2p.net._deadline import Deadline, timeout_scope
from geventp2p.net.stream import Stream
from geventp2p.sansio.multistream import (
    LS,
    PROTOCOL_ID,
    Dialer,
    Listener,
    MessageReader,
    encode_message,
    parse_ls_body,
)

__all__ = [
    "PROTOCOL_ID",
    "DEFAULT_NEGOTIATION_TIMEOUT",
    "select_one_of",
    "select_lazy",
    "handle",
    "list_protocols",
    "LazyConn",
    "handle_deferred",
    "PrefixedConn",
]

log = logging.getLogger(__name__)

#: go-libp2p / js-libp2p stream negotiation timeout.
DEFAULT_NEGOTIATION_TIMEOUT = 10.0

# Negotiation messages are small; read little so the rest stays in the lower layer.
_READ_SIZE = 4096


def _flush(rw, negotiator) -> None:
    out = negotiator.data_to_send()
    if out:
        rw.write(out)


def _run(rw, negotiator, what: str) -> str:
    """Drive a sans-I/O negotiator to completion; push back read-ahead bytes."""
    _flush(rw, negotiator)
    while not negotiator.done:
        data = rw.read(_READ_SIZE)
        if not data:
            raise NegotiationError(f"{what}: unexpected EOF during multistream negotiation")
        negotiator.receive_data(data)  # raises on a malformed or unacceptable exchange
        _flush(rw, negotiator)  # na / echo / next proposal
    leftover = negotiator.unconsumed()
    if leftover:
        rw.unread(leftover)
    return negotiator.protocol


def select_one_of(rw, protocols: Sequence[str], timeout: Optional[float] = DEFAULT_NEGOTIATION_TIMEOUT) -> str:
    """Blocks the calling greenlet until the peer accepts one of ``protocols`` (in order).

    Header and first proposal go out in one write; after each ``na`` the next proposal
    is sent alone.  Returns the accepted protocol.  Raises NegotiationError (listing
    every proposal) when all are refused.
    """
    dialer = Dialer(protocols)
    with timeout_scope(timeout, "multistream select"):
        proto = _run(rw, dialer, "select")
    log.debug("multistream: selected %s (refused: %s)", proto, dialer.rejected)
    return proto


def handle(rw, protocols_or_predicate, timeout: Optional[float] = DEFAULT_NEGOTIATION_TIMEOUT,
           *, ls_protocols=None) -> str:
    """Blocks the calling greenlet until the initiator proposes a protocol we support.

    ``protocols_or_predicate`` is an iterable of protocol IDs (a list, set, dict of
    handlers, ...) or a callable ``protocol -> bool``.  The header is sent at once;
    unknown proposals (and ``/libp2p/simultaneous-connect``) get ``na`` and the loop
    goes on; ``ls`` gets the supported list (or ``na`` for a bare predicate unless
    ``ls_protocols`` is given).  Returns the accepted (already echoed) protocol.
    """
    listener = Listener(protocols_or_predicate, ls_protocols=ls_protocols)
    if timeout is None:
        return _run(rw, listener, "handle")
    with timeout_scope(timeout, "multistream handle"):
        proto = _run(rw, listener, "handle")
    return proto


def _try_read(rw, n: int = _READ_SIZE):
    """Bytes ``rw`` can return without waiting (None when it would block)."""
    try:
        return rw.read(n, timeout=0)
    except P2PTimeoutError:
        return None


def _readinto(rw, buf, timeout: Optional[float]) -> int:
    """``rw.readinto(buf, timeout)`` when the channel has it, else a read and a copy."""
    readinto = getattr(rw, "readinto", None)
    if readinto is not None:
        return readinto(buf, timeout=timeout)
    return _copy_into(buf, rw.read(len(memoryview(buf)), timeout=timeout))


def _copy_into(buf, data: bytes) -> int:
    k = len(data)
    if k:
        memoryview(buf).cast("B")[:k] = data
    return k


def handle_deferred(rw, protocols_or_predicate, timeout: Optional[float] = DEFAULT_NEGOTIATION_TIMEOUT,
                    *, ls_protocols=None) -> tuple:
    """:func:`handle` for an initiator that may pipeline; returns ``(protocol, pending)``.

    Our replies are written only before we would wait for the initiator.  If the
    initiator sent more bytes right after its accepted proposal (it pipelines, e.g.
    a lazy select followed by a Noise handshake message), the header and echo are
    not written but returned as ``pending`` for the caller to send in front of its
    own first write (see :class:`PrefixedConn`); otherwise they are written and
    ``pending`` is ``b""``.  An initiator that waits for our header or echo gets it
    before we block, so nothing can deadlock.  ``rw.read`` must accept ``timeout=0``.
    """
    listener = Listener(protocols_or_predicate, ls_protocols=ls_protocols)
    with timeout_scope(timeout, "multistream handle"):
        while not listener.done:
            data = _try_read(rw)
            if data is None:
                _flush(rw, listener)  # header / na first: the initiator may be waiting for it
                data = rw.read(_READ_SIZE)
            if not data:
                raise NegotiationError("handle: unexpected EOF during multistream negotiation")
            listener.receive_data(data)
        leftover = listener.unconsumed()
        pending = listener.data_to_send()
        if leftover:
            rw.unread(leftover)
        elif pending:
            rw.write(pending)
            pending = b""
    log.debug("multistream: accepted %s (refused: %s)", listener.protocol, listener.rejected)
    return listener.protocol, pending


class PrefixedConn:
    """A raw channel whose first write is preceded by ``pending`` bytes (:func:`handle_deferred`).

    Used by the upgrader on raw connections only; muxed streams keep a pending
    prefix in the stream itself.

    ``pending`` is sent with the first write, or alone before a read that would
    wait, a half-close or a close.  Everything else is delegated.
    """

    __slots__ = ("_rw", "_pending")

    def __init__(self, rw, pending: bytes) -> None:
        object.__setattr__(self, "_rw", rw)
        object.__setattr__(self, "_pending", bytes(pending))

    def __getattr__(self, name):
        return getattr(self._rw, name)

    def __setattr__(self, name, value):
        setattr(self._rw, name, value)

    @property
    def inner(self):
        return self._rw

    def flush(self) -> None:
        pending = self._pending
        if pending:
            object.__setattr__(self, "_pending", b"")
            self._rw.write(pending)

    def write(self, data, timeout=None):
        # ``timeout`` is passed on only when given: raw connections' write takes none
        pending = self._pending
        if pending:
            object.__setattr__(self, "_pending", b"")
            data = pending + bytes(data)
        if timeout is None:
            return self._rw.write(data)
        return self._rw.write(data, timeout)

    def writev(self, buffers):
        pending = self._pending
        if pending:
            object.__setattr__(self, "_pending", b"")
            buffers = [pending, *buffers]
        writev = getattr(self._rw, "writev", None)
        if writev is not None:
            return writev(buffers)
        return self._rw.write(b"".join(bytes(b) for b in buffers))

    def read(self, n=_READ_SIZE, timeout: Optional[float] = None) -> bytes:
        if self._pending:
            data = _try_read(self._rw, n)
            if data is not None:
                return data
            self.flush()
        return self._rw.read(n, timeout=timeout)

    def readinto(self, buf, timeout: Optional[float] = None) -> int:
        """Like ``read`` into ``buf`` (no copy when the channel receives in place)."""
        if self._pending:
            return _copy_into(buf, self.read(len(memoryview(buf)), timeout=timeout))
        return _readinto(self._rw, buf, timeout)

    def unread(self, data) -> None:
        self._rw.unread(data)

    def close_write(self, *args, **kwargs):
        self.flush()
        return self._rw.close_write(*args, **kwargs)

    def close(self, *args, **kwargs):
        try:
            if not getattr(self._rw, "closed", False):
                self.flush()
        except Exception:
            log.debug("multistream: could not flush the deferred reply on close", exc_info=True)
        return self._rw.close(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<PrefixedConn pending={len(self._pending)} over {self._rw!r}>"


def list_protocols(rw, timeout: Optional[float] = DEFAULT_NEGOTIATION_TIMEOUT) -> list:
    """Blocks the calling greenlet: send ``ls`` and return the peer's protocol list.

    Optional in the spec and unsupported by go (which answers ``na``: NegotiationError).
    The channel stays in negotiation afterwards; follow with ``select_one_of``-style
    proposals only through a fresh channel.
    """
    reader = MessageReader()
    with timeout_scope(timeout, "multistream ls"):
        rw.write(encode_message(PROTOCOL_ID) + encode_message(LS))
        header_seen = False
        while True:
            data = rw.read(_READ_SIZE)
            if not data:
                raise NegotiationError("ls: unexpected EOF during multistream negotiation")
            reader.feed(data)
            if not header_seen:
                token = reader.next_message()
                if token is None:
                    continue
                if token != PROTOCOL_ID:
                    raise NegotiationError(f"received mismatch in protocol id: {token[:64]!r}")
                header_seen = True
            body = reader.next_body()
            if body is None:
                continue
            if body == b"na\n":
                raise NegotiationError("peer does not support ls")
            result = parse_ls_body(body)
            break
        leftover = reader.unconsumed()
        if leftover:
            rw.unread(leftover)
    return result


class LazyConn:
    """A raw channel whose protocol was proposed but not yet confirmed (``select_lazy``).

    Used on raw connections only (security negotiation in the upgrader); a muxed
    :class:`~geventp2p.net.stream.Stream` is negotiated lazily by :func:`select_lazy`
    without a wrapper.

    The header and proposal are sent with the first write (so they share one segment
    or frame with the first application bytes) or before the first read, close or
    half-close.  The first read consumes and checks the two echoes and only then
    returns application bytes; an ``na`` (or anything else) raises NegotiationError
    from that read and every later one.  Everything else is delegated to the wrapped
    channel.

    ``confirm_before_fin=True`` makes ``close_write`` on a channel whose echo was not
    read yet read it first (one round trip, bounded by ``timeout``; NegotiationError on
    ``na``) and only then half-close.  js-libp2p (3.x) loses a FIN (and its handler
    waits forever) when data and FIN arrive in the same burst as a pipelined proposal;
    go-libp2p and geventp2p do not, and go's lazy client never waits.  A reader and a
    half-closing writer share one echo read.
    """

    __slots__ = ("_rw", "_write", "_dialer", "_pending", "_negotiated", "_error", "_timeout", "_confirm", "_lock")

    def __init__(self, rw, protocol: str, timeout: Optional[float] = DEFAULT_NEGOTIATION_TIMEOUT,
                 *, confirm_before_fin: bool = False) -> None:
        object.__setattr__(self, "_rw", rw)
        object.__setattr__(self, "_write", rw.write)
        dialer = Dialer([protocol], lazy=True)
        object.__setattr__(self, "_dialer", dialer)
        object.__setattr__(self, "_pending", dialer.data_to_send())
        object.__setattr__(self, "_negotiated", False)
        object.__setattr__(self, "_error", None)
        object.__setattr__(self, "_timeout", timeout)
        object.__setattr__(self, "_confirm", bool(confirm_before_fin))
        object.__setattr__(self, "_lock", None)

    # -- delegation
    def __getattr__(self, name):
        return getattr(self._rw, name)

    def __setattr__(self, name, value):
        setattr(self._rw, name, value)

    @property
    def inner(self):
        """The wrapped channel."""
        return self._rw

    @property
    def negotiated(self) -> bool:
        """True once the echo was received and checked."""
        return self._negotiated

    @property
    def selected_protocol(self) -> str:
        return self._dialer.protocols[0]

    # -- writing
    def flush(self) -> None:
        """Send the pending header + proposal now (no-op if already sent)."""
        pending = self._pending
        if pending:
            object.__setattr__(self, "_pending", b"")
            self._rw.write(pending)

    def write(self, data, timeout=None):
        # ``timeout`` is passed on only when given: raw connections' write takes none
        pending = self._pending
        if pending:
            object.__setattr__(self, "_pending", b"")
            data = pending + bytes(data)
        if timeout is None:
            return self._write(data)
        return self._write(data, timeout)

    def writev(self, buffers):
        buffers = list(buffers)
        pending = self._pending
        if pending:
            object.__setattr__(self, "_pending", b"")
            buffers.insert(0, pending)
        writev = getattr(self._rw, "writev", None)
        if writev is not None:
            return writev(buffers)
        return self._rw.write(b"".join(buffers))

    # -- reading
    def _negotiate(self, timeout: Optional[float]) -> None:
        # a reader and a half-closing writer may both need the echo: read it once
        lock = self._lock
        if lock is None:
            lock = Semaphore()
            object.__setattr__(self, "_lock", lock)
        with lock:
            if not self._negotiated:
                self._read_echo(timeout)

    def _read_echo(self, timeout: Optional[float]) -> None:
        if self._error is not None:
            raise self._error
        self.flush()
        if timeout is None:
            timeout = self._timeout
        dialer = self._dialer
        try:
            with timeout_scope(timeout, "lazy multistream select"):
                while not dialer.done:
                    data = self._rw.read(_READ_SIZE)
                    if not data:
                        raise NegotiationError(
                            f"lazy select of {self.selected_protocol}: unexpected EOF before the echo"
                        )
                    dialer.receive_data(data)
        except P2PTimeoutError:
            raise
        except Exception as exc:
            object.__setattr__(self, "_error", exc)
            raise
        leftover = dialer.unconsumed()
        if leftover:
            self._rw.unread(leftover)
        object.__setattr__(self, "_negotiated", True)

    def read(self, n=None, timeout: Optional[float] = None) -> bytes:
        if not self._negotiated:
            self._negotiate(timeout)
        if n is None:
            return self._rw.read(timeout=timeout)
        return self._rw.read(n, timeout=timeout)

    def read_exactly(self, n: int, timeout: Optional[float] = None) -> bytes:
        if not self._negotiated:
            self._negotiate(timeout)
        return self._rw.read_exactly(n, timeout=timeout)

    def readinto(self, buf, timeout: Optional[float] = None) -> int:
        """Like ``read`` into ``buf`` (the echoes are checked first)."""
        if not self._negotiated:
            self._negotiate(timeout)
        return _readinto(self._rw, buf, timeout)

    def unread(self, data) -> None:
        self._rw.unread(data)

    # -- closing
    def close_write(self, *args, **kwargs):
        if self._confirm and not self._negotiated:
            self._negotiate(None)
        else:
            self.flush()
        return self._rw.close_write(*args, **kwargs)

    def close(self, *args, **kwargs):
        try:
            if not getattr(self._rw, "closed", False):
                self.flush()
        except Exception:  # the proposal is best effort on close
            log.debug("lazy multistream: could not flush proposal on close", exc_info=True)
        return self._rw.close(*args, **kwargs)

    def __repr__(self) -> str:
        state = "negotiated" if self._negotiated else "pending"
        return f"<LazyConn {self.selected_protocol} {state} over {self._rw!r}>"


class _StreamEcho:
    """The pending echo check of a lazily negotiated stream (``Stream._echo``)."""

    __slots__ = ("dialer", "timeout", "confirm_before_fin", "error", "lock")

    def __init__(self, dialer: Dialer, timeout: Optional[float], confirm_before_fin: bool) -> None:
        self.dialer = dialer
        self.timeout = timeout
        self.confirm_before_fin = confirm_before_fin
        self.error: Optional[BaseException] = None
        self.lock: Optional[Semaphore] = None

    def settle(self, stream: Stream, timeout: Optional[float]) -> None:
        """Blocks the calling greenlet until the echo was read and checked (see EchoCheck)."""
        lock = self.lock
        if lock is None:
            lock = self.lock = Semaphore()  # a reader and a half-closing writer share one read
        with lock:
            if stream._echo is not self:
                return  # settled while we waited
            if self.error is not None:
                raise self.error.with_traceback(None)
            stream._flush_prefix()
            dl = Deadline(self.timeout if timeout is None else timeout)
            dialer = self.dialer
            try:
                while not dialer.done:
                    data = stream._read_raw(dl.left())
                    if not data:
                        raise NegotiationError(
                            f"lazy select of {dialer.protocols[0]}: unexpected EOF before the echo")
                    dialer.receive_data(data)
            except P2PTimeoutError:
                raise
            except Exception as exc:
                self.error = exc
                if not stream.is_reset:  # go resets with "protocol negotiation failed"
                    stream.reset(NegotiationError.error_code)
                raise
            leftover = dialer.unconsumed()
            if leftover:
                stream.unread(leftover)
            stream._echo = None


def select_lazy(rw: Any, protocol: str, timeout: Optional[float] = DEFAULT_NEGOTIATION_TIMEOUT,
                *, confirm_before_fin: bool = False) -> Any:
    """Propose ``protocol`` without waiting for the answer; return the channel to use.

    Does not block.  The first write carries header + proposal + data in one write,
    and the first read checks the echoes (raising NegotiationError on ``na``, and on
    every later read; a stream is then reset with code 0x1001) before returning
    application bytes.  ``timeout`` bounds that echo wait when the read has none.
    ``confirm_before_fin``: ``close_write`` reads the echo before sending the FIN
    (see :class:`LazyConn`).

    A :class:`~geventp2p.net.stream.Stream` is returned as is (the proposal and the
    echo check become its slow-path fields); any other channel comes back wrapped in
    a :class:`LazyConn`.
    """
    if isinstance(rw, Stream):
        dialer = Dialer([protocol], lazy=True)
        rw._prefix = dialer.data_to_send()
        rw._slow_write = True
        rw._echo = _StreamEcho(dialer, timeout, bool(confirm_before_fin))
        return rw
    return LazyConn(rw, protocol, timeout, confirm_before_fin=confirm_before_fin)
