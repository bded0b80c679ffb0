import { posix } from 'node:path'
import { describe, expect, it } from 'vitest'
import { BundleGuardError, type ErrorCode, ValidationError } from '../errors.ts'
import {
  BUNDLE_FORMAT,
  BundleGuard,
  checkHeader,
  DEFAULT_TAR_LIMITS,
  normalizeMode,
  normalizeTarPath,
  parseBundleMeta,
  resolveLimits,
  type TarHeader,
  type TarLimits,
} from './tar-guard.ts'

const limits: TarLimits = { ...DEFAULT_TAR_LIMITS }
const codeOf = (fn: () => unknown): ErrorCode | 'none' => {
  try {
    fn()
    return 'none'
  } catch (err) {
    expect(err).toBeInstanceOf(BundleGuardError)
    return (err as BundleGuardError).code
  }
}
const meta = (files: number, unpackedSize: number) => ({
  format: BUNDLE_FORMAT,
  name: 'demo',
  version: '1.0.0',
  files,
  unpackedSize,
})
const file = (name: string, size = 1, mode = 0o644): TarHeader => ({ name, type: 'file', size, mode })
const dir = (name: string): TarHeader => ({ name: `${name}/`, type: 'directory', size: 0, mode: 0o755 })

/** A guard that has already accepted bundle.json (declaring `files`/`size`) and payload/. */
function started(files = 10, size = 100, extra: Partial<TarLimits> = {}): BundleGuard {
  const guard = new BundleGuard(extra)
  expect(guard.accept(file('bundle.json', 50))).toEqual({ kind: 'meta', size: 50 })
  guard.setMeta(parseBundleMeta(Buffer.from(JSON.stringify(meta(files, size))), guard.limits))
  expect(guard.accept(dir('payload'))).toEqual({ kind: 'root' })
  return guard
}

describe('normalizeTarPath', () => {
  it('accepts ordinary relative paths and strips one trailing slash of a directory', () => {
    expect(normalizeTarPath('payload/a/b.txt', limits, false)).toBe('payload/a/b.txt')
    expect(normalizeTarPath('payload/dir/', limits, true)).toBe('payload/dir')
    expect(normalizeTarPath('payload/ünï cödé/.hidden', limits, false)).toBe('payload/ünï cödé/.hidden')
  })

  const badPaths: Array<[string, ErrorCode]> = [
    ['../x', 'PSW_ERR_TAR_PATH'],
    ['payload/../x', 'PSW_ERR_TAR_PATH'],
    ['payload/a/../../x', 'PSW_ERR_TAR_PATH'],
    ['payload/..', 'PSW_ERR_TAR_PATH'],
    ['/etc/passwd', 'PSW_ERR_TAR_PATH'],
    ['//server/share', 'PSW_ERR_TAR_PATH'],
    ['payload\\x', 'PSW_ERR_TAR_PATH'],
    ['payload/..\\..\\x', 'PSW_ERR_TAR_PATH'],
    ['C:/x', 'PSW_ERR_TAR_PATH'],
    ['c:x', 'PSW_ERR_TAR_PATH'],
    ['payload/C:/x', 'PSW_ERR_TAR_PATH'],
    ['payload/file:stream', 'PSW_ERR_TAR_PATH'],
    ['payload/a\u0000b', 'PSW_ERR_TAR_PATH'],
    ['payload/a\nb', 'PSW_ERR_TAR_PATH'],
    ['payload/a\u007fb', 'PSW_ERR_TAR_PATH'],
    ['payload/bad\ufffdutf8', 'PSW_ERR_TAR_PATH'],
    ['payload//x', 'PSW_ERR_TAR_PATH'],
    ['payload/./x', 'PSW_ERR_TAR_PATH'],
    ['./payload/x', 'PSW_ERR_TAR_PATH'],
    ['payload/x/', 'PSW_ERR_TAR_PATH'], // a file with a trailing slash
    ['payload/trailing.', 'PSW_ERR_TAR_PATH'],
    ['payload/trailing ', 'PSW_ERR_TAR_PATH'],
    ['payload/...', 'PSW_ERR_TAR_PATH'],
    ['', 'PSW_ERR_TAR_PATH'],
    [`payload/${'a/'.repeat(64)}f`, 'PSW_ERR_TAR_LIMIT'],
    [`payload/${'a/'.repeat(5000)}f`, 'PSW_ERR_TAR_LIMIT'],
    [`payload/${'x'.repeat(256)}`, 'PSW_ERR_TAR_LIMIT'],
    [`payload/${'é'.repeat(128)}`, 'PSW_ERR_TAR_LIMIT'], // 256 bytes in UTF-8
    [`payload/${'abcdefgh/'.repeat(120)}f`, 'PSW_ERR_TAR_LIMIT'], // > 1024 bytes
  ]
  it.each(badPaths)('rejects %j with %s', (path, code) => {
    expect(codeOf(() => normalizeTarPath(path, limits, false))).toBe(code)
  })

  it('rejects every traversal spelling in a generated family of paths', () => {
    const prefixes = ['', 'payload/', 'payload/a/', './', '/']
    const evil = ['..', '../..', '.', '', 'C:', 'c:\\', '\\', 'a\\..', '\u0000', '..\u0000', 'x:y']
    const suffixes = ['', '/x', '/../x', '\\x']
    let n = 0
    for (const p of prefixes) {
      for (const e of evil) {
        for (const s of suffixes) {
          const path = `${p}${e}${s}`
          if (path === 'payload/a/' || path === 'payload/') continue
          expect(
            codeOf(() => normalizeTarPath(path, limits, false)),
            JSON.stringify(path),
          ).toBe('PSW_ERR_TAR_PATH')
          n++
        }
      }
    }
    expect(n).toBeGreaterThan(200)
  })

  it('property: whatever it accepts is a canonical relative path that cannot escape', () => {
    const alphabet = ['a', 'b', '.', '/', '\\', ':', '\u0000', ' ', 'C', 'é', '~']
    let seed = 42
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31
      return seed % n
    }
    let accepted = 0
    for (let i = 0; i < 20_000; i++) {
      const len = 1 + rand(12)
      let s = ''
      for (let j = 0; j < len; j++) s += alphabet[rand(alphabet.length)]
      let out: string
      try {
        out = normalizeTarPath(s, limits, rand(2) === 0)
      } catch (err) {
        expect(err).toBeInstanceOf(BundleGuardError)
        continue
      }
      accepted++
      expect(posix.normalize(out)).toBe(out)
      expect(posix.isAbsolute(out)).toBe(false)
      expect(out.split('/')).not.toContain('..')
      for (const c of ['\\', ':', '\u0000']) expect(out).not.toContain(c)
      expect(posix.resolve('/root', out).startsWith('/root/')).toBe(true)
    }
    expect(accepted).toBeGreaterThan(100)
  })
})

