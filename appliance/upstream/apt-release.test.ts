import { describe, expect, it } from 'vitest'
import { isPswError } from '../../shared/errors.ts'
import { type AptRelease, checkRelease, parseAptDate, parseRelease, type ReleaseCheckOptions } from './apt-release.ts'

const H1 = 'a'.repeat(64)
const H2 = 'B'.repeat(64)

function release(extra = '', sha = ` ${H1} 100 main/binary-amd64/Packages\n ${H2} 40 main/binary-amd64/Packages.gz\n`) {
  return `Origin: Example
Suite: stable
Codename: bookworm
Date: Sat, 10 Jun 2023 08:54:51 UTC
Components: main contrib
Architectures: amd64 arm64
${extra}MD5Sum:
 ${'c'.repeat(32)} 100 main/binary-amd64/Packages
SHA256:
${sha}`
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn()
  } catch (err) {
    return isPswError(err) ? err.code : `not a PswError: ${String(err)}`
  }
  return undefined
}

describe('parseAptDate', () => {
  it.each([
    ['Sat, 10 Jun 2023 08:54:51 UTC', Date.UTC(2023, 5, 10, 8, 54, 51)],
    ['Sat, 10 Jun 2023 08:54:51 GMT', Date.UTC(2023, 5, 10, 8, 54, 51)],
    ['10 Jun 2023 08:54:51 UTC', Date.UTC(2023, 5, 10, 8, 54, 51)],
    ['Sat, 10 Jun 2023 10:54:51 +0200', Date.UTC(2023, 5, 10, 8, 54, 51)],
    ['Fri, 9 Jun 2023 23:54:51 -0900', Date.UTC(2023, 5, 10, 8, 54, 51)],
    ['Sat, 10 Jun 2023 23:59:60 UTC', Date.UTC(2023, 5, 10, 23, 59, 59)],
  ])('parses %s', (text, ms) => {
    expect(parseAptDate(text)).toBe(ms)
  })

  it.each([
    '2023-06-10T08:54:51Z',
    'Sat, 31 Feb 2023 08:54:51 UTC',
    'Sat, 10 Foo 2023 08:54:51 UTC',
    'Sat, 10 Jun 2023 24:00:00 UTC',
    'Sat, 10 Jun 2023 08:54:51',
    'Sat, 10 Jun 2023 08:54:51 CEST',
    'yesterday',
  ])('refuses %s', (text) => {
    expect(parseAptDate(text)).toBeUndefined()
  })
})

describe('parseRelease', () => {
  it('reads identity, dates and the SHA256 section only', () => {
    const r = parseRelease(release('Valid-Until: Sat, 17 Jun 2023 08:54:51 UTC\nAcquire-By-Hash: yes\n'))
    expect(r).toMatchObject({
      origin: 'Example',
      suite: 'stable',
      codename: 'bookworm',
      date: Date.UTC(2023, 5, 10, 8, 54, 51),
      validUntil: Date.UTC(2023, 5, 17, 8, 54, 51),
      acquireByHash: true,
      components: ['main', 'contrib'],
      architectures: ['amd64', 'arm64'],
    })
    expect([...r.files.values()]).toEqual([
      { path: 'main/binary-amd64/Packages', size: 100, sha256: H1 },
      { path: 'main/binary-amd64/Packages.gz', size: 40, sha256: H2.toLowerCase() },
    ])
  })

  it.each([
    ['no SHA256 section', release().replace(/SHA256:[\s\S]*$/, '')],
    ['no Date', release().replace(/^Date:.*\n/m, '')],
    ['bad Date', release().replace(/^Date:.*$/m, 'Date: soon')],
    ['bad Valid-Until', release('Valid-Until: never\n')],
    ['malformed hash line', release('', ` ${H1} 100\n`)],
    ['short hash', release('', ` ${'a'.repeat(63)} 100 main/x\n`)],
    ['absolute path', release('', ` ${H1} 100 /etc/passwd\n`)],
    ['dot-dot path', release('', ` ${H1} 100 main/../../x\n`)],
    ['conflicting duplicate', release('', ` ${H1} 100 main/x\n ${H2} 100 main/x\n`)],
    ['two stanzas', `${release()}\nOrigin: other\n`],
    ['empty', ''],
  ])('refuses %s', (_why, text) => {
    expect(codeOf(() => parseRelease(text))).toBe('PSW_ERR_FEED_INVALID')
  })
})

describe('checkRelease', () => {
  const base = (): AptRelease => parseRelease(release())
  const date = Date.UTC(2023, 5, 10, 8, 54, 51)
  const opts = (o: Partial<ReleaseCheckOptions> = {}): ReleaseCheckOptions => ({
    now: date + 1000,
    suite: 'stable',
    maxFutureSkewMs: 60_000,
    requireValidUntil: false,
    ...o,
  })
  const check = (r: AptRelease, o: Partial<ReleaseCheckOptions> = {}) => codeOf(() => checkRelease(r, opts(o)))

  it('accepts the suite or the codename, refuses another suite', () => {
    expect(check(base())).toBeUndefined()
    expect(check(base(), { suite: 'bookworm' })).toBeUndefined()
    expect(check(base(), { suite: 'oldstable' })).toBe('PSW_ERR_FEED_INVALID')
    const anonymous = { ...base(), suite: undefined, codename: undefined }
    expect(check(anonymous, { suite: 'anything' })).toBeUndefined()
    const codenameOnly = { ...base(), suite: undefined }
    expect(check(codenameOnly, { suite: 'stable' })).toBe('PSW_ERR_FEED_INVALID')
  })

  it('refuses a Release past Valid-Until, and one without when required', () => {
    const r = { ...base(), validUntil: date + 3_600_000 }
    expect(check(r, { now: date + 3_600_000 })).toBeUndefined()
    expect(check(r, { now: date + 3_600_001 })).toBe('PSW_ERR_FEED_EXPIRED')
    expect(check(base(), { requireValidUntil: true })).toBe('PSW_ERR_FEED_INVALID')
    expect(check(r, { requireValidUntil: true })).toBeUndefined()
  })

  it('refuses a Date in the future beyond the skew', () => {
    expect(check(base(), { now: date - 60_000 })).toBeUndefined()
    expect(check(base(), { now: date - 60_001 })).toBe('PSW_ERR_METADATA_NOT_YET_VALID')
  })

  it('refuses a Date older than the last one seen (rollback), accepts the same one', () => {
    expect(check(base(), { lastSeenDate: date })).toBeUndefined()
    expect(check(base(), { lastSeenDate: date - 1 })).toBeUndefined()
    expect(check(base(), { lastSeenDate: date + 1 })).toBe('PSW_ERR_METADATA_ROLLBACK')
  })
})
