import { open, rm } from 'node:fs/promises'

/**
 * The disk's own speed, in MB/s, for what a durable download or ingest must at least do:
 * write `bytes` in 1 MiB pieces, then fsync. Context for the benchmarks, not a figure of ours.
 */
export async function diskWriteFsync(path: string, bytes: number): Promise<number> {
  const block = Buffer.alloc(1 << 20, 1)
  const started = performance.now()
  const fh = await open(path, 'w')
  try {
    for (let off = 0; off < bytes; off += block.length)
      await fh.write(block, 0, Math.min(block.length, bytes - off), off)
    await fh.sync()
  } finally {
    await fh.close()
  }
  const seconds = (performance.now() - started) / 1000
  await rm(path, { force: true })
  return bytes / 1e6 / seconds
}
