import { describe, expect, it } from 'vitest'
import { createProcessRunner, limitedEnv, TailBuffer } from './process-runner.ts'

describe('tail buffer', () => {
  it('keeps the last bytes only', () => {
    const t = new TailBuffer(8)
    for (const s of ['abc', 'defg', 'hijkl', 'mn']) t.push(Buffer.from(s))
    expect(t.toString()).toBe('ghijklmn')
    expect(t.truncated).toBe(true)
    const short = new TailBuffer(8)
    short.push(Buffer.from('abc'))
    expect([short.toString(), short.truncated]).toEqual(['abc', false])
  })
})

describe.skipIf(process.platform === 'win32')('process runner', () => {
  const runner = createProcessRunner()

  it('gives the child only the environment it is handed, and captures both streams', async () => {
    process.env.PSW_RUNNER_LEAK = 'x'
    const r = await runner.run({
      // biome-ignore lint/suspicious/noTemplateCurlyInString: shell parameter expansion
      argv: ['sh', '-c', 'echo "leak=${PSW_RUNNER_LEAK:-none} own=$OWN"; echo oops >&2; exit 7'],
      env: limitedEnv({ OWN: 'yes' }),
      timeoutMs: 10_000,
    })
    delete process.env.PSW_RUNNER_LEAK
    expect(r).toMatchObject({ exitCode: 7, timedOut: false, stdout: 'leak=none own=yes\n', stderr: 'oops\n' })
  })

  it('stops on abort and reports a program that cannot be started', async () => {
    const controller = new AbortController()
    const running = runner.run({
      argv: ['sleep', '30'],
      env: limitedEnv(),
      timeoutMs: 30_000,
      signal: controller.signal,
    })
    controller.abort()
    expect(await running).toMatchObject({ aborted: true, exitCode: null, signal: 'SIGTERM' })
    expect(await runner.run({ argv: ['/nonexistent/x'], env: limitedEnv(), timeoutMs: 1000 })).toMatchObject({
      exitCode: null,
      spawnError: expect.stringMatching(/^ENOENT/),
    })
    expect(await runner.run({ argv: ['true', 'a\0b'], env: limitedEnv(), timeoutMs: 1000 })).toMatchObject({
      spawnError: expect.any(String),
    })
  })
})
