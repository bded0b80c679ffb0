/**
 * Generates docs/cli.md from the real `--help` text of every patchswarm command.
 *
 *   npm run docs:cli        (node bin/run-ts.js test/tools/gen-cli-doc.ts)
 *
 * The commander program is built in-process exactly as bin/patchswarm.ts builds it, then walked
 * recursively; each command's `helpInformation()` is rendered with a fixed width and without
 * colours, and defaults that depend on the working directory are shown relative to it, so the
 * output is the same on every machine. test/docs-sync.test.ts compares it with docs/cli.md.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { dirname, join, resolve, sep } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import type { Command } from 'commander'
import { registerAgentCommands } from '../../agent/cli/commands.ts'
import { registerApplianceCommands } from '../../appliance/cli/commands.ts'
import { createProgram } from '../../shared/cli/program.ts'

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
export const CLI_DOC = join(REPO, 'docs', 'cli.md')
export const HELP_WIDTH = 100

/** Environment variables that change defaults shown in the help text; unset while generating. */
const ENV_DEFAULTS = ['PATCHSWARM_APPLIANCE_DATA']

/** Builds the program as the CLI does, with a fixed help width and no colours. */
export function buildProgram(): Command {
  const version = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version
  const saved = ENV_DEFAULTS.map((name) => [name, process.env[name]] as const)
  for (const [name] of saved) delete process.env[name]
  try {
    const program = createProgram(version)
    registerApplianceCommands(program)
    registerAgentCommands(program)
    return program
  } finally {
    for (const [name, value] of saved) if (value !== undefined) process.env[name] = value
  }
}

/** Every command, parents before children, in registration order. */
export function walkCommands(root: Command): Command[] {
  return [root, ...root.commands.flatMap((c) => walkCommands(c))]
}

/** `patchswarm appliance init` for the `init` command. */
export function commandPath(cmd: Command): string {
  const names: string[] = []
  for (let c: Command | null = cmd; c; c = c.parent) names.unshift(c.name())
  return names.join(' ')
}

/** Absolute defaults under the working directory (`/home/x/repo/data/appliance`) → `./data/appliance`. */
function relativeDefaults(cmd: Command, cwd: string): void {
  const prefix = cwd.endsWith(sep) ? cwd : `${cwd}${sep}`
  for (const option of cmd.options) {
    const value: unknown = option.defaultValue
    if (typeof value === 'string' && (value === cwd || value.startsWith(prefix))) {
      option.defaultValue = `./${value.slice(prefix.length).split(sep).join('/')}`.replace(/\/$/, '')
    }
  }
}

/** The help text of one command as `patchswarm … --help` prints it, made machine-independent. */
export function helpText(cmd: Command, cwd = process.cwd()): string {
  relativeDefaults(cmd, cwd)
  cmd.configureHelp({ helpWidth: HELP_WIDTH })
  cmd.configureOutput({ getOutHelpWidth: () => HELP_WIDTH, getOutHasColors: () => false })
  return cmd.helpInformation().replace(/[ \t]+$/gm, '')
}

