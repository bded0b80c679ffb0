import { randomUUID } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { type Static, Type } from '@sinclair/typebox'
import type { Logger } from 'pino'
import { writeBundle } from '../shared/bundle/bundle-writer.ts'
import type { Clock } from '../shared/clock.ts'
import { autoChunkSize, chunkAndHash, validateChunkSize } from '../shared/content/chunking.ts'
import { type Signer, signEnvelope } from '../shared/metadata/envelope.ts'
import {
  Classification,
  HealthSpec,
  MANIFEST_SPEC_VERSION,
  MANIFEST_TYPE,
  type Manifest,
  Severity,
  validateManifest,
} from '../shared/metadata/manifest-schema.ts'
import { compileChecker } from '../shared/metadata/schema-check.ts'
import type { ChunkStore } from '../shared/store/chunk-store.ts'
import type { StateDb } from '../shared/store/state-db.ts'
import type { BundleRecord, Catalog } from './catalog.ts'

const Text = Type.String({ minLength: 1, maxLength: 200 })

/** What an operator gives `patchswarm appliance ingest` (and the admin API). */
export const IngestRequestSchema = Type.Object(
  {
    source: Type.String({ minLength: 1, maxLength: 4096 }),
    name: Type.String({ minLength: 1, maxLength: 100, pattern: '^[A-Za-z0-9][A-Za-z0-9._+-]*$' }),
    version: Type.String({ minLength: 1, maxLength: 100, pattern: '^[A-Za-z0-9][A-Za-z0-9._+~:-]*$' }),
    vendor: Type.Optional(Text),
    product: Type.Optional(Text),
    classification: Type.Optional(Classification),
    severity: Type.Optional(Severity),
    cves: Type.Optional(Type.Array(Type.String({ pattern: '^CVE-\\d{4}-\\d{4,9}$' }), { maxItems: 1000 })),
    supersedes: Type.Optional(Type.Array(Text, { maxItems: 100 })),
    requires: Type.Optional(Type.Array(Text, { maxItems: 100 })),
    os: Type.Optional(Type.Union(['linux', 'windows', 'darwin', 'any'].map((c) => Type.Literal(c)))),
    arch: Type.Optional(Type.Union(['x64', 'arm64', 'any'].map((c) => Type.Literal(c)))),
    description: Type.Optional(Type.String({ maxLength: 4000 })),
    advisory: Type.Optional(Type.String({ maxLength: 200 })),
    /** Installer spec: the `files` installer extracts the payload under this directory. */
    targetRoot: Type.String({ minLength: 1, maxLength: 1024, pattern: '^/' }),
    maxRunSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 86_400 })),
    chunkSize: Type.Optional(Type.Integer({ minimum: 65536, maximum: 16 << 20 })),
    /** Run on each device after the install; when it fails the device rolls back by itself. */
    health: Type.Optional(HealthSpec),
  },
  { additionalProperties: false },
)
export type IngestRequest = Static<typeof IngestRequestSchema>
export const ingestRequestChecker = compileChecker(IngestRequestSchema)

export type IngestPhase = 'pack' | 'store'
export type IngestProgress = (phase: IngestPhase, done: number, total: number) => void

export interface IngestDeps {
  db: StateDb
  catalog: Catalog
  chunks: ChunkStore
  signer: Signer
  clock: Clock
  tmpDir: string
  /** Chunk size when the request names none; undefined = {@link autoChunkSize} of the bundle. */
  defaultChunkSize: number | undefined
  manifestTtlDays: number
  log: Logger
}

export interface IngestResult {
  record: BundleRecord
  manifest: Manifest
  /** Chunks that were new to the store (the rest were deduplicated). */
  newChunks: number
}

/** What a manifest says about a bundle, apart from its identity, version and dates. */
export type ManifestBody = Pick<Manifest, 'patch' | 'install' | 'rollback' | 'content'> &
  Pick<Partial<Manifest>, 'health'>

/** A complete manifest for `body` (not validated; {@link validateManifest} it). */
export function buildManifest(body: ManifestBody, version: number, now: number, ttlDays: number): Manifest {
  return {
    type: MANIFEST_TYPE,
    specVersion: MANIFEST_SPEC_VERSION,
    bundleId: body.content.sha256,
    version,
    created: new Date(now).toISOString(),
    expires: new Date(now + ttlDays * 86_400_000).toISOString(),
    patch: body.patch,
    install: body.install,
    rollback: body.rollback,
    ...(body.health === undefined ? {} : { health: body.health }),
    content: body.content,
  }
}

