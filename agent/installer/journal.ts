/**
 * The install journal: one JSON file per bundle under `stateDir/journal/`, always replaced
 * atomically, written *before* the changes it describes so that a rollback after `kill -9`
 * knows what may have been done (faults row 19).
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { DEFAULT_TAR_LIMITS, normalizeTarPath, type PayloadEntry } from '../../shared/bundle/tar-guard.ts'
import { InstallError, ValidationError } from '../../shared/errors.ts'
import { writeFileDurable } from '../../shared/store/durable-file.ts'
import { type FileAttrs, lstatIfExists, refuse, under } from './safe-fs.ts'

/** Life cycle of one bundle install. */
export type JournalState = 'applying' | 'installed' | 'rolling-back' | 'rolled-back'

const STATES: readonly JournalState[] = ['applying', 'installed', 'rolling-back', 'rolled-back']

/** One payload file in the journal. */
export interface JournalFile {
  /** Path relative to the target root. */
  path: string
  /** Mode the new file gets. */
  mode: number
  /** SHA-256 of the new content: a rollback deletes a new file only if it still holds our bytes. */
  sha256: string
  /** Whether the target existed before the install (then a backup is taken before replacing). */
  existed: boolean
  /** Attributes of the previous file, when it existed. */
  old?: FileAttrs
}

/** The journal document. */
export interface Journal {
  version: 1
  bundleId: string
  /** Real path of the target root. */
  targetRoot: string
  state: JournalState
  name: string
  bundleVersion: string
  files: JournalFile[]
  /** Directories the install creates (relative), parents first. */
  createdDirs: string[]
  /** The bundle was released: its backups are gone, so it can no longer be rolled back. */
  committed?: boolean
}

/** Paths the installer keeps for one bundle. */
export interface BundlePaths {
  journal: string
  staging: string
  backups: string
}

const BUNDLE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/

/** Checks that a bundle id is safe as a file name (PSW_ERR_INVALID_ARGUMENT otherwise). */
export function bundlePaths(stateDir: string, bundleId: string): BundlePaths {
  if (typeof bundleId !== 'string' || !BUNDLE_ID.test(bundleId)) {
    throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', `invalid bundle id ${JSON.stringify(bundleId)}`)
  }
  return {
    journal: join(stateDir, 'journal', `${bundleId}.json`),
    staging: join(stateDir, 'staging', bundleId),
    backups: join(stateDir, 'backups', bundleId),
  }
}

const corrupt = (path: string, why: string, cause?: unknown) =>
  new InstallError('PSW_ERR_ROLLBACK_FAILED', `journal ${path} is corrupt (${why}); manual attention needed`, {
    cause,
  })

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v)
const isRel = (v: unknown): boolean => {
  try {
    return normalizeTarPath(v, DEFAULT_TAR_LIMITS, false) === v
  } catch {
    return false
  }
}

/** Reads a journal; `undefined` if there is none. Paths in it are re-checked like tar paths. */
export async function readJournal(path: string): Promise<Journal | undefined> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
  let j: Journal
  try {
    j = JSON.parse(text) as Journal
  } catch (err) {
    throw corrupt(path, 'not JSON', err)
  }
  if (j?.version !== 1 || !STATES.includes(j.state) || typeof j.targetRoot !== 'string') throw corrupt(path, 'header')
  if (!Array.isArray(j.files) || !Array.isArray(j.createdDirs) || !j.createdDirs.every(isRel)) {
    throw corrupt(path, 'lists')
  }
  for (const f of j.files) {
    const oldOk =
      f.old === undefined ||
      (isInt(f.old.mode) && isInt(f.old.uid) && isInt(f.old.gid) && Number.isFinite(f.old.mtimeMs))
    if (!isRel(f.path) || !isInt(f.mode) || typeof f.sha256 !== 'string' || f.existed !== !!f.old || !oldOk) {
      throw corrupt(path, `file entry ${JSON.stringify(f?.path)}`)
    }
  }
  return j
}

/** Replaces the journal atomically (tmp → fsync → rename → fsync dir). */
export async function writeJournal(path: string, journal: Journal): Promise<void> {
  await writeFileDurable(path, `${JSON.stringify(journal)}\n`, { mode: 0o600 })
}

/** Suffix of the installer's tmp files next to targets; payload names ending in it are refused. */
export const TMP_SUFFIX = '.psw-tmp'

/** Checks the target tree before anything is written: no symlinks, no file/directory conflicts. */
export async function planTargets(root: string, entries: PayloadEntry[]) {
  const files: Omit<JournalFile, 'sha256'>[] = []
  const createdDirs: string[] = []
  const created = new Set<string>()
  for (const e of entries) {
    const target = under(root, e.path)
    if (e.path.endsWith(TMP_SUFFIX)) throw refuse(`${target}: names ending in ${TMP_SUFFIX} are reserved`, target)
    const slash = e.path.lastIndexOf('/')
    const parentIsNew = slash >= 0 && created.has(e.path.slice(0, slash))
    const st = parentIsNew ? undefined : await lstatIfExists(target)
    if (st?.isSymbolicLink()) throw refuse(`${target} is a symlink; refusing to write through it`, target)
    if (e.type === 'directory') {
      if (st === undefined) {
        created.add(e.path)
        createdDirs.push(e.path)
      } else if (!st.isDirectory()) throw refuse(`${target} exists and is not a directory`, target)
    } else {
      if (st !== undefined && !st.isFile()) throw refuse(`${target} exists and is not a regular file`, target)
      const old = st && { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtimeMs: st.mtimeMs }
      files.push({ path: e.path, mode: e.mode, existed: st !== undefined, ...(old ? { old } : {}) })
    }
  }
  return { files, createdDirs }
}
