import type { PrivateKey } from '@libp2p/interface'
import type { Logger } from 'pino'
import { ProtocolError } from '../shared/errors.ts'
import { createP2PNode, type P2PNode } from '../shared/p2p/p2p-node.ts'
import { ChunkClient } from '../shared/protocol/chunk-client.ts'
import { CHUNK_PROTOCOL } from '../shared/protocol/chunk-codec.ts'
import { CONTROL_PROTOCOL, type ControlRequest, controlCall } from '../shared/protocol/control-protocol.ts'
import type { ChunkFetcher } from './downloader.ts'

export interface AgentNetworkDeps {
  privateKey: PrivateKey
  listen: string[]
  /** The appliance's PeerId (pinned) and its last known addresses (may be updated). */
  appliance: { peerId: string; addrs: string[] }
  /** Other agents admitted by the gater (enrolled per the signed member list, not banned). */
  isPeerAllowed: (peerId: string) => boolean
  mdns: boolean
  onDiscovery?: (peerId: string, addrs: string[]) => void
  log: Logger
}

export interface AgentNetwork {
  readonly node: P2PNode
  control(request: ControlRequest, signal?: AbortSignal): Promise<unknown>
  /** Chunks from the appliance over one long-lived, pipelined stream (reopened if it dies). */
  applianceFetcher(): ChunkFetcher & { close(): Promise<void> }
  stop(): Promise<void>
}

/**
 * The agent's libp2p node. Its gater admits the appliance and the agents on the appliance's
 * signed member list (minus banned ones).
 */
export async function startAgentNetwork(deps: AgentNetworkDeps): Promise<AgentNetwork> {
  const { appliance } = deps
  const node = await createP2PNode({
    privateKey: deps.privateKey,
    listen: deps.listen,
    isAllowed: (peer) => peer === appliance.peerId || deps.isPeerAllowed(peer),
    mdns: deps.mdns,
    onDiscovery: deps.onDiscovery,
    log: deps.log,
  })
  await node.start()
  return {
    node,
    async control(request, signal) {
      let stream: Awaited<ReturnType<P2PNode['openStream']>>
      try {
        stream = await node.openStream(appliance.peerId, appliance.addrs, CONTROL_PROTOCOL, signal)
      } catch (err) {
        throw new ProtocolError('PSW_ERR_APPLIANCE_UNREACHABLE', `cannot reach the appliance over libp2p`, {
          cause: err,
        })
      }
      return controlCall(stream, request, signal)
    },
    applianceFetcher() {
      let client: Promise<ChunkClient> | undefined
      const current = () => {
        client ??= node
          .openStream(appliance.peerId, appliance.addrs, CHUNK_PROTOCOL)
          .then((s) => new ChunkClient(s))
          .catch((err) => {
            client = undefined
            throw new ProtocolError('PSW_ERR_APPLIANCE_UNREACHABLE', 'cannot open a chunk stream to the appliance', {
              cause: err,
            })
          })
        return client
      }
      return {
        async fetch(hash, length, options) {
          const pending = current()
          let c = await pending
          if (c.closed) {
            // Replace the dead client once, even when several fetches notice it together.
            if (client === pending) client = undefined
            c = await current()
          }
          return c.fetch(hash, length, options)
        },
        async close() {
          const c = await client?.catch(() => undefined)
          client = undefined
          await c?.close()
        },
      }
    },
    stop: () => node.stop(),
  }
}
