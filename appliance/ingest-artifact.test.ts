import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { silentLogger } from '../shared/log.ts'
import { verifyEnvelope } from '../shared/metadata/envelope.ts'
import { MANIFEST_TYPE, validateManifest } from '../shared/metadata/manifest-schema.ts'
import type { IngestDeps } from './ingest.ts'
import { artifactChunkSize, type IngestArtifactOptions, ingestArtifact } from './ingest-artifact.ts'
import {
  ingestSmallBundle,
  openTestAppliance,
  rejectionCode,
  type TestAppliance,
  writeSource,
} from './test-fixtures.ts'
import type { FeedArtifact } from './upstream/feed-types.ts'

const CHUNK = 64 << 10
const sha = (data: Uint8Array) => createHash('sha256').update(data).digest('hex')

function artifactFor(bytes: Buffer, over: Partial<FeedArtifact> = {}): FeedArtifact {
  return {
    feedId: 'vendor',
    key: 'tool-1.2.3',
    source: { kind: 'http', url: 'https://vendor.example/tool-1.2.3.tar' },
    size: bytes.length,
    sha256: sha(bytes),
    name: 'tool',
    version: '1.2.3',
    vendor: 'Example Corp',
    product: 'Example Tool',
    classification: 'security',
    severity: 'high',
    cves: ['CVE-2026-12345'],
    advisory: 'EX-2026-01',
    supersedes: ['tool-old'],
    requires: [],
    description: 'Fixes a buffer overflow.',
    os: 'linux',
    arch: 'x64',
    installer: { type: 'files', targetRoot: '/opt/tool' },
    rollback: { type: 'files-backup' },
    emergency: false,
    ...over,
  }
}

