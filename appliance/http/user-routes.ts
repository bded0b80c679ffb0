import { Type } from '@sinclair/typebox'
import type { FastifyInstance } from 'fastify'
import type { AuditLog } from '../audit/audit-log.ts'
import type { AuthServices } from '../auth/auth-services.ts'
import { type Actor, actorOf, requireRole } from '../auth/principal.ts'
import { PasswordSchema, type Role, RoleSchema, UsernameSchema } from '../auth/roles.ts'
import type { UserUpdate } from '../auth/user-store.ts'

const BODY_LIMIT = 16 << 10

export const UserViewSchema = Type.Object({
  username: Type.String(),
  role: RoleSchema,
  disabled: Type.Boolean(),
  createdAt: Type.String(),
  createdBy: Type.String(),
  passwordChangedAt: Type.String(),
  updatedAt: Type.Optional(Type.String()),
})
export const UserCreateSchema = Type.Object(
  { username: UsernameSchema, password: PasswordSchema, role: RoleSchema },
  { additionalProperties: false },
)
export const UserUpdateSchema = Type.Object(
  {
    role: Type.Optional(RoleSchema),
    password: Type.Optional(PasswordSchema),
    disabled: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false, minProperties: 1 },
)
const UserParams = Type.Object({ username: UsernameSchema }, { additionalProperties: false })

/** How a principal is named in `createdBy` fields: `operator:alice`, `api-token:<id>`. */
export const actorName = (a: Actor) => `${a.type}:${a.id}`

/**
 * Accounts (admin only). A role change, a password set by an admin, disabling or removing an
 * account ends all of its sessions; the last enabled admin cannot be removed, demoted or
 * disabled (PSW_ERR_CONFLICT).
 */
export function registerUserRoutes(
  app: FastifyInstance,
  deps: { auth: AuthServices; audit: Pick<AuditLog, 'append'> },
): void {
  const { auth, audit } = deps
  const admin = requireRole('admin')

  app.get(
    '/api/v1/users',
    { onRequest: admin, schema: { response: { 200: Type.Object({ users: Type.Array(UserViewSchema) }) } } },
    async () => ({ users: await auth.users.list() }),
  )

  app.post<{ Body: { username: string; password: string; role: Role } }>(
    '/api/v1/users',
    { onRequest: admin, bodyLimit: BODY_LIMIT, schema: { body: UserCreateSchema, response: { 201: UserViewSchema } } },
    async (request, reply) => {
      const actor = actorOf(request)
      const user = await auth.users.create(request.body, actorName(actor))
      await audit.append({
        actor,
        action: 'user.create',
        target: { type: 'user', id: user.username },
        after: { role: user.role },
        requestId: request.id,
      })
      reply.code(201)
      return user
    },
  )

  app.put<{ Params: { username: string }; Body: UserUpdate }>(
    '/api/v1/users/:username',
    {
      onRequest: admin,
      bodyLimit: BODY_LIMIT,
      schema: { params: UserParams, body: UserUpdateSchema, response: { 200: UserViewSchema } },
    },
    async (request) => {
      const { username } = request.params
      const { before, after } = await auth.users.update(username, request.body)
      const p = request.principal
      // An admin setting their own password keeps the session they do it from.
      const keep =
        p?.kind === 'session' && p.user === username && before.role === after.role && before.disabled === after.disabled
          ? p.session.key
          : undefined
      const changed = before.role !== after.role || before.disabled !== after.disabled || request.body.password
      const ended = changed ? await auth.sessions.destroyAllFor(username, keep) : 0
      await audit.append({
        actor: actorOf(request),
        action: 'user.update',
        target: { type: 'user', id: username },
        before: { role: before.role, disabled: before.disabled },
        after: {
          role: after.role,
          disabled: after.disabled,
          ...(request.body.password === undefined ? {} : { passwordChanged: true }),
          sessionsEnded: ended,
        },
        requestId: request.id,
      })
      return after
    },
  )

  app.delete<{ Params: { username: string } }>(
    '/api/v1/users/:username',
    { onRequest: admin, schema: { params: UserParams } },
    async (request, reply) => {
      const { username } = request.params
      const removed = await auth.users.remove(username)
      const ended = await auth.sessions.destroyAllFor(username)
      await audit.append({
        actor: actorOf(request),
        action: 'user.delete',
        target: { type: 'user', id: username },
        before: { role: removed.role, disabled: removed.disabled },
        after: { sessionsEnded: ended },
        requestId: request.id,
      })
      return reply.code(204).send()
    },
  )
}
