/**
 * File-system steps of the installer: symlink-safe path checks under a target root and
 * atomic copies (tmp next to the destination → fsync → rename → fsync of the directory).
 */
import { createHash } from 'node:crypto'
import { constants, type Stats } from 'node:fs'
import { copyFile, link, lstat, open, realpath, rename, rm, stat } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { isErrno } from '../../shared/bundle/fs-util.ts'
import { InstallError, ValidationError } from '../../shared/errors.ts'
import { fsyncDir } from '../../shared/store/durable-file.ts'

/** Owner, mode and mtime of a file as it was before the install. */
export interface FileAttrs {
  mode: number
  uid: number
  gid: number
  mtimeMs: number
}

/** PSW_ERR_INSTALL_FAILED for a target tree the installer will not touch (nothing was written). */
export function refuse(message: string, path: string): InstallError {
  return new InstallError('PSW_ERR_INSTALL_FAILED', message, { details: { path } })
}

/** `lstat`, or `undefined` if the path does not exist. */
export async function lstatIfExists(path: string): Promise<Stats | undefined> {
  try {
    return await lstat(path)
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined
    throw err
  }
}

/** The absolute path of `rel` (a guard-normalised `a/b/c` path) under `root`. */
export function under(root: string, rel: string): string {
  return join(root, ...rel.split('/'))
}

/**
 * Refuses to touch `rel` if any of its parent directories below `root` is a symlink (it could
 * lead outside the root) or not a directory. Returns false if a parent does not exist.
 */
export async function checkParents(root: string, rel: string): Promise<boolean> {
  const segments = rel.split('/')
  let current = root
  for (const segment of segments.slice(0, -1)) {
    current = join(current, segment)
    const st = await lstatIfExists(current)
    if (st === undefined) return false
    if (st.isSymbolicLink()) throw refuse(`${current} is a symlink; refusing to write through it`, current)
    if (!st.isDirectory()) throw refuse(`${current} is not a directory`, current)
  }
  return true
}

/**
 * Copies `src` to `dest` atomically through `tmp` (which must be in `dest`'s directory). With
 * `attrs`, restores owner (best effort when not privileged), mode and mtime; otherwise sets `mode`.
 */
export async function copyAtomic(src: string, dest: string, tmp: string, mode: number, attrs?: FileAttrs) {
  await rm(tmp, { force: true })
  try {
    await copyFile(src, tmp, constants.COPYFILE_EXCL)
    const fh = await open(tmp, constants.O_RDWR | (constants.O_NOFOLLOW ?? 0))
    try {
      if (attrs) {
        // chown first: it may clear setuid/setgid bits that chmod then restores.
        await fh.chown(attrs.uid, attrs.gid).catch((err: unknown) => {
          if (!isErrno(err, 'EPERM')) throw err
        })
      }
      await fh.chmod(attrs?.mode ?? mode)
      if (attrs) await fh.utimes(attrs.mtimeMs / 1000, attrs.mtimeMs / 1000)
      await fh.sync()
    } finally {
      await fh.close()
    }
    await rename(tmp, dest)
  } catch (err) {
    await rm(tmp, { force: true })
    throw err
  }
  await fsyncDir(dirname(dest))
}

/**
 * Keeps the old file at `backup`: a hard link where possible (the very same inode: content,
 * owner, mode, mtime, xattrs; no copy), else an atomic copy carrying `attrs`.
 */
export async function backupFile(src: string, backup: string, tmp: string, attrs: FileAttrs): Promise<void> {
  await rm(backup, { force: true })
  try {
    await link(src, backup)
    await fsyncDir(dirname(backup))
    return
  } catch (err) {
    if (!['EXDEV', 'EPERM', 'EMLINK', 'ENOTSUP', 'EOPNOTSUPP'].some((code) => isErrno(err, code))) throw err
  }
  await copyAtomic(src, backup, tmp, 0, attrs)
}

/** SHA-256 (hex) of a file's contents, streamed. */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256')
  const fh = await open(path, constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0))
  try {
    for await (const chunk of fh.createReadStream({ autoClose: false })) hash.update(chunk as Buffer)
  } finally {
    await fh.close()
  }
  return hash.digest('hex')
}

/** The real path of an existing target directory (PSW_ERR_INVALID_ARGUMENT otherwise). */
export async function resolveRoot(targetRoot: string): Promise<string> {
  try {
    const root = await realpath(targetRoot)
    if ((await stat(root)).isDirectory()) return root
  } catch {}
  throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', `target root ${targetRoot} is not an existing directory`)
}

/** Puts a backup back: a rename (no space needed, atomic), or a copy across file systems. */
export async function restore(backup: string, target: string, tmp: string, attrs: FileAttrs): Promise<void> {
  try {
    await rename(backup, target)
    await fsyncDir(dirname(target))
  } catch (err) {
    if (!isErrno(err, 'EXDEV')) throw err
    await copyAtomic(backup, target, tmp, 0, attrs)
  }
}
