/**
 * Keeps the `report` request inside the control protocol's request frame (256 KiB) however
 * many bundles it lists (at most 256) and whatever their texts hold. Pure.
 *
 * Counting characters is not enough: JSON escapes a control character as `\u00XX` (6 bytes)
 * and UTF-8 takes up to 3 bytes per UTF-16 unit, so 256 error messages of 400 characters could
 * take 600 KB. So:
 *
 * 1. every text is cleaned (control characters other than newline and tab become spaces, lone
 *    surrogates U+FFFD: at most 3 bytes per unit) and cut to its own length — error message
 *    400 (head), `detail` 200 (head), health log and installer/rollback log 2000 (tail: the end
 *    of a log says what went wrong); the refused message 2000;
 * 2. the report without any of these bundle texts (the fixed part) is measured, and what the
 *    budget leaves is shared among the bundles by water-filling: no bundle gets more than it
 *    needs, and none less than an equal share of the whole;
 * 3. each bundle spends its share on its texts in order of use: the error message, the
 *    detail, the health log, the log. A cut text ends (or, for logs, starts) with `…`.
 *
 * The full texts stay in the agent's log.
 */
import {
  type AgentReportT,
  type BundleReportT,
  MAX_CONTROL_REQUEST_BYTES,
  MAX_REPORT_DETAIL_CHARS,
  MAX_REPORT_LOG_CHARS,
} from '../shared/protocol/control-protocol.ts'

/** Error messages are cut to this many characters (the head). */
export const REPORT_ERROR_CHARS = 400
/** The refused assignment's or manifest's message (schema limit). */
export const REPORT_REFUSED_CHARS = 2000
/** What the encoded request (`{"op":"report","report":…}`) may take: the frame minus some slack. */
export const REPORT_BUDGET_BYTES = MAX_CONTROL_REQUEST_BYTES - 1024

const ELLIPSIS = '…'
const ELLIPSIS_BYTES = 3

/**
 * Replaces what JSON would escape as `\uXXXX` (control characters except newline and tab) with
 * a space and lone surrogates with U+FFFD, so no unit costs more than 3 bytes in the report.
 * Keeps the length in UTF-16 units.
 */
export function cleanText(s: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it replaces
  return s.replace(/[\u0000-\u0008\u000b-\u001f]/g, ' ').toWellFormed()
}

/** Bytes that the UTF-16 unit at `i` (with its pair) adds inside a JSON string, and units it spans. */
function unitCost(s: string, i: number): [bytes: number, units: number] {
  const c = s.charCodeAt(i)
  if (c === 0x22 || c === 0x5c || c === 0x0a || c === 0x09 || c === 0x0d || c === 0x08 || c === 0x0c) return [2, 1]
  if (c < 0x20) return [6, 1]
  if (c < 0x80) return [1, 1]
  if (c < 0x800) return [2, 1]
  if (c >= 0xd800 && c <= 0xdbff) {
    const d = s.charCodeAt(i + 1)
    if (d >= 0xdc00 && d <= 0xdfff) return [4, 2]
    return [6, 1]
  }
  if (c >= 0xdc00 && c <= 0xdfff) return [6, 1]
  return [3, 1]
}

/** Bytes of `s` inside a JSON string (without the quotes), as `JSON.stringify` writes it. */
export function jsonTextBytes(s: string): number {
  let n = 0
  for (let i = 0; i < s.length; ) {
    const [bytes, units] = unitCost(s, i)
    n += bytes
    i += units
  }
  return n
}

/** Where to cut `s` to keep at most `maxUnits` units from the start without splitting a pair. */
function headUnits(s: string, maxUnits: number): number {
  if (maxUnits >= s.length) return s.length
  const c = s.charCodeAt(maxUnits - 1)
  return c >= 0xd800 && c <= 0xdbff ? maxUnits - 1 : maxUnits
}

/**
 * The head of `s` in at most `maxChars` UTF-16 units and `maxBytes` JSON bytes, ending with
 * `…` when it was cut (`''` when not even that fits).
 */
export function cutHead(s: string, maxChars: number, maxBytes = Number.POSITIVE_INFINITY): string {
  if (s.length <= maxChars && jsonTextBytes(s) <= maxBytes) return s
  const budget = maxBytes - ELLIPSIS_BYTES
  if (budget < 0 || maxChars < 1) return ''
  const limit = headUnits(s, maxChars - 1)
  let used = 0
  let i = 0
  while (i < limit) {
    const [bytes, units] = unitCost(s, i)
    if (used + bytes > budget || i + units > limit) break
    used += bytes
    i += units
  }
  return s.slice(0, i) + ELLIPSIS
}

