import type { FastifyInstance } from 'fastify'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { silentLogger } from '../../shared/log.ts'
import { fingerprint256 } from '../../shared/pki/web-cert.ts'
import { readAdminToken } from '../data-dir.ts'
import { openTestAppliance, type TestAppliance } from '../test-fixtures.ts'
import { createHttpServer } from './server.ts'
import { ensureWebCertificates, readWebCertificates, type WebCertificates } from './web-tls.ts'

const NAMES = { hostnames: ['localhost', 'box.example'], addresses: ['127.0.0.1', '::1'] }
const NOW = Date.parse('2026-03-01T12:00:00Z')

describe('certificate routes and the enrollment token response', () => {
  let t: TestAppliance
  let app: FastifyInstance
  let adminToken: string
  let web: WebCertificates
  let reloaded: number

  beforeEach(async () => {
    t = await openTestAppliance()
    adminToken = await readAdminToken(t.core.layout)
    web = await ensureWebCertificates(t.core.layout, { ...NAMES, now: NOW })
    reloaded = 0
    app = await createHttpServer({
      core: t.core,
      adminToken,
      status: async () => {
        throw new Error('not used')
      },
      startedAt: NOW,
      webCaPem: () => web.caPem,
      certificates: {
        read: () => readWebCertificates(t.core.layout, NOW),
        renew: async () => {
          web = await ensureWebCertificates(t.core.layout, { ...NAMES, now: NOW + 1000, renew: true })
          reloaded++
          return web
        },
        urls: () => ({ httpsUrl: 'https://127.0.0.1:8443', webUrls: ['https://box.example:8443'] }),
      },
      log: silentLogger(),
    })
  })
  afterEach(async () => {
    await app.close()
    await t.cleanup()
  })

  const admin = () => ({ authorization: `Bearer ${adminToken}` })
  const viewer = async () => {
    const { token } = await t.core.auth.apiTokens.create({ name: 'ro', role: 'viewer' }, 'test')
    return { authorization: `Bearer ${token}` }
  }

  it('GET /api/v1/settings/certificate: fingerprints, names, issuer, expiry; never the key (admin only)', async () => {
    const res = await app.inject({ method: 'GET', url: '/api/v1/settings/certificate', headers: admin() })
    expect(res.statusCode, res.body).toBe(200)
    const body = res.json()
    expect(body).toMatchObject({
      caFingerprint256: web.caFingerprint256,
      caAvailable: true,
      serverFingerprint256: web.serverFingerprint256,
      notAfter: web.notAfter,
      dnsNames: expect.arrayContaining(['localhost', 'box.example']),
      ipAddresses: expect.arrayContaining(['127.0.0.1']),
      imported: false,
      httpsUrl: 'https://127.0.0.1:8443',
      webUrls: ['https://box.example:8443'],
    })
    expect(body.issuer).toContain('patchswarm web CA')
    expect(res.body).not.toMatch(/PRIVATE KEY|BEGIN CERTIFICATE|server\.key/)
    expect(res.headers['cache-control']).toBe('no-store')

    expect((await app.inject({ method: 'GET', url: '/api/v1/settings/certificate' })).statusCode).toBe(401)
    const ro = await viewer()
    expect((await app.inject({ method: 'GET', url: '/api/v1/settings/certificate', headers: ro })).statusCode).toBe(403)
  })

  it('POST /api/v1/settings/certificate/renew: a new server certificate, reloaded and audited (admin only)', async () => {
    const before = web.serverFingerprint256
    const ro = await viewer()
    const refused = await app.inject({ method: 'POST', url: '/api/v1/settings/certificate/renew', headers: ro })
    expect(refused.statusCode).toBe(403)
    expect(reloaded).toBe(0)

    const res = await app.inject({ method: 'POST', url: '/api/v1/settings/certificate/renew', headers: admin() })
    expect(res.statusCode, res.body).toBe(200)
    expect(reloaded).toBe(1)
    const body = res.json()
    expect(body.serverFingerprint256).not.toBe(before)
    expect(body.caFingerprint256).toBe(web.caFingerprint256)
    const { records } = await t.core.audit.query({ action: 'settings.certificate.renew' })
    expect(records).toHaveLength(1)
    expect(records[0]).toMatchObject({
      target: { type: 'certificate', id: 'web-server' },
      before: { serverFingerprint256: before },
      after: { serverFingerprint256: body.serverFingerprint256 },
    })
  })

  it('POST /api/v1/admin/tokens carries the root and web CA fingerprints and the HTTPS URLs', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/api/v1/admin/tokens',
      headers: admin(),
      payload: { label: 'pc-7' },
    })
    expect(res.statusCode, res.body).toBe(200)
    expect(res.json()).toEqual({
      token: expect.stringMatching(/^pst_/),
      expiresAt: expect.any(String),
      rootFingerprint: t.core.identity.rootFingerprint,
      webCaFingerprint256: fingerprint256(web.caPem!),
      httpsUrl: 'https://127.0.0.1:8443',
      webUrls: ['https://box.example:8443'],
    })
  })
})
