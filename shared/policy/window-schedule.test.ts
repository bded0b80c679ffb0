import { describe, expect, it } from 'vitest'
import {
  canStartInstall,
  nextInstallStart,
  nextOpening,
  occurrences,
  openAt,
  rebootAllowed,
  spreadStart,
} from './window-schedule.ts'
import type { MaintenanceWindow } from './window-schema.ts'

const Z = (iso: string) => Date.parse(iso)
const iso = (ms: number) => new Date(ms).toISOString().replace(':00.000Z', 'Z')
const MIN = 60_000

function rrule(
  timeZone: string,
  rule: string,
  dtstart: string,
  durationMinutes: number,
  extra = {},
): MaintenanceWindow {
  return {
    id: 'w',
    name: 'w',
    timeZone,
    recurrence: { rrule: rule, dtstart },
    durationMinutes,
    allowReboot: true,
    ...extra,
  }
}

function cron(timeZone: string, expr: string, durationMinutes: number, extra = {}): MaintenanceWindow {
  return { id: 'c', name: 'c', timeZone, recurrence: { cron: expr }, durationMinutes, allowReboot: false, ...extra }
}

/** [start, end, intended local start] of the occurrences in a range, as ISO strings. */
function spans(w: MaintenanceWindow, from: string, to: string, limit = 1000): [string, string, string][] {
  return occurrences(w, Z(from), Z(to), limit).map((o) => [iso(o.start), iso(o.end), o.local])
}

function thrown(fn: () => unknown): unknown {
  try {
    fn()
  } catch (err) {
    return err
  }
  return undefined
}

const codeOf = (fn: () => unknown) => (thrown(fn) as { code?: string } | undefined)?.code

