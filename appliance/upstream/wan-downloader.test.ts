import { createHash, randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { systemClock } from '../../shared/clock.ts'
import { silentLogger } from '../../shared/log.ts'
import type { DownloadProgress } from './download-progress.ts'
import type { FeedArtifact } from './feed-types.ts'
import { PARTIAL_FORMAT } from './partial-store.ts'
import { type QuarantineEvent, WanDownloader, type WanDownloaderInit } from './wan-downloader.ts'
import { WanLimiter } from './wan-limiter.ts'
import { unlimitedWanSchedule, type WanSchedule } from './wan-schedule.ts'
import { serveBytes, startTestServer, type TestHandler, type TestServer } from './wan-test-helpers.ts'

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')

/** Counts what goes through the cap, so tests can check that every WAN byte was charged. */
class CountingLimiter extends WanLimiter {
  taken = 0
  override take(n: number, signal?: AbortSignal): Promise<number> {
    this.taken += n
    return super.take(n, signal)
  }
}

function artifactFor(body: Buffer, url: string, over: Partial<FeedArtifact> = {}): FeedArtifact {
  return {
    feedId: 'test-feed',
    key: 'pkg-1',
    source: { kind: 'http', url },
    size: body.length,
    sha256: sha(body),
    name: 'pkg',
    version: '1.0',
    vendor: 'acme',
    product: 'pkg',
    classification: 'security',
    severity: 'high',
    cves: [],
    supersedes: [],
    requires: [],
    os: 'any',
    arch: 'any',
    installer: { type: 'files', targetRoot: '/opt/pkg' },
    rollback: { type: 'none' },
    emergency: false,
    ...over,
  }
}

let dir: string
let servers: TestServer[]
let downloaders: WanDownloader[]

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'psw-wan-'))
  servers = []
  downloaders = []
})

afterEach(async () => {
  await Promise.all(downloaders.map((d) => d.stop()))
  await Promise.all(servers.map((s) => s.close()))
  await rm(dir, { recursive: true, force: true })
})

/**
 * Serves `body` but drops the connection once the downloader has written `n` bytes of it (a
 * server-side cut right after writing could lose bytes still buffered on the client side).
 */
function serveThenDrop(h: () => Harness, req: IncomingMessage, res: ServerResponse, body: Buffer, n: number) {
  serveBytes(req, res, body, { stallAfter: n })
  void h()
    .progress((p) => p.bytes >= n)
    .then(() => res.socket?.destroy())
}

async function server(handler: TestHandler): Promise<TestServer> {
  const s = await startTestServer(handler)
  servers.push(s)
  return s
}

interface Harness {
  d: WanDownloader
  limiter: CountingLimiter
  events: DownloadProgress[]
  quarantined: QuarantineEvent[]
  wanBytes: Map<string, number>
  /** Resolves with the first progress event (past or future) that matches. */
  progress: (match: (p: DownloadProgress) => boolean) => Promise<DownloadProgress>
}

async function downloader(
  init: Partial<WanDownloaderInit> = {},
  schedule: WanSchedule = unlimitedWanSchedule(),
  burstSeconds = 1,
): Promise<Harness> {
  const limiter = new CountingLimiter({ clock: systemClock }, { schedule, burstSeconds })
  const events: DownloadProgress[] = []
  const watchers: { match: (p: DownloadProgress) => boolean; resolve: (p: DownloadProgress) => void }[] = []
  const quarantined: QuarantineEvent[] = []
  const wanBytes = new Map<string, number>()
  const d = new WanDownloader(
    {
      limiter,
      clock: systemClock,
      log: silentLogger(),
      random: () => 0.5,
      onProgress: (p) => {
        events.push(p)
        for (const w of [...watchers]) {
          if (w.match(p)) {
            watchers.splice(watchers.indexOf(w), 1)
            w.resolve(p)
          }
        }
      },
      onQuarantine: (e) => {
        quarantined.push(e)
      },
      onWanBytes: (s, n) => wanBytes.set(s, (wanBytes.get(s) ?? 0) + n),
    },
    {
      dir,
      backoffBaseMs: 1,
      backoffMaxMs: 5,
      headerTimeoutMs: 5_000,
      idleTimeoutMs: 5_000,
      progressIntervalMs: 0,
      ...init,
    },
  )
  await d.start()
  downloaders.push(d)
  const progress = (match: (p: DownloadProgress) => boolean) =>
    new Promise<DownloadProgress>((resolve) => {
      const seen = events.find(match)
      if (seen) resolve(seen)
      else watchers.push({ match, resolve })
    })
  return { d, limiter, events, quarantined, wanBytes, progress }
}

