import type { Static } from '@sinclair/typebox'
import type { Logger } from 'pino'
import type { Clock } from '../shared/clock.ts'
import { StateError, ValidationError } from '../shared/errors.ts'
import type { AnnounceRequest, AnnounceResponseT } from '../shared/protocol/control-protocol.ts'
import type { StateDb } from '../shared/store/state-db.ts'
import { Bitfield } from '../shared/swarm/bitfield.ts'
import type { Assignments } from './assignments.ts'
import type { Catalog } from './catalog.ts'
import { SeedingPolicy } from './seeding-policy.ts'
import { Tracker } from './tracker.ts'

export interface ApplianceSwarmDeps {
  catalog: Catalog
  assignments: Assignments
  db: StateDb
  clock: Clock
  random: () => number
  log: Logger
  /** How often agents announce while downloading, and once complete. */
  announceSeconds?: { downloading: number; seeding: number }
}

export interface BundleSwarmStats {
  bundleId: string
  /** Chunk bytes the appliance uploaded for this bundle (since the data directory was made). */
  applianceBytesServed: number
  members: number
  complete: number
}

interface ChunkRef {
  bundleId: string
  index: number
}

/** A bundle's chunk index is kept for this many bundles (those with swarms lately). */
const MAX_INDEXED_BUNDLES = 64

/**
 * The appliance's side of the swarm: the tracker agents announce to, super-seeding
 * priorities for its chunk uploader, and per-bundle upload accounting (persisted).
 */
export class ApplianceSwarm {
  readonly tracker: Tracker
  readonly policy: SeedingPolicy
  readonly #deps: ApplianceSwarmDeps
  /** chunk hash → where it sits, for bundles with a swarm (least recently used dropped). */
  readonly #chunks = new Map<string, ChunkRef>()
  readonly #indexed = new Map<string, number>()
  readonly #hashes = new Map<string, readonly string[]>()
  readonly #served = new Map<string, number>()
  readonly #dirty = new Set<string>()
  #flushTimer: NodeJS.Timeout | undefined

  constructor(deps: ApplianceSwarmDeps) {
    this.#deps = deps
    this.tracker = new Tracker({ clock: deps.clock, random: deps.random })
    this.policy = new SeedingPolicy({ tracker: this.tracker, clock: deps.clock })
  }

  async start(): Promise<void> {
    for await (const [key, bytes] of this.#deps.db.iterate<number>('served:')) {
      this.#served.set(key.slice('served:'.length), bytes)
    }
    this.#flushTimer = setInterval(() => void this.flush(), 5000)
    this.#flushTimer.unref()
  }

  async stop(): Promise<void> {
    clearInterval(this.#flushTimer)
    await this.flush()
  }

  async flush(): Promise<void> {
    if (this.#dirty.size === 0) return
    const ops = [...this.#dirty].map((b) => ({
      type: 'put' as const,
      key: `served:${b}`,
      value: this.#served.get(b) ?? 0,
    }))
    this.#dirty.clear()
    await this.#deps.db.batch(ops).catch((err) => this.#deps.log.warn({ err }, 'could not save upload counters'))
  }

  /** An agent announces what it holds of a bundle; answers with peers to trade with. */
  async announce(peerId: string, request: Static<typeof AnnounceRequest>): Promise<AnnounceResponseT> {
    const { bundleId } = request
    const assignment = await this.#deps.assignments.get(peerId)
    // Need to know: only devices the bundle is assigned to join its swarm.
    if (!assignment?.signed.bundles.some((b) => b.bundleId === bundleId)) {
      throw new StateError('PSW_ERR_NOT_FOUND', `bundle ${bundleId.slice(0, 12)} is not assigned to this device`)
    }
    const chunks = await this.#index(bundleId)
    let have: Bitfield
    try {
      have = new Bitfield(chunks.length, Buffer.from(request.have, 'base64'))
    } catch (err) {
      throw new ValidationError('PSW_ERR_SCHEMA', `announce bitfield: ${(err as Error).message}`)
    }
    const intervals = this.#deps.announceSeconds ?? { downloading: 2, seeding: 30 }
    if (request.event === 'stopped') {
      this.tracker.leave(bundleId, peerId)
      return { peers: [], intervalSeconds: intervals.seeding }
    }
    this.tracker.announce(bundleId, peerId, request.addrs, have)
    const peers = this.tracker
      .peersFor(bundleId, peerId)
      .map((p) => ({ peerId: p.peerId, addrs: p.addrs.slice(0, 16), complete: p.complete }))
    return { peers, intervalSeconds: have.complete ? intervals.seeding : intervals.downloading }
  }

  /** Super-seeding priority of an upload request: copies of that chunk in the swarm. */
  priority(hash: string, peer: string): number {
    const ref = this.#chunks.get(hash)
    return ref ? this.policy.copies(ref.bundleId, ref.index, peer) : 0
  }

  /** The uploader starts sending `hash` to `peer`. */
  sending(hash: string, peer: string): void {
    const ref = this.#chunks.get(hash)
    if (ref) this.policy.recordSend(ref.bundleId, ref.index, peer)
  }

  /** The uploader sent `bytes` of `hash` (accounting per bundle). */
  served(hash: string, bytes: number): void {
    const ref = this.#chunks.get(hash)
    if (!ref) return
    this.#served.set(ref.bundleId, (this.#served.get(ref.bundleId) ?? 0) + bytes)
    this.#dirty.add(ref.bundleId)
  }

  stats(bundleId: string): BundleSwarmStats {
    const members = this.tracker.members(bundleId)
    return {
      bundleId,
      applianceBytesServed: this.#served.get(bundleId) ?? 0,
      members: members.length,
      complete: members.filter((m) => m.complete).length,
    }
  }

  async #index(bundleId: string): Promise<readonly string[]> {
    // A bundle id names its content: its chunk list never changes, so the manifest is read
    // once, not on every announce.
    const cached = this.#hashes.get(bundleId)
    if (cached) {
      this.#indexed.set(bundleId, this.#deps.clock.now())
      return cached
    }
    const manifest = await this.#deps.catalog.manifest(bundleId)
    if (!manifest) throw new StateError('PSW_ERR_NOT_FOUND', `no manifest for bundle ${bundleId.slice(0, 12)}`)
    const hashes = manifest.signed.content.chunks
    this.#hashes.set(bundleId, hashes)
    if (!this.#indexed.has(bundleId)) {
      if (this.#indexed.size >= MAX_INDEXED_BUNDLES) {
        const [oldest] = [...this.#indexed.entries()].sort((a, b) => a[1] - b[1])[0]!
        this.#indexed.delete(oldest)
        this.#hashes.delete(oldest)
        for (const [hash, ref] of this.#chunks) if (ref.bundleId === oldest) this.#chunks.delete(hash)
      }
      hashes.forEach((hash, index) => {
        if (!this.#chunks.has(hash)) this.#chunks.set(hash, { bundleId, index })
      })
    }
    this.#indexed.set(bundleId, this.#deps.clock.now())
    return hashes
  }
}
