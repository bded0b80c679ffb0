/**
 * The audit record format, its key layout and its hash chain. Pure: no I/O.
 *
 * Record format v1, one JSON value per LevelDB key:
 *
 *   audit:rec:<seq, 16 digits zero-padded>  → AuditRecord
 *   audit:head                              → { v: 1, seq, hash, time } of the newest record
 *
 * `hash` is the lowercase hex SHA-256 of `"patchswarm-audit-v1\n"` followed by the RFC 8785
 * canonical JSON of the record without its `hash` property; `prevHash` is the previous
 * record's `hash` (64 zeros for seq 1). An exported JSONL file can therefore be checked
 * offline, record by record, with {@link checkLink}.
 */
import { createHash } from 'node:crypto'
import { type Static, Type } from '@sinclair/typebox'
import canonicalizeModule from 'canonicalize'
import { compileChecker } from '../../shared/metadata/schema-check.ts'

// canonicalize is CommonJS (`module.exports = fn`); its types describe an ES default export.
const canonicalize = canonicalizeModule as unknown as (value: unknown) => string | undefined

export const AUDIT_FORMAT_VERSION = 1
export const AUDIT_RECORD_PREFIX = 'audit:rec:'
export const AUDIT_HEAD_KEY = 'audit:head'
export const SEQ_DIGITS = 16
export const GENESIS_HASH = '0'.repeat(64)
const HASH_DOMAIN = 'patchswarm-audit-v1\n'

/** Size and length limits of one record (see audit-bounds.ts for how they are applied). */
export const AUDIT_LIMITS = {
  /** Serialized UTF-8 bytes of `before` or `after`; larger values become a truncation marker. */
  valueBytes: 16 << 10,
  /** Characters of the JSON text kept as `preview` in a truncation marker. */
  previewChars: 512,
  /** Nesting depth of `before`/`after`; deeper subtrees are replaced by a marker string. */
  valueDepth: 32,
  /** Characters of `reason`; a longer reason is cut and marked. */
  reasonChars: 2000,
} as const

/** Printable text: no C0 control characters or DEL (ids end up in CSV cells and log lines). */
const PRINTABLE = '^[^\\u0000-\\u001f\\u007f]+$'

export const ActorTypeSchema = Type.Union([
  Type.Literal('operator'),
  Type.Literal('system'),
  Type.Literal('agent'),
  Type.Literal('api-token'),
])
export const ActorSchema = Type.Object(
  { type: ActorTypeSchema, id: Type.String({ minLength: 1, maxLength: 256, pattern: PRINTABLE }) },
  { additionalProperties: false },
)
/** Dotted lower-case verbs: `patch.approve`, `rollout.advance`, `window.delete`. */
export const ActionSchema = Type.String({
  minLength: 1,
  maxLength: 128,
  pattern: '^[a-z][a-z0-9_-]*(\\.[a-z0-9_-]+)*$',
})
export const TargetSchema = Type.Object(
  {
    type: Type.String({ minLength: 1, maxLength: 64, pattern: '^[a-z][a-z0-9._-]*$' }),
    id: Type.String({ minLength: 1, maxLength: 512, pattern: PRINTABLE }),
  },
  { additionalProperties: false },
)
const RequestIdSchema = Type.String({ minLength: 1, maxLength: 128, pattern: PRINTABLE })

/** What a caller hands to `append`; `reason` of any length is accepted (and cut), ids are not. */
export const AuditEntrySchema = Type.Object(
  {
    actor: ActorSchema,
    action: ActionSchema,
    target: TargetSchema,
    before: Type.Optional(Type.Unknown()),
    after: Type.Optional(Type.Unknown()),
    reason: Type.Optional(Type.String()),
    requestId: Type.Optional(RequestIdSchema),
  },
  { additionalProperties: false },
)

const Sha256Hex = Type.String({ pattern: '^[0-9a-f]{64}$' })
const TruncatedFieldsSchema = Type.Array(Type.Union([Type.Literal('before'), Type.Literal('after')]), {
  minItems: 1,
  maxItems: 2,
})

export const AuditRecordSchema = Type.Object(
  {
    v: Type.Literal(AUDIT_FORMAT_VERSION),
    seq: Type.Integer({ minimum: 1 }),
    time: Type.String({ format: 'date-time', maxLength: 40 }),
    actor: ActorSchema,
    action: ActionSchema,
    target: TargetSchema,
    before: Type.Optional(Type.Unknown()),
    after: Type.Optional(Type.Unknown()),
    /** Which of `before`/`after` hold a truncation marker instead of the value. */
    truncated: Type.Optional(TruncatedFieldsSchema),
    reason: Type.Optional(Type.String({ maxLength: AUDIT_LIMITS.reasonChars + 20 })),
    requestId: Type.Optional(RequestIdSchema),
    prevHash: Sha256Hex,
    hash: Sha256Hex,
  },
  { additionalProperties: false },
)