// Known instants: these are fixtures, computed by hand from the tz database rules.
describe('DST fixtures', () => {
  const sunday = (tz: string, time: string, minutes = 60) =>
    rrule(tz, 'FREQ=WEEKLY;BYDAY=SU', `2026-01-04T${time}`, minutes)

  it('Europe/Berlin: 2026-03-29 02:30 does not exist, it opens at 03:00 CEST (the transition)', () => {
    expect(spans(sunday('Europe/Berlin', '02:30'), '2026-03-21T00:00Z', '2026-04-06T00:00Z')).toEqual([
      ['2026-03-22T01:30Z', '2026-03-22T02:30Z', '2026-03-22T02:30'],
      ['2026-03-29T01:00Z', '2026-03-29T01:30Z', '2026-03-29T02:30'], // closes 03:30 CEST as every week
      ['2026-04-05T00:30Z', '2026-04-05T01:30Z', '2026-04-05T02:30'],
    ])
  })

  it('Europe/Berlin: 2026-10-25 02:30 happens twice, it opens at the first (CEST)', () => {
    expect(spans(sunday('Europe/Berlin', '02:30'), '2026-10-17T00:00Z', '2026-11-02T00:00Z')).toEqual([
      ['2026-10-18T00:30Z', '2026-10-18T01:30Z', '2026-10-18T02:30'],
      ['2026-10-25T00:30Z', '2026-10-25T02:30Z', '2026-10-25T02:30'], // closes 03:30 CET: two hours
      ['2026-11-01T01:30Z', '2026-11-01T02:30Z', '2026-11-01T02:30'],
    ])
  })

  it('Europe/Berlin 02:00–04:00 Sundays: closes at 04:00 local on both DST days (faults row 24)', () => {
    const w = sunday('Europe/Berlin', '02:00', 120)
    expect(spans(w, '2026-03-28T00:00Z', '2026-03-30T00:00Z')).toEqual([
      ['2026-03-29T01:00Z', '2026-03-29T02:00Z', '2026-03-29T02:00'], // 03:00–04:00 CEST: one hour
    ])
    expect(spans(w, '2026-10-24T00:00Z', '2026-10-26T00:00Z')).toEqual([
      ['2026-10-25T00:00Z', '2026-10-25T03:00Z', '2026-10-25T02:00'], // 02:00 CEST–04:00 CET: three hours
    ])
  })

  it('a window wholly inside a skipped hour runs for its duration from the end of the gap', () => {
    const w = sunday('Europe/Berlin', '02:15', 30)
    expect(spans(w, '2026-03-28T00:00Z', '2026-03-30T00:00Z')).toEqual([
      ['2026-03-29T01:00Z', '2026-03-29T01:30Z', '2026-03-29T02:15'], // 03:00–03:30 CEST
    ])
  })

  it('America/New_York: 2026-03-08 02:30 is skipped, 2026-11-01 01:30 repeats', () => {
    const w = rrule('America/New_York', 'FREQ=DAILY', '2026-01-01T02:30', 30)
    expect(spans(w, '2026-03-08T05:00Z', '2026-03-09T05:00Z')[0]).toEqual([
      '2026-03-08T07:00Z',
      '2026-03-08T07:30Z',
      '2026-03-08T02:30',
    ])
    // 01:30–02:00 on the fall-back night: opens at the first 01:30 (EDT), closes at 02:00 EST,
    // so it also covers the repeated hour: 90 minutes.
    const w2 = rrule('America/New_York', 'FREQ=DAILY', '2026-01-01T01:30', 30)
    expect(spans(w2, '2026-11-01T04:00Z', '2026-11-02T04:00Z')[0]).toEqual([
      '2026-11-01T05:30Z',
      '2026-11-01T07:00Z',
      '2026-11-01T01:30',
    ])
  })

  it('Australia/Sydney (southern hemisphere): spring forward in October, fall back in April', () => {
    const w = sunday('Australia/Sydney', '02:30')
    expect(spans(w, '2026-10-03T00:00Z', '2026-10-04T00:00Z')[0]?.[0]).toBe('2026-10-03T16:00Z') // 03:00 AEDT
    expect(spans(w, '2026-04-04T00:00Z', '2026-04-05T00:00Z')[0]?.[0]).toBe('2026-04-04T15:30Z') // 02:30 AEDT
  })

  it('Australia/Lord_Howe: a 30-minute DST shift', () => {
    const skipped = sunday('Australia/Lord_Howe', '02:15')
    expect(spans(skipped, '2026-10-03T00:00Z', '2026-10-04T00:00Z')[0]?.[0]).toBe('2026-10-03T15:30Z') // 02:30 +11
    const repeated = sunday('Australia/Lord_Howe', '01:45')
    expect(spans(repeated, '2026-04-04T00:00Z', '2026-04-05T00:00Z')[0]?.[0]).toBe('2026-04-04T14:45Z') // 01:45 +11
  })

  it('Asia/Kolkata: no DST, always UTC+05:30', () => {
    const w = rrule('Asia/Kolkata', 'FREQ=DAILY', '2026-01-01T02:30', 60)
    const starts = occurrences(w, Z('2026-01-01T00:00Z'), Z('2027-01-01T00:00Z'), 1000).map((o) => iso(o.start))
    expect(starts).toHaveLength(365)
    expect(starts.every((s) => s.endsWith('T21:00Z'))).toBe(true)
  })

  it('America/Sao_Paulo: midnight skipped on 2018-11-04, 23:xx repeated on 2019-02-16, no DST since 2019', () => {
    const midnight = cron('America/Sao_Paulo', '0 0 * * *', 60)
    expect(spans(midnight, '2018-11-03T12:00Z', '2018-11-05T12:00Z').map((s) => s[0])).toEqual([
      '2018-11-04T03:00Z', // 01:00 -02: the first instant after the gap
      '2018-11-05T02:00Z',
    ])
    const late = cron('America/Sao_Paulo', '30 23 * * *', 20)
    expect(spans(late, '2019-02-16T12:00Z', '2019-02-17T12:00Z').map((s) => s[0])).toEqual(['2019-02-17T01:30Z'])
    expect(spans(midnight, '2019-11-03T12:00Z', '2019-11-04T12:00Z').map((s) => s[0])).toEqual(['2019-11-04T03:00Z'])
  })

  it('Pacific/Apia: 2011-12-30 never happened, its 10:00 opens when the 31st begins', () => {
    const w = rrule('Pacific/Apia', 'FREQ=DAILY', '2011-12-25T10:00', 60)
    expect(spans(w, '2011-12-29T00:00Z', '2011-12-31T00:00Z')).toEqual([
      ['2011-12-29T20:00Z', '2011-12-29T21:00Z', '2011-12-29T10:00'],
      ['2011-12-30T10:00Z', '2011-12-30T11:00Z', '2011-12-30T10:00'], // 31 Dec 00:00 +14
      ['2011-12-30T20:00Z', '2011-12-30T21:00Z', '2011-12-31T10:00'],
    ])
  })
})

