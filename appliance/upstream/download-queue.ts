/**
 * A counting semaphore with two priority classes: `emergency` waiters are admitted before any
 * `normal` one, each class first come, first served. A download holds a slot only while it
 * talks to the network, not while it waits to retry.
 */
export type DownloadPriority = 'emergency' | 'normal'

interface Waiter {
  admit: () => void
}

export class DownloadQueue {
  readonly #limit: number
  #active = 0
  readonly #waiting: Record<DownloadPriority, Waiter[]> = { emergency: [], normal: [] }

  constructor(concurrency: number) {
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError('concurrency must be an integer >= 1')
    this.#limit = concurrency
  }

  get active(): number {
    return this.#active
  }

  get queued(): number {
    return this.#waiting.emergency.length + this.#waiting.normal.length
  }

  /**
   * Waits for a slot; resolves with the function that gives it back (call it exactly once).
   * Rejects with the signal's reason if it aborts while queued.
   */
  acquire(priority: DownloadPriority, signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(signal.reason)
    if (this.#active < this.#limit && this.queued === 0) {
      this.#active++
      return Promise.resolve(this.#releaser())
    }
    return new Promise((resolve, reject) => {
      const list = this.#waiting[priority]
      const onAbort = () => {
        const i = list.indexOf(waiter)
        if (i >= 0) list.splice(i, 1)
        reject(signal?.reason)
      }
      const waiter: Waiter = {
        admit: () => {
          signal?.removeEventListener('abort', onAbort)
          resolve(this.#releaser())
        },
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      list.push(waiter)
    })
  }

  #releaser(): () => void {
    let released = false
    return () => {
      if (released) return
      released = true
      this.#active--
      const next = this.#waiting.emergency.shift() ?? this.#waiting.normal.shift()
      if (next) {
        this.#active++
        next.admit()
      }
    }
  }
}
