/**
 * Range scans over `audit:rec:<16 digits>` with a StateDb that can only scan by prefix: a
 * range lo..hi is split into the few digit prefixes that cover exactly it (at most ~290,
 * typically a dozen), so reading from the middle of the log never walks its start.
 */
import type { StateDb } from '../../shared/store/state-db.ts'
import { AUDIT_RECORD_PREFIX, SEQ_DIGITS } from './audit-record.ts'

export const MAX_SEQ = Number.MAX_SAFE_INTEGER

/** Digit prefixes whose zero-padded completions are exactly `lo..hi`, in ascending order. */
export function seqPrefixes(lo: number, hi: number): string[] {
  const from = Math.max(0, Math.ceil(lo))
  const to = Math.min(MAX_SEQ, Math.floor(hi))
  if (from > to) return []
  const out: string[] = []
  cover(String(from).padStart(SEQ_DIGITS, '0'), String(to).padStart(SEQ_DIGITS, '0'), '', out)
  return out
}

/** `a <= b`, equally long digit strings: pushes the prefixes covering a..b below `prefix`. */
function cover(a: string, b: string, prefix: string, out: string[]): void {
  if (/^0*$/.test(a) && /^9*$/.test(b)) {
    out.push(prefix)
    return
  }
  const da = Number(a[0])
  const db = Number(b[0])
  const rest = a.length - 1
  if (da === db) {
    cover(a.slice(1), b.slice(1), prefix + da, out)
    return
  }
  cover(a.slice(1), '9'.repeat(rest), prefix + da, out)
  for (let d = da + 1; d < db; d++) out.push(prefix + d)
  cover('0'.repeat(rest), b.slice(1), prefix + db, out)
}

/** Records with `lo <= seq <= hi` in key order (or reversed), with their keys. */
export async function* scanSeqRange<T>(
  db: StateDb,
  lo: number,
  hi: number,
  options: { reverse?: boolean; signal?: AbortSignal } = {},
): AsyncIterable<[string, T]> {
  const reverse = options.reverse ?? false
  const prefixes = seqPrefixes(lo, hi)
  if (reverse) prefixes.reverse()
  for (const prefix of prefixes) {
    options.signal?.throwIfAborted()
    yield* db.iterate<T>(AUDIT_RECORD_PREFIX + prefix, { reverse })
  }
}
