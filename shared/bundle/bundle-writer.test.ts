import { execFileSync } from 'node:child_process'
import { createReadStream } from 'node:fs'
import { chmod, mkdir, readdir, readFile, symlink, utimes, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { PswError } from '../errors.ts'
import { scanBundle } from './bundle-reader.ts'
import { writeBundle } from './bundle-writer.ts'
import { tempDir } from './test-helpers.ts'

let root: string
let cleanup: () => Promise<void>
beforeEach(async () => {
  ;({ dir: root, cleanup } = await tempDir('psw-writer-'))
})
afterEach(async () => cleanup())

async function tree(): Promise<string> {
  const src = join(root, 'src')
  await mkdir(join(src, 'b/c'), { recursive: true })
  await writeFile(join(src, 'b/c/z.txt'), 'zzz')
  await writeFile(join(src, 'a.bin'), Buffer.alloc(600_000, 1))
  await writeFile(join(src, 'B.txt'), 'upper case sorts first')
  return src
}
const codeOf = (err: unknown) => (err instanceof PswError ? err.code : String(err))

describe('writeBundle', () => {
  it('is deterministic: same tree → identical bytes, whatever mtimes and group bits', async () => {
    const src = await tree()
    const one = join(root, 'one.tar')
    const two = join(root, 'two.tar')
    await writeBundle({ source: src, name: 'n', version: '1', out: one })
    await utimes(join(src, 'a.bin'), new Date(2020, 1, 1), new Date(2020, 1, 1))
    await chmod(join(src, 'b/c/z.txt'), 0o664)
    await writeBundle({ source: src, name: 'n', version: '1', out: two })
    expect((await readFile(one)).equals(await readFile(two))).toBe(true)
    const scan = await scanBundle(createReadStream(one))
    expect(scan.entries.map((e) => e.path)).toEqual(['B.txt', 'a.bin', 'b', 'b/c', 'b/c/z.txt'])
    expect(await readdir(root)).toEqual(['one.tar', 'src', 'two.tar'])
  })

  it('bundles a single file as payload/<basename> and reports progress', async () => {
    const file = join(root, 'setup.exe')
    await writeFile(file, Buffer.alloc(1_000_000, 2))
    const progress: number[] = []
    const result = await writeBundle({
      source: file,
      name: 'setup',
      version: '3',
      out: join(root, 'x.tar'),
      onProgress: (done, total) => {
        expect(total).toBe(1_000_000)
        progress.push(done)
      },
    })
    expect(result).toMatchObject({ files: 1, unpackedSize: 1_000_000 })
    expect(progress.at(-1)).toBe(1_000_000)
    expect([...progress].sort((a, b) => a - b)).toEqual(progress)
    const scan = await scanBundle(createReadStream(join(root, 'x.tar')))
    expect(scan.entries).toEqual([{ path: 'setup.exe', type: 'file', size: 1_000_000, mode: 0o644 }])
  })

  it.each([
    ['a symlink inside', async (src: string) => symlink('/etc/passwd', join(src, 'b/link'))],
    ['a dangling symlink', async (src: string) => symlink('/nonexistent', join(src, 'dangling'))],
    ['a fifo', async (src: string) => execFileSync('mkfifo', [join(src, 'b/fifo')])],
    ['a name a reader would refuse', async (src: string) => writeFile(join(src, 'back\\slash'), 'x')],
    ['a trailing-dot name', async (src: string) => writeFile(join(src, 'name.'), 'x')],
  ])('refuses a source with %s (PSW_ERR_INGEST_SOURCE) and leaves the old output', async (_why, spoil) => {
    const src = await tree()
    await spoil(src)
    const out = join(root, 'out.tar')
    await writeFile(out, 'previous bundle')
    const err = await writeBundle({ source: src, name: 'n', version: '1', out }).catch((e: unknown) => e)
    expect(codeOf(err)).toBe('PSW_ERR_INGEST_SOURCE')
    expect(await readFile(out, 'utf8')).toBe('previous bundle')
    expect((await readdir(root)).sort()).toEqual(['out.tar', 'src'])
  })

  it('refuses a source that is itself a symlink, and a missing source', async () => {
    const src = await tree()
    await symlink(src, join(root, 'alias'))
    for (const source of [join(root, 'alias'), join(root, 'missing')]) {
      const err = await writeBundle({ source, name: 'n', version: '1', out: join(root, 'o.tar') }).catch((e) => e)
      expect(codeOf(err)).toBe('PSW_ERR_INGEST_SOURCE')
    }
  })

  it('refuses invalid metadata and too many entries', async () => {
    const src = await tree()
    const out = join(root, 'o.tar')
    expect(codeOf(await writeBundle({ source: src, name: '', version: '1', out }).catch((e) => e))).toBe(
      'PSW_ERR_INVALID_ARGUMENT',
    )
    const tooMany = await writeBundle({ source: src, name: 'n', version: '1', out, limits: { maxEntries: 4 } }).catch(
      (e) => e,
    )
    expect(codeOf(tooMany)).toBe('PSW_ERR_INGEST_SOURCE')
  })

  it('an abort in the middle of a large file entry rejects cleanly (no uncaught entry error)', async () => {
    const src = join(root, 'big')
    await mkdir(src)
    await writeFile(join(src, 'big.bin'), Buffer.alloc(8 << 20, 7))
    const controller = new AbortController()
    const out = join(root, 'o.tar')
    let calls = 0
    const p = writeBundle({
      source: src,
      name: 'n',
      version: '1',
      out,
      signal: controller.signal,
      onProgress: () => {
        if (++calls === 2) controller.abort(new Error('cancelled mid-file'))
      },
    })
    await expect(p).rejects.toThrow('cancelled mid-file')
    expect((await readdir(root)).sort()).toEqual(['big'])
  })

  it('stops on abort and removes the tmp file', async () => {
    const src = await tree()
    const controller = new AbortController()
    const out = join(root, 'o.tar')
    const p = writeBundle({
      source: src,
      name: 'n',
      version: '1',
      out,
      signal: controller.signal,
      onProgress: () => controller.abort(new Error('cancelled')),
    })
    await expect(p).rejects.toThrow('cancelled')
    expect(await readdir(root)).toEqual(['src'])
  })
})
