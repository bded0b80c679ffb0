/**
 * The "patchswarm vendor feed" format (docs/feeds.md): one JSON document listing artifacts.
 * The document as a whole is checked first (anything wrong there → PSW_ERR_FEED_INVALID);
 * each entry of `artifacts` is then checked on its own, so one bad entry is skipped and
 * reported instead of poisoning the feed.
 */
import { type Static, Type } from '@sinclair/typebox'
import { UpstreamError } from '../../shared/errors.ts'
import { isRealTimestamp, Sha256Hex, ShortText, Timestamp } from '../../shared/metadata/common-schema.ts'
import { Classification, Severity } from '../../shared/metadata/manifest-schema.ts'
import { compileChecker } from '../../shared/metadata/schema-check.ts'
import { FeedInstallerSpec, FeedRollbackSpec, MAX_ARTIFACT_BYTES } from './feed-types.ts'

export const FEED_FORMAT = 'patchswarm/feed'
export const FEED_FORMAT_VERSION = 1
/** Most entries one feed document may list. */
export const MAX_FEED_ENTRIES = 10_000
/** Default and largest size of a feed document in bytes. */
export const DEFAULT_FEED_MAX_BYTES = 8 << 20
export const MAX_FEED_MAX_BYTES = 64 << 20

/** A feed entry's id: its stable key within the feed. */
export const FeedEntryId = Type.String({ minLength: 1, maxLength: 200, pattern: '^[A-Za-z0-9][A-Za-z0-9._+~:-]*$' })

/** `YYYY-MM-DD`, or an RFC 3339 timestamp with `Z` or a numeric offset. */
const ReleaseDate = Type.String({
  maxLength: 40,
  pattern:
    '^\\d{4}-\\d{2}-\\d{2}(T([01]\\d|2[0-3]):[0-5]\\d:[0-5]\\d(\\.\\d{1,9})?(Z|[+-]([01]\\d|2[0-3]):[0-5]\\d))?$',
})

