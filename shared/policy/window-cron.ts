import { ValidationError } from '../errors.ts'
import { DAY_MS, dayOf, MINUTE_MS } from './window-zone.ts'

/**
 * Five-field cron (`minute hour day-of-month month day-of-week`) as a window start rule,
 * expanded in local wall-clock (floating) time. Fields take `*`, numbers, `a-b` ranges, `/step`,
 * comma lists, and names (JAN–DEC, SUN–SAT); day-of-week 0 and 7 are both Sunday.
 * As in Vixie cron, when both day-of-month and day-of-week are restricted (neither starts with
 * `*`) a day matches if either does; otherwise both must.
 */

export interface Cron {
  /** Minutes of the day, ascending. */
  times: number[]
  daysOfMonth: boolean[] // index 1..31
  months: boolean[] // index 1..12
  daysOfWeek: boolean[] // index 0 = Sunday … 6
  domStar: boolean
  dowStar: boolean
}

const MONTHS = ['JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC']
const DAYS = ['SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT']

function invalid(message: string): ValidationError {
  return new ValidationError('PSW_ERR_INVALID_ARGUMENT', `cron: ${message}`, { details: { field: 'cron' } })
}

function field(text: string, name: string, min: number, max: number, names: string[] = [], nameBase = min): boolean[] {
  const out = new Array<boolean>(max + 1).fill(false)
  const value = (s: string): number => {
    const i = names.indexOf(s.toUpperCase())
    if (i >= 0) return i + nameBase
    if (!/^\d{1,2}$/.test(s)) throw invalid(`${name} has a bad value "${s}"`)
    const n = Number(s)
    if (n < min || n > max) throw invalid(`${name} value ${n} is outside ${min}-${max}`)
    return n
  }
  for (const item of text.split(',')) {
    const m = /^([^/]+)(?:\/(\d{1,2}))?$/.exec(item)
    if (!m) throw invalid(`${name} has a bad item "${item}"`)
    const step = m[2] === undefined ? 1 : Number(m[2])
    if (step < 1) throw invalid(`${name} step must be at least 1`)
    let lo: number
    let hi: number
    if (m[1] === '*') {
      lo = min
      hi = max
    } else {
      const [a, b, ...rest] = m[1]!.split('-')
      if (rest.length > 0) throw invalid(`${name} has a bad range "${m[1]}"`)
      lo = value(a!)
      hi = b === undefined ? (m[2] === undefined ? lo : max) : value(b)
      if (hi < lo) throw invalid(`${name} range ${m[1]} runs backwards`)
    }
    for (let v = lo; v <= hi; v += step) out[v] = true
  }
  return out
}

/** Parses a five-field cron expression. */
export function parseCron(text: string): Cron {
  const fields = text.trim().split(/\s+/)
  if (fields.length !== 5) throw invalid(`expected 5 fields, got ${fields.length}`)
  const [min, hour, dom, month, dow] = fields as [string, string, string, string, string]
  const minutes = field(min, 'minute', 0, 59)
  const hours = field(hour, 'hour', 0, 23)
  const daysOfWeek = field(dow, 'day-of-week', 0, 7, DAYS, 0)
  if (daysOfWeek[7]) daysOfWeek[0] = true
  const times: number[] = []
  for (let h = 0; h < 24; h++) {
    for (let m = 0; m < 60; m++) if (hours[h] && minutes[m]) times.push(h * 60 + m)
  }
  return {
    times,
    daysOfMonth: field(dom, 'day-of-month', 1, 31),
    months: field(month, 'month', 1, 12, MONTHS, 1),
    daysOfWeek: daysOfWeek.slice(0, 7),
    domStar: dom.startsWith('*'),
    dowStar: dow.startsWith('*'),
  }
}

function dayMatches(cron: Cron, day: number): boolean {
  const d = new Date(day * DAY_MS)
  if (!cron.months[d.getUTCMonth() + 1]) return false
  const domOk = cron.daysOfMonth[d.getUTCDate()] === true
  const dowOk = cron.daysOfWeek[d.getUTCDay()] === true
  return cron.domStar || cron.dowStar ? domOk && dowOk : domOk || dowOk
}

/** Local starts (floating, ascending) from the day containing `from` up to `limit`. */
export function* cronStarts(cron: Cron, from: number, limit: number): Generator<number> {
  for (let day = dayOf(from); day * DAY_MS <= limit; day++) {
    if (!dayMatches(cron, day)) continue
    for (const minute of cron.times) {
      const f = day * DAY_MS + minute * MINUTE_MS
      if (f > limit) return
      yield f
    }
  }
}
