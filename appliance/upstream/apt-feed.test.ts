import { createHash } from 'node:crypto'
import { gzipSync } from 'node:zlib'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { ManualClock } from '../../shared/clock.ts'
import { isPswError } from '../../shared/errors.ts'
import { AptFeed, type AptFeedConfig, type AptFeedDeps } from './apt-feed.ts'
import {
  buildTestAptRepo,
  fetchIndexForTests,
  missingAptFixtureTools,
  serveTestRepo,
  type TestAptRepo,
  type TestRepoServer,
} from './apt-test-repo.ts'

const missing = missingAptFixtureTools()
const SKIP = missing.length > 0 && !process.env.CI
if (SKIP) {
  console.warn(
    `apt-feed.test.ts: skipping the real-repository tests, missing ${missing.join(', ')} ` +
      '(apt-get install dpkg-dev apt-utils gnupg); in CI they are required',
  )
}

const DAY = 24 * 3_600_000
const amd64 = 'main/binary-amd64'

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p
  } catch (err) {
    return isPswError(err) ? err.code : `not a PswError: ${String(err)}`
  }
  return undefined
}

describe.skipIf(SKIP)('AptFeed against a real signed APT repository', () => {
  let repo: TestAptRepo
  let server: TestRepoServer
  let clock: ManualClock

  beforeAll(async () => {
    if (missing.length > 0) throw new Error(`CI lacks ${missing.join(', ')} (apt-get install dpkg-dev apt-utils gnupg)`)
    repo = await buildTestAptRepo()
    server = await serveTestRepo(repo.dir)
  })

  afterAll(async () => {
    await server?.close()
    await repo?.cleanup()
  })

  afterEach(() => {
    server.overrides.clear()
    server.requests.length = 0
  })

  function feed(config: Partial<AptFeedConfig> = {}, deps: Partial<AptFeedDeps> = {}): AptFeed {
    clock = new ManualClock(Date.now())
    return new AptFeed(
      {
        id: 'test-apt',
        kind: 'apt',
        baseUrl: `${server.baseUrl}/`,
        suite: repo.suite,
        components: ['main'],
        architectures: ['amd64', 'arm64'],
        keyring: [repo.keys.trusted.armored],
        ...config,
      },
      { fetchIndex: fetchIndexForTests, clock, ...deps },
    )
  }

  it('lists every package with the size and SHA-256 of the real .deb files', async () => {
    const listing = await feed({ classification: 'security', severity: 'high' }).list()

    const expected = repo.debs.map((d) => `${d.package}_${d.version}_${d.arch}`).sort()
    expect(listing.artifacts.map((a) => a.key).sort()).toEqual(expected)
    for (const deb of repo.debs) {
      const a = listing.artifacts.find((x) => x.key === `${deb.package}_${deb.version}_${deb.arch}`)!
      expect(a).toMatchObject({
        feedId: 'test-apt',
        source: { kind: 'http', url: `${server.baseUrl}/${deb.filename}` },
        size: deb.size,
        sha256: deb.sha256,
        name: deb.package,
        version: deb.version,
        vendor: 'PSW-Test',
        product: deb.package,
        classification: 'security',
        severity: 'high',
        description: `${deb.package} for the APT feed tests`,
        os: 'linux',
        arch: { amd64: 'x64', arm64: 'arm64', all: 'any' }[deb.arch],
        installer: { type: 'dpkg', package: deb.package },
        rollback: { type: 'dpkg-previous' },
        supersedes: [],
        requires: [],
      })
      // The URL serves exactly the bytes the listing promises.
      const bytes = Buffer.from(await (await fetch(a.source.kind === 'http' ? a.source.url : '')).arrayBuffer())
      expect(bytes.byteLength).toBe(a.size)
      expect(createHash('sha256').update(bytes).digest('hex')).toBe(a.sha256)
    }
    expect(listing.skipped.map((s) => [s.key, s.code])).toEqual([
      ['psw-nosha_1.0_arm64', 'PSW_ERR_FEED_INVALID'],
      ['psw-evil_1.0_arm64', 'PSW_ERR_FEED_INVALID'],
    ])
    expect(listing.release).toMatchObject({
      suite: 'stable',
      codename: 'psw',
      origin: 'PSW-Test',
      signers: [repo.keys.trusted.fingerprint],
    })
    expect(Math.abs(listing.release.date - Date.now())).toBeLessThan(DAY)
    // .gz preferred; the arch-all package appears in both indexes but once in the listing.
    expect(server.requests.filter((r) => r.startsWith('dists/'))).toEqual([
      'dists/stable/InRelease',
      `dists/stable/${amd64}/Packages.gz`,
      'dists/stable/main/binary-arm64/Packages.gz',
    ])
  })

  it('offers only allow-listed packages and reports allow-listed names it cannot find', async () => {
    const listing = await feed({ packages: ['hello-psw', 'no-such-package'] }).list()
    expect(listing.artifacts.map((a) => a.key)).toEqual(['hello-psw_1.0-1_amd64', 'hello-psw_1.1-1_amd64'])
    expect(listing.skipped).toEqual([
      { key: 'no-such-package', code: 'PSW_ERR_NOT_FOUND', message: expect.any(String) },
    ])
  })

  it('refuses more artifacts than maxArtifacts rather than cutting the list', async () => {
    expect(await codeOf(feed({ maxArtifacts: 3 }).list())).toBe('PSW_ERR_TOO_LARGE')
  })

  it('falls back to Packages.xz, then to the plain Packages', async () => {
    server.overrides.set(`dists/stable/${amd64}/Packages.gz`, null)
    const listing = await feed({ architectures: ['amd64'] }).list()
    expect(listing.artifacts).toHaveLength(3)
    expect(server.requests.at(-1)).toMatch(/Packages\.xz$|Packages$/)
    const noXz = await feed({ architectures: ['amd64'] }, { xzPath: null }).list()
    expect(noXz.artifacts).toHaveLength(3)
    expect(server.requests.at(-1)).toBe(`dists/stable/${amd64}/Packages`)
  })

  it('refuses a tampered Packages index (PSW_ERR_FEED_INDEX_HASH)', async () => {
    const forged = Buffer.from(gzipSync(repo.debs.map((d) => `Package: ${d.package}\n`).join('\n')))
    server.overrides.set(`dists/stable/${amd64}/Packages.gz`, forged)
    expect(await codeOf(feed().list())).toBe('PSW_ERR_FEED_INDEX_HASH')
  })

  it('refuses an InRelease edited after signing (PSW_ERR_FEED_SIGNATURE)', async () => {
    const text = repo.inRelease.toString()
    const edited = text.replace('Origin: PSW-Test', 'Origin: PSW-Evil')
    expect(edited).not.toBe(text)
    server.overrides.set('dists/stable/InRelease', Buffer.from(edited))
    expect(await codeOf(feed().list())).toBe('PSW_ERR_FEED_SIGNATURE')
  })

  it('refuses an InRelease signed by a key outside the keyring', async () => {
    server.overrides.set('dists/stable/InRelease', repo.clearsign(repo.release, ['stranger']))
    expect(await codeOf(feed().list())).toBe('PSW_ERR_FEED_SIGNATURE')
  })

  it('accepts extra signatures by other keys next to a keyring one (as Debian signs)', async () => {
    server.overrides.set('dists/stable/InRelease', repo.clearsign(repo.release, ['stranger', 'trusted']))
    const listing = await feed().list()
    expect(listing.release.signers).toEqual([repo.keys.trusted.fingerprint])
  })

  it('refuses a signing key that has expired since (PSW_ERR_FEED_SIGNATURE)', async () => {
    server.overrides.set('dists/stable/InRelease', repo.clearsign(repo.release, ['expiring']))
    const f = feed({ keyring: [repo.keys.trusted.armored, repo.keys.expiring.armored] })
    expect((await f.list()).release.signers).toEqual([repo.keys.expiring.fingerprint])
    clock.advance(3 * DAY)
    expect(await codeOf(f.list())).toBe('PSW_ERR_FEED_SIGNATURE')
  })

  it('refuses a SHA-1 signature', async () => {
    server.overrides.set('dists/stable/InRelease', repo.clearsign(repo.release, ['trusted'], 'SHA1'))
    expect(await codeOf(feed().list())).toBe('PSW_ERR_FEED_SIGNATURE')
  })

  it('refuses a Release past its Valid-Until (PSW_ERR_FEED_EXPIRED)', async () => {
    server.overrides.set('dists/stable/InRelease', repo.clearsign(repo.shortLivedRelease, ['trusted']))
    const f = feed()
    expect((await f.list()).release.validUntil).toBeDefined()
    clock.advance(3_600_000)
    expect(await codeOf(f.list())).toBe('PSW_ERR_FEED_EXPIRED')
  })

  it('refuses a repository with only an unsigned Release', async () => {
    server.overrides.set('dists/stable/InRelease', null)
    expect(await codeOf(feed().list())).toBe('PSW_ERR_FEED_FETCH')
    expect(server.requests).toEqual(['dists/stable/InRelease'])
    server.overrides.set('dists/stable/InRelease', repo.release)
    expect(await codeOf(feed().list())).toBe('PSW_ERR_FEED_SIGNATURE')
  })

  it('refuses a Release older than the last one seen (rollback), accepts the same one', async () => {
    const first = await feed().list()
    const date = first.release.date
    expect((await feed({}, { lastSeenReleaseDate: () => date }).list()).release.date).toBe(date)
    expect(await codeOf(feed({}, { lastSeenReleaseDate: async () => date + 1000 }).list())).toBe(
      'PSW_ERR_METADATA_ROLLBACK',
    )
  })

  it('refuses a validly signed Release of another suite served in its place', async () => {
    expect(await codeOf(feed({ suite: 'psw' }).list())).toBe('PSW_ERR_FEED_FETCH') // no dists/psw
    const other = repo.release
      .toString()
      .replace('Suite: stable', 'Suite: oldstable')
      .replace('Codename: psw', 'Codename: old')
    server.overrides.set('dists/stable/InRelease', repo.clearsign(Buffer.from(other), ['trusted']))
    expect(await codeOf(feed().list())).toBe('PSW_ERR_FEED_INVALID')
  })

  it('reports a configured index the Release does not list, and keeps the rest', async () => {
    const listing = await feed({ components: ['main', 'contrib'], architectures: ['amd64'] }).list()
    expect(listing.artifacts).toHaveLength(3)
    expect(listing.skipped).toEqual([
      { key: 'contrib/binary-amd64', code: 'PSW_ERR_FEED_INVALID', message: expect.any(String) },
    ])
  })
})

