import { createHash } from 'node:crypto'
import { ValidationError } from '../errors.ts'
import { cronStarts, parseCron } from './window-cron.ts'
import { parseRRule, rruleStarts } from './window-rrule.ts'
import { isRRuleRecurrence, type MaintenanceWindow, parseMaintenanceWindow } from './window-schema.ts'
import { DAY_MS, dayOf, formatFloating, MINUTE_MS, parseFloating, type Zone, zoneFor } from './window-zone.ts'

/**
 * Maintenance-window arithmetic. Pure: windows and epoch-millisecond instants in, plain data
 * out; the caller supplies "now" (from its injected clock).
 *
 * An occurrence starts at the intended local wall-clock time (a skipped time → the first
 * instant after the gap; a repeated time → the first of the two) and closes at the intended
 * local end, start + `durationMinutes` on the wall clock (same rules), `[start, end)`: on a
 * DST night a window is an hour shorter or longer in elapsed time, but opens and closes when
 * the clock on the wall says. A window wholly inside a skipped hour runs for its duration
 * from the end of the gap. An occurrence never overlaps the next one
 * of the same window: it is cut at the next start (which keeps the open time unchanged), and two
 * local starts that land on the same instant are one occurrence. Several windows: the union.
 */

export interface Occurrence {
  /** Real start instant (epoch ms). */
  start: number
  /** Exclusive end instant: start + duration, or the next occurrence's start if earlier. */
  end: number
  /** The intended local wall-clock start, `YYYY-MM-DDTHH:MM` (before any DST shift). */
  local: string
}

export interface OpenState {
  open: boolean
  start?: number
  end?: number
}

export type WindowRefusal = 'no-windows' | 'closed' | 'run-exceeds-window' | 'reboot-not-allowed'

export interface WindowDecision {
  ok: boolean
  /** The open window that reaches furthest, when one is open. */
  window?: MaintenanceWindow
  reason?: WindowRefusal
  /** Where the open time containing the instant ends (union of windows). Exact when refused;
   * when ok it is at least the instant plus the run time. */
  openUntil?: number
}

export interface InstallSlot {
  /** The earliest instant at which the install may start. */
  start: number
  /** End of the open time (union of windows) containing `start`. */
  openUntil: number
}

export interface SpreadOptions {
  /** End of the window the start must stay in. */
  endMs?: number
  /** With `endMs`: the start is never later than `endMs - maxRunSeconds`. */
  maxRunSeconds?: number
  /** Mixed into the hash (e.g. a rollout id) so the same device is not always first. */
  salt?: string
}

/** How far nextOpening and nextInstallStart look ahead. */
export const WINDOW_LOOKAHEAD_MS = 5 * 366 * DAY_MS
export const MAX_OCCURRENCES = 10_000

interface Compiled {
  zone: Zone
  durationMs: number
  excludedDays: Set<number>
  untilUtc: number
  starts(from: number, limit: number): Iterable<number>
}

// Compiled forms per window object (weak; windows are treated as immutable).
const compiledCache = new WeakMap<MaintenanceWindow, Compiled>()

function compile(window: MaintenanceWindow): Compiled {
  let c = compiledCache.get(window)
  if (c) return c
  const w = parseMaintenanceWindow(window)
  const r = w.recurrence
  const excludedDays = new Set((w.exclusions ?? []).map((d) => dayOf(parseFloating(d)!)))
  const base = { zone: zoneFor(w.timeZone), durationMs: w.durationMinutes * MINUTE_MS, excludedDays }
  if (isRRuleRecurrence(r)) {
    const rule = parseRRule(r.rrule)
    const dtstart = parseFloating(r.dtstart)!
    const untilUtc = rule.until?.kind === 'utc' ? rule.until.instant : Number.POSITIVE_INFINITY
    c = { ...base, untilUtc, starts: (from, limit) => rruleStarts(rule, dtstart, from, limit) }
  } else {
    const cron = parseCron(r.cron)
    c = { ...base, untilUtc: Number.POSITIVE_INFINITY, starts: (from, limit) => cronStarts(cron, from, limit) }
  }
  compiledCache.set(window, c)
  return c
}

/** Instants are epoch ms in 1970..2200 (what Intl handles and a patch window can mean). */
const MAX_INSTANT = Date.UTC(2200, 0, 1)

function assertInstant(name: string, value: number): void {
  if (!Number.isFinite(value) || value < 0 || value > MAX_INSTANT) {
    throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', `${name} must be epoch ms in 1970..2200, got ${value}`)
  }
}

function assertSeconds(name: string, value: number): number {
  if (!Number.isFinite(value) || value < 0) {
    throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', `${name} must be a non-negative number, got ${value}`)
  }
  return value * 1000
}

