import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { IntegrityError, ProtocolError } from '../shared/errors.ts'
import { silentLogger } from '../shared/log.ts'
import type { Manifest } from '../shared/metadata/manifest-schema.ts'
import { type ChunkFetcher, downloadBundle } from './downloader.ts'
import { readVerified } from './verified-reader.ts'

const CHUNK = 65536
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex')

function makeContent(size: number) {
  const data = randomBytes(size)
  const chunks: string[] = []
  const byHash = new Map<string, Buffer>()
  for (let off = 0; off < size; off += CHUNK) {
    const c = data.subarray(off, off + CHUNK)
    chunks.push(sha(c))
    byHash.set(sha(c), Buffer.from(c))
  }
  const manifest = { content: { size, chunkSize: CHUNK, sha256: sha(data), chunks } } as unknown as Manifest
  return { data, manifest, byHash }
}

describe('downloader', () => {
  let dir: string
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'psw-dl-'))
  })
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('downloads every chunk with at most `window` requests in flight', async () => {
    const { data, manifest, byHash } = makeContent(20 * CHUNK + 123)
    let inflight = 0
    let peak = 0
    const fetcher: ChunkFetcher = {
      fetch: async (hash) => {
        peak = Math.max(peak, ++inflight)
        await new Promise((r) => setImmediate(r))
        inflight--
        return byHash.get(hash)!
      },
    }
    const progress: number[] = []
    const r = await downloadBundle({
      manifest,
      partPath: join(dir, 'b.part'),
      fetcher,
      window: 4,
      log: silentLogger(),
      onProgress: (p) => progress.push(p.have),
    })
    expect(Buffer.compare(await readFile(join(dir, 'b.part')), data)).toBe(0)
    expect(r).toMatchObject({ fetchedChunks: 21, reusedChunks: 0, fetchedBytes: data.length })
    expect(peak).toBeLessThanOrEqual(4)
    expect(progress.at(-1)).toBe(21)
  })

  it('resumes from the chunks already on disk, re-fetching corrupt ones', async () => {
    const { data, manifest, byHash } = makeContent(10 * CHUNK)
    const part = Buffer.from(data)
    part.fill(0, 6 * CHUNK) // chunks 6..9 missing
    part[2 * CHUNK + 5] = (part[2 * CHUNK + 5] ?? 0) ^ 1 // chunk 2 corrupt
    await writeFile(join(dir, 'b.part'), part)
    const asked: string[] = []
    const r = await downloadBundle({
      manifest,
      partPath: join(dir, 'b.part'),
      fetcher: {
        fetch: async (h) => {
          asked.push(h)
          return byHash.get(h)!
        },
      },
      window: 3,
      log: silentLogger(),
    })
    expect(r.reusedChunks).toBe(5)
    expect(asked.sort()).toEqual([2, 6, 7, 8, 9].map((i) => manifest.content.chunks[i]).sort())
    expect(Buffer.compare(await readFile(join(dir, 'b.part')), data)).toBe(0)
  })

  it('retries transient failures', async () => {
    const { manifest, byHash } = makeContent(3 * CHUNK)
    let failures = 2
    const r = await downloadBundle({
      manifest,
      partPath: join(dir, 'b.part'),
      fetcher: {
        fetch: async (h) => {
          if (failures-- > 0) throw new ProtocolError('PSW_ERR_PEER_TIMEOUT', 'slow')
          return byHash.get(h)!
        },
      },
      window: 1,
      log: silentLogger(),
    })
    expect(r.fetchedChunks).toBe(3)
  })

  it('gives up quickly on a source that keeps sending bad bytes, and stops the other workers', async () => {
    const { manifest } = makeContent(8 * CHUNK)
    let calls = 0
    await expect(
      downloadBundle({
        manifest,
        partPath: join(dir, 'b.part'),
        fetcher: {
          fetch: async () => {
            calls++
            throw new IntegrityError('PSW_ERR_CHUNK_HASH', 'bad')
          },
        },
        window: 2,
        log: silentLogger(),
      }),
    ).rejects.toMatchObject({ code: 'PSW_ERR_CHUNK_HASH' })
    expect(calls).toBeLessThanOrEqual(4)
  })

  it('verified reader yields only checked bytes and fails before a tampered chunk reaches the consumer', async () => {
    const { data, manifest } = makeContent(4 * CHUNK)
    const path = join(dir, 'b.part')
    await writeFile(path, data)
    const out: Buffer[] = []
    for await (const c of readVerified(path, manifest)) out.push(Buffer.from(c))
    expect(Buffer.concat(out).equals(data)).toBe(true)

    const tampered = Buffer.from(data)
    tampered[3 * CHUNK] = (tampered[3 * CHUNK] ?? 0) ^ 1
    await writeFile(path, tampered)
    const seen: number[] = []
    await expect(
      (async () => {
        for await (const c of readVerified(path, manifest)) seen.push(c.byteLength)
      })(),
    ).rejects.toMatchObject({ code: 'PSW_ERR_CHUNK_HASH' })
    expect(seen).toHaveLength(3)

    const wrongWhole = { content: { ...manifest.content, sha256: 'f'.repeat(64) } } as unknown as Manifest
    await writeFile(path, data)
    await expect(
      (async () => {
        for await (const _ of readVerified(path, wrongWhole)) {
          // consume
        }
      })(),
    ).rejects.toMatchObject({ code: 'PSW_ERR_BUNDLE_HASH' })
  })
})
