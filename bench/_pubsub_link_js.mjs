// js-libp2p gossipsub peer for bench/pubsub_link.py (publisher or subscriber of one topic).
//
//   node _pubsub_link_js.mjs --topic T [--subscribe]
//
// Run from a folder whose node_modules holds the interop harness's pinned packages
// (bench/pubsub_link.py links them).  Same JSON line protocol as pubsub_link.py --role:
// stdout first {"type": "ready", "peer_id", "addrs"}; stdin commands
//   {"cmd": "connect", "addr"}                      -> {"type": "connect"}
//   {"cmd": "wait_peer"}                            -> {"type": "wait_peer"} once the topic has a peer
//   {"cmd": "publish", "count", "size", "rate"}     -> {"type": "publish", "start_ns", "errors"}
//   {"cmd": "report"} / {"cmd": "reset"}            -> {"type": "report", "count", "first_ns", "last_ns", "lat_ns"}
// Payload: u32 index, u64 send time (CLOCK_MONOTONIC ns: process.hrtime), filler.
// StrictSign, go's message id (author || seqno).  EOF on stdin: exit 0.

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

const opts = { topic: 'bench', subscribe: false }
const argv = process.argv.slice(2)
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--topic') opts.topic = argv[++i]
  else if (argv[i] === '--subscribe') opts.subscribe = true
  else throw new Error(`unknown argument ${argv[i]}`)
}

const emit = (obj) => process.stdout.write(JSON.stringify(obj, (k, v) => typeof v === 'bigint' ? Number(v) : v) + '\n')
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function goMsgId (msg) {
  if (msg.type !== 'signed') return createHash('sha256').update(msg.data).digest()
  const from = msg.from.toMultihash().bytes
  const out = new Uint8Array(from.length + 8)
  out.set(from)
  new DataView(out.buffer).setBigUint64(from.length, msg.sequenceNumber, false)
  return out
}

const { createLibp2p } = await import('libp2p')
const { noise } = await import('@chainsafe/libp2p-noise')
const { yamux } = await import('@chainsafe/libp2p-yamux')
const { tcp } = await import('@libp2p/tcp')
const { identify } = await import('@libp2p/identify')
const { gossipsub } = await import('@libp2p/gossipsub')
const { multiaddr } = await import('@multiformats/multiaddr')

const node = await createLibp2p({
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: {
    identify: identify(),
    pubsub: gossipsub({
      globalSignaturePolicy: 'StrictSign',
      emitSelf: false,
      allowPublishToZeroTopicPeers: false,
      msgIdFn: goMsgId,
      maxOutboundBufferSize: 256 * 1024 * 1024,
      maxInboundDataLength: 4 * 1024 * 1024
    })
  }
})
const ps = node.services.pubsub

let count = 0
let firstNs = 0n
let lastNs = 0n
let lat = []
ps.addEventListener('message', (evt) => {
  const now = process.hrtime.bigint()
  const d = evt.detail.data
  if (d.length < 12) return
  const sent = new DataView(d.buffer, d.byteOffset, d.length).getBigUint64(4, false)
  if (count === 0) firstNs = now
  lastNs = now
  count++
  lat.push(Number(now - sent))
})
if (opts.subscribe) ps.subscribe(opts.topic)
emit({ type: 'ready', peer_id: node.peerId.toString(), addrs: node.getMultiaddrs().map((a) => a.toString()) })

function payload (i, size) {
  const b = new Uint8Array(Math.max(size, 12)).fill(0xab)
  const v = new DataView(b.buffer)
  v.setUint32(0, i, false)
  v.setBigUint64(4, process.hrtime.bigint(), false)
  return size < 12 ? b.subarray(0, size) : b
}

async function publish (n, size, rate) {
  const start = process.hrtime.bigint()
  let errors = 0
  for (let i = 0; i < n; i++) {
    if (rate > 0) {
      const due = start + BigInt(Math.round(i * 1e9 / rate))
      const ahead = Number(due - process.hrtime.bigint()) / 1e6
      if (ahead >= 1) await sleep(ahead)
    }
    try { await ps.publish(opts.topic, payload(i, size)) } catch (err) { errors++ }
    if (rate <= 0 && i % 50 === 49) await new Promise((resolve) => setImmediate(resolve))
  }
  return { start_ns: start, errors }
}

const rl = createInterface({ input: process.stdin })
for await (const line of rl) {
  if (!line.trim()) continue
  const cmd = JSON.parse(line)
  switch (cmd.cmd) {
    case 'connect': await node.dial(multiaddr(cmd.addr)); emit({ type: 'connect' }); break
    case 'wait_peer':
      while (ps.getSubscribers(opts.topic).length === 0) await sleep(20)
      emit({ type: 'wait_peer' })
      break
    case 'publish': emit({ type: 'publish', ...(await publish(cmd.count, cmd.size, cmd.rate || 0)) }); break
    case 'report': emit({ type: 'report', count, first_ns: firstNs, last_ns: lastNs, lat_ns: cmd.lat ? lat : [] }); break
    case 'reset': count = 0; lat = []; emit({ type: 'reset' }); break
    default: process.stderr.write(`unknown command ${cmd.cmd}\n`)
  }
}
await node.stop()
process.exit(0)
