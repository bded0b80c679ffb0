import { describe, expect, it } from 'vitest'
import { hasCode, type PswError } from '../errors.ts'
import { parseCron } from './window-cron.ts'
import { parseRRule } from './window-rrule.ts'
import { MAX_WINDOW_DURATION_MINUTES, parseMaintenanceWindow } from './window-schema.ts'

const valid = {
  id: 'sun-night',
  name: 'Sunday night',
  timeZone: 'Europe/Berlin',
  recurrence: { rrule: 'FREQ=WEEKLY;BYDAY=SU;BYHOUR=2;BYMINUTE=0', dtstart: '2026-01-04T02:00' },
  durationMinutes: 120,
  allowReboot: true,
  exclusions: ['2026-12-27'],
}

function codeOf(fn: () => unknown): { code: string; field: unknown } {
  try {
    fn()
  } catch (err) {
    return { code: (err as PswError).code, field: (err as PswError).details?.field }
  }
  throw new Error('expected a throw')
}

describe('parseMaintenanceWindow', () => {
  it('accepts an RRULE window and a cron window', () => {
    expect(parseMaintenanceWindow(valid)).toEqual(valid)
    const cron = { ...valid, recurrence: { cron: '0 22 * * 1-5' } }
    expect(parseMaintenanceWindow(cron)).toEqual(cron)
  })

  it.each([
    ['an unknown field', { ...valid, extra: 1 }],
    ['a zero duration', { ...valid, durationMinutes: 0 }],
    ['a duration over seven days', { ...valid, durationMinutes: MAX_WINDOW_DURATION_MINUTES + 1 }],
    ['a fractional duration', { ...valid, durationMinutes: 1.5 }],
    ['a missing allowReboot', { ...valid, allowReboot: undefined }],
    ['an RRULE without dtstart', { ...valid, recurrence: { rrule: 'FREQ=DAILY' } }],
    ['a dtstart with seconds', { ...valid, recurrence: { rrule: 'FREQ=DAILY', dtstart: '2026-01-04T02:00:00' } }],
    ['both rrule and cron', { ...valid, recurrence: { rrule: 'FREQ=DAILY', dtstart: '2026-01-04T02:00', cron: '' } }],
    ['an id with a slash', { ...valid, id: 'a/b' }],
    ['duplicate exclusions', { ...valid, exclusions: ['2026-01-01', '2026-01-01'] }],
  ])('refuses %s with PSW_ERR_SCHEMA', (_, value) => {
    expect(codeOf(() => parseMaintenanceWindow(value)).code).toBe('PSW_ERR_SCHEMA')
  })

  it.each([
    ['an unknown time zone', { ...valid, timeZone: 'Mars/Olympus' }, 'timeZone'],
    [
      'a dtstart that is no date',
      { ...valid, recurrence: { ...valid.recurrence, dtstart: '2026-02-30T02:00' } },
      'recurrence.dtstart',
    ],
    ['an exclusion that is no date', { ...valid, exclusions: ['2026-13-01'] }, 'exclusions'],
    ['a bad rrule', { ...valid, recurrence: { ...valid.recurrence, rrule: 'FREQ=YEARLY' } }, 'recurrence.rrule'],
    ['a bad cron', { ...valid, recurrence: { cron: '0 25 * * *' } }, 'recurrence.cron'],
  ])('refuses %s with PSW_ERR_INVALID_ARGUMENT naming the field', (_, value, field) => {
    expect(codeOf(() => parseMaintenanceWindow(value))).toEqual({ code: 'PSW_ERR_INVALID_ARGUMENT', field })
  })
})

describe('parseRRule', () => {
  it('parses the supported subset', () => {
    expect(parseRRule('RRULE:FREQ=MONTHLY;INTERVAL=2;BYDAY=2TU,-1FR;BYHOUR=22,1;BYMINUTE=30;COUNT=12;WKST=SU')).toEqual(
      {
        freq: 'MONTHLY',
        interval: 2,
        byDay: [
          { weekday: 1, nth: 2 },
          { weekday: 4, nth: -1 },
        ],
        byHour: [1, 22],
        byMinute: [30],
        count: 12,
        wkst: 6,
      },
    )
    expect(parseRRule('FREQ=DAILY;UNTIL=20261231T235959Z').until).toEqual({
      kind: 'utc',
      instant: Date.UTC(2026, 11, 31, 23, 59, 59),
    })
    expect(parseRRule('FREQ=DAILY;UNTIL=20261231').until).toEqual({
      kind: 'local',
      floating: Date.UTC(2027, 0, 1) - 1,
    })
  })

  it.each([
    'FREQ=YEARLY',
    'FREQ=HOURLY',
    'BYDAY=MO',
    'FREQ=DAILY;BYSETPOS=1',
    'FREQ=DAILY;BYSECOND=0',
    'FREQ=DAILY;COUNT=3;UNTIL=20260101',
    'FREQ=DAILY;FREQ=WEEKLY',
    'FREQ=WEEKLY;BYDAY=2TU',
    'FREQ=DAILY;BYDAY=-1FR',
    'FREQ=MONTHLY;BYDAY=6MO',
    'FREQ=MONTHLY;BYDAY=0MO',
    'FREQ=WEEKLY;BYMONTHDAY=1',
    'FREQ=MONTHLY;BYMONTHDAY=32',
    'FREQ=MONTHLY;BYMONTHDAY=0',
    'FREQ=DAILY;BYHOUR=24',
    'FREQ=DAILY;BYHOUR=-1',
    'FREQ=DAILY;BYMINUTE=60',
    'FREQ=DAILY;INTERVAL=0',
    'FREQ=MONTHLY;INTERVAL=13',
    'FREQ=DAILY;COUNT=0',
    'FREQ=DAILY;COUNT=10001',
    'FREQ=DAILY;UNTIL=20260230',
    'FREQ=DAILY;UNTIL=2026-01-01',
    'FREQ=DAILY;WKST=XX',
    'FREQ=DAILY;;',
    'FREQ',
  ])('refuses %s', (text) => {
    expect(
      hasCode(
        tryParse(() => parseRRule(text)),
        'PSW_ERR_INVALID_ARGUMENT',
      ),
    ).toBe(true)
  })
})

function tryParse(fn: () => unknown): unknown {
  try {
    fn()
  } catch (err) {
    return err
  }
  return undefined
}

describe('parseCron', () => {
  it('expands fields, steps, ranges and names', () => {
    const c = parseCron('0,30 22-23 * JAN-MAR mon-fri')
    expect(c.times).toEqual([1320, 1350, 1380, 1410])
    expect(c.months.slice(1, 5)).toEqual([true, true, true, false])
    expect(c.daysOfWeek).toEqual([false, true, true, true, true, true, false])
    expect(c.domStar).toBe(true)
    expect(parseCron('*/20 2 1 * 7').times).toEqual([120, 140, 160])
    expect(parseCron('0 2 1 * 7').daysOfWeek[0]).toBe(true)
    expect(parseCron('5/20 0 * * *').times).toEqual([5, 25, 45])
  })

  it.each([
    '0 2 * *',
    '0 2 * * * *',
    '60 2 * * *',
    '0 24 * * *',
    '0 2 0 * *',
    '0 2 * 13 *',
    '0 2 * * 8',
    '0 5-2 * * *',
    '0 1-2-3 * * *',
    '*/0 2 * * *',
    '0 2 * FOO *',
    'a b c d e',
  ])('refuses %s', (text) => {
    expect(
      hasCode(
        tryParse(() => parseCron(text)),
        'PSW_ERR_INVALID_ARGUMENT',
      ),
    ).toBe(true)
  })
})
