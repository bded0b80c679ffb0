/**
 * Who gets the next chunk this node uploads: pure logic, no I/O. The chunk server of an
 * agent and of the appliance, and the simulator, all drive it.
 *
 * Requests from every peer share one bounded queue. At most `slots` chunks are being sent at
 * once, never two to the same peer (a stream carries one body at a time). The next request
 * is the one with the lowest priority value; equal values go first come, first served, which
 * is round-robin between peers since each may queue only a few.
 *
 * With a priority function (the appliance: how many copies of the chunk the swarm already
 * has) this is super-seeding: rare chunks go out first, a request for a chunk others already
 * hold waits while rarer ones are queued and is answered ELSEWHERE after `refuseAfterMs`, and
 * a full queue makes room for a rarer request by refusing the commonest one. When nothing
 * rarer is waiting the request is served, so the appliance's upload is never left idle.
 */
export interface UploadRequest {
  /** The stream (peer connection) it came on. */
  stream: number
  peer: string
  id: number
  hash: string
  length: number
}

export type Admission = { admitted: true; refused?: UploadRequest } | { admitted: false; reason: 'busy' | 'elsewhere' }

export interface UploadSchedulerOptions {
  /** Chunks sent at once (upload slots). */
  slots: number
  /** Requests queued across all peers. */
  maxQueued: number
  /** Requests one peer may have queued. */
  maxQueuedPerPeer: number
  now: () => number
  /** Lower is served first; evaluated when choosing (copies change as the swarm grows). */
  priority?: (request: UploadRequest) => number
  /** A request with priority > 0 refused after waiting this long. Default: never. */
  refuseAfterMs?: number
  /**
   * Super-seeding while the swarm still lacks chunks: for this long after a request with
   * priority 0 (a chunk nobody else has) arrived, requests with priority > 0 are refused at
   * once and never sent — a duplicate would cost the scarce upload a chunk's time. Once
   * nothing rare is asked for any more, commoner chunks are served so the upload is not
   * left idle. Default: off.
   */
  rareFirstMs?: number
}

interface Queued {
  request: UploadRequest
  at: number
  seq: number
}

export class UploadScheduler {
  readonly #options: UploadSchedulerOptions
  readonly #queue: Queued[] = []
  readonly #perPeer = new Map<string, number>()
  readonly #sending = new Set<number>()
  #seq = 0
  #lastRareAt = Number.NEGATIVE_INFINITY

  constructor(options: UploadSchedulerOptions) {
    this.#options = options
  }

  get queued(): number {
    return this.#queue.length
  }

  get sending(): number {
    return this.#sending.size
  }

  /** A request arrived. A full queue refuses it, or one commoner request to make room. */
  admit(request: UploadRequest): Admission {
    const { maxQueued, maxQueuedPerPeer, priority } = this.#options
    if ((this.#perPeer.get(request.peer) ?? 0) >= maxQueuedPerPeer) return { admitted: false, reason: 'busy' }
    if (priority && this.#options.rareFirstMs !== undefined) {
      const now = this.#options.now()
      if (priority(request) <= 0) this.#lastRareAt = now
      else if (this.#rareTime(now)) return { admitted: false, reason: 'elsewhere' }
    }
    let refused: UploadRequest | undefined
    if (this.#queue.length >= maxQueued) {
      if (!priority) return { admitted: false, reason: 'busy' }
      const mine = priority(request)
      let worst = -1
      let worstValue = mine
      for (let i = 0; i < this.#queue.length; i++) {
        const value = priority(this.#queue[i]!.request)
        if (value > worstValue) {
          worst = i
          worstValue = value
        }
      }
      if (worst < 0) return { admitted: false, reason: 'busy' }
      refused = this.#removeAt(worst)
    }
    this.#queue.push({ request, at: this.#options.now(), seq: this.#seq++ })
    this.#perPeer.set(request.peer, (this.#perPeer.get(request.peer) ?? 0) + 1)
    return refused ? { admitted: true, refused } : { admitted: true }
  }

  /**
   * The next request to send now, or undefined (no free slot, nothing eligible). `refused`
   * collects requests to answer ELSEWHERE (super-seeding).
   */
  next(refused?: UploadRequest[]): UploadRequest | undefined {
    const { slots, priority, refuseAfterMs } = this.#options
    if (this.#sending.size >= slots || this.#queue.length === 0) return undefined
    const now = this.#options.now()
    let best = -1
    let bestValue = Number.POSITIVE_INFINITY
    let bestSeq = Number.POSITIVE_INFINITY
    const values = priority ? this.#queue.map((q) => priority(q.request)) : undefined
    for (let i = 0; i < this.#queue.length; i++) {
      const q = this.#queue[i]!
      if (this.#sending.has(q.request.stream)) continue
      const value = values?.[i] ?? 0
      if (value < bestValue || (value === bestValue && q.seq < bestSeq)) {
        best = i
        bestValue = value
        bestSeq = q.seq
      }
    }
    if (values && bestValue > 0 && this.#rareTime(now)) {
      // Rare time: what is left queued is commoner than a chunk the swarm still lacks.
      for (let i = this.#queue.length - 1; i >= 0; i--) {
        if (values[i]! > 0 && !this.#sending.has(this.#queue[i]!.request.stream)) refused?.push(this.#removeAt(i))
      }
      return undefined
    }
    if (refused && values && refuseAfterMs !== undefined) {
      // Commoner requests that waited too long: their peers should ask the swarm instead.
      for (let i = this.#queue.length - 1; i >= 0; i--) {
        const q = this.#queue[i]!
        if (i !== best && values[i]! > 0 && values[i]! > bestValue && now - q.at >= refuseAfterMs) {
          refused.push(this.#removeAt(i))
          if (i < best) best--
        }
      }
    }
    if (best < 0) return undefined
    const chosen = this.#removeAt(best)
    this.#sending.add(chosen.stream)
    return chosen
  }

  /** The send of a request returned by `next()` finished (or failed). */
  done(request: UploadRequest): void {
    this.#sending.delete(request.stream)
  }

  /** The peer cancelled a queued request: returns it if it was still queued. */
  cancel(stream: number, id: number): UploadRequest | undefined {
    const i = this.#queue.findIndex((q) => q.request.stream === stream && q.request.id === id)
    return i < 0 ? undefined : this.#removeAt(i)
  }

  /** A stream ended: its queued requests are dropped. */
  dropStream(stream: number): void {
    for (let i = this.#queue.length - 1; i >= 0; i--) if (this.#queue[i]!.request.stream === stream) this.#removeAt(i)
    // A send in progress on it still holds its slot until the sender calls done().
  }

  /** When the oldest refusable request becomes due (for a timer), or undefined. */
  nextRefusalAt(): number | undefined {
    if (this.#options.refuseAfterMs === undefined || this.#queue.length === 0) return undefined
    let oldest = Number.POSITIVE_INFINITY
    for (const q of this.#queue) oldest = Math.min(oldest, q.at)
    return oldest + this.#options.refuseAfterMs
  }

  #rareTime(now: number): boolean {
    const window = this.#options.rareFirstMs
    return window !== undefined && now - this.#lastRareAt < window
  }

  #removeAt(i: number): UploadRequest {
    const [q] = this.#queue.splice(i, 1)
    const n = (this.#perPeer.get(q!.request.peer) ?? 1) - 1
    if (n <= 0) this.#perPeer.delete(q!.request.peer)
    else this.#perPeer.set(q!.request.peer, n)
    return q!.request
  }
}
