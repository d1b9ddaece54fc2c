"""The ``geventp2p`` command line against real js-libp2p / py-libp2p peers.

* ``geventp2p serve`` is started like the harness's own peers (its first stdout line is
  the same ``{"peer_id", "addrs"}`` JSON), then the js/py dialers ping, identify, echo and
  perf against it: the README's "by hand" recipe, automated.
* ``geventp2p ping`` / ``perf --json`` / ``stream`` dial the js/py listeners.

One ``serve`` process per muxer and one listening peer per (kind, muxer), module scoped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import interop_harness as ih

pytestmark = pytest.mark.interop

KINDS = ("js", "py")
MUXERS = ("yamux", "mplex")
CLI = [sys.executable, "-m", "geventp2p.cli"]


def _cli(*args: str, stdin: bytes = b"", timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    return subprocess.run([*CLI, *args], input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout, env=env)


_SERVES: dict[str, ih.PeerProcess] = {}
_PEERS: dict[tuple[str, str], ih.PeerProcess] = {}


@pytest.fixture(scope="module")
def serve():
    """get(muxer) -> a running ``geventp2p serve --muxer <muxer>`` (PeerProcess)."""

    def get(muxer: str) -> ih.PeerProcess:
        p = _SERVES.get(muxer)
        if p is None or not p.alive():
            p = ih.PeerProcess("geventp2p", [*CLI, "serve", "--muxer", muxer])
            _SERVES[muxer] = p
            p.wait_ready(30)
        return p

    yield get
    codes = {m: p.stop(grace=1.0) for m, p in _SERVES.items()}
    _SERVES.clear()
    # serve ends on stdin EOF or on SIGTERM; either way cleanly
    assert all(c in (0, -15) for c in codes.values()), codes


@pytest.fixture(scope="module")
def listener():
    def get(kind: str, muxer: str) -> ih.PeerProcess:
        ih.require_peer(kind)
        p = _PEERS.get((kind, muxer))
        if p is None or not p.alive():
            p = _PEERS[(kind, muxer)] = ih.start_peer(kind, muxer=muxer)
        return p

    yield get
    for p in _PEERS.values():
        p.stop()
    _PEERS.clear()


# ------------------------------------------------------------------------------ they dial `geventp2p serve`


@pytest.mark.parametrize("muxer", MUXERS)
@pytest.mark.parametrize("kind", KINDS)
def test_peer_dials_geventp2p_serve(serve, kind, muxer):
    ih.require_peer(kind)
    srv = serve(muxer)
    assert srv.addr.startswith("/ip4/127.0.0.1/tcp/") and srv.addr.endswith(f"/p2p/{srv.peer_id}")

    def dial(scenario: str, **kw) -> dict:
        res = ih.run_dialer(kind, srv.addr, scenario, muxer=muxer, timeout=30, **kw)
        assert res["ok"], f"{kind} {scenario} against geventp2p serve: {res}\n{srv.stderr_tail()}"
        return res

    assert len(dial("ping", count=3)["rtts"]) == 3
    ident = dial("identify")
    assert ident["peer_id"] == srv.peer_id
    assert {"/ipfs/ping/1.0.0", "/echo/1.0.0", "/perf/1.0.0", "/ipfs/id/1.0.0"} <= set(ident["protocols"])
    assert ident["agentVersion"].startswith("geventp2p/")
    assert dial("echo", bytes=200_000)["bytes"] == 200_000
    perf = dial("perf", extra_args=["--upload", "1000000", "--download", "1000000"])
    assert perf["uploadBytes"] == perf["downloadBytes"] == 1_000_000
    assert srv.alive()


# ------------------------------------------------------------------------------ the CLI dials them


@pytest.mark.parametrize("muxer", MUXERS)
@pytest.mark.parametrize("kind", KINDS)
def test_geventp2p_cli_dials_peer(listener, kind, muxer):
    peer = listener(kind, muxer)

    r = _cli("ping", peer.addr, "--muxer", muxer, "--count", "3", "--interval", "0.05")
    assert r.returncode == 0, r.stderr.decode()
    lines = r.stdout.decode().split()
    rtts = [float(v) for v, unit in zip(lines[::2], lines[1::2]) if unit == "ms"]
    assert len(rtts) == 3 and all(v > 0 for v in rtts), r.stdout

    r = _cli("perf", peer.addr, "--muxer", muxer, "--upload", "1MiB", "--download", "1MiB", "--json")
    assert r.returncode == 0, r.stderr.decode()
    records = [json.loads(ln) for ln in r.stdout.decode().splitlines() if ln.strip()]
    final = records[-1]
    assert final["type"] == "final"
    assert final["uploadBytes"] == final["downloadBytes"] == 1 << 20

    data = os.urandom(100_000)
    r = _cli("stream", peer.addr, "--muxer", muxer, "--protocol", "/echo/1.0.0", stdin=data)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == data
    assert peer.alive(), peer.stderr_tail()
