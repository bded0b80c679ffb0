import type { GroupPlan } from '../policy/approvals.ts'

/**
 * Compliance, pure: a device is compliant when every patch the plan deploys to any of its
 * groups is installed on it (as its latest report says). The dashboard shows the summary, the
 * Reports page and the CSV export the per-device rows. A device in no group with a plan has
 * nothing required and counts as compliant; the summary says how many such devices there are.
 */

export const SEVERITIES = ['critical', 'high', 'medium', 'low', 'none'] as const
export type SeverityName = (typeof SEVERITIES)[number]

export interface CompliancePatch {
  bundleId: string
  name: string
  version: string
  severity: SeverityName
}

export interface ComplianceDevice {
  peerId: string
  hostname: string
  groups: readonly string[]
  /** Bundle ids the device reports installed. */
  installed: ReadonlySet<string>
}

export interface DeviceCompliance {
  peerId: string
  hostname: string
  groups: string[]
  required: string[]
  missing: string[]
  compliant: boolean
}

export interface ComplianceSummary {
  devices: number
  compliant: number
  /** 0–100, one decimal; 100 when there are no devices. */
  percent: number
  /** Devices with nothing required (in no group with approved patches). */
  unmanaged: number
  byGroup: Array<{ group: string; devices: number; compliant: number; percent: number }>
  /** Per severity: device×patch pairs missing, devices missing at least one, distinct patches missing. */
  bySeverity: Array<{ severity: SeverityName; missing: number; devices: number; patches: number }>
  /** The patches missing on the most devices (at most `top`). */
  topMissing: Array<CompliancePatch & { devices: number }>
}

const pct = (part: number, whole: number) => (whole === 0 ? 100 : Math.round((1000 * part) / whole) / 10)

/** Group → the bundle ids its plan deploys (for {@link complianceOf}). */
export type DeployIndex = ReadonlyMap<string, readonly string[]>

export function deployIndex(plan: ReadonlyMap<string, GroupPlan>): DeployIndex {
  return new Map([...plan].map(([g, p]) => [g, p.deploy.map((d) => d.bundleId)]))
}

/** One device's row: what the plan requires of it and what of it is missing. */
export function complianceOf(d: ComplianceDevice, deployOf: DeployIndex): DeviceCompliance {
  const required = [...new Set(d.groups.flatMap((g) => deployOf.get(g) ?? []))].sort()
  const missing = required.filter((b) => !d.installed.has(b))
  return {
    peerId: d.peerId,
    hostname: d.hostname,
    groups: [...d.groups].sort(),
    required,
    missing,
    compliant: missing.length === 0,
  }
}

/** Per-device rows: what the plan requires of each device and what of it is missing. */
export function deviceCompliance(
  devices: readonly ComplianceDevice[],
  plan: ReadonlyMap<string, GroupPlan>,
): DeviceCompliance[] {
  const deployOf = deployIndex(plan)
  return devices.map((d) => complianceOf(d, deployOf))
}

export function complianceSummary(
  rows: readonly DeviceCompliance[],
  patches: ReadonlyMap<string, CompliancePatch>,
  top = 10,
): ComplianceSummary {
  const groups = new Map<string, { devices: number; compliant: number }>()
  const missingBySeverity = new Map<SeverityName, { missing: number; devices: Set<string>; patches: Set<string> }>(
    SEVERITIES.map((s) => [s, { missing: 0, devices: new Set(), patches: new Set() }]),
  )
  const missingCount = new Map<string, number>()
  for (const row of rows) {
    for (const g of row.groups) {
      const e = groups.get(g) ?? { devices: 0, compliant: 0 }
      e.devices++
      if (row.compliant) e.compliant++
      groups.set(g, e)
    }
    for (const b of row.missing) {
      const severity = patches.get(b)?.severity ?? 'none'
      const s = missingBySeverity.get(severity)!
      s.missing++
      s.devices.add(row.peerId)
      s.patches.add(b)
      missingCount.set(b, (missingCount.get(b) ?? 0) + 1)
    }
  }
  const compliant = rows.filter((r) => r.compliant).length
  const rank = (s: SeverityName) => SEVERITIES.indexOf(s)
  return {
    devices: rows.length,
    compliant,
    percent: pct(compliant, rows.length),
    unmanaged: rows.filter((r) => r.required.length === 0).length,
    byGroup: [...groups]
      .map(([group, e]) => ({ group, ...e, percent: pct(e.compliant, e.devices) }))
      .sort((a, b) => a.group.localeCompare(b.group)),
    bySeverity: SEVERITIES.map((severity) => {
      const s = missingBySeverity.get(severity)!
      return { severity, missing: s.missing, devices: s.devices.size, patches: s.patches.size }
    }),
    topMissing: [...missingCount]
      .map(([bundleId, devices]) => ({
        ...(patches.get(bundleId) ?? { bundleId, name: bundleId.slice(0, 12), version: '', severity: 'none' as const }),
        devices,
      }))
      .sort((a, b) => b.devices - a.devices || rank(a.severity) - rank(b.severity) || a.name.localeCompare(b.name))
      .slice(0, top),
  }
}

/** RFC 4180 CSV of the per-device rows (a field with a comma, quote or newline is quoted). */
export function complianceCsv(
  rows: readonly DeviceCompliance[],
  patches: ReadonlyMap<string, CompliancePatch>,
): string {
  const field = (v: string | number | boolean) => {
    const s = String(v)
    // A leading =, +, - or @ would be a formula in a spreadsheet: prefix it (CSV injection).
    const safe = /^[=+\-@\t\r]/.test(s) ? `'${s}` : s
    return /[",\n\r]/.test(safe) ? `"${safe.replaceAll('"', '""')}"` : safe
  }
  const name = (b: string) => {
    const p = patches.get(b)
    return p ? `${p.name}@${p.version}` : b
  }
  const lines = [['hostname', 'peer_id', 'groups', 'required', 'installed', 'missing', 'compliant', 'missing_patches']]
  for (const r of rows)
    lines.push([
      r.hostname,
      r.peerId,
      r.groups.join(' '),
      String(r.required.length),
      String(r.required.length - r.missing.length),
      String(r.missing.length),
      r.compliant ? 'yes' : 'no',
      r.missing.map(name).join(' '),
    ])
  return `${lines.map((l) => l.map(field).join(',')).join('\r\n')}\r\n`
}
