/**
 * What every installer offers the install router, and the pieces they share: staging the
 * verified bytes into a private file, and a small per-bundle state journal written before
 * the change it describes (so `recover()` after `kill -9` knows what to undo).
 */
import { constants } from 'node:fs'
import { type FileHandle, mkdir, open, readdir, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { writeAll } from '../../shared/bundle/fs-util.ts'
import { InstallError, mapFsError } from '../../shared/errors.ts'
import type { Manifest } from '../../shared/metadata/manifest-schema.ts'
import { writeFileDurable } from '../../shared/store/durable-file.ts'
import type { RecoverResult } from './files-installer.ts'
import type { JournalState } from './journal.ts'

export type { RecoverResult } from './files-installer.ts'
export type { JournalState } from './journal.ts'

/** One install, as the router hands it to an installer. */
export interface InstallerRequest {
  /** The accepted (signed, validated) manifest. */
  manifest: Manifest
  /** Opens the bundle bytes, re-verifying every chunk against the manifest while reading. */
  openVerified: () => AsyncIterable<Uint8Array>
  /** files only: the existing directory the payload goes into. */
  targetRoot?: string
  signal?: AbortSignal
}

/** A successful install. */
export interface InstallerResult {
  /** The device must reboot to finish (Windows 3010/1641); the agent decides when (reboot.ts). */
  rebootRequired: boolean
  /** Bounded installer output, for the report. */
  log: string
  /** Installer-specific facts (dpkg: previous and new version). */
  details?: Record<string, unknown>
}

/** One installer, as the router drives it. */
export interface Installer {
  /** Installs; on failure undoes what it did (when the manifest allows) and throws InstallError. */
  install(request: InstallerRequest): Promise<InstallerResult>
  /**
   * Undoes a completed install: right after it when its health check failed, or later, while
   * it is still assigned, for a site-wide rollback. Idempotent (a rolled-back bundle is left
   * alone). Throws PSW_ERR_ROLLBACK_UNAVAILABLE, before changing anything, when this install
   * cannot be undone (no rollback declared, or what it installed was changed since), and
   * PSW_ERR_ROLLBACK_FAILED when undoing failed.
   */
  rollback(bundleId: string): Promise<{ log: string }>
  /**
   * Drops what was kept only for a rollback (previous .deb, staged payload). The router calls
   * it when the agent releases the bundle (it left the assignment), never right after the
   * install: a site-wide rollback needs the snapshot as long as the bundle is assigned.
   */
  commit(bundleId: string): Promise<void>
  /** At agent start: undoes every install that was interrupted. */
  recover(): Promise<RecoverResult>
  status(bundleId: string): Promise<JournalState | undefined>
}

/** PSW_ERR_INSTALL_FAILED with structured details (bounded logs, whether it was rolled back). */
export function installFailed(message: string, details: Record<string, unknown>, cause?: unknown): InstallError {
  return new InstallError('PSW_ERR_INSTALL_FAILED', message, { details, ...(cause === undefined ? {} : { cause }) })
}

/** PSW_ERR_ROLLBACK_UNAVAILABLE: this install cannot be undone; nothing was changed. */
export function rollbackUnavailable(message: string, details: Record<string, unknown>): InstallError {
  return new InstallError('PSW_ERR_ROLLBACK_UNAVAILABLE', message, { details })
}

/** PSW_ERR_ROLLBACK_FAILED with structured details. */
export function rollbackFailed(message: string, details: Record<string, unknown>, cause?: unknown): InstallError {
  return new InstallError('PSW_ERR_ROLLBACK_FAILED', `${message}; manual attention needed`, {
    details,
    ...(cause === undefined ? {} : { cause }),
  })
}

/**
 * Writes the verified bytes to a new private file (0600 by default, never an existing path,
 * never through a symlink), fsynced. This file is what the installer hands to dpkg, msiexec or
 * a script: exactly the bytes that were verified, at a path only the agent can write. On any
 * failure — including a chunk that fails its hash at the end — the file is removed.
 */
export async function stageVerified(
  source: AsyncIterable<Uint8Array>,
  dest: string,
  options: { mode?: number; signal?: AbortSignal } = {},
): Promise<number> {
  let fh: FileHandle | undefined
  let size = 0
  try {
    fh = await open(
      dest,
      constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | (constants.O_NOFOLLOW ?? 0),
      options.mode ?? 0o600,
    )
    for await (const chunk of source) {
      options.signal?.throwIfAborted()
      await writeAll(fh, chunk)
      size += chunk.byteLength
    }
    await fh.sync()
    await fh.close()
    fh = undefined
    return size
  } catch (err) {
    await fh?.close().catch(() => {})
    await rm(dest, { force: true })
    throw mapFsError(err, `staging ${dest}`)
  }
}

/** A fresh private directory (0700): removed first if it exists. */
export async function freshPrivateDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true })
  await mkdir(dir, { recursive: true, mode: 0o700 })
}

