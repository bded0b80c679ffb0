import { createHash, type Hash } from 'node:crypto'
import type { FileHandle } from 'node:fs/promises'
import { open } from 'node:fs/promises'
import type { Clock } from '../../shared/clock.ts'
import { hasCode, isPswError, mapFsError, StoreError, UpstreamError } from '../../shared/errors.ts'
import type { Logger } from '../../shared/log.ts'
import { BodyWatchdog } from './body-watchdog.ts'
import type { FeedArtifact } from './feed-types.ts'
import {
  contentLength,
  httpGet,
  isStrongEtag,
  parseContentRange,
  retryAfterMs,
  safeUrl,
  toWanError,
} from './http-range-get.ts'
import type { PartialSidecar, PartialStore } from './partial-store.ts'
import type { WanLimiter } from './wan-limiter.ts'
import type { Timers } from './wan-timers.ts'

/**
 * One attempt at getting an artifact's bytes into `partial/<sha256>`: resume from the sidecar
 * if it is usable (re-hashing the bytes already there), otherwise start over; read the body
 * through the WAN limiter and the stall/slow-retrieval watchdog; checkpoint (fsync, then
 * sidecar) every few MiB and on failure. Resolves with the SHA-256 of the complete partial;
 * the caller compares it. Failures carry codes the caller classifies:
 *
 * - PSW_ERR_WAN_SIZE `kind: 'short'` — the body ended early (resume);
 * - PSW_ERR_WAN_SIZE other kinds — more than declared, or Content-Length/-Range disagree;
 * - PSW_ERR_WAN_HTTP `restart: true` — the server would not resume; the partial is gone;
 * - PSW_ERR_WAN_HTTP `status` / `network`, PSW_ERR_WAN_TIMEOUT, PSW_ERR_DISK_FULL.
 */

export interface AttemptSettings {
  headerTimeoutMs: number
  idleTimeoutMs: number
  minBytesPerSec: number
  minRateWindowMs: number
  checkpointBytes: number
  checkpointMs: number
  maxRedirects: number
  userAgent: string
}

export interface AttemptContext {
  artifact: FeedArtifact
  url: string
  store: PartialStore
  limiter: WanLimiter
  clock: Clock
  timers: Timers
  log: Logger
  signal: AbortSignal
  settings: AttemptSettings
  /** Ignore any partial (the retry after a resumed download failed verification). */
  fromScratch: boolean
  /** The partial now holds this many bytes. */
  onBytes: (bytes: number) => void
  /** Bytes that crossed the WAN (counted even if later discarded). */
  onWanBytes: (n: number) => void
}

/** What the caller needs to know about an attempt, also when it failed. */
export interface AttemptState {
  /** The partial's bytes come from more than one response (resume, or an earlier run). */
  resumed: boolean
  /** Bytes this attempt added to the partial. */
  progressed: number
  /** From Retry-After on a refused request. */
  retryAfterMs?: number
}

