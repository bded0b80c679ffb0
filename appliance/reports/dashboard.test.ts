import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { AgentReportT } from '../../shared/protocol/control-protocol.ts'
import { enrollNewAgent, ingestSmallBundle, openTestAppliance, type TestAppliance } from '../test-fixtures.ts'
import { createDashboard } from './dashboard.ts'
import { dashboardSources } from './dashboard-sources.ts'

const op = { type: 'operator', id: 'alice' } as const

describe('dashboard (real core)', () => {
  let t: TestAppliance
  let sources: ReturnType<typeof dashboardSources>

  beforeEach(async () => {
    t = await openTestAppliance()
    sources = dashboardSources(t.core, {
      clock: t.clock,
      wan: () => ({ totalBytes: 1000, artifactBytes: 900, indexBytes: 100, todayBytes: 0 }),
    })
  })
  afterEach(async () => {
    sources.stop()
    await t.cleanup()
  })

  const report = (bundleId: string, state: 'installed' | 'failed', fromPeers: number): AgentReportT => ({
    agentVersion: 'test',
    hostname: 'x',
    bundles: [
      {
        bundleId,
        state,
        chunksHave: 1,
        chunksTotal: 1,
        transfer: { bytesFromAppliance: 100, bytesFromPeers: fromPeers, bytesServed: 0 },
      },
    ],
  })

  it('counts devices, compliance by group and severity, and bandwidth saved', async () => {
    const bundle = await ingestSmallBundle(t, 'tool', '1')
    const peers = []
    for (let i = 0; i < 3; i++) peers.push((await enrollNewAgent(t.core, `pc-${i}`)).peerId)
    for (const p of peers) await t.core.devices.setTags(p, ['servers'])
    await t.core.approvals.decide({ bundleId: bundle.bundleId, group: 'servers', decision: 'approve' }, op)
    await t.core.devices.recordReport(peers[0]!, report(bundle.bundleId, 'installed', 900), t.clock.now())
    await t.core.devices.recordReport(peers[1]!, report(bundle.bundleId, 'failed', 0), t.clock.now())
    t.clock.advance(10 * 60_000)
    await t.core.devices.recordReport(peers[2]!, report(bundle.bundleId, 'installed', 400), t.clock.now())

    const d = await createDashboard(sources).get()
    expect(d.devices).toEqual({ total: 3, online: 1, offline: 2, rebootPending: 0, failing: 1 })
    expect(d.compliance).toMatchObject({ devices: 3, compliant: 2, percent: 66.7 })
    expect(d.compliance.byGroup).toEqual([{ group: 'servers', devices: 3, compliant: 2, percent: 66.7 }])
    expect(d.bandwidth).toEqual({
      wanBytes: 1000,
      deliveredBytes: 1600,
      fromPeers: 1300,
      fromAppliance: 300,
      savedBytes: 600,
    })
  })

  it('reuses what it derived from unchanged devices, and follows reports, approvals, groups and time', async () => {
    const tool = await ingestSmallBundle(t, 'tool', '1')
    const lab = await ingestSmallBundle(t, 'lab-tool', '1')
    const peers: string[] = []
    for (let i = 0; i < 3; i++) peers.push((await enrollNewAgent(t.core, `pc-${i}`)).peerId)
    for (const p of peers) await t.core.devices.setTags(p, ['servers'])
    const dashboard = createDashboard(sources, { maxAgeMs: 0 })
    expect((await dashboard.get()).compliance).toMatchObject({ devices: 3, compliant: 3, unmanaged: 3 })

    await t.core.approvals.decide({ bundleId: tool.bundleId, group: 'servers', decision: 'approve' }, op)
    expect((await dashboard.get()).compliance).toMatchObject({ compliant: 0, unmanaged: 0 })

    await t.core.devices.recordReport(peers[1]!, report(tool.bundleId, 'installed', 10), t.clock.now())
    let d = await dashboard.get()
    expect(d.compliance).toMatchObject({ compliant: 1, percent: 33.3 })
    expect(d.devices.online).toBe(1)

    // An approval for a group nobody is in yet, then the group: pc-1 now misses lab-tool.
    await t.core.approvals.decide({ bundleId: lab.bundleId, group: 'lab', decision: 'approve' }, op)
    expect((await dashboard.get()).compliance.compliant).toBe(1)
    await t.core.groups.create({ id: 'lab', name: 'Lab', match: { hostnamePattern: 'pc-1' } })
    d = await dashboard.get()
    expect(d.compliance.compliant).toBe(0)
    expect(d.compliance.byGroup.find((g) => g.group === 'lab')).toMatchObject({ devices: 1, compliant: 0 })

    t.clock.advance(10 * 60_000)
    await t.core.devices.setTags(peers[0]!, ['servers', 'x'])
    expect((await dashboard.get()).devices.online).toBe(0)
  })

  it('answers from its cache while nothing was written, and rebuilds after a write', async () => {
    const dashboard = createDashboard(sources, { maxAgeMs: 0 })
    const first = await dashboard.get()
    t.clock.advance(5000)
    expect(await dashboard.get()).toBe(first)
    await enrollNewAgent(t.core, 'pc-new')
    const next = await dashboard.get()
    expect(next).not.toBe(first)
    expect(next.devices.total).toBe(first.devices.total + 1)
  })
})
