import type { FastifyInstance } from 'fastify'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { silentLogger } from '../../shared/log.ts'
import { readAdminToken } from '../data-dir.ts'
import { deliveredFromDevices } from '../metrics/delivered.ts'
import { createMetrics } from '../metrics/prometheus.ts'
import { parseExposition } from '../metrics/test-exposition.ts'
import { WanCounters } from '../metrics/wan-counters.ts'
import type { WanUsage } from '../metrics/wan-usage.ts'
import { enrollNewAgent, openTestAppliance, type TestAppliance } from '../test-fixtures.ts'
import { createHttpServer, type HttpDeps } from './server.ts'
import type { StatusView } from './status-page.ts'

const A = 'a'.repeat(64)
const B = 'b'.repeat(64)
const LAN = '192.168.1.20'

describe('GET /metrics and GET /api/v1/metrics/wan', () => {
  let t: TestAppliance
  let app: FastifyInstance
  let wan: WanCounters
  let adminToken: string

  const server = (metrics: HttpDeps['metrics']) => {
    const status = async (): Promise<StatusView> => ({
      siteName: 'branch',
      peerId: '',
      multiaddrs: [],
      rootFingerprint: t.core.identity.rootFingerprint,
      bundles: [],
      devices: [],
    })
    return createHttpServer({ core: t.core, adminToken, status, startedAt: 0, metrics, log: silentLogger() })
  }

  beforeEach(async () => {
    t = await openTestAppliance()
    adminToken = await readAdminToken(t.core.layout)
    wan = new WanCounters({ db: t.core.db, clock: t.clock, log: silentLogger() })
    await wan.start()
    const metrics = createMetrics(
      {
        wan,
        delivered: deliveredFromDevices(t.core.devices),
        applianceUploaded: () => 0,
        devices: () => t.core.devices.members().length,
        bundles: async () => (await t.core.catalog.list()).length,
      },
      { processMetrics: false },
    )
    app = await server(metrics)
  })
  afterEach(async () => {
    await app.close()
    await wan.stop()
    await t.cleanup()
  })

  const auth = { authorization: 'Bearer placeholder' }
  const withToken = () => ({ authorization: `Bearer ${adminToken}` })

  it('serves the Prometheus text format to a viewer API token (no loopback exemption)', async () => {
    await enrollNewAgent(t.core, 'pc-01')
    wan.addArtifactBytes(A, 4096)
    wan.addIndexBytes(100)
    const { token } = await t.core.auth.apiTokens.create({ name: 'prometheus', role: 'viewer' }, 'test')

    const anonymous = await app.inject({ method: 'GET', url: '/metrics' })
    expect(anonymous.statusCode).toBe(401)
    const local = await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${token}` } })
    expect(local.statusCode, local.body).toBe(200)
    expect(local.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/)
    const { types, samples } = parseExposition(local.body)
    expect(types.get('patchswarm_wan_bytes_total')).toBe('counter')
    expect(samples.find((s) => s.name === 'patchswarm_wan_bytes_total')?.value).toBe(4196)
    expect(samples.find((s) => s.name === 'patchswarm_devices')?.value).toBe(1)
    expect(samples.find((s) => s.name === 'patchswarm_wan_artifact_bytes_total')?.labels).toEqual({ sha256: A })

    const lan = await app.inject({ method: 'GET', url: '/metrics', remoteAddress: LAN })
    expect(lan.statusCode).toBe(401)
    expect(lan.json()).toMatchObject({ code: 'PSW_ERR_UNAUTHORIZED' })
    expect((await app.inject({ method: 'GET', url: '/metrics', remoteAddress: LAN, headers: auth })).statusCode).toBe(
      401,
    )
    const scraper = await app.inject({ method: 'GET', url: '/metrics', remoteAddress: LAN, headers: withToken() })
    expect(scraper.statusCode).toBe(200)
    expect(scraper.body).toContain('patchswarm_saved_wan_bytes_total')
  })

  it('GET /api/v1/metrics/wan: totals, days and artifacts as JSON, with the same access rule', async () => {
    wan.addArtifactBytes(A, 10)
    t.clock.advance(86_400_000)
    wan.addArtifactBytes(B, 20)
    wan.addIndexBytes(5)

    const res = await app.inject({ method: 'GET', url: '/api/v1/metrics/wan', headers: withToken() })
    expect(res.statusCode, res.body).toBe(200)
    expect(res.json<WanUsage>()).toEqual({
      totalBytes: 35,
      artifactBytes: 30,
      indexBytes: 5,
      todayBytes: 25,
      days: [
        { day: '2026-01-01', bytes: 10 },
        { day: '2026-01-02', bytes: 25 },
      ],
      artifacts: [
        { sha256: B, bytes: 20, lastAt: '2026-01-02T00:00:00.000Z' },
        { sha256: A, bytes: 10, lastAt: '2026-01-01T00:00:00.000Z' },
      ],
      artifactCount: 2,
    })

    const range = await app.inject({ method: 'GET', url: '/api/v1/metrics/wan?from=2026-01-02', headers: withToken() })
    expect(range.json<WanUsage>().days).toEqual([{ day: '2026-01-02', bytes: 25 }])
    const bad = await app.inject({ method: 'GET', url: '/api/v1/metrics/wan?from=yesterday', headers: withToken() })
    expect(bad.statusCode).toBe(400)
    expect(bad.json()).toMatchObject({ code: 'PSW_ERR_SCHEMA' })
    const unknown = await app.inject({ method: 'GET', url: '/api/v1/metrics/wan?limit=5', headers: withToken() })
    expect(unknown.statusCode).toBe(400)

    expect((await app.inject({ method: 'GET', url: '/api/v1/metrics/wan', remoteAddress: LAN })).statusCode).toBe(401)
    expect(
      (await app.inject({ method: 'GET', url: '/api/v1/metrics/wan', remoteAddress: LAN, headers: withToken() }))
        .statusCode,
    ).toBe(200)
  })

  it('without metrics the routes do not exist (404 PSW_ERR_NOT_FOUND)', async () => {
    const bare = await server(undefined)
    try {
      for (const url of ['/metrics', '/api/v1/metrics/wan']) {
        const res = await bare.inject({ method: 'GET', url, headers: withToken() })
        expect(res.statusCode).toBe(404)
        expect(res.json()).toMatchObject({ code: 'PSW_ERR_NOT_FOUND' })
      }
    } finally {
      await bare.close()
    }
  })

  it('a failing scrape is a 500 PSW_ERR_INTERNAL, not a partial exposition', async () => {
    const failing = await server({ render: () => Promise.reject(new Error('db closed')) })
    try {
      const res = await failing.inject({ method: 'GET', url: '/metrics', headers: withToken() })
      expect(res.statusCode).toBe(500)
      expect(res.json()).toMatchObject({ code: 'PSW_ERR_INTERNAL' })
      // no wanUsage: that route is left out
      expect(
        (await failing.inject({ method: 'GET', url: '/api/v1/metrics/wan', headers: withToken() })).statusCode,
      ).toBe(404)
    } finally {
      await failing.close()
    }
  })
})