export async function runHttpAttempt(ctx: AttemptContext, st: AttemptState): Promise<string> {
  const { artifact, store, signal, settings: s } = ctx
  const { sha256, size } = artifact
  let hash = createHash('sha256')
  let sidecar = await usableSidecar(ctx)
  let offset = sidecar?.bytes ?? 0
  if (offset > 0) {
    await onDisk(`re-reading ${store.partialPath(sha256)}`, () => store.hashPrefix(sha256, offset, hash, signal))
    st.resumed = true
    ctx.onBytes(offset)
    if (offset === size) return hash.digest('hex')
  } else {
    await store.discard(sha256)
    ctx.onBytes(0)
  }

  const headers: Record<string, string> = {}
  if (sidecar && offset > 0) {
    headers.range = `bytes=${offset}-`
    const validator = isStrongEtag(sidecar.etag) ? sidecar.etag : sidecar.lastModified
    if (validator) headers['if-range'] = validator
  }
  const res = await httpGet(ctx.url, {
    headers,
    headerTimeoutMs: s.headerTimeoutMs,
    maxRedirects: s.maxRedirects,
    signal,
    timers: ctx.timers,
    userAgent: s.userAgent,
  })
  const body = res.body
  let fh: FileHandle | undefined
  let complete = false
  const watchdog = new BodyWatchdog({
    clock: ctx.clock,
    timers: ctx.timers,
    idleTimeoutMs: s.idleTimeoutMs,
    windowMs: s.minRateWindowMs,
    // Never demand more than the cap allows, even though throttled time is not counted.
    minBytesPerSec: () => (ctx.limiter.rate > 0 ? Math.min(s.minBytesPerSec, ctx.limiter.rate) : s.minBytesPerSec),
    onTimeout: (err) => body.destroy(err),
  })
  try {
    const etag = header(res.headers.etag)
    const lastModified = header(res.headers['last-modified'])
    let expected: number
    if (offset > 0 && res.status === 206) {
      const range = parseContentRange(header(res.headers['content-range']))
      const entityChanged = isStrongEtag(sidecar?.etag) && etag !== undefined && etag !== sidecar?.etag
      if (!range || range.start !== offset || entityChanged) {
        await store.discard(sha256)
        ctx.onBytes(0)
        throw new UpstreamError(
          'PSW_ERR_WAN_HTTP',
          'the server answered the resume with other content; starting over',
          {
            details: { restart: true, status: 206, contentRange: res.headers['content-range'] },
          },
        )
      }
      if (range.end > size - 1 || (range.total !== undefined && range.total !== size)) {
        throw sizeError(
          'range',
          `Content-Range ${res.headers['content-range']} disagrees with the declared ${size} bytes`,
        )
      }
      expected = range.end - range.start + 1
    } else if (res.status === 200) {
      if (offset > 0) {
        ctx.log.info({ sha256, offset }, 'server sent the whole artifact instead of the rest; partial discarded')
        offset = 0
        hash = createHash('sha256')
        st.resumed = false
        ctx.onBytes(0)
      }
      expected = size
    } else if (offset > 0 && res.status === 416) {
      await store.discard(sha256)
      ctx.onBytes(0)
      throw new UpstreamError('PSW_ERR_WAN_HTTP', 'the server refused the resume range; starting over', {
        details: { restart: true, status: 416 },
      })
    } else {
      st.retryAfterMs = retryAfterMs(res.headers, ctx.clock.now())
      throw new UpstreamError('PSW_ERR_WAN_HTTP', `GET ${safeUrl(res.url)} answered HTTP ${res.status}`, {
        details: { status: res.status },
      })
    }
    const declared = contentLength(res.headers)
    if (declared !== undefined && declared !== expected) {
      throw sizeError('content-length', `Content-Length ${declared} disagrees with the expected ${expected} bytes`)
    }
    if (offset === 0 || sidecar === undefined) {
      sidecar = { format: 'patchswarm.wan-partial/1', url: ctx.url, sha256, size, etag, lastModified, bytes: 0 }
      const first = sidecar
      await onDisk('writing the resume sidecar', () => store.writeSidecar(first))
    }
    const base = sidecar
    fh = await onDisk(`opening ${store.partialPath(sha256)}`, () => store.openPartial(sha256, offset))
    const file = fh
    let position = offset
    let durable = offset
    let lastCheckpoint = ctx.clock.now()
    const checkpoint = async () => {
      if (position === durable) return
      await onDisk(`syncing ${store.partialPath(sha256)}`, () => file.sync())
      await onDisk('writing the resume sidecar', () => store.writeSidecar({ ...base, bytes: position }))
      durable = position
      lastCheckpoint = ctx.clock.now()
    }
    try {
      let received = 0
      watchdog.waiting()
      for await (const piece of body as AsyncIterable<Buffer>) {
        watchdog.received(piece.length)
        received += piece.length
        ctx.onWanBytes(piece.length)
        if (received > expected) throw sizeError('overflow', `more than the declared ${size} bytes arrived`)
        await ctx.limiter.take(piece.length, signal)
        await onDisk(`writing ${store.partialPath(sha256)}`, () => file.write(piece, 0, piece.length, position))
        hash.update(piece)
        position += piece.length
        st.progressed += piece.length
        ctx.onBytes(position)
        if (position - durable >= s.checkpointBytes || ctx.clock.now() - lastCheckpoint >= s.checkpointMs) {
          await checkpoint()
        }
        watchdog.waiting()
      }
      if (position < size) {
        throw sizeError('short', `the body ended after ${position} of ${size} bytes`)
      }
      // Complete: make it durable, so a crash before the rename re-verifies instead of re-downloading.
      await checkpoint()
      complete = true
    } catch (err) {
      // Disk errors are already StoreErrors here; any other errno is the network's.
      const mapped = toWanError(err, signal, `GET ${safeUrl(res.url)}`)
      if (!hasCode(mapped, 'PSW_ERR_DISK_FULL')) {
        await checkpoint().catch((e) => ctx.log.warn({ err: e, sha256 }, 'cannot checkpoint the partial download'))
      }
      throw mapped
    }
    return hash.digest('hex')
  } finally {
    watchdog.stop()
    if (!complete) body.destroy()
    await fh?.close().catch(() => {})
  }
}

