/**
 * npm run bench:rollout -- [--devices N] [--copies K] [--json]
 *
 * Staged rollouts at site scale (default 10 000 devices), against the real code: a real
 * appliance core (LevelDB in a temp dir, every write synced), real signed assignments, the real
 * hash-chained audit log, the real control handler and the RolloutService wired as
 * `appliance start` wires it (device list + stored groups; group membership by tags and filters;
 * a stored report nudges the service). The service's timer is not started: passes are run by hand.
 *
 * Setup (not measured):
 * - N devices. One is enrolled for real (token, CSR, certificate); the others get real Ed25519
 *   PeerIds and are written through the registry's public API (`putOps` + `admitted`, 500 per
 *   batch) with that device's certificate PEM, so records have a real size: enrolling 10 000
 *   devices through tokens signs 10 000 certificates one by one. 1 % are tagged `pilot`, half
 *   `linux`.
 * - Two real bundles in the catalog and two rollouts:
 *   A `os-update` over every device: pilot (the `pilot` group, 95 %, approval gate), early (30 %,
 *   90 %, 60 min soak), broad (rest, 95 %); 2 retries.
 *   B `browser` over `linux`: canary (500 devices, 90 %), rest; 1 retry.
 * - Mid-flight: the pilot reported (97 % installed, 3 % failed and were retried), the operator
 *   approved it, so the early ring (30 %) is assigned; 70 % of B's canary installed, 4 % failed
 *   and were retried.
 * - That data directory is copied K times (default 3). Each copy is opened and measured the
 *   same way, so every pass below runs K times on identical data. Right after opening, one pass
 *   runs as `appliance start` runs one (it loads the rollouts and the index of assignments);
 *   it is shown on stderr, not measured.
 *
 * Measured, per copy:
 * - Every device sends one status report (random order, one at a time) through
 *   `serveControl` and the appliance's control handler: frame read, JSON parse, schema check,
 *   `devices.recordReport` (a synced LevelDB write), the framed answer. In the early ring 95 %
 *   report installed, 5 % failed; B's canary gets 10 % more installs; the others report what
 *   they have. `report_p99_ms` is the 99th percentile over all K × N reports. After every tenth
 *   report, a bare synced LevelDB put of a device record is timed: `synced_put_p99_ms`, the
 *   disk's share (context).
 * - Then one `RolloutService.poll()`: both rollouts × all devices, with the whole early ring
 *   (3 000 devices at N = 10 000) and 150 others newly reported: the engine, the commit (state
 *   and one audit record per transition in one synced batch), the assignments (the bundle
 *   withdrawn from the 150 that failed, signed). The early ring passes into its soak.
 *   `evaluation_ms` is the median of the K passes, `evaluation_max_ms` the slowest.
 * - Then a pass with nothing new: `evaluation_idle_ms` (median).
 * - Then the soak ends and a pass starts the broad ring: 69 % of the devices get a newly signed
 *   assignment. `evaluation_ring_start_ms` (median), of which `ring_start_assignments_ms` in
 *   `Assignments.apply` (signing and storing the assignments). No goal.
 *
 * Last stdout line: { devices, report_p99_ms, evaluation_ms, evaluation_max_ms,
 * evaluation_idle_ms, evaluation_ring_start_ms, ring_start_assignments_ms, report_p50_ms,
 * report_samples, synced_put_p99_ms, peak_rss_bytes } (peak_rss_bytes: this process's VmHWM
 * at the end, including the TypeScript runner and the benchmark's own data). Goals at 10 000
 * devices: report_p99_ms ≤ 2, evaluation_ms ≤ 500. Progress and per-copy figures go to stderr.
 * The temp directory is under $TMPDIR: `TMPDIR=/dev/shm` takes the disk out.
 */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { createControlHandler } from '../../appliance/control-handler.ts'
