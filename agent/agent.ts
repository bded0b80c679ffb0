import { existsSync } from 'node:fs'
import { mkdir, readFile, realpath, rm } from 'node:fs/promises'
import { hostname } from 'node:os'
import { isAbsolute, join, normalize, relative, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from 'pino'
import type { Clock } from '../shared/clock.ts'
import { hasCode, InstallError, isPswError, PswError } from '../shared/errors.ts'
import { readBodyLimited } from '../shared/http/read-limited.ts'
import type { AssignedBundleT, Assignment, AssignmentWindows } from '../shared/metadata/assignment-schema.ts'
import type { Manifest } from '../shared/metadata/manifest-schema.ts'
import { privateKeyFromBytes } from '../shared/p2p/p2p-node.ts'
import {
  type AgentReportT,
  type BundleReportT,
  checkAnnounceResponse,
  MAX_REPORTED_BUNDLES,
} from '../shared/protocol/control-protocol.ts'
import { TokenBucket } from '../shared/rate/token-bucket.ts'
import { openStateDb, type StateDb } from '../shared/store/state-db.ts'
import {
  type BundleState,
  BundleStates,
  boundLog,
  errorInfo,
  failureTexts,
  installFailure,
  reportedState,
} from './bundle-state.ts'
import { type AgentConfig, agentLayout, readAgentConfig, writeAgentConfig } from './data-dir.ts'
import { installDecision, rollbackDecision } from './install-gate.ts'
import { checkSupported, createAgentInstallRouter, filesInstall } from './install-support.ts'
import { createFilesInstaller } from './installer/files-installer.ts'
import { createProcessRunner, type ProcessRunner } from './installer/process-runner.ts'
import { createAgentInventory } from './inventory/inventory.ts'
import { MetadataGuard } from './metadata-guard.ts'
import { type AgentNetwork, startAgentNetwork } from './network.ts'
import { currentBootId, RebootKeeper } from './reboot.ts'
import { fitReport } from './report-fit.ts'
import { AgentSwarm } from './swarm/agent-swarm.ts'
import { readVerified } from './verified-reader.ts'

export const AGENT_SCHEMA_VERSION = 1
export const AGENT_VERSION = '0.1.0'

export interface AgentOptions {
  dataDir: string
  clock: Clock
  log: Logger
  /** Override of the configured poll interval (seconds). */
  pollSeconds?: number
  /** Run one sync cycle and return (tests, `agent start --once`). */
  once?: boolean
  /** Override of the configured download rate cap (bytes/s, 0 = unlimited). */
  downloadBytesPerSecond?: number
  /** Override of the configured upload rate cap for serving peers (bytes/s, 0 = unlimited). */
  uploadBytesPerSecond?: number
  /** Override of the configured mDNS discovery. */
  mdns?: boolean
  /** Download (and seed) assigned bundles but do not install them. */
  downloadOnly?: boolean
  /** Override of the configured reboot command (argv, no shell). */
  rebootCommand?: string[]
  /** Runs the reboot command (tests inject a fake). Default: the real process runner. */
  runner?: ProcessRunner
  /** This boot's id (tests inject one). Default: the kernel's boot_id, else the boot time. */
  bootId?: () => Promise<string>
}

export interface Agent {
  readonly config: AgentConfig
  start(): Promise<void>
  /** One cycle: fetch and verify the assignment, download, install, report. */
  syncOnce(): Promise<void>
  stop(): Promise<void>
}

/** Failures of getting an answer at all, as opposed to a verdict on what was answered. */
const TRANSPORT_CODES = new Set([
  'PSW_ERR_APPLIANCE_UNREACHABLE',
  'PSW_ERR_PEER_TIMEOUT',
  'PSW_ERR_PROTOCOL',
  'PSW_ERR_INTERNAL',
])
function isTransportError(err: unknown): boolean {
  return !isPswError(err) || TRANSPORT_CODES.has(err.code)
}

/**
 * The endpoint program: pulls its signed assignment from the appliance, verifies every
 * document and every chunk, downloads with bounded memory, installs with the installer the
 * manifest names (health-checked; rolled back on failure) inside the maintenance windows, and
 * reports what happened. A bundle assigned with action `rollback` is undone (site-wide
 * rollback, also inside the windows); the rollback snapshots stay until a bundle leaves the
 * assignment. A reboot an install needs runs at the end of a cycle, inside a window that
 * allows reboots, when a reboot command is configured (reboot.ts).
 */
export async function createAgent(options: AgentOptions): Promise<Agent> {
  const { clock, log } = options
  const layout = agentLayout(options.dataDir)
  const config = await readAgentConfig(options.dataDir)
  const rootPem = await readFile(layout.rootCert, 'utf8')
  const privateKey = privateKeyFromBytes(await readFile(layout.libp2pKey))
  const db: StateDb = await openStateDb({ path: layout.db, schemaVersion: AGENT_SCHEMA_VERSION, log })
  const now = () => clock.now()
  const guard = new MetadataGuard({ db, rootPem, peerId: config.peerId, now })
  const states = new BundleStates(db, now)
  const installer = createFilesInstaller({
    stateDir: layout.installer,
    log: log.child({ component: 'agent:installer' }),
  })
  // Routes by install.type (files, dpkg, script, msi/msu/exe) and runs the manifest's health check.
  const installs = createAgentInstallRouter({
    stateDir: layout.installer,
    installRoot: config.installRoot,
    files: installer,
    log,
  })
  const reboots = new RebootKeeper({
    db,
    states,
    command: options.rebootCommand ?? config.rebootCommand,
    runner: options.runner ?? createProcessRunner(),
    bootId: options.bootId ?? currentBootId,
    now,
    log: log.child({ component: 'agent:reboot' }),
  })
  const downloadRate = options.downloadBytesPerSecond ?? config.downloadBytesPerSecond ?? 0
  const rateLimit = new TokenBucket({ rate: downloadRate, burst: Math.max(1 << 20, downloadRate / 4), clock })
  let network: AgentNetwork | undefined
  let swarm: AgentSwarm | undefined
  /** Enrolled PeerIds from the last accepted signed member list (the gater admits these). */
  let members = new Set<string>((await db.get<string[]>('members:list')) ?? [])
  let refused: { code: string; message: string } | undefined
  let assignmentVersion: number | undefined
  /** Bundle ids of the newest accepted assignment and their actions (undefined until one was fetched). */
  let currentActions: Map<string, AssignedBundleT['action']> | undefined
  /** The windows of the assignment accepted in this run (reboots wait for one). */
  let acceptedPolicy: AssignmentWindows | undefined
  const stopping = new AbortController()
  let loop: Promise<void> | undefined
  // Sent when its digest changes (and every 6 h), after the status report of a cycle.
  const inventory = createAgentInventory({
    store: db,
    installed: async () => (await states.list()).filter((b) => b.state === 'installed'),
    agentVersion: AGENT_VERSION,
    clock,
    log: log.child({ component: 'agent:inventory' }),
  })

  const report = async () => {
    if (!network) return
    // Only what is assigned now: the report stays within its limit however many bundles
    // this agent has installed over its life.
    const bundles: BundleReportT[] = (await states.list())
      .filter((b) => currentActions === undefined || currentActions.has(b.bundleId))
      .slice(-MAX_REPORTED_BUNDLES)
      .map((s) => {
        const r = reportedState(s, currentActions?.get(s.bundleId), assignmentVersion)
        // Live counters of an open swarm session (bytes served keep growing while seeding).
        const live = swarm?.get(s.bundleId)?.counters
        return live ? { ...r, transfer: { ...live } } : r
      })
    // Texts (errors, logs) are cut so the request fits the control frame with 256 bundles
    // (report-fit.ts); the full texts are in the agent's log.
    const body: AgentReportT = fitReport({
      agentVersion: AGENT_VERSION,
      hostname: config.hostname || hostname(),
      ...(assignmentVersion === undefined ? {} : { assignmentVersion }),
      ...(refused ? { refused } : {}),
      bundles,
    })
    await network.control({ op: 'report', report: body }, AbortSignal.timeout(10_000)).catch((err) => {
      log.warn({ err }, 'status report failed; will retry next cycle')
    })
  }

  const targetFor = (manifest: Manifest): string => {
    const { targetRoot } = filesInstall(manifest)
    const target = resolve(config.installRoot, `.${normalize(`/${targetRoot}`)}`)
    const rel = relative(resolve(config.installRoot), target)
    if (rel.startsWith('..') || isAbsolute(rel)) {
      throw new InstallError('PSW_ERR_INSTALL_FAILED', `target ${targetRoot} escapes the install root`)
    }
    return target
  }

  /** Where a bundle's files are already installed (same content, any manifest version). */
  const installedAt = async (manifest: Manifest): Promise<'here' | 'elsewhere' | undefined> => {
    if (manifest.install.type !== 'files') return (await installs.status(manifest)) === 'installed' ? 'here' : undefined
    const root = await installer.installedRoot(manifest.bundleId)
    if (root === undefined) return undefined
    const wanted = await realpath(targetFor(manifest)).catch(() => targetFor(manifest))
    return root === wanted ? 'here' : 'elsewhere'
  }

  /** Per bundle, the next opening last logged as "waiting for the maintenance window". */
  const waitingLogged = new Map<string, number | undefined>()
  const logWaiting = (bundleId: string, what: 'install' | 'rollback', reason: string, nextAt: number | undefined) => {
    if (waitingLogged.has(bundleId) && waitingLogged.get(bundleId) === nextAt) return
    waitingLogged.set(bundleId, nextAt)
    log.info(
      {
        bundleId: bundleId.slice(0, 12),
        action: what,
        reason,
        ...(nextAt === undefined ? {} : { nextInstallAt: new Date(nextAt).toISOString() }),
      },
      'waiting for the maintenance window',
    )
  }

  /**
   * Fetches and verifies the bundle's signed manifest. Undefined when it was not fetched (a
   * transport failure: the state stays as it is, next cycle tries again) or was refused (then
   * the bundle is `failed` with the refusal, which the next report also carries as `refused`).
   */
  const fetchManifest = async (
    entry: AssignedBundleT,
    refusedState: Omit<BundleState, 'updatedAt' | 'state' | 'chunksHave' | 'chunksTotal'>,
  ): Promise<Manifest | undefined> => {
    try {
      const envelope = await network!.control(
        { op: 'get-manifest', bundleId: entry.bundleId },
        AbortSignal.timeout(30_000),
      )
      return await guard.acceptManifest(envelope, { bundleId: entry.bundleId, version: entry.manifestVersion })
    } catch (err) {
      if (isTransportError(err)) {
        // Not a verdict on the metadata: try again next cycle, keep the state as it is.
        log.warn({ bundleId: entry.bundleId.slice(0, 12), ...errorInfo(err) }, 'manifest not fetched; will retry')
        return undefined
      }
      refused = errorInfo(err)
      log.warn({ bundleId: entry.bundleId, ...refused }, 'manifest refused')
      await states.put({ ...refusedState, state: 'failed', chunksHave: 0, chunksTotal: 0, error: refused })
      return undefined
    }
  }

  /** Stops offering a bundle to peers and deletes its downloaded copy. */
  const dropDownload = async (bundleId: string) => {
    if (swarm?.get(bundleId)) await swarm.close(bundleId)
    await rm(join(layout.downloads, `${bundleId}.part`), { force: true })
  }

  const handleInstall = async (entry: AssignedBundleT, policy: AssignmentWindows) => {
    const previous = await states.get(entry.bundleId)
    // An install that failed (or was rolled back after failing) under this very assignment
    // waits for a re-issued one (a retry).
    if (
      (previous?.state === 'failed' || previous?.state === 'rolled-back') &&
      previous.installFailedUnder !== undefined &&
      previous.installFailedUnder === assignmentVersion
    )
      return
    const partPath = join(layout.downloads, `${entry.bundleId}.part`)
    // Installed and seeding (or nothing left to seed from): nothing to do.
    if (
      previous?.state === 'installed' &&
      previous.action === undefined &&
      previous.manifestVersion === entry.manifestVersion &&
      (swarm?.get(entry.bundleId) || !existsSync(partPath))
    )
      return
    // --download-only: downloaded and seeding already.
    if (
      options.downloadOnly &&
      previous?.state === 'downloaded' &&
      previous.manifestVersion === entry.manifestVersion &&
      swarm?.get(entry.bundleId)?.complete
    )
      return
    const base = {
      bundleId: entry.bundleId,
      manifestVersion: entry.manifestVersion,
      transfer: previous?.transfer ?? { bytesFromAppliance: 0, bytesFromPeers: 0, bytesServed: 0 },
    }
    const manifest = await fetchManifest(entry, base)
    if (manifest === undefined) return
    try {
      checkSupported(manifest)
    } catch (err) {
      refused = errorInfo(err)
      log.warn({ bundleId: entry.bundleId, ...refused }, 'manifest refused')
      await states.put({ ...base, state: 'failed', chunksHave: 0, chunksTotal: 0, error: refused })
      return
    }
    const total = manifest.content.chunks.length
    // The same content under a newer manifest (refresh, re-ingest), or a crash between the
    // installer's journal and ours: the bytes are in place, nothing to download.
    const already = await installedAt(manifest)
    if (already === 'here') {
      // What the install reported (health, reboot, release) stays with it.
      const kept =
        previous?.state === 'installed'
          ? {
              ...(previous.health ? { health: previous.health } : {}),
              ...(previous.log !== undefined ? { log: previous.log } : {}),
              ...(previous.rebootRequired ? { rebootRequired: true, rebootBootId: previous.rebootBootId } : {}),
              ...(previous.released ? { released: true as const } : {}),
            }
          : {}
      await states.put({ ...base, ...kept, state: 'installed', chunksHave: total, chunksTotal: total })
      // The downloaded copy is still here: seed it to the site's other agents.
      if (existsSync(partPath) && !swarm!.get(manifest.bundleId)) {
        const session = await swarm!.session(manifest, partPath, base.transfer)
        if (!session.complete) await swarm!.close(manifest.bundleId)
      }
      return
    }
    if (already === 'elsewhere') {
      const error = {
        code: 'PSW_ERR_CONFLICT',
        message: `bundle is installed under another target root than ${filesInstall(manifest).targetRoot}; roll it back first`,
      }
      await states.put({ ...base, state: 'failed', chunksHave: 0, chunksTotal: total, error })
      return
    }
    let installing = false
    try {
      // Downloaded and seeding already (waiting for a maintenance window): straight to the gate.
      const waiting =
        previous?.state === 'downloaded' &&
        previous.manifestVersion === entry.manifestVersion &&
        swarm!.get(entry.bundleId)?.complete === true
      let downloadSeconds = waiting ? previous.downloadSeconds : undefined
      if (!waiting) {
        await states.put({ ...base, state: 'downloading', chunksHave: 0, chunksTotal: total })
        // Downloads from peers and the appliance at once, and seeds what it has meanwhile.
        const session = await swarm!.session(manifest, partPath, base.transfer)
        let lastLogged = -1
        const result = await session.download(stopping.signal, (have) => {
          const tenth = Math.floor((10 * have) / total)
          if (tenth !== lastLogged) {
            lastLogged = tenth
            log.info({ bundleId: manifest.bundleId.slice(0, 12), have, total }, 'downloading')
          }
        })
        base.transfer = { ...session.counters }
        downloadSeconds = result.seconds
        await states.put({ ...base, state: 'downloaded', chunksHave: total, chunksTotal: total, downloadSeconds })
        log.info(
          { bundleId: manifest.bundleId.slice(0, 12), ...result, ...base.transfer, requests: session.outcomes },
          'download complete and verified',
        )
        await report()
      }
      // Download and seed only (benchmarks).
      if (options.downloadOnly) return
      // Download any time, install only while a maintenance window is open (signed into the
      // assignment; emergency bundles ignore it). Meanwhile the bundle stays 'downloaded' and
      // is seeded to the site's other agents.
      const gate = installDecision({
        windows: policy.windows,
        spreadSeconds: policy.spreadSeconds,
        emergency: entry.emergency === true,
        maxRunSeconds: manifest.install.maxRunSeconds,
        peerId: config.peerId,
        now: clock.now(),
      })
      if (!gate.install) {
        logWaiting(entry.bundleId, 'install', gate.reason, gate.nextAt)
        return
      }
      waitingLogged.delete(entry.bundleId)
      if (gate.reason !== 'no-windows')
        log.info({ bundleId: manifest.bundleId.slice(0, 12), reason: gate.reason }, 'installing inside the window')
      const done = {
        ...base,
        chunksHave: total,
        chunksTotal: total,
        ...(downloadSeconds === undefined ? {} : { downloadSeconds }),
      }
      await states.put({ ...done, state: 'installing' })
      installing = true
      const targetRoot = manifest.install.type === 'files' ? targetFor(manifest) : undefined
      if (targetRoot !== undefined) await mkdir(targetRoot, { recursive: true })
      const outcome = await installs.install({
        manifest,
        openVerified: () => readVerified(partPath, manifest),
        ...(targetRoot === undefined ? {} : { targetRoot }),
      })
      // A reboot it needs is run at the end of the cycle, inside a window that allows it
      // (reboot.ts); until the device has rebooted the bundle reports rebootRequired.
      await states.put({
        ...done,
        state: 'installed',
        log: boundLog(outcome.log),
        ...(outcome.health ? { health: { ok: outcome.health.ok, log: boundLog(outcome.health.log) } } : {}),
        ...(outcome.rebootRequired ? { rebootRequired: true, rebootBootId: await reboots.bootId() } : {}),
      })
      // The downloaded copy stays while the bundle is assigned: other agents fetch it from here.
      log.info(
        {
          bundleId: manifest.bundleId.slice(0, 12),
          patch: manifest.patch.name,
          installer: outcome.installer,
          rebootRequired: outcome.rebootRequired,
          ...(outcome.health ? { health: outcome.health.log } : {}),
        },
        'bundle installed',
      )
    } catch (err) {
      if (stopping.signal.aborted) return
      const error = errorInfo(err)
      const details = isPswError(err) ? err.details : undefined
      log.error(
        { bundleId: manifest.bundleId.slice(0, 12), ...error, ...(details ? { details } : {}) },
        'bundle failed',
      )
      await states.put({
        ...base,
        ...(installing ? installFailure(err) : { state: 'failed' as const, error }),
        chunksHave: 0,
        chunksTotal: total,
        ...(installing && assignmentVersion !== undefined ? { installFailedUnder: assignmentVersion } : {}),
      })
      // A downloaded file that fails its checks while installing is discarded. A download
      // that fails keeps its verified chunks for the next attempt (bad bytes are never written).
      if (installing && isPswError(err) && (err.code === 'PSW_ERR_BUNDLE_HASH' || err.code === 'PSW_ERR_CHUNK_HASH')) {
        await swarm!.close(manifest.bundleId)
        await rm(partPath, { force: true })
      } else if (!installing) {
        // Keeps its verified chunks on disk; the next cycle opens a fresh session.
        await swarm!.close(manifest.bundleId)
      }
    }
  }

  /**
   * A site-wide rollback (assignment action `rollback`): undo this bundle's install here, if it
   * is installed, inside the maintenance windows like an install (emergency: at once). The
   * bundle is not downloaded for it, and no longer seeded. Where nothing is installed the
   * answer is `rolled-back` at once, with a detail saying there was nothing to undo. Whether it
   * is installed is the installer's journal's word, so a rollback cut short by kill -9 (which
   * the installers' recovery finishes at start) is never run twice.
   */
  const handleRollback = async (entry: AssignedBundleT, policy: AssignmentWindows) => {
    const previous = await states.get(entry.bundleId)
    // Answered already: undone (or nothing to undo), or failed under this very assignment.
    if (
      previous?.action === 'rollback' &&
      (previous.state === 'rolled-back' ||
        (previous.state === 'failed' &&
          previous.installFailedUnder !== undefined &&
          previous.installFailedUnder === assignmentVersion))
    )
      return
    await dropDownload(entry.bundleId)
    const base = {
      bundleId: entry.bundleId,
      manifestVersion: entry.manifestVersion,
      transfer: previous?.transfer ?? { bytesFromAppliance: 0, bytesFromPeers: 0, bytesServed: 0 },
      action: 'rollback' as const,
    }
    // The manifest names the installer (and whether it can roll back); its content is not needed.
    const manifest = await fetchManifest(entry, base)
    if (manifest === undefined) return
    const total = manifest.content.chunks.length
    const short = entry.bundleId.slice(0, 12)
    const failed = async (error: { code: string; message: string }, extra: Partial<BundleState> = {}) => {
      log.error({ bundleId: short, ...error }, 'rollback failed')
      await states.put({
        ...base,
        ...extra,
        state: 'failed',
        chunksHave: 0,
        chunksTotal: total,
        error,
        ...(assignmentVersion === undefined ? {} : { installFailedUnder: assignmentVersion }),
      })
    }
    let status: string | undefined
    try {
      checkSupported(manifest)
      status = await installs.status(manifest)
    } catch (err) {
      // An installer this agent lacks never installed anything here; a journal it cannot
      // read (corrupt) leaves nobody able to tell what to undo.
      if (!hasCode(err, 'PSW_ERR_INSTALLER_UNSUPPORTED')) {
        await failed({ code: 'PSW_ERR_ROLLBACK_FAILED', message: errorInfo(err).message })
        return
      }
    }
    const decision = rollbackDecision({
      installed: status === 'installed',
      rollbackType: manifest.rollback.type,
      windows: policy.windows,
      spreadSeconds: policy.spreadSeconds,
      emergency: entry.emergency === true,
      maxRunSeconds: manifest.install.maxRunSeconds,
      peerId: config.peerId,
      now: clock.now(),
    })
    switch (decision.act) {
      case 'nothing': {
        const detail = status === 'rolled-back' ? 'already rolled back here' : 'not installed here'
        log.info({ bundleId: short, installer: status ?? 'none' }, `${detail}; nothing to roll back`)
        await states.put({
          ...base,
          state: 'rolled-back',
          chunksHave: 0,
          chunksTotal: total,
          detail: `${detail}; nothing to roll back`,
        })
        return
      }
      case 'refuse':
        await failed({
          code: 'PSW_ERR_ROLLBACK_UNAVAILABLE',
          message: `${manifest.patch.name} ${manifest.patch.version} declares no rollback (${manifest.install.type} installer); it stays installed`,
        })
        return
      case 'wait': {
        logWaiting(entry.bundleId, 'rollback', decision.reason, decision.nextAt)
        const detail = 'installed; waiting for the maintenance window to roll back'
        if (previous?.action !== 'rollback' || previous.detail !== detail || previous.state !== 'installed') {
          const kept = previous?.state === 'installed' ? previous : undefined
          await states.put({
            ...(kept ?? { chunksHave: 0, chunksTotal: total }),
            ...base,
            state: 'installed',
            detail,
          })
        }
        return
      }
      case 'rollback': {
        waitingLogged.delete(entry.bundleId)
        log.info({ bundleId: short, patch: manifest.patch.name, reason: decision.reason }, 'rolling back (site-wide)')
        try {
          const result = await installs.rollback(manifest)
          await states.put({
            ...base,
            state: 'rolled-back',
            chunksHave: 0,
            chunksTotal: total,
            log: boundLog(result.log),
          })
          log.info({ bundleId: short, patch: manifest.patch.name }, 'bundle rolled back')
        } catch (err) {
          const details = isPswError(err) ? err.details : undefined
          // Refused (nothing changed) keeps its own code; anything else is a failed rollback.
          const error = hasCode(err, 'PSW_ERR_ROLLBACK_UNAVAILABLE')
            ? errorInfo(err)
            : { code: 'PSW_ERR_ROLLBACK_FAILED', message: errorInfo(err).message }
          await failed(error, failureTexts(details))
        }
        return
      }
    }
  }

  const handleBundle = (entry: AssignedBundleT, policy: AssignmentWindows) =>
    entry.action === 'rollback' ? handleRollback(entry, policy) : handleInstall(entry, policy)

  /** Fetches the signed member list; the gater admits exactly these peers from now on. */
  const refreshMembers = async () => {
    try {
      const envelope = await network!.control({ op: 'get-members' }, AbortSignal.timeout(30_000))
      const list = await guard.acceptMembers(envelope)
      const next = new Set(list.peers)
      const gone = [...members].filter((p) => !next.has(p))
      members = next
      await db.put('members:list', list.peers)
      for (const p of gone) await network!.node.hangUp(p)
    } catch (err) {
      log.warn({ ...errorInfo(err) }, 'member list not updated')
    }
  }

  /** Bundles no longer assigned: stop seeding them and delete the downloaded copy. */
  const dropUnassigned = async () => {
    if (!swarm || currentActions === undefined) return
    for (const bundleId of swarm.bundleIds()) {
      if (currentActions.has(bundleId)) continue
      await swarm.close(bundleId)
      await rm(join(layout.downloads, `${bundleId}.part`), { force: true })
      log.info({ bundleId: bundleId.slice(0, 12) }, 'bundle no longer assigned; stopped seeding it')
    }
  }

  /**
   * Installed bundles that left the assignment: the installers drop their rollback snapshots
   * (previous .deb, backups). Until then a site-wide rollback can still undo them; after it,
   * the install stays as it is for good.
   */
  const releaseUnassigned = async () => {
    if (currentActions === undefined) return
    for (const s of await states.list()) {
      if (currentActions.has(s.bundleId) || s.released || s.state !== 'installed') continue
      try {
        await installs.release(s.bundleId)
        const { updatedAt: _u, ...rest } = s
        await states.put({ ...rest, released: true })
        await rm(join(layout.downloads, `${s.bundleId}.part`), { force: true })
        log.info({ bundleId: s.bundleId.slice(0, 12) }, 'bundle no longer assigned; released its rollback snapshot')
      } catch (err) {
        log.warn({ bundleId: s.bundleId.slice(0, 12), ...errorInfo(err) }, 'release failed; will retry')
      }
    }
  }

  const appliance = { peerId: config.appliancePeerId, addrs: [...config.applianceAddrs] }

  /**
   * The appliance may listen elsewhere after a restart: ask its HTTP health endpoint for its
   * current addresses. Only addresses of the pinned PeerId are taken (Noise then proves it).
   */
  const refreshApplianceAddrs = async (): Promise<boolean> => {
    try {
      const res = await fetch(new URL('/api/v1/health', config.applianceUrl), { signal: AbortSignal.timeout(10_000) })
      const body = JSON.parse(await readBodyLimited(res, 64 << 10, 'health response')) as {
        peerId?: unknown
        multiaddrs?: unknown
      }
      const addrs = Array.isArray(body.multiaddrs)
        ? body.multiaddrs.filter((a): a is string => typeof a === 'string' && a.length < 200).slice(0, 32)
        : []
      if (body.peerId !== config.appliancePeerId || addrs.length === 0) return false
      if (addrs.join() === appliance.addrs.join()) return false
      appliance.addrs = addrs
      await writeAgentConfig(options.dataDir, { ...config, applianceAddrs: addrs })
      log.info({ addrs }, 'appliance addresses updated')
      return true
    } catch (err) {
      log.debug({ err }, 'appliance health check failed')
      return false
    }
  }

  const fetchAssignment = async (): Promise<unknown> => {
    try {
      return await network!.control({ op: 'get-assignment' }, AbortSignal.timeout(30_000))
    } catch (err) {
      if (isPswError(err) && err.code === 'PSW_ERR_APPLIANCE_UNREACHABLE' && (await refreshApplianceAddrs())) {
        return network!.control({ op: 'get-assignment' }, AbortSignal.timeout(30_000))
      }
      throw err
    }
  }

  const runSync = async () => {
    if (!network) throw new PswError('PSW_ERR_INTERNAL', 'agent not started')
    let assignment: Assignment | undefined
    try {
      const envelope = await fetchAssignment()
      if (envelope === null) currentActions = new Map()
      else {
        assignment = await guard.acceptAssignment(envelope)
        currentActions = new Map(assignment.bundles.map((b) => [b.bundleId, b.action]))
        acceptedPolicy = { windows: assignment.windows, spreadSeconds: assignment.spreadSeconds }
        assignmentVersion = assignment.version
        refused = undefined
      }
    } catch (err) {
      if (isPswError(err) && (err.code === 'PSW_ERR_APPLIANCE_UNREACHABLE' || err.code === 'PSW_ERR_PROTOCOL'))
        throw err
      refused = errorInfo(err)
      log.warn(refused, 'assignment refused')
    }
    await refreshMembers()
    await dropUnassigned()
    await releaseUnassigned()
    for (const entry of assignment?.bundles ?? []) {
      if (stopping.signal.aborted) break
      await handleBundle(entry, { windows: assignment!.windows, spreadSeconds: assignment!.spreadSeconds })
    }
    await report()
    await inventory.sync(
      (body, signal) => network!.control({ op: 'inventory', inventory: body }, signal),
      stopping.signal,
    )
    // Last: the appliance has the cycle's report before the device goes down. Only under an
    // assignment accepted in this run, whose windows say when rebooting is allowed.
    if (acceptedPolicy !== undefined && !stopping.signal.aborted) await reboots.afterCycle(acceptedPolicy.windows)
  }
  // One cycle at a time: two would download into the same file and race the version checks.
  let syncing: Promise<void> | undefined
  const syncOnce = (): Promise<void> => {
    syncing ??= runSync().finally(() => {
      syncing = undefined
    })
    return syncing
  }

  return {
    config,
    syncOnce,
    async start() {
      const recovered = await installs.recover()
      for (const f of recovered.failed)
        log.error({ bundleId: f.bundleId, err: f.error }, 'interrupted install not recovered')
      // A site-wide rollback that failed midway and was just finished by the installer's
      // recovery: look at it again in the next cycle instead of waiting for a re-issue.
      for (const bundleId of recovered.rolledBack) {
        const s = await states.get(bundleId)
        if (s?.action !== 'rollback' || s.state !== 'failed' || s.installFailedUnder === undefined) continue
        const { updatedAt: _u, installFailedUnder: _f, ...rest } = s
        await states.put(rest)
      }
      network = await startAgentNetwork({
        privateKey,
        listen: config.listen,
        appliance,
        isPeerAllowed: (peer) => members.has(peer) && (swarm?.allowed(peer) ?? true),
        mdns: options.mdns ?? config.mdns ?? true,
        onDiscovery: (peer, addrs) => swarm?.discovered(peer, addrs),
        log: log.child({ component: 'agent:p2p' }),
      })
      const net = network
      const uploadRate = options.uploadBytesPerSecond ?? config.uploadBytesPerSecond ?? 0
      swarm = new AgentSwarm({
        node: net.node,
        appliance,
        announce: async (bundleId, request) =>
          checkAnnounceResponse.check(
            await net.control({ op: 'announce', bundleId, ...request }, AbortSignal.timeout(10_000)),
            'announce response',
          ),
        isMember: (peer) => members.has(peer),
        downloadRate: rateLimit,
        upload: { bytesPerSecond: uploadRate, slots: config.uploadSlots ?? 2 },
        tuning: {
          peerWindow: 2,
          applianceWindow: 4,
          soloWindow: config.requestWindow,
          maxInflight: Math.max(config.requestWindow, 16),
          maxPeers: config.maxPeers ?? 30,
        },
        clock,
        random: Math.random,
        log: log.child({ component: 'agent:swarm' }),
      })
      await swarm.start()
      log.info({ peerId: network.node.peerId, appliance: config.appliancePeerId }, 'agent started')
      if (options.once) return
      const pollMs = (options.pollSeconds ?? config.pollSeconds) * 1000
      loop = (async () => {
        while (!stopping.signal.aborted) {
          await syncOnce().catch((err) => log.warn({ err: isPswError(err) ? err.toJSON() : err }, 'sync failed'))
          await sleep(pollMs, undefined, { signal: stopping.signal }).catch(() => {})
        }
      })()
    },
    async stop() {
      stopping.abort()
      await loop
      await syncing?.catch(() => {})
      await swarm?.stop()
      swarm = undefined
      await network?.stop()
      network = undefined
      await db.close()
    },
  }
}
