import type { Clock } from '../../shared/clock.ts'
import type { ApplianceCore } from '../core.ts'
import type { DeviceRecord } from '../devices.ts'
import type { WanTotals } from '../metrics/wan-counters.ts'
import { catalogPatches } from '../policy/approval-store.ts'
import { type Group, matches } from '../policy/groups.ts'
import type { RolloutState } from '../rollout/rollout-types.ts'
import type { DashboardSources } from './dashboard.ts'

/**
 * The dashboard's data from the appliance core: devices, their groups (own tags plus the
 * stored groups whose filter matches), the approval plan, the catalog, rollouts and WAN bytes.
 * `generation` counts durable writes, so the dashboard cache knows when nothing changed.
 */
export function dashboardSources(
  core: Pick<ApplianceCore, 'db' | 'devices' | 'groups' | 'approvals' | 'catalog'>,
  extra: { clock: Clock; rollouts?: () => Promise<RolloutState[]>; wan?: () => WanTotals },
): DashboardSources & { stop(): void } {
  let groups: Group[] = []
  let generation = 0
  const off = core.db.onWrite(() => {
    generation++
  })
  return {
    devices: async () => {
      groups = await core.groups.list()
      return core.devices.list()
    },
    groupsOf: (d: DeviceRecord) => [
      ...new Set([...(d.tags ?? []), ...groups.filter((g) => matches(g.match, d)).map((g) => g.id)]),
    ],
    groupIds: async (devices) => [...new Set([...groups.map((g) => g.id), ...devices.flatMap((d) => d.tags ?? [])])],
    plan: (ids) => core.approvals.plan(ids),
    patches: () => catalogPatches(core.catalog),
    rollouts: extra.rollouts ?? (async () => []),
    ...(extra.wan ? { wan: extra.wan } : {}),
    clock: extra.clock,
    generation: () => generation,
    stop: off,
  }
}
