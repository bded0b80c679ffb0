/**
 * A three-ring rollout over real agent processes, through the REST API alone: the pilot
 * installs, in the second ring one device's health check fails and it rolls back by itself
 * (the ring still passes: its thresholds allow one failure of two), the appliance is killed
 * with SIGKILL mid-rollout and carries on after its restart, the last ring completes, and a
 * site-wide rollback restores every device's previous files. Agents run one sync cycle at a
 * time (`agent start --once`), so the test decides which device acts when.
 */
import { existsSync } from 'node:fs'
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { adminApi, enroll, type RunningAppliance, runCli, startAppliance, tempDir } from './harness.ts'

interface RingView {
  name: string
  status: string
  total: number
  installed: number
  failed: number
  pending: number
  rolledBack: number
}
interface RolloutView {
  status: string
  reason?: string
  rings: RingView[]
  rollback?: { emergency: boolean }
}
interface DeviceProgress {
  ring: number
  state: string
  lastError?: { code: string; message: string }
}

const OLD = 'listen=80\n'
const NEW = 'listen=8080\n'

describe('a three-ring rollout with a failing health check, a kill -9 and a site-wide rollback', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>
  let app: RunningAppliance
  const agents: Array<{ name: string; dir: string; root: string; peerId: string }> = []
  let bundleId: string
  const broken = () => join(dir.path, 'service-broken')

  const api = async <T>(method: string, path: string, body?: unknown): Promise<T> =>
    (await (await adminApi(app, method, path, body)).json()) as T
  const rollout = () => api<RolloutView>('GET', '/api/v1/rollouts/app-2')
  /** Polls the API (no fixed sleeps) until `test` holds for the rollout; 30 s at most. */
  const until = async (test: (r: RolloutView) => boolean, what: string): Promise<RolloutView> => {
    const deadline = Date.now() + 30_000
    for (;;) {
      const r = await rollout()
      if (test(r)) return r
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(r)}`)
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }
  const devices = async () =>
    (await api<{ devices: Record<string, DeviceProgress> }>('GET', '/api/v1/rollouts/app-2/devices')).devices
  const sync = async (name: string) => {
    const a = agents.find((x) => x.name === name)!
    const r = await runCli(['agent', 'start', '--data', a.dir, '--once'])
    expect(r.code, r.stderr.slice(-3000)).toBe(0)
    return r
  }
  const conf = (name: string) => readFile(join(agents.find((x) => x.name === name)!.root, 'opt/app/app.conf'), 'utf8')

  beforeAll(async () => {
    dir = await tempDir('e2e-rollout')
    app = await startAppliance(join(dir.path, 'appliance'))
    for (let i = 1; i <= 5; i++) {
      const name = `pc-${i}`
      const root = join(dir.path, `root-${i}`)
      // The version before the patch, which a rollback must bring back.
      await mkdir(join(root, 'opt/app'), { recursive: true })
      await writeFile(join(root, 'opt/app/app.conf'), OLD)
      const agentDir = join(dir.path, `agent-${i}`)
      agents.push({ name, dir: agentDir, root, peerId: await enroll(app, agentDir, root, name) })
    }
    const source = join(dir.path, 'app.conf')
    await writeFile(source, NEW)
    // The health check: the "service" is healthy unless the test breaks it.
    const health = {
      checks: [{ type: 'command', argv: ['/bin/sh', '-c', `test ! -e '${broken()}'`], timeoutSeconds: 10 }],
      timeoutSeconds: 20,
    }
    const r = await runCli([
      'appliance',
      'ingest',
      source,
      '--data',
      app.dataDir,
      '--name',
      'app',
      '--version',
      '2',
      '--target-root',
      '/opt/app',
      '--health',
      JSON.stringify(health),
      '--json',
    ])
    expect(r.code, r.stderr).toBe(0)
    bundleId = (JSON.parse(r.stdout) as { record: { bundleId: string } }).record.bundleId
  })

  afterAll(async () => {
    await app?.proc.stop()
    await dir?.cleanup()
  })

  it('advances ring by ring, survives a failed health check and a kill -9, then rolls back site-wide', async () => {
    await api('PUT', `/api/v1/devices/${agents[0]!.peerId}/tags`, { tags: ['pilot'] })
    const created = await api<RolloutView>('POST', '/api/v1/rollouts', {
      id: 'app-2',
      name: 'app 2',
      bundleId,
      target: 'all',
      retries: 0,
      rings: [
        { name: 'pilot', selector: { groups: ['pilot'] }, successThreshold: 1, errorThreshold: 0 },
        { name: 'early', selector: { count: 2 }, successThreshold: 0.5, errorThreshold: 0.5 },
        { name: 'broad', selector: { rest: true }, successThreshold: 1, errorThreshold: 0.5 },
      ],
    })
    expect(created.rings.map((r) => [r.name, r.status, r.total])).toEqual([
      ['pilot', 'deploying', 1],
      ['early', 'pending', 2],
      ['broad', 'pending', 2],
    ])

    // Ring 1: the pilot installs; the early ring starts.
    await sync('pc-1')
    expect(await conf('pc-1')).toBe(NEW)
    await until((r) => r.rings[1]!.status === 'deploying', 'the early ring to start')

    // Ring 2: one device's health check fails — it rolls back by itself; the other installs.
    const progress = await devices()
    const ringOf = (n: number) => agents.filter((a) => progress[a.peerId]?.ring === n).map((a) => a.name)
    const [bad, good] = ringOf(1) as [string, string]
    const broad = ringOf(2)
    expect(broad).toHaveLength(2)
    // A device of an outer ring has nothing to do yet.
    await sync(broad[0]!)
    expect(await conf(broad[0]!)).toBe(OLD)

    await writeFile(broken(), 'down\n')
    await sync(bad)
    expect(await conf(bad)).toBe(OLD)
    await rm(broken())
    await sync(good)
    expect(await conf(good)).toBe(NEW)
    const afterEarly = await until((r) => r.rings[2]!.status === 'deploying', 'the broad ring to start')
    expect(afterEarly.rings[1]).toMatchObject({ status: 'passed', installed: 1, failed: 1 })
    const failed = (await devices())[agents.find((a) => a.name === bad)!.peerId]!
    expect(failed.state).toBe('failed-final')
    expect(failed.lastError?.message).toMatch(/health check failed/)
    // What the device reported, with the health check's log.
    const detail = await api<{ device: { report?: { bundles: Array<{ state: string; health?: { log: string } }> } } }>(
      'GET',
      `/api/v1/devices/${agents.find((a) => a.name === bad)!.peerId}`,
    )
    expect(detail.device.report?.bundles[0]).toMatchObject({ state: 'rolled-back' })
    expect(detail.device.report?.bundles[0]?.health?.log).toMatch(/FAILED/)

    // kill -9 mid-rollout: the broad ring is assigned but nobody installed yet.
    const { httpUrl } = app.info
    const port = new URL(httpUrl).port
    const p2pPort = app.info.multiaddrs[0]!.split('/')[4]!
    await app.proc.stop('SIGKILL')
    app = await startAppliance(app.dataDir, undefined, [
      '--http-port',
      port,
      '--p2p-listen',
      `/ip4/127.0.0.1/tcp/${p2pPort}`,
    ])
    expect((await rollout()).rings[2]!.status).toBe('deploying')
    for (const name of broad) await sync(name)
    for (const name of broad) expect(await conf(name)).toBe(NEW)
    await until((r) => r.status === 'completed', 'the rollout to complete')

    // Site-wide rollback, emergency (no windows here anyway): every installed device restores app.conf.
    const rb = await api<RolloutView>('POST', '/api/v1/rollouts/app-2/rollback', {
      reason: 'app 2 breaks logins',
      emergency: true,
    })
    expect(rb.status).toBe('rolling-back')
    const installed = agents.filter((a) => a.name !== bad)
    for (const a of installed) await sync(a.name)
    for (const a of agents) expect(await conf(a.name)).toBe(OLD)
    const done = await until((r) => r.status === 'rolled-back', 'the rollback to be confirmed')
    expect(done.rings.reduce((n, r) => n + r.rolledBack, 0)).toBe(4)
    // The rolled-back devices' assignments no longer carry the bundle; their agents let it go.
    for (const a of installed) {
      await sync(a.name)
      expect(existsSync(join(a.dir, 'downloads', `${bundleId}.part`))).toBe(false)
    }

    // The audit log tells the story, and its hash chain holds across the kill -9.
    const audit = await api<{ records: Array<{ action: string; after?: Record<string, unknown> }> }>(
      'GET',
      '/api/v1/audit?limit=500&order=asc',
    )
    const actions = audit.records.map((r) => r.action)
    for (const a of ['rollout.create', 'rollout.ring', 'rollout.device', 'rollout.rollback', 'rollout.status'])
      expect(actions).toContain(a)
    expect(audit.records.filter((r) => r.action === 'rollout.status').map((r) => r.after?.status)).toEqual([
      'completed',
      'rolling-back',
      'rolled-back',
    ])
    expect((await api<{ ok: boolean }>('GET', '/api/v1/audit/verify')).ok).toBe(true)
  }, 240_000)
})
