import { type Static, Type } from '@sinclair/typebox'
import { ValidationError } from '../../shared/errors.ts'
import { compileChecker } from '../../shared/metadata/schema-check.ts'
import { formatterFor } from '../../shared/policy/window-zone.ts'

/**
 * The WAN rate schedule: a default rate plus rules such as "Mon-Fri 07:00-19:00 → 125000 B/s",
 * evaluated on the local wall clock of an IANA time zone (so across a DST change a rule still
 * starts at 07:00 local). Pure: plain data in, numbers out.
 *
 * A rule covers `[start, end)` on each of its `days`; when `end` is before `start` the rule runs
 * overnight and the part after midnight belongs to the day it started on. The first rule that
 * covers an instant wins; no rule → `defaultBytesPerSecond`. A rate of 0 means unlimited.
 * Wall-clock times that do not exist (spring forward) are skipped; repeated ones (fall back)
 * are covered both times.
 */

export const WAN_SCHEDULE_DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const
export type WanScheduleDay = (typeof WAN_SCHEDULE_DAYS)[number]

/** 100 Gbit/s: anything above is a typo, not a WAN. */
export const MAX_WAN_BYTES_PER_SECOND = 12_500_000_000
export const MAX_WAN_SCHEDULE_RULES = 32

const Rate = Type.Integer({ minimum: 0, maximum: MAX_WAN_BYTES_PER_SECOND })

export const WanScheduleRuleSchema = Type.Object(
  {
    days: Type.Array(Type.Union(WAN_SCHEDULE_DAYS.map((d) => Type.Literal(d))), {
      minItems: 1,
      maxItems: 7,
      uniqueItems: true,
    }),
    /** Local wall-clock start, `HH:MM` (00:00–23:59). */
    start: Type.String({ pattern: '^([01][0-9]|2[0-3]):[0-5][0-9]$' }),
    /** Local wall-clock end (exclusive), `HH:MM` or `24:00`; before `start` = overnight. */
    end: Type.String({ pattern: '^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$' }),
    /** Bytes per second while the rule applies; 0 = unlimited. */
    bytesPerSecond: Rate,
  },
  { additionalProperties: false },
)
export type WanScheduleRule = Static<typeof WanScheduleRuleSchema>

export const WanScheduleSchema = Type.Object(
  {
    /** IANA time zone name, e.g. `Europe/Berlin`. */
    timeZone: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_+\\-/]+$' }),
    /** Bytes per second when no rule applies; 0 = unlimited. */
    defaultBytesPerSecond: Rate,
    rules: Type.Array(WanScheduleRuleSchema, { maxItems: MAX_WAN_SCHEDULE_RULES }),
  },
  { additionalProperties: false },
)
export type WanSchedule = Static<typeof WanScheduleSchema>

const checker = compileChecker(WanScheduleSchema)

/**
 * Validates a schedule from configuration: the schema, then what a schema cannot say (the time
 * zone is one the runtime knows; a rule's start and end differ).
 */
export function parseWanSchedule(value: unknown, what = 'WAN schedule'): WanSchedule {
  const schedule = checker.check(value, what)
  try {
    formatterFor(schedule.timeZone)
  } catch (err) {
    throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', `${what}: unknown time zone ${schedule.timeZone}`, {
      cause: err,
    })
  }
  schedule.rules.forEach((rule, i) => {
    if (rule.start === rule.end) {
      throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', `${what}: rule ${i} starts and ends at ${rule.start}`)
    }
  })
  return schedule
}

/** A schedule that never limits. */
export function unlimitedWanSchedule(timeZone = 'UTC'): WanSchedule {
  return { timeZone, defaultBytesPerSecond: 0, rules: [] }
}

/** The rate (bytes/s, 0 = unlimited) the schedule allows at `epochMs`. */
export function rateAt(schedule: WanSchedule, epochMs: number): number {
  const c = compiled(schedule)
  return rateAtLocal(c, localWall(c.formatter, epochMs))
}

/**
 * The first instant after `epochMs` at which the rate differs from `rateAt(schedule, epochMs)`,
 * or undefined when it never changes. Walks from one rule boundary (or midnight, or UTC-offset
 * change) to the next, so a week is a few dozen steps rather than ten thousand minutes.
 */
