/**
 * A fixed set of reusable buffers: `acquire` waits while all are in use, so whatever reads
 * into them (an ingest streaming a 64 GiB artifact) holds at most `count × size` bytes.
 */
export class BufferPool {
  readonly #free: Buffer[]
  readonly #waiting: Array<(buf: Buffer) => void> = []

  constructor(count: number, size: number) {
    this.#free = Array.from({ length: count }, () => Buffer.allocUnsafeSlow(size))
  }

  /** A free buffer of the pool, as soon as one is free (first come, first served). */
  acquire(): Promise<Buffer> {
    const buf = this.#free.pop()
    if (buf) return Promise.resolve(buf)
    return new Promise((resolve) => this.#waiting.push(resolve))
  }

  /** Gives a buffer back; its contents may be overwritten at once. */
  release(buf: Buffer): void {
    const next = this.#waiting.shift()
    if (next) next(buf)
    else this.#free.push(buf)
  }
}
