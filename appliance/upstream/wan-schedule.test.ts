import { describe, expect, it } from 'vitest'
import { seededRandom } from '../../shared/swarm/chunk-picker.ts'
import {
  nextChangeAt,
  parseWanSchedule,
  rateAt,
  WAN_SCHEDULE_DAYS,
  type WanSchedule,
  type WanScheduleRule,
} from './wan-schedule.ts'

const WEEKDAYS: WanScheduleRule['days'] = ['mon', 'tue', 'wed', 'thu', 'fri']
const Z = (iso: string) => Date.parse(iso)

function schedule(timeZone: string, rules: WanScheduleRule[], defaultBytesPerSecond = 0): WanSchedule {
  return parseWanSchedule({ timeZone, defaultBytesPerSecond, rules })
}

describe('parseWanSchedule', () => {
  it('accepts a valid schedule', () => {
    const s = schedule('Europe/Berlin', [{ days: WEEKDAYS, start: '07:00', end: '19:00', bytesPerSecond: 125_000 }])
    expect(s.rules).toHaveLength(1)
  })

  it.each([
    [
      'an unknown time zone',
      { timeZone: 'Mars/Olympus', defaultBytesPerSecond: 0, rules: [] },
      'PSW_ERR_INVALID_ARGUMENT',
    ],
    [
      'a rule that starts where it ends',
      {
        timeZone: 'UTC',
        defaultBytesPerSecond: 0,
        rules: [{ days: ['mon'], start: '07:00', end: '07:00', bytesPerSecond: 1 }],
      },
      'PSW_ERR_INVALID_ARGUMENT',
    ],
    [
      'a time without leading zero',
      {
        timeZone: 'UTC',
        defaultBytesPerSecond: 0,
        rules: [{ days: ['mon'], start: '7:00', end: '08:00', bytesPerSecond: 1 }],
      },
      'PSW_ERR_SCHEMA',
    ],
    [
      '24:00 as a start',
      {
        timeZone: 'UTC',
        defaultBytesPerSecond: 0,
        rules: [{ days: ['mon'], start: '24:00', end: '08:00', bytesPerSecond: 1 }],
      },
      'PSW_ERR_SCHEMA',
    ],
    [
      'a repeated day',
      {
        timeZone: 'UTC',
        defaultBytesPerSecond: 0,
        rules: [{ days: ['mon', 'mon'], start: '07:00', end: '08:00', bytesPerSecond: 1 }],
      },
      'PSW_ERR_SCHEMA',
    ],
    ['a negative rate', { timeZone: 'UTC', defaultBytesPerSecond: -1, rules: [] }, 'PSW_ERR_SCHEMA'],
    ['an unknown field', { timeZone: 'UTC', defaultBytesPerSecond: 0, rules: [], extra: 1 }, 'PSW_ERR_SCHEMA'],
    [
      'too many rules',
      {
        timeZone: 'UTC',
        defaultBytesPerSecond: 0,
        rules: Array.from({ length: 33 }, () => ({ days: ['mon'], start: '07:00', end: '08:00', bytesPerSecond: 1 })),
      },
      'PSW_ERR_SCHEMA',
    ],
  ])('rejects %s', (_what, value, code) => {
    expect(() => parseWanSchedule(value)).toThrow(expect.objectContaining({ code }))
  })
})

describe('rateAt', () => {
  const office = schedule('Europe/Berlin', [{ days: WEEKDAYS, start: '07:00', end: '19:00', bytesPerSecond: 125_000 }])

  it('applies a rule on the local wall clock, in winter and in summer time', () => {
    // Winter, UTC+1: 07:00 local = 06:00Z.
    expect(rateAt(office, Z('2026-01-05T05:59:59Z'))).toBe(0)
    expect(rateAt(office, Z('2026-01-05T06:00:00Z'))).toBe(125_000)
    expect(rateAt(office, Z('2026-01-05T17:59:59Z'))).toBe(125_000)
    expect(rateAt(office, Z('2026-01-05T18:00:00Z'))).toBe(0)
    // Summer, UTC+2: 07:00 local = 05:00Z.
    expect(rateAt(office, Z('2026-07-06T05:00:00Z'))).toBe(125_000)
    expect(rateAt(office, Z('2026-07-06T17:00:00Z'))).toBe(0)
    // Saturday.
    expect(rateAt(office, Z('2026-07-04T10:00:00Z'))).toBe(0)
  })

  it('runs an overnight rule into the next day, counted from the day it starts', () => {
    const s = schedule('UTC', [{ days: ['fri'], start: '22:00', end: '06:00', bytesPerSecond: 7 }], 1)
    expect(rateAt(s, Z('2026-01-09T23:00:00Z'))).toBe(7) // Fri 23:00
    expect(rateAt(s, Z('2026-01-10T05:59:00Z'))).toBe(7) // Sat 05:59
    expect(rateAt(s, Z('2026-01-10T06:00:00Z'))).toBe(1)
    expect(rateAt(s, Z('2026-01-09T03:00:00Z'))).toBe(1) // Fri 03:00 belongs to Thursday's night
  })

  it('lets the first matching rule win and falls back to the default', () => {
    const s = schedule(
      'UTC',
      [
        { days: ['mon'], start: '08:00', end: '09:00', bytesPerSecond: 1 },
        { days: ['mon'], start: '00:00', end: '24:00', bytesPerSecond: 2 },
      ],
      3,
    )
    expect(rateAt(s, Z('2026-01-05T08:30:00Z'))).toBe(1)
    expect(rateAt(s, Z('2026-01-05T10:00:00Z'))).toBe(2)
    expect(rateAt(s, Z('2026-01-06T10:00:00Z'))).toBe(3)
  })
})

