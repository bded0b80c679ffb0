import { readFileSync } from 'node:fs'
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:net'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { tempDir } from '../../shared/bundle/test-helpers.ts'
import type { PswError } from '../../shared/errors.ts'
import type { Manifest } from '../../shared/metadata/manifest-schema.ts'
import { createInstallRouter } from '../install-support.ts'
import { createScriptInstaller, interpreterArgv } from './script-installer.ts'
import { testBundle } from './test-helpers.ts'

const errorOf = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: unknown) => e as PswError,
  )

/** Whether a process is gone (or a zombie nobody reaped yet: it runs no more either way). */
const gone = (pid: number) => {
  try {
    return /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))
  } catch {
    return true
  }
}

describe('interpreters', () => {
  it('runs sh and bash off Windows and PowerShell only on Windows', () => {
    expect(interpreterArgv('sh', 'linux')).toEqual(['/bin/sh'])
    expect(interpreterArgv('bash', 'darwin')).toEqual(['bash'])
    expect(interpreterArgv('powershell', 'linux')).toBeUndefined()
    expect(interpreterArgv('sh', 'win32')).toBeUndefined()
    expect(interpreterArgv('powershell', 'win32')).toEqual([
      'powershell.exe',
      '-NoLogo',
      '-NoProfile',
      '-NonInteractive',
      '-ExecutionPolicy',
      'Bypass',
      '-File',
    ])
  })
})

