/**
 * What this agent can install, and the install router: it picks the installer for the
 * manifest's `install.type`, runs the manifest's health check after a successful install, and
 * rolls the install back by itself when the check fails (faults row 17). A marker written before
 * each install makes an install interrupted by `kill -9` — even during its health check — get
 * rolled back at the next start (row 19). Reboots are reported (`rebootRequired`); the agent
 * decides when to reboot (agent/reboot.ts).
 *
 * A healthy install keeps its rollback snapshot (backups, previous .deb, rollback script) so
 * that a site-wide rollback can still undo it later; `release()` drops it once the bundle has
 * left the device's assignment.
 *
 * Installers per platform: linux files, dpkg, script (sh, bash); darwin files, script (sh,
 * bash); win32 files, script (powershell), msi, msu, exe. Anything else is refused with
 * PSW_ERR_INSTALLER_UNSUPPORTED right after the manifest is accepted, before a byte is downloaded.
 */
import { mkdir, readdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { InstallError } from '../shared/errors.ts'
import { type Logger, silentLogger } from '../shared/log.ts'
import type { FilesInstallSpecT, InstallType, Manifest } from '../shared/metadata/manifest-schema.ts'
import { createDpkgInstaller } from './installer/dpkg-installer.ts'
import type { FilesInstaller } from './installer/files-installer.ts'
import { createHealthChecker, type HealthChecker, type HealthResult } from './installer/health-check.ts'
import {
  type Installer,
  type InstallerRequest,
  type JournalState,
  type OpJournalBase,
  type RecoverResult,
  readOpJournal,
  rollbackFailed,
  rollbackUnavailable,
  writeOpJournal,
} from './installer/installer-api.ts'
import { bundlePaths } from './installer/journal.ts'
import { createScriptInstaller, interpreterArgv } from './installer/script-installer.ts'
import { createWindowsInstaller } from './installer/windows-installers.ts'

const OS: Record<string, string> = { linux: 'linux', win32: 'windows', darwin: 'darwin' }
const ARCH: Record<string, string> = { x64: 'x64', arm64: 'arm64' }

const BY_PLATFORM: Record<string, readonly InstallType[]> = {
  linux: ['files', 'dpkg', 'script'],
  darwin: ['files', 'script'],
  win32: ['files', 'script', 'msi', 'msu', 'exe'],
}

/** The installers an agent on `platform` offers. */
export function installersFor(platform: string = process.platform): ReadonlySet<InstallType> {
  return new Set(BY_PLATFORM[platform] ?? ['files'])
}

const unsupported = (message: string) => new InstallError('PSW_ERR_INSTALLER_UNSUPPORTED', message)

/** The manifest's files install spec; PSW_ERR_INSTALLER_UNSUPPORTED for any other installer. */
export function filesInstall(manifest: Manifest): FilesInstallSpecT {
  const { install } = manifest
  if (install.type !== 'files') throw unsupported(`installer ${install.type} is not a files installer`)
  return install
}

/** Refuses a manifest this endpoint cannot install: another installer, interpreter, OS or architecture. */
export function checkSupported(
  manifest: Manifest,
  platform: string = process.platform,
  arch: string = process.arch,
  installers: ReadonlySet<InstallType> = installersFor(platform),
): void {
  const { install } = manifest
  if (!installers.has(install.type)) throw unsupported(`installer ${install.type} is not supported by this agent`)
  if (install.type === 'script' && interpreterArgv(install.interpreter, platform) === undefined) {
    throw unsupported(`script interpreter ${install.interpreter} is not available on ${platform}`)
  }
  const wanted = manifest.patch.platform
  if ((wanted.os !== 'any' && wanted.os !== OS[platform]) || (wanted.arch !== 'any' && wanted.arch !== ARCH[arch])) {
    throw unsupported(`bundle is for ${wanted.os}/${wanted.arch}, this endpoint is ${platform}/${arch}`)
  }
}

/** The files installer behind the common installer interface. */
export function filesAdapter(files: FilesInstaller): Installer {
  return {
    async install(req) {
      const { manifest } = req
      if (req.targetRoot === undefined)
        throw new InstallError('PSW_ERR_INSTALL_FAILED', 'files install without a target')
      const r = await files.install({
        bundleId: manifest.bundleId,
        targetRoot: req.targetRoot,
        openVerified: req.openVerified,
        format: manifest.content.format ?? 'tar',
        name: manifest.patch.name,
        version: manifest.patch.version,
        ...(req.signal ? { signal: req.signal } : {}),
      })
      const log = `installed ${r.files} files (${r.replaced} replaced, ${r.created} new, ${r.createdDirs} new directories)`
      return { rebootRequired: false, log, details: { ...r } }
    },
    async rollback(bundleId) {
      await files.rollback(bundleId)
      return { log: 'restored the backed-up files and removed the new ones' }
    },
    commit: (bundleId) => files.commit(bundleId),
    recover: () => files.recover(),
    status: (bundleId) => files.status(bundleId),
  }
}

/** A successful install. */
export interface InstallOutcome {
  installer: InstallType
  /**
   * Reboot needed to finish (Windows 3010/1641): reported; the agent reboots inside a window
   * that allows it when a reboot command is configured. The health check then waits.
   */
  rebootRequired: boolean
  /** The health check's result; absent when the manifest declares none or a reboot comes first. */
  health?: HealthResult
  /** Bounded installer output. */
  log: string
  details?: Record<string, unknown>
}

export interface InstallRouterOptions {
  /** The agent's installer directory; the router keeps its markers in `pending/` there. */
  stateDir: string
  files?: FilesInstaller
  dpkg?: Installer
  script?: Installer
  /** msi, msu and exe. */
  windows?: Installer
  health?: HealthChecker
  log?: Logger
  platform?: string
  arch?: string
}

export interface InstallRouter {
  /** Installer types that are wired (and so supported). */
  readonly installers: ReadonlySet<InstallType>
  /**
   * Installs, then runs the health check. Throws InstallError: PSW_ERR_INSTALL_FAILED (the
   * installer failed, or the health check failed — `details.health` — and the install was
   * rolled back when the manifest allows), PSW_ERR_ROLLBACK_FAILED, PSW_ERR_INSTALL_BUSY.
   */
  install(request: InstallerRequest): Promise<InstallOutcome>
  /**
   * Rolls back a completed install of this manifest's bundle (a site-wide rollback).
   * PSW_ERR_ROLLBACK_UNAVAILABLE, with nothing changed, when the manifest declares rollback
   * `none` (msi, msu, exe always do) or the installer cannot undo it any more;
   * PSW_ERR_ROLLBACK_FAILED when undoing failed.
   */
  rollback(manifest: Manifest): Promise<{ log: string }>
  /**
   * The bundle left the assignment: every installer drops what it kept for a rollback of it
   * (a no-op for installers that never installed it). It can no longer be rolled back.
   */
  release(bundleId: string): Promise<void>
  /** At agent start: every installer's recover(), then rolls back installs interrupted mid-health-check. */
  recover(): Promise<RecoverResult>
  status(manifest: Manifest): Promise<JournalState | undefined>
}

interface PendingMarker extends OpJournalBase {
  installer: InstallType
  rollback: boolean
}

/** Creates the install router over the given installers. */
export function createInstallRouter(options: InstallRouterOptions): InstallRouter {
  const log = options.log ?? silentLogger()
  const health = options.health ?? createHealthChecker({ log })
  const byType = new Map<InstallType, Installer>()
  if (options.files) byType.set('files', filesAdapter(options.files))
  if (options.dpkg) byType.set('dpkg', options.dpkg)
  if (options.script) byType.set('script', options.script)
  for (const t of ['msi', 'msu', 'exe'] as const) if (options.windows) byType.set(t, options.windows)
  const platform = options.platform ?? process.platform
  const installers: ReadonlySet<InstallType> = new Set([...installersFor(platform)].filter((t) => byType.has(t)))
  const pendingDir = join(options.stateDir, 'pending')
  const markerPath = (bundleId: string) => bundlePaths(pendingDir, bundleId).journal
  const readMarker = (bundleId: string) =>
    readOpJournal<PendingMarker>(
      markerPath(bundleId),
      (j) => typeof j.installer === 'string' && byType.has(j.installer as InstallType),
    )
  let queue: Promise<unknown> = Promise.resolve()
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = queue.then(fn, fn)
    queue = run.catch(() => {})
    return run
  }
  const pick = (type: InstallType): Installer => {
    const installer = byType.get(type)
    if (installer === undefined || !installers.has(type))
      throw unsupported(`installer ${type} is not supported by this agent`)
    return installer
  }

  async function install(req: InstallerRequest): Promise<InstallOutcome> {
    const { manifest } = req
    const { bundleId } = manifest
    checkSupported(manifest, platform, options.arch ?? process.arch, installers)
    const type = manifest.install.type
    const installer = pick(type)
    const canRollback = manifest.rollback.type !== 'none'
    await mkdir(join(pendingDir, 'journal'), { recursive: true, mode: 0o700 })
    const marker: PendingMarker = { version: 1, bundleId, state: 'applying', installer: type, rollback: canRollback }
    await writeOpJournal(markerPath(bundleId), marker)
    const done = () => rm(markerPath(bundleId), { force: true })
    let result: Awaited<ReturnType<Installer['install']>>
    try {
      result = await installer.install(req)
    } catch (err) {
      await done()
      throw err
    }
    let checked: HealthResult | undefined
    if (manifest.health && !result.rebootRequired) {
      await writeOpJournal(markerPath(bundleId), { ...marker, state: 'installed' })
      checked = await health.run(manifest.health, req.signal)
      if (!checked.ok) {
        log.warn({ bundleId, installer: type, health: checked.log }, 'health check failed after install')
        const healthInfo = { ok: false, attempts: checked.attempts, results: checked.results, log: checked.log }
        let rollbackLog: string | undefined
        if (canRollback) {
          try {
            rollbackLog = (await installer.rollback(bundleId)).log
          } catch (err) {
            await done()
            const rb = err as InstallError
            throw rollbackFailed(`the health check failed after installing ${manifest.patch.name}, and ${rb.message}`, {
              health: healthInfo,
              installLog: result.log,
              rollback: rb.details,
            })
          }
        }
        await done()
        const failing = checked.results.filter((r) => !r.ok).map((r) => r.detail)
        throw new InstallError(
          'PSW_ERR_INSTALL_FAILED',
          `health check failed after installing ${manifest.patch.name} ${manifest.patch.version} (${failing.join('; ').slice(0, 500)}); ${canRollback ? 'rolled back' : 'not rolled back (rollback none)'}`,
          {
            details: {
              health: healthInfo,
              rolledBack: canRollback,
              installLog: result.log,
              ...(rollbackLog === undefined ? {} : { rollbackLog }),
            },
          },
        )
      }
    }
    // No commit here: the snapshot stays for a site-wide rollback until release().
    await done()
    return {
      installer: type,
      rebootRequired: result.rebootRequired,
      ...(checked ? { health: checked } : {}),
      log: result.log,
      ...(result.details ? { details: result.details } : {}),
    }
  }

  async function rollback(manifest: Manifest): Promise<{ log: string }> {
    if (manifest.rollback.type === 'none') {
      throw rollbackUnavailable(
        `${manifest.patch.name} ${manifest.patch.version} declares no rollback (${manifest.install.type} installer)`,
        { bundleId: manifest.bundleId, installer: manifest.install.type },
      )
    }
    return pick(manifest.install.type).rollback(manifest.bundleId)
  }

  async function recover(): Promise<RecoverResult> {
    const result: RecoverResult = { rolledBack: [], failed: [] }
    for (const installer of new Set(byType.values())) {
      const r = await installer.recover()
      result.rolledBack.push(...r.rolledBack)
      result.failed.push(...r.failed)
    }
    for (const name of await readdir(join(pendingDir, 'journal')).catch(() => [] as string[])) {
      const bundleId = name.endsWith('.json') ? name.slice(0, -'.json'.length) : undefined
      try {
        const marker = bundleId === undefined ? undefined : await readMarker(bundleId)
        if (marker !== undefined) {
          const installer = byType.get(marker.installer)!
          // Installed but its health check never finished: not proven good, so undo it.
          if ((await installer.status(marker.bundleId)) === 'installed') {
            if (marker.rollback) {
              log.warn(
                { bundleId, installer: marker.installer },
                'rolling back an install whose health check was interrupted',
              )
              await installer.rollback(marker.bundleId)
              result.rolledBack.push(marker.bundleId)
            }
          }
        }
        await rm(join(pendingDir, 'journal', name), { force: true })
      } catch (error) {
        result.failed.push({ bundleId: bundleId ?? name, error })
      }
    }
    return result
  }

  return {
    installers,
    install: (req) => serial(() => install(req)),
    rollback: (manifest) => serial(() => rollback(manifest)),
    release: (bundleId) =>
      serial(async () => {
        for (const installer of new Set(byType.values())) await installer.commit(bundleId)
      }),
    recover: () => serial(recover),
    status: (manifest) => pick(manifest.install.type).status(manifest.bundleId),
  }
}

/**
 * The agent's router: its files installer plus dpkg, script and Windows installers sharing its
 * installer directory. dpkg installs into `installRoot` (the agent's install root: `/` on an
 * endpoint, where dpkg runs with its defaults; any other directory is a scratch root).
 */
export function createAgentInstallRouter(options: {
  stateDir: string
  installRoot: string
  files: FilesInstaller
  log: Logger
}): InstallRouter {
  const { stateDir, log } = options
  return createInstallRouter({
    stateDir,
    files: options.files,
    dpkg: createDpkgInstaller({ stateDir, root: options.installRoot, log: log.child({ component: 'agent:dpkg' }) }),
    script: createScriptInstaller({ stateDir, log: log.child({ component: 'agent:script' }) }),
    windows: createWindowsInstaller({ stateDir, log: log.child({ component: 'agent:windows-installer' }) }),
    health: createHealthChecker({ log: log.child({ component: 'agent:health' }) }),
    log: log.child({ component: 'agent:install' }),
  })
}
