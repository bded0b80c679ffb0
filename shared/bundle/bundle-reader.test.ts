import { createReadStream } from 'node:fs'
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { type ErrorCode, IntegrityError, PswError, StoreError } from '../errors.ts'
import { extractBundle, scanBundle } from './bundle-reader.ts'
import { writeBundle } from './bundle-writer.ts'
import type { TarLimits } from './tar-guard.ts'
import { dirEntry, fileEntry, packBundle, packRaw, pieces, type RawEntry, tempDir } from './test-helpers.ts'

let root: string
let cleanup: () => Promise<void>
beforeEach(async () => {
  ;({ dir: root, cleanup } = await tempDir())
})
afterEach(async () => cleanup())

async function codeOf(p: Promise<unknown>): Promise<ErrorCode | 'none'> {
  try {
    await p
    return 'none'
  } catch (err) {
    if (err instanceof PswError) return err.code
    throw err
  }
}

/** A fresh extraction directory inside its own parent, so escapes next to it are visible. */
async function outDir(): Promise<{ parent: string; out: string }> {
  const parent = join(root, `work-${Math.random().toString(36).slice(2)}`)
  await mkdir(join(parent, 'out'), { recursive: true })
  return { parent, out: join(parent, 'out') }
}

const good = fileEntry('payload/first.txt', 'written before the bad entry')
const long = `payload/${'a/'.repeat(5000)}f`
const malicious: Array<[string, RawEntry[], ErrorCode, Partial<TarLimits>?, object?]> = [
  ['../x', [fileEntry('../x', 'evil')], 'PSW_ERR_TAR_PATH'],
  ['payload/../../x', [fileEntry('payload/../../x', 'evil')], 'PSW_ERR_TAR_PATH'],
  ['/etc/passwd', [fileEntry('/etc/passwd', 'evil')], 'PSW_ERR_TAR_PATH'],
  ['backslash', [fileEntry('payload/..\\..\\x', 'evil')], 'PSW_ERR_TAR_PATH'],
  ['a\\b', [fileEntry('payload/a\\b', 'evil')], 'PSW_ERR_TAR_PATH'],
  ['C:/x', [fileEntry('C:/x', 'evil')], 'PSW_ERR_TAR_PATH'],
  [
    'NUL in a pax path',
    [{ header: { name: 'payload/a\u0000b', type: 'file', pax: {} }, body: 'x' }],
    'PSW_ERR_TAR_PATH',
  ],
  ['symlink to /', [{ header: { name: 'payload/root', type: 'symlink', linkname: '/' } }], 'PSW_ERR_TAR_LINK'],
  ['hardlink', [{ header: { name: 'payload/h', type: 'link', linkname: 'payload/first.txt' } }], 'PSW_ERR_TAR_LINK'],
  [
    'directory then a symlink of the same name',
    [dirEntry('payload/dir'), { header: { name: 'payload/dir', type: 'symlink', linkname: '/' } }],
    'PSW_ERR_TAR_LINK',
  ],
  [
    'character device',
    [{ header: { name: 'payload/null', type: 'character-device', devmajor: 1, devminor: 3 } }],
    'PSW_ERR_TAR_ENTRY_TYPE',
  ],
  ['block device', [{ header: { name: 'payload/sda', type: 'block-device' } }], 'PSW_ERR_TAR_ENTRY_TYPE'],
  ['fifo', [{ header: { name: 'payload/fifo', type: 'fifo' } }], 'PSW_ERR_TAR_ENTRY_TYPE'],
  [
    'contiguous file',
    [{ header: { name: 'payload/c', type: 'contiguous-file' }, body: 'x' }],
    'PSW_ERR_TAR_ENTRY_TYPE',
  ],
  ['5000-level deep path', [fileEntry(long, 'deep')], 'PSW_ERR_TAR_LIMIT'],
  ['65 levels', [fileEntry(`payload/${'d/'.repeat(64)}f`, 'deep')], 'PSW_ERR_TAR_LIMIT'],
  [
    'real size above declared unpackedSize',
    [fileEntry('payload/big', Buffer.alloc(1000))],
    'PSW_ERR_TAR_LIMIT',
    {},
    {
      unpackedSize: 40,
    },
  ],
  [
    'more entries than the limit',
    Array.from({ length: 6 }, (_, i) => fileEntry(`payload/f${i}`, 'x')),
    'PSW_ERR_TAR_LIMIT',
    { maxEntries: 5 },
    { files: 3, unpackedSize: 1000 },
  ],
  [
    'unpacked size above the configured max',
    [fileEntry('payload/big', Buffer.alloc(500))],
    'PSW_ERR_TAR_LIMIT',
    {
      maxUnpackedSize: 300,
    },
  ],
  ['file then a/b', [fileEntry('payload/a', 'x'), fileEntry('payload/a/b', 'y')], 'PSW_ERR_TAR_PATH'],
  ['duplicate path', [fileEntry('payload/first.txt', 'again')], 'PSW_ERR_TAR_PATH'],
  ['entry outside payload/', [fileEntry('elsewhere.txt', 'x')], 'PSW_ERR_TAR_PATH'],
  ['undeclared parent directory', [fileEntry('payload/nodir/x', 'x')], 'PSW_ERR_TAR_INVALID'],
]

