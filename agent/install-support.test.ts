import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { dirEntry, fileEntry, packRaw, tempDir } from '../shared/bundle/test-helpers.ts'
import { InstallError, type PswError } from '../shared/errors.ts'
import type { HealthSpecT, Manifest } from '../shared/metadata/manifest-schema.ts'
import { installFailure } from './bundle-state.ts'
import { checkSupported, createInstallRouter, filesInstall, installersFor } from './install-support.ts'
import { createFilesInstaller } from './installer/files-installer.ts'
import type { HealthChecker, HealthResult } from './installer/health-check.ts'
import type { Installer, InstallerResult } from './installer/installer-api.ts'
import { testBundle } from './installer/test-helpers.ts'

const H = (c: string) => c.repeat(64)
const base: Manifest = {
  type: 'patchswarm/manifest',
  specVersion: 1,
  bundleId: H('a'),
  version: 1,
  created: '2026-11-23T12:00:00.000Z',
  expires: '2027-02-21T12:00:00.000Z',
  patch: {
    name: 'openssl',
    vendor: 'debian',
    product: 'openssl',
    version: '3.0.13-1',
    classification: 'security',
    severity: 'high',
    cves: [],
    supersedes: [],
    requires: [],
    platform: { os: 'linux', arch: 'any' },
  },
  install: { type: 'files', targetRoot: '/opt/openssl', maxRunSeconds: 600 },
  rollback: { type: 'files-backup' },
  content: { size: 10, chunkSize: 65536, sha256: H('a'), chunks: [H('b')], format: 'raw' },
}
const dpkg: Manifest = {
  ...base,
  install: { type: 'dpkg', package: 'openssl', maxRunSeconds: 600 },
  rollback: { type: 'dpkg-previous' },
}
const anyOs = { ...base.patch, platform: { os: 'any' as const, arch: 'any' as const } }
const unsupported = expect.objectContaining({ name: 'InstallError', code: 'PSW_ERR_INSTALLER_UNSUPPORTED' })

describe('install support', () => {
  it('accepts the files installer on raw and tar content for this platform', () => {
    expect(() => checkSupported(base, 'linux', 'x64')).not.toThrow()
    expect(() =>
      checkSupported({ ...base, content: { ...base.content, format: undefined } }, 'linux', 'arm64'),
    ).not.toThrow()
    expect(filesInstall(base).targetRoot).toBe('/opt/openssl')
    expect(() => filesInstall(dpkg)).toThrow(unsupported)
  })

  it('offers dpkg on Linux only, and refuses it cleanly elsewhere or when it is not wired', () => {
    expect(() => checkSupported(dpkg, 'linux', 'x64')).not.toThrow()
    expect(() => checkSupported({ ...dpkg, patch: anyOs }, 'darwin', 'x64')).toThrow(unsupported)
    expect(() => checkSupported({ ...dpkg, patch: anyOs }, 'win32', 'x64')).toThrow(unsupported)
    expect(() => checkSupported(dpkg, 'linux', 'x64', new Set(['files']))).toThrow(unsupported)
  })

  it('offers msi, msu and exe on Windows only, and scripts where their interpreter runs', () => {
    const msi: Manifest = {
      ...base,
      patch: { ...base.patch, platform: { os: 'windows', arch: 'x64' } },
      install: { type: 'msi', maxRunSeconds: 60 },
      rollback: { type: 'none' },
    }
    expect(() => checkSupported(msi, 'win32', 'x64')).not.toThrow()
    expect(() => checkSupported({ ...msi, patch: anyOs }, 'linux', 'x64')).toThrow(unsupported)
    const sh: Manifest = {
      ...base,
      patch: anyOs,
      install: { type: 'script', interpreter: 'sh', install: 'true', maxRunSeconds: 60 },
      rollback: { type: 'none' },
    }
    expect(() => checkSupported(sh, 'linux', 'x64')).not.toThrow()
    expect(() => checkSupported(sh, 'darwin', 'arm64')).not.toThrow()
    expect(() => checkSupported(sh, 'win32', 'x64')).toThrow(unsupported)
    const ps = { ...sh, install: { ...sh.install, interpreter: 'powershell' } } as Manifest
    expect(() => checkSupported(ps, 'win32', 'x64')).not.toThrow()
    expect(() => checkSupported(ps, 'linux', 'x64')).toThrow(unsupported)
    expect([...installersFor('freebsd')]).toEqual(['files'])
  })

  it('refuses another OS or architecture', () => {
    expect(() => checkSupported(base, 'win32', 'x64')).toThrow(unsupported)
    const arm = { ...base, patch: { ...base.patch, platform: { os: 'any', arch: 'arm64' } } } as Manifest
    expect(() => checkSupported(arm, 'darwin', 'x64')).toThrow(unsupported)
  })
})

