/**
 * Writes a bundle tar from a file or directory: `bundle.json`, then `payload/…`. Output is
 * deterministic (sorted walk, mtime 0, uid/gid 0, no user/group names, normalised modes), file
 * data is streamed, and the tar appears at `out` only complete (tmp → fsync → rename).
 */
import { constants } from 'node:fs'
import { type FileHandle, lstat, open, readdir, rename, rm } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import type { Writable } from 'streamx'
import * as tar from 'tar-stream'
import { mapFsError, PswError, ValidationError } from '../errors.ts'
import { fsyncDir } from '../store/durable-file.ts'
import { waitDrain, writeAll } from './fs-util.ts'
import {
  BUNDLE_FORMAT,
  type BundleMeta,
  META_ENTRY,
  normalizeMode,
  normalizeTarPath,
  PAYLOAD_DIR,
  resolveLimits,
  type TarLimits,
  validateBundleMeta,
} from './tar-guard.ts'

/** Options of {@link writeBundle}. */
export interface WriteBundleOptions {
  /** A regular file (becomes `payload/<basename>`) or a directory (its contents become `payload/…`). */
  source: string
  name: string
  version: string
  /** Path of the tar to create; replaced atomically. */
  out: string
  signal?: AbortSignal
  /** Called as payload bytes are read; `total` is the unpacked size. */
  onProgress?: (bytesDone: number, total: number) => void
  /** Limits the source must respect so that the reader accepts the result. */
  limits?: Partial<TarLimits>
}

/** What {@link writeBundle} wrote. */
export interface WriteBundleResult {
  /** Size of the tar in bytes. */
  size: number
  files: number
  unpackedSize: number
}

interface SourceEntry {
  archivePath: string
  abs: string
  type: 'file' | 'directory'
  size: number
}

const READ_CHUNK = 256 * 1024

const sourceError = (message: string, cause?: unknown): ValidationError =>
  new ValidationError('PSW_ERR_INGEST_SOURCE', message, cause === undefined ? {} : { cause })

/** Walks the source (sorted, parents first) refusing symlinks and special files. */
async function collect(source: string, limits: TarLimits): Promise<SourceEntry[]> {
  const entries: SourceEntry[] = [{ archivePath: PAYLOAD_DIR, abs: source, type: 'directory', size: 0 }]
  const visit = async (abs: string, archivePath: string): Promise<void> => {
    let st: Awaited<ReturnType<typeof lstat>>
    try {
      st = await lstat(abs)
    } catch (err) {
      throw sourceError(`cannot read ${abs}`, err)
    }
    const type = st.isFile() ? 'file' : st.isDirectory() ? 'directory' : undefined
    if (type === undefined) throw sourceError(`${abs} is not a regular file or directory (symlink or special file)`)
    if (entries.length + 2 > limits.maxEntries) throw sourceError(`source has more than ${limits.maxEntries} entries`)
    try {
      normalizeTarPath(archivePath, limits, type === 'directory')
    } catch (err) {
      throw sourceError(`${abs} cannot be stored in a bundle: ${(err as Error).message}`, err)
    }
    entries.push({ archivePath, abs, type, size: type === 'file' ? st.size : 0 })
    if (type === 'directory') await visitChildren(abs, archivePath)
  }
  const visitChildren = async (dir: string, archiveDir: string): Promise<void> => {
    let names: string[]
    try {
      names = await readdir(dir)
    } catch (err) {
      throw sourceError(`cannot read directory ${dir}`, err)
    }
    // Code-unit order, not locale order: the same tree gives the same bytes everywhere.
    for (const name of names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))) {
      await visit(join(dir, name), `${archiveDir}/${name}`)
    }
  }
  let st: Awaited<ReturnType<typeof lstat>>
  try {
    st = await lstat(source)
  } catch (err) {
    throw sourceError(`cannot read ${source}`, err)
  }
  if (st.isDirectory()) await visitChildren(source, PAYLOAD_DIR)
  else if (st.isFile()) await visit(source, `${PAYLOAD_DIR}/${basename(source)}`)
  else throw sourceError(`${source} is not a regular file or directory (symlink or special file)`)
  return entries
}

function header(name: string, type: 'file' | 'directory', size: number, mode: number) {
  return { name, type, size, mode, mtime: new Date(0), uid: 0, gid: 0, uname: '', gname: '' }
}

