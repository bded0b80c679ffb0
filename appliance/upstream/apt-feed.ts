/**
 * APT repository feed: lists the .deb packages of one suite of a Debian-style repository.
 *
 * list(): fetch `dists/<suite>/InRelease` → verify its OpenPGP signature against the
 * configured keyring (only the signed text is used) → parse the Release, check Suite/Codename,
 * Valid-Until, Date (future, rollback) → for each component × architecture fetch the
 * `Packages` index the Release lists, check size + SHA-256, decompress with a limit → parse
 * stanzas and map them to FeedArtifacts. Any problem with the Release or an index rejects the
 * whole listing; a problem with one stanza skips (and reports) that stanza only.
 *
 * Only `InRelease` is read: a repository with just `Release` + `Release.gpg` (detached) or an
 * unsigned `Release` is refused (PSW_ERR_FEED_FETCH for the missing InRelease).
 */
import { setImmediate as yieldToLoop } from 'node:timers/promises'
import { type Static, Type } from '@sinclair/typebox'
import type { Clock } from '../../shared/clock.ts'
import { UpstreamError, ValidationError } from '../../shared/errors.ts'
import { ShortText } from '../../shared/metadata/common-schema.ts'
import { Classification, Severity } from '../../shared/metadata/manifest-schema.ts'
import { compileChecker } from '../../shared/metadata/schema-check.ts'
import { deb822Field, iterateDeb822 } from './apt-deb822.ts'
import { DEFAULT_XZ_PATH, fetchVerifiedIndex, indexCandidates, xzAvailable } from './apt-index.ts'
import { DEBIAN_PACKAGE_NAME, type PackagesContext, type Skipped, stanzaToArtifact } from './apt-packages.ts'
import { type AptRelease, checkRelease, parseRelease } from './apt-release.ts'
import {
  type AptKeyring,
  MAX_ARMORED_KEY_CHARS,
  MAX_INRELEASE_BYTES,
  readAptKeyring,
  verifyInRelease,
} from './apt-signature.ts'
import type { FeedAdapter, FeedArtifact, FeedListing, IndexFetcher } from './feed-types.ts'

/** A path piece of a suite or component: `bookworm`, `bookworm-security`, `non-free-firmware`. */
const PATH_PIECE = '[A-Za-z0-9][A-Za-z0-9._+~-]*'
const DistPath = Type.String({ minLength: 1, maxLength: 100, pattern: `^${PATH_PIECE}(/${PATH_PIECE})*$` })

export const DEFAULT_MAX_ARTIFACTS = 2_000
export const DEFAULT_MAX_INDEX_BYTES = 128 << 20
export const DEFAULT_MAX_UNPACKED_INDEX_BYTES = 256 << 20
/** V8 strings top out at ~512 Mi characters; a decompressed index is decoded into one. */
const MAX_UNPACKED_INDEX_BYTES = 400 << 20
export const DEFAULT_MAX_FUTURE_SKEW_SECONDS = 3_600
/** Most skipped entries reported one by one; the rest are counted in one last entry. */
const MAX_SKIPPED_REPORTED = 1_000
/** Stanzas parsed between yields to the event loop (a full Debian index has ~65k). */
const STANZAS_PER_SLICE = 2_000

export const AptFeedConfigSchema = Type.Object(
  {
    id: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' }),
    kind: Type.Literal('apt'),
    /** Repository root (the directory holding `dists/` and `pool/`), http or https. */
    baseUrl: Type.String({ minLength: 8, maxLength: 2048, pattern: '^https?://[^\\s?#]+$' }),
    /** `dists/<suite>`: a suite (`stable`) or codename (`bookworm`). Flat repositories are not supported. */
    suite: DistPath,
    components: Type.Array(DistPath, { minItems: 1, maxItems: 32, uniqueItems: true }),
    /** `binary-<arch>` indexes to read; `amd64`/`arm64` indexes also carry `Architecture: all` packages. */
    architectures: Type.Array(Type.Union([Type.Literal('amd64'), Type.Literal('arm64'), Type.Literal('all')]), {
      minItems: 1,
      maxItems: 3,
      uniqueItems: true,
    }),
    /** ASCII-armored OpenPGP public keys trusted to sign InRelease. */
    keyring: Type.Array(Type.String({ minLength: 1, maxLength: MAX_ARMORED_KEY_CHARS }), { minItems: 1, maxItems: 32 }),
    /**
     * Package names to offer. Without it every package is offered, up to `maxArtifacts` (a full
     * Debian suite, ~65k packages, is refused rather than cut off at random: name what you need).
     */
    packages: Type.Optional(
      Type.Array(Type.String({ maxLength: 100, pattern: DEBIAN_PACKAGE_NAME }), {
        minItems: 1,
        maxItems: 10_000,
        uniqueItems: true,
      }),
    ),
    /** Defaults: the Release's `Origin`, else the feed id. */
    vendor: Type.Optional(ShortText),
    /** Defaults to the package name. */
    product: Type.Optional(ShortText),
    /** APT has no classification or severity: every artifact gets these (default other / none). */
    classification: Type.Optional(Classification),
    severity: Type.Optional(Severity),
    /** Refuse a Release without Valid-Until (freeze protection; Debian's security suite has one). */
    requireValidUntil: Type.Optional(Type.Boolean()),
    maxFutureSkewSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 86_400 })),
    maxArtifacts: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000 })),
    /** Largest compressed Packages index to download. */
    maxIndexBytes: Type.Optional(Type.Integer({ minimum: 1024, maximum: 1 << 30 })),
    /** Largest decompressed Packages index. */
    maxUnpackedIndexBytes: Type.Optional(Type.Integer({ minimum: 1024, maximum: MAX_UNPACKED_INDEX_BYTES })),
  },
  { additionalProperties: false },
)
export type AptFeedConfig = Static<typeof AptFeedConfigSchema>
export const aptFeedConfigChecker = compileChecker(AptFeedConfigSchema)

