import { createHash, webcrypto } from 'node:crypto'
import { Uint8ArrayList } from 'uint8arraylist'
import { IntegrityError, ProtocolError } from '../errors.ts'
import type { ByteStream } from './byte-stream.ts'
import {
  ChunkErrorReason,
  DATA_HEADER_BYTES,
  ERROR_BYTES,
  encodeCancel,
  encodeRequest,
  MSG_DATA,
  MSG_ERROR,
} from './chunk-codec.ts'

interface Pending {
  hash: string
  length: number
  resolve: (data: Uint8Array) => void
  reject: (err: Error) => void
  body?: Buffer
  into?: Buffer
  filled: number
}

/** Chunks up to this size are hashed on the event loop, larger ones on the thread pool. */
const SYNC_HASH_MAX_BYTES = 1 << 20

/**
 * Client side of one chunk-protocol stream. `fetch()` resolves only with bytes whose SHA-256
 * matches the requested (signed) hash; a response longer than the expected length is a
 * protocol violation and ends the stream at once (endless-data defence).
 */
export class ChunkClient {
  readonly #stream: ByteStream
  readonly #pending = new Map<number, Pending>()
  /**
   * Ids cancelled by us whose answer is still due: id → expected length. The server answers
   * every request once (its data, or an error such as CANCELLED); the entry goes then.
   */
  readonly #cancelled = new Map<number, number>()
  readonly #buf = new Uint8ArrayList()
  #nextId = 1
  #closed: Error | undefined
  #current: { id: number; remaining: number; pending?: Pending } | undefined
  readonly done: Promise<void>

  constructor(stream: ByteStream) {
    this.#stream = stream
    this.done = this.#readLoop()
  }

  /** Whether the stream has ended; a closed client fails every fetch. */
  get closed(): boolean {
    return this.#closed !== undefined
  }

