import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { gzipSync } from 'node:zlib'
import { describe, expect, it } from 'vitest'
import { isPswError, UpstreamError } from '../../shared/errors.ts'
import { checkIndexBytes, DEFAULT_XZ_PATH, decompressIndex, fetchVerifiedIndex, indexCandidates } from './apt-index.ts'
import type { AptRelease, AptReleaseFile } from './apt-release.ts'
import type { IndexFetcher } from './feed-types.ts'

const HAVE_XZ = existsSync(DEFAULT_XZ_PATH)
const PLAIN = Buffer.from('Package: hello\nVersion: 1.0\n\n'.repeat(50))
const GZ = gzipSync(PLAIN)
const XZ = HAVE_XZ ? execFileSync(DEFAULT_XZ_PATH, ['-c'], { input: PLAIN }) : Buffer.alloc(0)

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')
const entry = (path: string, data: Uint8Array): AptReleaseFile => ({ path, size: data.byteLength, sha256: sha(data) })

function release(files: Record<string, Buffer>, acquireByHash = false): AptRelease {
  return {
    date: 0,
    acquireByHash,
    components: ['main'],
    architectures: ['amd64'],
    files: new Map(Object.entries(files).map(([path, data]) => [path, entry(path, data)])),
  }
}

/** Serves `files` by URL; everything else is a 404 (PSW_ERR_FEED_FETCH). Records requests. */
function fetcher(files: Record<string, Buffer>): IndexFetcher & { urls: string[] } {
  const urls: string[] = []
  const fn = async (url: string, { maxBytes }: { maxBytes: number }) => {
    urls.push(url)
    const data = files[url]
    if (data === undefined) throw new UpstreamError('PSW_ERR_FEED_FETCH', `404 ${url}`)
    if (data.byteLength > maxBytes) throw new UpstreamError('PSW_ERR_TOO_LARGE', 'too large')
    return data
  }
  return Object.assign(fn, { urls })
}

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p
  } catch (err) {
    return isPswError(err) ? err.code : `not a PswError: ${String(err)}`
  }
  return undefined
}

const D = 'http://mirror/debian/dists/stable'
const DIR = 'main/binary-amd64'
const ALL = {
  [`${DIR}/Packages`]: PLAIN,
  [`${DIR}/Packages.gz`]: GZ,
  ...(HAVE_XZ ? { [`${DIR}/Packages.xz`]: XZ } : {}),
}
const opts = (fetchIndex: IndexFetcher, o: { xz?: boolean; maxBytes?: number } = {}) => ({
  distsUrl: D,
  fetchIndex,
  maxBytes: o.maxBytes ?? 1 << 20,
  maxUnpackedBytes: 1 << 20,
  xzPath: o.xz === false || !HAVE_XZ ? undefined : DEFAULT_XZ_PATH,
})

describe('checkIndexBytes', () => {
  it('accepts matching bytes, refuses another size or hash', () => {
    const file = entry('x', PLAIN)
    expect(() => checkIndexBytes(PLAIN, file)).not.toThrow()
    const flipped = Buffer.from(PLAIN)
    flipped[3] = flipped[3]! ^ 1
    for (const bad of [flipped, PLAIN.subarray(1), Buffer.concat([PLAIN, Buffer.from('x')])]) {
      expect(() => checkIndexBytes(bad, file)).toThrow(expect.objectContaining({ code: 'PSW_ERR_FEED_INDEX_HASH' }))
    }
  })
})

describe('decompressIndex', () => {
  it('gunzips with an output limit', async () => {
    expect(await decompressIndex(GZ, 'gz', 'x', { maxBytes: PLAIN.byteLength })).toEqual(PLAIN)
    expect(await codeOf(decompressIndex(GZ, 'gz', 'x', { maxBytes: PLAIN.byteLength - 1 }))).toBe('PSW_ERR_TOO_LARGE')
    const bomb = gzipSync(Buffer.alloc(50 << 20))
    expect(await codeOf(decompressIndex(bomb, 'gz', 'x', { maxBytes: 1 << 20 }))).toBe('PSW_ERR_TOO_LARGE')
    expect(await codeOf(decompressIndex(Buffer.from('not gzip'), 'gz', 'x', { maxBytes: 100 }))).toBe(
      'PSW_ERR_FEED_INVALID',
    )
  })

  it('passes plain data through under the limit', async () => {
    expect(await decompressIndex(PLAIN, 'none', 'x', { maxBytes: PLAIN.byteLength })).toBe(PLAIN)
    expect(await codeOf(decompressIndex(PLAIN, 'none', 'x', { maxBytes: 10 }))).toBe('PSW_ERR_TOO_LARGE')
  })

  describe.skipIf(!HAVE_XZ)('xz (via /usr/bin/xz)', () => {
    it('decompresses, and kills xz past the output limit', async () => {
      expect(await decompressIndex(XZ, 'xz', 'x', { maxBytes: PLAIN.byteLength })).toEqual(PLAIN)
      expect(await codeOf(decompressIndex(XZ, 'xz', 'x', { maxBytes: PLAIN.byteLength - 1 }))).toBe('PSW_ERR_TOO_LARGE')
      const bomb = execFileSync(DEFAULT_XZ_PATH, ['-c', '-0'], { input: Buffer.alloc(32 << 20) })
      expect(await codeOf(decompressIndex(bomb, 'xz', 'x', { maxBytes: 1 << 20 }))).toBe('PSW_ERR_TOO_LARGE')
    })

    it('refuses corrupt data and other formats', async () => {
      expect(await codeOf(decompressIndex(Buffer.from('not xz at all'), 'xz', 'x', { maxBytes: 100 }))).toBe(
        'PSW_ERR_FEED_INVALID',
      )
      expect(await codeOf(decompressIndex(GZ, 'xz', 'x', { maxBytes: 1 << 20 }))).toBe('PSW_ERR_FEED_INVALID')
      const truncated = XZ.subarray(0, XZ.byteLength - 8)
      expect(await codeOf(decompressIndex(truncated, 'xz', 'x', { maxBytes: 1 << 20 }))).toBe('PSW_ERR_FEED_INVALID')
    })

    it('stops on abort', async () => {
      const ac = new AbortController()
      ac.abort(new Error('stop'))
      await expect(decompressIndex(XZ, 'xz', 'x', { maxBytes: 1 << 20, signal: ac.signal })).rejects.toThrow('stop')
    })
  })
})

