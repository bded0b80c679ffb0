import { spawn } from 'node:child_process'
import { createReadStream, statSync } from 'node:fs'
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { writeBundle } from '../../shared/bundle/bundle-writer.ts'
import { dirEntry, fileEntry, packBundle, packRaw, snapshot, tempDir } from '../../shared/bundle/test-helpers.ts'
import { InstallError, type PswError } from '../../shared/errors.ts'
import { createFilesInstaller, type InstallStep } from './files-installer.ts'

let root: string
let cleanup: () => Promise<void>
let stateDir: string
let target: string
let outside: string
let bundleTar: string
const open = () => createReadStream(bundleTar)

beforeEach(async () => {
  ;({ dir: root, cleanup } = await tempDir('psw-installer-'))
  stateDir = join(root, 'state')
  target = join(root, 'target')
  outside = join(root, 'outside')
  await mkdir(join(target, 'etc'), { recursive: true })
  await mkdir(join(target, 'bin'))
  await mkdir(outside)
  await writeFile(join(outside, 'secret'), 'do not touch')
  await writeFile(join(target, 'etc/app.conf'), 'old config\n', { mode: 0o640 })
  await chmod(join(target, 'etc/app.conf'), 0o4750) // setuid on the old file must come back too
  await utimes(join(target, 'etc/app.conf'), new Date(2001, 1, 1), new Date(2001, 1, 1))
  await writeFile(join(target, 'bin/keep'), 'unrelated')
  await writeFile(join(target, 'readme'), 'unrelated too')
  // Whole seconds: a copy restores mtimes through utimes(seconds as a double), exact only for these.
  await utimes(join(target, 'readme'), new Date(2002, 2, 2), new Date(2002, 2, 2))
  const src = join(root, 'src')
  await mkdir(join(src, 'etc'), { recursive: true })
  await mkdir(join(src, 'bin'))
  await mkdir(join(src, 'lib/deep'), { recursive: true })
  await writeFile(join(src, 'etc/app.conf'), 'new config\n')
  await writeFile(join(src, 'bin/tool'), '#!/bin/sh\necho tool\n', { mode: 0o755 })
  await writeFile(join(src, 'lib/deep/x.so'), Buffer.alloc(200_000, 5))
  await writeFile(join(src, 'readme'), 'new readme')
  bundleTar = join(root, 'bundle.tar')
  await writeBundle({ source: src, name: 'app', version: '2.0', out: bundleTar })
})
afterEach(async () => cleanup())

const onOtherDevice = (a: string, b: string): boolean => {
  try {
    return statSync(a).dev !== statSync(b).dev
  } catch {
    return false
  }
}
const errorOf = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: unknown) => e as PswError,
  )