describe('occurrences', () => {
  const utc = (rule: string, dtstart: string, minutes = 60, extra = {}) => rrule('UTC', rule, dtstart, minutes, extra)

  it('includes an occurrence that started before the range and is still open, and honours limit', () => {
    const w = utc('FREQ=DAILY', '2026-01-01T23:00', 120)
    expect(spans(w, '2026-01-02T00:30Z', '2026-01-03T00:00Z')).toEqual([
      ['2026-01-01T23:00Z', '2026-01-02T01:00Z', '2026-01-01T23:00'],
      ['2026-01-02T23:00Z', '2026-01-03T01:00Z', '2026-01-02T23:00'],
    ])
    expect(spans(w, '2026-01-01T00:00Z', '2026-02-01T00:00Z', 3)).toHaveLength(3)
    expect(spans(w, '2026-01-05T00:00Z', '2026-01-05T00:00Z')).toEqual([])
  })

  it('does not start before DTSTART, counts COUNT from it, and stops at UNTIL', () => {
    expect(
      spans(utc('FREQ=DAILY;COUNT=3', '2026-01-10T02:00'), '2026-01-01T00:00Z', '2026-02-01T00:00Z').map((s) => s[2]),
    ).toEqual(['2026-01-10T02:00', '2026-01-11T02:00', '2026-01-12T02:00'])
    // queried long after DTSTART: the count still runs from DTSTART
    expect(spans(utc('FREQ=DAILY;COUNT=3', '2026-01-10T02:00'), '2026-01-12T00:00Z', '2027-01-01T00:00Z')).toHaveLength(
      1,
    )
    const untilDate = utc('FREQ=DAILY;UNTIL=20260112', '2026-01-10T02:00')
    expect(spans(untilDate, '2026-01-01T00:00Z', '2026-02-01T00:00Z')).toHaveLength(3)
    const untilUtc = utc('FREQ=DAILY;UNTIL=20260112T015959Z', '2026-01-10T02:00')
    expect(spans(untilUtc, '2026-01-01T00:00Z', '2026-02-01T00:00Z')).toHaveLength(2)
  })

  it('DTSTART is an occurrence only when it matches the rule', () => {
    const w = utc('FREQ=WEEKLY;BYDAY=MO', '2026-01-01T02:00') // a Thursday
    expect(spans(w, '2026-01-01T00:00Z', '2026-01-13T00:00Z').map((s) => s[2])).toEqual([
      '2026-01-05T02:00',
      '2026-01-12T02:00',
    ])
  })

  it('WEEKLY with INTERVAL and WKST (RFC 5545 §3.8.5.3 examples)', () => {
    const days = (wkst: string) =>
      spans(
        utc(`FREQ=WEEKLY;INTERVAL=2;COUNT=4;BYDAY=TU,SU;WKST=${wkst}`, '1997-08-05T09:00'),
        '1997-08-01T00:00Z',
        '1997-09-30T00:00Z',
      ).map((s) => s[2].slice(0, 10))
    expect(days('MO')).toEqual(['1997-08-05', '1997-08-10', '1997-08-19', '1997-08-24'])
    expect(days('SU')).toEqual(['1997-08-05', '1997-08-17', '1997-08-19', '1997-08-31'])
  })

  it('MONTHLY by ordinal weekday, negative month day, and days a month lacks', () => {
    const patch = utc('FREQ=MONTHLY;BYDAY=2TU', '2026-01-01T03:00')
    expect(spans(patch, '2026-01-01T00:00Z', '2026-05-01T00:00Z').map((s) => s[2])).toEqual([
      '2026-01-13T03:00',
      '2026-02-10T03:00',
      '2026-03-10T03:00',
      '2026-04-14T03:00',
    ])
    const last = utc('FREQ=MONTHLY;BYMONTHDAY=-1', '2026-01-01T03:00')
    expect(spans(last, '2026-01-01T00:00Z', '2026-04-01T00:00Z').map((s) => s[2].slice(0, 10))).toEqual([
      '2026-01-31',
      '2026-02-28',
      '2026-03-31',
    ])
    const thirtyFirst = utc('FREQ=MONTHLY', '2026-01-31T03:00')
    expect(spans(thirtyFirst, '2026-01-01T00:00Z', '2026-06-01T00:00Z').map((s) => s[2].slice(0, 10))).toEqual([
      '2026-01-31',
      '2026-03-31',
      '2026-05-31',
    ])
    const friday13 = utc('FREQ=MONTHLY;BYDAY=FR;BYMONTHDAY=13', '2026-01-01T03:00')
    expect(spans(friday13, '2026-01-01T00:00Z', '2027-01-01T00:00Z').map((s) => s[2].slice(0, 10))).toEqual([
      '2026-02-13',
      '2026-03-13',
      '2026-11-13',
    ])
  })

  it('DAILY with BYDAY, BYHOUR and BYMINUTE', () => {
    const w = utc('FREQ=DAILY;BYDAY=SA,SU;BYHOUR=1,13;BYMINUTE=15', '2026-01-01T00:00', 30)
    expect(spans(w, '2026-01-01T00:00Z', '2026-01-05T00:00Z').map((s) => s[2])).toEqual([
      '2026-01-03T01:15',
      '2026-01-03T13:15',
      '2026-01-04T01:15',
      '2026-01-04T13:15',
    ])
  })

  it('cron: day-of-month and day-of-week restricted together match either (Vixie)', () => {
    const w = cron('UTC', '0 4 13 * 5', 30)
    expect(spans(w, '2026-02-01T00:00Z', '2026-02-16T00:00Z').map((s) => s[2].slice(0, 10))).toEqual([
      '2026-02-06',
      '2026-02-13',
    ])
  })

  it('drops occurrences starting on an excluded local date', () => {
    const w = rrule('Europe/Berlin', 'FREQ=DAILY', '2026-12-20T23:30', 60, { exclusions: ['2026-12-24'] })
    expect(spans(w, '2026-12-23T00:00Z', '2026-12-26T00:00Z').map((s) => s[2])).toEqual([
      '2026-12-23T23:30',
      '2026-12-25T23:30',
    ])
  })

  it('cuts an occurrence at the next start so a window never overlaps itself', () => {
    const w = cron('UTC', '0 */6 * * *', 8 * 60)
    expect(spans(w, '2026-01-01T00:00Z', '2026-01-01T12:00Z')).toEqual([
      ['2026-01-01T00:00Z', '2026-01-01T06:00Z', '2026-01-01T00:00'],
      ['2026-01-01T06:00Z', '2026-01-01T12:00Z', '2026-01-01T06:00'],
    ])
  })

  it('merges two local starts that a DST gap maps to the same instant', () => {
    const w = rrule('Europe/Berlin', 'FREQ=DAILY;BYHOUR=2,3', '2026-03-01T00:00', 30)
    expect(spans(w, '2026-03-28T23:00Z', '2026-03-29T06:00Z')).toEqual([
      ['2026-03-29T01:00Z', '2026-03-29T01:30Z', '2026-03-29T02:00'],
    ])
  })

  it('refuses bad arguments and invalid windows with PSW_ERR_INVALID_ARGUMENT / PSW_ERR_SCHEMA', () => {
    const w = utc('FREQ=DAILY', '2026-01-01T00:00')
    expect(codeOf(() => occurrences(w, Number.NaN, 0))).toBe('PSW_ERR_INVALID_ARGUMENT')
    expect(codeOf(() => occurrences(w, 0, 1, 0))).toBe('PSW_ERR_INVALID_ARGUMENT')
    expect(codeOf(() => openAt(w, -1))).toBe('PSW_ERR_INVALID_ARGUMENT')
    expect(codeOf(() => openAt(w, Date.UTC(2200, 0, 2)))).toBe('PSW_ERR_INVALID_ARGUMENT')
    expect(codeOf(() => openAt({ ...w, durationMinutes: -1 }, 0))).toBe('PSW_ERR_SCHEMA')
    expect(codeOf(() => openAt({ ...w, timeZone: 'No/Where' }, 0))).toBe('PSW_ERR_INVALID_ARGUMENT')
  })
})

