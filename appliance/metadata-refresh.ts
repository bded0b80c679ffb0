import type { Logger } from 'pino'
import type { Clock } from '../shared/clock.ts'
import { type Signer, signEnvelope } from '../shared/metadata/envelope.ts'
import { type Manifest, validateManifest } from '../shared/metadata/manifest-schema.ts'
import type { StateDb } from '../shared/store/state-db.ts'
import { type Assignments, isPastRefreshPoint } from './assignments.ts'
import type { Catalog } from './catalog.ts'

export interface RefreshDeps {
  db: StateDb
  catalog: Catalog
  assignments: Assignments
  signer: Signer
  clock: Clock
  manifestTtlDays: number
  log: Logger
}

/**
 * Keeps signed metadata fresh (the freeze-attack defence only works if the honest appliance
 * never lets its own documents expire): manifests past two thirds of their lifetime are
 * re-signed with a new version, then assignments follow.
 */
export async function refreshMetadata(deps: RefreshDeps): Promise<{ manifests: number; assignments: number }> {
  const now = deps.clock.now()
  let manifests = 0
  let assignments = 0
  try {
    for (const { bundleId } of await deps.catalog.list()) {
      const refreshed = await deps.catalog.exclusive(async () => {
        // Re-read inside the lock: an ingest may have replaced the manifest meanwhile.
        const record = await deps.catalog.get(bundleId)
        const env = await deps.catalog.manifest(bundleId)
        if (!record || !env || !isPastRefreshPoint(env.signed, now)) return false
        const version = await deps.db.nextCounter('metadata-version')
        const manifest = validateManifest({
          ...env.signed,
          version,
          created: new Date(now).toISOString(),
          expires: new Date(now + deps.manifestTtlDays * 86_400_000).toISOString(),
        } satisfies Manifest)
        await deps.db.batch(
          deps.catalog.putOps({ ...record, manifestVersion: version }, signEnvelope(manifest, deps.signer)),
        )
        return true
      })
      if (refreshed) manifests++
    }
  } finally {
    if (manifests > 0) deps.log.info({ manifests }, 'manifests re-signed before expiry')
    // Even after a failure midway, assignments follow the manifests already re-signed.
    assignments = await deps.assignments.refresh().catch((err) => {
      deps.log.error({ err }, 'assignment refresh failed')
      return 0
    })
  }
  return { manifests, assignments }
}

/** Runs `refreshMetadata` at start and then every `intervalMs` (default hourly). */
export class MetadataRefresher {
  readonly #deps: RefreshDeps
  readonly #intervalMs: number
  #timer: NodeJS.Timeout | undefined
  #running: Promise<unknown> = Promise.resolve()
  #busy = false

  constructor(deps: RefreshDeps, intervalMs = 3_600_000) {
    this.#deps = deps
    this.#intervalMs = intervalMs
  }

  async start(): Promise<void> {
    await this.#run()
    this.#timer = setInterval(() => void this.#run(), this.#intervalMs)
    this.#timer.unref()
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer)
    this.#timer = undefined
    await this.#running
  }

  #run(): Promise<unknown> {
    if (this.#busy) return this.#running // the previous run is still going: skip this tick
    this.#busy = true
    this.#running = refreshMetadata(this.#deps)
      .catch((err) => this.#deps.log.error({ err }, 'metadata refresh failed'))
      .finally(() => {
        this.#busy = false
      })
    return this.#running
  }
}
