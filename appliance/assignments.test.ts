import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { ASSIGNMENT_TYPE, validateAssignment } from '../shared/metadata/assignment-schema.ts'
import { verifyEnvelope } from '../shared/metadata/envelope.ts'
import type { MaintenanceWindow } from '../shared/policy/window-schema.ts'
import type { BundleRecord } from './catalog.ts'
import {
  DAY,
  enrollNewAgent,
  ingestSmallBundle,
  openTestAppliance,
  rejectionCode,
  type TestAgent,
  type TestAppliance,
} from './test-fixtures.ts'

describe('Assignments', () => {
  let t: TestAppliance
  let hello: BundleRecord
  let a: TestAgent
  let b: TestAgent

  beforeEach(async () => {
    t = await openTestAppliance({ assignmentTtlDays: 30 })
    hello = await ingestSmallBundle(t, 'hello', '1.0.0')
    a = await enrollNewAgent(t.core, 'host-a')
    b = await enrollNewAgent(t.core, 'host-b')
  })
  afterEach(async () => {
    await t.cleanup()
  })

  const verifyStored = async (peerId: string) => {
    const envelope = await t.core.assignments.get(peerId)
    expect(envelope).toBeDefined()
    return verifyEnvelope(envelope, {
      type: ASSIGNMENT_TYPE,
      rootPem: t.core.identity.rootPem,
      now: t.clock.now(),
      validate: validateAssignment,
    }).value
  }

  it('assigns by name@version to a hostname; the stored envelope verifies against the root', async () => {
    const res = await t.core.assignments.assign('hello@1.0.0', ['host-a'])
    expect(res.bundleId).toBe(hello.bundleId)
    expect(res.devices).toEqual([{ peerId: a.peerId, hostname: 'host-a', version: expect.any(Number) }])

    const assignment = await verifyStored(a.peerId)
    expect(assignment).toMatchObject({
      device: a.peerId,
      version: res.devices[0]!.version,
      created: new Date(t.clock.now()).toISOString(),
      expires: new Date(t.clock.now() + 30 * DAY).toISOString(),
      bundles: [{ bundleId: hello.bundleId, manifestVersion: hello.manifestVersion, action: 'install' }],
    })
    expect(await t.core.assignments.get(b.peerId)).toBeUndefined()
  })

  it('assigns by full id, by id prefix and by PeerId', async () => {
    const byId = await t.core.assignments.assign(hello.bundleId, [a.peerId])
    expect(byId.devices.map((d) => d.peerId)).toEqual([a.peerId])
    const byPrefix = await t.core.assignments.assign(hello.bundleId.slice(0, 12), [b.peerId])
    expect(byPrefix.bundleId).toBe(hello.bundleId)
    expect(byPrefix.devices.map((d) => d.hostname)).toEqual(['host-b'])
    expect((await verifyStored(b.peerId)).bundles.map((x) => x.bundleId)).toEqual([hello.bundleId])
  })

  it("'all' assigns to every enrolled device", async () => {
    const res = await t.core.assignments.assign('hello@1.0.0', 'all')
    expect(res.devices.map((d) => d.peerId).sort()).toEqual([a.peerId, b.peerId].sort())
    for (const peer of [a.peerId, b.peerId]) expect((await verifyStored(peer)).device).toBe(peer)
  })

  it('PSW_ERR_NOT_FOUND for an unknown device, and nothing is written for the others', async () => {
    expect(await rejectionCode(t.core.assignments.assign('hello@1.0.0', ['no-such-host']))).toBe('PSW_ERR_NOT_FOUND')
    expect(await rejectionCode(t.core.assignments.assign('hello@1.0.0', ['host-a', 'no-such-host']))).toBe(
      'PSW_ERR_NOT_FOUND',
    )
    expect(await t.core.assignments.get(a.peerId)).toBeUndefined()
  })

  it('PSW_ERR_NOT_FOUND for an unknown bundle or a prefix shorter than 8', async () => {
    expect(await rejectionCode(t.core.assignments.assign('hello@9.9.9', ['host-a']))).toBe('PSW_ERR_NOT_FOUND')
    expect(await rejectionCode(t.core.assignments.assign(hello.bundleId.slice(0, 7), ['host-a']))).toBe(
      'PSW_ERR_NOT_FOUND',
    )
    expect(await rejectionCode(t.core.assignments.assign('0'.repeat(64), ['host-a']))).toBe('PSW_ERR_NOT_FOUND')
  })

  it('PSW_ERR_CONFLICT for a hostname two devices share; the PeerId still works', async () => {
    const twin = await enrollNewAgent(t.core, 'host-a')
    expect(await rejectionCode(t.core.assignments.assign('hello@1.0.0', ['host-a']))).toBe('PSW_ERR_CONFLICT')
    const res = await t.core.assignments.assign('hello@1.0.0', [twin.peerId])
    expect(res.devices).toEqual([{ peerId: twin.peerId, hostname: 'host-a', version: expect.any(Number) }])
    expect(await t.core.assignments.get(a.peerId)).toBeUndefined()
  })

  it('PSW_ERR_INVALID_ARGUMENT when there is no device to assign to', async () => {
    expect(await rejectionCode(t.core.assignments.assign('hello@1.0.0', []))).toBe('PSW_ERR_INVALID_ARGUMENT')
    const empty = await openTestAppliance()
    try {
      await ingestSmallBundle(empty, 'solo', '1')
      expect(await rejectionCode(empty.core.assignments.assign('solo@1', 'all'))).toBe('PSW_ERR_INVALID_ARGUMENT')
    } finally {
      await empty.cleanup()
    }
  })

  it('every assignment gets a strictly higher version, above the manifest versions too, even after a restart', async () => {
    const versions: number[] = []
    for (let i = 0; i < 4; i++) {
      const res = await t.core.assignments.assign('hello@1.0.0', [i % 2 === 0 ? 'host-a' : 'host-b'])
      versions.push(res.devices[0]!.version)
    }
    const all = await t.core.assignments.assign('hello@1.0.0', 'all')
    versions.push(...all.devices.map((d) => d.version))
    await t.reopen()
    versions.push((await t.core.assignments.assign('hello@1.0.0', ['host-a'])).devices[0]!.version)

    expect(versions[0]).toBeGreaterThan(hello.manifestVersion)
    for (let i = 1; i < versions.length; i++) expect(versions[i]).toBeGreaterThan(versions[i - 1]!)
    expect((await verifyStored(a.peerId)).version).toBe(versions.at(-1))
  })

  it('a second bundle keeps the first in the list; re-assigning does not duplicate it', async () => {
    const world = await ingestSmallBundle(t, 'world', '2.0.0')
    await t.core.assignments.assign('hello@1.0.0', ['host-a'])
    await t.core.assignments.assign('world@2.0.0', ['host-a'])
    expect((await verifyStored(a.peerId)).bundles).toEqual([
      { bundleId: hello.bundleId, manifestVersion: hello.manifestVersion, action: 'install' },
      { bundleId: world.bundleId, manifestVersion: world.manifestVersion, action: 'install' },
    ])

    await t.core.assignments.assign('hello@1.0.0', ['host-a'])
    const ids = (await verifyStored(a.peerId)).bundles.map((x) => x.bundleId)
    expect(ids).toHaveLength(2)
    expect(new Set(ids)).toEqual(new Set([hello.bundleId, world.bundleId]))
    // host-b was never touched
    expect(await t.core.assignments.get(b.peerId)).toBeUndefined()
  })

  it('naming one device twice (hostname and PeerId) assigns it once', async () => {
    const res = await t.core.assignments.assign('hello@1.0.0', ['host-a', a.peerId, 'host-a'])
    expect(res.devices).toEqual([{ peerId: a.peerId, hostname: 'host-a', version: expect.any(Number) }])
    expect((await verifyStored(a.peerId)).version).toBe(res.devices[0]!.version)
  })

  it('concurrent assigns of two bundles to one device keep both', async () => {
    await ingestSmallBundle(t, 'world', '2.0.0')
    await Promise.all([
      t.core.assignments.assign('hello@1.0.0', ['host-a']),
      t.core.assignments.assign('world@2.0.0', ['host-a']),
    ])
    expect((await verifyStored(a.peerId)).bundles).toHaveLength(2)
  })

  it('assignments are durable and expire after assignmentTtlDays', async () => {
    await t.core.assignments.assign('hello@1.0.0', ['host-b'])
    await t.reopen()
    expect((await verifyStored(b.peerId)).bundles[0]?.bundleId).toBe(hello.bundleId)

    t.clock.advance(30 * DAY)
    const envelope = await t.core.assignments.get(b.peerId)
    let code: string | undefined
    try {
      verifyEnvelope(envelope, {
        type: ASSIGNMENT_TYPE,
        rootPem: t.core.identity.rootPem,
        now: t.clock.now(),
        validate: validateAssignment,
      })
    } catch (err) {
      code = (err as { code?: string }).code
    }
    expect(code).toBe('PSW_ERR_METADATA_EXPIRED')
  })

  describe('setWindows', () => {
    const sunNight: MaintenanceWindow = {
      id: 'sun-night',
      name: 'Sunday night',
      timeZone: 'Europe/Berlin',
      recurrence: { rrule: 'FREQ=WEEKLY;BYDAY=SU;BYHOUR=2;BYMINUTE=0', dtstart: '2026-01-04T02:00' },
      durationMinutes: 120,
      allowReboot: true,
    }

    it('re-issues the devices named (bundles unchanged, higher version) with the windows signed in', async () => {
      const first = await t.core.assignments.assign('hello@1.0.0', ['host-a'])
      const versions = await t.core.assignments.setWindows([a.peerId, b.peerId, a.peerId], [sunNight], 900)
      expect([...versions.keys()].sort()).toEqual([a.peerId, b.peerId].sort())
      expect(versions.get(a.peerId)).toBeGreaterThan(first.devices[0]!.version)

      const stored = await verifyStored(a.peerId)
      expect(stored.version).toBe(versions.get(a.peerId))
      expect(stored.windows).toEqual([sunNight])
      expect(stored.spreadSeconds).toBe(900)
      expect(stored.bundles).toEqual([
        { bundleId: hello.bundleId, manifestVersion: hello.manifestVersion, action: 'install' },
      ])
      // host-b had no assignment: it gets an empty one that carries the windows.
      expect(await verifyStored(b.peerId)).toMatchObject({ bundles: [], windows: [sunNight], spreadSeconds: 900 })
    })

    it('windows survive later assigns, apply and refresh; an empty list clears them', async () => {
      await t.core.assignments.setWindows([a.peerId], [sunNight])
      expect((await verifyStored(a.peerId)).spreadSeconds).toBeUndefined()
      await t.core.assignments.assign('hello@1.0.0', ['host-a'], { emergency: true })
      let stored = await verifyStored(a.peerId)
      expect(stored.windows).toEqual([sunNight])
      expect(stored.bundles[0]!.emergency).toBe(true)
      await t.core.assignments.apply(hello.bundleId, { reissue: [a.peerId] })
      expect((await verifyStored(a.peerId)).windows).toEqual([sunNight])
      t.clock.advance(25 * DAY)
      expect(await t.core.assignments.refresh()).toBe(1)
      expect((await verifyStored(a.peerId)).windows).toEqual([sunNight])

      await t.core.assignments.setWindows([a.peerId], [], 600)
      stored = await verifyStored(a.peerId)
      expect('windows' in stored).toBe(false)
      expect('spreadSeconds' in stored).toBe(false)
      expect(stored.bundles.map((x) => x.bundleId)).toEqual([hello.bundleId])
    })

    it('refuses bad windows or spread and writes nothing; skips devices not enrolled', async () => {
      const bad = [
        t.core.assignments.setWindows([a.peerId], [{ ...sunNight, timeZone: 'Mars/Olympus' }]),
        t.core.assignments.setWindows([a.peerId], [sunNight, sunNight]),
        t.core.assignments.setWindows([a.peerId], [sunNight], 86_401),
        t.core.assignments.setWindows([a.peerId], [sunNight], 1.5),
        t.core.assignments.setWindows(
          [a.peerId],
          Array.from({ length: 33 }, (_, i) => ({ ...sunNight, id: `w${i}` })),
        ),
      ]
      for (const p of bad) expect(await rejectionCode(p)).toMatch(/^PSW_ERR_(INVALID_ARGUMENT|TOO_LARGE)$/)
      expect(await t.core.assignments.get(a.peerId)).toBeUndefined()
      const none = await t.core.assignments.setWindows(
        ['12D3KooWQNUHuPsz4HpZ43qh54SUQsc9EcuuSBTno6Tq31NEDEiN'],
        [sunNight],
      )
      expect(none.size).toBe(0)
    })
  })
})
