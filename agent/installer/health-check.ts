/**
 * Health checks declared in the manifest, run after an install: a command that must exit 0,
 * a service that must be running (`systemctl is-active`; Windows: `sc.exe query`), a local
 * TCP port that must accept a connection. All checks must pass in one round; a failed round is
 * retried `retries` times after `retryDelaySeconds` (default 5); `timeoutSeconds` bounds the
 * whole thing, retries included. Processes go through an injected {@link ProcessRunner}.
 */
import { connect } from 'node:net'
import { setTimeout as sleepFor } from 'node:timers/promises'
import { type Logger, silentLogger } from '../../shared/log.ts'
import type { HealthCheckT, HealthSpecT } from '../../shared/metadata/manifest-schema.ts'
import {
  createProcessRunner,
  describeRun,
  lastLine,
  limitedEnv,
  type ProcessRunner,
  tailText,
} from './process-runner.ts'

/** Default pause between two rounds of checks. */
export const DEFAULT_RETRY_DELAY_SECONDS = 5
/** Limit of one service or TCP check (the whole health check's deadline may cut it shorter). */
export const DEFAULT_PROBE_TIMEOUT_MS = 10_000

/** The outcome of one check in the last round. */
export interface HealthCheckResult {
  check: HealthCheckT
  ok: boolean
  detail: string
  durationMs: number
}

/** The outcome of a manifest's health check. */
export interface HealthResult {
  ok: boolean
  /** Rounds run. */
  attempts: number
  /** Results of the last round. */
  results: HealthCheckResult[]
  /** Every round, one line per check (bounded). */
  log: string
}

export interface HealthCheckerOptions {
  runner?: ProcessRunner
  platform?: string
  log?: Logger
  /** Pause between rounds; rejects when `signal` aborts. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>
  /** Monotonic milliseconds. */
  now?: () => number
  probeTimeoutMs?: number
}

export interface HealthChecker {
  run(spec: HealthSpecT, signal?: AbortSignal): Promise<HealthResult>
}

/** One line naming a check, for logs. */
export function describeCheck(check: HealthCheckT): string {
  switch (check.type) {
    case 'command':
      return `command ${JSON.stringify(check.argv).slice(0, 200)}`
    case 'service':
      return `service ${check.name}`
    case 'tcp-port':
      return `tcp ${check.host ?? '127.0.0.1'}:${check.port}`
  }
}

/** The command that asks whether a service runs; undefined where there is no service manager we know. */
export function serviceArgv(name: string, platform: string): string[] | undefined {
  if (platform === 'linux') return ['systemctl', 'is-active', '--', name]
  if (platform === 'win32') return ['sc.exe', 'query', name]
  return undefined
}

/** Connects to host:port: true on connect, else why not (refused, error, timeout, aborted). */
export function probeTcp(host: string, port: number, timeoutMs: number, signal?: AbortSignal): Promise<string | true> {
  return new Promise((resolve) => {
    const socket = connect({ host, port })
    const done = (result: string | true) => {
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
      socket.destroy()
      resolve(result)
    }
    const onAbort = () => done('aborted')
    const timer = setTimeout(() => done(`no connection within ${timeoutMs} ms`), timeoutMs)
    signal?.addEventListener('abort', onAbort, { once: true })
    socket.once('connect', () => done(true))
    socket.once('error', (err: NodeJS.ErrnoException) => done(err.code ?? err.message))
  })
}

/** Creates a health checker. */
export function createHealthChecker(options: HealthCheckerOptions = {}): HealthChecker {
  const runner = options.runner ?? createProcessRunner()
  const platform = options.platform ?? process.platform
  const log = options.log ?? silentLogger()
  const sleep = options.sleep ?? ((ms, signal) => sleepFor(ms, undefined, signal ? { signal } : {}))
  const now = options.now ?? (() => performance.now())
  const probeMs = options.probeTimeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS

  async function runCheck(check: HealthCheckT, budgetMs: number, signal?: AbortSignal) {
    const env = limitedEnv({}, platform)
    const cwd = platform === 'win32' ? undefined : '/'
    switch (check.type) {
      case 'command': {
        const seconds = check.timeoutSeconds
        const r = await runner.run({
          argv: check.argv,
          env,
          ...(cwd ? { cwd } : {}),
          timeoutMs: Math.min(seconds * 1000, budgetMs),
          ...(signal ? { signal } : {}),
          killGraceMs: 1000,
        })
        const line = lastLine(r)
        return { ok: r.exitCode === 0, detail: `${describeRun(r, seconds)}${line ? `: ${line}` : ''}` }
      }
      case 'service': {
        const argv = serviceArgv(check.name, platform)
        if (argv === undefined) return { ok: false, detail: `service checks are not supported on ${platform}` }
        const r = await runner.run({
          argv,
          env,
          ...(cwd ? { cwd } : {}),
          timeoutMs: Math.min(probeMs, budgetMs),
          ...(signal ? { signal } : {}),
          killGraceMs: 1000,
        })
        const running = platform === 'win32' ? /STATE\s*:\s*4\s+RUNNING/.test(r.stdout) : true
        const state = (platform === 'win32' ? lastLine(r) : r.stdout.trim().split('\n')[0]) || describeRun(r)
        return { ok: r.exitCode === 0 && running, detail: state.slice(0, 200) }
      }
      case 'tcp-port': {
        const host = check.host ?? '127.0.0.1'
        const result = await probeTcp(host, check.port, Math.min(probeMs, budgetMs), signal)
        return { ok: result === true, detail: result === true ? 'connected' : result }
      }
    }
  }

  async function run(spec: HealthSpecT, signal?: AbortSignal): Promise<HealthResult> {
    const deadline = now() + spec.timeoutSeconds * 1000
    const rounds = (spec.retries ?? 0) + 1
    const delayMs = (spec.retryDelaySeconds ?? DEFAULT_RETRY_DELAY_SECONDS) * 1000
    const lines: string[] = []
    let results: HealthCheckResult[] = []
    let attempts = 0
    while (attempts < rounds) {
      attempts++
      results = []
      for (const check of spec.checks) {
        const started = now()
        const budget = deadline - started
        const outcome =
          budget <= 0
            ? { ok: false, detail: `the health check's ${spec.timeoutSeconds} s are used up` }
            : await runCheck(check, budget, signal)
        results.push({ check, ...outcome, durationMs: Math.round(now() - started) })
        lines.push(`attempt ${attempts}: ${describeCheck(check)}: ${outcome.ok ? 'ok' : 'FAILED'} (${outcome.detail})`)
      }
      if (results.every((r) => r.ok)) break
      if (attempts >= rounds || signal?.aborted || deadline - now() <= 0) break
      const failing = results.filter((r) => !r.ok).map((r) => describeCheck(r.check))
      log.info({ attempt: attempts, failing }, 'health check failed; retrying')
      const ok = await sleep(Math.min(delayMs, Math.max(0, deadline - now())), signal).then(
        () => true,
        () => false,
      )
      if (!ok || deadline - now() <= 0) break
    }
    const ok = results.length > 0 && results.every((r) => r.ok)
    return { ok, attempts, results, log: tailText(lines.join('\n')) }
  }

  return { run }
}
