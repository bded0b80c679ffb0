/**
 * A misbehaving swarm member for the e2e tests (test/e2e/swarm.test.ts), run as its own process:
 *
 *   node bin/run-ts.js test/e2e/rogue-peer.ts enroll --appliance URL --token T --root-fingerprint FP --data DIR
 *     Enrolls a real identity (agent/enroll.ts), so the agents' gaters admit it, and prints
 *     {"event":"enrolled","peerId":"…"}.
 *
 *   node bin/run-ts.js test/e2e/rogue-peer.ts serve --data DIR --bundle ID --chunks N --mode corrupt|silent
 *     Announces itself to the tracker as a complete holder of the bundle (the bundle must be
 *     assigned to it), opens have streams with a full BITFIELD to every peer the tracker names
 *     (again every second) and answers every have stream opened to it with one of its own.
 *     Chunk requests: `corrupt` answers each with DATA of the requested length but random
 *     bytes; `silent` takes requests and never answers. Prints {"event":"ready",…} once
 *     announced, then {"event":"request","peer":…,"count":…,"peerCount":…} per request.
 */
import { randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { agentLayout, readAgentConfig } from '../../agent/data-dir.ts'
import { enrollAgent } from '../../agent/enroll.ts'
import { silentLogger } from '../../shared/log.ts'
import { createP2PNode, privateKeyFromBytes } from '../../shared/p2p/p2p-node.ts'
import { type ByteStream, sendWithBackpressure } from '../../shared/protocol/byte-stream.ts'
import { CHUNK_PROTOCOL, ClientMessageDecoder, encodeDataHeader } from '../../shared/protocol/chunk-codec.ts'
import { CONTROL_PROTOCOL, checkAnnounceResponse, controlCall } from '../../shared/protocol/control-protocol.ts'
import { encodeBitfield, HAVE_PROTOCOL } from '../../shared/protocol/have-codec.ts'
import { Bitfield } from '../../shared/swarm/bitfield.ts'

const emit = (event: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(event)}\n`)

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    appliance: { type: 'string' },
    token: { type: 'string' },
    'root-fingerprint': { type: 'string' },
    data: { type: 'string' },
    bundle: { type: 'string' },
    chunks: { type: 'string' },
    mode: { type: 'string' },
  },
})

function required(name: keyof typeof values): string {
  const v = values[name]
  if (typeof v !== 'string' || v === '') {
    process.stderr.write(`rogue-peer: --${name} is required\n`)
    process.exit(2)
  }
  return v
}

const command = positionals[0]
if (command === 'enroll') {
  const config = await enrollAgent({
    applianceUrl: required('appliance'),
    token: required('token'),
    rootFingerprint: required('root-fingerprint'),
    dataDir: required('data'),
    hostname: 'rogue',
    listen: ['/ip4/127.0.0.1/tcp/0'],
    mdns: false,
  })
  emit({ event: 'enrolled', peerId: config.peerId })
} else if (command === 'serve') {
  await serve()
} else {
  process.stderr.write('usage: rogue-peer.ts enroll|serve [options]\n')
  process.exit(2)
}

async function serve(): Promise<void> {
  const dataDir = required('data')
  const bundleId = required('bundle')
  const chunks = Number(required('chunks'))
  const mode = required('mode')
  if (mode !== 'corrupt' && mode !== 'silent') throw new Error(`unknown mode ${mode}`)
  const config = await readAgentConfig(dataDir)
  const privateKey = privateKeyFromBytes(await readFile(agentLayout(dataDir).libp2pKey))
  const appliance = { peerId: config.appliancePeerId, addrs: config.applianceAddrs }
  const full = Bitfield.full(chunks)
  const node = await createP2PNode({
    privateKey,
    listen: ['/ip4/127.0.0.1/tcp/0'],
    // It talks to anyone; the point is whether the agents talk to it.
    isAllowed: () => true,
    mdns: false,
    log: silentLogger(),
  })
  await node.start()

  let count = 0
  const perPeer = new Map<string, number>()
  await node.handle(
    CHUNK_PROTOCOL,
    async (stream, peer) => {
      const decoder = new ClientMessageDecoder()
      try {
        for await (const data of stream) {
          for (const msg of decoder.push(data)) {
            if (msg.type !== 'request') continue
            count++
            const peerCount = (perPeer.get(peer) ?? 0) + 1
            perPeer.set(peer, peerCount)
            const hash = Buffer.from(msg.request.hash).toString('hex').slice(0, 12)
            emit({ event: 'request', peer, hash, length: msg.request.length, count, peerCount })
            if (mode === 'corrupt') {
              // The length the requester expects (so only the hash check can catch it), wrong bytes.
              stream.send(encodeDataHeader(msg.request.id, msg.request.length))
              await sendWithBackpressure(stream, randomBytes(msg.request.length))
            }
            // silent: the request is taken and never answered; the stream stays open.
          }
        }
      } catch {
        // The peer reset the stream (it banned or dropped us).
      }
    },
    { maxInboundStreams: 4, maxOutboundStreams: 4 },
  )

  /** Our one-way have streams (full BITFIELD), one per peer. */
  const outbound = new Map<string, ByteStream | 'opening'>()
  const openHave = async (peer: string, addrs: string[]) => {
    if (outbound.has(peer) || peer === node.peerId || peer === appliance.peerId) return
    outbound.set(peer, 'opening')
    try {
      const stream = await node.openStream(peer, addrs, HAVE_PROTOCOL, AbortSignal.timeout(10_000))
      outbound.set(peer, stream)
      stream.send(encodeBitfield(bundleId, full))
      emit({ event: 'have-out', peer })
      try {
        for await (const _ of stream) {
          // The receiver never writes on our stream.
        }
      } catch {}
    } catch {
      // Refused (e.g. the peer's gater: banned) or unreachable.
    }
    outbound.delete(peer)
  }
  await node.handle(
    HAVE_PROTOCOL,
    async (stream, peer) => {
      emit({ event: 'have-in', peer })
      void openHave(peer, [])
      try {
        for await (const _ of stream) {
          // What the peer holds does not matter to a rogue.
        }
      } catch {}
    },
    { maxInboundStreams: 8, maxOutboundStreams: 8 },
  )

  const announce = async () => {
    const stream = await node.openStream(
      appliance.peerId,
      appliance.addrs,
      CONTROL_PROTOCOL,
      AbortSignal.timeout(10_000),
    )
    const result = checkAnnounceResponse.check(
      await controlCall(
        stream,
        {
          op: 'announce',
          bundleId,
          have: Buffer.from(full.bytes).toString('base64'),
          addrs: node.multiaddrs().slice(0, 16),
          event: 'completed',
        },
        AbortSignal.timeout(10_000),
      ),
      'announce response',
    )
    for (const p of result.peers) void openHave(p.peerId, p.addrs)
  }
  await announce()
  emit({ event: 'ready', peerId: node.peerId, mode, addrs: node.multiaddrs() })
  // An eager rogue: announces and dials every peer it is told of, every second.
  const timer = setInterval(() => void announce().catch(() => {}), 1000)

  const stop = async () => {
    clearInterval(timer)
    emit({ event: 'stopped', count, perPeer: Object.fromEntries(perPeer) })
    await node.stop().catch(() => {})
    process.exit(0)
  }
  process.once('SIGTERM', () => void stop())
  process.once('SIGINT', () => void stop())
}
