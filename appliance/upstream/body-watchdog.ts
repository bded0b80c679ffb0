import type { Clock } from '../../shared/clock.ts'
import { UpstreamError } from '../../shared/errors.ts'
import type { Timers } from './wan-timers.ts'

export interface BodyWatchdogOptions {
  clock: Clock
  timers: Timers
  /** Longest wait for the next piece of the body (0 = none). */
  idleTimeoutMs: number
  /** Lowest acceptable rate over `windowMs` of network time (0 = no check). */
  minBytesPerSec: () => number
  windowMs: number
  /** Called once, with PSW_ERR_WAN_TIMEOUT, when the body is idle or too slow. */
  onTimeout: (err: UpstreamError) => void
}

/**
 * Guards a response body against stalls and slow retrieval. Only "network time" counts: the
 * time between asking for the next piece and getting it. Time the reader spends elsewhere —
 * waiting for WAN tokens, writing to disk — is left out, so a deliberate throttle never looks
 * like a slow server.
 */
export class BodyWatchdog {
  readonly #o: BodyWatchdogOptions
  #idleTimer: unknown
  #waitingSince: number | undefined
  #netMs = 0
  #bytes = 0
  /** (network time, bytes) samples; the first is at or before the start of the window. */
  readonly #samples: { net: number; bytes: number }[] = [{ net: 0, bytes: 0 }]
  #fired = false

  constructor(options: BodyWatchdogOptions) {
    this.#o = options
  }

  /** The reader now waits for the network. */
  waiting(): void {
    if (this.#fired || this.#waitingSince !== undefined) return
    this.#waitingSince = this.#o.clock.now()
    if (this.#o.idleTimeoutMs > 0) {
      this.#idleTimer = this.#o.timers.setTimeout(
        () => this.#fire(`no data for ${this.#o.idleTimeoutMs} ms`, { phase: 'idle' }),
        this.#o.idleTimeoutMs,
      )
    }
  }

  /** A piece of `n` bytes arrived; the reader is busy with it until the next `waiting()`. */
  received(n: number): void {
    if (this.#waitingSince !== undefined) {
      this.#netMs += Math.max(0, this.#o.clock.now() - this.#waitingSince)
      this.#waitingSince = undefined
    }
    this.#o.timers.clearTimeout(this.#idleTimer)
    this.#idleTimer = undefined
    this.#bytes += n
    this.#checkRate()
  }

  stop(): void {
    this.#fired = true
    this.#o.timers.clearTimeout(this.#idleTimer)
    this.#idleTimer = undefined
  }

  #checkRate(): void {
    const { windowMs } = this.#o
    const floor = this.#o.minBytesPerSec()
    if (floor <= 0 || windowMs <= 0) return
    const net = this.#netMs
    // Samples closer together than 1/32 of the window are merged, so memory stays bounded.
    const last = this.#samples[this.#samples.length - 1]!
    if (this.#samples.length > 1 && net - this.#samples[this.#samples.length - 2]!.net < windowMs / 32) {
      last.net = net
      last.bytes = this.#bytes
    } else {
      this.#samples.push({ net, bytes: this.#bytes })
    }
    while (this.#samples.length > 2 && this.#samples[1]!.net <= net - windowMs) this.#samples.shift()
    const anchor = this.#samples[0]!
    const span = net - anchor.net
    if (span < windowMs) return
    const rate = ((this.#bytes - anchor.bytes) * 1000) / span
    if (rate < floor) {
      this.#fire(`${Math.round(rate)} B/s over ${span} ms is below the minimum of ${floor} B/s`, {
        phase: 'min-rate',
        rate: Math.round(rate),
      })
    }
  }

  #fire(message: string, details: Record<string, unknown>): void {
    if (this.#fired) return
    this.stop()
    this.#o.onTimeout(new UpstreamError('PSW_ERR_WAN_TIMEOUT', message, { details }))
  }
}
