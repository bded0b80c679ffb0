/**
 * The `files` installer: places a bundle's payload under a target root, atomically per file,
 * with backups and a write-ahead journal so that any failure — including `kill -9` — ends in
 * either the complete install or the exact previous state (faults rows 17, 19, 20).
 *
 * Install: scan (guard; nothing written) → check targets (no symlinks, no type conflicts) →
 * extract into `stateDir/staging/<id>` → journal `applying` → create directories → per file:
 * back up the old file, copy the staged one next to the target, fsync, rename → journal
 * `installed`. Backups stay in `stateDir/backups/<id>` until the install is rolled back or
 * committed (the agent commits when the bundle leaves its assignment; a committed install can
 * no longer be rolled back).
 *
 * Content format `tar` is a patchswarm bundle (bundle.json + payload/); `raw` is a vendor's
 * ordinary tar, extracted under the target root the same way (guard layout `plain`).
 */
import { mkdir, readdir, rm, rmdir } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { extractBundle, scanBundle } from '../../shared/bundle/bundle-reader.ts'
import { isErrno } from '../../shared/bundle/fs-util.ts'
import type { TarLimits } from '../../shared/bundle/tar-guard.ts'
import { InstallError, mapFsError, StateError } from '../../shared/errors.ts'
import { type Logger, silentLogger } from '../../shared/log.ts'
import type { ContentFormatT } from '../../shared/metadata/manifest-schema.ts'
import { fsyncDir } from '../../shared/store/durable-file.ts'
import { rollbackUnavailable } from './installer-api.ts'
import {
  type BundlePaths,
  bundlePaths,
  type Journal,
  type JournalState,
  planTargets,
  readJournal,
  TMP_SUFFIX,
  writeJournal,
} from './journal.ts'
import {
  backupFile,
  checkParents,
  copyAtomic,
  lstatIfExists,
  resolveRoot,
  restore,
  sha256File,
  under,
} from './safe-fs.ts'

export type { JournalState } from './journal.ts'

/** Steps at which tests can inject a fault. */
export type InstallStep = 'mkdir' | 'backup' | 'place'

/** Options of {@link createFilesInstaller}. */
export interface FilesInstallerOptions {
  /** The agent's state directory; the installer uses `journal/`, `staging/` and `backups/` in it. */
  stateDir: string
  log?: Logger
  limits?: Partial<TarLimits>
  /** Fault injection for tests: called before each step with the payload-relative path. */
  faultHook?: (step: InstallStep, path: string) => void | Promise<void>
}

/** One install request. */
export interface InstallRequest {
  /** Stable id of the bundle (letters, digits, `.`, `_`, `-`; at most 128). */
  bundleId: string
  /** Existing directory the payload is installed into. */
  targetRoot: string
  /** Opens the bundle bytes, re-verifying each chunk against its signed hash; called twice. */
  openVerified: () => AsyncIterable<Uint8Array>
  /** The manifest's `content.format`: `tar` (default) is a patchswarm bundle, `raw` a plain tar. */
  format?: ContentFormatT
  /** Patch name and version for the journal when the archive carries none (raw content). */
  name?: string
  version?: string
  signal?: AbortSignal
}

/** What an install did. */
export interface InstallResult {
  bundleId: string
  files: number
  replaced: number
  created: number
  createdDirs: number
}

/** Result of {@link FilesInstaller.recover}. */
export interface RecoverResult {
  /** Bundles whose interrupted install (or rollback) was rolled back. */
  rolledBack: string[]
  failed: Array<{ bundleId: string; error: unknown }>
}