describe('checkHeader', () => {
  it('rejects symlinks and hardlinks with PSW_ERR_TAR_LINK', () => {
    expect(codeOf(() => checkHeader({ name: 'payload/l', type: 'symlink', linkname: '/' }, limits))).toBe(
      'PSW_ERR_TAR_LINK',
    )
    expect(codeOf(() => checkHeader({ name: 'payload/l', type: 'link', linkname: 'payload/a' }, limits))).toBe(
      'PSW_ERR_TAR_LINK',
    )
    expect(codeOf(() => checkHeader({ ...file('payload/f'), linkname: '/etc/passwd' }, limits))).toBe(
      'PSW_ERR_TAR_LINK',
    )
  })

  it.each([
    'character-device',
    'block-device',
    'fifo',
    'contiguous-file',
    'pax-header',
    'gnu-long-path',
    null,
    undefined,
    'x',
  ])('rejects entry type %s with PSW_ERR_TAR_ENTRY_TYPE', (type) => {
    expect(codeOf(() => checkHeader({ name: 'payload/x', type, size: 0 }, limits))).toBe('PSW_ERR_TAR_ENTRY_TYPE')
  })

  it.each([-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53])('rejects size %s', (size) => {
    expect(codeOf(() => checkHeader(file('payload/f', size), limits))).toBe('PSW_ERR_TAR_INVALID')
  })

  it('rejects a directory with a body', () => {
    expect(codeOf(() => checkHeader({ ...dir('payload/d'), size: 10 }, limits))).toBe('PSW_ERR_TAR_INVALID')
  })

  it('normalises modes: no setuid/setgid/sticky, no group/world write', () => {
    expect(checkHeader(file('payload/f', 1, 0o4755), limits).mode).toBe(0o755)
    expect(checkHeader(file('payload/f', 1, 0o2777), limits).mode).toBe(0o755)
    expect(checkHeader(file('payload/f', 1, 0o1666), limits).mode).toBe(0o644)
    expect(checkHeader(file('payload/f', 1, 0o100), limits).mode).toBe(0o755)
    expect(checkHeader({ ...dir('payload/d'), mode: 0o1777 }, limits).mode).toBe(0o755)
    expect(normalizeMode(undefined, 'file')).toBe(0o644)
  })
})

