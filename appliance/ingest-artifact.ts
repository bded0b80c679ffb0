/**
 * Ingests a verified upstream artifact raw: the bundle content is exactly the vendor's bytes
 * (manifest `content.format: 'raw'`), so the bundle id is the vendor's SHA-256 and agents
 * install exactly what the vendor published.
 *
 * One read pass: the file is read in chunk-sized pieces into a small pool of reused buffers.
 * Each piece is hashed twice at once on two cores: its chunk hash by WebCrypto's digest, which
 * runs in libuv's thread pool, and the whole-artifact hash (which must see the pieces in order)
 * on this thread meanwhile; then the chunk is stored while later pieces are read and hashed.
 * Nothing is hashed a third time (the store trusts the hash computed here). The whole hash
 * must equal the vendor's and the size the declared one, else nothing is recorded. Chunks land
 * before the manifest, so a crash leaves at worst unreferenced chunks.
 *
 * Measured against a worker thread computing the whole hash over SharedArrayBuffers (the other
 * way to use the second core): the same throughput, but the worker costs about 17 MiB RSS.
 */
import { createHash, webcrypto } from 'node:crypto'
import { type FileHandle, open } from 'node:fs/promises'
import { Type } from '@sinclair/typebox'
import { BufferPool } from '../shared/content/buffer-pool.ts'
import { autoChunkSize, chunkCount, MAX_CHUNK_SIZE, MAX_CHUNKS, validateChunkSize } from '../shared/content/chunking.ts'
import { IntegrityError, mapFsError, ValidationError } from '../shared/errors.ts'
import { Sha256Hex } from '../shared/metadata/common-schema.ts'
import { type Manifest, validateManifest } from '../shared/metadata/manifest-schema.ts'
import { compileChecker } from '../shared/metadata/schema-check.ts'
import {
  buildManifest,
  type IngestDeps,
  type IngestProgress,
  IngestRequestSchema,
  type IngestResult,
  type ManifestBody,
  recordBundle,
} from './ingest.ts'
import { type FeedArtifact, FeedInstallerSpec, FeedRollbackSpec, MAX_ARTIFACT_BYTES } from './upstream/feed-types.ts'

/** The fields of a FeedArtifact that ingest relies on beyond what the manifest schema checks. */
const artifactChecker = compileChecker(
  Type.Object({
    name: IngestRequestSchema.properties.name,
    version: IngestRequestSchema.properties.version,
    size: Type.Integer({ minimum: 0, maximum: MAX_ARTIFACT_BYTES }),
    sha256: Sha256Hex,
    installer: FeedInstallerSpec,
    rollback: FeedRollbackSpec,
  }),
)

/** Buffers in flight: about this many bytes, at least 3 and at most 8 chunks. */
const INFLIGHT_BYTES = 8 << 20
const DEFAULT_MAX_RUN_SECONDS = 600

export interface IngestArtifactInput {
  /** The downloaded artifact (already verified by the WAN downloader; verified again here). */
  path: string
  artifact: FeedArtifact
}

export interface IngestArtifactOptions {
  onProgress?: IngestProgress
  signal?: AbortSignal
}

/**
 * The smallest power of two ≥ `preferred` that keeps `size` within MAX_CHUNKS chunks, so a
 * large artifact (feeds allow 64 GiB) still fits a manifest.
 */
export function artifactChunkSize(size: number, preferred: number | undefined): number {
  let chunkSize = validateChunkSize(preferred ?? autoChunkSize(size))
  while (chunkCount(size, chunkSize) > MAX_CHUNKS && chunkSize < MAX_CHUNK_SIZE) chunkSize *= 2
  if (chunkCount(size, chunkSize) > MAX_CHUNKS) {
    throw new ValidationError('PSW_ERR_TOO_LARGE', `artifact of ${size} bytes needs more than ${MAX_CHUNKS} chunks`)
  }
  return chunkSize
}

/** What the manifest says about `artifact`: the feed's patch information, installer and rollback. */
function artifactBody(artifact: FeedArtifact, content: Manifest['content']): ManifestBody {
  const a = artifact
  const maxRunSeconds = a.installer.maxRunSeconds ?? DEFAULT_MAX_RUN_SECONDS
  return {
    patch: {
      name: a.name,
      vendor: a.vendor,
      product: a.product,
      version: a.version,
      classification: a.classification,
      severity: a.severity,
      cves: [...a.cves],
      supersedes: [...a.supersedes],
      requires: [...a.requires],
      platform: { os: a.os, arch: a.arch },
      ...(a.advisory === undefined ? {} : { advisory: a.advisory }),
      ...(a.description === undefined ? {} : { description: a.description }),
    },
    install:
      a.installer.type === 'files'
        ? { type: 'files', targetRoot: a.installer.targetRoot, maxRunSeconds }
        : { type: 'dpkg', package: a.installer.package, maxRunSeconds },
    rollback: { type: a.rollback.type },
    content,
  }
}

/** Reads up to `length` bytes at `position`; fewer only at the end of the file. */
async function readFull(fh: FileHandle, buf: Buffer, length: number, position: number): Promise<number> {
  let n = 0
  while (n < length) {
    const { bytesRead } = await fh.read(buf, n, length - n, position + n)
    if (bytesRead === 0) break
    n += bytesRead
  }
  return n
}

