/**
 * Content-addressed chunk store: each chunk lives once in `dir/<first 2 hex>/<sha256 hex>`,
 * whatever bundle it came from. Writes are tmp → fsync → rename → fsync(dir), so a chunk on
 * disk is always complete. `put` checks the hash before anything touches the disk; `read`
 * trusts the file (call `verify` to re-hash it).
 */
import { createHash } from 'node:crypto'
import { type FileHandle, mkdir, open, readdir, stat, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { MAX_CHUNK_SIZE } from '../content/chunking.ts'
import { IntegrityError, mapFsError, StateError, ValidationError } from '../errors.ts'
import { type Logger, silentLogger } from '../log.ts'
import { fsyncDir, TMP_MARKER, writeFileDurable } from './durable-file.ts'
import { KeyedMutex } from './mutex.ts'

/** Upper bound of a chunk (the largest configurable chunk size). */

const HASH_RE = /^[0-9a-f]{64}$/
const SHARD_RE = /^[0-9a-f]{2}$/

export interface ChunkStoreInit {
  /** Directory that holds the shard folders; created by `start()`. */
  dir: string
  log?: Logger
  /** Largest chunk accepted or read (default {@link MAX_CHUNK_SIZE}). */
  maxChunkBytes?: number
}

export interface ChunkStoreStats {
  chunks: number
  bytes: number
}

export interface ChunkOpOptions {
  signal?: AbortSignal
}

export interface ChunkStore {
  /** Creates the directory, removes tmp files left by a crash and counts what is stored. */
  start(): Promise<void>
  /** Waits for running operations; idempotent. */
  stop(): Promise<void>
  has(hashHex: string): Promise<boolean>
  /** Verifies sha256(data) === hashHex, then stores it; `stored: false` if it was already there. */
  put(hashHex: string, data: Uint8Array, options?: ChunkOpOptions): Promise<{ stored: boolean }>
  /**
   * As {@link put}, for a caller that has itself just computed `hashHex` from these very bytes
   * (ingest): stores them without hashing them a second time. Never use it for bytes that
   * arrived from elsewhere with a claimed hash.
   */
  putHashed(hashHex: string, data: Uint8Array, options?: ChunkOpOptions): Promise<{ stored: boolean }>
  /** Reads a whole chunk without re-hashing it. */
  read(hashHex: string, options?: ChunkOpOptions): Promise<Uint8Array>
  /**
   * Reads a chunk expected to be `length` bytes, without re-hashing; undefined when it is not
   * stored or has another length (serving: the requester checks the hash).
   */
  readExact(hashHex: string, length: number): Promise<Uint8Array | undefined>
  /** Re-hashes a stored chunk, streaming; false if the file no longer matches its name. */
  verify(hashHex: string, options?: ChunkOpOptions): Promise<boolean>
  /** Removes a chunk; false if it was not stored. */
  delete(hashHex: string): Promise<boolean>
  /** Where the chunk lives (or would live) on disk. */
  path(hashHex: string): string
  /** Counts kept since `start()`. */
  stats(): ChunkStoreStats
}

/** Throws ValidationError PSW_ERR_INVALID_ARGUMENT unless `hashHex` is 64 lowercase hex digits. */
export function assertChunkHash(hashHex: string): void {
  if (typeof hashHex !== 'string' || !HASH_RE.test(hashHex)) {
    throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', 'chunk hash must be 64 lowercase hex digits', {
      details: { hash: String(hashHex).slice(0, 80) },
    })
  }
}

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | null)?.code === 'ENOENT'
}

function notFound(hashHex: string, cause: unknown): StateError {
  return new StateError('PSW_ERR_NOT_FOUND', `chunk ${hashHex} is not stored`, { cause, details: { hash: hashHex } })
}

