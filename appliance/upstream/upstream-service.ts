import { rm } from 'node:fs/promises'
import type { Logger } from 'pino'
import type { Clock } from '../../shared/clock.ts'
import { hasCode, isPswError, ValidationError } from '../../shared/errors.ts'
import type { StateBatchOp } from '../../shared/store/state-db.ts'
import type { BundleCache } from './bundle-cache.ts'
import type { DownloadProgress } from './download-progress.ts'
import type { FeedAdapter, FeedArtifact, FeedListing } from './feed-types.ts'
import {
  type ArtifactError,
  artifactRef,
  type FeedState,
  type UpstreamCatalog,
  type UpstreamEntry,
} from './upstream-catalog.ts'
import type { UpstreamConfig } from './upstream-config.ts'
import type { FetchResult } from './wan-downloader.ts'

/** What the service needs of the WAN downloader (narrow, so tests can count fetches). */
export interface ArtifactFetcher {
  fetch(artifact: FeedArtifact, options?: { signal?: AbortSignal }): Promise<FetchResult>
  snapshot(): DownloadProgress[]
}

export interface UpstreamServiceDeps {
  catalog: UpstreamCatalog
  feeds: FeedAdapter[]
  downloader: ArtifactFetcher
  cache: BundleCache
  /** Turns a verified artifact file into a signed bundle; returns its id. */
  ingest: (path: string, artifact: FeedArtifact, signal: AbortSignal) => Promise<{ bundleId: string }>
  autoDownload: UpstreamConfig['autoDownload']
  /**
   * Asked once per feed sync: which new artifacts policy already wants (the auto-approval
   * rules), so they are downloaded over the WAN before anyone deploys them. Absent = none.
   */
  prefetch?: () => Promise<(artifact: FeedArtifact) => boolean>
  syncIntervalMs: number
  clock: Clock
  log: Logger
  /** Called once an artifact is requested or settles as failed/quarantined (the audit log). */
  onEvent?: (event: {
    type: 'requested' | 'ready' | 'failed' | 'quarantined'
    entry: UpstreamEntry
    by?: string
  }) => Promise<void>
}

export interface SyncReport {
  feedId: string
  ok: boolean
  artifacts: number
  added: number
  skipped: number
  error?: ArtifactError
}

export interface UpstreamStatus {
  feeds: FeedState[]
  downloads: DownloadProgress[]
  counts: Record<string, number>
}

/**
 * The appliance's upstream side: lists every feed on a schedule, records what they offer
 * (the upstream catalog), and turns the artifacts it is asked for — by an operator or an
 * auto-download rule — into signed bundles: make room in the cache, download once over the
 * WAN (single-flight, resumable, verified), ingest. Everything acknowledged is in LevelDB
 * first, so a restart takes up every queued or interrupted artifact again.
 */
export class UpstreamService {
  readonly #d: UpstreamServiceDeps
  readonly #running = new Map<string, Promise<void>>()
  readonly #abort = new AbortController()
  #timer: NodeJS.Timeout | undefined
  #syncing: Promise<SyncReport[]> | undefined
  #started = false

  constructor(deps: UpstreamServiceDeps) {
    this.#d = { ...deps }
  }