describe('nextChangeAt', () => {
  it('steps from rule boundary to rule boundary over a weekend', () => {
    const s = schedule('Europe/Berlin', [{ days: WEEKDAYS, start: '07:00', end: '19:00', bytesPerSecond: 125_000 }])
    expect(nextChangeAt(s, Z('2026-01-09T12:00:00Z'))).toBe(Z('2026-01-09T18:00:00Z'))
    expect(nextChangeAt(s, Z('2026-01-09T18:00:00Z'))).toBe(Z('2026-01-12T06:00:00Z'))
  })

  it('is undefined when the rate never changes', () => {
    expect(nextChangeAt(schedule('UTC', [], 5), 0)).toBeUndefined()
    const allWeek = schedule('UTC', [{ days: [...WAN_SCHEDULE_DAYS], start: '00:00', end: '24:00', bytesPerSecond: 9 }])
    expect(nextChangeAt(allWeek, Z('2026-01-05T08:30:00Z'))).toBeUndefined()
  })

  it('Europe/Berlin spring forward: a rule starting in the skipped hour starts at 03:00 local', () => {
    // 2026-03-29 02:00 CET → 03:00 CEST at 01:00Z.
    const s = schedule('Europe/Berlin', [{ days: ['sun'], start: '02:30', end: '05:00', bytesPerSecond: 10 }])
    expect(nextChangeAt(s, Z('2026-03-28T23:00:00Z'))).toBe(Z('2026-03-29T01:00:00Z'))
    expect(rateAt(s, Z('2026-03-29T00:59:00Z'))).toBe(0)
    expect(rateAt(s, Z('2026-03-29T01:00:00Z'))).toBe(10)
    expect(nextChangeAt(s, Z('2026-03-29T01:00:00Z'))).toBe(Z('2026-03-29T03:00:00Z')) // 05:00 CEST
  })

  it('Europe/Berlin: the office rule follows the wall clock across the DST weekend', () => {
    const s = schedule('Europe/Berlin', [{ days: WEEKDAYS, start: '07:00', end: '19:00', bytesPerSecond: 125_000 }])
    expect(nextChangeAt(s, Z('2026-03-27T18:00:00Z'))).toBe(Z('2026-03-30T05:00:00Z')) // CET Friday → CEST Monday
    expect(nextChangeAt(s, Z('2026-10-23T17:00:00Z'))).toBe(Z('2026-10-26T06:00:00Z')) // CEST Friday → CET Monday
  })

  it('Europe/Berlin fall back: a rule in the repeated hour covers it twice', () => {
    // 2026-10-25 03:00 CEST → 02:00 CET at 01:00Z; 02:00-03:00 local is 00:00Z-02:00Z.
    const s = schedule('Europe/Berlin', [{ days: ['sun'], start: '02:00', end: '03:00', bytesPerSecond: 10 }])
    expect(nextChangeAt(s, Z('2026-10-24T23:00:00Z'))).toBe(Z('2026-10-25T00:00:00Z'))
    expect(rateAt(s, Z('2026-10-25T01:30:00Z'))).toBe(10)
    expect(nextChangeAt(s, Z('2026-10-25T00:00:00Z'))).toBe(Z('2026-10-25T02:00:00Z'))
  })

  it('America/New_York: weekday rule before and after spring forward, and fall back', () => {
    const s = schedule('America/New_York', [{ days: WEEKDAYS, start: '07:00', end: '19:00', bytesPerSecond: 1 }])
    expect(nextChangeAt(s, Z('2026-03-06T13:00:00Z'))).toBe(Z('2026-03-07T00:00:00Z')) // 19:00 EST
    expect(nextChangeAt(s, Z('2026-03-07T00:00:00Z'))).toBe(Z('2026-03-09T11:00:00Z')) // 07:00 EDT
    const night = schedule('America/New_York', [{ days: ['sun'], start: '01:00', end: '02:00', bytesPerSecond: 4 }])
    // 2026-11-01 02:00 EDT → 01:00 EST at 06:00Z: 01:00-02:00 local is 05:00Z-07:00Z.
    expect(nextChangeAt(night, Z('2026-11-01T04:00:00Z'))).toBe(Z('2026-11-01T05:00:00Z'))
    expect(nextChangeAt(night, Z('2026-11-01T05:00:00Z'))).toBe(Z('2026-11-01T07:00:00Z'))
  })
})

