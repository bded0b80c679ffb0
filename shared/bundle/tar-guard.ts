/**
 * The tar guard (faults rows 11-14): pure validation of bundle tar headers, no I/O.
 *
 * A bundle is `bundle.json` (metadata) followed by a `payload/` directory entry and the payload
 * beneath it. Only regular files and directories are allowed, every parent directory must be
 * declared by its own entry before its children, and paths must be portable and unambiguous.
 *
 * Raw content (a vendor's own tar, manifest `content.format: 'raw'`) is read in the `plain`
 * layout: no `bundle.json`, no `payload/` prefix, every entry is payload; all other rules apply,
 * and the unpacked size is bounded by {@link TarLimits.maxUnpackedSize} alone.
 */
import type { Header } from 'tar-stream'
import { BundleGuardError, type ErrorCode, ValidationError } from '../errors.ts'

/** Limits applied while reading a bundle. All are positive integers. */
export interface TarLimits {
  /** Maximum number of tar entries, metadata and directories included. */
  maxEntries: number
  /** Maximum number of `/`-separated segments in an archive path. */
  maxDepth: number
  /** Maximum UTF-8 length of an archive path. */
  maxPathBytes: number
  /** Maximum UTF-8 length of one path segment. */
  maxSegmentBytes: number
  /** Maximum total size of the payload files, whatever `bundle.json` declares. */
  maxUnpackedSize: number
  /** Maximum size of the `bundle.json` entry. */
  maxMetaBytes: number
}

export const DEFAULT_TAR_LIMITS: Readonly<TarLimits> = Object.freeze({
  maxEntries: 100_000,
  maxDepth: 64,
  maxPathBytes: 1024,
  maxSegmentBytes: 255,
  maxUnpackedSize: 32 * 1024 ** 3,
  maxMetaBytes: 64 * 1024,
})

export const BUNDLE_FORMAT = 'patchswarm.bundle/1'
export const META_ENTRY = 'bundle.json'
export const PAYLOAD_DIR = 'payload'

/**
 * How an archive is laid out: `bundle` is bundle.json + payload/ (content format `tar`);
 * `plain` is an ordinary tar whose entries are all payload (content format `raw`). A plain
 * tar may prefix its paths with one `./` and carry a `./` entry for its root, as tars made with
 * `tar -C dir -cf out.tar .` do; the prefix is dropped before the path rules apply.
 */
export type TarLayout = 'bundle' | 'plain'

/** Contents of the `bundle.json` entry. */
export interface BundleMeta {
  format: typeof BUNDLE_FORMAT
  name: string
  version: string
  /** Number of regular files under `payload/`. */
  files: number
  /** Sum of the sizes of those files. */
  unpackedSize: number
}

/** One validated payload entry; `path` is relative to `payload/`. */
export interface PayloadEntry {
  path: string
  type: 'file' | 'directory'
  size: number
  mode: number
}

/**
 * A tar header as tar-stream's extract emits it. Its declared type is narrower than reality:
 * an unknown typeflag arrives as `type: null`, and any field may be missing in a hand-made header.
 */
export type TarHeader = Omit<Partial<Header>, 'type'> & { name: string; type?: string | null }

/** The result of checking one header on its own (path still relative to the archive root). */
export interface CheckedHeader {
  archivePath: string
  type: 'file' | 'directory'
  size: number
  mode: number
}

const fail = (code: ErrorCode, message: string, details?: Record<string, unknown>): never => {
  throw new BundleGuardError(code, message, details === undefined ? {} : { details })
}

/** Merges `partial` over the defaults; PSW_ERR_INVALID_ARGUMENT on a value that is not a positive integer. */
export function resolveLimits(partial: Partial<TarLimits> = {}): TarLimits {
  const limits = { ...DEFAULT_TAR_LIMITS, ...partial }
  for (const [key, value] of Object.entries(limits)) {
    if (!Number.isSafeInteger(value) || value <= 0) {
      throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', `tar limit ${key} must be a positive integer`)
    }
  }
  return limits
}

