import { Type } from '@sinclair/typebox'

export const Sha256Hex = Type.String({ pattern: '^[0-9a-f]{64}$' })
/**
 * RFC 3339 / ISO 8601 timestamp as produced by Date.prototype.toISOString(). The pattern
 * admits impossible dates (month 13); validators also require {@link isRealTimestamp}.
 */
export const Timestamp = Type.String({ pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d{1,3})?Z$' })
/** A libp2p PeerId in its base58btc string form (Ed25519: 12D3KooW…). */
export const PeerIdString = Type.String({ pattern: '^[1-9A-HJ-NP-Za-km-z]{46,60}$' })
export const ShortText = Type.String({ minLength: 1, maxLength: 200 })
export const MetadataVersion = Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER })

/** True when `text` is a real instant: it parses, and round-trips through toISOString(). */
export function isRealTimestamp(text: string): boolean {
  const ms = Date.parse(text)
  if (!Number.isFinite(ms)) return false
  const iso = new Date(ms).toISOString()
  return iso === text || iso.replace('.000Z', 'Z') === text
}
