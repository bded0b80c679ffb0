import { Type } from '@sinclair/typebox'
import type { FastifyInstance } from 'fastify'
import type { AuditLog } from '../audit/audit-log.ts'
import type { AuthServices } from '../auth/auth-services.ts'
import { actorOf, requireRole } from '../auth/principal.ts'
import { type Role, RoleSchema } from '../auth/roles.ts'
import { actorName } from './user-routes.ts'

export const ApiTokenViewSchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  role: RoleSchema,
  createdAt: Type.String(),
  createdBy: Type.String(),
  expiresAt: Type.Optional(Type.String()),
  lastUsedAt: Type.Optional(Type.String()),
})
export const ApiTokenCreateSchema = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 100, pattern: '^[^\\u0000-\\u001f\\u007f]+$' }),
    role: RoleSchema,
    expiresAt: Type.Optional(Type.String({ format: 'date-time', maxLength: 40 })),
  },
  { additionalProperties: false },
)
const TokenParams = Type.Object({ id: Type.String({ pattern: '^[0-9a-f]{16}$' }) }, { additionalProperties: false })

/** API tokens (admin only): the secret is in the creation response and nowhere else. */
export function registerTokenRoutes(
  app: FastifyInstance,
  deps: { auth: AuthServices; audit: Pick<AuditLog, 'append'> },
): void {
  const { auth, audit } = deps
  const admin = requireRole('admin')

  app.get(
    '/api/v1/api-tokens',
    { onRequest: admin, schema: { response: { 200: Type.Object({ tokens: Type.Array(ApiTokenViewSchema) }) } } },
    async () => ({ tokens: await auth.apiTokens.list() }),
  )

  app.post<{ Body: { name: string; role: Role; expiresAt?: string } }>(
    '/api/v1/api-tokens',
    {
      onRequest: admin,
      bodyLimit: 16 << 10,
      schema: {
        body: ApiTokenCreateSchema,
        response: { 201: Type.Composite([ApiTokenViewSchema, Type.Object({ token: Type.String() })]) },
      },
    },
    async (request, reply) => {
      const actor = actorOf(request)
      const { token, view } = await auth.apiTokens.create(request.body, actorName(actor))
      await audit.append({
        actor,
        action: 'api-token.create',
        target: { type: 'api-token', id: view.id },
        after: { name: view.name, role: view.role, ...(view.expiresAt ? { expiresAt: view.expiresAt } : {}) },
        requestId: request.id,
      })
      reply.code(201)
      return { ...view, token }
    },
  )

  app.delete<{ Params: { id: string } }>(
    '/api/v1/api-tokens/:id',
    { onRequest: admin, schema: { params: TokenParams } },
    async (request, reply) => {
      const removed = await auth.apiTokens.remove(request.params.id)
      await audit.append({
        actor: actorOf(request),
        action: 'api-token.delete',
        target: { type: 'api-token', id: removed.id },
        before: { name: removed.name, role: removed.role },
        requestId: request.id,
      })
      return reply.code(204).send()
    },
  )
}