/** The `files` installer of one agent. */
export interface FilesInstaller {
  /** Installs a bundle; on failure rolls back and throws InstallError PSW_ERR_INSTALL_FAILED. */
  install(request: InstallRequest): Promise<InstallResult>
  /**
   * Restores backups and removes what the install created; idempotent. Refuses with
   * PSW_ERR_ROLLBACK_UNAVAILABLE, changing nothing, an install that was committed or whose
   * files were changed since.
   */
  rollback(bundleId: string): Promise<void>
  /** Drops the backups of a completed install (it is kept, but can no longer be rolled back). */
  commit(bundleId: string): Promise<void>
  /** At agent start: rolls back every install left `applying` (or `rolling-back`) and cleans leftovers. */
  recover(): Promise<RecoverResult>
  /** The journal state of a bundle, or `undefined` if it was never installed. */
  status(bundleId: string): Promise<JournalState | undefined>
  /** The (real) target root a bundle is installed under, if it is installed. */
  installedRoot(bundleId: string): Promise<string | undefined>
}

/** The tmp file next to a target; payload names with this suffix are refused. */
const tmpFor = (target: string, index: number) => join(dirname(target), `.${index}${TMP_SUFFIX}`)
const failed = (message: string, cause?: unknown) =>
  new InstallError('PSW_ERR_INSTALL_FAILED', message, cause === undefined ? {} : { cause })

