import { type ChildProcess, spawn } from 'node:child_process'
import { randomFillSync } from 'node:crypto'
import { mkdtemp, open, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { RunInfo } from '../../appliance/appliance.ts'

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
export const CLI = join(REPO, 'bin', 'patchswarm.js')

export interface RunResult {
  code: number | null
  stdout: string
  stderr: string
}

/** A real child process running the patchswarm CLI, with its output lines observable. */
export class CliProcess {
  readonly child: ChildProcess
  readonly lines: string[] = []
  readonly stdout: string[] = []
  readonly stderr: string[] = []
  readonly exited: Promise<number | null>
  #waiters: Array<{ test: (line: string) => boolean; resolve: (line: string) => void }> = []

  constructor(
    args: string[],
    options: { cwd?: string; env?: NodeJS.ProcessEnv; nodeArgs?: string[]; wrap?: string[]; script?: string } = {},
  ) {
    // The same V8 flag as the launcher's shebang (bin/patchswarm.js). `wrap` runs it under
    // another command (e.g. `ip netns exec NS`). `script` runs that TypeScript file (a test
    // helper) with bin/run-ts.js instead of the patchswarm CLI.
    const entry = options.script ? [join(REPO, 'bin', 'run-ts.js'), options.script] : [CLI]
    const command = [process.execPath, '--max-semi-space-size=1', ...(options.nodeArgs ?? []), ...entry, ...args]
    const full = [...(options.wrap ?? []), ...command]
    this.child = spawn(full[0]!, full.slice(1), {
      cwd: options.cwd ?? REPO,
      env: { ...process.env, PATCHSWARM_LOG_LEVEL: 'info', ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    for (const [stream, sink] of [
      [this.child.stdout!, this.stdout],
      [this.child.stderr!, this.stderr],
    ] as const) {
      let buf = ''
      stream.setEncoding('utf8')
      stream.on('data', (d: string) => {
        buf += d
        let nl = buf.indexOf('\n')
        while (nl >= 0) {
          sink.push(buf.slice(0, nl))
          this.#line(buf.slice(0, nl))
          buf = buf.slice(nl + 1)
          nl = buf.indexOf('\n')
        }
      })
    }
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)))
  }

  #line(line: string): void {
    this.lines.push(line)
    this.#waiters = this.#waiters.filter((w) => {
      if (!w.test(line)) return true
      w.resolve(line)
      return false
    })
  }

  /** Resolves with the first line (past or future) that passes `test`; rejects if the process exits first. */
  waitForLine(test: (line: string) => boolean, what: string, timeoutMs = 30_000): Promise<string> {
    const seen = this.lines.find(test)
    if (seen !== undefined) return Promise.resolve(seen)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`timed out waiting for ${what}; output:\n${this.tail()}`)),
        timeoutMs,
      )
      this.#waiters.push({
        test,
        resolve: (l) => {
          clearTimeout(timer)
          resolve(l)
        },
      })
      void this.exited.then((code) => {
        clearTimeout(timer)
        reject(new Error(`process exited (${code}) before ${what}; output:\n${this.tail()}`))
      })
    })
  }

  /** Waits for a pino log line with this `msg` (and optionally more conditions). */
  waitForLog(msg: string, extra: (entry: Record<string, unknown>) => boolean = () => true, timeoutMs?: number) {
    return this.waitForLine(
      (l) => {
        const e = parseLog(l)
        return e?.msg === msg && extra(e)
      },
      `log '${msg}'`,
      timeoutMs,
    ).then((l) => parseLog(l)!)
  }

  logs(): Record<string, unknown>[] {
    return this.lines.map(parseLog).filter((e): e is Record<string, unknown> => e !== undefined)
  }

  tail(n = 30): string {
    return this.lines.slice(-n).join('\n')
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal)
    return this.exited
  }
}

export function parseLog(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith('{')) return undefined
  try {
    return JSON.parse(line) as Record<string, unknown>
  } catch {
    return undefined
  }
}

/** Runs a CLI command to completion. */
export async function runCli(
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; wrap?: string[]; script?: string } = {},
): Promise<RunResult> {
  const p = new CliProcess(args, options)
  const code = await p.exited
  // 'exit' can fire before the pipes are drained; wait for both to close.
  await Promise.all(
    [p.child.stdout, p.child.stderr].map((s) =>
      s?.closed ? undefined : new Promise<void>((r) => s?.once('close', () => r())),
    ),
  )
  return { code, stdout: p.stdout.join('\n'), stderr: p.stderr.join('\n') }
}

export async function tempDir(prefix: string): Promise<{ path: string; cleanup: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), `psw-${prefix}-`))
  return { path, cleanup: () => rm(path, { recursive: true, force: true }) }
}

/** Writes `size` random bytes to `path` from one reused 1 MiB buffer (bounded memory, no garbage). */
export async function writeRandomFile(path: string, size: number): Promise<void> {
  const block = Buffer.allocUnsafeSlow(1 << 20)
  const fh = await open(path, 'w')
  try {
    for (let off = 0; off < size; off += block.length) {
      const n = Math.min(block.length, size - off)
      randomFillSync(block, 0, n)
      await fh.write(block, 0, n, off)
    }
  } finally {
    await fh.close()
  }
}

