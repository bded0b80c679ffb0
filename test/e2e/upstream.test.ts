import { createHash, randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import * as tar from 'tar-stream'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  entry,
  type FeedServer,
  feedBytes,
  feedDoc,
  startFeedServer,
} from '../../appliance/upstream/vendor-feed-test-helpers.ts'
import { serveBytes, startTestServer } from '../../appliance/upstream/wan-test-helpers.ts'
import {
  adminGet,
  applianceStatus,
  assign,
  enroll,
  type RunningAppliance,
  runCli,
  startAppliance,
  tempDir,
} from './harness.ts'

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex')

/** A vendor's plain tar (no patchswarm bundle.json): what a `files` feed artifact is. */
async function vendorTar(files: Record<string, Buffer>): Promise<Buffer> {
  const pack = tar.pack()
  const parts: Buffer[] = []
  pack.on('data', (d) => parts.push(d as Buffer))
  const ended = new Promise<void>((resolve) => pack.on('end', () => resolve()))
  pack.entry({ name: 'bin', type: 'directory', mode: 0o755 })
  pack.entry({ name: 'etc', type: 'directory', mode: 0o755 })
  for (const [name, body] of Object.entries(files)) pack.entry({ name, mode: 0o644 }, body)
  pack.finalize()
  await ended
  return Buffer.concat(parts)
}

