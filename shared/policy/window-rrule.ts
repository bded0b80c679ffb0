import { ValidationError } from '../errors.ts'
import { DAY_MS, dayOf, MINUTE_MS, mod, parseFloating, weekdayOf } from './window-zone.ts'

/**
 * The RFC 5545 RRULE subset maintenance windows use, parsed into plain data and expanded in
 * local wall-clock (floating) time. Supported: FREQ=DAILY|WEEKLY|MONTHLY, INTERVAL, BYDAY (with
 * ordinals such as 2TU or -1FR for MONTHLY), BYMONTHDAY, BYHOUR, BYMINUTE, COUNT, UNTIL, WKST.
 * Anything else (BYSETPOS, YEARLY, seconds …) is refused rather than ignored.
 *
 * As in python-dateutil and rrule.js, DTSTART is the anchor (first period, default weekday,
 * day of month, hour and minute) and a lower bound; it is itself an occurrence only when it
 * matches the rule. COUNT counts the instances the rule generates (before exclusions).
 */

export type Freq = 'DAILY' | 'WEEKLY' | 'MONTHLY'

export interface ByDay {
  /** 0 = Monday … 6 = Sunday. */
  weekday: number
  /** 0 = every such weekday; 1..5 / -1..-5 = the nth (from the end) in the month. */
  nth: number
}

export type Until = { kind: 'utc'; instant: number } | { kind: 'local'; floating: number }

export interface RRule {
  freq: Freq
  interval: number
  byDay?: ByDay[]
  byMonthDay?: number[]
  byHour?: number[]
  byMinute?: number[]
  count?: number
  until?: Until
  /** Week start, 0 = Monday (default). */
  wkst: number
}

export const MAX_RRULE_COUNT = 10_000
const MAX_INTERVAL: Record<Freq, number> = { DAILY: 366, WEEKLY: 53, MONTHLY: 12 }
const WEEKDAYS = ['MO', 'TU', 'WE', 'TH', 'FR', 'SA', 'SU']
const PARTS = new Set(['FREQ', 'INTERVAL', 'BYDAY', 'BYMONTHDAY', 'BYHOUR', 'BYMINUTE', 'COUNT', 'UNTIL', 'WKST'])

function invalid(message: string): ValidationError {
  return new ValidationError('PSW_ERR_INVALID_ARGUMENT', `rrule: ${message}`, { details: { field: 'rrule' } })
}

function intList(name: string, value: string, min: number, max: number, allowNegative = false): number[] {
  const out = value.split(',').map((s) => {
    if (!/^[+-]?\d{1,3}$/.test(s)) throw invalid(`${name} has a bad value "${s}"`)
    const n = Number(s)
    const abs = Math.abs(n)
    if (abs < min || abs > max || (n < 0 && !allowNegative)) throw invalid(`${name} value ${s} is out of range`)
    return n
  })
  return [...new Set(out)].sort((a, b) => a - b)
}

