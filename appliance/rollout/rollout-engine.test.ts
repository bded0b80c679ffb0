import { describe, expect, it } from 'vitest'
import { seededRandom } from '../../shared/swarm/chunk-picker.ts'
import { type DeviceInfo, rolloutOrder } from './ring-selection.ts'
import {
  applyEvent,
  createRollout,
  desiredDevices,
  nextWakeAt,
  type RolloutEvent,
  ringCounts,
  rollbackDevices,
  type Transition,
} from './rollout-engine.ts'
import type { RolloutSpecT, RolloutState } from './rollout-types.ts'

const BUNDLE = 'ab'.repeat(32)
const MIN = 60_000
const T0 = Date.UTC(2026, 10, 24, 9)

function devices(n: number, groupsOf: (i: number) => string[] = () => ['site']): DeviceInfo[] {
  return Array.from({ length: n }, (_, i) => ({ peerId: `pc-${String(i).padStart(4, '0')}`, groups: groupsOf(i) }))
}

function spec(over: Partial<RolloutSpecT> = {}): RolloutSpecT {
  return {
    id: 'r1',
    name: 'openssl 3.0.15',
    bundleId: BUNDLE,
    target: 'all',
    retries: 0,
    rings: [
      { name: 'pilot', selector: { groups: ['pilot'] }, successThreshold: 1, errorThreshold: 0 },
      { name: 'early', selector: { percent: 50 }, successThreshold: 0.9, errorThreshold: 0.1 },
      { name: 'broad', selector: { rest: true }, successThreshold: 0.95, errorThreshold: 0.05 },
    ],
    ...over,
  }
}

const pilotOf = (i: number) => (i < 3 ? ['pilot', 'site'] : ['site'])

function apply(t: Transition, e: RolloutEvent, now: number, retryDelayMs = 10 * MIN): Transition {
  return applyEvent(t.state, e, now, { retryDelayMs })
}

function reportAll(t: Transition, ring: number, outcome: 'installed' | 'failed', now: number): Transition {
  for (const [peerId, d] of Object.entries(t.state.devices))
    if (d.ring === ring && d.state === 'assigned') t = apply(t, { type: 'report', peerId, outcome }, now)
  return t
}

