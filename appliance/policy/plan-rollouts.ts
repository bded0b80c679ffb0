import { createHash } from 'node:crypto'
import { type Static, Type } from '@sinclair/typebox'
import { compileChecker } from '../../shared/metadata/schema-check.ts'
import { RingSpec, type RolloutSpecT } from '../rollout/rollout-types.ts'
import type { GroupPlan } from './approvals.ts'

/**
 * From the plan to rollouts, pure: one rollout per patch the plan deploys, targeting exactly
 * the groups whose plan has it (approved there, not declined site-wide, not superseded, its
 * prerequisites approved too), with the operator's ring template. Patches that already have a
 * live rollout are skipped, so deploying the plan again only starts what is new.
 */

const Id = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' })

export const PlanDeployRequestSchema = Type.Object(
  {
    /** The ring template every created rollout gets (its groups, percentages, thresholds). */
    rings: Type.Array(RingSpec, { minItems: 1, maxItems: 16 }),
    retries: Type.Integer({ minimum: 0, maximum: 10 }),
    /** Only these patches of the plan (default: all of them). */
    bundleIds: Type.Optional(
      Type.Array(Type.String({ pattern: '^[0-9a-f]{64}$' }), { minItems: 1, maxItems: 256, uniqueItems: true }),
    ),
    /** Only the plans of these groups (default: every group). */
    groups: Type.Optional(Type.Array(Id, { minItems: 1, maxItems: 64, uniqueItems: true })),
  },
  { additionalProperties: false },
)
export type PlanDeployRequest = Static<typeof PlanDeployRequestSchema>
export const planDeployChecker = compileChecker(PlanDeployRequestSchema)

export interface PlannedRollouts {
  /** In install order across groups: a patch's prerequisites come before it. */
  specs: RolloutSpecT[]
  skipped: Array<{ bundleId: string; reason: 'live-rollout' | 'not-requested'; detail: string }>
}

/** A rollout id from a patch name: `plan-<name>-<6 hex of the bundle id>`, within the id pattern. */
export function planRolloutId(name: string, bundleId: string): string {
  const slug = name.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^[^A-Za-z0-9]+/, '')
  const suffix = createHash('sha256').update(bundleId).digest('hex').slice(0, 6)
  return `plan-${slug.slice(0, 64 - 'plan-'.length - 7)}-${suffix}`
}

export function rolloutsFromPlan(
  plan: ReadonlyMap<string, GroupPlan>,
  request: PlanDeployRequest,
  live: { bundleIds: ReadonlySet<string>; rolloutOf: (bundleId: string) => string | undefined },
): PlannedRollouts {
  const wantedGroups = request.groups ? new Set(request.groups) : undefined
  const wantedBundles = request.bundleIds ? new Set(request.bundleIds) : undefined
  const targets = new Map<string, { name: string; groups: string[]; after: Set<string> }>()
  for (const [group, p] of plan) {
    if (wantedGroups && !wantedGroups.has(group)) continue
    for (const patch of p.deploy) {
      let t = targets.get(patch.bundleId)
      if (!t) {
        t = { name: patch.name, groups: [], after: new Set() }
        targets.set(patch.bundleId, t)
      }
      t.groups.push(group)
      for (const a of patch.after) t.after.add(a)
    }
  }
  // Prerequisites first (the plan has already refused cycles), else first appearance.
  const order: string[] = []
  const visit = (bundleId: string, path: Set<string>) => {
    if (order.includes(bundleId) || path.has(bundleId)) return
    path.add(bundleId)
    for (const a of targets.get(bundleId)?.after ?? []) if (targets.has(a)) visit(a, path)
    order.push(bundleId)
  }
  for (const bundleId of targets.keys()) visit(bundleId, new Set())
  const out: PlannedRollouts = { specs: [], skipped: [] }
  for (const bundleId of order) {
    const t = targets.get(bundleId)!
    if (wantedBundles && !wantedBundles.has(bundleId)) continue
    if (live.bundleIds.has(bundleId)) {
      out.skipped.push({
        bundleId,
        reason: 'live-rollout',
        detail: `${t.name} is already being rolled out by ${live.rolloutOf(bundleId) ?? 'another rollout'}`,
      })
      continue
    }
    out.specs.push({
      id: planRolloutId(t.name, bundleId),
      name: `${t.name} (from the plan)`,
      bundleId,
      target: [...new Set(t.groups)].sort(),
      rings: request.rings,
      retries: request.retries,
    })
  }
  for (const b of wantedBundles ?? [])
    if (!targets.has(b))
      out.skipped.push({ bundleId: b, reason: 'not-requested', detail: 'no group plan deploys this patch' })
  return out
}
