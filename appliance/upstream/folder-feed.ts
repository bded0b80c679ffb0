import { constants } from 'node:fs'
import { open, realpath, stat } from 'node:fs/promises'
import { join, sep } from 'node:path'
import { type Static, Type } from '@sinclair/typebox'
import type { Logger } from 'pino'
import type { Clock } from '../../shared/clock.ts'
import { isPswError, UpstreamError } from '../../shared/errors.ts'
import { compileChecker } from '../../shared/metadata/schema-check.ts'
import type { ArtifactSource, FeedAdapter } from './feed-types.ts'
import { FeedConfigId, FeedPublicKeys } from './vendor-feed.ts'
import { loadVendorFeed, type VendorFeedListing } from './vendor-feed-listing.ts'
import { DEFAULT_FEED_MAX_BYTES, MAX_FEED_MAX_BYTES } from './vendor-feed-schema.ts'
import {
  DEFAULT_MAX_FUTURE_SKEW_MS,
  type FeedKey,
  MAX_SIGNATURE_FILE_BYTES,
  parseFeedPublicKeys,
} from './vendor-feed-trust.ts'

/** The feed document a folder must contain, and its detached signature. */
export const FOLDER_FEED_FILE = 'feed.json'
export const FOLDER_SIGNATURE_FILE = 'feed.json.sig'

/** One `kind: 'folder'` entry of the `feeds` configuration (a USB stick for a site with no WAN). */
export const FolderFeedConfigSchema = Type.Object(
  {
    id: FeedConfigId,
    kind: Type.Literal('folder'),
    /** Absolute path of the folder holding `feed.json` and the artifacts. */
    path: Type.String({ minLength: 2, maxLength: 4096, pattern: '^/' }),
    /** When set, `feed.json.sig` must carry a valid signature by one of these keys. */
    publicKeys: Type.Optional(FeedPublicKeys),
    maxBytes: Type.Optional(Type.Integer({ minimum: 1024, maximum: MAX_FEED_MAX_BYTES })),
  },
  { additionalProperties: false },
)
export type FolderFeedConfig = Static<typeof FolderFeedConfigSchema>
export const folderFeedConfigChecker = compileChecker(FolderFeedConfigSchema)

export interface FolderFeedDeps {
  clock: Clock
  /** `generated` of the last listing the caller accepted from this feed (rollback protection). */
  lastGenerated?: () => string | undefined | Promise<string | undefined>
  log?: Logger
  /** Tolerance for `generated` ahead of the clock. Default 5 minutes. */
  maxFutureSkewMs?: number
}

/** A path segment: no `.`/`..`, no hidden files, nothing a URL would have to escape. */
const SEGMENT = /^[A-Za-z0-9_+~-][A-Za-z0-9._+~-]*$/
const MAX_DEPTH = 16

/**
 * A folder in the vendor feed format: `<path>/feed.json` (optionally `feed.json.sig`) whose
 * entry urls are relative paths inside the folder. Artifacts come out as `file` sources with
 * their real path; nothing outside the folder is ever listed (no `..`, no absolute paths, no
 * symlinks leading out).
 */
export class FolderFeed implements FeedAdapter {
  readonly id: string
  readonly kind = 'folder' as const
  readonly path: string
  readonly #deps: FolderFeedDeps
  readonly #keys: FeedKey[]
  readonly #maxBytes: number

  /** Validates the configuration (PSW_ERR_SCHEMA) and parses keys (PSW_ERR_KEY_INVALID). */
  constructor(config: FolderFeedConfig, deps: FolderFeedDeps) {
    const c = folderFeedConfigChecker.check(config, `feed ${String(config?.id)} configuration`)
    this.id = c.id
    this.path = c.path
    this.#deps = deps
    this.#keys = parseFeedPublicKeys(c.publicKeys ?? [])
    this.#maxBytes = c.maxBytes ?? DEFAULT_FEED_MAX_BYTES
  }

  async list(signal?: AbortSignal): Promise<VendorFeedListing> {
    const what = `feed ${this.id} (${join(this.path, FOLDER_FEED_FILE)})`
    const root = await realFolder(this.path, this.id)
    const feedPath = join(root, FOLDER_FEED_FILE)
    const bytes = await readInside(root, FOLDER_FEED_FILE, this.#maxBytes).catch((err: unknown) => {
      if (isPswError(err)) throw err
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        // Never guess another file name: say exactly what is expected.
        throw new UpstreamError(
          'PSW_ERR_FEED_INVALID',
          `feed ${this.id}: ${feedPath} not found; a folder feed needs a ${FOLDER_FEED_FILE} in the patchswarm vendor feed format (docs/feeds.md)`,
          { details: { expected: feedPath } },
        )
      }
      throw new UpstreamError('PSW_ERR_FEED_FETCH', `${what} cannot be read`, { cause: err })
    })
    const listing = await loadVendorFeed({
      feedId: this.id,
      what,
      bytes,
      maxBytes: this.#maxBytes,
      keys: this.#keys,
      fetchSignature: () => readInside(root, FOLDER_SIGNATURE_FILE, MAX_SIGNATURE_FILE_BYTES),
      now: this.#deps.clock.now(),
      lastGenerated: await this.#deps.lastGenerated?.(),
      maxFutureSkewMs: this.#deps.maxFutureSkewMs ?? DEFAULT_MAX_FUTURE_SKEW_MS,
      resolveSource: (url, entryWhat) => resolveFolderSource(root, url, entryWhat),
      signal,
    })
    this.#deps.log?.debug(
      { feed: this.id, generated: listing.generated, artifacts: listing.artifacts.length },
      'folder feed listed',
    )
    for (const s of listing.skipped) this.#deps.log?.warn({ feed: this.id, ...s }, 'feed entry skipped')
    return listing
  }
}

