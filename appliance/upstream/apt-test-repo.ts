/**
 * Test fixture: a real, signed APT repository in a temp dir, built with Debian's own tools
 * (dpkg-deb, apt-ftparchive, gpg in a throwaway GNUPGHOME), served by node:http on
 * 127.0.0.1:0, plus an IndexFetcher over fetch() with a byte limit. Not used by library code.
 */
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { accessSync, constants } from 'node:fs'
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { UpstreamError } from '../../shared/errors.ts'
import { DEFAULT_XZ_PATH } from './apt-index.ts'
import type { IndexFetcher } from './feed-types.ts'

/** Tools the fixture needs (apt-ftparchive is in Debian's apt-utils). */
export const APT_FIXTURE_TOOLS = ['dpkg-deb', 'apt-ftparchive', 'gpg', 'gpgconf'] as const

export function missingAptFixtureTools(): string[] {
  const dirs = (process.env.PATH ?? '').split(delimiter).filter((d) => d !== '')
  return APT_FIXTURE_TOOLS.filter(
    (tool) =>
      !dirs.some((d) => {
        try {
          accessSync(join(d, tool), constants.X_OK)
          return true
        } catch {
          return false
        }
      }),
  )
}

export interface TestDeb {
  package: string
  version: string
  arch: 'amd64' | 'arm64' | 'all'
  /** Path relative to the repository root (the `Filename`). */
  filename: string
  size: number
  sha256: string
}

export type TestKeyName = 'trusted' | 'stranger' | 'expiring'

export interface TestAptRepo {
  /** Repository root (holds dists/ and pool/). */
  dir: string
  suite: string
  debs: TestDeb[]
  /** Armored public keys and fingerprints. */
  keys: Record<TestKeyName, { armored: string; fingerprint: string }>
  /** The unsigned Release and the InRelease as served. */
  release: Buffer
  inRelease: Buffer
  /** A Release with Valid-Until one minute after its Date. */
  shortLivedRelease: Buffer
  /** Clear-signs `text` with the given keys (gpg), optionally with another digest. */
  clearsign(text: Buffer, keys: TestKeyName[], digest?: string): Buffer
  cleanup(): Promise<void>
}

const DEBS: Omit<TestDeb, 'filename' | 'size' | 'sha256'>[] = [
  { package: 'hello-psw', version: '1.0-1', arch: 'amd64' },
  { package: 'hello-psw', version: '1.1-1', arch: 'amd64' },
  { package: 'psw-data', version: '2:0.5+git~1-1', arch: 'all' },
  { package: 'psw-tool', version: '3.0', arch: 'arm64' },
]

/** Stanzas appended to binary-arm64/Packages before it is hashed and signed. */
export const INJECTED_STANZAS = `
Package: psw-nosha
Version: 1.0
Architecture: arm64
Filename: pool/main/p/psw-nosha/psw-nosha_1.0_arm64.deb
Size: 10
MD5sum: 0123456789abcdef0123456789abcdef

Package: psw-evil
Version: 1.0
Architecture: arm64
Filename: ../../../../etc/passwd
Size: 10
SHA256: ${'0'.repeat(64)}
`

