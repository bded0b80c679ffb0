/**
 * The agent against a real in-process appliance (libp2p on 127.0.0.1, ports chosen by the
 * OS), both driven by one ManualClock: downloads happen at once, installs and site-wide
 * rollbacks only when the clock is moved into the maintenance window. Nothing waits for time.
 */
import { existsSync } from 'node:fs'
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Appliance, createAppliance } from '../appliance/appliance.ts'
import { initApplianceDataDir } from '../appliance/core.ts'
import { tempDir } from '../shared/bundle/test-helpers.ts'
import { ManualClock } from '../shared/clock.ts'
import { silentLogger } from '../shared/log.ts'
import type { MaintenanceWindow } from '../shared/policy/window-schema.ts'
import type { BundleReportT } from '../shared/protocol/control-protocol.ts'
import { type Agent, createAgent } from './agent.ts'
import { agentLayout } from './data-dir.ts'
import { enrollAgent } from './enroll.ts'

const MIN = 60_000
const DAY = 24 * 60 * MIN
/** Every day 10:00–11:00 UTC. */
const window: MaintenanceWindow = {
  id: 'morning',
  name: 'Morning',
  timeZone: 'UTC',
  recurrence: { cron: '0 10 * * *' },
  durationMinutes: 60,
  allowReboot: false,
}
// Monday 2026-11-23, 08:00Z: two hours before the window opens.
const START = Date.UTC(2026, 10, 23, 8)
const OPEN = Date.UTC(2026, 10, 23, 10)