/** Starts a tar entry; `done` settles when tar-stream has accepted all of it. */
function startEntry(
  pack: tar.Pack,
  h: ReturnType<typeof header>,
  body?: Buffer,
): { sink: Writable; done: Promise<void> } {
  let sink!: Writable
  const done = new Promise<void>((resolve, reject) => {
    const cb = (err?: Error | null) => (err ? reject(err) : resolve())
    sink = body === undefined ? pack.entry(h, cb) : pack.entry(h, body, cb)
  })
  done.catch(() => {}) // awaited by the caller; avoid an unhandled rejection if it gives up first
  // When the pack is destroyed mid-entry (abort, source error), the entry stream emits
  // 'error'; it reaches the caller through `cb`/`done`, and must not crash the process.
  sink.on('error', () => {})
  return { sink, done }
}

/** Streams one file into the pack, refusing it if it is no longer the file that was walked. */
async function addFile(pack: tar.Pack, e: SourceEntry, progress: (n: number) => void, signal?: AbortSignal) {
  const changed = () => sourceError(`${e.abs} changed while it was being bundled`)
  let fh: FileHandle
  try {
    fh = await open(e.abs, constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0))
  } catch (err) {
    throw sourceError(`cannot open ${e.abs}`, err)
  }
  try {
    const st = await fh.stat()
    if (!st.isFile() || st.size !== e.size) throw changed()
    const mode = normalizeMode(st.mode, 'file')
    const { sink, done } = startEntry(pack, header(e.archivePath, 'file', e.size, mode))
    for (let pos = 0; pos < e.size; ) {
      signal?.throwIfAborted()
      // A fresh buffer per chunk: tar-stream keeps a reference until the bytes are consumed.
      const buf = Buffer.allocUnsafe(Math.min(READ_CHUNK, e.size - pos))
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos)
      if (bytesRead === 0) throw changed()
      pos += bytesRead
      if (!sink.write(buf.subarray(0, bytesRead)) && !(await waitDrain(sink))) throw new Error('pack closed')
      progress(bytesRead)
    }
    if ((await fh.read(Buffer.alloc(1), 0, 1, e.size)).bytesRead !== 0) throw changed()
    sink.end(null)
    await done
  } finally {
    await fh.close()
  }
}

/**
 * Writes the bundle tar for `source` to `out`. Errors: PSW_ERR_INGEST_SOURCE (unreadable source,
 * symlink/special file, a name or size a reader would refuse), PSW_ERR_DISK_FULL, abort reasons.
 */
export async function writeBundle(options: WriteBundleOptions): Promise<WriteBundleResult> {
  const { source, out, signal, onProgress } = options
  const limits = resolveLimits(options.limits)
  const entries = await collect(source, limits)
  const files = entries.filter((e) => e.type === 'file')
  const unpackedSize = files.reduce((sum, e) => sum + e.size, 0)
  let meta: BundleMeta
  try {
    meta = validateBundleMeta(
      { format: BUNDLE_FORMAT, name: options.name, version: options.version, files: files.length, unpackedSize },
      limits,
    )
  } catch (err) {
    throw err instanceof PswError && err.code === 'PSW_ERR_BUNDLE_METADATA'
      ? new ValidationError('PSW_ERR_INVALID_ARGUMENT', err.message, { cause: err })
      : sourceError(`source is too large for a bundle: ${(err as Error).message}`, err)
  }
  signal?.throwIfAborted()

  const pack = tar.pack()
  let firstError: unknown
  const fail = (err: unknown) => {
    firstError ??= err
    pack.destroy(err as Error)
  }
  let done = 0
  const progress = (n: number) => {
    done += n
    onProgress?.(done, unpackedSize)
  }
  const produce = async () => {
    const json = Buffer.from(JSON.stringify(meta), 'utf8')
    await startEntry(pack, header(META_ENTRY, 'file', json.byteLength, 0o644), json).done
    for (const e of entries) {
      signal?.throwIfAborted()
      if (e.type === 'directory') await startEntry(pack, header(e.archivePath, 'directory', 0, 0o755)).done
      else await addFile(pack, e, progress, signal)
    }
    pack.finalize()
  }

  const tmp = `${out}.tmp`
  let size = 0
  let fh: FileHandle | undefined
  try {
    fh = await open(tmp, 'w', 0o644)
    const producer = produce().catch(fail)
    try {
      for await (const chunk of pack as AsyncIterable<Buffer>) {
        await writeAll(fh, chunk)
        size += chunk.byteLength
      }
    } catch (err) {
      fail(err)
    }
    await producer
    if (firstError !== undefined) throw firstError
    await fh.sync()
    await fh.close()
    fh = undefined
    await rename(tmp, out)
    await fsyncDir(dirname(out))
  } catch (err) {
    pack.destroy()
    await fh?.close().catch(() => {})
    await rm(tmp, { force: true })
    throw mapFsError(err, `writing bundle ${out}`)
  }
  return { size, files: files.length, unpackedSize }
}