/** Hand-written introductions, keyed by command path. */
const INTROS: Record<string, string[]> = {
  patchswarm: [
    'One program, two roles: `patchswarm appliance …` runs on the branch-office appliance,',
    '`patchswarm agent …` on each endpoint. Options after a subcommand belong to that subcommand',
    '(`ingest --version 1.0` is the bundle version, not the program version).',
  ],
  'patchswarm appliance': [
    'The on-site appliance: one data directory (`--data`, default `./data/appliance` under the',
    'working directory, or `$PATCHSWARM_APPLIANCE_DATA`) holds its configuration, keys, root CA,',
    'LevelDB state and chunk store. `init` creates it; `start` runs the appliance in the foreground',
    '(it initialises the directory on first run).',
    '',
    '`token`, `ingest`, `assign` and `status` work whether or not the appliance is running: when a',
    'live appliance process has published `run.json` in the data directory they call its admin HTTP',
    'API with the bearer token from `admin.token`; otherwise they open the data directory directly',
    '(LevelDB allows one process at a time).',
  ],
  'patchswarm agent': [
    'The endpoint agent. `enroll` creates the agent identity (a libp2p Ed25519 key), exchanges a',
    'one-time token for a certificate and pins the site root; `start` then polls the appliance for',
    'its signed assignment, downloads and verifies every chunk, installs with the files installer',
    '(rolled back on failure) and reports. `--data` is required: there is no default agent',
    'directory.',
  ],
  'patchswarm appliance init': [
    'Creates `appliance.json`, `admin.token` (mode 0600), `keys/` (root CA key, signing key,',
    'libp2p key; mode 0600), `certs/root.pem`, `certs/appliance.pem` and the LevelDB database.',
    'On a directory that is already initialised it changes nothing and ignores the other options;',
    'edit `appliance.json` to change the stored configuration.',
  ],
  'patchswarm appliance start': [
    'Runs in the foreground until SIGINT or SIGTERM. Serves HTTPS (default `0.0.0.0:8443`, HTTP/2',
    'and HTTP/1.1) and plain HTTP on loopback only (default `127.0.0.1:8080`); the first start',
    'creates the web CA and server certificate in `<data>/web/` (see `cert`). Prints the web UI',
    "URLs, the web CA's SHA-256 fingerprint, the local HTTP URL, the PeerId and the root",
    'certificate fingerprint, and writes `run.json` (pid, `httpUrl`, `httpsUrl`, `webUrls`,',
    '`webCaFingerprint256`, PeerId, multiaddrs) into the data directory for the other commands; a',
    'clean stop removes it. SIGHUP reloads the web certificate (what `cert renew` and `cert import`',
    'send). The `--http-*`, `--https-*` and `--p2p-listen` options apply to this run only and are',
    'not stored; `--http-host` must be a loopback address.',
  ],
  'patchswarm appliance cert': [
    'The certificate of the HTTPS listener, in `<data>/web/`: `ca.pem`/`ca.key` (the web CA,',
    'ECDSA P-256, 10 years) and `server.pem`/`server.key` (397 days). Every start re-issues the',
    'server certificate from the same CA when it has less than 30 days left or lacks the current',
    'host name or an address. These commands work on a stopped appliance; on a running one they',
    'also make it serve the result at once (SIGHUP). See [operations.md](operations.md#certificates-and-https).',
  ],
  'patchswarm appliance cert show': [
    'Paths, SHA-256 fingerprints (colon hex, as browsers show them), names and expiry of the',
    'server certificate and the CA that issued it. Changes nothing.',
  ],
  'patchswarm appliance cert renew': [
    'Issues a new server certificate (new key, current names) from the web CA now. Refused for an',
    'imported certificate unless `--own-ca`, which goes back to the web CA.',
  ],
  'patchswarm appliance cert import': [
    "Installs the organisation's own certificate: PEM, server certificate first, optionally",
    'followed by its intermediates (and root); the key unencrypted PEM. Refused unless the key',
    'belongs to the certificate (`PSW_ERR_KEY_INVALID`, also for Ed25519: browsers do not accept',
    'it), it is valid now (`PSW_ERR_CERT_EXPIRED`), it may be used by a TLS server — not a CA,',
    'extendedKeyUsage serverAuth if present (`PSW_ERR_CERT_USAGE`) — and each chain certificate',
    'signs the one before (`PSW_ERR_CERT_CHAIN`). An imported certificate is never replaced',
    'automatically; the appliance warns in its log from 30 days before it expires.',
  ],
  'patchswarm appliance token': [
    'Prints the token on stdout and the expiry, the root certificate SHA-256 and an example',
    '`agent enroll` command on stderr. Only the SHA-256 of the token is stored; a token works once.',
  ],
  'patchswarm appliance ingest': [
    'Packs the source into a deterministic tar (`bundle.json`, then `payload/…`), splits it into',
    'chunks (chunk size from `--chunk-size` or the configuration, else picked from the size:',
    '256 KiB up to 256 MiB, 1 MiB for 1 GiB, at most 4 MiB), stores the',
    'chunks it does not have yet, then signs the manifest. Progress goes to stderr. Ingesting the',
    'same content under the same name and version again gives the same bundle id and a new',
    'manifest version; assignments made before still name the old manifest version (see',
    '`assign`).',
  ],
  'patchswarm appliance assign': [
    'For every target device, signs a new assignment with the next metadata version that lists',
    "the bundles already assigned to it plus this one (pinned to the bundle's current manifest",
    'version); all assignments are written in one durable batch. Devices are named by PeerId or',
    'hostname; `--all` means every enrolled device.',
  ],
  'patchswarm appliance status': [
    'Lists bundles and enrolled devices with the last report of each device: per bundle its state,',
    'chunks held and bytes received from the appliance and from peers, plus any signed metadata the',
    'agent refused.',
  ],
  'patchswarm appliance upstream status': [
    'Feeds with their last sync and its error, artifacts per state, downloads in progress (bytes,',
    'rate, attempt, last error), cache use against the quota and the WAN rate cap in force now.',
  ],
  'patchswarm appliance upstream list': [
    'Every artifact a feed ever listed, newest first: `<feedId>/<key>`, name@version,',
    'severity/classification, size and state (available, queued, downloading, ingesting, ready,',
    'failed, quarantined, evicted), with the error code of a failure.',
  ],
  'patchswarm appliance upstream sync': [
    'Lists every feed (or `--feed`) now and records what it offers; a feed that cannot be trusted',
    'as a whole (bad signature, expired, malformed) is reported and nothing from it is used. Exit',
    'status 1 when a feed failed.',
  ],
  'patchswarm appliance upstream fetch': [
    'Queues the artifact durably, then downloads it once over the WAN (resumable, rate-capped,',
    'verified by size and SHA-256) and ingests it as a signed bundle whose content is exactly the',
    "vendor's bytes; shows progress until it is ready. With no appliance running on the data",
    'directory the CLI does the work itself. Exit status 1 when it failed or was quarantined.',
  ],
  'patchswarm agent enroll': [
    'Creates `keys/libp2p.key`, sends the token and a CSR signed with that key to',
    '`POST /api/v1/enroll`, checks the returned certificates with node:crypto, then writes',
    '`certs/agent.pem`, `certs/root.pem` (the pinned root) and `agent.json`. Refuses a data',
    'directory that already holds an enrolled agent.',
  ],
  'patchswarm agent start': [
    'First rolls back any install that was interrupted (journal recovery), then runs cycles:',
    'fetch and verify the signed assignment, fetch and verify each manifest, download and verify',
    'the chunks, install, report. SIGINT or SIGTERM aborts a running download (an install in',
    'progress is finished first) and stops the agent.',
  ],
}