describe('openAt and nextOpening', () => {
  const w = rrule('Europe/Berlin', 'FREQ=WEEKLY;BYDAY=SU', '2026-01-04T02:00', 120)
  const start = Z('2026-01-04T01:00Z')
  const end = start + 120 * MIN

  it('is open on [start, end)', () => {
    expect(openAt(w, start - 1)).toEqual({ open: false })
    expect(openAt(w, start)).toEqual({ open: true, start, end })
    expect(openAt(w, end - 1)).toEqual({ open: true, start, end })
    expect(openAt(w, end)).toEqual({ open: false })
  })

  it('nextOpening is the first start strictly after the instant', () => {
    expect(nextOpening(w, start - 1)?.start).toBe(start)
    expect(nextOpening(w, start)?.start).toBe(start + 7 * 86_400_000)
    expect(nextOpening(rrule('UTC', 'FREQ=DAILY;COUNT=2', '2026-01-01T00:00', 60), Z('2026-01-02T00:00Z'))).toBe(
      undefined,
    )
    expect(nextOpening(cron('UTC', '0 0 31 2 *', 60), 0)).toBe(undefined)
  })
})

describe('canStartInstall, rebootAllowed, nextInstallStart', () => {
  const night = rrule('UTC', 'FREQ=DAILY', '2026-01-01T22:00', 120) // 22:00–24:00, reboot ok
  const early = cron('UTC', '30 23 * * *', 90) // 23:30–01:00, no reboot
  const at = (hhmm: string, day = '02') => Z(`2026-01-${day}T${hhmm}Z`)

  it('needs an open window whose rest fits the declared run time', () => {
    expect(canStartInstall([], at('22:30'), 60)).toEqual({ ok: false, reason: 'no-windows' })
    expect(canStartInstall([night], at('21:59'), 60)).toEqual({ ok: false, reason: 'closed' })
    expect(canStartInstall([night], at('23:00'), 3600)).toMatchObject({
      ok: true,
      window: night,
      openUntil: at('00:00', '03'),
    })
    expect(canStartInstall([night], at('23:00'), 3601)).toMatchObject({ ok: false, reason: 'run-exceeds-window' })
  })

  it('uses the union of the windows', () => {
    // 23:00 + 100 min = 00:40: past the night window, inside the early one that overlaps it
    expect(canStartInstall([night, early], at('23:00'), 100 * 60)).toMatchObject({
      ok: true,
      openUntil: at('01:00', '03'),
    })
    expect(canStartInstall([night, early], at('23:00'), 121 * 60)).toMatchObject({
      ok: false,
      reason: 'run-exceeds-window',
      openUntil: at('01:00', '03'),
    })
  })

  it('allows reboots only inside a window that allows them', () => {
    expect(rebootAllowed([night, early], at('22:10'))).toMatchObject({ ok: true, window: night })
    expect(rebootAllowed([night, early], at('00:10', '03'))).toMatchObject({ ok: false, reason: 'reboot-not-allowed' })
    expect(rebootAllowed([night, early], at('12:00'))).toEqual({ ok: false, reason: 'closed' })
    expect(rebootAllowed([night], at('23:55'), 600)).toMatchObject({ ok: false, reason: 'run-exceeds-window' })
  })

  it('nextInstallStart finds the earliest start the run fits', () => {
    expect(nextInstallStart([night], at('22:30'), 3600)).toEqual({ start: at('22:30'), openUntil: at('00:00', '03') })
    expect(nextInstallStart([night], at('23:30'), 3600)).toEqual({
      start: at('22:00', '03'),
      openUntil: at('00:00', '04'),
    })
    expect(nextInstallStart([night, early], at('12:00'), 3 * 3600)).toEqual({
      start: at('22:00'),
      openUntil: at('01:00', '03'),
    })
    expect(nextInstallStart([night], at('12:00'), 3 * 3600)).toBe(undefined)
  })

  it('refuses a negative or non-finite run time', () => {
    expect(codeOf(() => canStartInstall([night], 0, -1))).toBe('PSW_ERR_INVALID_ARGUMENT')
    expect(codeOf(() => rebootAllowed([night], 0, Number.NaN))).toBe('PSW_ERR_INVALID_ARGUMENT')
  })
})

