import { describe, expect, it } from 'vitest'
import { seededRandom } from '../swarm/chunk-picker.ts'
import {
  canStartInstall,
  nextInstallStart,
  nextOpening,
  type Occurrence,
  occurrences,
  openAt,
  rebootAllowed,
} from './window-schedule.ts'
import type { MaintenanceWindow } from './window-schema.ts'

/**
 * Property tests across DST changes. Each zone gets random windows (biased towards the hours
 * where clocks change) checked against references computed here independently: the local
 * wall clock read through Intl, the intended dates from plain calendar arithmetic, and open
 * time by brute force over the occurrence list.
 */

const MIN = 60_000
const DAY = 86_400_000
const WEEKDAYS = ['MO', 'TU', 'WE', 'TH', 'FR', 'SA', 'SU']

/** `dst`: which DST rules the range must exercise (a skipped time, a repeated one, both). */
const ZONES: { tz: string; from: string; to: string; dst: 'both' | 'skip' | 'repeat' | 'none' }[] = [
  { tz: 'Europe/Berlin', from: '2026-01-01', to: '2027-01-01', dst: 'both' },
  { tz: 'America/New_York', from: '2026-01-01', to: '2027-01-01', dst: 'both' },
  { tz: 'Australia/Sydney', from: '2026-01-01', to: '2027-01-01', dst: 'both' },
  { tz: 'Australia/Lord_Howe', from: '2026-01-01', to: '2027-01-01', dst: 'both' },
  { tz: 'Asia/Kolkata', from: '2026-01-01', to: '2027-01-01', dst: 'none' },
  // DST started at midnight until 2019, then was abolished.
  { tz: 'America/Sao_Paulo', from: '2018-01-01', to: '2020-01-01', dst: 'both' },
  // Rule changes: the last spring forward (2011) before "permanent summer time", then the move
  // from UTC+4 back to UTC+3 (2014), with no DST in between.
  { tz: 'Europe/Moscow', from: '2011-01-01', to: '2011-06-01', dst: 'skip' },
  { tz: 'Europe/Moscow', from: '2014-08-01', to: '2015-01-01', dst: 'repeat' },
]

const formatters = new Map<string, Intl.DateTimeFormat>()

/** Local wall clock `YYYY-MM-DDTHH:MM:SS` at an instant, straight from Intl. */
function wallAt(tz: string, ms: number): string {
  let f = formatters.get(tz)
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: tz,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
    })
    formatters.set(tz, f)
  }
  const p = Object.fromEntries(f.formatToParts(ms).map((x) => [x.type, x.value]))
  return `${p.year}-${p.month}-${p.day}T${String(Number(p.hour) % 24).padStart(2, '0')}:${p.minute}:${p.second}`
}

interface Spec {
  window: MaintenanceWindow
  /** Whether an occurrence is intended on this local date (`YYYY-MM-DD`). */
  onDate(date: string): boolean
  time: string
}

const pad = (n: number) => String(n).padStart(2, '0')

function randomSpec(rand: () => number, tz: string, from: string, i: number): Spec {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!
  const hour = rand() < 0.6 ? pick([0, 1, 2, 3, 23]) : Math.floor(rand() * 24)
  const minute = pick([0, 15, 30, 45, Math.floor(rand() * 60)])
  const durationMinutes = rand() < 0.8 ? 1 + Math.floor(rand() * 240) : 1 + Math.floor(rand() * 3 * 1440)
  const time = `${pad(hour)}:${pad(minute)}`
  const base = { id: `w${i}`, name: `w${i}`, timeZone: tz, durationMinutes, allowReboot: rand() < 0.5 }
  const dtstart = `${from}T00:00`
  const kind = pick(['weekly', 'daily', 'monthly', 'cron'] as const)
  if (kind === 'weekly' || kind === 'cron') {
    const days = [0, 1, 2, 3, 4, 5, 6].filter(() => rand() < 0.4)
    if (days.length === 0) days.push(6)
    const onDate = (date: string) => days.includes((new Date(`${date}T00:00Z`).getUTCDay() + 6) % 7)
    if (kind === 'cron') {
      const dow = days.map((d) => (d + 1) % 7).join(',')
      return { window: { ...base, recurrence: { cron: `${minute} ${hour} * * ${dow}` } }, onDate, time }
    }
    const rule = `FREQ=WEEKLY;BYDAY=${days.map((d) => WEEKDAYS[d]).join(',')};BYHOUR=${hour};BYMINUTE=${minute}`
    return { window: { ...base, recurrence: { rrule: rule, dtstart } }, onDate, time }
  }
  if (kind === 'daily') return dailySpec(tz, from, time, i, durationMinutes)
  const nth = pick([1, 2, 3, 4, -1, -2])
  const weekday = Math.floor(rand() * 7)
  const onDate = (date: string) => {
    const d = new Date(`${date}T00:00Z`)
    const length = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 0)).getUTCDate()
    const dom = d.getUTCDate()
    const okNth = nth > 0 ? Math.ceil(dom / 7) === nth : Math.ceil((length - dom + 1) / 7) === -nth
    return (d.getUTCDay() + 6) % 7 === weekday && okNth
  }
  const rule = `FREQ=MONTHLY;BYDAY=${nth}${WEEKDAYS[weekday]};BYHOUR=${hour};BYMINUTE=${minute}`
  return { window: { ...base, recurrence: { rrule: rule, dtstart } }, onDate, time }
}

