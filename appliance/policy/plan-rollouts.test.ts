import { describe, expect, it } from 'vitest'
import type { GroupPlan } from './approvals.ts'
import { planDeployChecker, planRolloutId, rolloutsFromPlan } from './plan-rollouts.ts'

const A = 'aa'.repeat(32)
const B = 'bb'.repeat(32)
const C = 'cc'.repeat(32)
const rings = [
  { name: 'pilot', selector: { groups: ['pilot'] }, successThreshold: 1, errorThreshold: 0 },
  { name: 'broad', selector: { rest: true as const }, successThreshold: 0.95, errorThreshold: 0.05 },
]

const plan = new Map<string, GroupPlan>([
  [
    'servers',
    {
      // B needs A first.
      deploy: [
        { bundleId: A, name: 'libfoo@1.2', after: [] },
        { bundleId: B, name: 'app@2', after: [A] },
      ],
      held: [],
    },
  ],
  [
    'desktops',
    {
      deploy: [
        { bundleId: B, name: 'app@2', after: [A] },
        { bundleId: C, name: 'viewer@9', after: [] },
      ],
      held: [],
    },
  ],
])
const none = { bundleIds: new Set<string>(), rolloutOf: () => undefined }

describe('rollouts from the plan', () => {
  it('one rollout per planned patch, targeting exactly the groups whose plan has it, prerequisites first', () => {
    const r = rolloutsFromPlan(plan, { rings, retries: 1 }, none)
    expect(r.specs.map((s) => [s.bundleId, s.target])).toEqual([
      [A, ['servers']],
      [B, ['desktops', 'servers']],
      [C, ['desktops']],
    ])
    expect(r.specs[0]).toMatchObject({ rings, retries: 1, name: 'libfoo@1.2 (from the plan)' })
    expect(r.skipped).toEqual([])
  })

  it('puts a prerequisite first even when another group lists the dependent patch first', () => {
    const reversed = new Map([...plan].reverse())
    expect(rolloutsFromPlan(reversed, { rings, retries: 0 }, none).specs.map((s) => s.bundleId)).toEqual([A, B, C])
  })

  it('skips patches with a live rollout and ones no plan has; filters by group and patch', () => {
    const live = { bundleIds: new Set([A]), rolloutOf: () => 'libfoo-rollout' }
    const r = rolloutsFromPlan(plan, { rings, retries: 0, bundleIds: [A, B, 'dd'.repeat(32)] }, live)
    expect(r.specs.map((s) => s.bundleId)).toEqual([B])
    expect(r.skipped).toEqual([
      { bundleId: A, reason: 'live-rollout', detail: 'libfoo@1.2 is already being rolled out by libfoo-rollout' },
      { bundleId: 'dd'.repeat(32), reason: 'not-requested', detail: 'no group plan deploys this patch' },
    ])
    const desktops = rolloutsFromPlan(plan, { rings, retries: 0, groups: ['desktops'] }, none)
    expect(desktops.specs.map((s) => [s.bundleId, s.target])).toEqual([
      [B, ['desktops']],
      [C, ['desktops']],
    ])
  })

  it('makes ids that fit the rollout id pattern and differ per bundle', () => {
    const id = planRolloutId('@weird name/with:stuff'.repeat(5), A)
    expect(id).toMatch(/^plan-[A-Za-z0-9][A-Za-z0-9._-]*-[0-9a-f]{6}$/)
    expect(id.length).toBeLessThanOrEqual(64)
    expect(planRolloutId('x', A)).not.toBe(planRolloutId('x', B))
    expect(() => planDeployChecker.check({ rings: [], retries: 0 }, 'plan deploy')).toThrow()
  })
})