/** C0 controls incl. NUL, and DEL. */
const hasControl = (s: string): boolean => {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x20 || c === 0x7f) return true
  }
  return false
}
/** Controls, backslash, colon (drive letters, NTFS streams), U+FFFD (what invalid UTF-8 decodes to). */
const hasForbiddenChar = (s: string): boolean => hasControl(s) || /[\\:\ufffd]/.test(s)

/**
 * Validates an archive path and returns it normalised (a directory's single trailing `/`
 * removed). Rejects absolute paths, `..`, `.` and empty segments, backslashes, drive letters
 * and colons, control characters, segments ending in `.` or space (Windows aliases them), and
 * paths over the depth/length limits.
 */
export function normalizeTarPath(name: unknown, limits: TarLimits, isDirectory: boolean): string {
  if (typeof name !== 'string' || name.length === 0) return fail('PSW_ERR_TAR_PATH', 'tar entry has an empty path')
  const bytes = Buffer.byteLength(name, 'utf8')
  if (bytes > limits.maxPathBytes) {
    fail('PSW_ERR_TAR_LIMIT', `tar path is ${bytes} bytes, limit ${limits.maxPathBytes}`, { bytes })
  }
  const shown = JSON.stringify(name)
  if (hasForbiddenChar(name)) fail('PSW_ERR_TAR_PATH', `tar path ${shown} contains a forbidden character`)
  if (name.startsWith('/')) fail('PSW_ERR_TAR_PATH', `tar path ${shown} is absolute`)
  const path = isDirectory && name.endsWith('/') ? name.slice(0, -1) : name
  const segments = path.split('/')
  if (segments.length > limits.maxDepth) {
    fail('PSW_ERR_TAR_LIMIT', `tar path has ${segments.length} segments, limit ${limits.maxDepth}`)
  }
  for (const segment of segments) {
    if (segment === '' || segment === '.' || segment === '..') {
      fail('PSW_ERR_TAR_PATH', `tar path ${shown} has an empty, '.' or '..' segment`)
    }
    if (segment.endsWith('.') || segment.endsWith(' ')) {
      fail('PSW_ERR_TAR_PATH', `tar path ${shown} has a segment ending in '.' or space`)
    }
    if (Buffer.byteLength(segment, 'utf8') > limits.maxSegmentBytes) {
      fail('PSW_ERR_TAR_LIMIT', `a segment of tar path ${shown} exceeds ${limits.maxSegmentBytes} bytes`)
    }
  }
  return path
}

/** Keeps only `0o755` (any execute bit set, and all directories) or `0o644`: no setuid/setgid/sticky. */
export function normalizeMode(mode: number | undefined, type: 'file' | 'directory'): number {
  if (type === 'directory') return 0o755
  return ((mode ?? 0) & 0o111) !== 0 ? 0o755 : 0o644
}

/** Checks one header on its own: entry type, links, size, path, mode. */
export function checkHeader(header: TarHeader, limits: TarLimits): CheckedHeader {
  const type = header.type
  if (type === 'symlink' || type === 'link') {
    fail('PSW_ERR_TAR_LINK', `tar entry ${JSON.stringify(header.name)} is a ${type}; links are not allowed`)
  }
  if (type !== 'file' && type !== 'directory') {
    return fail('PSW_ERR_TAR_ENTRY_TYPE', `tar entry ${JSON.stringify(header.name)} has type ${String(type)}`)
  }
  if (header.linkname) fail('PSW_ERR_TAR_LINK', `tar entry ${JSON.stringify(header.name)} carries a link name`)
  const size = header.size ?? 0
  if (!Number.isSafeInteger(size) || size < 0) fail('PSW_ERR_TAR_INVALID', `tar entry has invalid size ${size}`)
  if (type === 'directory' && size !== 0) fail('PSW_ERR_TAR_INVALID', 'tar directory entry has a non-zero size')
  const archivePath = normalizeTarPath(header.name, limits, type === 'directory')
  return { archivePath, type, size, mode: normalizeMode(header.mode, type) }
}

