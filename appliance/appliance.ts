import { rm } from 'node:fs/promises'
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import type { Clock } from '../shared/clock.ts'
import { StoreError } from '../shared/errors.ts'
import { TokenBucket } from '../shared/rate/token-bucket.ts'
import { writeFileDurable } from '../shared/store/durable-file.ts'
import { setupBanner } from './auth/setup.ts'
import { type ApplianceConfig, assertLoopbackHttpHost, DEFAULT_HTTPS_HOST, DEFAULT_HTTPS_PORT } from './config.ts'
import { createControlHandler } from './control-handler.ts'
import { type ApplianceCore, openApplianceCore } from './core.ts'
import { readAdminToken } from './data-dir.ts'
import type { DeviceRecord } from './devices.ts'
import { createWebServers, urlFor, type WebServers } from './http/listeners.ts'
import { createHttpServer } from './http/server.ts'
import type { StatusView } from './http/status-page.ts'
import { ensureWebCertificates, readWebCertificates, type WebCertificates } from './http/web-tls.ts'
import { MemberList } from './members.ts'
import { MetadataRefresher } from './metadata-refresh.ts'
import { applianceUploadedFromSwarm, deliveredFromDevices } from './metrics/delivered.ts'
import { createMetrics } from './metrics/prometheus.ts'
import { type ApplianceNetwork, startApplianceNetwork } from './network.ts'
import { type Group, matches } from './policy/groups.ts'
import { checkRolloutAdmission } from './policy/rollout-admission.ts'
import { syncDeviceWindows } from './policy/window-policy.ts'
import { createDashboard } from './reports/dashboard.ts'
import { dashboardSources } from './reports/dashboard-sources.ts'
import { RolloutService } from './rollout/rollout-service.ts'
import { SettingsService } from './settings/settings-service.ts'
import { ApplianceSwarm, type BundleSwarmStats } from './swarm.ts'
import { createUpstream, type Upstream } from './upstream/upstream-factory.ts'

export interface ApplianceOptions {
  dataDir: string
  clock: Clock
  log: Logger
  /** Overrides of the stored config for this run (CLI flags). */
  overrides?: {
    /** Plain HTTP: loopback only. */
    httpHost?: string
    httpPort?: number
    httpsHost?: string
    /** 0 = any free port. */
    httpsPort?: number
    p2pListen?: string[]
    /** Upload cap in bytes per second (0 = unlimited). */
    uploadBytesPerSecond?: number
  }
}

/** What a running appliance publishes in `<data>/run.json` for the CLI. */
export interface RunInfo {
  pid: number
  /** The plain-HTTP listener, on loopback (the CLI and tools on the box use it). */
  httpUrl: string
  /** The HTTPS listener, as reachable from the box itself (a wildcard host is given as 127.0.0.1). */
  httpsUrl: string
  /** HTTPS URLs for browsers on the LAN: one per name in the server certificate but localhost/loopback. */
  webUrls: string[]
  /** SHA-256 of the web CA (colon hex, as browsers show it); null when an imported certificate came without its CA. */
  webCaFingerprint256: string | null
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
  /**
   * Re-reads `<data>/web/` (re-issuing the server certificate if due) and serves the result to
   * new TLS connections; `patchswarm appliance start` calls it on SIGHUP.
   */
  reloadWebCertificate(): Promise<WebCertificates>
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
  let servers: WebServers | undefined
  let web: WebCertificates | undefined
  let refresher: MetadataRefresher | undefined
  const startedAt = clock.now()