export interface RunningAppliance {
  proc: CliProcess
  info: RunInfo
  dataDir: string
}

/**
 * Starts `patchswarm appliance start` on 127.0.0.1 with port 0 for HTTP, HTTPS and libp2p
 * (`info.httpUrl` is the loopback plain-HTTP URL, `info.httpsUrl` the HTTPS one); `extraArgs`
 * are more options of `appliance start` (e.g. `--max-upload-rate`).
 */
export async function startAppliance(
  dataDir: string,
  nodeArgs?: string[],
  extraArgs: string[] = [],
): Promise<RunningAppliance> {
  const proc = new CliProcess(
    [
      'appliance',
      'start',
      '--data',
      dataDir,
      '--http-port',
      '0',
      '--https-host',
      '127.0.0.1',
      '--https-port',
      '0',
      '--p2p-listen',
      '/ip4/127.0.0.1/tcp/0',
      ...extraArgs,
    ],
    { nodeArgs },
  )
  await proc.waitForLine((l) => l.startsWith('patchswarm appliance running'), 'appliance start')
  const info = JSON.parse(await readFile(join(dataDir, 'run.json'), 'utf8')) as RunInfo
  return { proc, info, dataDir }
}

/** Creates a token and enrolls an agent; returns its PeerId. */
export async function enroll(
  app: RunningAppliance,
  agentDir: string,
  installRoot: string,
  hostname: string,
): Promise<string> {
  const token = await runCli(['appliance', 'token', '--data', app.dataDir, '--json'])
  if (token.code !== 0) throw new Error(`token failed: ${token.stdout}\n${token.stderr}`)
  const t = JSON.parse(token.stdout) as { token: string; rootFingerprint: string }
  const r = await runCli([
    'agent',
    'enroll',
    '--appliance',
    app.info.httpUrl,
    '--token',
    t.token,
    '--root-fingerprint',
    t.rootFingerprint,
    '--data',
    agentDir,
    '--install-root',
    installRoot,
    '--hostname',
    hostname,
    '--listen',
    '/ip4/127.0.0.1/tcp/0',
    // Tests stay on loopback: no multicast onto the machine's real network.
    '--no-mdns',
    '--json',
  ])
  if (r.code !== 0) throw new Error(`enroll failed: ${r.stdout}\n${r.stderr}`)
  return (JSON.parse(r.stdout) as { peerId: string }).peerId
}

export async function ingest(app: RunningAppliance, source: string, name: string, version: string, targetRoot: string) {
  const r = await runCli([
    'appliance',
    'ingest',
    source,
    '--data',
    app.dataDir,
    '--name',
    name,
    '--version',
    version,
    '--target-root',
    targetRoot,
    '--json',
  ])
  if (r.code !== 0) throw new Error(`ingest failed: ${r.stdout}\n${r.stderr}`)
  return JSON.parse(r.stdout) as { record: { bundleId: string; chunks: number; size: number; manifestVersion: number } }
}

export async function assign(app: RunningAppliance, bundle: string, device: string) {
  const r = await runCli(['appliance', 'assign', bundle, '--device', device, '--data', app.dataDir, '--json'])
  if (r.code !== 0) throw new Error(`assign failed: ${r.stdout}\n${r.stderr}`)
  return JSON.parse(r.stdout) as { devices: Array<{ version: number }> }
}

/**
 * A GET on the appliance's API with the admin token of its data directory (every route but
 * health and enrollment needs a principal, loopback included).
 */
export async function adminGet(app: { dataDir: string; info: { httpUrl: string } }, path: string): Promise<Response> {
  const token = (await readFile(join(app.dataDir, 'admin.token'), 'utf8')).trim()
  return fetch(new URL(path, app.info.httpUrl), { headers: { authorization: `Bearer ${token}` } })
}

/** A request to the running appliance with its admin token (loopback HTTP); throws unless 2xx. */
export async function adminApi(
  app: { dataDir: string; info: { httpUrl: string } },
  method: string,
  path: string,
  body?: unknown,
): Promise<Response> {
  const token = (await readFile(join(app.dataDir, 'admin.token'), 'utf8')).trim()
  const res = await fetch(new URL(path, app.info.httpUrl), {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  })
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`)
  return res
}

export async function applianceStatus(app: RunningAppliance) {
  const res = await adminGet(app, '/api/v1/status')
  return (await res.json()) as {
    devices: Array<{
      peerId: string
      report?: {
        refused?: { code: string }
        bundles: Array<{
          bundleId: string
          state: string
          error?: { code: string }
          transfer: { bytesFromAppliance: number; bytesFromPeers: number; bytesServed: number }
        }>
      }
    }>
    swarm?: Array<{ bundleId: string; applianceBytesServed: number; members: number; complete: number }>
  }
}