/** Parses `FREQ=WEEKLY;BYDAY=SU;BYHOUR=2` (an optional `RRULE:` prefix is accepted). */
export function parseRRule(text: string): RRule {
  const body = text.trim().replace(/^RRULE:/i, '')
  const parts = new Map<string, string>()
  for (const item of body.split(';')) {
    const eq = item.indexOf('=')
    const key = item.slice(0, eq).toUpperCase()
    const value = item.slice(eq + 1).toUpperCase()
    if (eq <= 0 || value === '') throw invalid(`"${item}" is not NAME=VALUE`)
    if (!PARTS.has(key)) throw invalid(`${key} is not supported`)
    if (parts.has(key)) throw invalid(`${key} appears twice`)
    parts.set(key, value)
  }
  const freq = parts.get('FREQ')
  if (freq !== 'DAILY' && freq !== 'WEEKLY' && freq !== 'MONTHLY') {
    throw invalid('FREQ must be DAILY, WEEKLY or MONTHLY')
  }
  const rule: RRule = { freq, interval: 1, wkst: 0 }
  const interval = parts.get('INTERVAL')
  if (interval !== undefined) rule.interval = intList('INTERVAL', interval, 1, MAX_INTERVAL[freq])[0]!
  const byDay = parts.get('BYDAY')
  if (byDay !== undefined) rule.byDay = parseByDay(byDay, freq)
  const byMonthDay = parts.get('BYMONTHDAY')
  if (byMonthDay !== undefined) {
    if (freq === 'WEEKLY') throw invalid('BYMONTHDAY is not allowed with FREQ=WEEKLY')
    rule.byMonthDay = intList('BYMONTHDAY', byMonthDay, 1, 31, true)
  }
  const byHour = parts.get('BYHOUR')
  if (byHour !== undefined) rule.byHour = intList('BYHOUR', byHour, 0, 23)
  const byMinute = parts.get('BYMINUTE')
  if (byMinute !== undefined) rule.byMinute = intList('BYMINUTE', byMinute, 0, 59)
  const count = parts.get('COUNT')
  const until = parts.get('UNTIL')
  if (count !== undefined && until !== undefined) throw invalid('COUNT and UNTIL are mutually exclusive')
  if (count !== undefined) {
    if (!/^\d{1,5}$/.test(count) || Number(count) < 1 || Number(count) > MAX_RRULE_COUNT) {
      throw invalid(`COUNT must be 1..${MAX_RRULE_COUNT}`)
    }
    rule.count = Number(count)
  }
  if (until !== undefined) rule.until = parseUntil(until)
  const wkst = parts.get('WKST')
  if (wkst !== undefined) {
    rule.wkst = WEEKDAYS.indexOf(wkst)
    if (rule.wkst < 0) throw invalid(`WKST ${wkst} is not a weekday`)
  }
  return rule
}

function parseByDay(value: string, freq: Freq): ByDay[] {
  const seen = new Set<string>()
  const out: ByDay[] = []
  for (const s of value.split(',')) {
    const m = /^([+-]?\d)?(MO|TU|WE|TH|FR|SA|SU)$/.exec(s)
    if (!m) throw invalid(`BYDAY has a bad value "${s}"`)
    const nth = m[1] === undefined ? 0 : Number(m[1])
    if (nth !== 0 && freq !== 'MONTHLY') throw invalid(`BYDAY ordinal ${s} needs FREQ=MONTHLY`)
    if (m[1] !== undefined && (nth === 0 || Math.abs(nth) > 5)) throw invalid(`BYDAY ordinal ${s} is out of range`)
    const key = `${nth}${m[2]}`
    if (!seen.has(key)) out.push({ weekday: WEEKDAYS.indexOf(m[2]!), nth })
    seen.add(key)
  }
  return out
}

function parseUntil(value: string): Until {
  const m = /^(\d{4})(\d{2})(\d{2})(?:T(\d{2})(\d{2})(\d{2})(Z)?)?$/.exec(value)
  const floating = m ? parseFloating(`${m[1]}-${m[2]}-${m[3]}${m[4] ? `T${m[4]}:${m[5]}` : ''}`) : undefined
  if (!m || floating === undefined || Number(m[6] ?? 0) > 59) {
    throw invalid(`UNTIL ${value} is not YYYYMMDD, YYYYMMDDTHHMMSS or YYYYMMDDTHHMMSSZ`)
  }
  const exact = floating + Number(m[6] ?? 0) * 1000
  if (m[7]) return { kind: 'utc', instant: exact }
  // A date alone includes that whole local day.
  return { kind: 'local', floating: m[4] ? exact : floating + DAY_MS - 1 }
}

/**
 * Local starts (floating, ascending) of `rule` anchored at `dtstart`, from about `from` up to
 * `limit` (both floating). Starts before `from` may be yielded; the caller filters. A UTC UNTIL
 * is left to the caller, who knows the zone.
 */
export function* rruleStarts(rule: RRule, dtstart: number, from: number, limit: number): Generator<number> {
  const startDay = dayOf(dtstart)
  const times = timesOfDay(rule, dtstart)
  const untilLocal = rule.until?.kind === 'local' ? rule.until.floating : Number.POSITIVE_INFINITY
  let emitted = 0
  // Without COUNT nothing before `from` matters, so jump to the period that contains it.
  let period = rule.count === undefined ? Math.max(0, periodOf(rule, startDay, dayOf(from)) - 1) : 0
  for (; ; period++) {
    const days = daysOfPeriod(rule, dtstart, period)
    if (days.first * DAY_MS > limit) return
    for (const day of days.list) {
      for (const minute of times) {
        const f = day * DAY_MS + minute * MINUTE_MS
        if (f < dtstart) continue
        if (f > untilLocal || f > limit) return
        yield f
        emitted++
        if (rule.count !== undefined && emitted >= rule.count) return
      }
    }
  }
}