async function until<T>(probe: () => Promise<T | undefined>, what: string, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await probe()
    if (v !== undefined) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

describe('upstream end to end (a real feed server, appliance and agent processes on 127.0.0.1)', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>
  let server: FeedServer
  let app: RunningAppliance
  let artifact: Buffer
  const tool = randomBytes(200_000)
  const conf = Buffer.from('level = 2\n')

  beforeAll(async () => {
    dir = await tempDir('e2e-upstream')
    server = await startFeedServer()
    artifact = await vendorTar({ 'bin/tool': tool, 'etc/tool.conf': conf })
    server.files.set('/files/tool-2.0.tar', artifact)
    // An emergency whose bytes are not what the feed says: fetched automatically, quarantined.
    const bad = randomBytes(5000)
    server.files.set('/files/hotfix.tar', randomBytes(5000))
    const now = new Date().toISOString()
    server.files.set(
      '/feed.json',
      feedBytes(
        feedDoc(
          [
            entry('tool-2.0', {
              url: 'files/tool-2.0.tar',
              size: artifact.length,
              sha256: sha(artifact),
              name: 'tool',
              version: '2.0',
              installer: { type: 'files', targetRoot: '/opt/tool' },
            }),
            entry('hotfix', {
              url: 'files/hotfix.tar',
              size: bad.length,
              sha256: sha(bad),
              name: 'hotfix',
              version: '1',
              emergency: true,
            }),
          ],
          { generated: now, expires: new Date(Date.now() + 86_400_000).toISOString() },
        ),
      ),
    )
    const dataDir = join(dir.path, 'appliance')
    const init = await runCli(['appliance', 'init', '--data', dataDir])
    expect(init.code, init.stderr).toBe(0)
    const configPath = join(dataDir, 'appliance.json')
    const config = JSON.parse(await readFile(configPath, 'utf8'))
    config.upstream = {
      feeds: [{ id: 'acme', kind: 'patchswarm', url: server.url('/feed.json') }],
      syncIntervalMinutes: 60,
      wan: { schedule: { timeZone: 'Europe/Berlin', defaultBytesPerSecond: 0, rules: [] } },
      cache: { quotaBytes: 1 << 30 },
      autoDownload: { severities: [], classifications: [], emergency: true },
    }
    await writeFile(configPath, JSON.stringify(config, null, 2))
    app = await startAppliance(dataDir)
  })

  afterAll(async () => {
    await app?.proc.stop()
    await server?.close()
    await dir?.cleanup()
  })

  it('syncs the feed, downloads an artifact once, quarantines a bad one, and agents install the vendor bytes', async () => {
    // The appliance syncs at start; an operator's sync now gives the same listing.
    const sync = await runCli(['appliance', 'upstream', 'sync', '--data', app.dataDir, '--json'])
    expect(sync.code, sync.stderr).toBe(0)
    expect(JSON.parse(sync.stdout)).toEqual([expect.objectContaining({ feedId: 'acme', ok: true, artifacts: 2 })])

    // The emergency was fetched without anyone asking, failed verification and was quarantined.
    await until(async () => {
      const r = await runCli([
        'appliance',
        'upstream',
        'list',
        '--data',
        app.dataDir,
        '--state',
        'quarantined',
        '--json',
      ])
      const list = JSON.parse(r.stdout) as Array<{ ref: string; error?: { code: string } }>
      return list.find((a) => a.ref === 'acme/hotfix' && a.error?.code === 'PSW_ERR_ARTIFACT_HASH')
    }, 'the tampered emergency to be quarantined')
    await app.proc.waitForLog('ALERT: an upstream artifact failed verification and was quarantined')

    const fetched = await runCli(['appliance', 'upstream', 'fetch', 'acme/tool-2.0', '--data', app.dataDir, '--json'])
    expect(fetched.code, fetched.stderr).toBe(0)
    const ready = JSON.parse(fetched.stdout) as { state: string; bundleId: string }
    expect(ready.state).toBe('ready')
    // A raw bundle: its id is the vendor's SHA-256 of the artifact.
    expect(ready.bundleId).toBe(sha(artifact))

    const peers: string[] = []
    for (let i = 0; i < 3; i++)
      peers.push(await enroll(app, join(dir.path, `agent${i}`), join(dir.path, `root${i}`), `pc-${i}`))
    for (const p of peers) await assign(app, ready.bundleId, p)
    const runs = await Promise.all(
      peers.map((_, i) => runCli(['agent', 'start', '--data', join(dir.path, `agent${i}`), '--once'])),
    )
    for (const r of runs) expect(r.code, r.stderr).toBe(0)
    for (let i = 0; i < 3; i++) {
      expect(await readFile(join(dir.path, `root${i}`, 'opt', 'tool', 'bin', 'tool'))).toEqual(tool)
      expect(await readFile(join(dir.path, `root${i}`, 'opt', 'tool', 'etc', 'tool.conf'))).toEqual(conf)
    }
    // One WAN download for three installs (and none for asking again).
    expect(server.requests.filter((r) => r === '/files/tool-2.0.tar')).toHaveLength(1)
    const again = await runCli(['appliance', 'upstream', 'fetch', 'acme/tool-2.0', '--data', app.dataDir, '--json'])
    expect(again.code).toBe(0)
    expect(server.requests.filter((r) => r === '/files/tool-2.0.tar')).toHaveLength(1)

    const status = await applianceStatus(app)
    for (const p of peers) {
      const b = status.devices.find((d) => d.peerId === p)?.report?.bundles.find((x) => x.bundleId === ready.bundleId)
      expect(b?.state).toBe('installed')
    }

    // The audit log has what the operator and the system did, and its chain verifies.
    const audit = (await (await adminGet(app, '/api/v1/audit?limit=100')).json()) as {
      records: Array<{ action: string; actor: { type: string }; target: { id: string } }>
    }
    const actions = audit.records.map((r) => `${r.action} ${r.target.id}`)
    expect(actions).toContain('upstream.requested acme/hotfix')
    expect(actions).toContain('upstream.quarantined acme/hotfix')
    expect(actions).toContain('upstream.requested acme/tool-2.0')
    expect(actions).toContain('upstream.ready acme/tool-2.0')
    expect(actions.filter((a) => a.startsWith('bundle.assign'))).toHaveLength(3)
    const verify = (await (await adminGet(app, '/api/v1/audit/verify')).json()) as { ok: boolean }
    expect(verify.ok).toBe(true)

    // Metrics: WAN bytes counted, and what the agents received is more than the WAN carried.
    const metrics = await (await adminGet(app, '/metrics')).text()
    const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(metrics)?.[1])
    expect(value('patchswarm_wan_bytes_total')).toBeGreaterThanOrEqual(artifact.length)
    expect(value('patchswarm_delivered_bytes_total')).toBe(3 * artifact.length)
    expect(value('patchswarm_saved_wan_bytes_total')).toBeGreaterThan(0)
  })
})