describe('ingestArtifact', () => {
  let t: TestAppliance
  let deps: IngestDeps
  beforeEach(async () => {
    t = await openTestAppliance()
    deps = {
      db: t.core.db,
      catalog: t.core.catalog,
      chunks: t.core.chunks,
      signer: t.core.identity.signer,
      clock: t.clock,
      tmpDir: t.core.layout.tmp,
      defaultChunkSize: CHUNK,
      manifestTtlDays: 90,
      log: silentLogger(),
    }
  })
  afterEach(async () => {
    await t.cleanup()
  })

  const ingestBytes = async (bytes: Buffer, over: Partial<FeedArtifact> = {}, options: IngestArtifactOptions = {}) => {
    const path = await writeSource(t.dir, `artifact-${randomBytes(4).toString('hex')}.bin`, bytes)
    return ingestArtifact(deps, { path, artifact: artifactFor(bytes, over) }, options)
  }
  const nothingRecorded = async () => {
    expect(await t.core.catalog.list()).toEqual([])
    expect(await t.core.db.get('counter:metadata-version')).toBeUndefined()
  }

  it('stores the vendor bytes raw and signs a raw manifest', async () => {
    const bytes = randomBytes(4 * CHUNK + 1234)
    const progress: number[] = []
    const { manifest, record, newChunks } = await ingestBytes(
      bytes,
      {},
      {
        onProgress: (phase, done, total) => {
          expect(phase).toBe('store')
          expect(total).toBe(bytes.length)
          progress.push(done)
        },
      },
    )
    expect(manifest.bundleId).toBe(sha(bytes))
    expect(manifest.content).toEqual({
      size: bytes.length,
      chunkSize: CHUNK,
      sha256: sha(bytes),
      format: 'raw',
      chunks: [0, 1, 2, 3, 4].map((i) => sha(bytes.subarray(i * CHUNK, (i + 1) * CHUNK))),
    })
    expect(manifest.patch).toEqual({
      name: 'tool',
      vendor: 'Example Corp',
      product: 'Example Tool',
      version: '1.2.3',
      classification: 'security',
      severity: 'high',
      cves: ['CVE-2026-12345'],
      supersedes: ['tool-old'],
      requires: [],
      platform: { os: 'linux', arch: 'x64' },
      advisory: 'EX-2026-01',
      description: 'Fixes a buffer overflow.',
    })
    expect(manifest.install).toEqual({ type: 'files', targetRoot: '/opt/tool', maxRunSeconds: 600 })
    expect(manifest.rollback).toEqual({ type: 'files-backup' })
    expect(newChunks).toBe(5)
    expect(progress.at(-1)).toBe(bytes.length)
    // The chunks are the vendor's bytes, in order.
    const stored = await Promise.all(manifest.content.chunks.map((h) => t.core.chunks.read(h)))
    expect(Buffer.concat(stored).equals(bytes)).toBe(true)
    // Recorded and signed like any bundle.
    expect(record).toMatchObject({
      bundleId: sha(bytes),
      name: 'tool',
      version: '1.2.3',
      size: bytes.length,
      chunks: 5,
    })
    expect(await t.core.catalog.get(record.bundleId)).toEqual(record)
    expect(await t.core.catalog.resolve('tool@1.2.3')).toEqual(record)
    const envelope = await t.core.catalog.manifest(record.bundleId)
    const verified = verifyEnvelope(envelope, {
      type: MANIFEST_TYPE,
      rootPem: t.core.identity.rootPem,
      now: t.clock.now(),
      validate: validateManifest,
    })
    expect(verified.value).toEqual(manifest)
  })

  it.each([
    ['empty', 0],
    ['exactly two chunks', 2 * CHUNK],
    ['one byte', 1],
  ])('handles an %s artifact', async (_what, size) => {
    const bytes = randomBytes(size)
    const { manifest } = await ingestBytes(bytes)
    expect(manifest.content.size).toBe(size)
    expect(manifest.content.chunks).toHaveLength(Math.ceil(size / CHUNK))
    expect(manifest.bundleId).toBe(sha(bytes))
  })

  it('maps a dpkg installer to a dpkg install spec on raw content', async () => {
    const { manifest } = await ingestBytes(randomBytes(1000), {
      installer: { type: 'dpkg', package: 'openssl', maxRunSeconds: 1200 },
      rollback: { type: 'dpkg-previous' },
    })
    expect(manifest.install).toEqual({ type: 'dpkg', package: 'openssl', maxRunSeconds: 1200 })
    expect(manifest.rollback).toEqual({ type: 'dpkg-previous' })
    expect(manifest.content.format).toBe('raw')
  })

  it('refuses bytes that do not match the vendor digest: PSW_ERR_ARTIFACT_HASH, nothing recorded', async () => {
    const bytes = randomBytes(3 * CHUNK)
    const code = await rejectionCode(ingestBytes(bytes, { sha256: sha(randomBytes(10)) }))
    expect(code).toBe('PSW_ERR_ARTIFACT_HASH')
    await nothingRecorded()
  })

  it.each([
    ['shorter', -1],
    ['longer', 1],
  ])('refuses a file %s than declared: PSW_ERR_WAN_SIZE, nothing stored', async (_what, delta) => {
    const bytes = randomBytes(2 * CHUNK + 10)
    const code = await rejectionCode(ingestBytes(bytes, { size: bytes.length + delta }))
    expect(code).toBe('PSW_ERR_WAN_SIZE')
    expect(t.core.chunks.stats().chunks).toBe(0)
    await nothingRecorded()
  })

  it('refuses metadata that cannot make a manifest before storing anything', async () => {
    const bytes = randomBytes(CHUNK)
    const mismatched = ingestBytes(bytes, { rollback: { type: 'dpkg-previous' } })
    expect(await rejectionCode(mismatched)).toBe('PSW_ERR_MANIFEST_INVALID')
    expect(await rejectionCode(ingestBytes(bytes, { cves: ['CVE-1'] }))).toBe('PSW_ERR_MANIFEST_INVALID')
    expect(await rejectionCode(ingestBytes(bytes, { name: '../evil' }))).toBe('PSW_ERR_SCHEMA')
    expect(await rejectionCode(ingestBytes(bytes, { sha256: 'A'.repeat(64) }))).toBe('PSW_ERR_SCHEMA')
    expect(t.core.chunks.stats().chunks).toBe(0)
    await nothingRecorded()
  })

  it('refuses a missing file with PSW_ERR_INGEST_SOURCE', async () => {
    const artifact = artifactFor(randomBytes(10))
    const code = await rejectionCode(ingestArtifact(deps, { path: `${t.dir}/missing.bin`, artifact }))
    expect(code).toBe('PSW_ERR_INGEST_SOURCE')
  })

  it('stores only chunks the store does not hold yet (dedupe with an existing bundle)', async () => {
    const v1 = randomBytes(5 * CHUNK)
    const first = await ingestBytes(v1)
    expect(first.newChunks).toBe(5)
    // The next release shares its first three chunks with the previous one.
    const v2 = Buffer.concat([v1.subarray(0, 3 * CHUNK), randomBytes(CHUNK + 77)])
    const second = await ingestBytes(v2, { version: '1.2.4' })
    expect(second.newChunks).toBe(2)
    expect(second.manifest.content.chunks.slice(0, 3)).toEqual(first.manifest.content.chunks.slice(0, 3))
    expect(t.core.chunks.stats().chunks).toBe(7)
    // The very same bytes again (another feed lists them): nothing new, a newer manifest.
    const again = await ingestBytes(v1, { feedId: 'mirror' })
    expect(again.newChunks).toBe(0)
    expect(again.manifest.version).toBeGreaterThan(second.manifest.version)
  })

  it('stops on abort and records nothing', async () => {
    const controller = new AbortController()
    const bytes = randomBytes(6 * CHUNK)
    const p = ingestBytes(
      bytes,
      {},
      {
        signal: controller.signal,
        onProgress: () => controller.abort(new Error('stop')),
      },
    )
    await expect(p).rejects.toThrow('stop')
    await nothingRecorded()
  })

  it('is exposed on the core, and a tar ingest still signs no content.format (fixtures stay byte-identical)', async () => {
    const tar = await ingestSmallBundle(t, 'hello', '1.0')
    expect(Object.keys((await t.core.catalog.manifest(tar.bundleId))!.signed.content).sort()).toEqual([
      'chunkSize',
      'chunks',
      'sha256',
      'size',
    ])
    const bytes = randomBytes(1000)
    const path = await writeSource(t.dir, 'core.bin', bytes)
    const { manifest } = await t.core.ingestArtifact({ path, artifact: artifactFor(bytes) })
    expect(manifest.content.format).toBe('raw')
    // No chunk size configured: picked from the size (256 KiB for small artifacts).
    expect(t.core.config.chunkSize).toBeUndefined()
    expect(manifest.content.chunkSize).toBe(256 << 10)
  })
})

