// js-libp2p key interop helper for tests/interop/test_js_keys.py.
//
//   node keys.mjs generate OUTDIR   -> writes OUTDIR/<name>.key (privateKeyToProtobuf) and prints
//                                      one JSON object: {keys: [{name, file, peerId, cid, pub, msg, sig}]}
//   node keys.mjs verify            <- stdin JSON [{pub, msg, sig}] (hex); prints
//                                      {results: [{peerId, ok}]}
//
// Run from a folder whose node_modules holds @libp2p/crypto and @libp2p/peer-id.

// Node 20 lacks Promise.withResolvers (Node 22+), which newer libp2p packages use.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve
    let reject
    const promise = new this((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

// Dynamic imports so the polyfill above runs first.
const keys = await import('@libp2p/crypto/keys')
const peerIdMod = await import('@libp2p/peer-id')
const fs = await import('node:fs')
const path = await import('node:path')

const toHex = (u8) => Buffer.from(u8).toString('hex')
const fromHex = (s) => new Uint8Array(Buffer.from(s, 'hex'))
const marshalPrivate = keys.privateKeyToProtobuf ?? keys.marshalPrivateKey
const marshalPublic = keys.publicKeyToProtobuf ?? keys.marshalPublicKey
const unmarshalPublic = keys.publicKeyFromProtobuf ?? keys.unmarshalPublicKey

const SPECS = [
  { name: 'ed25519', type: 'Ed25519' },
  { name: 'secp256k1', type: 'secp256k1' },
  { name: 'rsa2048', type: 'RSA', bits: 2048 },
  { name: 'ecdsa', type: 'ECDSA' }
]

// @libp2p/peer-id has no peer IDs for ECDSA keys (UnsupportedKeyTypeError): report null.
function peerIdOrNull (fn) {
  try {
    return fn()
  } catch (err) {
    if (err?.name === 'UnsupportedKeyTypeError') return null
    throw err
  }
}

async function generate (outdir) {
  const out = []
  const msg = new TextEncoder().encode('geventp2p interop message')
  for (const spec of SPECS) {
    const key = spec.bits ? await keys.generateKeyPair(spec.type, spec.bits) : await keys.generateKeyPair(spec.type)
    const file = path.join(outdir, `${spec.name}.key`)
    fs.writeFileSync(file, marshalPrivate(key), { mode: 0o600 })
    const peerId = peerIdOrNull(() => peerIdMod.peerIdFromPrivateKey(key))
    const sig = await key.sign(msg)
    out.push({
      name: spec.name,
      file,
      peerId: peerId === null ? null : peerId.toString(),
      cid: peerId === null ? null : peerId.toCID().toString(),
      pub: toHex(marshalPublic(key.publicKey)),
      msg: toHex(msg),
      sig: toHex(sig)
    })
  }
  process.stdout.write(JSON.stringify({ keys: out }) + '\n')
}

async function verify () {
  const input = JSON.parse(fs.readFileSync(0, 'utf8'))
  const results = []
  for (const item of input) {
    const pub = unmarshalPublic(fromHex(item.pub))
    const ok = await pub.verify(fromHex(item.msg), fromHex(item.sig))
    const peerId = peerIdOrNull(() => peerIdMod.peerIdFromPublicKey(pub))
    results.push({ peerId: peerId === null ? null : peerId.toString(), ok: ok === true })
  }
  process.stdout.write(JSON.stringify({ results }) + '\n')
}

const [mode, arg] = process.argv.slice(2)
if (mode === 'generate') {
  await generate(arg)
} else if (mode === 'verify') {
  await verify()
} else {
  process.stderr.write('usage: node keys.mjs generate OUTDIR | verify < input.json\n')
  process.exit(2)
}
