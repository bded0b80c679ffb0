import type { Logger } from 'pino'
import type { Clock } from '../../shared/clock.ts'
import { isPswError, ProtocolError } from '../../shared/errors.ts'
import type { Manifest } from '../../shared/metadata/manifest-schema.ts'
import type { P2PNode } from '../../shared/p2p/p2p-node.ts'
import type { ByteStream } from '../../shared/protocol/byte-stream.ts'
import { CHUNK_PROTOCOL } from '../../shared/protocol/chunk-codec.ts'
import { ChunkUploader } from '../../shared/protocol/chunk-uploader.ts'
import type { AnnounceResponseT } from '../../shared/protocol/control-protocol.ts'
import { HAVE_PROTOCOL, HaveDecoder } from '../../shared/protocol/have-codec.ts'
import { TokenBucket } from '../../shared/rate/token-bucket.ts'
import { BundleSession, type SwarmTuning, type TransferCounters } from './bundle-session.ts'

export interface AgentSwarmOptions {
  node: P2PNode
  appliance: { peerId: string; addrs: string[] }
  announce(
    bundleId: string,
    request: { have: string; addrs: string[]; event?: 'started' | 'completed' | 'stopped' },
  ): Promise<AnnounceResponseT>
  /** Enrolled PeerIds (from the appliance's signed member list). */
  isMember(peerId: string): boolean
  downloadRate: TokenBucket
  upload: { bytesPerSecond: number; slots: number }
  tuning: SwarmTuning
  clock: Clock
  random: () => number
  log: Logger
  /** How long a peer that sent a bad chunk is banned (agent-wide). Default 10 min. */
  banMs?: number
}

/** A peer must send its BITFIELD within this time of opening a have stream. */
const HELLO_TIMEOUT_MS = 10_000

/**
 * Everything swarm on one agent: one BundleSession per bundle it downloads or seeds, the
 * have protocol (routing peers' streams to the right session), the chunk uploader serving
 * verified chunks to other agents under an upload cap and slot limit, mDNS discoveries,
 * and the agent-wide ban list.
 */
export class AgentSwarm {
  readonly #options: AgentSwarmOptions
  readonly #sessions = new Map<string, BundleSession>()
  readonly #bans = new Map<string, number>()
  readonly uploader: ChunkUploader

