"""Prove the interop harness: real js-libp2p and py-libp2p peers talk to each other.

These tests do not touch geventp2p's host (it does not exist yet); they check that the
harness installs, starts, drives and stops both peers, and that each peer's echo / ping /
identify / perf works against the other implementation over Noise + yamux/mplex.
Timings of every run are written to <interop cache>/harness_results.json.
"""

from __future__ import annotations

import json
import sys
import time

import pytest

import interop_harness as ih

pytestmark = pytest.mark.interop

MUXERS = ("yamux", "mplex")
PAIRS = (("js", "py"), ("py", "js"))  # (dialer, listener)
PROTOCOLS = {"/echo/1.0.0", "/ipfs/ping/1.0.0", "/ipfs/id/1.0.0", "/perf/1.0.0"}
AGENT_PREFIX = {"js": "js-libp2p/", "py": "py-libp2p/"}
ECHO_BYTES = 300_000  # > one 256 KiB yamux window: needs window updates
PERF_BYTES = 1_000_000

_RESULTS: list[dict] = []


@pytest.fixture(scope="module", autouse=True)
def _dump_results():
    yield
    if _RESULTS:
        path = ih.cache_dir() / "harness_results.json"
        path.write_text(json.dumps(_RESULTS, indent=1))


_LISTENERS: dict[tuple[str, str], ih.PeerProcess] = {}


@pytest.fixture(scope="module")
def listener():
    """get(kind, muxer) -> a running listening peer, shared by the module's tests."""

    def get(kind: str, muxer: str) -> ih.PeerProcess:
        ih.require_peer(kind)
        peer = _LISTENERS.get((kind, muxer))
        if peer is None or not peer.alive():
            peer = ih.start_peer(kind, muxer=muxer)
            _LISTENERS[(kind, muxer)] = peer
        return peer

    yield get
    for peer in _LISTENERS.values():
        peer.stop()
    _LISTENERS.clear()


def _dial(dialer: str, peer: ih.PeerProcess, muxer: str, scenario: str, **kw) -> dict:
    ih.require_peer(dialer)
    t0 = time.monotonic()
    res = ih.run_dialer(dialer, peer.addr, scenario, muxer=muxer, timeout=60, **kw)
    _RESULTS.append(
        {
            "dialer": dialer,
            "listener": peer.kind,
            "muxer": muxer,
            "scenario": scenario,
            "ok": res["ok"],
            "wall": round(time.monotonic() - t0, 3),
            "peer_elapsed": res.get("elapsed"),
            **{k: res[k] for k in ("seconds", "timeSeconds", "rtts", "failures") if k in res},
        }
    )
    assert res["ok"], f"{dialer}->{peer.kind} {muxer} {scenario}: {res}\n{peer.stderr_tail()}"
    assert peer.alive(), f"{peer.kind} listener died\n{peer.stderr_tail()}"
    return res


@pytest.mark.parametrize("muxer", MUXERS)
@pytest.mark.parametrize("dialer,listen_kind", PAIRS, ids=["js->py", "py->js"])
class TestCrossImpl:
    def test_ping(self, listener, dialer, listen_kind, muxer):
        res = _dial(dialer, listener(listen_kind, muxer), muxer, "ping", count=3)
        assert len(res["rtts"]) == 3
        assert all(isinstance(r, (int, float)) and 0 <= r < 5000 for r in res["rtts"])

    def test_echo(self, listener, dialer, listen_kind, muxer):
        res = _dial(dialer, listener(listen_kind, muxer), muxer, "echo", bytes=ECHO_BYTES)
        assert res["bytes"] == ECHO_BYTES

    def test_identify(self, listener, dialer, listen_kind, muxer):
        peer = listener(listen_kind, muxer)
        res = _dial(dialer, peer, muxer, "identify")
        assert res["peer_id"] == peer.peer_id
        assert PROTOCOLS <= set(res["protocols"]), res["protocols"]
        bare = {a.split("/p2p/")[0] for a in peer.addrs}
        assert bare & {a.split("/p2p/")[0] for a in res["listenAddrs"]}, res["listenAddrs"]
        assert res["agentVersion"].startswith(AGENT_PREFIX[listen_kind]), res["agentVersion"]
        assert res["publicKey"] and res["publicKey"].startswith("0801"), res["publicKey"]  # Ed25519
        assert res["observedAddr"] and res["observedAddr"].startswith("/ip4/127.0.0.1/tcp/")
        assert res["signedPeerRecord"] is not None

    def test_perf(self, listener, dialer, listen_kind, muxer):
        res = _dial(
            dialer,
            listener(listen_kind, muxer),
            muxer,
            "perf",
            extra_args=["--upload", str(PERF_BYTES), "--download", str(PERF_BYTES)],
        )
        assert res["type"] == "final"
        assert res["uploadBytes"] == PERF_BYTES and res["downloadBytes"] == PERF_BYTES
        assert res["timeSeconds"] > 0


