import { describe, expect, it } from 'vitest'
import { openSpanAt, spreadStart } from '../shared/policy/window-schedule.ts'
import type { MaintenanceWindow } from '../shared/policy/window-schema.ts'
import { seededRandom } from '../shared/swarm/chunk-picker.ts'
import { installDecision, rollbackDecision } from './install-gate.ts'

const PEER = '12D3KooWQNUHuPsz4HpZ43qh54SUQsc9EcuuSBTno6Tq31NEDEiN'
const MIN = 60_000
const HOUR = 60 * MIN

/** Sundays 02:00–04:00 Berlin wall clock. */
const sunNight: MaintenanceWindow = {
  id: 'sun-night',
  name: 'Sunday night',
  timeZone: 'Europe/Berlin',
  recurrence: { rrule: 'FREQ=WEEKLY;BYDAY=SU;BYHOUR=2;BYMINUTE=0', dtstart: '2026-01-04T02:00' },
  durationMinutes: 120,
  allowReboot: true,
}
// Sunday 2026-11-22 02:00 CET = 01:00Z.
const OPEN = Date.UTC(2026, 10, 22, 1)

const decide = (over: Partial<Parameters<typeof installDecision>[0]>) =>
  installDecision({ windows: [sunNight], maxRunSeconds: 600, peerId: PEER, now: OPEN + 10 * MIN, ...over })

