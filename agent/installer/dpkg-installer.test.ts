import { spawnSync } from 'node:child_process'
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { tempDir } from '../../shared/bundle/test-helpers.ts'
import type { PswError } from '../../shared/errors.ts'
import type { Manifest } from '../../shared/metadata/manifest-schema.ts'
import { createInstallRouter } from '../install-support.ts'
import { dpkgArgv, dpkgTarget } from './dpkg-commands.ts'
import { createDpkgInstaller } from './dpkg-installer.ts'
import { createHealthChecker, type HealthChecker } from './health-check.ts'
import { buildDeb, haveDpkg, testBundle } from './test-helpers.ts'

const PKG = 'psw-demo'
const errorOf = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: unknown) => e as PswError,
  )

describe('dpkg command lines', () => {
  it('uses dpkg defaults on the real root and --root/--admindir/forces on a scratch root', () => {
    expect(dpkgArgv(dpkgTarget({ root: '/' }), ['--install', '/x.deb'])).toEqual([
      'dpkg',
      '--force-confdef',
      '--force-confold',
      '--install',
      '/x.deb',
    ])
    expect(dpkgArgv(dpkgTarget({ root: '/tmp/r' }), ['--purge', PKG])).toEqual([
      'dpkg',
      '--root=/tmp/r',
      '--admindir=/tmp/r/var/lib/dpkg',
      '--force-not-root',
      '--force-script-chrootless',
      '--force-bad-path',
      '--force-confdef',
      '--force-confold',
      '--purge',
      PKG,
    ])
  })
})