describe('WanDownloader: the happy path', () => {
  it('downloads, verifies and keeps the file under verified/<sha256>; charges every byte to the cap', async () => {
    const body = randomBytes(100_000)
    const s = await server((req, res) => serveBytes(req, res, body))
    const h = await downloader()
    const a = artifactFor(body, s.url())
    const r = await h.d.fetch(a)
    expect(r).toEqual({ path: join(dir, 'verified', a.sha256), size: body.length, sha256: a.sha256 })
    expect(sha(await readFile(r.path))).toBe(sha(body))
    expect(h.limiter.taken).toBe(body.length)
    expect(h.wanBytes.get(a.sha256)).toBe(body.length)
    expect(await readdir(join(dir, 'partial'))).toEqual([])
    expect(h.d.snapshot()).toEqual([])
    expect(h.events.map((e) => e.state)).toEqual(expect.arrayContaining(['queued', 'downloading', 'verifying']))
    // Already verified: no second GET.
    await expect(h.d.fetch(a)).resolves.toEqual(r)
    expect(s.requests).toHaveLength(1)
    // A feed that declares another size for these verified bytes is refused; the file stays.
    await expect(h.d.fetch({ ...a, size: a.size + 1 })).rejects.toMatchObject({ code: 'PSW_ERR_WAN_SIZE' })
    expect(sha(await readFile(r.path))).toBe(a.sha256)
    expect(s.requests[0]!.headers['accept-encoding']).toBe('identity')
  })

  it('ten concurrent fetch() calls for one artifact make exactly one GET', async () => {
    const body = randomBytes(50_000)
    const s = await server((req, res) => serveBytes(req, res, body))
    const h = await downloader()
    const a = artifactFor(body, s.url())
    const results = await Promise.all(Array.from({ length: 10 }, () => h.d.fetch(a)))
    expect(s.requests).toHaveLength(1)
    for (const r of results) expect(r).toEqual(results[0])
  })

  it('follows a redirect', async () => {
    const body = randomBytes(1000)
    const s = await server((req, res) => {
      if (req.url === '/old') {
        res.writeHead(302, { location: '/artifact' }).end()
        return
      }
      serveBytes(req, res, body)
    })
    const h = await downloader()
    await h.d.fetch(artifactFor(body, s.url('/old')))
    expect(s.requests.map((r) => r.path)).toEqual(['/old', '/artifact'])
  })

  it('copies a local file (USB import) with the same verification, without the WAN', async () => {
    const body = randomBytes(30_000)
    const src = join(dir, 'usb.bin')
    await writeFile(src, body)
    const h = await downloader()
    const a = artifactFor(body, '', { source: { kind: 'file', path: src } })
    const r = await h.d.fetch(a)
    expect(sha(await readFile(r.path))).toBe(sha(body))
    expect(h.limiter.taken).toBe(0)
    expect(h.wanBytes.size).toBe(0)
  })
})

