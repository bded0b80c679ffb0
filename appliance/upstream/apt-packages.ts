/**
 * Turns one stanza of a verified APT `Packages` index into a FeedArtifact, or into a skipped
 * entry when the stanza cannot be offered safely. Pure.
 *
 * Names and versions are not rewritten: Debian's package-name charset (`[a-z0-9+.-]`) and
 * version charset (`[A-Za-z0-9.+~:-]`) are subsets of the bundle name/version patterns, so a
 * valid Debian stanza maps one to one. A stanza outside them is not valid Debian (dpkg would
 * refuse it too) and is skipped: rewriting characters could make two versions collide or
 * change how dpkg orders them.
 */
import type { Static } from '@sinclair/typebox'
import type { Classification, Severity } from '../../shared/metadata/manifest-schema.ts'
import { type Deb822Stanza, deb822Field } from './apt-deb822.ts'
import { type FeedArtifact, type FeedListing, MAX_ARTIFACT_BYTES } from './feed-types.ts'

/** Architectures whose `binary-<arch>` indexes the feed reads. */
export type AptArch = 'amd64' | 'arm64' | 'all'

export const DEBIAN_PACKAGE_NAME = '^[a-z0-9][a-z0-9+.-]+$'
const PACKAGE = new RegExp(DEBIAN_PACKAGE_NAME)
const VERSION = /^[A-Za-z0-9][A-Za-z0-9.+~:-]*$/
const SHA256 = /^[0-9a-fA-F]{64}$/
const SIZE = /^\d{1,16}$/
const SEGMENT = /^[A-Za-z0-9._+~:=@-]+$/
const MAX_NAME = 100
const MAX_VERSION = 100
const MAX_DESCRIPTION = 4000

const ARCH_MAP: Record<AptArch, FeedArtifact['arch']> = { amd64: 'x64', arm64: 'arm64', all: 'any' }

export interface PackagesContext {
  feedId: string
  /** Repository root URL without a trailing slash; `Filename` is relative to it. */
  baseUrl: string
  /** Architecture of the `binary-<arch>` index the stanza came from. */
  indexArch: AptArch
  vendor: string
  /** Defaults to the package name. */
  product?: string
  classification: Static<typeof Classification>
  severity: Static<typeof Severity>
}

export type Skipped = FeedListing['skipped'][number]

export type StanzaResult = { ok: true; artifact: FeedArtifact } | { ok: false; skipped: Skipped }

/** A printable, bounded rendering of untrusted text for keys and messages. */
function printable(text: string | undefined, max = 100): string {
  if (text === undefined || text === '') return '?'
  return text.replace(/[^\x21-\x7e]/g, '?').slice(0, max)
}

/**
 * Validates a `Filename` (relative to the repository root) and returns it URL-encoded.
 * Absolute paths, `.`/`..` segments, empty segments, backslashes and unusual characters are
 * refused (undefined).
 */
export function safeFilename(filename: string): string | undefined {
  if (filename.length === 0 || filename.length > 1024 || filename.startsWith('/')) return undefined
  const segments = filename.split('/')
  if (segments.some((s) => s === '' || s === '.' || s === '..' || !SEGMENT.test(s))) return undefined
  // Keep `+` and `~` literal as APT does; percent-encode `:`, `=`, `@`.
  return segments.map((s) => encodeURIComponent(s).replace(/%2B/g, '+')).join('/')
}

/** Maps one stanza; the caller has already filtered by package allow-list. */
export function stanzaToArtifact(stanza: Deb822Stanza, ctx: PackagesContext): StanzaResult {
  const pkg = deb822Field(stanza, 'Package')
  const version = deb822Field(stanza, 'Version')
  const arch = deb822Field(stanza, 'Architecture')
  const key = `${printable(pkg)}_${printable(version)}_${printable(arch, 20)}`
  const skip = (message: string): StanzaResult => ({
    ok: false,
    skipped: { key, code: 'PSW_ERR_FEED_INVALID', message },
  })

  if (pkg === undefined || !PACKAGE.test(pkg) || pkg.length > MAX_NAME) return skip('missing or invalid Package')
  if (version === undefined || !VERSION.test(version) || version.length > MAX_VERSION) {
    return skip('missing or invalid Version')
  }
  if (arch !== 'all' && arch !== ctx.indexArch) {
    return skip(`Architecture ${printable(arch, 20)} does not belong in the binary-${ctx.indexArch} index`)
  }
  const sha256 = deb822Field(stanza, 'SHA256')
  if (sha256 === undefined) return skip('no SHA256 (weaker digests are not trusted)')
  if (!SHA256.test(sha256)) return skip('malformed SHA256')
  const sizeText = deb822Field(stanza, 'Size')
  const size = sizeText !== undefined && SIZE.test(sizeText) ? Number(sizeText) : Number.NaN
  if (!(size >= 0 && size <= MAX_ARTIFACT_BYTES)) return skip('missing or invalid Size')
  const filename = deb822Field(stanza, 'Filename')
  const path = filename === undefined ? undefined : safeFilename(filename)
  if (path === undefined) return skip(`unsafe or missing Filename ${printable(filename, 200)}`)

  const artifact: FeedArtifact = {
    feedId: ctx.feedId,
    key: `${pkg}_${version}_${arch}`,
    source: { kind: 'http', url: `${ctx.baseUrl}/${path}` },
    size,
    sha256: sha256.toLowerCase(),
    name: pkg,
    version,
    vendor: ctx.vendor,
    product: ctx.product ?? pkg,
    classification: ctx.classification,
    severity: ctx.severity,
    cves: [],
    // Versions of one package share its name: the catalogue orders them by version, so the
    // older ones are not listed as superseded. Depends are resolved by dpkg/apt on the device.
    supersedes: [],
    requires: [],
    os: 'linux',
    arch: ARCH_MAP[arch as AptArch],
    installer: { type: 'dpkg', package: pkg },
    rollback: { type: 'dpkg-previous' },
    emergency: false,
  }
  const synopsis = (deb822Field(stanza, 'Description') ?? '').split('\n', 1)[0]?.trim() ?? ''
  if (synopsis !== '') artifact.description = synopsis.slice(0, MAX_DESCRIPTION)
  return { ok: true, artifact }
}
