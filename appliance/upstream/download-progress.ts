import type { Clock } from '../../shared/clock.ts'
import { type ErrorCode, isPswError } from '../../shared/errors.ts'
import type { FeedArtifact } from './feed-types.ts'

export type DownloadState = 'queued' | 'downloading' | 'verifying' | 'retry-wait'

/** What the status page and the API show for one download. Plain data. */
export interface DownloadProgress {
  sha256: string
  name: string
  feedId: string
  key: string
  emergency: boolean
  state: DownloadState
  /** Bytes in the partial file (after a resume: including what was there). */
  bytes: number
  size: number
  /** Over the last few seconds, by the injected clock. */
  rateBytesPerSec: number
  /** Attempts started so far (1 = the first). */
  attempt: number
  /** Epoch ms of the next attempt while `retry-wait`. */
  nextRetryAt?: number
  lastError?: { code: ErrorCode | string; message: string }
}

const RATE_WINDOW_MS = 5_000

/** The live progress of one download: state, bytes, a rate over a sliding window. */
export class ProgressTracker {
  readonly #clock: Clock
  readonly #emit: (p: DownloadProgress) => void
  readonly #intervalMs: number
  readonly #p: DownloadProgress
  readonly #samples: { t: number; bytes: number }[] = []
  #lastEmit = Number.NEGATIVE_INFINITY

  /** `emit` gets byte-count updates at most every `intervalMs`, state changes always. */
  constructor(artifact: FeedArtifact, clock: Clock, emit: (p: DownloadProgress) => void, intervalMs: number) {
    this.#clock = clock
    this.#emit = emit
    this.#intervalMs = intervalMs
    this.#p = {
      sha256: artifact.sha256,
      name: artifact.name,
      feedId: artifact.feedId,
      key: artifact.key,
      emergency: artifact.emergency,
      state: 'queued',
      bytes: 0,
      size: artifact.size,
      rateBytesPerSec: 0,
      attempt: 0,
    }
  }

  get attempt(): number {
    return this.#p.attempt
  }

  markEmergency(): void {
    this.#p.emergency = true
  }

  state(state: DownloadState, extra: { nextRetryAt?: number } = {}): void {
    this.#p.state = state
    this.#p.nextRetryAt = extra.nextRetryAt
    if (state === 'downloading') this.#p.attempt++
    if (state !== 'downloading') this.#samples.length = 0
    this.#publish(true)
  }

  /** The partial now holds `bytes` bytes (may go down when a partial is discarded). */
  bytes(bytes: number): void {
    const now = this.#clock.now()
    if (bytes < this.#p.bytes) this.#samples.length = 0
    this.#p.bytes = bytes
    this.#samples.push({ t: now, bytes })
    while (this.#samples.length > 2 && this.#samples[0]!.t < now - RATE_WINDOW_MS) this.#samples.shift()
    this.#publish(false)
  }

  error(err: unknown): void {
    this.#p.lastError = {
      code: isPswError(err) ? err.code : ((err as Error)?.name ?? 'Error'),
      message: (err as Error)?.message ?? String(err),
    }
  }

  snapshot(): DownloadProgress {
    const p = { ...this.#p, rateBytesPerSec: this.#rate() }
    if (p.nextRetryAt === undefined) delete p.nextRetryAt
    if (p.lastError === undefined) delete p.lastError
    return p
  }

  #rate(): number {
    const first = this.#samples[0]
    const last = this.#samples[this.#samples.length - 1]
    if (!first || !last || this.#p.state !== 'downloading') return 0
    const span = Math.max(this.#clock.now(), last.t) - first.t
    return span <= 0 ? 0 : Math.round(((last.bytes - first.bytes) * 1000) / span)
  }

  #publish(force: boolean): void {
    const now = this.#clock.now()
    if (!force && now - this.#lastEmit < this.#intervalMs) return
    this.#lastEmit = now
    this.#emit(this.snapshot())
  }
}
