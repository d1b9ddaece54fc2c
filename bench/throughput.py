"""Single-stream throughput on loopback TCP, client and server in separate processes.

    python -m bench.throughput --security noise --muxer yamux --mib 256 --write-size 65536 --repeat 3
    python -m bench.throughput --security plaintext --muxer yamux --direction up
    python -m bench.throughput --security raw            # plain gevent sockets, the baseline
    python -m bench.throughput --write-size 1024 --mib 32 # the "1 KiB-frame stream rate"

The server is a child process started with the same environment (so
``GEVENTP2P_PURE_PYTHON`` / ``GEVENTP2P_REQUIRE_SPEEDUPS`` control both ends).  One
TCP connection is secured (Noise or plaintext, no multistream) and muxed (yamux or
mplex) once; each repetition then opens one stream:

* ``up``: the client writes ``--mib`` MiB in ``--write-size`` writes and closes its
  write side; the server reads to EOF and answers with the u64 byte count.  Timed
  from the first write to the answer.
* ``down``: the client sends a request; the server writes ``--mib`` MiB in
  ``--write-size`` writes and closes; the client reads to EOF.  Timed from the
  request to EOF.

``--security raw`` measures the same over a bare gevent socket (``sendall`` of
``--write-size`` buffers, ``recv_into`` of 256 KiB), one fresh connection per run.

Prints one JSON object: the build, per-direction runs and medians in MiB/s and
writes/s.  ``--profile FILE`` runs the client under cProfile (``--server-profile
FILE`` the server) and dumps pstats there.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import time

MiB = 1024 * 1024
_U64 = struct.Struct(">Q")
_STATS = struct.Struct(">dQ")  # CPU seconds, minor page faults


def _cpu_stats():
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime, ru.ru_minflt
_REQ = struct.Struct(">cQI")  # op (U/D), bytes, write size


# --------------------------------------------------------------------------- helpers


def _stack(args):
    from geventp2p.crypto.keys import generate_key

    key = generate_key()
    if args.security == "noise":
        from geventp2p.net.noise import NoiseTransport

        sec = NoiseTransport(key, muxers=())
    elif args.security == "tls":
        from geventp2p.net.tls import TlsTransport

        sec = TlsTransport(key, muxers=())
    else:
        from geventp2p.net.plaintext import PlaintextTransport

        sec = PlaintextTransport(key)
    if args.muxer == "yamux":
        from geventp2p.net.yamux import YamuxMuxer

        mux = YamuxMuxer()
    else:
        from geventp2p.net.mplex import MplexMuxer

        mux = MplexMuxer()
    return sec, mux


def _socket_conn(sock, initiator):
    from geventp2p.net.rawconn import SocketConn

    conn = SocketConn(sock, is_initiator=initiator)
    conn.set_nodelay(True)
    return conn


def _read_exactly_sock(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("early EOF")
        buf += chunk
    return buf


def _payload(write_size):
    return os.urandom(write_size)


def _profiled(path, fn, *a):
    if not path:
        return fn(*a)
    import cProfile

    prof = cProfile.Profile()
    try:
        return prof.runcall(fn, *a)
    finally:
        prof.dump_stats(path)


# --------------------------------------------------------------------------- server


def _serve_stream(stream):
    req = stream.read_exactly(_REQ.size, timeout=60)
    op, total, wsize = _REQ.unpack(req)
    if op == b"S":
        stream.write(_STATS.pack(*_cpu_stats()), timeout=60)
        stream.close()
        return
    if op == b"U":
        got = 0
        read = stream.read
        while True:
            chunk = read(262144, 120)
            if not chunk:
                break
            got += len(chunk)
        stream.write(_U64.pack(got), timeout=60)
        stream.close()
    else:
        data = _payload(wsize)
        mv = memoryview(data)
        left = total
        write = stream.write
        while left >= wsize:
            write(data, 120)
            left -= wsize
        if left:
            write(mv[:left], 120)
        stream.close_write()
        stream.read(-1, 60)  # the client's close
        stream.close()


def _server_main(args) -> int:
    import gevent
    from gevent import socket

    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    print(srv.getsockname()[1], flush=True)
    srv.settimeout(60)
    if args.security == "raw":
        return _raw_server(srv)
    sec, mux = _stack(args)
    sock, _ = srv.accept()
    secured = sec.secure_inbound(_socket_conn(sock, False), timeout=30)
    muxed = mux.create(secured, False)

    def run():
        from geventp2p.exceptions import ConnectionClosedError

        workers = []
        while True:
            try:
                stream = muxed.accept_stream(timeout=600)
            except ConnectionClosedError:
                break
            workers.append(gevent.spawn(_serve_stream, stream))
        gevent.joinall(workers, timeout=10)

    _profiled(args.server_profile, run)
    muxed.close()
    srv.close()
    return 0


def _raw_server(srv) -> int:
    from gevent import socket

    buf = bytearray(256 * 1024)
    while True:
        try:
            conn, _ = srv.accept()
        except socket.timeout:
            return 0
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        req = _read_exactly_sock(conn, _REQ.size)
        op, total, wsize = _REQ.unpack(req)
        if op == b"Q":
            conn.close()
            srv.close()
            return 0
        if op == b"S":
            conn.sendall(_STATS.pack(*_cpu_stats()))
            conn.close()
            continue
        if op == b"U":
            got = 0
            while True:
                n = conn.recv_into(buf)
                if not n:
                    break
                got += n
            conn.sendall(_U64.pack(got))
        else:
            data = _payload(wsize)
            left = total
            while left >= wsize:
                conn.sendall(data)
                left -= wsize
            if left:
                conn.sendall(data[:left])
            conn.shutdown(socket.SHUT_WR)
            conn.recv(1)
        conn.close()


# --------------------------------------------------------------------------- client


def _client_up(muxed, total, wsize):
    stream = muxed.open_stream(timeout=30)
    data = _payload(wsize)
    stream.write(_REQ.pack(b"U", total, wsize), timeout=30)
    left = total
    write = stream.write
    t0 = time.perf_counter()
    while left >= wsize:
        write(data, 120)
        left -= wsize
    if left:
        write(data[:left], 120)
    stream.close_write()
    got = _U64.unpack(stream.read_exactly(8, timeout=120))[0]
    dt = time.perf_counter() - t0
    stream.close()
    if got != total:
        raise RuntimeError(f"server received {got} bytes, expected {total}")
    return dt


def _client_down(muxed, total, wsize):
    stream = muxed.open_stream(timeout=30)
    t0 = time.perf_counter()
    stream.write(_REQ.pack(b"D", total, wsize), timeout=30)
    got = 0
    read = stream.read
    while True:
        chunk = read(262144, 120)
        if not chunk:
            break
        got += len(chunk)
    dt = time.perf_counter() - t0
    stream.close()
    if got != total:
        raise RuntimeError(f"received {got} bytes, expected {total}")
    return dt


def _raw_client(port, op, total, wsize):
    from gevent import socket

    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(120)
    try:
        if op == "up":
            data = _payload(wsize)
            sock.sendall(_REQ.pack(b"U", total, wsize))
            t0 = time.perf_counter()
            left = total
            while left >= wsize:
                sock.sendall(data)
                left -= wsize
            if left:
                sock.sendall(data[:left])
            sock.shutdown(socket.SHUT_WR)
            got = _U64.unpack(_read_exactly_sock(sock, 8))[0]
            dt = time.perf_counter() - t0
        else:
            buf = bytearray(256 * 1024)
            t0 = time.perf_counter()
            sock.sendall(_REQ.pack(b"D", total, wsize))
            got = 0
            while True:
                n = sock.recv_into(buf)
                if not n:
                    break
                got += n
            dt = time.perf_counter() - t0
        if got != total:
            raise RuntimeError(f"transferred {got} bytes, expected {total}")
        return dt
    finally:
        sock.close()


def _mux_server_cpu(muxed):
    stream = muxed.open_stream(timeout=30)
    stream.write(_REQ.pack(b"S", 0, 0), timeout=30)
    t = _STATS.unpack(stream.read_exactly(_STATS.size, timeout=30))
    stream.close()
    return t


def _raw_server_cpu(port):
    from gevent import socket

    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        sock.sendall(_REQ.pack(b"S", 0, 0))
        return _STATS.unpack(_read_exactly_sock(sock, _STATS.size))
    finally:
        sock.close()


def _timed(fn, server_cpu):
    """Run ``fn()``: (wall s, client CPU s, server CPU s, client faults, server faults)."""
    s0 = server_cpu()
    c0 = _cpu_stats()
    wall = fn()
    c1 = _cpu_stats()
    s1 = server_cpu()
    return wall, c1[0] - c0[0], s1[0] - s0[0], c1[1] - c0[1], s1[1] - s0[1]


def _build_name():
    from geventp2p import _speedups

    return _speedups.IMPLEMENTATION


def _summary(runs, total, wsize):
    rates = [total / MiB / r[0] for r in runs]
    mib = total / MiB
    return {
        "runs_mib_s": [round(r, 1) for r in rates],
        "median_mib_s": round(statistics.median(rates), 1),
        "median_writes_s": round(statistics.median(rates) * MiB / wsize),
        # CPU per MiB is far less noisy than wall time on a shared machine
        "client_cpu_ms_per_mib": round(statistics.median(r[1] for r in runs) * 1000 / mib, 3),
        "server_cpu_ms_per_mib": round(statistics.median(r[2] for r in runs) * 1000 / mib, 3),
        "client_faults_per_mib": round(statistics.median(r[3] for r in runs) / mib, 1),
        "server_faults_per_mib": round(statistics.median(r[4] for r in runs) / mib, 1),
    }


def _client_main(args) -> dict:
    from gevent import socket

    env = dict(os.environ)
    cmd = [sys.executable, "-m", "bench.throughput", "--serve",
           "--security", args.security, "--muxer", args.muxer]
    if args.server_profile:
        cmd += ["--server-profile", args.server_profile]
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env, cwd=here)
    directions = ["up", "down"] if args.direction == "both" else [args.direction]
    total = int(args.mib * MiB)
    wsize = args.write_size
    times = {d: [] for d in directions}
    try:
        port = int(proc.stdout.readline())
        if args.security == "raw":
            def run():
                for _ in range(args.repeat):
                    for d in directions:
                        times[d].append(_timed(lambda: _raw_client(port, d, total, wsize),
                                               lambda: _raw_server_cpu(port)))
            # warm-up
            _raw_client(port, directions[0], min(total, 4 * MiB), wsize)
            _profiled(args.profile, run)
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            sock.sendall(_REQ.pack(b"Q", 0, 0))
            sock.close()
        else:
            sec, mux = _stack(args)
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            secured = sec.secure_outbound(_socket_conn(sock, True), timeout=30)
            muxed = mux.create(secured, True)
            fns = {"up": _client_up, "down": _client_down}
            for d in directions:  # warm-up (window growth is per stream; this warms code paths)
                fns[d](muxed, min(total, 4 * MiB), wsize)

            def run():
                for _ in range(args.repeat):
                    for d in directions:
                        times[d].append(_timed(lambda: fns[d](muxed, total, wsize),
                                               lambda: _mux_server_cpu(muxed)))

            _profiled(args.profile, run)
            muxed.close()
        # poll cooperatively: a blocking wait would stop the hub before the muxer's
        # greenlets finished closing the connection (mplex closes asynchronously)
        import gevent

        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            gevent.sleep(0.02)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    result = {
        "security": args.security,
        "muxer": None if args.security == "raw" else args.muxer,
        "build": _build_name(),
        "mib": args.mib,
        "write_size": wsize,
        "repeat": args.repeat,
        "load": round(os.getloadavg()[0], 2),
    }
    for d in directions:
        result[d] = _summary(times[d], total, wsize)
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__.split("\n\n")[0])
    p.add_argument("--security", choices=("noise", "tls", "plaintext", "raw"), default="noise")
    p.add_argument("--muxer", choices=("yamux", "mplex"), default="yamux")
    p.add_argument("--mib", type=float, default=256)
    p.add_argument("--write-size", type=int, default=65536)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--direction", choices=("up", "down", "both"), default="both")
    p.add_argument("--profile", default=None, help="cProfile the client, dump pstats here")
    p.add_argument("--server-profile", default=None, help="cProfile the server, dump pstats here")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        return _server_main(args)
    print(json.dumps(_client_main(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
