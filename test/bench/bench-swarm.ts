/**
 * npm run bench:swarm -- --agents N --size BYTES --agent-up BYTES_PER_S --appliance-up BYTES_PER_S [--json] [--netns]
 *                       [--chunk-size BYTES (default: the appliance's default chunk size)]
 *
 * A real appliance process and N real agent processes on loopback (or, with --netns, each
 * agent in its own network namespace on a bridge with its upload shaped by tc tbf). The
 * bundle is assigned to every agent at once; each downloads it from its peers and the
 * appliance, installs it and keeps seeding until all are done.
 *
 * Last stdout line, one JSON object:
 *   agents, bytes, seconds_p50, seconds_max (from the assignment to each agent's last
 *   verified chunk), lower_bound_seconds (Kumar–Ross: max(F/u_s, N·F/(u_s + Σu_i))),
 *   ratio (= seconds_max / lower_bound_seconds), appliance_upload_ratio (= bytes the
 *   appliance uploaded / bytes), peer_bytes_fraction (bytes agents got from peers / all bytes
 *   they got), cpu_seconds (user + system CPU of the appliance and every agent process,
 *   from their start to the moment the last agent has the whole bundle; agents run with
 *   --download-only, so installing is not part of it — bench:transfer measures that).
 */

import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { initApplianceDataDir, openApplianceCore } from '../../appliance/core.ts'
import { applianceLayout, readAdminToken } from '../../appliance/data-dir.ts'
import { systemClock } from '../../shared/clock.ts'
import { applianceRequest } from '../../shared/http/appliance-http.ts'
import { silentLogger } from '../../shared/log.ts'
import { CliProcess, runCli, tempDir, writeRandomFile } from '../e2e/harness.ts'
import { setupNetns } from './netns.ts'

const MiB = 1 << 20
const { values } = parseArgs({
  options: {
    agents: { type: 'string', default: '20' },
    size: { type: 'string', default: String(64 * MiB) },
    'agent-up': { type: 'string', default: String(8 * MiB) },
    'appliance-up': { type: 'string', default: String(2 * MiB) },
    'poll-seconds': { type: 'string', default: '0.5' },
    'chunk-size': { type: 'string' },
    netns: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
  },
})
const agents = Number(values.agents)
const size = Number(values.size)
const agentUp = Number(values['agent-up'])
const applianceUp = Number(values['appliance-up'])
if (!(agents >= 1 && size >= 1 && agentUp > 0 && applianceUp > 0)) {
  process.stderr.write('usage: --agents N --size BYTES --agent-up BYTES_PER_S --appliance-up BYTES_PER_S\n')
  process.exit(2)
}
const say = (s: string) => process.stderr.write(`${s}\n`)

/** utime + stime of a process so far, in seconds (0 if it is gone). */
async function cpuSeconds(pid: number): Promise<number> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    // Fields 14 and 15 of /proc/PID/stat (utime, stime) are at 11 and 12 after the name.
    return (Number(fields[11]) + Number(fields[12])) / 100
  } catch {
    return 0
  }
}

/**
 * The in-application upload cap. On loopback it is the scenario's rate itself. With --netns
 * the link is shaped by tc and the application cap sits 5% below it, as an operator would
 * configure it: without an application cap the appliance writes into megabytes of socket
 * buffers, cannot choose what goes out next (super-seeding) and its control answers queue
 * behind bulk data (measured: ratio 5.8 without, 1.4 with).
 */