/** The fields every installer journal has. */
export interface OpJournalBase {
  version: 1
  bundleId: string
  state: JournalState
}

const STATES: readonly JournalState[] = ['applying', 'installed', 'rolling-back', 'rolled-back']

/**
 * Reads a small installer journal; `undefined` if there is none. `valid` checks the installer's
 * own fields; a corrupt journal is PSW_ERR_ROLLBACK_FAILED (nobody can tell what was done).
 */
export async function readOpJournal<T extends OpJournalBase>(
  path: string,
  valid: (j: Record<string, unknown>) => boolean,
): Promise<T | undefined> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
  let j: Record<string, unknown> | undefined
  try {
    j = JSON.parse(text) as Record<string, unknown>
  } catch {}
  if (
    typeof j !== 'object' ||
    j === null ||
    j.version !== 1 ||
    typeof j.bundleId !== 'string' ||
    !STATES.includes(j.state as JournalState) ||
    !valid(j)
  ) {
    throw rollbackFailed(`installer journal ${path} is corrupt`, { path })
  }
  return j as unknown as T
}

/** Replaces a journal atomically and durably (0600). */
export async function writeOpJournal(path: string, journal: OpJournalBase): Promise<void> {
  await writeFileDurable(path, `${JSON.stringify(journal)}\n`, { mode: 0o600 })
}

/**
 * What every journalled installer does at start: journals left `applying` or `rolling-back`
 * by a crash are undone (`undo`), leftovers of interrupted journal writes are removed, and
 * staging directories of bundles that are not installed are cleared. `base` holds
 * `journal/<bundleId>.json` and `staging/<bundleId>/`.
 */
export async function recoverJournals<T extends OpJournalBase>(
  base: string,
  read: (bundleId: string) => Promise<T | undefined>,
  undo: (journal: T) => Promise<unknown>,
  warn: (journal: T) => void,
): Promise<RecoverResult> {
  const result: RecoverResult = { rolledBack: [], failed: [] }
  const journalDir = join(base, 'journal')
  const keep = new Set<string>()
  for (const name of await readdir(journalDir).catch(() => [] as string[])) {
    if (!name.endsWith('.json')) {
      await rm(join(journalDir, name), { force: true }) // an interrupted journal write
      continue
    }
    const bundleId = name.slice(0, -'.json'.length)
    try {
      const j = await read(bundleId)
      if (j?.state === 'applying' || j?.state === 'rolling-back') {
        warn(j)
        await undo(j)
        result.rolledBack.push(bundleId)
      } else if (j?.state === 'installed') keep.add(bundleId)
    } catch (error) {
      keep.add(bundleId)
      result.failed.push({ bundleId, error })
    }
  }
  for (const name of await readdir(join(base, 'staging')).catch(() => [] as string[])) {
    if (!keep.has(name)) await rm(join(base, 'staging', name), { recursive: true, force: true })
  }
  return result
}
