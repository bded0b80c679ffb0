import { createHash } from 'node:crypto'
import { createReadStream, existsSync } from 'node:fs'
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  applianceStatus,
  assign,
  CliProcess,
  enroll,
  ingest,
  type RunningAppliance,
  runCli,
  startAppliance,
  tempDir,
  writeRandomFile,
} from './harness.ts'

const MiB = 1 << 20

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256')
  for await (const c of createReadStream(path)) h.update(c as Buffer)
  return h.digest('hex')
}

async function chunkFiles(dataDir: string): Promise<Set<string>> {
  const out = new Set<string>()
  const root = join(dataDir, 'chunks')
  for (const shard of await readdir(root)) {
    if (!/^[0-9a-f]{2}$/.test(shard)) continue
    for (const f of await readdir(join(root, shard))) out.add(join(root, shard, f))
  }
  return out
}

describe('one patch end to end (real appliance and agent processes on 127.0.0.1)', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>
  let app: RunningAppliance
  let artifact: string
  let artifactHash: string
  let bundleId: string
  let chunks: number
  let bundleSize: number

  beforeAll(async () => {
    dir = await tempDir('e2e')
    app = await startAppliance(join(dir.path, 'appliance'))
    artifact = join(dir.path, 'vendor-patch.bin')
    await writeRandomFile(artifact, 64 * MiB)
    artifactHash = await sha256File(artifact)
    const r = await ingest(app, artifact, 'vendor-patch', '1.0.0', '/opt/vendor')
    bundleId = r.record.bundleId
    chunks = r.record.chunks
    bundleSize = r.record.size
  })

  afterAll(async () => {
    await app?.proc.stop()
    await dir?.cleanup()
  })

  it('installs a 64 MiB artifact byte for byte and reports it', async () => {
    const root = join(dir.path, 'root1')
    const peer = await enroll(app, join(dir.path, 'agent1'), root, 'pc-1')
    await assign(app, 'vendor-patch@1.0.0', peer)
    const run = await runCli(['agent', 'start', '--data', join(dir.path, 'agent1'), '--once'])
    expect(run.code, run.stderr).toBe(0)
    const installed = join(root, 'opt', 'vendor', 'vendor-patch.bin')
    expect(await sha256File(installed)).toBe(artifactHash)
    const status = await applianceStatus(app)
    const b = status.devices.find((d) => d.peerId === peer)?.report?.bundles.find((x) => x.bundleId === bundleId)
    expect(b?.state).toBe('installed')
    // every byte of the bundle came from the appliance, exactly once
    expect(b?.transfer.bytesFromAppliance).toBe(bundleSize)
    expect(bundleSize).toBeGreaterThan(64 * MiB)
  })

  it('resumes after kill -9 mid-download, fetching only the chunks it lacks', async () => {
    const agentDir = join(dir.path, 'agent2')
    const root = join(dir.path, 'root2')
    const peer = await enroll(app, agentDir, root, 'pc-2')
    await assign(app, 'vendor-patch@1.0.0', peer)
    // Rate-capped so the download is surely in progress when we kill it.
    const agent = new CliProcess(['agent', 'start', '--data', agentDir, '--max-download-rate', String(16 * MiB)])
    await agent.waitForLog('downloading', (e) => Number(e.have) >= 12)
    agent.child.kill('SIGKILL')
    await agent.exited
    expect(existsSync(join(root, 'opt', 'vendor', 'vendor-patch.bin'))).toBe(false)

    const resumed = new CliProcess(['agent', 'start', '--data', agentDir, '--once'])
    expect(await resumed.exited).toBe(0)
    const resume = resumed.logs().find((e) => e.msg === 'resuming download from verified chunks')
    const done = resumed.logs().find((e) => e.msg === 'download complete and verified')
    expect(Number(resume?.reusedChunks)).toBeGreaterThanOrEqual(12)
    expect(Number(done?.fetchedChunks)).toBe(chunks - Number(resume?.reusedChunks))
    expect(Number(done?.fetchedChunks)).toBeLessThan(chunks)
    expect(await sha256File(join(root, 'opt', 'vendor', 'vendor-patch.bin'))).toBe(artifactHash)
  })

  it('refuses a chunk tampered on the appliance disk and installs nothing', async () => {
    const before = await chunkFiles(app.dataDir)
    const small = join(dir.path, 'small-fix')
    await writeRandomFile(small, 3 * MiB)
    await ingest(app, small, 'small-fix', '2.0', '/opt/small')
    const added = [...(await chunkFiles(app.dataDir))].filter((f) => !before.has(f))
    expect(added.length).toBeGreaterThanOrEqual(3)
    const victim = added[1]!
    const bytes = await readFile(victim)
    bytes[100] = (bytes[100] ?? 0) ^ 0xff
    await writeFile(victim, bytes)

    const root = join(dir.path, 'root3')
    const peer = await enroll(app, join(dir.path, 'agent3'), root, 'pc-3')
    await assign(app, 'small-fix@2.0', peer)
    const run = await runCli(['agent', 'start', '--data', join(dir.path, 'agent3'), '--once'])
    expect(run.code).toBe(0)
    expect(run.stderr).toContain('PSW_ERR_CHUNK_HASH')
    expect(existsSync(join(root, 'opt', 'small', 'small-fix'))).toBe(false)
    const status = await applianceStatus(app)
    const b = status.devices.find((d) => d.peerId === peer)?.report?.bundles[0]
    expect(b?.state).toBe('failed')
    expect(b?.error?.code).toBe('PSW_ERR_CHUNK_HASH')
  })
})
