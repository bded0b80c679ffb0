import { Bitfield } from './bitfield.ts'

export interface ChunkPickerOptions {
  /** Chunks this node already holds (verified). The picker updates it as chunks arrive. */
  have: Bitfield
  /** Uniform random number in [0, 1); injected so simulations and tests are reproducible. */
  random: () => number
  /** In endgame, a chunk may be in flight from this many peers at once. Default 3. */
  endgameFanout?: number
}

/**
 * Which chunk to ask which peer for: pure logic, no I/O (the agent's swarm client and the
 * simulator both drive it).
 *
 * - Rarest first: among the chunks a peer can give us, those the fewest known peers hold,
 *   ties broken at random, so copies spread and no chunk depends on one holder.
 * - Each chunk is in flight from one peer at a time, until endgame: once every missing chunk
 *   is in flight, the last ones are also asked of other peers (up to `endgameFanout`), and
 *   the first copy to arrive cancels the others.
 */
/** Endgame starts when at most this many chunks are missing (and all are in flight). */
export const ENDGAME_CHUNKS = 4

export class ChunkPicker {
  readonly have: Bitfield
  readonly #random: () => number
  readonly #fanout: number
  /** How many known peers hold each chunk. */
  readonly #availability: Uint32Array
  readonly #peers = new Map<string, Bitfield>()
  readonly #inflight = new Map<number, Set<string>>()

  constructor(options: ChunkPickerOptions) {
    this.have = options.have
    this.#random = options.random
    this.#fanout = options.endgameFanout ?? 3
    this.#availability = new Uint32Array(options.have.size)
  }

  get complete(): boolean {
    return this.have.complete
  }

  /** All missing chunks are already in flight somewhere. */
  get endgame(): boolean {
    // Only for the last few chunks (Kraken: 3). With many peers every missing chunk is in
    // flight almost from the start; duplicating all of them wastes the swarm's upload.
    const missing = this.have.size - this.have.count
    return missing <= this.#inflight.size && missing <= ENDGAME_CHUNKS && !this.complete
  }

  /** How many peers `index` is being requested from now. */
  inflight(index: number): number {
    return this.#inflight.get(index)?.size ?? 0
  }

  availability(index: number): number {
    return this.#availability[index] ?? 0
  }

  /** A peer and what it holds (replaces an earlier bitfield of the same peer). */
  setPeer(peer: string, bitfield: Bitfield): void {
    // A newer bitfield of a known peer: its requests in flight stay where they are.
    const old = this.#peers.get(peer)
    if (old) for (let i = 0; i < old.size; i++) if (old.has(i)) this.#availability[i]!--
    const copy = new Bitfield(bitfield.size, bitfield.bytes)
    this.#peers.set(peer, copy)
    for (let i = 0; i < copy.size; i++) if (copy.has(i)) this.#availability[i]!++
  }

  /** A peer announced one more chunk. */
  peerHas(peer: string, index: number): void {
    const f = this.#peers.get(peer)
    if (f?.set(index)) this.#availability[index]!++
  }

  /** A peer left: its chunks no longer count, its requests in flight are forgotten. */
  removePeer(peer: string): number[] {
    const f = this.#peers.get(peer)
    if (!f) return []
    this.#peers.delete(peer)
    for (let i = 0; i < f.size; i++) if (f.has(i)) this.#availability[i]!--
    const freed: number[] = []
    for (const [index, from] of this.#inflight) {
      if (from.delete(peer) && from.size === 0) {
        this.#inflight.delete(index)
        freed.push(index)
      }
    }
    return freed
  }

  /**
   * Up to `max` chunks to request from `peer` now, rarest first, skipping those `exclude`
   * names. Marks them in flight from that peer.
   */
  pick(peer: string, max: number, exclude?: (index: number) => boolean): number[] {
    const theirs = this.#peers.get(peer)
    if (!theirs || max <= 0) return []
    const endgame = this.endgame
    const candidates: Array<{ index: number; key: number }> = []
    for (const index of theirs.missingIn(this.have)) {
      if (exclude?.(index)) continue
      const from = this.#inflight.get(index)
      if (from) {
        if (!endgame || from.has(peer) || from.size >= this.#fanout) continue
      }
      // Fewer holders first; equal holders in random order. In endgame, chunks with fewer
      // requests in flight first.
      const key = (from?.size ?? 0) * 1e9 + this.#availability[index]! + this.#random()
      candidates.push({ index, key })
    }
    candidates.sort((a, b) => a.key - b.key)
    const picked = candidates.slice(0, max).map((c) => c.index)
    for (const index of picked) this.#markInflight(index, peer)
    return picked
  }

  /** The chunk arrived verified from `from`: returns the other peers to cancel it with. */
  received(index: number, from: string): string[] {
    this.have.set(index)
    const peers = this.#inflight.get(index)
    this.#inflight.delete(index)
    return peers ? [...peers].filter((p) => p !== from) : []
  }

  /** A request failed (timeout, bad hash, refusal): the chunk may be asked of someone else. */
  failed(index: number, peer: string): void {
    const from = this.#inflight.get(index)
    if (!from) return
    from.delete(peer)
    if (from.size === 0) this.#inflight.delete(index)
  }

  #markInflight(index: number, peer: string): void {
    let from = this.#inflight.get(index)
    if (!from) {
      from = new Set()
      this.#inflight.set(index, from)
    }
    from.add(peer)
  }
}

/** A small seeded PRNG (mulberry32) for reproducible picks in tests and the simulator. */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6d2b79f5) >>> 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
