import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client'
import { ValidationError } from '../../shared/errors.ts'
import type { DeliveredBytes } from './delivered.ts'
import type { WanCounters, WanTotals } from './wan-counters.ts'
import { type WanUsage, type WanUsageQuery, wanUsage } from './wan-usage.ts'

type MaybePromise<T> = T | Promise<T>

/** Where the metric values come from; each is read when Prometheus scrapes, never polled. */
export interface MetricsSources {
  wan: Pick<WanCounters, 'totals' | 'days' | 'recentArtifacts'>
  /** Bundle bytes agents received, summed from their reports (see `deliveredFromDevices`). */
  delivered: () => MaybePromise<DeliveredBytes>
  /** Chunk bytes the appliance uploaded to agents (see `applianceUploadedFromSwarm`). */
  applianceUploaded: () => MaybePromise<number>
  /** Enrolled devices. */
  devices: () => MaybePromise<number>
  /** Bundles in the catalog. */
  bundles: () => MaybePromise<number>
}

export interface MetricsOptions {
  /** `patchswarm_wan_artifact_bytes_total` series: the most recently active artifacts only (default 50). */
  maxArtifactSeries?: number
  /** Node process metrics (`process_*`, `nodejs_*`) in the same registry (default true). */
  processMetrics?: boolean
}

export interface ApplianceMetrics {
  /** This appliance's own registry (never prom-client's global one). */
  readonly registry: Registry
  /** The Prometheus text exposition of every metric, gathered now. */
  render(): Promise<{ contentType: string; body: string }>
  /** The JSON of `GET /api/v1/metrics/wan`. */
  wanUsage(query?: WanUsageQuery): WanUsage
}

interface Scrape {
  wan: WanTotals
  delivered: DeliveredBytes
  uploaded: number
  devices: number
  bundles: number
}

/** A finite non-negative number, else 0 (a counter must never go below zero). */
const bytes = (n: number) => (Number.isFinite(n) && n > 0 ? n : 0)

/**
 * The appliance's Prometheus metrics (names and meaning in docs/operations.md, "Metrics").
 * Every call makes its own registry, so two appliances in one process share nothing.
 */
export function createMetrics(sources: MetricsSources, options: MetricsOptions = {}): ApplianceMetrics {
  const registry = new Registry()
  const maxArtifactSeries = options.maxArtifactSeries ?? 50
  if (!Number.isSafeInteger(maxArtifactSeries) || maxArtifactSeries < 0) {
    throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', 'maxArtifactSeries must be a non-negative integer')
  }

  // prom-client collects every metric concurrently; they all share one gathering per scrape.
  let pending: Promise<Scrape> | undefined
  const scrape = (): Promise<Scrape> => {
    pending ??= gather().finally(() => {
      pending = undefined
    })
    return pending
  }
  const gather = async (): Promise<Scrape> => {
    const [delivered, uploaded, devices, bundles] = await Promise.all([
      sources.delivered(),
      sources.applianceUploaded(),
      sources.devices(),
      sources.bundles(),
    ])
    return { wan: sources.wan.totals(), delivered, uploaded, devices, bundles }
  }

  const counter = (name: string, help: string, value: (s: Scrape) => number) =>
    new Counter({
      name,
      help,
      registers: [registry],
      async collect() {
        const v = bytes(value(await scrape()))
        this.reset()
        this.inc(v)
      },
    })
  const gauge = (name: string, help: string, value: (s: Scrape) => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      async collect() {
        this.set(bytes(value(await scrape())))
      },
    })

  const delivered = (s: Scrape) => bytes(s.delivered.fromPeers) + bytes(s.delivered.fromAppliance)

  counter(
    'patchswarm_wan_bytes_total',
    'Bytes downloaded over the WAN: artifacts and feed documents.',
    (s) => s.wan.totalBytes,
  )
  counter(
    'patchswarm_wan_index_bytes_total',
    'Bytes of feed documents downloaded over the WAN.',
    (s) => s.wan.indexBytes,
  )
  new Counter({
    name: 'patchswarm_wan_artifact_bytes_total',
    help: `Bytes of one artifact downloaded over the WAN (the ${maxArtifactSeries} most recently active artifacts).`,
    labelNames: ['sha256'],
    registers: [registry],
    collect() {
      this.reset()
      for (const a of sources.wan.recentArtifacts(maxArtifactSeries)) this.inc({ sha256: a.sha256 }, bytes(a.bytes))
    },
  })
  gauge('patchswarm_wan_bytes_today', 'Bytes downloaded over the WAN since local midnight.', (s) => s.wan.todayBytes)
  counter(
    'patchswarm_delivered_bytes_total',
    'Bundle bytes agents received, from peers and from the appliance (their latest reports).',
    delivered,
  )
  counter('patchswarm_delivered_from_peers_bytes_total', 'Bundle bytes agents received from other agents.', (s) =>
    bytes(s.delivered.fromPeers),
  )
  counter('patchswarm_appliance_upload_bytes_total', 'Chunk bytes the appliance uploaded to agents.', (s) => s.uploaded)
  counter(
    'patchswarm_saved_wan_bytes_total',
    'WAN bytes saved: bytes delivered to agents minus artifact bytes downloaded over the WAN, never negative.',
    (s) => delivered(s) - s.wan.artifactBytes,
  )
  gauge('patchswarm_devices', 'Enrolled devices.', (s) => s.devices)
  gauge('patchswarm_bundles', 'Bundles in the catalog.', (s) => s.bundles)
  if (options.processMetrics ?? true) collectDefaultMetrics({ register: registry })

  return {
    registry,
    async render() {
      return { contentType: registry.contentType, body: await registry.metrics() }
    },
    wanUsage: (query) => wanUsage(sources.wan, query),
  }
}
