"""Ceilings for the comparison: what loopback and the cipher allow at best.

* ``raw_socket``: bytes/s of plain gevent sockets on loopback, sender and receiver in
  separate processes (like the benchmark's client and server), the better of 64 KiB and
  1 MiB ``sendall``s (geventp2p's writer greenlets batch up to 1 MiB per ``writev``).
* ``chacha``: ChaCha20-Poly1305 (``cryptography``) encrypt + decrypt of 65519-byte
  messages (the largest Noise transport plaintext), one thread; ``chacha_backend`` is
  the same through geventp2p's crypto backend wrapper.

``python -m bench.ceilings [--quick]`` prints one JSON object (MiB/s figures).
Run the sink alone with ``python bench/ceilings.py sink`` (prints its port, reads one
connection to EOF, answers with the u64be byte count).
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import time

MiB = 1024 * 1024
NOISE_MAX_PLAINTEXT = 65535 - 16


def _sink() -> int:
    from gevent import socket

    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    print(srv.getsockname()[1], flush=True)
    srv.settimeout(60)
    conn, _ = srv.accept()
    conn.settimeout(120)
    buf = bytearray(256 * 1024)
    total = 0
    while True:
        n = conn.recv_into(buf)
        if not n:
            break
        total += n
    conn.sendall(struct.pack(">Q", total))
    conn.close()
    srv.close()
    return 0


def raw_socket_mib_s(total: int = 256 * MiB, write_size: int = 64 * 1024, env: dict | None = None,
                     pin: tuple | None = None) -> float:
    """MiB/s of ``total`` bytes sent over a gevent socket to a sink in another process.

    ``pin=(sender_cpus, sink_cpus)`` runs the sender (this thread, for the measurement)
    and the sink on those CPU sets, as ``bench.compare`` does with clients and servers.
    """
    from gevent import socket

    before = os.sched_getaffinity(0) if pin else None
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "sink"],
        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env,
        preexec_fn=(lambda: os.sched_setaffinity(0, pin[1])) if pin else None,
    )
    if pin:
        os.sched_setaffinity(0, pin[0])
    try:
        port = int(proc.stdout.readline())
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.settimeout(120)
        block = bytes(write_size)
        full, rest = divmod(total, write_size)
        t0 = time.perf_counter()
        for _ in range(full):
            s.sendall(block)
        if rest:
            s.sendall(block[:rest])
        s.shutdown(socket.SHUT_WR)
        got = b""
        while len(got) < 8:
            chunk = s.recv(8 - len(got))
            if not chunk:
                break
            got += chunk
        dt = time.perf_counter() - t0
        s.close()
        if len(got) != 8 or struct.unpack(">Q", got)[0] != total:
            raise RuntimeError(f"sink counted {got!r}, expected {total}")
        return total / MiB / dt
    finally:
        if before is not None:
            os.sched_setaffinity(0, before)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def chacha_mib_s(messages: int = 2000, size: int = NOISE_MAX_PLAINTEXT, via_backend: bool = False) -> float:
    """MiB/s of plaintext through encrypt + decrypt (one core), ``size``-byte messages."""
    key = os.urandom(32)
    if via_backend:
        os.environ.setdefault("GEVENTP2P_CRYPTO", "cryptography")
        from geventp2p.crypto.backend import get_backend

        aead = get_backend().aead(key)
    else:
        from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

        aead = ChaCha20Poly1305(key)
    enc, dec = aead.encrypt, aead.decrypt
    pt = os.urandom(size)
    t0 = time.perf_counter()
    for i in range(messages):
        nonce = b"\0\0\0\0" + i.to_bytes(8, "little")
        ct = enc(nonce, pt, b"")
        if dec(nonce, ct, b"") is None:  # pragma: no cover - decrypt raises on failure
            raise RuntimeError("decrypt failed")
    dt = time.perf_counter() - t0
    return messages * size / MiB / dt


def measure(quick: bool = False, repeats: int = 3, pin: tuple | None = None) -> dict:
    """Best of ``repeats`` for each ceiling (a ceiling is a maximum, noise only lowers it).
    ``pin``: see :func:`raw_socket_mib_s`."""
    total = 32 * MiB if quick else 512 * MiB
    msgs = 200 if quick else 3000
    reps = 1 if quick else repeats
    raw64 = [raw_socket_mib_s(total, 64 * 1024, pin=pin) for _ in range(reps)]
    raw1m = [raw_socket_mib_s(total, MiB, pin=pin) for _ in range(reps)]
    cha = [chacha_mib_s(msgs) for _ in range(reps)]
    chb = [chacha_mib_s(msgs, via_backend=True) for _ in range(reps)]
    return {
        # the ceiling: the better write size (geventp2p's writers batch up to 1 MiB per writev)
        "raw_socket_mib_s": max(raw64 + raw1m),
        "raw_socket_64k_mib_s": max(raw64),
        "raw_socket_1m_mib_s": max(raw1m),
        "raw_socket_runs": {"65536": raw64, "1048576": raw1m},
        "raw_socket_bytes": total,
        "chacha_mib_s": max(cha),
        "chacha_runs": cha,
        "chacha_backend_mib_s": max(chb),
        "chacha_backend_runs": chb,
        "chacha_message_size": NOISE_MAX_PLAINTEXT,
        "pinned": [sorted(pin[0]), sorted(pin[1])] if pin else None,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bench.ceilings", description="loopback and cipher ceilings")
    p.add_argument("mode", nargs="?", choices=("measure", "sink"), default="measure")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.mode == "sink":
        return _sink()
    print(json.dumps(measure(quick=args.quick), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
