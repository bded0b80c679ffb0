import { createHash, randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { silentLogger } from '../../shared/log.ts'
import { enrollNewAgent, ingestSmallBundle, openTestAppliance, type TestAppliance } from '../test-fixtures.ts'
import { BundleCache } from './bundle-cache.ts'
import type { FeedArtifact } from './feed-types.ts'
import { UpstreamCatalog } from './upstream-catalog.ts'
import { type ArtifactFetcher, UpstreamService, type UpstreamServiceDeps } from './upstream-service.ts'
import { VendorFeed } from './vendor-feed.ts'
import { entry, type FeedServer, feedBytes, feedDoc, startFeedServer, T0 } from './vendor-feed-test-helpers.ts'
import { WanDownloader } from './wan-downloader.ts'
import { WanLimiter } from './wan-limiter.ts'
import { unlimitedWanSchedule } from './wan-schedule.ts'

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex')

/** The real downloader, counting fetch() calls. */
class CountingFetcher implements ArtifactFetcher {
  calls = 0
  constructor(readonly inner: WanDownloader) {}
  fetch(artifact: FeedArtifact, options?: { signal?: AbortSignal }) {
    this.calls++
    return this.inner.fetch(artifact, options)
  }
  snapshot() {
    return this.inner.snapshot()
  }
}

describe('UpstreamService (real feed server, WAN downloader, LevelDB and content store)', () => {
  let t: TestAppliance
  let server: FeedServer
  let limiter: WanLimiter
  let downloader: WanDownloader
  let fetcher: CountingFetcher
  let service: UpstreamService | undefined
  const bodies = new Map<string, Buffer>()

  function artifactEntry(id: string, body: Buffer, over: Record<string, unknown> = {}) {
    bodies.set(id, body)
    server.files.set(`/files/${id}.bin`, body)
    return entry(id, { url: `files/${id}.bin`, size: body.length, sha256: sha(body), name: id, ...over })
  }

  beforeEach(async () => {
    t = await openTestAppliance()
    t.clock.set(T0 + 60_000) // the test feeds are generated at T0
    server = await startFeedServer()
    limiter = new WanLimiter({ clock: t.clock }, { schedule: unlimitedWanSchedule() })
    limiter.start()
    downloader = new WanDownloader(
      { limiter, clock: t.clock, log: silentLogger() },
      { dir: join(t.dir, 'upstream'), maxAttempts: 1 },
    )
    await downloader.start()
    fetcher = new CountingFetcher(downloader)
  })

  afterEach(async () => {
    await service?.stop()
    service = undefined
    await downloader.stop()
    limiter.stop()
    await server.close()
    await t.cleanup()
  })

  function makeService(
    options: { quotaBytes?: number; emergency?: boolean; prefetch?: UpstreamServiceDeps['prefetch'] } = {},
  ) {
    const upstream = new UpstreamCatalog(t.core.db)
    const cache = new BundleCache({
      db: t.core.db,
      catalog: t.core.catalog,
      upstream,
      chunks: t.core.chunks,
      pinned: () => t.core.assignments.assignedBundleIds(),
      clock: t.clock,
      log: silentLogger(),
      quotaBytes: options.quotaBytes ?? 0,
    })
    const feed = new VendorFeed(
      { id: 'acme', kind: 'patchswarm', url: server.url('/feed.json') },
      { fetchIndex: downloader.fetchIndex, clock: t.clock },
    )
    service = new UpstreamService({
      catalog: upstream,
      feeds: [feed],
      downloader: fetcher,
      cache,
      ingest: async (path, artifact) => {
        const { record } = await t.core.ingest({
          source: path,
          name: artifact.name,
          version: artifact.version,
          targetRoot: '/opt/test',
        })
        return { bundleId: record.bundleId }
      },
      autoDownload: { severities: [], classifications: [], emergency: options.emergency ?? true },
      syncIntervalMs: 3_600_000,
      ...(options.prefetch ? { prefetch: options.prefetch } : {}),
      clock: t.clock,
      log: silentLogger(),
    })
    return { service, upstream, cache }
  }

  it('lists a feed into the upstream catalog; emergencies are fetched and ingested at once, the rest wait', async () => {
    server.files.set(
      '/feed.json',
      feedBytes(
        feedDoc([
          artifactEntry('urgent', randomBytes(70_000), { emergency: true }),
          artifactEntry('routine', randomBytes(50_000)),
        ]),
      ),
    )
    const { service, upstream } = makeService()
    const [report] = await service.syncNow()
    expect(report).toMatchObject({ feedId: 'acme', ok: true, artifacts: 2, added: 2, skipped: 0 })
    expect((await upstream.get('acme/routine'))?.state).toBe('available')
    // syncNow() ran before start(): nothing runs until the service is started.
    await service.start()
    const urgent = await until(async () => {
      const e = await upstream.get('acme/urgent')
      return e?.state === 'ready' ? e : undefined
    })
    expect(urgent.requestedBy).toBe('auto-download')
    const record = await t.core.catalog.get(urgent.bundleId!)
    expect(record).toMatchObject({ name: 'urgent' })
    expect((await upstream.get('acme/routine'))?.state).toBe('available')
    const feedState = await upstream.feed('acme')
    expect(feedState).toMatchObject({ kind: 'patchswarm', artifacts: 2 })
    expect(feedState?.generated).toBeDefined()
    expect(server.requests.filter((r) => r === '/files/routine.bin')).toHaveLength(0)
  })

  it('prefetches what policy wants (an auto-approval rule) and leaves the rest available', async () => {
    server.files.set(
      '/feed.json',
      feedBytes(
        feedDoc([
          artifactEntry('critical', randomBytes(40_000), { severity: 'critical' }),
          artifactEntry('low', randomBytes(30_000), { severity: 'low' }),
        ]),
      ),
    )
    const { service, upstream } = makeService({
      prefetch: async () => (a) => a.severity === 'critical',
    })
    await service.syncNow()
    expect(await upstream.get('acme/critical')).toMatchObject({ state: 'queued', requestedBy: 'auto-approval' })
    expect((await upstream.get('acme/low'))?.state).toBe('available')
    await service.start()
    await until(async () => ((await upstream.get('acme/critical'))?.state === 'ready' ? true : undefined))
    expect(server.requests.filter((r) => r === '/files/low.bin')).toHaveLength(0)
  })

  it('ten requests for the same artifact cause exactly one WAN download', async () => {
    server.files.set('/feed.json', feedBytes(feedDoc([artifactEntry('big', randomBytes(300_000))])))
    const { service, upstream } = makeService()
    await service.start()
    await service.syncNow()
    const results = await Promise.all(Array.from({ length: 10 }, () => service.request('acme/big', 'test')))
    expect(results.every((r) => r.state === 'queued' || r.state === 'downloading')).toBe(true)
    const done = await service.settled('acme/big')
    expect(done.state).toBe('ready')
    expect(server.requests.filter((r) => r === '/files/big.bin')).toHaveLength(1)
    expect(fetcher.calls).toBe(1)
    // Asking again for a ready artifact downloads nothing.
    expect((await service.request('acme/big', 'test')).state).toBe('ready')
    expect(server.requests.filter((r) => r === '/files/big.bin')).toHaveLength(1)
    expect((await upstream.get('acme/big'))?.bundleId).toBeDefined()
  })

  it('quarantines an artifact whose bytes do not match the feed, and ingests nothing', async () => {
    const good = randomBytes(40_000)
    const e = artifactEntry('tampered', good)
    server.files.set('/files/tampered.bin', randomBytes(40_000)) // same size, other bytes
    server.files.set('/feed.json', feedBytes(feedDoc([e])))
    const { service } = makeService()
    await service.start()
    await service.syncNow()
    await service.request('acme/tampered', 'test')
    const done = await service.settled('acme/tampered')
    expect(done.state).toBe('quarantined')
    expect(done.error?.code).toBe('PSW_ERR_ARTIFACT_HASH')
    expect(await t.core.catalog.list()).toHaveLength(0)
  })

  it('records a feed that fails as a whole and keeps what it listed before', async () => {
    server.files.set('/feed.json', feedBytes(feedDoc([artifactEntry('one', randomBytes(1000))])))
    const { service, upstream } = makeService({ emergency: false })
    await service.syncNow()
    server.files.set('/feed.json', '{ not json')
    const [report] = await service.syncNow()
    expect(report).toMatchObject({ ok: false, error: { code: 'PSW_ERR_FEED_INVALID' } })
    expect((await upstream.get('acme/one'))?.listed).toBe(true)
    const state = await upstream.feed('acme')
    expect(state?.lastError?.code).toBe('PSW_ERR_FEED_INVALID')
    expect(state?.artifacts).toBe(1)
  })

  it('marks artifacts the feed no longer lists, and restarts ones whose bytes changed', async () => {
    server.files.set(
      '/feed.json',
      feedBytes(feedDoc([artifactEntry('a', randomBytes(1000)), artifactEntry('b', randomBytes(1000))])),
    )
    const { service, upstream } = makeService({ emergency: false })
    await service.start()
    await service.syncNow()
    await service.request('acme/a', 'test')
    expect((await service.settled('acme/a')).state).toBe('ready')
    server.files.set(
      '/feed.json',
      feedBytes(
        feedDoc([artifactEntry('a', randomBytes(2000))], { generated: new Date(Date.UTC(2026, 2, 2)).toISOString() }),
      ),
    )
    t.clock.set(Date.UTC(2026, 2, 2, 1))
    const [report] = await service.syncNow()
    expect(report?.ok).toBe(true)
    expect(await upstream.get('acme/b')).toMatchObject({ listed: false, state: 'available' })
    const a = await upstream.get('acme/a')
    expect(a).toMatchObject({ listed: true, state: 'available' })
    expect(a?.artifact.size).toBe(2000)
  })

  it('takes up queued artifacts again after a restart (kill -9 between acknowledgement and download)', async () => {
    server.files.set('/feed.json', feedBytes(feedDoc([artifactEntry('later', randomBytes(5000))])))
    const first = makeService({ emergency: false })
    await first.service.syncNow()
    // What request() writes before it acknowledges, without the service running the job.
    const e = await first.upstream.require('acme/later')
    await first.upstream.put({ ...e, state: 'queued', requestedBy: 'operator' })
    const { service, upstream } = makeService({ emergency: false })
    await service.start()
    const done = await until(async () => {
      const x = await upstream.get('acme/later')
      return x?.state === 'ready' ? x : undefined
    })
    expect(done.requestedBy).toBe('operator')
  })

  it('evicts bundles no assignment needs, least recently used first, to stay under the quota', async () => {
    const old = await ingestSmallBundle(t, 'old', '1')
    t.clock.advance(60_000)
    const pinned = await ingestSmallBundle(t, 'pinned', '1')
    t.clock.advance(60_000)
    const recent = await ingestSmallBundle(t, 'recent', '1')
    await enrollNewAgent(t.core, 'host-1')
    await t.core.assignments.assign(pinned.bundleId, 'all')
    const sizes = old.size + pinned.size + recent.size
    const { cache } = makeService({ quotaBytes: sizes + 100 })
    // Room for 100 more bytes: nothing to do.
    expect(await cache.ensureRoom(100)).toEqual([])
    // Room for one more bundle's worth: the oldest unpinned one goes.
    expect(await cache.ensureRoom(old.size + 100)).toEqual([old.bundleId])
    expect(await t.core.catalog.get(old.bundleId)).toBeUndefined()
    const manifestOfRecent = await t.core.catalog.manifest(recent.bundleId)
    for (const h of manifestOfRecent!.signed.content.chunks) expect(await t.core.chunks.has(h)).toBe(true)
    // More than what is unpinned: refused, nothing evicted.
    const code = await cache.ensureRoom(sizes).then(
      () => undefined,
      (err: { code?: string }) => err.code,
    )
    expect(code).toBe('PSW_ERR_CACHE_FULL')
    expect(await t.core.catalog.get(recent.bundleId)).toBeDefined()
    expect(await t.core.catalog.get(pinned.bundleId)).toBeDefined()
    expect((await cache.usage()).pinnedBundles).toBe(1)
  })
})

async function until<T>(probe: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await probe()
    if (v !== undefined) return v
    if (Date.now() > deadline) throw new Error('condition not reached in time')
    await new Promise((r) => setTimeout(r, 20))
  }
}
