import type { Clock } from '../shared/clock.ts'
import type { Bitfield } from '../shared/swarm/bitfield.ts'

export interface TrackerOptions {
  clock: Clock
  random: () => number
  /** Announcements older than this are forgotten (the agent went away). Default 2 min. */
  staleAfterMs?: number
  /** Largest peer list handed out (Kraken: 50). Default 30. */
  maxPeers?: number
}

interface Entry {
  peerId: string
  addrs: string[]
  have: Bitfield
  seenAt: number
}

interface Swarm {
  members: Map<string, Entry>
  /** Members holding each chunk, kept up to date on every announce and departure. */
  counts: Int32Array
}

export interface PeerInfo {
  peerId: string
  addrs: string[]
  chunks: number
  complete: boolean
}

/** Stale members are swept out at most this often (holders() counts them until then). */
const SWEEP_INTERVAL_MS = 1000

/**
 * Who has what, per bundle: pure logic the appliance's control handler drives (and the
 * simulator). A peer list is a uniform random sample of the bundle's other members, whatever
 * they hold — as BitTorrent and Kraken trackers do. Ranking complete or most-useful peers
 * first made hubs: in the simulator at 1 000 agents the first finishers collected hundreds of
 * connections while agents that held nothing yet were never dialled, so their upload sat
 * idle (docs/benchmarks.md). Connections are symmetric, so an empty peer is useful at once:
 * it takes what the asker has and soon has something to give back.
 *
 * Per-chunk holder counts are kept incrementally (holders() is O(1)): the appliance's
 * super-seeding asks for them on every upload request.
 */
export class Tracker {
  readonly #swarms = new Map<string, Swarm>()
  readonly #clock: Clock
  readonly #random: () => number
  readonly #staleAfterMs: number
  readonly #maxPeers: number
  #sweptAt = Number.NEGATIVE_INFINITY

  constructor(options: TrackerOptions) {
    this.#clock = options.clock
    this.#random = options.random
    this.#staleAfterMs = options.staleAfterMs ?? 120_000
    this.#maxPeers = options.maxPeers ?? 30
  }

  announce(bundleId: string, peerId: string, addrs: string[], have: Bitfield): void {
    let swarm = this.#swarms.get(bundleId)
    if (swarm && swarm.counts.length !== have.size) {
      // Another chunk count for the same bundle id cannot come from an honest agent (the
      // bundle id is the content hash); start over rather than mix counts.
      this.#swarms.delete(bundleId)
      swarm = undefined
    }
    if (!swarm) {
      swarm = { members: new Map(), counts: new Int32Array(have.size) }
      this.#swarms.set(bundleId, swarm)
    }
    const previous = swarm.members.get(peerId)
    if (previous) {
      for (const i of previous.have.missingIn(have)) swarm.counts[i]!--
      for (const i of have.missingIn(previous.have)) swarm.counts[i]!++
    } else {
      for (let i = 0; i < have.size; i++) if (have.has(i)) swarm.counts[i]!++
    }
    swarm.members.set(peerId, { peerId, addrs, have, seenAt: this.#clock.now() })
    this.#sweep()
  }

  leave(bundleId: string, peerId: string): void {
    const swarm = this.#swarms.get(bundleId)
    const entry = swarm?.members.get(peerId)
    if (!swarm || !entry) return
    this.#remove(swarm, entry)
    if (swarm.members.size === 0) this.#swarms.delete(bundleId)
  }

  /** Up to `max` (capped by config) other members of the bundle's swarm, chosen at random. */
  peersFor(bundleId: string, asker: string, max = this.#maxPeers): PeerInfo[] {
    this.#sweep()
    const swarm = this.#swarms.get(bundleId)
    if (!swarm) return []
    const cutoff = this.#clock.now() - this.#staleAfterMs
    const others: Entry[] = []
    for (const entry of swarm.members.values()) if (entry.peerId !== asker && entry.seenAt >= cutoff) others.push(entry)
    const n = Math.min(max, this.#maxPeers, others.length)
    // Partial Fisher–Yates: the first n are a uniform sample.
    for (let i = 0; i < n; i++) {
      const j = i + Math.floor(this.#random() * (others.length - i))
      ;[others[i], others[j]] = [others[j]!, others[i]!]
    }
    return others.slice(0, n).map(info)
  }

  /** How many members announced holding chunk `index` of a bundle. */
  holders(bundleId: string, index: number): number {
    this.#sweep()
    return this.#swarms.get(bundleId)?.counts[index] ?? 0
  }

  /** Whether `peerId` announced holding chunk `index` (and is still around). */
  holds(bundleId: string, peerId: string, index: number): boolean {
    const e = this.#swarms.get(bundleId)?.members.get(peerId)
    return e !== undefined && e.seenAt >= this.#clock.now() - this.#staleAfterMs && e.have.has(index)
  }

  /** Members of a bundle's swarm (for status pages and the API). */
  members(bundleId: string): PeerInfo[] {
    this.#sweep()
    const cutoff = this.#clock.now() - this.#staleAfterMs
    return [...(this.#swarms.get(bundleId)?.members.values() ?? [])].filter((e) => e.seenAt >= cutoff).map(info)
  }

  /** Forgets members that stopped announcing; at most once per SWEEP_INTERVAL_MS. */
  #sweep(): void {
    const now = this.#clock.now()
    if (now - this.#sweptAt < SWEEP_INTERVAL_MS && now >= this.#sweptAt) return
    this.#sweptAt = now
    const cutoff = now - this.#staleAfterMs
    for (const [bundleId, swarm] of this.#swarms) {
      for (const entry of swarm.members.values()) if (entry.seenAt < cutoff) this.#remove(swarm, entry)
      if (swarm.members.size === 0) this.#swarms.delete(bundleId)
    }
  }

  #remove(swarm: Swarm, entry: Entry): void {
    swarm.members.delete(entry.peerId)
    for (let i = 0; i < entry.have.size; i++) if (entry.have.has(i)) swarm.counts[i]!--
  }
}

function info(e: Entry): PeerInfo {
  return { peerId: e.peerId, addrs: e.addrs, chunks: e.have.count, complete: e.have.complete }
}