/**
 * The last step of every ingest, once all chunks are durable in the store: takes the next
 * metadata version, signs the manifest and writes bundle record + signed manifest in one
 * synced batch. All of it runs in one critical section with the manifest refresh, so a refresh
 * can never overwrite an acknowledged ingest with an older body.
 */
export async function recordBundle(
  deps: Pick<IngestDeps, 'db' | 'catalog' | 'signer' | 'clock' | 'manifestTtlDays'>,
  body: ManifestBody,
): Promise<{ manifest: Manifest; record: BundleRecord }> {
  return deps.catalog.exclusive(async () => {
    const now = deps.clock.now()
    const version = await deps.db.nextCounter('metadata-version')
    const manifest = validateManifest(buildManifest(body, version, now, deps.manifestTtlDays))
    const envelope = signEnvelope(manifest, deps.signer)
    const { content, patch } = manifest
    const record: BundleRecord = {
      bundleId: manifest.bundleId,
      name: patch.name,
      version: patch.version,
      size: content.size,
      chunkSize: content.chunkSize,
      chunks: content.chunks.length,
      manifestVersion: version,
      ingestedAt: manifest.created,
    }
    await deps.db.batch(deps.catalog.putOps(record, envelope))
    return { manifest, record }
  })
}

/**
 * Turns a local file or directory into a signed bundle: pack it as a tar, stream the tar
 * once through chunking + hashing into the content store, then sign the manifest and record
 * it in one durable batch ({@link recordBundle}). Chunks land before the manifest, so a crash
 * leaves at worst unreferenced chunks, never a manifest without its content.
 */
export async function ingest(
  deps: IngestDeps,
  input: IngestRequest,
  options: { onProgress?: IngestProgress; signal?: AbortSignal } = {},
): Promise<IngestResult> {
  const req = ingestRequestChecker.check(input, 'ingest request')
  const configured = req.chunkSize ?? deps.defaultChunkSize
  if (configured !== undefined) validateChunkSize(configured)
  await mkdir(deps.tmpDir, { recursive: true })
  const tarPath = join(deps.tmpDir, `ingest-${randomUUID()}.tar`)
  try {
    const packed = await writeBundle({
      source: req.source,
      name: req.name,
      version: req.version,
      out: tarPath,
      signal: options.signal,
      onProgress: (done, total) => options.onProgress?.('pack', done, total),
    })
    const chunkSize = configured ?? autoChunkSize(packed.size)
    let newChunks = 0
    let stored = 0
    const content = await chunkAndHash(
      createReadStream(tarPath, { highWaterMark: chunkSize, signal: options.signal }),
      chunkSize,
      async (_i, hash, data) => {
        // chunkAndHash hashed exactly these bytes: the store need not hash them again.
        const { stored: isNew } = await deps.chunks.putHashed(hash, data, { signal: options.signal })
        if (isNew) newChunks++
        stored += data.byteLength
        options.onProgress?.('store', stored, packed.size)
      },
    )
    const { manifest, record } = await recordBundle(deps, {
      patch: {
        name: req.name,
        vendor: req.vendor ?? 'local',
        product: req.product ?? req.name,
        version: req.version,
        classification: req.classification ?? 'other',
        severity: req.severity ?? 'none',
        cves: req.cves ?? [],
        supersedes: req.supersedes ?? [],
        requires: req.requires ?? [],
        platform: { os: req.os ?? 'any', arch: req.arch ?? 'any' },
        ...(req.advisory === undefined ? {} : { advisory: req.advisory }),
        ...(req.description === undefined ? {} : { description: req.description }),
      },
      install: { type: 'files', targetRoot: req.targetRoot, maxRunSeconds: req.maxRunSeconds ?? 600 },
      rollback: { type: 'files-backup' },
      ...(req.health === undefined ? {} : { health: req.health }),
      content,
    })
    deps.log.info(
      { bundleId: record.bundleId, name: req.name, version: req.version, size: content.size, newChunks },
      'bundle ingested',
    )
    return { record, manifest, newChunks }
  } finally {
    await rm(tarPath, { force: true })
  }
}
