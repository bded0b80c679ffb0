/**
 * The pipeline both vendor-format adapters share (HTTP feed and USB folder): signature over
 * the exact bytes, then parse, freshness, and entry-by-entry conversion to FeedArtifacts.
 * Only how bytes are fetched and where an entry's `url` points differ between them.
 */
import { createHash } from 'node:crypto'
import { isPswError, UpstreamError } from '../../shared/errors.ts'
import type { ArtifactSource, FeedArtifact, FeedListing } from './feed-types.ts'
import { checkFeedEntry, type FeedEntry, feedEntryId, parseVendorFeed } from './vendor-feed-schema.ts'
import { checkFeedFreshness, type FeedKey, verifyFeedSignature } from './vendor-feed-trust.ts'

/** A vendor-format listing, with what the caller persists for rollback protection. */
export interface VendorFeedListing extends FeedListing {
  /** The feed's `generated`: persist it and hand it back through `lastGenerated` next time. */
  generated: string
  expires?: string
  vendor: string
  /** Lower-case hex SHA-256 of the exact feed bytes (logs, audits). */
  digest: string
  /** Key id of the configured key whose signature verified; absent for an unsigned feed. */
  keyId?: string
}

/**
 * Maps an entry's `url` to where its bytes are; throws a PswError to skip the entry (its code
 * is reported in `skipped`).
 */
export type SourceResolver = (url: string, what: string) => ArtifactSource | Promise<ArtifactSource>

export interface LoadVendorFeedOptions {
  feedId: string
  /** Names the document in messages, e.g. `feed acme (https://…/feed.json)`. */
  what: string
  bytes: Uint8Array
  maxBytes: number
  /** Trusted keys; when non-empty the signature is fetched and must verify. */
  keys: readonly FeedKey[]
  fetchSignature: () => Promise<Uint8Array>
  now: number
  lastGenerated: string | undefined
  maxFutureSkewMs: number
  resolveSource: SourceResolver
  signal?: AbortSignal | undefined
}

/** Verifies, parses and lists a vendor feed; rejects when the feed as a whole is not trusted. */
export async function loadVendorFeed(options: LoadVendorFeedOptions): Promise<VendorFeedListing> {
  const { bytes, what, signal } = options
  if (bytes.byteLength > options.maxBytes) {
    throw new UpstreamError('PSW_ERR_TOO_LARGE', `${what} is ${bytes.byteLength} bytes, limit ${options.maxBytes}`)
  }
  let keyId: string | undefined
  if (options.keys.length > 0) {
    let signatureFile: Uint8Array
    try {
      signatureFile = await options.fetchSignature()
    } catch (err) {
      if (signal?.aborted) throw err
      const reason = isPswError(err) ? `${err.code}: ${err.message}` : String(err)
      throw new UpstreamError('PSW_ERR_FEED_SIGNATURE', `${what}: signature cannot be read (${reason})`, {
        cause: err,
      })
    }
    keyId = verifyFeedSignature(bytes, signatureFile, options.keys, what)
  }
  const doc = parseVendorFeed(bytes, options.maxBytes, what)
  checkFeedFreshness(doc, options, what)
  const listing: VendorFeedListing = {
    artifacts: [],
    skipped: [],
    generated: doc.generated,
    vendor: doc.vendor,
    digest: createHash('sha256').update(bytes).digest('hex'),
    ...(doc.expires === undefined ? {} : { expires: doc.expires }),
    ...(keyId === undefined ? {} : { keyId }),
  }
  const seen = new Set<string>()
  for (const [i, raw] of doc.artifacts.entries()) {
    signal?.throwIfAborted()
    const id = feedEntryId(raw)
    const key = id ?? `artifacts[${i}]`
    const entryWhat = `${what} entry ${key}`
    if (id !== undefined && seen.has(id)) {
      listing.skipped.push({
        key,
        code: 'PSW_ERR_FEED_INVALID',
        message: `${entryWhat}: duplicate id (kept the first)`,
      })
      continue
    }
    if (id !== undefined) seen.add(id)
    try {
      const entry = checkFeedEntry(raw, entryWhat)
      const source = await options.resolveSource(entry.url, entryWhat)
      listing.artifacts.push(toFeedArtifact(options.feedId, doc.vendor, entry, source))
    } catch (err) {
      if (!isPswError(err)) throw err
      listing.skipped.push({ key, code: err.code, message: err.message })
    }
  }
  return listing
}

/** A checked entry as the FeedArtifact the rest of the appliance uses. */
export function toFeedArtifact(feedId: string, feedVendor: string, e: FeedEntry, source: ArtifactSource): FeedArtifact {
  const advisory = e.advisory ?? e.kbId
  return {
    feedId,
    key: e.id,
    source,
    size: e.size,
    sha256: e.sha256,
    name: e.name,
    version: e.version,
    vendor: e.vendor ?? feedVendor,
    product: e.product,
    classification: e.classification,
    severity: e.severity,
    cves: e.cves,
    ...(advisory === undefined ? {} : { advisory }),
    releaseDate: e.releaseDate,
    supersedes: e.supersedes,
    requires: e.requires,
    ...(e.description === undefined ? {} : { description: e.description }),
    os: e.os,
    arch: e.arch,
    installer: e.installer,
    rollback: e.rollback,
    emergency: e.emergency ?? false,
  }
}