const META_KEYS = ['files', 'format', 'name', 'unpackedSize', 'version']
const isText = (v: unknown): v is string => typeof v === 'string' && v.length > 0 && v.length <= 200 && !hasControl(v)

/** Validates a parsed `bundle.json` value (PSW_ERR_BUNDLE_METADATA, or PSW_ERR_TAR_LIMIT for sizes). */
export function validateBundleMeta(value: unknown, limits: TarLimits): BundleMeta {
  const bad = (why: string): never => fail('PSW_ERR_BUNDLE_METADATA', `bundle.json: ${why}`)
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return bad('not an object')
  const v = value as Record<string, unknown>
  if (Object.keys(v).sort().join() !== META_KEYS.join()) bad(`fields must be exactly ${META_KEYS.join(', ')}`)
  if (v.format !== BUNDLE_FORMAT) bad(`unknown format ${JSON.stringify(v.format)}`)
  if (!isText(v.name)) bad('invalid name')
  if (!isText(v.version)) bad('invalid version')
  const { files, unpackedSize } = v
  if (typeof files !== 'number' || !Number.isSafeInteger(files) || files < 0) return bad('invalid files')
  if (typeof unpackedSize !== 'number' || !Number.isSafeInteger(unpackedSize) || unpackedSize < 0) {
    return bad('invalid unpackedSize')
  }
  if (files > limits.maxEntries) fail('PSW_ERR_TAR_LIMIT', `bundle declares ${files} files, too many`)
  if (unpackedSize > limits.maxUnpackedSize) {
    fail('PSW_ERR_TAR_LIMIT', `bundle declares ${unpackedSize} bytes unpacked, limit ${limits.maxUnpackedSize}`)
  }
  return v as unknown as BundleMeta
}

/** Decodes (strict UTF-8) and validates the bytes of `bundle.json`. */
export function parseBundleMeta(bytes: Uint8Array, limits: TarLimits): BundleMeta {
  let value: unknown
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch (err) {
    throw new BundleGuardError('PSW_ERR_BUNDLE_METADATA', 'bundle.json is not valid UTF-8 JSON', { cause: err })
  }
  return validateBundleMeta(value, limits)
}

/** What {@link BundleGuard.accept} decided about one header. */
export type Accepted = { kind: 'meta'; size: number } | { kind: 'root' } | { kind: 'entry'; entry: PayloadEntry }

/**
 * The stateful part of the guard, fed every header in archive order: entry order and count,
 * duplicates, file/directory conflicts, undeclared parents, running unpacked size.
 */
export class BundleGuard {
  readonly limits: TarLimits
  readonly layout: TarLayout
  #count = 0
  #files = 0
  #total = 0
  #meta: BundleMeta | undefined
  #rootSeen = false
  readonly #kinds = new Map<string, 'file' | 'directory'>()

  constructor(limits: Partial<TarLimits> = {}, layout: TarLayout = 'bundle') {
    this.limits = resolveLimits(limits)
    this.layout = layout
  }

