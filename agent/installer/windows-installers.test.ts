import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { tempDir } from '../../shared/bundle/test-helpers.ts'
import type { PswError } from '../../shared/errors.ts'
import type { WindowsInstallSpecT } from '../../shared/metadata/manifest-schema.ts'
import { createInstallRouter } from '../install-support.ts'
import type { ProcessRunner, RunRequest, RunResult } from './process-runner.ts'
import { testBundle } from './test-helpers.ts'
import { createWindowsInstaller, mapExitCode, readLogTail, windowsCommand } from './windows-installers.ts'

// Pure command construction and exit-code mapping. UNTESTED ON REAL WINDOWS: the spawn is only
// ever driven through a fake runner here.

const msi: WindowsInstallSpecT = { type: 'msi', maxRunSeconds: 600 }

describe('Windows command lines', () => {
  it.each<[WindowsInstallSpecT, string[]]>([
    [msi, ['msiexec.exe', '/i', 'C:\\s\\package.msi', '/qn', '/norestart', '/l*v', 'C:\\s\\msi.log']],
    [
      { ...msi, args: ['INSTALLDIR=C:\\App', 'REBOOT=ReallySuppress'] },
      [
        'msiexec.exe',
        '/i',
        'C:\\s\\package.msi',
        '/qn',
        '/norestart',
        '/l*v',
        'C:\\s\\msi.log',
        'INSTALLDIR=C:\\App',
        'REBOOT=ReallySuppress',
      ],
    ],
    [{ type: 'msu', maxRunSeconds: 600 }, ['wusa.exe', 'C:\\s\\package.msu', '/quiet', '/norestart']],
    [{ type: 'exe', maxRunSeconds: 600, args: ['/S', '/v/qn'] }, ['C:\\s\\package.exe', '/S', '/v/qn']],
    [{ type: 'exe', maxRunSeconds: 600 }, ['C:\\s\\package.exe']],
  ])('%j → %j', (spec, argv) => {
    expect(windowsCommand(spec, `C:\\s\\package.${spec.type}`, 'C:\\s\\msi.log')).toEqual(argv)
  })
})

describe('Windows exit codes', () => {
  it.each<[Partial<WindowsInstallSpecT>, number, string, boolean]>([
    [{}, 0, 'success', false],
    [{}, 3010, 'reboot', true],
    [{}, 1641, 'reboot', true],
    [{}, 1618, 'retry', false],
    [{}, 1603, 'failure', false],
    [{}, 1, 'failure', false],
    [{}, -1, 'failure', false],
    [{ successCodes: [1] }, 1, 'success', false],
    [{ rebootCodes: [194] }, 194, 'reboot', true],
    [{ successCodes: [-2147024891] }, 0x80070005, 'success', false], // signed and unsigned spellings
    [{ type: 'msu' }, 0x00240006, 'success', false], // already installed
    [{ type: 'msu' }, 0x80240017, 'failure', false], // not applicable
    [{ type: 'exe' }, 0x00240006, 'failure', false], // only wusa means "already installed" by it
  ])('%j exit %d → %s (reboot %s)', (change, code, kind, reboot) => {
    const outcome = mapExitCode({ ...msi, ...change }, code)
    expect(outcome).toMatchObject({ kind, rebootRequired: reboot, code: code >>> 0 })
  })

  it('names well-known failures', () => {
    expect(mapExitCode(msi, 1603).reason).toBe('fatal error during installation')
    expect(mapExitCode({ type: 'msu' }, 0x80240017).reason).toBe('the update is not applicable to this computer')
    expect(mapExitCode(msi, 42).reason).toBe('installer failed with exit code 42')
  })
})

