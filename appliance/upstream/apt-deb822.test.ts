import { describe, expect, it } from 'vitest'
import { hasCode, isPswError } from '../../shared/errors.ts'
import { seededRandom } from '../../shared/swarm/chunk-picker.ts'
import { deb822Field, deb822Lines, iterateDeb822, parseDeb822 } from './apt-deb822.ts'

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn()
  } catch (err) {
    return isPswError(err) ? err.code : `not a PswError: ${String(err)}`
  }
  return undefined
}

const RELEASE = `Origin: Debian
Label: Debian
Suite: stable
Date: Sat, 10 Jun 2023 08:54:51 UTC
SHA256:
 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef 1234 main/binary-amd64/Packages
 fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210  567 main/binary-amd64/Packages.gz
`

describe('parseDeb822', () => {
  it('parses a Release stanza with a multi-line field, names case-insensitive', () => {
    const [stanza, ...rest] = parseDeb822(RELEASE)
    expect(rest).toEqual([])
    expect(deb822Field(stanza!, 'origin')).toBe('Debian')
    expect(deb822Field(stanza!, 'DATE')).toBe('Sat, 10 Jun 2023 08:54:51 UTC')
    const sha = deb822Field(stanza!, 'SHA256')!
    expect(sha.startsWith('\n')).toBe(true)
    expect(deb822Lines(sha)).toEqual([
      '0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef 1234 main/binary-amd64/Packages',
      'fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210  567 main/binary-amd64/Packages.gz',
    ])
  })

  it('splits stanzas on blank and whitespace-only lines, accepts CRLF and no final newline', () => {
    const text = '\n\nPackage: a\r\nVersion: 1\r\n\r\n \t\nPackage: b\n\n\n\nPackage: c'
    const stanzas = parseDeb822(text)
    expect(stanzas.map((s) => s.get('package'))).toEqual(['a', 'b', 'c'])
    expect(stanzas[0]!.get('version')).toBe('1')
  })

  it('keeps continuation lines minus one leading space, trailing whitespace dropped', () => {
    const text = 'Package: a\nDescription: short  \n first line\n .\n   indented\n\tfrom tab\nX:y\n'
    const [s] = parseDeb822(text)
    expect(s!.get('description')).toBe('short\nfirst line\n.\n  indented\nfrom tab')
    expect(s!.get('x')).toBe('y')
  })

  it('accepts bytes and an empty document', () => {
    expect(parseDeb822(new TextEncoder().encode('A: é\n'))[0]!.get('a')).toBe('é')
    expect(parseDeb822('')).toEqual([])
    expect(parseDeb822('\n \n\n')).toEqual([])
  })

  it.each([
    [' continuation first\n', 'continuation outside a field'],
    ['Package a\n', 'no colon'],
    [': value\n', 'empty name'],
    ['Package: a\npackage: b\n', 'duplicate (case-insensitive)'],
    ['#Comment: x\n', 'name starting with #'],
    ['-Field: x\n', 'name starting with -'],
    ['Bad Name: x\n', 'space in name'],
    ['Package: a\0\n', 'NUL'],
  ])('refuses malformed input: %j (%s)', (text) => {
    expect(codeOf(() => parseDeb822(text))).toBe('PSW_ERR_FEED_INVALID')
  })

  it('reports the line of a problem', () => {
    try {
      parseDeb822('A: 1\n\nB: 2\nbroken\n')
      expect.unreachable()
    } catch (err) {
      expect(hasCode(err, 'PSW_ERR_FEED_INVALID')).toBe(true)
      expect((err as { details: { line: number } }).details.line).toBe(4)
    }
  })

  it('enforces its limits with PSW_ERR_TOO_LARGE', () => {
    expect(codeOf(() => parseDeb822('A: 1\n', { maxBytes: 4 }))).toBe('PSW_ERR_TOO_LARGE')
    expect(codeOf(() => parseDeb822('A: 1\n\nA: 2\n\nA: 3', { maxStanzas: 2 }))).toBe('PSW_ERR_TOO_LARGE')
    expect(codeOf(() => parseDeb822('A: 1\n\nA: 2\n', { maxStanzas: 2 }))).toBeUndefined()
    expect(codeOf(() => parseDeb822('A: 1\nB: 2\nC: 3\n', { maxFieldsPerStanza: 2 }))).toBe('PSW_ERR_TOO_LARGE')
    expect(codeOf(() => parseDeb822('A: 12345\n', { maxFieldLength: 4 }))).toBe('PSW_ERR_TOO_LARGE')
    expect(codeOf(() => parseDeb822('A: 12\n 34\n', { maxFieldLength: 4 }))).toBe('PSW_ERR_TOO_LARGE')
    expect(codeOf(() => parseDeb822('A: 1\n 2\n', { maxFieldLength: 4 }))).toBeUndefined()
  })

  it('yields stanzas lazily', () => {
    const it = iterateDeb822('A: 1\n\nbroken\n')
    expect(it.next().value?.get('a')).toBe('1')
    expect(() => it.next()).toThrow()
  })
})

