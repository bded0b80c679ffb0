import { createHash } from 'node:crypto'
import { mkdir, open, stat } from 'node:fs/promises'
import { dirname } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from 'pino'
import { chunkLength } from '../shared/content/chunking.ts'
import { isPswError, mapFsError, ProtocolError } from '../shared/errors.ts'
import type { Manifest } from '../shared/metadata/manifest-schema.ts'
import type { TokenBucket } from '../shared/rate/token-bucket.ts'

/** Anything that can deliver a verified chunk: the appliance, a peer (swarm issue). */
export interface ChunkFetcher {
  /** Resolves with bytes matching `hashHex`; rejects PSW_ERR_PEER_TIMEOUT after `timeoutMs`. */
  fetch(
    hashHex: string,
    length: number,
    options: { signal: AbortSignal; timeoutMs: number; into?: Buffer },
  ): Promise<Uint8Array>
}

export interface DownloadOptions {
  manifest: Manifest
  partPath: string
  fetcher: ChunkFetcher
  /** Requests in flight; memory ≈ window × chunk size. */
  window: number
  signal?: AbortSignal
  log: Logger
  maxAttempts?: number
  /** Caps this download's rate (bytes/s); shared buckets cap several downloads together. */
  rateLimit?: TokenBucket
  onProgress?: (progress: { have: number; total: number; fetchedBytes: number }) => void
}

export interface DownloadResult {
  fetchedChunks: number
  fetchedBytes: number
  reusedChunks: number
  seconds: number
}

/** A download flushes its file to disk in the background every this many bytes. */
const SYNC_EVERY_BYTES = 32 << 20

/** Per-request timeout, scaled by size (Kraken: 4 s + 4 s per MB). */
export function requestTimeoutMs(length: number): number {
  return 4000 + Math.ceil((4000 * length) / 1_000_000)
}

/**
 * Which chunks of a partial download are already good. Every chunk on disk is re-hashed,
 * so a crash at any moment (kill -9 mid-write) costs at most the chunks in flight.
 */
export async function scanPartial(partPath: string, manifest: Manifest): Promise<boolean[]> {
  const { size, chunkSize, chunks } = manifest.content
  const have = new Array<boolean>(chunks.length).fill(false)
  let fileSize: number
  try {
    fileSize = (await stat(partPath)).size
  } catch {
    return have
  }
  const fh = await open(partPath, 'r')
  try {
    const buf = Buffer.allocUnsafe(chunkSize)
    for (let i = 0; i < chunks.length; i++) {
      const len = chunkLength(i, size, chunkSize)
      if (i * chunkSize + len > fileSize) break
      const { bytesRead } = await fh.read(buf, 0, len, i * chunkSize)
      have[i] = bytesRead === len && createHash('sha256').update(buf.subarray(0, len)).digest('hex') === chunks[i]
    }
  } finally {
    await fh.close()
  }
  return have
}

/**
 * Fetches the chunks a partial download lacks, `window` at a time, writing each verified
 * chunk at its offset. Failed chunks are retried with backoff; the file is fsynced at the end.
 */
