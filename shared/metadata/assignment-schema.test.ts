import { describe, expect, it } from 'vitest'
import { hasCode } from '../errors.ts'
import type { MaintenanceWindow } from '../policy/window-schema.ts'
import { ASSIGNMENT_TYPE, type Assignment, validateAssignment } from './assignment-schema.ts'
import { signEnvelope, signingBytes, verifyEnvelope } from './envelope.ts'
import { makeTestSigner } from './test-signer.ts'

const NOW = Date.UTC(2026, 10, 23, 12)
const PEER = '12D3KooWQNUHuPsz4HpZ43qh54SUQsc9EcuuSBTno6Tq31NEDEiN'

const base = (): Assignment => ({
  type: ASSIGNMENT_TYPE,
  specVersion: 1,
  version: 7,
  device: PEER,
  created: new Date(NOW - 60_000).toISOString(),
  expires: new Date(NOW + 86_400_000).toISOString(),
  bundles: [{ bundleId: 'ab'.repeat(32), manifestVersion: 3, action: 'install' }],
})

const sunNight: MaintenanceWindow = {
  id: 'sun-night',
  name: 'Sunday night',
  timeZone: 'Europe/Berlin',
  recurrence: { rrule: 'FREQ=WEEKLY;BYDAY=SU;BYHOUR=2;BYMINUTE=0', dtstart: '2026-01-04T02:00' },
  durationMinutes: 120,
  allowReboot: true,
}

const rejects = (value: unknown): string | undefined => {
  try {
    validateAssignment(value)
    return undefined
  } catch (err) {
    return hasCode(err, 'PSW_ERR_ASSIGNMENT_INVALID') ? 'PSW_ERR_ASSIGNMENT_INVALID' : String(err)
  }
}

describe('assignment schema: maintenance windows', () => {
  it('an assignment without windows is valid and signs exactly as before (no new keys appear)', () => {
    const a = base()
    const parsed = validateAssignment(structuredClone(a))
    expect(Object.keys(parsed).sort()).toEqual(Object.keys(a).sort())
    expect(signingBytes(parsed).toString()).toBe(
      'patchswarm-signed-v1\n{"bundles":[{"action":"install","bundleId":"' +
        'ab'.repeat(32) +
        '","manifestVersion":3}],"created":"2026-11-23T11:59:00.000Z","device":"' +
        PEER +
        '","expires":"2026-11-24T12:00:00.000Z","specVersion":1,"type":"patchswarm/assignment","version":7}',
    )
  })

  it('accepts windows, spreadSeconds and an emergency bundle; they survive signing', () => {
    const { rootPem, signer } = makeTestSigner(NOW)
    const a: Assignment = {
      ...base(),
      windows: [sunNight, { ...sunNight, id: 'nightly', recurrence: { cron: '30 1 * * *' }, durationMinutes: 60 }],
      spreadSeconds: 1800,
      bundles: [{ bundleId: 'cd'.repeat(32), manifestVersion: 4, action: 'install', emergency: true }],
    }
    const env = signEnvelope(a, signer)
    const { value } = verifyEnvelope(env, { type: ASSIGNMENT_TYPE, rootPem, now: NOW, validate: validateAssignment })
    expect(value.windows?.map((w) => w.id)).toEqual(['sun-night', 'nightly'])
    expect(value.spreadSeconds).toBe(1800)
    expect(value.bundles[0]!.emergency).toBe(true)
  })

  it.each([
    ['an empty window list (would mean never)', { windows: [] }],
    ['33 windows', { windows: Array.from({ length: 33 }, (_, i) => ({ ...sunNight, id: `w${i}` })) }],
    ['a window that fails its schema', { windows: [{ ...sunNight, durationMinutes: 0 }] }],
    ['an unknown time zone', { windows: [{ ...sunNight, timeZone: 'Mars/Olympus' }] }],
    [
      'an RRULE that does not parse',
      { windows: [{ ...sunNight, recurrence: { rrule: 'FREQ=YEARLY', dtstart: '2026-01-04T02:00' } }] },
    ],
    ['a cron that does not parse', { windows: [{ ...sunNight, recurrence: { cron: '99 * * * *' } }] }],
    ['two windows with one id', { windows: [sunNight, sunNight] }],
    ['spreadSeconds without windows', { spreadSeconds: 60 }],
    ['spreadSeconds over a day', { windows: [sunNight], spreadSeconds: 86_401 }],
    ['negative spreadSeconds', { windows: [sunNight], spreadSeconds: -1 }],
    ['fractional spreadSeconds', { windows: [sunNight], spreadSeconds: 1.5 }],
    ['an unknown assignment field', { window: [sunNight] }],
  ])('refuses %s', (_name, over) => {
    expect(rejects({ ...base(), ...over })).toBe('PSW_ERR_ASSIGNMENT_INVALID')
  })

  it.each([
    ['emergency: false (absent is the only "no")', { emergency: false }],
    ['emergency as a string', { emergency: 'yes' }],
  ])('refuses a bundle entry with %s', (_name, over) => {
    const a = base()
    expect(rejects({ ...a, bundles: [{ ...a.bundles[0]!, ...over }] })).toBe('PSW_ERR_ASSIGNMENT_INVALID')
  })

  it('accepts spreadSeconds 0 and 86400 with windows', () => {
    for (const spreadSeconds of [0, 86_400])
      expect(validateAssignment({ ...base(), windows: [sunNight], spreadSeconds }).spreadSeconds).toBe(spreadSeconds)
  })
})
