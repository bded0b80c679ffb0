import { createServer, type Server } from 'node:net'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { HealthSpecT } from '../../shared/metadata/manifest-schema.ts'
import { createHealthChecker, serviceArgv } from './health-check.ts'
import type { ProcessRunner, RunRequest, RunResult } from './process-runner.ts'

const result = (exitCode: number | null, stdout = '', extra: Partial<RunResult> = {}): RunResult => ({
  exitCode,
  signal: null,
  timedOut: false,
  aborted: false,
  stdout,
  stderr: '',
  truncated: false,
  durationMs: 1,
  ...extra,
})

/** A runner that answers from a script of results and records what it was asked to run. */
function fakeRunner(answers: RunResult[]): ProcessRunner & { calls: RunRequest[] } {
  const calls: RunRequest[] = []
  return {
    calls,
    run: async (req) => {
      calls.push(req)
      return answers.shift() ?? result(1, 'no more answers')
    },
  }
}

const spec = (checks: HealthSpecT['checks'], extra: Partial<HealthSpecT> = {}): HealthSpecT => ({
  checks,
  timeoutSeconds: 20,
  ...extra,
})

describe.skipIf(process.platform === 'win32')('health check: real commands and ports', () => {
  let server: Server
  let port: number
  beforeEach(async () => {
    server = createServer((s) => s.end())
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    port = (server.address() as { port: number }).port
  })
  afterEach(() => new Promise<void>((resolve) => server.close(() => resolve())))

  it('passes when the command exits 0 and the port accepts connections', async () => {
    const r = await createHealthChecker().run(
      spec([
        { type: 'command', argv: ['sh', '-c', 'echo fine; exit 0'], timeoutSeconds: 5 },
        { type: 'tcp-port', port, host: '127.0.0.1' },
      ]),
    )
    expect(r).toMatchObject({ ok: true, attempts: 1 })
    expect(r.results.map((x) => x.ok)).toEqual([true, true])
    expect(r.log).toMatch(/tcp 127\.0\.0\.1:\d+: ok \(connected\)/)
  })

  it('fails on a non-zero exit, a command that does not exist, and a port nobody listens on', async () => {
    // A port that was just free: listen on port 0, note the port, close.
    const probe = createServer()
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
    const closedPort = (probe.address() as { port: number }).port
    await new Promise<void>((resolve) => probe.close(() => resolve()))
    const r = await createHealthChecker().run(
      spec([
        { type: 'command', argv: ['sh', '-c', 'echo broken >&2; exit 1'], timeoutSeconds: 5 },
        { type: 'command', argv: ['/nonexistent/psw-check'], timeoutSeconds: 5 },
        { type: 'tcp-port', port: closedPort },
      ]),
    )
    expect(r.ok).toBe(false)
    expect(r.results.map((x) => [x.ok, x.detail])).toEqual([
      [false, 'exited with 1: broken'],
      [false, expect.stringMatching(/^could not be started \(ENOENT/)],
      [false, 'ECONNREFUSED'],
    ])
  })

  it('kills a command that runs past its timeout', async () => {
    const started = Date.now()
    const r = await createHealthChecker().run(
      spec([{ type: 'command', argv: ['sh', '-c', 'sleep 30'], timeoutSeconds: 1 }]),
    )
    expect(Date.now() - started).toBeLessThan(10_000)
    expect(r.results[0]).toMatchObject({ ok: false, detail: 'timed out after 1 s and was killed' })
  })
})

describe('health check: services, retries and time limits (fake runner)', () => {
  it('asks systemctl is-active on Linux and sc.exe query on Windows', async () => {
    expect(serviceArgv('nginx.service', 'linux')).toEqual(['systemctl', 'is-active', '--', 'nginx.service'])
    const linux = fakeRunner([result(0, 'active\n'), result(3, 'inactive\n')])
    const check = createHealthChecker({ runner: linux, platform: 'linux' })
    expect(await check.run(spec([{ type: 'service', name: 'nginx.service' }]))).toMatchObject({
      ok: true,
      results: [{ ok: true, detail: 'active' }],
    })
    expect(await check.run(spec([{ type: 'service', name: 'nginx.service' }]))).toMatchObject({
      ok: false,
      results: [{ ok: false, detail: 'inactive' }],
    })
    expect(linux.calls[0]!.argv).toEqual(['systemctl', 'is-active', '--', 'nginx.service'])
    expect(linux.calls[0]!.env.PATH).toMatch(/\/usr\/bin/)

    const sc =
      'SERVICE_NAME: Spooler\n        TYPE               : 110  WIN32_OWN_PROCESS\n        STATE              : 4  RUNNING\n'
    const stopped = sc.replace('4  RUNNING', '1  STOPPED')
    const win = fakeRunner([result(0, sc), result(0, stopped)])
    const wcheck = createHealthChecker({ runner: win, platform: 'win32' })
    expect((await wcheck.run(spec([{ type: 'service', name: 'Spooler' }]))).ok).toBe(true)
    expect((await wcheck.run(spec([{ type: 'service', name: 'Spooler' }]))).ok).toBe(false)
    expect(win.calls[0]!.argv).toEqual(['sc.exe', 'query', 'Spooler'])

    const mac = await createHealthChecker({ runner: fakeRunner([]), platform: 'darwin' }).run(
      spec([{ type: 'service', name: 'x' }]),
    )
    expect(mac.results[0]).toMatchObject({ ok: false, detail: 'service checks are not supported on darwin' })
  })

  it('retries a failed round after the delay until it passes', async () => {
    const runner = fakeRunner([result(3, 'activating\n'), result(3, 'activating\n'), result(0, 'active\n')])
    const delays: number[] = []
    const r = await createHealthChecker({
      runner,
      platform: 'linux',
      sleep: async (ms) => {
        delays.push(ms)
      },
    }).run(spec([{ type: 'service', name: 'app' }], { retries: 5, retryDelaySeconds: 2 }))
    expect(r).toMatchObject({ ok: true, attempts: 3 })
    expect(delays).toEqual([2000, 2000])
    expect(r.log.split('\n')).toEqual([
      'attempt 1: service app: FAILED (activating)',
      'attempt 2: service app: FAILED (activating)',
      'attempt 3: service app: ok (active)',
    ])
  })

  it('stops retrying when timeoutSeconds is used up, retries included', async () => {
    let clock = 0
    const runner = fakeRunner(Array.from({ length: 20 }, () => result(1)))
    const r = await createHealthChecker({
      runner,
      platform: 'linux',
      now: () => clock,
      sleep: async (ms) => {
        clock += ms
      },
    }).run(spec([{ type: 'command', argv: ['check'], timeoutSeconds: 60 }], { timeoutSeconds: 12, retries: 10 }))
    // Rounds at 0 s, 5 s and 10 s (default delay 5 s); then the 12 s are gone.
    expect(r).toMatchObject({ ok: false, attempts: 3 })
    expect(runner.calls.map((c) => c.timeoutMs)).toEqual([12_000, 7000, 2000])
  })

  it('stops when aborted', async () => {
    const controller = new AbortController()
    const runner: ProcessRunner = {
      run: async () => {
        controller.abort()
        return result(null, '', { aborted: true })
      },
    }
    const r = await createHealthChecker({ runner, platform: 'linux' }).run(
      spec([{ type: 'service', name: 'app' }], { retries: 3 }),
      controller.signal,
    )
    expect(r).toMatchObject({ ok: false, attempts: 1 })
  })
})
