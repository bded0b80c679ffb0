import type { FastifyInstance } from 'fastify'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { silentLogger } from '../../shared/log.ts'
import { readAdminToken } from '../data-dir.ts'
import { ingestSmallBundle, openTestAppliance, type TestAppliance } from '../test-fixtures.ts'
import { createHttpServer } from './server.ts'

describe('policy routes: patches, approvals, auto-approval rules, plan (real core)', () => {
  let t: TestAppliance
  let app: FastifyInstance
  let auth: { authorization: string }

  beforeEach(async () => {
    t = await openTestAppliance()
    auth = { authorization: `Bearer ${await readAdminToken(t.core.layout)}` }
    app = await createHttpServer({
      core: t.core,
      adminToken: auth.authorization.slice(7),
      status: async () => ({
        siteName: 's',
        peerId: '',
        multiaddrs: [],
        rootFingerprint: '',
        bundles: [],
        devices: [],
      }),
      startedAt: Date.now(),
      log: silentLogger(),
    })
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

    let plan = (await app.inject({ method: 'GET', url: '/api/v1/plan' })).json() as {
      groups: Record<string, { deploy: Array<{ bundleId: string; deadline?: string }> }>
    }
    expect(plan.groups.servers!.deploy).toEqual([
      expect.objectContaining({ bundleId: a.bundleId, deadline: '2026-12-01T00:00:00.000Z' }),
    ])

    expect((await post(`/api/v1/patches/${a.bundleId}/decline`, { group: '*' })).statusCode).toBe(200)
    plan = (await app.inject({ method: 'GET', url: '/api/v1/plan' })).json() as typeof plan
    expect(plan.groups.servers!.deploy).toEqual([])

    const patches = (await app.inject({ method: 'GET', url: '/api/v1/patches' })).json() as {
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
      ((await app.inject({ method: 'GET', url: '/api/v1/approval-rules' })).json() as { rules: unknown[] }).rules,
    ).toEqual([])
  })
})
