import type { Bitfield } from './bitfield.ts'
import { ChunkPicker } from './chunk-picker.ts'

/**
 * What an agent asks of whom while it downloads a bundle from the swarm: pure logic, no
 * I/O. The agent's swarm download drives it with real streams; the simulator drives the very
 * same code with simulated links.
 *
 * - Each source (a peer, or the appliance) has a window of requests in flight; free slots
 *   are filled rarest first (ChunkPicker), peers before the appliance, so peers carry what
 *   they can and the appliance is asked for what only it has.
 * - The appliance is never sent endgame duplicates: its upload is the scarce one.
 * - BUSY backs off that source briefly; ELSEWHERE (super-seeding) and NOT_FOUND avoid that
 *   chunk from that source for a while; repeated timeouts drop a stalled peer; a bad chunk
 *   bans the peer.
 */
export type Outcome = 'ok' | 'busy' | 'elsewhere' | 'not-found' | 'timeout' | 'bad' | 'closed' | 'cancelled'

export interface PlannerOptions {
  have: Bitfield
  random: () => number
  /** Requests in flight per peer. Default 2. */
  peerWindow?: number
  /** Requests in flight to the appliance while peers are around. Default 2. */
  applianceWindow?: number
  /** Requests in flight to the appliance when it is the only source (full speed). Default 8. */
  soloWindow?: number
  /** Requests in flight in all, whatever the sources (bounds memory). Default: no cap. */
  maxInflight?: number
  /** How long a peer that sent a bad chunk is banned. Default 10 min. */
  banMs?: number
  /** Consecutive timeouts after which a peer counts as stalled and is dropped. Default 2. */
  stallTimeouts?: number
  /** How long a dropped (stalled) peer is left alone. Default 30 s. */
  stallBanMs?: number
  /** How long a chunk refused ELSEWHERE/NOT_FOUND is not asked of that source again. Default 3 s. */
  avoidMs?: number
  endgameFanout?: number
}

interface Source {
  id: string
  appliance: boolean
  window: number
  inflight: number
  busyUntil: number
  busyBackoffMs: number
  timeouts: number
  avoid: Map<number, number>
}

export interface Request {
  source: string
  index: number
}

export interface ResultAction {
  /** Other sources to cancel this chunk with (endgame duplicates). */
  cancel: string[]
  /** The source was removed (banned or stalled): close its streams. */
  removed?: 'banned' | 'stalled'
}

export class DownloadPlanner {
  readonly picker: ChunkPicker
  readonly #options: Required<Omit<PlannerOptions, 'have' | 'random' | 'endgameFanout'>>
  readonly #random: () => number
  readonly #sources = new Map<string, Source>()
  readonly #bans = new Map<string, number>()

