import { existsSync } from 'node:fs'
import type { Command } from 'commander'
import { collect, parseIntOption, untilSignal } from '../../shared/cli/program.ts'
import { createProgress } from '../../shared/cli/progress.ts'
import type { AdminClient } from '../admin-client.ts'
import type { RunInfo } from '../appliance.ts'
import type { ApplianceConfig } from '../config.ts'
import { applianceLayout, defaultApplianceDataDir } from '../data-dir.ts'
import type { IngestRequest } from '../ingest.ts'
import { registerCertCommands } from './cert-commands.ts'
import { registerUpstreamCommands } from './upstream-commands.ts'

// Heavy modules (libp2p, fastify, level, forge) load inside the actions, so `--help` and
// commands that only talk to a running appliance start fast.
async function admin(dataDir: string): Promise<AdminClient> {
  const [{ openAdminClient }, { systemClock }, { createLogger }] = await Promise.all([
    import('../admin-client.ts'),
    import('../../shared/clock.ts'),
    import('../../shared/log.ts'),
  ])
  return openAdminClient(dataDir, { clock: systemClock, log: createLogger('cli', { level: 'warn' }) })
}

const out = (line = ''): void => {
  process.stdout.write(`${line}\n`)
}

interface CommonOpts {
  data: string
}

function configOverrides(o: {
  site?: string
  httpHost?: string
  httpPort?: number
  httpsHost?: string
  httpsPort?: number
  p2pListen?: string[]
  chunkSize?: number
}) {
  const c: Partial<ApplianceConfig> = {}
  if (o.site) c.siteName = o.site
  if (o.httpHost || o.httpPort !== undefined || o.httpsHost || o.httpsPort !== undefined) {
    c.http = {
      host: o.httpHost ?? '127.0.0.1',
      port: o.httpPort ?? 8080,
      httpsHost: o.httpsHost ?? '0.0.0.0',
      httpsPort: o.httpsPort ?? 8443,
    }
  }
  if (o.p2pListen?.length) c.p2p = { listen: o.p2pListen }
  if (o.chunkSize) c.chunkSize = o.chunkSize
  return c
}