describe('WanDownloader: resuming', () => {
  it('resumes with Range and If-Range after the connection drops mid-body; the whole hash verifies', async () => {
    const body = randomBytes(200_000)
    let h!: Harness
    const s = await server((req, res, i) =>
      i === 0 ? serveThenDrop(() => h, req, res, body, 80_000) : serveBytes(req, res, body),
    )
    h = await downloader()
    const r = await h.d.fetch(artifactFor(body, s.url()))
    expect(sha(await readFile(r.path))).toBe(sha(body))
    expect(s.requests).toHaveLength(2)
    expect(s.requests[1]!.headers.range).toBe('bytes=80000-')
    expect(s.requests[1]!.headers['if-range']).toBe('"v1"')
    expect(h.wanBytes.get(sha(body))).toBe(body.length) // nothing fetched twice
  })

  it('discards the partial when the server ignores Range (200 on resume) and still verifies', async () => {
    const body = randomBytes(120_000)
    let h!: Harness
    const s = await server((req, res, i) =>
      i === 0 ? serveThenDrop(() => h, req, res, body, 50_000) : serveBytes(req, res, body, { honourRange: false }),
    )
    h = await downloader()
    const r = await h.d.fetch(artifactFor(body, s.url()))
    expect(sha(await readFile(r.path))).toBe(sha(body))
    expect(s.requests).toHaveLength(2)
    expect(s.requests[1]!.headers.range).toBe('bytes=50000-')
    expect(h.wanBytes.get(sha(body))).toBe(50_000 + body.length)
  })

  it('starts over when the ETag changed between attempts (If-Range mismatch → 200)', async () => {
    const body = randomBytes(120_000)
    let h!: Harness
    const s = await server((req, res, i) =>
      i === 0 ? serveThenDrop(() => h, req, res, body, 50_000) : serveBytes(req, res, body, { etag: '"v2"' }),
    )
    h = await downloader()
    const r = await h.d.fetch(artifactFor(body, s.url()))
    expect(sha(await readFile(r.path))).toBe(sha(body))
    expect(s.requests[1]!.headers['if-range']).toBe('"v1"')
    expect(s.requests).toHaveLength(2)
  })

  it('starts over when a 206 arrives with another ETag (server ignored If-Range)', async () => {
    const body = randomBytes(120_000)
    let h!: Harness
    const s = await server((req, res, i) => {
      if (i === 0) return serveThenDrop(() => h, req, res, body, 50_000)
      if (i === 1) {
        // Answers the Range regardless of If-Range, but the entity is a different one.
        const start = Number(/bytes=(\d+)-/.exec(req.headers.range ?? '')![1])
        res.writeHead(206, {
          etag: '"v2"',
          'content-range': `bytes ${start}-${body.length - 1}/${body.length}`,
          'content-length': body.length - start,
        })
        res.end(body.subarray(start))
        return
      }
      serveBytes(req, res, body, { etag: '"v2"' })
    })
    h = await downloader()
    const r = await h.d.fetch(artifactFor(body, s.url()))
    expect(sha(await readFile(r.path))).toBe(sha(body))
    expect(s.requests).toHaveLength(3)
    expect(s.requests[2]!.headers.range).toBeUndefined()
  })

  it('a new WanDownloader on the same dir continues from the sidecar after a stop mid-download', async () => {
    const body = randomBytes(150_000)
    const s = await server((req, res, i) => serveBytes(req, res, body, i === 0 ? { stallAfter: 60_000 } : {}))
    const first = await downloader()
    const a = artifactFor(body, s.url())
    const fetching = first.d.fetch(a)
    await first.progress((p) => p.bytes >= 60_000)
    await first.d.stop()
    await expect(fetching).rejects.toMatchObject({ name: 'AbortError' })
    const sidecar = JSON.parse(await readFile(join(dir, 'partial', `${a.sha256}.json`), 'utf8'))
    expect(sidecar).toMatchObject({ format: PARTIAL_FORMAT, bytes: 60_000, etag: '"v1"', url: s.url() })

    const second = await downloader()
    const r = await second.d.fetch(a)
    expect(sha(await readFile(r.path))).toBe(sha(body))
    expect(s.requests[1]!.headers.range).toBe('bytes=60000-')
    expect(second.wanBytes.get(a.sha256)).toBe(body.length - 60_000)
  })

  it('after a crash, trusts only the bytes the sidecar names and re-hashes them', async () => {
    const body = randomBytes(64_000)
    const s = await server((req, res) => serveBytes(req, res, body))
    const a = artifactFor(body, s.url())
    // What kill -9 leaves: more bytes on disk than the last checkpoint recorded.
    await mkdir(join(dir, 'partial'), { recursive: true })
    await writeFile(join(dir, 'partial', a.sha256), body.subarray(0, 30_000))
    const sidecar = {
      format: PARTIAL_FORMAT,
      url: s.url(),
      sha256: a.sha256,
      size: body.length,
      etag: '"v1"',
      bytes: 20_000,
    }
    await writeFile(join(dir, 'partial', `${a.sha256}.json`), JSON.stringify(sidecar))
    const h = await downloader()
    const r = await h.d.fetch(a)
    expect(sha(await readFile(r.path))).toBe(sha(body))
    expect(s.requests).toHaveLength(1)
    expect(s.requests[0]!.headers.range).toBe('bytes=20000-')
    expect(s.requests[0]!.headers['if-range']).toBe('"v1"')
  })

  it('a complete partial left by a crash before the rename is verified without any request', async () => {
    const body = randomBytes(10_000)
    const s = await server((req, res) => serveBytes(req, res, body))
    const a = artifactFor(body, s.url())
    await mkdir(join(dir, 'partial'), { recursive: true })
    await writeFile(join(dir, 'partial', a.sha256), body)
    await writeFile(
      join(dir, 'partial', `${a.sha256}.json`),
      JSON.stringify({ format: PARTIAL_FORMAT, url: s.url(), sha256: a.sha256, size: body.length, bytes: body.length }),
    )
    const h = await downloader()
    expect(sha(await readFile((await h.d.fetch(a)).path))).toBe(sha(body))
    expect(s.requests).toHaveLength(0)
  })

  it('retries once from scratch when a resumed download does not verify (the partial was the bad part)', async () => {
    const body = randomBytes(100_000)
    const bad = Buffer.from(body)
    bad.fill(0, 0, 40_000)
    let h!: Harness
    const s = await server((req, res, i) =>
      i === 0 ? serveThenDrop(() => h, req, res, bad, 40_000) : serveBytes(req, res, body),
    )
    h = await downloader()
    const r = await h.d.fetch(artifactFor(body, s.url()))
    expect(sha(await readFile(r.path))).toBe(sha(body))
    expect(s.requests.map((q) => q.headers.range)).toEqual([undefined, 'bytes=40000-', undefined])
    expect(h.quarantined).toEqual([])
  })
})

