/**
 * Query filters over audit records and the sequence window a query covers. A time range is
 * turned into a seq range by binary search over the records (O(log n) reads), which is exact
 * while record times do not decrease; every record is filtered on its own time as well, so a
 * clock stepped backwards can hide records near a boundary, never add wrong ones.
 */
import { ValidationError } from '../../shared/errors.ts'
import type { StateDb } from '../../shared/store/state-db.ts'
import { type ActorType, type AuditRecord, isAuditRecord, recordKey } from './audit-record.ts'

export interface AuditFilter {
  /** Inclusive lower time bound: ISO 8601 text or epoch milliseconds. */
  from?: string | number
  /** Inclusive upper time bound: ISO 8601 text or epoch milliseconds. */
  to?: string | number
  actorId?: string
  actorType?: ActorType
  /** `patch` matches `patch` and `patch.approve`, not `patchset.x`; `patch.` matches only below. */
  action?: string
  targetId?: string
  targetType?: string
}

export interface AuditQuery extends AuditFilter {
  /** `desc` (newest first, the default) or `asc`. */
  order?: 'asc' | 'desc'
  /** Records to return, 1..10,000; default 100. */
  limit?: number
  /** Continue after this seq in `order` (exclusive): pass the previous page's `next`. */
  afterSeq?: number
  /** Records to read at most before returning a partial page with `next`; default 50,000. */
  maxScan?: number
}

export function toMs(value: string | number | undefined, what: string): number | undefined {
  if (value === undefined) return undefined
  const ms = typeof value === 'number' ? value : Date.parse(value)
  if (!Number.isFinite(ms)) throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', `${what} is not a valid time`)
  return ms
}

/** A predicate for `filter` (time bounds included). */
export function compileFilter(filter: AuditFilter): (r: AuditRecord) => boolean {
  const fromMs = toMs(filter.from, 'from')
  const toMsBound = toMs(filter.to, 'to')
  const { actorId, actorType, action, targetId, targetType } = filter
  const actionMatches =
    action === undefined
      ? () => true
      : action.endsWith('.')
        ? (a: string) => a.startsWith(action)
        : (a: string) => a === action || a.startsWith(`${action}.`)
  return (r) => {
    if (actorId !== undefined && r.actor.id !== actorId) return false
    if (actorType !== undefined && r.actor.type !== actorType) return false
    if (targetId !== undefined && r.target.id !== targetId) return false
    if (targetType !== undefined && r.target.type !== targetType) return false
    if (!actionMatches(r.action)) return false
    if (fromMs !== undefined || toMsBound !== undefined) {
      const t = Date.parse(r.time)
      if (fromMs !== undefined && t < fromMs) return false
      if (toMsBound !== undefined && t > toMsBound) return false
    }
    return true
  }
}

/**
 * The seq range `[lo, hi]` that can hold matches of `query` in a log of `headSeq` records:
 * narrowed by `afterSeq` and by binary search on the time bounds.
 */
export async function seqWindow(
  db: StateDb,
  headSeq: number,
  query: AuditQuery,
  order: 'asc' | 'desc',
): Promise<[number, number]> {
  let lo = 1
  let hi = headSeq
  if (query.afterSeq !== undefined) {
    if (order === 'desc') hi = Math.min(hi, query.afterSeq - 1)
    else lo = Math.max(lo, query.afterSeq + 1)
  }
  const fromMs = toMs(query.from, 'from')
  const toMsBound = toMs(query.to, 'to')
  if (lo <= hi && fromMs !== undefined) lo = Math.max(lo, await firstSeqWhere(db, headSeq, (t) => t >= fromMs, 1))
  if (lo <= hi && toMsBound !== undefined) {
    hi = Math.min(hi, (await firstSeqWhere(db, headSeq, (t) => t > toMsBound, headSeq + 1)) - 1)
  }
  return [lo, hi]
}

/**
 * The smallest seq in 1..headSeq whose record time satisfies the monotone `pred`, headSeq + 1
 * when none does, or `fallback` when a record on the way is missing or malformed.
 */
async function firstSeqWhere(
  db: StateDb,
  headSeq: number,
  pred: (timeMs: number) => boolean,
  fallback: number,
): Promise<number> {
  let lo = 1
  let hi = headSeq + 1
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2)
    const record = await db.get<unknown>(recordKey(mid))
    if (!isAuditRecord(record)) return fallback
    if (pred(Date.parse(record.time))) hi = mid
    else lo = mid + 1
  }
  return lo
}
