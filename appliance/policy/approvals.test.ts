import { describe, expect, it } from 'vitest'
import { type Approval, type AutoApprovalRule, autoApprove, type CatalogPatch, plan } from './approvals.ts'

const T0 = Date.UTC(2026, 10, 24, 9)
let n = 0
function patch(name: string, version: string, over: Partial<CatalogPatch> = {}): CatalogPatch {
  n++
  return {
    bundleId: n.toString(16).padStart(64, '0'),
    name,
    version,
    vendor: 'acme',
    product: name,
    classification: 'security',
    severity: 'high',
    supersedes: [],
    requires: [],
    addedAt: new Date(T0 + n * 1000).toISOString(),
    ...over,
  }
}
const approve = (p: CatalogPatch, group: string, at = T0, by = 'alice'): Approval => ({
  bundleId: p.bundleId,
  group,
  decision: 'approve',
  by,
  at: new Date(at).toISOString(),
})
const decline = (p: CatalogPatch, group: string, at = T0): Approval => ({
  ...approve(p, group, at),
  decision: 'decline',
})

describe('auto-approval rules', () => {
  const rules: AutoApprovalRule[] = [
    { id: 'crit-servers', severities: ['critical'], group: 'servers', deadlineDays: 3 },
    { id: 'defs-all', classifications: ['definition'], products: ['Acme *'], group: 'desktops' },
  ]

  it('approve what matches classification × product × severity for their group, with a deadline', () => {
    const crit = patch('openssl', '3.0.15', { severity: 'critical' })
    const got = autoApprove(rules, crit, [], T0)
    expect(got).toEqual([
      expect.objectContaining({
        group: 'servers',
        decision: 'approve',
        rule: 'crit-servers',
        deadline: new Date(T0 + 3 * 86_400_000).toISOString(),
      }),
    ])
    const defs = patch('defs', '20261124', { classification: 'definition', product: 'Acme Antivirus' })
    expect(autoApprove(rules, defs, [], T0).map((a) => a.group)).toEqual(['desktops'])
    expect(autoApprove(rules, patch('x', '1', { classification: 'definition', product: 'Other AV' }), [], T0)).toEqual(
      [],
    )
  })

  it("never override an operator's decision, and stop at a site-wide decline", () => {
    const crit = patch('openssl', '3.0.16', { severity: 'critical' })
    expect(autoApprove(rules, crit, [decline(crit, 'servers')], T0)).toEqual([])
    expect(autoApprove(rules, crit, [decline(crit, '*')], T0)).toEqual([])
  })
})

describe('plan: approvals, declines, supersedence, prerequisites', () => {
  it('the latest decision per patch and group wins; a site-wide decline holds it everywhere', () => {
    const a = patch('a', '1')
    const p = plan([a], [approve(a, 'g', T0), decline(a, 'g', T0 + 1)], ['g'])
    expect(p.get('g')!.deploy).toEqual([])
    const q = plan([a], [decline(a, 'g', T0), approve(a, 'g', T0 + 1), decline(a, '*', T0 + 2)], ['g'])
    expect(q.get('g')!.deploy).toEqual([])
    expect(q.get('g')!.held).toEqual([expect.objectContaining({ reason: 'declined-site-wide' })])
  })

  it('a superseded patch is not deployed where its successor is approved (by supersedes, or a newer version)', () => {
    const old = patch('openssl', '3.0.14')
    const cumulative = patch('openssl-cumulative', '2026.11', { supersedes: ['openssl'] })
    const newer = patch('openssl', '3.0.15')
    const p = plan(
      [old, cumulative, newer],
      [approve(old, 'g'), approve(cumulative, 'g'), approve(newer, 'h'), approve(old, 'h')],
      ['g', 'h'],
    )
    expect(p.get('g')!.deploy.map((d) => d.name)).toEqual(['openssl-cumulative'])
    expect(p.get('g')!.held).toEqual([expect.objectContaining({ bundleId: old.bundleId, reason: 'superseded' })])
    expect(p.get('h')!.deploy.map((d) => `${d.name}`)).toEqual(['openssl'])
    expect(p.get('h')!.deploy[0]!.bundleId).toBe(newer.bundleId)
  })

  it('orders prerequisites first, and holds a patch whose prerequisite is not approved for the group', () => {
    const base = patch('runtime', '1')
    const app = patch('app', '2', { requires: ['runtime'] })
    const plugin = patch('plugin', '3', { requires: ['app'] })
    const p = plan(
      [plugin, app, base],
      [approve(plugin, 'g'), approve(app, 'g'), approve(base, 'g'), approve(plugin, 'h'), approve(app, 'h')],
      ['g', 'h'],
    )
    expect(p.get('g')!.deploy.map((d) => d.name)).toEqual(['runtime', 'app', 'plugin'])
    expect(p.get('g')!.deploy[2]!.after).toEqual([app.bundleId])
    // Group h lacks the runtime: app is held, and plugin with it (never half-way).
    expect(p.get('h')!.deploy).toEqual([])
    expect(
      p
        .get('h')!
        .held.map((x) => x.reason)
        .sort(),
    ).toEqual(['missing-prerequisite', 'missing-prerequisite'])
  })

  it('holds patches in a prerequisite cycle instead of looping', () => {
    const x = patch('x', '1', { requires: ['y'] })
    const y = patch('y', '1', { requires: ['x'] })
    const z = patch('z', '1')
    const p = plan([x, y, z], [approve(x, 'g'), approve(y, 'g'), approve(z, 'g')], ['g'])
    expect(p.get('g')!.deploy.map((d) => d.name)).toEqual(['z'])
    expect(p.get('g')!.held.every((h) => h.reason === 'prerequisite-cycle')).toBe(true)
    expect(p.get('g')!.held).toHaveLength(2)
  })

  it('carries the deadline of the approval', () => {
    const a = patch('a', '1')
    const p = plan([a], [{ ...approve(a, 'g'), deadline: '2026-12-01T00:00:00.000Z' }], ['g'])
    expect(p.get('g')!.deploy[0]).toMatchObject({ deadline: '2026-12-01T00:00:00.000Z' })
  })
})