export async function downloadBundle(options: DownloadOptions): Promise<DownloadResult> {
  const { manifest, partPath, log } = options
  const { size, chunkSize, chunks } = manifest.content
  const started = performance.now()
  const maxAttempts = options.maxAttempts ?? 5
  await mkdir(dirname(partPath), { recursive: true })
  const have = await scanPartial(partPath, manifest)
  const reusedChunks = have.filter(Boolean).length
  const missing = have.flatMap((h, i) => (h ? [] : [i]))
  if (reusedChunks > 0) log.info({ reusedChunks, missing: missing.length }, 'resuming download from verified chunks')
  let haveCount = reusedChunks
  let fetchedBytes = 0
  const fh = await open(partPath, reusedChunks > 0 ? 'r+' : 'w+').catch((err) => {
    throw mapFsError(err, 'opening the download file')
  })
  try {
    if ((await fh.stat()).size > size) await fh.truncate(size)
    let next = 0
    let firstError: unknown
    // The first chunk that fails for good stops the other workers too.
    const stopAll = new AbortController()
    const outer = options.signal ? AbortSignal.any([options.signal, stopAll.signal]) : stopAll.signal
    // Receive buffers are recycled: the download allocates about 1.5 × window chunk buffers in
    // all, instead of one per chunk that the garbage collector must find later.
    const pool: Buffer[] = []
    const fetchOne = async (index: number): Promise<Uint8Array> => {
      const len = chunkLength(index, size, chunkSize)
      const into = pool.pop() ?? Buffer.allocUnsafe(chunkSize)
      for (let attempt = 1; ; attempt++) {
        outer.throwIfAborted()
        try {
          // Requests queue behind each other on the stream: allow for the whole window.
          return await options.fetcher.fetch(chunks[index]!, len, {
            signal: outer,
            timeoutMs: requestTimeoutMs(len * options.window),
            into,
          })
        } catch (err) {
          outer.throwIfAborted()
          const code = isPswError(err) ? err.code : undefined
          log.warn({ chunk: index, attempt, code, err: isPswError(err) ? undefined : err }, 'chunk fetch failed')
          // The same source will send the same bad bytes: give up on it sooner.
          const integrity = code === 'PSW_ERR_CHUNK_HASH' || code === 'PSW_ERR_CHUNK_SIZE'
          if (attempt >= (integrity ? Math.min(2, maxAttempts) : maxAttempts)) {
            if (isPswError(err)) throw err
            throw new ProtocolError('PSW_ERR_PEER_TIMEOUT', `chunk ${index} failed ${attempt} times`, { cause: err })
          }
          await sleep(Math.min(5000, 100 * 2 ** attempt), undefined, { signal: outer })
        }
      }
    }
    // A worker issues its next request while its last chunk is still being written; the
    // writes in flight are capped at half the window, so memory stays ≈ 1.5 × window chunks.
    const writes = new Set<Promise<void>>()
    let unsynced = 0
    let syncing: Promise<void> | undefined
    const maxWrites = Math.max(1, options.window >> 1)
    const write = (index: number, data: Uint8Array) => {
      const w = fh
        .write(data, 0, data.byteLength, index * chunkSize)
        .then(() => {
          // A full-size chunk received into a pooled buffer goes back to the pool.
          if (data.byteLength === chunkSize && Buffer.isBuffer(data)) pool.push(data)
          unsynced += data.byteLength
          if (unsynced >= SYNC_EVERY_BYTES && !syncing) {
            // Flush to disk while downloading, so the final fsync has little left to do.
            unsynced = 0
            syncing = fh.datasync().finally(() => {
              syncing = undefined
            })
            syncing.catch(() => {}) // the final sync reports disk errors
          }
          haveCount++
          fetchedBytes += data.byteLength
          options.onProgress?.({ have: haveCount, total: chunks.length, fetchedBytes })
        })
        .catch((err) => {
          // Never left rejected without a handler: record it and stop everything.
          firstError ??= mapFsError(err, 'writing a chunk')
          stopAll.abort(firstError)
        })
        .finally(() => writes.delete(w))
      writes.add(w)
    }
    const worker = async () => {
      while (next < missing.length && !outer.aborted) {
        const index = missing[next++]!
        await options.rateLimit?.take(chunkLength(index, size, chunkSize), outer)
        const data = await fetchOne(index)
        while (writes.size >= maxWrites) await Promise.race(writes)
        write(index, data)
      }
    }
    const workers = Array.from({ length: Math.min(options.window, Math.max(1, missing.length)) }, () =>
      worker().catch((err) => {
        firstError ??= err
        stopAll.abort(err)
      }),
    )
    await Promise.all(workers)
    await Promise.all([...writes])
    if (firstError !== undefined) throw firstError
    options.signal?.throwIfAborted()
    await syncing?.catch(() => {})
    await fh.sync()
  } finally {
    await fh.close()
  }
  return {
    fetchedChunks: missing.length,
    fetchedBytes,
    reusedChunks,
    seconds: (performance.now() - started) / 1000,
  }
}
