import { join } from 'node:path'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { silentLogger } from '../../shared/log.ts'
import { readAdminToken } from '../data-dir.ts'
import {
  enrollNewAgent,
  ingestSmallBundle,
  newTestAgent,
  openTestAppliance,
  type TestAppliance,
  writeSource,
} from '../test-fixtures.ts'
import { createHttpServer } from './server.ts'
import type { StatusView } from './status-page.ts'

const APPLIANCE_PEER = '12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN'

describe('appliance HTTP API', () => {
  let t: TestAppliance
  let app: FastifyInstance
  let adminToken: string
  let siteName: string

  beforeEach(async () => {
    t = await openTestAppliance()
    adminToken = await readAdminToken(t.core.layout)
    siteName = 'branch-office'
    const status = async (): Promise<StatusView> => ({
      siteName,
      peerId: APPLIANCE_PEER,
      multiaddrs: ['/ip4/127.0.0.1/tcp/7070'],
      rootFingerprint: t.core.identity.rootFingerprint,
      bundles: await t.core.catalog.list(),
      devices: await t.core.devices.list(),
    })
    app = await createHttpServer({ core: t.core, adminToken, status, startedAt: Date.now(), log: silentLogger() })
  })
  afterEach(async () => {
    await app.close()
    await t.cleanup()
  })

  const auth = () => ({ authorization: `Bearer ${adminToken}` })

  it('serves device lists only to an authenticated caller, loopback included', async () => {
    for (const url of ['/api/v1/status']) {
      for (const remoteAddress of ['127.0.0.1', '::1', '192.168.1.20']) {
        const anonymous = await app.inject({ method: 'GET', url, remoteAddress })
        expect(anonymous.statusCode).toBe(401)
        expect(anonymous.json()).toMatchObject({ code: 'PSW_ERR_UNAUTHORIZED' })
      }
      expect(
        (await app.inject({ method: 'GET', url, remoteAddress: '192.168.1.20', headers: auth() })).statusCode,
      ).toBe(200)
    }
    // health and enrollment stay open to the LAN
    expect((await app.inject({ method: 'GET', url: '/api/v1/health', remoteAddress: '192.168.1.20' })).statusCode).toBe(
      200,
    )
  })
  const postJson = (url: string, payload: unknown, headers: Record<string, string> = {}) =>
    app.inject({ method: 'POST', url, headers, payload: payload as Record<string, unknown> })
  const postRaw = (url: string, body: string | Buffer, headers: Record<string, string> = {}) =>
    app.inject({ method: 'POST', url, headers: { 'content-type': 'application/json', ...headers }, payload: body })

  /** An error response: the status, and a `{ code, message }` body with a PSW_ERR_* code. */
  const expectError = (res: LightMyRequestResponse, status: number, code?: string) => {
    expect(res.statusCode, res.body).toBe(status)
    const body = res.json<{ code: string; message: string }>()
    expect(body.code).toMatch(/^PSW_ERR_[A-Z_]+$/)
    expect(typeof body.message).toBe('string')
    if (code) expect(body.code).toBe(code)
    return body
  }

  const validEnrollBody = async () => {
    const { token } = await t.core.enrollment.createToken()
    const agent = await newTestAgent()
    return { agent, body: { token, peerId: agent.peerId, csr: agent.csr, hostname: 'pc-01' } }
  }

  /** Parses an NDJSON body into its lines. */
  const ndjson = (res: LightMyRequestResponse) =>
    res.body
      .split('\n')
      .filter((l) => l.length > 0)
      .map((l) => JSON.parse(l) as { type: string; [k: string]: unknown })

  describe('public routes', () => {
    it('GET /api/v1/openapi.json: an OpenAPI 3 document with the schemas of the routes', async () => {
      const res = await app.inject({ method: 'GET', url: '/api/v1/openapi.json' })
      expect(res.statusCode).toBe(200)
      const doc = res.json() as {
        openapi: string
        info: { title: string }
        paths: Record<string, Record<string, { requestBody?: unknown; parameters?: unknown[] }>>
      }
      expect(doc.openapi).toMatch(/^3\./)
      expect(doc.info.title).toContain('patchswarm')
      for (const path of [
        '/api/v1/health',
        '/api/v1/enroll',
        '/api/v1/admin/assign',
        '/api/v1/audit',
        '/api/v1/groups',
      ])
        expect(Object.keys(doc.paths)).toContain(path)
      // Request schemas come from the routes' TypeBox schemas.
      expect(doc.paths['/api/v1/admin/assign']!.post!.requestBody).toBeDefined()
      expect(doc.paths['/api/v1/audit']!.get!.parameters?.length).toBeGreaterThan(0)
      expect(Object.keys(doc.paths)).not.toContain('/api/v1/openapi.json')
    })

    it('GET /api/v1/health: 200 with the peerId and multiaddrs', async () => {
      const res = await app.inject({ method: 'GET', url: '/api/v1/health' })
      expect(res.statusCode).toBe(200)
      expect(res.json()).toMatchObject({
        status: 'ok',
        version: expect.any(String),
        peerId: APPLIANCE_PEER,
        multiaddrs: ['/ip4/127.0.0.1/tcp/7070'],
        uptimeSeconds: expect.any(Number),
      })
    })

    it('unknown route and wrong method: 404 PSW_ERR_NOT_FOUND', async () => {
      expectError(await app.inject({ method: 'GET', url: '/api/v1/nope' }), 404, 'PSW_ERR_NOT_FOUND')
      expectError(await app.inject({ method: 'DELETE', url: '/api/v1/enroll' }), 404, 'PSW_ERR_NOT_FOUND')
      expectError(await app.inject({ method: 'GET', url: '/api/v1/admin/tokens' }), 404, 'PSW_ERR_NOT_FOUND')
    })

    it('GET /api/v1/status (authenticated) leaves out certificates', async () => {
      await enrollNewAgent(t.core, 'pc-01')
      const res = await app.inject({ method: 'GET', url: '/api/v1/status', headers: auth() })
      expect(res.statusCode).toBe(200)
      expect(res.body).not.toContain('BEGIN CERTIFICATE')
      expect(res.json<StatusView>().devices.map((d) => d.hostname)).toEqual(['pc-01'])
    })

    it('GET /: the web UI shell, public (it holds no data), never cached, under the CSP', async () => {
      await enrollNewAgent(t.core, 'pc-secret-host')
      const res = await app.inject({ method: 'GET', url: '/', remoteAddress: '192.168.1.20' })
      // 503 when dist/ui is not built; ui-routes.test.ts tests the shell and its assets.
      expect([200, 503]).toContain(res.statusCode)
      expect(res.headers['content-security-policy']).toMatch(/script-src 'self'/)
      expect(res.headers['cache-control']).toBe('no-store')
      expect(res.body).not.toContain('pc-secret-host')
    })
  })

  describe('POST /api/v1/enroll (faults row 23)', () => {
    it('a valid enrollment: 200 with certificate, root and appliance info', async () => {
      const { agent, body } = await validEnrollBody()
      const res = await postJson('/api/v1/enroll', body)
      expect(res.statusCode, res.body).toBe(200)
      expect(res.json()).toMatchObject({
        certificate: expect.stringMatching(/^-----BEGIN CERTIFICATE-----/),
        root: t.core.identity.rootPem,
        appliance: { signerCertificate: t.core.identity.signer.certificatePem },
      })
      expect(t.core.devices.isMember(agent.peerId)).toBe(true)

      // the token is spent now: 401 with the enrollment code
      const again = await newTestAgent()
      expectError(
        await postJson('/api/v1/enroll', { ...body, peerId: again.peerId, csr: again.csr }),
        401,
        'PSW_ERR_TOKEN_USED',
      )
    })

    it('domain errors keep their code and status', async () => {
      const { agent, body } = await validEnrollBody()
      const other = await newTestAgent()
      expectError(
        await postJson('/api/v1/enroll', { ...body, token: 'pst_unknownTokenXYZ' }),
        401,
        'PSW_ERR_TOKEN_INVALID',
      )
      expectError(await postJson('/api/v1/enroll', { ...body, csr: other.csr }), 400, 'PSW_ERR_CERT_PEER_MISMATCH')
      expect((await postJson('/api/v1/enroll', body)).statusCode).toBe(200)
      const { token } = await t.core.enrollment.createToken()
      expectError(await postJson('/api/v1/enroll', { ...body, token }), 409, 'PSW_ERR_CONFLICT')
      expect(t.core.devices.isMember(agent.peerId)).toBe(true)
    })

    it('malformed JSON: 400 PSW_ERR_SCHEMA', async () => {
      for (const raw of ['{', '{"token": }', 'not json', '{"a":1}}', '\u0000', '[1,2', '{"__proto__": {"x": 1}}']) {
        expectError(await postRaw('/api/v1/enroll', raw), 400, 'PSW_ERR_SCHEMA')
      }
    })

    it('an empty body or a body that is not an object: 400 PSW_ERR_SCHEMA', async () => {
      for (const raw of ['', 'null', '[]', '42', '"text"', 'true']) {
        expectError(await postRaw('/api/v1/enroll', raw), 400, 'PSW_ERR_SCHEMA')
      }
    })

    it('wrong types: 400 PSW_ERR_SCHEMA, never coerced', async () => {
      const { body } = await validEnrollBody()
      const variants = [
        { ...body, token: 12345678901234 },
        { ...body, hostname: 42 },
        { ...body, hostname: ['pc-01'] },
        { ...body, csr: null },
        { ...body, peerId: { id: body.peerId } },
        { ...body, peerId: 'not-a-peer-id' },
        { ...body, hostname: '' },
        { ...body, hostname: 'h'.repeat(256) },
        { token: body.token, peerId: body.peerId, csr: body.csr },
      ]
      for (const v of variants) expectError(await postJson('/api/v1/enroll', v), 400, 'PSW_ERR_SCHEMA')
      // none of that consumed the token
      expect((await postJson('/api/v1/enroll', body)).statusCode).toBe(200)
    })

    it('an unknown extra field: 400 (additionalProperties false)', async () => {
      const { body } = await validEnrollBody()
      expectError(await postJson('/api/v1/enroll', { ...body, admin: true }), 400, 'PSW_ERR_SCHEMA')
    })

    it('a body over 64 KiB: 413 PSW_ERR_TOO_LARGE', async () => {
      const { body } = await validEnrollBody()
      const huge = JSON.stringify({ ...body, csr: 'A'.repeat(65 << 10) })
      expectError(await postRaw('/api/v1/enroll', huge), 413, 'PSW_ERR_TOO_LARGE')
      // a chunked body (no content-length) is cut at the limit too
      expectError(
        await postRaw('/api/v1/enroll', huge, { 'transfer-encoding': 'chunked', 'content-length': '' }),
        413,
        'PSW_ERR_TOO_LARGE',
      )
    })

    it('a wrong content type is a 4xx, not a 500', async () => {
      const { body } = await validEnrollBody()
      const res = await app.inject({
        method: 'POST',
        url: '/api/v1/enroll',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        payload: new URLSearchParams(body).toString(),
      })
      expect(res.statusCode).toBeGreaterThanOrEqual(400)
      expect(res.statusCode).toBeLessThan(500)
      expect(res.json<{ code: string }>().code).toMatch(/^PSW_ERR_/)
    })
  })

  describe('admin routes', () => {
    const adminRoutes = [
      { url: '/api/v1/admin/tokens', payload: {} },
      { url: '/api/v1/admin/assign', payload: { bundle: 'x@1', devices: 'all' } },
      { url: '/api/v1/admin/ingest', payload: { source: '/tmp/x', name: 'x', version: '1', targetRoot: '/opt' } },
    ]

    it('without or with a wrong bearer token: 401 PSW_ERR_UNAUTHORIZED', async () => {
      const wrong: Array<Record<string, string>> = [
        {},
        { authorization: '' },
        { authorization: 'Bearer' },
        { authorization: 'Bearer ' },
        { authorization: `Bearer ${adminToken}x` },
        { authorization: `Bearer ${adminToken.slice(0, -1)}` },
        { authorization: `Bearer ${'x'.repeat(adminToken.length)}` },
        { authorization: `bearer ${adminToken}` },
        { authorization: `Basic ${Buffer.from(`admin:${adminToken}`).toString('base64')}` },
        { authorization: adminToken },
      ]
      for (const { url, payload } of adminRoutes) {
        for (const headers of wrong) {
          expectError(await postJson(url, payload, headers), 401, 'PSW_ERR_UNAUTHORIZED')
        }
      }
      expect(await t.core.catalog.list()).toEqual([])
    })

    it('authentication comes before body parsing: no schema hints for anonymous callers', async () => {
      for (const { url } of adminRoutes) {
        expectError(await postRaw(url, '{"malformed'), 401, 'PSW_ERR_UNAUTHORIZED')
        expectError(await postJson(url, { unknown: 1 }), 401, 'PSW_ERR_UNAUTHORIZED')
        expectError(await postRaw(url, JSON.stringify({ pad: 'x'.repeat(300 << 10) })), 401, 'PSW_ERR_UNAUTHORIZED')
      }
    })

    it('POST /api/v1/admin/tokens: 200 with a token an agent can enroll with', async () => {
      const res = await postJson('/api/v1/admin/tokens', { ttlHours: 2, label: 'rack 3' }, auth())
      expect(res.statusCode, res.body).toBe(200)
      const { token, expiresAt } = res.json<{ token: string; expiresAt: string }>()
      expect(token).toMatch(/^pst_/)
      expect(Date.parse(expiresAt)).toBe(t.clock.now() + 2 * 3_600_000)

      const agent = await newTestAgent()
      const enroll = await postJson('/api/v1/enroll', { token, peerId: agent.peerId, csr: agent.csr, hostname: 'pc' })
      expect(enroll.statusCode, enroll.body).toBe(200)
      // an empty body is accepted as "defaults" too
      expect((await postJson('/api/v1/admin/tokens', {}, auth())).statusCode).toBe(200)
    })

    it('POST /api/v1/admin/tokens with a bad body: 400 PSW_ERR_SCHEMA', async () => {
      for (const body of [
        { ttlHours: '2' },
        { ttlHours: 0 },
        { ttlHours: 1.5 },
        { ttlHours: 24 * 31 },
        { label: 'x'.repeat(101) },
        { extra: true },
        [],
      ]) {
        expectError(await postJson('/api/v1/admin/tokens', body, auth()), 400, 'PSW_ERR_SCHEMA')
      }
      expectError(await postRaw('/api/v1/admin/tokens', '{', auth()), 400, 'PSW_ERR_SCHEMA')
    })

    it('POST /api/v1/admin/assign: 400 for a bad body, domain codes for unknown things, 200 when valid', async () => {
      for (const body of [
        {},
        { bundle: 'hello@1.0.0' },
        { devices: 'all' },
        { bundle: '', devices: 'all' },
        { bundle: 'hello@1.0.0', devices: [] },
        { bundle: 'hello@1.0.0', devices: 'some' },
        { bundle: 'hello@1.0.0', devices: [''] },
        { bundle: 'hello@1.0.0', devices: [1, 2] },
        { bundle: 42, devices: 'all' },
        { bundle: 'hello@1.0.0', devices: 'all', force: true },
      ]) {
        expectError(await postJson('/api/v1/admin/assign', body, auth()), 400, 'PSW_ERR_SCHEMA')
      }
      expectError(
        await postJson('/api/v1/admin/assign', { bundle: 'hello@1.0.0', devices: 'all' }, auth()),
        404,
        'PSW_ERR_NOT_FOUND',
      )
      const hello = await ingestSmallBundle(t, 'hello', '1.0.0')
      expectError(
        await postJson('/api/v1/admin/assign', { bundle: 'hello@1.0.0', devices: ['pc-01'] }, auth()),
        404,
        'PSW_ERR_NOT_FOUND',
      )
      const agent = await enrollNewAgent(t.core, 'pc-01')
      const res = await postJson('/api/v1/admin/assign', { bundle: 'hello@1.0.0', devices: ['pc-01'] }, auth())
      expect(res.statusCode, res.body).toBe(200)
      expect(res.json()).toMatchObject({ bundleId: hello.bundleId, devices: [{ peerId: agent.peerId }] })
    })

    it('POST /api/v1/admin/ingest streams NDJSON progress and ends with a result line', async () => {
      const source = await writeSource(t.dir, 'tool.bin', Buffer.alloc(300_000, 7))
      const res = await postJson(
        '/api/v1/admin/ingest',
        { source, name: 'tool', version: '1.2.3', targetRoot: '/opt/tool' },
        auth(),
      )
      expect(res.statusCode).toBe(200)
      expect(res.headers['content-type']).toMatch(/^application\/x-ndjson/)
      const lines = ndjson(res)
      const last = lines.at(-1)!
      // ~300 KB in 256 KiB chunks (the size picked for small bundles): two chunks, both new.
      expect(last).toMatchObject({
        type: 'result',
        record: { name: 'tool', version: '1.2.3', chunkSize: 256 << 10, chunks: 2 },
        newChunks: 2,
      })
      const progress = lines.slice(0, -1)
      expect(progress.length).toBeGreaterThan(0)
      for (const p of progress)
        expect(p).toMatchObject({ type: 'progress', phase: expect.stringMatching(/^(pack|store)$/) })
      const record = (last as unknown as { record: { bundleId: string } }).record
      expect((await t.core.catalog.get(record.bundleId))?.name).toBe('tool')
    })

    it('POST /api/v1/admin/ingest of a missing source ends with an error line PSW_ERR_INGEST_SOURCE', async () => {
      const res = await postJson(
        '/api/v1/admin/ingest',
        { source: join(t.dir, 'does-not-exist'), name: 'tool', version: '1', targetRoot: '/opt/tool' },
        auth(),
      )
      expect(res.statusCode).toBe(200)
      const lines = ndjson(res)
      expect(lines.at(-1)).toMatchObject({ type: 'error', error: { code: 'PSW_ERR_INGEST_SOURCE' } })
      expect(lines.filter((l) => l.type === 'result')).toEqual([])
      expect(await t.core.catalog.list()).toEqual([])
    })

    it('POST /api/v1/admin/ingest with a bad body: 400 PSW_ERR_SCHEMA', async () => {
      const ok = { source: '/tmp/x', name: 'tool', version: '1', targetRoot: '/opt/tool' }
      for (const body of [
        { ...ok, name: '../evil' },
        { ...ok, name: '' },
        { ...ok, version: 'a b' },
        { ...ok, targetRoot: 'relative/path' },
        { ...ok, chunkSize: 1 },
        { ...ok, cves: ['not-a-cve'] },
        { ...ok, os: 'plan9' },
        { ...ok, extra: 1 },
        { name: 'tool', version: '1', targetRoot: '/opt' },
      ]) {
        expectError(await postJson('/api/v1/admin/ingest', body, auth()), 400, 'PSW_ERR_SCHEMA')
      }
    })

    it('an admin body over 256 KiB: 413 PSW_ERR_TOO_LARGE', async () => {
      const body = JSON.stringify({ bundle: 'x'.repeat(300 << 10), devices: 'all' })
      expectError(await postRaw('/api/v1/admin/assign', body, auth()), 413, 'PSW_ERR_TOO_LARGE')
    })
  })

  describe('never a 500 (faults row 23)', () => {
    /** Deterministic PRNG (mulberry32) so a failure can be replayed. */
    const prng = (seed: number) => () => {
      seed = (seed + 0x6d2b79f5) | 0
      let x = Math.imul(seed ^ (seed >>> 15), 1 | seed)
      x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
      return ((x ^ (x >>> 14)) >>> 0) / 4294967296
    }

    const randomJson = (rnd: () => number, depth = 0): unknown => {
      const pick = Math.floor(rnd() * (depth > 2 ? 6 : 8))
      const str = () => {
        const alphabet = ['a', 'Z', '0', '<', '"', '\\', '\u0000', 'é', '😀', '@', '/', ' ', '\n', '12D3KooW']
        return Array.from({ length: Math.floor(rnd() * 40) }, () => alphabet[Math.floor(rnd() * alphabet.length)]).join(
          '',
        )
      }
      const keys = ['token', 'peerId', 'csr', 'hostname', 'bundle', 'devices', '__proto__', 'constructor', 'x']
      switch (pick) {
        case 0:
          return null
        case 1:
          return rnd() < 0.5
        case 2:
          return [0, -1, 1e308, -0, 2 ** 53 + 1, 0.5, Number.MAX_SAFE_INTEGER][Math.floor(rnd() * 7)]
        case 3:
        case 4:
          return str()
        case 5:
          return rnd() < 0.5 ? 'all' : 'x'.repeat(Math.floor(rnd() * 500))
        case 6:
          return Array.from({ length: Math.floor(rnd() * 4) }, () => randomJson(rnd, depth + 1))
        default:
          return Object.fromEntries(
            Array.from({ length: Math.floor(rnd() * 5) }, () => [
              keys[Math.floor(rnd() * keys.length)]!,
              randomJson(rnd, depth + 1),
            ]),
          )
      }
    }

    it('random JSON values posted to enroll and assign get a 4xx with a PSW_ERR code', async () => {
      const { body: valid } = await validEnrollBody()
      const rnd = prng(0x5eed)
      for (let i = 0; i < 60; i++) {
        // mix fully random values with valid bodies that have one field replaced
        const value =
          i % 3 === 0 ? { ...valid, [['token', 'peerId', 'csr'][i % 3]!]: randomJson(rnd) } : randomJson(rnd)
        const text = JSON.stringify(value) ?? 'null'
        for (const [url, headers] of [
          ['/api/v1/enroll', {}],
          ['/api/v1/admin/assign', auth()],
        ] as const) {
          const res = await postRaw(url, text, headers)
          expect(res.statusCode, `${url} ${text} → ${res.body}`).toBeLessThan(500)
          expect(res.statusCode, `${url} ${text} → ${res.body}`).toBeGreaterThanOrEqual(400)
          expect(res.json<{ code: string }>().code).toMatch(/^PSW_ERR_/)
        }
        // `{}` is a valid token request, so here only "never a 500" holds
        const tokens = await postRaw('/api/v1/admin/tokens', text, auth())
        expect(tokens.statusCode, `tokens ${text} → ${tokens.body}`).toBeLessThan(500)
      }
      // the valid token was never consumed by any of it
      expect((await postJson('/api/v1/enroll', valid)).statusCode).toBe(200)
    })

    it('random bytes and truncated bodies get a 4xx', async () => {
      const rnd = prng(42)
      const { body: valid } = await validEnrollBody()
      const text = JSON.stringify(valid)
      for (let i = 0; i < 40; i++) {
        const payload =
          i % 2 === 0
            ? Buffer.from(Array.from({ length: 1 + Math.floor(rnd() * 200) }, () => Math.floor(rnd() * 256)))
            : text.slice(0, Math.floor(rnd() * text.length))
        for (const [url, headers] of [
          ['/api/v1/enroll', {}],
          ['/api/v1/admin/assign', auth()],
        ] as const) {
          const res = await postRaw(url, payload, headers)
          expect(res.statusCode, `${url} → ${res.body}`).toBeGreaterThanOrEqual(400)
          expect(res.statusCode, `${url} → ${res.body}`).toBeLessThan(500)
        }
      }
    })

    it('the server still answers after all of that', async () => {
      for (let i = 0; i < 20; i++) await postRaw('/api/v1/enroll', '{"broken')
      const res = await app.inject({ method: 'GET', url: '/api/v1/health' })
      expect(res.statusCode).toBe(200)
    })
  })
})