describe('BundleGuard', () => {
  it('accepts a well-formed sequence and checks the declared totals at the end', () => {
    const guard = started(2, 30)
    expect(guard.accept(dir('payload/bin'))).toEqual({
      kind: 'entry',
      entry: { path: 'bin', type: 'directory', size: 0, mode: 0o755 },
    })
    expect(guard.accept(file('payload/bin/tool', 10, 0o755))).toMatchObject({
      entry: { path: 'bin/tool', mode: 0o755 },
    })
    guard.accept(file('payload/readme', 20))
    expect(guard.finish()?.name).toBe('demo')
  })

  it('requires bundle.json first, then payload/', () => {
    expect(codeOf(() => new BundleGuard().accept(file('payload/x')))).toBe('PSW_ERR_BUNDLE_METADATA')
    expect(codeOf(() => new BundleGuard().accept(dir('bundle.json')))).toBe('PSW_ERR_BUNDLE_METADATA')
    expect(codeOf(() => new BundleGuard().accept(file('bundle.json', 64 * 1024 + 1)))).toBe('PSW_ERR_TAR_LIMIT')
    const g = new BundleGuard()
    g.accept(file('bundle.json'))
    g.setMeta(parseBundleMeta(Buffer.from(JSON.stringify(meta(1, 1))), g.limits))
    expect(codeOf(() => g.accept(file('payload/x')))).toBe('PSW_ERR_TAR_INVALID')
    expect(codeOf(() => started().accept(file('other/x')))).toBe('PSW_ERR_TAR_PATH')
    expect(codeOf(() => started().accept(file('bundle.json')))).toBe('PSW_ERR_TAR_PATH')
    expect(codeOf(() => started().accept(dir('payload')))).toBe('PSW_ERR_TAR_PATH')
    expect(codeOf(() => started().finish())).toBe('PSW_ERR_BUNDLE_METADATA') // declared 10 files, saw none
  })

  it('rejects duplicates, a file used as a directory, and undeclared parents', () => {
    const dup = started()
    dup.accept(file('payload/a'))
    expect(codeOf(() => dup.accept(file('payload/a')))).toBe('PSW_ERR_TAR_PATH')
    expect(codeOf(() => dup.accept(dir('payload/a')))).toBe('PSW_ERR_TAR_PATH')
    const prefix = started()
    prefix.accept(file('payload/a'))
    expect(codeOf(() => prefix.accept(file('payload/a/b')))).toBe('PSW_ERR_TAR_PATH')
    expect(codeOf(() => started().accept(file('payload/missing/b')))).toBe('PSW_ERR_TAR_INVALID')
  })

  it('enforces entry count, declared size, configured size and declared file count', () => {
    const few = started(2, 100, { maxEntries: 4 })
    few.accept(file('payload/1'))
    few.accept(file('payload/2'))
    expect(codeOf(() => few.accept(file('payload/3')))).toBe('PSW_ERR_TAR_LIMIT')
    expect(codeOf(() => started(10, 100).accept(file('payload/big', 101)))).toBe('PSW_ERR_TAR_LIMIT')
    const small = new BundleGuard({ maxUnpackedSize: 50 })
    small.accept(file('bundle.json'))
    const tooBig = Buffer.from(JSON.stringify(meta(1, 51)))
    expect(codeOf(() => parseBundleMeta(tooBig, small.limits))).toBe('PSW_ERR_TAR_LIMIT')
    const count = started(1, 100)
    count.accept(file('payload/1'))
    expect(codeOf(() => count.accept(file('payload/2')))).toBe('PSW_ERR_BUNDLE_METADATA')
    const short = started(1, 100)
    short.accept(file('payload/1', 99))
    expect(codeOf(() => short.finish())).toBe('PSW_ERR_BUNDLE_METADATA')
  })
})