export interface AptFeedDeps {
  fetchIndex: IndexFetcher
  clock: Clock
  /**
   * The `Date` (ms) of the last Release this feed accepted, which the caller persisted from
   * `AptFeedListing.release.date`; list() refuses an older Release (PSW_ERR_METADATA_ROLLBACK).
   */
  lastSeenReleaseDate?: () => number | undefined | Promise<number | undefined>
  /** Path of `xz` for `.xz` indexes (default /usr/bin/xz when executable); null: never use xz. */
  xzPath?: string | null
}

/** What the verified Release said, for the caller to persist and show. */
export interface AptReleaseInfo {
  /** `Date` in ms: persist it and hand it back through `lastSeenReleaseDate`. */
  date: number
  validUntil?: number
  suite?: string
  codename?: string
  origin?: string
  /** Fingerprints of the keyring keys whose signatures verified. */
  signers: string[]
}

export interface AptFeedListing extends FeedListing {
  release: AptReleaseInfo
}

export class AptFeed implements FeedAdapter {
  readonly kind = 'apt' as const
  readonly id: string
  readonly config: Readonly<AptFeedConfig>
  readonly #deps: AptFeedDeps
  readonly #baseUrl: string
  #keyring: Promise<AptKeyring> | undefined

  /** Validates the configuration: PSW_ERR_SCHEMA, or PSW_ERR_INVALID_ARGUMENT for a bad URL. */
  constructor(config: unknown, deps: AptFeedDeps) {
    this.config = aptFeedConfigChecker.check(config, 'APT feed configuration')
    this.id = this.config.id
    this.#deps = deps
    let url: URL
    try {
      url = new URL(this.config.baseUrl)
    } catch (err) {
      throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', `APT feed ${this.id}: baseUrl is not a URL`, { cause: err })
    }
    if (url.username !== '' || url.password !== '') {
      throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', `APT feed ${this.id}: baseUrl must not carry credentials`)
    }
    this.#baseUrl = url.href.replace(/\/+$/, '')
  }