/** `Required: --name, --version.` from the command's mandatory options (commander does not mark them). */
function requiredLine(cmd: Command): string[] {
  const required = cmd.options.filter((o) => o.mandatory).map((o) => `\`${o.long ?? o.flags}\``)
  return required.length === 0 ? [] : [`Required options: ${required.join(', ')}.`, '']
}

const SESSION = [
  '## Typical session',
  '',
  'On the appliance (first terminal):',
  '',
  '```sh',
  'patchswarm appliance init --site branch-42     # ./data/appliance: config, keys, root CA, database',
  'patchswarm appliance start                     # HTTPS :8443, HTTP 127.0.0.1:8080, libp2p :7070',
  '```',
  '',
  'On the appliance (second terminal), create a one-time enrollment token:',
  '',
  '```sh',
  'patchswarm appliance token --label pc-1',
  '# stdout: pst_…   stderr: expiry, root certificate SHA-256 and a ready-made enroll command',
  '```',
  '',
  'On the endpoint, enroll once, then run the agent:',
  '',
  '```sh',
  'export NODE_EXTRA_CA_CERTS=/etc/patchswarm/web-ca.crt   # the web CA, from https://APPLIANCE:8443/ca.crt',
  'patchswarm agent enroll --appliance https://APPLIANCE:8443 --token pst_… \\',
  '  --root-fingerprint SHA256_FROM_TOKEN_OUTPUT --data /var/lib/patchswarm',
  'patchswarm agent start --data /var/lib/patchswarm',
  '```',
  '',
  'Back on the appliance, turn a file or directory into a signed bundle and assign it:',
  '',
  '```sh',
  'patchswarm appliance ingest ./openssl-fix --name openssl-fix --version 3.0.13-1 \\',
  '  --target-root /opt/openssl-fix --severity high --cve CVE-2024-12345',
  'patchswarm appliance assign openssl-fix@3.0.13-1 --all',
  'patchswarm appliance status',
  '```',
  '',
  'Notes:',
  '',
  '- Plain HTTP listens on loopback only; other hosts use HTTPS (port 8443). The agent trusts the',
  "  appliance's web CA through `NODE_EXTRA_CA_CERTS` (check its SHA-256 against what `appliance",
  '  start` printed). Pass `--root-fingerprint` to `agent enroll` all the same: the agent pins the',
  '  site root, not the web CA.',
  '- `--install-root` (default `/`) is the directory that stands for `/` on the endpoint: the',
  "  manifest's `--target-root` is placed under it. For a trial run use a scratch directory.",
  '- `patchswarm agent start --once` runs one cycle (fetch assignment, download, install, report)',
  '  and exits; without `--once` the agent polls every `pollSeconds` (30 s by default).',
  '- Logs are JSON lines (pino) on stderr; `PATCHSWARM_LOG_LEVEL` sets the level (default `info`).',
  '  Command output goes to stdout; `--json` prints machine-readable output where offered.',
  '',
  '## Exit codes and errors',
  '',
  '| exit code | meaning |',
  '|---|---|',
  '| 0 | success (also `--help` and `--version`) |',
  '| 1 | the command failed; stderr shows `error PSW_ERR_…: message` ([error codes](errors.md)) |',
  '| 2 | the command line is wrong (unknown option, missing argument, invalid number) |',
  '',
]

