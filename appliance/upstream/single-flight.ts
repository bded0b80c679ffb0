interface Flight<C, T> {
  context: C
  controller: AbortController
  waiters: number
  promise: Promise<T>
  /** Settles (never rejects) when the work has finished, cleanup included. */
  settled: Promise<void>
}

/**
 * One piece of work per key, however many callers ask: later callers join the running flight
 * and get the same result. A caller's signal only detaches that caller; when the last caller
 * leaves, the work is aborted, and a new flight for the key starts only after the old one has
 * finished cleaning up (so two never touch the same files).
 */
export class SingleFlight<C, T> {
  readonly #flights = new Map<string, Flight<C, T>>()
  readonly #draining = new Map<string, Promise<void>>()
  readonly #onAbandoned: ((key: string) => void) | undefined

  constructor(onAbandoned?: (key: string) => void) {
    this.#onAbandoned = onAbandoned
  }

  /** The context of the flight running for `key`. */
  context(key: string): C | undefined {
    return this.#flights.get(key)?.context
  }

  contexts(): C[] {
    return [...this.#flights.values()].map((f) => f.context)
  }

  /**
   * Joins the flight for `key`, or starts one: `create` makes its context and `work` runs with
   * a signal that aborts when every caller has left (or `abortAll`).
   */
  join(
    key: string,
    create: () => C,
    work: (context: C, signal: AbortSignal) => Promise<T>,
    signal?: AbortSignal,
  ): Promise<T> {
    if (signal?.aborted) return Promise.reject(signal.reason)
    let flight = this.#flights.get(key)
    if (!flight) {
      const controller = new AbortController()
      const context = create()
      const previous = this.#draining.get(key)
      const promise = previous
        ? previous.then(() => work(context, controller.signal))
        : Promise.resolve().then(() => work(context, controller.signal))
      const settled = promise.then(
        () => {},
        () => {},
      )
      const created: Flight<C, T> = { context, controller, waiters: 0, promise, settled }
      void settled.then(() => {
        if (this.#flights.get(key) === created) this.#flights.delete(key)
      })
      this.#flights.set(key, created)
      flight = created
    }
    return this.#attach(key, flight, signal)
  }

  /** Aborts every flight and waits until all of them (and abandoned ones) have finished. */
  async abortAll(reason: unknown): Promise<void> {
    const settling = [...this.#flights.values()].map((f) => {
      f.controller.abort(reason)
      return f.settled
    })
    await Promise.all([...settling, ...this.#draining.values()])
  }

  #attach(key: string, flight: Flight<C, T>, signal: AbortSignal | undefined): Promise<T> {
    flight.waiters++
    return new Promise<T>((resolve, reject) => {
      let done = false
      const finish = () => {
        done = true
        flight.waiters--
        signal?.removeEventListener('abort', onAbort)
      }
      const onAbort = () => {
        if (done) return
        finish()
        reject(signal?.reason)
        if (flight.waiters === 0 && this.#flights.get(key) === flight) this.#abandon(key, flight)
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      flight.promise.then(
        (value) => {
          if (done) return
          finish()
          resolve(value)
        },
        (err) => {
          if (done) return
          finish()
          reject(err)
        },
      )
    })
  }

  #abandon(key: string, flight: Flight<C, T>): void {
    this.#flights.delete(key)
    const drained: Promise<void> = flight.settled.then(() => {
      if (this.#draining.get(key) === drained) this.#draining.delete(key)
    })
    this.#draining.set(key, drained)
    flight.controller.abort(new DOMException('every caller gave up', 'AbortError'))
    this.#onAbandoned?.(key)
  }
}
