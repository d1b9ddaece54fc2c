"""Blocking multistream-select over anything with ``read``/``write``/``unread``.

Works on a RawConn (security negotiation on a raw socket, muxer negotiation inside a
secured conn) and on a muxed Stream (protocol negotiation per stream).  The protocol
logic is ``geventp2p.sansio.multistream``; this module only moves bytes and keeps
time.  Bytes that follow the final negotiation message in the same read are pushed
back with ``rw.unread()`` so the next layer (or the stream handler) sees them.
Spec: https://github.com/multiformats/multistream-select

* ``select_one_of(rw, protocols, timeout=10.0) -> str`` - initiator, round-trip.
* ``select_lazy(rw, protocol)`` - initiator, pipelined (go ``NewMSSelect``).  It
  returns the channel itself, a muxed :class:`~geventp2p.net.stream.Stream` or a
  :class:`~geventp2p.net.rawconn.RawConn` (security negotiation in the upgrader):
  the proposal becomes the channel's pending prefix and the echo its pending check,
  both in the channel's slow path, no wrapper.
* ``handle(rw, protocols_or_predicate, timeout=10.0) -> str`` - responder.
* ``handle_deferred(raw, protocols_or_predicate, timeout=10.0) -> str`` - responder
  on a raw connection whose initiator may pipeline: the reply is held back as the
  connection's pending prefix and rides with our first write.

Failures raise ``NegotiationError`` (no common protocol, wrong header, unexpected
reply, EOF), ``ProtocolError`` subclasses for malformed messages (``VarintError``,
``MessageTooLargeError``, ``RemoteProtocolError``) and ``P2PTimeoutError``.  The
channel is left as is; the caller closes or resets it (go-libp2p resets streams with
code 0x1001, ``NegotiationError.error_code``).
"""

from __future__ import annotations

import logging
from typing import Any, Optional, Sequence, TypeVar, Union

from gevent.lock import Semaphore

from geventp2p.exceptions import NegotiationError, P2PTimeoutError
from geventp2p.net._deadline import Deadline, timeout_scope
from geventp2p.net.rawconn import RawConn
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
    "handle_deferred",
]

log = logging.getLogger(__name__)

#: go-libp2p / js-libp2p stream negotiation timeout.
DEFAULT_NEGOTIATION_TIMEOUT = 10.0

# Negotiation messages are small; read little so the rest stays in the lower layer.
_READ_SIZE = 4096


_Chan = TypeVar("_Chan", bound=Union[Stream, RawConn])


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


def _try_read(rw: Any, n: int = _READ_SIZE) -> Optional[bytes]:
    """Bytes ``rw`` can return without waiting (None when it would block)."""
    try:
        return rw.read(n, timeout=0)
    except P2PTimeoutError:
        return None


def handle_deferred(raw: RawConn, protocols_or_predicate: Any,
                    timeout: Optional[float] = DEFAULT_NEGOTIATION_TIMEOUT, *, ls_protocols: Any = None) -> str:
    """:func:`handle` on a raw connection whose initiator may pipeline; returns the protocol.

    Blocks the calling greenlet.  Our replies are written only before we would wait
    for the initiator.  If the initiator sent more bytes right after its accepted
    proposal (it pipelines, e.g. a lazy select followed by a Noise handshake
    message), the header and echo are not written but held as ``raw``'s pending
    prefix: they go out in front of our first write (or alone before a read that
    would wait, a half-close or a close).  An initiator that waits for our header or
    echo gets it before we block, so nothing can deadlock.
    """
    listener = Listener(protocols_or_predicate, ls_protocols=ls_protocols)
    with timeout_scope(timeout, "multistream handle"):
        while not listener.done:
            data = _try_read(raw)
            if data is None:
                _flush(raw, listener)  # header / na first: the initiator may be waiting for it
                data = raw.read(_READ_SIZE)
            if not data:
                raise NegotiationError("handle: unexpected EOF during multistream negotiation")
            listener.receive_data(data)
        leftover = listener.unconsumed()
        pending = listener.data_to_send()
        if leftover:
            raw.unread(leftover)
            if pending:
                raw._defer(pending)
        elif pending:
            raw.write(pending)
    proto = listener.protocol
    assert proto is not None  # done
    log.debug("multistream: accepted %s (refused: %s)", proto, listener.rejected)
    return proto


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


class _RawEcho:
    """The pending echo check of a lazily negotiated raw connection (``RawConn._echo``)."""

    __slots__ = ("dialer", "timeout", "error")

    def __init__(self, dialer: Dialer, timeout: Optional[float]) -> None:
        self.dialer = dialer
        self.timeout = timeout
        self.error: Optional[BaseException] = None

    def settle(self, conn: RawConn, timeout: Optional[float]) -> None:
        """Blocks the calling greenlet until the echo was read and checked (see PendingEcho)."""
        if self.error is not None:
            raise self.error.with_traceback(None)
        conn._flush_prefix()
        dialer = self.dialer
        try:
            with timeout_scope(self.timeout if timeout is None else timeout, "lazy multistream select"):
                while not dialer.done:
                    data = conn._read_raw(_READ_SIZE)
                    if not data:
                        raise NegotiationError(
                            f"lazy select of {dialer.protocols[0]}: unexpected EOF before the echo")
                    dialer.receive_data(data)
        except P2PTimeoutError:
            raise
        except Exception as exc:
            self.error = exc
            raise
        conn._settled()
        leftover = dialer.unconsumed()
        if leftover:
            conn.unread(leftover)


def select_lazy(rw: _Chan, protocol: str, timeout: Optional[float] = DEFAULT_NEGOTIATION_TIMEOUT,
                *, confirm_before_fin: bool = False) -> _Chan:
    """Propose ``protocol`` without waiting for the answer; returns ``rw`` itself.

    Does not block.  The first write carries header + proposal + data in one write,
    and the first read checks the echoes (raising NegotiationError on ``na``, and on
    every later read; a stream is then reset with code 0x1001) before returning
    application bytes.  ``timeout`` bounds that echo wait when the read has none.

    ``confirm_before_fin`` (streams only): ``close_write`` reads the echo before
    sending the FIN.  js-libp2p (3.x) loses a FIN (and its handler waits forever)
    when data and FIN arrive in the same burst as a pipelined proposal; go-libp2p
    and geventp2p do not, and go's lazy client never waits.

    The proposal and the echo check become slow-path fields of the channel (a
    :class:`~geventp2p.net.stream.Stream` or a :class:`~geventp2p.net.rawconn.RawConn`
    that has read nothing yet); no wrapper object is made.
    """
    dialer = Dialer([protocol], lazy=True)
    if isinstance(rw, Stream):
        rw._prefix = dialer.data_to_send()
        rw._slow_write = True
        rw._echo = _StreamEcho(dialer, timeout, bool(confirm_before_fin))
        return rw
    if isinstance(rw, RawConn):
        if confirm_before_fin:
            raise ValueError("confirm_before_fin applies to streams only")
        rw._defer(dialer.data_to_send(), _RawEcho(dialer, timeout))
        return rw
    raise TypeError(f"select_lazy needs a Stream or a RawConn, not {type(rw).__name__}")
