import { existsSync } from 'node:fs'
import { mkdir, readFile, realpath, rm } from 'node:fs/promises'
import { hostname } from 'node:os'
import { isAbsolute, join, normalize, relative, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from 'pino'
import type { Clock } from '../shared/clock.ts'
import { InstallError, isPswError, PswError } from '../shared/errors.ts'
import { readBodyLimited } from '../shared/http/read-limited.ts'
import type { Assignment, AssignmentWindows } from '../shared/metadata/assignment-schema.ts'
import type { Manifest } from '../shared/metadata/manifest-schema.ts'
import { privateKeyFromBytes } from '../shared/p2p/p2p-node.ts'
import { type AgentReportT, checkAnnounceResponse } from '../shared/protocol/control-protocol.ts'
import { TokenBucket } from '../shared/rate/token-bucket.ts'
import { openStateDb, type StateDb } from '../shared/store/state-db.ts'
import { BundleStates } from './bundle-state.ts'
import { type AgentConfig, agentLayout, readAgentConfig, writeAgentConfig } from './data-dir.ts'
import { installDecision } from './install-gate.ts'
import { checkSupported, createAgentInstallRouter, filesInstall } from './install-support.ts'
import { createFilesInstaller } from './installer/files-installer.ts'
import { createAgentInventory } from './inventory/inventory.ts'
import { MetadataGuard } from './metadata-guard.ts'
import { type AgentNetwork, startAgentNetwork } from './network.ts'
import { AgentSwarm } from './swarm/agent-swarm.ts'
import { readVerified } from './verified-reader.ts'

export const AGENT_SCHEMA_VERSION = 1
export const AGENT_VERSION = '0.1.0'
const MAX_REPORTED_BUNDLES = 256
const REPORTED_ERROR_CHARS = 400

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

const errorInfo = (err: unknown) =>
  isPswError(err)
    ? { code: err.code, message: err.message.slice(0, 2000) }
    : { code: 'PSW_ERR_INTERNAL', message: String(err).slice(0, 2000) }

/**
 * The endpoint program: pulls its signed assignment from the appliance, verifies every
 * document and every chunk, downloads with bounded memory, installs with the installer the
 * manifest names (health-checked; rolled back on failure) and reports what happened.
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
  const downloadRate = options.downloadBytesPerSecond ?? config.downloadBytesPerSecond ?? 0
  const rateLimit = new TokenBucket({ rate: downloadRate, burst: Math.max(1 << 20, downloadRate / 4), clock })
  let network: AgentNetwork | undefined
  let swarm: AgentSwarm | undefined
  /** Enrolled PeerIds from the last accepted signed member list (the gater admits these). */
  let members = new Set<string>((await db.get<string[]>('members:list')) ?? [])
  let refused: { code: string; message: string } | undefined
  let assignmentVersion: number | undefined
  /** Bundle ids of the newest accepted assignment (undefined until one was fetched). */
  let currentBundles: Set<string> | undefined
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
    const bundles = (await states.list())
      .filter((b) => currentBundles === undefined || currentBundles.has(b.bundleId))
      .slice(-MAX_REPORTED_BUNDLES)
      // Live counters of an open swarm session (bytes served keep growing while seeding).
      .map(({ manifestVersion: _m, updatedAt: _u, installFailedUnder: _f, ...b }) => {
        const live = swarm?.get(b.bundleId)?.counters
        // Error messages are cut to REPORTED_ERROR_CHARS so 256 failed bundles still fit the
        // control protocol's 256 KiB frame (the full message is in the agent's log).
        const error = b.error && { code: b.error.code, message: b.error.message.slice(0, REPORTED_ERROR_CHARS) }
        return { ...b, ...(error ? { error } : {}), ...(live ? { transfer: { ...live } } : {}) }
      })
    const body: AgentReportT = {
      agentVersion: AGENT_VERSION,
      hostname: config.hostname || hostname(),
      ...(assignmentVersion === undefined ? {} : { assignmentVersion }),
      ...(refused ? { refused } : {}),
      bundles,
    }
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

  const handleBundle = async (entry: Assignment['bundles'][number], policy: AssignmentWindows) => {
    const previous = await states.get(entry.bundleId)
    // An install that failed under this very assignment waits for a re-issued one (a retry).
    if (
      previous?.state === 'failed' &&
      previous.installFailedUnder !== undefined &&
      previous.installFailedUnder === assignmentVersion
    )
      return
    const partPath = join(layout.downloads, `${entry.bundleId}.part`)
    // Installed and seeding (or nothing left to seed from): nothing to do.
    if (
      previous?.state === 'installed' &&
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
    let manifest: Manifest
    try {
      const envelope = await network!.control(
        { op: 'get-manifest', bundleId: entry.bundleId },
        AbortSignal.timeout(30_000),
      )
      manifest = await guard.acceptManifest(envelope, { bundleId: entry.bundleId, version: entry.manifestVersion })
      checkSupported(manifest)
    } catch (err) {
      if (isTransportError(err)) {
        // Not a verdict on the metadata: try again next cycle, keep the state as it is.
        log.warn({ bundleId: entry.bundleId.slice(0, 12), ...errorInfo(err) }, 'manifest not fetched; will retry')
        return
      }
      refused = errorInfo(err)
      log.warn({ bundleId: entry.bundleId, ...refused }, 'manifest refused')
      await states.put({ ...base, state: 'failed', chunksHave: 0, chunksTotal: 0, error: refused })
      return
    }
    const total = manifest.content.chunks.length
    // The same content under a newer manifest (refresh, re-ingest), or a crash between the
    // installer's commit and ours: the bytes are in place, nothing to download.
    const already = await installedAt(manifest)
    if (already === 'here') {
      await states.put({ ...base, state: 'installed', chunksHave: total, chunksTotal: total })
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
      let state = previous!
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
        state = await states.put({
          ...base,
          state: 'downloaded',
          chunksHave: total,
          chunksTotal: total,
          downloadSeconds: result.seconds,
        })
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
        if (!waitingLogged.has(entry.bundleId) || waitingLogged.get(entry.bundleId) !== gate.nextAt) {
          waitingLogged.set(entry.bundleId, gate.nextAt)
          log.info(
            {
              bundleId: manifest.bundleId.slice(0, 12),
              reason: gate.reason,
              ...(gate.nextAt === undefined ? {} : { nextInstallAt: new Date(gate.nextAt).toISOString() }),
            },
            'waiting for the maintenance window',
          )
        }
        return
      }
      waitingLogged.delete(entry.bundleId)
      if (gate.reason !== 'no-windows')
        log.info({ bundleId: manifest.bundleId.slice(0, 12), reason: gate.reason }, 'installing inside the window')
      await states.put({ ...state, state: 'installing' })
      installing = true
      const targetRoot = manifest.install.type === 'files' ? targetFor(manifest) : undefined
      if (targetRoot !== undefined) await mkdir(targetRoot, { recursive: true })
      const outcome = await installs.install({
        manifest,
        openVerified: () => readVerified(partPath, manifest),
        ...(targetRoot === undefined ? {} : { targetRoot }),
      })
      await states.put({ ...state, state: 'installed' })
      // The downloaded copy stays while the bundle is assigned: other agents fetch it from here.
      // A reboot it needs is only reported; the rollout engine decides when (inside a window).
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
        state: 'failed',
        chunksHave: 0,
        chunksTotal: total,
        error,
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
    if (!swarm || currentBundles === undefined) return
    for (const bundleId of swarm.bundleIds()) {
      if (currentBundles.has(bundleId)) continue
      await swarm.close(bundleId)
      await rm(join(layout.downloads, `${bundleId}.part`), { force: true })
      log.info({ bundleId: bundleId.slice(0, 12) }, 'bundle no longer assigned; stopped seeding it')
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
      if (envelope === null) currentBundles = new Set()
      else {
        assignment = await guard.acceptAssignment(envelope)
        currentBundles = new Set(assignment.bundles.map((b) => b.bundleId))
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
    for (const entry of assignment?.bundles ?? []) {
      if (stopping.signal.aborted) break
      await handleBundle(entry, { windows: assignment!.windows, spreadSeconds: assignment!.spreadSeconds })
    }
    await report()
    await inventory.sync(
      (body, signal) => network!.control({ op: 'inventory', inventory: body }, signal),
      stopping.signal,
    )
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