describe('rollout engine', () => {
  it('deploys ring by ring: an outer ring gets the bundle only after the inner one passed', () => {
    let t = createRollout(spec(), devices(20, pilotOf), T0)
    expect(t.state.rings.map((r) => r.status)).toEqual(['deploying', 'pending', 'pending'])
    expect(desiredDevices(t.state).sort()).toEqual(['pc-0000', 'pc-0001', 'pc-0002'])
    // Ring sizes: 3 pilots, 50 % of 20 = 10, the rest 7.
    expect([0, 1, 2].map((r) => ringCounts(t.state, r).total)).toEqual([3, 10, 7])

    t = reportAll(t, 0, 'installed', T0 + MIN)
    expect(t.state.rings.map((r) => r.status)).toEqual(['passed', 'deploying', 'pending'])
    expect(desiredDevices(t.state)).toHaveLength(13)
    t = reportAll(t, 1, 'installed', T0 + 2 * MIN)
    t = reportAll(t, 2, 'installed', T0 + 3 * MIN)
    expect(t.state.status).toBe('completed')
    expect(desiredDevices(t.state)).toHaveLength(20)
    expect(t.changes.some((c) => c.kind === 'rollout' && c.to === 'completed')).toBe(true)
  })

  it('halts the whole rollout when a ring crosses its error threshold; nothing new is assigned', () => {
    let t = createRollout(spec(), devices(20, pilotOf), T0)
    t = apply(
      t,
      {
        type: 'report',
        peerId: 'pc-0000',
        outcome: 'failed',
        error: { code: 'PSW_ERR_INSTALL_FAILED', message: 'health' },
      },
      T0 + MIN,
    )
    expect(t.state.status).toBe('halted')
    expect(t.state.reason).toMatch(/pilot: 1 of 3 devices failed/)
    expect(t.state.devices['pc-0000']).toMatchObject({
      state: 'failed-final',
      lastError: { code: 'PSW_ERR_INSTALL_FAILED' },
    })
    // Pending pilots lose the bundle from their assignment; the outer rings never get it.
    expect(desiredDevices(t.state)).toEqual([])
    t = reportAll(t, 0, 'installed', T0 + 2 * MIN)
    expect(t.state.status).toBe('halted')
    expect(t.state.rings[1]!.status).toBe('pending')
    expect(() => apply(t, { type: 'pause', by: 'op' }, T0)).toThrow(/halted/)
    t = apply(t, { type: 'cancel', by: 'op' }, T0 + 3 * MIN)
    expect(t.state.status).toBe('cancelled')
  })

  it('retries a failed device after the retry delay, then counts it failed for good', () => {
    let t = createRollout(
      spec({
        retries: 2,
        rings: [{ name: 'all', selector: { rest: true }, successThreshold: 1, errorThreshold: 0.5 }],
      }),
      devices(2),
      T0,
    )
    const fail = (now: number) => apply(t, { type: 'report', peerId: 'pc-0000', outcome: 'failed' }, now)
    t = fail(T0 + MIN)
    expect(t.state.devices['pc-0000']).toMatchObject({ state: 'retry-wait', attempts: 1 })
    expect(desiredDevices(t.state)).toEqual(['pc-0001'])
    expect(nextWakeAt(t.state, { retryDelayMs: 10 * MIN })).toBe(T0 + 11 * MIN)
    t = apply(t, { type: 'tick', devices: [] }, T0 + 5 * MIN)
    expect(t.state.devices['pc-0000']!.state).toBe('retry-wait')
    t = apply(t, { type: 'tick', devices: [] }, T0 + 11 * MIN)
    expect(t.state.devices['pc-0000']).toMatchObject({ state: 'assigned', attempts: 2 })
    t = fail(T0 + 12 * MIN)
    t = apply(t, { type: 'tick', devices: [] }, T0 + 22 * MIN)
    expect(t.state.devices['pc-0000']).toMatchObject({ state: 'assigned', attempts: 3 })
    t = fail(T0 + 23 * MIN)
    expect(t.state.devices['pc-0000']).toMatchObject({ state: 'failed-final', attempts: 3 })
    // 1 of 2 failed = 50 %: not above the 50 % threshold, not halted while pc-0001 is pending.
    expect(t.state.status).toBe('active')
    // Once every device is done, a ring below its success threshold can never pass: halted.
    t = apply(t, { type: 'report', peerId: 'pc-0001', outcome: 'installed' }, T0 + 24 * MIN)
    expect(t.state.status).toBe('halted')
    expect(t.state.reason).toMatch(/only 1 of 2 devices installed, below its success threshold of 100 %/)
  })

  it('soaks a passed ring, then waits for an operator to approve the next one', () => {
    const s = spec()
    s.rings[0] = { ...s.rings[0]!, soakMinutes: 60, approvalGate: true }
    let t = createRollout(s, devices(10, pilotOf), T0)
    t = reportAll(t, 0, 'installed', T0 + MIN)
    expect(t.state.rings[0]).toMatchObject({ status: 'soaking', soakUntil: T0 + 61 * MIN })
    expect(nextWakeAt(t.state)).toBe(T0 + 61 * MIN)
    t = apply(t, { type: 'tick', devices: [] }, T0 + 30 * MIN)
    expect(t.state.rings[0]!.status).toBe('soaking')
    expect(t.changes).toEqual([])
    t = apply(t, { type: 'tick', devices: [] }, T0 + 61 * MIN)
    expect(t.state.rings[0]!.status).toBe('awaiting-approval')
    expect(() => apply(t, { type: 'approve', ring: 1, by: 'op' }, T0 + 62 * MIN)).toThrow(/not awaiting approval/)
    t = apply(t, { type: 'approve', ring: 0, by: 'alice' }, T0 + 62 * MIN)
    expect(t.state.rings[0]).toMatchObject({ status: 'passed', approvedBy: 'alice' })
    expect(t.state.rings[1]!.status).toBe('deploying')
  })

  it('a failure during the soak still halts the rollout', () => {
    const s = spec({ retries: 0 })
    s.rings[0] = { ...s.rings[0]!, successThreshold: 0.5, soakMinutes: 60 }
    let t = createRollout(s, devices(10, pilotOf), T0)
    t = apply(t, { type: 'report', peerId: 'pc-0000', outcome: 'installed' }, T0 + MIN)
    t = apply(t, { type: 'report', peerId: 'pc-0001', outcome: 'installed' }, T0 + MIN)
    expect(t.state.rings[0]!.status).toBe('soaking')
    t = apply(t, { type: 'report', peerId: 'pc-0002', outcome: 'failed' }, T0 + 2 * MIN)
    expect(t.state.status).toBe('halted')
  })

  it('pause stops new assignments, resume carries on, cancel is final', () => {
    let t = createRollout(spec(), devices(10, pilotOf), T0)
    t = apply(t, { type: 'pause', by: 'op' }, T0 + MIN)
    expect(t.state.status).toBe('paused')
    expect(desiredDevices(t.state)).toEqual([])
    t = reportAll(t, 0, 'installed', T0 + 2 * MIN)
    // Installed devices keep the bundle; the next ring does not start while paused.
    expect(desiredDevices(t.state)).toHaveLength(3)
    expect(t.state.rings[1]!.status).toBe('pending')
    expect(() => apply(t, { type: 'pause', by: 'op' }, T0)).toThrow(/paused/)
    t = apply(t, { type: 'resume', by: 'op' }, T0 + 3 * MIN)
    expect(t.state.rings[1]!.status).toBe('deploying')
    t = apply(t, { type: 'cancel', by: 'op', reason: 'superseded' }, T0 + 4 * MIN)
    expect(t.state).toMatchObject({ status: 'cancelled', reason: 'superseded' })
    expect(() => apply(t, { type: 'resume', by: 'op' }, T0)).toThrow(/cancelled/)
  })

  it('picks up devices that join a group later: in a started ring they deploy at once', () => {
    let t = createRollout(spec(), devices(10, pilotOf), T0)
    const newPilot = { peerId: 'pc-new-pilot', groups: ['pilot', 'site'] }
    const newOther = { peerId: 'pc-new-other', groups: ['site'] }
    t = apply(t, { type: 'tick', devices: [newPilot, newOther] }, T0 + MIN)
    expect(t.state.devices['pc-new-pilot']).toMatchObject({ ring: 0, state: 'assigned', attempts: 1 })
    expect(t.state.devices['pc-new-other']).toMatchObject({ ring: 2, attempts: 0 }) // the rest ring, not started
    expect(desiredDevices(t.state)).toContain('pc-new-pilot')
    expect(desiredDevices(t.state)).not.toContain('pc-new-other')
    // Devices outside the target are never taken.
    const narrow = createRollout(spec({ id: 'r2', target: ['pilot'] }), devices(10, pilotOf), T0)
    expect(Object.keys(narrow.state.devices)).toHaveLength(3)
  })

  it('orders devices per rollout, stably', () => {
    const ids = devices(50).map((d) => d.peerId)
    expect(rolloutOrder('a', ids)).toEqual(rolloutOrder('a', [...ids].reverse()))
    expect(rolloutOrder('a', ids)).not.toEqual(rolloutOrder('b', ids))
  })
})