/** Minutes of the day, ascending: BYHOUR × BYMINUTE, defaulting to DTSTART's hour and minute. */
function timesOfDay(rule: RRule, dtstart: number): number[] {
  const dtMinute = mod(dtstart, DAY_MS) / MINUTE_MS
  const hours = rule.byHour ?? [Math.floor(dtMinute / 60)]
  const minutes = rule.byMinute ?? [dtMinute % 60]
  return hours.flatMap((h) => minutes.map((m) => h * 60 + m)).sort((a, b) => a - b)
}

function monthIndex(day: number): number {
  const d = new Date(day * DAY_MS)
  return d.getUTCFullYear() * 12 + d.getUTCMonth()
}

function weekStart(rule: RRule, day: number): number {
  return day - mod(weekdayOf(day) - rule.wkst, 7)
}

function periodOf(rule: RRule, startDay: number, day: number): number {
  const length = rule.freq === 'DAILY' ? 1 : 7
  if (rule.freq === 'MONTHLY') return Math.floor((monthIndex(day) - monthIndex(startDay)) / rule.interval)
  const origin = rule.freq === 'WEEKLY' ? weekStart(rule, startDay) : startDay
  return Math.floor((day - origin) / (length * rule.interval))
}

/** The candidate days of one period, ascending, and the period's first day. */
function daysOfPeriod(rule: RRule, dtstart: number, period: number): { first: number; list: number[] } {
  const startDay = dayOf(dtstart)
  if (rule.freq === 'DAILY') {
    const day = startDay + period * rule.interval
    return { first: day, list: matchesFilters(rule, day) ? [day] : [] }
  }
  if (rule.freq === 'WEEKLY') {
    const first = weekStart(rule, startDay) + period * 7 * rule.interval
    const weekdays = rule.byDay?.map((b) => b.weekday) ?? [weekdayOf(startDay)]
    const list = weekdays.map((wd) => first + mod(wd - rule.wkst, 7)).sort((a, b) => a - b)
    return { first, list }
  }
  const month = monthIndex(startDay) + period * rule.interval
  const first = dayOf(Date.UTC(Math.floor(month / 12), month % 12, 1))
  const length = dayOf(Date.UTC(Math.floor(month / 12), (month % 12) + 1, 1)) - first
  const all = Array.from({ length }, (_, i) => first + i)
  let list: number[]
  if (rule.byDay === undefined && rule.byMonthDay === undefined) {
    const dom = new Date(dtstart).getUTCDate()
    list = dom <= length ? [first + dom - 1] : []
  } else {
    list = all.filter((day) => matchesMonthly(rule, day, first, length))
  }
  return { first, list }
}

function monthDayMatches(byMonthDay: number[], dom: number, length: number): boolean {
  return byMonthDay.some((v) => (v > 0 ? v === dom : length + 1 + v === dom))
}

/** DAILY: BYDAY and BYMONTHDAY only filter. */
function matchesFilters(rule: RRule, day: number): boolean {
  if (rule.byDay && !rule.byDay.some((b) => b.weekday === weekdayOf(day))) return false
  if (rule.byMonthDay) {
    const d = new Date(day * DAY_MS)
    const length = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 0)).getUTCDate()
    if (!monthDayMatches(rule.byMonthDay, d.getUTCDate(), length)) return false
  }
  return true
}

/** MONTHLY: BYMONTHDAY and BYDAY (with ordinals) each expand; together they intersect. */
function matchesMonthly(rule: RRule, day: number, first: number, length: number): boolean {
  const dom = day - first + 1
  if (rule.byMonthDay && !monthDayMatches(rule.byMonthDay, dom, length)) return false
  if (rule.byDay) {
    const wd = weekdayOf(day)
    const nthFromStart = Math.floor((dom - 1) / 7) + 1
    const nthFromEnd = -(Math.floor((length - dom) / 7) + 1)
    return rule.byDay.some((b) => b.weekday === wd && (b.nth === 0 || b.nth === nthFromStart || b.nth === nthFromEnd))
  }
  return true
}