import { type ApplianceCore, initApplianceDataDir, openApplianceCore } from '../../appliance/core.ts'
import type { DeviceRecord } from '../../appliance/devices.ts'
import { MemberList } from '../../appliance/members.ts'
import { type Group, matches } from '../../appliance/policy/groups.ts'
import { RolloutService } from '../../appliance/rollout/rollout-service.ts'
import { ApplianceSwarm } from '../../appliance/swarm.ts'
import { ManualClock } from '../../shared/clock.ts'
import { silentLogger } from '../../shared/log.ts'
import { createCsr, libp2pPrivateKeyToKeyObject } from '../../shared/pki/index.ts'
import { type AgentReportT, type BundleReportT, serveControl } from '../../shared/protocol/control-protocol.ts'
import type { StateBatchOp } from '../../shared/store/state-db.ts'
import { frame, oneShotStream } from './control-stream.ts'

const { values } = parseArgs({
  options: {
    devices: { type: 'string', default: '10000' },
    copies: { type: 'string', default: '3' },
    json: { type: 'boolean', default: false },
  },
})
const N = Number(values.devices)
const COPIES = Number(values.copies)
if (!Number.isSafeInteger(N) || N < 200) throw new Error(`--devices must be an integer ≥ 200, got ${values.devices}`)
if (!Number.isSafeInteger(COPIES) || COPIES < 1) throw new Error(`--copies must be a positive integer`)
const say = (s: string) => process.stderr.write(`${s}\n`)
const ms = (x: number) => `${x.toFixed(1)} ms`
const MINUTE = 60_000
const START = Date.UTC(2026, 10, 24, 9)
const operator = { type: 'operator', id: 'bench-admin' } as const

async function vmHwm(): Promise<number> {
  const m = /VmHWM:\s+(\d+) kB/.exec(await readFile('/proc/self/status', 'utf8').catch(() => ''))
  return m ? Number(m[1]) * 1024 : process.memoryUsage.rss()
}

const quantile = (xs: readonly number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]!
}
const median = (xs: readonly number[]) => quantile(xs, 0.5)

/** Deterministic shuffle (mulberry32), so every copy sees the same report order. */
function shuffled<T>(xs: readonly T[], seed: number): T[] {
  let a = seed >>> 0
  const rnd = () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const out = [...xs]
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1))
    ;[out[i], out[j]] = [out[j]!, out[i]!]
  }
  return out
}

/** Milliseconds spent in `Assignments.apply` since the last reset. */
const signing = { ms: 0 }

/** One appliance core with the services `appliance start` wires around it (no network). */
function wire(core: ApplianceCore, clock: ManualClock) {
  let groupList: Group[] = []
  const groupsOf = (device: DeviceRecord) => [
    ...(device.tags ?? []),
    ...groupList.filter((g) => matches(g.match, device)).map((g) => g.id),
  ]
  // Time spent in Assignments.apply (signing and storing assignments), per pass: context.
  const apply = core.assignments.apply.bind(core.assignments)
  core.assignments.apply = async (...args) => {
    const t0 = performance.now()
    try {
      return await apply(...args)
    } finally {
      signing.ms += performance.now() - t0
    }
  }
  const rollouts = new RolloutService({
    db: core.db,
    catalog: core.catalog,
    assignments: core.assignments,
    audit: core.audit,
    devices: async () => {
      groupList = await core.groups.list()
      return core.devices.list()
    },
    groupsOf,
    clock,
    log: silentLogger(),
  })
  const control = createControlHandler({
    assignments: core.assignments,
    catalog: core.catalog,
    devices: core.devices,
    members: new MemberList({ db: core.db, devices: core.devices, signer: core.identity.signer, clock }),
    swarm: new ApplianceSwarm({
      catalog: core.catalog,
      assignments: core.assignments,
      db: core.db,
      clock,
      random: Math.random,
      log: silentLogger(),
    }),
    clock,
    log: silentLogger(),
    onReport: () => rollouts.nudge(),
  })
  return { rollouts, control }
}

type Outcome = 'installed' | 'failed' | 'downloading'