  const upstream = createUpstream(core, { clock, log })
  // The dashboard summary and compliance reports (cached while nothing is written).
  const reportSources = dashboardSources(core, {
    clock,
    rollouts: () => rollouts.list(),
    wan: () => upstream.wan.totals(),
  })
  const dashboard = createDashboard(reportSources)
  let windowTimer: NodeJS.Timeout | undefined
  let policyChanged = () => {}
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
    async reloadWebCertificate() {
      const next = await ensureWebCertificates(core.layout, { now: clock.now(), siteName: config.siteName })
      for (const warning of next.warnings) log.warn({ component: 'appliance:web-tls' }, warning)
      servers?.setCertificate(next)
      web = next
      if (info) {
        info = { ...info, webCaFingerprint256: next.caFingerprint256 }
        await writeFileDurable(core.layout.runInfo, `${JSON.stringify(info, null, 2)}\n`)
      }
      log.info(
        { serverFingerprint256: next.serverFingerprint256, notAfter: next.notAfter, imported: next.imported },
        'web certificate reloaded',
      )
      return next
    },
    async start() {
      try {
        await swarm.start()
        await upstream.start()
        rollouts.start()
        core.auth.sessions.start()
        // Group windows into devices' signed assignments: now, every 30 s (enrollments are
        // picked up on the next pass), and at once after a group, tag or tier change.
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
        // A group, tag or tier change re-signs the affected devices' windows at once (one pass
        // for a burst of changes), rather than at the next 30 s pass.
        let windowSyncQueued = false
        policyChanged = () => {
          if (windowSyncQueued) return
          windowSyncQueued = true
          setTimeout(() => {
            windowSyncQueued = false
            void windowSync()
          }, 200).unref()
        }
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
        const httpHost = options.overrides?.httpHost ?? config.http.host
        assertLoopbackHttpHost(httpHost, '--http-host')
        web = await ensureWebCertificates(core.layout, { now: clock.now(), siteName: config.siteName })
        for (const warning of web.warnings) log.warn({ component: 'appliance:web-tls' }, warning)
        if (web.action !== 'kept') {
          log.info(
            {
              action: web.action,
              reason: web.reason,
              notAfter: web.notAfter,
              dnsNames: web.dnsNames,
              ipAddresses: web.ipAddresses,
            },
            'web server certificate issued',
          )
        }
        servers = createWebServers(web)
        http = await createHttpServer({
          core,
          servers,
          webCaPem: () => web?.caPem ?? null,
          adminToken: await readAdminToken(core.layout),
          status,
          startedAt,
          now: () => clock.now(),
          node: () => ({ peerId: network?.node.peerId ?? '', multiaddrs: network?.node.multiaddrs() ?? [] }),
          metrics,
          rollouts,
          reports: { dashboard, sources: reportSources },
          onPolicyChange: () => policyChanged(),
          certificates: {
            read: () => readWebCertificates(core.layout, clock.now()),
            renew: async () => {
              await ensureWebCertificates(core.layout, { now: clock.now(), siteName: config.siteName, renew: true })
              return appliance.reloadWebCertificate()
            },
            urls: () => ({ httpsUrl: info?.httpsUrl ?? null, webUrls: info?.webUrls ?? [] }),
          },
          settings: new SettingsService({
            dataDir: core.layout.root,
            upstream,
            audit: core.audit,
            log: log.child({ component: 'appliance:settings' }),
          }),
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
        const httpsHost = options.overrides?.httpsHost ?? config.http.httpsHost ?? DEFAULT_HTTPS_HOST
        const listening = await servers.listen(http, {
          https: { host: httpsHost, port: options.overrides?.httpsPort ?? config.http.httpsPort ?? DEFAULT_HTTPS_PORT },
          http: { host: httpHost, port: options.overrides?.httpPort ?? config.http.port },
        })
        info = {
          pid: process.pid,
          httpUrl: listening.httpUrl,
          httpsUrl: listening.httpsUrl,
          webUrls: webUrls(web, httpsHost, listening.httpsPort),
          webCaFingerprint256: web.caFingerprint256,
          peerId: network.node.peerId,
          multiaddrs: network.node.multiaddrs(),
        }
        await writeFileDurable(core.layout.runInfo, `${JSON.stringify(info, null, 2)}\n`)
        log.info(
          {
            httpUrl: info.httpUrl,
            httpsUrl: info.httpsUrl,
            webCaFingerprint256: info.webCaFingerprint256,
            peerId: info.peerId,
            multiaddrs: info.multiaddrs,
          },
          'appliance started',
        )
        // No account yet: a fresh one-time setup link at every start until the first admin exists.
        const setupToken = await core.auth.setup.setupToken()
        if (setupToken) {
          setupBanner(info.httpsUrl, setupToken, log)
          // From another machine: the same token on one of the LAN addresses.
          const lan = info.webUrls.find((u) => !/\/\/(127\.|\[::1\]|localhost)/.test(u))
          if (lan)
            process.stdout.write(
              `       (from another machine: ${lan.replace(/\/+$/, '')}/#/setup?token=${setupToken})\n`,
            )
        }
        return info
      } catch (err) {
        await appliance.stop()
        if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE' || /EADDRINUSE/.test(String((err as Error).message))) {
          throw new StoreError(
            'PSW_ERR_ADDRESS_IN_USE',
            `${(err as Error).message}: another process listens there (another appliance?); choose --https-port, --http-port or --p2p-listen`,
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
      servers = undefined
      await network?.stop()
      network = undefined
      clearInterval(windowTimer)
      await rollouts.stop()
      reportSources.stop()
      await upstream.stop()
      await swarm.stop()
      await core.close()
    },
  }
  return appliance
}

/** HTTPS URLs for the LAN: the certificate's names and addresses but loopback ones (all of them if the listener is on one host). */
function webUrls(web: WebCertificates, httpsHost: string, port: number): string[] {
  if (httpsHost !== '0.0.0.0' && httpsHost !== '::') return [urlFor('https', httpsHost, port)]
  const names = [
    ...web.dnsNames.filter((d) => d !== 'localhost' && !d.includes('*')),
    ...web.ipAddresses.filter((a) => !a.startsWith('127.') && a !== '::1'),
  ]
  // A wildcard on IPv4 only: IPv6 addresses are not reachable.
  return names.filter((n) => httpsHost === '::' || !n.includes(':')).map((n) => urlFor('https', n, port))
}
