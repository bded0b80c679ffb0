/** Shapes of the policy API (appliance/policy/groups.ts, approvals.ts; shared/policy/window-schema.ts). */

export interface MaintenanceWindow {
  id: string
  name: string
  timeZone: string
  recurrence: { rrule: string; dtstart: string } | { cron: string }
  durationMinutes: number
  allowReboot: boolean
  exclusions?: string[]
}

export interface GroupMatch {
  tags?: { all?: string[]; any?: string[] }
  tiers?: string[]
  os?: string[]
  hostnamePattern?: string
  peerIds?: string[]
}

/** `GET /api/v1/groups` rows (with memberCount) and `GET /api/v1/groups/:id`. */
export interface GroupDef {
  id: string
  name: string
  description?: string
  match: GroupMatch
  windows?: MaintenanceWindow[]
  spreadSeconds?: number
  createdAt: string
  updatedAt: string
  memberCount?: number
}

/** The body of `PUT /api/v1/groups/:id` from a stored group, with some fields replaced. */
export function groupUpdate(g: GroupDef, patch: Partial<Omit<GroupDef, 'id'>> = {}) {
  const next = { ...g, ...patch }
  return {
    name: next.name,
    ...(next.description ? { description: next.description } : {}),
    match: next.match,
    ...(next.windows && next.windows.length > 0 ? { windows: next.windows } : {}),
    ...(next.spreadSeconds !== undefined && next.windows?.length ? { spreadSeconds: next.spreadSeconds } : {}),
  }
}

export interface AutoApprovalRule {
  id: string
  classifications?: string[]
  severities?: string[]
  products?: string[]
  group: string
  deadlineDays?: number
}

export interface GroupPlan {
  deploy: Array<{ bundleId: string; name: string; deadline?: string; after: string[] }>
  held: Array<{ bundleId: string; reason: string; detail: string }>
}

export const CLASSIFICATIONS = [
  'security',
  'critical',
  'bugfix',
  'feature',
  'definition',
  'driver',
  'tool',
  'other',
] as const
export const TIERS = ['critical', 'high', 'normal', 'low'] as const
