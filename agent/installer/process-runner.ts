/**
 * Runs installer and health-check processes: argv only (no shell), a replaced environment,
 * a timeout that kills the whole process group (TERM, then KILL after a grace period), an
 * AbortSignal, and bounded capture (the last bytes of stdout and stderr).
 *
 * POSIX: the child leads a new process group (`detached`), so `kill(-pid)` reaches everything
 * it started that did not leave the group. Windows (untested here): `taskkill /T /F` on the tree.
 */
import { type ChildProcessByStdio, spawn } from 'node:child_process'
import type { Readable } from 'node:stream'

/** Default bytes kept of each of stdout and stderr (the tail). */
export const DEFAULT_OUTPUT_TAIL = 16 << 10

/** One process to run. */
export interface RunRequest {
  /** Program and arguments; the program is looked up on `env.PATH` when it has no slash. */
  argv: readonly string[]
  /** The whole environment of the child (nothing is inherited). */
  env: Record<string, string>
  cwd?: string
  timeoutMs: number
  signal?: AbortSignal
  /** Bytes kept of each stream (the last ones). Default {@link DEFAULT_OUTPUT_TAIL}. */
  maxOutputBytes?: number
  /** Between TERM and KILL of the process group after a timeout or abort. Default 5000. */
  killGraceMs?: number
}

/** How a process ended. */
export interface RunResult {
  /** Exit code, or null when it was killed by a signal or never started. */
  exitCode: number | null
  signal: string | null
  timedOut: boolean
  aborted: boolean
  /** Why the process could not be started (e.g. ENOENT), if it was not. */
  spawnError?: string
  /** Tails of the output (UTF-8, the first character may be cut). */
  stdout: string
  stderr: string
  /** Whether output was dropped from the front of either stream. */
  truncated: boolean
  durationMs: number
}

/** Runs processes; injected so that tests can fake `systemctl` and friends. */
export interface ProcessRunner {
  run(request: RunRequest): Promise<RunResult>
}

