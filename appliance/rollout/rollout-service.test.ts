import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { silentLogger } from '../../shared/log.ts'
import type { AgentReportT } from '../../shared/protocol/control-protocol.ts'
import { enrollNewAgent, ingestSmallBundle, openTestAppliance, type TestAppliance } from '../test-fixtures.ts'
import { RolloutService } from './rollout-service.ts'

const op = { type: 'operator', id: 'alice' } as const

describe('RolloutService (real core: LevelDB, signed assignments, audit log)', () => {
  let t: TestAppliance
  let service: RolloutService
  let bundleId: string
  const peers: string[] = []

  beforeEach(async () => {
    t = await openTestAppliance()
    bundleId = (await ingestSmallBundle(t, 'tool', '1')).bundleId
    peers.length = 0
    for (let i = 0; i < 4; i++) peers.push((await enrollNewAgent(t.core, `pc-${i}`)).peerId)
    await t.core.devices.setTags(peers[0]!, ['pilot'])
    service = new RolloutService({
      db: t.core.db,
      catalog: t.core.catalog,
      assignments: t.core.assignments,
      audit: t.core.audit,
      devices: () => t.core.devices.list(),
      clock: t.clock,
      log: silentLogger(),
      engine: { retryDelayMs: 60_000 },
    })
  })

  afterEach(async () => {
    await service.stop()
    await t.cleanup()
  })

  const assigned = async () => {
    const out: string[] = []
    for (const p of peers)
      if ((await t.core.assignments.get(p))?.signed.bundles.some((b) => b.bundleId === bundleId)) out.push(p)
    return out
  }

  /** What the agent would report after processing its current assignment. */
  const report = async (peerId: string, state: 'installed' | 'failed' | 'rolled-back') => {
    const assignment = await t.core.assignments.get(peerId)
    const r: AgentReportT = {
      agentVersion: 'test',
      hostname: peerId.slice(0, 8),
      assignmentVersion: assignment?.signed.version ?? 0,
      bundles: [
        {
          bundleId,
          state,
          chunksHave: 1,
          chunksTotal: 1,
          transfer: { bytesFromAppliance: 1, bytesFromPeers: 0, bytesServed: 0 },
          ...(state === 'failed' ? { error: { code: 'PSW_ERR_INSTALL_FAILED', message: 'health check failed' } } : {}),
        },
      ],
    }
    await t.core.devices.recordReport(peerId, r, t.clock.now())
  }

  const spec = {
    id: 'tool-1',
    name: 'tool 1',
    bundleId: '',
    target: 'all' as const,
    retries: 1,
    rings: [
      { name: 'pilot', selector: { groups: ['pilot'] }, successThreshold: 1, errorThreshold: 0.5 },
      { name: 'broad', selector: { rest: true as const }, successThreshold: 1, errorThreshold: 0.5 },
    ],
  }

  it('assigns ring by ring from reports, and records every transition in the audit log', async () => {
    const created = await service.create({ ...spec, bundleId }, op)
    expect(created.rings.map((r) => r.status)).toEqual(['deploying', 'pending'])
    expect(await assigned()).toEqual([peers[0]])

    // A report from before the assignment (older version) does not count.
    await service.poll()
    expect((await service.get('tool-1')).devices[peers[0]!]!.state).toBe('assigned')

    await report(peers[0]!, 'installed')
    await service.poll()
    const after = await service.get('tool-1')
    expect(after.rings.map((r) => r.status)).toEqual(['passed', 'deploying'])
    expect((await assigned()).sort()).toEqual([...peers].sort())

    for (const p of peers.slice(1)) await report(p, 'installed')
    await service.poll()
    expect((await service.get('tool-1')).status).toBe('completed')

    const { records } = await t.core.audit.query({ limit: 100, order: 'asc' })
    const actions = records.map((r) => r.action)
    expect(actions[0]).toBe('rollout.create')
    expect(actions).toContain('rollout.ring')
    expect(
      records.filter((r) => r.action === 'rollout.device' && (r.after as { state: string }).state === 'installed'),
    ).toHaveLength(4)
    expect(records.at(-1)).toMatchObject({ action: 'rollout.status', after: { status: 'completed' } })
    expect((await t.core.audit.verify()).ok).toBe(true)
  })

  it('re-issues the assignment for a retry, and halts when retries are spent; pending devices lose the bundle', async () => {
    const ring = { ...spec.rings[0]!, selector: { rest: true as const }, errorThreshold: 0.25 }
    await service.create({ ...spec, bundleId, rings: [ring] }, op)
    expect((await assigned()).length).toBe(4)
    const v1 = (await t.core.assignments.get(peers[0]!))!.signed.version
    await report(peers[0]!, 'failed')
    await service.poll()
    expect((await service.get('tool-1')).devices[peers[0]!]).toMatchObject({ state: 'retry-wait', attempts: 1 })
    t.clock.advance(61_000)
    await service.poll()
    // Retry: the same bundle, a new assignment version, so the agent tries again.
    const v2 = (await t.core.assignments.get(peers[0]!))!.signed.version
    expect(v2).toBeGreaterThan(v1)
    // The old failure report (for v1) does not count against the new attempt.
    await service.poll()
    expect((await service.get('tool-1')).devices[peers[0]!]!.state).toBe('assigned')
    await report(peers[0]!, 'failed')
    await report(peers[1]!, 'failed')
    await service.poll()
    t.clock.advance(61_000)
    await service.poll()
    await report(peers[1]!, 'failed')
    await service.poll()
    // Two of four failed for good: above the 25 % error threshold.
    const halted = await service.get('tool-1')
    expect(halted.status).toBe('halted')
    expect(halted.reason).toMatch(/2 of 4 devices failed/)
    // Nothing installed, so every device loses the bundle from its assignment.
    expect(await assigned()).toEqual([])
  })

  it('refuses a rollout of an unknown bundle, a duplicate id, and commands that do not fit', async () => {
    await expect(service.create({ ...spec, bundleId: 'cd'.repeat(32) }, op)).rejects.toMatchObject({
      code: 'PSW_ERR_NOT_FOUND',
    })
    await expect(service.create({ ...spec, bundleId, rings: [] }, op)).rejects.toMatchObject({ code: 'PSW_ERR_SCHEMA' })
    await service.create({ ...spec, bundleId }, op)
    await expect(service.create({ ...spec, bundleId }, op)).rejects.toMatchObject({ code: 'PSW_ERR_CONFLICT' })
    await expect(service.command('tool-1', { type: 'resume', by: 'alice' }, op)).rejects.toMatchObject({
      code: 'PSW_ERR_CONFLICT',
    })
    const paused = await service.command('tool-1', { type: 'pause', by: 'alice' }, op)
    expect(paused.status).toBe('paused')
    expect(await assigned()).toEqual([])
    await expect(service.get('nope')).rejects.toMatchObject({ code: 'PSW_ERR_NOT_FOUND' })
  })

  it('rolls back site-wide with a new signed instruction, counts only answers to it, and frees the bundle', async () => {
    await service.create({ ...spec, bundleId }, op)
    await report(peers[0]!, 'installed')
    await service.poll()
    // Pilot installed; broad ring assigned, one of them installed too.
    await report(peers[1]!, 'installed')
    await service.poll()
    const before = (await t.core.assignments.get(peers[0]!))!.signed.version
    const r = await service.rollback('tool-1', { reason: 'breaks printing', emergency: true }, op)
    expect(r.status).toBe('rolling-back')
    expect(r.rollback).toMatchObject({ by: 'alice', reason: 'breaks printing', emergency: true })
    // Installed and assigned devices are all told to roll back, in a newer signed assignment.
    for (const p of peers) {
      const a = (await t.core.assignments.get(p))!.signed
      expect(a.bundles).toEqual([expect.objectContaining({ bundleId, action: 'rollback', emergency: true })])
      expect(a.version).toBeGreaterThan(before)
      expect(r.devices[p]!.state).toBe('rolling-back')
    }
    // The install report of peer 0 (from before the rollback) does not count as its answer.
    await service.poll()
    expect((await service.get('tool-1')).devices[peers[0]!]!.state).toBe('rolling-back')
    await report(peers[0]!, 'rolled-back')
    await report(peers[1]!, 'failed')
    await service.poll()
    const mid = await service.get('tool-1')
    expect(mid.devices[peers[0]!]!.state).toBe('rolled-back')
    expect(mid.devices[peers[1]!]).toMatchObject({
      state: 'rollback-failed',
      lastError: { code: 'PSW_ERR_INSTALL_FAILED' },
    })
    // Confirmed: the entry is gone. Failed: it stays (the device keeps its snapshot).
    expect(await assigned()).toEqual(peers.slice(1))
    for (const p of peers.slice(2)) await report(p, 'rolled-back')
    await service.poll()
    expect((await service.get('tool-1')).status).toBe('rolled-back')
    expect(await assigned()).toEqual([peers[1]])
    await expect(service.rollback('tool-1', {}, op)).rejects.toMatchObject({ code: 'PSW_ERR_CONFLICT' })
    const { records } = await t.core.audit.query({ limit: 200, order: 'asc' })
    expect(records.find((x) => x.action === 'rollout.rollback')).toMatchObject({
      actor: op,
      after: { status: 'rolling-back', reason: 'breaks printing', emergency: true },
    })
    expect(records.at(-1)).toMatchObject({ action: 'rollout.status', after: { status: 'rolled-back' } })
  })

  it('refuses a second live rollout of the same bundle, and allows one after a rollback or cancel', async () => {
    await service.create({ ...spec, bundleId }, op)
    await expect(service.create({ ...spec, id: 'again', bundleId }, op)).rejects.toMatchObject({
      code: 'PSW_ERR_CONFLICT',
      details: { rollout: 'tool-1', status: 'active' },
    })
    await service.command('tool-1', { type: 'cancel', by: 'alice' }, op)
    const again = await service.create({ ...spec, id: 'again', bundleId }, op)
    expect(again.status).toBe('active')
    expect(await assigned()).toEqual([peers[0]])
  })
  it('sees an assignment changed by hand at the next resync of its index of assignments', async () => {
    const resyncing = new RolloutService({
      db: t.core.db,
      catalog: t.core.catalog,
      assignments: t.core.assignments,
      audit: t.core.audit,
      devices: () => t.core.devices.list(),
      clock: t.clock,
      log: silentLogger(),
      resyncMs: 5 * 60_000,
    })
    await resyncing.create({ ...spec, bundleId }, op)
    expect(await assigned()).toEqual([peers[0]])
    // By hand, outside the rollout: the bundle to a device of the broad ring (not started).
    await t.core.assignments.assign(bundleId, [peers[1]!])
    t.clock.advance(5 * 60_000)
    await resyncing.poll()
    // The rollout holds its bundle's assignments: the broad ring has not started.
    expect(await assigned()).toEqual([peers[0]])
    // And the index follows what it just did: reports of the pilot count as before.
    await report(peers[0]!, 'installed')
    await resyncing.poll()
    expect((await resyncing.get('tool-1')).rings.map((r) => r.status)).toEqual(['passed', 'deploying'])
    expect((await assigned()).sort()).toEqual([...peers].sort())
  })

  it('a write that fails changes nothing: the state in memory stays, the next pass does it, the audit chain holds', async () => {
    let failNext = false
    const db = {
      ...t.core.db,
      async batch(ops: Parameters<typeof t.core.db.batch>[0]) {
        if (failNext) {
          failNext = false
          throw new Error('injected: disk full')
        }
        return t.core.db.batch(ops)
      },
    }
    const flaky = new RolloutService({
      db,
      catalog: t.core.catalog,
      assignments: t.core.assignments,
      audit: t.core.audit,
      devices: () => t.core.devices.list(),
      clock: t.clock,
      log: silentLogger(),
    })
    await flaky.create({ ...spec, bundleId }, op)
    await report(peers[0]!, 'installed')
    failNext = true
    await expect(flaky.poll()).rejects.toThrow(/injected/)
    expect((await flaky.get('tool-1')).devices[peers[0]!]!.state).toBe('assigned')
    expect(await assigned()).toEqual([peers[0]])
    await flaky.poll()
    expect((await flaky.get('tool-1')).devices[peers[0]!]!.state).toBe('installed')
    expect((await assigned()).sort()).toEqual([...peers].sort())
    expect((await t.core.audit.verify()).ok).toBe(true)
    // What another service (a restart) loads from the database is what this one holds.
    const fresh = new RolloutService({
      db: t.core.db,
      catalog: t.core.catalog,
      assignments: t.core.assignments,
      audit: t.core.audit,
      devices: () => t.core.devices.list(),
      clock: t.clock,
      log: silentLogger(),
    })
    expect(await fresh.get('tool-1')).toEqual(await flaky.get('tool-1'))
    expect(await fresh.list()).toEqual(await flaky.list())
  })
})