// Real dpkg into a scratch root (never the test machine). Skipped only without dpkg outside CI.
describe.skipIf(!haveDpkg() && !process.env.CI)('dpkg installer (real dpkg, scratch root)', () => {
  const debs: Record<string, Buffer> = {}
  let debDir: { dir: string; cleanup: () => Promise<void> }
  let dir: string
  let cleanup: () => Promise<void>
  let sysroot: string
  let stateDir: string

  const postinst = (line: string) => `#!/bin/sh\nset -e\n${line}\n`
  beforeAll(async () => {
    debDir = await tempDir('psw-debs-')
    const log = 'echo "configured $2" >> "$DPKG_ROOT/var/log/psw-demo.log"'
    debs.v1 = await buildDeb(debDir.dir, {
      name: PKG,
      version: '1.0',
      files: { 'opt/psw-demo/version.txt': 'v1\n' },
      postinst: postinst(log),
    })
    debs.v2 = await buildDeb(debDir.dir, {
      name: PKG,
      version: '2.0',
      files: { 'opt/psw-demo/version.txt': 'v2\n', 'opt/psw-demo/new-in-2': 'x\n' },
      postinst: postinst(log),
    })
    debs.bad = await buildDeb(debDir.dir, {
      name: PKG,
      version: '3.0',
      files: { 'opt/psw-demo/version.txt': 'v3\n' },
      postinst: postinst('echo "postinst of 3.0 fails" >&2; exit 1'),
    })
    debs.slow = await buildDeb(debDir.dir, {
      name: PKG,
      version: '4.0',
      files: { 'opt/psw-demo/version.txt': 'v4\n' },
      postinst: postinst('sleep 60.4173'),
    })
    debs.other = await buildDeb(debDir.dir, { name: 'psw-other', version: '1.0', files: { 'opt/other': 'o\n' } })
    return () => debDir.cleanup()
  })
  beforeEach(async () => {
    ;({ dir, cleanup } = await tempDir('psw-dpkg-'))
    sysroot = join(dir, 'sysroot')
    stateDir = join(dir, 'state')
    await mkdir(join(sysroot, 'var/log'), { recursive: true })
  })
  afterEach(async () => cleanup())

  /** What dpkg says about the package in the scratch root. */
  const query = () => {
    // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own ${field} syntax
    const format = '-f=${db:Status-Status} ${Version}'
    const r = spawnSync('dpkg-query', [`--root=${sysroot}`, '-W', format, PKG], {
      encoding: 'utf8',
    })
    return r.status === 0 ? r.stdout : 'absent'
  }
  const versionFile = () => readFile(join(sysroot, 'opt/psw-demo/version.txt'), 'utf8').catch(() => 'absent')
  const bundle = (key: string, changes: Partial<Manifest> = {}) =>
    testBundle(
      join(dir, 'bundles'),
      key,
      debs[key]!,
      {
        install: { type: 'dpkg', package: PKG, maxRunSeconds: 60 },
        rollback: { type: 'dpkg-previous' },
        ...changes,
      },
      { platform: { os: 'linux', arch: 'any' } },
    )
  const installer = (killGraceMs?: number) =>
    createDpkgInstaller({ stateDir, root: sysroot, ...(killGraceMs ? { killGraceMs } : {}) })
  const router = (health: HealthChecker = createHealthChecker()) =>
    createInstallRouter({ stateDir, dpkg: installer(), health, platform: 'linux' })
  const stored = () => readdir(join(stateDir, 'debs', PKG)).catch(() => [] as string[])

  it('installs v1, upgrades to v2; a failing health check rolls back to v1 by itself', async () => {
    const r = router()
    const v1 = await bundle('v1', {
      health: { checks: [{ type: 'command', argv: ['true'], timeoutSeconds: 5 }], timeoutSeconds: 10 },
    })
    const first = await r.install(v1)
    expect(first).toMatchObject({ installer: 'dpkg', rebootRequired: false, health: { ok: true } })
    expect(first.details).toMatchObject({ package: PKG, version: '1.0', previousVersion: null })
    expect(query()).toBe('installed 1.0')
    expect(await versionFile()).toBe('v1\n')
    expect(await stored()).toEqual(['1.0.deb'])
    // The kept .deb is exactly the verified bundle.
    expect(await readFile(join(stateDir, 'debs', PKG, '1.0.deb'))).toEqual(debs.v1)
    expect((await stat(join(stateDir, 'debs', PKG, '1.0.deb'))).mode & 0o777).toBe(0o600)

    const v2 = await bundle('v2', {
      health: { checks: [{ type: 'command', argv: ['sh', '-c', 'exit 1'], timeoutSeconds: 5 }], timeoutSeconds: 10 },
    })
    const err = await errorOf(r.install(v2))
    expect(err).toMatchObject({ code: 'PSW_ERR_INSTALL_FAILED', details: { rolledBack: true, health: { ok: false } } })
    expect((err!.details!.health as { log: string }).log).toMatch(/FAILED \(exited with 1\)/)
    expect(err!.details!.installLog).toMatch(/Unpacking psw-demo \(2\.0\) over \(1\.0\)/)
    expect(err!.details!.rollbackLog).toMatch(/Unpacking psw-demo \(1\.0\) over \(2\.0\)/)
    expect(query()).toBe('installed 1.0')
    expect(await versionFile()).toBe('v1\n')
    await expect(stat(join(sysroot, 'opt/psw-demo/new-in-2'))).rejects.toThrow()
    expect(await stored()).toEqual(['1.0.deb'])
    expect(await readFile(join(sysroot, 'var/log/psw-demo.log'), 'utf8')).toBe(
      'configured \nconfigured 1.0\nconfigured 2.0\n',
    )
    // Nothing reached the test machine's own dpkg database.
    expect(spawnSync('dpkg-query', ['-W', PKG]).status).not.toBe(0)
  })

  it('keeps the snapshot of a healthy upgrade until release; then the store keeps only the installed .deb', async () => {
    const r = router()
    const v1 = await bundle('v1')
    await r.install(v1)
    const v2 = await bundle('v2', {
      health: { checks: [{ type: 'command', argv: ['true'], timeoutSeconds: 5 }], timeoutSeconds: 5 },
    })
    const ok = await r.install(v2)
    expect(ok.details).toMatchObject({ version: '2.0', previousVersion: '1.0' })
    expect(query()).toBe('installed 2.0')
    // Healthy, but still assigned: the previous .deb stays for a site-wide rollback.
    expect(await stored()).toEqual(['1.0.deb', '2.0.deb'])
    expect(await readdir(join(stateDir, 'dpkg', 'staging', v2.manifest.bundleId))).toEqual(['previous.deb'])
    await r.release(v1.manifest.bundleId)
    await r.release(v2.manifest.bundleId)
    await r.release(v2.manifest.bundleId) // idempotent
    expect(await stored()).toEqual(['2.0.deb'])
    expect(await readdir(join(stateDir, 'dpkg', 'staging'))).toEqual([])
    // Released: a rollback is refused and changes nothing.
    expect(await errorOf(r.rollback(v2.manifest))).toMatchObject({ code: 'PSW_ERR_ROLLBACK_UNAVAILABLE' })
    expect(query()).toBe('installed 2.0')
  })

  it('rolls a healthy upgrade back later (site-wide rollback) to v1, and a first install to nothing', async () => {
    const r = router()
    const v1 = await bundle('v1')
    await r.install(v1)
    const v2 = await bundle('v2', {
      health: { checks: [{ type: 'command', argv: ['true'], timeoutSeconds: 5 }], timeoutSeconds: 5 },
    })
    await r.install(v2)
    expect(await versionFile()).toBe('v2\n')
    // A new agent process (restart) sees the same journal and snapshot.
    const later = router()
    await later.recover()
    const rolled = await later.rollback(v2.manifest)
    expect(rolled.log).toMatch(/Unpacking psw-demo \(1\.0\) over \(2\.0\)/)
    expect(query()).toBe('installed 1.0')
    expect(await versionFile()).toBe('v1\n')
    await expect(stat(join(sysroot, 'opt/psw-demo/new-in-2'))).rejects.toThrow()
    expect(await later.status(v2.manifest)).toBe('rolled-back')
    expect(await stored()).toEqual(['1.0.deb'])
    // Idempotent: nothing runs again.
    expect(await later.rollback(v2.manifest)).toEqual({ log: '' })
    expect(query()).toBe('installed 1.0')
    // v1 was a first install: rolling it back purges the package.
    await later.rollback(v1.manifest)
    expect(query()).toBe('absent')
    expect(await versionFile()).toBe('absent')
  })

  it('refuses a site-wide rollback of a bundle whose package was upgraded since by another bundle', async () => {
    const r = router()
    const v1 = await bundle('v1')
    await r.install(v1)
    await r.install(await bundle('v2'))
    const err = await errorOf(r.rollback(v1.manifest))
    expect(err).toMatchObject({ code: 'PSW_ERR_ROLLBACK_UNAVAILABLE' })
    expect(err!.message).toMatch(/psw-demo is now installed 2\.0, not the 1\.0 it installed/)
    expect(query()).toBe('installed 2.0')
    expect(await r.status(v1.manifest)).toBe('installed')
  })

  it('rolls back to v1 when the new postinst fails', async () => {
    const i = installer()
    await i.install(await bundle('v1'))
    const err = await errorOf(i.install(await bundle('bad')))
    expect(err).toMatchObject({ code: 'PSW_ERR_INSTALL_FAILED', details: { rolledBack: true, exitCode: 1 } })
    expect(err!.message).toMatch(/rolled back/)
    expect(err!.details!.stderr).toMatch(/postinst of 3\.0 fails/)
    expect(query()).toBe('installed 1.0')
    expect(await versionFile()).toBe('v1\n')
    expect(await stored()).toEqual(['1.0.deb'])
    expect(await i.status((await bundle('bad')).manifest.bundleId)).toBe('rolled-back')
  })

  it('purges a first install whose postinst fails (nothing was installed before)', async () => {
    const err = await errorOf(installer().install(await bundle('bad')))
    expect(err).toMatchObject({ code: 'PSW_ERR_INSTALL_FAILED', details: { rolledBack: true } })
    expect(query()).toBe('absent')
    expect(await versionFile()).toBe('absent')
    expect(await stored()).toEqual([])
  })

  it('kills dpkg and its maintainer script at maxRunSeconds, then rolls back', async () => {
    const i = installer(500)
    await i.install(await bundle('v1'))
    const started = Date.now()
    const err = await errorOf(
      i.install(await bundle('slow', { install: { type: 'dpkg', package: PKG, maxRunSeconds: 1 } })),
    )
    expect(Date.now() - started).toBeLessThan(20_000)
    expect(err).toMatchObject({ code: 'PSW_ERR_INSTALL_FAILED', details: { timedOut: true, rolledBack: true } })
    expect(query()).toBe('installed 1.0')
    // A duration no other test uses: pgrep sees the whole machine, and test files run in
    // parallel. A killed process may take a moment to be reaped: wait for it, up to 5 s.
    const alive = () => spawnSync('pgrep', ['-f', 'sleep 60.4173']).stdout?.toString() ?? ''
    const deadline = Date.now() + 5000
    while (alive() !== '' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
    expect(alive()).toBe('')
  })

  it('refuses to upgrade a version whose .deb it cannot keep, and uses apt’s cache when it has it', async () => {
    // v1 installed outside patchswarm: no kept .deb.
    const direct = spawnSync(
      dpkgArgv(dpkgTarget({ root: sysroot }), ['--install', join(debDir.dir, `${PKG}_1.0_all.deb`)])[0]!,
      dpkgArgv(dpkgTarget({ root: sysroot }), ['--install', join(debDir.dir, `${PKG}_1.0_all.deb`)]).slice(1),
      { encoding: 'utf8' },
    )
    expect(direct.status).toBe(0)
    const v2 = await bundle('v2')
    const err = await errorOf(installer().install(v2))
    expect(err).toMatchObject({ code: 'PSW_ERR_INSTALL_FAILED', details: { rolledBack: false, reason: 'no-snapshot' } })
    expect(query()).toBe('installed 1.0')

    const cache = join(sysroot, 'var/cache/apt/archives')
    await mkdir(cache, { recursive: true })
    await writeFile(join(cache, `${PKG}_1.0_all.deb`), debs.v1!)
    const i = installer()
    await i.install(v2)
    expect(query()).toBe('installed 2.0')
    await i.rollback(v2.manifest.bundleId)
    expect(query()).toBe('installed 1.0')
    expect(await versionFile()).toBe('v1\n')
    expect(await stored()).toEqual(['1.0.deb'])
  })

  it('installs without a snapshot when the manifest declares rollback none', async () => {
    const i = installer()
    await i.install(await bundle('v1', { rollback: { type: 'none' } }))
    const err = await errorOf(i.install(await bundle('bad', { rollback: { type: 'none' } })))
    expect(err).toMatchObject({ code: 'PSW_ERR_INSTALL_FAILED', details: { rolledBack: false } })
    expect(query()).toBe('half-configured 3.0')
  })

  it('never hands dpkg bytes that changed after verification, nor a .deb of another package', async () => {
    const i = installer()
    const v1 = await bundle('v1')
    await i.install(v1)
    await i.commit(v1.manifest.bundleId)
    const v2 = await bundle('v2')
    const tampered = Buffer.from(debs.v2!)
    tampered[tampered.length - 10]! ^= 1
    await writeFile(v2.path, tampered)
    expect(await errorOf(i.install(v2))).toMatchObject({ code: 'PSW_ERR_CHUNK_HASH' })
    const other = await testBundle(join(dir, 'bundles'), 'other', debs.other!, {
      install: { type: 'dpkg', package: PKG, maxRunSeconds: 60 },
      rollback: { type: 'dpkg-previous' },
    })
    expect(await errorOf(i.install(other))).toMatchObject({
      code: 'PSW_ERR_INSTALL_FAILED',
      details: { rolledBack: false },
    })
    expect(query()).toBe('installed 1.0')
    expect(await readdir(join(stateDir, 'dpkg', 'staging'))).toEqual([])
  })

  it('rolls back, at the next start, an upgrade whose health check was cut short by kill -9', async () => {
    await router().install(await bundle('v1'))
    const v2 = await bundle('v2', {
      health: { checks: [{ type: 'command', argv: ['true'], timeoutSeconds: 5 }], timeoutSeconds: 5 },
    })
    let reached!: () => void
    const inHealth = new Promise<void>((resolve) => {
      reached = resolve
    })
    // A health check that never ends: the agent "dies" during it.
    const hanging: HealthChecker = {
      run: () => {
        reached()
        return new Promise(() => {})
      },
    }
    void router(hanging).install(v2)
    await inHealth
    expect(query()).toBe('installed 2.0')
    const recovered = await router().recover()
    expect(recovered.rolledBack).toContain(v2.manifest.bundleId)
    expect(recovered.failed).toEqual([])
    expect(query()).toBe('installed 1.0')
    expect(await versionFile()).toBe('v1\n')
  })

  it('rolls back an install left applying (kill -9 during dpkg) at recover()', async () => {
    const i = installer()
    await i.install(await bundle('v1'))
    const v2 = await bundle('v2')
    await i.install(v2)
    const journal = join(stateDir, 'dpkg', 'journal', `${v2.manifest.bundleId}.json`)
    const j = JSON.parse(await readFile(journal, 'utf8'))
    await writeFile(journal, JSON.stringify({ ...j, state: 'applying' }))
    const recovered = await installer().recover()
    expect(recovered).toEqual({ rolledBack: [v2.manifest.bundleId], failed: [] })
    expect(query()).toBe('installed 1.0')
  })
})
