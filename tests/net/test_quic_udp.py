"""The QUIC transport's UDP endpoint: GSO batching on send, GRO splitting on receive,
and the fallback to one datagram per call when the kernel refuses GSO."""

from __future__ import annotations

import errno
import socket
import struct
import sys
from typing import Any

import gevent
import gevent.socket as gsocket
import pytest
from gevent.event import Event

pytest.importorskip("aioquic")

from geventp2p.net import quic as quic_mod  # noqa: E402
from geventp2p.net.quic import _Endpoint  # noqa: E402

LINUX = sys.platform.startswith("linux")

#: Full-size runs (more than one GSO send's 48 segments), shorter datagrams ending a run,
#: a larger one starting a new run, and single datagrams between runs.
SIZES = [1350] * 50 + [700] + [1350] * 3 + [1200, 1400, 1400, 64] + [900] + [1350] * 2
DATAGRAMS = [bytes([i % 251]) * n for i, n in enumerate(SIZES)]


class _Collector:
    """Stands in for a QuicRawConn in the endpoint's table: records what it is fed."""

    def __init__(self, want: int) -> None:
        self.got: list[bytes] = []
        self.want = want
        self.done = Event()

    def _feed(self, data: bytes) -> None:
        self.got.append(bytes(data))
        if len(self.got) >= self.want:
            self.done.set()

    def _feed_eof(self) -> None:
        self.done.set()


class _SpySocket:
    """Forwards to a gevent UDP socket, counting sends; ``refuse`` makes sendmsg fail."""

    def __init__(self, sock: Any, refuse: int | None = None) -> None:
        self._sock = sock
        self.family = sock.family
        self.refuse = refuse
        self.sendmsg_calls: list[int] = []  # segments per call
        self.sendto_calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def sendto(self, data: Any, addr: Any) -> int:
        self.sendto_calls += 1
        return self._sock.sendto(data, addr)

    def sendmsg(self, buffers: list[Any], ancdata: Any = (), flags: int = 0, address: Any = None) -> int:
        self.sendmsg_calls.append(len(buffers))
        if self.refuse is not None:
            raise OSError(self.refuse, "refused")
        return self._sock.sendmsg(buffers, ancdata, flags, address)


def _udp() -> Any:
    s = gsocket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind(("127.0.0.1", 0))
    return s


@pytest.fixture
def pair():
    """(sender endpoint with a spy socket, receiver endpoint, collector registered for the sender)."""
    made: list[_Endpoint] = []

    def make(refuse: int | None = None, gro: bool | None = None) -> tuple[_Endpoint, _Endpoint, _Collector]:
        rx = _Endpoint(_udp())
        if gro is False:  # a receiver that never asked for GRO
            rx.sock.setsockopt(quic_mod._SOL_UDP, quic_mod._UDP_GRO, 0)
            rx.gro = False  # read by the receive loop when it first runs
        tx_sock = _udp()
        tx = _Endpoint(tx_sock)
        tx.sock = _SpySocket(tx_sock, refuse)
        made.extend((rx, tx))
        col = _Collector(len(DATAGRAMS))
        rx.conns[tx_sock.getsockname()] = col  # type: ignore[assignment]
        return tx, rx, col

    yield make
    for ep in made:
        ep.close()


def _send_and_collect(tx: _Endpoint, rx: _Endpoint, col: _Collector) -> list[bytes]:
    tx.send_many(DATAGRAMS, rx.sock.getsockname())
    assert col.done.wait(30), f"{len(col.got)}/{len(DATAGRAMS)} datagrams arrived"
    return col.got


@pytest.mark.skipif(not LINUX, reason="UDP GSO/GRO are Linux socket options")
def test_gso_sends_runs_in_one_call_and_the_receiver_gets_every_datagram(pair):
    tx, rx, col = pair()
    assert tx.gso and rx.gro
    got = _send_and_collect(tx, rx, col)
    assert [len(d) for d in got] == SIZES and got == DATAGRAMS
    spy = tx.sock
    # runs: 48 full; 2 full + 700; 3 full + 1200; 1400 + 1400 + 64; 900 (alone); 2 full
    assert spy.sendmsg_calls == [48, 3, 4, 3, 2]
    assert spy.sendto_calls == 1
    assert tx.gso  # still on


