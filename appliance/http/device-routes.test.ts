import Fastify, { type FastifyInstance } from 'fastify'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { silentLogger } from '../../shared/log.ts'
import type { InventoryReportT } from '../../shared/protocol/control-protocol.ts'
import { installTestPrincipals } from '../auth/test-principals.ts'
import { GroupStore } from '../policy/groups.ts'
import { enrollNewAgent, newTestAgent, openTestAppliance, type TestAppliance } from '../test-fixtures.ts'
import { registerDeviceRoutes } from './device-routes.ts'
import { installErrorHandler } from './error-handler.ts'

const TOKEN = 'test-operator-token'
const VIEWER_TOKEN = 'test-viewer-token'
const LAN = '192.168.1.20'

const inventory = (hostname: string, os: InventoryReportT['os']): InventoryReportT => ({
  formatVersion: 1,
  collectedAt: '2026-01-01T00:00:00.000Z',
  digest: 'e'.repeat(64),
  agentVersion: '0.1.0',
  hostname,
  os,
  addresses: [],
  packageManager: 'dpkg',
  packages: [{ name: 'openssl', version: '3.0.11-1~deb12u2', arch: 'amd64' }],
  patchswarm: [],
  reboot: { pending: false, reasons: [] },
})

describe('device and group routes', () => {
  let t: TestAppliance
  let app: FastifyInstance
  let kasse: string
  let office: string

  beforeEach(async () => {
    t = await openTestAppliance()
    // The same Fastify options as server.ts; a stand-in for its principals.
    app = Fastify({
      logger: false,
      bodyLimit: 256 << 10,
      ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false } },
    })
    installErrorHandler(app, silentLogger())
    installTestPrincipals(app, { [TOKEN]: 'operator', [VIEWER_TOKEN]: 'viewer' })
    registerDeviceRoutes(app, { devices: t.core.devices, groups: new GroupStore({ db: t.core.db, clock: t.clock }) })
    await app.ready()
    kasse = (await enrollNewAgent(t.core, 'ber-kasse-01')).peerId
    office = (await enrollNewAgent(t.core, 'ber-office-02')).peerId
    await t.core.devices.recordInventory(
      kasse,
      inventory('ber-kasse-01', {
        platform: 'linux',
        id: 'debian',
        versionId: '12',
        name: 'Debian',
        kernel: '6.1',
        arch: 'x64',
      }),
      t.clock.now(),
    )
  })
  afterEach(async () => {
    await app.close()
    await t.cleanup()
  })

  const admin = { authorization: `Bearer ${TOKEN}` }
  const viewer = { authorization: `Bearer ${VIEWER_TOKEN}` }
  const put = (url: string, payload: unknown, headers: Record<string, string> = admin) =>
    app.inject({ method: 'PUT', url, payload: payload as object, headers })

  it('lists devices without certificates, searches by hostname, PeerId and tag', async () => {
    const all = await app.inject({ method: 'GET', headers: viewer, url: '/api/v1/devices' })
    expect(all.statusCode).toBe(200)
    expect(all.json()).toMatchObject({ total: 2 })
    expect(all.body).not.toContain('BEGIN CERTIFICATE')
    expect(all.json().devices.map((d: { hostname: string }) => d.hostname)).toEqual(['ber-kasse-01', 'ber-office-02'])
    expect(all.json().devices[0]).toMatchObject({ tier: 'normal', tags: [], inventory: { packages: 1 } })

    expect((await put(`/api/v1/devices/${office}/tags`, { tags: ['Backoffice', 'berlin'] })).json()).toMatchObject({
      tags: ['backoffice', 'berlin'],
    })
    const search = async (query: string) =>
      (await app.inject({ method: 'GET', headers: viewer, url: `/api/v1/devices?${query}` }))
        .json()
        .devices.map((d: { peerId: string }) => d.peerId)
    expect(await search('q=KASSE')).toEqual([kasse])
    expect(await search('q=backoff')).toEqual([office])
    expect(await search(`q=${office.slice(10, 30)}`)).toEqual([office])
    expect(await search('q=ber&limit=1')).toHaveLength(1)
    expect(await search('tier=normal')).toHaveLength(2)
  })

  it('shows one device with its latest inventory', async () => {
    const res = await app.inject({ method: 'GET', headers: viewer, url: `/api/v1/devices/${kasse}` })
    expect(res.statusCode).toBe(200)
    expect(res.json()).toMatchObject({
      device: { peerId: kasse, hostname: 'ber-kasse-01' },
      inventory: { receivedAt: '2026-01-01T00:00:00.000Z', inventory: { packages: [{ name: 'openssl' }] } },
    })
    expect(
      (await app.inject({ method: 'GET', headers: viewer, url: `/api/v1/devices/${office}` })).json().inventory,
    ).toBeNull()
    const stranger = await newTestAgent()
    const missing = await app.inject({ method: 'GET', headers: viewer, url: `/api/v1/devices/${stranger.peerId}` })
    expect(missing.statusCode).toBe(404)
    expect(missing.json()).toMatchObject({ code: 'PSW_ERR_NOT_FOUND' })
    expect(
      (await app.inject({ method: 'GET', headers: viewer, url: '/api/v1/devices/not-a-peer-id' })).json(),
    ).toMatchObject({
      code: 'PSW_ERR_SCHEMA',
    })
  })

  it('sets tags and tier only as an operator, and validates them', async () => {
    expect((await put(`/api/v1/devices/${kasse}/tier`, { tier: 'critical' }, {})).statusCode).toBe(401)
    expect((await put(`/api/v1/devices/${kasse}/tags`, { tags: ['x'] }, {})).statusCode).toBe(401)
    const weak = await put(`/api/v1/devices/${kasse}/tier`, { tier: 'critical' }, viewer)
    expect(weak.statusCode).toBe(403)
    expect(weak.json()).toMatchObject({ code: 'PSW_ERR_FORBIDDEN' })
    const tier = await put(`/api/v1/devices/${kasse}/tier`, { tier: 'critical' })
    expect(tier.statusCode).toBe(200)
    expect(tier.json()).toMatchObject({ tier: 'critical' })
    for (const [url, body] of [
      [`/api/v1/devices/${kasse}/tier`, { tier: 'urgent' }],
      [`/api/v1/devices/${kasse}/tags`, { tags: ['has space'] }],
      [`/api/v1/devices/${kasse}/tags`, { tags: Array.from({ length: 33 }, (_, i) => `t${i}`) }],
      [`/api/v1/devices/${kasse}/tags`, { tags: ['ok'], extra: true }],
    ] as const) {
      const res = await put(url, body)
      expect(res.statusCode, JSON.stringify(body)).toBe(400)
      expect(res.json()).toMatchObject({ code: 'PSW_ERR_SCHEMA' })
    }
    const stranger = await newTestAgent()
    expect((await put(`/api/v1/devices/${stranger.peerId}/tier`, { tier: 'low' })).statusCode).toBe(404)
    // reads need a principal, on loopback as from the LAN
    for (const remoteAddress of ['127.0.0.1', LAN])
      expect((await app.inject({ method: 'GET', url: '/api/v1/devices', remoteAddress })).statusCode).toBe(401)
    expect(
      (await app.inject({ method: 'GET', url: '/api/v1/devices', remoteAddress: LAN, headers: viewer })).statusCode,
    ).toBe(200)
  })

  it('manages groups and lists their members; filters devices by group', async () => {
    await put(`/api/v1/devices/${kasse}/tags`, { tags: ['kiosk', 'berlin'] })
    const body = { id: 'kiosks', name: 'Kiosks', match: { tags: { all: ['kiosk'] } } }
    expect((await app.inject({ method: 'POST', url: '/api/v1/groups', payload: body })).statusCode).toBe(401)
    const created = await app.inject({ method: 'POST', url: '/api/v1/groups', payload: body, headers: admin })
    expect(created.statusCode).toBe(201)
    expect(created.json()).toMatchObject(body)
    expect(
      (await app.inject({ method: 'POST', url: '/api/v1/groups', payload: body, headers: admin })).json(),
    ).toMatchObject({ code: 'PSW_ERR_CONFLICT' })

    const memberIds = async (id: string) =>
      (await app.inject({ method: 'GET', headers: viewer, url: `/api/v1/groups/${id}/members` }))
        .json()
        .devices.map((d: { peerId: string }) => d.peerId)
    expect(await memberIds('kiosks')).toEqual([kasse])
    const byGroup = await app.inject({ method: 'GET', headers: viewer, url: '/api/v1/devices?group=kiosks' })
    expect(byGroup.json().devices.map((d: { peerId: string }) => d.peerId)).toEqual([kasse])
    expect((await app.inject({ method: 'GET', headers: viewer, url: '/api/v1/devices?group=nope' })).statusCode).toBe(
      404,
    )

    const updated = await put('/api/v1/groups/kiosks', { name: 'Berlin', match: { hostnamePattern: 'ber-*' } })
    expect(updated.statusCode).toBe(200)
    expect(await memberIds('kiosks')).toEqual([kasse, office])
    await put('/api/v1/groups/kiosks', { name: 'Debian', match: { os: ['debian-*'] } })
    expect(await memberIds('kiosks')).toEqual([kasse])

    const list = await app.inject({ method: 'GET', headers: viewer, url: '/api/v1/groups' })
    expect(list.json()).toEqual({ groups: [expect.objectContaining({ id: 'kiosks', name: 'Debian', memberCount: 1 })] })
    expect((await app.inject({ method: 'GET', headers: viewer, url: '/api/v1/groups/kiosks' })).json()).toMatchObject({
      id: 'kiosks',
    })

    expect((await app.inject({ method: 'DELETE', url: '/api/v1/groups/kiosks' })).statusCode).toBe(401)
    expect((await app.inject({ method: 'DELETE', url: '/api/v1/groups/kiosks', headers: admin })).statusCode).toBe(204)
    expect((await app.inject({ method: 'GET', headers: viewer, url: '/api/v1/groups/kiosks' })).statusCode).toBe(404)
    expect((await app.inject({ method: 'DELETE', url: '/api/v1/groups/kiosks', headers: admin })).statusCode).toBe(404)
    expect((await put('/api/v1/groups/kiosks', { name: 'x', match: {} })).statusCode).toBe(404)
  })

  it('refuses malformed group definitions with PSW_ERR_SCHEMA', async () => {
    for (const payload of [
      { id: 'UPPER', name: 'x', match: {} },
      { id: 'g', name: 'x', match: { tags: { none: ['a'] } } },
      { id: 'g', name: 'x', match: { peerIds: ['not-a-peer'] } },
      { id: 'g', name: 'x', match: { hostnamePattern: '(a+)+$' } },
      { id: 'g', name: 'x' },
    ]) {
      const res = await app.inject({ method: 'POST', url: '/api/v1/groups', payload, headers: admin })
      expect(res.statusCode, JSON.stringify(payload)).toBe(400)
      expect(res.json()).toMatchObject({ code: 'PSW_ERR_SCHEMA' })
    }
    expect((await app.inject({ method: 'GET', headers: viewer, url: '/api/v1/groups?x=1' })).statusCode).toBe(400)
  })
})
