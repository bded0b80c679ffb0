import { createHash, randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import {
  autoChunkSize,
  chunkAndHash,
  chunkCount,
  chunkLength,
  MAX_CHUNKS,
  rechunk,
  validateChunkSize,
} from './chunking.ts'

async function* pieces(data: Buffer, sizes: number[]): AsyncGenerator<Uint8Array> {
  let off = 0
  let i = 0
  while (off < data.length) {
    const n = sizes[i++ % sizes.length]!
    yield data.subarray(off, off + n)
    off += n
  }
}

describe('chunking', () => {
  it('accepts only powers of two between 64 KiB and 16 MiB', () => {
    expect(validateChunkSize(1 << 20)).toBe(1 << 20)
    for (const bad of [0, 1000, (64 << 10) - 1, 3 << 20, 32 << 20, 1.5, Number.NaN]) {
      expect(() => validateChunkSize(bad)).toThrow(expect.objectContaining({ code: 'PSW_ERR_CHUNK_SIZE_CONFIG' }))
    }
  })

  it('computes counts and lengths at the edges', () => {
    expect(chunkCount(0, 65536)).toBe(0)
    expect(chunkCount(1, 65536)).toBe(1)
    expect(chunkCount(65536, 65536)).toBe(1)
    expect(chunkCount(65537, 65536)).toBe(2)
    expect(chunkLength(1, 65537, 65536)).toBe(1)
    expect(chunkLength(0, 65537, 65536)).toBe(65536)
  })

  it('re-slices arbitrary input pieces into exact chunks', async () => {
    const data = randomBytes(300_000)
    const out: Buffer[] = []
    for await (const c of rechunk(pieces(data, [1, 7, 65536, 100_000, 3]), 65536)) out.push(Buffer.from(c))
    expect(out.map((c) => c.length)).toEqual([65536, 65536, 65536, 65536, 300_000 - 4 * 65536])
    expect(Buffer.concat(out).equals(data)).toBe(true)
  })

  it('hashes each chunk and the whole in one pass', async () => {
    const data = randomBytes(200_000)
    const seen: number[] = []
    const result = await chunkAndHash(pieces(data, [4096]), 65536, (i) => {
      seen.push(i)
    })
    expect(result.size).toBe(200_000)
    expect(result.sha256).toBe(createHash('sha256').update(data).digest('hex'))
    expect(result.chunks).toHaveLength(4)
    expect(result.chunks[3]).toBe(
      createHash('sha256')
        .update(data.subarray(3 * 65536))
        .digest('hex'),
    )
    expect(seen).toEqual([0, 1, 2, 3])
  })

  it('handles empty content', async () => {
    const result = await chunkAndHash(pieces(Buffer.alloc(0), [1]), 65536)
    expect(result).toMatchObject({ size: 0, chunks: [] })
  })
})

describe('autoChunkSize', () => {
  const MiB = 1 << 20
  it('picks 256 KiB for small bundles, growing with size to at most 4 MiB', () => {
    expect(autoChunkSize(0)).toBe(256 << 10)
    expect(autoChunkSize(64 * MiB)).toBe(256 << 10)
    expect(autoChunkSize(256 * MiB)).toBe(256 << 10)
    expect(autoChunkSize(256 * MiB + 1)).toBe(512 << 10)
    expect(autoChunkSize(1024 * MiB)).toBe(MiB)
    expect(autoChunkSize(4096 * MiB)).toBe(4 * MiB)
    expect(autoChunkSize(64 * 1024 * MiB)).toBe(4 * MiB)
  })

  it('always gives a valid size and at most ~1024 chunks up to 4 GiB, within MAX_CHUNKS up to 195 GiB', () => {
    for (let size = 1; size < 2 ** 38; size = Math.ceil(size * 1.37) + 1) {
      const c = autoChunkSize(size)
      expect(validateChunkSize(c)).toBe(c)
      if (size <= 4096 * MiB) expect(chunkCount(size, c)).toBeLessThanOrEqual(1024)
      if (size <= 195 * 1024 * MiB) expect(chunkCount(size, c)).toBeLessThanOrEqual(MAX_CHUNKS)
    }
  })
})