/** Keeps the last `max` bytes written to it. */
export class TailBuffer {
  #chunks: Buffer[] = []
  #size = 0
  #dropped = false
  constructor(readonly max: number) {}
  push(chunk: Buffer): void {
    this.#chunks.push(chunk)
    this.#size += chunk.length
    while (this.#size - (this.#chunks[0]?.length ?? 0) >= this.max) {
      this.#size -= this.#chunks.shift()!.length
      this.#dropped = true
    }
  }
  get truncated(): boolean {
    return this.#dropped || this.#size > this.max
  }
  toString(): string {
    const all = Buffer.concat(this.#chunks)
    return all.subarray(Math.max(0, all.length - this.max)).toString('utf8')
  }
}

/** The last `max` characters of `text` (for logs built from several tails). */
export function tailText(text: string, max = DEFAULT_OUTPUT_TAIL): string {
  return text.length <= max ? text : `…${text.slice(text.length - max + 1)}`
}

const POSIX_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
const WINDOWS_PASS = ['SystemRoot', 'windir', 'ComSpec', 'PATHEXT', 'ProgramData', 'ProgramFiles', 'ProgramFiles(x86)']

/**
 * A small, fixed environment for installer children: a standard PATH and C locale on POSIX
 * (nothing from the agent's own environment), the few system variables Windows programs need.
 */
export function limitedEnv(
  extra: Record<string, string> = {},
  platform: string = process.platform,
): Record<string, string> {
  if (platform !== 'win32') return { PATH: POSIX_PATH, LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8', ...extra }
  const env: Record<string, string> = {}
  for (const name of [...WINDOWS_PASS, 'PATH', 'Path']) {
    const value = process.env[name]
    if (value !== undefined) env[name] = value
  }
  return { ...env, ...extra }
}

function killTree(pid: number, signal: NodeJS.Signals): void {
  if (process.platform === 'win32') {
    // Untested off Windows: taskkill ends the process and everything it started.
    spawn('taskkill', ['/pid', String(pid), '/T', '/F'], { stdio: 'ignore', windowsHide: true }).on('error', () => {})
    return
  }
  try {
    process.kill(-pid, signal)
  } catch {
    // ESRCH: the group is gone already.
  }
}

/** How long to keep reading after the process exited (a detached grandchild may hold the pipes). */
const DRAIN_AFTER_EXIT_MS = 2000

const notStarted = (spawnError: string | undefined, aborted: boolean): RunResult => ({
  exitCode: null,
  signal: null,
  timedOut: false,
  aborted,
  ...(spawnError === undefined ? {} : { spawnError }),
  stdout: '',
  stderr: '',
  truncated: false,
  durationMs: 0,
})

/** The real runner (node:child_process). */
export function createProcessRunner(): ProcessRunner {
  return {
    run(req) {
      const max = req.maxOutputBytes ?? DEFAULT_OUTPUT_TAIL
      const grace = req.killGraceMs ?? 5000
      const out = new TailBuffer(max)
      const err = new TailBuffer(max)
      const started = performance.now()
      return new Promise<RunResult>((resolve) => {
        let timedOut = false
        let aborted = false
        let spawnError: string | undefined
        let exit: { code: number | null; signal: string | null } | undefined
        const timers: NodeJS.Timeout[] = []
        const [file, ...args] = req.argv
        if (file === undefined || req.signal?.aborted) {
          resolve(notStarted(file === undefined ? 'empty argv' : undefined, !!req.signal?.aborted))
          return
        }
        let child: ChildProcessByStdio<null, Readable, Readable>
        try {
          child = spawn(file, args, {
            cwd: req.cwd,
            env: req.env,
            detached: process.platform !== 'win32',
            stdio: ['ignore', 'pipe', 'pipe'],
            windowsHide: true,
          })
        } catch (e) {
          // Invalid arguments (a NUL byte in argv or env) throw synchronously.
          resolve(notStarted((e as Error).message, false))
          return
        }
        child.stdout.on('data', (c: Buffer) => out.push(c))
        child.stderr.on('data', (c: Buffer) => err.push(c))
        let done = false
        const finish = () => {
          if (done) return
          done = true
          for (const t of timers) clearTimeout(t)
          req.signal?.removeEventListener('abort', onAbort)
          child.stdout.destroy()
          child.stderr.destroy()
          resolve({
            exitCode: exit?.code ?? null,
            signal: exit?.signal ?? null,
            timedOut,
            aborted,
            ...(spawnError === undefined ? {} : { spawnError }),
            stdout: out.toString(),
            stderr: err.toString(),
            truncated: out.truncated || err.truncated,
            durationMs: Math.round(performance.now() - started),
          })
        }
        const stop = () => {
          if (child.pid === undefined || exit !== undefined) return
          killTree(child.pid, 'SIGTERM')
          const t = setTimeout(() => child.pid !== undefined && killTree(child.pid, 'SIGKILL'), grace)
          t.unref()
          timers.push(t)
        }
        const onAbort = () => {
          aborted = true
          stop()
        }
        req.signal?.addEventListener('abort', onAbort, { once: true })
        const timer = setTimeout(() => {
          timedOut = true
          stop()
        }, req.timeoutMs)
        timers.push(timer)
        child.on('error', (e: NodeJS.ErrnoException) => {
          // Only a failed spawn has no pid; other errors (a failed kill) end in 'exit' anyway.
          if (child.pid !== undefined) return
          spawnError = `${e.code ?? 'error'}: ${e.message}`
          finish()
        })
        child.on('exit', (code, signal) => {
          exit = { code, signal }
          clearTimeout(timer)
          // After a timeout, make sure nothing of the group survives the leader.
          if (timedOut || aborted) killTree(child.pid!, 'SIGKILL')
          timers.push(setTimeout(finish, DRAIN_AFTER_EXIT_MS))
        })
        child.on('close', finish)
      })
    },
  }
}

/** One line describing how a run ended, for messages and logs. */
export function describeRun(r: RunResult, seconds?: number): string {
  if (r.spawnError !== undefined) return `could not be started (${r.spawnError})`
  if (r.timedOut) return `timed out${seconds === undefined ? '' : ` after ${seconds} s`} and was killed`
  if (r.aborted) return 'was aborted'
  if (r.exitCode === null) return `was killed by ${r.signal}`
  return `exited with ${r.exitCode}`
}

/** The last non-empty line of a run's stderr (or stdout), for one-line error messages. */
export function lastLine(r: RunResult): string {
  const lines = `${r.stdout}\n${r.stderr}`.split('\n').filter((l) => l.trim() !== '')
  const errLines = r.stderr.split('\n').filter((l) => l.trim() !== '')
  return (errLines.at(-1) ?? lines.at(-1) ?? '').trim().slice(0, 300)
}

/** The bounded output of a run as structured error details. */
export function runDetails(r: RunResult): Record<string, unknown> {
  return {
    exitCode: r.exitCode,
    signal: r.signal,
    timedOut: r.timedOut,
    ...(r.spawnError === undefined ? {} : { spawnError: r.spawnError }),
    stdout: r.stdout,
    stderr: r.stderr,
    outputTruncated: r.truncated,
  }
}