describe('BundleGuard, plain layout (raw content: a vendor tar)', () => {
  const plain = (extra: Partial<TarLimits> = {}) => new BundleGuard(extra, 'plain')

  it('takes every entry as payload, without bundle.json or payload/, and needs no metadata', () => {
    const guard = plain()
    expect(guard.accept(dir('bin'))).toEqual({
      kind: 'entry',
      entry: { path: 'bin', type: 'directory', size: 0, mode: 0o755 },
    })
    expect(guard.accept(file('bin/tool', 10, 0o4755))).toMatchObject({ entry: { path: 'bin/tool', mode: 0o755 } })
    expect(guard.accept(file('bundle.json', 5))).toMatchObject({ entry: { path: 'bundle.json' } })
    expect(guard.accept(dir('payload'))).toMatchObject({ entry: { path: 'payload', type: 'directory' } })
    expect(guard.finish()).toBeUndefined()
  })

  it("drops one leading './' and accepts a './' root entry only first", () => {
    const guard = plain()
    expect(guard.accept({ name: './', type: 'directory', size: 0, mode: 0o755 })).toEqual({ kind: 'root' })
    expect(guard.accept(dir('./usr'))).toMatchObject({ entry: { path: 'usr' } })
    expect(guard.accept(file('./usr/x'))).toMatchObject({ entry: { path: 'usr/x' } })
    expect(codeOf(() => guard.accept(file('usr/x')))).toBe('PSW_ERR_TAR_PATH') // the same path again
    const late = plain()
    late.accept(file('a'))
    expect(codeOf(() => late.accept({ name: './', type: 'directory', size: 0 }))).toBe('PSW_ERR_TAR_PATH')
    expect(codeOf(() => plain().accept({ name: './', type: 'file', size: 0 }))).toBe('PSW_ERR_TAR_PATH')
    expect(codeOf(() => plain().accept({ name: './', type: 'symlink', linkname: '/' }))).toBe('PSW_ERR_TAR_LINK')
    for (const name of ['././x', './../x', './/etc/passwd', '.', '../x', '/etc/passwd', 'a\\..\\x', 'C:/x']) {
      expect(
        codeOf(() => plain().accept(file(name))),
        name,
      ).toBe('PSW_ERR_TAR_PATH')
    }
  })

  it('keeps the other rules: links, special files, duplicates, parents, entries and unpacked size', () => {
    expect(codeOf(() => plain().accept({ name: 'l', type: 'symlink', linkname: '/' }))).toBe('PSW_ERR_TAR_LINK')
    expect(codeOf(() => plain().accept({ name: 'h', type: 'link', linkname: 'a' }))).toBe('PSW_ERR_TAR_LINK')
    expect(codeOf(() => plain().accept({ name: 'null', type: 'character-device' }))).toBe('PSW_ERR_TAR_ENTRY_TYPE')
    expect(codeOf(() => plain().accept(file('missing/x')))).toBe('PSW_ERR_TAR_INVALID')
    const inside = plain()
    inside.accept(file('a'))
    expect(codeOf(() => inside.accept(file('a/b')))).toBe('PSW_ERR_TAR_PATH')
    expect(codeOf(() => inside.accept(dir('a')))).toBe('PSW_ERR_TAR_PATH')
    const few = plain({ maxEntries: 2 })
    few.accept(file('1'))
    few.accept(file('2'))
    expect(codeOf(() => few.accept(file('3')))).toBe('PSW_ERR_TAR_LIMIT')
    const small = plain({ maxUnpackedSize: 100 })
    small.accept(file('1', 60))
    expect(codeOf(() => small.accept(file('2', 41)))).toBe('PSW_ERR_TAR_LIMIT')
  })

  it('refuses an archive without entries', () => {
    expect(codeOf(() => plain().finish())).toBe('PSW_ERR_TAR_INVALID')
    const onlyRoot = plain()
    onlyRoot.accept({ name: './', type: 'directory', size: 0 })
    expect(codeOf(() => onlyRoot.finish())).toBe('PSW_ERR_TAR_INVALID')
  })
})

describe('bundle metadata', () => {
  const parse = (v: unknown) => codeOf(() => parseBundleMeta(Buffer.from(JSON.stringify(v)), limits))
  it('accepts exactly the documented shape', () => {
    expect(parse(meta(1, 2))).toBe('none')
  })
  it.each([
    ['not an object', [1]],
    ['wrong format', { ...meta(1, 2), format: 'patchswarm.bundle/2' }],
    ['extra field', { ...meta(1, 2), extra: true }],
    ['missing field', { format: BUNDLE_FORMAT, name: 'x', version: '1', files: 1 }],
    ['empty name', { ...meta(1, 2), name: '' }],
    ['control char in version', { ...meta(1, 2), version: '1\n2' }],
    ['negative files', meta(-1, 2)],
    ['fractional size', meta(1, 2.5)],
  ])('rejects %s', (_why, value) => {
    expect(parse(value)).toBe('PSW_ERR_BUNDLE_METADATA')
  })
  it('rejects invalid UTF-8 and non-JSON', () => {
    expect(codeOf(() => parseBundleMeta(Buffer.from([0x7b, 0xff, 0x7d]), limits))).toBe('PSW_ERR_BUNDLE_METADATA')
    expect(codeOf(() => parseBundleMeta(Buffer.from('{'), limits))).toBe('PSW_ERR_BUNDLE_METADATA')
  })
})

describe('resolveLimits', () => {
  it('rejects non-positive or fractional limits', () => {
    expect(() => resolveLimits({ maxEntries: 0 })).toThrow(ValidationError)
    expect(() => resolveLimits({ maxDepth: 1.5 })).toThrow(ValidationError)
    expect(resolveLimits({ maxEntries: 5 }).maxEntries).toBe(5)
  })
})
