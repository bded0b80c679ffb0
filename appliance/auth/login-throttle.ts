/**
 * Failed-login limits (faults row 21): at most `perUser` failures per window for one
 * (client address, user name) and `perAddress` for one client address. Only failures count,
 * so a user who logs in often is never locked out, and failures for alice from one address
 * lock neither bob nor alice from another address. In memory: a restart forgets the counts.
 */
import type { Clock } from '../../shared/clock.ts'

export interface LoginThrottleOptions {
  /** Default 5. */
  perUser?: number
  /** Default 50. */
  perAddress?: number
  /** Default 15 min. */
  windowMs?: number
  /** Most keys tracked at once (oldest dropped beyond); default 10 000. */
  maxKeys?: number
}

interface Window {
  start: number
  failures: number
}

export class LoginThrottle {
  readonly #clock: Clock
  readonly #perUser: number
  readonly #perAddress: number
  readonly #windowMs: number
  readonly #maxKeys: number
  readonly #windows = new Map<string, Window>()

  constructor(clock: Clock, options: LoginThrottleOptions = {}) {
    this.#clock = clock
    this.#perUser = options.perUser ?? 5
    this.#perAddress = options.perAddress ?? 50
    this.#windowMs = options.windowMs ?? 15 * 60_000
    this.#maxKeys = options.maxKeys ?? 10_000
  }

  /** Seconds to wait before trying again, or 0 when a login attempt may go ahead. */
  retryAfter(address: string, username: string): number {
    const now = this.#clock.now()
    const wait = Math.max(
      this.#wait(`u\0${address}\0${username}`, this.#perUser, now),
      this.#wait(`a\0${address}`, this.#perAddress, now),
    )
    return Math.ceil(wait / 1000)
  }

  /** Counts a failed login. */
  failed(address: string, username: string): void {
    const now = this.#clock.now()
    this.#count(`u\0${address}\0${username}`, now)
    this.#count(`a\0${address}`, now)
  }

  #wait(key: string, max: number, now: number): number {
    const w = this.#windows.get(key)
    if (!w) return 0
    if (now - w.start >= this.#windowMs) {
      this.#windows.delete(key)
      return 0
    }
    return w.failures >= max ? w.start + this.#windowMs - now : 0
  }

  #count(key: string, now: number): void {
    const w = this.#windows.get(key)
    if (w && now - w.start < this.#windowMs) {
      w.failures++
      return
    }
    this.#windows.delete(key)
    this.#windows.set(key, { start: now, failures: 1 })
    while (this.#windows.size > this.#maxKeys) {
      const oldest = this.#windows.keys().next().value
      if (oldest === undefined) break
      this.#windows.delete(oldest)
    }
  }
}
