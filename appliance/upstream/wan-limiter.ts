import type { Clock } from '../../shared/clock.ts'
import type { Logger } from '../../shared/log.ts'
import { TokenBucket } from '../../shared/rate/token-bucket.ts'
import { nextChangeAt, rateAt, type WanSchedule } from './wan-schedule.ts'
import { MAX_TIMER_MS, systemTimers, type Timers } from './wan-timers.ts'

export interface WanLimiterComponents {
  clock: Clock
  timers?: Timers
  log?: Logger
}

export interface WanLimiterInit {
  schedule: WanSchedule
  /** Burst as seconds' worth of the current rate (default 1). */
  burstSeconds?: number
  /**
   * Longest time between two looks at the schedule (default 15 min), so a wall-clock jump
   * (NTP, operator) is picked up even though timers run on elapsed time.
   */
  recheckMs?: number
  /** Called after the rate changed (metrics, status page). */
  onRateChange?: (bytesPerSecond: number) => void
}

interface Waiter {
  n: number
  since: number
  resolve: (waitedMs: number) => void
  reject: (reason: unknown) => void
  signal: AbortSignal | undefined
  onAbort: () => void
}

/**
 * The one WAN rate cap shared by every artifact download and feed index fetch. A token bucket
 * (shared/rate/token-bucket.ts) at the rate the schedule allows now; at each schedule change
 * the bucket is re-created at the new rate and waiting takers are re-paced at once. Takers are
 * served first come, first served, so one large reader cannot starve the others.
 */
export class WanLimiter {
  readonly #clock: Clock
  readonly #timers: Timers
  readonly #log: Logger | undefined
  readonly #burstSeconds: number
  readonly #recheckMs: number
  readonly #onRateChange: ((bytesPerSecond: number) => void) | undefined
  #schedule: WanSchedule
  #rate: number
  #bucket: TokenBucket
  readonly #queue: Waiter[] = []
  #pumpTimer: unknown
  #scheduleTimer: unknown
  #running = false
  #stopped = false

  constructor(components: WanLimiterComponents, init: WanLimiterInit) {
    this.#clock = components.clock
    this.#timers = components.timers ?? systemTimers
    this.#log = components.log
    this.#burstSeconds = init.burstSeconds ?? 1
    this.#recheckMs = init.recheckMs ?? 15 * 60_000
    this.#onRateChange = init.onRateChange
    this.#schedule = init.schedule
    this.#rate = rateAt(init.schedule, this.#clock.now())
    this.#bucket = this.#newBucket(this.#rate)
  }

  /** Bytes per second allowed now; 0 = unlimited. */
  get rate(): number {
    return this.#rate
  }

  /** Takers waiting for tokens. */
  get waiting(): number {
    return this.#queue.length
  }

  /** Follows the schedule from now on (arms a timer for the next change). */
  start(): void {
    if (this.#running) return
    this.#running = true
    this.#stopped = false
    this.#applySchedule()
  }

  /** Stops following the schedule; pending takes reject with an AbortError. Idempotent. */
  stop(): void {
    this.#running = false
    this.#stopped = true
    this.#timers.clearTimeout(this.#scheduleTimer)
    this.#timers.clearTimeout(this.#pumpTimer)
    this.#scheduleTimer = undefined
    this.#pumpTimer = undefined
    const reason = new DOMException('WAN limiter stopped', 'AbortError')
    for (const w of this.#queue.splice(0)) {
      w.signal?.removeEventListener('abort', w.onAbort)
      w.reject(reason)
    }
  }

  /** Replaces the schedule (configuration change); the new rate applies at once. */
  setSchedule(schedule: WanSchedule): void {
    this.#schedule = schedule
    this.#applySchedule()
  }

  /**
   * Waits until `n` bytes may cross the WAN and charges them. Resolves with the milliseconds
   * spent waiting (by the injected clock), so callers can leave throttled time out of their own
   * rate checks. Rejects with the signal's reason if it aborts while waiting.
   */
  take(n: number, signal?: AbortSignal): Promise<number> {
    if (signal?.aborted) return Promise.reject(signal.reason)
    if (this.#stopped) return Promise.reject(new DOMException('WAN limiter stopped', 'AbortError'))
    if (n <= 0 || (this.#bucket.unlimited && this.#queue.length === 0)) return Promise.resolve(0)
    return new Promise<number>((resolve, reject) => {
      const waiter: Waiter = {
        n,
        since: this.#clock.now(),
        resolve,
        reject,
        signal,
        onAbort: () => {
          const i = this.#queue.indexOf(waiter)
          if (i >= 0) this.#queue.splice(i, 1)
          reject(signal?.reason)
          if (i === 0) this.#pump()
        },
      }
      signal?.addEventListener('abort', waiter.onAbort, { once: true })
      this.#queue.push(waiter)
      if (this.#queue.length === 1) this.#pump()
    })
  }

  #newBucket(rate: number): TokenBucket {
    return new TokenBucket({ rate, burst: Math.max(1, Math.round(rate * this.#burstSeconds)), clock: this.#clock })
  }

  #pump(): void {
    this.#timers.clearTimeout(this.#pumpTimer)
    this.#pumpTimer = undefined
    for (;;) {
      const w = this.#queue[0]
      if (!w) return
      const delay = this.#bucket.delayFor(w.n)
      if (delay > 0) {
        this.#pumpTimer = this.#timers.setTimeout(() => {
          this.#pumpTimer = undefined
          this.#pump()
        }, delay)
        return
      }
      this.#queue.shift()
      // delayFor said 0, so take() charges the tokens synchronously and never sleeps.
      void this.#bucket.take(w.n)
      w.signal?.removeEventListener('abort', w.onAbort)
      w.resolve(this.#clock.now() - w.since)
    }
  }

  #applySchedule(): void {
    const now = this.#clock.now()
    const rate = rateAt(this.#schedule, now)
    if (rate !== this.#rate) {
      this.#log?.info({ from: this.#rate, to: rate }, 'WAN rate changed')
      this.#rate = rate
      this.#bucket = this.#newBucket(rate)
      this.#pump()
      try {
        this.#onRateChange?.(rate)
      } catch (err) {
        this.#log?.warn({ err }, 'onRateChange hook failed')
      }
    }
    this.#timers.clearTimeout(this.#scheduleTimer)
    this.#scheduleTimer = undefined
    if (!this.#running) return
    const next = nextChangeAt(this.#schedule, now)
    const delay = Math.min(
      next === undefined ? this.#recheckMs : Math.max(0, next - now),
      this.#recheckMs,
      MAX_TIMER_MS,
    )
    const handle = this.#timers.setTimeout(() => {
      this.#scheduleTimer = undefined
      this.#applySchedule()
    }, delay)
    ;(handle as { unref?: () => void } | undefined)?.unref?.()
    this.#scheduleTimer = handle
  }
}