const healthResult = (ok: boolean): HealthResult => ({
  ok,
  attempts: 1,
  results: [{ check: { type: 'tcp-port', port: 1 }, ok, detail: ok ? 'connected' : 'ECONNREFUSED', durationMs: 1 }],
  log: `attempt 1: tcp 127.0.0.1:1: ${ok ? 'ok' : 'FAILED'}`,
})
const fixedHealth = (ok: boolean): HealthChecker & { runs: number } => {
  const h = {
    runs: 0,
    run: async () => {
      h.runs++
      return healthResult(ok)
    },
  }
  return h
}
const healthSpec: HealthSpecT = { checks: [{ type: 'tcp-port', port: 1 }], timeoutSeconds: 5 }

/** An installer that records calls; its journal state lives in a map. */
function fakeInstaller(result: Partial<InstallerResult> = {}, rollbackError?: Error) {
  const states = new Map<string, 'installed' | 'rolled-back'>()
  const calls: string[] = []
  const installer: Installer = {
    install: async (req) => {
      calls.push('install')
      states.set(req.manifest.bundleId, 'installed')
      return { rebootRequired: false, log: 'fake install', ...result }
    },
    rollback: async (bundleId) => {
      calls.push('rollback')
      if (rollbackError) throw rollbackError
      states.set(bundleId, 'rolled-back')
      return { log: 'fake rollback' }
    },
    commit: async () => {
      calls.push('commit')
    },
    recover: async () => ({ rolledBack: [], failed: [] }),
    status: async (bundleId) => states.get(bundleId),
  }
  return { installer, calls, states }
}

