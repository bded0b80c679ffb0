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

/** A signed install or rollback script is at most this many bytes (UTF-8). */
export const MAX_SCRIPT_BYTES = 64 << 10

/** Script text: part of the signed manifest, so the script is signed with it. */
const ScriptText = Type.String({ minLength: 1, maxLength: MAX_SCRIPT_BYTES })

/**
 * script: the signed install script runs with the interpreter; the verified content (if any)
 * is handed to it as a read-only file. `rollback` is run when the install or its health check fails.
 */
export const ScriptInstallSpec = Type.Object(
  {
    type: Type.Literal('script'),
    interpreter: Type.Union([Type.Literal('sh'), Type.Literal('bash'), Type.Literal('powershell')]),
    install: ScriptText,
    rollback: Type.Optional(ScriptText),
    maxRunSeconds: Type.Integer({ minimum: 1, maximum: 86_400 }),
  },
  { additionalProperties: false },
)

/** Windows exit codes are 32-bit (signed or unsigned as tools print them). */
const ExitCode = Type.Integer({ minimum: -2_147_483_648, maximum: 4_294_967_295 })
/** One command-line argument: no control characters (no NUL, no line breaks). */
const InstallerArg = Type.String({ minLength: 1, maxLength: 1024, pattern: '^[^\\u0000-\\u001f]*$' })

/**
 * msi / msu / exe: a Windows installer run as `msiexec /i`, `wusa` or the executable itself
 * (content format `raw`). Exit codes 0 (success), 3010 and 1641 (reboot required) and 1618
 * (another install is running: retry later) are built in; `successCodes`/`rebootCodes` add more.
 */
export const WindowsInstallSpec = Type.Object(
  {
    type: Type.Union([Type.Literal('msi'), Type.Literal('msu'), Type.Literal('exe')]),
    /** Extra arguments appended after the built-in ones. */
    args: Type.Optional(Type.Array(InstallerArg, { maxItems: 32 })),
    maxRunSeconds: Type.Integer({ minimum: 1, maximum: 86_400 }),
    successCodes: Type.Optional(Type.Array(ExitCode, { maxItems: 32 })),
    rebootCodes: Type.Optional(Type.Array(ExitCode, { maxItems: 32 })),
  },
  { additionalProperties: false },
)

export const InstallSpec = Type.Union([FilesInstallSpec, DpkgInstallSpec, ScriptInstallSpec, WindowsInstallSpec])

export const FilesRollbackSpec = Type.Object({ type: Type.Literal('files-backup') }, { additionalProperties: false })
/** dpkg: the previous package version is kept by the agent and reinstalled. */
export const DpkgRollbackSpec = Type.Object({ type: Type.Literal('dpkg-previous') }, { additionalProperties: false })
/** script: the signed rollback script of the install spec (`install.rollback`) is run. */
export const ScriptRollbackSpec = Type.Object({ type: Type.Literal('script') }, { additionalProperties: false })
/** No automatic rollback. */
export const NoRollbackSpec = Type.Object({ type: Type.Literal('none') }, { additionalProperties: false })

export const RollbackSpec = Type.Union([FilesRollbackSpec, DpkgRollbackSpec, ScriptRollbackSpec, NoRollbackSpec])

/** One argv element of a health-check command (spawned without a shell). */
const CommandArg = Type.String({ minLength: 1, maxLength: 4096, pattern: '^[^\\u0000]*$' })

/** A health check: a command exiting 0, a service running, or a local TCP port accepting connections. */
export const HealthCheck = Type.Union([
  Type.Object(
    {
      type: Type.Literal('command'),
      argv: Type.Array(CommandArg, { minItems: 1, maxItems: 64 }),
      timeoutSeconds: Type.Integer({ minimum: 1, maximum: 3600 }),
    },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      type: Type.Literal('service'),
      /** systemd unit or Windows service name; never starts with `-` (no option injection). */
      name: Type.String({ pattern: '^[A-Za-z0-9_][A-Za-z0-9@._:+\\\\-]{0,254}$' }),
    },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      type: Type.Literal('tcp-port'),
      port: Type.Integer({ minimum: 1, maximum: 65_535 }),
      /** Only the device itself: a manifest cannot make agents probe other hosts. */
      host: Type.Optional(Type.Literal('127.0.0.1')),
    },
    { additionalProperties: false },
  ),
])