/** `patchswarm appliance …` */
export function registerApplianceCommands(program: Command): void {
  const appliance = program
    .command('appliance')
    .description('the on-site appliance: content store, signing, seeding, API')
  const dataOption = ['--data <dir>', 'appliance data directory', defaultApplianceDataDir()] as const

  appliance
    .command('init')
    .description('create the data directory, keys and the site root CA (idempotent)')
    .option(...dataOption)
    .option('--site <name>', 'site name shown in the UI and certificates')
    .option('--http-host <host>', 'plain-HTTP listen address, loopback only (default 127.0.0.1)')
    .option('--http-port <port>', 'plain-HTTP port (default 8080)', parseIntOption('--http-port'))
    .option('--https-host <host>', 'HTTPS listen address (default 0.0.0.0)')
    .option('--https-port <port>', 'HTTPS port (default 8443)', parseIntOption('--https-port'))
    .option('--p2p-listen <multiaddr>', 'libp2p listen address, repeatable (default /ip4/0.0.0.0/tcp/7070)', collect)
    .option(
      '--chunk-size <bytes>',
      'chunk size for new bundles (power of two, 64 KiB–16 MiB)',
      parseIntOption('--chunk-size'),
    )
    .action(async (o: CommonOpts & Parameters<typeof configOverrides>[0]) => {
      const { initApplianceDataDir } = await import('../core.ts')
      const { systemClock } = await import('../../shared/clock.ts')
      // Before anything is created: plain HTTP is loopback-only.
      if (o.httpHost) (await import('../config.ts')).assertLoopbackHttpHost(o.httpHost, '--http-host')
      const r = await initApplianceDataDir(o.data, { clock: systemClock, config: configOverrides(o) })
      if (r.created) out(`initialised appliance data directory ${r.layout.root}`)
      else {
        out(`${r.layout.root} is already initialised; nothing changed`)
        if (Object.keys(configOverrides(o)).length > 0) {
          process.stderr.write(`options were not applied: edit ${r.layout.config} and restart the appliance\n`)
        }
      }
    })

  appliance
    .command('start')
    .description('run the appliance (initialises the data directory on first run)')
    .option(...dataOption)
    .option('--http-host <host>', 'plain-HTTP listen address for this run (loopback only)')
    .option('--http-port <port>', 'plain-HTTP port for this run (0 = any free port)', parseIntOption('--http-port'))
    .option('--https-host <host>', 'HTTPS listen address for this run')
    .option('--https-port <port>', 'HTTPS port for this run (0 = any free port)', parseIntOption('--https-port'))
    .option('--p2p-listen <multiaddr>', 'libp2p listen address for this run, repeatable', collect)
    .option(
      '--max-upload-rate <bytes/s>',
      'cap the chunk upload rate to agents for this run (0 = unlimited)',
      parseIntOption('--max-upload-rate'),
    )
    .action(
      async (
        o: CommonOpts & {
          httpHost?: string
          httpPort?: number
          httpsHost?: string
          httpsPort?: number
          p2pListen?: string[]
          maxUploadRate?: number
        },
      ) => {
        const [{ createLogger }, { systemClock }, { initApplianceDataDir }, { createAppliance }] = await Promise.all([
          import('../../shared/log.ts'),
          import('../../shared/clock.ts'),
          import('../core.ts'),
          import('../appliance.ts'),
        ])
        const log = createLogger('appliance')
        if (!existsSync(applianceLayout(o.data).config)) {
          await initApplianceDataDir(o.data, { clock: systemClock })
          out(`initialised a new appliance in ${applianceLayout(o.data).root}`)
        }
        const app = await createAppliance({
          dataDir: o.data,
          clock: systemClock,
          log,
          overrides: {
            httpHost: o.httpHost,
            httpPort: o.httpPort,
            httpsHost: o.httpsHost,
            httpsPort: o.httpsPort,
            p2pListen: o.p2pListen,
            uploadBytesPerSecond: o.maxUploadRate,
          },
        })
        const info = await app.start()
        out(`patchswarm appliance running (pid ${info.pid})`)
        out(`  web UI        ${info.httpsUrl}/`)
        for (const url of info.webUrls) out(`                ${url}/`)
        out(`  web CA SHA256 ${info.webCaFingerprint256 ?? '(imported certificate; CA not known)'}`)
        out(`  local HTTP    ${info.httpUrl}/  (this machine only)`)
        out(`  API           ${info.httpUrl}/api/v1/health`)
        out(`  PeerId        ${info.peerId}`)
        out(`  root SHA-256  ${app.core.identity.rootFingerprint}`)
        out('next steps (in another terminal):')
        out(`  patchswarm appliance token --data ${o.data}`)
        out(
          `  patchswarm agent enroll --appliance ${info.httpUrl} --token TOKEN --data ./data/agent1 --install-root ./data/agent1-root`,
        )
        out(
          `  patchswarm appliance ingest FILE_OR_DIR --name NAME --version 1.0 --target-root /opt/NAME --data ${o.data}`,
        )
        out(`  patchswarm appliance assign NAME@1.0 --all --data ${o.data}`)
        // SIGHUP: pick up a certificate changed by `cert renew` / `cert import` without a restart.
        const onHup = () => {
          app.reloadWebCertificate().catch((err: unknown) => log.error({ err }, 'web certificate reload failed'))
        }
        process.on('SIGHUP', onHup)
        const sig = await untilSignal()
        process.off('SIGHUP', onHup)
        log.info({ signal: sig }, 'stopping')
        await app.stop()
      },
    )

  appliance
    .command('token')
    .description('create a one-time enrollment token for an agent')
    .option(...dataOption)
    .option('--ttl-hours <n>', 'hours until the token expires (default from config: 24)', parseIntOption('--ttl-hours'))
    .option('--label <text>', 'note stored with the token')
    .option('--json', 'print JSON')
    .action(async (o: CommonOpts & { ttlHours?: number; label?: string; json?: boolean }) => {
      const client = await admin(o.data)
      try {
        const t = await client.createToken({ ttlHours: o.ttlHours, label: o.label })
        const s = await client.status()
        // Agents on other machines use HTTPS (plain HTTP is loopback-only) and trust the web CA.
        const run = await readRunInfo(o.data)
        const webCaFingerprint256 = run?.webCaFingerprint256 ?? null
        if (o.json)
          return out(
            JSON.stringify({
              ...t,
              rootFingerprint: s.rootFingerprint,
              webCaFingerprint256,
              httpsUrl: run?.httpsUrl ?? null,
              webUrls: run?.webUrls ?? [],
            }),
          )
        out(t.token)
        const url = run?.webUrls?.[0] ?? run?.httpsUrl ?? s.httpUrl
        process.stderr.write(
          `single use, expires ${t.expiresAt}\nroot certificate SHA-256: ${s.rootFingerprint}\n` +
            (url.startsWith('https:')
              ? `trust the web CA first (${url}/ca.crt, SHA-256 ${run?.webCaFingerprint256 ?? 'see cert show'}): NODE_EXTRA_CA_CERTS=/path/to/ca.crt\n`
              : '') +
            `enroll with: patchswarm agent enroll --appliance ${url} --token ${t.token} --root-fingerprint ${s.rootFingerprint}${url.startsWith('https:') && webCaFingerprint256 ? ` --web-ca-fingerprint ${webCaFingerprint256}` : ''} --data DIR\n`,
        )
      } finally {
        await client.close()
      }
    })

  appliance
    .command('ingest')
    .description('turn a local file or directory into a signed bundle')
    .argument('<path>', 'file or directory to ingest')
    .option(...dataOption)
    .requiredOption('--name <name>', 'bundle name, e.g. openssl-fix')
    .requiredOption('--version <version>', 'bundle version, e.g. 3.0.13-1')
    .requiredOption('--target-root <dir>', 'absolute directory the files installer extracts into on the endpoint')
    .option('--vendor <vendor>', 'vendor (default: local)')
    .option('--product <product>', 'product (default: the name)')
    .option('--classification <c>', 'security|critical|bugfix|feature|definition|driver|tool|other')
    .option('--severity <s>', 'critical|high|medium|low|none')
    .option('--cve <id>', 'CVE id, repeatable', collect)
    .option('--supersedes <name>', 'bundle name this replaces, repeatable', collect)
    .option('--requires <name>', 'bundle name required first, repeatable', collect)
    .option('--os <os>', 'linux|windows|darwin|any (default any)')
    .option('--arch <arch>', 'x64|arm64|any (default any)')
    .option('--description <text>', 'free text')
    .option('--max-run-seconds <n>', 'the installer finishes within this time', parseIntOption('--max-run-seconds'))
    .option('--chunk-size <bytes>', 'chunk size for this bundle', parseIntOption('--chunk-size'))
    .option(
      '--health <json|@file>',
      'health check run after each install (JSON, or @ and a file holding it); a device whose check fails rolls back by itself',
    )
    .option('--json', 'print the result as JSON')
    .action(async (path: string, o: CommonOpts & Record<string, unknown>) => {
      const req = {
        source: (await import('node:path')).resolve(path),
        name: o.name,
        version: o.version,
        targetRoot: o.targetRoot,
        vendor: o.vendor,
        product: o.product,
        classification: o.classification,
        severity: o.severity,
        cves: o.cve,
        supersedes: o.supersedes,
        requires: o.requires,
        os: o.os,
        arch: o.arch,
        description: o.description,
        maxRunSeconds: o.maxRunSeconds,
        chunkSize: o.chunkSize,
        health: typeof o.health === 'string' ? await readHealthOption(o.health) : undefined,
      }
      const clean = Object.fromEntries(Object.entries(req).filter(([, v]) => v !== undefined)) as IngestRequest
      const client = await admin(o.data)
      const progress = createProgress('ingest')
      try {
        const r = await client.ingest(clean, (phase, done, total) => progress.update(done, total, phase))
        progress.stop()
        if (o.json) return out(JSON.stringify(r))
        out(`bundle ${r.record.name}@${r.record.version}`)
        out(`  id        ${r.record.bundleId}`)
        out(
          `  size      ${r.record.size} bytes in ${r.record.chunks} chunks of ${r.record.chunkSize} (${r.newChunks} new)`,
        )
        out(`  manifest  version ${r.record.manifestVersion}, signed`)
      } finally {
        progress.stop()
        await client.close()
      }
    })

  appliance
    .command('assign')
    .description('assign a bundle to devices (a signed assignment per device)')
    .argument('<bundle>', 'bundle id, id prefix, or name@version')
    .option(...dataOption)
    .option('--device <peerId|hostname>', 'target device, repeatable', collect)
    .option('--all', 'every enrolled device')
    .option('--json', 'print JSON')
    .action(async (bundle: string, o: CommonOpts & { device?: string[]; all?: boolean; json?: boolean }) => {
      if (!o.all && !o.device?.length)
        throw new (await import('../../shared/errors.ts')).ValidationError(
          'PSW_ERR_USAGE',
          'give --device (repeatable) or --all',
        )
      const client = await admin(o.data)
      try {
        const r = await client.assign(bundle, o.all ? 'all' : o.device!)
        if (o.json) return out(JSON.stringify(r))
        out(`assigned ${r.bundleId.slice(0, 16)} to ${r.devices.length} device(s)`)
        for (const d of r.devices) out(`  ${d.hostname}  ${d.peerId}  assignment v${d.version}`)
      } finally {
        await client.close()
      }
    })

  registerUpstreamCommands(appliance, admin, dataOption)
  registerCertCommands(appliance, dataOption)

  appliance
    .command('status')
    .description('bundles, devices and their install state')
    .option(...dataOption)
    .option('--json', 'print JSON')
    .action(async (o: CommonOpts & { json?: boolean }) => {
      const client = await admin(o.data)
      try {
        const s = await client.status()
        if (o.json) return out(JSON.stringify(s))
        out(`bundles (${s.bundles.length}):`)
        for (const b of s.bundles)
          out(`  ${b.name}@${b.version}  ${b.bundleId.slice(0, 16)}  ${b.size} bytes  manifest v${b.manifestVersion}`)
        for (const w of s.swarm ?? []) {
          // Proof that P2P happened: what agents got from each other vs from the appliance.
          let fromPeers = 0
          let fromAppliance = 0
          let servedByAgents = 0
          for (const d of s.devices)
            for (const b of d.report?.bundles ?? [])
              if (b.bundleId === w.bundleId) {
                fromPeers += b.transfer.bytesFromPeers
                fromAppliance += b.transfer.bytesFromAppliance
                servedByAgents += b.transfer.bytesServed
              }
          const total = fromPeers + fromAppliance
          out(
            `swarm ${w.bundleId.slice(0, 16)}: ${w.members} agents (${w.complete} complete); appliance uploaded ${w.applianceBytesServed} B; agents received ${fromPeers} B from peers${total > 0 ? ` (${((100 * fromPeers) / total).toFixed(1)}%)` : ''}, ${fromAppliance} B from the appliance, served ${servedByAgents} B`,
          )
        }
        out(`devices (${s.devices.length}):`)
        for (const d of s.devices) {
          out(`  ${d.hostname}  ${d.peerId}  last seen ${d.lastSeen ?? 'never'}`)
          for (const b of d.report?.bundles ?? []) {
            const t = b.transfer
            out(
              `    ${b.bundleId.slice(0, 16)}  ${b.state}${b.error ? ` ${b.error.code}` : ''}  ${b.chunksHave}/${b.chunksTotal} chunks  from appliance ${t.bytesFromAppliance} B, from peers ${t.bytesFromPeers} B, served ${t.bytesServed} B`,
            )
          }
          if (d.report?.refused) out(`    refused metadata: ${d.report.refused.code} ${d.report.refused.message}`)
        }
      } finally {
        await client.close()
      }
    })
}

/** The running appliance's `run.json`, if any. */
async function readRunInfo(dataDir: string): Promise<Partial<RunInfo> | undefined> {
  try {
    const { readFile } = await import('node:fs/promises')
    return JSON.parse(await readFile(applianceLayout(dataDir).runInfo, 'utf8')) as Partial<RunInfo>
  } catch {
    return undefined
  }
}

/** `--health`: a health spec as JSON, or `@path` of a file holding it (the appliance validates it). */
async function readHealthOption(value: string): Promise<unknown> {
  const { ValidationError } = await import('../../shared/errors.ts')
  const text = value.startsWith('@')
    ? await (await import('node:fs/promises')).readFile(value.slice(1), 'utf8').catch((err: Error) => {
        throw new ValidationError('PSW_ERR_USAGE', `--health: cannot read ${value.slice(1)}: ${err.message}`)
      })
    : value
  if (text.length > 64 << 10) throw new ValidationError('PSW_ERR_USAGE', '--health: more than 64 KiB')
  try {
    return JSON.parse(text) as unknown
  } catch (err) {
    throw new ValidationError('PSW_ERR_USAGE', `--health is not JSON: ${(err as Error).message}`)
  }
}
