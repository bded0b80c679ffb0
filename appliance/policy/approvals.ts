import { type Static, Type } from '@sinclair/typebox'
import { Timestamp } from '../../shared/metadata/common-schema.ts'
import { Classification, Severity } from '../../shared/metadata/manifest-schema.ts'
import { compileChecker } from '../../shared/metadata/schema-check.ts'
import { globMatch } from './groups.ts'

/**
 * Catalog policy, pure: which patches each group should get, from the operator's approvals
 * and declines, the auto-approval rules, supersedence and prerequisites. The rollout layer
 * turns the plan into rollouts; nothing here does I/O.
 */

const Id = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' })

/** The catalog's view of one patch (from its signed manifest). */
export interface CatalogPatch {
  bundleId: string
  name: string
  version: string
  vendor: string
  product: string
  classification: Static<typeof Classification>
  severity: Static<typeof Severity>
  /** Names of patches this one replaces. */
  supersedes: string[]
  /** Names of patches that must be installed first. */
  requires: string[]
  /** When the patch entered the catalog (ISO): ties between versions go to the newest. */
  addedAt: string
}

/** `group` '*' = site-wide (a site-wide decline means: never, anywhere). */
export const ApprovalSchema = Type.Object(
  {
    bundleId: Type.String({ pattern: '^[0-9a-f]{64}$' }),
    group: Type.Union([Id, Type.Literal('*')]),
    decision: Type.Union([Type.Literal('approve'), Type.Literal('decline'), Type.Literal('skip')]),
    /** Install by then at the latest (ISO); windows still apply unless the patch is an emergency. */
    deadline: Type.Optional(Timestamp),
    by: Type.String({ minLength: 1, maxLength: 128 }),
    at: Type.String({ maxLength: 40 }),
    /** Set for decisions an auto-approval rule made. */
    rule: Type.Optional(Id),
  },
  { additionalProperties: false },
)
export type Approval = Static<typeof ApprovalSchema>
export const approvalChecker = compileChecker(ApprovalSchema)

export const AutoApprovalRuleSchema = Type.Object(
  {
    id: Id,
    /** Empty or absent = any. */
    classifications: Type.Optional(Type.Array(Classification, { maxItems: 8, uniqueItems: true })),
    severities: Type.Optional(Type.Array(Severity, { maxItems: 5, uniqueItems: true })),
    /** Glob patterns on the product name (case-insensitive). */
    products: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 200 }), { maxItems: 64 })),
    group: Id,
    /** Deadline = when the rule approved it + this many days. */
    deadlineDays: Type.Optional(Type.Integer({ minimum: 0, maximum: 365 })),
  },
  { additionalProperties: false },
)
export type AutoApprovalRule = Static<typeof AutoApprovalRuleSchema>
export const autoApprovalRuleChecker = compileChecker(AutoApprovalRuleSchema)

/** Whether a rule takes a patch. */
export function ruleMatches(
  rule: AutoApprovalRule,
  patch: Pick<CatalogPatch, 'classification' | 'severity' | 'product'>,
): boolean {
  if (rule.classifications?.length && !rule.classifications.includes(patch.classification)) return false
  if (rule.severities?.length && !rule.severities.includes(patch.severity)) return false
  if (rule.products?.length && !rule.products.some((p) => globMatch(p, patch.product))) return false
  return true
}

/**
 * The approvals the rules make for a new patch. An operator's own decision for the same
 * group wins (rules never override a person), and a site-wide decline stops every rule.
 */
export function autoApprove(
  rules: readonly AutoApprovalRule[],
  patch: CatalogPatch,
  existing: readonly Approval[],
  now: number,
): Approval[] {
  const mine = existing.filter((a) => a.bundleId === patch.bundleId)
  if (mine.some((a) => a.group === '*' && a.decision === 'decline')) return []
  const out: Approval[] = []
  for (const rule of rules) {
    if (!ruleMatches(rule, patch)) continue
    if (mine.some((a) => a.group === rule.group) || out.some((a) => a.group === rule.group)) continue
    out.push({
      bundleId: patch.bundleId,
      group: rule.group,
      decision: 'approve',
      ...(rule.deadlineDays === undefined
        ? {}
        : { deadline: new Date(now + rule.deadlineDays * 86_400_000).toISOString() }),
      by: `rule:${rule.id}`,
      at: new Date(now).toISOString(),
      rule: rule.id,
    })
  }
  return out
}

export interface PlannedPatch {
  bundleId: string
  name: string
  deadline?: string
  /** Bundles of this plan that must be installed before this one (prerequisites). */
  after: string[]
}

export interface GroupPlan {
  /** In install order: prerequisites first. */
  deploy: PlannedPatch[]
  /** Approved but not deployed, and why. */
  held: {
    bundleId: string
    reason: 'declined-site-wide' | 'superseded' | 'missing-prerequisite' | 'prerequisite-cycle'
    detail: string
  }[]
}

