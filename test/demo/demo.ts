/**
 * npm run demo -- [--agents N] [--dir DIR] [--keep]
 *
 * The whole story on one machine, on loopback: an appliance with a local demo feed (a folder
 * of sample vendor patches in the feed format, one of them an emergency fetched at once), 10
 * agents enrolled into groups (pilot, desktops, servers — servers with a nightly maintenance
 * window), and the URL of the web UI with its one-time setup link. Everything lives in a temp
 * directory, removed at Ctrl-C unless --keep. Progress goes to stderr; the URL to stdout.
 */
import { createHash, randomBytes } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { parseArgs } from 'node:util'
import tar from 'tar-stream'
import { readApplianceConfig, writeApplianceConfig } from '../../appliance/config.ts'
import { defaultUpstreamConfig } from '../../appliance/upstream/upstream-config.ts'
import { FEED_FORMAT, FEED_FORMAT_VERSION } from '../../appliance/upstream/vendor-feed-schema.ts'
import { CliProcess, enroll, type RunningAppliance, runCli, startAppliance } from '../e2e/harness.ts'

const { values } = parseArgs({
  options: {
    agents: { type: 'string', default: '10' },
    dir: { type: 'string' },
    keep: { type: 'boolean', default: false },
  },
})
const agentCount = Number(values.agents)
if (!Number.isInteger(agentCount) || agentCount < 1 || agentCount > 50)
  throw new Error(`--agents must be an integer in 1..50, got ${values.agents}`)
const say = (s: string) => process.stderr.write(`${s}\n`)
const started = Date.now()
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)} s`

interface SamplePatch {
  key: string
  name: string
  version: string
  product: string
  classification: string
  severity: string
  cves: string[]
  sizeMiB: number
  emergency?: boolean
  supersedes?: string[]
  description: string
}

const PATCHES: SamplePatch[] = [
  {
    key: 'openssl-3.0.15',
    name: 'openssl',
    version: '3.0.15',
    product: 'OpenSSL',
    classification: 'security',
    severity: 'critical',
    cves: ['CVE-2026-31337', 'CVE-2026-31338'],
    sizeMiB: 12,
    emergency: true,
    description: 'Fixes a remotely exploitable buffer overflow in the TLS handshake.',
  },
  {
    key: 'acme-agent-2.4.1',
    name: 'acme-agent',
    version: '2.4.1',
    product: 'Acme Agent',
    classification: 'security',
    severity: 'high',
    cves: ['CVE-2026-10001'],
    sizeMiB: 8,
    description: 'Acme endpoint agent: privilege escalation fix.',
  },
  {
    key: 'printer-driver-5.2',
    name: 'printer-driver',
    version: '5.2',
    product: 'Contoso Printer Driver',
    classification: 'bugfix',
    severity: 'low',
    cves: [],
    sizeMiB: 4,
    description: 'Fixes duplex printing on the office printers.',
  },
  {
    key: 'office-viewer-9.1',
    name: 'office-viewer',
    version: '9.1',
    product: 'Office Viewer',
    classification: 'feature',
    severity: 'none',
    cves: [],
    sizeMiB: 6,
    supersedes: ['office-viewer@9.0'],
    description: 'New viewer release; replaces 9.0.',
  },
]

/** A tar the files installer unpacks under its target root: a README and some payload. */
async function writeSampleTar(path: string, p: SamplePatch): Promise<void> {
  const pack = tar.pack()
  const done = pipeline(pack, createWriteStream(path))
  // Directories before their files: the files installer refuses a tar that does otherwise.
  pack.entry({ name: `${p.name}/`, type: 'directory', mode: 0o755 })
  pack.entry({ name: `${p.name}/README.txt` }, `${p.product} ${p.version}\n${p.description}\n`)
  pack.entry({ name: `${p.name}/VERSION` }, `${p.version}\n`)
  pack.entry({ name: `${p.name}/payload.bin` }, randomBytes(p.sizeMiB << 20))
  pack.finalize()
  await done
}

async function writeDemoFeed(dir: string): Promise<void> {
  await mkdir(join(dir, 'files'), { recursive: true })
  const artifacts = []
  for (const p of PATCHES) {
    const file = join(dir, 'files', `${p.key}.tar`)
    await writeSampleTar(file, p)
    const body = await readFile(file)
    artifacts.push({
      id: p.key,
      url: `files/${p.key}.tar`,
      size: body.length,
      sha256: createHash('sha256').update(body).digest('hex'),
      product: p.product,
      name: p.name,
      version: p.version,
      classification: p.classification,
      severity: p.severity,
      cves: p.cves,
      releaseDate: new Date().toISOString().slice(0, 10),
      supersedes: p.supersedes ?? [],
      requires: [],
      description: p.description,
      os: 'any',
      arch: 'any',
      emergency: p.emergency === true,
      installer: { type: 'files', targetRoot: `/opt/${p.name}` },
      rollback: { type: 'files-backup' },
    })
  }
  const now = Date.now()
  const feed = {
    format: FEED_FORMAT,
    formatVersion: FEED_FORMAT_VERSION,
    vendor: 'patchswarm demo',
    generated: new Date(now - 60_000).toISOString(),
    expires: new Date(now + 30 * 86_400_000).toISOString(),
    artifacts,
  }
  await writeFile(join(dir, 'feed.json'), JSON.stringify(feed, null, 2))
}

async function api(app: RunningAppliance, token: string, method: string, path: string, body?: unknown) {
  const res = await fetch(new URL(path, app.info.httpUrl), {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  })
  const text = await res.text()
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`)
  return text ? (JSON.parse(text) as unknown) : undefined
}

