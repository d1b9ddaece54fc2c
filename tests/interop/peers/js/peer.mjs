// js-libp2p interop peer for the geventp2p test harness.
//
// Listen mode:
//   node peer.mjs --listen /ip4/127.0.0.1/tcp/0[/ws] | /ip4/127.0.0.1/udp/0/quic-v1 --muxer yamux|mplex [--security noise|tls]
//                 [--max-streams N] [--mplex-disconnect-threshold N] [--max-connections N]
//   Serves /echo/1.0.0, /ipfs/ping/1.0.0, /ipfs/id/1.0.0 (+push), /perf/1.0.0.
//   Prints ONE JSON line {"peer_id", "addrs", "impl", "version", ...} on stdout, then
//   stays up until SIGTERM/SIGINT or EOF on stdin.
//
// Dial mode:
//   node peer.mjs --dial MA --muxer yamux|mplex --scenario ping|echo|identify|perf|streams
//                 [--count N] [--bytes B] [--upload B] [--download B] [--lazy] [--timeout S]
//   --lazy: negotiateFully=false (optimistic multistream: protocol + first data in one write)
//   Prints ONE JSON result line ({"ok": true, ...} or {"ok": false, "error": ...}) and exits
//   0 on success, 1 on failure.
//
// Logs and diagnostics go to stderr only (set DEBUG=libp2p:* for js-libp2p's own logs).

import { randomBytes } from 'node:crypto'
import { setMaxListeners } from 'node:events'

// js-libp2p 3.x calls Promise.withResolvers (Node >= 22). Install a polyfill BEFORE
// libp2p is loaded; that is why every libp2p import below is a dynamic import().
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve
    let reject
    const promise = new this((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

const ECHO = '/echo/1.0.0'
const PERF = '/perf/1.0.0'

function parseArgs (argv) {
  const opts = {
    listen: null,
    dial: null,
    muxer: 'yamux',
    security: 'noise',
    maxStreams: 2048,
    scenario: 'ping',
    count: 1,
    bytes: 1024,
    upload: null,
    download: null,
    lazy: false,
    mplexDisconnectThreshold: null,
    timeout: 60
  }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`missing value for ${a}`)
      return argv[++i]
    }
    switch (a) {
      case '--listen': opts.listen = next(); break
      case '--dial': opts.dial = next(); break
      case '--muxer': opts.muxer = next(); break
      case '--security': opts.security = next(); break
      case '--max-streams': opts.maxStreams = parseInt(next(), 10); break
      case '--scenario': opts.scenario = next(); break
      case '--count': opts.count = parseInt(next(), 10); break
      case '--bytes': opts.bytes = parseInt(next(), 10); break
      case '--upload': opts.upload = parseInt(next(), 10); break
      case '--download': opts.download = parseInt(next(), 10); break
      case '--lazy': opts.lazy = true; break
      case '--mplex-disconnect-threshold': opts.mplexDisconnectThreshold = parseInt(next(), 10); break
      case '--timeout': opts.timeout = parseFloat(next()); break
      case '--max-connections': opts.maxConnections = parseInt(next(), 10); break
      default: throw new Error(`unknown argument ${a}`)
    }
  }
  if ((opts.listen == null) === (opts.dial == null)) {
    throw new Error('exactly one of --listen or --dial is required')
  }
  if (!['yamux', 'mplex'].includes(opts.muxer)) throw new Error(`unknown muxer ${opts.muxer}`)
  if (!['noise', 'tls'].includes(opts.security)) throw new Error(`unsupported security ${opts.security}`)
  return opts
}

function log (...args) {
  process.stderr.write(`[js-peer] ${args.join(' ')}\n`)
}