@pytest.mark.skipif(not LINUX, reason="UDP GSO/GRO are Linux socket options")
def test_gso_sender_without_gro_receiver(pair):
    """The kernel cuts GSO sends into datagrams for a receiver that did not ask for GRO."""
    tx, rx, col = pair(gro=False)
    assert not rx.gro
    assert _send_and_collect(tx, rx, col) == DATAGRAMS
    assert tx.sock.sendmsg_calls


@pytest.mark.parametrize("code", [errno.EINVAL, errno.ENOPROTOOPT, errno.EIO])
def test_refused_gso_falls_back_to_one_datagram_per_call(pair, code):
    tx, rx, col = pair(refuse=code)
    tx.gso = True  # as on Linux, wherever this runs
    got = _send_and_collect(tx, rx, col)
    assert got == DATAGRAMS
    spy = tx.sock
    assert spy.sendmsg_calls == [48]  # tried once, then never again
    assert spy.sendto_calls == len(DATAGRAMS)
    assert not tx.gso
    col.got.clear()
    col.done.clear()
    assert _send_and_collect(tx, rx, col) == DATAGRAMS
    assert spy.sendmsg_calls == [48] and spy.sendto_calls == 2 * len(DATAGRAMS)


def test_other_send_errors_propagate(pair):
    tx, rx, _col = pair(refuse=errno.EPERM)
    tx.gso = True
    with pytest.raises(OSError) as info:
        tx.send_many(DATAGRAMS, rx.sock.getsockname())
    assert info.value.errno == errno.EPERM
    assert tx.gso  # not a GSO refusal: GSO stays on


def test_gro_buffer_is_cut_into_its_datagrams(pair):
    _tx, rx, _col = pair()
    col = _Collector(3)
    src = ("127.0.0.9", 4242)
    rx.conns[src] = col  # type: ignore[assignment]
    seg = struct.pack("=i", 100)
    rx._dispatch_segments(b"a" * 100 + b"b" * 100 + b"c" * 50, [(quic_mod._SOL_UDP, quic_mod._UDP_GRO, seg)], src)
    assert col.got == [b"a" * 100, b"b" * 100, b"c" * 50]
    col.got.clear()
    rx._dispatch_segments(b"d" * 80, [(quic_mod._SOL_UDP, quic_mod._UDP_GRO, seg)], src)  # one datagram
    assert col.got == [b"d" * 80]


def test_gro_buffer_from_a_new_address_starts_one_connection():
    """The first segment from an unknown source goes to ``on_new``, the rest to the
    connection it registered."""
    news: list[bytes] = []
    col = _Collector(2)
    sock = _udp()

    def on_new(addr: Any, data: bytes) -> None:
        news.append(data)
        ep.conns[addr] = col  # type: ignore[assignment]

    ep = _Endpoint(sock, on_new)
    try:
        seg = struct.pack("=i", 10)
        ep._dispatch_segments(b"x" * 25, [(quic_mod._SOL_UDP, quic_mod._UDP_GRO, seg)], ("127.0.0.9", 1))
        assert news == [b"x" * 10] and col.got == [b"x" * 10, b"x" * 5]
    finally:
        ep.close()
        gevent.sleep(0)


@pytest.mark.parametrize("sockaddr, family, text", [
    (("127.0.0.1", 4001), socket.AF_INET, "/ip4/127.0.0.1/udp/4001/quic-v1"),
    (("::1", 65535, 0, 0), socket.AF_INET6, "/ip6/::1/udp/65535/quic-v1"),
    (("fe80::1%eth0", 9, 0, 2), socket.AF_INET6, "/ip6/fe80::1/udp/9/quic-v1"),  # zone dropped
])
def test_socket_address_multiaddr_is_quic_v1(sockaddr, family, text):
    # built in binary form: the same address as parsing the text (not draft-29 /quic)
    from geventp2p.core import addr as maddr

    ma = quic_mod._multiaddr(sockaddr, family)
    assert ma == maddr.parse(text)
    assert str(ma) == text


