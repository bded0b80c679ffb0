import { describe, expect, it } from 'vitest'
import type { Approval } from './approvals.ts'
import { checkRolloutAdmission } from './rollout-admission.ts'

const B = 'ab'.repeat(32)
const at = (m: number) => new Date(Date.UTC(2026, 10, 24, 9, m)).toISOString()
const d = (group: string, decision: Approval['decision'], m: number): Approval => ({
  bundleId: B,
  group,
  decision,
  by: 'alice',
  at: at(m),
})
const code = (fn: () => void) => {
  try {
    fn()
    return undefined
  } catch (err) {
    return (err as { code: string; details?: unknown }).code
  }
}

describe('rollout admission by policy', () => {
  it('refuses a patch declined site-wide, whatever the target', () => {
    expect(code(() => checkRolloutAdmission({ bundleId: B, target: ['servers'] }, [d('*', 'decline', 1)]))).toBe(
      'PSW_ERR_PATCH_DECLINED',
    )
  })

  it('refuses a target that names a declined group, or all devices while a group declines it', () => {
    const approvals = [d('desktops', 'decline', 1), d('servers', 'approve', 2)]
    expect(code(() => checkRolloutAdmission({ bundleId: B, target: ['desktops', 'servers'] }, approvals))).toBe(
      'PSW_ERR_PATCH_DECLINED',
    )
    expect(code(() => checkRolloutAdmission({ bundleId: B, target: 'all' }, approvals))).toBe('PSW_ERR_PATCH_DECLINED')
    expect(code(() => checkRolloutAdmission({ bundleId: B, target: ['servers'] }, approvals))).toBeUndefined()
  })

  it('the latest decision counts: a decline undone by an approval admits it; other bundles do not matter', () => {
    const approvals = [
      d('*', 'decline', 1),
      d('*', 'approve', 2),
      { ...d('servers', 'decline', 3), bundleId: 'cd'.repeat(32) },
    ]
    expect(code(() => checkRolloutAdmission({ bundleId: B, target: 'all' }, approvals))).toBeUndefined()
  })
})