function emit (obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

function toBytes (chunk) {
  // stream chunks are Uint8Array or Uint8ArrayList
  return chunk instanceof Uint8Array ? chunk : chunk.subarray()
}

async function send (stream, data) {
  if (!stream.send(data)) {
    await stream.onDrain()
  }
}

// Echo every byte back until the remote closes its write side, then close ours.
async function handleEcho (stream) {
  try {
    for await (const chunk of stream) {
      await send(stream, chunk)
    }
    await stream.close()
  } catch (err) {
    log('echo handler error:', err.message)
    stream.abort(err)
  }
}

// /perf/1.0.0 server (spec: read u64be N, drain upload until EOF, then send N bytes, close).
async function handlePerf (stream) {
  try {
    let header = new Uint8Array(0)
    let uploaded = 0
    for await (const chunk of stream) {
      const b = toBytes(chunk)
      if (header.length < 8) {
        const need = 8 - header.length
        const merged = new Uint8Array(header.length + Math.min(need, b.length))
        merged.set(header)
        merged.set(b.subarray(0, need), header.length)
        header = merged
        uploaded += Math.max(0, b.length - need)
      } else {
        uploaded += b.length
      }
    }
    if (header.length < 8) {
      stream.abort(new Error('perf: stream ended before the 8-byte header'))
      return
    }
    let remaining = new DataView(header.buffer, header.byteOffset, 8).getBigUint64(0, false)
    const block = new Uint8Array(65536)
    while (remaining > 0n) {
      const n = remaining < 65536n ? Number(remaining) : 65536
      await send(stream, block.subarray(0, n))
      remaining -= BigInt(n)
    }
    await stream.close()
    log(`perf served: uploaded=${uploaded}`)
  } catch (err) {
    log('perf handler error:', err.message)
    stream.abort(err)
  }
}

async function readAll (stream, limit = Infinity) {
  const parts = []
  let total = 0
  for await (const chunk of stream) {
    const b = toBytes(chunk)
    parts.push(b)
    total += b.length
    if (total > limit) throw new Error(`read more than ${limit} bytes`)
  }
  const out = new Uint8Array(total)
  let off = 0
  for (const p of parts) { out.set(p, off); off += p.length }
  return out
}

function equalBytes (a, b) {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

function randomPayload (n) {
  const b = randomBytes(n)
  return new Uint8Array(b.buffer, b.byteOffset, b.length)
}

function toHex (u8) {
  return Buffer.from(u8).toString('hex')
}

async function main () {
  const opts = parseArgs(process.argv.slice(2))

  const { createLibp2p } = await import('libp2p')
  const { noise } = await import('@chainsafe/libp2p-noise')
  const { yamux } = await import('@chainsafe/libp2p-yamux')
  const { mplex } = await import('@libp2p/mplex')
  const { tcp } = await import('@libp2p/tcp')
  const { tls } = await import('@libp2p/tls')
  const { webSockets } = await import('@libp2p/websockets')
  // @libp2p/websockets dials with the global WebSocket, which Node has from 22 on; on an
  // older Node give it the `ws` package's (a dependency of @libp2p/websockets).  `ws` can
  // emit a message in the same tick as 'open' (frames that arrived with the HTTP 101),
  // before @libp2p/websockets has added its 'message' listener (it awaits 'open' first),
  // and such a message would be lost: hold messages until a listener is there.
  if (typeof globalThis.WebSocket !== 'function') {
    const { WebSocket: WS } = await import('ws')
    class HoldingWebSocket extends WS {
      emit (event, ...args) {
        if (event === 'message' && this.listenerCount('message') === 0) {
          (this._held ??= []).push(args)
          return false
        }
        return super.emit(event, ...args)
      }

      addEventListener (type, listener, options) {
        super.addEventListener(type, listener, options)
        if (type === 'message' && this._held != null) {
          const held = this._held
          this._held = null
          for (const args of held) super.emit('message', ...args)
        }
      }
    }
    globalThis.WebSocket = HoldingWebSocket
  }
  const { identify, identifyPush } = await import('@libp2p/identify')
  const { ping } = await import('@libp2p/ping')
  const { multiaddr } = await import('@multiformats/multiaddr')
  const { version: libp2pVersion } = await import('libp2p/version')

  // Stream limits (see README in the harness):
  //  * muxer: maxInboundStreams/maxOutboundStreams per connection (yamux/mplex default 1000)
  //    raised to maxStreams + 64 so protocol limits, not the muxer, are the bound;
  //  * registrar per-protocol limits for echo/perf (defaults 32 in / 64 out per connection)
  //    raised to maxStreams;
  //  * mplex: js mplex consumes one rate-limiter point for EVERY inbound NEW_STREAM (and for
  //    every frame on an unknown stream id) and aborts the whole connection when more than
  //    disconnectThreshold (default 5) arrive within one second; raised to maxStreams here,
  //    --mplex-disconnect-threshold 5 restores the stock behaviour;
  //  * identify outbound limit raised so an explicit identify() does not collide with the
  //    automatic one run on connection open.
  const muxerLimits = {
    maxInboundStreams: opts.maxStreams + 64,
    maxOutboundStreams: opts.maxStreams + 64
  }
  const streamMuxer = opts.muxer === 'yamux'
    ? yamux(muxerLimits)
    : mplex({ ...muxerLimits, disconnectThreshold: opts.mplexDisconnectThreshold ?? opts.maxStreams })

  const node = await createLibp2p({
    addresses: { listen: opts.listen != null ? [opts.listen] : [] },
    // WebSocket only when a /ws address is involved, QUIC (@chainsafe/libp2p-quic) only for /quic-v1: the TCP-only node stays the stock one
    transports: /\/quic-v1(\/|$)/.test(opts.listen ?? opts.dial)
      ? [tcp(), (await import('@chainsafe/libp2p-quic')).quic({ maxConcurrentStreamLimit: opts.maxStreams + 64 })]
      : /\/wss?(\/|$)/.test(opts.listen ?? opts.dial) ? [tcp(), webSockets()] : [tcp()],
    connectionEncrypters: [opts.security === 'tls' ? tls() : noise()],
    streamMuxers: [streamMuxer],
    connectionManager: {
      maxConnections: opts.maxConnections ?? 1000,
      inboundConnectionThreshold: opts.maxConnections ?? 1000,
      maxIncomingPendingConnections: opts.maxConnections ?? 1000
    },
    services: {
      identify: identify({ maxOutboundStreams: 8, maxInboundStreams: 8 }),
      identifyPush: identifyPush(),
      ping: ping()
    }
  })

  const limits = { maxInboundStreams: opts.maxStreams, maxOutboundStreams: opts.maxStreams }
  await node.handle(ECHO, handleEcho, limits)
  await node.handle(PERF, handlePerf, limits)

  if (opts.listen != null) {
    await node.start()
    const addrs = node.getMultiaddrs().map(ma => ma.toString())
    emit({
      peer_id: node.peerId.toString(),
      addrs,
      impl: 'js-libp2p',
      version: libp2pVersion,
      muxer: opts.muxer,
      security: opts.security,
      protocols: node.getProtocols(),
      node: process.version
    })
    let stopping = false
    const stop = async (why) => {
      if (stopping) return
      stopping = true
      log(`stopping (${why})`)
      try { await node.stop() } catch (err) { log('stop error:', err.message) }
      process.exit(0)
    }
    process.on('SIGTERM', () => { stop('SIGTERM') })
    process.on('SIGINT', () => { stop('SIGINT') })
    process.stdin.on('end', () => { stop('stdin EOF') })
    process.stdin.on('error', () => { stop('stdin error') })
    process.stdin.resume()
    return
  }

  // ---- dial mode ----
  await node.start()
  const ma = multiaddr(opts.dial)
  const signal = AbortSignal.timeout(opts.timeout * 1000)
  setMaxListeners(Infinity, signal)
  const started = performance.now()
  let result
  try {
    result = await runScenario(node, ma, opts, signal, { multiaddr })
    result.ok = true
  } catch (err) {
    result = { ...(err.details ?? {}), ok: false, error: `${err.name}: ${err.message}` }
  }
  result.scenario = opts.scenario
  result.impl = 'js-libp2p'
  result.elapsed = (performance.now() - started) / 1000
  emit(result)
  try { await node.stop() } catch (err) { log('stop error:', err.message) }
  process.exit(result.ok ? 0 : 1)
}

async function runScenario (node, ma, opts, signal, { multiaddr }) {
  const streamOpts = { signal, negotiateFully: !opts.lazy }
  switch (opts.scenario) {
    case 'ping': {
      const rtts = []
      for (let i = 0; i < opts.count; i++) {
        rtts.push(await node.services.ping.ping(ma, { signal }))
      }
      return { rtts }
    }
    case 'echo': {
      const stream = await node.dialProtocol(ma, ECHO, streamOpts)
      const payload = randomPayload(opts.bytes)
      const t0 = performance.now()
      const [, echoed] = await Promise.all([
        (async () => {
          for (let off = 0; off < payload.length; off += 65536) {
            await send(stream, payload.subarray(off, off + 65536))
          }
          await stream.close()
        })(),
        readAll(stream, opts.bytes)
      ])
      if (!equalBytes(payload, echoed)) {
        throw new Error(`echo mismatch: sent ${payload.length} bytes, got ${echoed.length}`)
      }
      return { bytes: echoed.length, seconds: (performance.now() - t0) / 1000 }
    }
    case 'identify': {
      const conn = await node.dial(ma, { signal })
      const res = await node.services.identify.identify(conn, { signal })
      return {
        peer_id: res.peerId.toString(),
        protocols: res.protocols,
        listenAddrs: res.listenAddrs.map(a => a.toString()),
        observedAddr: res.observedAddr?.toString() ?? null,
        agentVersion: res.agentVersion ?? null,
        protocolVersion: res.protocolVersion ?? null,
        publicKey: res.publicKey != null ? toHex(res.publicKey) : null,
        signedPeerRecord: res.signedPeerRecord != null
          ? { seq: res.signedPeerRecord.seq.toString(), addresses: res.signedPeerRecord.addresses.map(a => a.toString()) }
          : null,
        remote_peer: conn.remotePeer.toString()
      }
    }
    case 'perf': {
      const upload = opts.upload ?? opts.bytes
      const download = opts.download ?? opts.bytes
      const t0 = performance.now()
      const stream = await node.dialProtocol(ma, PERF, streamOpts)
      const header = new Uint8Array(8)
      new DataView(header.buffer).setBigUint64(0, BigInt(download), false)
      await send(stream, header)
      const block = new Uint8Array(65536)
      let sent = 0
      while (sent < upload) {
        const n = Math.min(65536, upload - sent)
        await send(stream, block.subarray(0, n))
        sent += n
      }
      await stream.close()
      let received = 0
      for await (const chunk of stream) received += toBytes(chunk).length
      if (received !== download) {
        throw new Error(`perf: expected ${download} bytes, received ${received}`)
      }
      return { type: 'final', timeSeconds: (performance.now() - t0) / 1000, uploadBytes: sent, downloadBytes: received }
    }
    case 'streams': {
      const conn = await node.dial(ma, { signal })
      const t0 = performance.now()
      const errors = []
      const one = async () => {
        const stream = await conn.newStream(ECHO, { ...streamOpts, maxOutboundStreams: opts.maxStreams })
        const payload = randomPayload(opts.bytes)
        const [, echoed] = await Promise.all([
          (async () => { await send(stream, payload); await stream.close() })(),
          readAll(stream, opts.bytes)
        ])
        if (!equalBytes(payload, echoed)) throw new Error(`mismatch (${echoed.length} bytes)`)
      }
      const results = await Promise.allSettled(Array.from({ length: opts.count }, one))
      for (const r of results) if (r.status === 'rejected') errors.push(`${r.reason?.name}: ${r.reason?.message}`)
      const failures = errors.length
      const out = {
        streams: opts.count,
        bytes: opts.bytes,
        failures,
        errors: [...new Set(errors)].slice(0, 5),
        seconds: (performance.now() - t0) / 1000
      }
      if (failures > 0) {
        const err = new Error(`${failures}/${opts.count} echo streams failed: ${out.errors.join('; ')}`)
        err.name = 'StreamsFailed'
        err.details = out
        throw err
      }
      return out
    }
    default:
      throw new Error(`unknown scenario ${opts.scenario}`)
  }
}

main().catch(err => {
  log('fatal:', err.stack ?? err.message)
  emit({ ok: false, error: `${err.name}: ${err.message}`, fatal: true })
  process.exit(1)
})
