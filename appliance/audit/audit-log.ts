/**
 * The appliance's audit log: append-only, hash-chained records of every operator action and
 * state change, in the state database (key layout and hash rule in audit-record.ts).
 *
 * Records are never updated or deleted through this API. Retention (pruning old records,
 * which would need a signed checkpoint to anchor the remaining chain) is out of scope.
 * The chain shows edits, deletions, reordering and insertions made by anyone who did not
 * recompute every later hash; someone who can write the database and rewrite the whole tail
 * is only caught by comparing the head with a copy kept elsewhere (see `head()`).
 */
import { AsyncLocalStorage } from 'node:async_hooks'
import type { Clock } from '../../shared/clock.ts'
import { StateError, StoreError, ValidationError } from '../../shared/errors.ts'
import type { Logger } from '../../shared/log.ts'
import { Mutex } from '../../shared/store/mutex.ts'
import type { StateBatchOp, StateDb } from '../../shared/store/state-db.ts'
import { boundReason, boundValue } from './audit-bounds.ts'
import { type AuditExportFormat, csvHeader, csvRow, jsonlRow } from './audit-export.ts'
import { type AuditFilter, type AuditQuery, compileFilter, seqWindow } from './audit-query.ts'
import {
  AUDIT_FORMAT_VERSION,
  AUDIT_HEAD_KEY,
  AUDIT_RECORD_PREFIX,
  type AuditEntry,
  type AuditHead,
  type AuditRecord,
  auditEntryChecker,
  GENESIS_HASH,
  hashRecord,
  headChecker,
  isAuditRecord,
  recordKey,
  seqOfKey,
} from './audit-record.ts'
import { type AuditVerifyResult, verifyChain } from './audit-verify.ts'
import { MAX_SEQ, scanSeqRange } from './seq-range.ts'

export type { AuditVerifyResult }

export interface AuditLogComponents {
  db: StateDb
  clock: Clock
  log: Logger
}

export interface AuditLogInit {
  /** Newest records that `start()` checks; default 256. */
  startupCheck?: number
  /** `start()` throws PSW_ERR_AUDIT_CHAIN on a broken chain instead of logging it; default false. */
  refuseBroken?: boolean
}

export interface AuditPage {
  records: AuditRecord[]
  /** Present when more records may follow: pass it as `afterSeq` for the next page. */
  next?: number
}

interface Section {
  /** The head the next `appendOps` in this section builds on. */
  pending: AuditHead
  /** Whether the database head may have moved (re-read when the section ends). */
  dirty: boolean
  closed: boolean
  /** Orders `append` writes made concurrently inside one section. */
  writes: Mutex
}

const EXPORT_CHUNK = 64 << 10
const EMPTY_HEAD: AuditHead = { v: AUDIT_FORMAT_VERSION, seq: 0, hash: GENESIS_HASH }

export class AuditLog {
  readonly #db: StateDb
  readonly #clock: Clock
  readonly #log: Logger
  readonly #init: AuditLogInit
  readonly #lock = new Mutex()
  readonly #section = new AsyncLocalStorage<Section>()
  #head: AuditHead | undefined
  #started = false
  #startupResult: AuditVerifyResult | undefined

  constructor(components: AuditLogComponents, init: AuditLogInit = {}) {
    this.#db = components.db
    this.#clock = components.clock
    this.#log = components.log.child({ component: 'appliance:audit' })
    this.#init = init
  }

  /** Loads the head and checks the newest records (and that nothing follows the head). */
  async start(): Promise<void> {
    if (this.#started) return
    await this.#lock.runExclusive(async () => {
      const head = await this.#loadHead()
      this.#head = head
      const from = Math.max(1, head.seq - (this.#init.startupCheck ?? 256) + 1)
      const result = await verifyChain(this.#db, {
        from,
        to: head.seq,
        head,
        highestAfterHead: () => this.#highestSeq(),
      })
      this.#startupResult = result
      if (!result.ok) {
        this.#log.error({ brokenAt: result.brokenAt, reason: result.reason }, `audit chain broken: ${result.message}`)
        if (this.#init.refuseBroken) {
          throw new StoreError('PSW_ERR_AUDIT_CHAIN', `audit log broken at seq ${result.brokenAt}: ${result.message}`, {
            details: { brokenAt: result.brokenAt, reason: result.reason },
          })
        }
        // Never overwrite what is there: new records go after the highest one found (and the
        // break stays visible: the next record does not link to it).
        const highest = await this.#highestSeq()
        if (highest > head.seq) this.#head = { ...head, seq: highest }
      }
      this.#started = true
      this.#log.debug({ seq: this.#head.seq }, 'audit log started')
    })
  }