export function nextChangeAt(schedule: WanSchedule, epochMs: number): number | undefined {
  const c = compiled(schedule)
  if (c.rules.every((r) => r.rate === schedule.defaultBytesPerSecond)) return undefined
  const current = rateAt(schedule, epochMs)
  const horizon = epochMs + 8 * DAY_MS
  let t = floorMinute(epochMs)
  let here = localWall(c.formatter, t)
  while (t < horizon) {
    const boundary = c.boundaries.find((b) => b > here.minute) ?? MINUTES_PER_DAY
    let next = t + (boundary - here.minute) * MINUTE_MS
    let there = localWall(c.formatter, next)
    if (there.offset !== here.offset) {
      next = firstOffsetChange(c.formatter, t, next, here.offset)
      there = localWall(c.formatter, next)
    }
    if (rateAtLocal(c, there) !== current) return next
    t = next
    here = there
  }
  return undefined
}

const MINUTE_MS = 60_000
const DAY_MS = 86_400_000
const MINUTES_PER_DAY = 1440

interface CompiledRule {
  days: boolean[]
  start: number
  end: number
  rate: number
}

interface CompiledSchedule {
  formatter: Intl.DateTimeFormat
  rules: CompiledRule[]
  /** Minutes of the day (1..1440) at which some rule starts or ends, plus midnight, sorted. */
  boundaries: number[]
  defaultRate: number
}

interface LocalWall {
  /** 0 = Monday … 6 = Sunday. */
  day: number
  /** Minutes since local midnight. */
  minute: number
  /** Local minus UTC, in minutes. */
  offset: number
}

// Compiled forms per schedule object (weak, so configs can be replaced); the per-zone
// formatters are window-zone.ts's. Neither holds state that changes a result.
const compiledCache = new WeakMap<WanSchedule, CompiledSchedule>()

function compiled(schedule: WanSchedule): CompiledSchedule {
  let c = compiledCache.get(schedule)
  if (!c) {
    const rules = schedule.rules.map((r) => ({
      days: WAN_SCHEDULE_DAYS.map((d) => r.days.includes(d)),
      start: minuteOf(r.start),
      end: minuteOf(r.end),
      rate: r.bytesPerSecond,
    }))
    const boundaries = new Set<number>([MINUTES_PER_DAY])
    for (const r of rules) {
      boundaries.add(r.start === 0 ? MINUTES_PER_DAY : r.start)
      boundaries.add(r.end === 0 ? MINUTES_PER_DAY : r.end)
    }
    c = {
      formatter: formatterFor(schedule.timeZone),
      rules,
      boundaries: [...boundaries].sort((a, b) => a - b),
      defaultRate: schedule.defaultBytesPerSecond,
    }
    compiledCache.set(schedule, c)
  }
  return c
}

function minuteOf(hhmm: string): number {
  return Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5))
}

function floorMinute(t: number): number {
  return Math.floor(t / MINUTE_MS) * MINUTE_MS
}

function localWall(formatter: Intl.DateTimeFormat, t: number): LocalWall {
  const p: Record<string, number> = {}
  for (const part of formatter.formatToParts(t)) {
    if (part.type !== 'literal') p[part.type] = Number(part.value)
  }
  const hour = (p.hour ?? 0) % 24
  const minute = p.minute ?? 0
  const wallAsUtc = Date.UTC(p.year ?? 1970, (p.month ?? 1) - 1, p.day ?? 1, hour, minute)
  return {
    day: (new Date(wallAsUtc).getUTCDay() + 6) % 7,
    minute: hour * 60 + minute,
    offset: Math.round((wallAsUtc - floorMinute(t)) / MINUTE_MS),
  }
}

function rateAtLocal(c: CompiledSchedule, w: LocalWall): number {
  const yesterday = (w.day + 6) % 7
  for (const r of c.rules) {
    const covers =
      r.start < r.end
        ? r.days[w.day] && w.minute >= r.start && w.minute < r.end
        : (r.days[w.day] && w.minute >= r.start) || (r.days[yesterday] && w.minute < r.end)
    if (covers) return r.rate
  }
  return c.defaultRate
}

/** The first whole minute in (from, to] whose UTC offset is not `offset` (one exists at `to`). */
function firstOffsetChange(formatter: Intl.DateTimeFormat, from: number, to: number, offset: number): number {
  let lo = from
  let hi = to
  while (hi - lo > MINUTE_MS) {
    const mid = lo + Math.floor((hi - lo) / MINUTE_MS / 2) * MINUTE_MS
    if (localWall(formatter, mid).offset === offset) lo = mid
    else hi = mid
  }
  return hi
}
