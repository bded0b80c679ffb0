import type { Clock } from '../shared/clock.ts'
import type { Tracker } from './tracker.ts'

export interface SeedingPolicyOptions {
  tracker: Tracker
  clock: Clock
  /**
   * A chunk the appliance sent counts as a copy in the swarm for this long even before its
   * recipient announces it (announces lag). Default 30 s.
   */
  recentMs?: number
}

/**
 * Super-seeding on the appliance: how many copies of a chunk the swarm already has, as the
 * priority of a request for it (fewer first). Copies are the members that announced the
 * chunk plus the peers the appliance sent it to lately (in flight or not yet announced).
 * Pure logic over the tracker; the appliance's chunk server and the simulator both use it.
 */
export class SeedingPolicy {
  readonly #tracker: Tracker
  readonly #clock: Clock
  readonly #recentMs: number
  /** bundleId → chunk index → peer → when the appliance sent it. */
  readonly #sent = new Map<string, Map<number, Map<string, number>>>()

  constructor(options: SeedingPolicyOptions) {
    this.#tracker = options.tracker
    this.#clock = options.clock
    this.#recentMs = options.recentMs ?? 30_000
  }

  /** The appliance starts sending chunk `index` of a bundle to `peer`. */
  recordSend(bundleId: string, index: number, peer: string): void {
    let chunks = this.#sent.get(bundleId)
    if (!chunks) {
      chunks = new Map()
      this.#sent.set(bundleId, chunks)
    }
    let peers = chunks.get(index)
    if (!peers) {
      peers = new Map()
      chunks.set(index, peers)
    }
    peers.set(peer, this.#clock.now())
  }

  /** Copies of chunk `index` in the swarm, not counting `asker` itself. */
  copies(bundleId: string, index: number, asker?: string): number {
    let n = this.#tracker.holders(bundleId, index)
    if (asker !== undefined && this.#tracker.holds(bundleId, asker, index)) n--
    const peers = this.#sent.get(bundleId)?.get(index)
    if (peers) {
      const cutoff = this.#clock.now() - this.#recentMs
      for (const [peer, at] of peers) {
        if (at < cutoff) peers.delete(peer)
        else if (peer !== asker && !this.#tracker.holds(bundleId, peer, index)) n++
      }
      if (peers.size === 0) this.#sent.get(bundleId)?.delete(index)
    }
    return n
  }
}
