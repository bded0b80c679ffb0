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
  /** How many peer lists this peer was put on lately: spreads the load. */
  handedOut: number
}

export interface PeerInfo {
  peerId: string
  addrs: string[]
  chunks: number
  complete: boolean
}

/**
 * Who has what, per bundle: pure logic the appliance's control handler drives (and the
 * simulator). A peer list holds peers that can give the asker something it lacks —
 * completed peers first, then those with the most useful chunks, ties broken by who was
 * handed out least, then at random — so no single agent becomes everyone's only source.
 */
export class Tracker {
  readonly #swarms = new Map<string, Map<string, Entry>>()
  readonly #clock: Clock
  readonly #random: () => number
  readonly #staleAfterMs: number
  readonly #maxPeers: number

  constructor(options: TrackerOptions) {
    this.#clock = options.clock
    this.#random = options.random
    this.#staleAfterMs = options.staleAfterMs ?? 120_000
    this.#maxPeers = options.maxPeers ?? 30
  }

  announce(bundleId: string, peerId: string, addrs: string[], have: Bitfield): void {
    let swarm = this.#swarms.get(bundleId)
    if (!swarm) {
      swarm = new Map()
      this.#swarms.set(bundleId, swarm)
    }
    const previous = swarm.get(peerId)
    swarm.set(peerId, { peerId, addrs, have, seenAt: this.#clock.now(), handedOut: previous?.handedOut ?? 0 })
  }

  leave(bundleId: string, peerId: string): void {
    this.#swarms.get(bundleId)?.delete(peerId)
  }

  /** Peers that hold chunks `asker` lacks, best first, at most `max` (capped by config). */
  peersFor(bundleId: string, asker: string, askerHave: Bitfield, max = this.#maxPeers): PeerInfo[] {
    const swarm = this.#swarms.get(bundleId)
    if (!swarm) return []
    const now = this.#clock.now()
    const scored: Array<{ entry: Entry; useful: number; tie: number }> = []
    for (const entry of swarm.values()) {
      if (now - entry.seenAt > this.#staleAfterMs) {
        swarm.delete(entry.peerId)
        continue
      }
      if (entry.peerId === asker) continue
      let useful = 0
      for (const _ of entry.have.missingIn(askerHave)) useful++
      if (useful === 0) continue
      scored.push({ entry, useful, tie: this.#random() })
    }
    scored.sort(
      (a, b) =>
        Number(b.entry.have.complete) - Number(a.entry.have.complete) ||
        b.useful - a.useful ||
        a.entry.handedOut - b.entry.handedOut ||
        a.tie - b.tie,
    )
    const chosen = scored.slice(0, Math.min(max, this.#maxPeers))
    for (const c of chosen) c.entry.handedOut++
    return chosen.map(({ entry }) => ({
      peerId: entry.peerId,
      addrs: entry.addrs,
      chunks: entry.have.count,
      complete: entry.have.complete,
    }))
  }

  /** How many members announced holding chunk `index` of a bundle. */
  holders(bundleId: string, index: number): number {
    const cutoff = this.#clock.now() - this.#staleAfterMs
    let n = 0
    for (const e of this.#swarms.get(bundleId)?.values() ?? []) if (e.seenAt >= cutoff && e.have.has(index)) n++
    return n
  }

  /** Whether `peerId` announced holding chunk `index` (and is still around). */
  holds(bundleId: string, peerId: string, index: number): boolean {
    const e = this.#swarms.get(bundleId)?.get(peerId)
    return e !== undefined && e.seenAt >= this.#clock.now() - this.#staleAfterMs && e.have.has(index)
  }

  /** Members of a bundle's swarm (for status pages and the API). */
  members(bundleId: string): PeerInfo[] {
    const cutoff = this.#clock.now() - this.#staleAfterMs
    return [...(this.#swarms.get(bundleId)?.values() ?? [])]
      .filter((e) => e.seenAt >= cutoff)
      .map((e) => ({
        peerId: e.peerId,
        addrs: e.addrs,
        chunks: e.have.count,
        complete: e.have.complete,
      }))
  }
}
