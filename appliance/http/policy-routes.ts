import { Type } from '@sinclair/typebox'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { Timestamp } from '../../shared/metadata/common-schema.ts'
import type { Catalog } from '../catalog.ts'
import { type Actor, type ApprovalStore, catalogPatches } from '../policy/approval-store.ts'
import { AutoApprovalRuleSchema } from '../policy/approvals.ts'
import type { GroupStore } from '../policy/groups.ts'

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
 * prerequisites). Reads: loopback or admin token; writes: admin token.
 */
export function registerPolicyRoutes(
  app: FastifyInstance,
  deps: { catalog: Catalog; approvals: ApprovalStore; groups: GroupStore },
  auth: { requireAdmin: (r: FastifyRequest) => Promise<void>; localOrAdmin: (r: FastifyRequest) => Promise<void> },
): void {
  const actor: Actor = { type: 'api-token', id: 'admin-token' }

  app.get('/api/v1/patches', { onRequest: auth.localOrAdmin }, async () => {
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
      { onRequest: auth.requireAdmin, schema: { params: BundleParams, body: DecisionBody } },
      async (request) => deps.approvals.decide({ bundleId: request.params.bundleId, decision, ...request.body }, actor),
    )
  }

  app.get('/api/v1/approval-rules', { onRequest: auth.localOrAdmin }, async () => ({
    rules: await deps.approvals.rules(),
  }))

  app.put<{ Params: { id: string } }>(
    '/api/v1/approval-rules/:id',
    { onRequest: auth.requireAdmin, schema: { params: RuleParams, body: AutoApprovalRuleSchema } },
    async (request) => {
      const body = request.body as { id: string }
      if (body.id !== request.params.id) {
        const { ValidationError } = await import('../../shared/errors.ts')
        throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', 'the rule id in the body differs from the URL')
      }
      return deps.approvals.putRule(request.body, actor)
    },
  )

  app.delete<{ Params: { id: string } }>(
    '/api/v1/approval-rules/:id',
    { onRequest: auth.requireAdmin, schema: { params: RuleParams } },
    async (request, reply) => {
      await deps.approvals.deleteRule(request.params.id, actor)
      reply.code(204)
    },
  )

  app.get('/api/v1/plan', { onRequest: auth.localOrAdmin }, async () => {
    const groups = (await deps.groups.list()).map((g) => g.id)
    const result = await deps.approvals.plan(groups)
    return { groups: Object.fromEntries(result) }
  })
}
