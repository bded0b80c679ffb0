/**
 * Authenticity and freshness of a vendor feed: detached Ed25519 signatures over the exact
 * feed bytes (checked with node:crypto before the bytes are parsed), expiry, and rollback
 * of `generated`. Everything here fails closed.
 */
import { type KeyObject, verify } from 'node:crypto'
import { UpstreamError } from '../../shared/errors.ts'
import { isRealTimestamp } from '../../shared/metadata/common-schema.ts'
import { ed25519PublicKeyFromRaw, publicKeyFingerprint, toPublicKey } from '../../shared/pki/index.ts'

/** A signature file holds at most this many bytes and this many signatures (one per line). */
export const MAX_SIGNATURE_FILE_BYTES = 4096
export const MAX_SIGNATURES = 8
/** Default tolerance for a feed `generated` in the future of the appliance clock. */
export const DEFAULT_MAX_FUTURE_SKEW_MS = 5 * 60_000

/** A trusted feed key and its key id (hex SHA-256 of the DER SubjectPublicKeyInfo). */
export interface FeedKey {
  keyId: string
  key: KeyObject
}

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/
/** One Ed25519 signature: 64 bytes are 88 base64 characters. */
const SIGNATURE_LINE = /^[A-Za-z0-9+/]{86}==$/

/**
 * Parses configured feed keys: an SPKI PEM (`-----BEGIN PUBLIC KEY-----`), the base64 of the
 * DER SPKI (44 bytes), or the base64 of the raw 32-byte Ed25519 key. Anything else, or a key
 * of another type → PSW_ERR_KEY_INVALID. Duplicates are dropped.
 */
export function parseFeedPublicKeys(keys: readonly string[]): FeedKey[] {
  const out = new Map<string, FeedKey>()
  for (const text of keys) {
    const trimmed = text.trim()
    let key: KeyObject
    if (trimmed.startsWith('-----BEGIN')) {
      key = toPublicKey(trimmed)
    } else {
      const der = BASE64.test(trimmed) ? Buffer.from(trimmed, 'base64') : Buffer.alloc(0)
      key = der.length === 32 ? ed25519PublicKeyFromRaw(der) : toPublicKey(der)
    }
    const keyId = publicKeyFingerprint(key)
    out.set(keyId, { keyId, key })
  }
  return [...out.values()]
}

/**
 * Verifies a detached signature file over the exact feed bytes. The file holds one base64
 * Ed25519 signature per line (several during a key rotation); the feed is accepted when one
 * of them verifies with one configured key. A malformed file → PSW_ERR_FEED_SIGNATURE, as is
 * a file none of whose signatures verifies. Returns the key id that verified.
 */
export function verifyFeedSignature(
  feed: Uint8Array,
  signatureFile: Uint8Array,
  keys: readonly FeedKey[],
  what: string,
): string {
  const refuse = (message: string) => new UpstreamError('PSW_ERR_FEED_SIGNATURE', `${what}: ${message}`)
  if (signatureFile.byteLength > MAX_SIGNATURE_FILE_BYTES) throw refuse('signature file is too large')
  const lines = Buffer.from(signatureFile)
    .toString('latin1')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
  if (lines.length === 0) throw refuse('signature file is empty')
  if (lines.length > MAX_SIGNATURES) throw refuse(`signature file has more than ${MAX_SIGNATURES} signatures`)
  if (!lines.every((l) => SIGNATURE_LINE.test(l))) {
    throw refuse('signature file is not base64 Ed25519 signatures, one per line')
  }
  for (const line of lines) {
    const signature = Buffer.from(line, 'base64')
    for (const { keyId, key } of keys) {
      if (verify(null, feed, key, signature)) return keyId
    }
  }
  throw refuse('no signature verifies with a configured key (tampered feed, or signed by another key)')
}

export interface FreshnessOptions {
  now: number
  /** `generated` of the last listing accepted from this feed, if any. */
  lastGenerated: string | undefined
  maxFutureSkewMs: number
}

/**
 * Refuses an expired feed (PSW_ERR_FEED_EXPIRED: freeze attack or stale mirror), a feed
 * older than the last one accepted (PSW_ERR_METADATA_ROLLBACK) and a feed dated in the future
 * (PSW_ERR_METADATA_NOT_YET_VALID: accepting it would ratchet `lastGenerated` past every
 * honest feed to come).
 */
export function checkFeedFreshness(
  doc: { generated: string; expires?: string | undefined },
  options: FreshnessOptions,
  what: string,
): void {
  const { now, lastGenerated } = options
  const generated = Date.parse(doc.generated)
  if (doc.expires !== undefined && Date.parse(doc.expires) <= now) {
    throw new UpstreamError('PSW_ERR_FEED_EXPIRED', `${what} expired at ${doc.expires}`, {
      details: { expires: doc.expires, now: new Date(now).toISOString() },
    })
  }
  if (generated > now + options.maxFutureSkewMs) {
    throw new UpstreamError('PSW_ERR_METADATA_NOT_YET_VALID', `${what} is generated ${doc.generated}, in the future`, {
      details: { generated: doc.generated, now: new Date(now).toISOString() },
    })
  }
  if (lastGenerated === undefined) return
  if (!isRealTimestamp(lastGenerated)) {
    // A corrupt stored value must never switch rollback protection off.
    throw new UpstreamError('PSW_ERR_INVALID_ARGUMENT', `${what}: last generated ${lastGenerated} is not a timestamp`)
  }
  if (generated < Date.parse(lastGenerated)) {
    throw new UpstreamError(
      'PSW_ERR_METADATA_ROLLBACK',
      `${what} is generated ${doc.generated}, older than ${lastGenerated} already seen`,
      { details: { generated: doc.generated, lastGenerated } },
    )
  }
}