/** What an agent reports after working on its current assignment. */
async function agentReport(
  core: ApplianceCore,
  peerId: string,
  hostname: string,
  outcome: (bundleId: string) => Outcome | undefined,
): Promise<AgentReportT> {
  const assignment = (await core.assignments.get(peerId))?.signed
  const bundles: BundleReportT[] = []
  for (const b of assignment?.bundles ?? []) {
    const state = outcome(b.bundleId) ?? 'downloading'
    bundles.push({
      bundleId: b.bundleId,
      state,
      chunksHave: state === 'downloading' ? 3 : 12,
      chunksTotal: 12,
      transfer: { bytesFromAppliance: 1 << 20, bytesFromPeers: 11 << 20, bytesServed: 4 << 20 },
      ...(state === 'downloading' ? {} : { downloadSeconds: 42.5 }),
      ...(state === 'failed'
        ? { error: { code: 'PSW_ERR_INSTALL_FAILED', message: 'health check failed: service foo not running' } }
        : {}),
    })
  }
  return {
    agentVersion: '0.1.0',
    hostname,
    ...(assignment ? { assignmentVersion: assignment.version } : {}),
    bundles,
  }
}

// ---------------------------------------------------------------------------------------------

const dir = await mkdtemp(join(tmpdir(), 'psw-bench-rollout-'))
try {
  const clock = new ManualClock(START)
  const master = join(dir, 'master')
  await initApplianceDataDir(master, { clock })
  let core = await openApplianceCore(master, { clock, log: silentLogger() })

  say(`ingesting two bundles`)
  const bundle = async (name: string) => {
    const source = join(dir, `${name}.txt`)
    await writeFile(source, `payload of ${name}\n`.repeat(1000))
    return (await core.ingest({ source, name, version: '1', targetRoot: `/opt/${name}` })).record.bundleId
  }
  const bundleA = await bundle('os-update')
  const bundleB = await bundle('browser')

  say(`enrolling ${N} devices`)
  let started = performance.now()
  const devices: Array<{ peerId: string; hostname: string; tags: string[] }> = []
  const tagsOf = (i: number) => [...(i % 100 === 0 ? ['pilot'] : []), ...(i % 2 === 0 ? ['linux'] : [])]
  {
    const key = await generateKeyPair('Ed25519')
    const peerId = peerIdFromPrivateKey(key).toString()
    const { token } = await core.enrollment.createToken()
    const csr = createCsr({ peerId, privateKey: libp2pPrivateKeyToKeyObject(key) })
    await core.enrollment.enroll({ token, peerId, csr, hostname: 'pc-00000' })
    if (tagsOf(0).length) await core.devices.setTags(peerId, tagsOf(0))
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
          ...(tags.length ? { tags } : {}),
        }),
      )
    }
    await core.db.batch(ops)
    for (const p of batch) core.devices.admitted(p)
  }
  say(`  ${((performance.now() - started) / 1000).toFixed(1)} s`)
  const hostOf = new Map(devices.map((d) => [d.peerId, d.hostname]))

  let { rollouts, control } = wire(core, clock)
  /** One report through the control protocol's server side and the control handler. */
  const send = async (peerId: string, report: AgentReportT): Promise<number> => {
    const { stream, answer } = oneShotStream(frame({ op: 'report', report }))
    const t0 = performance.now()
    await serveControl(stream, control(peerId))
    const took = performance.now() - t0
    const a = answer() as { ok: boolean; error?: unknown }
    if (!a.ok) throw new Error(`report refused: ${JSON.stringify(a.error)}`)
    return took
  }
  const reportAll = async (peers: readonly string[], outcome: (peerId: string, bundleId: string) => Outcome) => {
    for (const p of peers) await send(p, await agentReport(core, p, hostOf.get(p)!, (b) => outcome(p, b)))
  }

  say('creating rollout A (3 rings over every device) and B (2 rings over linux)')
  started = performance.now()
  await rollouts.create(
    {
      id: 'os-update',
      name: 'OS security update',
      bundleId: bundleA,
      target: 'all',
      retries: 2,
      rings: [
        {
          name: 'pilot',
          selector: { groups: ['pilot'] },
          successThreshold: 0.95,
          errorThreshold: 0.05,
          approvalGate: true,
        },
        { name: 'early', selector: { percent: 30 }, successThreshold: 0.9, errorThreshold: 0.1, soakMinutes: 60 },
        { name: 'broad', selector: { rest: true }, successThreshold: 0.95, errorThreshold: 0.05 },
      ],
    },
    operator,
  )
  await rollouts.create(
    {
      id: 'browser',
      name: 'Browser update',
      bundleId: bundleB,
      target: ['linux'],
      retries: 1,
      rings: [
        { name: 'canary', selector: { count: 500 }, successThreshold: 0.9, errorThreshold: 0.2 },
        { name: 'rest', selector: { rest: true }, successThreshold: 0.9, errorThreshold: 0.1 },
      ],
    },
    operator,
  )
  say(`  ${ms(performance.now() - started)}`)

  const ringOf = async (id: string, ring: number) =>
    Object.entries((await rollouts.get(id)).devices)
      .filter(([, d]) => d.ring === ring)
      .map(([p]) => p)
  const pilot = await ringOf('os-update', 0)
  const canary = await ringOf('browser', 0)
  const at = (xs: readonly string[], from: number, to: number) =>
    new Set(xs.slice(Math.floor(from * xs.length), Math.floor(to * xs.length)))
  const pilotFailed = at(pilot, 0, 0.03)
  const canaryFailed = at(canary, 0, 0.04)
  const canaryInstalled = at(canary, 0.04, 0.74)
  say(`pilot: ${pilot.length} devices, canary: ${canary.length}; first reports and passes`)
  await reportAll(shuffled([...new Set([...pilot, ...canary])], 1), (p, b) =>
    b === bundleA
      ? pilotFailed.has(p)
        ? 'failed'
        : 'installed'
      : canaryFailed.has(p)
        ? 'failed'
        : canaryInstalled.has(p)
          ? 'installed'
          : 'downloading',
  )
  clock.advance(MINUTE)
  await rollouts.poll()
  let a = await rollouts.get('os-update')
  if (a.rings[0]!.status !== 'awaiting-approval') throw new Error(`pilot is ${a.rings[0]!.status}`)
  clock.advance(30 * MINUTE)
  started = performance.now()
  await rollouts.command('os-update', { type: 'approve', ring: 0, by: operator.id }, operator)
  const early = await ringOf('os-update', 1)
  say(`approved the pilot: early ring of ${early.length} devices assigned in ${ms(performance.now() - started)}`)
  clock.advance(11 * MINUTE)
  await rollouts.poll()
  // The retried pilot and canary devices: the pilot ones now install, the canary ones do not yet.
  await reportAll([...pilotFailed, ...canaryFailed], (p, b) =>
    b === bundleA && pilotFailed.has(p) ? 'installed' : 'downloading',
  )
  clock.advance(MINUTE)
  await rollouts.poll()
  a = await rollouts.get('os-update')
  say(`state before the measured window: A rings ${a.rings.map((r) => r.status).join(', ')}`)
  await core.close()

  // -------------------------------------------------------------------------------------------
  const earlyFailed = new Set(early.filter((_, i) => i % 20 === 7))
  const canaryMore = at(canary, 0.74, 0.84)
  const outcome = (p: string, b: string): Outcome => {
    if (b === bundleA) {
      if (pilot.includes(p)) return 'installed'
      return earlyFailed.has(p) ? 'failed' : 'installed'
    }
    if (canaryFailed.has(p)) return 'downloading'
    return canaryInstalled.has(p) || canaryMore.has(p) ? 'installed' : 'downloading'
  }
  const order = shuffled(
    devices.map((d) => d.peerId),
    2,
  )
  const samples: number[] = []
  const putSamples: number[] = []
  const heavy: number[] = []
  const idle: number[] = []
  const ringStart: number[] = []
  const ringStartSigning: number[] = []
  const before = clock.now()
  for (let k = 0; k < COPIES; k++) {
    const copy = join(dir, `copy-${k}`)
    await cp(master, copy, { recursive: true })
    clock.set(before)
    core = await openApplianceCore(copy, { clock, log: silentLogger() })
    ;({ rollouts, control } = wire(core, clock))
    // What `appliance start` does first: a pass, which loads the rollouts and the index of
    // assignments. Not one of the measured figures (stderr only).
    let t0 = performance.now()
    await rollouts.poll()
    say(`copy ${k + 1}/${COPIES}: first pass after opening: ${ms(performance.now() - t0)}; ${N} reports`)
    // The agents' reports as they would arrive; building them (the agent's side) is not timed.
    const reports = new Map<string, AgentReportT>()
    for (const p of order) reports.set(p, await agentReport(core, p, hostOf.get(p)!, (b) => outcome(p, b)))
    const mine: number[] = []
    const probes: number[] = []
    for (const [i, p] of order.entries()) {
      mine.push(await send(p, reports.get(p)!))
      if (i % 10 === 9) {
        // Context: a bare synced LevelDB put of a record of the same size, between the reports.
        const value = await core.devices.get(p)
        const t1 = performance.now()
        await core.db.put('bench:probe', value)
        probes.push(performance.now() - t1)
      }
    }
    samples.push(...mine)
    putSamples.push(...probes)
    say(
      `  report p50 ${ms(quantile(mine, 0.5))}, p99 ${ms(quantile(mine, 0.99))}, max ${ms(quantile(mine, 1))}; ` +
        `bare synced put p50 ${ms(quantile(probes, 0.5))}, p99 ${ms(quantile(probes, 0.99))}`,
    )
    clock.advance(MINUTE)
    signing.ms = 0
    t0 = performance.now()
    await rollouts.poll()
    heavy.push(performance.now() - t0)
    a = await rollouts.get('os-update')
    if (a.rings[1]!.status !== 'soaking') throw new Error(`early ring is ${a.rings[1]!.status}, expected soaking`)
    say(
      `  pass with ${early.length + pilotFailed.size + canaryMore.size} new outcomes: ${ms(heavy.at(-1)!)} ` +
        `(of which Assignments.apply ${ms(signing.ms)})`,
    )
    clock.advance(15_000)
    t0 = performance.now()
    await rollouts.poll()
    idle.push(performance.now() - t0)
    say(`  pass with nothing new: ${ms(idle.at(-1)!)}`)
    clock.advance(61 * MINUTE)
    signing.ms = 0
    t0 = performance.now()
    await rollouts.poll()
    ringStart.push(performance.now() - t0)
    ringStartSigning.push(signing.ms)
    a = await rollouts.get('os-update')
    if (a.rings[2]!.status !== 'deploying') throw new Error(`broad ring is ${a.rings[2]!.status}, expected deploying`)
    say(
      `  pass that starts the broad ring (${(await ringOf('os-update', 2)).length} devices): ${ms(ringStart.at(-1)!)} ` +
        `(of which Assignments.apply ${ms(signing.ms)})`,
    )
    if (k === 0) {
      const verified = await core.audit.verify()
      if (!verified.ok) throw new Error('audit chain broken')
      say(`  audit chain verified: ${core.audit.head().seq} records`)
    }
    await core.close()
    await rm(copy, { recursive: true, force: true })
  }

  const result = {
    devices: N,
    report_p99_ms: Number(quantile(samples, 0.99).toFixed(3)),
    evaluation_ms: Number(median(heavy).toFixed(1)),
    evaluation_max_ms: Number(Math.max(...heavy).toFixed(1)),
    evaluation_idle_ms: Number(median(idle).toFixed(1)),
    evaluation_ring_start_ms: Number(median(ringStart).toFixed(1)),
    ring_start_assignments_ms: Number(median(ringStartSigning).toFixed(1)),
    report_p50_ms: Number(quantile(samples, 0.5).toFixed(3)),
    report_samples: samples.length,
    synced_put_p99_ms: Number(quantile(putSamples, 0.99).toFixed(3)),
    peak_rss_bytes: await vmHwm(),
  }
  if (!values.json) say(JSON.stringify(result, null, 2))
  process.stdout.write(`${JSON.stringify(result)}\n`)
} finally {
  await rm(dir, { recursive: true, force: true })
}
