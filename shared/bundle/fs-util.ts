/** Small file-system and stream helpers of the bundle reader and writer. */
import type { FileHandle } from 'node:fs/promises'

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
