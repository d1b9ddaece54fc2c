// js-libp2p pubsub peer (gossipsub or floodsub) for geventp2p's pubsub interop tests.
//
//   node pubsub_peer.mjs --router gossipsub|floodsub [--listen MA] [--topic T]...
//                        [--connect MA]... [--no-sign] [--no-flood-publish]
//
// stdout, one JSON object per line:
//   {"type": "ready", "peer_id", "addrs"}                 first line
//   {"type": "message", "topic", "from", "seqno", "size", "sha256", "data"?, "signed"}
//   {"type": "peer", "topic", "peer", "event": "joined"|"left"}
//   {"type": "graft"|"prune", "topic", "peer"}            gossipsub only
//   answers to commands (below), each with "type": "<cmd>"
// stdin, one JSON command per line:
//   {"cmd": "subscribe"|"unsubscribe", "topic"}
//   {"cmd": "publish", "topic", "data_hex"}               -> {"type": "publish", "recipients"}
//   {"cmd": "publish_many", "topic", "count", "size"}    payload i = 4-byte big-endian i + 0xab..
//                                                          -> {"type": "publish_many", "count", "errors"}
//   {"cmd": "connect", "addr"}                           -> {"type": "connect", "ok"}
//   {"cmd": "peers", "topic"}                            -> {"type": "peers", "peers", "mesh"}
// EOF on stdin or SIGTERM: stop and exit 0.  Logs go to stderr.

import { createHash } from 'node:crypto'
import { createInterface } from 'node:readline'

