import { type Static, Type } from '@sinclair/typebox'
import { chunkCount, MAX_CHUNK_SIZE, MAX_CHUNKS, MIN_CHUNK_SIZE } from '../content/chunking.ts'
import { ValidationError } from '../errors.ts'
import { isRealTimestamp, MetadataVersion, Sha256Hex, ShortText, Timestamp } from './common-schema.ts'
import { compileChecker } from './schema-check.ts'

export const MANIFEST_TYPE = 'patchswarm/manifest'
export const MANIFEST_SPEC_VERSION = 1
/** A signed manifest envelope (JSON text) never exceeds this. */
export const MAX_MANIFEST_BYTES = 4 << 20

export const Classification = Type.Union(
  ['security', 'critical', 'bugfix', 'feature', 'definition', 'driver', 'tool', 'other'].map((c) => Type.Literal(c)),
)
export const Severity = Type.Union(['critical', 'high', 'medium', 'low', 'none'].map((c) => Type.Literal(c)))

export const PatchInfo = Type.Object(
  {
    name: ShortText,
    vendor: ShortText,
    product: ShortText,
    version: Type.String({ minLength: 1, maxLength: 100 }),
    classification: Classification,
    severity: Severity,
    cves: Type.Array(Type.String({ pattern: '^CVE-\\d{4}-\\d{4,9}$' }), { maxItems: 1000 }),
    /** Bundle names (product identities) this patch replaces. */
    supersedes: Type.Array(ShortText, { maxItems: 100 }),
    /** Bundle names that must be installed first. */
    requires: Type.Array(ShortText, { maxItems: 100 }),
    platform: Type.Object(
      {
        os: Type.Union(['linux', 'windows', 'darwin', 'any'].map((c) => Type.Literal(c))),
        arch: Type.Union(['x64', 'arm64', 'any'].map((c) => Type.Literal(c))),
      },
      { additionalProperties: false },
    ),
    advisory: Type.Optional(Type.String({ maxLength: 200 })),
    description: Type.Optional(Type.String({ maxLength: 4000 })),
  },
  { additionalProperties: false },
)

export const FilesInstallSpec = Type.Object(
  {
    type: Type.Literal('files'),
    /** Where the payload is extracted; agents may map it under their configured target root. */
    targetRoot: Type.String({ minLength: 1, maxLength: 1024 }),
    /** The installer promises to finish within this many seconds (windows use it later). */
    maxRunSeconds: Type.Integer({ minimum: 1, maximum: 86_400 }),
  },
  { additionalProperties: false },
)

/** dpkg: the artifact is a Debian package, installed as is (content format `raw`). */
export const DpkgInstallSpec = Type.Object(
  {
    type: Type.Literal('dpkg'),
    /** Debian package name, for inventory and supersedence. */
    package: Type.String({ minLength: 1, maxLength: 200, pattern: '^[a-z0-9][a-z0-9+.-]+$' }),
    maxRunSeconds: Type.Integer({ minimum: 1, maximum: 86_400 }),
  },
  { additionalProperties: false },
)

export const InstallSpec = Type.Union([FilesInstallSpec, DpkgInstallSpec])

export const FilesRollbackSpec = Type.Object({ type: Type.Literal('files-backup') }, { additionalProperties: false })
/** dpkg: the previous package version is kept by the agent and reinstalled. */
export const DpkgRollbackSpec = Type.Object({ type: Type.Literal('dpkg-previous') }, { additionalProperties: false })
/** No automatic rollback. */
export const NoRollbackSpec = Type.Object({ type: Type.Literal('none') }, { additionalProperties: false })

export const RollbackSpec = Type.Union([FilesRollbackSpec, DpkgRollbackSpec, NoRollbackSpec])

/**
 * What the content bytes are: `tar` (absent means tar) is the patchswarm bundle format
 * (`bundle.json` + `payload/`); `raw` is a vendor artifact exactly as the vendor published it
 * (a `.deb`, or an ordinary tar for the files installer), so its SHA-256 is the vendor's.
 */
