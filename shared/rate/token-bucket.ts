import { setTimeout as sleep } from 'node:timers/promises'
import type { Clock } from '../clock.ts'

export interface TokenBucketOptions {
  /** Bytes (tokens) per second; 0 means unlimited. */
  rate: number
  /** Largest burst; defaults to one second's worth. */
  burst?: number
  clock: Clock
}

/**
 * A token bucket for byte rates. `take(n)` may go into debt by up to one request, so a
 * request larger than the burst still passes; the debt delays the next caller.
 */
export class TokenBucket {
  readonly #rate: number
  readonly #burst: number
  readonly #clock: Clock
  #tokens: number
  #last: number

  constructor(options: TokenBucketOptions) {
    this.#rate = options.rate
    this.#burst = options.burst ?? options.rate
    this.#clock = options.clock
    this.#tokens = this.#burst
    this.#last = options.clock.now()
  }

  get unlimited(): boolean {
    return this.#rate <= 0
  }

  /** Milliseconds until `n` tokens could be taken (0 = now). Pure arithmetic, no waiting. */
  delayFor(n: number): number {
    if (this.unlimited) return 0
    this.#refill()
    return this.#tokens >= Math.min(n, this.#burst)
      ? 0
      : Math.ceil(((Math.min(n, this.#burst) - this.#tokens) / this.#rate) * 1000)
  }

  async take(n: number, signal?: AbortSignal): Promise<void> {
    if (this.unlimited) return
    for (;;) {
      const wait = this.delayFor(n)
      if (wait === 0) break
      await sleep(wait, undefined, { signal })
    }
    this.#tokens -= n
  }

  #refill(): void {
    const now = this.#clock.now()
    this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#last) / 1000) * this.#rate)
    this.#last = now
  }
}
