/**
 * Local wall-clock arithmetic for one IANA time zone, built on Intl.DateTimeFormat (the same
 * approach as appliance/upstream/wan-schedule.ts; no date library).
 *
 * A local wall-clock time is handled as a "floating" number: the epoch milliseconds it would
 * have if it were UTC (`Date.UTC(y, m - 1, d, hh, mm)`). Calendar arithmetic on floating
 * numbers (add a day, find a weekday) is exact because the fake UTC has no DST; only
 * `instantOf` and `floatingOf` cross between local time and real instants.
 *
 * Rules for wall-clock times that do not map to exactly one instant:
 * - skipped (spring forward, e.g. Europe/Berlin 2026-03-29 02:30): the first valid instant
 *   after it, i.e. the transition instant (03:00 CEST);
 * - repeated (fall back, e.g. Europe/Berlin 2026-10-25 02:30): the first of the two instants
 *   (02:30 CEST, not 02:30 CET).
 */

export const MINUTE_MS = 60_000
export const HOUR_MS = 3_600_000
export const DAY_MS = 86_400_000

export interface Zone {
  readonly timeZone: string
  /** Local minus UTC at `instant`, in milliseconds. */
  offsetAt(instant: number): number
  /** The local wall-clock time at `instant`, as a floating number. */
  floatingOf(instant: number): number
  /** The instant a local wall-clock time (floating) denotes, by the rules above. */
  instantOf(floating: number): number
}

// One formatter per time zone (construction is slow); holds nothing that changes a result.
const formatters = new Map<string, Intl.DateTimeFormat>()

/** A cached en-US, 24-hour formatter for reading a zone's wall clock with formatToParts. */
export function formatterFor(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone)
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    })
    formatters.set(timeZone, f)
  }
  return f
}

/** Whether the runtime knows `timeZone` as an IANA zone name. */
export function isKnownTimeZone(timeZone: string): boolean {
  try {
    formatterFor(timeZone)
    return true
  } catch {
    return false
  }
}

/** Offsets of one UTC day: constant, or changing once at `change`. */
interface DayOffsets {
  first: number
  last: number
  change: number
}

// Zone calculators per name, each with a bounded per-day offset cache. Neither holds state
// that changes a result.
const zones = new Map<string, Zone>()
const MAX_CACHED_DAYS = 4096

/** A zone calculator; throws RangeError for a zone the runtime does not know. */
export function zoneFor(timeZone: string): Zone {
  let zone = zones.get(timeZone)
  if (!zone) {
    zone = createZone(timeZone)
    zones.set(timeZone, zone)
  }
  return zone
}

function createZone(timeZone: string): Zone {
  const formatter = formatterFor(timeZone)

  const intlOffsetAt = (instant: number): number => {
    const p: Record<string, number> = {}
    for (const part of formatter.formatToParts(instant)) {
      if (part.type !== 'literal') p[part.type] = Number(part.value)
    }
    const wall = Date.UTC(
      p.year ?? 1970,
      (p.month ?? 1) - 1,
      p.day ?? 1,
      (p.hour ?? 0) % 24,
      p.minute ?? 0,
      p.second ?? 0,
    )
    return wall - (instant - mod(instant, 1000))
  }

  // Asking Intl costs ~5 µs. We rely on a zone's offset changing at most once per UTC day (as
  // instantOf already does within ±1 day): each day is asked twice, plus a binary search on a
  // day with a change.
  const days = new Map<number, DayOffsets>()
  const dayOffsets = (day: number): DayOffsets => {
    let d = days.get(day)
    if (!d) {
      const start = day * DAY_MS
      const first = intlOffsetAt(start)
      const last = intlOffsetAt(start + DAY_MS)
      let change = start + DAY_MS
      if (first !== last) {
        let lo = start // offset `first` here
        while (change - lo > 1000) {
          const mid = lo + Math.floor((change - lo) / 2000) * 1000
          if (intlOffsetAt(mid) === first) lo = mid
          else change = mid
        }
      }
      d = { first, last, change }
      if (days.size >= MAX_CACHED_DAYS) days.clear()
      days.set(day, d)
    }
    return d
  }
  const offsetAt = (instant: number): number => {
    const d = dayOffsets(Math.floor(instant / DAY_MS))
    return instant < d.change ? d.first : d.last
  }

  const instantOf = (floating: number): number => {
    const before = offsetAt(floating - DAY_MS)
    const after = offsetAt(floating + DAY_MS)
    // No transition near: every instant this wall time could denote has the same offset.
    if (before === after) return floating - before
    const valid = [floating - before, floating - after].filter((t) => offsetAt(t) === floating - t)
    if (valid.length > 0) return Math.min(...valid) // repeated: the first of the two
    // Skipped: the first instant whose wall clock reads `floating` or later (the transition).
    let lo = floating - Math.max(before, after)
    let hi = floating - Math.min(before, after)
    while (hi - lo > 1000) {
      const mid = lo + Math.floor((hi - lo) / 2000) * 1000
      if (mid + offsetAt(mid) >= floating) hi = mid
      else lo = mid
    }
    return hi
  }

  return { timeZone, offsetAt, floatingOf: (instant) => instant + offsetAt(instant), instantOf }
}

export function mod(a: number, n: number): number {
  return ((a % n) + n) % n
}

/** Days since 1970-01-01 of a floating time. */
export function dayOf(floating: number): number {
  return Math.floor(floating / DAY_MS)
}

/** 0 = Monday … 6 = Sunday. */
export function weekdayOf(day: number): number {
  return mod(day + 3, 7) // 1970-01-01 was a Thursday
}

/** `YYYY-MM-DDTHH:MM` of a floating time. */
export function formatFloating(floating: number): string {
  return new Date(floating).toISOString().slice(0, 16)
}

/** `YYYY-MM-DD` of a day number. */
export function formatDay(day: number): string {
  return new Date(day * DAY_MS).toISOString().slice(0, 10)
}

/**
 * Floating time of `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM`, or undefined when it is not a real
 * calendar date (2026-02-30) or outside years 1970–2199.
 */
export function parseFloating(text: string): number | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2}))?$/.exec(text)
  if (!m) return undefined
  const [y, mo, d, h, mi] = [m[1], m[2], m[3], m[4] ?? '0', m[5] ?? '0'].map(Number) as [
    number,
    number,
    number,
    number,
    number,
  ]
  if (y < 1970 || y > 2199 || h > 23 || mi > 59) return undefined
  const floating = Date.UTC(y, mo - 1, d, h, mi)
  const back = new Date(floating)
  if (back.getUTCMonth() !== mo - 1 || back.getUTCDate() !== d) return undefined
  return floating
}