describe('parseDeb822 properties (seeded)', () => {
  const NAME_FIRST = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'
  const NAME_REST = `${NAME_FIRST}-_.+!"$%&'()*,/;<=>?@[]^\`{|}~`
  const VALUE = `${NAME_REST}:# \téü漢`

  function gen(r: () => number) {
    const pick = (s: string): string => s[Math.floor(r() * s.length)]!
    const int = (n: number): number => Math.floor(r() * n)
    const word = (first: string, rest: string, max: number): string => {
      let w = pick(first)
      for (let i = int(max); i > 0; i--) w += pick(rest)
      return w
    }
    // A value line: no leading/trailing whitespace (the parser trims those), maybe empty.
    const line = (allowEmpty: boolean): string => {
      if (allowEmpty && r() < 0.2) return ''
      const w = word(NAME_REST, VALUE, 30).trim()
      return w === '' ? 'x' : w
    }
    const stanzas: Map<string, string>[] = []
    let text = r() < 0.3 ? '\n' : ''
    const eol = r() < 0.2 ? '\r\n' : '\n'
    for (let s = 1 + int(4); s > 0; s--) {
      const fields = new Map<string, string>()
      let chunk = ''
      for (let f = 1 + int(6); f > 0; f--) {
        const name = word(NAME_FIRST, NAME_REST, 10)
        if (fields.has(name.toLowerCase())) continue
        const first = line(true)
        const cont = Array.from({ length: int(4) }, () => (r() < 0.2 ? ' ' : '') + line(false))
        fields.set(name.toLowerCase(), [first, ...cont].join('\n'))
        chunk += `${name}:${r() < 0.8 ? ' ' : ''}${first}${eol}`
        for (const c of cont) chunk += `${r() < 0.8 ? ' ' : '\t'}${c}${eol}`
      }
      stanzas.push(fields)
      text += chunk + (r() < 0.2 ? ` \t${eol}` : eol) + (r() < 0.2 ? eol : '')
    }
    return { text, stanzas }
  }

  it('round-trips generated documents', () => {
    for (let seed = 1; seed <= 400; seed++) {
      const { text, stanzas } = gen(seededRandom(seed))
      const parsed = parseDeb822(text).map((s) => new Map(s))
      expect(parsed, `seed ${seed}`).toEqual(stanzas)
    }
  })

  it('mutated documents parse or fail with a stable code, never anything else', () => {
    const noise = ['\n', ' ', '\t', ':', '#', '-', '\0', '\r', 'é', 'A', '\n\n', ' x']
    for (let seed = 1; seed <= 400; seed++) {
      const r = seededRandom(seed * 7919)
      let { text } = gen(r)
      for (let m = 1 + Math.floor(r() * 4); m > 0; m--) {
        const at = Math.floor(r() * (text.length + 1))
        const what = r()
        if (what < 0.4) text = text.slice(0, at) + noise[Math.floor(r() * noise.length)] + text.slice(at)
        else if (what < 0.7) text = text.slice(0, at) + text.slice(at + 1 + Math.floor(r() * 5))
        else text = text.slice(0, at) + text.slice(Math.floor(r() * text.length))
      }
      const code = codeOf(() => parseDeb822(text, { maxFieldLength: 40, maxStanzas: 4 }))
      expect([undefined, 'PSW_ERR_FEED_INVALID', 'PSW_ERR_TOO_LARGE'], `seed ${seed}`).toContain(code)
    }
  })
})
