/** Test helpers: hand-made tars built with tar-stream's pack() directly, and temp directories. */
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { lstat, mkdtemp, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as tar from 'tar-stream'
import { BUNDLE_FORMAT } from './tar-guard.ts'

/** One hand-made tar entry: a raw header (anything tar-stream will encode) and an optional body. */
export interface RawEntry {
  header: Record<string, unknown> & { name: string }
  body?: string | Buffer
}

/** Packs raw entries exactly as given. */
export async function packRaw(entries: RawEntry[]): Promise<Buffer> {
  const pack = tar.pack()
  for (const e of entries) {
    const header = { mtime: new Date(0), ...e.header } as Parameters<typeof pack.entry>[0]
    if (e.body === undefined) pack.entry(header).end(null)
    else pack.entry(header, e.body)
  }
  pack.finalize()
  const chunks: Buffer[] = []
  for await (const chunk of pack as AsyncIterable<Buffer>) chunks.push(chunk)
  return Buffer.concat(chunks)
}

export const fileEntry = (name: string, body: string | Buffer, mode = 0o644): RawEntry => ({
  header: { name, type: 'file', mode },
  body,
})
export const dirEntry = (name: string): RawEntry => ({ header: { name, type: 'directory', mode: 0o755 } })

/**
 * bundle.json + payload/ + `payload`; the metadata declares the files and sizes of `payload`
 * unless `declared` overrides them.
 */
export async function packBundle(
  payload: RawEntry[],
  declared: Partial<{ files: number; unpackedSize: number }> = {},
): Promise<Buffer> {
  const files = payload.filter((e) => e.header.type === 'file')
  const meta = {
    format: BUNDLE_FORMAT,
    name: 'test',
    version: '1',
    files: declared.files ?? files.length,
    unpackedSize: declared.unpackedSize ?? files.reduce((n, e) => n + Buffer.byteLength(e.body ?? ''), 0),
  }
  return packRaw([fileEntry('bundle.json', JSON.stringify(meta)), dirEntry('payload'), ...payload])
}

/** A temp directory for one test, removed by the returned cleanup. */
export async function tempDir(prefix = 'psw-bundle-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) }
}

/** Writes `bytes` to `path` and returns an opener usable as `openVerified`. */
export async function tarFile(path: string, bytes: Buffer): Promise<() => AsyncIterable<Uint8Array>> {
  await writeFile(path, bytes)
  return () => createReadStream(path)
}

/** Yields `bytes` in pieces of `size` bytes. */
export async function* pieces(bytes: Uint8Array, size: number): AsyncIterable<Uint8Array> {
  for (let i = 0; i < bytes.byteLength; i += size) yield bytes.subarray(i, i + size)
}

/** Every entry under `dir`: type, mode, and for files content hash and mtime; symlinks' targets. */
export async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  const walk = async (d: string, rel: string) => {
    for (const name of (await readdir(d)).sort()) {
      const abs = join(d, name)
      const key = rel ? `${rel}/${name}` : name
      const st = await lstat(abs)
      const mode = (st.mode & 0o7777).toString(8)
      if (st.isSymbolicLink()) out[key] = `link ${await readlink(abs)}`
      else if (st.isDirectory()) {
        out[key] = `dir ${mode}`
        await walk(abs, key)
      } else {
        const hash = createHash('sha256')
          .update(await readFile(abs))
          .digest('hex')
          .slice(0, 16)
        out[key] = `file ${mode} ${hash} ${Math.trunc(st.mtimeMs)}`
      }
    }
  }
  await walk(dir, '')
  return out
}