/**
 * Copies a local file (USB import) into `partial/<sha256>`, hashing on the way; resolves with
 * the SHA-256. Unreadable source → PSW_ERR_INGEST_SOURCE; wrong size → PSW_ERR_WAN_SIZE.
 */
export async function copyLocalFile(
  ctx: Pick<AttemptContext, 'artifact' | 'store' | 'signal' | 'onBytes'>,
  path: string,
): Promise<string> {
  const { artifact, store, signal } = ctx
  let src: FileHandle
  try {
    src = await open(path, 'r')
  } catch (err) {
    throw new UpstreamError('PSW_ERR_INGEST_SOURCE', `cannot read ${path}`, { cause: err })
  }
  let dst: FileHandle | undefined
  try {
    const stat = await src.stat()
    if (!stat.isFile()) throw new UpstreamError('PSW_ERR_INGEST_SOURCE', `${path} is not a regular file`)
    if (stat.size !== artifact.size) {
      throw sizeError('local-size', `${path} has ${stat.size} bytes, the feed declares ${artifact.size}`)
    }
    await store.discard(artifact.sha256)
    const partial = store.partialPath(artifact.sha256)
    const out = await onDisk(`opening ${partial}`, () => store.openPartial(artifact.sha256, 0))
    dst = out
    const hash: Hash = createHash('sha256')
    let position = 0
    const stream = src.createReadStream({ highWaterMark: 1 << 20, autoClose: false })
    try {
      for await (const piece of stream as AsyncIterable<Buffer>) {
        signal.throwIfAborted()
        if (position + piece.length > artifact.size) throw sizeError('overflow', `${path} grew while being read`)
        await onDisk(`writing ${partial}`, () => out.write(piece, 0, piece.length, position))
        hash.update(piece)
        position += piece.length
        ctx.onBytes(position)
      }
    } catch (err) {
      // Errors of the destination are StoreErrors already; the rest come from reading the source.
      if (signal.aborted || isPswError(err)) throw err
      throw new UpstreamError('PSW_ERR_INGEST_SOURCE', `reading ${path} failed`, { cause: err })
    }
    if (position !== artifact.size) throw sizeError('short', `${path} shrank while being read`)
    await onDisk(`syncing ${partial}`, () => out.sync())
    return hash.digest('hex')
  } finally {
    await dst?.close().catch(() => {})
    await src.close().catch(() => {})
  }
}

/** Runs a file operation; its errors become StoreErrors (ENOSPC → PSW_ERR_DISK_FULL). */
async function onDisk<T>(what: string, op: () => Promise<T>): Promise<T> {
  try {
    return await op()
  } catch (err) {
    if (isPswError(err) || (err as Error)?.name === 'AbortError') throw err
    const mapped = mapFsError(err, what)
    if (mapped !== err) throw mapped
    const code = (err as NodeJS.ErrnoException)?.code
    throw new StoreError('PSW_ERR_DATA_DIR', `${what} failed${code ? ` (${code})` : ''}`, { cause: err })
  }
}

function sizeError(kind: string, message: string): UpstreamError {
  return new UpstreamError('PSW_ERR_WAN_SIZE', message, { details: { kind } })
}

function header(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value
}

/** The sidecar if the partial it describes can be resumed for this artifact and URL. */
async function usableSidecar(ctx: AttemptContext): Promise<PartialSidecar | undefined> {
  const { artifact, store } = ctx
  if (ctx.fromScratch) return undefined
  const sidecar = await store.readSidecar(artifact.sha256)
  if (!sidecar || sidecar.bytes === 0) return undefined
  if (sidecar.url !== ctx.url || sidecar.size !== artifact.size || sidecar.sha256 !== artifact.sha256) return undefined
  if (sidecar.bytes > artifact.size || (await store.partialSize(artifact.sha256)) < sidecar.bytes) return undefined
  return sidecar
}
