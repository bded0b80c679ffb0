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
