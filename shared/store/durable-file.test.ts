import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'

// Simulates a full disk: while `enospc.on` is set, writes through a FileHandle fail with ENOSPC.
const enospc = vi.hoisted(() => ({ on: false }))
vi.mock('node:fs/promises', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs/promises')>()
  const open: typeof fs.open = async (...args) => {
    const handle = await fs.open(...args)
    if (!enospc.on) return handle
    handle.writeFile = async () => {
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' })
    }
    return handle
  }
  return { ...fs, open, default: { ...fs, open } }
})

const { writeFileDurable } = await import('./durable-file.ts')
const { createChunkStore } = await import('./chunk-store.ts')

describe('writeFileDurable', () => {
  let dir: string

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'psw-durable-'))
    enospc.on = false
  })

  afterEach(async () => {
    enospc.on = false
    await rm(dir, { recursive: true, force: true })
  })

  it('writes and replaces a file, leaving no tmp file, with the requested mode', async () => {
    const file = join(dir, 'state.json')
    await writeFileDurable(file, '{"v":1}', { mode: 0o600 })
    await writeFileDurable(file, new TextEncoder().encode('{"v":2}'), { mode: 0o600 })
    expect(await readFile(file, 'utf8')).toBe('{"v":2}')
    expect(await readdir(dir)).toEqual(['state.json'])
    expect((await stat(file)).mode & 0o777).toBe(0o600)
  })

  it('maps ENOSPC to PSW_ERR_DISK_FULL, removes the tmp file and keeps the old content', async () => {
    const file = join(dir, 'state.json')
    await writeFileDurable(file, 'old')
    enospc.on = true
    await expect(writeFileDurable(file, 'new')).rejects.toMatchObject({ name: 'StoreError', code: 'PSW_ERR_DISK_FULL' })
    expect(await readdir(dir)).toEqual(['state.json'])
    expect(await readFile(file, 'utf8')).toBe('old')
  })

  it('does not start writing when the signal is already aborted', async () => {
    const file = join(dir, 'x')
    await expect(writeFileDurable(file, 'x', { signal: AbortSignal.abort() })).rejects.toMatchObject({
      name: 'AbortError',
    })
    expect(await readdir(dir)).toEqual([])
  })

  it('a chunk put on a full disk fails with PSW_ERR_DISK_FULL and leaves no partial chunk', async () => {
    const store = createChunkStore({ dir })
    await store.start()
    const data = randomBytes(1000)
    const hash = createHash('sha256').update(data).digest('hex')
    enospc.on = true
    await expect(store.put(hash, data)).rejects.toMatchObject({ code: 'PSW_ERR_DISK_FULL' })
    expect(await readdir(join(dir, hash.slice(0, 2)))).toEqual([])
    expect(store.stats()).toEqual({ chunks: 0, bytes: 0 })
    enospc.on = false
    expect(await store.put(hash, data)).toEqual({ stored: true })
    await store.stop()
  })
})