export const ContentFormat = Type.Union([Type.Literal('tar'), Type.Literal('raw')])

export const ContentInfo = Type.Object(
  {
    size: Type.Integer({ minimum: 0, maximum: MAX_CHUNKS * MAX_CHUNK_SIZE }),
    chunkSize: Type.Integer({ minimum: MIN_CHUNK_SIZE, maximum: MAX_CHUNK_SIZE }),
    sha256: Sha256Hex,
    chunks: Type.Array(Sha256Hex, { maxItems: MAX_CHUNKS }),
    format: Type.Optional(ContentFormat),
  },
  { additionalProperties: false },
)

export const ManifestSchema = Type.Object(
  {
    type: Type.Literal(MANIFEST_TYPE),
    specVersion: Type.Literal(MANIFEST_SPEC_VERSION),
    /** The bundle's identity: SHA-256 of its content (equals content.sha256). */
    bundleId: Sha256Hex,
    /** Metadata version: strictly increasing across everything one appliance signs. */
    version: MetadataVersion,
    created: Timestamp,
    expires: Timestamp,
    patch: PatchInfo,
    install: InstallSpec,
    rollback: RollbackSpec,
    content: ContentInfo,
  },
  { additionalProperties: false },
)

export type Manifest = Static<typeof ManifestSchema>
export type PatchInfoT = Static<typeof PatchInfo>
export type InstallSpecT = Static<typeof InstallSpec>
export type FilesInstallSpecT = Static<typeof FilesInstallSpec>
export type RollbackSpecT = Static<typeof RollbackSpec>
export type ContentFormatT = Static<typeof ContentFormat>

/** Rollbacks each installer can perform. */
const ROLLBACKS: Record<InstallSpecT['type'], readonly RollbackSpecT['type'][]> = {
  files: ['files-backup', 'none'],
  dpkg: ['dpkg-previous', 'none'],
}

/**
 * Why an install spec, rollback spec and content format do not fit together, or undefined
 * when they do: files ↔ files-backup | none, dpkg ↔ dpkg-previous | none, dpkg needs raw content.
 */
export function installMismatch(
  install: Pick<InstallSpecT, 'type'>,
  rollback: Pick<RollbackSpecT, 'type'>,
  format: ContentFormatT = 'tar',
): string | undefined {
  if (!ROLLBACKS[install.type].includes(rollback.type)) {
    return `rollback ${rollback.type} does not fit installer ${install.type}`
  }
  if (install.type === 'dpkg' && format !== 'raw') return 'a dpkg install needs content format raw'
  return undefined
}

const checker = compileChecker(ManifestSchema, 'PSW_ERR_MANIFEST_INVALID')

/** Validates schema and internal consistency (chunk count, power-of-two chunk size, ids, installer). */
export function validateManifest(value: unknown): Manifest {
  const m = checker.check(value, 'manifest')
  const { size, chunkSize, chunks, sha256 } = m.content
  const fail = (msg: string) => new ValidationError('PSW_ERR_MANIFEST_INVALID', `manifest is inconsistent: ${msg}`)
  if ((chunkSize & (chunkSize - 1)) !== 0) throw fail('chunk size is not a power of two')
  if (chunks.length !== chunkCount(size, chunkSize)) throw fail(`${chunks.length} chunk hashes for ${size} bytes`)
  if (m.bundleId !== sha256) throw fail('bundleId differs from content.sha256')
  if (!isRealTimestamp(m.created) || !isRealTimestamp(m.expires)) throw fail('created or expires is not a real date')
  if (Date.parse(m.expires) <= Date.parse(m.created)) throw fail('expires is not after created')
  const mismatch = installMismatch(m.install, m.rollback, m.content.format)
  if (mismatch !== undefined) throw fail(mismatch)
  return m
}
