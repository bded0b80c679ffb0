import { Type } from '@sinclair/typebox'
import type { FastifyInstance } from 'fastify'
import { isPswError } from '../../shared/errors.ts'
import { Timestamp } from '../../shared/metadata/common-schema.ts'
import { actorOf, requireRole } from '../auth/principal.ts'
import type { Catalog } from '../catalog.ts'
import { type ApprovalStore, catalogPatches } from '../policy/approval-store.ts'
import { AutoApprovalRuleSchema } from '../policy/approvals.ts'
import type { GroupStore } from '../policy/groups.ts'
import { type PlanDeployRequest, PlanDeployRequestSchema, rolloutsFromPlan } from '../policy/plan-rollouts.ts'
import type { RolloutService } from '../rollout/rollout-service.ts'
import { rolloutView } from './rollout-routes.ts'

const BundleParams = Type.Object(
  { bundleId: Type.String({ pattern: '^[0-9a-f]{64}$' }) },
  { additionalProperties: false },
)
const RuleParams = Type.Object(
  { id: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' }) },
  { additionalProperties: false },
)
const DecisionBody = Type.Object(
  {
    /** A group id, or '*' for site-wide. */
    group: Type.String({ minLength: 1, maxLength: 64, pattern: '^(\\*|[A-Za-z0-9][A-Za-z0-9._-]*)$' }),
    deadline: Type.Optional(Timestamp),
  },
  { additionalProperties: false },
)

/**
 * The patch catalog with its approvals, decisions (approve, decline, skip — per group or
 * site-wide), auto-approval rules, and the resulting plan per group (after supersedence and
 * prerequisites). Reads: viewer; decisions, rules and deploying the plan: operator.
 */
export function registerPolicyRoutes(
  app: FastifyInstance,
  deps: { catalog: Catalog; approvals: ApprovalStore; groups: GroupStore; rollouts?: RolloutService },
): void {
  const viewer = requireRole('viewer')
  const operator = requireRole('operator')

  app.get('/api/v1/patches', { onRequest: viewer }, async () => {
    const approvals = await deps.approvals.list()
    return {
      patches: (await catalogPatches(deps.catalog)).map((p) => ({
        ...p,
        approvals: approvals.filter((a) => a.bundleId === p.bundleId),
      })),
    }
  })

  for (const decision of ['approve', 'decline', 'skip'] as const) {
    app.post<{ Params: { bundleId: string }; Body: { group: string; deadline?: string } }>(
      `/api/v1/patches/:bundleId/${decision}`,
      { onRequest: operator, schema: { params: BundleParams, body: DecisionBody } },
      async (request) =>
        deps.approvals.decide({ bundleId: request.params.bundleId, decision, ...request.body }, actorOf(request)),
    )
  }

  app.get('/api/v1/approval-rules', { onRequest: viewer }, async () => ({
    rules: await deps.approvals.rules(),
  }))

  app.put<{ Params: { id: string } }>(
    '/api/v1/approval-rules/:id',
    { onRequest: operator, schema: { params: RuleParams, body: AutoApprovalRuleSchema } },
    async (request) => {
      const body = request.body as { id: string }
      if (body.id !== request.params.id) {
        const { ValidationError } = await import('../../shared/errors.ts')
        throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', 'the rule id in the body differs from the URL')
      }
      return deps.approvals.putRule(request.body, actorOf(request))
    },
  )

  app.delete<{ Params: { id: string } }>(
    '/api/v1/approval-rules/:id',
    { onRequest: operator, schema: { params: RuleParams } },
    async (request, reply) => {
      await deps.approvals.deleteRule(request.params.id, actorOf(request))
      reply.code(204)
    },
  )

  app.get('/api/v1/plan', { onRequest: viewer }, async () => {
    const groups = (await deps.groups.list()).map((g) => g.id)
    const result = await deps.approvals.plan(groups)
    return { groups: Object.fromEntries(result) }
  })

  const rollouts = deps.rollouts
  if (rollouts) {
    // The plan, deployed: one rollout per planned patch with the given ring template.
    app.post<{ Body: PlanDeployRequest }>(
      '/api/v1/plan/rollouts',
      { onRequest: operator, schema: { body: PlanDeployRequestSchema } },
      async (request, reply) => {
        const groups = (await deps.groups.list()).map((g) => g.id)
        const existing = (await rollouts.list()).filter((r) => r.status !== 'cancelled' && r.status !== 'rolled-back')
        const planned = rolloutsFromPlan(await deps.approvals.plan(groups), request.body, {
          bundleIds: new Set(existing.map((r) => r.spec.bundleId)),
          rolloutOf: (bundleId) => existing.find((r) => r.spec.bundleId === bundleId)?.spec.id,
        })
        const created = []
        const failed = []
        for (const spec of planned.specs) {
          try {
            created.push(rolloutView(await rollouts.create(spec, actorOf(request))))
          } catch (err) {
            // One patch that cannot start (an id taken, a decline meanwhile) does not stop the others.
            if (!isPswError(err)) throw err
            failed.push({ bundleId: spec.bundleId, id: spec.id, error: { code: err.code, message: err.message } })
          }
        }
        reply.code(created.length > 0 ? 201 : 200)
        return { created, skipped: planned.skipped, failed }
      },
    )
  }
}
