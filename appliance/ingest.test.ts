import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { openTestAppliance, rejectionCode, type TestAppliance, writeSource } from './test-fixtures.ts'

describe('ingest: the manifest body from the operator request', () => {
  let t: TestAppliance
  beforeEach(async () => {
    t = await openTestAppliance()
  })
  afterEach(async () => {
    await t.cleanup()
  })

  const health = {
    checks: [
      { type: 'command' as const, argv: ['/bin/true'], timeoutSeconds: 5 },
      { type: 'tcp-port' as const, port: 443 },
    ],
    timeoutSeconds: 30,
    retries: 2,
  }

  it('signs a declared health check into the manifest, and leaves it out when none is declared', async () => {
    const source = await writeSource(t.dir, 'svc.txt', 'payload\n')
    const { manifest } = await t.core.ingest({ source, name: 'svc', version: '1', targetRoot: '/opt/svc', health })
    expect(manifest.health).toEqual(health)
    const signed = await t.core.catalog.manifest(manifest.bundleId)
    expect(signed?.signed.health).toEqual(health)
    const other = await writeSource(t.dir, 'plain.txt', 'plain\n')
    const plain = await t.core.ingest({ source: other, name: 'plain', version: '1', targetRoot: '/opt/plain' })
    expect('health' in plain.manifest).toBe(false)
  })

  it('refuses a health check that does not fit the schema (a remote host, an empty list)', async () => {
    const source = await writeSource(t.dir, 'svc.txt', 'payload\n')
    const bad = [
      { ...health, checks: [{ type: 'tcp-port', port: 22, host: '10.0.0.1' }] },
      { ...health, checks: [] },
      { ...health, checks: [{ type: 'command', argv: [], timeoutSeconds: 5 }] },
    ]
    for (const h of bad)
      expect(
        await rejectionCode(
          t.core.ingest({ source, name: 'svc', version: '1', targetRoot: '/opt/svc', health: h as never }),
        ),
      ).toBe('PSW_ERR_SCHEMA')
  })
})
