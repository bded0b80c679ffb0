import { type Static, Type } from '@sinclair/typebox'
import type { Logger } from 'pino'
import type { Clock } from '../../shared/clock.ts'
import { UpstreamError } from '../../shared/errors.ts'
import { compileChecker } from '../../shared/metadata/schema-check.ts'
import type { ArtifactSource, FeedAdapter, IndexFetcher } from './feed-types.ts'
import { loadVendorFeed, type VendorFeedListing } from './vendor-feed-listing.ts'
import { DEFAULT_FEED_MAX_BYTES, MAX_FEED_MAX_BYTES } from './vendor-feed-schema.ts'
import {
  DEFAULT_MAX_FUTURE_SKEW_MS,
  type FeedKey,
  MAX_SIGNATURE_FILE_BYTES,
  parseFeedPublicKeys,
} from './vendor-feed-trust.ts'

/** A feed's id in the configuration (`feedId` of its artifacts). */
export const FeedConfigId = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' })

/** Trusted Ed25519 keys: SPKI PEM, base64 DER SPKI or base64 raw key (see parseFeedPublicKeys). */
export const FeedPublicKeys = Type.Array(Type.String({ minLength: 1, maxLength: 1024 }), {
  minItems: 1,
  maxItems: 16,
})

/** One `kind: 'patchswarm'` entry of the `feeds` configuration. */
export const VendorFeedConfigSchema = Type.Object(
  {
    id: FeedConfigId,
    kind: Type.Literal('patchswarm'),
    url: Type.String({ minLength: 1, maxLength: 2048, pattern: '^https?://' }),
    /** When set, `<url>.sig` must carry a valid signature by one of these keys. */
    publicKeys: Type.Optional(FeedPublicKeys),
    /** Largest feed document accepted, in bytes. Default 8 MiB. */
    maxBytes: Type.Optional(Type.Integer({ minimum: 1024, maximum: MAX_FEED_MAX_BYTES })),
  },
  { additionalProperties: false },
)
export type VendorFeedConfig = Static<typeof VendorFeedConfigSchema>
export const vendorFeedConfigChecker = compileChecker(VendorFeedConfigSchema)

export interface VendorFeedDeps {
  fetchIndex: IndexFetcher
  clock: Clock
  /** `generated` of the last listing the caller accepted from this feed (rollback protection). */
  lastGenerated?: () => string | undefined | Promise<string | undefined>
  log?: Logger
  /** Tolerance for `generated` ahead of the clock. Default 5 minutes. */
  maxFutureSkewMs?: number
}

/**
 * A "patchswarm vendor feed" over HTTP(S): one JSON document (docs/feeds.md), optionally
 * signed by a detached `<url>.sig`. Entry urls are resolved against the feed URL and must be
 * http(s). The caller persists `listing.generated` and returns it from `lastGenerated`.
 */
export class VendorFeed implements FeedAdapter {
  readonly id: string
  readonly kind = 'patchswarm' as const
  readonly url: string
  readonly #deps: VendorFeedDeps
  readonly #keys: FeedKey[]
  readonly #maxBytes: number

  /** Validates the configuration (PSW_ERR_SCHEMA, PSW_ERR_INVALID_ARGUMENT) and parses keys (PSW_ERR_KEY_INVALID). */
  constructor(config: VendorFeedConfig, deps: VendorFeedDeps) {
    const c = vendorFeedConfigChecker.check(config, `feed ${String(config?.id)} configuration`)
    const url = parseHttpUrl(c.url)
    if (url === undefined) {
      throw new UpstreamError('PSW_ERR_INVALID_ARGUMENT', `feed ${c.id}: url is not an http(s) URL`)
    }
    this.id = c.id
    this.url = url.href
    this.#deps = deps
    this.#keys = parseFeedPublicKeys(c.publicKeys ?? [])
    this.#maxBytes = c.maxBytes ?? DEFAULT_FEED_MAX_BYTES
    if (this.#keys.length === 0) {
      deps.log?.warn(
        { feed: this.id, url: this.url },
        url.protocol === 'http:'
          ? 'feed is neither signed nor fetched over HTTPS: anyone on the path can change what it lists'
          : 'feed is not signed: it relies on HTTPS and the per-artifact SHA-256 only',
      )
    }
  }

  async list(signal?: AbortSignal): Promise<VendorFeedListing> {
    const what = `feed ${this.id} (${this.url})`
    const bytes = await this.#deps.fetchIndex(this.url, { maxBytes: this.#maxBytes, signal })
    const sigUrl = signatureUrl(this.url)
    const listing = await loadVendorFeed({
      feedId: this.id,
      what,
      bytes,
      maxBytes: this.#maxBytes,
      keys: this.#keys,
      fetchSignature: () => this.#deps.fetchIndex(sigUrl, { maxBytes: MAX_SIGNATURE_FILE_BYTES, signal }),
      now: this.#deps.clock.now(),
      lastGenerated: await this.#deps.lastGenerated?.(),
      maxFutureSkewMs: this.#deps.maxFutureSkewMs ?? DEFAULT_MAX_FUTURE_SKEW_MS,
      resolveSource: (url, entryWhat) => resolveHttpSource(url, this.url, entryWhat),
      signal,
    })
    this.#deps.log?.debug(
      { feed: this.id, generated: listing.generated, artifacts: listing.artifacts.length },
      'feed listed',
    )
    for (const s of listing.skipped) this.#deps.log?.warn({ feed: this.id, ...s }, 'feed entry skipped')
    return listing
  }
}

/** The detached signature's URL: `.sig` appended to the path (a query string is kept). */
export function signatureUrl(feedUrl: string): string {
  const url = new URL(feedUrl)
  url.pathname += '.sig'
  return url.href
}

/**
 * Resolves an entry `url` against the feed URL. Only http(s) results are accepted, and no
 * credentials in the URL (they would end up in logs).
 */
export function resolveHttpSource(url: string, feedUrl: string, what: string): ArtifactSource {
  const resolved = parseHttpUrl(url, feedUrl)
  if (resolved === undefined) {
    throw new UpstreamError('PSW_ERR_FEED_INVALID', `${what}: url does not resolve to an http(s) URL`)
  }
  if (resolved.username !== '' || resolved.password !== '') {
    throw new UpstreamError('PSW_ERR_FEED_INVALID', `${what}: url carries credentials`)
  }
  return { kind: 'http', url: resolved.href }
}

function parseHttpUrl(url: string, base?: string): URL | undefined {
  if (!URL.canParse(url, base)) return undefined
  const parsed = new URL(url, base)
  return parsed.protocol === 'http:' || parsed.protocol === 'https:' ? parsed : undefined
}
