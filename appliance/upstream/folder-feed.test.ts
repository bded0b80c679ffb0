import { copyFile, mkdir, mkdtemp, readFile, realpath, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { ManualClock } from '../../shared/clock.ts'
import { FolderFeed, type FolderFeedConfig, type FolderFeedDeps, folderRelativePath } from './folder-feed.ts'
import { entry, feedBytes, feedDoc, makeFeedKey, sampleFeedArtifacts, T0 } from './vendor-feed-test-helpers.ts'

const code = (c: string) => expect.objectContaining({ code: c })
const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), 'fixtures')

describe('FolderFeed (vendor feed on a USB stick)', () => {
  let base: string
  let root: string
  let outside: string
  let clock: ManualClock
  const key = makeFeedKey()

  beforeEach(async () => {
    base = await realpath(await mkdtemp(join(tmpdir(), 'psw-folder-feed-')))
    root = join(base, 'stick')
    outside = join(base, 'outside')
    await mkdir(join(root, 'files'), { recursive: true })
    await mkdir(outside)
    await writeFile(join(outside, 'secret'), 'not for the feed')
    clock = new ManualClock(T0 + 3_600_000)
  })
  afterEach(() => rm(base, { recursive: true, force: true }))

  const put = async (rel: string, body = 'payload') => {
    await mkdir(dirname(join(root, rel)), { recursive: true })
    await writeFile(join(root, rel), body)
  }
  const publish = async (doc: unknown, signer = key) => {
    const bytes = feedBytes(doc)
    await writeFile(join(root, 'feed.json'), bytes)
    await writeFile(join(root, 'feed.json.sig'), `${signer.sign(bytes)}\n`)
  }
  const feed = (over: Partial<FolderFeedConfig> = {}, deps: Partial<FolderFeedDeps> = {}) =>
    new FolderFeed({ id: 'acme', kind: 'folder', path: root, publicKeys: [key.rawBase64], ...over }, { clock, ...deps })

  it('lists files inside the folder as file sources with their real path', async () => {
    await put('files/a-1.tar')
    await put('pool/deep/b-1.deb')
    await publish(feedDoc([entry('a-1'), entry('b-1', { url: 'pool/deep/b-1.deb' })]))
    const listing = await feed().list()
    expect(listing.skipped).toEqual([])
    expect(listing.keyId).toMatch(/^[0-9a-f]{64}$/)
    expect(listing.artifacts.map((a) => [a.key, a.source])).toEqual([
      ['a-1', { kind: 'file', path: join(root, 'files/a-1.tar') }],
      ['b-1', { kind: 'file', path: join(root, 'pool/deep/b-1.deb') }],
    ])
  })

  it('refuses urls that leave the folder or are not plain relative paths (entry skipped)', async () => {
    await put('files/ok.tar')
    const urls = {
      dotdot: '../outside/secret',
      inner: 'files/../../outside/secret',
      abs: join(outside, 'secret'),
      http: 'https://cdn.example/x.tar',
      file: 'file:///etc/passwd',
      backslash: 'files\\ok.tar',
      dot: './files/ok.tar',
      hidden: 'files/.hidden',
      empty: 'files//ok.tar',
      encoded: 'files/%2e%2e/secret',
    }
    await publish(
      feedDoc([entry('ok', { url: 'files/ok.tar' }), ...Object.entries(urls).map(([id, url]) => entry(id, { url }))]),
    )
    const listing = await feed().list()
    expect(listing.artifacts.map((a) => a.key)).toEqual(['ok'])
    expect(listing.skipped.map((s) => [s.key, s.code])).toEqual(
      Object.keys(urls).map((id) => [id, 'PSW_ERR_FEED_INVALID']),
    )
    expect(listing.skipped[0]!.message).toMatch(/'\.\.'/)
  })

  it('refuses symlinks leading out of the folder, follows those that stay inside', async () => {
    await put('files/real.tar')
    await symlink(join(outside, 'secret'), join(root, 'files/escape.tar'))
    await symlink(outside, join(root, 'outdir'))
    await symlink('real.tar', join(root, 'files/alias.tar'))
    await publish(
      feedDoc([
        entry('escape', { url: 'files/escape.tar' }),
        entry('via-dir', { url: 'outdir/secret' }),
        entry('alias', { url: 'files/alias.tar' }),
      ]),
    )
    const listing = await feed().list()
    expect(listing.artifacts.map((a) => [a.key, a.source])).toEqual([
      ['alias', { kind: 'file', path: join(root, 'files/real.tar') }],
    ])
    expect(listing.skipped.map((s) => [s.key, s.code])).toEqual([
      ['escape', 'PSW_ERR_FEED_INVALID'],
      ['via-dir', 'PSW_ERR_FEED_INVALID'],
    ])
  })

  it('skips entries whose file is missing or is not a regular file', async () => {
    await put('files/dir/inner')
    await publish(feedDoc([entry('missing'), entry('dir', { url: 'files/dir' })]))
    const listing = await feed().list()
    expect(listing.skipped.map((s) => [s.key, s.code])).toEqual([
      ['missing', 'PSW_ERR_NOT_FOUND'],
      ['dir', 'PSW_ERR_INGEST_SOURCE'],
    ])
  })

  it('never guesses: no feed.json is PSW_ERR_FEED_INVALID naming the expected file', async () => {
    await writeFile(join(root, 'Feed.JSON'), feedBytes(feedDoc([])))
    await writeFile(join(root, 'packages.json'), feedBytes(feedDoc([])))
    const err = await feed()
      .list()
      .catch((e: unknown) => e)
    expect(err).toMatchObject({ code: 'PSW_ERR_FEED_INVALID', details: { expected: join(root, 'feed.json') } })
    expect((err as Error).message).toContain(join(root, 'feed.json'))
  })

  it('a folder that is not there (stick not mounted) is PSW_ERR_FEED_FETCH', async () => {
    await expect(feed({ path: join(base, 'nope') }).list()).rejects.toThrow(code('PSW_ERR_FEED_FETCH'))
    await put('plain-file')
    await expect(feed({ path: join(root, 'plain-file') }).list()).rejects.toThrow(code('PSW_ERR_FEED_FETCH'))
  })

  it('refuses a feed.json that is a symlink out of the folder, or too large', async () => {
    await writeFile(join(outside, 'feed.json'), feedBytes(feedDoc([])))
    await symlink(join(outside, 'feed.json'), join(root, 'feed.json'))
    await expect(feed({ publicKeys: undefined }).list()).rejects.toThrow(code('PSW_ERR_FEED_INVALID'))
    await rm(join(root, 'feed.json'))
    await publish(feedDoc([entry('a-1', { description: 'x'.repeat(3000) })]))
    await expect(feed({ maxBytes: 2048 }).list()).rejects.toThrow(code('PSW_ERR_TOO_LARGE'))
  })

  it('checks feed.json.sig when keys are configured: missing, other key, tampered', async () => {
    await put('files/a-1.tar')
    await publish(feedDoc([entry('a-1')]))
    await rm(join(root, 'feed.json.sig'))
    await expect(feed().list()).rejects.toThrow(code('PSW_ERR_FEED_SIGNATURE'))
    expect((await feed({ publicKeys: undefined }).list()).artifacts).toHaveLength(1)

    await publish(feedDoc([entry('a-1')]), makeFeedKey())
    await expect(feed().list()).rejects.toThrow(code('PSW_ERR_FEED_SIGNATURE'))

    await publish(feedDoc([entry('a-1')]))
    await writeFile(join(root, 'feed.json'), feedBytes(feedDoc([entry('a-1', { size: 1 })])))
    await expect(feed().list()).rejects.toThrow(code('PSW_ERR_FEED_SIGNATURE'))
  })

  it('applies expiry and rollback protection like the HTTP feed', async () => {
    await put('files/a-1.tar')
    await publish(feedDoc([entry('a-1')]))
    const later = new Date(T0 + 1).toISOString()
    await expect(feed({}, { lastGenerated: () => later }).list()).rejects.toThrow(code('PSW_ERR_METADATA_ROLLBACK'))
    clock.set(T0 + 31 * 86_400_000)
    await expect(feed().list()).rejects.toThrow(code('PSW_ERR_FEED_EXPIRED'))
  })

  it('reads the committed sample feed: relative entries become files, the absolute URL is skipped', async () => {
    await copyFile(join(FIXTURES, 'sample-feed.json'), join(root, 'feed.json'))
    await copyFile(join(FIXTURES, 'sample-feed.json.sig'), join(root, 'feed.json.sig'))
    await put('files/acme-agent-2.4.1-linux-x64.tar')
    await put('pool/acme-cli_3.1.0-1_amd64.deb')
    const pem = await readFile(join(FIXTURES, 'sample-feed.pub.pem'), 'utf8')
    const listing = await feed({ publicKeys: [pem] }).list()
    const expected = sampleFeedArtifacts('', (p) => ({ kind: 'file', path: join(root, p) }))
    expect(listing.artifacts).toEqual(expected.slice(0, 2))
    expect(listing.skipped).toEqual([
      expect.objectContaining({ key: 'acme-definitions-20260301', code: 'PSW_ERR_FEED_INVALID' }),
    ])
  })

  it('folderRelativePath accepts plain relative paths only', () => {
    expect(folderRelativePath('a/b-1.2_x+y~z.tar', 'x')).toEqual(['a', 'b-1.2_x+y~z.tar'])
    expect(() => folderRelativePath('a/'.repeat(17) + 'f', 'x')).toThrow(code('PSW_ERR_FEED_INVALID'))
    expect(() => folderRelativePath('C:\\x', 'x')).toThrow(code('PSW_ERR_FEED_INVALID'))
    expect(() => folderRelativePath('a/b\0c', 'x')).toThrow(code('PSW_ERR_FEED_INVALID'))
  })
})