describe('Windows installer (fake runner)', () => {
  let dir: string
  let cleanup: () => Promise<void>
  beforeEach(async () => {
    ;({ dir, cleanup } = await tempDir('psw-win-'))
  })
  afterEach(async () => cleanup())

  const runner = (exitCode: number | null, onRun?: (req: RunRequest) => Promise<void>) => {
    const calls: RunRequest[] = []
    const r: ProcessRunner & { calls: RunRequest[] } = {
      calls,
      run: async (req) => {
        calls.push(req)
        await onRun?.(req)
        const res: RunResult = {
          exitCode,
          signal: null,
          timedOut: exitCode === null,
          aborted: false,
          stdout: '',
          stderr: '',
          truncated: false,
          durationMs: 1,
        }
        return res
      },
    }
    return r
  }
  const bundle = (spec: WindowsInstallSpecT = msi) =>
    testBundle(
      join(dir, 'bundles'),
      'winapp',
      Buffer.from('MZ fake installer bytes'),
      { install: spec, rollback: { type: 'none' } },
      { platform: { os: 'windows', arch: 'any' } },
    )

  it('refuses anywhere but Windows', async () => {
    const installer = createWindowsInstaller({ stateDir: join(dir, 'state'), runner: runner(0), platform: 'linux' })
    await expect(installer.install(await bundle())).rejects.toMatchObject({ code: 'PSW_ERR_INSTALLER_UNSUPPORTED' })
  })

  it('stages exactly the verified bytes, runs msiexec on them and surfaces 3010 as reboot required', async () => {
    let staged: Buffer | undefined
    const fake = runner(3010, async (req) => {
      staged = await readFile(req.argv[2]!)
      // msiexec writes its verbose log as UTF-16LE with a BOM.
      await writeFile(
        req.argv[6]!,
        Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('MSI (s) done\r\n', 'utf16le')]),
      )
    })
    const stateDir = join(dir, 'state')
    const b = await bundle()
    const router = createInstallRouter({
      stateDir,
      windows: createWindowsInstaller({ stateDir, runner: fake, platform: 'win32' }),
      platform: 'win32',
      arch: 'x64',
    })
    const outcome = await router.install(b)
    expect(outcome).toMatchObject({ installer: 'msi', rebootRequired: true, details: { exitCode: 3010 } })
    expect(outcome.health).toBeUndefined()
    expect(outcome.log).toMatch(/MSI \(s\) done/)
    expect(staged).toEqual(Buffer.from('MZ fake installer bytes'))
    expect(fake.calls[0]!.argv.slice(0, 2)).toEqual(['msiexec.exe', '/i'])
    expect(fake.calls[0]!.timeoutMs).toBe(600_000)
    expect(await router.status(b.manifest)).toBe('installed')
    // No automatic rollback: a site-wide rollback is refused, and nothing is run or changed.
    expect(await router.rollback(b.manifest).catch((e: PswError) => e)).toMatchObject({
      code: 'PSW_ERR_ROLLBACK_UNAVAILABLE',
    })
    const installer = createWindowsInstaller({ stateDir, runner: fake, platform: 'win32' })
    expect(await installer.rollback(b.manifest.bundleId).catch((e: PswError) => e)).toMatchObject({
      code: 'PSW_ERR_ROLLBACK_UNAVAILABLE',
    })
    expect(fake.calls).toHaveLength(1)
    expect(await router.status(b.manifest)).toBe('installed')
  })

  it('maps 1618 to PSW_ERR_INSTALL_BUSY and other codes to PSW_ERR_INSTALL_FAILED with the code', async () => {
    const stateDir = join(dir, 'state')
    const busy = createWindowsInstaller({ stateDir, runner: runner(1618), platform: 'win32' })
    const b = await bundle({ type: 'exe', maxRunSeconds: 60, args: ['/quiet'] })
    expect(await busy.install(b).catch((e: PswError) => e)).toMatchObject({ code: 'PSW_ERR_INSTALL_BUSY' })
    const failing = createWindowsInstaller({ stateDir, runner: runner(1603), platform: 'win32' })
    expect(await failing.install(b).catch((e: PswError) => e)).toMatchObject({
      code: 'PSW_ERR_INSTALL_FAILED',
      details: { exitCode: 1603, rolledBack: false },
    })
    const hung = createWindowsInstaller({ stateDir, runner: runner(null), platform: 'win32' })
    expect(await hung.install(b).catch((e: PswError) => e)).toMatchObject({
      code: 'PSW_ERR_INSTALL_FAILED',
      details: { timedOut: true },
    })
  })

  it('reads the tail of UTF-8 and UTF-16LE logs', async () => {
    const utf8 = join(dir, 'a.log')
    await writeFile(utf8, `${'x'.repeat(100)}END`)
    expect(await readLogTail(utf8, 10)).toBe('xxxxxxxEND')
    const utf16 = join(dir, 'b.log')
    await writeFile(utf16, Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(`${'y'.repeat(50)}TAIL`, 'utf16le')]))
    expect(await readLogTail(utf16, 6)).toBe('yyTAIL')
    expect(await readLogTail(join(dir, 'missing.log'))).toBe('')
  })
})