  constructor(options: PlannerOptions) {
    this.picker = new ChunkPicker({ have: options.have, random: options.random, endgameFanout: options.endgameFanout })
    this.#random = options.random
    this.#options = {
      peerWindow: options.peerWindow ?? 2,
      applianceWindow: options.applianceWindow ?? 2,
      soloWindow: options.soloWindow ?? 8,
      maxInflight: options.maxInflight ?? Number.POSITIVE_INFINITY,
      banMs: options.banMs ?? 10 * 60_000,
      stallTimeouts: options.stallTimeouts ?? 2,
      stallBanMs: options.stallBanMs ?? 30_000,
      avoidMs: options.avoidMs ?? 3000,
    }
  }

  get complete(): boolean {
    return this.picker.complete
  }

  get have(): Bitfield {
    return this.picker.have
  }

  sources(): string[] {
    return [...this.#sources.keys()]
  }

  hasSource(id: string): boolean {
    return this.#sources.has(id)
  }

  inflight(id: string): number {
    return this.#sources.get(id)?.inflight ?? 0
  }

  /** Whether `id` is banned (bad chunk) or resting (stalled) at `now`. */
  isBanned(id: string, now: number): boolean {
    const until = this.#bans.get(id)
    if (until === undefined) return false
    if (until > now) return true
    this.#bans.delete(id)
    return false
  }

  /** A source and what it holds (the appliance holds everything). Replaces an earlier bitfield. */
  addSource(id: string, bitfield: Bitfield, options: { appliance?: boolean } = {}): void {
    const existing = this.#sources.get(id)
    this.picker.setPeer(id, bitfield)
    if (existing) return
    const appliance = options.appliance ?? false
    this.#sources.set(id, {
      id,
      appliance,
      window: appliance ? this.#options.applianceWindow : this.#options.peerWindow,
      inflight: 0,
      busyUntil: 0,
      busyBackoffMs: 0,
      timeouts: 0,
      avoid: new Map(),
    })
  }

  sourceHas(id: string, index: number): void {
    if (this.#sources.has(id)) this.picker.peerHas(id, index)
  }

  /** A source went away: its requests in flight are free to be asked elsewhere. */
  removeSource(id: string): void {
    this.#sources.delete(id)
    this.picker.removePeer(id)
  }

  /** Requests to send now: free window slots filled rarest first, peers before the appliance. */
  plan(now: number): Request[] {
    if (this.picker.complete) return []
    const out: Request[] = []
    const peers: Source[] = []
    let appliance: Source | undefined
    for (const s of this.#sources.values()) {
      if (s.appliance) appliance = s
      else peers.push(s)
    }
    // Random order, so no peer is always asked first.
    for (let i = peers.length - 1; i > 0; i--) {
      const j = Math.floor(this.#random() * (i + 1))
      ;[peers[i], peers[j]] = [peers[j]!, peers[i]!]
    }
    if (appliance) peers.push(appliance)
    let total = 0
    for (const s of this.#sources.values()) total += s.inflight
    // One closure for the whole plan (not one per source): plan() runs on every event.
    let s: Source = peers[0]!
    const exclude = (index: number) => {
      const until = s.avoid.get(index)
      if (until !== undefined) {
        if (until > now) return true
        s.avoid.delete(index)
      }
      // The appliance's upload is the scarce one: no endgame duplicates there.
      return s.appliance && this.picker.inflight(index) > 0
    }
    for (s of peers) {
      if (total >= this.#options.maxInflight) break
      const window = s.appliance && peers.length === 1 ? this.#options.soloWindow : s.window
      const free = Math.min(window - s.inflight, this.#options.maxInflight - total)
      if (free <= 0 || s.busyUntil > now) continue
      for (const index of this.picker.pick(s.id, free, exclude)) {
        s.inflight++
        total++
        out.push({ source: s.id, index })
      }
    }
    return out
  }

  /** What became of a request returned by `plan()`. */
  result(source: string, index: number, outcome: Outcome, now: number): ResultAction {
    const s = this.#sources.get(source)
    if (s) s.inflight = Math.max(0, s.inflight - 1)
    if (outcome === 'ok') {
      if (s) {
        s.timeouts = 0
        s.busyBackoffMs = 0
      }
      return { cancel: this.picker.received(index, source) }
    }
    this.picker.failed(index, source)
    if (!s) return { cancel: [] }
    switch (outcome) {
      case 'busy':
        s.busyBackoffMs = Math.min(2000, s.busyBackoffMs ? s.busyBackoffMs * 2 : 100)
        s.busyUntil = now + s.busyBackoffMs
        break
      case 'elsewhere':
      case 'not-found':
        s.avoid.set(index, now + this.#options.avoidMs)
        break
      case 'timeout':
        // Not this chunk from this peer again soon: ask someone else first. (The appliance is
        // the fallback of every chunk: it is asked again.)
        if (!s.appliance) s.avoid.set(index, now + this.#options.avoidMs)
        if (++s.timeouts >= this.#options.stallTimeouts && !s.appliance) {
          this.#bans.set(source, now + this.#options.stallBanMs)
          this.removeSource(source)
          return { cancel: [], removed: 'stalled' }
        }
        break
      case 'bad':
        // The appliance is the root of trust's own server: a bad chunk from it is a fault
        // to report, not a peer to ban; the request is retried after a pause.
        if (s.appliance) {
          s.busyUntil = now + 1000
          break
        }
        this.#bans.set(source, now + this.#options.banMs)
        this.removeSource(source)
        return { cancel: [], removed: 'banned' }
      case 'closed':
        this.removeSource(source)
        return { cancel: [], removed: undefined }
      case 'cancelled':
        break
    }
    return { cancel: [] }
  }
}