// Property tests: random schedules and instants (seeded, so a failure reproduces), checked
// against a brute-force minute-by-minute scan and an independent wall-clock reading.
describe('properties', () => {
  const ZONES = ['Europe/Berlin', 'America/New_York', 'Australia/Lord_Howe', 'America/St_Johns', 'Asia/Kolkata']
  // Around the 2026 DST changes of those zones, plus anywhere in the year.
  const HOTSPOTS = ['2026-03-08', '2026-03-29', '2026-04-05', '2026-10-04', '2026-10-25', '2026-11-01'].map(Z)

  function randomSchedule(rnd: () => number): WanSchedule {
    const hhmm = (m: number) => `${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`
    const rules: WanScheduleRule[] = []
    const n = Math.floor(rnd() * 4)
    for (let i = 0; i < n; i++) {
      const days = WAN_SCHEDULE_DAYS.filter(() => rnd() < 0.5)
      // Half the boundaries fall in the small hours, where DST changes happen.
      const slot = (max: number) => (rnd() < 0.5 ? Math.floor(rnd() * 20) : Math.floor(rnd() * max)) * 15
      const start = slot(96)
      let end = slot(97)
      if (end === start) end = (start + 30) % 1440
      rules.push({
        days: days.length > 0 ? days : ['wed'],
        start: hhmm(start),
        end: end === 1440 ? '24:00' : hhmm(end),
        bytesPerSecond: Math.floor(rnd() * 3) * 1000,
      })
    }
    return schedule(ZONES[Math.floor(rnd() * ZONES.length)]!, rules, Math.floor(rnd() * 3) * 1000)
  }

  function randomInstant(rnd: () => number): number {
    const hot = rnd() < 0.8
    const base = hot ? HOTSPOTS[Math.floor(rnd() * HOTSPOTS.length)]! - 86_400_000 : Z('2026-01-01')
    const span = hot ? 2 * 86_400_000 : 365 * 86_400_000
    return base + Math.floor(rnd() * span)
  }

  it('nextChangeAt is the first minute at which the rate differs (brute force)', () => {
    const rnd = seededRandom(20260329)
    for (let i = 0; i < 120; i++) {
      const s = randomSchedule(rnd)
      const t = randomInstant(rnd)
      if (s.rules.length === 0) continue
      const r0 = rateAt(s, t)
      const next = nextChangeAt(s, t)
      const end = next ?? t + 8 * 86_400_000
      const ctx = JSON.stringify({ s, t: new Date(t).toISOString(), next: next && new Date(next).toISOString() })
      for (let m = Math.floor(t / 60_000) * 60_000 + 60_000; m < end; m += 60_000) {
        if (rateAt(s, m) !== r0) throw new Error(`rate changes at ${new Date(m).toISOString()} before next: ${ctx}`)
      }
      if (next !== undefined) {
        expect(next % 60_000, ctx).toBe(0)
        expect(next, ctx).toBeGreaterThan(t)
        expect(rateAt(s, next), ctx).not.toBe(r0)
      }
    }
  })

  it('rateAt agrees with a reading of the wall clock by weekday name', () => {
    const rnd = seededRandom(7)
    const names = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun']
    for (let i = 0; i < 300; i++) {
      const s = randomSchedule(rnd)
      const t = randomInstant(rnd)
      const parts = new Intl.DateTimeFormat('en-GB', {
        timeZone: s.timeZone,
        weekday: 'short',
        hour: '2-digit',
        minute: '2-digit',
        hourCycle: 'h23',
      }).formatToParts(t)
      const get = (type: string) => parts.find((p) => p.type === type)!.value
      const day = names.indexOf(get('weekday'))
      const minute = Number(get('hour')) * 60 + Number(get('minute'))
      const expected =
        s.rules.find((r) => {
          const start = Number(r.start.slice(0, 2)) * 60 + Number(r.start.slice(3))
          const end = Number(r.end.slice(0, 2)) * 60 + Number(r.end.slice(3))
          const on = (d: number) => r.days.includes(WAN_SCHEDULE_DAYS[(d + 7) % 7]!)
          return start < end
            ? on(day) && minute >= start && minute < end
            : (on(day) && minute >= start) || (on(day - 1) && minute < end)
        })?.bytesPerSecond ?? s.defaultBytesPerSecond
      expect(rateAt(s, t), JSON.stringify({ s, t })).toBe(expected)
    }
  })
})
