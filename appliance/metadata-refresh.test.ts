import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { silentLogger } from '../shared/log.ts'
import { ASSIGNMENT_TYPE, validateAssignment } from '../shared/metadata/assignment-schema.ts'
import { verifyEnvelope } from '../shared/metadata/envelope.ts'
import { MANIFEST_TYPE, validateManifest } from '../shared/metadata/manifest-schema.ts'
import { isPastRefreshPoint } from './assignments.ts'
import { refreshMetadata } from './metadata-refresh.ts'
import {
  DAY,
  enrollNewAgent,
  ingestSmallBundle,
  openTestAppliance,
  type TestAppliance,
  writeSource,
} from './test-fixtures.ts'

describe('metadata refresh', () => {
  let t: TestAppliance
  beforeEach(async () => {
    t = await openTestAppliance({ manifestTtlDays: 90, assignmentTtlDays: 30 })
  })
  afterEach(async () => {
    await t.cleanup()
  })

  const refresh = () =>
    refreshMetadata({
      db: t.core.db,
      catalog: t.core.catalog,
      assignments: t.core.assignments,
      signer: t.core.identity.signer,
      clock: t.clock,
      manifestTtlDays: 90,
      log: silentLogger(),
    })

  const verified = async (peerId: string) =>
    verifyEnvelope(await t.core.assignments.get(peerId), {
      type: ASSIGNMENT_TYPE,
      rootPem: t.core.identity.rootPem,
      now: t.clock.now(),
      validate: validateAssignment,
    }).value

  it('re-signs at two thirds of the lifetime, not before', () => {
    const doc = { created: '2026-01-01T00:00:00.000Z', expires: '2026-01-31T00:00:00.000Z' }
    expect(isPastRefreshPoint(doc, Date.parse('2026-01-20T23:00:00.000Z'))).toBe(false)
    expect(isPastRefreshPoint(doc, Date.parse('2026-01-21T01:00:00.000Z'))).toBe(true)
  })

  it('keeps assignments and manifests valid forever while the appliance runs its refresh', async () => {
    const bundle = await ingestSmallBundle(t, 'hello', '1.0')
    const agent = await enrollNewAgent(t.core, 'pc-1')
    await t.core.assignments.assign('hello@1.0', [agent.peerId])
    expect(await refresh()).toEqual({ manifests: 0, assignments: 0 })
    let lastVersion = (await verified(agent.peerId)).version
    // a year in 10-day steps: every document is always verifiable and versions only grow
    for (let day = 10; day <= 365; day += 10) {
      t.clock.advance(10 * DAY)
      await refresh()
      const a = await verified(agent.peerId)
      expect(a.version).toBeGreaterThanOrEqual(lastVersion)
      lastVersion = a.version
      const manifest = verifyEnvelope(await t.core.catalog.manifest(bundle.bundleId), {
        type: MANIFEST_TYPE,
        rootPem: t.core.identity.rootPem,
        now: t.clock.now(),
        validate: validateManifest,
      }).value
      // the assignment always names the manifest version the catalog serves (no mix-and-match)
      expect(a.bundles[0]!.manifestVersion).toBe(manifest.version)
    }
  })

  it('re-ingesting the same content moves the assignments to the new manifest version', async () => {
    const src = await writeSource(t.dir, 'same.bin', 'identical bytes')
    const first = await t.core.ingest({ source: src, name: 'same', version: '1', targetRoot: '/opt/same' })
    const agent = await enrollNewAgent(t.core, 'pc-2')
    await t.core.assignments.assign('same@1', [agent.peerId])
    const second = await t.core.ingest({ source: src, name: 'same', version: '1', targetRoot: '/opt/same' })
    expect(second.record.bundleId).toBe(first.record.bundleId)
    expect(second.record.manifestVersion).toBeGreaterThan(first.record.manifestVersion)
    expect((await verified(agent.peerId)).bundles[0]!.manifestVersion).toBe(second.record.manifestVersion)
  })
})
