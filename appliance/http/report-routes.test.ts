import type { FastifyInstance } from 'fastify'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createDashboard } from '../reports/dashboard.ts'
import { dashboardSources } from '../reports/dashboard-sources.ts'
import { enrollNewAgent, ingestSmallBundle, openTestAppliance, type TestAppliance } from '../test-fixtures.ts'
import { openTestHttp } from './test-http.ts'

describe('report routes: dashboard and compliance (real core)', () => {
  let t: TestAppliance
  let app: FastifyInstance
  let auth: { authorization: string }
  let sources: ReturnType<typeof dashboardSources>

  beforeEach(async () => {
    t = await openTestAppliance()
    sources = dashboardSources(t.core, { clock: t.clock })
    ;({ app, auth } = await openTestHttp(t, {
      now: () => t.clock.now(),
      reports: { dashboard: createDashboard(sources), sources },
    }))
  })
  afterEach(async () => {
    await app.close()
    sources.stop()
    await t.cleanup()
  })

  it('serves the dashboard and the compliance report (JSON, one device, CSV) to a signed-in caller only', async () => {
    const bundle = await ingestSmallBundle(t, 'tool', '1')
    const a = (await enrollNewAgent(t.core, 'pc-a')).peerId
    const b = (await enrollNewAgent(t.core, 'pc-b')).peerId
    for (const p of [a, b]) await t.core.devices.setTags(p, ['servers'])
    await t.core.approvals.decide(
      { bundleId: bundle.bundleId, group: 'servers', decision: 'approve' },
      { type: 'operator', id: 'alice' },
    )
    expect((await app.inject({ method: 'GET', url: '/api/v1/dashboard' })).statusCode).toBe(401)
    const dash = await app.inject({ method: 'GET', url: '/api/v1/dashboard', headers: auth })
    expect(dash.statusCode).toBe(200)
    expect(dash.json()).toMatchObject({ devices: { total: 2 }, compliance: { devices: 2, compliant: 0, percent: 0 } })

    const one = await app.inject({ method: 'GET', url: `/api/v1/reports/compliance?device=${a}`, headers: auth })
    expect(one.statusCode, one.body).toBe(200)
    expect(one.json()).toMatchObject({
      devices: 1,
      compliant: 0,
      rows: [{ peerId: a, missing: [{ bundleId: bundle.bundleId, name: 'tool', version: '1' }] }],
    })
    const csv = await app.inject({
      method: 'GET',
      url: '/api/v1/reports/compliance?format=csv&missing=true',
      headers: auth,
    })
    expect(csv.headers['content-type']).toMatch(/^text\/csv/)
    expect(csv.headers['content-disposition']).toMatch(
      /attachment; filename="patchswarm-compliance-\d{4}-\d{2}-\d{2}\.csv"/,
    )
    expect(csv.body.split('\r\n').filter(Boolean)).toHaveLength(3)
    const bad = await app.inject({ method: 'GET', url: '/api/v1/reports/compliance?format=xml', headers: auth })
    expect(bad.statusCode).toBe(400)
  })
})