  /** Waits for running appends; later appends fail. Idempotent. */
  async stop(): Promise<void> {
    await this.#lock.runExclusive(() => {
      this.#started = false
    })
  }

  /** The newest record's seq and hash: keep a copy elsewhere to detect a rewritten tail. */
  head(): { seq: number; hash: string } {
    const head = this.#head ?? EMPTY_HEAD
    return { seq: head.seq, hash: head.hash }
  }

  /** The result of the check `start()` ran. */
  startupCheck(): AuditVerifyResult | undefined {
    return this.#startupResult
  }

  /**
   * Runs `fn` holding the audit lock, which `appendOps` requires. Re-entrant: `append` and
   * `exclusive` inside `fn` join the running section.
   */
  async exclusive<T>(fn: () => T | Promise<T>): Promise<T> {
    if (this.#inSection()) return fn()
    return this.#lock.runExclusive(async () => {
      this.#assertStarted()
      const section: Section = { pending: await this.#nextFreeHead(), dirty: false, closed: false, writes: new Mutex() }
      try {
        return await this.#section.run(section, fn)
      } finally {
        section.closed = true
        // fn's outcome stands whatever happens here: its batch may well have been written.
        if (section.dirty)
          await this.#reloadHead().catch((err: unknown) => this.#log.error({ err }, 'audit head reload failed'))
      }
    })
  }

  /**
   * Builds the next record and the operations that store it (record and head) without
   * writing, so that the record commits in the same atomic batch as the state change it
   * describes:
   *
   *     await audit.exclusive(async () => {
   *       const { ops } = audit.appendOps({ actor, action: 'rollout.advance', target, before, after })
   *       await db.batch([...stateOps, ...ops])
   *     })
   *
   * Contract: call it only inside `exclusive()` (else PSW_ERR_INTERNAL), since seq and
   * prevHash come from the head; write the ops before `fn` returns; several records in one
   * section chain on each other, so write all of them, in order, or none. An unwritten batch
   * changes nothing: the head is re-read from the database when the section ends.
   */
  appendOps(entry: AuditEntry): { record: AuditRecord; ops: StateBatchOp[] } {
    const section = this.#section.getStore()
    if (section === undefined || section.closed) {
      throw new StateError('PSW_ERR_INTERNAL', 'AuditLog.appendOps() called outside audit.exclusive()')
    }
    const record = this.#build(entry, section.pending)
    section.pending = { v: AUDIT_FORMAT_VERSION, seq: record.seq, hash: record.hash, time: record.time }
    section.dirty = true
    return {
      record,
      ops: [
        { type: 'put', key: recordKey(record.seq), value: record },
        { type: 'put', key: AUDIT_HEAD_KEY, value: section.pending },
      ],
    }
  }

  /** Appends one record durably (record and head in one synced batch). */
  append(entry: AuditEntry): Promise<AuditRecord> {
    return this.exclusive(() => {
      const section = this.#section.getStore()!
      return section.writes.runExclusive(async () => {
        const alone = !section.dirty
        const { record, ops } = this.appendOps(entry)
        await this.#db.batch(ops)
        if (alone) {
          // Nothing else in this section touched the head: no need to re-read it.
          this.#head = section.pending
          section.dirty = false
        }
        return record
      })
    })
  }

  /** One page of records matching `query`, newest first unless `order: 'asc'`. */
  async query(query: AuditQuery = {}, options: { signal?: AbortSignal } = {}): Promise<AuditPage> {
    const limit = positiveInt(query.limit ?? 100, 'limit', 10_000)
    const maxScan = positiveInt(query.maxScan ?? 50_000, 'maxScan', MAX_SEQ)
    if (query.afterSeq !== undefined) positiveInt(query.afterSeq, 'afterSeq', MAX_SEQ)
    const records: AuditRecord[] = []
    let scanned = 0
    for await (const { seq, record } of this.#scan(query, query.order ?? 'desc', options.signal)) {
      scanned++
      if (record !== undefined) records.push(record)
      if (records.length >= limit || scanned >= maxScan) return { records, next: seq }
    }
    return { records }
  }

  /**
   * Streams the matching records (oldest first unless `order: 'desc'`) as JSONL or CSV text
   * chunks of about 64 KiB; memory stays bounded whatever the log's size.
   */
  async *export(
    format: AuditExportFormat,
    filter: AuditFilter & { order?: 'asc' | 'desc'; limit?: number } = {},
    options: { signal?: AbortSignal } = {},
  ): AsyncIterable<string> {
    if (format !== 'jsonl' && format !== 'csv') {
      throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', `unknown export format ${String(format)}`)
    }
    const row = format === 'csv' ? csvRow : jsonlRow
    let chunk = format === 'csv' ? csvHeader() : ''
    let remaining = filter.limit === undefined ? Number.POSITIVE_INFINITY : positiveInt(filter.limit, 'limit', MAX_SEQ)
    for await (const { record } of this.#scan(filter, filter.order ?? 'asc', options.signal)) {
      if (record === undefined) continue
      chunk += row(record)
      if (chunk.length >= EXPORT_CHUNK) {
        yield chunk
        chunk = ''
      }
      if (--remaining <= 0) break
    }
    if (chunk.length > 0) yield chunk
  }

  /**
   * Checks the chain over `fromSeq..toSeq` (default: all): every record well-formed, under
   * its own key, hashing to its `hash`, linked to its predecessor; for a check up to the
   * head also that the newest record is the head and nothing follows it.
   */
  async verify(
    range: { fromSeq?: number; toSeq?: number } = {},
    options: { signal?: AbortSignal } = {},
  ): Promise<AuditVerifyResult> {
    const fromSeq = positiveInt(range.fromSeq ?? 1, 'fromSeq', MAX_SEQ)
    const toSeq = range.toSeq === undefined ? undefined : positiveInt(range.toSeq, 'toSeq', MAX_SEQ)
    if (toSeq !== undefined && toSeq < fromSeq) {
      throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', 'toSeq must not be below fromSeq')
    }
    this.#assertStarted()
    const head = await this.#withLock(() => this.#currentHead())
    const from = Math.min(fromSeq, head.seq + 1)
    const to = Math.min(head.seq, toSeq ?? head.seq)
    // Up to the head: whether anything follows it is asked under the lock, at that moment's head.
    const beyond =
      toSeq === undefined || toSeq >= head.seq
        ? () =>
            this.#withLock(async () => {
              const highest = await this.#highestSeq()
              return highest > (await this.#currentHead()).seq ? highest : 0
            })
        : undefined
    return verifyChain(this.#db, { from, to, head, highestAfterHead: beyond, signal: options.signal })
  }

  /** Records in the query's seq window in `order`, each with the record when it matches. */
  async *#scan(
    query: AuditQuery,
    order: 'asc' | 'desc',
    signal: AbortSignal | undefined,
  ): AsyncIterable<{ seq: number; record?: AuditRecord }> {
    this.#assertStarted()
    const matches = compileFilter(query)
    const headSeq = (this.#head ?? (await this.#withLock(() => this.#currentHead()))).seq
    const [lo, hi] = await seqWindow(this.#db, headSeq, query, order)
    if (lo > hi) return
    for await (const [key, value] of scanSeqRange<unknown>(this.#db, lo, hi, { reverse: order === 'desc', signal })) {
      signal?.throwIfAborted()
      const seq = seqOfKey(key)
      if (seq === undefined) continue
      yield isAuditRecord(value) && matches(value) ? { seq, record: value } : { seq }
    }
  }

  #build(entry: AuditEntry, prev: AuditHead): AuditRecord {
    const e = auditEntryChecker.check(entry, 'audit entry')
    const now = this.#clock.now()
    if (prev.time !== undefined && now < Date.parse(prev.time)) {
      this.#log.warn({ previous: prev.time, now: new Date(now).toISOString() }, 'clock is behind the last audit record')
    }
    const before = boundValue(e.before, 'before')
    const after = boundValue(e.after, 'after')
    const truncated = [
      ...(before?.truncated ? ['before' as const] : []),
      ...(after?.truncated ? ['after' as const] : []),
    ]
    const unhashed: Omit<AuditRecord, 'hash'> = {
      v: AUDIT_FORMAT_VERSION,
      seq: prev.seq + 1,
      time: new Date(now).toISOString(),
      actor: { type: e.actor.type, id: e.actor.id },
      action: e.action,
      target: { type: e.target.type, id: e.target.id },
      ...(before === undefined ? {} : { before: before.value }),
      ...(after === undefined ? {} : { after: after.value }),
      ...(truncated.length > 0 ? { truncated } : {}),
      ...(e.reason === undefined ? {} : { reason: boundReason(e.reason) }),
      ...(e.requestId === undefined ? {} : { requestId: e.requestId }),
      prevHash: prev.hash,
    }
    return { ...unhashed, hash: hashRecord(unhashed) }
  }

  #inSection(): boolean {
    const running = this.#section.getStore()
    return running !== undefined && !running.closed
  }

  /** Runs `fn` under the lock, or directly when already inside a section (which holds it). */
  #withLock<T>(fn: () => Promise<T>): Promise<T> {
    return this.#inSection() ? fn() : this.#lock.runExclusive(fn)
  }

  #assertStarted(): void {
    if (!this.#started) throw new StateError('PSW_ERR_INTERNAL', 'the audit log is not started')
  }

  async #currentHead(): Promise<AuditHead> {
    if (this.#head === undefined) await this.#reloadHead()
    return this.#head ?? EMPTY_HEAD
  }

  /**
   * The head to build on, made sure (one read) that the next seq is still free: ops of
   * `appendOps` written after their section ended would otherwise be overwritten.
   */
  async #nextFreeHead(): Promise<AuditHead> {
    const head = await this.#currentHead()
    if ((await this.#db.get(recordKey(head.seq + 1))) === undefined) return head
    this.#log.error({ seq: head.seq + 1 }, 'audit record after the head appeared outside a section')
    await this.#reloadHead()
    return this.#head ?? head
  }

  /**
   * Re-reads the head after a section that may have written it (on failure: again before the
   * next append). Never lets the next record overwrite one that is there, even if a caller
   * broke the `appendOps` contract.
   */
  async #reloadHead(): Promise<void> {
    try {
      const stored = await this.#db.get<unknown>(AUDIT_HEAD_KEY)
      const head = stored === undefined ? (this.#head ?? EMPTY_HEAD) : headChecker.check(stored, AUDIT_HEAD_KEY)
      const highest = await this.#highestSeq()
      if (highest > head.seq) {
        this.#log.error({ head: head.seq, highest }, 'audit records exist after the head; appending after them')
      }
      this.#head = highest > head.seq ? { ...head, seq: highest } : head
    } catch (err) {
      this.#head = undefined
      throw err
    }
  }

  /** The stored head; rebuilt from the newest record (and reported by the check) when absent. */
  async #loadHead(): Promise<AuditHead> {
    const stored = await this.#db.get<unknown>(AUDIT_HEAD_KEY)
    if (headChecker.is(stored)) return stored
    const version = (stored as { v?: unknown } | undefined)?.v
    if (stored !== undefined && version !== AUDIT_FORMAT_VERSION) {
      throw new StoreError('PSW_ERR_STORE_SCHEMA_VERSION', `${AUDIT_HEAD_KEY} has unknown format ${String(version)}`, {
        details: { found: version, expected: AUDIT_FORMAT_VERSION },
      })
    }
    const highest = await this.#highestSeq()
    if (stored === undefined && highest === 0) return EMPTY_HEAD
    this.#log.error({ highest }, `${AUDIT_HEAD_KEY} is missing or malformed; rebuilding it from the newest record`)
    // A head that matches no stored hash, so the check reports the problem as 'head-mismatch'.
    return { v: AUDIT_FORMAT_VERSION, seq: highest, hash: GENESIS_HASH }
  }

  /** The highest seq with a (well-formed) key under audit:rec:, 0 when there is none. */
  async #highestSeq(): Promise<number> {
    for await (const [key] of this.#db.iterate(AUDIT_RECORD_PREFIX, { reverse: true })) {
      const seq = seqOfKey(key)
      if (seq !== undefined) return seq
      this.#log.warn({ key }, 'malformed key under audit:rec:')
    }
    return 0
  }
}

function positiveInt(value: number, what: string, max: number): number {
  if (!Number.isSafeInteger(value) || value < 1 || value > max) {
    throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', `${what} must be an integer from 1 to ${max}`)
  }
  return value
}
