/**
 * Reads bundle tars from an `AsyncIterable<Uint8Array>` supplied by the caller (which verifies
 * every chunk against its signed hash as it reads it), never from a path, so what is checked
 * and installed is exactly the verified bytes. Pass 1 {@link scanBundle} validates the whole
 * archive without writing; pass 2 {@link extractBundle} re-validates while writing.
 *
 * Both read the patchswarm bundle layout (bundle.json + payload/) by default, or with
 * `layout: 'plain'` an ordinary tar (raw content: a vendor's own archive), with the same guard.
 *
 * Ownership: the reader keeps references to the yielded chunks until they are parsed, so the
 * iterable must not reuse or mutate a chunk after yielding it (Node streams do not).
 */
import { createHash } from 'node:crypto'
import { chmod, mkdir, open, readdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import * as tar from 'tar-stream'
import { BundleGuardError, IntegrityError, mapFsError, PswError, ValidationError } from '../errors.ts'
import { fsyncDir } from '../store/durable-file.ts'
import { isErrno, waitDrain, writeAll } from './fs-util.ts'
import {
  BundleGuard,
  type BundleMeta,
  type PayloadEntry,
  parseBundleMeta,
  type TarLayout,
  type TarLimits,
} from './tar-guard.ts'

/** Options of {@link scanBundle}. */
export interface ScanOptions {
  limits?: Partial<TarLimits>
  signal?: AbortSignal
  /** `bundle` (default): bundle.json + payload/; `plain`: an ordinary tar, all payload. */
  layout?: TarLayout
}

/** A validated bundle: its metadata (none for a plain tar) and payload entries in archive order. */
export interface ScanResult {
  meta?: BundleMeta
  entries: PayloadEntry[]
}

/** Options of {@link extractBundle}. */
export interface ExtractOptions extends ScanOptions {
  /** Fresh staging directory: created if missing, must be empty. */
  dir: string
  /** The result of a previous {@link scanBundle}; the archive must match it entry for entry. */
  plan?: ScanResult
  /** Fault injection for tests: called before each entry is written. */
  faultHook?: (path: string) => void | Promise<void>
}

/** An extracted entry; files carry the SHA-256 (hex) of the bytes written. */
export interface ExtractedEntry extends PayloadEntry {
  sha256?: string
}

/** The result of {@link extractBundle}. */
export interface ExtractResult {
  meta?: BundleMeta
  entries: ExtractedEntry[]
}

type Visitor = (entry: PayloadEntry, data: AsyncIterable<Buffer>) => Promise<ExtractedEntry>

const invalid = (message: string, cause?: unknown) =>
  new BundleGuardError('PSW_ERR_TAR_INVALID', message, cause === undefined ? {} : { cause })
const differs = (what: string) =>
  new IntegrityError('PSW_ERR_BUNDLE_HASH', `bundle differs from the scanned bundle (${what})`)

async function readData(data: AsyncIterable<Buffer>, size: number, keep: boolean): Promise<Buffer> {
  const chunks: Buffer[] = []
  let n = 0
  for await (const chunk of data) {
    n += chunk.byteLength
    if (keep) chunks.push(chunk)
  }
  if (n !== size) throw invalid(`tar entry has ${n} bytes, header says ${size}`)
  return Buffer.concat(chunks)
}

/** Feeds the input into the parser with backpressure; records the input's own failure. */
async function pump(
  input: AsyncIterable<Uint8Array>,
  extract: tar.Extract,
  failure: { error?: unknown },
  signal: AbortSignal | undefined,
) {
  try {
    for await (const chunk of input) {
      if (extract.destroyed) return
      signal?.throwIfAborted()
      const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
      if (!extract.write(buf) && !(await waitDrain(extract))) return
    }
    extract.end(null)
  } catch (error) {
    failure.error = error ?? new Error('input failed')
    extract.destroy(error as Error)
  }
}

/** The shared driver of both passes. */
async function readBundle(input: AsyncIterable<Uint8Array>, opts: ScanOptions, visit?: Visitor, plan?: ScanResult) {
  const { signal } = opts
  const guard = new BundleGuard(opts.limits, opts.layout)
  signal?.throwIfAborted()
  const extract = tar.extract()
  const failure: { error?: unknown } = {}
  const pumping = pump(input, extract, failure, signal)
  const entries: ExtractedEntry[] = []
  let meta: BundleMeta | undefined
  try {
    for await (const item of extract) {
      signal?.throwIfAborted()
      const data = item as unknown as AsyncIterable<Buffer>
      const accepted = guard.accept(item.header)
      if (accepted.kind === 'meta') {
        meta = parseBundleMeta(await readData(data, accepted.size, true), guard.limits)
        guard.setMeta(meta)
        if (plan && JSON.stringify(plan.meta) !== JSON.stringify(meta)) throw differs('bundle.json')
      } else if (accepted.kind === 'root') {
        await readData(data, 0, false)
      } else {
        const e = accepted.entry
        const p = plan?.entries[entries.length]
        if (plan && (p?.path !== e.path || p.type !== e.type || p.size !== e.size || p.mode !== e.mode)) {
          throw differs(`entry ${entries.length}: ${e.path}`)
        }
        if (visit) entries.push(await visit(e, data))
        else {
          await readData(data, e.size, false)
          entries.push(e)
        }
      }
    }
    meta = guard.finish()
    if (plan && plan.entries.length !== entries.length) throw differs('entry count')
  } catch (err) {
    extract.destroy()
    await pumping
    if ('error' in failure) throw failure.error
    if (signal?.aborted) throw signal.reason
    if (err instanceof PswError) throw err
    if (isErrno(err)) throw mapFsError(err, 'extracting bundle')
    throw invalid(`bundle is not a well-formed tar: ${(err as Error)?.message}`, err)
  }
  await pumping
  return meta === undefined ? { entries } : { meta, entries }
}

/**
 * Pass 1: validates the whole bundle (guard rules, metadata, declared sizes) and lists its
 * payload without writing anything. File data is read only to skip it.
 * Errors: BundleGuardError (PSW_ERR_TAR_*, PSW_ERR_BUNDLE_METADATA), or the input's own error.
 */
export async function scanBundle(input: AsyncIterable<Uint8Array>, options: ScanOptions = {}): Promise<ScanResult> {
  return readBundle(input, options)
}

/**
 * Pass 2: writes the payload into `options.dir`, re-validating every header (and, with a `plan`,
 * requiring the same entries as the scan: PSW_ERR_BUNDLE_HASH otherwise). Files are created
 * exclusively, fsynced, with normalised modes. On any failure everything written into `dir` is
 * removed; ENOSPC becomes StoreError PSW_ERR_DISK_FULL.
 */
export async function extractBundle(input: AsyncIterable<Uint8Array>, options: ExtractOptions): Promise<ExtractResult> {
  const { dir, signal, faultHook } = options
  await mkdir(dir, { recursive: true })
  if ((await readdir(dir)).length > 0) {
    throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', `extract directory ${dir} is not empty`)
  }
  const dirs = [dir]
  const visit: Visitor = async (e, data) => {
    const target = join(dir, ...e.path.split('/'))
    await faultHook?.(e.path)
    if (e.type === 'directory') {
      await mkdir(target, { mode: e.mode })
      await chmod(target, e.mode)
      dirs.push(target)
      await readData(data, 0, false)
      return e
    }
    const hash = createHash('sha256')
    let n = 0
    const fh = await open(target, 'wx', e.mode)
    try {
      for await (const chunk of data) {
        signal?.throwIfAborted()
        hash.update(chunk)
        n += chunk.byteLength
        await writeAll(fh, chunk)
      }
      if (n !== e.size) throw invalid(`tar entry ${e.path} has ${n} bytes, header says ${e.size}`)
      await fh.chmod(e.mode)
      await fh.sync()
    } finally {
      await fh.close()
    }
    return { ...e, sha256: hash.digest('hex') }
  }
  try {
    const result = await readBundle(input, options, visit, options.plan)
    for (const d of dirs.reverse()) await fsyncDir(d)
    return result
  } catch (err) {
    await removeContents(dir)
    throw mapFsError(err, `extracting bundle into ${dir}`)
  }
}

async function removeContents(dir: string): Promise<void> {
  for (const name of await readdir(dir).catch(() => [])) {
    await rm(join(dir, name), { recursive: true, force: true, maxRetries: 2 })
  }
}