/**
 * Checks an entry `url` is a plain relative path inside the folder (PSW_ERR_FEED_INVALID
 * otherwise) and returns its segments.
 */
export function folderRelativePath(url: string, what: string): string[] {
  const refuse = (message: string) => new UpstreamError('PSW_ERR_FEED_INVALID', `${what}: url ${message}`)
  if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(url)) throw refuse('must be a path relative to the folder, not a URL')
  if (url.startsWith('/')) throw refuse('is an absolute path; it must be relative to the folder')
  if (url.includes('\\')) throw refuse("contains a backslash; separate directories with '/'")
  const segments = url.split('/')
  if (segments.some((s) => s === '..')) throw refuse("contains '..'; it must stay inside the folder")
  if (segments.length > MAX_DEPTH) throw refuse(`is more than ${MAX_DEPTH} directories deep`)
  if (!segments.every((s) => SEGMENT.test(s))) {
    throw refuse("must be made of letters, digits and . _ + ~ - separated by '/' (no empty, '.' or hidden segments)")
  }
  return segments
}

/**
 * Where an entry's bytes are: the real path of a regular file inside the folder. A missing
 * file → PSW_ERR_NOT_FOUND; a symlink out of the folder → PSW_ERR_FEED_INVALID; not a regular
 * file or unreadable → PSW_ERR_INGEST_SOURCE. All of these skip the entry only.
 */
export async function resolveFolderSource(root: string, url: string, what: string): Promise<ArtifactSource> {
  const segments = folderRelativePath(url, what)
  try {
    const real = await realInside(root, segments.join(sep), what)
    if (!(await stat(real)).isFile()) throw new Error('not a regular file')
    return { kind: 'file', path: real }
  } catch (err) {
    if (err instanceof UpstreamError) throw err
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT') throw new UpstreamError('PSW_ERR_NOT_FOUND', `${what}: ${url} is not in the folder`)
    throw new UpstreamError('PSW_ERR_INGEST_SOURCE', `${what}: ${url} cannot be used (${code ?? String(err)})`, {
      cause: err,
    })
  }
}

async function realFolder(path: string, feedId: string): Promise<string> {
  try {
    const real = await realpath(path)
    if ((await stat(real)).isDirectory()) return real
  } catch (err) {
    throw new UpstreamError('PSW_ERR_FEED_FETCH', `feed ${feedId}: folder ${path} cannot be read (not mounted?)`, {
      cause: err,
    })
  }
  throw new UpstreamError('PSW_ERR_FEED_FETCH', `feed ${feedId}: ${path} is not a folder`)
}

/** The real path of `rel` under `root`, refused (PSW_ERR_FEED_INVALID) when a symlink leads out. */
async function realInside(root: string, rel: string, what: string): Promise<string> {
  const real = await realpath(join(root, rel))
  const prefix = root.endsWith(sep) ? root : root + sep
  if (!real.startsWith(prefix)) {
    throw new UpstreamError('PSW_ERR_FEED_INVALID', `${what}: ${rel} is a symlink leading out of the folder`)
  }
  return real
}

/** Reads a regular file inside `root`, at most `maxBytes` (PSW_ERR_TOO_LARGE past it). */
async function readInside(root: string, rel: string, maxBytes: number): Promise<Buffer> {
  const path = await realInside(root, rel, join(root, rel))
  const handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW)
  try {
    const info = await handle.stat()
    if (!info.isFile()) throw new UpstreamError('PSW_ERR_FEED_INVALID', `${path} is not a regular file`)
    if (info.size > maxBytes) {
      throw new UpstreamError('PSW_ERR_TOO_LARGE', `${path} is ${info.size} bytes, limit ${maxBytes}`)
    }
    // Read one byte past the size: a file growing after fstat is caught, not truncated.
    const buf = Buffer.alloc(info.size + 1)
    let length = 0
    while (length < buf.length) {
      const { bytesRead } = await handle.read(buf, length, buf.length - length, length)
      if (bytesRead === 0) break
      length += bytesRead
    }
    if (length > info.size) throw new UpstreamError('PSW_ERR_FEED_FETCH', `${path} changed while being read`)
    return buf.subarray(0, length)
  } finally {
    await handle.close()
  }
}