/** Occurrences that are open at some instant of `[fromMs, limitMs)`, ascending. */
function* iterate(window: MaintenanceWindow, fromMs: number, limitMs: number): Generator<Occurrence> {
  const c = compile(window)
  // Slack: a start may move by a DST gap (up to a day, Pacific/Apia 2011) and an occurrence
  // that started a duration earlier may still be open.
  const from = c.zone.floatingOf(fromMs) - c.durationMs - 2 * DAY_MS
  const limit = c.zone.floatingOf(limitMs) + c.durationMs + 2 * DAY_MS
  let prev: { start: number; floating: number } | undefined
  // The intended local end (start + duration on the wall clock), as an instant: the window
  // closes at the local time it says, also on DST nights (faults.md row 24). A window that
  // lies wholly inside a skipped hour runs for its duration from the end of the gap instead.
  const endOf = (p: { start: number; floating: number }): number => {
    const end = c.zone.instantOf(p.floating + c.durationMs)
    return end > p.start ? end : p.start + c.durationMs
  }
  const emit = (p: { start: number; floating: number }, end: number): Occurrence | undefined =>
    end > fromMs && p.start < limitMs && end > p.start
      ? { start: p.start, end, local: formatFloating(p.floating) }
      : undefined
  for (const floating of c.starts(from, limit)) {
    if (c.excludedDays.has(dayOf(floating))) continue
    const start = c.zone.instantOf(floating)
    if (start > c.untilUtc) break
    if (prev && start <= prev.start) continue // same instant as the previous start: one occurrence
    if (prev) {
      const o = emit(prev, Math.min(endOf(prev), start))
      if (o) yield o
    }
    if (start >= limitMs) return
    prev = { start, floating }
  }
  if (prev) {
    const o = emit(prev, endOf(prev))
    if (o) yield o
  }
}

/**
 * The occurrences of `window` open at some instant of `[fromMs, toMs)` (so one that started
 * before `fromMs` and is still open is included), ascending, at most `limit`.
 */
export function occurrences(window: MaintenanceWindow, fromMs: number, toMs: number, limit = 1000): Occurrence[] {
  assertInstant('fromMs', fromMs)
  assertInstant('toMs', toMs)
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_OCCURRENCES) {
    throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', `limit must be 1..${MAX_OCCURRENCES}, got ${limit}`)
  }
  const out: Occurrence[] = []
  if (toMs <= fromMs) return out
  for (const o of iterate(window, fromMs, toMs)) {
    out.push(o)
    if (out.length >= limit) break
  }
  return out
}

/** Whether `window` is open at `ms`, and if so the occurrence `[start, end)` containing it. */
export function openAt(window: MaintenanceWindow, ms: number): OpenState {
  assertInstant('ms', ms)
  for (const o of iterate(window, ms, ms + 1)) {
    if (o.start <= ms && ms < o.end) return { open: true, start: o.start, end: o.end }
  }
  return { open: false }
}

/** The first occurrence that starts strictly after `ms` (within five years), or undefined. */
export function nextOpening(window: MaintenanceWindow, ms: number): Occurrence | undefined {
  assertInstant('ms', ms)
  for (const o of iterate(window, ms, ms + WINDOW_LOOKAHEAD_MS)) {
    if (o.start > ms) return o
  }
  return undefined
}

/** The open time of several windows as maximal disjoint intervals, ascending. */
function* union(
  windows: MaintenanceWindow[],
  fromMs: number,
  limitMs: number,
): Generator<{ start: number; end: number }> {
  const iterators = windows.map((w) => iterate(w, fromMs, limitMs))
  const heads = iterators.map((it) => it.next())
  let current: { start: number; end: number } | undefined
  for (;;) {
    let best = -1
    heads.forEach((h, i) => {
      if (!h.done && (best < 0 || h.value.start < (heads[best]!.value as Occurrence).start)) best = i
    })
    if (best < 0) break
    const o = heads[best]!.value as Occurrence
    heads[best] = iterators[best]!.next()
    if (current && o.start <= current.end) current.end = Math.max(current.end, o.end)
    else {
      if (current) yield current
      current = { start: o.start, end: o.end }
    }
  }
  if (current) yield current
}