describe('spreadStart', () => {
  const base = Z('2026-01-02T22:00Z')

  it('is deterministic per device and inside [base, base + spread)', () => {
    expect(spreadStart(base, 3600, 'dev-1')).toBe(spreadStart(base, 3600, 'dev-1'))
    for (let i = 0; i < 500; i++) {
      const t = spreadStart(base, 3600, `dev-${i}`)!
      expect(t).toBeGreaterThanOrEqual(base)
      expect(t).toBeLessThan(base + 3600_000)
    }
    expect(spreadStart(base, 0, 'dev-1')).toBe(base)
  })

  it('spreads a fleet over many different seconds, and a salt reshuffles it', () => {
    const seconds = new Set(
      Array.from({ length: 1000 }, (_, i) => Math.floor(spreadStart(base, 3600, `dev-${i}`)! / 1000)),
    )
    expect(seconds.size).toBeGreaterThan(800)
    const same = Array.from(
      { length: 50 },
      (_, i) => spreadStart(base, 3600, `d${i}`) === spreadStart(base, 3600, `d${i}`, { salt: 'r2' }),
    )
    expect(same.filter(Boolean).length).toBeLessThan(3)
  })

  it('never starts later than the window end minus the run time', () => {
    const endMs = base + 2 * 3600_000
    for (let i = 0; i < 500; i++) {
      const t = spreadStart(base, 3 * 3600, `dev-${i}`, { endMs, maxRunSeconds: 5400 })!
      expect(t + 5400_000).toBeLessThanOrEqual(endMs)
      expect(t).toBeGreaterThanOrEqual(base)
    }
    expect(spreadStart(base, 600, 'dev', { endMs, maxRunSeconds: 7200 })).toBe(base)
    expect(spreadStart(base, 600, 'dev', { endMs, maxRunSeconds: 7201 })).toBe(undefined)
  })

  it('refuses an empty device id and a negative spread', () => {
    expect(codeOf(() => spreadStart(base, 10, ''))).toBe('PSW_ERR_INVALID_ARGUMENT')
    expect(codeOf(() => spreadStart(base, -1, 'd'))).toBe('PSW_ERR_INVALID_ARGUMENT')
  })
})
