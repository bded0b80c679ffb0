import type { PrivateKey } from '@libp2p/interface'
import type { Logger } from 'pino'
import { createP2PNode, type P2PNode } from '../shared/p2p/p2p-node.ts'
import { CHUNK_PROTOCOL } from '../shared/protocol/chunk-codec.ts'
import { ChunkUploader } from '../shared/protocol/chunk-uploader.ts'
import { CONTROL_PROTOCOL, type ControlRequest, serveControl } from '../shared/protocol/control-protocol.ts'
import type { TokenBucket } from '../shared/rate/token-bucket.ts'
import type { ChunkStore } from '../shared/store/chunk-store.ts'
import type { ApplianceSwarm } from './swarm.ts'

export interface ApplianceNetworkDeps {
  privateKey: PrivateKey
  listen: string[]
  isMember: (peerId: string) => boolean
  chunks: ChunkStore
  control: (peerId: string) => (request: ControlRequest) => Promise<unknown>
  onServed: (peerId: string, bytes: number) => void
  swarm: ApplianceSwarm
  upload: { rateLimit: TokenBucket; slots: number }
  now: () => number
  log: Logger
}

export interface ApplianceNetwork {
  node: P2PNode
  uploader: ChunkUploader
  stop(): Promise<void>
}

/**
 * The appliance's libp2p node: the chunk protocol (served from the content store through a
 * super-seeding uploader) and the control protocol, behind a gater that admits enrolled
 * agents only.
 */
export async function startApplianceNetwork(deps: ApplianceNetworkDeps): Promise<ApplianceNetwork> {
  const node = await createP2PNode({
    privateKey: deps.privateKey,
    listen: deps.listen,
    isAllowed: deps.isMember,
    log: deps.log,
  })
  const { swarm } = deps
  const uploader = new ChunkUploader({
    source: { read: (hash, length) => deps.chunks.readExact(hash, length) },
    rateLimit: deps.upload.rateLimit,
    // Super-seeding: rare chunks first. While agents still ask for chunks nobody else has,
    // a chunk the swarm already holds is refused (ELSEWHERE: fetch it from the peers);
    // afterwards the commonest-last order keeps the appliance's upload busy.
    scheduler: {
      slots: deps.upload.slots,
      maxQueued: 32,
      maxQueuedPerPeer: 8,
      priority: (r) => swarm.priority(r.hash, r.peer),
      rareFirstMs: 1000,
    },
    now: deps.now,
    log: deps.log,
    onSending: (peer, hash) => {
      // copies() scans the tracker: only computed when debug logging is on.
      if (deps.log.isLevelEnabled('debug'))
        deps.log.debug({ peer, hash: hash.slice(0, 12), copies: swarm.priority(hash, peer) }, 'sending a chunk')
      swarm.sending(hash, peer)
    },
    onServed: (peer, hash, bytes) => {
      swarm.served(hash, bytes)
      deps.onServed(peer, bytes)
    },
  })
  await node.handle(CHUNK_PROTOCOL, (stream, peer) => uploader.serve(stream, peer), {
    maxInboundStreams: 4,
    maxOutboundStreams: 4,
  })
  await node.handle(CONTROL_PROTOCOL, (stream, peer) => serveControl(stream, deps.control(peer)), {
    maxInboundStreams: 8,
    maxOutboundStreams: 8,
  })
  await node.start()
  return {
    node,
    uploader,
    async stop() {
      uploader.stop()
      await node.stop()
    },
  }
}