/**
 * The tail of `s` in at most `maxChars` UTF-16 units and `maxBytes` JSON bytes, starting with
 * `…` when it was cut (`''` when not even that fits).
 */
export function cutTail(s: string, maxChars: number, maxBytes = Number.POSITIVE_INFINITY): string {
  if (s.length <= maxChars && jsonTextBytes(s) <= maxBytes) return s
  const budget = maxBytes - ELLIPSIS_BYTES
  if (budget < 0 || maxChars < 1) return ''
  // Walk back from the end; a low surrogate is taken together with its high one.
  const floor = s.length - (maxChars - 1)
  let used = 0
  let i = s.length
  while (i > floor) {
    const c = s.charCodeAt(i - 1)
    const pair = c >= 0xdc00 && c <= 0xdfff && i >= 2 && s.charCodeAt(i - 2) >= 0xd800 && s.charCodeAt(i - 2) <= 0xdbff
    const start = pair ? i - 2 : i - 1
    if (start < floor) break
    const [bytes] = unitCost(s, start)
    if (used + bytes > budget) break
    used += bytes
    i = start
  }
  return ELLIPSIS + s.slice(i)
}

/** The texts of one bundle report, in the order they get the bundle's byte share. */
type TextSlot = 'message' | 'detail' | 'health' | 'log'
const SLOTS: readonly TextSlot[] = ['message', 'detail', 'health', 'log']

function textOf(b: BundleReportT, slot: TextSlot): string | undefined {
  if (slot === 'message') return b.error?.message
  if (slot === 'detail') return b.detail
  if (slot === 'health') return b.health?.log
  return b.log
}

function withText(b: BundleReportT, slot: TextSlot, text: string): BundleReportT {
  if (slot === 'message') return b.error ? { ...b, error: { ...b.error, message: text } } : b
  if (slot === 'detail') return b.detail === undefined ? b : { ...b, detail: text }
  if (slot === 'health') return b.health ? { ...b, health: { ...b.health, log: text } } : b
  return b.log === undefined ? b : { ...b, log: text }
}

/** Step 1: cleaned and cut to each field's own length. */
function capTexts(b: BundleReportT): BundleReportT {
  let out = b
  for (const slot of SLOTS) {
    const text = textOf(out, slot)
    if (text === undefined) continue
    const clean = cleanText(text)
    const capped =
      slot === 'message'
        ? cutHead(clean, REPORT_ERROR_CHARS)
        : slot === 'detail'
          ? cutHead(clean, MAX_REPORT_DETAIL_CHARS)
          : cutTail(clean, MAX_REPORT_LOG_CHARS)
    out = withText(out, slot, capped)
  }
  return out
}

const requestBytes = (report: AgentReportT) => Buffer.byteLength(JSON.stringify({ op: 'report', report }), 'utf8')

/**
 * Equal shares of `available` bytes, but nobody gets more than it asks for: what the modest
 * ones leave goes to the others (water-filling).
 */
export function waterFill(demands: readonly number[], available: number): number[] {
  const grants = new Array<number>(demands.length).fill(0)
  const order = demands.map((d, i) => [d, i] as const).sort((a, b) => a[0] - b[0])
  let left = Math.max(0, available)
  order.forEach(([demand, i], k) => {
    const share = Math.floor(left / (order.length - k))
    grants[i] = Math.min(demand, share)
    left -= grants[i]!
  })
  return grants
}

/** The report, with its texts cut so that the encoded `report` request takes at most `maxBytes`. */
export function fitReport(report: AgentReportT, maxBytes = REPORT_BUDGET_BYTES): AgentReportT {
  const refused = report.refused && {
    code: report.refused.code,
    message: cutHead(cleanText(report.refused.message), REPORT_REFUSED_CHARS),
  }
  const capped = report.bundles.map(capTexts)
  const base: AgentReportT = { ...report, ...(refused ? { refused } : {}) }
  const skeleton: AgentReportT = {
    ...base,
    bundles: capped.map((b) => SLOTS.reduce((acc, slot) => withText(acc, slot, ''), b)),
  }
  const demands = capped.map((b) => SLOTS.reduce((n, slot) => n + jsonTextBytes(textOf(b, slot) ?? ''), 0))
  const grants = waterFill(demands, maxBytes - requestBytes(skeleton))
  const bundles = capped.map((b, i) => {
    let left = grants[i]!
    let out = b
    for (const slot of SLOTS) {
      const text = textOf(out, slot)
      if (text === undefined) continue
      const cut =
        slot === 'message' || slot === 'detail' ? cutHead(text, text.length, left) : cutTail(text, text.length, left)
      left -= jsonTextBytes(cut)
      out = withText(out, slot, cut)
    }
    return out
  })
  return { ...base, bundles }
}
