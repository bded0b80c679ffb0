/**
 * Bounds on what an audit record may hold. `before`/`after` are reduced to plain JSON (what
 * LevelDB stores and the hash covers), secrets are redacted, deep subtrees are cut, and a
 * value larger than the limit becomes a marker with its size, SHA-256 and a short preview.
 */
import { createHash } from 'node:crypto'
import { ValidationError } from '../../shared/errors.ts'
import { AUDIT_LIMITS } from './audit-record.ts'

/** Stands in for a value over `AUDIT_LIMITS.valueBytes`; the record's `truncated` lists the field. */
export interface TruncatedValue {
  $truncated: true
  /** UTF-8 bytes of the (redacted) JSON text. */
  bytes: number
  /** SHA-256 (hex) of that JSON text. */
  sha256: string
  /** Its first `AUDIT_LIMITS.previewChars` characters. */
  preview: string
}

/**
 * Object keys (any case, any depth) whose values never reach the audit log: the logger's list
 * minus the too-general `key`, which names ordinary things in policy objects.
 */
const SECRET_KEYS = new Set(['token', 'admintoken', 'password', 'privatekey', 'secret', 'authorization'])
export const REDACTED = '[redacted]'
export const TOO_DEEP = '[depth limit]'

function redact(value: unknown, depth: number): unknown {
  if (value === null || typeof value !== 'object') return value
  if (depth >= AUDIT_LIMITS.valueDepth) return TOO_DEEP
  if (Array.isArray(value)) return value.map((v) => redact(v, depth + 1))
  // fromEntries defines own properties, so a "__proto__" key stays data and never a prototype.
  return Object.fromEntries(
    Object.entries(value).map(([k, v]) => [k, SECRET_KEYS.has(k.toLowerCase()) ? REDACTED : redact(v, depth + 1)]),
  )
}

/**
 * The JSON value stored for `before`/`after`: undefined when absent (or not representable in
 * JSON, like a function), else redacted plain JSON, or a {@link TruncatedValue}.
 */
export function boundValue(
  value: unknown,
  field: 'before' | 'after',
): { value: unknown; truncated: boolean } | undefined {
  if (value === undefined) return undefined
  let text: string | undefined
  try {
    text = JSON.stringify(value)
  } catch (err) {
    throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', `audit ${field} is not JSON-serialisable`, { cause: err })
  }
  if (text === undefined) return undefined
  const plain = redact(JSON.parse(text), 0)
  const redactedText = JSON.stringify(plain)
  const bytes = Buffer.byteLength(redactedText, 'utf8')
  if (bytes <= AUDIT_LIMITS.valueBytes) return { value: plain, truncated: false }
  const marker: TruncatedValue = {
    $truncated: true,
    bytes,
    sha256: createHash('sha256').update(redactedText, 'utf8').digest('hex'),
    preview: cutChars(redactedText, AUDIT_LIMITS.previewChars),
  }
  return { value: marker, truncated: true }
}

/** The reason as stored: a longer one is cut at `AUDIT_LIMITS.reasonChars` and marked. */
export function boundReason(reason: string): string {
  return reason.length <= AUDIT_LIMITS.reasonChars ? reason : `${cutChars(reason, AUDIT_LIMITS.reasonChars)}…[cut]`
}

/** The first `max` UTF-16 units of `text`, never ending in half a surrogate pair. */
function cutChars(text: string, max: number): string {
  if (text.length <= max) return text
  const code = text.charCodeAt(max - 1)
  return text.slice(0, code >= 0xd800 && code <= 0xdbff ? max - 1 : max)
}
