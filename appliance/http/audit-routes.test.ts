import { get as httpGet, type IncomingMessage } from 'node:http'
import Fastify, { type FastifyInstance, type LightMyRequestResponse } from 'fastify'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { silentLogger } from '../../shared/log.ts'
import { type AuditRecord, recordKey } from '../audit/audit-record.ts'
import { type AuditFixture, openAuditFixture, sampleEntry } from '../audit/audit-test-helpers.ts'
import { installTestPrincipals } from '../auth/test-principals.ts'
import { type AuditApi, registerAuditRoutes } from './audit-routes.ts'
import { installErrorHandler } from './error-handler.ts'

const TOKEN = 'viewer-secret'

describe('audit routes', () => {
  let fx: AuditFixture
  let app: FastifyInstance
  let records: AuditRecord[]

  beforeEach(async () => {
    fx = await openAuditFixture()
    records = []
    for (let i = 1; i <= 25; i++) {
      records.push(await fx.audit.append(sampleEntry(i)))
      fx.clock.advance(60_000)
    }
    // The same ajv options and error handler as server.ts; a stand-in for its principals.
    app = Fastify({
      logger: false,
      ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false } },
    })
    installErrorHandler(app, silentLogger())
    installTestPrincipals(app, { [TOKEN]: 'viewer' })
    registerAuditRoutes(app, { audit: fx.audit })
    await app.ready()
  })
  afterEach(async () => {
    await app.close()
    await fx.cleanup()
  })

  const get = (url: string, options: { remoteAddress?: string; headers?: Record<string, string> } = {}) =>
    app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${TOKEN}` }, ...options })
  const expectError = (res: LightMyRequestResponse, status: number, code: string) => {
    expect(res.statusCode, res.body).toBe(status)
    expect(res.json()).toMatchObject({ code })
  }

  it('lists records newest first to a viewer; anonymous callers get a 401, loopback included', async () => {
    const res = await get('/api/v1/audit?limit=3')
    expect(res.statusCode, res.body).toBe(200)
    expect(res.headers['cache-control']).toBe('no-store')
    const body = res.json<{ records: AuditRecord[]; next?: number }>()
    expect(body.records).toEqual([records[24], records[23], records[22]])
    expect(body.next).toBe(23)

    for (const url of ['/api/v1/audit', '/api/v1/audit/export?format=csv', '/api/v1/audit/verify']) {
      expectError(await get(url, { remoteAddress: '127.0.0.1', headers: {} }), 401, 'PSW_ERR_UNAUTHORIZED')
      expectError(await get(url, { remoteAddress: '192.168.1.20', headers: {} }), 401, 'PSW_ERR_UNAUTHORIZED')
      const ok = await get(url, { remoteAddress: '192.168.1.20' })
      expect(ok.statusCode, url).toBe(200)
    }
  })

  it('filters and pages', async () => {
    const seen: number[] = []
    let url = '/api/v1/audit?order=asc&limit=4&action=rollout&actorId=op-1'
    for (let i = 0; i < 10; i++) {
      const body = (await get(url)).json<{ records: AuditRecord[]; next?: number }>()
      seen.push(...body.records.map((r) => r.seq))
      if (body.next === undefined) break
      url = `/api/v1/audit?order=asc&limit=4&action=rollout&actorId=op-1&afterSeq=${body.next}`
    }
    expect(seen).toEqual(
      records.filter((r) => r.action === 'rollout.advance' && r.actor.id === 'op-1').map((r) => r.seq),
    )

    const from = encodeURIComponent(records[9]!.time)
    const to = encodeURIComponent(records[11]!.time)
    const window = (await get(`/api/v1/audit?from=${from}&to=${to}&targetType=patch`)).json<{
      records: AuditRecord[]
    }>()
    expect(window.records.map((r) => r.seq)).toEqual([12, 10])
  })

  it('rejects bad query parameters with a 400 and a code', async () => {
    for (const query of [
      'limit=1001',
      'limit=0',
      'limit=abc',
      'afterSeq=-1',
      'order=sideways',
      'from=yesterday',
      'actorType=root',
      'action=Patch',
      'surprise=1',
    ]) {
      expectError(await get(`/api/v1/audit?${query}`), 400, 'PSW_ERR_SCHEMA')
    }
    expectError(await get('/api/v1/audit?limit=1000&afterSeq=99999999999999999'), 400, 'PSW_ERR_SCHEMA')
    expectError(await get('/api/v1/audit?afterSeq=9999999999999999'), 400, 'PSW_ERR_INVALID_ARGUMENT')
    expectError(await get('/api/v1/audit/export'), 400, 'PSW_ERR_SCHEMA')
    expectError(await get('/api/v1/audit/export?format=xml'), 400, 'PSW_ERR_SCHEMA')
    expectError(await get('/api/v1/audit/verify?fromSeq=0'), 400, 'PSW_ERR_SCHEMA')
    expectError(await get('/api/v1/audit/verify?fromSeq=9&toSeq=3'), 400, 'PSW_ERR_INVALID_ARGUMENT')
  })

  it('exports JSONL and CSV as attachments', async () => {
    const jsonl = await get('/api/v1/audit/export?format=jsonl')
    expect(jsonl.statusCode).toBe(200)
    expect(jsonl.headers['content-type']).toBe('application/x-ndjson; charset=utf-8')
    expect(jsonl.headers['content-disposition']).toBe('attachment; filename="patchswarm-audit.jsonl"')
    expect(
      jsonl.body
        .trimEnd()
        .split('\n')
        .map((l) => JSON.parse(l)),
    ).toEqual(records)

    const csv = await get('/api/v1/audit/export?format=csv&actorId=op-0&order=desc')
    expect(csv.statusCode).toBe(200)
    expect(csv.headers['content-type']).toBe('text/csv; charset=utf-8')
    expect(csv.headers['content-disposition']).toBe('attachment; filename="patchswarm-audit.csv"')
    const lines = csv.body.trimEnd().split('\r\n')
    expect(lines[0]).toMatch(/^seq,time,actor_type,actor_id,action,/)
    expect(lines.slice(1).map((l) => Number(l.split(',')[0]))).toEqual([24, 21, 18, 15, 12, 9, 6, 3])
  })

  it('verifies the chain and reports where it breaks', async () => {
    expect((await get('/api/v1/audit/verify')).json()).toEqual({
      ok: true,
      checked: 25,
      head: { seq: 25, hash: records[24]!.hash },
    })
    await fx.db.put(recordKey(7), { ...records[6], reason: 'rewritten' })
    expect((await get('/api/v1/audit/verify')).json()).toMatchObject({ ok: false, brokenAt: 7, reason: 'hash' })
    expect((await get('/api/v1/audit/verify?fromSeq=10&toSeq=20')).json()).toMatchObject({ ok: true, checked: 11 })
  })

  it('answers an export that cannot start with an error, not a cut-off 200', async () => {
    await fx.audit.stop()
    expectError(await get('/api/v1/audit/export?format=jsonl'), 500, 'PSW_ERR_INTERNAL')
  })

  it('stops reading the log when an export client goes away (real server, port 0)', async () => {
    for (let i = 0; i < 200; i++) await fx.audit.append(sampleEntry(i, { after: { blob: 'q'.repeat(12_000) } }))
    let ended: () => void
    const exportEnded = new Promise<void>((resolve) => {
      ended = resolve
    })
    let aborted = false
    const spy: AuditApi = {
      query: (q, o) => fx.audit.query(q, o),
      verify: (r, o) => fx.audit.verify(r, o),
      async *export(format, filter, options) {
        try {
          yield* fx.audit.export(format, filter, options)
        } finally {
          aborted = options?.signal?.aborted ?? false
          ended()
        }
      },
    }
    const server = Fastify({ logger: false })
    installTestPrincipals(server, { [TOKEN]: 'viewer' })
    registerAuditRoutes(server, { audit: spy })
    const address = await server.listen({ port: 0, host: '127.0.0.1' })
    try {
      const request = httpGet(`${address}/api/v1/audit/export?format=jsonl`, {
        headers: { authorization: `Bearer ${TOKEN}` },
      })
      const res = await new Promise<IncomingMessage>((resolve, reject) => {
        request.once('response', resolve).once('error', reject)
      })
      expect(res.statusCode).toBe(200)
      await new Promise((resolve) => res.once('data', resolve))
      request.destroy()
      await exportEnded
      expect(aborted).toBe(true)
    } finally {
      await server.close()
    }
  })

  it('serialises truncated values and markers as stored', async () => {
    const big = await fx.audit.append(sampleEntry(26, { before: { blob: 'b'.repeat(40_000) }, after: [1, 'two'] }))
    const body = (await get('/api/v1/audit?limit=1')).json<{ records: AuditRecord[] }>()
    expect(body.records[0]).toEqual(big)
  })
})
