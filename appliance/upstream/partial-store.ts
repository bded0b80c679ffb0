import type { Hash } from 'node:crypto'
import { type FileHandle, mkdir, open, readdir, readFile, rename, stat, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { type Static, Type } from '@sinclair/typebox'
import { mapFsError } from '../../shared/errors.ts'
import type { Logger } from '../../shared/log.ts'
import { compileChecker, parseJsonLimited } from '../../shared/metadata/schema-check.ts'
import { fsyncDir, TMP_MARKER, writeFileDurable } from '../../shared/store/durable-file.ts'
import { MAX_ARTIFACT_BYTES } from './feed-types.ts'

/**
 * The downloader's directory: `partial/<sha256>` (bytes so far) with `partial/<sha256>.json`
 * (the resume sidecar), `verified/<sha256>` (complete and verified) and
 * `quarantine/<sha256>-<time>` (failed verification, kept for the operator).
 *
 * Invariant that makes `kill -9` and power cuts safe: the partial file is fsynced before a
 * sidecar naming its length is written, so the first `bytes` bytes are always on disk. Bytes
 * past that may be torn and are cut off on resume.
 */

export const PARTIAL_FORMAT = 'patchswarm.wan-partial/1'
const MAX_SIDECAR_BYTES = 16 << 10
export const SHA256_HEX = '^[0-9a-f]{64}$'

export const PartialSidecarSchema = Type.Object(
  {
    format: Type.Literal(PARTIAL_FORMAT),
    url: Type.String({ minLength: 1, maxLength: 8192 }),
    sha256: Type.String({ pattern: SHA256_HEX }),
    size: Type.Integer({ minimum: 0, maximum: MAX_ARTIFACT_BYTES }),
    /** Validator of the response the bytes came from, sent back in If-Range. */
    etag: Type.Optional(Type.String({ maxLength: 1024 })),
    lastModified: Type.Optional(Type.String({ maxLength: 128 })),
    /** Bytes of the partial file that are durable and belong to that response. */
    bytes: Type.Integer({ minimum: 0, maximum: MAX_ARTIFACT_BYTES }),
  },
  { additionalProperties: false },
)
export type PartialSidecar = Static<typeof PartialSidecarSchema>

const sidecarChecker = compileChecker(PartialSidecarSchema)

export class PartialStore {
  readonly root: string
  readonly #log: Logger

  constructor(root: string, log: Logger) {
    this.root = root
    this.#log = log
  }

  partialPath(sha256: string): string {
    return join(this.root, 'partial', sha256)
  }

  sidecarPath(sha256: string): string {
    return join(this.root, 'partial', `${sha256}.json`)
  }

  verifiedPath(sha256: string): string {
    return join(this.root, 'verified', sha256)
  }

  /**
   * Creates the folders; removes tmp files, partial files without a sidecar (useless) and
   * sidecars without a partial (left by a crash right after the rename into `verified/`).
   */
  async init(): Promise<void> {
    for (const sub of ['partial', 'verified', 'quarantine']) await mkdir(join(this.root, sub), { recursive: true })
    const partial = await readdir(join(this.root, 'partial'))
    const names = new Set(partial)
    for (const name of partial) {
      const orphan =
        (/^[0-9a-f]{64}$/.test(name) && !names.has(`${name}.json`)) ||
        (/^[0-9a-f]{64}\.json$/.test(name) && !names.has(name.slice(0, 64)))
      if (name.includes(TMP_MARKER) || orphan) await unlinkIfExists(join(this.root, 'partial', name))
    }
    for (const name of await readdir(join(this.root, 'verified'))) {
      if (name.includes(TMP_MARKER)) await unlinkIfExists(join(this.root, 'verified', name))
    }
  }

  /** The sidecar, or undefined when missing or unreadable (then the partial is worthless). */
  async readSidecar(sha256: string): Promise<PartialSidecar | undefined> {
    let text: string
    try {
      text = await readFile(this.sidecarPath(sha256), 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
        this.#log.warn({ err, sha256 }, 'cannot read resume sidecar')
      return undefined
    }
    try {
      return sidecarChecker.check(parseJsonLimited(text, MAX_SIDECAR_BYTES, 'resume sidecar'), 'resume sidecar')
    } catch (err) {
      this.#log.warn({ err, sha256 }, 'resume sidecar is invalid; starting over')
      return undefined
    }
  }

  writeSidecar(sidecar: PartialSidecar): Promise<void> {
    return writeFileDurable(this.sidecarPath(sidecar.sha256), JSON.stringify(sidecar))
  }

  /** Length of the partial file (0 when missing). */
  async partialSize(sha256: string): Promise<number> {
    try {
      return (await stat(this.partialPath(sha256))).size
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0
      throw err
    }
  }

  /** Opens the partial for writing, cut to `length` bytes (created empty when 0). */
  async openPartial(sha256: string, length: number): Promise<FileHandle> {
    try {
      const fh = await open(this.partialPath(sha256), length === 0 ? 'w' : 'r+')
      if (length > 0) await fh.truncate(length)
      return fh
    } catch (err) {
      throw mapFsError(err, `opening ${this.partialPath(sha256)}`)
    }
  }

  /** Feeds the first `length` bytes of the partial into `hash` (a hash state cannot be saved). */
  async hashPrefix(sha256: string, length: number, hash: Hash, signal?: AbortSignal): Promise<void> {
    if (length === 0) return
    const fh = await open(this.partialPath(sha256), 'r')
    try {
      const stream = fh.createReadStream({ start: 0, end: length - 1, highWaterMark: 1 << 20, autoClose: false })
      for await (const piece of stream as AsyncIterable<Buffer>) {
        signal?.throwIfAborted()
        hash.update(piece)
      }
    } finally {
      await fh.close()
    }
  }

  /** Removes the partial and its sidecar. */
  async discard(sha256: string): Promise<void> {
    await unlinkIfExists(this.sidecarPath(sha256))
    await unlinkIfExists(this.partialPath(sha256))
  }

  /** Size of `verified/<sha256>`, or undefined when it does not exist. */
  async verifiedSize(sha256: string): Promise<number | undefined> {
    try {
      const st = await stat(this.verifiedPath(sha256))
      return st.isFile() ? st.size : undefined
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw err
    }
  }

  /** Moves the complete, verified partial into `verified/` durably; drops the sidecar. */
  async promote(sha256: string): Promise<string> {
    const target = this.verifiedPath(sha256)
    await rename(this.partialPath(sha256), target)
    await fsyncDir(join(this.root, 'verified'))
    await unlinkIfExists(this.sidecarPath(sha256))
    await fsyncDir(join(this.root, 'partial'))
    return target
  }

  /** Moves the partial to `quarantine/<sha256>-<time>`; drops the sidecar. Returns the new path. */
  async quarantine(sha256: string, now: number): Promise<string> {
    const stamp = new Date(now).toISOString().replace(/[:.]/g, '-')
    const target = join(this.root, 'quarantine', `${sha256}-${stamp}`)
    await rename(this.partialPath(sha256), target)
    await fsyncDir(join(this.root, 'quarantine'))
    await unlinkIfExists(this.sidecarPath(sha256))
    return target
  }
}

async function unlinkIfExists(path: string): Promise<void> {
  try {
    await unlink(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
}
