/**
 * Test helpers for the vendor-format feeds: signing keys, feed documents, a real HTTP server
 * on 127.0.0.1:0, and a minimal IndexFetcher over fetch (the real one is the WAN downloader's).
 */
import { generateKeyPairSync, type KeyObject, sign } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { UpstreamError } from '../../shared/errors.ts'
import type { FeedArtifact, IndexFetcher } from './feed-types.ts'
import { FEED_FORMAT, FEED_FORMAT_VERSION } from './vendor-feed-schema.ts'

export const T0 = Date.UTC(2026, 2, 1, 8)

export interface TestFeedKey {
  privateKey: KeyObject
  publicKeyPem: string
  /** base64 of the DER SubjectPublicKeyInfo. */
  spkiBase64: string
  /** base64 of the raw 32-byte key. */
  rawBase64: string
  /** A signature file line: base64 Ed25519 signature over `bytes`. */
  sign(bytes: Uint8Array): string
}

export function makeFeedKey(): TestFeedKey {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  const der = publicKey.export({ type: 'spki', format: 'der' })
  return {
    privateKey,
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    spkiBase64: der.toString('base64'),
    rawBase64: der.subarray(12).toString('base64'),
    sign: (bytes) => sign(null, bytes, privateKey).toString('base64'),
  }
}

export function entry(id: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id,
    url: `files/${id}.tar`,
    size: 1000,
    sha256: 'ab'.repeat(32),
    product: 'Acme Agent',
    name: 'acme-agent',
    version: '2.4.1',
    classification: 'security',
    severity: 'high',
    cves: ['CVE-2026-10001'],
    releaseDate: '2026-02-27',
    supersedes: [],
    requires: [],
    os: 'linux',
    arch: 'x64',
    installer: { type: 'files', targetRoot: '/opt/acme' },
    rollback: { type: 'files-backup' },
    ...over,
  }
}

export function feedDoc(artifacts: unknown[], over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    format: FEED_FORMAT,
    formatVersion: FEED_FORMAT_VERSION,
    vendor: 'Acme Software',
    generated: new Date(T0).toISOString(),
    expires: new Date(T0 + 30 * 86_400_000).toISOString(),
    artifacts,
    ...over,
  }
}

export const feedBytes = (doc: unknown): Buffer => Buffer.from(JSON.stringify(doc, null, 2))

/** A real HTTP server on 127.0.0.1:0 serving `files` (path → body); anything else is a 404. */
export interface FeedServer {
  files: Map<string, Uint8Array | string>
  url(path: string): string
  /** Paths requested, in order. */
  requests: string[]
  close(): Promise<void>
}

export async function startFeedServer(): Promise<FeedServer> {
  const files = new Map<string, Uint8Array | string>()
  const requests: string[] = []
  const server: Server = createServer((req, res) => {
    requests.push(req.url ?? '')
    const body = files.get(req.url ?? '')
    if (body === undefined) {
      res.writeHead(404).end('not found')
      return
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(body)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    files,
    requests,
    url: (path) => `http://127.0.0.1:${port}${path}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections()
        server.close((err) => (err ? reject(err) : resolve()))
      }),
  }
}

/** IndexFetcher over global fetch: PSW_ERR_FEED_FETCH on errors and non-2xx, PSW_ERR_TOO_LARGE past maxBytes. */
export const testFetchIndex: IndexFetcher = async (url, { maxBytes, signal }) => {
  let res: Response
  try {
    res = await fetch(url, signal ? { signal } : {})
  } catch (err) {
    if (signal?.aborted) throw err
    throw new UpstreamError('PSW_ERR_FEED_FETCH', `${url}: ${String(err)}`, { cause: err })
  }
  if (!res.ok || res.body === null) {
    await res.body?.cancel()
    throw new UpstreamError('PSW_ERR_FEED_FETCH', `${url}: HTTP ${res.status}`, { details: { status: res.status } })
  }
  const chunks: Uint8Array[] = []
  let length = 0
  const reader = res.body.getReader()
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    length += value.byteLength
    if (length > maxBytes) {
      await reader.cancel()
      throw new UpstreamError('PSW_ERR_TOO_LARGE', `${url} is over ${maxBytes} bytes`)
    }
    chunks.push(value)
  }
  return Buffer.concat(chunks)
}

/** What fixtures/sample-feed.json lists, with its relative urls resolved against `base`. */
export function sampleFeedArtifacts(
  base: string,
  relative = (p: string): FeedArtifact['source'] => ({
    kind: 'http',
    url: base + p,
  }),
): FeedArtifact[] {
  return [
    {
      feedId: 'acme',
      key: 'acme-agent-2.4.1-linux-x64',
      source: relative('files/acme-agent-2.4.1-linux-x64.tar'),
      size: 1048576,
      sha256: '5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef',
      name: 'acme-agent',
      version: '2.4.1',
      vendor: 'Acme Software',
      product: 'Acme Agent',
      classification: 'security',
      severity: 'high',
      cves: ['CVE-2026-10001', 'CVE-2026-10002'],
      advisory: 'ACME-SA-2026-004',
      releaseDate: '2026-02-27',
      supersedes: ['acme-agent'],
      requires: [],
      description: 'Fixes two remote code execution flaws in the update channel.',
      os: 'linux',
      arch: 'x64',
      installer: { type: 'files', targetRoot: '/opt/acme/agent', maxRunSeconds: 300 },
      rollback: { type: 'files-backup' },
      emergency: true,
    },
    {
      feedId: 'acme',
      key: 'acme-cli_3.1.0-1_amd64',
      source: relative('pool/acme-cli_3.1.0-1_amd64.deb'),
      size: 524288,
      sha256: '0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8',
      name: 'acme-cli',
      version: '3.1.0-1',
      vendor: 'Acme Tools Division',
      product: 'Acme CLI',
      classification: 'bugfix',
      severity: 'low',
      cves: [],
      advisory: 'KB-ACME-1123',
      releaseDate: '2026-02-20T14:30:00+01:00',
      supersedes: [],
      requires: ['acme-agent'],
      os: 'linux',
      arch: 'x64',
      installer: { type: 'dpkg', package: 'acme-cli' },
      rollback: { type: 'dpkg-previous' },
      emergency: false,
    },
    {
      feedId: 'acme',
      key: 'acme-definitions-20260301',
      source: { kind: 'http', url: 'https://cdn.acme.example/definitions/acme-definitions-20260301.tar' },
      size: 2097152,
      sha256: '8a39d2abd3999ab73c34db2476849cddf303ce389b35826850f9a700589b4a90',
      name: 'acme-definitions',
      version: '20260301',
      vendor: 'Acme Software',
      product: 'Acme Definitions',
      classification: 'definition',
      severity: 'none',
      cves: [],
      releaseDate: '2026-03-01',
      supersedes: ['acme-definitions'],
      requires: [],
      os: 'any',
      arch: 'any',
      installer: { type: 'files', targetRoot: '/var/lib/acme/definitions' },
      rollback: { type: 'none' },
      emergency: false,
    },
  ]
}