describe('install router', () => {
  let dir: string
  let cleanup: () => Promise<void>
  beforeEach(async () => {
    ;({ dir, cleanup } = await tempDir('psw-router-'))
  })
  afterEach(async () => cleanup())

  const scriptManifest = (changes: Partial<Manifest> = {}) =>
    testBundle(join(dir, 'bundles'), 'app', Buffer.from('x'), {
      install: { type: 'script', interpreter: 'sh', install: 'true', rollback: 'true', maxRunSeconds: 60 },
      rollback: { type: 'script' },
      health: healthSpec,
      ...changes,
    })

  it('rolls a files install back when its health check fails, and keeps it when the check passes', async () => {
    const target = join(dir, 'target')
    await mkdir(join(target, 'etc'), { recursive: true })
    await writeFile(join(target, 'etc/app.conf'), 'old\n')
    const tar = await packRaw([dirEntry('etc'), fileEntry('etc/app.conf', 'new\n')])
    const files = createFilesInstaller({ stateDir: join(dir, 'state') })
    const b = await testBundle(join(dir, 'bundles'), 'app', tar, {
      install: { type: 'files', targetRoot: '/opt/app', maxRunSeconds: 60 },
      rollback: { type: 'files-backup' },
      health: healthSpec,
    })
    const failing = createInstallRouter({
      stateDir: join(dir, 'state'),
      files,
      health: fixedHealth(false),
      platform: 'linux',
    })
    const err = (await failing.install({ ...b, targetRoot: target }).catch((e) => e)) as PswError
    expect(err).toBeInstanceOf(InstallError)
    expect(err).toMatchObject({
      code: 'PSW_ERR_INSTALL_FAILED',
      details: { rolledBack: true, health: { ok: false, log: expect.stringMatching(/FAILED/) } },
    })
    expect(err.message).toMatch(/health check failed after installing app 1\.0 \(ECONNREFUSED\); rolled back/)
    expect(await readFile(join(target, 'etc/app.conf'), 'utf8')).toBe('old\n')
    expect(await files.status(b.manifest.bundleId)).toBe('rolled-back')

    const passing = createInstallRouter({
      stateDir: join(dir, 'state'),
      files,
      health: fixedHealth(true),
      platform: 'linux',
    })
    const outcome = await passing.install({ ...b, targetRoot: target })
    expect(outcome).toMatchObject({ installer: 'files', rebootRequired: false, health: { ok: true } })
    expect(await readFile(join(target, 'etc/app.conf'), 'utf8')).toBe('new\n')
  })

  it('records a health-check failure that was rolled back as rolled-back, one without rollback as failed', async () => {
    const rolled = createInstallRouter({
      stateDir: dir,
      script: fakeInstaller().installer,
      health: fixedHealth(false),
      platform: 'linux',
    })
    const undone = installFailure(await rolled.install(await scriptManifest()).catch((e) => e))
    expect(undone).toMatchObject({
      state: 'rolled-back',
      error: { code: 'PSW_ERR_INSTALL_FAILED', message: expect.stringMatching(/health check failed.*rolled back/) },
      health: { ok: false, log: expect.stringMatching(/FAILED/) },
      log: expect.stringMatching(/\[install\]\nfake install\n\[rollback\]\nfake rollback/),
    })
    const kept = createInstallRouter({
      stateDir: join(dir, 'other'),
      script: fakeInstaller().installer,
      health: fixedHealth(false),
      platform: 'linux',
    })
    const b = await scriptManifest({ rollback: { type: 'none' } })
    expect(installFailure(await kept.install(b).catch((e) => e))).toMatchObject({
      state: 'failed',
      error: { code: 'PSW_ERR_INSTALL_FAILED' },
      health: { ok: false },
    })
    expect(installFailure(new Error('boom'))).toEqual({
      state: 'failed',
      error: { code: 'PSW_ERR_INTERNAL', message: 'Error: boom' },
    })
  })

  it('does not roll back when the manifest says rollback none, but still fails the install', async () => {
    const fake = fakeInstaller()
    const router = createInstallRouter({
      stateDir: dir,
      script: fake.installer,
      health: fixedHealth(false),
      platform: 'linux',
    })
    const b = await scriptManifest({ rollback: { type: 'none' } })
    expect(await router.install(b).catch((e: PswError) => e)).toMatchObject({
      code: 'PSW_ERR_INSTALL_FAILED',
      details: { rolledBack: false, health: { ok: false } },
    })
    expect(fake.calls).toEqual(['install'])
  })

  it('reports PSW_ERR_ROLLBACK_FAILED with the health result when the rollback fails too', async () => {
    const fake = fakeInstaller({}, new InstallError('PSW_ERR_ROLLBACK_FAILED', 'rollback script exited with 2'))
    const router = createInstallRouter({
      stateDir: dir,
      script: fake.installer,
      health: fixedHealth(false),
      platform: 'linux',
    })
    const err = (await router.install(await scriptManifest()).catch((e) => e)) as PswError
    expect(err).toMatchObject({ code: 'PSW_ERR_ROLLBACK_FAILED', details: { health: { ok: false } } })
  })

  it('surfaces reboot required and leaves the health check until after the reboot', async () => {
    const fake = fakeInstaller({ rebootRequired: true })
    const health = fixedHealth(false)
    const router = createInstallRouter({ stateDir: dir, script: fake.installer, health, platform: 'linux' })
    const outcome = await router.install(await scriptManifest())
    expect(outcome).toMatchObject({ installer: 'script', rebootRequired: true })
    expect(outcome.health).toBeUndefined()
    expect(health.runs).toBe(0)
    expect(fake.calls).toEqual(['install'])
  })

  it('keeps every snapshot after a healthy install; release() commits each installer, rollback() runs the right one', async () => {
    const script = fakeInstaller()
    const other = fakeInstaller()
    const router = createInstallRouter({
      stateDir: dir,
      script: script.installer,
      dpkg: other.installer,
      health: fixedHealth(true),
      platform: 'linux',
    })
    const b = await scriptManifest()
    await router.install(b)
    expect(script.calls).toEqual(['install'])
    expect(await router.rollback(b.manifest)).toEqual({ log: 'fake rollback' })
    expect(script.calls).toEqual(['install', 'rollback'])
    await router.release(b.manifest.bundleId)
    expect(script.calls).toEqual(['install', 'rollback', 'commit'])
    expect(other.calls).toEqual(['commit'])
  })

  it('refuses a rollback of a manifest that declares none, without asking the installer', async () => {
    const fake = fakeInstaller()
    const router = createInstallRouter({ stateDir: dir, script: fake.installer, platform: 'linux' })
    const b = await testBundle(join(dir, 'bundles'), 'app', Buffer.from('x'), {
      install: { type: 'script', interpreter: 'sh', install: 'true', maxRunSeconds: 60 },
      rollback: { type: 'none' },
    })
    await router.install(b)
    expect(await router.rollback(b.manifest).catch((e: PswError) => e)).toMatchObject({
      code: 'PSW_ERR_ROLLBACK_UNAVAILABLE',
    })
    expect(fake.calls).toEqual(['install'])
  })

  it('rolls a healthy files install back later (site-wide) to exactly the previous files', async () => {
    const target = join(dir, 'target')
    await mkdir(join(target, 'etc'), { recursive: true })
    await writeFile(join(target, 'etc/app.conf'), 'old\n')
    const tar = await packRaw([dirEntry('etc'), fileEntry('etc/app.conf', 'new\n'), fileEntry('etc/extra', 'x\n')])
    const stateDir = join(dir, 'state')
    const files = createFilesInstaller({ stateDir })
    const b = await testBundle(join(dir, 'bundles'), 'app', tar, {
      install: { type: 'files', targetRoot: '/opt/app', maxRunSeconds: 60 },
      rollback: { type: 'files-backup' },
      health: healthSpec,
    })
    const router = createInstallRouter({ stateDir, files, health: fixedHealth(true), platform: 'linux' })
    await router.install({ ...b, targetRoot: target })
    expect(await readFile(join(target, 'etc/app.conf'), 'utf8')).toBe('new\n')
    expect(await readdir(join(stateDir, 'backups'))).toEqual([b.manifest.bundleId])
    // Later, in another agent process: the backups are still there.
    const later = createInstallRouter({ stateDir, files: createFilesInstaller({ stateDir }), platform: 'linux' })
    await later.recover()
    await later.rollback(b.manifest)
    expect(await readFile(join(target, 'etc/app.conf'), 'utf8')).toBe('old\n')
    expect(await readdir(join(target, 'etc'))).toEqual(['app.conf'])
    expect(await later.status(b.manifest)).toBe('rolled-back')
    await later.release(b.manifest.bundleId)
    expect(await readdir(join(stateDir, 'backups'))).toEqual([])
  })

  it('refuses an installer that is not wired', async () => {
    const router = createInstallRouter({ stateDir: dir, platform: 'linux' })
    expect([...router.installers]).toEqual([])
    await expect(router.install(await scriptManifest())).rejects.toMatchObject({
      code: 'PSW_ERR_INSTALLER_UNSUPPORTED',
    })
  })

  it('at recover(), rolls back an install whose health check never finished', async () => {
    const fake = fakeInstaller()
    let reached!: () => void
    const inHealth = new Promise<void>((resolve) => {
      reached = resolve
    })
    // The agent dies (kill -9) during the health check: it never returns.
    const hanging: HealthChecker = {
      run: () => {
        reached()
        return new Promise(() => {})
      },
    }
    const b = await scriptManifest()
    void createInstallRouter({ stateDir: dir, script: fake.installer, health: hanging, platform: 'linux' }).install(b)
    await inHealth
    expect(fake.states.get(b.manifest.bundleId)).toBe('installed')
    const recovered = await createInstallRouter({ stateDir: dir, script: fake.installer, platform: 'linux' }).recover()
    expect(recovered).toEqual({ rolledBack: [b.manifest.bundleId], failed: [] })
    expect(fake.calls).toEqual(['install', 'rollback'])
  })
})