describe('WanDownloader: bad servers', () => {
  it('quarantines wrong bytes, alerts, and fails with PSW_ERR_ARTIFACT_HASH without retrying', async () => {
    const body = randomBytes(20_000)
    const wrong = randomBytes(20_000)
    const s = await server((req, res) => serveBytes(req, res, wrong))
    const h = await downloader()
    const a = artifactFor(body, s.url())
    await expect(h.d.fetch(a)).rejects.toMatchObject({ name: 'UpstreamError', code: 'PSW_ERR_ARTIFACT_HASH' })
    expect(s.requests).toHaveLength(1)
    expect(h.quarantined).toHaveLength(1)
    const q = h.quarantined[0]!
    expect(q.artifact.sha256).toBe(a.sha256)
    expect(q.path.startsWith(join(dir, 'quarantine', `${a.sha256}-`))).toBe(true)
    expect(sha(await readFile(q.path))).toBe(sha(wrong))
    expect(await readdir(join(dir, 'partial'))).toEqual([])
    expect(await readdir(join(dir, 'verified'))).toEqual([])
  })

  it('aborts at the declared size when more bytes arrive (endless data), PSW_ERR_WAN_SIZE', async () => {
    const body = randomBytes(30_000)
    let sent = 0
    const s = await server((_req, res) => {
      res.writeHead(200) // chunked: no Content-Length to refuse up front
      const more = () => {
        while (sent < 10_000_000) {
          sent += 16_384
          if (!res.write(randomBytes(16_384))) {
            res.once('drain', more)
            return
          }
        }
        res.end()
      }
      more()
    })
    const h = await downloader()
    const a = artifactFor(body, s.url())
    await expect(h.d.fetch(a)).rejects.toMatchObject({ code: 'PSW_ERR_WAN_SIZE' })
    expect(s.requests).toHaveLength(1)
    expect(h.limiter.taken).toBeLessThanOrEqual(body.length)
    expect(sent).toBeLessThan(10_000_000)
    expect(await readdir(join(dir, 'partial'))).toEqual([])
  })

  it('refuses a Content-Length that disagrees with the declared size before reading the body', async () => {
    const body = randomBytes(30_000)
    const s = await server((req, res) => serveBytes(req, res, Buffer.concat([body, Buffer.alloc(1)])))
    const h = await downloader()
    await expect(h.d.fetch(artifactFor(body, s.url()))).rejects.toMatchObject({
      code: 'PSW_ERR_WAN_SIZE',
      details: { kind: 'content-length' },
    })
    expect(h.limiter.taken).toBe(0)
  })

  it('a stall times out (PSW_ERR_WAN_TIMEOUT) and the download resumes where it stopped', async () => {
    const body = randomBytes(100_000)
    const s = await server((req, res, i) => serveBytes(req, res, body, i === 0 ? { stallAfter: 40_000 } : {}))
    const h = await downloader({ idleTimeoutMs: 300 })
    const r = await h.d.fetch(artifactFor(body, s.url()))
    expect(sha(await readFile(r.path))).toBe(sha(body))
    expect(h.events.some((e) => e.state === 'retry-wait' && e.lastError?.code === 'PSW_ERR_WAN_TIMEOUT')).toBe(true)
    expect(s.requests[1]!.headers.range).toBe('bytes=40000-')
  })

  it('a slow drip below the minimum rate times out (slow retrieval) and resumes', async () => {
    const body = randomBytes(50_000)
    const s = await server((req, res, i) => {
      if (i > 0) return serveBytes(req, res, body)
      res.writeHead(200, { etag: '"v1"', 'content-length': body.length })
      let at = 0
      const drip = setInterval(() => {
        if (res.destroyed || at >= body.length) return clearInterval(drip)
        res.write(body.subarray(at, at + 10))
        at += 10
      }, 5)
      res.on('close', () => clearInterval(drip))
    })
    const h = await downloader({ idleTimeoutMs: 5_000, minBytesPerSec: 20_000, minRateWindowMs: 150 })
    const r = await h.d.fetch(artifactFor(body, s.url()))
    expect(sha(await readFile(r.path))).toBe(sha(body))
    const timeout = h.events.find((e) => e.lastError?.code === 'PSW_ERR_WAN_TIMEOUT')
    expect(timeout?.lastError?.message).toMatch(/below the minimum/)
    expect(s.requests[1]!.headers.range).toMatch(/^bytes=\d+-$/)
  })

  it('does not count deliberate throttling against the minimum rate, and respects the cap', async () => {
    const body = randomBytes(200_000)
    const s = await server((req, res) => serveBytes(req, res, body))
    // 200 kB/s, 10 kB burst, and a demand of 1 MB/s from the server over 50 ms windows.
    const rate = 200_000
    const h = await downloader(
      { minBytesPerSec: 1_000_000, minRateWindowMs: 50 },
      { timeZone: 'UTC', defaultBytesPerSecond: rate, rules: [] },
      0.05,
    )
    const started = performance.now()
    await h.d.fetch(artifactFor(body, s.url()))
    // Without waiting, at most the burst plus one socket read (≤ 64 KiB, charged as debt) pass.
    const floorMs = ((body.length - rate * 0.05 - 65_536) / rate) * 1000
    expect(performance.now() - started).toBeGreaterThanOrEqual(floorMs - 20)
    expect(s.requests).toHaveLength(1)
    expect(h.limiter.taken).toBe(body.length)
  })

  it('fails at once on 404 (PSW_ERR_WAN_HTTP), retries 503 with backoff, then gives up', async () => {
    const s404 = await server((_req, res) => res.writeHead(404).end())
    const h = await downloader({ maxAttempts: 3 })
    const body = randomBytes(1000)
    await expect(h.d.fetch(artifactFor(body, s404.url()))).rejects.toMatchObject({
      code: 'PSW_ERR_WAN_HTTP',
      details: { status: 404 },
    })
    expect(s404.requests).toHaveLength(1)

    const s503 = await server((_req, res) => res.writeHead(503).end())
    const other = randomBytes(1000)
    await expect(h.d.fetch(artifactFor(other, s503.url()))).rejects.toMatchObject({ code: 'PSW_ERR_WAN_GAVE_UP' })
    expect(s503.requests).toHaveLength(3)
    const waits = h.events.filter((e) => e.sha256 === sha(other) && e.state === 'retry-wait')
    expect(waits).toHaveLength(2)
    expect(waits[0]).toMatchObject({ attempt: 1, lastError: { code: 'PSW_ERR_WAN_HTTP' } })
    expect(waits[0]!.nextRetryAt).toBeGreaterThan(0)
  })

  it('recovers when 503 turns into 200', async () => {
    const body = randomBytes(1000)
    const s = await server((req, res, i) => (i < 2 ? res.writeHead(503).end() : serveBytes(req, res, body)))
    const h = await downloader({ maxAttempts: 3 })
    await h.d.fetch(artifactFor(body, s.url()))
    expect(s.requests).toHaveLength(3)
  })
})

