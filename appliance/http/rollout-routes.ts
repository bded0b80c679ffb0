import { Type } from '@sinclair/typebox'
import type { FastifyInstance } from 'fastify'
import { actorOf, requireRole } from '../auth/principal.ts'
import { ringCounts } from '../rollout/rollout-engine.ts'
import type { RolloutService } from '../rollout/rollout-service.ts'
import { RolloutSpec, type RolloutState } from '../rollout/rollout-types.ts'

const IdParams = Type.Object(
  { id: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' }) },
  { additionalProperties: false },
)
const CommandBody = Type.Object(
  { reason: Type.Optional(Type.String({ maxLength: 2000 })) },
  { additionalProperties: false },
)
const RollbackBody = Type.Object(
  {
    reason: Type.Optional(Type.String({ maxLength: 2000 })),
    /** Roll back at once, outside the devices' maintenance windows. Default false. */
    emergency: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
)
const DEVICE_STATES = [
  'assigned',
  'installed',
  'failed',
  'retry-wait',
  'failed-final',
  'rolling-back',
  'rolled-back',
  'rollback-failed',
]
const DevicesQuery = Type.Object(
  {
    ring: Type.Optional(Type.Integer({ minimum: 0, maximum: 15 })),
    state: Type.Optional(Type.Union(DEVICE_STATES.map((s) => Type.Literal(s)))),
  },
  { additionalProperties: false },
)
const ApproveBody = Type.Object({ ring: Type.Integer({ minimum: 0, maximum: 15 }) }, { additionalProperties: false })

/** A rollout for the API: its spec and status, and per ring its status and counts. */
export function rolloutView(state: RolloutState) {
  return {
    id: state.spec.id,
    name: state.spec.name,
    bundleId: state.spec.bundleId,
    status: state.status,
    ...(state.reason === undefined ? {} : { reason: state.reason }),
    createdAt: new Date(state.createdAt).toISOString(),
    updatedAt: new Date(state.updatedAt).toISOString(),
    revision: state.revision,
    current: state.current,
    ...(state.rollback ? { rollback: { ...state.rollback, at: new Date(state.rollback.at).toISOString() } } : {}),
    rings: state.spec.rings.map((spec, i) => ({ ...spec, ...state.rings[i], ...ringCounts(state, i) })),
    spec: state.spec,
  }
}

/**
 * Rollout routes: list and detail for viewers, create and commands (pause, resume, cancel,
 * approve the next ring, roll back) for operators; the request's principal is the actor.
 */
export function registerRolloutRoutes(app: FastifyInstance, rollouts: RolloutService): void {
  const viewer = requireRole('viewer')
  const operator = requireRole('operator')

  app.get('/api/v1/rollouts', { onRequest: viewer }, async () => ({
    rollouts: (await rollouts.list()).map(rolloutView),
  }))

  app.get<{ Params: { id: string } }>(
    '/api/v1/rollouts/:id',
    { onRequest: viewer, schema: { params: IdParams } },
    async (request) => rolloutView(await rollouts.get(request.params.id)),
  )

  app.get<{ Params: { id: string }; Querystring: { ring?: number; state?: string } }>(
    '/api/v1/rollouts/:id/devices',
    { onRequest: viewer, schema: { params: IdParams, querystring: DevicesQuery } },
    async (request) => {
      const state = await rollouts.get(request.params.id)
      const { ring, state: only } = request.query
      const devices: Record<string, unknown> = {}
      for (const [peerId, d] of Object.entries(state.devices)) {
        if ((ring !== undefined && d.ring !== ring) || (only !== undefined && d.state !== only)) continue
        devices[peerId] = { ...d, since: new Date(d.since).toISOString() }
      }
      return { id: state.spec.id, devices }
    },
  )

  app.post('/api/v1/rollouts', { onRequest: operator, schema: { body: RolloutSpec } }, async (request, reply) => {
    reply.code(201)
    return rolloutView(await rollouts.create(request.body, actorOf(request)))
  })

  for (const command of ['pause', 'resume', 'cancel'] as const) {
    app.post<{ Params: { id: string }; Body: { reason?: string } }>(
      `/api/v1/rollouts/:id/${command}`,
      { onRequest: operator, schema: { params: IdParams, body: CommandBody } },
      async (request) => {
        const actor = actorOf(request)
        const event =
          command === 'cancel'
            ? { type: command, by: actor.id, ...(request.body?.reason ? { reason: request.body.reason } : {}) }
            : { type: command, by: actor.id }
        return rolloutView(await rollouts.command(request.params.id, event, actor))
      },
    )
  }

  app.post<{ Params: { id: string }; Body: { ring: number } }>(
    '/api/v1/rollouts/:id/approve',
    { onRequest: operator, schema: { params: IdParams, body: ApproveBody } },
    async (request) => {
      const actor = actorOf(request)
      return rolloutView(
        await rollouts.command(request.params.id, { type: 'approve', ring: request.body.ring, by: actor.id }, actor),
      )
    },
  )

  app.post<{ Params: { id: string }; Body: { reason?: string; emergency?: boolean } }>(
    '/api/v1/rollouts/:id/rollback',
    { onRequest: operator, schema: { params: IdParams, body: RollbackBody } },
    async (request) => rolloutView(await rollouts.rollback(request.params.id, request.body ?? {}, actorOf(request))),
  )
}
