import type { Clock } from '../../shared/clock.ts'
import type { DeviceRecord } from '../devices.ts'
import { type DeliveredBytes, sumDelivered } from '../metrics/delivered.ts'
import type { WanTotals } from '../metrics/wan-counters.ts'
import type { CatalogPatch, GroupPlan } from '../policy/approvals.ts'
import { allRingCounts } from '../rollout/rollout-engine.ts'
import type { RolloutState } from '../rollout/rollout-types.ts'
import {
  type CompliancePatch,
  type ComplianceSummary,
  complianceOf,
  complianceSummary,
  type DeployIndex,
  type DeviceCompliance,
  deployIndex,
  deviceCompliance,
  type SeverityName,
} from './compliance.ts'

/** A device is online when it reported within this long (agents poll every 30 s by default). */
export const ONLINE_WITHIN_MS = 5 * 60_000

export interface DashboardSources {
  devices: () => Promise<readonly DeviceRecord[]>
  /** The groups a device is in (its tags, plus the stored groups whose filter it matches). */
  groupsOf: (device: DeviceRecord) => string[]
  /** Every group id a plan may exist for (stored groups and tags in use). */
  groupIds: (devices: readonly DeviceRecord[]) => Promise<string[]>
  plan: (groups: readonly string[]) => Promise<Map<string, GroupPlan>>
  patches: () => Promise<CatalogPatch[]>
  rollouts: () => Promise<RolloutState[]>
  wan?: () => WanTotals
  clock: Clock
  /** Bumped on every durable write (StateDb.onWrite); an unchanged value lets the cache answer. */
  generation?: () => number
  /**
   * Bumped on every durable write of what `groupsOf` and `plan` depend on besides the device
   * record itself (groups, approvals, the catalog). While it and the plan object are unchanged,
   * the dashboard reuses what it derived from a device record it has seen before (records are
   * replaced on every change, never edited). Absent: everything is derived again per build.
   */
  policyVersion?: () => number
}

export interface Dashboard {
  generatedAt: string
  devices: { total: number; online: number; offline: number; rebootPending: number; failing: number }
  compliance: ComplianceSummary
  rollouts: Array<{
    id: string
    name: string
    bundleId: string
    status: RolloutState['status']
    current: number
    rings: Array<{ name: string; status: string; total: number; installed: number; failed: number; pending: number }>
  }>
  bandwidth: {
    /** Every byte the appliance fetched over the WAN. */
    wanBytes: number
    /** Bundle bytes delivered to devices, by source. */
    deliveredBytes: number
    fromPeers: number
    fromAppliance: number
    /** Delivered minus WAN: what N separate downloads would have cost more (never below 0). */
    savedBytes: number
  }
}

const LIVE = new Set<RolloutState['status']>(['active', 'paused', 'halted', 'rolling-back'])

export function patchIndex(patches: readonly CatalogPatch[]): Map<string, CompliancePatch> {
  return new Map(
    patches.map((p): [string, CompliancePatch] => [
      p.bundleId,
      { bundleId: p.bundleId, name: p.name, version: p.version, severity: p.severity as SeverityName },
    ]),
  )
}

/** Per-device compliance rows, for the dashboard, the Reports page and the CSV export. */
export async function complianceRows(sources: DashboardSources, devices: readonly DeviceRecord[]) {
  const plan = await sources.plan(await sources.groupIds(devices))
  const rows: DeviceCompliance[] = deviceCompliance(
    devices.map((d) => ({
      peerId: d.peerId,
      hostname: d.hostname,
      groups: sources.groupsOf(d),
      installed: new Set((d.report?.bundles ?? []).filter((b) => b.state === 'installed').map((b) => b.bundleId)),
    })),
    plan,
  )
  return rows
}

/** What the dashboard takes from one device record (see `DashboardSources.policyVersion`). */
interface DeviceFacts {
  row: DeviceCompliance
  /** Epoch ms of `lastSeen`; NaN when never seen. */
  lastSeen: number
  rebootPending: boolean
  failing: boolean
  fromPeers: number
  fromAppliance: number
}

function deviceFacts(sources: DashboardSources, d: DeviceRecord, deployOf: DeployIndex): DeviceFacts {
  const delivered = sumDelivered([d])
  return {
    row: complianceOf(
      {
        peerId: d.peerId,
        hostname: d.hostname,
        groups: sources.groupsOf(d),
        installed: new Set((d.report?.bundles ?? []).filter((b) => b.state === 'installed').map((b) => b.bundleId)),
      },
      deployOf,
    ),
    lastSeen: d.lastSeen === undefined ? Number.NaN : Date.parse(d.lastSeen),
    rebootPending:
      d.inventory?.rebootPending === true || d.report?.bundles.some((b) => b.rebootRequired === true) === true,
    failing: d.report?.bundles.some((b) => b.state === 'failed') === true,
    fromPeers: delivered.fromPeers,
    fromAppliance: delivered.fromAppliance,
  }
}

