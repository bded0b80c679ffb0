import { randomBytes, timingSafeEqual } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, rm } from 'node:fs/promises'
import type { Logger } from 'pino'
import type { Clock } from '../shared/clock.ts'
import { type ChunkStore, createChunkStore } from '../shared/store/chunk-store.ts'
import { writeFileDurable } from '../shared/store/durable-file.ts'
import { openStateDb, type StateDb } from '../shared/store/state-db.ts'
import { Assignments } from './assignments.ts'
import { AuditLog } from './audit/audit-log.ts'
import { type AuthServices, openAuthServices } from './auth/auth-services.ts'
import { Catalog } from './catalog.ts'
import { type ApplianceConfig, defaultApplianceConfig, readApplianceConfig, writeApplianceConfig } from './config.ts'
import { type ApplianceLayout, applianceLayout } from './data-dir.ts'
import { DeviceRegistry } from './devices.ts'
import { Enrollment, type EnrollResponse } from './enrollment.ts'
import { type ApplianceIdentity, createApplianceIdentity, identityExists, loadApplianceIdentity } from './identity.ts'
import { type IngestDeps, type IngestProgress, type IngestRequest, type IngestResult, ingest } from './ingest.ts'
import { type IngestArtifactInput, type IngestArtifactOptions, ingestArtifact } from './ingest-artifact.ts'
import { ApprovalStore } from './policy/approval-store.ts'
import { GroupStore } from './policy/groups.ts'

/** Version of the appliance's LevelDB layout; bump with a migration when keys change. */
export const APPLIANCE_SCHEMA_VERSION = 1
const AGENT_CERT_VALID_DAYS = 365

export interface InitResult {
  created: boolean
  layout: ApplianceLayout
  config: ApplianceConfig
}

/** `patchswarm appliance init`: creates the data directory, config, keys and root. Idempotent. */
export async function initApplianceDataDir(
  dataDir: string,
  options: { clock: Clock; config?: Partial<ApplianceConfig> },
): Promise<InitResult> {
  const layout = applianceLayout(dataDir)
  if (existsSync(layout.config) && identityExists(layout)) {
    return { created: false, layout, config: await readApplianceConfig(dataDir) }
  }
  await mkdir(layout.root, { recursive: true, mode: 0o700 })
  const config = { ...defaultApplianceConfig(), ...options.config }
  await createApplianceIdentity(layout, config.siteName, options.clock.now())
  await writeFileDurable(layout.adminToken, `${randomBytes(32).toString('base64url')}\n`, { mode: 0o600 })
  await writeApplianceConfig(dataDir, config)
  const db = await openStateDb({ path: layout.db, schemaVersion: APPLIANCE_SCHEMA_VERSION })
  await db.close()
  return { created: true, layout, config }
}

export function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  return x.length === y.length && timingSafeEqual(x, y)
}

/**
 * Everything of the appliance except its network faces: state database, content store,
 * identity and the services on top. `patchswarm appliance start` wraps it with libp2p and
 * HTTP; CLI commands open it directly when no appliance process holds the data directory.
 */
export interface ApplianceCore {
  layout: ApplianceLayout
  config: ApplianceConfig
  identity: ApplianceIdentity
  db: StateDb
  chunks: ChunkStore
  catalog: Catalog
  devices: DeviceRegistry
  enrollment: Enrollment
  assignments: Assignments
  /** Append-only, hash-chained record of operator actions and state changes. */
  audit: AuditLog
  /** Device groups by tags, tiers, OS, hostname or PeerIds. */
  groups: GroupStore
  /** Approvals, declines and auto-approval rules. */
  approvals: ApprovalStore
  /** Web UI accounts, login sessions, API tokens and first-run setup. */
  auth: AuthServices
  ingest(request: IngestRequest, options?: { onProgress?: IngestProgress; signal?: AbortSignal }): Promise<IngestResult>
  /** Ingests a downloaded, verified feed artifact raw (content format `raw`); see ingest-artifact.ts. */
  ingestArtifact(input: IngestArtifactInput, options?: IngestArtifactOptions): Promise<IngestResult>
  close(): Promise<void>
}

export async function openApplianceCore(
  dataDir: string,
  options: { clock: Clock; log: Logger; config?: ApplianceConfig; applianceInfo?: () => EnrollResponse['appliance'] },
): Promise<ApplianceCore> {
  const { clock, log } = options
  const layout = applianceLayout(dataDir)
  const config = options.config ?? (await readApplianceConfig(dataDir))
  const identity = await loadApplianceIdentity(layout, clock.now())
  const db = await openStateDb({
    path: layout.db,
    schemaVersion: APPLIANCE_SCHEMA_VERSION,
    log: log.child({ component: 'appliance:db' }),
  })
  const chunks = createChunkStore({ dir: layout.chunks, log: log.child({ component: 'appliance:chunks' }) })
  try {
    await chunks.start()
    // Leftovers of an ingest killed midway are never referenced by a manifest.
    await rm(layout.tmp, { recursive: true, force: true })
    await mkdir(layout.tmp, { recursive: true })
  } catch (err) {
    await db.close()
    throw err
  }
  const catalog = new Catalog(db)
  const devices = new DeviceRegistry(db)
  await devices.load()
  const enrollment = new Enrollment({
    db,
    devices,
    clock,
    root: { certPem: identity.rootPem, privateKeyPem: identity.rootKeyPem },
    appliance:
      options.applianceInfo ??
      (() => ({ peerId: '', multiaddrs: [], signerCertificate: identity.signer.certificatePem })),
    tokenTtlHours: config.tokenTtlHours,
    agentCertValidDays: AGENT_CERT_VALID_DAYS,
    log: log.child({ component: 'appliance:enrollment' }),
  })
  const assignments = new Assignments({
    db,
    catalog,
    devices,
    signer: identity.signer,
    clock,
    ttlDays: config.assignmentTtlDays,
    log: log.child({ component: 'appliance:assignments' }),
  })
  const audit = new AuditLog({ db, clock, log: log.child({ component: 'appliance:audit' }) })
  await audit.start()
  const ingestDeps: IngestDeps = {
    db,
    catalog,
    chunks,
    signer: identity.signer,
    clock,
    tmpDir: layout.tmp,
    defaultChunkSize: config.chunkSize,
    manifestTtlDays: config.manifestTtlDays,
    log: log.child({ component: 'appliance:ingest' }),
  }
  const auth = openAuthServices({ db, clock, log: log.child({ component: 'appliance:auth' }) })
  let closed = false
  return {
    layout,
    config,
    identity,
    db,
    chunks,
    catalog,
    devices,
    enrollment,
    assignments,
    audit,
    groups: new GroupStore({ db, clock }),
    approvals: new ApprovalStore({ db, catalog, audit, clock }),
    auth,
    async ingest(request, opts) {
      const result = await ingest(ingestDeps, request, opts)
      // Same content ingested again gets a new manifest version: assignments follow it.
      await assignments.refresh()
      return result
    },
    async ingestArtifact(input, opts) {
      const result = await ingestArtifact(ingestDeps, input, opts)
      await assignments.refresh()
      return result
    },
    async close() {
      if (closed) return
      closed = true
      auth.sessions.stop()
      await audit.stop()
      await chunks.stop()
      await db.close()
    },
  }
}
