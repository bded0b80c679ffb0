import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { type ChunkStore, createChunkStore } from './chunk-store.ts'

const sha = (data: Uint8Array): string => createHash('sha256').update(data).digest('hex')

/** Every file under `dir`, relative, sorted. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true })
  return entries
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(dir.length + 1))
    .sort()
}

describe('chunk store', () => {
  let dir: string
  let store: ChunkStore

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'psw-chunks-'))
    store = createChunkStore({ dir })
    await store.start()
  })

  afterEach(async () => {
    await store.stop()
    await rm(dir, { recursive: true, force: true })
  })

  it('round-trips a chunk into dir/<2 hex>/<hash>', async () => {
    const data = randomBytes(100_000)
    const hash = sha(data)
    expect(await store.has(hash)).toBe(false)
    expect(await store.put(hash, data)).toEqual({ stored: true })
    expect(await store.has(hash)).toBe(true)
    expect(Buffer.from(await store.read(hash)).equals(data)).toBe(true)
    expect(store.path(hash)).toBe(join(dir, hash.slice(0, 2), hash))
    expect(await store.verify(hash)).toBe(true)
    expect(store.stats()).toEqual({ chunks: 1, bytes: 100_000 })
  })

  it('dedups: a second put of the same chunk stores nothing and leaves one file', async () => {
    const data = randomBytes(4096)
    const hash = sha(data)
    expect(await store.put(hash, data)).toEqual({ stored: true })
    expect(await store.put(hash, Uint8Array.from(data))).toEqual({ stored: false })
    expect(await filesUnder(dir)).toEqual([join(hash.slice(0, 2), hash)])
    expect(store.stats()).toEqual({ chunks: 1, bytes: 4096 })
  })

  it('rejects data that does not match its hash and writes nothing', async () => {
    const data = randomBytes(1024)
    const wrong = sha(randomBytes(16))
    await expect(store.put(wrong, data)).rejects.toMatchObject({ name: 'IntegrityError', code: 'PSW_ERR_CHUNK_HASH' })
    expect(await store.has(wrong)).toBe(false)
    expect(await readdir(dir)).toEqual([])
    expect(store.stats()).toEqual({ chunks: 0, bytes: 0 })
  })

  it.each([
    ['uppercase', 'A'.repeat(64)],
    ['too short', 'a'.repeat(63)],
    ['too long', 'a'.repeat(65)],
    ['path traversal', `../../${'a'.repeat(58)}`],
    ['empty', ''],
  ])('rejects a %s hash before touching the disk', async (_label, bad) => {
    const data = randomBytes(8)
    const invalid = { name: 'ValidationError', code: 'PSW_ERR_INVALID_ARGUMENT' }
    await expect(store.put(bad, data)).rejects.toMatchObject(invalid)
    await expect(store.has(bad)).rejects.toMatchObject(invalid)
    await expect(store.read(bad)).rejects.toMatchObject(invalid)
    await expect(store.delete(bad)).rejects.toMatchObject(invalid)
    expect(() => store.path(bad)).toThrow(expect.objectContaining(invalid))
    expect(await readdir(dir)).toEqual([])
  })

  it('putHashed stores and dedups like put, trusting the hash its caller computed (no second hash)', async () => {
    const data = randomBytes(70_000)
    const hash = sha(data)
    expect(await store.putHashed(hash, data)).toEqual({ stored: true })
    expect(await store.putHashed(hash, data)).toEqual({ stored: false })
    expect(await store.put(hash, data)).toEqual({ stored: false })
    expect(await store.verify(hash)).toBe(true)
    expect(store.stats()).toEqual({ chunks: 1, bytes: 70_000 })
    // Its contract: it does not re-hash. Only callers that hashed these very bytes may use it.
    const other = sha(randomBytes(8))
    expect(await store.putHashed(other, data)).toEqual({ stored: true })
    expect(await store.verify(other)).toBe(false)
    const small = createChunkStore({ dir, maxChunkBytes: 1024 })
    await small.start()
    await expect(small.putHashed(sha(data), data)).rejects.toMatchObject({ code: 'PSW_ERR_CHUNK_SIZE' })
    await expect(small.putHashed('A'.repeat(64), data)).rejects.toMatchObject({ code: 'PSW_ERR_INVALID_ARGUMENT' })
    await small.stop()
  })

  it('stores a chunk once under 20 concurrent puts of it', async () => {
    const data = randomBytes(256 * 1024)
    const hash = sha(data)
    const results = await Promise.all(Array.from({ length: 20 }, () => store.put(hash, data)))
    expect(results.filter((r) => r.stored)).toHaveLength(1)
    expect(await filesUnder(dir)).toEqual([join(hash.slice(0, 2), hash)])
    expect(await store.verify(hash)).toBe(true)
    expect(store.stats()).toEqual({ chunks: 1, bytes: data.byteLength })
  })

  it('reads without re-verifying; verify() detects a corrupted file', async () => {
    const data = randomBytes(2048)
    const hash = sha(data)
    await store.put(hash, data)
    const corrupt = Buffer.from(data)
    corrupt[0] = (corrupt[0]! + 1) % 256
    await writeFile(store.path(hash), corrupt)
    expect(Buffer.from(await store.read(hash)).equals(corrupt)).toBe(true)
    expect(await store.verify(hash)).toBe(false)
  })

  it('readExact returns a chunk of the expected length, and nothing for another length or a missing chunk', async () => {
    const data = randomBytes(3000)
    const hash = sha(data)
    await store.put(hash, data)
    expect(Buffer.from((await store.readExact(hash, 3000))!).equals(data)).toBe(true)
    expect(await store.readExact(hash, 2999)).toBeUndefined()
    expect(await store.readExact(hash, 3001)).toBeUndefined()
    expect(await store.readExact(sha(randomBytes(8)), 8)).toBeUndefined()
    await expect(store.readExact('../etc/passwd', 8)).rejects.toMatchObject({ code: 'PSW_ERR_INVALID_ARGUMENT' })
  })

  it('reports a missing chunk as PSW_ERR_NOT_FOUND', async () => {
    const hash = sha(randomBytes(8))
    await expect(store.read(hash)).rejects.toMatchObject({ name: 'StateError', code: 'PSW_ERR_NOT_FOUND' })
    await expect(store.verify(hash)).rejects.toMatchObject({ code: 'PSW_ERR_NOT_FOUND' })
  })

  it('deletes a chunk and updates the stats', async () => {
    const data = randomBytes(512)
    const hash = sha(data)
    await store.put(hash, data)
    expect(await store.delete(hash)).toBe(true)
    expect(await store.delete(hash)).toBe(false)
    expect(await store.has(hash)).toBe(false)
    expect(store.stats()).toEqual({ chunks: 0, bytes: 0 })
    expect(await store.put(hash, data)).toEqual({ stored: true })
  })

  it('refuses chunks beyond maxChunkBytes', async () => {
    const small = createChunkStore({ dir, maxChunkBytes: 1024 })
    await small.start()
    const data = randomBytes(1025)
    await expect(small.put(sha(data), data)).rejects.toMatchObject({ code: 'PSW_ERR_CHUNK_SIZE' })
    await small.stop()
  })

  it('on start removes tmp files left by a crash and recounts stored chunks', async () => {
    const data = randomBytes(777)
    const hash = sha(data)
    await store.put(hash, data)
    await store.stop()
    const leftover = `${store.path(hash)}.tmp-deadbeef0000`
    await writeFile(leftover, 'partial')
    const reopened = createChunkStore({ dir })
    await reopened.start()
    expect(reopened.stats()).toEqual({ chunks: 1, bytes: 777 })
    expect(await filesUnder(dir)).toEqual([join(hash.slice(0, 2), hash)])
    expect(Buffer.from(await readFile(reopened.path(hash))).equals(data)).toBe(true)
    await reopened.stop()
  })

  it('refuses operations before start and after stop; stop is idempotent', async () => {
    const data = randomBytes(8)
    await store.stop()
    await store.stop()
    await expect(store.put(sha(data), data)).rejects.toMatchObject({ code: 'PSW_ERR_INTERNAL' })
    const fresh = createChunkStore({ dir })
    await expect(fresh.has(sha(data))).rejects.toMatchObject({ code: 'PSW_ERR_INTERNAL' })
  })
})