export async function buildTestAptRepo(): Promise<TestAptRepo> {
  const tmp = await mkdtemp(join(tmpdir(), 'psw-apt-'))
  const gnupg = join(tmp, 'gnupg')
  await mkdir(gnupg)
  await chmod(gnupg, 0o700)
  const env = { ...process.env, GNUPGHOME: gnupg, LC_ALL: 'C' }
  const run = (cmd: string, args: string[], opts: { cwd?: string; input?: Buffer } = {}): Buffer =>
    execFileSync(cmd, args, { env, cwd: opts.cwd ?? tmp, input: opts.input, stdio: ['pipe', 'pipe', 'pipe'] })
  const cleanup = async (): Promise<void> => {
    try {
      run('gpgconf', ['--kill', 'gpg-agent'])
    } catch {
      // no agent running
    }
    await rm(tmp, { recursive: true, force: true })
  }

  try {
    const keys = {} as TestAptRepo['keys']
    const specs: [TestKeyName, string, string][] = [
      ['trusted', 'rsa3072', 'never'],
      ['stranger', 'ed25519', 'never'],
      ['expiring', 'ed25519', '1d'],
    ]
    for (const [name, algo, expiry] of specs) {
      const uid = `PSW ${name} <${name}@test.invalid>`
      run('gpg', ['--batch', '--passphrase', '', '--quick-gen-key', uid, algo, 'sign', expiry])
      const colons = run('gpg', ['--batch', '--with-colons', '--list-keys', `<${name}@test.invalid>`]).toString()
      const fingerprint = /^fpr:+([0-9A-F]{40,64}):/m.exec(colons)?.[1]
      if (fingerprint === undefined) throw new Error(`no fingerprint for ${uid}`)
      keys[name] = { fingerprint, armored: run('gpg', ['--batch', '--armor', '--export', fingerprint]).toString() }
    }
    const clearsign = (text: Buffer, signers: TestKeyName[], digest?: string): Buffer =>
      run(
        'gpg',
        [
          '--batch',
          '--pinentry-mode',
          'loopback',
          '--passphrase',
          '',
          ...signers.flatMap((k) => ['--local-user', keys[k].fingerprint]),
          ...(digest === undefined ? [] : ['--digest-algo', digest]),
          '--clearsign',
        ],
        { input: text },
      )

    const dir = join(tmp, 'repo')
    const debs: TestDeb[] = []
    for (const d of DEBS) {
      const root = join(tmp, 'build', `${d.package}-${d.version}`)
      await mkdir(join(root, 'DEBIAN'), { recursive: true })
      await mkdir(join(root, 'usr/share/doc', d.package), { recursive: true })
      await writeFile(
        join(root, 'DEBIAN/control'),
        `Package: ${d.package}\nVersion: ${d.version}\nArchitecture: ${d.arch}\n` +
          `Maintainer: Test <test@test.invalid>\nDescription: ${d.package} for the APT feed tests\n` +
          ` A longer description.\n .\n Second paragraph.\n`,
      )
      await writeFile(join(root, 'usr/share/doc', d.package, 'README'), `${d.package} ${d.version}\n`)
      const filename = `pool/main/${d.package[0]}/${d.package}/${d.package}_${d.version.replace(/^\d+:/, '')}_${d.arch}.deb`
      await mkdir(join(dir, filename, '..'), { recursive: true })
      run('dpkg-deb', ['--root-owner-group', '-Zgzip', '--build', root, join(dir, filename)])
      const bytes = await readFile(join(dir, filename))
      debs.push({ ...d, filename, size: bytes.byteLength, sha256: createHash('sha256').update(bytes).digest('hex') })
    }

    const suite = 'stable'
    const dists = join(dir, 'dists', suite)
    for (const arch of ['amd64', 'arm64']) {
      const indexDir = join(dists, 'main', `binary-${arch}`)
      await mkdir(indexDir, { recursive: true })
      let packages = run('apt-ftparchive', ['--arch', arch, 'packages', 'pool/main'], { cwd: dir }).toString()
      if (arch === 'arm64') packages += INJECTED_STANZAS
      await writeFile(join(indexDir, 'Packages'), packages)
      await writeFile(join(indexDir, 'Packages.gz'), gzipSync(packages, { level: 9 }))
      try {
        accessSync(DEFAULT_XZ_PATH, constants.X_OK)
        await writeFile(join(indexDir, 'Packages.xz'), run(DEFAULT_XZ_PATH, ['-c'], { input: Buffer.from(packages) }))
      } catch {
        // no xz here: the feed falls back to .gz / plain
      }
    }
    const releaseArgs = (extra: string[]): string[] => [
      '-o',
      'APT::FTPArchive::Release::Origin=PSW-Test',
      '-o',
      'APT::FTPArchive::Release::Label=PSW-Test',
      '-o',
      `APT::FTPArchive::Release::Suite=${suite}`,
      '-o',
      'APT::FTPArchive::Release::Codename=psw',
      '-o',
      'APT::FTPArchive::Release::Components=main',
      '-o',
      'APT::FTPArchive::Release::Architectures=amd64 arm64',
      ...extra,
      'release',
      '.',
    ]
    // Both Releases are made before Release/InRelease exist in the directory they index.
    const release = run('apt-ftparchive', releaseArgs([]), { cwd: dists })
    const shortLivedRelease = run('apt-ftparchive', releaseArgs(['-o', 'APT::FTPArchive::Release::ValidTime=60']), {
      cwd: dists,
    })
    const inRelease = clearsign(release, ['trusted'])
    await writeFile(join(dists, 'Release'), release)
    await writeFile(join(dists, 'InRelease'), inRelease)

    return { dir, suite, debs, keys, release, inRelease, shortLivedRelease, clearsign, cleanup }
  } catch (err) {
    await cleanup()
    throw err
  }
}

export interface TestRepoServer {
  /** `http://127.0.0.1:<port>/debian`: the repository root. */
  baseUrl: string
  /** Replaces a file (path relative to the root) for the next requests; null: 404. */
  overrides: Map<string, Buffer | null>
  /** Paths requested, relative to the root. */
  requests: string[]
  close(): Promise<void>
}

/** Serves `dir` under `/debian/` on 127.0.0.1, port 0. */
export async function serveTestRepo(dir: string): Promise<TestRepoServer> {
  const overrides = new Map<string, Buffer | null>()
  const requests: string[] = []
  const server = createServer((req, res) => {
    void (async () => {
      const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)
      const rel = path.startsWith('/debian/') ? path.slice('/debian/'.length) : undefined
      if (rel === undefined || rel.split('/').some((s) => s === '..' || s === '')) {
        res.writeHead(400).end()
        return
      }
      requests.push(rel)
      const override = overrides.get(rel)
      const body = override !== undefined ? override : await readFile(join(dir, rel)).catch(() => null)
      if (body === null) res.writeHead(404).end()
      else res.writeHead(200, { 'content-length': body.byteLength }).end(body)
    })()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    baseUrl: `http://127.0.0.1:${port}/debian`,
    overrides,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

/** An IndexFetcher over fetch(): PSW_ERR_FEED_FETCH on errors/non-2xx, PSW_ERR_TOO_LARGE past maxBytes. */
export const fetchIndexForTests: IndexFetcher = async (url, { maxBytes, signal }) => {
  let res: Response
  try {
    res = await fetch(url, signal === undefined ? {} : { signal })
  } catch (err) {
    throw new UpstreamError('PSW_ERR_FEED_FETCH', `cannot fetch ${url}`, { cause: err })
  }
  if (!res.ok || res.body === null) {
    await res.body?.cancel()
    throw new UpstreamError('PSW_ERR_FEED_FETCH', `${url}: HTTP ${res.status}`, { details: { status: res.status } })
  }
  const chunks: Uint8Array[] = []
  let total = 0
  const reader = res.body.getReader()
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    total += value.byteLength
    if (total > maxBytes) {
      await reader.cancel()
      throw new UpstreamError('PSW_ERR_TOO_LARGE', `${url} is larger than ${maxBytes} bytes`)
    }
    chunks.push(value)
  }
  return Buffer.concat(chunks, total)
}
