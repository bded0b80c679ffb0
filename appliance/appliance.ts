import { rm } from 'node:fs/promises'
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import type { Clock } from '../shared/clock.ts'
import { StoreError } from '../shared/errors.ts'
import { TokenBucket } from '../shared/rate/token-bucket.ts'
import { writeFileDurable } from '../shared/store/durable-file.ts'
import type { ApplianceConfig } from './config.ts'
import { createControlHandler } from './control-handler.ts'
import { type ApplianceCore, openApplianceCore } from './core.ts'
import { readAdminToken } from './data-dir.ts'
import type { DeviceRecord } from './devices.ts'
import { createHttpServer } from './http/server.ts'
import type { StatusView } from './http/status-page.ts'
import { MemberList } from './members.ts'
import { MetadataRefresher } from './metadata-refresh.ts'
import { applianceUploadedFromSwarm, deliveredFromDevices } from './metrics/delivered.ts'
import { createMetrics } from './metrics/prometheus.ts'
import { type ApplianceNetwork, startApplianceNetwork } from './network.ts'
import { type Group, matches } from './policy/groups.ts'
import { checkRolloutAdmission } from './policy/rollout-admission.ts'
import { syncDeviceWindows } from './policy/window-policy.ts'
import { RolloutService } from './rollout/rollout-service.ts'
import { ApplianceSwarm, type BundleSwarmStats } from './swarm.ts'
import { createUpstream, type Upstream } from './upstream/upstream-factory.ts'

export interface ApplianceOptions {
  dataDir: string
  clock: Clock
  log: Logger
  /** Overrides of the stored config for this run (CLI flags). */
  overrides?: {
    httpHost?: string
    httpPort?: number
    p2pListen?: string[]
    /** Upload cap in bytes per second (0 = unlimited). */
    uploadBytesPerSecond?: number
  }
}

/** What a running appliance publishes in `<data>/run.json` for the CLI. */
export interface RunInfo {
  pid: number
  httpUrl: string
  peerId: string
  multiaddrs: string[]
}

export interface Appliance {
  start(): Promise<RunInfo>
  stop(): Promise<void>
  readonly core: ApplianceCore
  /** Bytes of chunks this appliance uploaded since start, per peer. */
  bytesServed(): Map<string, number>
  /** The tracker's view of a bundle's swarm and what the appliance uploaded for it. */
  swarmStats(bundleId: string): BundleSwarmStats
  /** Feeds, WAN downloads, the cache. */
  readonly upstream: Upstream
}