describe('malicious bundles are rejected with nothing written', () => {
  it.each(malicious)('%s', async (_name, entries, code, limits = {}, declared = {}) => {
    const bytes = await packBundle([good, ...entries], declared)
    expect(await codeOf(scanBundle(pieces(bytes, 4096), { limits }))).toBe(code)
    const { parent, out } = await outDir()
    expect(await codeOf(extractBundle(pieces(bytes, 4096), { dir: out, limits }))).toBe(code)
    expect(await readdir(out)).toEqual([])
    expect(await readdir(parent)).toEqual(['out'])
  })

  it('rejects a negative size (base-256) as a malformed tar', async () => {
    const bytes = await packBundle([fileEntry('payload/f', 'x')])
    const h = bytes.subarray(3 * 512, 4 * 512) // bundle.json header + body, payload/ header, then payload/f
    expect(h.subarray(0, 9).toString()).toBe('payload/f')
    h.fill(0xff, 124, 136)
    h[135] = 0xfe // two's complement -1
    h.fill(0x20, 148, 156)
    let sum = 0
    for (const b of h) sum += b
    h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1')
    expect(await codeOf(scanBundle(pieces(bytes, 512)))).toBe('PSW_ERR_TAR_INVALID')
  })

  it.each([
    ['truncated', async () => (await packBundle([fileEntry('payload/f', Buffer.alloc(5000, 1))])).subarray(0, 3000)],
    ['random bytes', async () => Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 251))],
    ['empty archive', async () => Buffer.alloc(1024)],
    ['no payload/', async () => packRaw([fileEntry('bundle.json', JSON.stringify({}))])],
  ])('rejects a %s archive', async (_name, make) => {
    const { out } = await outDir()
    const code = await codeOf(extractBundle(pieces(await make(), 1000), { dir: out }))
    expect(['PSW_ERR_TAR_INVALID', 'PSW_ERR_BUNDLE_METADATA']).toContain(code)
    expect(await readdir(out)).toEqual([])
  })

  it('requires bundle.json first and well-formed', async () => {
    const noMeta = await packRaw([dirEntry('payload'), fileEntry('payload/x', 'x')])
    expect(await codeOf(scanBundle(pieces(noMeta, 512)))).toBe('PSW_ERR_BUNDLE_METADATA')
    const badMeta = await packRaw([fileEntry('bundle.json', '{"format":"nope"}'), dirEntry('payload')])
    expect(await codeOf(scanBundle(pieces(badMeta, 512)))).toBe('PSW_ERR_BUNDLE_METADATA')
    const hugeMeta = await packRaw([fileEntry('bundle.json', Buffer.alloc(70_000, 0x20))])
    expect(await codeOf(scanBundle(pieces(hugeMeta, 512)))).toBe('PSW_ERR_TAR_LIMIT')
    const short = await packBundle([fileEntry('payload/x', 'xyz')], { unpackedSize: 4 })
    expect(await codeOf(scanBundle(pieces(short, 512)))).toBe('PSW_ERR_BUNDLE_METADATA')
  })
})