describe('files installer', () => {
  it('installs, keeps backups, and rolls back to exactly the original state (idempotently)', async () => {
    const before = await snapshot(target)
    const installer = createFilesInstaller({ stateDir })
    const result = await installer.install({ bundleId: 'app-2.0', targetRoot: target, openVerified: open })
    expect(result).toEqual({ bundleId: 'app-2.0', files: 4, replaced: 2, created: 2, createdDirs: 2 })
    expect(await installer.status('app-2.0')).toBe('installed')
    expect(await readFile(join(target, 'etc/app.conf'), 'utf8')).toBe('new config\n')
    expect((await lstat(join(target, 'etc/app.conf'))).mode & 0o7777).toBe(0o644)
    expect((await lstat(join(target, 'bin/tool'))).mode & 0o7777).toBe(0o755)
    expect((await readFile(join(target, 'lib/deep/x.so'))).length).toBe(200_000)
    expect(await readFile(join(target, 'bin/keep'), 'utf8')).toBe('unrelated')
    const backups = join(stateDir, 'backups/app-2.0/files')
    expect(await readFile(join(backups, 'etc/app.conf'), 'utf8')).toBe('old config\n')
    expect(await readFile(join(backups, 'readme'), 'utf8')).toBe('unrelated too')
    expect(await readdir(join(stateDir, 'staging'))).toEqual([])
    expect((await readdir(join(target, 'etc'))).filter((n) => n.includes('psw-tmp'))).toEqual([])

    await expect(
      installer.install({ bundleId: 'app-2.0', targetRoot: target, openVerified: open }),
    ).rejects.toMatchObject({ code: 'PSW_ERR_CONFLICT' })

    await installer.rollback('app-2.0')
    expect(await installer.status('app-2.0')).toBe('rolled-back')
    expect(await snapshot(target)).toEqual(before)
    await installer.rollback('app-2.0')
    expect(await snapshot(target)).toEqual(before)
    expect(await readdir(join(stateDir, 'backups'))).toEqual([])

    await installer.install({ bundleId: 'app-2.0', targetRoot: target, openVerified: open }) // again after rollback
    expect(await readFile(join(target, 'readme'), 'utf8')).toBe('new readme')
  })

  it.each<[InstallStep, string]>([
    ['mkdir', 'lib/deep'],
    ['backup', 'etc/app.conf'],
    ['place', 'etc/app.conf'],
    ['place', 'lib/deep/x.so'],
    ['place', 'readme'],
  ])('a failure at %s %s rolls back to the original state', async (step, path) => {
    const before = await snapshot(target)
    const boom = new Error(`injected at ${step} ${path}`)
    const installer = createFilesInstaller({
      stateDir,
      faultHook: (s, p) => {
        if (s === step && p === path) throw boom
      },
    })
    const err = await errorOf(installer.install({ bundleId: 'b1', targetRoot: target, openVerified: open }))
    expect(err).toBeInstanceOf(InstallError)
    expect(err?.code).toBe('PSW_ERR_INSTALL_FAILED')
    expect(err?.cause).toBe(boom)
    expect(await snapshot(target)).toEqual(before)
    expect(await installer.status('b1')).toBe('rolled-back')
  })

  it('reports a full disk as the cause (PSW_ERR_DISK_FULL) and restores the original state', async () => {
    const before = await snapshot(target)
    const enospc = Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC', syscall: 'write' })
    const installer = createFilesInstaller({
      stateDir,
      faultHook: (s, p) => {
        if (s === 'place' && p === 'lib/deep/x.so') throw enospc
      },
    })
    const err = await errorOf(installer.install({ bundleId: 'full', targetRoot: target, openVerified: open }))
    expect(err?.code).toBe('PSW_ERR_INSTALL_FAILED')
    expect(err?.cause).toMatchObject({ code: 'PSW_ERR_DISK_FULL' })
    expect(await snapshot(target)).toEqual(before)
  })

  it.skipIf(!onOtherDevice('/dev/shm', tmpdir()))(
    'works with the state dir on another file system (copies instead of links and renames)',
    async () => {
      const shm = await mkdtemp('/dev/shm/psw-state-')
      try {
        const before = await snapshot(target)
        const installer = createFilesInstaller({ stateDir: shm })
        await installer.install({ bundleId: 'xdev', targetRoot: target, openVerified: open })
        expect(await readFile(join(target, 'etc/app.conf'), 'utf8')).toBe('new config\n')
        await installer.rollback('xdev')
        expect(await snapshot(target)).toEqual(before)
      } finally {
        await rm(shm, { recursive: true, force: true })
      }
    },
  )

  it('refuses a symlink in the target that points outside, writing nothing anywhere', async () => {
    await symlink(outside, join(target, 'lib'))
    const before = await snapshot(root)
    const installer = createFilesInstaller({ stateDir })
    const err = await errorOf(installer.install({ bundleId: 'b2', targetRoot: target, openVerified: open }))
    expect(err?.code).toBe('PSW_ERR_INSTALL_FAILED')
    expect(err?.message).toContain('symlink')
    const after = await snapshot(root)
    for (const key of Object.keys(after)) if (key.startsWith('state/')) delete after[key]
    delete after.state
    expect(after).toEqual(before)
    expect(await installer.status('b2')).toBeUndefined()
  })

  it('refuses a target file that is a symlink', async () => {
    await writeFile(join(target, 'readme.real'), 'x')
    await rm(join(target, 'readme'))
    await symlink(join(outside, 'secret'), join(target, 'readme'))
    const err = await errorOf(
      createFilesInstaller({ stateDir }).install({ bundleId: 'b3', targetRoot: target, openVerified: open }),
    )
    expect(err?.code).toBe('PSW_ERR_INSTALL_FAILED')
    expect(await readFile(join(outside, 'secret'), 'utf8')).toBe('do not touch')
    expect(await lstat(join(target, 'bin/tool')).catch(() => 'absent')).toBe('absent')
  })

  it('rejects a malicious bundle in pass 1 before writing anything', async () => {
    bundleTar = join(root, 'evil.tar')
    await writeFile(
      bundleTar,
      await packBundle([fileEntry('payload/ok', 'fine'), fileEntry('payload/../../x', 'evil')]),
    )
    const before = await snapshot(target)
    const installer = createFilesInstaller({ stateDir })
    const err = await errorOf(installer.install({ bundleId: 'evil', targetRoot: target, openVerified: open }))
    expect(err?.code).toBe('PSW_ERR_TAR_PATH')
    expect(await snapshot(target)).toEqual(before)
    expect(await readdir(join(stateDir, 'staging'))).toEqual([])
    expect(await installer.status('evil')).toBeUndefined()
  })

  it('refuses a second read that differs from the first (pass 2 re-validates)', async () => {
    const other = join(root, 'other.tar')
    await writeFile(other, await packBundle([fileEntry('payload/readme', 'sneaky')]))
    let reads = 0
    const openVerified = () => createReadStream(reads++ === 0 ? bundleTar : other)
    const before = await snapshot(target)
    const err = await errorOf(
      createFilesInstaller({ stateDir }).install({ bundleId: 'b4', targetRoot: target, openVerified }),
    )
    expect(err?.code).toBe('PSW_ERR_BUNDLE_HASH')
    expect(await snapshot(target)).toEqual(before)
  })

  it('commit drops the backups; a committed install is refused a rollback and left as it is', async () => {
    const installer = createFilesInstaller({ stateDir })
    await installer.install({ bundleId: 'rel', targetRoot: target, openVerified: open })
    const installed = await snapshot(target)
    await installer.commit('rel')
    await installer.commit('rel') // idempotent
    expect(await readdir(join(stateDir, 'backups'))).toEqual([])
    expect(await installer.status('rel')).toBe('installed')
    expect(await errorOf(installer.rollback('rel'))).toMatchObject({ code: 'PSW_ERR_ROLLBACK_UNAVAILABLE' })
    expect(await snapshot(target)).toEqual(installed)
    expect(await installer.status('rel')).toBe('installed')
  })

  it('refuses to roll back over a replaced file that changed since (a later bundle), changing nothing', async () => {
    const installer = createFilesInstaller({ stateDir })
    await installer.install({ bundleId: 'older', targetRoot: target, openVerified: open })
    await writeFile(join(target, 'etc/app.conf'), 'written by a later bundle\n')
    const now = await snapshot(target)
    const err = await errorOf(installer.rollback('older'))
    expect(err).toMatchObject({
      code: 'PSW_ERR_ROLLBACK_UNAVAILABLE',
      details: { path: expect.stringMatching(/etc\/app\.conf$/) },
    })
    expect(await snapshot(target)).toEqual(now)
    expect(await installer.status('older')).toBe('installed')
  })

  it('leaves a new file that was changed after the install when rolling back', async () => {
    const installer = createFilesInstaller({ stateDir })
    await installer.install({ bundleId: 'b5', targetRoot: target, openVerified: open })
    await writeFile(join(target, 'bin/tool'), 'edited by an admin')
    await installer.rollback('b5')
    expect(await readFile(join(target, 'bin/tool'), 'utf8')).toBe('edited by an admin')
    expect(await readFile(join(target, 'etc/app.conf'), 'utf8')).toBe('old config\n')
  })

  it('installs raw content (a plain vendor tar) under the target root and rolls it back', async () => {
    const vendorTar = join(root, 'vendor.tar')
    await writeFile(
      vendorTar,
      await packRaw([
        { header: { name: './', type: 'directory', mode: 0o755 } },
        dirEntry('./etc'),
        fileEntry('./etc/app.conf', 'vendor config\n'),
        dirEntry('./opt'),
        fileEntry('./opt/vendor-tool', '#!/bin/sh\n', 0o755),
      ]),
    )
    const openRaw = () => createReadStream(vendorTar)
    const before = await snapshot(target)
    const installer = createFilesInstaller({ stateDir })
    // A plain tar is not a bundle: read as format tar its './' entry is refused, nothing written.
    const asTar = await errorOf(installer.install({ bundleId: 'raw-1', targetRoot: target, openVerified: openRaw }))
    expect(asTar?.code).toBe('PSW_ERR_TAR_PATH')
    expect(await snapshot(target)).toEqual(before)

    const result = await installer.install({
      bundleId: 'raw-1',
      targetRoot: target,
      openVerified: openRaw,
      format: 'raw',
      name: 'vendor-tool',
      version: '1.2.3',
    })
    expect(result).toEqual({ bundleId: 'raw-1', files: 2, replaced: 1, created: 1, createdDirs: 1 })
    expect(await readFile(join(target, 'etc/app.conf'), 'utf8')).toBe('vendor config\n')
    expect((await lstat(join(target, 'opt/vendor-tool'))).mode & 0o7777).toBe(0o755)
    const journal = JSON.parse(await readFile(join(stateDir, 'journal/raw-1.json'), 'utf8'))
    expect(journal).toMatchObject({ name: 'vendor-tool', bundleVersion: '1.2.3', state: 'installed' })
    await installer.rollback('raw-1')
    expect(await snapshot(target)).toEqual(before)
  })

  it('rejects a raw tar with a traversal in pass 1, writing nothing', async () => {
    const evil = join(root, 'evil-raw.tar')
    await writeFile(evil, await packRaw([fileEntry('ok', 'fine'), fileEntry('./../../x', 'evil')]))
    const before = await snapshot(root)
    const installer = createFilesInstaller({ stateDir })
    const err = await errorOf(
      installer.install({
        bundleId: 'evil-raw',
        targetRoot: target,
        openVerified: () => createReadStream(evil),
        format: 'raw',
      }),
    )
    expect(err?.code).toBe('PSW_ERR_TAR_PATH')
    const after = await snapshot(root)
    for (const key of Object.keys(after)) if (key.startsWith('state')) delete after[key]
    expect(after).toEqual(before)
    expect(await installer.status('evil-raw')).toBeUndefined()
  })

  it('validates bundle ids and target roots', async () => {
    const installer = createFilesInstaller({ stateDir })
    for (const bundleId of ['../x', '', 'a/b', '.hidden', 'x'.repeat(200)]) {
      const err = await errorOf(installer.install({ bundleId, targetRoot: target, openVerified: open }))
      expect(err?.code).toBe('PSW_ERR_INVALID_ARGUMENT')
    }
    const err = await errorOf(installer.install({ bundleId: 'ok', targetRoot: join(root, 'nope'), openVerified: open }))
    expect(err?.code).toBe('PSW_ERR_INVALID_ARGUMENT')
    await expect(installer.rollback('never')).rejects.toMatchObject({ code: 'PSW_ERR_NOT_FOUND' })
  })
})