describe('WanDownloader: queue and callers', () => {
  it('emergency artifacts jump the queue', async () => {
    const bodies = { a: randomBytes(1000), b: randomBytes(1000), c: randomBytes(1000) }
    let releaseA!: () => void
    const gate = new Promise<void>((r) => {
      releaseA = r
    })
    let sawA!: () => void
    const aArrived = new Promise<void>((r) => {
      sawA = r
    })
    const s = await server(async (req, res) => {
      const name = req.url!.slice(1) as keyof typeof bodies
      if (name === 'a') {
        sawA()
        await gate
      }
      serveBytes(req, res, bodies[name])
    })
    const h = await downloader({ concurrency: 1 })
    const a = h.d.fetch(artifactFor(bodies.a, s.url('/a')))
    await aArrived
    const b = h.d.fetch(artifactFor(bodies.b, s.url('/b')))
    await h.progress((p) => p.sha256 === sha(bodies.b) && p.state === 'queued')
    const c = h.d.fetch(artifactFor(bodies.c, s.url('/c'), { emergency: true }))
    await h.progress((p) => p.sha256 === sha(bodies.c) && p.state === 'queued')
    expect(h.d.snapshot().map((p) => [p.name, p.state, p.emergency])).toEqual([
      ['pkg', 'downloading', false],
      ['pkg', 'queued', false],
      ['pkg', 'queued', true],
    ])
    releaseA()
    await Promise.all([a, b, c])
    expect(s.requests.map((r) => r.path)).toEqual(['/a', '/c', '/b'])
  })

  it('one caller giving up does not stop the download for the others; the last one does', async () => {
    const body = randomBytes(80_000)
    let h!: Harness
    const s = await server((req, res, i) =>
      i === 0 ? serveThenDrop(() => h, req, res, body, 20_000) : serveBytes(req, res, body),
    )
    h = await downloader()
    const a = artifactFor(body, s.url())
    const ac = new AbortController()
    const leaving = h.d.fetch(a, { signal: ac.signal })
    const staying = h.d.fetch(a)
    await h.progress((p) => p.bytes >= 20_000)
    ac.abort(new Error('not needed'))
    await expect(leaving).rejects.toThrow('not needed')
    await expect(staying).resolves.toMatchObject({ sha256: a.sha256 })

    const other = randomBytes(80_000)
    const s2 = await server((req, res) => serveBytes(req, res, other, { stallAfter: 20_000 }))
    const ac2 = new AbortController()
    const only = h.d.fetch(artifactFor(other, s2.url()), { signal: ac2.signal })
    await h.progress((p) => p.sha256 === sha(other) && p.bytes >= 20_000)
    ac2.abort(new Error('bye'))
    await expect(only).rejects.toThrow('bye')
    await h.d.stop() // waits for the job's cleanup
    const sidecar = JSON.parse(await readFile(join(dir, 'partial', `${sha(other)}.json`), 'utf8'))
    expect(sidecar.bytes).toBe(20_000) // kept for the next sync
  })

  it('rejects bad input and use before start()', async () => {
    const h = await downloader()
    const body = randomBytes(10)
    await expect(h.d.fetch({ ...artifactFor(body, 'http://x/'), sha256: '../../etc/passwd' })).rejects.toMatchObject({
      code: 'PSW_ERR_INVALID_ARGUMENT',
    })
    await expect(h.d.fetch(artifactFor(body, 'ftp://example/x'))).rejects.toMatchObject({
      code: 'PSW_ERR_INVALID_ARGUMENT',
    })
    const idle = new WanDownloader(
      { limiter: h.limiter, clock: systemClock, log: silentLogger() },
      { dir: join(dir, 'other') },
    )
    await expect(idle.fetch(artifactFor(body, 'http://x/'))).rejects.toMatchObject({ code: 'PSW_ERR_CONFLICT' })
    expect(
      () => new WanDownloader({ limiter: h.limiter, clock: systemClock, log: silentLogger() }, { dir, concurrency: 0 }),
    ).toThrow(expect.objectContaining({ code: 'PSW_ERR_INVALID_ARGUMENT' }))
  })

  it('a local file with the wrong content is quarantined; a missing one is PSW_ERR_INGEST_SOURCE', async () => {
    const body = randomBytes(5000)
    const src = join(dir, 'usb.bin')
    await writeFile(src, randomBytes(5000))
    const h = await downloader()
    await expect(h.d.fetch(artifactFor(body, '', { source: { kind: 'file', path: src } }))).rejects.toMatchObject({
      code: 'PSW_ERR_ARTIFACT_HASH',
    })
    expect(h.quarantined).toHaveLength(1)
    expect(await readFile(src)).toHaveLength(5000) // the source is left alone
    await expect(
      h.d.fetch(artifactFor(randomBytes(5), '', { source: { kind: 'file', path: join(dir, 'nope') } })),
    ).rejects.toMatchObject({ code: 'PSW_ERR_INGEST_SOURCE' })
  })
})