const appCap = (rate: number) => (values.netns ? Math.floor(rate * 0.95) : rate)
const lowerBound = Math.max(size / applianceUp, (agents * size) / (applianceUp + agents * agentUp))
const dir = await tempDir('bench-swarm')
const procs: CliProcess[] = []
const net = values.netns ? await setupNetns(agents, { agentUp, applianceUp }) : undefined
try {
  const dataDir = join(dir.path, 'appliance')
  await initApplianceDataDir(dataDir, { clock: systemClock })
  const artifact = join(dir.path, 'artifact.bin')
  say(`writing a ${size}-byte random artifact`)
  await writeRandomFile(artifact, size)
  const core = await openApplianceCore(dataDir, { clock: systemClock, log: silentLogger() })
  const chunkSize = values['chunk-size'] === undefined ? undefined : Number(values['chunk-size'])
  const { record } = await core.ingest({
    source: artifact,
    name: 'bench',
    version: '1',
    targetRoot: '/opt/bench',
    ...(chunkSize === undefined ? {} : { chunkSize }),
  })
  const tokens: string[] = []
  for (let i = 0; i < agents; i++) tokens.push((await core.enrollment.createToken()).token)
  await core.close()

  // In netns mode the appliance is shaped by tc on its own link, not in the application.
  const applianceListen = net ? `/ip4/${net.applianceIp}/tcp/0` : '/ip4/127.0.0.1/tcp/0'
  // Plain HTTP stays on the appliance's loopback; agents (in their own namespaces under
  // --netns) enroll over HTTPS, trusting the appliance's web CA by its fingerprint.
  const httpsHost = net ? net.applianceIp : '127.0.0.1'
  const app = new CliProcess(
    [
      'appliance',
      'start',
      '--data',
      dataDir,
      '--http-host',
      '127.0.0.1',
      '--http-port',
      '0',
      '--https-host',
      httpsHost,
      '--https-port',
      '0',
      '--p2p-listen',
      applianceListen,
      '--max-upload-rate',
      String(appCap(applianceUp)),
    ],
    {
      wrap: net?.applianceWrap,
      ...(process.env.BENCH_APPLIANCE_LOG_LEVEL
        ? { env: { PATCHSWARM_LOG_LEVEL: process.env.BENCH_APPLIANCE_LOG_LEVEL } }
        : {}),
    },
  )
  procs.push(app)
  await app.waitForLine((l) => l.startsWith('patchswarm appliance running'), 'appliance start')
  const info = JSON.parse(await readFile(join(dataDir, 'run.json'), 'utf8')) as {
    httpsUrl: string
    webCaFingerprint256: string
  }
  const webCaPem = await readFile(join(dataDir, 'web', 'ca.pem'), 'utf8')

  say(`enrolling ${agents} agents`)
  const agentDirs: string[] = []
  for (let i = 0; i < agents; i++) {
    const agentDir = join(dir.path, `agent${i}`)
    const listen = net ? `/ip4/${net.agentIps[i]}/tcp/0` : '/ip4/127.0.0.1/tcp/0'
    const r = await runCli(
      [
        'agent',
        'enroll',
        '--appliance',
        info.httpsUrl,
        '--web-ca-fingerprint',
        info.webCaFingerprint256,
        '--token',
        tokens[i]!,
        '--data',
        agentDir,
        '--install-root',
        join(dir.path, `root${i}`),
        '--hostname',
        `bench-${i}`,
        '--listen',
        listen,
        '--no-mdns',
        '--json',
      ],
      { wrap: net?.agentWrap(i) },
    )
    if (r.code !== 0) throw new Error(`enroll failed: ${r.stderr}`)
    agentDirs.push(agentDir)
  }

  say(`starting ${agents} agents`)
  for (let i = 0; i < agents; i++) {
    // --download-only: the figure is the swarm's cost; installing is measured by bench:transfer.
    const args = [
      'agent',
      'start',
      '--data',
      agentDirs[i]!,
      '--poll-seconds',
      values['poll-seconds']!,
      '--download-only',
    ]
    args.push('--max-upload-rate', String(appCap(agentUp)))
    // BENCH_AGENT0_NODE_ARGS (e.g. '--cpu-prof --cpu-prof-dir=/tmp/prof') profiles the first agent.
    const nodeArgs = i === 0 ? process.env.BENCH_AGENT0_NODE_ARGS?.split(' ').filter(Boolean) : undefined
    procs.push(new CliProcess(args, { wrap: net?.agentWrap(i), nodeArgs }))
  }
  const agentProcs = procs.slice(1)
  await Promise.all(agentProcs.map((p) => p.waitForLog('agent started', () => true, 120_000)))

  say('assigning the bundle to every agent')
  const t0 = Date.now()
  // The CLI talks to the running appliance over its loopback HTTP: in its namespace under --netns.
  const assigned = await runCli(['appliance', 'assign', 'bench@1', '--all', '--data', dataDir], {
    wrap: net?.applianceWrap,
  })
  if (assigned.code !== 0) throw new Error(`assign failed: ${assigned.stderr}`)
  let finished = 0
  const done = await Promise.all(
    agentProcs.map((p) =>
      p
        .waitForLog('download complete and verified', () => true, 1_800_000)
        .then((e) => {
          finished++
          say(`  ${finished}/${agents} done after ${((Number(e.time) - t0) / 1000).toFixed(1)} s`)
          return e
        }),
    ),
  )
  const seconds = done.map((e) => (Number(e.time) - t0) / 1000).sort((a, b) => a - b)
  const fromPeers = done.reduce((n, e) => n + Number(e.bytesFromPeers ?? 0), 0)
  const fromAppliance = done.reduce((n, e) => n + Number(e.bytesFromAppliance ?? 0), 0)
  // Off loopback (--netns: the request comes from the bridge address) the status API needs
  // the admin token; without it the answer is a 401 and the counters would read as 0.
  const adminToken = await readAdminToken(applianceLayout(dataDir))
  const statusRes = await applianceRequest(new URL('/api/v1/status', info.httpsUrl), {
    caPem: webCaPem,
    headers: { authorization: `Bearer ${adminToken}` },
    maxBytes: 16 << 20,
  })
  if (statusRes.status !== 200) throw new Error(`GET /api/v1/status: HTTP ${statusRes.status}: ${statusRes.text}`)
  const status = JSON.parse(statusRes.text) as {
    swarm?: Array<{ bundleId: string; applianceBytesServed: number }>
  }
  const applianceBytes = status.swarm?.find((s) => s.bundleId === record.bundleId)?.applianceBytesServed ?? 0
  let cpu = 0
  for (const p of procs) cpu += await cpuSeconds(p.child.pid!)

  if (process.env.BENCH_APPLIANCE_LOG) await writeFile(process.env.BENCH_APPLIANCE_LOG, app.lines.join('\n'))
  const outcomes: Record<string, number> = {}
  for (const e of done)
    for (const [k, v] of Object.entries((e.requests ?? {}) as Record<string, number>))
      outcomes[k] = (outcomes[k] ?? 0) + v
  say(`request outcomes over all agents: ${JSON.stringify(outcomes)}`)
  for (const p of procs)
    say(`  cpu ${(await cpuSeconds(p.child.pid!)).toFixed(1)} s  ${p.child.spawnargs.slice(3, 5).join(' ')}`)
  const secondsMax = seconds[seconds.length - 1]!
  const result = {
    agents,
    bytes: size,
    seconds_p50: Number(seconds[Math.floor((seconds.length - 1) / 2)]!.toFixed(2)),
    seconds_max: Number(secondsMax.toFixed(2)),
    lower_bound_seconds: Number(lowerBound.toFixed(2)),
    ratio: Number((secondsMax / lowerBound).toFixed(3)),
    appliance_upload_ratio: Number((applianceBytes / size).toFixed(3)),
    peer_bytes_fraction: Number((fromPeers / Math.max(1, fromPeers + fromAppliance)).toFixed(3)),
    cpu_seconds: Number(cpu.toFixed(1)),
    chunk_size: record.chunkSize,
    mode: net ? 'netns' : 'loopback',
  }
  if (!values.json) say(JSON.stringify(result, null, 2))
  process.stdout.write(`${JSON.stringify(result)}\n`)
} finally {
  await Promise.all(procs.map((p) => p.stop()))
  await net?.teardown()
  await dir.cleanup()
}
