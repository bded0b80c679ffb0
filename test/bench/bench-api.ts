/**
 * npm run bench:api -- [--agents N] [--seconds S] [--ui-clients C] [--ui-interval-ms MS] [--http]
 *                      [--profile FILE.cpuprofile] [--json]
 *
 * The web UI's dashboard while a site's agents report: N simulated agents (default 2 000) each
 * send a status report every 30 s through the real control path while C UI clients (default 3)
 * poll `GET /api/v1/dashboard` over real HTTP. Goal (from the issue): the UI requests' p99 ≤ 50 ms
 * at 2 000 agents.
 *
 * The appliance runs in this process, wired as `appliance start` wires it (appliance/appliance.ts,
 * mirrored line by line, not `createAppliance`: that one hides the control handler inside the
 * libp2p node, and 2 000 libp2p connections with Noise would measure the benchmark's agents, not
 * the appliance): the real core (LevelDB in a temp dir, every write synced), the dashboard and
 * compliance sources with their cache, the RolloutService with its timer running and nudged by
 * every stored report, the maintenance-window sync every 30 s, session purge, the swarm, the
 * upstream (no feeds), the web certificates, and `createHttpServer` on both real listeners
 * (`createWebServers`, HTTPS with HTTP/1.1 and HTTP/2 and the loopback HTTP one, ports 0). What is
 * left out: the libp2p node (transport, Noise, yamux) and the metadata refresher's timer.
 *
 * Setup (not measured):
 * - N devices, one enrolled through a token, the others written through the registry's public
 *   API (`putOps` + `admitted`, 500 per batch) with its certificate, as bench:rollout does.
 *   Half are tagged `linux`, half `windows`, 1 % `pilot`, 10 % `finance`; stored groups
 *   `finance` (tag filter) and `lab` (hostname glob).
 * - Four bundles (critical, high, medium, low), approved for groups (critical for linux and
 *   windows, high for linux, medium for finance, low for lab and pilot); the high, medium and
 *   low ones assigned to their groups' devices. One rollout of the critical bundle over every
 *   device: pilot (the `pilot` group), early (30 %, 60 min soak), broad. Every device reports
 *   once; the pilot has installed, so the early ring is assigned when measuring starts.
 * - An admin account through `POST /api/v1/auth/setup` with the setup token; every UI client
 *   logs in (`POST /api/v1/auth/login`) and sends the session cookie it got.
 *
 * Measured (S seconds, default 60):
 * - Agents: agent i reports at offset i·30/N s and every 30 s after that, so N/30 reports a
 *   second, each one framed and served by `serveControl` with the appliance's control handler
 *   (schema check, `devices.recordReport`: a synced LevelDB write, then the rollout nudge). Each
 *   agent's reports follow its assignment as it is now (what the agent would fetch): every
 *   bundle installs at a time of its own, spread over the window and after it (3 % fail), and
 *   chunk and transfer counters grow until then. One report in 20 is followed by an inventory
 *   (300 packages), about one per agent every 10 minutes. `report_p99_ms`: one report's time in
 *   `serveControl`, measured from when it was handed to it.
 * - UI clients, in a worker thread (their own event loop, so a request's start is not delayed
 *   by the appliance's work and its latency is what a browser would see): each keeps one
 *   keep-alive connection (HTTPS, HTTP/1.1, the web CA trusted; `--http`: the loopback HTTP
 *   listener) and one live event stream (`GET /api/v1/events`), and loads the dashboard as the
 *   UI's `useApi` does: on a relevant change event and at least every `--ui-interval-ms`
 *   (default 1 000), one request at a time, at most one per interval. Every request is timed
 *   from its start to its parsed JSON body.
 *
 * Last stdout line: { agents, requests, p99_ms, p50_ms, max_ms, ui_clients, ui_errors,
 * ui_over_50ms, ui_over_50ms_during_rollout_pass, ui_over_50ms_during_build,
 * ui_over_50ms_during_slow_report, session_lookup_p99_ms, session_lookup_max_ms, reports_sent,
 * inventories_sent, report_p50_ms, report_p99_ms, dashboard_builds, dashboard_build_p50_ms,
 * dashboard_build_max_ms, rollout_passes, rollout_pass_p50_ms, rollout_pass_max_ms,
 * loop_delay_p99_ms, loop_delay_max_ms, ui_thread_delay_p99_ms, process_cpu_percent, seconds,
 * peak_rss_bytes }. `requests` and the `p*_ms`/`max_ms` are the UI requests'; `ui_over_50ms*`
 * count those slower than the goal, and how many of them overlapped a rollout pass, a
 * dashboard build or a report that took over 20 ms (its synced write waited for the disk), by
 * wall clock, so one request may count in several. `session_lookup_*` time the session store's
 * `resolve` (a LevelDB get per request; a synced put at most once a minute). The `dashboard_build_*` figures time one build of the dashboard (a cache miss) from
 * start to its value, waits for LevelDB and other work in between included; `rollout_pass_*`
 * time the RolloutService's passes; `loop_delay_*` is the main thread's event-loop delay
 * (monitorEventLoopDelay, 10 ms resolution). Context for a shared machine:
 * `ui_thread_delay_p99_ms` is the event-loop delay of the UI clients' thread, which has almost
 * nothing to do, so it shows how long the OS kept threads waiting for a core;
 * `process_cpu_percent` is this process's CPU time (all threads) over the window, in % of one
 * core. `--profile FILE` writes a CPU profile of the main thread over the window only (the
 * profiler samples wall time: on a busy machine, time spent descheduled is charged to whatever
 * function was running). Progress and a summary go to stderr. The temp directory is under
 * $TMPDIR: `TMPDIR=/dev/shm` takes the disk out.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { Session } from 'node:inspector/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { Worker } from 'node:worker_threads'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { inventoryDigest } from '../../agent/inventory/inventory.ts'
import { createControlHandler } from '../../appliance/control-handler.ts'
import { initApplianceDataDir, openApplianceCore } from '../../appliance/core.ts'
import { readAdminToken } from '../../appliance/data-dir.ts'
import type { DeviceRecord } from '../../appliance/devices.ts'
import { createWebServers } from '../../appliance/http/listeners.ts'
import { createHttpServer } from '../../appliance/http/server.ts'
import { ensureWebCertificates } from '../../appliance/http/web-tls.ts'
import { MemberList } from '../../appliance/members.ts'
import { applianceUploadedFromSwarm, deliveredFromDevices } from '../../appliance/metrics/delivered.ts'
import { createMetrics } from '../../appliance/metrics/prometheus.ts'
import { type Group, matches } from '../../appliance/policy/groups.ts'
import { checkRolloutAdmission } from '../../appliance/policy/rollout-admission.ts'
import { syncDeviceWindows } from '../../appliance/policy/window-policy.ts'
import { createDashboard, type Dashboard } from '../../appliance/reports/dashboard.ts'
import { dashboardSources } from '../../appliance/reports/dashboard-sources.ts'
import { RolloutService } from '../../appliance/rollout/rollout-service.ts'
import { SettingsService } from '../../appliance/settings/settings-service.ts'
import { ApplianceSwarm } from '../../appliance/swarm.ts'
import { createUpstream } from '../../appliance/upstream/upstream-factory.ts'
import { systemClock } from '../../shared/clock.ts'
import { silentLogger } from '../../shared/log.ts'
import { createCsr, libp2pPrivateKeyToKeyObject } from '../../shared/pki/index.ts'
import {
  type AgentReportT,
  type BundleReportT,
  type InventoryReportT,
  serveControl,
} from '../../shared/protocol/control-protocol.ts'
import type { StateBatchOp } from '../../shared/store/state-db.ts'
import { frame, oneShotStream } from './control-stream.ts'

const { values } = parseArgs({
  options: {
    agents: { type: 'string', default: '2000' },
    seconds: { type: 'string', default: '60' },
    'ui-clients': { type: 'string', default: '3' },
    'ui-interval-ms': { type: 'string', default: '1000' },
    http: { type: 'boolean', default: false },
    profile: { type: 'string' },
    json: { type: 'boolean', default: false },
  },
})
const N = Number(values.agents)
const SECONDS = Number(values.seconds)
const UI_CLIENTS = Number(values['ui-clients'])
const UI_INTERVAL_MS = Number(values['ui-interval-ms'])
if (!Number.isSafeInteger(N) || N < 200) throw new Error(`--agents must be an integer ≥ 200, got ${values.agents}`)
if (!(SECONDS >= 5)) throw new Error(`--seconds must be ≥ 5, got ${values.seconds}`)
if (!Number.isSafeInteger(UI_CLIENTS) || UI_CLIENTS < 1) throw new Error('--ui-clients must be a positive integer')
if (!(UI_INTERVAL_MS >= 10)) throw new Error('--ui-interval-ms must be ≥ 10')
const REPORT_EVERY_MS = 30_000
const say = (s: string) => process.stderr.write(`${s}\n`)
const ms = (x: number) => `${x.toFixed(1)} ms`
const clock = systemClock
const log = silentLogger()
const operator = { type: 'operator', id: 'bench-admin' } as const
const USER = 'bench-admin'
const PASSWORD = 'bench-api password 2026'

async function vmHwm(): Promise<number> {
  const m = /VmHWM:\s+(\d+) kB/.exec(await readFile('/proc/self/status', 'utf8').catch(() => ''))
  return m ? Number(m[1]) * 1024 : process.memoryUsage.rss()
}

const quantile = (xs: readonly number[], q: number) => {
  if (xs.length === 0) return Number.NaN
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!
}
const round = (x: number, digits = 2) => Number(x.toFixed(digits))

/** Deterministic pseudo-random numbers (mulberry32). */
function random(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/**
 * The UI clients (plain JavaScript, run in a worker thread). Per client: log in, open the event
 * stream, then load the dashboard as appliance/ui/data.ts `useApi` does (one request at a time,
 * again after a relevant change, at most one per interval) plus a poll every interval.
 */
const UI_WORKER = String.raw`
const { parentPort, workerData } = require('node:worker_threads')
const http = require('node:http')
const https = require('node:https')
const { performance, monitorEventLoopDelay } = require('node:perf_hooks')
// This thread does little: its event-loop delay shows how long the machine kept it waiting.
const delay = monitorEventLoopDelay({ resolution: 10 })
const { base, ca, clients, intervalMs, username, password } = workerData
const url = new URL(base)
const lib = url.protocol === 'https:' ? https : http
const RELEVANT = new Set(['device', 'rollout', 'patch', 'approval', 'wan', 'group'])

function request(agent, method, path, headers, body) {
  return new Promise((resolve, reject) => {
    const req = lib.request(
      { host: url.hostname, port: url.port, method, path, agent, headers, ...(ca ? { ca } : {}) },
      (res) => {
        const parts = []
        res.on('data', (d) => parts.push(d))
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(parts).toString('utf8') }))
        res.on('error', reject)
      },
    )
    req.on('error', reject)
    req.end(body)
  })
}

async function login(agent) {
  const body = JSON.stringify({ username, password })
  const res = await request(agent, 'POST', '/api/v1/auth/login', { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }, body)
  if (res.status !== 200) throw new Error('login: ' + res.status + ' ' + res.body)
  const cookie = (res.headers['set-cookie'] || []).map((c) => c.split(';')[0]).join('; ')
  if (!cookie) throw new Error('login: no session cookie')
  return cookie
}

const results = []
let running = false
let stopAt = 0

async function makeClient(k) {
  const agent = new lib.Agent({ keepAlive: true, maxSockets: 1, ...(ca ? { ca } : {}) })
  const cookie = await login(agent)
  const r = { latencies: [], spans: [], errors: 0, events: 0, changed: 0, busy: false, again: false, lastStart: 0, timer: undefined, poll: undefined, inflight: Promise.resolve(), lastGenerated: '' }
  results.push(r)
  // The live event stream, on a connection of its own (as EventSource).
  const sse = lib.request({ host: url.hostname, port: url.port, path: '/api/v1/events', agent: false, headers: { cookie, accept: 'text/event-stream' }, ...(ca ? { ca } : {}) }, (res) => {
    if (res.statusCode !== 200) { r.errors++; return }
    res.setEncoding('utf8')
    let buf = ''
    res.on('data', (chunk) => {
      buf += chunk
      let i
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i)
        buf = buf.slice(i + 2)
        const lines = block.split('\n')
        const event = (lines.find((l) => l.startsWith('event: ')) || '').slice(7)
        const data = (lines.find((l) => l.startsWith('data: ')) || '').slice(6)
        if (event === 'resync') { r.events++; load(false); continue }
        if (event !== 'change') continue
        r.events++
        try { if (RELEVANT.has(JSON.parse(data).type)) load(false) } catch {}
      }
    })
    res.on('error', () => {})
  })
  sse.on('error', () => {})
  sse.end()
  r.sse = sse

  function load(now) {
    if (!running) return
    if (r.busy) { r.again = true; return }
    const wait = r.lastStart + intervalMs - performance.now()
    if (!now && wait > 0) {
      r.timer ??= setTimeout(() => { r.timer = undefined; load(true) }, wait)
      return
    }
    if (performance.now() >= stopAt) return
    r.busy = true
    const t0 = performance.now()
    r.lastStart = t0
    r.inflight = request(agent, 'GET', '/api/v1/dashboard', { cookie, accept: 'application/json' })
      .then((res) => {
        if (res.status !== 200) { r.errors++; return }
        const d = JSON.parse(res.body)
        const t1 = performance.now()
        r.latencies.push(t1 - t0)
        // Absolute times (epoch ms), to line up with the appliance's work in the main thread.
        r.spans.push([performance.timeOrigin + t0, performance.timeOrigin + t1])
        if (d.generatedAt !== r.lastGenerated) r.changed++
        r.lastGenerated = d.generatedAt
      })
      .catch(() => { r.errors++ })
      .finally(() => {
        r.busy = false
        if (r.again) { r.again = false; load(false) }
      })
  }
  r.start = () => {
    load(true)
    r.poll = setInterval(() => load(false), intervalMs)
  }
  r.stop = async () => {
    clearInterval(r.poll)
    clearTimeout(r.timer)
    await r.inflight
    r.sse.destroy()
    agent.destroy()
  }
}

parentPort.on('message', async (m) => {
  if (m.type === 'start') {
    running = true
    delay.enable()
    stopAt = performance.now() + m.seconds * 1000
    // Spread the clients' first loads over one interval, as tabs opened at different times.
    results.forEach((r, k) => setTimeout(r.start, (k * intervalMs) / results.length))
    setTimeout(async () => {
      running = false
      delay.disable()
      await Promise.all(results.map((r) => r.stop()))
      parentPort.postMessage({ type: 'done', delayP99: delay.percentile(99) / 1e6, delayMax: delay.max / 1e6, clients: results.map(({ latencies, spans, errors, events, changed }) => ({ latencies, spans, errors, events, changed })) })
    }, m.seconds * 1000)
  }
})

;(async () => {
  for (let k = 0; k < clients; k++) await makeClient(k)
  parentPort.postMessage({ type: 'ready' })
})().catch((err) => parentPort.postMessage({ type: 'error', message: String(err && err.stack || err) }))
`

// ---------------------------------------------------------------------------------------------

const dir = await mkdtemp(join(tmpdir(), 'psw-bench-api-'))
const cleanups: Array<() => Promise<void> | void> = []
try {
  await initApplianceDataDir(dir, { clock })
  const core = await openApplianceCore(dir, { clock, log })
  cleanups.push(() => core.close())

  // --- appliance.ts's wiring (createAppliance), less the libp2p node --------------------------
  const swarm = new ApplianceSwarm({
    catalog: core.catalog,
    assignments: core.assignments,
    db: core.db,
    clock,
    random: Math.random,
    log,
  })
  const members = new MemberList({ db: core.db, devices: core.devices, signer: core.identity.signer, clock })
  const upstream = createUpstream(core, { clock, log })
  const reportSources = dashboardSources(core, {
    clock,
    rollouts: () => rollouts.list(),
    wan: () => upstream.wan.totals(),
  })
  const dashboard = createDashboard(reportSources)
  let groupList: Group[] = []
  const groupsOfDevice = (device: DeviceRecord) => [
    ...(device.tags ?? []),
    ...groupList.filter((g) => matches(g.match, device)).map((g) => g.id),
  ]
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
    log,
  })
  const metrics = createMetrics({
    wan: upstream.wan,
    delivered: deliveredFromDevices(core.devices),
    applianceUploaded: applianceUploadedFromSwarm({ catalog: core.catalog, swarm }),
    devices: () => core.devices.members().length,
    bundles: async () => (await core.catalog.list()).length,
  })
  const control = createControlHandler({
    assignments: core.assignments,
    catalog: core.catalog,
    devices: core.devices,
    members,
    swarm,
    clock,
    log,
    onReport: () => rollouts.nudge(),
  })

  // --- data: bundles, groups, devices, approvals, assignments, a rollout -----------------------
  say(`ingesting four bundles`)
  const severities = ['critical', 'high', 'medium', 'low'] as const
  const bundles: Record<(typeof severities)[number], string> = { critical: '', high: '', medium: '', low: '' }
  for (const severity of severities) {
    const name = `patch-${severity}`
    const source = join(dir, `${name}.txt`)
    await writeFile(source, `payload of ${name}\n`.repeat(2000))
    bundles[severity] = (
      await core.ingest({ source, name, version: '1', targetRoot: `/opt/${name}`, severity } as never)
    ).record.bundleId
  }
  await core.groups.create({ id: 'finance', name: 'Finance', match: { tags: { any: ['finance'] } } })
  await core.groups.create({ id: 'lab', name: 'Lab', match: { hostnamePattern: 'pc-00*' } })

  say(`enrolling ${N} devices`)
  let started = performance.now()
  const tagsOf = (i: number) =>
    [
      i % 2 === 0 ? 'linux' : 'windows',
      ...(i % 100 === 0 ? ['pilot'] : []),
      ...(i % 10 === 3 ? ['finance'] : []),
    ].sort()
  const devices: Array<{ peerId: string; hostname: string; tags: string[] }> = []
  {
    const key = await generateKeyPair('Ed25519')
    const peerId = peerIdFromPrivateKey(key).toString()
    const { token } = await core.enrollment.createToken()
    const csr = createCsr({ peerId, privateKey: libp2pPrivateKeyToKeyObject(key) })
    await core.enrollment.enroll({ token, peerId, csr, hostname: 'pc-00000' })
    await core.devices.setTags(peerId, tagsOf(0))
    devices.push({ peerId, hostname: 'pc-00000', tags: tagsOf(0) })
  }
  const certificatePem = (await core.devices.get(devices[0]!.peerId))!.certificatePem
  for (let i = 1; i < N; i += 500) {
    const ops: StateBatchOp[] = []
    const batch: string[] = []
    for (let j = i; j < Math.min(N, i + 500); j++) {
      const peerId = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
      const hostname = `pc-${String(j).padStart(5, '0')}`
      const tags = tagsOf(j)
      devices.push({ peerId, hostname, tags })
      batch.push(peerId)
      ops.push(
        ...core.devices.putOps({
          peerId,
          hostname,
          certificatePem,
          enrolledAt: new Date(clock.now()).toISOString(),
          tags,
        }),
      )
    }
    await core.db.batch(ops)
    for (const p of batch) core.devices.admitted(p)
  }
  say(`  ${((performance.now() - started) / 1000).toFixed(1)} s`)

  say('approvals, assignments and the rollout')
  const decide = (bundleId: string, group: string) =>
    core.approvals.decide({ bundleId, group, decision: 'approve' }, operator)
  await decide(bundles.critical, 'linux')
  await decide(bundles.critical, 'windows')
  await decide(bundles.high, 'linux')
  await decide(bundles.medium, 'finance')
  await decide(bundles.low, 'lab')
  await decide(bundles.low, 'pilot')
  const groupsNow = await core.groups.list()
  const inGroup = (d: (typeof devices)[number], g: string) =>
    d.tags.includes(g) ||
    groupsNow.some((x) => x.id === g && matches(x.match, { peerId: d.peerId, hostname: d.hostname, tags: d.tags }))
  await core.assignments.assign(
    bundles.high,
    devices.filter((d) => inGroup(d, 'linux')).map((d) => d.peerId),
  )
  await core.assignments.assign(
    bundles.medium,
    devices.filter((d) => inGroup(d, 'finance')).map((d) => d.peerId),
  )
  await core.assignments.assign(
    bundles.low,
    devices.filter((d) => inGroup(d, 'lab') || inGroup(d, 'pilot')).map((d) => d.peerId),
  )
  await rollouts.create(
    {
      id: 'critical-update',
      name: 'Critical security update',
      bundleId: bundles.critical,
      target: 'all',
      retries: 2,
      rings: [
        { name: 'pilot', selector: { groups: ['pilot'] }, successThreshold: 0.9, errorThreshold: 0.2 },
        { name: 'early', selector: { percent: 30 }, successThreshold: 0.9, errorThreshold: 0.1, soakMinutes: 60 },
        { name: 'broad', selector: { rest: true }, successThreshold: 0.95, errorThreshold: 0.05 },
      ],
    },
    operator,
  )

  // --- the agents' side --------------------------------------------------------------------------
  const rnd = random(7)
  /** Per agent and bundle: when (ms from the start of the window) it installs; NaN = it fails. */
  const installAt = new Map<string, number>()
  const installTime = (peerId: string, bundleId: string) => {
    const key = `${peerId}:${bundleId}`
    let t = installAt.get(key)
    if (t === undefined) {
      const x = rnd()
      // 35 % were installed before the window, 3 % fail, the rest spread over twice the window.
      t = x < 0.35 ? -1 : x < 0.38 ? Number.NaN : ((x - 0.38) / 0.62) * 2 * SECONDS * 1000
      installAt.set(key, t)
    }
    return t
  }
  const hostOf = new Map(devices.map((d) => [d.peerId, d.hostname]))
  /** What an agent reports at `t` ms from the start of the window, from its assignment as it is now. */
  const agentReport = async (peerId: string, t: number): Promise<AgentReportT> => {
    const assignment = (await core.assignments.get(peerId))?.signed
    const bundlesOut: BundleReportT[] = []
    for (const b of assignment?.bundles ?? []) {
      const at = installTime(peerId, b.bundleId)
      const failed = Number.isNaN(at)
      const installed = !failed && t >= at
      // Progress: from nothing at (at − 60 s) to complete at `at`; a failed one stopped at 12/12.
      const have = installed || failed ? 12 : Math.max(0, Math.min(11, Math.floor(12 - (at - t) / 5000)))
      const bytes = have * (256 << 10)
      bundlesOut.push({
        bundleId: b.bundleId,
        state: installed ? 'installed' : failed ? 'failed' : have > 0 ? 'downloading' : 'pending',
        chunksHave: have,
        chunksTotal: 12,
        transfer: {
          bytesFromAppliance: Math.floor(bytes / 8),
          bytesFromPeers: bytes - Math.floor(bytes / 8),
          bytesServed: installed ? Math.floor(Math.min(Math.max(0, t - at), 600_000) * 40) : 0,
        },
        ...(installed ? { downloadSeconds: 42.5 } : {}),
        ...(failed
          ? { error: { code: 'PSW_ERR_INSTALL_FAILED', message: 'health check failed: service foo not running' } }
          : {}),
      })
    }
    return {
      agentVersion: '0.1.0',
      hostname: hostOf.get(peerId)!,
      ...(assignment ? { assignmentVersion: assignment.version } : {}),
      bundles: bundlesOut,
    }
  }
  const packages = Array.from({ length: 300 }, (_, i) => ({
    name: `package-${i}`,
    version: `1.${i % 17}.${i % 5}-1`,
    arch: 'amd64',
  }))
  const inventoryOf = (peerId: string, i: number): InventoryReportT => {
    const body = {
      formatVersion: 1 as const,
      agentVersion: '0.1.0',
      hostname: hostOf.get(peerId)!,
      os:
        i % 2 === 0
          ? {
              platform: 'linux',
              id: 'debian',
              name: 'Debian GNU/Linux 12',
              versionId: '12',
              kernel: '6.1.0-27-amd64',
              arch: 'x64',
            }
          : {
              platform: 'win32',
              id: 'windows',
              name: 'Windows 11 Pro',
              versionId: '10.0.22631',
              kernel: '22631',
              arch: 'x64',
            },
      addresses: [{ interface: 'eth0', family: 'IPv4' as const, cidr: `10.0.${(i >> 8) & 255}.${i & 255}/16` }],
      packageManager: 'dpkg' as const,
      packages,
      patchswarm: [],
      reboot: { pending: i % 50 === 0, reasons: i % 50 === 0 ? ['reboot-required' as const] : [] },
    }
    return { ...body, collectedAt: new Date(clock.now()).toISOString(), digest: inventoryDigest(body) }
  }
  /** One request through the control protocol's server side and the control handler. */
  const send = async (peerId: string, request: unknown): Promise<number> => {
    const { stream, answer } = oneShotStream(frame(request))
    const t0 = performance.now()
    await serveControl(stream, control(peerId))
    const took = performance.now() - t0
    const a = answer() as { ok: boolean; error?: unknown }
    if (!a.ok) throw new Error(`request refused: ${JSON.stringify(a.error)}`)
    return took
  }

  say('first reports (every device once), rollout passes')
  started = performance.now()
  // Before the window: the reports of the last 30 s (t < 0), so every device was seen.
  for (const d of devices) await send(d.peerId, { op: 'report', report: await agentReport(d.peerId, -1) })
  await rollouts.poll() // assigns the pilot
  // The pilot installed the critical bundle.
  for (const d of devices.filter((x) => x.tags.includes('pilot'))) {
    installAt.set(`${d.peerId}:${bundles.critical}`, -1)
    await send(d.peerId, { op: 'report', report: await agentReport(d.peerId, -1) })
  }
  await rollouts.poll() // the pilot passed: assigns the early ring
  const state = await rollouts.get('critical-update')
  say(
    `  ${((performance.now() - started) / 1000).toFixed(1)} s; rollout rings: ${state.rings.map((r) => r.status).join(', ')}`,
  )

  // --- start the services as `appliance start` does, then the HTTP server -------------------------
  await swarm.start()
  cleanups.push(() => swarm.stop())
  await upstream.start()
  cleanups.push(() => upstream.stop())
  // Time every rollout pass (the service calls `this.poll()`).
  const passes: number[] = []
  /** Epoch ms [start, end] of each rollout pass and dashboard build, to line up with slow UI requests. */
  const passSpans: Array<[number, number]> = []
  const buildSpans: Array<[number, number]> = []
  const epoch = () => performance.timeOrigin + performance.now()
  const poll = rollouts.poll.bind(rollouts)
  rollouts.poll = async () => {
    const t0 = performance.now()
    const e0 = epoch()
    try {
      return await poll()
    } finally {
      passes.push(performance.now() - t0)
      passSpans.push([e0, epoch()])
    }
  }
  rollouts.start()
  cleanups.push(() => rollouts.stop())
  core.auth.sessions.start()
  const windowSync = () =>
    syncDeviceWindows({
      groups: () => core.groups.list(),
      devices: () => core.devices.list(),
      assignments: core.assignments,
      log,
    }).catch((err) => say(`maintenance window sync failed: ${err}`))
  await windowSync()
  const windowTimer = setInterval(() => void windowSync(), 30_000)
  cleanups.push(() => clearInterval(windowTimer))
  cleanups.push(() => reportSources.stop())
  // Time every dashboard build (a new promise from the cache is a build).
  const builds: number[] = []
  const get = dashboard.get.bind(dashboard)
  let last: Promise<Dashboard> | undefined
  dashboard.get = () => {
    const value = get()
    if (value !== last) {
      last = value
      const t0 = performance.now()
      const e0 = epoch()
      void value.then(
        () => {
          builds.push(performance.now() - t0)
          buildSpans.push([e0, epoch()])
        },
        () => {},
      )
    }
    return value
  }

  // Time every session lookup (one per UI request: a LevelDB get, a synced put once a minute).
  const lookups: number[] = []
  const resolve = core.auth.sessions.resolve.bind(core.auth.sessions)
  core.auth.sessions.resolve = async (id) => {
    const t0 = performance.now()
    try {
      return await resolve(id)
    } finally {
      lookups.push(performance.now() - t0)
    }
  }

  const web = await ensureWebCertificates(core.layout, { now: clock.now(), siteName: core.config.siteName })
  const servers = createWebServers(web)
  const http = await createHttpServer({
    core,
    servers,
    webCaPem: () => web.caPem,
    adminToken: await readAdminToken(core.layout),
    status: async () => ({
      siteName: core.config.siteName,
      peerId: '',
      multiaddrs: [],
      rootFingerprint: core.identity.rootFingerprint,
      bundles: await core.catalog.list(),
      devices: await core.devices.list(),
      swarm: (await core.catalog.list()).map((b) => swarm.stats(b.bundleId)),
    }),
    startedAt: clock.now(),
    now: () => clock.now(),
    node: () => ({ peerId: '', multiaddrs: [] }),
    metrics,
    rollouts,
    reports: { dashboard, sources: reportSources },
    settings: new SettingsService({ dataDir: core.layout.root, upstream, audit: core.audit, log }),
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
  const listening = await servers.listen(http, {
    https: { host: '127.0.0.1', port: 0 },
    http: { host: '127.0.0.1', port: 0 },
  })
  cleanups.push(() => http.close())
  const base = values.http ? listening.httpUrl : listening.httpsUrl
  say(`appliance listening: ${listening.httpsUrl} and ${listening.httpUrl}; UI clients use ${base}`)

  // The first admin, through the setup link's token (over the loopback listener, as the CLI would).
  const setupToken = await core.auth.setup.setupToken()
  if (!setupToken) throw new Error('no setup token')
  const setup = await fetch(`${listening.httpUrl}/api/v1/auth/setup`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ token: setupToken, username: USER, password: PASSWORD }),
  })
  if (setup.status !== 201) throw new Error(`setup: ${setup.status} ${await setup.text()}`)

  const worker = new Worker(UI_WORKER, {
    eval: true,
    execArgv: [],
    workerData: {
      base,
      ca: values.http ? undefined : web.caPem,
      clients: UI_CLIENTS,
      intervalMs: UI_INTERVAL_MS,
      username: USER,
      password: PASSWORD,
    },
  })
  cleanups.push(async () => {
    await worker.terminate()
  })
  type UiResult = {
    latencies: number[]
    spans: Array<[number, number]>
    errors: number
    events: number
    changed: number
  }
  type UiMessage = { type: string; message?: string; clients?: UiResult[]; delayP99?: number; delayMax?: number }
  const messages: Array<(m: UiMessage) => void> = []
  worker.on('message', (m) => messages.shift()?.(m))
  worker.on('error', (err) => say(`UI worker: ${err.stack ?? err}`))
  const next = () => new Promise<UiMessage>((resolve) => messages.push(resolve))
  const ready = await next()
  if (ready.type !== 'ready') throw new Error(`UI worker: ${ready.message}`)
  say(`${UI_CLIENTS} UI client(s) logged in; measuring for ${SECONDS} s (${(N / 30).toFixed(1)} reports/s)`)

  // --- the measured window --------------------------------------------------------------------
  const order = devices.map((d) => d.peerId)
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1))
    ;[order[i], order[j]] = [order[j]!, order[i]!]
  }
  const schedule: Array<{ at: number; peerId: string; index: number; round: number }> = []
  for (const [index, peerId] of order.entries())
    for (let at = (index * REPORT_EVERY_MS) / N, round = 0; at < SECONDS * 1000; at += REPORT_EVERY_MS, round++)
      schedule.push({ at, peerId, index, round })
  schedule.sort((a, b) => a.at - b.at)
  const reportTimes: number[] = []
  /** Reports that took over 20 ms (a synced write that waited for the disk), epoch ms. */
  const slowWrites: Array<[number, number]> = []
  const inventoryTimes: number[] = []
  const inFlight = new Set<Promise<void>>()
  let failures = 0
  const loop = monitorEventLoopDelay({ resolution: 10 })
  const uiDone = next()
  // --profile: a CPU profile of the main thread (appliance and agents) over the window only.
  const profiler = values.profile ? new Session() : undefined
  if (profiler) {
    profiler.connect()
    await profiler.post('Profiler.enable')
    await profiler.post('Profiler.start')
  }
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  worker.postMessage({ type: 'start', seconds: SECONDS })
  loop.enable()
  for (let k = 0; k < schedule.length; ) {
    const now = performance.now() - t0
    while (k < schedule.length && schedule[k]!.at <= now) {
      const { peerId, index, round } = schedule[k++]!
      const job = (async () => {
        const report = await agentReport(peerId, now)
        const e0 = epoch()
        const took = await send(peerId, { op: 'report', report })
        reportTimes.push(took)
        if (took > 20) slowWrites.push([e0, epoch()])
        // One report in 20 is followed by an inventory.
        if ((index * 7 + round * 13) % 20 === 0)
          inventoryTimes.push(await send(peerId, { op: 'inventory', inventory: inventoryOf(peerId, index) }))
      })()
        .catch((err) => {
          failures++
          if (failures <= 3) say(`report failed: ${err}`)
        })
        .finally(() => inFlight.delete(job))
      inFlight.add(job)
    }
    const wait = k < schedule.length ? schedule[k]!.at - (performance.now() - t0) : 0
    await new Promise((resolve) => setTimeout(resolve, Math.max(1, Math.min(wait, 20))))
  }
  const ui = await uiDone
  await Promise.all(inFlight)
  loop.disable()
  const cpu = process.cpuUsage(cpu0)
  if (profiler && values.profile) {
    const { profile } = await profiler.post('Profiler.stop')
    await writeFile(values.profile, JSON.stringify(profile))
    profiler.disconnect()
    say(`CPU profile of the window: ${values.profile}`)
  }
  const elapsed = (performance.now() - t0) / 1000
  if (ui.type !== 'done' || !ui.clients) throw new Error(`UI worker: ${ui.message}`)
  const latencies = ui.clients.flatMap((c) => c.latencies)
  // The slow UI requests (over the goal) and what the appliance was doing meanwhile.
  const overlaps = (a: [number, number], spans: Array<[number, number]>) =>
    spans.some((b) => a[0] < b[1] && b[0] < a[1])
  const slow = ui.clients.flatMap((c) => c.spans).filter(([a, b]) => b - a > 50)
  const slowDuringPass = slow.filter((x) => overlaps(x, passSpans)).length
  const slowDuringBuild = slow.filter((x) => overlaps(x, buildSpans)).length
  const slowDuringSlowWrite = slow.filter((x) => overlaps(x, slowWrites)).length
  const uiErrors = ui.clients.reduce((s, c) => s + c.errors, 0)
  const events = ui.clients.reduce((s, c) => s + c.events, 0)
  const changed = ui.clients.reduce((s, c) => s + c.changed, 0)
  const final = await dashboard.get()
  say(
    `window: ${elapsed.toFixed(1)} s; ${reportTimes.length} reports (${failures} failed), ${inventoryTimes.length} inventories; ` +
      `${events} change events to the UI clients`,
  )
  say(
    `UI: ${latencies.length} dashboard requests (${uiErrors} errors; ${changed} answers new to their client), ` +
      `p50 ${ms(quantile(latencies, 0.5))}, p99 ${ms(quantile(latencies, 0.99))}, max ${ms(quantile(latencies, 1))}`,
  )
  say(
    `UI requests over 50 ms: ${slow.length}, of which ${slowDuringPass} overlapped a rollout pass, ${slowDuringBuild} a dashboard build ` +
      `and ${slowDuringSlowWrite} a report slower than 20 ms (${slowWrites.length} such reports); ` +
      `session lookups p99 ${ms(quantile(lookups, 0.99))}, max ${ms(quantile(lookups, 1))}`,
  )
  say(
    `reports: p50 ${ms(quantile(reportTimes, 0.5))}, p99 ${ms(quantile(reportTimes, 0.99))}; ` +
      `inventories p99 ${ms(quantile(inventoryTimes, 0.99))}`,
  )
  say(
    `dashboard builds: ${builds.length}, p50 ${ms(quantile(builds, 0.5))}, max ${ms(quantile(builds, 1))}; ` +
      `rollout passes: ${passes.length}, p50 ${ms(quantile(passes, 0.5))}, max ${ms(quantile(passes, 1))}; ` +
      `event-loop delay p99 ${ms(loop.percentile(99) / 1e6)}, max ${ms(loop.max / 1e6)}`,
  )
  say(
    `context: the UI thread's own event-loop delay p99 ${ms(ui.delayP99 ?? Number.NaN)}, max ${ms(ui.delayMax ?? Number.NaN)} ` +
      `(the machine's share); this process used ${(((cpu.user + cpu.system) / 1e3 / (elapsed * 1000)) * 100).toFixed(0)} % of one core`,
  )
  say(
    `dashboard at the end: ${final.devices.online}/${final.devices.total} online, compliance ${final.compliance.percent} %, ` +
      `rollout rings ${final.rollouts[0]?.rings.map((r) => `${r.name} ${r.installed}/${r.total}`).join(', ')}`,
  )

  const result = {
    agents: N,
    requests: latencies.length,
    p99_ms: round(quantile(latencies, 0.99)),
    p50_ms: round(quantile(latencies, 0.5)),
    max_ms: round(quantile(latencies, 1)),
    ui_clients: UI_CLIENTS,
    ui_errors: uiErrors,
    ui_over_50ms: slow.length,
    ui_over_50ms_during_rollout_pass: slowDuringPass,
    ui_over_50ms_during_build: slowDuringBuild,
    ui_over_50ms_during_slow_report: slowDuringSlowWrite,
    session_lookup_p99_ms: round(quantile(lookups, 0.99)),
    session_lookup_max_ms: round(quantile(lookups, 1)),
    reports_sent: reportTimes.length,
    inventories_sent: inventoryTimes.length,
    report_p50_ms: round(quantile(reportTimes, 0.5), 3),
    report_p99_ms: round(quantile(reportTimes, 0.99), 3),
    dashboard_builds: builds.length,
    dashboard_build_p50_ms: round(quantile(builds, 0.5)),
    dashboard_build_max_ms: round(quantile(builds, 1)),
    rollout_passes: passes.length,
    rollout_pass_p50_ms: round(quantile(passes, 0.5)),
    rollout_pass_max_ms: round(quantile(passes, 1)),
    loop_delay_p99_ms: round(loop.percentile(99) / 1e6),
    loop_delay_max_ms: round(loop.max / 1e6),
    ui_thread_delay_p99_ms: round(ui.delayP99 ?? Number.NaN),
    process_cpu_percent: round(((cpu.user + cpu.system) / 1e3 / (elapsed * 1000)) * 100, 1),
    seconds: SECONDS,
    peak_rss_bytes: await vmHwm(),
  }
  if (!values.json) say(JSON.stringify(result, null, 2))
  process.stdout.write(`${JSON.stringify(result)}\n`)
} finally {
  for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => {})
  await rm(dir, { recursive: true, force: true })
}