/**
 * The real engine over 250 simulated agents with a fake clock: devices install after a random
 * delay and fail with a set probability; failed devices are retried. Checked at every step:
 * no device of a ring is assigned before every inner ring passed; a halted or cancelled
 * rollout assigns no one new; counts never exceed ring sizes.
 */
describe('rollout engine at scale (250 simulated agents, fake clock)', () => {
  function simulate(seed: number, failureRate: number) {
    const random = seededRandom(seed)
    const fleet = devices(250, (i) => (i < 10 ? ['pilot', 'site'] : ['site']))
    const s: RolloutSpecT = {
      id: `sim-${seed}`,
      name: 'sim',
      bundleId: BUNDLE,
      target: 'all',
      retries: 2,
      rings: [
        { name: 'pilot', selector: { groups: ['pilot'] }, successThreshold: 0.9, errorThreshold: 0.2, soakMinutes: 30 },
        { name: 'early', selector: { percent: 20 }, successThreshold: 0.9, errorThreshold: 0.1 },
        { name: 'broad', selector: { rest: true }, successThreshold: 0.95, errorThreshold: 0.05 },
      ],
    }
    let now = T0
    let t = createRollout(s, fleet, now)
    const opts = { retryDelayMs: 10 * MIN }
    /** When each assigned device will report, and what. */
    const pending = new Map<string, { at: number; outcome: 'installed' | 'failed' }>()
    const everDesired = new Set<string>()
    const check = (st: RolloutState, before: RolloutState) => {
      const desired = desiredDevices(st)
      for (const p of desired) {
        const ring = st.devices[p]!.ring
        for (let r = 0; r < ring; r++) expect(st.rings[r]!.status).toBe('passed')
        if (st.status !== 'active' && st.status !== 'completed') expect(st.devices[p]!.state).toBe('installed')
        if (before.status === 'halted' || before.status === 'cancelled') expect(everDesired.has(p)).toBe(true)
        everDesired.add(p)
      }
      for (let r = 0; r < st.rings.length; r++) {
        const c = ringCounts(st, r)
        expect(c.installed + c.failed + c.pending).toBe(c.total)
      }
    }
    for (let step = 0; step < 5000 && (t.state.status === 'active' || t.state.status === 'paused'); step++) {
      for (const p of desiredDevices(t.state)) {
        if (t.state.devices[p]!.state === 'assigned' && !pending.has(p))
          pending.set(p, {
            at: now + (1 + random() * 20) * MIN,
            outcome: random() < failureRate ? 'failed' : 'installed',
          })
      }
      const due = [...pending].filter(([, v]) => v.at <= now + MIN)
      now += MIN
      const before = t.state
      for (const [p, v] of due) {
        pending.delete(p)
        t = applyEvent(t.state, { type: 'report', peerId: p, outcome: v.outcome }, now, opts)
        check(t.state, before)
      }
      t = applyEvent(t.state, { type: 'tick', devices: fleet }, now, opts)
      check(t.state, before)
    }
    return t.state
  }

  it('completes with a low failure rate: every device installed after retries', () => {
    for (const seed of [1, 2, 3]) {
      const st = simulate(seed, 0.03)
      expect(st.status).toBe('completed')
      const counts = [0, 1, 2].map((r) => ringCounts(st, r))
      expect(counts.map((c) => c.total)).toEqual([10, 50, 190])
      for (const c of counts) expect(c.installed / c.total).toBeGreaterThanOrEqual(0.95)
    }
  })

  it('halts with a high failure rate: rings after the one that halted never receive the bundle', () => {
    for (const seed of [4, 5, 6]) {
      const st = simulate(seed, 0.85)
      expect(st.status).toBe('halted')
      const halted = st.current
      expect(st.reason).toContain(`ring ${st.spec.rings[halted]!.name}:`)
      for (let r = halted + 1; r < st.rings.length; r++) expect(st.rings[r]!.status).toBe('pending')
      for (const d of Object.values(st.devices)) if (d.ring > halted) expect(d.attempts).toBe(0)
    }
  })

  it('halts in a later ring when only that ring fails more than its threshold', () => {
    // 8 % failures after retries is rare per device; with the broad ring's 5 % threshold and
    // a 45 % per-attempt failure rate (0.45^3 ≈ 9 % fail for good), it halts there or earlier.
    const st = simulate(7, 0.45)
    expect(st.status).toBe('halted')
    expect(st.reason).toMatch(/devices failed/)
  })

  it('rollback: installed and assigned devices roll back, pending rings stay untouched, then rolled-back', () => {
    let t = createRollout(spec(), devices(20, pilotOf), T0)
    t = reportAll(t, 0, 'installed', T0 + MIN)
    // Ring 1 deploying: one device installed, the others assigned; ring 2 not started.
    const [first] = Object.entries(t.state.devices).find(([, d]) => d.ring === 1)!
    t = apply(t, { type: 'report', peerId: first, outcome: 'installed' }, T0 + 2 * MIN)
    t = apply(t, { type: 'rollback', by: 'alice', reason: 'bad patch' }, T0 + 3 * MIN)
    expect(t.state.status).toBe('rolling-back')
    expect(t.state.rollback).toEqual({ by: 'alice', at: T0 + 3 * MIN, reason: 'bad patch', emergency: false })
    expect(desiredDevices(t.state)).toEqual([])
    expect(rollbackDevices(t.state)).toHaveLength(13)
    expect(ringCounts(t.state, 2)).toMatchObject({ total: 7, pending: 7, rollingBack: 0 })
    expect(t.changes.filter((c) => c.kind === 'device' && c.to === 'rolling-back')).toHaveLength(13)
    // Late joiners are not taken, commands other than cancel-free reports are refused.
    t = apply(t, { type: 'tick', devices: devices(25, pilotOf) }, T0 + 4 * MIN)
    expect(Object.keys(t.state.devices)).toHaveLength(20)
    expect(() => apply(t, { type: 'rollback', by: 'bob' }, T0)).toThrow(/rolling-back/)
    expect(() => apply(t, { type: 'cancel', by: 'bob' }, T0)).toThrow(/rolling-back/)
    // An install report does not count as an answer; rollback reports do.
    t = apply(t, { type: 'report', peerId: first, outcome: 'installed' }, T0 + 5 * MIN)
    expect(t.state.devices[first]!.state).toBe('rolling-back')
    const err = { code: 'PSW_ERR_ROLLBACK_FAILED', message: 'the .deb is gone' }
    t = apply(t, { type: 'rollback-report', peerId: first, ok: false, error: err }, T0 + 5 * MIN)
    expect(t.state.devices[first]).toMatchObject({ state: 'rollback-failed', lastError: err })
    for (const p of rollbackDevices(t.state))
      t = apply(t, { type: 'rollback-report', peerId: p, ok: true }, T0 + 6 * MIN)
    expect(t.state.status).toBe('rolled-back')
    expect(t.changes.at(-1)).toEqual({ kind: 'rollout', from: 'rolling-back', to: 'rolled-back' })
    expect(ringCounts(t.state, 1)).toMatchObject({ rolledBack: 9, rollbackFailed: 1 })
  })

  it('rollback of a rollout nobody installed yet is rolled back at once; cancel works on completed rollouts', () => {
    let t = createRollout(spec({ rings: [spec().rings[2]!] }), devices(4), T0)
    const none = applyEvent({ ...t.state, devices: {} }, { type: 'rollback', by: 'a', emergency: true }, T0)
    expect(none.state.status).toBe('rolled-back')
    for (const p of Object.keys(t.state.devices)) t = apply(t, { type: 'report', peerId: p, outcome: 'installed' }, T0)
    expect(t.state.status).toBe('completed')
    expect(apply(t, { type: 'cancel', by: 'a' }, T0).state.status).toBe('cancelled')
  })
})

