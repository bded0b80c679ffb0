import type { Clock } from '../../shared/clock.ts'
import type { ApplianceCore } from '../core.ts'
import type { DeviceRecord } from '../devices.ts'
import type { WanTotals } from '../metrics/wan-counters.ts'
import { catalogPatches } from '../policy/approval-store.ts'
import { type Group, matches } from '../policy/groups.ts'
import type { RolloutState } from '../rollout/rollout-types.ts'
import type { DashboardSources } from './dashboard.ts'

/** Key prefixes of what the plan and group membership depend on (catalog, approvals, groups). */
const POLICY_PREFIXES = ['bundle:', 'manifest:', 'approval:', 'group:']

/**
 * The dashboard's data from the appliance core: devices, their groups (own tags plus the
 * stored groups whose filter matches), the approval plan, the catalog, rollouts and WAN bytes.
 * `generation` counts durable writes, so the dashboard cache knows when nothing changed;
 * `policyVersion` counts those of groups, approvals and the catalog. The groups, the catalog's
 * patches and the plan are read from LevelDB once per `policyVersion` (and set of groups), not
 * on every build: agents' reports, which are most writes, change none of them. What they
 * return is shared between callers: read-only.
 */
export function dashboardSources(
  core: Pick<ApplianceCore, 'db' | 'devices' | 'groups' | 'approvals' | 'catalog'>,
  extra: { clock: Clock; rollouts?: () => Promise<RolloutState[]>; wan?: () => WanTotals },
): DashboardSources & { stop(): void } {
  let groups: Group[] = []
  let generation = 0
  let policy = 0
  const off = core.db.onWrite((keys) => {
    generation++
    if (keys.some((k) => POLICY_PREFIXES.some((p) => k.startsWith(p)))) policy++
  })
  /** The value of `load(key)` while `policy` and `key` are unchanged (a failed load is not kept). */
  const perPolicy = <T>(load: (key: string) => Promise<T>) => {
    let cache: { policy: number; key: string; value: Promise<T> } | undefined
    return (key: string): Promise<T> => {
      if (cache && cache.policy === policy && cache.key === key) return cache.value
      const value = load(key)
      const entry = { policy, key, value }
      cache = entry
      value.catch(() => {
        if (cache === entry) cache = undefined
      })
      return value
    }
  }
  const groupList = perPolicy(() => core.groups.list())
  const patches = perPolicy(() => catalogPatches(core.catalog))
  const plans = perPolicy(async (key) => core.approvals.plan(key === '' ? [] : key.split('\n')))
  return {
    devices: async () => {
      groups = await groupList('')
      return core.devices.list()
    },
    groupsOf: (d: DeviceRecord) => [
      ...new Set([...(d.tags ?? []), ...groups.filter((g) => matches(g.match, d)).map((g) => g.id)]),
    ],
    groupIds: async (devices) => [...new Set([...groups.map((g) => g.id), ...devices.flatMap((d) => d.tags ?? [])])],
    // Group ids and tags never hold a newline (GroupIdSchema, TAG_PATTERN).
    plan: (ids) => plans(ids.join('\n')),
    patches: () => patches(''),
    rollouts: extra.rollouts ?? (async () => []),
    ...(extra.wan ? { wan: extra.wan } : {}),
    clock: extra.clock,
    generation: () => generation,
    policyVersion: () => policy,
    stop: off,
  }
}