describe('agent with maintenance windows and site-wide rollback (in-process appliance, driven clock)', () => {
  const clock = new ManualClock(START)
  let tmp: { dir: string; cleanup: () => Promise<void> }
  let appliance: Appliance
  let agent: Agent | undefined
  let peerId: string
  let agentDir: string
  let target: string

  const startAgent = async () => {
    agent = await createAgent({ dataDir: agentDir, clock, log: silentLogger(), once: true, mdns: false })
    await agent.start()
    return agent
  }
  /** What the appliance holds as this device's last report for a bundle. */
  const reported = async (bundleId: string): Promise<BundleReportT | undefined> =>
    (await appliance.core.devices.get(peerId))?.report?.bundles.find((b) => b.bundleId === bundleId)
  const ingest = async (name: string, files: Record<string, string>) => {
    const src = join(tmp.dir, 'src', name)
    for (const [rel, text] of Object.entries(files)) {
      await mkdir(join(src, rel, '..'), { recursive: true })
      await writeFile(join(src, rel), text)
    }
    const { record } = await appliance.core.ingest({ source: src, name, version: '1.0', targetRoot: '/opt/app' })
    return record.bundleId
  }
  const part = (bundleId: string) => join(agentLayout(agentDir).downloads, `${bundleId}.part`)
  const conf = () => readFile(join(target, 'etc/app.conf'), 'utf8')

  beforeAll(async () => {
    tmp = await tempDir('psw-agent-windows-')
    const dataDir = join(tmp.dir, 'appliance')
    await initApplianceDataDir(dataDir, { clock })
    appliance = await createAppliance({
      dataDir,
      clock,
      log: silentLogger(),
      overrides: {
        httpHost: '127.0.0.1',
        httpPort: 0,
        httpsHost: '127.0.0.1',
        httpsPort: 0,
        p2pListen: ['/ip4/127.0.0.1/tcp/0'],
      },
    })
    const info = await appliance.start()
    const { token } = await appliance.core.enrollment.createToken()
    agentDir = join(tmp.dir, 'agent')
    const installRoot = join(tmp.dir, 'root')
    target = join(installRoot, 'opt/app')
    await mkdir(join(target, 'etc'), { recursive: true })
    await writeFile(join(target, 'etc/app.conf'), 'old config\n')
    const config = await enrollAgent({
      applianceUrl: info.httpUrl,
      token,
      dataDir: agentDir,
      hostname: 'pc-windows',
      installRoot,
      listen: ['/ip4/127.0.0.1/tcp/0'],
      mdns: false,
      now: () => clock.now(),
    })
    peerId = config.peerId
    // The device's group carries the window (the appliance's window sync keeps it so); set it
    // on the assignment at once rather than waiting for the sync's next pass.
    await appliance.core.groups.create({
      id: 'office',
      name: 'Office',
      match: { peerIds: [peerId] },
      windows: [window],
    })
    await appliance.core.assignments.setWindows([peerId], [window])
  })

  afterAll(async () => {
    await agent?.stop()
    await appliance?.stop()
    await tmp?.cleanup()
  })

  let app: string
  let tool: string

  it('downloads at once but installs only when the clock is in the window', async () => {
    app = await ingest('app', { 'etc/app.conf': 'new config\n', 'bin/run': 'run v1\n' })
    await appliance.core.assignments.assign(app, [peerId])
    const a = await startAgent()
    await a.syncOnce()
    expect(await reported(app)).toMatchObject({ state: 'downloaded', chunksHave: 1, chunksTotal: 1 })
    expect(await conf()).toBe('old config\n')
    // A poll later, still before the window: nothing changes.
    clock.set(OPEN - 5 * MIN)
    await a.syncOnce()
    expect(await reported(app)).toMatchObject({ state: 'downloaded' })
    expect(await conf()).toBe('old config\n')

    clock.set(OPEN + 5 * MIN)
    await a.syncOnce()
    expect(await reported(app)).toMatchObject({ state: 'installed', log: expect.stringMatching(/installed 2 files/) })
    expect((await reported(app))?.action).toBeUndefined()
    expect(await conf()).toBe('new config\n')
    expect(await readFile(join(target, 'bin/run'), 'utf8')).toBe('run v1\n')
  })

  it('rolls back site-wide inside the window; a bundle that never got installed answers at once', async () => {
    const a = agent!
    // A second bundle, downloaded after the window closed: it waits for tomorrow's window.
    clock.set(OPEN + 2 * 60 * MIN)
    tool = await ingest('tool', { 'bin/tool': 'tool\n' })
    await appliance.core.assignments.assign(tool, [peerId])
    await a.syncOnce()
    expect(await reported(tool)).toMatchObject({ state: 'downloaded' })
    expect(existsSync(part(tool))).toBe(true)

    // Site-wide rollback of both, outside the window.
    await appliance.core.assignments.apply(app, { rollback: [peerId] })
    await appliance.core.assignments.apply(tool, { rollback: [peerId] })
    await a.syncOnce()
    expect(await reported(tool)).toMatchObject({
      state: 'rolled-back',
      action: 'rollback',
      detail: 'not installed here; nothing to roll back',
    })
    expect(existsSync(part(tool))).toBe(false)
    expect(existsSync(join(target, 'bin/tool'))).toBe(false)
    // Installed: it waits for the window like an install, and is no longer offered to peers.
    expect(await reported(app)).toMatchObject({ state: 'installed', action: 'rollback' })
    expect(await conf()).toBe('new config\n')
    expect(existsSync(part(app))).toBe(false)
    const device = await appliance.core.devices.get(peerId)
    expect(device?.report?.assignmentVersion).toBe((await appliance.core.assignments.get(peerId))?.signed.version)

    clock.set(OPEN + DAY + 5 * MIN)
    await a.syncOnce()
    expect(await reported(app)).toMatchObject({
      state: 'rolled-back',
      action: 'rollback',
      log: 'restored the backed-up files and removed the new ones',
    })
    expect(await conf()).toBe('old config\n')
    expect(await readdir(target)).toEqual(['etc'])
  })

  it('does not roll back twice, also after a restart, and installs again when re-assigned', async () => {
    await writeFile(join(target, 'etc/app.conf'), 'edited after the rollback\n')
    await agent!.syncOnce()
    await agent!.stop()
    agent = undefined
    const a = await startAgent()
    await a.syncOnce()
    expect(await reported(app)).toMatchObject({ state: 'rolled-back', action: 'rollback' })
    expect(await conf()).toBe('edited after the rollback\n')

    // A new rollout of the same bundle: an install again (inside the window).
    await writeFile(join(target, 'etc/app.conf'), 'old config\n')
    await appliance.core.assignments.assign(app, [peerId])
    await a.syncOnce()
    expect(await reported(app)).toMatchObject({ state: 'installed' })
    expect((await reported(app))?.action).toBeUndefined()
    expect(await conf()).toBe('new config\n')
  })
})