def test_aioquic_epochs_memo_gives_the_same_sets():
    import aioquic.quic.connection as conn_mod
    from aioquic import tls

    import geventp2p.sansio._aioquic  # noqa: F401  (installs the memo)

    assert hasattr(conn_mod.EPOCHS, "cache_info")
    assert conn_mod.EPOCHS("IH01") == frozenset(
        {tls.Epoch.INITIAL, tls.Epoch.HANDSHAKE, tls.Epoch.ZERO_RTT, tls.Epoch.ONE_RTT})
    assert conn_mod.EPOCHS("1") is conn_mod.EPOCHS("1")  # computed once


class _CappedSocket:
    """A socket whose kernel caps buffers at ``cap`` and knows no privileged override
    unless ``force_ok``; on Linux it reports twice the size set, as the kernel does."""

    def __init__(self, cap: int, force_ok: bool = False) -> None:
        self.cap = cap
        self.force_ok = force_ok
        self.sizes: dict[int, int] = {}

    def setsockopt(self, level: int, opt: int, value: int) -> None:
        forced = {v: k for k, v in quic_mod._FORCE_OPTS.items() if v is not None}
        if opt in forced:
            if not self.force_ok:
                raise PermissionError(errno.EPERM, "not permitted")
            self.sizes[forced[opt]] = value
            return
        self.sizes[opt] = min(value, self.cap)

    def getsockopt(self, level: int, opt: int) -> int:
        return self.sizes.get(opt, 0) * (2 if quic_mod._LINUX else 1)


def test_capped_socket_buffers_warn_once(monkeypatch, caplog):
    monkeypatch.setattr(quic_mod, "_warned_small_buffers", False)
    small = 208 * 1024
    with caplog.at_level("WARNING", logger=quic_mod.__name__):
        got = quic_mod._size_buffers(_CappedSocket(small))
        quic_mod._size_buffers(_CappedSocket(small))
    assert got == {"receive": small, "send": small}
    warnings = [r for r in caplog.records if "rmem_max" in r.getMessage()]
    assert len(warnings) == 1, caplog.text
    assert "receive 208 KiB" in warnings[0].getMessage()


def test_privileged_override_lifts_the_cap_without_a_warning(monkeypatch, caplog):
    if not any(quic_mod._FORCE_OPTS.values()):
        pytest.skip("no SO_RCVBUFFORCE on this platform")
    monkeypatch.setattr(quic_mod, "_warned_small_buffers", False)
    with caplog.at_level("WARNING", logger=quic_mod.__name__):
        got = quic_mod._size_buffers(_CappedSocket(208 * 1024, force_ok=True))
    assert got == {"receive": quic_mod._SOCKET_BUFFER, "send": quic_mod._SOCKET_BUFFER}
    assert "rmem_max" not in caplog.text


def test_a_real_socket_gets_its_buffers_or_says_why(monkeypatch, caplog):
    monkeypatch.setattr(quic_mod, "_warned_small_buffers", False)
    sock = gsocket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        with caplog.at_level("WARNING", logger=quic_mod.__name__):
            got = quic_mod._size_buffers(sock)
    finally:
        sock.close()
    full = all(v >= quic_mod._SOCKET_BUFFER for v in got.values())
    assert full == ("rmem_max" not in caplog.text), (got, caplog.text)


def test_a_cap_between_half_and_all_of_the_request_still_warns(monkeypatch, caplog):
    # Linux reports 2x what it set: a 3 MiB cap reads back as 6 MiB, more than the
    # 4 MiB asked for, yet only 3 MiB is usable
    monkeypatch.setattr(quic_mod, "_warned_small_buffers", False)
    with caplog.at_level("WARNING", logger=quic_mod.__name__):
        got = quic_mod._size_buffers(_CappedSocket(3 << 20))
    assert got == {"receive": 3 << 20, "send": 3 << 20}
    assert "receive 3072 KiB" in caplog.text
