import type { Clock } from '../../shared/clock.ts'
import { ValidationError } from '../../shared/errors.ts'
import type { Logger } from '../../shared/log.ts'
import type { StateBatchOp, StateDb } from '../../shared/store/state-db.ts'
import { createDayFormatter, DAY_MS, isDay } from './day.ts'

/** LevelDB keys. Values are absolute totals, so writing one again is harmless. */
export const WAN_KEYS = {
  artifactsTotal: 'metrics:wan:artifacts-total',
  index: 'metrics:wan:index',
  dayPrefix: 'metrics:wan:day:',
  artifactPrefix: 'metrics:wan:artifact:',
} as const

const SHA256_HEX = /^[0-9a-f]{64}$/

export interface WanCountersOptions {
  db: StateDb
  clock: Clock
  log: Logger
  /** IANA time zone whose midnights separate the days (default `UTC`). */
  timeZone?: string
  /** How often counts are written to the database (default 10 000 ms). */
  flushIntervalMs?: number
  /** Days of per-day counts kept, and how long an artifact without traffic keeps its entry (default 400). */
  retentionDays?: number
  /** At most this many per-artifact entries; the least recently active go first (default 10 000). */
  maxArtifacts?: number
}

export interface WanTotals {
  /** Every WAN byte: artifacts + feed documents. */
  totalBytes: number
  artifactBytes: number
  indexBytes: number
  /** WAN bytes of the current day (in the configured time zone). */
  todayBytes: number
}

export interface WanSnapshot extends WanTotals {
  /** Per artifact SHA-256, for artifacts with traffic within the retention period. */
  byArtifact: Map<string, number>
  /** Per `YYYY-MM-DD`, for the retained days with traffic. */
  byDay: Map<string, number>
}

export interface ArtifactUsage {
  sha256: string
  bytes: number
  /** When bytes of it last came in (ms since the epoch). */
  lastAt: number
}

interface StoredArtifact {
  bytes: number
  lastAt: number
}

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0

/**
 * WAN byte counters: per artifact, per day and in total, fed by the WAN downloader's
 * `onWanBytes` / `onIndexBytes` hooks. Counts accumulate in memory and are written in one
 * batch every `flushIntervalMs` and on `stop()`.
 *
 * These are statistics, not acknowledged state: a `kill -9` or power loss loses at most the
 * counts of the last flush interval (they are never written per byte, which would cost a
 * synced LevelDB write per network read). Memory is bounded: the per-day entries of the last
 * `retentionDays` days, and per-artifact entries only for artifacts seen within that time
 * (at most `maxArtifacts`). Totals are kept forever.
 */
export class WanCounters {
  readonly #o: WanCountersOptions
  readonly #dayOf: (ms: number) => string
  readonly #flushIntervalMs: number
  readonly #retentionDays: number
  readonly #maxArtifacts: number
  #artifactBytes = 0
  #indexBytes = 0
  readonly #days = new Map<string, number>()
  readonly #artifacts = new Map<string, StoredArtifact>()
  #totalsDirty = false
  #dirtyDays = new Set<string>()
  #dirtyArtifacts = new Set<string>()
  #deadKeys = new Set<string>()
  #loaded = false
  #timer: NodeJS.Timeout | undefined
  #flushing: Promise<void> = Promise.resolve()

  constructor(options: WanCountersOptions) {
    this.#o = options
    this.#dayOf = createDayFormatter(options.timeZone ?? 'UTC')
    this.#flushIntervalMs = positiveInt(options.flushIntervalMs ?? 10_000, 'flushIntervalMs')
    this.#retentionDays = positiveInt(options.retentionDays ?? 400, 'retentionDays')
    this.#maxArtifacts = positiveInt(options.maxArtifacts ?? 10_000, 'maxArtifacts')
  }