  /**
   * A configuration change (the Settings page): new feeds, auto-download rules or sync
   * interval apply from the next sync; a changed interval reschedules the next sync. Work in
   * flight is not touched.
   */
  reconfigure(change: Partial<Pick<UpstreamServiceDeps, 'feeds' | 'autoDownload' | 'syncIntervalMs'>>): void {
    const intervalChanged = change.syncIntervalMs !== undefined && change.syncIntervalMs !== this.#d.syncIntervalMs
    Object.assign(this.#d, change)
    if (intervalChanged && this.#started && this.#syncing === undefined) this.#schedule(this.#d.syncIntervalMs)
  }

  /** Takes up interrupted work, then syncs every feed now and every `syncIntervalMs`. */
  async start(): Promise<void> {
    if (this.#started) return
    this.#started = true
    for (const e of await this.#d.catalog.list()) {
      if (e.state === 'queued' || e.state === 'downloading' || e.state === 'ingesting') this.#run(e.ref)
    }
    this.#schedule(0)
  }

  async stop(): Promise<void> {
    if (!this.#started) return
    this.#started = false
    clearTimeout(this.#timer)
    this.#abort.abort(new Error('appliance stopping'))
    await Promise.allSettled([...this.#running.values(), this.#syncing])
  }

  #schedule(ms: number): void {
    clearTimeout(this.#timer)
    this.#timer = setTimeout(() => {
      void this.syncNow()
        .catch((err) => this.#d.log.error({ err }, 'feed sync failed'))
        .finally(() => {
          if (this.#started) this.#schedule(this.#d.syncIntervalMs)
        })
    }, ms)
    this.#timer.unref()
  }

  /** Lists every feed (or one) now; one sync at a time. */
  syncNow(feedId?: string): Promise<SyncReport[]> {
    if (feedId !== undefined && !this.#d.feeds.some((f) => f.id === feedId)) {
      return Promise.reject(new ValidationError('PSW_ERR_NOT_FOUND', `no feed '${feedId}' is configured`))
    }
    const previous = this.#syncing ?? Promise.resolve([])
    const next = previous
      .catch(() => [])
      .then(async () => {
        const reports: SyncReport[] = []
        for (const feed of this.#d.feeds) {
          if (feedId !== undefined && feed.id !== feedId) continue
          if (this.#abort.signal.aborted) break
          reports.push(await this.#syncFeed(feed))
        }
        return reports
      })
    this.#syncing = next
    return next
  }

  async #syncFeed(feed: FeedAdapter): Promise<SyncReport> {
    const { catalog, clock, log } = this.#d
    const now = new Date(clock.now()).toISOString()
    const previous = (await catalog.feed(feed.id)) ?? { feedId: feed.id, kind: feed.kind, artifacts: 0, skipped: [] }
    let listing: FeedListing & { generated?: string; release?: { date: number } }
    try {
      listing = await feed.list(this.#abort.signal)
    } catch (err) {
      const error = toError(err, now)
      log.warn({ feed: feed.id, code: error.code, err }, 'feed sync failed; nothing from it was used')
      await catalog.batch([catalog.feedOp({ ...previous, lastSyncAt: now, lastError: error })])
      return { feedId: feed.id, ok: false, artifacts: 0, added: 0, skipped: 0, error }
    }
    const existing = new Map((await catalog.list({ feedId: feed.id })).map((e) => [e.ref, e]))
    const policyWants =
      (await this.#d.prefetch?.().catch((err: unknown) => {
        log.warn({ err }, 'auto-approval rules not read; no prefetch this sync')
        return undefined
      })) ?? (() => false)
    const ops: StateBatchOp[] = []
    const toFetch: string[] = []
    let added = 0
    const seen = new Set<string>()
    for (const artifact of listing.artifacts) {
      const ref = artifactRef(feed.id, artifact.key)
      seen.add(ref)
      const old = existing.get(ref)
      if (old && old.artifact.sha256 === artifact.sha256 && old.artifact.size === artifact.size) {
        ops.push(catalog.putOp({ ...old, artifact, listed: true, lastSeen: now }))
        continue
      }
      // New, or the feed now names other bytes under the same key: start over.
      if (!old) added++
      const entry: UpstreamEntry = {
        ref,
        artifact,
        state: 'available',
        listed: true,
        firstSeen: old?.firstSeen ?? now,
        lastSeen: now,
      }
      const why = this.#wanted(artifact) ? 'auto-download' : policyWants(artifact) ? 'auto-approval' : undefined
      if (why) {
        entry.state = 'queued'
        entry.requestedBy = why
        entry.requestedAt = now
        toFetch.push(ref)
      }
      ops.push(catalog.putOp(entry))
      if (!old)
        log.info(
          { feed: feed.id, ref, name: artifact.name, version: artifact.version, severity: artifact.severity },
          'new upstream artifact',
        )
    }
    for (const [ref, old] of existing)
      if (!seen.has(ref) && old.listed) ops.push(catalog.putOp({ ...old, listed: false }))
    ops.push(
      catalog.feedOp({
        feedId: feed.id,
        kind: feed.kind,
        lastSyncAt: now,
        lastOkAt: now,
        artifacts: listing.artifacts.length,
        skipped: listing.skipped.slice(0, 100),
        ...(listing.generated === undefined ? {} : { generated: listing.generated }),
        ...(listing.release === undefined ? {} : { releaseDate: listing.release.date }),
      }),
    )
    await catalog.batch(ops)
    for (const ref of toFetch) {
      const entry = await catalog.get(ref)
      if (entry) await this.#d.onEvent?.({ type: 'requested', entry, by: entry.requestedBy ?? 'auto-download' })
      this.#run(ref)
    }
    if (listing.skipped.length > 0)
      log.warn({ feed: feed.id, skipped: listing.skipped.slice(0, 10) }, 'feed entries skipped')
    log.info(
      { feed: feed.id, artifacts: listing.artifacts.length, added, skipped: listing.skipped.length },
      'feed synced',
    )
    return { feedId: feed.id, ok: true, artifacts: listing.artifacts.length, added, skipped: listing.skipped.length }
  }

  #wanted(a: FeedArtifact): boolean {
    const rule = this.#d.autoDownload
    return (
      (a.emergency && rule.emergency) ||
      rule.severities.includes(a.severity) ||
      rule.classifications.includes(a.classification)
    )
  }

  /**
   * Asks for an artifact (`<feedId>/<key>`): queued durably, then downloaded and ingested in
   * the background. Ready, queued or in-progress artifacts are left as they are; failed,
   * quarantined and evicted ones are tried again.
   */
  async request(ref: string, by: string): Promise<UpstreamEntry> {
    const { catalog, clock } = this.#d
    const entry = await catalog.require(ref)
    if (entry.state === 'ready' || this.#running.has(ref)) return entry
    const queued: UpstreamEntry = {
      ...entry,
      state: 'queued',
      requestedBy: by,
      requestedAt: new Date(clock.now()).toISOString(),
    }
    delete queued.error
    await catalog.put(queued)
    await this.#d.onEvent?.({ type: 'requested', entry: queued, by })
    this.#run(ref)
    return queued
  }

  /** Resolves when an artifact's current download/ingest (if any) has ended. */
  async settled(ref: string): Promise<UpstreamEntry> {
    await this.#running.get(ref)
    return this.#d.catalog.require(ref)
  }

  async status(): Promise<UpstreamStatus> {
    const counts: Record<string, number> = {}
    for (const e of await this.#d.catalog.list()) counts[e.state] = (counts[e.state] ?? 0) + 1
    return { feeds: await this.#d.catalog.feeds(), downloads: this.#d.downloader.snapshot(), counts }
  }

  #run(ref: string): void {
    if (this.#running.has(ref) || !this.#started) return
    const job = this.#process(ref).finally(() => this.#running.delete(ref))
    this.#running.set(ref, job)
  }

  async #process(ref: string): Promise<void> {
    const { catalog, cache, downloader, clock, log } = this.#d
    const signal = this.#abort.signal
    let entry = await catalog.require(ref)
    const set = async (patch: Partial<UpstreamEntry>) => {
      entry = { ...entry, ...patch }
      await catalog.put(entry)
    }
    try {
      await cache.ensureRoom(entry.artifact.size)
      await set({ state: 'downloading' })
      const file = await downloader.fetch(entry.artifact, { signal })
      await set({ state: 'ingesting' })
      const { bundleId } = await this.#d.ingest(file.path, entry.artifact, signal)
      cache.touch(bundleId)
      await set({ state: 'ready', bundleId, readyAt: new Date(clock.now()).toISOString() })
      await this.#d.onEvent?.({ type: 'ready', entry })
      // The bundle holds the content now; the verified file would only double the disk use.
      await rm(file.path, { force: true })
      log.info({ ref, bundleId, name: entry.artifact.name, version: entry.artifact.version }, 'upstream artifact ready')
    } catch (err) {
      if (signal.aborted) return // stopping: the state stays queued/downloading and is resumed at start
      const error = toError(err, new Date(clock.now()).toISOString())
      const quarantined = hasCode(err, 'PSW_ERR_ARTIFACT_HASH')
      await set({ state: quarantined ? 'quarantined' : 'failed', error })
      await this.#d.onEvent?.({ type: quarantined ? 'quarantined' : 'failed', entry }).catch(() => {})
      log.error(
        { ref, code: error.code, err },
        quarantined ? 'upstream artifact quarantined' : 'upstream artifact failed',
      )
    }
  }
}

function toError(err: unknown, at: string): ArtifactError {
  return isPswError(err)
    ? { code: err.code, message: err.message, at }
    : { code: 'PSW_ERR_INTERNAL', message: err instanceof Error ? err.message : String(err), at }
}