export const FeedEntrySchema = Type.Object(
  {
    id: FeedEntryId,
    /** http(s) URL, or a path relative to the feed's own URL (folder feeds: relative only). */
    url: Type.String({ minLength: 1, maxLength: 2048 }),
    size: Type.Integer({ minimum: 0, maximum: MAX_ARTIFACT_BYTES }),
    sha256: Sha256Hex,
    /** Defaults to the feed's `vendor`. */
    vendor: Type.Optional(ShortText),
    product: ShortText,
    /** Bundle name and version, with the same patterns as `patchswarm appliance ingest`. */
    name: Type.String({ minLength: 1, maxLength: 100, pattern: '^[A-Za-z0-9][A-Za-z0-9._+-]*$' }),
    version: Type.String({ minLength: 1, maxLength: 100, pattern: '^[A-Za-z0-9][A-Za-z0-9._+~:-]*$' }),
    classification: Classification,
    severity: Severity,
    cves: Type.Array(Type.String({ pattern: '^CVE-\\d{4}-\\d{4,9}$' }), { maxItems: 1000 }),
    advisory: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    /** A knowledge-base id (e.g. `KB5034441`); used as the advisory when `advisory` is absent. */
    kbId: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    releaseDate: ReleaseDate,
    supersedes: Type.Array(ShortText, { maxItems: 100 }),
    requires: Type.Array(ShortText, { maxItems: 100 }),
    description: Type.Optional(Type.String({ maxLength: 4000 })),
    os: Type.Union([Type.Literal('linux'), Type.Literal('windows'), Type.Literal('darwin'), Type.Literal('any')]),
    arch: Type.Union([Type.Literal('x64'), Type.Literal('arm64'), Type.Literal('any')]),
    installer: FeedInstallerSpec,
    rollback: FeedRollbackSpec,
    emergency: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
)
export type FeedEntry = Static<typeof FeedEntrySchema>

/** The document around the entries; entries are checked one by one with {@link checkFeedEntry}. */
export const VendorFeedDocumentSchema = Type.Object(
  {
    format: Type.Literal(FEED_FORMAT),
    formatVersion: Type.Literal(FEED_FORMAT_VERSION),
    vendor: ShortText,
    generated: Timestamp,
    expires: Type.Optional(Timestamp),
    artifacts: Type.Array(Type.Unknown(), { maxItems: MAX_FEED_ENTRIES }),
  },
  { additionalProperties: false },
)
export type VendorFeedDocument = Static<typeof VendorFeedDocumentSchema>

const documentChecker = compileChecker(VendorFeedDocumentSchema, 'PSW_ERR_FEED_INVALID')
const entryChecker = compileChecker(FeedEntrySchema, 'PSW_ERR_FEED_INVALID')
const entryIdChecker = compileChecker(FeedEntryId, 'PSW_ERR_FEED_INVALID')

const invalid = (what: string, message: string, cause?: unknown) =>
  new UpstreamError('PSW_ERR_FEED_INVALID', `${what}: ${message}`, cause === undefined ? {} : { cause })

/**
 * Parses and checks a feed document's exact bytes (after any signature check): size limit,
 * strict UTF-8 (a leading BOM is tolerated), JSON, format and version, header fields and dates.
 */
export function parseVendorFeed(bytes: Uint8Array, maxBytes: number, what: string): VendorFeedDocument {
  if (bytes.byteLength > maxBytes) {
    throw new UpstreamError('PSW_ERR_TOO_LARGE', `${what} is ${bytes.byteLength} bytes, limit ${maxBytes}`)
  }
  let value: unknown
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch (err) {
    throw invalid(what, 'not UTF-8 JSON', err)
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid(what, 'not a JSON object')
  const { format, formatVersion } = value as Record<string, unknown>
  if (format !== FEED_FORMAT) throw invalid(what, `format is not "${FEED_FORMAT}"`)
  if (formatVersion !== FEED_FORMAT_VERSION) {
    throw invalid(what, `unsupported formatVersion ${JSON.stringify(formatVersion)} (this appliance reads 1)`)
  }
  const doc = documentChecker.check(value, what)
  if (!isRealTimestamp(doc.generated)) throw invalid(what, `generated ${doc.generated} is not a real date`)
  if (doc.expires !== undefined) {
    if (!isRealTimestamp(doc.expires)) throw invalid(what, `expires ${doc.expires} is not a real date`)
    if (Date.parse(doc.expires) <= Date.parse(doc.generated)) throw invalid(what, 'expires is not after generated')
  }
  return doc
}

/** The entry's id when it has a well-formed one (for reports and duplicate detection). */
export function feedEntryId(entry: unknown): string | undefined {
  if (typeof entry !== 'object' || entry === null) return undefined
  const id = (entry as { id?: unknown }).id
  return entryIdChecker.is(id) ? id : undefined
}

/** Checks one entry: schema, a real release date, and an installer/rollback pair that fits. */
export function checkFeedEntry(entry: unknown, what: string): FeedEntry {
  const e = entryChecker.check(entry, what)
  if (!isRealDay(e.releaseDate.slice(0, 10))) throw invalid(what, `releaseDate ${e.releaseDate} is not a real date`)
  const fits =
    e.rollback.type === 'none' ||
    (e.installer.type === 'files' && e.rollback.type === 'files-backup') ||
    (e.installer.type === 'dpkg' && e.rollback.type === 'dpkg-previous')
  if (!fits) throw invalid(what, `rollback ${e.rollback.type} does not fit installer ${e.installer.type}`)
  return e
}

function isRealDay(day: string): boolean {
  const [y, m, d] = day.split('-').map(Number) as [number, number, number]
  const date = new Date(Date.UTC(y, m - 1, d))
  return date.getUTCFullYear() === y && date.getUTCMonth() === m - 1 && date.getUTCDate() === d
}
