import { StateError } from '../shared/errors.ts'
import type { SignedEnvelope } from '../shared/metadata/envelope.ts'
import type { Manifest } from '../shared/metadata/manifest-schema.ts'
import { Mutex } from '../shared/store/mutex.ts'
import type { StateBatchOp, StateDb } from '../shared/store/state-db.ts'

/** What the appliance knows about one bundle; the signed manifest is stored beside it. */
export interface BundleRecord {
  bundleId: string
  name: string
  version: string
  size: number
  chunkSize: number
  chunks: number
  manifestVersion: number
  ingestedAt: string
}

const bundleKey = (id: string) => `bundle:${id}`
const manifestKey = (id: string) => `manifest:${id}`

/** Bundles and their signed manifests in the state database. */
export class Catalog {
  readonly #db: StateDb
  readonly #lock = new Mutex()
  constructor(db: StateDb) {
    this.#db = db
  }

  /** Serialises read-modify-write of bundle records (ingest, manifest refresh). */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.#lock.runExclusive(fn)
  }

  /** Batch operations that record a bundle with its newest signed manifest. */
  putOps(record: BundleRecord, envelope: SignedEnvelope<Manifest>): StateBatchOp[] {
    return [
      { type: 'put', key: bundleKey(record.bundleId), value: record },
      { type: 'put', key: manifestKey(record.bundleId), value: envelope },
    ]
  }

  /** Batch operations that forget a bundle (cache eviction); its chunks are the caller's. */
  deleteOps(bundleId: string): StateBatchOp[] {
    return [
      { type: 'del', key: bundleKey(bundleId) },
      { type: 'del', key: manifestKey(bundleId) },
    ]
  }

  async get(bundleId: string): Promise<BundleRecord | undefined> {
    return this.#db.get<BundleRecord>(bundleKey(bundleId))
  }

  async manifest(bundleId: string): Promise<SignedEnvelope<Manifest> | undefined> {
    return this.#db.get<SignedEnvelope<Manifest>>(manifestKey(bundleId))
  }

  /** Finds a bundle by id, unique id prefix (≥ 8 hex digits) or `name@version`. */
  async resolve(ref: string): Promise<BundleRecord> {
    const all = await this.list()
    const exact = all.filter((b) => b.bundleId === ref || `${b.name}@${b.version}` === ref)
    const matches = exact.length > 0 ? exact : ref.length >= 8 ? all.filter((b) => b.bundleId.startsWith(ref)) : []
    if (matches.length === 1) return matches[0]!
    if (matches.length === 0) throw new StateError('PSW_ERR_NOT_FOUND', `no bundle matches '${ref}'`)
    throw new StateError('PSW_ERR_CONFLICT', `'${ref}' matches ${matches.length} bundles; use the full id`)
  }

  async list(): Promise<BundleRecord[]> {
    const out: BundleRecord[] = []
    for await (const [, rec] of this.#db.iterate<BundleRecord>('bundle:')) out.push(rec)
    return out.sort((a, b) => a.ingestedAt.localeCompare(b.ingestedAt))
  }
}