  async list(signal?: AbortSignal): Promise<AptFeedListing> {
    const cfg = this.config
    this.#keyring ??= readAptKeyring(cfg.keyring)
    const keyring = await this.#keyring
    const distsUrl = `${this.#baseUrl}/dists/${cfg.suite}`

    const inRelease = await this.#deps.fetchIndex(`${distsUrl}/InRelease`, { maxBytes: MAX_INRELEASE_BYTES, signal })
    const now = this.#deps.clock.now()
    const verified = await verifyInRelease(inRelease, keyring, { now })
    const release = parseRelease(verified.text, `${this.id}: Release`)
    const lastSeenDate = await this.#deps.lastSeenReleaseDate?.()
    checkRelease(release, {
      now,
      suite: cfg.suite,
      ...(lastSeenDate === undefined ? {} : { lastSeenDate }),
      maxFutureSkewMs: (cfg.maxFutureSkewSeconds ?? DEFAULT_MAX_FUTURE_SKEW_SECONDS) * 1000,
      requireValidUntil: cfg.requireValidUntil ?? false,
    })

    const xzPath = await this.#xzPath()
    const collector = new ListingCollector(cfg.maxArtifacts ?? DEFAULT_MAX_ARTIFACTS, this.id)
    const allow = cfg.packages === undefined ? undefined : new Set(cfg.packages)
    for (const component of cfg.components) {
      for (const arch of cfg.architectures) {
        const dir = `${component}/binary-${arch}`
        if (indexCandidates(release, dir, 'Packages', xzPath !== undefined).length === 0) {
          collector.skip({
            key: dir,
            code: 'PSW_ERR_FEED_INVALID',
            message: `the signed Release lists no ${dir} index`,
          })
          continue
        }
        const index = await fetchVerifiedIndex(release, dir, 'Packages', {
          distsUrl,
          fetchIndex: this.#deps.fetchIndex,
          maxBytes: cfg.maxIndexBytes ?? DEFAULT_MAX_INDEX_BYTES,
          maxUnpackedBytes: cfg.maxUnpackedIndexBytes ?? DEFAULT_MAX_UNPACKED_INDEX_BYTES,
          xzPath,
          ...(signal === undefined ? {} : { signal }),
        })
        const ctx: PackagesContext = {
          feedId: this.id,
          baseUrl: this.#baseUrl,
          indexArch: arch,
          vendor: cfg.vendor ?? vendorFrom(release) ?? this.id,
          classification: cfg.classification ?? 'other',
          severity: cfg.severity ?? 'none',
          ...(cfg.product === undefined ? {} : { product: cfg.product }),
        }
        let n = 0
        for (const stanza of iterateDeb822(
          index.data,
          { maxBytes: index.data.byteLength },
          `${this.id}: ${index.file.path}`,
        )) {
          if (++n % STANZAS_PER_SLICE === 0) {
            await yieldToLoop()
            signal?.throwIfAborted()
          }
          const pkg = deb822Field(stanza, 'Package')
          if (allow !== undefined && (pkg === undefined || !allow.has(pkg))) continue
          collector.add(stanzaToArtifact(stanza, ctx), pkg)
        }
      }
    }
    for (const name of allow ?? []) {
      if (!collector.seen.has(name)) {
        collector.skip({
          key: name,
          code: 'PSW_ERR_NOT_FOUND',
          message: 'allow-listed package is in none of the indexes',
        })
      }
    }

    const info: AptReleaseInfo = { date: release.date, signers: verified.signers }
    if (release.validUntil !== undefined) info.validUntil = release.validUntil
    if (release.suite !== undefined) info.suite = release.suite
    if (release.codename !== undefined) info.codename = release.codename
    if (release.origin !== undefined) info.origin = release.origin
    return { artifacts: collector.artifacts, skipped: collector.finishSkipped(), release: info }
  }

  async #xzPath(): Promise<string | undefined> {
    if (this.#deps.xzPath === null) return undefined
    const path = this.#deps.xzPath ?? DEFAULT_XZ_PATH
    return (await xzAvailable(path)) ? path : undefined
  }
}

function vendorFrom(release: AptRelease): string | undefined {
  const origin = release.origin
  return origin !== undefined && origin.length <= 200 && !origin.includes('\n') ? origin : undefined
}

/** Collects artifacts (deduplicated by key) and skipped entries (bounded), enforcing the cap. */
class ListingCollector {
  readonly artifacts: FeedArtifact[] = []
  readonly seen = new Set<string>()
  readonly #byKey = new Map<string, FeedArtifact>()
  readonly #skipped: Skipped[] = []
  #moreSkipped = 0
  readonly #maxArtifacts: number
  readonly #feedId: string

  constructor(maxArtifacts: number, feedId: string) {
    this.#maxArtifacts = maxArtifacts
    this.#feedId = feedId
  }

  add(result: ReturnType<typeof stanzaToArtifact>, pkg: string | undefined): void {
    if (pkg !== undefined) this.seen.add(pkg)
    if (!result.ok) {
      this.skip(result.skipped)
      return
    }
    const a = result.artifact
    const prev = this.#byKey.get(a.key)
    if (prev !== undefined) {
      // `Architecture: all` packages appear in every binary-<arch> index: same bytes, one artifact.
      if (prev.sha256 !== a.sha256 || prev.size !== a.size) {
        this.skip({ key: a.key, code: 'PSW_ERR_FEED_INVALID', message: 'listed twice with different contents' })
      }
      return
    }
    if (this.artifacts.length >= this.#maxArtifacts) {
      throw new UpstreamError(
        'PSW_ERR_TOO_LARGE',
        `APT feed ${this.#feedId} offers more than ${this.#maxArtifacts} artifacts: ` +
          'narrow it with `packages` (an allow-list) or raise `maxArtifacts`',
      )
    }
    this.#byKey.set(a.key, a)
    this.artifacts.push(a)
  }

  skip(entry: Skipped): void {
    if (this.#skipped.length < MAX_SKIPPED_REPORTED) this.#skipped.push(entry)
    else this.#moreSkipped++
  }

  finishSkipped(): Skipped[] {
    if (this.#moreSkipped === 0) return this.#skipped
    return [
      ...this.#skipped,
      { key: '(more)', code: 'PSW_ERR_FEED_INVALID', message: `${this.#moreSkipped} more entries skipped` },
    ]
  }
}