describe('installDecision', () => {
  it('no windows in the assignment: install any time (the old behaviour)', () => {
    expect(decide({ windows: undefined, now: OPEN - 3 * 86_400_000 })).toEqual({ install: true, reason: 'no-windows' })
  })

  it('an emergency bundle ignores closed windows', () => {
    expect(decide({ emergency: true, now: OPEN - HOUR })).toEqual({ install: true, reason: 'emergency' })
  })

  it('inside an open window with room for the run time: install', () => {
    expect(decide({})).toEqual({ install: true, reason: 'window-open' })
    expect(decide({ now: OPEN })).toEqual({ install: true, reason: 'window-open' })
  })

  it('closed: wait, nextAt is the next opening', () => {
    expect(decide({ now: OPEN - HOUR })).toEqual({ install: false, reason: 'closed', nextAt: OPEN })
    // After the close (04:00 CET = 03:00Z): the next Sunday.
    expect(decide({ now: OPEN + 2 * HOUR })).toEqual({
      install: false,
      reason: 'closed',
      nextAt: OPEN + 7 * 86_400_000,
    })
  })

  it('open but the installer would overrun the close: wait for the next opening', () => {
    const d = decide({ now: OPEN + 100 * MIN, maxRunSeconds: 30 * 60 })
    expect(d).toEqual({ install: false, reason: 'run-exceeds-window', nextAt: OPEN + 7 * 86_400_000 })
    // Exactly fits: 20 minutes left, 20 minutes declared.
    expect(decide({ now: OPEN + 100 * MIN, maxRunSeconds: 20 * 60 }).install).toBe(true)
  })

  it('a run time longer than any window: no opening; 3 hours fit only the fall-back night', () => {
    expect(decide({ maxRunSeconds: 4 * 3600 })).toEqual({ install: false, reason: 'no-opening' })
    // 02:00 CEST to 04:00 CET on Sunday 31 October 2027 is three hours of elapsed time.
    expect(decide({ maxRunSeconds: 3 * 3600 })).toEqual({
      install: false,
      reason: 'run-exceeds-window',
      nextAt: Date.UTC(2027, 9, 31, 0),
    })
  })

  it('spread: each device waits for its own instant in the window, the same one asked from anywhere', () => {
    const spreadSeconds = 3600
    const end = OPEN + 2 * HOUR
    const starts = new Set<number>()
    for (let i = 0; i < 50; i++) {
      const peerId = `${PEER.slice(0, -4)}${String(i).padStart(4, 'A')}`
      const at = spreadStart(OPEN, spreadSeconds, peerId, { endMs: end, maxRunSeconds: 600 })!
      expect(at).toBeGreaterThanOrEqual(OPEN)
      expect(at).toBeLessThan(OPEN + spreadSeconds * 1000)
      starts.add(at)
      // Before the opening, during the spread, at the instant.
      expect(decide({ peerId, spreadSeconds, now: OPEN - HOUR })).toEqual({
        install: false,
        reason: 'closed',
        nextAt: at,
      })
      if (at > OPEN)
        expect(decide({ peerId, spreadSeconds, now: OPEN })).toEqual({ install: false, reason: 'spread', nextAt: at })
      expect(decide({ peerId, spreadSeconds, now: at }).install).toBe(true)
      // An agent that was away at its instant installs later in the same window.
      expect(decide({ peerId, spreadSeconds, now: at + 10 * MIN }).install).toBe(true)
    }
    expect(starts.size).toBeGreaterThan(40)
  })

  it('spread shrinks so that the install still fits before the close', () => {
    for (let i = 0; i < 30; i++) {
      const peerId = `${PEER.slice(0, -4)}${String(i).padStart(4, 'B')}`
      const d = decide({ peerId, spreadSeconds: 86_400, maxRunSeconds: 3600, now: OPEN - MIN })
      expect(d.install).toBe(false)
      const nextAt = (d as { nextAt: number }).nextAt
      expect(nextAt).toBeGreaterThanOrEqual(OPEN)
      expect(nextAt).toBeLessThanOrEqual(OPEN + 2 * HOUR - 3600_000)
      expect(decide({ peerId, spreadSeconds: 86_400, maxRunSeconds: 3600, now: nextAt }).install).toBe(true)
    }
  })

  describe('DST days (Europe/Berlin, daily 02:30 for 60 minutes)', () => {
    const nightly: MaintenanceWindow = {
      id: 'nightly',
      name: 'Nightly',
      timeZone: 'Europe/Berlin',
      recurrence: { rrule: 'FREQ=DAILY;BYHOUR=2;BYMINUTE=30', dtstart: '2026-01-01T02:30' },
      durationMinutes: 60,
      allowReboot: false,
    }
    const d = (now: number, maxRunSeconds: number) =>
      installDecision({ windows: [nightly], maxRunSeconds, peerId: PEER, now })

    it('spring forward (29 March): 02:30 does not exist, the window runs 03:00–03:30 CEST', () => {
      const start = Date.UTC(2026, 2, 29, 1) // 03:00 CEST
      expect(openSpanAt([nightly], start + MIN)).toEqual({ start, end: start + 30 * MIN })
      expect(d(start + 5 * MIN, 20 * 60)).toEqual({ install: true, reason: 'window-open' })
      // 45 minutes do not fit into the 30-minute night: next night, 02:30 CEST = 00:30Z.
      expect(d(start + 5 * MIN, 45 * 60)).toEqual({
        install: false,
        reason: 'run-exceeds-window',
        nextAt: Date.UTC(2026, 2, 30, 0, 30),
      })
      // Before it opens: 00:30Z (which would be 02:30 CET) is inside the gap, still closed.
      expect(d(Date.UTC(2026, 2, 29, 0, 45), 600)).toEqual({ install: false, reason: 'closed', nextAt: start })
    })

    it('fall back (25 October): 02:30 CEST to 03:30 CET is two hours of elapsed time', () => {
      const start = Date.UTC(2026, 9, 25, 0, 30) // 02:30 CEST, the first of the two
      expect(openSpanAt([nightly], start)).toEqual({ start, end: start + 2 * HOUR })
      expect(d(start + 5 * MIN, 90 * 60)).toEqual({ install: true, reason: 'window-open' })
      // The night before, the same 90 minutes do not fit into 60.
      expect(d(start - 86_400_000 + HOUR + 5 * MIN, 90 * 60).install).toBe(false)
    })

    it('spread across the spring-forward night stays inside the short window', () => {
      const start = Date.UTC(2026, 2, 29, 1)
      const r = decide({ windows: [nightly], spreadSeconds: 3600, maxRunSeconds: 600, now: start - HOUR })
      expect(r.install).toBe(false)
      const at = (r as { nextAt: number }).nextAt
      expect(at).toBeGreaterThanOrEqual(start)
      expect(at).toBeLessThanOrEqual(start + 20 * MIN)
    })
  })

  it('property: whenever it says wait until nextAt, asking at nextAt says install', () => {
    const random = seededRandom(42)
    const cron: MaintenanceWindow = {
      id: 'weekdays',
      name: 'Weekdays',
      timeZone: 'America/New_York',
      recurrence: { cron: '0 1 * * 1-5' },
      durationMinutes: 90,
      allowReboot: true,
    }
    const from = Date.UTC(2026, 0, 1)
    for (let i = 0; i < 150; i++) {
      const now = from + Math.floor(random() * 365 * 86_400_000)
      const input = {
        windows: i % 2 ? [cron] : [cron, sunNight],
        spreadSeconds: Math.floor(random() * 7200),
        maxRunSeconds: 60 + Math.floor(random() * 3600),
        peerId: `${PEER.slice(0, -3)}${String(i).padStart(3, 'C')}`,
        now,
      }
      const first = installDecision(input)
      if (first.install || first.nextAt === undefined) continue
      expect(first.nextAt).toBeGreaterThan(now)
      expect(installDecision({ ...input, now: first.nextAt }).install).toBe(true)
      expect(installDecision({ ...input, now: first.nextAt - 1 }).install).toBe(false)
    }
  })
})

