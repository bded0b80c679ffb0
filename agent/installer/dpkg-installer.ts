/**
 * The `dpkg` installer: installs a raw `.deb` bundle with the real dpkg, and rolls back to the
 * version that was installed before (rollback `dpkg-previous`).
 *
 * Install: stage the verified bytes into a private file (0600) → check its Package field →
 * `dpkg-query` the installed state → snapshot (the previous version's .deb, from the agent's
 * store `debs/<package>/<version>.deb` or apt's archive cache, hard-linked or copied into
 * staging) → journal `applying` → `dpkg --install <staged.deb>` (killed after maxRunSeconds) →
 * `dpkg-query` again → keep the new .deb in the store → journal `installed`.
 * Rollback: `dpkg --install` of the previous .deb, or `--remove` (it was `config-files`) or
 * `--purge` (it was not installed). A previous version whose .deb cannot be found refuses the
 * install up front when the manifest asks for `dpkg-previous`: nothing good is lost.
 * The snapshot stays (staging, store) after a healthy install, for a site-wide rollback, until
 * the agent releases the bundle (`commit`, when it leaves the assignment).
 */
import { copyFile, link, mkdir, readdir, rename, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { InstallError, StateError } from '../../shared/errors.ts'
import { type Logger, silentLogger } from '../../shared/log.ts'
import type { DpkgInstallSpecT, Manifest } from '../../shared/metadata/manifest-schema.ts'
import { fsyncDir } from '../../shared/store/durable-file.ts'
import {
  aptCacheName,
  DEB_VERSION,
  type DpkgTarget,
  debIdentity,
  dpkgArgv,
  dpkgEnv,
  dpkgTarget,
  ensureScratchAdmindir,
  isLocked,
  type PackageState,
  queryPackage,
} from './dpkg-commands.ts'
import {
  freshPrivateDir,
  type Installer,
  installFailed,
  type OpJournalBase,
  type RecoverResult,
  readOpJournal,
  recoverJournals,
  rollbackFailed,
  rollbackUnavailable,
  stageVerified,
  writeOpJournal,
} from './installer-api.ts'
import { bundlePaths } from './journal.ts'
import {
  createProcessRunner,
  describeRun,
  lastLine,
  type ProcessRunner,
  type RunResult,
  runDetails,
  tailText,
} from './process-runner.ts'

/** Options of {@link createDpkgInstaller}. */
export interface DpkgInstallerOptions {
  /** The agent's installer directory: uses `dpkg/` (journal, staging) and `debs/` in it. */
  stateDir: string
  /** System root dpkg installs into: `/` on an endpoint, a scratch directory in tests. */
  root?: string
  /** dpkg database; default `<root>/var/lib/dpkg`. */
  admindir?: string
  /** Program names or paths (default from PATH). */
  programs?: Partial<Pick<DpkgTarget, 'dpkg' | 'dpkgQuery' | 'dpkgDeb'>>
  runner?: ProcessRunner
  log?: Logger
  /** Between TERM and KILL of dpkg's process group after a timeout. Default 5000. */
  killGraceMs?: number
}

/** The journal of one dpkg install. */
interface DpkgJournal extends OpJournalBase {
  package: string
  newVersion: string
  /** The package as it was before: `installed` (with version), `config-files` or `not-installed`. */
  previous: { status: string; version?: string }
  /** Whether the manifest allows a rollback (dpkg-previous). */
  rollback: boolean
  maxRunSeconds: number
  /** Released by the agent: the snapshot is gone, the install can no longer be rolled back. */
  committed?: boolean
}

const validJournal = (j: Record<string, unknown>) => {
  const prev = j.previous as DpkgJournal['previous'] | undefined
  return (
    typeof j.package === 'string' &&
    /^[a-z0-9][a-z0-9+.-]+$/.test(j.package) &&
    typeof j.newVersion === 'string' &&
    DEB_VERSION.test(j.newVersion) &&
    typeof prev?.status === 'string' &&
    (prev.version === undefined || DEB_VERSION.test(prev.version)) &&
    typeof j.rollback === 'boolean' &&
    typeof j.maxRunSeconds === 'number'
  )
}

const runLog = (r: RunResult) => tailText(`${r.stdout}${r.stderr ? `\n${r.stderr}` : ''}`.trim())
const exists = (path: string) =>
  stat(path).then(
    (s) => s.isFile(),
    () => false,
  )

/** Creates the dpkg installer. */
export function createDpkgInstaller(options: DpkgInstallerOptions): Installer {
  const base = join(options.stateDir, 'dpkg')
  const storeDir = join(options.stateDir, 'debs')
  const target = dpkgTarget({ root: options.root, admindir: options.admindir, ...options.programs })
  const runner = options.runner ?? createProcessRunner()
  const log = options.log ?? silentLogger()
  let queue: Promise<unknown> = Promise.resolve()
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = queue.then(fn, fn)
    queue = run.catch(() => {})
    return run
  }
  const paths = (bundleId: string) => {
    const p = bundlePaths(base, bundleId)
    return {
      journal: p.journal,
      staging: p.staging,
      newDeb: join(p.staging, 'new.deb'),
      prevDeb: join(p.staging, 'previous.deb'),
    }
  }
  const stored = (pkg: string, version: string) => join(storeDir, pkg, `${version}.deb`)
  const readJ = (path: string) => readOpJournal<DpkgJournal>(path, validJournal)
  const dpkg = (action: string[], seconds: number, signal?: AbortSignal) =>
    runner.run({
      argv: dpkgArgv(target, action),
      env: dpkgEnv(),
      timeoutMs: seconds * 1000,
      ...(signal ? { signal } : {}),
      ...(options.killGraceMs === undefined ? {} : { killGraceMs: options.killGraceMs }),
    })

  /** Puts the previous version's .deb at `dest`; where it came from, or undefined if it is nowhere. */
  async function snapshot(pkg: string, before: PackageState, dest: string): Promise<string | undefined> {
    const candidates = [{ from: 'store', path: stored(pkg, before.version!) }]
    if (before.arch) {
      const cached = join(
        target.root,
        'var',
        'cache',
        'apt',
        'archives',
        aptCacheName(pkg, before.version!, before.arch),
      )
      candidates.push({ from: 'apt-cache', path: cached })
    }
    for (const c of candidates) {
      if (!(await exists(c.path))) continue
      const id = await debIdentity(runner, target, c.path)
      if (id?.package !== pkg || id.version !== before.version) {
        log.warn({ path: c.path }, 'kept .deb does not match the installed package; ignoring it')
        continue
      }
      // A link is the same bytes even if the store entry is replaced later; a copy otherwise.
      await link(c.path, dest).catch(() => copyFile(c.path, dest))
      return c.from
    }
    return undefined
  }

  /** Restores the previous state of `j.package`; idempotent (also after `kill -9`). Returns the log. */
  async function undo(j: DpkgJournal): Promise<string> {
    if (j.state === 'rolled-back') return ''
    const p = paths(j.bundleId)
    if (j.state !== 'rolling-back') await writeOpJournal(p.journal, { ...j, state: 'rolling-back' })
    const prev = j.previous
    let r: RunResult
    let expected: (s: PackageState) => boolean
    if (prev.status === 'installed') {
      // Staging holds the snapshot until it is back in the store (after a crash: the store).
      const deb = (await exists(p.prevDeb)) ? p.prevDeb : stored(j.package, prev.version!)
      if (!(await exists(deb))) throw rollbackFailed(`the .deb of ${j.package} ${prev.version} is gone`, { path: deb })
      r = await dpkg(['--install', deb], j.maxRunSeconds)
      expected = (s) => s.status === 'installed' && s.version === prev.version
    } else {
      r = await dpkg([prev.status === 'config-files' ? '--remove' : '--purge', j.package], j.maxRunSeconds)
      expected = (s) => s.status === 'not-installed' || (prev.status === 'config-files' && s.status === 'config-files')
    }
    const after = await queryPackage(runner, target, j.package).catch(() => undefined)
    if (r.exitCode !== 0 || !after || !expected(after)) {
      throw rollbackFailed(
        `rolling back ${j.package} to ${prev.version ?? prev.status}: dpkg ${describeRun(r, j.maxRunSeconds)}`,
        { ...runDetails(r), package: j.package, state: after?.status, version: after?.version },
      )
    }
    if (prev.status === 'installed' && (await exists(p.prevDeb))) {
      await mkdir(join(storeDir, j.package), { recursive: true })
      await rename(p.prevDeb, stored(j.package, prev.version!))
    }
    if (j.newVersion !== prev.version) await rm(stored(j.package, j.newVersion), { force: true })
    await fsyncDir(join(storeDir, j.package)).catch(() => {})
    await writeOpJournal(p.journal, { ...j, state: 'rolled-back' })
    await rm(p.staging, { recursive: true, force: true })
    log.info({ package: j.package, to: prev.version ?? prev.status }, 'dpkg install rolled back')
    return runLog(r)
  }

  /**
   * Ends an interrupted install: rolled back when the manifest allowed it; otherwise only
   * marked (dpkg keeps whatever state it reached) and reported.
   */
  async function settle(j: DpkgJournal): Promise<void> {
    if (j.state === 'rolled-back' || j.state === 'installed') return
    if (j.rollback) {
      await undo(j)
      return
    }
    await writeOpJournal(paths(j.bundleId).journal, { ...j, state: 'rolled-back' })
    await rm(paths(j.bundleId).staging, { recursive: true, force: true })
    throw installFailed(`the install of ${j.package} ${j.newVersion} was interrupted and declares no rollback`, {
      rolledBack: false,
      package: j.package,
    })
  }

  async function install(manifest: Manifest, openVerified: () => AsyncIterable<Uint8Array>, signal?: AbortSignal) {
    if (manifest.install.type !== 'dpkg') {
      throw new InstallError('PSW_ERR_INSTALLER_UNSUPPORTED', `not a dpkg install: ${manifest.install.type}`)
    }
    const spec: DpkgInstallSpecT = manifest.install
    const { bundleId } = manifest
    const wantRollback = manifest.rollback.type === 'dpkg-previous'
    const p = paths(bundleId)
    for (const d of ['journal', 'staging']) await mkdir(join(base, d), { recursive: true, mode: 0o700 })
    await ensureScratchAdmindir(target)
    const previous = await readJ(p.journal)
    if (previous?.state === 'installed') throw new StateError('PSW_ERR_CONFLICT', `bundle ${bundleId} is installed`)
    if (previous) {
      await settle(previous).catch((err: unknown) => {
        if (previous.rollback) throw err
        log.warn({ bundleId, err }, 'an earlier interrupted install is left as dpkg left it')
      })
    }

    await freshPrivateDir(p.staging)
    let j: DpkgJournal
    try {
      await stageVerified(openVerified(), p.newDeb, { signal })
      const id = await debIdentity(runner, target, p.newDeb)
      if (id?.package !== spec.package) {
        throw installFailed(`the bundle is not a .deb of ${spec.package} (found ${id?.package ?? 'no package'})`, {
          rolledBack: false,
          package: spec.package,
        })
      }
      const before = await queryPackage(runner, target, spec.package)
      if (before.status === 'installed' && before.version === undefined) {
        throw installFailed(`dpkg-query gave no version for ${spec.package}`, { rolledBack: false })
      }
      if (wantRollback && before.status === 'installed') {
        const from = await snapshot(spec.package, before, p.prevDeb)
        if (from === undefined) {
          throw installFailed(
            `${spec.package} ${before.version} is installed but its .deb is not kept (not installed by patchswarm, not in apt's cache); refusing an install that could not be rolled back`,
            { rolledBack: false, reason: 'no-snapshot', package: spec.package, installedVersion: before.version },
          )
        }
        log.info({ package: spec.package, version: before.version, from }, 'kept the previous package for rollback')
      } else if (wantRollback && before.status !== 'not-installed' && before.status !== 'config-files') {
        throw installFailed(`${spec.package} is ${before.status}; refusing an install that could not be rolled back`, {
          rolledBack: false,
          reason: 'broken-state',
          package: spec.package,
        })
      }
      j = {
        version: 1,
        bundleId,
        state: 'applying',
        package: spec.package,
        newVersion: id.version,
        previous: { status: before.status, ...(before.version ? { version: before.version } : {}) },
        rollback: wantRollback,
        maxRunSeconds: spec.maxRunSeconds,
      }
      await writeOpJournal(p.journal, j)
    } catch (err) {
      await rm(p.staging, { recursive: true, force: true })
      throw err
    }

    log.info({ package: j.package, version: j.newVersion, previous: j.previous }, 'dpkg --install')
    const r = await dpkg(['--install', p.newDeb], spec.maxRunSeconds, signal)
    if (isLocked(r)) {
      await writeOpJournal(p.journal, { ...j, state: 'rolled-back' })
      await rm(p.staging, { recursive: true, force: true })
      throw new InstallError('PSW_ERR_INSTALL_BUSY', `dpkg is locked by another process: ${lastLine(r)}`, {
        details: runDetails(r),
      })
    }
    const after = r.exitCode === 0 ? await queryPackage(runner, target, j.package).catch(() => undefined) : undefined
    const ok = after?.status === 'installed' && after.version === j.newVersion
    if (!ok) {
      const why =
        r.exitCode === 0
          ? `dpkg exited 0 but ${j.package} is ${after?.status ?? 'unknown'} ${after?.version ?? ''}`.trim()
          : `dpkg ${describeRun(r, spec.maxRunSeconds)}: ${lastLine(r)}`
      log.warn({ package: j.package, why }, 'dpkg install failed')
      const details = { ...runDetails(r), package: j.package, version: j.newVersion }
      if (!j.rollback) {
        await writeOpJournal(p.journal, { ...j, state: 'rolled-back' })
        await rm(p.staging, { recursive: true, force: true })
        throw installFailed(`installing ${j.package} ${j.newVersion} failed (no rollback): ${why}`, {
          ...details,
          rolledBack: false,
        })
      }
      let rollbackLog: string
      try {
        rollbackLog = await undo(j)
      } catch (err) {
        const rb = err as InstallError
        throw rollbackFailed(`installing ${j.package} failed (${why}) and rolling back failed: ${rb.message}`, {
          ...details,
          rollback: rb.details,
        })
      }
      throw installFailed(`installing ${j.package} ${j.newVersion} failed and was rolled back: ${why}`, {
        ...details,
        rolledBack: true,
        rollbackLog,
      })
    }
    await mkdir(join(storeDir, j.package), { recursive: true })
    await rename(p.newDeb, stored(j.package, j.newVersion))
    await fsyncDir(join(storeDir, j.package))
    await writeOpJournal(p.journal, { ...j, state: 'installed' })
    return {
      rebootRequired: false,
      log: runLog(r),
      details: { package: j.package, version: j.newVersion, previousVersion: j.previous.version ?? null },
    }
  }

  /**
   * Why a completed install cannot be undone now, checked before anything is changed: no
   * snapshot (rollback none, or released), or the package is no longer the version this bundle
   * installed (a later bundle, apt or an operator changed it: going back would undo that).
   */
  async function unavailable(j: DpkgJournal): Promise<string | undefined> {
    if (!j.rollback) return `it was installed with rollback none`
    if (j.committed) return 'it was released and its snapshot dropped'
    const now = await queryPackage(runner, target, j.package).catch(() => undefined)
    if (now?.status !== 'installed' || now.version !== j.newVersion) {
      return `${j.package} is now ${now?.status ?? 'unknown'} ${now?.version ?? ''}, not the ${j.newVersion} it installed`.trim()
    }
    if (j.previous.status === 'installed') {
      const p = paths(j.bundleId)
      if (!(await exists(p.prevDeb)) && !(await exists(stored(j.package, j.previous.version!))))
        return `the .deb of ${j.package} ${j.previous.version} is gone`
    }
    return undefined
  }

  async function rollback(bundleId: string) {
    const j = await readJ(paths(bundleId).journal)
    if (j === undefined) throw new StateError('PSW_ERR_NOT_FOUND', `bundle ${bundleId} has no dpkg journal`)
    if (j.state === 'installed') {
      const why = await unavailable(j)
      if (why !== undefined)
        throw rollbackUnavailable(`cannot roll back ${j.package} ${j.newVersion}: ${why}`, {
          bundleId,
          package: j.package,
        })
    } else if (!j.rollback)
      throw rollbackUnavailable(`bundle ${bundleId} was installed with rollback none`, { bundleId })
    return { log: await undo(j) }
  }

  /**
   * The bundle was released (it left the assignment): its snapshot is no longer needed. The
   * store keeps only the .deb of the version installed now (whichever bundle put it there),
   * the snapshot source of the next upgrade; other bundles keep theirs in their own staging.
   */
  async function commit(bundleId: string) {
    const p = paths(bundleId)
    const j = await readJ(p.journal)
    if (j?.state !== 'installed') return
    // Recorded first: a rollback after a crash in between refuses instead of finding no .deb.
    if (!j.committed) {
      const committed: DpkgJournal = { ...j, committed: true }
      await writeOpJournal(p.journal, committed)
    }
    await rm(p.staging, { recursive: true, force: true })
    const now = await queryPackage(runner, target, j.package).catch(() => undefined)
    if (now?.status !== 'installed' || now.version === undefined) return
    const dir = join(storeDir, j.package)
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      if (name !== `${now.version}.deb`) await rm(join(dir, name), { force: true })
    }
  }

  function recover(): Promise<RecoverResult> {
    return recoverJournals(
      base,
      (id) => readJ(paths(id).journal),
      settle,
      (j) =>
        log.warn(
          { bundleId: j.bundleId, package: j.package, state: j.state },
          'rolling back an interrupted dpkg install',
        ),
    )
  }

  return {
    install: (req) => serial(() => install(req.manifest, req.openVerified, req.signal)),
    rollback: (bundleId) => serial(() => rollback(bundleId)),
    commit: (bundleId) => serial(() => commit(bundleId)),
    recover: () => serial(recover),
    status: async (bundleId) => (await readJ(paths(bundleId).journal))?.state,
  }
}