/**
 * What each group should get. For each group: the patches approved for it (the latest
 * decision per patch and group wins), minus site-wide declines, minus patches whose successor
 * (a patch naming them in `supersedes`) is also approved for the group, with prerequisites
 * (`requires`, by name) resolved to approved patches of the group and ordered first. A patch
 * whose prerequisite is not approved for the group is held, not deployed half-way.
 */
export function plan(
  patches: readonly CatalogPatch[],
  approvals: readonly Approval[],
  groups: readonly string[],
): Map<string, GroupPlan> {
  const byId = new Map(patches.map((p) => [p.bundleId, p]))
  const latest = new Map<string, Approval>()
  for (const a of [...approvals].sort((x, y) => x.at.localeCompare(y.at))) latest.set(`${a.bundleId}\0${a.group}`, a)
  const declinedSiteWide = new Set(
    [...latest.values()].filter((a) => a.group === '*' && a.decision === 'decline').map((a) => a.bundleId),
  )
  const out = new Map<string, GroupPlan>()
  for (const group of groups) {
    const result: GroupPlan = { deploy: [], held: [] }
    const approved = [...latest.values()]
      .filter((a) => a.group === group && a.decision === 'approve' && byId.has(a.bundleId))
      .map((a) => ({ patch: byId.get(a.bundleId)!, approval: a }))
    const candidates = approved.filter(({ patch }) => {
      if (!declinedSiteWide.has(patch.bundleId)) return true
      result.held.push({
        bundleId: patch.bundleId,
        reason: 'declined-site-wide',
        detail: `${patch.name}@${patch.version} is declined site-wide`,
      })
      return false
    })
    // Supersedence: a successor approved here replaces what it supersedes (same name, older
    // version included: a newer version of a product supersedes its own name implicitly).
    const live = candidates.filter(({ patch }) => {
      const successor = candidates.find(
        ({ patch: other }) =>
          other.bundleId !== patch.bundleId &&
          (other.supersedes.includes(patch.name) || (other.name === patch.name && other.addedAt > patch.addedAt)),
      )
      if (!successor) return true
      result.held.push({
        bundleId: patch.bundleId,
        reason: 'superseded',
        detail: `${patch.name}@${patch.version} is superseded by ${successor.patch.name}@${successor.patch.version}`,
      })
      return false
    })
    // Prerequisites by name, among what is deployed to this group; then a topological order.
    const byName = new Map(live.map((x) => [x.patch.name, x]))
    const ok = new Map<string, { patch: CatalogPatch; approval: Approval; after: string[] }>()
    for (const x of live) {
      const missing = x.patch.requires.filter((n) => !byName.has(n))
      if (missing.length > 0) {
        result.held.push({
          bundleId: x.patch.bundleId,
          reason: 'missing-prerequisite',
          detail: `${x.patch.name}@${x.patch.version} requires ${missing.join(', ')}, not approved for ${group}`,
        })
        continue
      }
      ok.set(x.patch.bundleId, { ...x, after: x.patch.requires.map((n) => byName.get(n)!.patch.bundleId) })
    }
    // A held prerequisite holds its dependants too (repeat until stable).
    for (let changed = true; changed; ) {
      changed = false
      for (const [id, x] of ok) {
        const gone = x.after.find((a) => !ok.has(a))
        if (gone === undefined) continue
        ok.delete(id)
        result.held.push({
          bundleId: id,
          reason: 'missing-prerequisite',
          detail: `${x.patch.name} requires ${byId.get(gone)?.name ?? gone}, which is held`,
        })
        changed = true
      }
    }
    const placed = new Set<string>()
    const visiting = new Set<string>()
    const visit = (id: string): boolean => {
      if (placed.has(id)) return true
      if (visiting.has(id)) return false
      const x = ok.get(id)
      if (!x) return false
      visiting.add(id)
      for (const a of x.after) if (!visit(a)) return false
      visiting.delete(id)
      placed.add(id)
      result.deploy.push({
        bundleId: id,
        name: x.patch.name,
        after: x.after,
        ...(x.approval.deadline === undefined ? {} : { deadline: x.approval.deadline }),
      })
      return true
    }
    for (const id of [...ok.keys()].sort((a, b) => byId.get(a)!.addedAt.localeCompare(byId.get(b)!.addedAt))) {
      if (!visit(id)) {
        for (const v of visiting) {
          if (placed.has(v)) continue
          result.held.push({
            bundleId: v,
            reason: 'prerequisite-cycle',
            detail: `${byId.get(v)!.name} is part of a prerequisite cycle`,
          })
          ok.delete(v)
        }
        visiting.clear()
      }
    }
    out.set(group, result)
  }
  return out
}