describe('plain layout (raw content: a vendor tar)', () => {
  /** The malicious entries above that do not depend on bundle.json or the payload/ prefix. */
  const layoutFree = malicious.filter(
    ([name]) => !['real size above declared unpackedSize', 'entry outside payload/'].includes(name),
  )

  it.each(layoutFree)('rejects %s with nothing written', async (_name, entries, code, limits = {}) => {
    // `payload` is an ordinary directory here; the same entries must fail the same way.
    const bytes = await packRaw([dirEntry('payload'), good, ...entries])
    expect(await codeOf(scanBundle(pieces(bytes, 4096), { limits, layout: 'plain' }))).toBe(code)
    const { parent, out } = await outDir()
    expect(await codeOf(extractBundle(pieces(bytes, 4096), { dir: out, limits, layout: 'plain' }))).toBe(code)
    expect(await readdir(out)).toEqual([])
    expect(await readdir(parent)).toEqual(['out'])
  })

  it('enforces the configured unpacked size (there is no declared one)', async () => {
    const bytes = await packRaw([fileEntry('a', Buffer.alloc(200)), fileEntry('b', Buffer.alloc(200))])
    expect(await codeOf(scanBundle(pieces(bytes, 512), { layout: 'plain', limits: { maxUnpackedSize: 399 } }))).toBe(
      'PSW_ERR_TAR_LIMIT',
    )
    expect(await codeOf(scanBundle(pieces(bytes, 512), { layout: 'plain', limits: { maxUnpackedSize: 400 } }))).toBe(
      'none',
    )
  })

  it.each([
    ['empty archive', async () => Buffer.alloc(1024)],
    ['truncated', async () => (await packRaw([fileEntry('f', Buffer.alloc(5000, 1))])).subarray(0, 3000)],
    [
      'random bytes (e.g. a .deb given to the files installer)',
      async () => Buffer.from('!<arch>\ndebian-binary   '.repeat(40)),
    ],
  ])('rejects a %s as PSW_ERR_TAR_INVALID', async (_name, make) => {
    const { out } = await outDir()
    expect(await codeOf(extractBundle(pieces(await make(), 1000), { dir: out, layout: 'plain' }))).toBe(
      'PSW_ERR_TAR_INVALID',
    )
    expect(await readdir(out)).toEqual([])
  })

  it("scans and extracts a vendor tar with './' paths, without metadata", async () => {
    const bytes = await packRaw([
      { header: { name: './', type: 'directory', mode: 0o755 } },
      dirEntry('./bin'),
      fileEntry('./bin/tool', '#!/bin/sh\n', 0o4755),
      fileEntry('./bundle.json', '{"not":"metadata"}'),
    ])
    const scan = await scanBundle(pieces(bytes, 700), { layout: 'plain' })
    expect(scan.meta).toBeUndefined()
    expect(scan.entries.map((e) => `${e.type[0]} ${e.path} ${e.mode.toString(8)}`)).toEqual([
      'd bin 755',
      'f bin/tool 755',
      'f bundle.json 644',
    ])
    const { out } = await outDir()
    const result = await extractBundle(pieces(bytes, 700), { dir: out, layout: 'plain', plan: scan })
    expect(result.meta).toBeUndefined()
    expect(await readFile(join(out, 'bin/tool'), 'utf8')).toBe('#!/bin/sh\n')
    expect((await stat(join(out, 'bin/tool'))).mode & 0o7777).toBe(0o755)
    expect(await readFile(join(out, 'bundle.json'), 'utf8')).toBe('{"not":"metadata"}')
  })

  it('reads a patchswarm bundle as plain entries, and a plain tar is no bundle', async () => {
    const bundle = await packBundle([fileEntry('payload/x', 'x')])
    expect((await scanBundle(pieces(bundle, 512), { layout: 'plain' })).entries.map((e) => e.path)).toEqual([
      'bundle.json',
      'payload',
      'payload/x',
    ])
    const plainTar = await packRaw([fileEntry('x', 'x')])
    expect(await codeOf(scanBundle(pieces(plainTar, 512)))).toBe('PSW_ERR_BUNDLE_METADATA')
  })
})

