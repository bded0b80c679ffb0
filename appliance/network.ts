import type { PrivateKey } from '@libp2p/interface'
import type { Logger } from 'pino'
import { createP2PNode, type P2PNode } from '../shared/p2p/p2p-node.ts'
import { CHUNK_PROTOCOL } from '../shared/protocol/chunk-codec.ts'
import { serveChunkStream } from '../shared/protocol/chunk-server.ts'
import { CONTROL_PROTOCOL, type ControlRequest, serveControl } from '../shared/protocol/control-protocol.ts'
import type { ChunkStore } from '../shared/store/chunk-store.ts'

export interface ApplianceNetworkDeps {
  privateKey: PrivateKey
  listen: string[]
  isMember: (peerId: string) => boolean
  chunks: ChunkStore
  control: (peerId: string) => (request: ControlRequest) => Promise<unknown>
  onServed: (peerId: string, bytes: number) => void
  log: Logger
}

/**
 * The appliance's libp2p node: the chunk protocol (serving from the content store) and the
 * control protocol, behind a gater that admits enrolled agents only.
 */
export async function startApplianceNetwork(deps: ApplianceNetworkDeps): Promise<P2PNode> {
  const node = await createP2PNode({
    privateKey: deps.privateKey,
    listen: deps.listen,
    isAllowed: deps.isMember,
    log: deps.log,
  })
  await node.handle(
    CHUNK_PROTOCOL,
    (stream, peer) =>
      serveChunkStream(stream, {
        source: { read: (hash, length) => deps.chunks.readExact(hash, length) },
        log: deps.log,
        onServed: (bytes) => deps.onServed(peer, bytes),
      }),
    { maxInboundStreams: 4, maxOutboundStreams: 4 },
  )
  await node.handle(CONTROL_PROTOCOL, (stream, peer) => serveControl(stream, deps.control(peer)), {
    maxInboundStreams: 8,
    maxOutboundStreams: 8,
  })
  await node.start()
  return node
}