describe('AptFeed configuration', () => {
  const base = {
    id: 'x',
    kind: 'apt',
    baseUrl: 'https://deb.example.org/debian',
    suite: 'bookworm-security',
    components: ['main'],
    architectures: ['amd64'],
    keyring: ['-----BEGIN PGP PUBLIC KEY BLOCK-----'],
  }
  const deps = { fetchIndex: fetchIndexForTests, clock: new ManualClock() }
  const make = (c: Record<string, unknown>) => () => new AptFeed({ ...base, ...c }, deps)

  it('accepts a sane configuration', () => {
    const f = make({})()
    expect([f.id, f.kind]).toEqual(['x', 'apt'])
  })

  it.each([
    [{ baseUrl: 'ftp://deb.example.org/debian' }, 'PSW_ERR_SCHEMA'],
    [{ baseUrl: 'https://user:pw@deb.example.org/debian' }, 'PSW_ERR_INVALID_ARGUMENT'],
    [{ suite: '../etc' }, 'PSW_ERR_SCHEMA'],
    [{ suite: 'stable/../../x' }, 'PSW_ERR_SCHEMA'],
    [{ components: [] }, 'PSW_ERR_SCHEMA'],
    [{ architectures: ['i386'] }, 'PSW_ERR_SCHEMA'],
    [{ keyring: [] }, 'PSW_ERR_SCHEMA'],
    [{ packages: ['Not_A_Package'] }, 'PSW_ERR_SCHEMA'],
    [{ unknown: true }, 'PSW_ERR_SCHEMA'],
  ])('refuses %j', (c, code) => {
    expect(make(c)).toThrow(expect.objectContaining({ code }))
  })

  it('refuses a keyring that is not a public key when listing', async () => {
    expect(await codeOf(make({})().list())).toBe('PSW_ERR_KEY_INVALID')
  })
})
