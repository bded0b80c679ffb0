import { describe, expect, it } from 'vitest'
import type { GroupPlan } from '../policy/approvals.ts'
import { type CompliancePatch, complianceCsv, complianceSummary, deviceCompliance } from './compliance.ts'

const A = 'aa'.repeat(32)
const B = 'bb'.repeat(32)
const C = 'cc'.repeat(32)
const patches = new Map<string, CompliancePatch>([
  [A, { bundleId: A, name: 'openssl', version: '3.0.15', severity: 'critical' }],
  [B, { bundleId: B, name: 'viewer', version: '9', severity: 'low' }],
  [C, { bundleId: C, name: 'agent', version: '2', severity: 'high' }],
])
const planned = (...ids: string[]): GroupPlan => ({
  deploy: ids.map((bundleId) => ({ bundleId, name: bundleId, after: [] })),
  held: [],
})
const plan = new Map([
  ['servers', planned(A, C)],
  ['desktops', planned(A, B)],
])
const dev = (n: number, groups: string[], installed: string[]) => ({
  peerId: `peer-${n}`,
  hostname: `pc-${n}`,
  groups,
  installed: new Set(installed),
})

describe('compliance', () => {
  const rows = deviceCompliance(
    [
      dev(1, ['servers'], [A, C]),
      dev(2, ['servers'], [A]),
      dev(3, ['desktops', 'servers'], [A, B]),
      dev(4, ['desktops'], []),
      dev(5, [], []),
    ],
    plan,
  )

  it('requires the union of the plans of a device’s groups, and lists what is missing', () => {
    expect(rows.map((r) => [r.hostname, r.required.length, r.missing.length, r.compliant])).toEqual([
      ['pc-1', 2, 0, true],
      ['pc-2', 2, 1, false],
      ['pc-3', 3, 1, false],
      ['pc-4', 2, 2, false],
      ['pc-5', 0, 0, true],
    ])
  })

  it('summarises by group and severity, and ranks the patches missing most', () => {
    const s = complianceSummary(rows, patches)
    expect(s).toMatchObject({ devices: 5, compliant: 2, percent: 40, unmanaged: 1 })
    expect(s.byGroup).toEqual([
      { group: 'desktops', devices: 2, compliant: 0, percent: 0 },
      { group: 'servers', devices: 3, compliant: 1, percent: 33.3 },
    ])
    expect(s.bySeverity.find((x) => x.severity === 'high')).toEqual({
      severity: 'high',
      missing: 2,
      devices: 2,
      patches: 1,
    })
    expect(s.bySeverity.find((x) => x.severity === 'critical')).toEqual({
      severity: 'critical',
      missing: 1,
      devices: 1,
      patches: 1,
    })
    expect(s.topMissing.map((p) => [p.name, p.devices])).toEqual([
      ['agent', 2],
      ['openssl', 1],
      ['viewer', 1],
    ])
    expect(complianceSummary([], patches).percent).toBe(100)
  })

  it('exports CSV with quoting and without spreadsheet formulas', () => {
    const csv = complianceCsv([{ ...rows[1]!, hostname: '=cmd|"calc"', groups: ['a,b'] }], patches)
    const [header, line] = csv.split('\r\n')
    expect(header).toBe('hostname,peer_id,groups,required,installed,missing,compliant,missing_patches')
    expect(line).toBe(`"'=cmd|""calc""",peer-2,"a,b",2,1,1,no,agent@2`)
  })
})
