import type { Logger } from 'pino'
import type { Clock } from '../../shared/clock.ts'
import { UpstreamError } from '../../shared/errors.ts'
import type { ChunkStore } from '../../shared/store/chunk-store.ts'
import { Mutex } from '../../shared/store/mutex.ts'
import type { StateBatchOp, StateDb } from '../../shared/store/state-db.ts'
import type { BundleRecord, Catalog } from '../catalog.ts'
import type { UpstreamCatalog } from './upstream-catalog.ts'

export interface BundleCacheDeps {
  db: StateDb
  catalog: Catalog
  upstream: UpstreamCatalog
  chunks: ChunkStore
  /** Bundles a device's assignment names: pinned, never evicted. */
  pinned: () => Promise<Set<string>>
  clock: Clock
  log: Logger
  /** 0 = no quota. */
  quotaBytes: number
}

export interface CacheUsage {
  quotaBytes: number
  /** Sum of the sizes of the bundles in the catalog (shared chunks counted once per bundle). */
  usedBytes: number
  bundles: number
  pinnedBundles: number
}

const USED = 'cache:used:'

/**
 * The content store's disk quota. Before an artifact is downloaded, `ensureRoom()` makes
 * space for it by evicting bundles no assignment needs, least recently used first (used =
 * ingested or re-requested upstream, whichever is latest); bundles of active assignments are
 * pinned. When the quota cannot be met even then, the download is refused
 * with PSW_ERR_CACHE_FULL rather than filling the disk.
 */
export class BundleCache {
  readonly #d: BundleCacheDeps
  readonly #lock = new Mutex()
  /** Last-use times not yet written (touch() is called on hot paths). */
  readonly #touched = new Map<string, number>()

  constructor(deps: BundleCacheDeps) {
    this.#d = { ...deps }
  }

  /** A new quota (0 = none) applies from the next `ensureRoom()`; nothing is evicted now. */
  setQuota(quotaBytes: number): void {
    this.#d.quotaBytes = quotaBytes
  }

  /** Marks a bundle as used now (ingested, requested again). Written at the next eviction check. */
  touch(bundleId: string): void {
    this.#touched.set(bundleId, this.#d.clock.now())
  }

  async usage(): Promise<CacheUsage> {
    const bundles = await this.#d.catalog.list()
    const pinned = await this.#d.pinned()
    return {
      quotaBytes: this.#d.quotaBytes,
      usedBytes: bundles.reduce((n, b) => n + b.size, 0),
      bundles: bundles.length,
      pinnedBundles: bundles.filter((b) => pinned.has(b.bundleId)).length,
    }
  }

  /**
   * Makes room for `bytes` more under the quota, evicting unpinned bundles least recently
   * used first. `keep` is never evicted (the bundle being re-fetched). Returns what was evicted.
   */
  ensureRoom(bytes: number, keep?: string): Promise<string[]> {
    return this.#lock.runExclusive(async () => {
      const quota = this.#d.quotaBytes
      if (quota <= 0) return []
      if (bytes > quota) {
        throw new UpstreamError(
          'PSW_ERR_CACHE_FULL',
          `an artifact of ${bytes} bytes is larger than the cache quota (${quota} bytes)`,
        )
      }
      await this.#flushTouches()
      const bundles = await this.#d.catalog.list()
      let used = bundles.reduce((n, b) => n + b.size, 0)
      if (used + bytes <= quota) return []
      const pinned = await this.#d.pinned()
      const candidates: Array<{ record: BundleRecord; usedAt: number }> = []
      for (const record of bundles) {
        if (pinned.has(record.bundleId) || record.bundleId === keep) continue
        const touched = await this.#d.db.get<number>(USED + record.bundleId)
        candidates.push({ record, usedAt: Math.max(touched ?? 0, Date.parse(record.ingestedAt)) })
      }
      candidates.sort((a, b) => a.usedAt - b.usedAt)
      const victims: BundleRecord[] = []
      for (const c of candidates) {
        if (used + bytes <= quota) break
        victims.push(c.record)
        used -= c.record.size
      }
      if (used + bytes > quota) {
        throw new UpstreamError(
          'PSW_ERR_CACHE_FULL',
          `the cache quota of ${quota} bytes cannot fit ${bytes} more bytes: ${used} bytes are pinned by assignments or in use`,
          { details: { quotaBytes: quota, usedBytes: used, neededBytes: bytes } },
        )
      }
      for (const v of victims) await this.#evict(v)
      return victims.map((v) => v.bundleId)
    })
  }

  async #flushTouches(): Promise<void> {
    if (this.#touched.size === 0) return
    const ops: StateBatchOp[] = [...this.#touched].map(([id, at]) => ({ type: 'put', key: USED + id, value: at }))
    this.#touched.clear()
    await this.#d.db.batch(ops)
  }

  /**
   * Forgets the bundle first (one durable batch: record, manifest, upstream state), then
   * deletes the chunks no other bundle uses. A crash in between leaves unreferenced chunks,
   * never a bundle without its content.
   */
  async #evict(record: BundleRecord): Promise<void> {
    const { db, catalog, upstream, chunks, log } = this.#d
    const manifest = await catalog.manifest(record.bundleId)
    const ops: StateBatchOp[] = [...catalog.deleteOps(record.bundleId), { type: 'del', key: USED + record.bundleId }]
    for (const e of await upstream.list()) {
      if (e.bundleId === record.bundleId && e.state === 'ready') ops.push(upstream.putOp({ ...e, state: 'evicted' }))
    }
    await catalog.exclusive(() => db.batch(ops))
    const inUse = new Set<string>()
    for (const other of await catalog.list()) {
      const m = await catalog.manifest(other.bundleId)
      for (const h of m?.signed.content.chunks ?? []) inUse.add(h)
    }
    let freed = 0
    for (const h of new Set(manifest?.signed.content.chunks ?? [])) {
      if (!inUse.has(h) && (await chunks.delete(h))) freed++
    }
    log.info(
      { bundleId: record.bundleId, name: record.name, version: record.version, size: record.size, chunks: freed },
      'bundle evicted from the cache',
    )
  }
}
