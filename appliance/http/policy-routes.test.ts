import type { FastifyInstance } from 'fastify'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { silentLogger } from '../../shared/log.ts'
import { checkRolloutAdmission } from '../policy/rollout-admission.ts'
import { RolloutService } from '../rollout/rollout-service.ts'
import { ingestSmallBundle, openTestAppliance, type TestAppliance } from '../test-fixtures.ts'
import { openTestHttp } from './test-http.ts'

describe('policy routes: patches, approvals, auto-approval rules, plan (real core)', () => {
  let t: TestAppliance
  let app: FastifyInstance
  let auth: { authorization: string }
  let rollouts: RolloutService

  beforeEach(async () => {
    t = await openTestAppliance()
    rollouts = new RolloutService({
      db: t.core.db,
      catalog: t.core.catalog,
      assignments: t.core.assignments,
      audit: t.core.audit,
      devices: () => t.core.devices.list(),
      clock: t.clock,
      log: silentLogger(),
      admit: async (spec) => checkRolloutAdmission(spec, await t.core.approvals.list(spec.bundleId)),
    })
    ;({ app, auth } = await openTestHttp(t, { startedAt: Date.now(), rollouts }))
  })
  afterEach(async () => {
    await app.close()
    await t.cleanup()
  })

  const post = (url: string, payload: unknown, headers = auth) =>
    app.inject({ method: 'POST', url, payload: payload as object, headers })

  it('approves per group, declines site-wide, and the plan and the audit log follow', async () => {
    const a = await ingestSmallBundle(t, 'tool', '1')
    await t.core.groups.create({ id: 'servers', name: 'Servers', match: { tags: { any: ['server'] } } })

    const res = await post(`/api/v1/patches/${a.bundleId}/approve`, {
      group: 'servers',
      deadline: '2026-12-01T00:00:00.000Z',
    })
    expect(res.statusCode, res.body).toBe(200)
    expect(res.json()).toMatchObject({ decision: 'approve', group: 'servers', by: 'api-token:admin-token' })
    // Anonymous from the LAN: refused before anything is read.
    const lan = await app.inject({
      method: 'POST',
      url: `/api/v1/patches/${a.bundleId}/approve`,
      payload: { group: 'servers' },
      remoteAddress: '10.0.0.9',
    })
    expect(lan.statusCode).toBe(401)

    let plan = (await app.inject({ method: 'GET', headers: auth, url: '/api/v1/plan' })).json() as {
      groups: Record<string, { deploy: Array<{ bundleId: string; deadline?: string }> }>
    }
    expect(plan.groups.servers!.deploy).toEqual([
      expect.objectContaining({ bundleId: a.bundleId, deadline: '2026-12-01T00:00:00.000Z' }),
    ])

    expect((await post(`/api/v1/patches/${a.bundleId}/decline`, { group: '*' })).statusCode).toBe(200)
    plan = (await app.inject({ method: 'GET', headers: auth, url: '/api/v1/plan' })).json() as typeof plan
    expect(plan.groups.servers!.deploy).toEqual([])

    const patches = (await app.inject({ method: 'GET', headers: auth, url: '/api/v1/patches' })).json() as {
      patches: Array<{ approvals: unknown[] }>
    }
    expect(patches.patches[0]!.approvals).toHaveLength(2)
    const { records } = await t.core.audit.query({ action: 'patch', limit: 10, order: 'asc' })
    expect(records.map((r) => r.action)).toEqual(['patch.approve', 'patch.decline'])

    expect((await post(`/api/v1/patches/${'ef'.repeat(32)}/approve`, { group: 'servers' })).statusCode).toBe(404)
    expect(
      (await post(`/api/v1/patches/${a.bundleId}/decline`, { group: 'servers', deadline: '2026-12-01T00:00:00.000Z' }))
        .statusCode,
    ).toBe(409)
    expect((await post(`/api/v1/patches/${a.bundleId}/approve`, { group: 'bad group!' })).statusCode).toBe(400)
  })

  it('auto-approval rules approve new patches for their group, and can be replaced and deleted', async () => {
    const rule = { id: 'crit', severities: ['none'], group: 'servers', deadlineDays: 2 }
    const put = await app.inject({ method: 'PUT', url: '/api/v1/approval-rules/crit', payload: rule, headers: auth })
    expect(put.statusCode, put.body).toBe(200)
    const b = await ingestSmallBundle(t, 'tool', '2')
    const made = await t.core.approvals.evaluate(b.bundleId)
    expect(made).toEqual([expect.objectContaining({ group: 'servers', rule: 'crit', by: 'rule:crit' })])
    expect(await t.core.approvals.evaluate(b.bundleId)).toEqual([]) // already decided for that group
    const mismatch = await app.inject({
      method: 'PUT',
      url: '/api/v1/approval-rules/other',
      payload: rule,
      headers: auth,
    })
    expect(mismatch.statusCode).toBe(400)
    expect((await app.inject({ method: 'DELETE', url: '/api/v1/approval-rules/crit', headers: auth })).statusCode).toBe(
      204,
    )
    expect((await app.inject({ method: 'DELETE', url: '/api/v1/approval-rules/crit', headers: auth })).statusCode).toBe(
      404,
    )
    expect(
      (
        (await app.inject({ method: 'GET', headers: auth, url: '/api/v1/approval-rules' })).json() as {
          rules: unknown[]
        }
      ).rules,
    ).toEqual([])
  })

  const rings = [{ name: 'all', selector: { rest: true }, successThreshold: 1, errorThreshold: 0 }]

  it('refuses a rollout of a declined patch (site-wide, or for a targeted group) with PSW_ERR_PATCH_DECLINED', async () => {
    const a = await ingestSmallBundle(t, 'tool', '1')
    expect((await post(`/api/v1/patches/${a.bundleId}/decline`, { group: 'desktops' })).statusCode).toBe(200)
    const spec = { id: 'r1', name: 'tool 1', bundleId: a.bundleId, retries: 0, rings }
    const toDesktops = await post('/api/v1/rollouts', { ...spec, target: ['desktops'] })
    expect(toDesktops.statusCode).toBe(409)
    expect(toDesktops.json()).toMatchObject({ code: 'PSW_ERR_PATCH_DECLINED', details: { groups: ['desktops'] } })
    expect((await post('/api/v1/rollouts', { ...spec, target: 'all' })).json()).toMatchObject({
      code: 'PSW_ERR_PATCH_DECLINED',
    })
    expect((await post('/api/v1/rollouts', { ...spec, target: ['servers'] })).statusCode).toBe(201)
    await post(`/api/v1/patches/${a.bundleId}/decline`, { group: '*' })
    const siteWide = await post('/api/v1/rollouts', { ...spec, id: 'r2', target: ['servers'] })
    expect(siteWide.json()).toMatchObject({ code: 'PSW_ERR_PATCH_DECLINED', details: { groups: ['*'] } })
  })

  it('deploys the plan: one rollout per planned patch, targeting the groups whose plan has it; again = nothing new', async () => {
    const a = await ingestSmallBundle(t, 'tool', '1')
    const b = await ingestSmallBundle(t, 'viewer', '9')
    for (const g of ['servers', 'desktops'])
      await t.core.groups.create({ id: g, name: g, match: { tags: { any: [g] } } })
    await post(`/api/v1/patches/${a.bundleId}/approve`, { group: 'servers' })
    await post(`/api/v1/patches/${a.bundleId}/approve`, { group: 'desktops' })
    await post(`/api/v1/patches/${b.bundleId}/approve`, { group: 'desktops' })
    const res = await post('/api/v1/plan/rollouts', { rings, retries: 1 })
    expect(res.statusCode, res.body).toBe(201)
    const body = res.json() as { created: Array<{ bundleId: string; spec: { target: string[] } }>; skipped: unknown[] }
    expect(new Map(body.created.map((r) => [r.bundleId, r.spec.target]))).toEqual(
      new Map([
        [a.bundleId, ['desktops', 'servers']],
        [b.bundleId, ['desktops']],
      ]),
    )
    const again = await post('/api/v1/plan/rollouts', { rings, retries: 1 })
    expect(again.statusCode).toBe(200)
    expect(again.json()).toMatchObject({
      created: [],
      skipped: [{ reason: 'live-rollout' }, { reason: 'live-rollout' }],
    })
    const { records } = await t.core.audit.query({ limit: 100, order: 'asc' })
    expect(records.filter((r) => r.action === 'rollout.create')).toHaveLength(2)
  })
})