describe('rollbackDecision (site-wide rollback)', () => {
  const rb = (over: Partial<Parameters<typeof rollbackDecision>[0]>) =>
    rollbackDecision({
      installed: true,
      rollbackType: 'files-backup',
      windows: [sunNight],
      maxRunSeconds: 600,
      peerId: PEER,
      now: OPEN + 10 * MIN,
      ...over,
    })

  it('not installed here: nothing to undo, answered at once whatever the windows say', () => {
    expect(rb({ installed: false, now: OPEN - HOUR })).toEqual({ act: 'nothing', reason: 'not-installed' })
    expect(rb({ installed: false, rollbackType: 'none' })).toEqual({ act: 'nothing', reason: 'not-installed' })
  })

  it('installed without a rollback: refused at once, not held back until a window', () => {
    expect(rb({ rollbackType: 'none', now: OPEN - HOUR })).toEqual({ act: 'refuse', reason: 'no-rollback' })
  })

  it('keeps to the windows like an install: waits while closed, with the next opening', () => {
    expect(rb({ now: OPEN - HOUR })).toEqual({ act: 'wait', reason: 'closed', nextAt: OPEN })
    expect(rb({})).toEqual({ act: 'rollback', reason: 'window-open' })
  })

  it("uses the installer's maxRunSeconds: a rollback that would overrun the close waits", () => {
    expect(rb({ now: OPEN + 100 * MIN, maxRunSeconds: 30 * 60 })).toEqual({
      act: 'wait',
      reason: 'run-exceeds-window',
      nextAt: OPEN + 7 * 86_400_000,
    })
  })

  it('an emergency rollback skips the windows; no windows means any time', () => {
    expect(rb({ emergency: true, now: OPEN - HOUR })).toEqual({ act: 'rollback', reason: 'emergency' })
    expect(rb({ windows: undefined, now: OPEN - HOUR })).toEqual({ act: 'rollback', reason: 'no-windows' })
  })

  it('keeps to the spread like an install', () => {
    const span = openSpanAt([sunNight], OPEN + 10 * MIN)!
    const at = spreadStart(span.start, 3600, PEER, { endMs: span.end, maxRunSeconds: 600 })!
    expect(rb({ spreadSeconds: 3600, now: at - 1 })).toEqual({ act: 'wait', reason: 'spread', nextAt: at })
    expect(rb({ spreadSeconds: 3600, now: at })).toEqual({ act: 'rollback', reason: 'window-open' })
  })
})