describe('WanDownloader.fetchIndex', () => {
  it('returns the document through the cap', async () => {
    const doc = Buffer.from('{"feed":1}')
    const s = await server((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(doc))
    const h = await downloader()
    await expect(h.d.fetchIndex(s.url('/feed.json'), { maxBytes: 1000 })).resolves.toEqual(doc)
    expect(h.limiter.taken).toBe(doc.length)
  })

  it('refuses past maxBytes, by Content-Length and while streaming (PSW_ERR_TOO_LARGE)', async () => {
    const s = await server((req, res) => {
      if (req.url === '/declared') return res.writeHead(200, { 'content-length': 5000 }).end(Buffer.alloc(5000))
      res.writeHead(200)
      res.write(Buffer.alloc(3000))
      res.end(Buffer.alloc(3000))
    })
    const h = await downloader()
    await expect(h.d.fetchIndex(s.url('/declared'), { maxBytes: 4000 })).rejects.toMatchObject({
      code: 'PSW_ERR_TOO_LARGE',
    })
    await expect(h.d.fetchIndex(s.url('/chunked'), { maxBytes: 4000 })).rejects.toMatchObject({
      code: 'PSW_ERR_TOO_LARGE',
    })
  })

  it('maps HTTP errors, stalls and refused connections to PSW_ERR_FEED_FETCH', async () => {
    const s = await server((req, res) => {
      if (req.url === '/500') return res.writeHead(500).end()
      res.writeHead(200)
      res.write('partial') // then silence
    })
    const h = await downloader({ idleTimeoutMs: 100 })
    await expect(h.d.fetchIndex(s.url('/500'), { maxBytes: 100 })).rejects.toMatchObject({
      code: 'PSW_ERR_FEED_FETCH',
      details: { status: 500 },
    })
    await expect(h.d.fetchIndex(s.url('/stall'), { maxBytes: 100 })).rejects.toMatchObject({
      code: 'PSW_ERR_FEED_FETCH',
    })
    const closed = await startTestServer(() => {})
    const url = closed.url('/x')
    await closed.close()
    await expect(h.d.fetchIndex(url, { maxBytes: 100 })).rejects.toMatchObject({ code: 'PSW_ERR_FEED_FETCH' })
  })
})