const sizeError = (path: string, declared: number, actual: number) =>
  new IntegrityError('PSW_ERR_WAN_SIZE', `artifact ${path} has ${actual} bytes, its feed declares ${declared}`, {
    details: { declared, actual },
  })

/**
 * Verifies `input.path` against `artifact.size` + `artifact.sha256` while chunking and storing
 * it, then signs and records its manifest (content format raw, installer and rollback from the
 * artifact). Errors: IntegrityError PSW_ERR_WAN_SIZE / PSW_ERR_ARTIFACT_HASH (nothing recorded;
 * chunks already stored stay, unreferenced), PSW_ERR_SCHEMA / PSW_ERR_MANIFEST_INVALID for an
 * artifact whose metadata cannot make a manifest (checked before reading), PSW_ERR_INGEST_SOURCE.
 */
export async function ingestArtifact(
  deps: IngestDeps,
  input: IngestArtifactInput,
  options: IngestArtifactOptions = {},
): Promise<IngestResult> {
  const { path, artifact } = input
  const { signal, onProgress } = options
  artifactChecker.check(artifact, 'feed artifact')
  const chunkSize = artifactChunkSize(artifact.size, deps.defaultChunkSize)
  // Everything but the content is known now: refuse a manifest that could never be signed
  // (inconsistent installer/rollback, bad CVE ids, …) before storing a single chunk.
  const placeholder = { size: 0, chunkSize, sha256: artifact.sha256, chunks: [], format: 'raw' as const }
  validateManifest(buildManifest(artifactBody(artifact, placeholder), 1, deps.clock.now(), deps.manifestTtlDays))
  signal?.throwIfAborted()

  let fh: FileHandle
  try {
    fh = await open(path, 'r')
  } catch (err) {
    throw new ValidationError('PSW_ERR_INGEST_SOURCE', `cannot open artifact ${path}`, { cause: err })
  }
  const pool = new BufferPool(Math.max(3, Math.min(8, Math.floor(INFLIGHT_BYTES / chunkSize))), chunkSize)
  try {
    const st = await fh.stat()
    if (!st.isFile()) throw new ValidationError('PSW_ERR_INGEST_SOURCE', `artifact ${path} is not a regular file`)
    if (st.size !== artifact.size) throw sizeError(path, artifact.size, st.size)

    const whole = createHash('sha256')
    const chunks: string[] = []
    const running = new Set<Promise<void>>()
    let failure: { error: unknown } | undefined
    let size = 0
    let stored = 0
    let newChunks = 0

    const readAt = async (position: number): Promise<{ buf: Buffer; length: number }> => {
      const buf = await pool.acquire()
      try {
        return { buf, length: await readFull(fh, buf, chunkSize, position) }
      } catch (err) {
        pool.release(buf)
        throw err
      }
    }
    /** Chunk hash (thread pool), then the store write, of piece `index`; frees its buffer. */
    const storeChunk = (index: number, buf: Buffer, data: Buffer) => {
      const job = webcrypto.subtle
        .digest('SHA-256', data)
        .then((digest) => {
          const hash = Buffer.from(digest).toString('hex')
          chunks[index] = hash
          return deps.chunks.putHashed(hash, data, signal ? { signal } : {})
        })
        .then((put) => {
          if (put.stored) newChunks++
          stored += data.byteLength
          onProgress?.('store', stored, artifact.size)
        })
        .catch((error: unknown) => {
          failure ??= { error }
        })
        .finally(() => {
          pool.release(buf)
          running.delete(job)
        })
      running.add(job)
    }

    let next: Promise<{ buf: Buffer; length: number }> | undefined = readAt(0)
    try {
      for (let index = 0; next; index++) {
        const { buf, length } = await next
        next = undefined
        if (length === 0 || failure || signal?.aborted) {
          pool.release(buf)
          break
        }
        size += length
        if (size > artifact.size) {
          pool.release(buf)
          throw sizeError(path, artifact.size, size)
        }
        // Read ahead while this piece is hashed and stored; a short read was the end.
        if (length === chunkSize) next = readAt(size)
        const data = buf.subarray(0, length)
        storeChunk(index, buf, data)
        whole.update(data) // on this thread while the thread pool hashes the chunk
      }
    } finally {
      if (next) await next.then(({ buf }) => pool.release(buf)).catch(() => {})
      await Promise.all(running)
    }
    if (failure) throw failure.error
    signal?.throwIfAborted()
    if (size !== artifact.size) throw sizeError(path, artifact.size, size)
    const sha256 = whole.digest('hex')
    if (sha256 !== artifact.sha256) {
      deps.log.warn(
        { path, expected: artifact.sha256, actual: sha256, newChunks },
        'artifact does not match its vendor digest; nothing recorded',
      )
      throw new IntegrityError('PSW_ERR_ARTIFACT_HASH', `artifact ${path} does not match its vendor SHA-256`, {
        details: { expected: artifact.sha256, actual: sha256 },
      })
    }

    const { manifest, record } = await recordBundle(
      deps,
      artifactBody(artifact, { size, chunkSize, sha256, chunks, format: 'raw' }),
    )
    deps.log.info(
      {
        bundleId: record.bundleId,
        name: artifact.name,
        version: artifact.version,
        size,
        newChunks,
        feed: artifact.feedId,
      },
      'artifact ingested',
    )
    return { record, manifest, newChunks }
  } catch (err) {
    throw mapFsError(err, `ingesting ${path}`)
  } finally {
    await fh.close()
  }
}
