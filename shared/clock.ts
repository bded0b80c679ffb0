/** Time source injected into everything that reads the time, so tests can drive it. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number
}

export const systemClock: Clock = { now: () => Date.now() }

/** A clock for tests: starts at `start` and moves only when told. */
export class ManualClock implements Clock {
  #now: number
  constructor(start = Date.UTC(2026, 0, 1)) {
    this.#now = start
  }
  now(): number {
    return this.#now
  }
  set(ms: number): void {
    this.#now = ms
  }
  advance(ms: number): void {
    this.#now += ms
  }
}
