/**
 * Crash-safe file writes: tmp → fsync → rename → fsync(parent). After `writeFileDurable`
 * resolves, a reader sees either the old file or the complete new one, even after `kill -9`
 * or a power cut; never a torn file.
 */
import { randomBytes } from 'node:crypto'
import { type FileHandle, open, rename, unlink } from 'node:fs/promises'
import { dirname } from 'node:path'
import { mapFsError } from '../errors.ts'

export interface WriteFileDurableOptions {
  /** File mode of the new file (default 0o644, before umask). */
  mode?: number
  /** Aborts before the rename; the tmp file is removed. */
  signal?: AbortSignal
}

/** Marker in the name of every in-progress file; stores sweep `*${TMP_MARKER}*` at start. */
export const TMP_MARKER = '.tmp-'

/** The tmp path `writeFileDurable` uses for `path` (unique per call). */
export function tmpPathFor(path: string): string {
  return `${path}${TMP_MARKER}${randomBytes(6).toString('hex')}`
}

/**
 * Writes `data` to `path` atomically and durably. ENOSPC removes the tmp file and throws
 * StoreError PSW_ERR_DISK_FULL; other errors also remove the tmp file and are rethrown.
 */
export async function writeFileDurable(
  path: string,
  data: Uint8Array | string,
  options: WriteFileDurableOptions = {},
): Promise<void> {
  const { mode = 0o644, signal } = options
  signal?.throwIfAborted()
  const tmp = tmpPathFor(path)
  let handle: FileHandle | undefined
  try {
    handle = await open(tmp, 'wx', mode)
    await handle.writeFile(data)
    await handle.sync()
    await handle.close()
    handle = undefined
    signal?.throwIfAborted()
    await rename(tmp, path)
  } catch (err) {
    await handle?.close().catch(() => {})
    await unlink(tmp).catch(() => {})
    throw mapFsError(err, `writing ${path}`)
  }
  try {
    await fsyncDir(dirname(path))
  } catch (err) {
    throw mapFsError(err, `syncing the directory of ${path}`)
  }
}

/**
 * fsyncs a directory so that a rename, create or unlink inside it is durable. Windows cannot
 * open directories for syncing; there the call is a no-op.
 */
export async function fsyncDir(dir: string): Promise<void> {
  if (process.platform === 'win32') return
  let handle: FileHandle | undefined
  try {
    handle = await open(dir, 'r')
    await handle.sync()
  } catch (err) {
    // Some file systems cannot open or sync a directory; there is nothing more to do there.
    const code = (err as NodeJS.ErrnoException).code
    if (code !== 'EISDIR' && code !== 'EPERM' && code !== 'EINVAL') throw err
  } finally {
    await handle?.close()
  }
}