describe('upstream download across a kill -9 of the appliance (faults rows 6 and 18)', () => {
  it('resumes the download with a Range request after a restart, and ingests the whole artifact', async () => {
    const dir = await tempDir('e2e-upstream-kill')
    const body = randomBytes(3 << 20)
    let artifactRequests = 0
    const server = await startTestServer((req, res) => {
      if (req.url === '/feed.json') {
        const doc = feedDoc(
          [entry('big', { url: 'files/big.bin', size: body.length, sha256: sha(body), name: 'big', version: '1' })],
          { generated: new Date().toISOString(), expires: new Date(Date.now() + 86_400_000).toISOString() },
        )
        res.writeHead(200, { 'content-type': 'application/json' }).end(feedBytes(doc))
        return
      }
      if (req.url !== '/files/big.bin') return res.writeHead(404).end()
      // The first attempt sends 1 MiB and then stalls: the download is surely in progress.
      artifactRequests++
      serveBytes(req, res, body, artifactRequests === 1 ? { stallAfter: 1 << 20 } : {})
    })
    let app: RunningAppliance | undefined
    try {
      const dataDir = join(dir.path, 'appliance')
      expect((await runCli(['appliance', 'init', '--data', dataDir])).code).toBe(0)
      const configPath = join(dataDir, 'appliance.json')
      const config = JSON.parse(await readFile(configPath, 'utf8'))
      config.upstream = {
        feeds: [{ id: 'acme', kind: 'patchswarm', url: server.url('/feed.json') }],
        syncIntervalMinutes: 60,
        // Checkpoint often, so what arrived before the kill is on disk.
        wan: {
          schedule: { timeZone: 'UTC', defaultBytesPerSecond: 0, rules: [] },
          downloader: { checkpointBytes: 65536, checkpointMs: 100 },
        },
        cache: { quotaBytes: 0 },
        autoDownload: { severities: [], classifications: [], emergency: false },
      }
      await writeFile(configPath, JSON.stringify(config, null, 2))
      app = await startAppliance(dataDir)
      expect((await runCli(['appliance', 'upstream', 'sync', '--data', dataDir])).code).toBe(0)
      const queued = await runCli([
        'appliance',
        'upstream',
        'fetch',
        'acme/big',
        '--no-wait',
        '--data',
        dataDir,
        '--json',
      ])
      expect(queued.code, queued.stderr).toBe(0)
      const sidecar = join(dataDir, 'upstream', 'partial', `${sha(body)}.json`)
      await until(async () => {
        if (!existsSync(sidecar)) return undefined
        const s = JSON.parse(await readFile(sidecar, 'utf8')) as { bytes?: number }
        return (s.bytes ?? 0) > 0 ? true : undefined
      }, 'a checkpoint of the partial download')
      await app.proc.stop('SIGKILL')

      app = await startAppliance(dataDir)
      const ready = await until(async () => {
        const r = await runCli(['appliance', 'upstream', 'list', '--data', dataDir, '--json'])
        const a = (JSON.parse(r.stdout) as Array<{ ref: string; state: string; bundleId?: string }>).find(
          (x) => x.ref === 'acme/big',
        )
        return a?.state === 'ready' ? a : undefined
      }, 'the artifact to be ready after the restart')
      expect(ready.bundleId).toBe(sha(body))
      // The second attempt asked only for the rest.
      const resumed = server.requests.filter((r) => r.path === '/files/big.bin')[1]
      expect(resumed?.headers.range).toMatch(/^bytes=[1-9]\d*-$/)
      expect(resumed?.headers['if-range']).toBe('"v1"')
    } finally {
      await app?.proc.stop()
      await server.close()
      await dir.cleanup()
    }
  })
})
