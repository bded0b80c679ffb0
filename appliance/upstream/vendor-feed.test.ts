import { createHash, generateKeyPairSync } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { ManualClock } from '../../shared/clock.ts'
import { type IndexFetcher, MAX_ARTIFACT_BYTES } from './feed-types.ts'
import { signatureUrl, VendorFeed, type VendorFeedConfig, type VendorFeedDeps } from './vendor-feed.ts'
import {
  entry,
  type FeedServer,
  feedBytes,
  feedDoc,
  makeFeedKey,
  sampleFeedArtifacts,
  startFeedServer,
  T0,
  testFetchIndex,
} from './vendor-feed-test-helpers.ts'

const code = (c: string) => expect.objectContaining({ code: c })

describe('VendorFeed (patchswarm vendor feed over HTTP)', () => {
  let server: FeedServer
  let clock: ManualClock
  const key = makeFeedKey()

  beforeAll(async () => {
    server = await startFeedServer()
  })
  afterAll(() => server.close())
  beforeEach(() => {
    server.files.clear()
    server.requests.length = 0
    clock = new ManualClock(T0 + 3_600_000)
  })

  const publish = (bytes: Uint8Array, signer = key) => {
    server.files.set('/acme/feed.json', bytes)
    server.files.set('/acme/feed.json.sig', `${signer.sign(bytes)}\n`)
  }
  const feed = (over: Partial<VendorFeedConfig> = {}, deps: Partial<VendorFeedDeps> = {}) =>
    new VendorFeed(
      { id: 'acme', kind: 'patchswarm', url: server.url('/acme/feed.json'), publicKeys: [key.publicKeyPem], ...over },
      { fetchIndex: testFetchIndex, clock, ...deps },
    )

  it('lists a signed feed: relative urls resolved against the feed URL, feed vendor as default', async () => {
    const bytes = feedBytes(
      feedDoc([
        entry('a-1'),
        entry('b-1', {
          url: 'https://cdn.example/b.deb',
          vendor: 'Acme Tools',
          kbId: 'KB1',
          emergency: true,
          installer: { type: 'dpkg', package: 'acme-b' },
          rollback: { type: 'dpkg-previous' },
        }),
      ]),
    )
    publish(bytes)
    const listing = await feed().list()
    expect(listing.skipped).toEqual([])
    expect(listing.generated).toBe(new Date(T0).toISOString())
    expect(listing.digest).toBe(createHash('sha256').update(bytes).digest('hex'))
    expect(listing.keyId).toMatch(/^[0-9a-f]{64}$/)
    expect(listing.artifacts.map((a) => [a.key, a.source, a.vendor, a.advisory, a.emergency])).toEqual([
      ['a-1', { kind: 'http', url: server.url('/acme/files/a-1.tar') }, 'Acme Software', undefined, false],
      ['b-1', { kind: 'http', url: 'https://cdn.example/b.deb' }, 'Acme Tools', 'KB1', true],
    ])
    expect(listing.artifacts[0]).toMatchObject({ feedId: 'acme', size: 1000, sha256: 'ab'.repeat(32) })
  })

  it('lists an unsigned feed when no keys are configured (no .sig is fetched)', async () => {
    server.files.set('/acme/feed.json', feedBytes(feedDoc([entry('a-1')])))
    const listing = await feed({ publicKeys: undefined }).list()
    expect(listing.artifacts).toHaveLength(1)
    expect(listing.keyId).toBeUndefined()
    expect(server.requests).not.toContain('/acme/feed.json.sig')
  })

  it('skips and reports bad entries, keeps the others', async () => {
    publish(
      feedBytes(
        feedDoc([
          entry('good-1'),
          entry('bad-sha', { sha256: 'AB'.repeat(32) }),
          entry('ftp', { url: 'ftp://example.com/x.tar' }),
          entry('creds', { url: 'https://user:pw@example.com/x.tar' }),
          entry('good-1', { version: '9.9.9' }),
          'not an object',
          entry('has space'),
          entry('feb-30', { releaseDate: '2026-02-30' }),
          entry('mismatch', { rollback: { type: 'dpkg-previous' } }),
          entry('extra', { unknownField: 1 }),
          entry('huge', { size: MAX_ARTIFACT_BYTES + 1 }),
          entry('good-2'),
        ]),
      ),
    )
    const listing = await feed().list()
    expect(listing.artifacts.map((a) => [a.key, a.version])).toEqual([
      ['good-1', '2.4.1'],
      ['good-2', '2.4.1'],
    ])
    expect(listing.skipped.map((s) => s.key)).toEqual([
      'bad-sha',
      'ftp',
      'creds',
      'good-1',
      'artifacts[5]',
      'artifacts[6]',
      'feb-30',
      'mismatch',
      'extra',
      'huge',
    ])
    expect(new Set(listing.skipped.map((s) => s.code))).toEqual(new Set(['PSW_ERR_FEED_INVALID']))
    expect(listing.skipped[3]!.message).toMatch(/duplicate id/)
  })

  it('refuses a malformed document as a whole with PSW_ERR_FEED_INVALID', async () => {
    const bad: (string | Uint8Array)[] = [
      'not json',
      '[]',
      'null',
      Buffer.from([0xff, 0xfe, 0x7b, 0x7d]),
      JSON.stringify(feedDoc([], { format: 'other/feed' })),
      JSON.stringify(feedDoc([], { formatVersion: 2 })),
      JSON.stringify(feedDoc([], { artifacts: {} })),
      JSON.stringify(feedDoc([], { generated: '2026-13-01T00:00:00Z' })),
      JSON.stringify(feedDoc([], { expires: new Date(T0 - 1000).toISOString() })),
      JSON.stringify(feedDoc([], { extra: true })),
      JSON.stringify(feedDoc(Array.from({ length: 10_001 }, () => ({})))),
    ]
    for (const body of bad) {
      const bytes = Buffer.from(body)
      publish(bytes)
      await expect(feed().list(), String(body).slice(0, 60)).rejects.toThrow(code('PSW_ERR_FEED_INVALID'))
    }
  })

  it('accepts a UTF-8 byte order mark (feeds written on Windows)', async () => {
    publish(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), feedBytes(feedDoc([entry('a-1')]))]))
    expect((await feed().list()).artifacts).toHaveLength(1)
  })

  it('refuses an oversize document: PSW_ERR_TOO_LARGE from the fetcher, or from the adapter itself', async () => {
    const big = feedBytes(feedDoc([entry('a-1', { description: 'x'.repeat(3000) })]))
    publish(big)
    await expect(feed({ maxBytes: 2048 }).list()).rejects.toThrow(code('PSW_ERR_TOO_LARGE'))
    const careless: IndexFetcher = async () => big
    await expect(feed({ maxBytes: 2048 }, { fetchIndex: careless }).list()).rejects.toThrow(code('PSW_ERR_TOO_LARGE'))
  })

  it('fails closed on signatures: tampered bytes, another key, missing or garbled .sig', async () => {
    const bytes = feedBytes(feedDoc([entry('a-1')]))
    publish(bytes)
    server.files.set('/acme/feed.json', Buffer.from(bytes.toString().replace('a-1', 'a-2')))
    await expect(feed().list()).rejects.toThrow(code('PSW_ERR_FEED_SIGNATURE'))

    publish(bytes, makeFeedKey())
    await expect(feed().list()).rejects.toThrow(code('PSW_ERR_FEED_SIGNATURE'))

    publish(bytes)
    server.files.delete('/acme/feed.json.sig')
    await expect(feed().list()).rejects.toThrow(code('PSW_ERR_FEED_SIGNATURE'))

    for (const sig of ['', 'not base64!', `${key.sign(bytes)}x`, 'A'.repeat(5000)]) {
      server.files.set('/acme/feed.json.sig', sig)
      await expect(feed().list(), sig.slice(0, 20)).rejects.toThrow(code('PSW_ERR_FEED_SIGNATURE'))
    }
  })

  it('accepts any configured key format, and one good line among several signatures (key rotation)', async () => {
    const next = makeFeedKey()
    const bytes = feedBytes(feedDoc([entry('a-1')]))
    server.files.set('/acme/feed.json', bytes)
    server.files.set('/acme/feed.json.sig', `${makeFeedKey().sign(bytes)}\r\n${next.sign(bytes)}\r\n`)
    for (const k of [next.publicKeyPem, next.spkiBase64, next.rawBase64]) {
      const listing = await feed({ publicKeys: [key.publicKeyPem, k] }).list()
      expect(listing.artifacts).toHaveLength(1)
    }
  })

  it('refuses bad configuration when constructed', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'pem' })
    expect(() => feed({ publicKeys: [rsa.toString()] })).toThrow(code('PSW_ERR_KEY_INVALID'))
    expect(() => feed({ publicKeys: ['AAAA'] })).toThrow(code('PSW_ERR_KEY_INVALID'))
    expect(() => feed({ publicKeys: [] })).toThrow(code('PSW_ERR_SCHEMA'))
    expect(() => feed({ url: 'ftp://example.com/feed.json' })).toThrow(code('PSW_ERR_SCHEMA'))
    expect(() => feed({ url: 'http://' })).toThrow(code('PSW_ERR_INVALID_ARGUMENT'))
    expect(() => feed({ id: 'Has Spaces' })).toThrow(code('PSW_ERR_SCHEMA'))
  })

  it('refuses an expired feed (PSW_ERR_FEED_EXPIRED)', async () => {
    publish(feedBytes(feedDoc([entry('a-1')])))
    clock.set(T0 + 30 * 86_400_000)
    await expect(feed().list()).rejects.toThrow(code('PSW_ERR_FEED_EXPIRED'))
  })

  it('refuses a rollback of `generated`, and a feed from the future that would ratchet it', async () => {
    publish(feedBytes(feedDoc([entry('a-1')])))
    const later = new Date(T0 + 1000).toISOString()
    await expect(feed({}, { lastGenerated: async () => later }).list()).rejects.toThrow(
      code('PSW_ERR_METADATA_ROLLBACK'),
    )
    const same = await feed({}, { lastGenerated: () => new Date(T0).toISOString() }).list()
    expect(same.artifacts).toHaveLength(1)
    await expect(feed({}, { lastGenerated: () => 'garbage' }).list()).rejects.toThrow(code('PSW_ERR_INVALID_ARGUMENT'))

    publish(feedBytes(feedDoc([entry('a-1')], { generated: new Date(T0 + 86_400_000).toISOString() })))
    await expect(feed().list()).rejects.toThrow(code('PSW_ERR_METADATA_NOT_YET_VALID'))
  })

  it('passes fetch failures and aborts through', async () => {
    await expect(feed().list()).rejects.toThrow(code('PSW_ERR_FEED_FETCH'))
    publish(feedBytes(feedDoc([entry('a-1')])))
    await expect(feed().list(AbortSignal.abort())).rejects.toThrow(expect.objectContaining({ name: 'AbortError' }))
  })

  it('puts the signature next to the feed, keeping a query string', () => {
    expect(signatureUrl('https://a.example/x/feed.json?t=1')).toBe('https://a.example/x/feed.json.sig?t=1')
  })

  describe('byte-level fixture (fixtures/sample-feed.json)', () => {
    // The fixture is signed by a throwaway key whose private half was discarded. A deliberate
    // format change means new fixture files (new key, new signature) and a new digest here.
    const fixture = (name: string) => readFileSync(new URL(`fixtures/${name}`, import.meta.url))
    const bytes = fixture('sample-feed.json')

    it('is byte-for-byte the committed sample', () => {
      expect(createHash('sha256').update(bytes).digest('hex')).toBe(
        '92df4dacdfabf273bd255388bcffcf4cc20356769806b54924c8874ac6c2da47',
      )
    })

    it('verifies with its committed key and lists exactly these artifacts', async () => {
      server.files.set('/acme/feed.json', bytes)
      server.files.set('/acme/feed.json.sig', fixture('sample-feed.json.sig'))
      const listing = await feed({ publicKeys: [fixture('sample-feed.pub.pem').toString()] }).list()
      expect(listing.skipped).toEqual([])
      expect(listing).toMatchObject({
        generated: '2026-03-01T08:00:00Z',
        expires: '2026-04-01T08:00:00Z',
        vendor: 'Acme Software',
      })
      expect(listing.artifacts).toEqual(sampleFeedArtifacts(server.url('/acme/')))
    })
  })
})