if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve
    let reject
    const promise = new this((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

function parseArgs (argv) {
  const opts = { router: 'gossipsub', listen: '/ip4/127.0.0.1/tcp/0', topics: [], connect: [], sign: true, floodPublish: true }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const next = () => argv[++i]
    switch (a) {
      case '--router': opts.router = next(); break
      case '--listen': opts.listen = next(); break
      case '--topic': opts.topics.push(next()); break
      case '--connect': opts.connect.push(next()); break
      case '--no-sign': opts.sign = false; break
      case '--no-flood-publish': opts.floodPublish = false; break
      default: throw new Error(`unknown argument ${a}`)
    }
  }
  return opts
}

function emit (obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

function log (...args) {
  process.stderr.write(`[js-pubsub] ${args.join(' ')}\n`)
}

function payload (i, size) {
  const b = new Uint8Array(size).fill(0xab)
  const v = new DataView(b.buffer)
  if (size >= 4) v.setUint32(0, i, false)
  return b
}

function goMsgId (msg) {
  if (msg.type !== 'signed') return createHash('sha256').update(msg.data).digest()
  const from = msg.from.toMultihash().bytes
  const out = new Uint8Array(from.length + 8)
  out.set(from)
  new DataView(out.buffer).setBigUint64(from.length, msg.sequenceNumber, false)
  return out
}

async function main () {
  const opts = parseArgs(process.argv.slice(2))
  const { createLibp2p } = await import('libp2p')
  const { noise } = await import('@chainsafe/libp2p-noise')
  const { yamux } = await import('@chainsafe/libp2p-yamux')
  const { tcp } = await import('@libp2p/tcp')
  const { identify } = await import('@libp2p/identify')
  const { ping } = await import('@libp2p/ping')
  const { multiaddr } = await import('@multiformats/multiaddr')

  let pubsub
  if (opts.router === 'floodsub') {
    const { floodsub } = await import('@libp2p/floodsub')
    pubsub = floodsub({ globalSignaturePolicy: opts.sign ? 'StrictSign' : 'StrictNoSign', emitSelf: false })
  } else {
    const { gossipsub } = await import('@libp2p/gossipsub')
    pubsub = gossipsub({
      globalSignaturePolicy: opts.sign ? 'StrictSign' : 'StrictNoSign',
      emitSelf: false,
      allowPublishToZeroTopicPeers: true,
      floodPublish: opts.floodPublish,
      fallbackToFloodsub: true,
      // go's and py-libp2p's message id (author || seqno), so IHAVE/IWANT/IDONTWANT ids agree
      // across implementations (js's own default is the author's public key || seqno)
      msgIdFn: opts.sign ? goMsgId : undefined,
      maxOutboundBufferSize: 64 * 1024 * 1024,
      maxInboundDataLength: 4 * 1024 * 1024
    })
  }

  const node = await createLibp2p({
    addresses: { listen: [opts.listen] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify(), ping: ping(), pubsub },
    connectionManager: { maxConnections: 1000 }
  })
  const ps = node.services.pubsub

  ps.addEventListener('message', (evt) => {
    const m = evt.detail
    const out = {
      type: 'message',
      topic: m.topic,
      size: m.data.length,
      sha256: createHash('sha256').update(m.data).digest('hex'),
      signed: m.type === 'signed'
    }
    if (m.type === 'signed') {
      out.from = m.from.toString()
      out.seqno = m.sequenceNumber.toString(16).padStart(16, '0')
    }
    if (m.data.length <= 256) out.data = Buffer.from(m.data).toString('utf8')
    if (m.data.length >= 4) out.index = new DataView(m.data.buffer, m.data.byteOffset, m.data.length).getUint32(0, false)
    emit(out)
  })
  ps.addEventListener('subscription-change', (evt) => {
    for (const s of evt.detail.subscriptions) {
      emit({ type: 'peer', topic: s.topic, peer: evt.detail.peerId.toString(), event: s.subscribe ? 'joined' : 'left' })
    }
  })
  ps.addEventListener('gossipsub:graft', (evt) => emit({ type: 'graft', topic: evt.detail.topic, peer: evt.detail.peerId }))
  ps.addEventListener('gossipsub:prune', (evt) => emit({ type: 'prune', topic: evt.detail.topic, peer: evt.detail.peerId }))

  for (const t of opts.topics) ps.subscribe(t)
  emit({ type: 'ready', peer_id: node.peerId.toString(), addrs: node.getMultiaddrs().map((a) => a.toString()) })
  for (const a of opts.connect) {
    await node.dial(multiaddr(a))
  }

  const stop = async () => {
    try { await node.stop() } catch (err) { log('stop:', err.message) }
    process.exit(0)
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)

  const rl = createInterface({ input: process.stdin })
  for await (const line of rl) {
    if (!line.trim()) continue
    let cmd
    try { cmd = JSON.parse(line) } catch (err) { log('bad command', line); continue }
    try {
      switch (cmd.cmd) {
        case 'subscribe': ps.subscribe(cmd.topic); emit({ type: 'subscribe', topic: cmd.topic }); break
        case 'unsubscribe': ps.unsubscribe(cmd.topic); emit({ type: 'unsubscribe', topic: cmd.topic }); break
        case 'publish': {
          const r = await ps.publish(cmd.topic, Buffer.from(cmd.data_hex, 'hex'))
          emit({ type: 'publish', recipients: r.recipients.map((p) => p.toString()) })
          break
        }
        case 'publish_many': {
          let errors = 0
          for (let i = 0; i < cmd.count; i++) {
            try { await ps.publish(cmd.topic, payload(i, cmd.size)) } catch (err) { errors++; log('publish', i, err.message) }
            if (i % 50 === 49) await new Promise((resolve) => setImmediate(resolve))
          }
          emit({ type: 'publish_many', count: cmd.count, errors })
          break
        }
        case 'connect': await node.dial(multiaddr(cmd.addr)); emit({ type: 'connect', ok: true }); break
        case 'peers': {
          const mesh = typeof ps.getMeshPeers === 'function' ? ps.getMeshPeers(cmd.topic) : []
          emit({ type: 'peers', topic: cmd.topic, peers: ps.getSubscribers(cmd.topic).map((p) => p.toString()), mesh })
          break
        }
        default: log('unknown command', cmd.cmd)
      }
    } catch (err) {
      log(`${cmd.cmd} failed:`, err.stack || err.message)
      emit({ type: cmd.cmd, ok: false, error: err.message })
    }
  }
  await stop()
}

main().catch((err) => {
  log(err.stack || err.message)
  emit({ type: 'error', ok: false, error: err.message })
  process.exit(1)
})