/** Creates a chunk store rooted at `init.dir`. */
export function createChunkStore(init: ChunkStoreInit): ChunkStore {
  const { dir, maxChunkBytes = MAX_CHUNK_SIZE } = init
  const log = init.log ?? silentLogger()
  const locks = new KeyedMutex()
  const running = new Set<Promise<unknown>>()
  let started = false
  let chunks = 0
  let bytes = 0

  const pathOf = (hashHex: string): string => {
    assertChunkHash(hashHex)
    return join(dir, hashHex.slice(0, 2), hashHex)
  }

  /** Runs an operation only while started, and lets `stop()` wait for it. */
  function track<T>(fn: () => Promise<T>): Promise<T> {
    if (!started) return Promise.reject(new StateError('PSW_ERR_INTERNAL', 'chunk store is not started'))
    const op = (async () => fn())()
    running.add(op)
    const forget = (): void => {
      running.delete(op)
    }
    op.then(forget, forget)
    return op
  }

  async function exists(file: string): Promise<boolean> {
    try {
      return (await stat(file)).isFile()
    } catch (err) {
      if (isNotFound(err)) return false
      throw err
    }
  }

  async function scan(): Promise<void> {
    chunks = 0
    bytes = 0
    for (const shard of await readdir(dir)) {
      if (!SHARD_RE.test(shard)) continue
      const shardDir = join(dir, shard)
      for (const name of await readdir(shardDir)) {
        const file = join(shardDir, name)
        if (name.includes(TMP_MARKER)) {
          await unlink(file).catch(() => {})
          log.warn({ file }, 'removed partial chunk left by an interrupted write')
        } else if (HASH_RE.test(name)) {
          chunks++
          bytes += (await stat(file)).size
        }
      }
    }
  }

  async function readWith<T>(hashHex: string, fn: (handle: FileHandle, size: number) => Promise<T>): Promise<T> {
    const file = pathOf(hashHex)
    let handle: FileHandle
    try {
      handle = await open(file, 'r')
    } catch (err) {
      throw isNotFound(err) ? notFound(hashHex, err) : err
    }
    try {
      const { size } = await handle.stat()
      if (size > maxChunkBytes) {
        throw new IntegrityError(
          'PSW_ERR_CHUNK_SIZE',
          `stored chunk ${hashHex} is larger than ${maxChunkBytes} bytes`,
          {
            details: { hash: hashHex, size },
          },
        )
      }
      return await fn(handle, size)
    } finally {
      await handle.close()
    }
  }

  async function store(
    hashHex: string,
    data: Uint8Array,
    options: ChunkOpOptions,
    verify: boolean,
  ): Promise<{ stored: boolean }> {
    const file = pathOf(hashHex)
    if (data.byteLength > maxChunkBytes) {
      throw new IntegrityError('PSW_ERR_CHUNK_SIZE', `chunk is larger than ${maxChunkBytes} bytes`, {
        details: { hash: hashHex, size: data.byteLength },
      })
    }
    if (verify) {
      const actual = createHash('sha256').update(data).digest('hex')
      if (actual !== hashHex) {
        throw new IntegrityError('PSW_ERR_CHUNK_HASH', `chunk does not match its SHA-256 ${hashHex}`, {
          details: { expected: hashHex, actual },
        })
      }
    }
    return locks.run(hashHex, async () => {
      if (await exists(file)) return { stored: false }
      const shardDir = join(dir, hashHex.slice(0, 2))
      try {
        if ((await mkdir(shardDir, { recursive: true })) !== undefined) await fsyncDir(dir)
      } catch (err) {
        throw mapFsError(err, `creating ${shardDir}`)
      }
      await writeFileDurable(file, data, options.signal ? { signal: options.signal } : {})
      chunks++
      bytes += data.byteLength
      log.debug({ hash: hashHex, size: data.byteLength }, 'chunk stored')
      return { stored: true }
    })
  }

  return {
    async start() {
      if (started) return
      await mkdir(dir, { recursive: true })
      await scan()
      started = true
      log.debug({ dir, chunks, bytes }, 'chunk store started')
    },

    async stop() {
      if (!started) return
      started = false
      await Promise.allSettled([...running])
    },

    has: (hashHex) => track(() => exists(pathOf(hashHex))),

    put: (hashHex, data, options = {}) => track(() => store(hashHex, data, options, true)),

    putHashed: (hashHex, data, options = {}) => track(() => store(hashHex, data, options, false)),

    read: (hashHex, options = {}) =>
      track(() =>
        readWith(hashHex, async (handle) => {
          const data = await handle.readFile(options.signal ? { signal: options.signal } : {})
          return new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
        }),
      ),

    readExact: (hashHex, length) =>
      track(async () => {
        // The serving fast path: one open, one read of the expected length plus one byte
        // (to notice a longer file), one close; no stat, no growing buffer.
        let handle: FileHandle
        try {
          handle = await open(pathOf(hashHex), 'r')
        } catch (err) {
          if (isNotFound(err)) return undefined
          throw err
        }
        try {
          const buf = Buffer.allocUnsafe(length + 1)
          const { bytesRead } = await handle.read(buf, 0, length + 1, 0)
          return bytesRead === length ? buf.subarray(0, length) : undefined
        } finally {
          await handle.close()
        }
      }),

    verify: (hashHex, options = {}) =>
      track(() =>
        readWith(hashHex, async (handle) => {
          const hash = createHash('sha256')
          const stream = handle.createReadStream({ autoClose: false, highWaterMark: 64 * 1024, start: 0 })
          options.signal?.throwIfAborted()
          for await (const piece of stream) {
            options.signal?.throwIfAborted()
            hash.update(piece as Buffer)
          }
          return hash.digest('hex') === hashHex
        }),
      ),

    delete: (hashHex) =>
      track(() =>
        locks.run(hashHex, async () => {
          const file = pathOf(hashHex)
          let size: number
          try {
            size = (await stat(file)).size
            await unlink(file)
          } catch (err) {
            if (isNotFound(err)) return false
            throw err
          }
          await fsyncDir(join(dir, hashHex.slice(0, 2)))
          chunks--
          bytes -= size
          return true
        }),
      ),

    path: pathOf,

    stats: () => ({ chunks, bytes }),
  }
}
