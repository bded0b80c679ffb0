import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { Connection, PeerId, PrivateKey, Stream } from '@libp2p/interface'
import { mdns } from '@libp2p/mdns'
import { peerIdFromString } from '@libp2p/peer-id'
import { tcp } from '@libp2p/tcp'
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr'
import { createLibp2p, type Libp2p } from 'libp2p'
import type { Logger } from 'pino'
import { ProtocolError } from '../errors.ts'
import type { ByteStream } from '../protocol/byte-stream.ts'

/**
 * The one place that imports libp2p. Both programs build their node here and see only this
 * narrow interface: handle a protocol, open a stream, who is connected. Every node runs
 * TCP + Noise + yamux with a connection gater that admits only the PeerIds `isAllowed` says.
 */
/** yamux per-stream receive window and read buffer limit. */
export const STREAM_WINDOW_BYTES = 4 << 20

export interface P2PNodeOptions {
  privateKey: PrivateKey
  /** Multiaddrs to listen on, e.g. `/ip4/127.0.0.1/tcp/0`. */
  listen: string[]
  /** Membership check used by the connection gater (both directions). */
  isAllowed: (peerId: string) => boolean
  maxConnections?: number
  /** Connections one peer may hold with this node at once (flood limit). Default 2. */
  maxConnectionsPerPeer?: number
  /** Announce and discover peers on the LAN with mDNS (off in tests: loopback only). */
  mdns?: boolean
  /** A peer seen by mDNS (dial it if it is wanted; mDNS itself does not dial). */
  onDiscovery?: (peerId: string, addrs: string[]) => void
  log: Logger
}

export interface ProtocolHandlerOptions {
  /** Concurrent inbound streams of this protocol per connection. */
  maxInboundStreams: number
  maxOutboundStreams?: number
}

export interface P2PNode {
  readonly peerId: string
  start(): Promise<void>
  stop(): Promise<void>
  multiaddrs(): string[]
  handle(
    protocol: string,
    handler: (stream: ByteStream, remotePeer: string) => Promise<void>,
    options: ProtocolHandlerOptions,
  ): Promise<void>
  /** Opens a stream to a peer (dialling it at `addrs` if not connected). */
  openStream(peerId: string, addrs: string[], protocol: string, signal?: AbortSignal): Promise<ByteStream>
  connectedPeers(): string[]
  /** Closes every connection with a peer (banned, or gone from the member list). */
  hangUp(peerId: string): Promise<void>
}

export async function createPrivateKey(): Promise<PrivateKey> {
  return generateKeyPair('Ed25519')
}

export function privateKeyToBytes(key: PrivateKey): Uint8Array {
  return privateKeyToProtobuf(key)
}

export function privateKeyFromBytes(bytes: Uint8Array): PrivateKey {
  return privateKeyFromProtobuf(bytes)
}

export async function createP2PNode(options: P2PNodeOptions): Promise<P2PNode> {
  const { log, isAllowed } = options
  const perPeer = options.maxConnectionsPerPeer ?? 2
  let node: Libp2p | undefined
  const deny = (peer: PeerId) => {
    const allowed = isAllowed(peer.toString())
    if (!allowed) log.warn({ peer: peer.toString() }, 'connection gater refused a peer that is not enrolled')
    return !allowed
  }
  // A member opening connection after connection (faults row 10) is refused past the limit.
  const denyInbound = (peer: PeerId) => {
    if (deny(peer)) return true
    const open = node?.getConnections(peer).length ?? 0
    if (open >= perPeer) {
      log.warn({ peer: peer.toString(), open }, 'refused a connection: too many from this peer')
      return true
    }
    return false
  }
  node = await createLibp2p({
    privateKey: options.privateKey,
    start: false,
    addresses: { listen: options.listen },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    // A 4 MiB stream window from the start (yamux's default starts at 256 KiB and grows only
    // on RTT samples, which on a LAN round to 0 ms): a pipelined 1 MiB chunk then needs no
    // window-update round trips. The window never exceeds the read buffer limit, so a paused
    // stream is never reset (see docs/protocol.md).
    streamMuxers: [
      yamux({
        streamOptions: {
          initialStreamWindowSize: STREAM_WINDOW_BYTES,
          maxStreamWindowSize: STREAM_WINDOW_BYTES,
          maxReadBufferLength: STREAM_WINDOW_BYTES,
        },
      }),
    ],
    connectionGater: {
      // Loopback and private addresses are where the LAN swarm lives: allow dialling them.
      denyDialMultiaddr: () => false,
      denyInboundEncryptedConnection: denyInbound,
      denyOutboundEncryptedConnection: deny,
    },
    ...(options.mdns ? { peerDiscovery: [mdns({ serviceTag: '_patchswarm._udp.local', interval: 10_000 })] } : {}),
    connectionManager: {
      maxConnections: options.maxConnections ?? 300,
      maxIncomingPendingConnections: 32,
      inboundUpgradeTimeout: 10_000,
    },
  })

  const libp2p = node
  if (options.onDiscovery) {
    const onDiscovery = options.onDiscovery
    libp2p.addEventListener('peer:discovery', (evt) => {
      const id = evt.detail.id.toString()
      if (id === libp2p.peerId.toString()) return
      onDiscovery(
        id,
        evt.detail.multiaddrs.map((ma) => ma.toString()),
      )
    })
  }
  const peerId = libp2p.peerId.toString()
  return {
    peerId,
    start: async () => {
      await libp2p.start()
    },
    stop: async () => {
      await libp2p.stop()
    },
    multiaddrs: () => libp2p.getMultiaddrs().map((ma) => ma.toString()),
    async handle(protocol, handler, handlerOptions) {
      await libp2p.handle(
        protocol,
        (stream: Stream, connection: Connection) => {
          const remote = connection.remotePeer.toString()
          // Defence in depth behind the gater: never run a handler for a non-member.
          if (!isAllowed(remote)) {
            stream.abort(new ProtocolError('PSW_ERR_NOT_ENROLLED', 'peer is not enrolled'))
            return
          }
          handler(stream as unknown as ByteStream, remote).catch((err) => {
            log.warn({ err, protocol, peer: remote }, 'protocol handler failed')
          })
        },
        { maxInboundStreams: handlerOptions.maxInboundStreams, maxOutboundStreams: handlerOptions.maxOutboundStreams },
      )
    },
    async openStream(target, addrs, protocol, signal) {
      const pid = peerIdFromString(target)
      const known: Multiaddr[] = addrs.map((a) => multiaddr(a))
      if (known.length > 0) await libp2p.peerStore.merge(pid, { multiaddrs: known })
      const stream = await libp2p.dialProtocol(pid, protocol, { signal })
      return stream as unknown as ByteStream
    },
    connectedPeers: () => libp2p.getConnections().map((c) => c.remotePeer.toString()),
    async hangUp(target) {
      await libp2p.hangUp(peerIdFromString(target)).catch(() => {})
    },
  }
}
