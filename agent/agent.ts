import { existsSync } from 'node:fs'
import { readFile, realpath, rm } from 'node:fs/promises'
import { hostname } from 'node:os'
import { isAbsolute, join, normalize, relative, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from 'pino'
import type { Clock } from '../shared/clock.ts'
import { InstallError, isPswError, PswError } from '../shared/errors.ts'
import { applianceRequest } from '../shared/http/appliance-http.ts'
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
import type { BundleContext } from './bundle-context.ts'
import { type BundleState, BundleStates, errorInfo, reportedState } from './bundle-state.ts'
import { type AgentConfig, agentLayout, readAgentConfig, writeAgentConfig } from './data-dir.ts'
import { createInstallHandler } from './install-handler.ts'
import { createAgentInstallRouter, filesInstall } from './install-support.ts'
import { createFilesInstaller } from './installer/files-installer.ts'
import { createProcessRunner, type ProcessRunner } from './installer/process-runner.ts'
import { createAgentInventory } from './inventory/inventory.ts'
import { MetadataGuard } from './metadata-guard.ts'
import { type AgentNetwork, startAgentNetwork } from './network.ts'
import { currentBootId, RebootKeeper } from './reboot.ts'
import { fitReport } from './report-fit.ts'
import { createRollbackHandler } from './rollback-handler.ts'
import { AgentSwarm } from './swarm/agent-swarm.ts'

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

  const context: BundleContext = {
    states,
    installs,
    clock,
    log,
    peerId: config.peerId,
    downloadsDir: layout.downloads,
    downloadOnly: options.downloadOnly === true,
    signal: stopping.signal,
    swarm: () => swarm,
    assignmentVersion: () => assignmentVersion,
    refuse: (refusal) => {
      refused = refusal
    },
    report,
    bootId: () => reboots.bootId(),
    fetchManifest,
    dropDownload,
    installedAt,
    targetFor,
    logWaiting,
    clearWaiting: (bundleId) => {
      waitingLogged.delete(bundleId)
    },
  }
  const handleInstall = createInstallHandler(context)
  const handleRollback = createRollbackHandler(context)

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
      const webCaPem = existsSync(layout.webCa) ? await readFile(layout.webCa, 'utf8') : undefined
      const res = await applianceRequest(new URL('/api/v1/health', config.applianceUrl), {
        ...(webCaPem ? { caPem: webCaPem } : {}),
        signal: AbortSignal.timeout(10_000),
        maxBytes: 64 << 10,
      })
      const body = JSON.parse(res.text) as {
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
