/** Small file-system and stream helpers for crash-safe writes (tmp → fsync → rename). */
import { randomBytes } from 'node:crypto'
import { type FileHandle, open, rename, rm } from 'node:fs/promises'
import { dirname } from 'node:path'

/** Whether `err` is a Node errno error, optionally with the given code. */
export function isErrno(err: unknown, code?: string): err is NodeJS.ErrnoException {
  const c = (err as NodeJS.ErrnoException | null)?.code
  return typeof c === 'string' && typeof (err as NodeJS.ErrnoException).syscall === 'string' && (!code || c === code)
}

/** Writes all of `data` at the current position, looping over short writes. */
export async function writeAll(fh: FileHandle, data: Uint8Array): Promise<void> {
  let offset = 0
  while (offset < data.byteLength) {
    const { bytesWritten } = await fh.write(data, offset, data.byteLength - offset)
    offset += bytesWritten
  }
}

/** Flushes a directory entry table (after a create/rename/unlink); ignored where directories cannot be opened. */
export async function fsyncDir(dir: string): Promise<void> {
  let fh: FileHandle | undefined
  try {
    fh = await open(dir, 'r')
    await fh.sync()
  } catch (err) {
    if (!isErrno(err, 'EISDIR') && !isErrno(err, 'EPERM') && !isErrno(err, 'EINVAL')) throw err
  } finally {
    await fh?.close()
  }
}

/** Writes `data` to `path` atomically: a tmp file next to it, fsync, rename, fsync of the directory. */
export async function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`
  try {
    const fh = await open(tmp, 'wx', mode)
    try {
      await writeAll(fh, typeof data === 'string' ? Buffer.from(data, 'utf8') : data)
      await fh.sync()
    } finally {
      await fh.close()
    }
    await rename(tmp, path)
  } catch (err) {
    await rm(tmp, { force: true })
    throw err
  }
  await fsyncDir(dirname(path))
}

interface Drainable {
  once(event: 'drain' | 'close', listener: () => void): unknown
  off(event: 'drain' | 'close', listener: () => void): unknown
}

/** Resolves `true` on the stream's next 'drain', `false` if it closes first (destroyed). */
export function waitDrain(stream: Drainable): Promise<boolean> {
  return new Promise((resolve) => {
    const done = (drained: boolean) => () => {
      stream.off('drain', onDrain)
      stream.off('close', onClose)
      resolve(drained)
    }
    const onDrain = done(true)
    const onClose = done(false)
    stream.once('drain', onDrain)
    stream.once('close', onClose)
  })
}