/** Wires the core, the libp2p node and the HTTP server of `patchswarm appliance start`. */
export async function createAppliance(options: ApplianceOptions): Promise<Appliance> {
  const { clock, log } = options
  let info: RunInfo | undefined
  const core = await openApplianceCore(options.dataDir, {
    clock,
    log,
    applianceInfo: () => ({
      peerId: info?.peerId ?? '',
      multiaddrs: info?.multiaddrs ?? [],
      signerCertificate: core.identity.signer.certificatePem,
    }),
  })
  const config: ApplianceConfig = core.config
  const served = new Map<string, number>()
  let network: ApplianceNetwork | undefined
  const swarm = new ApplianceSwarm({
    catalog: core.catalog,
    assignments: core.assignments,
    db: core.db,
    clock,
    random: Math.random,
    log: log.child({ component: 'appliance:swarm' }),
  })
  const members = new MemberList({ db: core.db, devices: core.devices, signer: core.identity.signer, clock })
  const uploadRate = options.overrides?.uploadBytesPerSecond ?? config.uploadBytesPerSecond ?? 0
  let http: FastifyInstance | undefined
  let refresher: MetadataRefresher | undefined
  const startedAt = clock.now()

  const upstream = createUpstream(core, { clock, log })
  let windowTimer: NodeJS.Timeout | undefined
  const rollouts = new RolloutService({
    db: core.db,
    catalog: core.catalog,
    assignments: core.assignments,
    audit: core.audit,
    devices: async () => {
      groupList = await core.groups.list()
      return core.devices.list()
    },
    groupsOf: (device) => groupsOfDevice(device),
    admit: async (spec) => checkRolloutAdmission(spec, await core.approvals.list(spec.bundleId)),
    clock,
    log: log.child({ component: 'appliance:rollout' }),
  })
  // Group membership for rollouts: each stored group's filter, plus the device's own tags.
  let groupList: Group[] = []
  const groupsOfDevice = (device: DeviceRecord) => [
    ...(device.tags ?? []),
    ...groupList.filter((g) => matches(g.match, device)).map((g) => g.id),
  ]
  const metrics = createMetrics({
    wan: upstream.wan,
    delivered: deliveredFromDevices(core.devices),
    applianceUploaded: applianceUploadedFromSwarm({ catalog: core.catalog, swarm }),
    devices: () => core.devices.members().length,
    bundles: async () => (await core.catalog.list()).length,
  })

  const status = async (): Promise<StatusView> => ({
    siteName: config.siteName,
    peerId: network?.node.peerId ?? '',
    multiaddrs: network?.node.multiaddrs() ?? [],
    rootFingerprint: core.identity.rootFingerprint,
    bundles: await core.catalog.list(),
    devices: await core.devices.list(),
    swarm: (await core.catalog.list()).map((b) => swarm.stats(b.bundleId)),
  })

  const appliance: Appliance = {
    core,
    bytesServed: () => new Map(served),
    swarmStats: (bundleId) => swarm.stats(bundleId),
    upstream,
    async start() {
      try {
        await swarm.start()
        await upstream.start()
        rollouts.start()
        // Group windows into devices' signed assignments: now, and every 30 s (group, tag and
        // enrollment changes are picked up on the next pass).
        const windowSync = () =>
          syncDeviceWindows({
            groups: () => core.groups.list(),
            devices: () => core.devices.list(),
            assignments: core.assignments,
            log: log.child({ component: 'appliance:windows' }),
          }).catch((err) => log.error({ err }, 'maintenance window sync failed'))
        await windowSync()
        windowTimer = setInterval(() => void windowSync(), 30_000)
        windowTimer.unref()
        network = await startApplianceNetwork({
          privateKey: core.identity.libp2pKey,
          listen: options.overrides?.p2pListen ?? config.p2p.listen,
          isMember: (peer) => core.devices.isMember(peer),
          chunks: core.chunks,
          control: createControlHandler({
            assignments: core.assignments,
            catalog: core.catalog,
            devices: core.devices,
            members,
            swarm,
            clock,
            log: log.child({ component: 'appliance:control' }),
            onReport: () => rollouts.nudge(),
          }),
          swarm,
          upload: {
            rateLimit: new TokenBucket({ rate: uploadRate, burst: Math.max(1 << 20, uploadRate / 8), clock }),
            slots: config.uploadSlots ?? 4,
          },
          now: () => clock.now(),
          onServed: (peer, bytes) => served.set(peer, (served.get(peer) ?? 0) + bytes),
          log: log.child({ component: 'appliance:p2p' }),
        })
        refresher = new MetadataRefresher({
          db: core.db,
          catalog: core.catalog,
          assignments: core.assignments,
          signer: core.identity.signer,
          clock,
          manifestTtlDays: config.manifestTtlDays,
          log: log.child({ component: 'appliance:refresh' }),
        })
        await refresher.start()
        http = await createHttpServer({
          core,
          adminToken: await readAdminToken(core.layout),
          status,
          startedAt,
          now: () => clock.now(),
          node: () => ({ peerId: network?.node.peerId ?? '', multiaddrs: network?.node.multiaddrs() ?? [] }),
          metrics,
          rollouts,
          upstream: {
            status: async () => ({
              ...(await upstream.service.status()),
              cache: await upstream.cache.usage(),
              wanBytesPerSecond: upstream.limiter.rate,
            }),
            list: (filter) => upstream.catalog.list(filter),
            sync: (feedId) => upstream.service.syncNow(feedId),
            request: (ref, by) => upstream.service.request(ref, by),
          },
          log,
        })
        const host = options.overrides?.httpHost ?? config.http.host
        await http.listen({ host, port: options.overrides?.httpPort ?? config.http.port })
        const address = http.server.address()
        const port = typeof address === 'object' && address ? address.port : config.http.port
        const urlHost = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host
        info = {
          pid: process.pid,
          httpUrl: `http://${urlHost}:${port}`,
          peerId: network.node.peerId,
          multiaddrs: network.node.multiaddrs(),
        }
        await writeFileDurable(core.layout.runInfo, `${JSON.stringify(info, null, 2)}\n`)
        log.info({ httpUrl: info.httpUrl, peerId: info.peerId, multiaddrs: info.multiaddrs }, 'appliance started')
        return info
      } catch (err) {
        await appliance.stop()
        if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE' || /EADDRINUSE/.test(String((err as Error).message))) {
          throw new StoreError(
            'PSW_ERR_ADDRESS_IN_USE',
            `${(err as Error).message}: another process listens there (another appliance?); choose --http-port or --p2p-listen`,
            { cause: err },
          )
        }
        throw err
      }
    },
    async stop() {
      await rm(core.layout.runInfo, { force: true })
      await refresher?.stop()
      refresher = undefined
      await http?.close()
      http = undefined
      await network?.stop()
      network = undefined
      clearInterval(windowTimer)
      await rollouts.stop()
      await upstream.stop()
      await swarm.stop()
      await core.close()
    },
  }
  return appliance
}
