"""py-libp2p interop peer for the geventp2p test harness (runs in its own venv; trio-based).

Listen mode::

    python peer.py --listen /ip4/127.0.0.1/tcp/0[/ws] | /ip4/127.0.0.1/udp/0/quic-v1 --muxer yamux|mplex [--security noise|tls]
                   [--max-streams N]

serves /echo/1.0.0, /ipfs/ping/1.0.0, /ipfs/id/1.0.0 (+push) and /perf/1.0.0 (py-libp2p's
own PerfService), prints ONE JSON line {"peer_id", "addrs", "impl", "version", ...} on
stdout and stays up until SIGTERM/SIGINT or EOF on stdin.

Dial mode::

    python peer.py --dial MA --muxer yamux|mplex --scenario ping|echo|identify|perf|streams
                   [--count N] [--bytes B] [--upload B] [--download B]

prints ONE JSON result line ({"ok": true, ...} or {"ok": false, "error": ...}) and exits
0 on success, 1 on failure. Diagnostics go to stderr (PEER_LOG_LEVEL=DEBUG for more).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time

# Keep stdout for the single JSON line: anything py-libp2p prints goes to stderr.
_STDOUT = sys.stdout
sys.stdout = sys.stderr

import multiaddr  # noqa: E402
import trio  # noqa: E402

import libp2p  # noqa: E402
from libp2p import new_host  # noqa: E402
from libp2p.crypto.ed25519 import create_new_key_pair  # noqa: E402
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair  # noqa: E402
from libp2p.custom_types import TProtocol  # noqa: E402
from libp2p.host.ping import PingService  # noqa: E402
from libp2p.identity.identify.identify import ID as IDENTIFY_ID  # noqa: E402
from libp2p.identity.identify.pb.identify_pb2 import Identify  # noqa: E402
from libp2p.network.stream.exceptions import StreamEOF  # noqa: E402
from libp2p.peer.peerinfo import info_from_p2p_addr  # noqa: E402
from libp2p.perf import PerfService  # noqa: E402
from libp2p.security.noise.transport import (  # noqa: E402
    PROTOCOL_ID as NOISE_PROTOCOL_ID,
    Transport as NoiseTransport,
)
from libp2p.stream_muxer.mplex.mplex import MPLEX_PROTOCOL_ID, Mplex  # noqa: E402
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID, Yamux  # noqa: E402

ECHO = TProtocol("/echo/1.0.0")
CHUNK = 65536
IDENTIFY_MAX_MSG = 8192
IDENTIFY_MAX_MSGS = 10

log = logging.getLogger("py-peer")


def emit(obj: dict) -> None:
    _STDOUT.write(json.dumps(obj) + "\n")
    _STDOUT.flush()


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="peer.py")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--listen")
    mode.add_argument("--dial")
    p.add_argument("--muxer", choices=("yamux", "mplex"), default="yamux")
    p.add_argument("--security", choices=("noise", "tls"), default="noise")
    p.add_argument("--max-streams", type=int, default=2048)
    p.add_argument(
        "--scenario", choices=("ping", "echo", "identify", "perf", "streams"), default="ping"
    )
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--bytes", type=int, default=1024)
    p.add_argument("--upload", type=int, default=None)
    p.add_argument("--download", type=int, default=None)
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument(
        "--echo-read-first",
        action="store_true",
        help="echo/streams: read the whole echo back before half-closing (see echo_once)",
    )
    return p.parse_args(argv)


async def read_some(stream, n: int = CHUNK) -> bytes:
    """One read; b"" at EOF (py-libp2p signals EOF either way)."""
    try:
        return await stream.read(n)
    except StreamEOF:
        return b""


async def read_all(stream, limit: int | None = None) -> bytes:
    buf = bytearray()
    while True:
        data = await read_some(stream)
        if not data:
            return bytes(buf)
        buf += data
        if limit is not None and len(buf) > limit:
            raise ValueError(f"read more than {limit} bytes")


async def write_all(stream, data: bytes) -> None:
    view = memoryview(data)
    for off in range(0, len(data), CHUNK):
        await stream.write(bytes(view[off : off + CHUNK]))


async def echo_handler(stream) -> None:
    """Echo until the remote closes its write side, then close ours."""
    try:
        while True:
            data = await read_some(stream)
            if not data:
                break
            await stream.write(data)
        await stream.close()
    except Exception as exc:  # reset the stream, keep the host alive
        log.warning("echo handler error: %r", exc)
        try:
            await stream.reset()
        except Exception:
            pass


#: Where a QUIC dialer listens (py-libp2p's swarm must run a listener).
QUIC_ANY = "/ip4/127.0.0.1/udp/0/quic-v1"


def make_host(opts: argparse.Namespace):
    key_pair = create_new_key_pair()
    # Only the requested muxer is offered (py-libp2p's muxer_preference would also offer
    # the other one as a fallback).
    if opts.muxer == "yamux":
        muxer_opt = {TProtocol(YAMUX_PROTOCOL_ID): Yamux}
    else:
        muxer_opt = {TProtocol(MPLEX_PROTOCOL_ID): Mplex}
    if opts.security == "tls":
        from libp2p.security.tls.transport import PROTOCOL_ID as TLS_PROTOCOL_ID, TLSTransport

        sec_opt = {TProtocol(TLS_PROTOCOL_ID): TLSTransport(key_pair)}
    else:
        sec_opt = {
            TProtocol(NOISE_PROTOCOL_ID): NoiseTransport(
                key_pair, noise_privkey=create_x25519_key_pair().private_key
            )
        }
    if "/quic-v1" in (opts.listen or opts.dial or ""):  # QUIC v1 (py-libp2p's aioquic transport)
        return new_host(key_pair=key_pair, muxer_opt=muxer_opt, sec_opt=sec_opt,
                        listen_addrs=[multiaddr.Multiaddr(opts.listen or QUIC_ANY)], enable_quic=True)
    if "/ws" not in (opts.listen or opts.dial or ""):  # the stock TCP-only host
        return new_host(key_pair=key_pair, muxer_opt=muxer_opt, sec_opt=sec_opt)
    # a /ws address: TCP and WebSocket transports (the listen address picks WebSocket)
    listen = [multiaddr.Multiaddr(opts.listen)] if opts.listen else None
    return new_host(key_pair=key_pair, muxer_opt=muxer_opt, sec_opt=sec_opt,
                    listen_addrs=listen, enable_websocket=True)


async def wait_for_stop() -> str:
    """Return when SIGTERM/SIGINT arrives or stdin reaches EOF."""
    result = "?"
    async with trio.open_nursery() as nursery:

        async def on_signal() -> None:
            nonlocal result
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as sigs:
                async for signum in sigs:
                    result = signal.Signals(signum).name
                    nursery.cancel_scope.cancel()
                    return

        async def on_stdin() -> None:
            nonlocal result
            stdin = trio.lowlevel.FdStream(os.dup(0))
            try:
                while await stdin.receive_some(4096):
                    pass
            except (trio.BrokenResourceError, OSError):
                pass
            result = "stdin EOF"
            nursery.cancel_scope.cancel()

        nursery.start_soon(on_signal)
        nursery.start_soon(on_stdin)
    return result


async def listen_main(opts: argparse.Namespace) -> int:
    host = make_host(opts)
    listen = multiaddr.Multiaddr(opts.listen)
    async with host.run(listen_addrs=[listen]):
        host.set_stream_handler(ECHO, echo_handler)
        perf = PerfService(host)
        await perf.start()
        addrs = [str(a) for a in host.get_addrs()]
        emit(
            {
                "peer_id": str(host.get_id()),
                "addrs": addrs,
                "impl": "py-libp2p",
                "version": libp2p.__version__,
                "muxer": opts.muxer,
                "security": opts.security,
                "protocols": sorted(str(p) for p in host.get_mux().get_protocols() if p),
                "python": sys.version.split()[0],
            }
        )
        why = await wait_for_stop()
        log.info("stopping (%s)", why)
    return 0


def _decode_uvarint(buf: bytes, off: int) -> tuple[int, int] | None:
    value = shift = 0
    while off < len(buf):
        b = buf[off]
        off += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, off
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")
    return None


async def scenario_identify(host, info) -> dict:
    stream = await host.new_stream(info.peer_id, [IDENTIFY_ID])
    raw = await read_all(stream, limit=IDENTIFY_MAX_MSG * IDENTIFY_MAX_MSGS)
    await stream.close()
    merged = Identify()
    off = messages = 0
    while off < len(raw):
        dec = _decode_uvarint(raw, off)
        if dec is None:
            raise ValueError("truncated identify length prefix")
        size, off = dec
        if size > IDENTIFY_MAX_MSG or off + size > len(raw):
            raise ValueError(f"bad identify message size {size}")
        msg = Identify()
        msg.ParseFromString(raw[off : off + size])
        merged.MergeFrom(msg)
        off += size
        messages += 1
    return {
        "peer_id": str(info.peer_id),
        "messages": messages,
        "protocols": list(merged.protocols),
        "listenAddrs": [str(multiaddr.Multiaddr(a)) for a in merged.listen_addrs],
        "observedAddr": (
            str(multiaddr.Multiaddr(merged.observed_addr)) if merged.observed_addr else None
        ),
        "agentVersion": merged.agent_version if merged.HasField("agent_version") else None,
        "protocolVersion": (
            merged.protocol_version if merged.HasField("protocol_version") else None
        ),
        "publicKey": merged.public_key.hex() if merged.HasField("public_key") else None,
        "signedPeerRecord": (
            {"bytes": len(merged.signedPeerRecord)}
            if merged.HasField("signedPeerRecord")
            else None
        ),
    }


async def echo_once(host, peer_id, nbytes: int, read_first: bool = False) -> float:
    """Echo ``nbytes`` random bytes on a new stream; returns the seconds it took.

    Default: write everything and half-close while a reader collects the echo until EOF.
    ``read_first``: read exactly ``nbytes`` back, then close.  py-libp2p 0.8.1's QUIC
    stream read() checks its buffer, yields, then checks its state, so once its own FIN
    is sent it can raise on data that arrives together with the remote's FIN (losing
    it); reading before half-closing means the remote never sends FIN during a read.
    """
    payload = os.urandom(nbytes)
    t0 = time.perf_counter()
    stream = await host.new_stream(peer_id, [ECHO])
    received = bytearray()

    async def reader() -> None:
        if not read_first:
            received.extend(await read_all(stream, limit=nbytes))
            return
        while len(received) < nbytes:
            data = await read_some(stream, min(CHUNK, nbytes - len(received)))
            if not data:
                break
            received.extend(data)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await write_all(stream, payload)
        if not read_first:
            await stream.close_write()
    await stream.close()
    if bytes(received) != payload:
        raise ValueError(f"echo mismatch: sent {nbytes} bytes, got {len(received)}")
    return time.perf_counter() - t0


async def run_scenario(host, opts: argparse.Namespace) -> dict:
    ma = multiaddr.Multiaddr(opts.dial)
    info = info_from_p2p_addr(ma)
    if opts.scenario == "perf":
        upload = opts.upload if opts.upload is not None else opts.bytes
        download = opts.download if opts.download is not None else opts.bytes
        perf = PerfService(host)
        final = None
        async for out in perf.measure_performance(ma, upload, download):
            if out["type"] == "final":
                final = out
        if final is None:
            raise RuntimeError("perf produced no final result")
        return {
            "type": "final",
            "timeSeconds": final["time_seconds"],
            "uploadBytes": final["upload_bytes"],
            "downloadBytes": final["download_bytes"],
        }

    await host.connect(info)
    if opts.scenario == "ping":
        svc = PingService(host)
        rtts = [rtt async for rtt in svc.ping_iter(info.peer_id, opts.count)]
        return {"rtts": rtts, "rtt_unit": "ms(int)"}
    if opts.scenario == "identify":
        return await scenario_identify(host, info)
    if opts.scenario == "echo":
        secs = await echo_once(host, info.peer_id, opts.bytes, opts.echo_read_first)
        return {"bytes": opts.bytes, "seconds": secs}
    if opts.scenario == "streams":
        errors: list[str] = []
        t0 = time.perf_counter()

        async def one() -> None:
            try:
                await echo_once(host, info.peer_id, opts.bytes, opts.echo_read_first)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

        async with trio.open_nursery() as nursery:
            for _ in range(opts.count):
                nursery.start_soon(one)
        out = {
            "streams": opts.count,
            "bytes": opts.bytes,
            "failures": len(errors),
            "errors": sorted(set(errors))[:5],
            "seconds": time.perf_counter() - t0,
        }
        if errors:
            out["ok"] = False
            out["error"] = f"{len(errors)}/{opts.count} echo streams failed"
        return out
    raise ValueError(f"unknown scenario {opts.scenario}")


async def dial_main(opts: argparse.Namespace) -> int:
    host = make_host(opts)
    started = time.perf_counter()
    # py-libp2p needs the swarm running; listen on an ephemeral loopback port.
    local = QUIC_ANY if "/quic-v1" in opts.dial else "/ip4/127.0.0.1/tcp/0"
    async with host.run(listen_addrs=[multiaddr.Multiaddr(local)]):
        try:
            with trio.fail_after(opts.timeout):
                result = await run_scenario(host, opts)
            result.setdefault("ok", True)
        except Exception as exc:  # report and exit non-zero
            log.debug("scenario failed", exc_info=True)
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        result["scenario"] = opts.scenario
        result["impl"] = "py-libp2p"
        result["elapsed"] = time.perf_counter() - started
        emit(result)
    return 0 if result["ok"] else 1


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=os.environ.get("PEER_LOG_LEVEL", "WARNING").upper(),
        format="[py-peer] %(levelname)s %(name)s: %(message)s",
    )
    try:
        if opts.listen is not None:
            return trio.run(listen_main, opts)
        return trio.run(dial_main, opts)
    except Exception as exc:
        log.exception("fatal")
        emit({"ok": False, "error": f"{type(exc).__name__}: {exc}", "fatal": True})
        return 1


if __name__ == "__main__":
    code = main()
    _STDOUT.flush()
    # py-libp2p may leave non-daemon threads behind; do not hang on them.
    os._exit(code)
