import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { silentLogger } from '../../shared/log.ts'
import type { MaintenanceWindow } from '../../shared/policy/window-schema.ts'
import { enrollNewAgent, ingestSmallBundle, openTestAppliance, type TestAppliance } from '../test-fixtures.ts'
import { desiredWindows, syncDeviceWindows } from './window-policy.ts'

const nightly = (id = 'nightly'): MaintenanceWindow => ({
  id,
  name: 'Nightly',
  timeZone: 'Europe/Berlin',
  recurrence: { cron: '0 22 * * *' },
  durationMinutes: 480,
  allowReboot: true,
})
const sunday: MaintenanceWindow = { ...nightly('sunday'), recurrence: { cron: '0 2 * * 0' }, durationMinutes: 120 }

describe('maintenance windows from group policy (real core and signed assignments)', () => {
  let t: TestAppliance
  const peers: string[] = []

  beforeEach(async () => {
    t = await openTestAppliance()
    peers.length = 0
    for (let i = 0; i < 3; i++) peers.push((await enrollNewAgent(t.core, `pc-${i}`)).peerId)
    await t.core.devices.setTags(peers[0]!, ['server'])
    await t.core.devices.setTags(peers[1]!, ['server', 'critical'])
  })
  afterEach(async () => {
    await t.cleanup()
  })

  const sync = () =>
    syncDeviceWindows({
      groups: () => t.core.groups.list(),
      devices: () => t.core.devices.list(),
      assignments: t.core.assignments,
      log: silentLogger(),
    })

  it('signs the union of a device’s groups’ windows into its assignment, and only what changed', async () => {
    await ingestSmallBundle(t, 'tool', '1')
    await t.core.assignments.assign('tool@1', 'all')
    await t.core.groups.create({
      id: 'servers',
      name: 'Servers',
      match: { tags: { any: ['server'] } },
      windows: [nightly()],
      spreadSeconds: 600,
    })
    await t.core.groups.create({
      id: 'critical',
      name: 'Critical',
      match: { tags: { any: ['critical'] } },
      windows: [sunday],
    })
    expect(await sync()).toBe(2)
    const a0 = (await t.core.assignments.get(peers[0]!))!.signed
    const a1 = (await t.core.assignments.get(peers[1]!))!.signed
    const a2 = (await t.core.assignments.get(peers[2]!))!.signed
    expect(a0.windows?.map((w) => w.id)).toEqual(['nightly'])
    expect(a0.spreadSeconds).toBe(600)
    expect(a1.windows?.map((w) => w.id).sort()).toEqual(['nightly', 'sunday'])
    expect(a2.windows).toBeUndefined()
    // Bundles are untouched.
    expect(a0.bundles).toHaveLength(1)
    // Nothing changed: nothing re-issued.
    const v = a0.version
    expect(await sync()).toBe(0)
    expect((await t.core.assignments.get(peers[0]!))!.signed.version).toBe(v)
    // A tag removed: the device leaves the group, its windows go.
    await t.core.devices.setTags(peers[0]!, [])
    expect(await sync()).toBe(1)
    expect((await t.core.assignments.get(peers[0]!))!.signed.windows).toBeUndefined()
  })

  it('keeps window ids unique when two groups use the same id for different windows', () => {
    const groups = [
      { id: 'a', name: 'A', match: {}, windows: [nightly('w')], createdAt: '', updatedAt: '' },
      {
        id: 'b',
        name: 'B',
        match: {},
        windows: [sunday].map((w) => ({ ...w, id: 'w' })),
        createdAt: '',
        updatedAt: '',
      },
    ]
    const d = desiredWindows(groups, [{ peerId: 'p', hostname: 'h', certificatePem: '', enrolledAt: '' }])
    expect(d.get('p')!.windows.map((w) => w.id)).toEqual(['w', 'b.w'])
  })
})