  constructor(options: AgentSwarmOptions) {
    this.#options = options
    const rate = options.upload.bytesPerSecond
    this.uploader = new ChunkUploader({
      source: { read: (hash, length) => this.#read(hash, length) },
      rateLimit: new TokenBucket({ rate, burst: Math.max(1 << 20, rate / 8), clock: options.clock }),
      scheduler: {
        slots: options.upload.slots,
        maxQueued: 2 * options.upload.slots,
        maxQueuedPerPeer: 2,
        // Neediest first: the requester holding the fewest chunks of the bundle is served
        // first (and a full queue sheds the best-off requester). In the simulator this took
        // the slow-agents ratio at 200 agents from 1.36 to 1.28 (docs/benchmarks.md).
        priority: (r) => this.#neediness(r.peer, r.hash),
      },
      now: () => options.clock.now(),
      log: options.log,
      onServed: (_peer, hash, bytes) => {
        for (const s of this.#sessions.values())
          if (s.holds(hash)) {
            s.counters.bytesServed += bytes
            break
          }
      },
    })
  }

  #neediness(peer: string, hash: string): number {
    for (const s of this.#sessions.values()) if (s.holds(hash)) return s.peerChunks(peer) ?? 0
    return 0
  }

  async start(): Promise<void> {
    const { node } = this.#options
    await node.handle(CHUNK_PROTOCOL, (stream, peer) => this.uploader.serve(stream, peer), {
      maxInboundStreams: 2,
      maxOutboundStreams: 4,
    })
    // One have stream per bundle and direction; a few bundles at once per peer.
    await node.handle(HAVE_PROTOCOL, (stream, peer) => this.#onHaveStream(stream, peer), {
      maxInboundStreams: 8,
      maxOutboundStreams: 8,
    })
  }

  async stop(): Promise<void> {
    this.uploader.stop()
    await Promise.all([...this.#sessions.values()].map((s) => s.close()))
    this.#sessions.clear()
  }

  /** Whether a peer may take part now: enrolled and not banned. */
  allowed(peerId: string): boolean {
    if (peerId === this.#options.appliance.peerId) return true
    const until = this.#bans.get(peerId)
    if (until !== undefined) {
      if (until > this.#options.clock.now()) return false
      this.#bans.delete(peerId)
    }
    return this.#options.isMember(peerId)
  }

  ban(peerId: string): void {
    this.#bans.set(peerId, this.#options.clock.now() + (this.#options.banMs ?? 10 * 60_000))
    void this.#options.node.hangUp(peerId)
  }

  get(bundleId: string): BundleSession | undefined {
    return this.#sessions.get(bundleId)
  }

  bundleIds(): string[] {
    return [...this.#sessions.keys()]
  }

  /** The session of a bundle (opened and announced on first use). */
  async session(manifest: Manifest, partPath: string, counters: TransferCounters): Promise<BundleSession> {
    const existing = this.#sessions.get(manifest.bundleId)
    if (existing) return existing
    const o = this.#options
    const session = new BundleSession({
      manifest,
      partPath,
      node: o.node,
      appliance: o.appliance,
      announce: (request) => o.announce(manifest.bundleId, request),
      allowed: (peer) => this.allowed(peer),
      ban: (peer) => this.ban(peer),
      downloadRate: o.downloadRate,
      tuning: o.tuning,
      counters: { ...counters },
      clock: o.clock,
      random: o.random,
      log: o.log.child({ bundleId: manifest.bundleId.slice(0, 12) }),
    })
    await session.open()
    this.#sessions.set(manifest.bundleId, session)
    return session
  }

  /** Stops seeding a bundle (no longer assigned here). */
  async close(bundleId: string): Promise<void> {
    const s = this.#sessions.get(bundleId)
    this.#sessions.delete(bundleId)
    await s?.close()
  }

  /** An mDNS discovery: offer every open bundle to the peer (it closes the ones it is not in). */
  discovered(peerId: string, addrs: string[]): void {
    if (!this.allowed(peerId) || peerId === this.#options.appliance.peerId) return
    for (const s of this.#sessions.values()) s.connect(peerId, addrs)
  }

  async #read(hash: string, length: number): Promise<Uint8Array | undefined> {
    for (const s of this.#sessions.values()) if (s.holds(hash)) return s.read(hash, length)
    return undefined
  }

  async #onHaveStream(stream: ByteStream, peer: string): Promise<void> {
    if (!this.allowed(peer)) {
      stream.abort(new ProtocolError('PSW_ERR_PEER_BANNED', 'peer is banned'))
      return
    }
    const decoder = new HaveDecoder()
    const iterator = stream[Symbol.asyncIterator]()
    const timer = setTimeout(
      () => stream.abort(new ProtocolError('PSW_ERR_PEER_TIMEOUT', 'no BITFIELD on a have stream')),
      HELLO_TIMEOUT_MS,
    )
    try {
      for (;;) {
        const next = await iterator.next()
        if (next.done) return
        const messages = decoder.push(next.value)
        if (messages.length === 0) continue
        clearTimeout(timer)
        const first = messages[0]!
        if (first.type !== 'bitfield') throw new ProtocolError('PSW_ERR_PROTOCOL', 'have stream without BITFIELD')
        const session = this.#sessions.get(first.bundleId)
        if (!session) {
          // Not in this bundle's swarm (any more): the peer sees the stream end.
          await stream.close().catch(() => {})
          return
        }
        // HAVEs that came in the same read go to the session with the BITFIELD.
        await session.attachInbound(peer, stream, first.have, messages.slice(1), decoder, iterator)
        return
      }
    } catch (err) {
      this.#options.log.debug({ peer, code: isPswError(err) ? err.code : undefined }, 'have stream refused')
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    } finally {
      clearTimeout(timer)
    }
  }
}
