import { rm } from 'node:fs/promises'
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import type { Clock } from '../shared/clock.ts'
import { StoreError } from '../shared/errors.ts'
import type { P2PNode } from '../shared/p2p/p2p-node.ts'
import { writeFileDurable } from '../shared/store/durable-file.ts'
import type { ApplianceConfig } from './config.ts'
import { createControlHandler } from './control-handler.ts'
import { type ApplianceCore, openApplianceCore } from './core.ts'
import { readAdminToken } from './data-dir.ts'
import { createHttpServer } from './http/server.ts'
import type { StatusView } from './http/status-page.ts'
import { MetadataRefresher } from './metadata-refresh.ts'
import { startApplianceNetwork } from './network.ts'

export interface ApplianceOptions {
  dataDir: string
  clock: Clock
  log: Logger
  /** Overrides of the stored config for this run (CLI flags). */
  overrides?: { httpHost?: string; httpPort?: number; p2pListen?: string[] }
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
  let node: P2PNode | undefined
  let http: FastifyInstance | undefined
  let refresher: MetadataRefresher | undefined
  const startedAt = clock.now()

  const status = async (): Promise<StatusView> => ({
    siteName: config.siteName,
    peerId: node?.peerId ?? '',
    multiaddrs: node?.multiaddrs() ?? [],
    rootFingerprint: core.identity.rootFingerprint,
    bundles: await core.catalog.list(),
    devices: await core.devices.list(),
  })

  const appliance: Appliance = {
    core,
    bytesServed: () => new Map(served),
    async start() {
      try {
        node = await startApplianceNetwork({
          privateKey: core.identity.libp2pKey,
          listen: options.overrides?.p2pListen ?? config.p2p.listen,
          isMember: (peer) => core.devices.isMember(peer),
          chunks: core.chunks,
          control: createControlHandler({
            assignments: core.assignments,
            catalog: core.catalog,
            devices: core.devices,
            clock,
            log: log.child({ component: 'appliance:control' }),
          }),
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
          node: () => ({ peerId: node?.peerId ?? '', multiaddrs: node?.multiaddrs() ?? [] }),
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
          peerId: node.peerId,
          multiaddrs: node.multiaddrs(),
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
      await node?.stop()
      node = undefined
      await core.close()
    },
  }
  return appliance
}