describe.skipIf(process.platform === 'win32')('script installer', () => {
  let dir: string
  let cleanup: () => Promise<void>
  let out: string
  let stateDir: string
  beforeEach(async () => {
    ;({ dir, cleanup } = await tempDir('psw-script-'))
    out = join(dir, 'out')
    stateDir = join(dir, 'state')
    await mkdir(out)
  })
  afterEach(async () => cleanup())

  const bundle = (install: string, rollback?: string, extra: Partial<Manifest> = {}, payload = 'payload bytes\n') =>
    testBundle(join(dir, 'bundles'), 'app', Buffer.from(payload), {
      install: {
        type: 'script',
        interpreter: 'sh',
        install,
        ...(rollback === undefined ? {} : { rollback }),
        maxRunSeconds: 30,
      },
      rollback: { type: rollback === undefined ? 'none' : 'script' },
      ...extra,
    })
  const read = (name: string) => readFile(join(out, name), 'utf8').catch(() => 'absent')

  it('runs the signed script with the payload read-only, a private cwd and a limited environment', async () => {
    process.env.PSW_TEST_SECRET = 'leak'
    const b = await bundle(
      [
        `cat "$PSW_PAYLOAD" > ${out}/payload`,
        `stat -c %a "$PSW_PAYLOAD" > ${out}/mode`,
        `pwd > ${out}/cwd`,
        `echo "secret=\${PSW_TEST_SECRET:-none} action=$PSW_ACTION name=$PSW_PATCH_NAME path=$PATH" > ${out}/env`,
        'echo installed fine',
      ].join('\n'),
    )
    const installer = createScriptInstaller({ stateDir })
    const result = await installer.install(b)
    delete process.env.PSW_TEST_SECRET
    expect(result.rebootRequired).toBe(false)
    expect(result.log).toMatch(/installed fine/)
    expect(await read('payload')).toBe('payload bytes\n')
    expect(await read('mode')).toBe('400\n')
    expect((await read('cwd')).trim()).toBe(join(stateDir, 'script', 'staging', b.manifest.bundleId, 'work'))
    expect(await read('env')).toBe(
      'secret=none action=install name=app path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n',
    )
    expect(await installer.status(b.manifest.bundleId)).toBe('installed')
    await installer.commit(b.manifest.bundleId)
    expect(await readdir(join(stateDir, 'script', 'staging'))).toEqual([])
  })

  it('runs the rollback script when the install script fails, and reports both logs', async () => {
    const b = await bundle(
      `echo half > ${out}/state; echo "install broke" >&2; exit 3`,
      `echo "rolled back from $(cat ${out}/state)" > ${out}/state; echo undone`,
    )
    const err = await errorOf(createScriptInstaller({ stateDir }).install(b))
    expect(err).toMatchObject({ code: 'PSW_ERR_INSTALL_FAILED', details: { exitCode: 3, rolledBack: true } })
    expect(err!.message).toMatch(/exited with 3: install broke/)
    expect(err!.details!.log).toMatch(/install broke/)
    expect(err!.details!.rollbackLog).toMatch(/undone/)
    expect(await read('state')).toBe('rolled back from half\n')
  })

  it('reports a failure without rollback script as not rolled back, and a failing rollback as ROLLBACK_FAILED', async () => {
    const plain = await errorOf(createScriptInstaller({ stateDir }).install(await bundle('exit 1')))
    expect(plain).toMatchObject({ code: 'PSW_ERR_INSTALL_FAILED', details: { rolledBack: false } })
    const both = await errorOf(
      createScriptInstaller({ stateDir: join(dir, 'state2') }).install(await bundle('exit 1', 'echo nope >&2; exit 2')),
    )
    expect(both).toMatchObject({ code: 'PSW_ERR_ROLLBACK_FAILED', details: { exitCode: 1, rollback: { exitCode: 2 } } })
  })

  it('kills the script and everything it started at maxRunSeconds, then rolls back', async () => {
    const b = await bundle('', undefined, {
      install: {
        type: 'script',
        interpreter: 'sh',
        install: `sleep 61 & echo $! > ${out}/bg.pid; echo started; sleep 62`,
        rollback: `echo undone > ${out}/rb`,
        maxRunSeconds: 1,
      },
      rollback: { type: 'script' },
    })
    const started = Date.now()
    const err = await errorOf(createScriptInstaller({ stateDir, killGraceMs: 300 }).install(b))
    expect(Date.now() - started).toBeLessThan(10_000)
    expect(err).toMatchObject({ code: 'PSW_ERR_INSTALL_FAILED', details: { timedOut: true, rolledBack: true } })
    expect(err!.details!.log).toMatch(/started/)
    expect(await read('rb')).toBe('undone\n')
    const bg = Number((await read('bg.pid')).trim())
    expect(bg).toBeGreaterThan(0)
    expect(gone(bg)).toBe(true)
  })

  it('keeps only the tail of a chatty script', async () => {
    const result = await createScriptInstaller({ stateDir }).install(
      await bundle('i=0; while [ $i -lt 3000 ]; do echo "line $i of chatter................"; i=$((i+1)); done'),
    )
    expect(result.log.length).toBeLessThan(17 << 10)
    expect(result.log).toMatch(/line 2999 of chatter/)
  })

  it('refuses PowerShell off Windows', async () => {
    const b = await bundle('exit 0', undefined, {
      install: { type: 'script', interpreter: 'powershell', install: 'exit 0', maxRunSeconds: 5 },
    })
    expect(await errorOf(createScriptInstaller({ stateDir }).install(b))).toMatchObject({
      code: 'PSW_ERR_INSTALLER_UNSUPPORTED',
    })
  })

  it('runs the rollback script when the health check fails (no port listening), and keeps it when one listens', async () => {
    const server: Server = createServer((s) => s.destroy())
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const port = (server.address() as { port: number }).port
    try {
      const router = createInstallRouter({ stateDir, script: createScriptInstaller({ stateDir }), platform: 'linux' })
      const good = await bundle(`echo on > ${out}/svc`, `echo off > ${out}/svc`, {
        health: { checks: [{ type: 'tcp-port', port }], timeoutSeconds: 5 },
      })
      const ok = await router.install(good)
      expect(ok.health).toMatchObject({ ok: true, attempts: 1 })
      expect(await read('svc')).toBe('on\n')

      await new Promise<void>((resolve) => server.close(() => resolve()))
      const bad = await bundle(
        `echo on2 > ${out}/svc`,
        `echo off > ${out}/svc`,
        { health: { checks: [{ type: 'tcp-port', port }], timeoutSeconds: 5, retries: 1, retryDelaySeconds: 0 } },
        'other payload',
      )
      const err = await errorOf(router.install(bad))
      expect(err).toMatchObject({
        code: 'PSW_ERR_INSTALL_FAILED',
        details: { rolledBack: true, health: { ok: false, attempts: 2 } },
      })
      expect(err!.message).toMatch(/health check failed .*ECONNREFUSED.*rolled back/)
      expect(await read('svc')).toBe('off\n')
    } finally {
      server.close()
    }
  })

  it('keeps the rollback script after a healthy install until release, and runs it for a site-wide rollback', async () => {
    const router = createInstallRouter({ stateDir, script: createScriptInstaller({ stateDir }), platform: 'linux' })
    const b = await bundle(`echo v2 > ${out}/svc`, `cat "$PSW_PAYLOAD" > ${out}/seen; echo v1 > ${out}/svc`, {
      health: { checks: [{ type: 'command', argv: ['true'], timeoutSeconds: 5 }], timeoutSeconds: 5 },
    })
    await router.install(b)
    expect(await read('svc')).toBe('v2\n')
    // The staged payload (and the journal with the signed rollback script) stay: no commit yet.
    expect(await readdir(join(stateDir, 'script', 'staging'))).toEqual([b.manifest.bundleId])
    expect(await router.status(b.manifest)).toBe('installed')

    const rolled = await router.rollback(b.manifest)
    expect(rolled.log).toMatch(/rollback script: exited with 0/)
    expect(await read('svc')).toBe('v1\n')
    expect(await read('seen')).toBe('payload bytes\n')
    expect(await router.status(b.manifest)).toBe('rolled-back')
    // Idempotent: a second rollback does not run the script again.
    await writeFile(join(out, 'svc'), 'changed since\n')
    await router.rollback(b.manifest)
    expect(await read('svc')).toBe('changed since\n')
    await router.release(b.manifest.bundleId)
    expect(await readdir(join(stateDir, 'script', 'staging'))).toEqual([])
  })

  it('refuses to roll back a healthy install without rollback script, leaving it installed', async () => {
    const installer = createScriptInstaller({ stateDir })
    const b = await bundle(`echo on > ${out}/svc`)
    await installer.install(b)
    expect(await errorOf(installer.rollback(b.manifest.bundleId))).toMatchObject({
      code: 'PSW_ERR_ROLLBACK_UNAVAILABLE',
    })
    expect(await installer.status(b.manifest.bundleId)).toBe('installed')
    const router = createInstallRouter({ stateDir, script: installer, platform: 'linux' })
    expect(await errorOf(router.rollback(b.manifest))).toMatchObject({ code: 'PSW_ERR_ROLLBACK_UNAVAILABLE' })
    expect(await read('svc')).toBe('on\n')
  })

  it('runs the rollback script of an install interrupted by kill -9 at recover()', async () => {
    const installer = createScriptInstaller({ stateDir })
    const b = await bundle(`echo on > ${out}/svc`, `echo "off ($PSW_ACTION)" > ${out}/svc`)
    await installer.install(b)
    const journal = join(stateDir, 'script', 'journal', `${b.manifest.bundleId}.json`)
    await writeFile(journal, JSON.stringify({ ...JSON.parse(await readFile(journal, 'utf8')), state: 'applying' }))
    expect(await createScriptInstaller({ stateDir }).recover()).toEqual({
      rolledBack: [b.manifest.bundleId],
      failed: [],
    })
    expect(await read('svc')).toBe('off (rollback)\n')
  })
})