/** Creates the `files` installer. */
export function createFilesInstaller(options: FilesInstallerOptions): FilesInstaller {
  const { stateDir, limits, faultHook } = options
  const log = options.log ?? silentLogger()
  let queue: Promise<unknown> = Promise.resolve()
  /** One operation at a time per installer: installs and rollbacks share target trees. */
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = queue.then(fn, fn)
    queue = run.catch(() => {})
    return run
  }
  const ensureDirs = async () => {
    for (const d of ['journal', 'staging', 'backups']) await mkdir(join(stateDir, d), { recursive: true })
  }

  /** Applies a journal written as `applying`: directories, then per file backup → atomic replace. */
  async function apply(j: Journal, p: BundlePaths, signal?: AbortSignal): Promise<void> {
    const root = j.targetRoot
    for (const rel of j.createdDirs) {
      await faultHook?.('mkdir', rel)
      if (!(await checkParents(root, rel))) throw failed(`parent of ${rel} disappeared`)
      await mkdir(under(root, rel), { mode: 0o755 })
      await fsyncDir(dirname(under(root, rel)))
    }
    for (const [i, f] of j.files.entries()) {
      signal?.throwIfAborted()
      const target = under(root, f.path)
      if (!(await checkParents(root, f.path))) throw failed(`parent of ${f.path} disappeared`)
      const st = await lstatIfExists(target)
      if (f.old) {
        if (!st?.isFile()) throw failed(`${target} changed during the install`)
        await faultHook?.('backup', f.path)
        const backup = under(join(p.backups, 'files'), f.path)
        await mkdir(dirname(backup), { recursive: true })
        // The backup carries the old owner, mode and mtime, so restoring it is a plain rename.
        await backupFile(target, backup, join(p.backups, '.tmp'), f.old)
      } else if (st !== undefined) throw failed(`${target} appeared during the install`)
      await faultHook?.('place', f.path)
      await copyAtomic(under(p.staging, f.path), target, tmpFor(target, i), f.mode)
    }
  }

  /** Undoes whatever part of `j` may have been applied; safe to repeat, also after `kill -9`. */
  async function undo(j: Journal, p: BundlePaths): Promise<void> {
    if (j.state === 'rolled-back') return
    if (j.state === 'installed') await writeJournal(p.journal, { ...j, state: 'rolling-back' })
    const root = j.targetRoot
    for (let i = j.files.length - 1; i >= 0; i--) {
      const f = j.files[i]!
      const target = under(root, f.path)
      const backup = under(join(p.backups, 'files'), f.path)
      if (!(await checkParents(root, f.path))) {
        if (f.old && (await lstatIfExists(backup))) throw failed(`cannot restore ${target}: its directory is gone`)
        continue
      }
      await rm(tmpFor(target, i), { force: true })
      if (f.old) {
        // No backup means the file was never replaced: backups are durable before replacing.
        if (await lstatIfExists(backup)) await restore(backup, target, tmpFor(target, i), f.old)
        continue
      }
      const st = await lstatIfExists(target)
      if (st?.isFile() && (await sha256File(target)) === f.sha256) {
        await rm(target)
        await fsyncDir(dirname(target))
      } else if (st !== undefined) log.warn({ path: target }, 'leaving a file the install did not write')
    }
    for (const rel of [...j.createdDirs].reverse()) {
      if (!(await checkParents(root, rel))) continue
      try {
        await rmdir(under(root, rel))
      } catch (err) {
        if (isErrno(err, 'ENOTEMPTY') || isErrno(err, 'EEXIST')) log.warn({ dir: rel }, 'created directory not empty')
        else if (!isErrno(err, 'ENOENT') && !isErrno(err, 'ENOTDIR')) throw err
      }
    }
    await writeJournal(p.journal, { ...j, state: 'rolled-back' })
    await rm(p.backups, { recursive: true, force: true })
    await rm(p.staging, { recursive: true, force: true })
  }

  async function rollbackOrThrow(j: Journal, p: BundlePaths): Promise<void> {
    try {
      await undo(j, p)
    } catch (err) {
      log.error({ err, bundleId: j.bundleId }, 'rollback failed')
      throw new InstallError('PSW_ERR_ROLLBACK_FAILED', `rolling back ${j.bundleId} failed; manual attention needed`, {
        cause: err,
      })
    }
  }

  async function install(req: InstallRequest): Promise<InstallResult> {
    const { bundleId, signal } = req
    const p = bundlePaths(stateDir, bundleId)
    const root = await resolveRoot(req.targetRoot)
    await ensureDirs()
    const previous = await readJournal(p.journal)
    if (previous?.state === 'installed') throw new StateError('PSW_ERR_CONFLICT', `bundle ${bundleId} is installed`)
    if (previous) await rollbackOrThrow(previous, p)

    const layout = req.format === 'raw' ? 'plain' : 'bundle'
    const scan = await scanBundle(req.openVerified(), { limits, signal, layout })
    const plan = await planTargets(root, scan.entries)
    await rm(p.staging, { recursive: true, force: true })
    await rm(p.backups, { recursive: true, force: true })
    const extracted = await extractBundle(req.openVerified(), {
      dir: p.staging,
      limits,
      signal,
      layout,
      plan: scan,
    }).catch(async (err: unknown) => {
      await rm(p.staging, { recursive: true, force: true })
      throw err
    })
    const hashes = new Map(extracted.entries.map((e) => [e.path, e.sha256 ?? '']))
    const j: Journal = {
      version: 1,
      bundleId,
      targetRoot: root,
      state: 'applying',
      name: scan.meta?.name ?? req.name ?? bundleId,
      bundleVersion: scan.meta?.version ?? req.version ?? '',
      files: plan.files.map((f) => ({ ...f, sha256: hashes.get(f.path) ?? '' })),
      createdDirs: plan.createdDirs,
    }
    log.info({ bundleId, root, files: j.files.length }, 'installing bundle')
    try {
      await writeJournal(p.journal, j)
    } catch (err) {
      await rm(p.staging, { recursive: true, force: true }) // no journal: nothing was applied
      throw failed(`cannot write the install journal of ${bundleId}`, mapFsError(err, 'writing the journal'))
    }
    try {
      await apply(j, p, signal)
      await writeJournal(p.journal, { ...j, state: 'installed' })
    } catch (err) {
      log.warn({ err, bundleId }, 'install failed; rolling back')
      await rollbackOrThrow(j, p)
      const cause = mapFsError(err, `installing ${bundleId}`)
      throw new InstallError(
        'PSW_ERR_INSTALL_FAILED',
        `installing ${bundleId} failed and was rolled back: ${(cause as Error)?.message}`,
        { cause, details: { rolledBack: true } },
      )
    }
    await rm(p.staging, { recursive: true, force: true })
    const replaced = j.files.filter((f) => f.existed).length
    return {
      bundleId,
      files: j.files.length,
      replaced,
      created: j.files.length - replaced,
      createdDirs: j.createdDirs.length,
    }
  }

  /**
   * The first file this install replaced (it has a backup) that no longer holds the bytes the
   * install wrote — a later bundle or a local edit changed it — if any. Restoring the backup
   * over it would destroy that newer change, so a rollback refuses instead. (A changed file the
   * install created is simply left in place by `undo`.)
   */
  async function changedSince(j: Journal): Promise<string | undefined> {
    for (const f of j.files) {
      if (!f.old) continue
      const target = under(j.targetRoot, f.path)
      const st = (await checkParents(j.targetRoot, f.path)) ? await lstatIfExists(target) : undefined
      if (!st?.isFile() || (await sha256File(target)) !== f.sha256) return target
    }
    return undefined
  }

  async function rollback(bundleId: string): Promise<void> {
    const p = bundlePaths(stateDir, bundleId)
    const j = await readJournal(p.journal)
    if (j === undefined) throw new StateError('PSW_ERR_NOT_FOUND', `bundle ${bundleId} has no install journal`)
    if (j.state === 'installed') {
      if (j.committed) {
        throw rollbackUnavailable(`${j.name} ${j.bundleVersion} was released; its backups are gone`, { bundleId })
      }
      const changed = await changedSince(j)
      if (changed !== undefined) {
        throw rollbackUnavailable(
          `${changed} was changed after ${j.name} ${j.bundleVersion} installed it; refusing to restore the old file over it`,
          { bundleId, path: changed },
        )
      }
    }
    await rollbackOrThrow(j, p)
  }

  async function commit(bundleId: string): Promise<void> {
    const p = bundlePaths(stateDir, bundleId)
    const j = await readJournal(p.journal)
    if (j?.state !== 'installed') return
    // The journal says so first: a crash between the two leaves no rollback that would
    // silently skip the files whose backups are gone.
    if (!j.committed) await writeJournal(p.journal, { ...j, committed: true })
    await rm(p.backups, { recursive: true, force: true })
  }

  async function recover(): Promise<RecoverResult> {
    await ensureDirs()
    const result: RecoverResult = { rolledBack: [], failed: [] }
    const known = new Set<string>()
    for (const name of await readdir(join(stateDir, 'journal'))) {
      if (name.endsWith('.tmp')) {
        await rm(join(stateDir, 'journal', name), { force: true }) // an interrupted journal write
        continue
      }
      if (!name.endsWith('.json')) continue
      const bundleId = name.slice(0, -'.json'.length)
      known.add(bundleId)
      try {
        const p = bundlePaths(stateDir, bundleId)
        const j = await readJournal(p.journal)
        if (j?.state === 'applying' || j?.state === 'rolling-back') {
          log.warn({ bundleId, state: j.state }, 'rolling back an interrupted install')
          await rollbackOrThrow(j, p)
          result.rolledBack.push(bundleId)
        } else {
          await rm(p.staging, { recursive: true, force: true })
          if (j?.state === 'rolled-back') await rm(p.backups, { recursive: true, force: true })
        }
      } catch (error) {
        result.failed.push({ bundleId, error })
      }
    }
    for (const d of ['staging', 'backups']) {
      for (const name of await readdir(join(stateDir, d))) {
        if (!known.has(name)) await rm(join(stateDir, d, name), { recursive: true, force: true })
      }
    }
    return result
  }

  return {
    install: (req) => serial(() => install(req)),
    rollback: (bundleId) => serial(() => rollback(bundleId)),
    commit: (bundleId) => serial(() => commit(bundleId)),
    recover: () => serial(recover),
    status: async (bundleId) => (await readJournal(bundlePaths(stateDir, bundleId).journal))?.state,
    installedRoot: async (bundleId) => {
      const j = await readJournal(bundlePaths(stateDir, bundleId).journal)
      return j?.state === 'installed' ? j.targetRoot : undefined
    },
  }
}