  /**
   * Requests one chunk; resolves with verified bytes. With `into`, the bytes are received
   * into that buffer (≥ length) instead of a fresh one, so a caller can recycle buffers.
   */
  fetch(
    hashHex: string,
    length: number,
    options: { signal?: AbortSignal; timeoutMs?: number; into?: Buffer } = {},
  ): Promise<Uint8Array> {
    if (this.#closed) return Promise.reject(this.#closed)
    const id = this.#nextId
    this.#nextId = (this.#nextId % 0xffff_fffe) + 1
    const { promise, resolve, reject } = Promise.withResolvers<Uint8Array>()
    const entry: Pending = { hash: hashHex, length, resolve, reject, filled: 0, into: options.into }
    this.#pending.set(id, entry)
    if (options.timeoutMs !== undefined) {
      const timer = setTimeout(
        () =>
          this.#cancel(
            id,
            new ProtocolError(
              'PSW_ERR_PEER_TIMEOUT',
              `chunk ${hashHex.slice(0, 12)} timed out after ${options.timeoutMs} ms`,
            ),
          ),
        options.timeoutMs,
      )
      const clear = () => clearTimeout(timer)
      promise.then(clear, clear)
    }
    const signal = options.signal
    if (signal) {
      const onAbort = () => this.#cancel(id, signal.reason instanceof Error ? signal.reason : new Error('aborted'))
      if (signal.aborted) onAbort()
      else {
        signal.addEventListener('abort', onAbort, { once: true })
        promise.then(
          () => signal.removeEventListener('abort', onAbort),
          () => signal.removeEventListener('abort', onAbort),
        )
      }
    }
    if (!this.#closed && this.#pending.has(id))
      this.#stream.send(encodeRequest({ id, hash: Buffer.from(hashHex, 'hex'), length }))
    return promise
  }

  /** Closes our side and waits (at most `timeoutMs`) for the peer's; then resets the stream. */
  async close(timeoutMs = 5000): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs)
    })
    const closed = (async () => {
      if (this.#stream.status === 'open') await this.#stream.close().catch(() => {})
      await this.done
    })()
    try {
      if ((await Promise.race([closed, timedOut])) === 'timeout') {
        // A half-open connection (peer gone without a FIN) would otherwise hold us for minutes.
        this.abort(new ProtocolError('PSW_ERR_PEER_TIMEOUT', 'peer did not close the chunk stream'))
      }
    } finally {
      clearTimeout(timer)
    }
  }

  abort(err: Error): void {
    this.#fail(err)
    this.#stream.abort(err)
  }

  #cancel(id: number, err: Error): void {
    const p = this.#pending.get(id)
    if (!p) return
    this.#pending.delete(id)
    if (this.#current?.id === id) this.#current.pending = undefined
    else this.#cancelled.set(id, p.length)
    // Our side may be closed already (the client is being closed): then the peer learns
    // nothing, and its answer, if any, is read and discarded as usual.
    const stream = this.#stream as ByteStream & { writeStatus?: string }
    if (stream.status === 'open' && (stream.writeStatus === undefined || stream.writeStatus === 'writable')) {
      try {
        stream.send(encodeCancel(id))
      } catch {
        // closed between the check and the send: nothing to tell
      }
    }
    p.reject(err)
  }

  #fail(err: Error): void {
    this.#closed ??= err
    for (const p of this.#pending.values()) p.reject(this.#closed)
    this.#pending.clear()
  }

  async #readLoop(): Promise<void> {
    try {
      for await (const data of this.#stream) {
        // Bodies are copied straight from the received pieces into the chunk buffer; only
        // the few header bytes go through #buf.
        if (data instanceof Uint8Array) this.#onBytes(data)
        else for (const piece of data) this.#onBytes(piece)
      }
      this.#fail(new ProtocolError('PSW_ERR_PROTOCOL', 'peer closed the chunk stream'))
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err))
      this.#fail(e)
      if (this.#stream.status === 'open') this.#stream.abort(e)
    }
  }

  #onBytes(piece: Uint8Array): void {
    let off = 0
    while (off < piece.byteLength) {
      const cur = this.#current
      if (cur) {
        const n = Math.min(cur.remaining, piece.byteLength - off)
        const p = cur.pending
        if (p?.body) {
          p.body.set(piece.subarray(off, off + n), p.filled)
          p.filled += n
        }
        off += n
        cur.remaining -= n
        if (cur.remaining === 0) {
          this.#current = undefined
          if (p) this.#complete(cur.id, p)
        }
        continue
      }
      // A header: DATA (9 bytes) or ERROR (6 bytes), possibly split across pieces.
      const type = this.#buf.byteLength > 0 ? this.#buf.get(0) : piece[off]
      const size = type === MSG_DATA ? DATA_HEADER_BYTES : type === MSG_ERROR ? ERROR_BYTES : 0
      if (size === 0)
        throw new ProtocolError('PSW_ERR_PROTOCOL', `unknown chunk message type 0x${(type ?? 0).toString(16)}`)
      const take = Math.min(size - this.#buf.byteLength, piece.byteLength - off)
      this.#buf.append(piece.subarray(off, off + take))
      off += take
      if (this.#buf.byteLength === size) {
        this.#onHeader(type!)
        this.#buf.consume(size)
      }
    }
  }

  #onHeader(type: number): void {
    const id = this.#buf.getUint32(1)
    if (type === MSG_DATA) {
      const length = this.#buf.getUint32(5)
      const pending = this.#pending.get(id)
      const expected = pending?.length ?? this.#cancelled.get(id)
      if (expected === undefined) throw new ProtocolError('PSW_ERR_PROTOCOL', `data for unknown request ${id}`)
      if (length !== expected) {
        throw new IntegrityError('PSW_ERR_CHUNK_SIZE', `peer sent ${length} bytes for a ${expected}-byte chunk`)
      }
      this.#cancelled.delete(id)
      if (pending) {
        pending.body =
          pending.into && pending.into.byteLength >= length
            ? pending.into.subarray(0, length)
            : Buffer.allocUnsafe(length)
      }
      this.#current = { id, remaining: length, pending }
      return
    }
    const reason = this.#buf.get(5)
    this.#cancelled.delete(id)
    const p = this.#pending.get(id)
    if (!p) return
    this.#pending.delete(id)
    p.reject(
      reason === ChunkErrorReason.NOT_FOUND
        ? new ProtocolError('PSW_ERR_CHUNK_UNAVAILABLE', `peer does not have chunk ${p.hash.slice(0, 12)}`)
        : reason === ChunkErrorReason.BUSY || reason === ChunkErrorReason.TOO_MANY_REQUESTS
          ? new ProtocolError('PSW_ERR_PEER_BUSY', `peer is busy (chunk ${p.hash.slice(0, 12)})`)
          : reason === ChunkErrorReason.ELSEWHERE
            ? new ProtocolError('PSW_ERR_CHUNK_ELSEWHERE', `fetch chunk ${p.hash.slice(0, 12)} from peers`)
            : new ProtocolError('PSW_ERR_PROTOCOL', `peer refused chunk request (reason ${reason})`),
    )
  }

  #complete(id: number, p: Pending): void {
    this.#pending.delete(id)
    const body = p.body!
    const check = (digest: string) => {
      if (digest === p.hash) p.resolve(body)
      else p.reject(new IntegrityError('PSW_ERR_CHUNK_HASH', `chunk ${p.hash.slice(0, 12)} failed its hash check`))
    }
    // Chunks up to 1 MiB (the usual sizes) are hashed here: under 1 ms, and the thread pool's
    // copy and hand-offs cost more than they save when every core is busy (8-agent
    // bench:swarm: 7% less CPU). Larger chunks go to WebCrypto on the libuv thread pool, so
    // the event loop keeps decrypting the next one meanwhile.
    if (body.byteLength <= SYNC_HASH_MAX_BYTES) {
      check(createHash('sha256').update(body).digest('hex'))
      return
    }
    webcrypto.subtle.digest('SHA-256', body).then(
      (digest) => check(Buffer.from(digest).toString('hex')),
      (err) => p.reject(err instanceof Error ? err : new Error(String(err))),
    )
  }
}