/**
 * Builds the dashboard; one per request, or from the cache while nothing was written. What a
 * build derives from each device record (its compliance row, online time, counters) is kept
 * per record object while the policy (groups, approvals, catalog) is unchanged, so a build
 * after a few reports only derives the reporting devices' again: at 2 000 devices, with 67
 * reports between builds, 3–4 ms a build instead of 10–18 ms (docs/benchmarks.md, bench:api).
 */
export function createDashboard(sources: DashboardSources, options: { maxAgeMs?: number } = {}) {
  const maxAgeMs = options.maxAgeMs ?? 1000
  let cached: { at: number; generation: number | undefined; value: Promise<Dashboard> } | undefined
  let memo:
    | {
        policy: number
        plan: Map<string, GroupPlan>
        deployOf: DeployIndex
        facts: WeakMap<DeviceRecord, DeviceFacts>
      }
    | undefined

  async function build(): Promise<Dashboard> {
    const now = sources.clock.now()
    const policy = sources.policyVersion?.()
    const devices = await sources.devices()
    const [plan, patches, rollouts] = await Promise.all([
      sources.groupIds(devices).then((ids) => sources.plan(ids)),
      sources.patches(),
      sources.rollouts(),
    ])
    if (policy === undefined || memo?.policy !== policy || memo.plan !== plan)
      memo = policy === undefined ? undefined : { policy, plan, deployOf: deployIndex(plan), facts: new WeakMap() }
    const deployOf = memo?.deployOf ?? deployIndex(plan)
    const rows: DeviceCompliance[] = []
    let online = 0
    let rebootPending = 0
    let failing = 0
    const delivered: DeliveredBytes = { fromPeers: 0, fromAppliance: 0 }
    for (const d of devices) {
      let f = memo?.facts.get(d)
      if (!f) {
        f = deviceFacts(sources, d, deployOf)
        memo?.facts.set(d, f)
      }
      rows.push(f.row)
      if (now - f.lastSeen <= ONLINE_WITHIN_MS) online++
      if (f.rebootPending) rebootPending++
      if (f.failing) failing++
      delivered.fromPeers += f.fromPeers
      delivered.fromAppliance += f.fromAppliance
    }
    const wanBytes = sources.wan?.().totalBytes ?? 0
    const deliveredBytes = delivered.fromPeers + delivered.fromAppliance
    return {
      generatedAt: new Date(now).toISOString(),
      devices: {
        total: devices.length,
        online,
        offline: devices.length - online,
        rebootPending,
        failing,
      },
      compliance: complianceSummary(rows, patchIndex(patches)),
      rollouts: rollouts
        .filter((r) => LIVE.has(r.status))
        .map((r) => {
          const counts = allRingCounts(r)
          return {
            id: r.spec.id,
            name: r.spec.name,
            bundleId: r.spec.bundleId,
            status: r.status,
            current: r.current,
            rings: r.spec.rings.map((spec, i) => ({
              name: spec.name,
              status: r.rings[i]!.status,
              total: counts[i]!.total,
              installed: counts[i]!.installed,
              failed: counts[i]!.failed,
              pending: counts[i]!.pending,
            })),
          }
        }),
      bandwidth: {
        wanBytes,
        deliveredBytes,
        fromPeers: delivered.fromPeers,
        fromAppliance: delivered.fromAppliance,
        savedBytes: Math.max(0, deliveredBytes - wanBytes),
      },
    }
  }

  return {
    /**
     * The dashboard, from the cache while nothing was written since it was built (requests
     * meanwhile share one build). Never an answer older than the last durable write: the UI
     * refetches once per change event, so a stale answer would stay on screen. Sources without
     * a write counter (tests) get a cache of at most `maxAgeMs`.
     */
    get(): Promise<Dashboard> {
      const now = sources.clock.now()
      const generation = sources.generation?.()
      const fresh =
        cached !== undefined &&
        (generation === undefined ? now - cached.at < maxAgeMs : generation === cached.generation)
      if (fresh) return cached!.value
      const value = build()
      cached = { at: now, generation, value }
      value.catch(() => {
        if (cached?.value === value) cached = undefined
      })
      return value
    },
  }
}
