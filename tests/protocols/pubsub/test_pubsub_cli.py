"""`geventp2p pubsub`: two processes exchange messages; EOF and signals end them with exit 0."""

from __future__ import annotations

import base64
import json
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest

CLI = [sys.executable, "-m", "geventp2p.cli", "pubsub"]
WAIT = 30.0


class Proc:
    """A `geventp2p pubsub` process; stdout lines are parsed as JSON by a reader thread."""

    def __init__(self, *args: str) -> None:
        self.p = subprocess.Popen([*CLI, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        self.q: queue.Queue = queue.Queue()
        self.seen: list[dict] = []
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()
        self.info = self.next(lambda o: "peer_id" in o, "the first line")
        assert set(self.info) == {"peer_id", "addrs"}

    def _read(self) -> None:
        for raw in iter(self.p.stdout.readline, b""):
            self.q.put(json.loads(raw))
        self.q.put(None)

    def next(self, pred, what: str, timeout: float = WAIT) -> dict:
        for o in self.seen:
            if pred(o):
                self.seen.remove(o)
                return o
        deadline = time.monotonic() + timeout
        while True:
            try:
                o = self.q.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {what} within {timeout} s; stderr: {self.stderr_now()}") from None
            if o is None:
                raise AssertionError(f"process ended before {what}: rc={self.p.wait()} {self.p.stderr.read()!r}")
            if pred(o):
                return o
            self.seen.append(o)

    def stderr_now(self) -> str:
        return "(still running)" if self.p.poll() is None else self.p.stderr.read().decode(errors="replace")

    def send(self, line: bytes) -> None:
        self.p.stdin.write(line)
        self.p.stdin.flush()

    def finish(self, sig: int | None = None) -> int:
        if sig is None:
            self.p.stdin.close()
        else:
            self.p.send_signal(sig)
        try:
            rc = self.p.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            raise AssertionError("pubsub did not exit") from None
        self._t.join(5)
        return rc

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        for f in (self.p.stdin, self.p.stdout, self.p.stderr):
            try:
                f.close()
            except OSError:
                pass


@pytest.fixture
def procs():
    made: list[Proc] = []

    def start(*args: str) -> Proc:
        p = Proc(*args)
        made.append(p)
        return p

    yield start
    for p in made:
        p.kill()


@pytest.mark.parametrize("router", ["gossipsub", "floodsub"])
def test_two_processes_exchange_messages(procs, router):
    a = procs("--topic", "chat", "--topic", "other", "--router", router)
    b = procs("--topic", "chat", "--router", router, "--connect", a.info["addrs"][0])
    joined = a.next(lambda o: o.get("type") == "peer", "a peer line")
    assert joined == {"type": "peer", "topic": "chat", "peer": b.info["peer_id"], "event": "joined"}
    b.next(lambda o: o.get("type") == "peer" and o["event"] == "joined", "b's peer line")
    b.send(b"hello from b\n")
    got = a.next(lambda o: o.get("type") == "message", "a message at a")
    assert got["topic"] == "chat" and got["data"] == "hello from b" and got["from"] == b.info["peer_id"]
    assert len(bytes.fromhex(got["seqno"])) == 8 and got["id"]
    own = b.next(lambda o: o.get("type") == "message", "b's own message")
    assert own["data"] == "hello from b" and own["id"] == got["id"]
    a.send(b"\xff\xfe binary\n")
    got = b.next(lambda o: o.get("type") == "message", "a binary message at b")
    assert got["encoding"] == "base64" and base64.b64decode(got["data"]) == b"\xff\xfe binary"
    a.send(json.dumps({"publish": "on other", "topic": "other"}).encode() + b"\n")
    got = a.next(lambda o: o.get("type") == "message" and o["topic"] == "other", "a's message on other")
    assert got["data"] == "on other"
    for i in range(50):
        b.send(b"line %d\n" % i)
    for i in range(50):
        m = a.next(lambda o: o.get("type") == "message" and o["data"].startswith("line "), f"line {i}")
        assert m["data"] == f"line {i}"
    assert b.finish() == 0  # EOF: clean exit
    left = a.next(lambda o: o.get("type") == "peer" and o["event"] == "left", "b leaving")
    assert left["peer"] == b.info["peer_id"]
    assert a.finish(signal.SIGTERM) == 0


def test_sigint_exits_zero(procs):
    a = procs("--topic", "t", "--router", "floodsub")
    assert a.finish(signal.SIGINT) == 0


def test_no_sign(procs):
    a = procs("--topic", "t", "--no-sign", "--router", "floodsub")
    b = procs("--topic", "t", "--no-sign", "--router", "floodsub", "--connect", a.info["addrs"][0])
    a.next(lambda o: o.get("type") == "peer", "a peer line")
    b.next(lambda o: o.get("type") == "peer", "b peer line")
    b.send(b"unsigned\n")
    got = a.next(lambda o: o.get("type") == "message", "a message")
    assert got["data"] == "unsigned" and got["from"] is None and got["seqno"] == ""
    assert b.finish() == 0
    assert a.finish() == 0