/** The full text of docs/cli.md. */
export function renderCliDoc(cwd = process.cwd()): string {
  const program = buildProgram()
  const commands = walkCommands(program)
  const out: string[] = [
    '# Command line',
    '',
    '<!-- Generated by test/tools/gen-cli-doc.ts from the real --help output: run `npm run docs:cli`. -->',
    '<!-- Do not edit by hand; test/docs-sync.test.ts fails when this file is out of date. -->',
    '',
    ...INTROS['patchswarm']!,
    '',
    'Commands:',
    '',
    ...commands.slice(1).map((c) => {
      const path = commandPath(c)
      return `${'  '.repeat(path.split(' ').length - 2)}- [\`${path}\`](#${anchor(path)}): ${c.description()}`
    }),
    '',
    ...SESSION,
  ]
  for (const cmd of commands) {
    const path = commandPath(cmd)
    const depth = path.split(' ').length
    out.push(`${depth <= 2 ? '##' : '###'} ${path}`, '')
    const intro = cmd === program ? undefined : INTROS[path]
    if (intro) out.push(...intro, '')
    out.push(...requiredLine(cmd))
    out.push('```text', `$ ${path} --help`, helpText(cmd, cwd).trimEnd(), '```', '')
  }
  return out.join('\n')
}

/** GitHub's heading anchor for `## patchswarm appliance init`. */
function anchor(heading: string): string {
  return heading.toLowerCase().replaceAll(' ', '-')
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  writeFileSync(CLI_DOC, renderCliDoc())
  process.stderr.write(`wrote ${CLI_DOC}\n`)
}