  /** Loads the stored totals (added to anything counted before) and starts the flush timer. */
  async start(): Promise<void> {
    if (this.#timer) return
    if (!this.#loaded) {
      await this.#load()
      this.#loaded = true
    }
    this.#timer = setInterval(() => void this.flush(), this.#flushIntervalMs)
    this.#timer.unref()
  }

  /** Stops the timer and writes what is pending. Idempotent. */
  async stop(): Promise<void> {
    clearInterval(this.#timer)
    this.#timer = undefined
    await this.flush()
  }

  /** `n` bytes of the artifact `sha256` came over the WAN (including bytes later discarded). */
  addArtifactBytes(sha256: string, n: number): void {
    if (!SHA256_HEX.test(sha256)) {
      throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', 'artifact sha256 must be 64 lowercase hex digits')
    }
    if (!this.#countable(n)) return
    const now = this.#o.clock.now()
    this.#artifactBytes += n
    this.#totalsDirty = true
    this.#addDay(now, n)
    const entry = this.#artifacts.get(sha256)
    if (entry) {
      entry.bytes += n
      entry.lastAt = now
    } else {
      this.#artifacts.set(sha256, { bytes: n, lastAt: now })
    }
    this.#dirtyArtifacts.add(sha256)
    this.#deadKeys.delete(WAN_KEYS.artifactPrefix + sha256)
  }

  /** `n` bytes of feed documents (indices, signatures, listings) came over the WAN. */
  addIndexBytes(n: number): void {
    if (!this.#countable(n)) return
    this.#indexBytes += n
    this.#totalsDirty = true
    this.#addDay(this.#o.clock.now(), n)
  }

  totals(): WanTotals {
    return {
      totalBytes: this.#artifactBytes + this.#indexBytes,
      artifactBytes: this.#artifactBytes,
      indexBytes: this.#indexBytes,
      todayBytes: this.#days.get(this.#dayOf(this.#o.clock.now())) ?? 0,
    }
  }

  snapshot(): WanSnapshot {
    return {
      ...this.totals(),
      byArtifact: new Map([...this.#artifacts].map(([sha256, a]) => [sha256, a.bytes])),
      byDay: new Map(this.#days),
    }
  }

  /** Per-artifact usage, most recently active first; at most `limit` entries. */
  recentArtifacts(limit = Number.POSITIVE_INFINITY): ArtifactUsage[] {
    return [...this.#artifacts]
      .map(([sha256, a]) => ({ sha256, bytes: a.bytes, lastAt: a.lastAt }))
      .sort((a, b) => b.lastAt - a.lastAt || (a.sha256 < b.sha256 ? -1 : 1))
      .slice(0, limit)
  }

  /** Retained days with traffic between `from` and `to` (inclusive, `YYYY-MM-DD`), oldest first. */
  days(from?: string, to?: string): Array<{ day: string; bytes: number }> {
    for (const d of [from, to]) {
      if (d !== undefined && !isDay(d)) throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', 'days are YYYY-MM-DD')
    }
    return [...this.#days]
      .filter(([day]) => (from === undefined || day >= from) && (to === undefined || day <= to))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([day, bytes]) => ({ day, bytes }))
  }

  /** Writes pending counts (and removals of pruned entries) in one batch; serialised. */
  flush(): Promise<void> {
    this.#flushing = this.#flushing.then(() => this.#flushOnce())
    return this.#flushing
  }

  async #flushOnce(): Promise<void> {
    this.#prune()
    if (!this.#totalsDirty && this.#dirtyDays.size === 0 && this.#dirtyArtifacts.size === 0 && !this.#deadKeys.size) {
      return
    }
    const days = this.#dirtyDays
    const artifacts = this.#dirtyArtifacts
    const dead = this.#deadKeys
    const totals = this.#totalsDirty
    this.#dirtyDays = new Set()
    this.#dirtyArtifacts = new Set()
    this.#deadKeys = new Set()
    this.#totalsDirty = false
    const ops: StateBatchOp[] = []
    if (totals) {
      ops.push({ type: 'put', key: WAN_KEYS.artifactsTotal, value: this.#artifactBytes })
      ops.push({ type: 'put', key: WAN_KEYS.index, value: this.#indexBytes })
    }
    for (const day of days) {
      const bytes = this.#days.get(day)
      if (bytes !== undefined) ops.push({ type: 'put', key: WAN_KEYS.dayPrefix + day, value: bytes })
    }
    for (const sha256 of artifacts) {
      const a = this.#artifacts.get(sha256)
      if (a) ops.push({ type: 'put', key: WAN_KEYS.artifactPrefix + sha256, value: { ...a } })
    }
    for (const key of dead) ops.push({ type: 'del', key })
    try {
      await this.#o.db.batch(ops)
    } catch (err) {
      // Values are absolute totals: marking them dirty again makes the next flush retry.
      this.#totalsDirty ||= totals
      for (const d of days) this.#dirtyDays.add(d)
      for (const a of artifacts) this.#dirtyArtifacts.add(a)
      for (const k of dead) this.#deadKeys.add(k)
      this.#o.log.warn({ err }, 'could not save WAN counters')
    }
  }

  async #load(): Promise<void> {
    const { db, log } = this.#o
    const artifactsTotal = await db.get<unknown>(WAN_KEYS.artifactsTotal)
    const index = await db.get<unknown>(WAN_KEYS.index)
    if (isCount(artifactsTotal)) this.#artifactBytes += artifactsTotal
    if (isCount(index)) this.#indexBytes += index
    for await (const [key, value] of db.iterate<unknown>(WAN_KEYS.dayPrefix)) {
      const day = key.slice(WAN_KEYS.dayPrefix.length)
      if (!isDay(day) || !isCount(value)) {
        log.warn({ key }, 'ignoring a malformed WAN day counter')
        continue
      }
      this.#days.set(day, (this.#days.get(day) ?? 0) + value)
    }
    for await (const [key, value] of db.iterate<StoredArtifact>(WAN_KEYS.artifactPrefix)) {
      const sha256 = key.slice(WAN_KEYS.artifactPrefix.length)
      if (!SHA256_HEX.test(sha256) || !isCount(value?.bytes) || typeof value.lastAt !== 'number') {
        log.warn({ key }, 'ignoring a malformed WAN artifact counter')
        continue
      }
      const mine = this.#artifacts.get(sha256)
      this.#artifacts.set(sha256, {
        bytes: value.bytes + (mine?.bytes ?? 0),
        lastAt: Math.max(value.lastAt, mine?.lastAt ?? 0),
      })
    }
    this.#prune()
  }

  /** Drops days older than the retention period and artifacts idle that long (or beyond the cap). */
  #prune(): void {
    const now = this.#o.clock.now()
    const oldestDay = this.#dayOf(now - this.#retentionDays * DAY_MS)
    for (const day of this.#days.keys()) {
      if (day < oldestDay) this.#forget(this.#days, this.#dirtyDays, day, WAN_KEYS.dayPrefix)
    }
    const idleSince = now - this.#retentionDays * DAY_MS
    for (const [sha256, a] of this.#artifacts) {
      if (a.lastAt < idleSince) this.#forget(this.#artifacts, this.#dirtyArtifacts, sha256, WAN_KEYS.artifactPrefix)
    }
    if (this.#artifacts.size > this.#maxArtifacts) {
      for (const { sha256 } of this.recentArtifacts().slice(this.#maxArtifacts)) {
        this.#forget(this.#artifacts, this.#dirtyArtifacts, sha256, WAN_KEYS.artifactPrefix)
      }
    }
  }

  #forget(map: Map<string, unknown>, dirty: Set<string>, id: string, prefix: string): void {
    map.delete(id)
    dirty.delete(id)
    this.#deadKeys.add(prefix + id)
  }

  #addDay(now: number, n: number): void {
    const day = this.#dayOf(now)
    this.#days.set(day, (this.#days.get(day) ?? 0) + n)
    this.#dirtyDays.add(day)
    this.#deadKeys.delete(WAN_KEYS.dayPrefix + day)
  }

  #countable(n: number): boolean {
    if (!Number.isSafeInteger(n) || n < 0) {
      throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', 'a byte count must be a non-negative integer')
    }
    return n > 0
  }
}

function positiveInt(value: number, name: string): number {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', `${name} must be a positive integer`)
  }
  return value
}
