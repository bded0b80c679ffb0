import type { Logger } from 'pino'
import { MAX_WINDOWS_PER_GROUP, type MaintenanceWindow } from '../../shared/policy/window-schema.ts'
import type { Assignments } from '../assignments.ts'
import type { DeviceRecord } from '../devices.ts'
import { type Group, matches } from './groups.ts'

export interface DeviceWindows {
  windows: MaintenanceWindow[]
  spreadSeconds: number
}

/**
 * The maintenance windows each device should carry in its assignment: the union of the
 * windows of every group it is a member of (ids made unique with the group id when two groups
 * use the same one), and the largest spread of those groups. Devices in no group with windows
 * get none: they install as soon as they have downloaded. Pure.
 */
export function desiredWindows(groups: readonly Group[], devices: readonly DeviceRecord[]): Map<string, DeviceWindows> {
  const out = new Map<string, DeviceWindows>()
  const withWindows = groups.filter((g) => g.windows?.length)
  for (const device of devices) {
    const windows: MaintenanceWindow[] = []
    let spreadSeconds = 0
    for (const g of withWindows) {
      if (!matches(g.match, device)) continue
      spreadSeconds = Math.max(spreadSeconds, g.spreadSeconds ?? 0)
      for (const w of g.windows!) {
        const clash = windows.find((x) => x.id === w.id)
        if (clash && JSON.stringify(clash) === JSON.stringify(w)) continue
        windows.push(clash ? { ...w, id: `${g.id}.${w.id}`.slice(0, 64) } : w)
      }
    }
    out.set(device.peerId, {
      windows: windows.slice(0, MAX_WINDOWS_PER_GROUP),
      spreadSeconds: windows.length ? spreadSeconds : 0,
    })
  }
  return out
}

/**
 * Brings every device's signed assignment in line with its groups' windows: devices whose
 * windows or spread differ get a re-issued assignment (one batch per distinct set).
 * Returns how many devices changed.
 */
export async function syncDeviceWindows(deps: {
  groups: () => Promise<Group[]>
  devices: () => Promise<DeviceRecord[]>
  assignments: Assignments
  log: Logger
}): Promise<number> {
  const devices = await deps.devices()
  const desired = desiredWindows(await deps.groups(), devices)
  const batches = new Map<string, { want: DeviceWindows; peers: string[] }>()
  for (const [peerId, want] of desired) {
    const current = (await deps.assignments.get(peerId))?.signed
    const have: DeviceWindows = { windows: current?.windows ?? [], spreadSeconds: current?.spreadSeconds ?? 0 }
    if (JSON.stringify(have) === JSON.stringify(want)) continue
    if (!current && want.windows.length === 0) continue
    const key = JSON.stringify(want)
    const batch = batches.get(key) ?? { want, peers: [] }
    batch.peers.push(peerId)
    batches.set(key, batch)
  }
  let changed = 0
  for (const { want, peers } of batches.values()) {
    await deps.assignments.setWindows(peers, want.windows, want.spreadSeconds)
    changed += peers.length
  }
  if (changed > 0) deps.log.info({ devices: changed }, 'maintenance windows re-issued to devices')
  return changed
}
