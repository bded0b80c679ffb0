/**
 * In-process serialisation for read-modify-write sequences (counters, single-use token
 * consumption, puts of the same chunk). A lock is a promise chain: each caller waits for the
 * previous holder to settle, whatever its outcome. Nothing here is shared across processes;
 * LevelDB's own lock keeps a second process out of the data directory.
 */

/** A FIFO mutual-exclusion lock. */
export class Mutex {
  #tail: Promise<void> = Promise.resolve()
  #pending = 0

  /** Whether a holder is running or waiting. */
  get locked(): boolean {
    return this.#pending > 0
  }

  /** Runs `fn` once every earlier caller has finished; resolves or rejects with its outcome. */
  async runExclusive<T>(fn: () => T | Promise<T>): Promise<T> {
    const previous = this.#tail
    let release!: () => void
    this.#tail = new Promise<void>((resolve) => {
      release = resolve
    })
    this.#pending++
    try {
      await previous
      return await fn()
    } finally {
      this.#pending--
      release()
    }
  }
}

/**
 * One {@link Mutex} per key, created on demand and dropped when idle, so memory stays
 * proportional to the keys in use, not to the keys ever seen.
 */
export class KeyedMutex {
  readonly #locks = new Map<string, Mutex>()

  /** Runs `fn` exclusively with respect to other calls for the same `key`. */
  async run<T>(key: string, fn: () => T | Promise<T>): Promise<T> {
    let mutex = this.#locks.get(key)
    if (mutex === undefined) {
      mutex = new Mutex()
      this.#locks.set(key, mutex)
    }
    try {
      return await mutex.runExclusive(fn)
    } finally {
      if (!mutex.locked && this.#locks.get(key) === mutex) this.#locks.delete(key)
    }
  }

  /** Number of keys with a running or waiting holder. */
  get size(): number {
    return this.#locks.size
  }
}
