import type { Logger } from 'pino'
import type { Clock } from '../../shared/clock.ts'
import type { ApplianceCore } from '../core.ts'
import { WanCounters } from '../metrics/wan-counters.ts'
import { ruleMatches } from '../policy/approvals.ts'
import { AptFeed } from './apt-feed.ts'
import { BundleCache } from './bundle-cache.ts'
import type { FeedAdapter, IndexFetcher } from './feed-types.ts'
import { FolderFeed } from './folder-feed.ts'
import { UpstreamCatalog } from './upstream-catalog.ts'
import { defaultUpstreamConfig, type FeedConfig, type UpstreamConfig } from './upstream-config.ts'
import { UpstreamService } from './upstream-service.ts'
import { VendorFeed } from './vendor-feed.ts'
import { WanDownloader } from './wan-downloader.ts'
import { WanLimiter } from './wan-limiter.ts'

/** The upstream side of one appliance, wired from its configuration. */
export interface Upstream {
  readonly config: UpstreamConfig
  readonly catalog: UpstreamCatalog
  readonly service: UpstreamService
  readonly downloader: WanDownloader
  readonly limiter: WanLimiter
  readonly cache: BundleCache
  readonly wan: WanCounters
  start(): Promise<void>
  stop(): Promise<void>
  /**
   * Applies a new upstream configuration to the running parts: feeds, sync interval,
   * auto-download rules, WAN schedule and cache quota. The WAN counters' day boundary keeps
   * its time zone until the next start.
   */
  reconfigure(config: UpstreamConfig): void
}

/** Builds a feed adapter from its configuration entry. */
export function createFeed(
  config: FeedConfig,
  deps: { fetchIndex: IndexFetcher; clock: Clock; catalog: UpstreamCatalog; log: Logger },
): FeedAdapter {
  const log = deps.log.child({ feed: config.id })
  const state = () => deps.catalog.feed(config.id)
  switch (config.kind) {
    case 'patchswarm':
      return new VendorFeed(config, { ...deps, log, lastGenerated: async () => (await state())?.generated })
    case 'folder':
      return new FolderFeed(config, { clock: deps.clock, log, lastGenerated: async () => (await state())?.generated })
    case 'apt':
      return new AptFeed(config, {
        fetchIndex: deps.fetchIndex,
        clock: deps.clock,
        lastSeenReleaseDate: async () => (await state())?.releaseDate,
      })
  }
}

/**
 * Wires feeds, the WAN limiter and downloader, the cache, the WAN counters and the upstream
 * service for an open appliance core. `patchswarm appliance start` runs it; the CLI runs it
 * too when it works on a data directory no appliance process holds (e.g. a USB import).
 */
export function createUpstream(core: ApplianceCore, deps: { clock: Clock; log: Logger }): Upstream {
  const config = core.config.upstream ?? defaultUpstreamConfig()
  const log = deps.log.child({ component: 'appliance:upstream' })
  const catalog = new UpstreamCatalog(core.db)
  const wan = new WanCounters({ db: core.db, clock: deps.clock, timeZone: config.wan.schedule.timeZone, log })
  const limiter = new WanLimiter(
    { clock: deps.clock, log },
    {
      schedule: config.wan.schedule,
      onRateChange: (rate) => log.info({ bytesPerSecond: rate }, 'WAN rate cap changed'),
    },
  )
  const downloader = new WanDownloader(
    {
      limiter,
      clock: deps.clock,
      log: log.child({ component: 'appliance:wan' }),
      onQuarantine: ({ artifact, reason, path }) => {
        // The alert: an error-level log line now; the web UI and the MSP link pick it up later.
        log.error(
          {
            alert: 'artifact-quarantined',
            feed: artifact.feedId,
            key: artifact.key,
            sha256: artifact.sha256,
            reason,
            path,
          },
          'ALERT: an upstream artifact failed verification and was quarantined',
        )
      },
      onWanBytes: (sha256, n) => wan.addArtifactBytes(sha256, n),
      onIndexBytes: (_url, n) => wan.addIndexBytes(n),
    },
    { dir: core.layout.upstream, ...config.wan.downloader },
  )
  const cache = new BundleCache({
    db: core.db,
    catalog: core.catalog,
    upstream: catalog,
    chunks: core.chunks,
    pinned: () => core.assignments.assignedBundleIds(),
    clock: deps.clock,
    log,
    quotaBytes: config.cache.quotaBytes,
  })
  const feeds = config.feeds.map((f) =>
    createFeed(f, { fetchIndex: downloader.fetchIndex, clock: deps.clock, catalog, log }),
  )
  const service = new UpstreamService({
    catalog,
    feeds,
    downloader,
    cache,
    ingest: async (path, artifact, signal) => {
      const { record } = await core.ingestArtifact({ path, artifact }, { signal })
      return { bundleId: record.bundleId }
    },
    autoDownload: config.autoDownload,
    // What an auto-approval rule would approve is fetched ahead: approval then finds it ready.
    prefetch: async () => {
      const rules = await core.approvals.rules()
      return (a) => rules.some((rule) => ruleMatches(rule, a))
    },
    syncIntervalMs: config.syncIntervalMinutes * 60_000,
    onEvent: async ({ type, entry, by }) => {
      // A patch new to the catalog: the auto-approval rules look at it first.
      if (type === 'ready' && entry.bundleId) await core.approvals.evaluate(entry.bundleId)
      const automatic = by === 'auto-download' || by === 'auto-approval'
      const operator = by !== undefined && !automatic
      await core.audit.append({
        actor: operator ? { type: 'operator', id: by } : { type: 'system', id: 'upstream' },
        action: `upstream.${type}`,
        target: { type: 'upstream-artifact', id: entry.ref },
        after: {
          state: entry.state,
          sha256: entry.artifact.sha256,
          size: entry.artifact.size,
          ...(entry.bundleId === undefined ? {} : { bundleId: entry.bundleId }),
          ...(entry.error === undefined ? {} : { error: entry.error }),
        },
        ...(by === 'auto-download' ? { reason: 'auto-download rule' } : {}),
        ...(by === 'auto-approval' ? { reason: 'prefetch: an auto-approval rule would approve it' } : {}),
      })
    },
    clock: deps.clock,
    log,
  })
  let started = false
  let current = config
  return {
    get config() {
      return current
    },
    catalog,
    service,
    downloader,
    limiter,
    cache,
    wan,
    async start() {
      if (started) return
      started = true
      await wan.start()
      limiter.start()
      await downloader.start()
      await service.start()
    },
    async stop() {
      if (!started) return
      started = false
      await service.stop()
      await downloader.stop()
      limiter.stop()
      await wan.stop()
    },
    reconfigure(next) {
      limiter.setSchedule(next.wan.schedule)
      cache.setQuota(next.cache.quotaBytes)
      service.reconfigure({
        feeds: next.feeds.map((f) =>
          createFeed(f, { fetchIndex: downloader.fetchIndex, clock: deps.clock, catalog, log }),
        ),
        autoDownload: next.autoDownload,
        syncIntervalMs: next.syncIntervalMinutes * 60_000,
      })
      current = next
      log.info(
        {
          feeds: next.feeds.map((f) => f.id),
          wan: next.wan.schedule.defaultBytesPerSecond,
          quota: next.cache.quotaBytes,
        },
        'upstream configuration applied',
      )
    },
  }
}
