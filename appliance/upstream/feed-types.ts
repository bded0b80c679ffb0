import { type Static, Type } from '@sinclair/typebox'
import type { Classification, Severity } from '../../shared/metadata/manifest-schema.ts'

/**
 * The contract every feed adapter (patchswarm vendor feed, APT repository, local folder)
 * implements: list what is available, with vendor metadata and the vendor's digest, and say
 * where the bytes are. The WAN downloader fetches `source` and verifies `size` + `sha256`
 * before anything trusts the bytes; adapters never download artifacts themselves.
 */

/** Largest artifact any feed may declare (the downloader aborts past the declared size). */
export const MAX_ARTIFACT_BYTES = 64 * 1024 ** 3

/** How the agent installs the artifact. `dpkg`/`script`/`msi`… arrive with the policy issue. */
export const FeedInstallerSpec = Type.Union([
  Type.Object(
    {
      type: Type.Literal('files'),
      targetRoot: Type.String({ minLength: 1, maxLength: 1024, pattern: '^/' }),
      maxRunSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 86_400 })),
    },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      type: Type.Literal('dpkg'),
      /** Debian package name and version, for inventory and supersedence. */
      package: Type.String({ minLength: 1, maxLength: 200, pattern: '^[a-z0-9][a-z0-9+.-]+$' }),
      maxRunSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 86_400 })),
    },
    { additionalProperties: false },
  ),
])
export type FeedInstallerSpec = Static<typeof FeedInstallerSpec>

export const FeedRollbackSpec = Type.Union([
  Type.Object({ type: Type.Literal('files-backup') }, { additionalProperties: false }),
  /** dpkg: the previous .deb is kept in the agent's store and reinstalled. */
  Type.Object({ type: Type.Literal('dpkg-previous') }, { additionalProperties: false }),
  Type.Object({ type: Type.Literal('none') }, { additionalProperties: false }),
])
export type FeedRollbackSpec = Static<typeof FeedRollbackSpec>

/** Where the artifact's bytes are: an HTTP(S) URL (goes over the WAN) or a local file (USB import). */
export type ArtifactSource = { kind: 'http'; url: string } | { kind: 'file'; path: string }

/** One artifact a feed offers. Plain data, already validated by the adapter. */
export interface FeedArtifact {
  /** Feed id (from the configuration) this artifact came from. */
  feedId: string
  /**
   * Stable identity within the feed: the same artifact listed again has the same key
   * (patchswarm feed: its `id`; APT: `package_version_arch`; folder: relative path).
   */
  key: string
  source: ArtifactSource
  /** Declared size in bytes; the downloader refuses more or fewer. */
  size: number
  /** Vendor SHA-256 (lower-case hex) of the artifact's bytes. */
  sha256: string
  /** Bundle name: letters, digits, `._+-` (as IngestRequest.name). */
  name: string
  version: string
  vendor: string
  product: string
  classification: Static<typeof Classification>
  severity: Static<typeof Severity>
  cves: string[]
  advisory?: string
  /** ISO 8601 date or timestamp as the vendor gave it. */
  releaseDate?: string
  supersedes: string[]
  requires: string[]
  description?: string
  os: 'linux' | 'windows' | 'darwin' | 'any'
  arch: 'x64' | 'arm64' | 'any'
  installer: FeedInstallerSpec
  rollback: FeedRollbackSpec
  /** Emergency patches jump the WAN queue (and, later, bypass maintenance windows). */
  emergency: boolean
}

/** What one `list()` returns: the artifacts, and problems with single entries that were skipped. */
export interface FeedListing {
  artifacts: FeedArtifact[]
  /** Entries that failed validation: skipped, reported, never fatal for the rest of the feed. */
  skipped: { key: string; code: string; message: string }[]
}

/**
 * Fetches a small feed document (a feed JSON, InRelease, Packages index) over the WAN,
 * through the same rate cap and schedule as artifacts. Rejects with PSW_ERR_FEED_FETCH on
 * network errors and non-2xx statuses, and with PSW_ERR_TOO_LARGE past `maxBytes`.
 */
export type IndexFetcher = (url: string, options: { maxBytes: number; signal?: AbortSignal }) => Promise<Buffer>

export interface FeedAdapter {
  readonly id: string
  readonly kind: 'patchswarm' | 'apt' | 'folder'
  /**
   * Lists what the feed offers now. Rejects (with a stable code) when the feed as a whole
   * cannot be trusted — bad signature, expired, malformed index — so nothing from it is used.
   */
  list(signal?: AbortSignal): Promise<FeedListing>
}
