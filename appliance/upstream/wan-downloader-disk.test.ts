import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { systemClock } from '../../shared/clock.ts'
import { silentLogger } from '../../shared/log.ts'
import type { FeedArtifact } from './feed-types.ts'

// Simulates a full disk: while `enospc.on` is set, FileHandle.write fails with ENOSPC.
const enospc = vi.hoisted(() => ({ on: false }))
vi.mock('node:fs/promises', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs/promises')>()
  const open: typeof fs.open = async (...args) => {
    const handle = await fs.open(...args)
    const write = handle.write.bind(handle)
    handle.write = (async (...a: Parameters<typeof write>) => {
      if (enospc.on) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' })
      return write(...a)
    }) as typeof handle.write
    return handle
  }
  return { ...fs, open, default: { ...fs, open } }
})

const { WanDownloader } = await import('./wan-downloader.ts')
const { WanLimiter } = await import('./wan-limiter.ts')
const { unlimitedWanSchedule } = await import('./wan-schedule.ts')
const { serveBytes, startTestServer } = await import('./wan-test-helpers.ts')

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')

function artifactFor(body: Buffer, source: FeedArtifact['source']): FeedArtifact {
  return {
    feedId: 'f',
    key: 'k',
    source,
    size: body.length,
    sha256: sha(body),
    name: 'pkg',
    version: '1',
    vendor: 'v',
    product: 'p',
    classification: 'security',
    severity: 'high',
    cves: [],
    supersedes: [],
    requires: [],
    os: 'any',
    arch: 'any',
    installer: { type: 'files', targetRoot: '/opt/p' },
    rollback: { type: 'none' },
    emergency: false,
  }
}

describe('WanDownloader on a full disk', () => {
  let dir: string
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'psw-wan-disk-'))
  })
  afterEach(async () => {
    enospc.on = false
    await rm(dir, { recursive: true, force: true })
  })

  it('fails with PSW_ERR_DISK_FULL, removes the partial and its sidecar, and does not retry', async () => {
    const body = randomBytes(50_000)
    const server = await startTestServer((req, res) => serveBytes(req, res, body))
    const limiter = new WanLimiter({ clock: systemClock }, { schedule: unlimitedWanSchedule() })
    const d = new WanDownloader(
      { limiter, clock: systemClock, log: silentLogger() },
      { dir, backoffBaseMs: 1, backoffMaxMs: 2 },
    )
    await d.start()
    try {
      enospc.on = true
      await expect(d.fetch(artifactFor(body, { kind: 'http', url: server.url() }))).rejects.toMatchObject({
        name: 'StoreError',
        code: 'PSW_ERR_DISK_FULL',
      })
      expect(server.requests).toHaveLength(1)
      expect(await readdir(join(dir, 'partial'))).toEqual([])

      const src = join(dir, 'usb.bin')
      enospc.on = false
      await writeFile(src, body)
      enospc.on = true
      await expect(d.fetch(artifactFor(body, { kind: 'file', path: src }))).rejects.toMatchObject({
        code: 'PSW_ERR_DISK_FULL',
      })
      expect(await readdir(join(dir, 'partial'))).toEqual([])
    } finally {
      await d.stop()
      await server.close()
    }
  })
})
