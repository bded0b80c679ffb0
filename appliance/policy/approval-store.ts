import type { Clock } from '../../shared/clock.ts'
import { StateError } from '../../shared/errors.ts'
import type { Manifest } from '../../shared/metadata/manifest-schema.ts'
import type { StateDb } from '../../shared/store/state-db.ts'
import type { AuditLog } from '../audit/audit-log.ts'
import type { Catalog } from '../catalog.ts'
import {
  type Approval,
  type AutoApprovalRule,
  approvalChecker,
  autoApprovalRuleChecker,
  autoApprove,
  type CatalogPatch,
  type GroupPlan,
  plan,
} from './approvals.ts'

const APPROVAL = 'approval:'
const RULE = 'approval-rule:'

export type Actor = { type: 'operator' | 'api-token' | 'system'; id: string }

/** The catalog's patches as the policy sees them (from each bundle's signed manifest). */
export async function catalogPatches(catalog: Catalog): Promise<CatalogPatch[]> {
  const out: CatalogPatch[] = []
  for (const record of await catalog.list()) {
    const m: Manifest | undefined = (await catalog.manifest(record.bundleId))?.signed
    if (!m) continue
    out.push({
      bundleId: record.bundleId,
      name: m.patch.name,
      version: m.patch.version,
      vendor: m.patch.vendor,
      product: m.patch.product,
      classification: m.patch.classification,
      severity: m.patch.severity,
      supersedes: m.patch.supersedes,
      requires: m.patch.requires,
      addedAt: record.ingestedAt,
    })
  }
  return out
}

/**
 * Approvals, declines and auto-approval rules in LevelDB: the latest decision per bundle and
 * group (`approval:<bundleId>:<group>`), each written in one batch with its audit record.
 */
export class ApprovalStore {
  readonly #d: { db: StateDb; catalog: Catalog; audit: AuditLog; clock: Clock }

  constructor(deps: { db: StateDb; catalog: Catalog; audit: AuditLog; clock: Clock }) {
    this.#d = deps
  }

  async list(bundleId?: string): Promise<Approval[]> {
    const out: Approval[] = []
    for await (const [, a] of this.#d.db.iterate<Approval>(bundleId ? `${APPROVAL}${bundleId}:` : APPROVAL)) out.push(a)
    return out
  }

  /** Records an operator's decision for a group ('*' = site-wide). */
  async decide(
    input: { bundleId: string; group: string; decision: Approval['decision']; deadline?: string },
    actor: Actor,
  ): Promise<Approval> {
    if (!(await this.#d.catalog.get(input.bundleId)))
      throw new StateError('PSW_ERR_NOT_FOUND', `no bundle ${input.bundleId} in the catalog`)
    if (input.decision !== 'approve' && input.deadline !== undefined)
      throw new StateError('PSW_ERR_CONFLICT', 'only an approval carries a deadline')
    const approval = approvalChecker.check(
      { ...input, by: `${actor.type}:${actor.id}`, at: new Date(this.#d.clock.now()).toISOString() },
      'approval',
    )
    await this.#write([approval], actor)
    return approval
  }

  async rules(): Promise<AutoApprovalRule[]> {
    const out: AutoApprovalRule[] = []
    for await (const [, r] of this.#d.db.iterate<AutoApprovalRule>(RULE)) out.push(r)
    return out
  }

  async putRule(input: unknown, actor: Actor): Promise<AutoApprovalRule> {
    const rule = autoApprovalRuleChecker.check(input, 'auto-approval rule')
    await this.#d.audit.exclusive(async () => {
      const before = await this.#d.db.get<AutoApprovalRule>(RULE + rule.id)
      const { ops } = this.#d.audit.appendOps({
        actor,
        action: 'policy.rule.put',
        target: { type: 'approval-rule', id: rule.id },
        ...(before ? { before } : {}),
        after: rule,
      })
      await this.#d.db.batch([...ops, { type: 'put', key: RULE + rule.id, value: rule }])
    })
    return rule
  }

  async deleteRule(id: string, actor: Actor): Promise<void> {
    await this.#d.audit.exclusive(async () => {
      const before = await this.#d.db.get<AutoApprovalRule>(RULE + id)
      if (!before) throw new StateError('PSW_ERR_NOT_FOUND', `no auto-approval rule ${id}`)
      const { ops } = this.#d.audit.appendOps({
        actor,
        action: 'policy.rule.delete',
        target: { type: 'approval-rule', id },
        before,
      })
      await this.#d.db.batch([...ops, { type: 'del', key: RULE + id }])
    })
  }

  /** Runs the auto-approval rules on a bundle new to the catalog; returns what they approved. */
  async evaluate(bundleId: string): Promise<Approval[]> {
    const patch = (await catalogPatches(this.#d.catalog)).find((p) => p.bundleId === bundleId)
    if (!patch) return []
    const made = autoApprove(await this.rules(), patch, await this.list(bundleId), this.#d.clock.now())
    if (made.length > 0) await this.#write(made, { type: 'system', id: 'auto-approval' })
    return made
  }

  /** What each group should get now (see approvals.ts `plan`). */
  async plan(groups: readonly string[]): Promise<Map<string, GroupPlan>> {
    return plan(await catalogPatches(this.#d.catalog), await this.list(), groups)
  }

  async #write(approvals: Approval[], actor: Actor): Promise<void> {
    await this.#d.audit.exclusive(async () => {
      const ops = []
      for (const a of approvals) {
        const key = `${APPROVAL}${a.bundleId}:${a.group}`
        const before = await this.#d.db.get<Approval>(key)
        ops.push(
          ...this.#d.audit.appendOps({
            actor,
            action: `patch.${a.decision}`,
            target: { type: 'bundle', id: a.bundleId },
            ...(before ? { before } : {}),
            after: a,
            ...(a.rule ? { reason: `auto-approval rule ${a.rule}` } : {}),
          }).ops,
          { type: 'put' as const, key, value: a },
        )
      }
      await this.#d.db.batch(ops)
    })
  }
}