const GROUPS = [
  { id: 'pilot', name: 'Pilot devices', match: { tags: { any: ['pilot'] } } },
  { id: 'desktops', name: 'Desktops', match: { tags: { any: ['desktop'] } } },
  {
    id: 'servers',
    name: 'Servers',
    match: { tags: { any: ['server'] } },
    windows: [
      {
        id: 'nightly',
        name: 'Nightly 02:00–04:00',
        timeZone: 'Europe/Berlin',
        recurrence: { cron: '0 2 * * *' },
        durationMinutes: 120,
        allowReboot: true,
      },
    ],
    spreadSeconds: 600,
  },
]

/** Device i's tags: two pilots, then desktops, the last third servers. */
const tagsOf = (i: number, n: number): string[] =>
  i < 2 ? ['pilot', 'desktop'] : i >= n - Math.ceil(n / 3) ? ['server'] : ['desktop']

async function main(): Promise<void> {
  const root = values.dir ?? (await mkdtemp(join(tmpdir(), 'patchswarm-demo-')))
  await mkdir(root, { recursive: true })
  const agents: CliProcess[] = []
  let app: RunningAppliance | undefined
  let stopping = false
  const stop = async () => {
    if (stopping) return
    stopping = true
    say('\nstopping the demo…')
    await Promise.all(agents.map((a) => a.stop()))
    await app?.proc.stop()
    if (!values.keep) await rm(root, { recursive: true, force: true })
    else say(`kept ${root}`)
    process.exit(0)
  }
  process.on('SIGINT', () => void stop())
  process.on('SIGTERM', () => void stop())

  say(`demo directory ${root}`)
  const feedDir = join(root, 'demo-feed')
  await writeDemoFeed(feedDir)
  say(`[${elapsed()}] demo feed with ${PATCHES.length} sample patches written`)

  const dataDir = join(root, 'appliance')
  const init = await runCli(['appliance', 'init', '--data', dataDir, '--site', 'Demo branch office'])
  if (init.code !== 0) throw new Error(`appliance init failed: ${init.stderr}`)
  const config = await readApplianceConfig(dataDir)
  await writeApplianceConfig(dataDir, {
    ...config,
    upstream: {
      ...defaultUpstreamConfig(),
      feeds: [{ id: 'demo', kind: 'folder', path: feedDir }],
      syncIntervalMinutes: 5,
    },
  })
  app = await startAppliance(dataDir)
  const token = (await readFile(join(dataDir, 'admin.token'), 'utf8')).trim()
  say(`[${elapsed()}] appliance running at ${app.info.httpUrl}`)

  for (const g of GROUPS) await api(app, token, 'POST', '/api/v1/groups', g)

  // Enroll in small batches: each enrollment is a short CLI process.
  const peers: string[] = []
  for (let i = 0; i < agentCount; i += 3) {
    const batch = Array.from({ length: Math.min(3, agentCount - i) }, (_, k) => i + k)
    const ids = await Promise.all(
      batch.map((n) =>
        enroll(app!, join(root, `agent-${n + 1}`), join(root, `root-${n + 1}`), `pc-${String(n + 1).padStart(2, '0')}`),
      ),
    )
    peers.push(...ids)
  }
  for (const [i, peerId] of peers.entries())
    await api(app, token, 'PUT', `/api/v1/devices/${peerId}/tags`, { tags: tagsOf(i, peers.length) })
  say(`[${elapsed()}] ${peers.length} agents enrolled into groups pilot, desktops and servers`)

  for (let n = 0; n < peers.length; n++) {
    const proc = new CliProcess(['agent', 'start', '--data', join(root, `agent-${n + 1}`), '--poll-seconds', '5'])
    agents.push(proc)
  }
  await Promise.all(agents.map((a) => a.waitForLog('agent started')))
  say(`[${elapsed()}] ${agents.length} agents running`)

  await api(app, token, 'POST', '/api/v1/upstream/sync', {})
  say(`[${elapsed()}] demo feed synced: the emergency patch downloads at once, the others wait for approval`)

  // Something to watch at once: the emergency patch, approved for every group and rolled out
  // pilot first, then the rest. The other patches wait for the newcomer to approve them.
  const deadline = Date.now() + 60_000
  let bundleId: string | undefined
  while (bundleId === undefined && Date.now() < deadline) {
    const list = (await api(app, token, 'GET', '/api/v1/upstream/artifacts?state=ready')) as {
      artifacts: Array<{ ref: string; bundleId?: string }>
    }
    bundleId = list.artifacts.find((a) => a.ref === 'demo/openssl-3.0.15')?.bundleId
    if (bundleId === undefined) await new Promise((resolve) => setTimeout(resolve, 250))
  }
  if (bundleId !== undefined) {
    for (const group of ['pilot', 'desktops', 'servers'])
      await api(app, token, 'POST', `/api/v1/patches/${bundleId}/approve`, { group })
    await api(app, token, 'POST', '/api/v1/rollouts', {
      id: 'openssl-emergency',
      name: 'OpenSSL 3.0.15 (emergency)',
      bundleId,
      target: ['pilot', 'desktops', 'servers'],
      retries: 1,
      rings: [
        { name: 'pilot', selector: { groups: ['pilot'] }, successThreshold: 1, errorThreshold: 0.5 },
        { name: 'broad', selector: { rest: true }, successThreshold: 0.9, errorThreshold: 0.2 },
      ],
    })
    say(`[${elapsed()}] rollout openssl-emergency started: pilot ring first, then the rest`)
  } else say('the emergency patch was not ready within a minute; no rollout started')

  // The one-time setup link the appliance prints while no account exists.
  const setup = app.proc.lines.map((l) => /^setup: (\S+)/.exec(l)?.[1]).find((x) => x !== undefined)
  const url = (app.info as { httpsUrl?: string }).httpsUrl ?? app.info.httpUrl
  process.stdout.write(`\npatchswarm demo is running (${elapsed()}):\n\n  open ${setup ?? url}\n\n`)
  const fp = (app.info as { webCaFingerprint256?: string | null }).webCaFingerprint256
  process.stdout.write(
    [
      ...(setup ? ['  That one-time link creates the first admin account.'] : []),
      "  The browser will warn about the certificate: it comes from the appliance's own CA",
      ...(fp ? [`  (SHA-256 ${fp}); accept it for the demo, or import ${url.replace(/\/$/, '')}/ca.crt.`] : []),
      '',
      `  Then watch ${agents.length} agents: the emergency OpenSSL rollout goes pilot ring first, the`,
      '  agents fetch it from each other (Swarm page), and the servers download it but wait for their',
      '  nightly maintenance window to install (Windows page). Approve another patch and roll it out,',
      '  roll one back, read the Audit page. Ctrl-C stops everything.',
      '',
    ].join('\n'),
  )
  await new Promise(() => {})
}

main().catch(async (err) => {
  say(`demo failed: ${err instanceof Error ? err.message : String(err)}`)
  process.exit(1)
})