function dailySpec(tz: string, from: string, time: string, i: number, durationMinutes = 60): Spec {
  const window: MaintenanceWindow = {
    id: `w${i}`,
    name: `w${i}`,
    timeZone: tz,
    recurrence: { rrule: 'FREQ=DAILY', dtstart: `${from}T${time}` },
    durationMinutes,
    allowReboot: i % 2 === 0,
  }
  return { window, onDate: () => true, time }
}

/** Maximal disjoint open intervals of several occurrence lists. */
function merge(lists: Occurrence[][]): { start: number; end: number }[] {
  const all = lists.flat().sort((a, b) => a.start - b.start)
  const out: { start: number; end: number }[] = []
  for (const o of all) {
    const last = out.at(-1)
    if (last && o.start <= last.end) last.end = Math.max(last.end, o.end)
    else out.push({ start: o.start, end: o.end })
  }
  return out
}

describe.each(ZONES)('DST properties in $tz from $from', ({ tz, from, to, dst }) => {
  const rand = seededRandom([...tz].reduce((h, c) => Math.imul(h, 31) + c.charCodeAt(0), 7))
  const fromMs = Date.parse(`${from}T00:00Z`)
  const toMs = Date.parse(`${to}T00:00Z`)
  // Random windows, plus daily ones at times that some zone here skips or repeats.
  const specs = [
    ...Array.from({ length: 12 }, (_, i) => randomSpec(rand, tz, from, i)),
    ...['00:30', '01:30', '01:45', '02:15', '02:30', '23:30'].map((time, i) => dailySpec(tz, from, time, 12 + i)),
  ]
  // Some windows get exclusions, and the property must drop exactly those dates.
  for (const s of specs.filter(() => rand() < 0.3)) {
    s.window.exclusions = Array.from({ length: 3 }, () => new Date(fromMs + 5 * DAY + Math.floor(rand() * 300) * DAY))
      .map((d) => d.toISOString().slice(0, 10))
      .filter((d, i, xs) => xs.indexOf(d) === i)
  }
  const lists = specs.map((s) => occurrences(s.window, fromMs, toMs, 10_000))

  it('occurrences start at the intended local time, or right after it when it was skipped', () => {
    let skipped = 0
    let repeated = 0
    specs.forEach((s, k) => {
      for (const o of lists[k]!) {
        const intended = `${o.local}:00`
        expect(o.local.slice(11)).toBe(s.time)
        const wall = wallAt(tz, o.start)
        if (wall === intended) {
          // repeated hour: it is the first of the two readings
          for (const back of [30, 60, 90, 120]) expect(wallAt(tz, o.start - back * MIN)).not.toBe(intended)
          if ([30, 60].some((ahead) => wallAt(tz, o.start + ahead * MIN) === intended)) repeated++
        } else {
          // skipped: the wall clock jumps over the intended time exactly at the start
          expect(wall > intended).toBe(true)
          expect(wallAt(tz, o.start - 1000) < intended).toBe(true)
          skipped++
        }
      }
    })
    // the zones with DST changes in range must really have exercised both rules
    expect({ skipped: skipped > 0, repeated: repeated > 0 }).toEqual({
      skipped: dst === 'both' || dst === 'skip',
      repeated: dst === 'both' || dst === 'repeat',
    })
  })

  it('occurrences fall on exactly the intended local dates, minus exclusions', () => {
    specs.forEach((s, k) => {
      const first = new Date(fromMs + 3 * DAY).toISOString().slice(0, 10)
      const last = new Date(toMs - 3 * DAY).toISOString().slice(0, 10)
      const got = lists[k]!.map((o) => o.local).filter((l) => l.slice(0, 10) >= first && l.slice(0, 10) <= last)
      const want: string[] = []
      for (let d = fromMs + 3 * DAY; d <= toMs - 3 * DAY; d += DAY) {
        const date = new Date(d).toISOString().slice(0, 10)
        if (s.onDate(date) && !s.window.exclusions?.includes(date)) want.push(`${date}T${s.time}`)
      }
      expect(got).toEqual(want)
    })
  })

  it('a window never overlaps itself and closes at the intended local wall-clock end (faults row 24)', () => {
    specs.forEach((s, k) => {
      const list = lists[k]!
      const duration = s.window.durationMinutes * MIN
      const tz = s.window.timeZone
      list.forEach((o, i) => {
        expect(o.start).toBeLessThan(o.end)
        const next = list[i + 1]
        if (next) expect(o.end).toBeLessThanOrEqual(next.start)
        if (next && o.end === next.start) return // cut by the next occurrence
        if (!next && o.end >= toMs) return // may be cut by a start beyond the listed range
        // DST shifts are at most two hours (Troll), so elapsed time stays near the duration.
        expect(Math.abs(o.end - o.start - duration)).toBeLessThanOrEqual(2 * 3_600_000)
        // The intended local end: local start + duration on the wall clock.
        const intended = new Date(Date.parse(`${o.local}:00Z`) + duration).toISOString().slice(0, 19)
        const wall = wallAt(tz, o.end)
        if (wall === intended) return
        if (o.end - o.start === duration && wallAt(tz, o.start - 1000) < o.local) return // wholly in a gap
        // Otherwise the intended end does not exist (a gap): the window closes when the gap ends.
        expect(wall > intended).toBe(true)
        expect(wallAt(tz, o.end - 1000) < intended).toBe(true)
      })
    })
  })

  it('openAt and nextOpening agree with the occurrence list by brute force', () => {
    specs.forEach((s, k) => {
      const list = lists[k]!
      const probes = Array.from({ length: 120 }, () => fromMs + Math.floor(rand() * (toMs - fromMs)))
      for (const o of list.filter(() => rand() < 0.05)) probes.push(o.start - 1, o.start, o.end - 1, o.end)
      for (const t of probes.filter((t) => t >= fromMs && t < toMs)) {
        const hit = list.find((o) => o.start <= t && t < o.end)
        expect(openAt(s.window, t)).toEqual(hit ? { open: true, start: hit.start, end: hit.end } : { open: false })
        const next = list.find((o) => o.start > t)
        if (next) expect(nextOpening(s.window, t)).toEqual(next)
      }
    })
  })

  it('canStartInstall never allows a run past the end of the open time, and nextInstallStart agrees', () => {
    for (let g = 0; g < 6; g++) {
      const chosen = [0, 1, 2].map(() => Math.floor(rand() * specs.length))
      const windows = chosen.map((i) => specs[i]!.window)
      const spans = merge(chosen.map((i) => lists[i]!))
      const rebootSpans = merge(chosen.filter((i) => specs[i]!.window.allowReboot).map((i) => lists[i]!))
      for (let p = 0; p < 60; p++) {
        const span = rand() < 0.7 ? spans[Math.floor(rand() * spans.length)] : undefined
        const t = span
          ? span.start + Math.floor(rand() * (span.end - span.start + MIN))
          : fromMs + DAY + Math.floor(rand() * (toMs - fromMs - 60 * DAY))
        const runSeconds = Math.floor(rand() * 6 * 3600)
        const containing = spans.find((x) => x.start <= t && t < x.end)
        const decision = canStartInstall(windows, t, runSeconds)
        if (!containing) expect(decision).toEqual({ ok: false, reason: 'closed' })
        else if (t + runSeconds * 1000 <= containing.end) expect(decision).toMatchObject({ ok: true })
        else expect(decision).toMatchObject({ ok: false, reason: 'run-exceeds-window', openUntil: containing.end })
        if (decision.ok) expect(t + runSeconds * 1000).toBeLessThanOrEqual(decision.openUntil!)

        const rebootSpan = rebootSpans.find((x) => x.start <= t && t < x.end)
        expect(rebootAllowed(windows, t).ok).toBe(rebootSpan !== undefined)

        const slot = spans.find((x) => x.end > t && x.end - Math.max(x.start, t) >= runSeconds * 1000)
        if (slot && slot.end < toMs - 10 * DAY) {
          const start = Math.max(slot.start, t)
          expect(nextInstallStart(windows, t, runSeconds)).toEqual({ start, openUntil: slot.end })
          expect(canStartInstall(windows, start, runSeconds).ok).toBe(true)
        }
      }
    }
  })
})