/**
 * Run after a successful install; when it fails the device rolls back by itself. Every check
 * must pass in one round; a failed round is retried `retries` times (default 0) after
 * `retryDelaySeconds` (default 5). `timeoutSeconds` bounds the whole health check, retries included.
 */
export const HealthSpec = Type.Object(
  {
    checks: Type.Array(HealthCheck, { minItems: 1, maxItems: 16 }),
    timeoutSeconds: Type.Integer({ minimum: 1, maximum: 3600 }),
    retries: Type.Optional(Type.Integer({ minimum: 0, maximum: 20 })),
    retryDelaySeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 600 })),
  },
  { additionalProperties: false },
)

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
    /** Optional health check after install (absent: none). */
    health: Type.Optional(HealthSpec),
  },
  { additionalProperties: false },
)

export type Manifest = Static<typeof ManifestSchema>
export type PatchInfoT = Static<typeof PatchInfo>
export type InstallSpecT = Static<typeof InstallSpec>
export type FilesInstallSpecT = Static<typeof FilesInstallSpec>
export type DpkgInstallSpecT = Static<typeof DpkgInstallSpec>
export type ScriptInstallSpecT = Static<typeof ScriptInstallSpec>
export type WindowsInstallSpecT = Static<typeof WindowsInstallSpec>
export type InstallType = InstallSpecT['type']
export type HealthSpecT = Static<typeof HealthSpec>
export type HealthCheckT = Static<typeof HealthCheck>
export type RollbackSpecT = Static<typeof RollbackSpec>
export type ContentFormatT = Static<typeof ContentFormat>

/** Rollbacks each installer can perform. */
const ROLLBACKS: Record<InstallType, readonly RollbackSpecT['type'][]> = {
  files: ['files-backup', 'none'],
  dpkg: ['dpkg-previous', 'none'],
  script: ['script', 'none'],
  msi: ['none'],
  msu: ['none'],
  exe: ['none'],
}

/** Installers that take the content exactly as the vendor published it. */
const NEEDS_RAW: ReadonlySet<InstallType> = new Set(['dpkg', 'msi', 'msu', 'exe'])

/**
 * Why an install spec, rollback spec and content format do not fit together, or undefined
 * when they do: files ↔ files-backup | none; dpkg ↔ dpkg-previous | none; script ↔ script
 * (needs `install.rollback`) | none; msi, msu, exe ↔ none. dpkg, msi, msu and exe need raw
 * content; files and script take either format (a script gets the content bytes as they are).
 */
export function installMismatch(
  install: Pick<InstallSpecT, 'type'> & { rollback?: string | undefined },
  rollback: Pick<RollbackSpecT, 'type'>,
  format: ContentFormatT = 'tar',
): string | undefined {
  if (!ROLLBACKS[install.type].includes(rollback.type)) {
    return `rollback ${rollback.type} does not fit installer ${install.type}`
  }
  if (rollback.type === 'script' && install.rollback === undefined) return 'rollback script needs install.rollback'
  if (NEEDS_RAW.has(install.type) && format !== 'raw') return `a ${install.type} install needs content format raw`
  return undefined
}

const WINDOWS_INSTALLERS: ReadonlySet<InstallType> = new Set(['msi', 'msu', 'exe'])

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
  if (m.install.type === 'script') {
    for (const text of [m.install.install, m.install.rollback]) {
      if (text === undefined) continue
      if (Buffer.byteLength(text) > MAX_SCRIPT_BYTES) throw fail(`a script is longer than ${MAX_SCRIPT_BYTES} bytes`)
      if (text.includes('\0')) throw fail('a script contains a NUL character')
    }
  }
  if (WINDOWS_INSTALLERS.has(m.install.type) && m.patch.platform.os !== 'windows') {
    throw fail(`a ${m.install.type} install needs platform os windows`)
  }
  return m
}