describe('recover after kill -9', () => {
  const installerUrl = new URL('./files-installer.ts', import.meta.url).href
  const runTs = fileURLToPath(new URL('../../bin/run-ts.js', import.meta.url))

  /** Runs an install in a child process that stops at `step path`, then kills it with SIGKILL. */
  async function killMidInstall(step: InstallStep, path: string): Promise<void> {
    const script = join(root, 'crash.mts')
    await writeFile(
      script,
      `import { createReadStream, statSync } from 'node:fs'
import { createFilesInstaller } from ${JSON.stringify(installerUrl)}
const [stateDir, target, tar, step, path] = process.argv.slice(2)
const installer = createFilesInstaller({ stateDir, faultHook: async (s, p) => {
  if (s === step && p === path) { process.stdout.write('ready\\n'); await new Promise(() => setInterval(() => {}, 1000)) }
} })
await installer.install({ bundleId: 'crashy', targetRoot: target, openVerified: () => createReadStream(tar) })
process.stdout.write('finished\\n')
`,
    )
    const child = spawn(process.execPath, [runTs, script, stateDir, target, bundleTar, step, path], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stderr = ''
    child.stderr.on('data', (d) => {
      stderr += d
    })
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)))
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => (d.toString().includes('ready') ? resolve() : undefined))
      child.on('exit', () => reject(new Error(`child exited before the cut point: ${stderr}`)))
    })
    child.kill('SIGKILL')
    expect(await exited).toBe('SIGKILL')
  }

  it.each<[InstallStep, string]>([
    ['backup', 'etc/app.conf'], // one new file placed, old file not yet backed up
    ['place', 'etc/app.conf'], // backed up, not yet replaced
    ['place', 'lib/deep/x.so'], // two files placed, directories created
    ['place', 'readme'], // all but the last placed
  ])('an install killed at %s %s is rolled back by recover()', async (step, path) => {
    const before = await snapshot(target)
    await killMidInstall(step, path)
    const installer = createFilesInstaller({ stateDir })
    expect(await installer.status('crashy')).toBe('applying')
    expect(await snapshot(target)).not.toEqual(before)
    expect(await installer.recover()).toEqual({ rolledBack: ['crashy'], failed: [] })
    expect(await snapshot(target)).toEqual(before)
    expect(await installer.status('crashy')).toBe('rolled-back')
    expect(await readdir(join(stateDir, 'staging'))).toEqual([])
    expect(await readdir(join(stateDir, 'backups'))).toEqual([])
    expect(await installer.recover()).toEqual({ rolledBack: [], failed: [] })
  })
})
