import { type Command, InvalidArgumentError } from 'commander'
import { collect, parseIntOption, untilSignal } from '../../shared/cli/program.ts'

const out = (line = ''): void => {
  process.stdout.write(`${line}\n`)
}

function parsePollSeconds(value: string): number {
  const n = Number(value)
  if (!Number.isFinite(n) || n < 0.05 || n > 86_400) {
    throw new InvalidArgumentError('--poll-seconds must be a number between 0.05 and 86400')
  }
  return n
}

/** `--reboot-command 'systemctl reboot'`: split at spaces into an argv (run without a shell). */
function parseRebootCommand(value: string): string[] {
  const argv = value.split(' ').filter((a) => a !== '')
  if (argv.length === 0 || argv.length > 32 || argv.some((a) => a.length > 1024)) {
    throw new InvalidArgumentError('--reboot-command must name a program and at most 31 arguments')
  }
  return argv
}

const REBOOT_HELP =
  "command that reboots this device, split at spaces, run without a shell (e.g. 'systemctl reboot'); " +
  'the agent runs it inside a maintenance window that allows reboots when an install needs one'

/** `patchswarm agent …` */
export function registerAgentCommands(program: Command): void {
  const agent = program.command('agent').description('the endpoint agent: enrollment, download, install, report')

  agent
    .command('enroll')
    .description('enroll this endpoint with an appliance using a one-time token')
    .requiredOption(
      '--appliance <url>',
      'appliance URL, e.g. https://192.168.1.10:8443 (http only on the appliance itself)',
    )
    .requiredOption('--token <token>', 'one-time token from `patchswarm appliance token`')
    .requiredOption('--data <dir>', 'agent data directory')
    .option('--hostname <name>', 'name shown on the appliance (default: this host name)')
    .option('--install-root <dir>', "directory that stands for '/' when installing (default /)")
    .option('--root-fingerprint <sha256>', "refuse unless the appliance's root has this SHA-256")
    .option(
      '--web-ca-fingerprint <sha256>',
      "https: trust exactly the appliance's web CA with this SHA-256 (default: the system's CAs)",
    )
    .option('--listen <multiaddr>', 'libp2p listen address, repeatable (default /ip4/0.0.0.0/tcp/0)', collect)
    .option('--no-mdns', 'do not look for peers with mDNS (the tracker still lists them)')
    .option('--reboot-command <command>', `${REBOOT_HELP} (default: never reboot, only report)`, parseRebootCommand)
    .option('--json', 'print JSON')
    .action(
      async (o: {
        appliance: string
        token: string
        data: string
        hostname?: string
        installRoot?: string
        rootFingerprint?: string
        webCaFingerprint?: string
        listen?: string[]
        mdns?: boolean
        rebootCommand?: string[]
        json?: boolean
      }) => {
        const { resolve } = await import('node:path')
        const { enrollAgent } = await import('../enroll.ts')
        const config = await enrollAgent({
          applianceUrl: o.appliance,
          token: o.token,
          dataDir: o.data,
          hostname: o.hostname,
          installRoot: o.installRoot ? resolve(o.installRoot) : undefined,
          rootFingerprint: o.rootFingerprint,
          webCaFingerprint: o.webCaFingerprint,
          listen: o.listen,
          mdns: o.mdns !== false,
          rebootCommand: o.rebootCommand,
        })
        if (o.json) return out(JSON.stringify({ peerId: config.peerId, appliancePeerId: config.appliancePeerId }))
        out(`enrolled as ${config.peerId}`)
        out(`  appliance  ${config.appliancePeerId}`)
        out(`next: patchswarm agent start --data ${o.data}`)
      },
    )

  agent
    .command('start')
    .description('run the agent: fetch signed assignments, download, verify, install, report')
    .requiredOption('--data <dir>', 'agent data directory')
    .option(
      '--poll-seconds <n>',
      'seconds between assignment checks, 0.05-86400 (default from config: 30)',
      parsePollSeconds,
    )
    .option('--once', 'run one cycle and exit')
    .option(
      '--max-download-rate <bytes/s>',
      'cap the download rate for this run (0 = unlimited)',
      parseIntOption('--max-download-rate'),
    )
    .option(
      '--max-upload-rate <bytes/s>',
      'cap the rate of serving chunks to other agents for this run (0 = unlimited)',
      parseIntOption('--max-upload-rate'),
    )
    .option('--no-mdns', 'do not look for peers with mDNS on the LAN (the tracker still lists them)')
    .option('--download-only', 'download and seed assigned bundles, but do not install them')
    .option('--reboot-command <command>', `${REBOOT_HELP} (default from config: none)`, parseRebootCommand)
    .action(
      async (o: {
        data: string
        pollSeconds?: number
        once?: boolean
        maxDownloadRate?: number
        maxUploadRate?: number
        mdns?: boolean
        downloadOnly?: boolean
        rebootCommand?: string[]
      }) => {
        const [{ createLogger }, { systemClock }, { createAgent }] = await Promise.all([
          import('../../shared/log.ts'),
          import('../../shared/clock.ts'),
          import('../agent.ts'),
        ])
        const log = createLogger('agent')
        const a = await createAgent({
          dataDir: o.data,
          clock: systemClock,
          log,
          pollSeconds: o.pollSeconds,
          once: o.once,
          downloadBytesPerSecond: o.maxDownloadRate,
          uploadBytesPerSecond: o.maxUploadRate,
          downloadOnly: o.downloadOnly,
          rebootCommand: o.rebootCommand,
          ...(o.mdns === false ? { mdns: false } : {}),
        })
        await a.start()
        if (o.once) {
          try {
            await a.syncOnce()
          } finally {
            await a.stop()
          }
          return
        }
        out(`patchswarm agent ${a.config.peerId} running; Ctrl-C stops it`)
        const sig = await untilSignal()
        log.info({ signal: sig }, 'stopping')
        await a.stop()
      },
    )
}
