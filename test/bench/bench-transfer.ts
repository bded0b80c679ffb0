/**
 * npm run bench:transfer -- [--size BYTES] [--window N] [--json]
 *
 * One agent process fetches a bundle (default 512 MiB) from an appliance process over
 * loopback; in the same run a plain libp2p stream between two processes is the baseline.
 * Last stdout line: { bytes, seconds, mb_per_s, raw_libp2p_mb_per_s, ratio,
 * agent_peak_rss_bytes, agent_peak_rss_bytes_with_install, disk_write_fsync_mb_per_s }
 * (MB = 10^6 bytes; seconds = the agent's download, from the first request to the last
 * verified chunk fsynced; agent_peak_rss_bytes = the agent process's VmHWM from its start to
 * the end of the fetch; _with_install = until the process exits after installing).
 */
import { spawn } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { initApplianceDataDir, openApplianceCore } from '../../appliance/core.ts'
import { systemClock } from '../../shared/clock.ts'
import { silentLogger } from '../../shared/log.ts'
import { CliProcess, REPO, runCli, startAppliance, tempDir, writeRandomFile } from '../e2e/harness.ts'
import { diskWriteFsync } from './disk-speed.ts'

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: String(512 << 20) },
    window: { type: 'string' },
    json: { type: 'boolean', default: false },
  },
})
const size = Number(values.size)
const say = (s: string) => process.stderr.write(`${s}\n`)

async function peakRss(pid: number): Promise<number> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8')
    const m = /VmHWM:\s+(\d+) kB/.exec(status)
    return m ? Number(m[1]) * 1024 : 0
  } catch {
    return 0
  }
}

async function rawBaseline(bytes: number): Promise<number> {
  const runner = join(REPO, 'bin', 'run-ts.js')
  const script = join(REPO, 'test', 'bench', 'raw-libp2p-peer.ts')
  const server = spawn(process.execPath, [runner, script, 'serve', String(bytes)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  const first = await new Promise<string>((resolve) => {
    let buf = ''
    server.stdout.on('data', (d: Buffer) => {
      buf += d.toString()
      if (buf.includes('\n')) resolve(buf.slice(0, buf.indexOf('\n')))
    })
  })
  const { peerId, addrs } = JSON.parse(first) as { peerId: string; addrs: string[] }
  const client = spawn(process.execPath, [runner, script, 'fetch', peerId, JSON.stringify(addrs), String(bytes)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  let out = ''
  client.stdout.on('data', (d: Buffer) => {
    out += d.toString()
  })
  const code = await new Promise<number | null>((r) => client.on('exit', r))
  server.stdin.end()
  await new Promise((r) => server.on('exit', r))
  if (code !== 0) throw new Error(`raw libp2p fetch failed (${code})`)
  const r = JSON.parse(out.trim()) as { bytes: number; seconds: number }
  return r.bytes / 1e6 / r.seconds
}

const dir = await tempDir('bench-transfer')
try {
  const dataDir = join(dir.path, 'appliance')
  await initApplianceDataDir(dataDir, { clock: systemClock })
  const artifact = join(dir.path, 'artifact.bin')
  say(`writing a ${size}-byte random artifact`)
  await writeRandomFile(artifact, size)
  const core = await openApplianceCore(dataDir, { clock: systemClock, log: silentLogger() })
  await core.ingest({ source: artifact, name: 'bench', version: '1', targetRoot: '/opt/bench' })
  const { token } = await core.enrollment.createToken()
  await core.close()

  const app = await startAppliance(dataDir)
  try {
    const agentDir = join(dir.path, 'agent')
    const enrolled = await runCli([
      'agent',
      'enroll',
      '--appliance',
      app.info.httpUrl,
      '--token',
      token,
      '--data',
      agentDir,
      '--install-root',
      join(dir.path, 'root'),
      '--listen',
      '/ip4/127.0.0.1/tcp/0',
      '--json',
    ])
    if (enrolled.code !== 0) throw new Error(enrolled.stderr)
    const peer = (JSON.parse(enrolled.stdout) as { peerId: string }).peerId
    if (values.window) {
      const configPath = join(agentDir, 'agent.json')
      const config = JSON.parse(await readFile(configPath, 'utf8')) as Record<string, unknown>
      await writeFile(configPath, JSON.stringify({ ...config, requestWindow: Number(values.window) }))
    }
    const assigned = await runCli(['appliance', 'assign', 'bench@1', '--device', peer, '--data', dataDir])
    if (assigned.code !== 0) throw new Error(assigned.stderr)

    say('agent downloading from the appliance')
    const agent = new CliProcess(['agent', 'start', '--data', agentDir, '--once'], {
      nodeArgs: process.env.BENCH_AGENT_NODE_ARGS?.split(' ').filter(Boolean),
    })
    let peak = 0
    const poll = setInterval(() => {
      void peakRss(agent.child.pid!).then((v) => {
        peak = Math.max(peak, v)
      })
    }, 25)
    const done = await agent.waitForLog('download complete and verified', () => true, 600_000)
    const downloadPeak = await peakRss(agent.child.pid!)
    say(`agent peak RSS at the end of the download: ${(downloadPeak / 1048576).toFixed(0)} MiB`)
    peak = Math.max(peak, downloadPeak)
    const code = await agent.exited
    clearInterval(poll)
    say(`agent peak RSS over the whole run (download + install): ${(peak / 1048576).toFixed(0)} MiB`)
    if (code !== 0) throw new Error(`agent failed:\n${agent.tail()}`)
    const seconds = Number(done.seconds)

    say('baseline: plain libp2p stream between two processes')
    const raw = await rawBaseline(size)
    say('disk: write the same number of bytes and fsync (what a durable download must at least do)')
    const disk = await diskWriteFsync(join(dir.path, 'disk-test.bin'), size)
    const mbPerS = size / 1e6 / seconds
    const result = {
      bytes: size,
      seconds: Number(seconds.toFixed(3)),
      mb_per_s: Number(mbPerS.toFixed(1)),
      raw_libp2p_mb_per_s: Number(raw.toFixed(1)),
      ratio: Number((mbPerS / raw).toFixed(3)),
      agent_peak_rss_bytes: downloadPeak,
      // Context: the same process's peak over the whole run, including the install that follows.
      agent_peak_rss_bytes_with_install: peak,
      // Context, not part of the goal: the disk bounds every durable download.
      disk_write_fsync_mb_per_s: Number(disk.toFixed(1)),
    }
    if (!values.json) say(JSON.stringify(result, null, 2))
    process.stdout.write(`${JSON.stringify(result)}\n`)
  } finally {
    await app.proc.stop()
  }
} finally {
  await dir.cleanup()
}
