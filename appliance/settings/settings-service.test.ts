import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { silentLogger } from '../../shared/log.ts'
import { readApplianceConfig } from '../config.ts'
import { openTestAppliance, rejectionCode, type TestAppliance } from '../test-fixtures.ts'
import { defaultUpstreamConfig } from '../upstream/upstream-config.ts'
import { createUpstream, type Upstream } from '../upstream/upstream-factory.ts'
import { SettingsService } from './settings-service.ts'

const op = { type: 'operator', id: 'alice' } as const

describe('settings: upstream configuration changed at run time (real core and upstream)', () => {
  let t: TestAppliance
  let upstream: Upstream
  let settings: SettingsService

  beforeEach(async () => {
    t = await openTestAppliance()
    upstream = createUpstream(t.core, { clock: t.clock, log: silentLogger() })
    settings = new SettingsService({ dataDir: t.dataDir, upstream, audit: t.core.audit, log: silentLogger() })
  })
  afterEach(async () => {
    await upstream.stop()
    await t.cleanup()
  })

  it('validates, writes appliance.json, applies it to the running upstream and audits before/after', async () => {
    const folder = join(t.dir, 'usb')
    await mkdir(folder)
    const next = {
      ...defaultUpstreamConfig(),
      feeds: [{ id: 'usb', kind: 'folder' as const, path: folder }],
      wan: { schedule: { timeZone: 'Europe/Berlin', defaultBytesPerSecond: 262_144, rules: [] } },
      cache: { quotaBytes: 1 << 30 },
    }
    expect(await settings.setUpstream(next, op)).toEqual(next)
    expect((await readApplianceConfig(t.dataDir)).upstream).toEqual(next)
    expect((await settings.get()).upstream).toEqual(next)
    expect(upstream.config).toEqual(next)
    expect(upstream.limiter.rate).toBe(262_144)
    expect((await upstream.cache.usage()).quotaBytes).toBe(1 << 30)
    const { records } = await t.core.audit.query({ limit: 10, order: 'asc' })
    expect(records.at(-1)).toMatchObject({
      action: 'settings.upstream',
      actor: op,
      before: { feeds: [] },
      after: { feeds: [{ id: 'usb' }] },
    })
  })

  it('refuses an invalid configuration and changes nothing', async () => {
    const before = await readApplianceConfig(t.dataDir)
    const dup = {
      ...defaultUpstreamConfig(),
      feeds: [
        { id: 'a', kind: 'folder', path: '/srv/a' },
        { id: 'a', kind: 'folder', path: '/srv/b' },
      ],
    }
    expect(await rejectionCode(settings.setUpstream(dup, op))).toBe('PSW_ERR_INVALID_ARGUMENT')
    expect(await rejectionCode(settings.setUpstream({ ...defaultUpstreamConfig(), wan: {} }, op))).toBe(
      'PSW_ERR_SCHEMA',
    )
    // Past the schema: an unknown time zone, a rule that starts where it ends (400s, not 500s).
    const schedule = (timeZone: string, rules: unknown[] = []) => ({
      ...defaultUpstreamConfig(),
      wan: { schedule: { timeZone, defaultBytesPerSecond: 0, rules } },
    })
    expect(await rejectionCode(settings.setUpstream(schedule('Mars/Olympus_Mons'), op))).toBe(
      'PSW_ERR_INVALID_ARGUMENT',
    )
    expect(
      await rejectionCode(
        settings.setUpstream(schedule('UTC', [{ days: ['mon'], start: '08:00', end: '08:00', bytesPerSecond: 1 }]), op),
      ),
    ).toBe('PSW_ERR_INVALID_ARGUMENT')
    expect(upstream.config).not.toMatchObject({ wan: { schedule: { timeZone: 'Mars/Olympus_Mons' } } })
    expect(await readApplianceConfig(t.dataDir)).toEqual(before)
    expect((await t.core.audit.query({ limit: 10 })).records.some((r) => r.action === 'settings.upstream')).toBe(false)
  })
})