describe('ingestArtifact killed with SIGKILL midway', () => {
  let t: TestAppliance
  beforeEach(async () => {
    t = await openTestAppliance({ chunkSize: CHUNK })
  })
  afterEach(async () => {
    await t.cleanup()
  })

  it('leaves at worst unreferenced, intact chunks and no manifest', async () => {
    const bytes = randomBytes(512 * CHUNK)
    const path = await writeSource(t.dir, 'big.bin', bytes)
    const artifact = artifactFor(bytes)
    await t.core.close() // LevelDB admits one process: the child opens the data directory
    const script = join(t.dir, 'ingest-child.mts')
    await writeFile(
      script,
      `import { openApplianceCore } from ${JSON.stringify(new URL('./core.ts', import.meta.url).href)}
import { systemClock } from ${JSON.stringify(new URL('../shared/clock.ts', import.meta.url).href)}
import { silentLogger } from ${JSON.stringify(new URL('../shared/log.ts', import.meta.url).href)}
const [dataDir, path, artifact] = process.argv.slice(2)
const core = await openApplianceCore(dataDir, { clock: systemClock, log: silentLogger() })
let told = false
await core.ingestArtifact({ path, artifact: JSON.parse(artifact) }, { onProgress: (_p, done) => {
  if (done >= ${8 * CHUNK} && !told) { told = true; process.stdout.write('ready\\n') }
} })
process.stdout.write('finished\\n')
`,
    )
    const runTs = fileURLToPath(new URL('../bin/run-ts.js', import.meta.url))
    const child = spawn(process.execPath, [runTs, script, t.dataDir, path, JSON.stringify(artifact)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    let stderr = ''
    child.stderr.on('data', (d) => {
      stderr += d
    })
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)))
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString()
        if (out.includes('ready')) resolve()
      })
      child.on('exit', () => reject(new Error(`child exited before the cut point: ${out} ${stderr}`)))
    })
    child.kill('SIGKILL')
    expect(await exited).toBe('SIGKILL')
    expect(out).not.toContain('finished')

    const core = await t.reopen()
    expect(await core.catalog.list()).toEqual([])
    expect(await core.catalog.manifest(sha(bytes))).toBeUndefined()
    const stored = core.chunks.stats().chunks
    expect(stored).toBeGreaterThanOrEqual(8)
    expect(stored).toBeLessThan(512)
    const names = (await readdir(core.layout.chunks, { recursive: true })).filter((n) => n.includes('/'))
    expect(names.every((n) => /^[0-9a-f]{2}\/[0-9a-f]{64}$/.test(n))).toBe(true) // no tmp leftovers
    for (const n of names) expect(await core.chunks.verify(n.slice(3))).toBe(true)
    // The same artifact ingests completely afterwards, reusing what was stored.
    const again = await core.ingestArtifact({ path, artifact })
    expect(again.newChunks).toBe(512 - stored)
  }, 60_000)
})

describe('artifactChunkSize', () => {
  it('keeps the preferred size unless the artifact would exceed the chunk limit', () => {
    expect(artifactChunkSize(10 << 30, 1 << 20)).toBe(1 << 20)
    expect(artifactChunkSize(64 * 1024 ** 3, 1 << 20)).toBe(2 << 20)
    expect(artifactChunkSize(0, 64 << 10)).toBe(64 << 10)
    expect(() => artifactChunkSize(50_001 * (16 << 20), 1 << 20)).toThrow(
      expect.objectContaining({ code: 'PSW_ERR_TOO_LARGE' }),
    )
  })
})
