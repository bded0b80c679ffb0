/**
 * The Windows installers `msi`, `msu` and `exe`: command construction and exit-code mapping
 * (pure, unit-tested), and a thin installer around them.
 *
 * UNTESTED ON REAL WINDOWS. The command lines follow Microsoft's documented switches
 * (`msiexec /i <file> /qn /norestart /l*v <log>`, `wusa.exe <file> /quiet /norestart`), and the
 * installer refuses with PSW_ERR_INSTALLER_UNSUPPORTED unless the platform is `win32`, so the
 * spawn path has only run against a fake process runner. How Node quotes arguments for
 * msiexec's own command-line parser (PROPERTY="a b") is unverified.
 */
import { constants } from 'node:fs'
import { mkdir, open, readdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { InstallError, StateError } from '../../shared/errors.ts'
import { type Logger, silentLogger } from '../../shared/log.ts'
import type { Manifest, WindowsInstallSpecT } from '../../shared/metadata/manifest-schema.ts'
import {
  freshPrivateDir,
  type Installer,
  installFailed,
  type OpJournalBase,
  type RecoverResult,
  readOpJournal,
  rollbackUnavailable,
  stageVerified,
  writeOpJournal,
} from './installer-api.ts'
import { bundlePaths } from './journal.ts'
import {
  createProcessRunner,
  DEFAULT_OUTPUT_TAIL,
  describeRun,
  limitedEnv,
  type ProcessRunner,
  runDetails,
  tailText,
} from './process-runner.ts'

export type WindowsInstallerType = WindowsInstallSpecT['type']

/** Exit codes every Windows installer shares (Windows Installer error codes). */
export const EXIT = {
  SUCCESS: 0,
  /** ERROR_SUCCESS_REBOOT_REQUIRED */
  REBOOT_REQUIRED: 3010,
  /** ERROR_SUCCESS_REBOOT_INITIATED (we pass /norestart, but installers may still say so) */
  REBOOT_INITIATED: 1641,
  /** ERROR_INSTALL_ALREADY_RUNNING: another installation is in progress */
  ALREADY_RUNNING: 1618,
  /** wusa: WU_S_ALREADY_INSTALLED (0x00240006) */
  MSU_ALREADY_INSTALLED: 0x00240006,
  /** wusa: WU_E_NOT_APPLICABLE (0x80240017) */
  MSU_NOT_APPLICABLE: 0x80240017,
} as const

const KNOWN_FAILURES: Record<number, string> = {
  1602: 'the user cancelled the installation',
  1603: 'fatal error during installation',
  1619: 'the installation package could not be opened',
  1620: 'the installation package is invalid',
  1633: 'this platform is not supported by the package',
  1638: 'another version of this product is already installed',
  [EXIT.MSU_NOT_APPLICABLE]: 'the update is not applicable to this computer',
}

/** What an exit code means. */
export interface ExitOutcome {
  /** success and reboot are successes; retry: nothing was done, try again later. */
  kind: 'success' | 'reboot' | 'retry' | 'failure'
  /** The code as an unsigned 32-bit number (how Windows reports HRESULT-style codes). */
  code: number
  rebootRequired: boolean
  reason: string
}

/** Normalises a signed or unsigned 32-bit exit code to unsigned. */
export const unsigned = (code: number): number => code >>> 0

/**
 * Maps an installer's exit code: the manifest's `rebootCodes` and `successCodes` first, then
 * 0 → success, 3010 and 1641 → success with reboot required, 1618 → retry later, (msu) already
 * installed → success, everything else → failure with the code.
 */
export function mapExitCode(
  spec: Pick<WindowsInstallSpecT, 'type' | 'successCodes' | 'rebootCodes'>,
  exitCode: number,
) {
  const code = unsigned(exitCode)
  const has = (list?: number[]) => list?.some((c) => unsigned(c) === code) ?? false
  const out = (kind: ExitOutcome['kind'], reason: string): ExitOutcome => ({
    kind,
    code,
    rebootRequired: kind === 'reboot',
    reason,
  })
  if (has(spec.rebootCodes)) return out('reboot', `exit code ${code} is declared as reboot required`)
  if (has(spec.successCodes)) return out('success', `exit code ${code} is declared as success`)
  if (code === EXIT.SUCCESS) return out('success', 'success')
  if (code === EXIT.REBOOT_REQUIRED) return out('reboot', 'success, reboot required (3010)')
  if (code === EXIT.REBOOT_INITIATED) return out('reboot', 'success, reboot initiated (1641)')
  if (code === EXIT.ALREADY_RUNNING) return out('retry', 'another installation is in progress (1618)')
  if (spec.type === 'msu' && code === EXIT.MSU_ALREADY_INSTALLED)
    return out('success', 'the update is already installed')
  return out('failure', KNOWN_FAILURES[code] ?? `installer failed with exit code ${code}`)
}

/** The file name the staged payload gets: msiexec and wusa go by the extension. */
export const payloadName = (type: WindowsInstallerType) => `package.${type}`

/** The argv that runs the staged payload `payload`; `log` is the verbose MSI log (msi only). */
export function windowsCommand(spec: Pick<WindowsInstallSpecT, 'type' | 'args'>, payload: string, log: string) {
  const args = spec.args ?? []
  switch (spec.type) {
    case 'msi':
      return ['msiexec.exe', '/i', payload, '/qn', '/norestart', '/l*v', log, ...args]
    case 'msu':
      return ['wusa.exe', payload, '/quiet', '/norestart', ...args]
    case 'exe':
      return [payload, ...args]
  }
}

/** The last bytes of a log file as text (MSI logs may be UTF-16LE with a BOM). */
export async function readLogTail(path: string, max = DEFAULT_OUTPUT_TAIL): Promise<string> {
  let fh: Awaited<ReturnType<typeof open>> | undefined
  try {
    fh = await open(path, constants.O_RDONLY)
    const { size } = await fh.stat()
    const head = Buffer.alloc(2)
    await fh.read(head, 0, 2, 0)
    const utf16 = head[0] === 0xff && head[1] === 0xfe
    const want = Math.min(size, utf16 ? max * 2 : max)
    let start = size - want
    if (utf16 && start % 2 === 1) start++
    const buf = Buffer.alloc(size - start)
    await fh.read(buf, 0, buf.length, start)
    const text = buf.toString(utf16 ? 'utf16le' : 'utf8')
    return start === 0 ? text.replace(/^\uFEFF/, '') : text
  } catch {
    return ''
  } finally {
    await fh?.close()
  }
}

/** Options of {@link createWindowsInstaller}. */
export interface WindowsInstallerOptions {
  /** The agent's installer directory; uses `windows/` (journal, staging) in it. */
  stateDir: string
  runner?: ProcessRunner
  log?: Logger
  /** Only `win32` installs; injectable so tests can drive a fake runner. */
  platform?: string
  killGraceMs?: number
}

type WindowsJournal = OpJournalBase & { type: WindowsInstallerType }

/** Creates the msi/msu/exe installer (refuses anywhere but Windows). */
export function createWindowsInstaller(options: WindowsInstallerOptions): Installer {
  const base = join(options.stateDir, 'windows')
  const runner = options.runner ?? createProcessRunner()
  const log = options.log ?? silentLogger()
  const platform = options.platform ?? process.platform
  const paths = (bundleId: string) => {
    const p = bundlePaths(base, bundleId)
    return { journal: p.journal, dir: p.staging }
  }
  const readJ = (path: string) =>
    readOpJournal<WindowsJournal>(path, (j) => ['msi', 'msu', 'exe'].includes(j.type as string))

  async function install(manifest: Manifest, openVerified: () => AsyncIterable<Uint8Array>, signal?: AbortSignal) {
    const spec = manifest.install
    if (spec.type !== 'msi' && spec.type !== 'msu' && spec.type !== 'exe') {
      throw new InstallError('PSW_ERR_INSTALLER_UNSUPPORTED', `not a Windows install: ${spec.type}`)
    }
    if (platform !== 'win32') {
      throw new InstallError('PSW_ERR_INSTALLER_UNSUPPORTED', `${spec.type} installs need Windows, this is ${platform}`)
    }
    const { bundleId } = manifest
    const p = paths(bundleId)
    for (const d of ['journal', 'staging']) await mkdir(join(base, d), { recursive: true, mode: 0o700 })
    if ((await readJ(p.journal))?.state === 'installed') {
      throw new StateError('PSW_ERR_CONFLICT', `bundle ${bundleId} is installed`)
    }
    await freshPrivateDir(p.dir)
    const payload = join(p.dir, payloadName(spec.type))
    const msiLog = join(p.dir, 'msi.log')
    const j: WindowsJournal = { version: 1, bundleId, state: 'applying', type: spec.type }
    try {
      await stageVerified(openVerified(), payload, { signal })
      await writeOpJournal(p.journal, j)
    } catch (err) {
      await rm(p.dir, { recursive: true, force: true })
      throw err
    }
    const r = await runner.run({
      argv: windowsCommand(spec, payload, msiLog),
      env: limitedEnv({}, 'win32'),
      cwd: p.dir,
      timeoutMs: spec.maxRunSeconds * 1000,
      ...(signal ? { signal } : {}),
      ...(options.killGraceMs === undefined ? {} : { killGraceMs: options.killGraceMs }),
    })
    const installerLog = spec.type === 'msi' ? await readLogTail(msiLog) : ''
    const text = tailText(`${r.stdout}${r.stderr}${installerLog ? `\n[msi log]\n${installerLog}` : ''}`.trim())
    const outcome = r.exitCode === null ? undefined : mapExitCode(spec, r.exitCode)
    if (outcome?.kind === 'success' || outcome?.kind === 'reboot') {
      await writeOpJournal(p.journal, { ...j, state: 'installed' })
      log.info({ bundleId, type: spec.type, ...outcome }, 'Windows installer finished')
      return { rebootRequired: outcome.rebootRequired, log: text, details: { exitCode: outcome.code } }
    }
    await writeOpJournal(p.journal, { ...j, state: 'rolled-back' })
    await rm(p.dir, { recursive: true, force: true })
    const details = { ...runDetails(r), log: text, rolledBack: false }
    if (outcome?.kind === 'retry') {
      throw new InstallError('PSW_ERR_INSTALL_BUSY', `${spec.type}: ${outcome.reason}`, { details })
    }
    const why = outcome ? `${outcome.reason}` : describeRun(r, spec.maxRunSeconds)
    throw installFailed(`${spec.type} install failed: ${why}`, { ...details, exitCode: outcome?.code ?? null })
  }

  return {
    install: (req) => install(req.manifest, req.openVerified, req.signal),
    rollback: async (bundleId) => {
      // Refused, not failed: nothing was touched, the install is still in place.
      throw rollbackUnavailable(`bundle ${bundleId}: msi, msu and exe installs have no automatic rollback`, {
        bundleId,
      })
    },
    commit: (bundleId) => rm(paths(bundleId).dir, { recursive: true, force: true }),
    async recover(): Promise<RecoverResult> {
      const result: RecoverResult = { rolledBack: [], failed: [] }
      for (const name of await readdir(join(base, 'journal')).catch(() => [] as string[])) {
        if (!name.endsWith('.json')) continue
        const bundleId = name.slice(0, -'.json'.length)
        try {
          const j = await readJ(paths(bundleId).journal)
          if (j?.state !== 'applying' && j?.state !== 'rolling-back') continue
          await writeOpJournal(paths(bundleId).journal, { ...j, state: 'rolled-back' })
          await rm(paths(bundleId).dir, { recursive: true, force: true })
          const error = installFailed(`the ${j.type} install was interrupted; it has no rollback`, {
            rolledBack: false,
          })
          result.failed.push({ bundleId, error })
        } catch (error) {
          result.failed.push({ bundleId, error })
        }
      }
      return result
    },
    status: async (bundleId) => (await readJ(paths(bundleId).journal))?.state,
  }
}