describe('fetchVerifiedIndex', () => {
  it('lists candidates gz, xz, plain; xz only when usable', () => {
    const r = release(ALL)
    expect(indexCandidates(r, DIR, 'Packages', true).map((c) => c.compression)).toEqual(
      HAVE_XZ ? ['gz', 'xz', 'none'] : ['gz', 'none'],
    )
    expect(indexCandidates(r, DIR, 'Packages', false).map((c) => c.compression)).toEqual(['gz', 'none'])
    expect(indexCandidates(r, 'contrib/binary-amd64', 'Packages', true)).toEqual([])
  })

  it('prefers .gz', async () => {
    const f = fetcher({ [`${D}/${DIR}/Packages.gz`]: GZ })
    const got = await fetchVerifiedIndex(release(ALL), DIR, 'Packages', opts(f))
    expect(got.data).toEqual(PLAIN)
    expect(got.file.path).toBe(`${DIR}/Packages.gz`)
    expect(f.urls).toEqual([`${D}/${DIR}/Packages.gz`])
  })

  it.skipIf(!HAVE_XZ)('falls back to .xz, then plain, when a variant cannot be fetched', async () => {
    const f = fetcher({ [`${D}/${DIR}/Packages.xz`]: XZ, [`${D}/${DIR}/Packages`]: PLAIN })
    expect((await fetchVerifiedIndex(release(ALL), DIR, 'Packages', opts(f))).file.path).toBe(`${DIR}/Packages.xz`)
    const g = fetcher({ [`${D}/${DIR}/Packages`]: PLAIN })
    expect((await fetchVerifiedIndex(release(ALL), DIR, 'Packages', opts(g))).data).toEqual(PLAIN)
    expect(g.urls.map((u) => u.slice(D.length + DIR.length + 2))).toEqual(['Packages.gz', 'Packages.xz', 'Packages'])
  })

  it('skips .xz when xz is not to be used', async () => {
    const f = fetcher({ [`${D}/${DIR}/Packages`]: PLAIN })
    await fetchVerifiedIndex(release(ALL), DIR, 'Packages', opts(f, { xz: false }))
    expect(f.urls.some((u) => u.endsWith('.xz'))).toBe(false)
  })

  it('does not fall back on a hash or size mismatch', async () => {
    const evil = gzipSync(Buffer.from('Package: evil\n'))
    const f = fetcher({ [`${D}/${DIR}/Packages.gz`]: evil, [`${D}/${DIR}/Packages`]: PLAIN })
    expect(await codeOf(fetchVerifiedIndex(release(ALL), DIR, 'Packages', opts(f)))).toBe('PSW_ERR_FEED_INDEX_HASH')
    expect(f.urls).toHaveLength(1)
    const longer = fetcher({ [`${D}/${DIR}/Packages.gz`]: Buffer.concat([GZ, Buffer.alloc(10)]) })
    expect(await codeOf(fetchVerifiedIndex(release(ALL), DIR, 'Packages', opts(longer)))).toBe(
      'PSW_ERR_FEED_INDEX_HASH',
    )
  })

  it('uses by-hash first with Acquire-By-Hash, and the plain path when by-hash is missing', async () => {
    const byHash = `${D}/${DIR}/by-hash/SHA256/${sha(GZ)}`
    const f = fetcher({ [byHash]: GZ })
    expect((await fetchVerifiedIndex(release(ALL, true), DIR, 'Packages', opts(f))).data).toEqual(PLAIN)
    expect(f.urls).toEqual([byHash])
    const g = fetcher({ [`${D}/${DIR}/Packages.gz`]: GZ })
    await fetchVerifiedIndex(release(ALL, true), DIR, 'Packages', opts(g))
    expect(g.urls).toEqual([byHash, `${D}/${DIR}/Packages.gz`])
  })

  it('refuses an index the Release does not list, reports the fetch error when none can be fetched', async () => {
    const f = fetcher({})
    expect(await codeOf(fetchVerifiedIndex(release(ALL), 'contrib/binary-amd64', 'Packages', opts(f)))).toBe(
      'PSW_ERR_FEED_INVALID',
    )
    expect(f.urls).toEqual([])
    expect(await codeOf(fetchVerifiedIndex(release(ALL), DIR, 'Packages', opts(f)))).toBe('PSW_ERR_FEED_FETCH')
  })

  it('does not download a variant larger than the limit', async () => {
    const f = fetcher({ [`${D}/${DIR}/Packages.gz`]: GZ, [`${D}/${DIR}/Packages`]: PLAIN })
    const only = release({ [`${DIR}/Packages`]: PLAIN })
    expect(await codeOf(fetchVerifiedIndex(only, DIR, 'Packages', opts(f, { maxBytes: 100 })))).toBe(
      'PSW_ERR_TOO_LARGE',
    )
    expect(f.urls).toEqual([])
  })
})