@pytest.mark.parametrize(
    "dialer,listen_kind,muxer",
    [
        ("js", "js", "yamux"),
        ("js", "js", "mplex"),
        ("js", "py", "yamux"),
        ("py", "js", "yamux"),
        ("py", "js", "mplex"),
    ],
    ids=lambda v: v,
)
def test_concurrent_echo_streams(listener, dialer, listen_kind, muxer):
    res = _dial(dialer, listener(listen_kind, muxer), muxer, "streams", count=100, bytes=4096)
    assert res["streams"] == 100 and res["failures"] == 0, res


@pytest.mark.parametrize("kind", ih.KINDS)
def test_same_impl_ping_and_lazy_echo(listener, kind):
    peer = listener(kind, "yamux")
    assert _dial(kind, peer, "yamux", "ping", count=2)["rtts"]
    if kind == "js":  # optimistic multistream (protocol + data in one write)
        assert _dial("js", peer, "yamux", "echo", bytes=100, extra_args=["--lazy"])["bytes"] == 100


@pytest.mark.slow
def test_js_mplex_stock_rate_limit_drops_connection():
    """Pins a js-libp2p quirk our mplex must live with: with the stock disconnectThreshold
    (5) a js mplex listener aborts the connection once more than 5 NEW_STREAM frames
    arrive within a second (every new stream counts, not only those over the limit).
    The dialer's streams only fail ~9 s later, hence ``slow``."""
    ih.require_peer("js")
    ih.require_peer("py")
    with ih.start_peer("js", muxer="mplex", extra_args=["--mplex-disconnect-threshold", "5"]) as peer:
        res = ih.run_dialer("py", peer.addr, "streams", muxer="mplex", count=20, bytes=64, timeout=30)
        assert res["ok"] is False and res["failures"] > 0, res
        assert peer.alive()


# ---- harness behaviour (no real peers needed) ----------------------------------------


def test_dialer_against_closed_port_reports_failure(listener):
    peer = listener("js", "yamux")
    bogus = f"/ip4/127.0.0.1/tcp/1/p2p/{peer.peer_id}"
    res = ih.run_dialer("js", bogus, "ping", timeout=15)
    assert res["ok"] is False and res["returncode"] == 1 and res["error"]


def test_peer_start_error_carries_stderr():
    ih.require_peer("py")
    with pytest.raises(ih.PeerStartError) as info:
        ih.start_peer("py", muxer="bogus", timeout=30)
    assert "invalid choice" in str(info.value)


def test_stop_escalates_to_sigterm():
    code = "import sys, time, signal; print('{\"peer_id\": \"x\", \"addrs\": []}', flush=True); time.sleep(60)"
    peer = ih.PeerProcess("fake", [sys.executable, "-c", code])
    try:
        assert peer.wait_ready(10)["peer_id"] == "x"
        t0 = time.monotonic()
        rc = peer.stop(grace=0.5)  # ignores stdin EOF, so SIGTERM has to end it
        assert rc == -15 and time.monotonic() - t0 < 5
    finally:
        peer.stop()
    assert peer.stop() == -15  # idempotent


def test_require_peer_skips_or_fails(monkeypatch):
    monkeypatch.setenv(ih.SKIP_ENV, "1")
    monkeypatch.setattr(ih, "_ensured", {})
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        ih.require_peer("js")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        ih.require_peer("py")
