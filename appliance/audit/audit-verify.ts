/**
 * Checks a stretch of the stored chain: every record well-formed, under its own key, hashing
 * to its `hash`, linked to its predecessor; for a stretch that ends at the head also that the
 * newest record is the head and that nothing follows it. Reads sequentially, memory O(1).
 */
import type { StateDb } from '../../shared/store/state-db.ts'
import {
  AUDIT_HEAD_KEY,
  type AuditBreakReason,
  type AuditHead,
  type AuditRecord,
  checkLink,
  GENESIS_HASH,
  isAuditRecord,
  recordKey,
  seqOfKey,
} from './audit-record.ts'
import { scanSeqRange } from './seq-range.ts'

export type AuditVerifyResult =
  | { ok: true; checked: number; head: { seq: number; hash: string } }
  | {
      ok: false
      /** The first seq found wrong (for a deletion: the missing one). */
      brokenAt: number
      reason: AuditBreakReason
      message: string
      checked: number
      head: { seq: number; hash: string }
    }

export interface VerifyRange {
  from: number
  to: number
  head: AuditHead
  /** Given when the range ends at the head: the highest seq holding a record (0 for none). */
  highestAfterHead?: (() => Promise<number>) | undefined
  signal?: AbortSignal | undefined
}

export async function verifyChain(db: StateDb, range: VerifyRange): Promise<AuditVerifyResult> {
  const { from, to, head, highestAfterHead, signal } = range
  const headView = { seq: head.seq, hash: head.hash }
  let checked = 0
  const broken = (brokenAt: number, reason: AuditBreakReason, message: string): AuditVerifyResult => ({
    ok: false,
    brokenAt,
    reason,
    message,
    checked,
    head: headView,
  })
  let prev: { seq: number; hash: string } = { seq: 0, hash: GENESIS_HASH }
  if (from > 1) {
    const anchor = await db.get<unknown>(recordKey(from - 1))
    if (anchor === undefined) return broken(from - 1, 'missing', `seq ${from - 1} is missing`)
    if (!isAuditRecord(anchor)) return broken(from - 1, 'malformed', 'not a well-formed v1 audit record')
    prev = { seq: from - 1, hash: anchor.hash }
  }
  let expected = from
  if (from <= to) {
    for await (const [key, record] of scanSeqRange<unknown>(db, from, to, { signal })) {
      signal?.throwIfAborted()
      const keySeq = seqOfKey(key)
      if (keySeq === undefined) return broken(expected, 'malformed', `malformed key ${JSON.stringify(key)}`)
      if (keySeq !== expected) return broken(expected, 'missing', `seq ${expected} is missing`)
      const fault = checkLink(record, keySeq, prev)
      if (fault) return broken(keySeq, fault.reason, fault.message)
      prev = { seq: keySeq, hash: (record as AuditRecord).hash }
      expected++
      checked++
    }
    if (expected <= to) return broken(expected, 'missing', `seq ${expected} is missing`)
  }
  if (highestAfterHead !== undefined) {
    if (prev.seq !== head.seq || prev.hash !== head.hash) {
      return broken(head.seq, 'head-mismatch', `the newest record does not match ${AUDIT_HEAD_KEY}`)
    }
    if ((await highestAfterHead()) > head.seq) {
      return broken(head.seq + 1, 'beyond-head', 'a record exists after the head')
    }
  }
  return { ok: true, checked, head: headView }
}