  /**
   * Validates the next header. In the `bundle` layout the caller must call {@link setMeta}
   * after reading the meta entry.
   */
  accept(header: TarHeader): Accepted {
    this.#count += 1
    if (this.#count > this.limits.maxEntries) fail('PSW_ERR_TAR_LIMIT', `more than ${this.limits.maxEntries} entries`)
    if (this.layout === 'plain') return this.#acceptPlain(header)
    const h = checkHeader(header, this.limits)
    if (this.#count === 1) {
      if (h.archivePath !== META_ENTRY || h.type !== 'file')
        fail('PSW_ERR_BUNDLE_METADATA', 'first entry is not bundle.json')
      if (h.size > this.limits.maxMetaBytes)
        fail('PSW_ERR_TAR_LIMIT', `bundle.json is larger than ${this.limits.maxMetaBytes}`)
      return { kind: 'meta', size: h.size }
    }
    const meta = this.#meta ?? fail('PSW_ERR_BUNDLE_METADATA', 'bundle.json was not read')
    if (h.archivePath === PAYLOAD_DIR) {
      if (h.type !== 'directory' || this.#rootSeen) fail('PSW_ERR_TAR_PATH', 'payload/ must be one directory entry')
      this.#rootSeen = true
      return { kind: 'root' }
    }
    if (!h.archivePath.startsWith(`${PAYLOAD_DIR}/`))
      fail('PSW_ERR_TAR_PATH', `entry ${h.archivePath} is outside payload/`)
    if (!this.#rootSeen) fail('PSW_ERR_TAR_INVALID', 'payload/ directory entry missing before its contents')
    return this.#entry(h, h.archivePath.slice(PAYLOAD_DIR.length + 1), meta)
  }

  /** A plain tar: an optional `./` root entry, then payload entries (one leading `./` dropped). */
  #acceptPlain(header: TarHeader): Accepted {
    const name = header.name
    const dotted = typeof name === 'string' && name.startsWith('./')
    if (dotted && name.length === 2) {
      const h = checkHeader({ ...header, name: 'root/' }, this.limits)
      if (h.type !== 'directory' || this.#count !== 1)
        fail('PSW_ERR_TAR_PATH', "'./' must be the first entry, a directory")
      return { kind: 'root' }
    }
    const h = checkHeader(dotted ? { ...header, name: name.slice(2) } : header, this.limits)
    return this.#entry(h, h.archivePath, undefined)
  }

  /** Duplicates, parents and sizes of one payload entry (`path` relative to the payload root). */
  #entry(h: CheckedHeader, path: string, meta: BundleMeta | undefined): Accepted {
    if (this.#kinds.has(path)) fail('PSW_ERR_TAR_PATH', `duplicate entry ${h.archivePath}`)
    const slash = path.lastIndexOf('/')
    if (slash >= 0) {
      const parent = this.#kinds.get(path.slice(0, slash))
      if (parent === 'file') fail('PSW_ERR_TAR_PATH', `entry ${h.archivePath} is inside a file`)
      if (parent === undefined) fail('PSW_ERR_TAR_INVALID', `entry ${h.archivePath} precedes its parent directory`)
    }
    if (h.type === 'file') {
      this.#files += 1
      this.#total += h.size
      if (meta && this.#files > meta.files)
        fail('PSW_ERR_BUNDLE_METADATA', `more files than the declared ${meta.files}`)
      if (meta && this.#total > meta.unpackedSize) {
        fail('PSW_ERR_TAR_LIMIT', `payload exceeds the declared unpacked size ${meta.unpackedSize}`)
      }
      if (this.#total > this.limits.maxUnpackedSize) fail('PSW_ERR_TAR_LIMIT', 'payload exceeds the unpacked limit')
    }
    this.#kinds.set(path, h.type)
    return { kind: 'entry', entry: { path, type: h.type, size: h.size, mode: h.mode } }
  }

  setMeta(meta: BundleMeta): void {
    this.#meta = meta
  }

  /**
   * Checks the end of the archive. Bundle layout: metadata read, payload present, counts as
   * declared; returns the metadata. Plain layout: at least one entry; returns undefined.
   */
  finish(): BundleMeta | undefined {
    if (this.layout === 'plain') {
      if (this.#kinds.size === 0) fail('PSW_ERR_TAR_INVALID', 'tar archive has no entries')
      return undefined
    }
    const meta = this.#meta ?? fail('PSW_ERR_BUNDLE_METADATA', 'bundle has no bundle.json')
    if (!this.#rootSeen) fail('PSW_ERR_TAR_INVALID', 'bundle has no payload/ directory')
    if (this.#files !== meta.files || this.#total !== meta.unpackedSize) {
      fail('PSW_ERR_BUNDLE_METADATA', `payload has ${this.#files} files / ${this.#total} bytes, declared differently`)
    }
    return meta
  }
}