describe('many reports in one event, copy on write', () => {
  const err = { code: 'PSW_ERR_INSTALL_FAILED', message: 'health check failed' }

  it('a reports batch ends where the same reports one by one end, when no threshold is crossed', () => {
    const s = spec({
      retries: 1,
      rings: [
        { name: 'pilot', selector: { groups: ['pilot'] }, successThreshold: 1, errorThreshold: 0 },
        { name: 'broad', selector: { rest: true }, successThreshold: 0.95, errorThreshold: 0.5 },
      ],
    })
    let t = createRollout(s, devices(40, pilotOf), T0)
    t = reportAll(t, 0, 'installed', T0 + MIN)
    expect(t.state.rings[1]!.status).toBe('deploying')
    const broad = Object.keys(t.state.devices).filter((p) => t.state.devices[p]!.ring === 1)
    const events: Array<Extract<RolloutEvent, { type: 'report' | 'rollback-report' }>> = [
      ...broad.slice(0, 20).map((peerId) => ({ type: 'report' as const, peerId, outcome: 'installed' as const })),
      ...broad
        .slice(20, 24)
        .map((peerId) => ({ type: 'report' as const, peerId, outcome: 'failed' as const, error: err })),
      // Changes nothing: unknown device, an answer to a rollback nobody ordered, a repeat.
      { type: 'report', peerId: 'pc-unknown', outcome: 'installed' },
      { type: 'rollback-report', peerId: broad[30]!, ok: true },
      { type: 'report', peerId: broad[0]!, outcome: 'installed' },
    ]
    let one = t
    for (const e of events) {
      const next = apply(one, e, T0 + 2 * MIN)
      one = { state: next.state, changes: [...one.changes, ...next.changes] }
    }
    const batch = apply(t, { type: 'reports', reports: events }, T0 + 2 * MIN)
    expect(batch.changes).toEqual(one.changes.slice(t.changes.length))
    // One event, one revision (one by one: one per report that changed something).
    expect(batch.state).toEqual({ ...one.state, revision: t.state.revision + 1 })
    expect(batch.state.devices[broad[20]!]).toMatchObject({ state: 'retry-wait', attempts: 1, lastError: err })
    expect(ringCounts(batch.state, 1)).toMatchObject({ installed: 20, pending: broad.length - 20 })
  })

  it('looks at the thresholds once, on the whole batch: a ring that passes and fails in one batch halts', () => {
    const s = spec({
      rings: [
        { name: 'pilot', selector: { groups: ['pilot'] }, successThreshold: 0.5, errorThreshold: 0.2 },
        { name: 'broad', selector: { rest: true }, successThreshold: 0.95, errorThreshold: 0.05 },
      ],
    })
    const t = createRollout(
      s,
      devices(30, (i) => (i < 10 ? ['pilot'] : ['site'])),
      T0,
    )
    const pilots = Object.keys(t.state.devices).filter((p) => t.state.devices[p]!.ring === 0)
    const reports = [
      ...pilots.slice(0, 6).map((peerId) => ({ type: 'report' as const, peerId, outcome: 'installed' as const })),
      ...pilots.slice(6, 9).map((peerId) => ({ type: 'report' as const, peerId, outcome: 'failed' as const })),
    ]
    const batch = apply(t, { type: 'reports', reports }, T0 + MIN)
    expect(batch.state.status).toBe('halted')
    expect(batch.state.reason).toMatch(/pilot: 3 of 10 devices failed/)
    // The broad ring never started: nobody in it was assigned.
    expect(batch.state.rings.map((r) => r.status)).toEqual(['deploying', 'pending'])
    expect(Object.values(batch.state.devices).filter((d) => d.ring === 1 && d.attempts > 0)).toEqual([])
    expect(desiredDevices(batch.state).sort()).toEqual(pilots.slice(0, 6).sort())
    // One by one, the pilot passes after the 5th install and the broad ring starts before the
    // failures halt it (with 3 failures counted too).
    let one = t
    for (const r of reports) one = apply(one, r, T0 + MIN)
    expect(one.state.status).toBe('halted')
    expect(one.state.rings[1]!.status).toBe('deploying')
  })

  it('never changes the state it is given, and shares the devices an event did not touch', () => {
    let t = createRollout(spec({ retries: 1 }), devices(20, pilotOf), T0)
    t = reportAll(t, 0, 'installed', T0 + MIN)
    const [a, b] = Object.keys(t.state.devices).filter((p) => t.state.devices[p]!.ring === 1)
    const before = structuredClone(t.state)
    const events: RolloutEvent[] = [
      { type: 'reports', reports: [{ type: 'report', peerId: a!, outcome: 'failed' }] },
      { type: 'report', peerId: b!, outcome: 'installed' },
      { type: 'tick', devices: devices(25, pilotOf) },
      { type: 'pause', by: 'op' },
      { type: 'cancel', by: 'op' },
      { type: 'rollback', by: 'op', reason: 'bad' },
    ]
    for (const e of events) {
      const next = apply(t, e, T0 + 30 * MIN)
      expect(next.state).not.toBe(t.state)
      expect(t.state).toEqual(before)
    }
    const next = apply(t, { type: 'report', peerId: b!, outcome: 'installed' }, T0 + 2 * MIN)
    expect(next.state.devices[b!]).not.toBe(t.state.devices[b!])
    expect(next.state.devices[a!]).toBe(t.state.devices[a!])
    // A later event on the new state leaves both earlier states alone.
    const later = apply(next, { type: 'rollback', by: 'op' }, T0 + 3 * MIN)
    expect(t.state).toEqual(before)
    expect(next.state.devices[a!]!.state).toBe('assigned')
    expect(later.state.devices[a!]!.state).toBe('rolling-back')
  })
})