export const AuditHeadSchema = Type.Object({
  v: Type.Literal(AUDIT_FORMAT_VERSION),
  seq: Type.Integer({ minimum: 0 }),
  hash: Sha256Hex,
  time: Type.Optional(Type.String({ maxLength: 40 })),
})

export type ActorType = Static<typeof ActorTypeSchema>
export type AuditEntry = Static<typeof AuditEntrySchema>
export type AuditRecord = Static<typeof AuditRecordSchema>
export type AuditHead = Static<typeof AuditHeadSchema>

export const auditEntryChecker = compileChecker(AuditEntrySchema, 'PSW_ERR_INVALID_ARGUMENT')
// TypeBox's compiler knows no formats; `time` is checked by isIsoTime() in checkRecord().
const recordChecker = compileChecker(Type.Object({ ...AuditRecordSchema.properties, time: Type.String() }))
export const headChecker = compileChecker(AuditHeadSchema)

export function recordKey(seq: number): string {
  return AUDIT_RECORD_PREFIX + String(seq).padStart(SEQ_DIGITS, '0')
}

/** The sequence number a record key names, or undefined when the key is malformed. */
export function seqOfKey(key: string): number | undefined {
  const digits = key.slice(AUDIT_RECORD_PREFIX.length)
  if (!key.startsWith(AUDIT_RECORD_PREFIX) || !/^[0-9]{16}$/.test(digits)) return undefined
  const seq = Number(digits)
  return Number.isSafeInteger(seq) && seq >= 1 ? seq : undefined
}

/** Whether `value` is a well-formed v1 record (its hash is not checked). */
export function isAuditRecord(value: unknown): value is AuditRecord {
  return recordChecker.is(value) && isIsoTime(value.time)
}

function isIsoTime(text: string): boolean {
  return /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/.test(text) && !Number.isNaN(Date.parse(text))
}

/** The hash a record must carry: SHA-256 over the domain tag and the canonical record minus `hash`. */
export function hashRecord(record: Omit<AuditRecord, 'hash'> & { hash?: string }): string {
  const { hash: _hash, ...unhashed } = record
  const text = canonicalize(unhashed)
  if (text === undefined) throw new TypeError('cannot canonicalize audit record')
  return createHash('sha256').update(HASH_DOMAIN).update(text, 'utf8').digest('hex')
}

/** Why a chain check failed; stable strings, part of the API. */
export type AuditBreakReason =
  | 'malformed' // not a v1 record, or a malformed key under audit:rec:
  | 'key-mismatch' // stored under another sequence number's key (moved or swapped)
  | 'missing' // a sequence number has no record (deleted, or the log was cut short)
  | 'prev-hash' // prevHash is not the previous record's hash (inserted, reordered, or a predecessor edited)
  | 'hash' // the record's content does not match its hash (edited)
  | 'head-mismatch' // the newest record disagrees with audit:head
  | 'beyond-head' // a record exists after the head (appended behind the log's back)

export interface ChainBreak {
  reason: AuditBreakReason
  message: string
}

/**
 * Checks one record against its key and its predecessor. `prev` is the record before it
 * (or `{ seq: 0, hash: GENESIS_HASH }` for the first); undefined means "not checked".
 */
export function checkLink(
  record: unknown,
  keySeq: number | undefined,
  prev: { seq: number; hash: string } | undefined,
): ChainBreak | undefined {
  if (!isAuditRecord(record)) {
    return { reason: 'malformed', message: 'not a well-formed v1 audit record' }
  }
  if (keySeq !== undefined && keySeq !== record.seq) {
    return { reason: 'key-mismatch', message: `record seq ${record.seq} is stored under seq ${keySeq}` }
  }
  if (prev !== undefined && record.seq !== prev.seq + 1) {
    return { reason: 'missing', message: `seq ${prev.seq + 1} is missing (next record is ${record.seq})` }
  }
  if (prev !== undefined && record.prevHash !== prev.hash) {
    return { reason: 'prev-hash', message: `prevHash does not match the hash of seq ${prev.seq}` }
  }
  if (hashRecord(record) !== record.hash) {
    return { reason: 'hash', message: 'record content does not match its hash' }
  }
  return undefined
}