describe('input, plan, faults', () => {
  const sample = () => packBundle([good, dirEntry('payload/d'), fileEntry('payload/d/big', Buffer.alloc(300_000, 7))])

  it("passes the input's own error through unchanged and removes partial output", async () => {
    const bytes = await sample()
    const boom = new IntegrityError('PSW_ERR_CHUNK_HASH', 'chunk 3 does not match')
    async function* failing() {
      yield* pieces(bytes.subarray(0, 200_000), 65_536)
      throw boom
    }
    await expect(scanBundle(failing())).rejects.toBe(boom)
    const { out } = await outDir()
    await expect(extractBundle(failing(), { dir: out })).rejects.toBe(boom)
    expect(await readdir(out)).toEqual([])
  })

  it('refuses an archive that differs from the scanned plan', async () => {
    const plan = await scanBundle(pieces(await sample(), 65_536))
    const other = await packBundle([good, dirEntry('payload/d'), fileEntry('payload/d/big', Buffer.alloc(300_001, 7))])
    const { out } = await outDir()
    const err = await extractBundle(pieces(other, 65_536), { dir: out, plan }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(IntegrityError)
    expect((err as IntegrityError).code).toBe('PSW_ERR_BUNDLE_HASH')
    expect(await readdir(out)).toEqual([])
  })

  it('maps ENOSPC to PSW_ERR_DISK_FULL and removes partial files', async () => {
    const { out } = await outDir()
    const faultHook = (path: string) => {
      if (path === 'd/big')
        throw Object.assign(new Error('ENOSPC: no space left'), { code: 'ENOSPC', syscall: 'write' })
    }
    const err = await extractBundle(pieces(await sample(), 65_536), { dir: out, faultHook }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(StoreError)
    expect((err as StoreError).code).toBe('PSW_ERR_DISK_FULL')
    expect(await readdir(out)).toEqual([])
  })

  it('stops on abort and removes partial files', async () => {
    const controller = new AbortController()
    const { out } = await outDir()
    const faultHook = (path: string) => {
      if (path === 'd') controller.abort(new Error('stop'))
    }
    const p = extractBundle(pieces(await sample(), 1024), { dir: out, faultHook, signal: controller.signal })
    await expect(p).rejects.toThrow('stop')
    expect(await readdir(out)).toEqual([])
  })

  it('refuses a non-empty extraction directory', async () => {
    const { out } = await outDir()
    await writeFile(join(out, 'x'), 'x')
    expect(await codeOf(extractBundle(pieces(await sample(), 512), { dir: out }))).toBe('PSW_ERR_INVALID_ARGUMENT')
  })

  it('parses correctly whatever the chunking (1..7 byte pieces)', async () => {
    const bytes = await packBundle([good, dirEntry('payload/d'), fileEntry('payload/d/f', Buffer.alloc(3000, 9))])
    for (const size of [1, 3, 7, 511, 513]) {
      const scan = await scanBundle(pieces(bytes, size))
      expect(scan.entries.map((e) => e.path)).toEqual(['first.txt', 'd', 'd/f'])
    }
  })
})

describe('round trip with writeBundle', () => {
  async function makeTree(dir: string): Promise<void> {
    await mkdir(join(dir, 'bin'), { recursive: true })
    await mkdir(join(dir, 'share/doc/ünïcode'), { recursive: true })
    await mkdir(join(dir, 'empty-dir'))
    await writeFile(join(dir, 'bin/tool'), '#!/bin/sh\necho hi\n', { mode: 0o4755 })
    await writeFile(join(dir, 'share/doc/ünïcode/readme.md'), '# hello\n')
    await writeFile(join(dir, 'empty'), '')
    await writeFile(join(dir, `${'long-name-'.repeat(20)}.bin`), Buffer.alloc(1_500_000, 0xab))
    await writeFile(
      join(dir, 'share/random.bin'),
      Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 31) % 256)),
    )
  }

  it('scan lists, extract reproduces identical bytes and normalised modes', async () => {
    const src = join(root, 'src')
    await makeTree(src)
    const out = join(root, 'b.tar')
    const written = await writeBundle({ source: src, name: 'demo', version: '2.0', out })
    expect(written).toMatchObject({ files: 5, unpackedSize: 1_500_000 + 70_000 + 18 + 8 })
    expect((await stat(out)).size).toBe(written.size)

    const scan = await scanBundle(createReadStream(out))
    expect(scan.meta).toEqual({
      format: 'patchswarm.bundle/1',
      name: 'demo',
      version: '2.0',
      files: 5,
      unpackedSize: written.unpackedSize,
    })
    expect(scan.entries.map((e) => `${e.type[0]} ${e.path}`)).toEqual([
      'd bin',
      'f bin/tool',
      'f empty',
      'd empty-dir',
      `f ${'long-name-'.repeat(20)}.bin`,
      'd share',
      'd share/doc',
      'd share/doc/ünïcode',
      'f share/doc/ünïcode/readme.md',
      'f share/random.bin',
    ])
    const dest = join(root, 'dest')
    const result = await extractBundle(createReadStream(out), { dir: dest, plan: scan })
    for (const e of result.entries) {
      const s = await stat(join(dest, e.path))
      expect(s.mode & 0o7777, e.path).toBe(e.mode)
      if (e.type === 'file')
        expect((await readFile(join(dest, e.path))).equals(await readFile(join(src, e.path)))).toBe(true)
    }
    expect((await stat(join(dest, 'bin/tool'))).mode & 0o7777).toBe(0o755) // setuid stripped
  })
})