function decide(
  windows: MaintenanceWindow[],
  eligible: MaintenanceWindow[],
  ms: number,
  runMs: number,
): WindowDecision {
  if (windows.length === 0) return { ok: false, reason: 'no-windows' }
  const open = windows.map((w) => ({ w, state: openAt(w, ms) })).filter((x) => x.state.open)
  if (open.length === 0) return { ok: false, reason: 'closed' }
  const usable = open.filter((x) => eligible.includes(x.w))
  if (usable.length === 0) return { ok: false, window: open[0]!.w, reason: 'reboot-not-allowed' }
  const window = usable.reduce((a, b) => (b.state.end! > a.state.end! ? b : a)).w
  // The first span of the eligible union contains ms: an eligible window is open there.
  const first = union(eligible, ms, ms + runMs + 1).next()
  const openUntil = first.done ? ms : first.value.end
  return openUntil - ms >= runMs
    ? { ok: true, window, openUntil }
    : { ok: false, window, reason: 'run-exceeds-window', openUntil }
}

/**
 * Whether an install declared to run at most `maxRunSeconds` may start at `ms`: some window is
 * open and the open time (union of `windows`) lasts at least until `ms + maxRunSeconds`.
 * No windows means never: whether a group without windows installs any time is the caller's
 * policy, as is the emergency bypass.
 */
export function canStartInstall(windows: MaintenanceWindow[], ms: number, maxRunSeconds: number): WindowDecision {
  assertInstant('ms', ms)
  return decide(windows, windows, ms, assertSeconds('maxRunSeconds', maxRunSeconds))
}

/**
 * Whether a device may reboot at `ms`: a window that allows reboots is open (and, with
 * `rebootSeconds`, the reboot-allowing windows stay open that long).
 */
export function rebootAllowed(windows: MaintenanceWindow[], ms: number, rebootSeconds = 0): WindowDecision {
  assertInstant('ms', ms)
  const runMs = assertSeconds('rebootSeconds', rebootSeconds)
  return decide(
    windows,
    windows.filter((w) => w.allowReboot),
    ms,
    runMs,
  )
}

/**
 * The maximal open span of the union of `windows` that contains `ms` (`start <= ms < end`),
 * or undefined when none is open. `start` is the same for every `ms` inside the span (earlier
 * occurrences that chain into it are followed back), so it is a stable base for spreadStart.
 */
export function openSpanAt(windows: MaintenanceWindow[], ms: number): { start: number; end: number } | undefined {
  assertInstant('ms', ms)
  const first = union(windows, ms, ms + 1).next()
  if (first.done || first.value.start > ms || first.value.end <= ms) return undefined
  const span = { ...first.value }
  // Occurrences that ended before `ms` but overlapped (or touched) the span's start.
  for (let i = 0; i < MAX_OCCURRENCES && span.start > 0; i++) {
    const before = union(windows, span.start - 1, span.start).next()
    if (before.done || before.value.start >= span.start) break
    span.start = before.value.start
  }
  return span
}

/**
 * The earliest instant `>= ms` at which canStartInstall would say yes, and where that open time
 * ends; undefined when there is none within five years.
 */
export function nextInstallStart(
  windows: MaintenanceWindow[],
  ms: number,
  maxRunSeconds: number,
): InstallSlot | undefined {
  assertInstant('ms', ms)
  const runMs = assertSeconds('maxRunSeconds', maxRunSeconds)
  for (const span of union(windows, ms, ms + WINDOW_LOOKAHEAD_MS)) {
    const start = Math.max(span.start, ms)
    if (span.end - start >= runMs && span.end > start) return { start, openUntil: span.end }
  }
  return undefined
}

/**
 * A start instant in `[baseMs, baseMs + spreadSeconds)` chosen by a hash of `deviceId` (and
 * `salt`), so a fleet does not start in the same second and each device always gets the same
 * answer. With `endMs` the start is never after `endMs - maxRunSeconds` (the spread shrinks to
 * fit); undefined when even `baseMs` is too late.
 */
export function spreadStart(
  baseMs: number,
  spreadSeconds: number,
  deviceId: string,
  options: SpreadOptions = {},
): number | undefined {
  assertInstant('baseMs', baseMs)
  const spreadMs = Math.floor(assertSeconds('spreadSeconds', spreadSeconds))
  if (deviceId.length === 0) throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', 'deviceId must not be empty')
  let span = spreadMs
  if (options.endMs !== undefined) {
    assertInstant('endMs', options.endMs)
    const latest = options.endMs - assertSeconds('maxRunSeconds', options.maxRunSeconds ?? 0)
    if (latest < baseMs) return undefined
    span = Math.min(spreadMs, Math.floor(latest - baseMs) + 1)
  }
  if (span <= 1) return baseMs
  const digest = createHash('sha256')
    .update(`patchswarm-spread\0${options.salt ?? ''}\0${deviceId}`)
    .digest()
  return baseMs + Math.floor((digest.readUIntBE(0, 6) / 2 ** 48) * span)
}
