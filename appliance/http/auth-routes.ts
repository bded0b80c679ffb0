import { Type } from '@sinclair/typebox'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { AuthError } from '../../shared/errors.ts'
import type { AuditLog } from '../audit/audit-log.ts'
import type { AuthServices } from '../auth/auth-services.ts'
import type { LoginThrottle } from '../auth/login-throttle.ts'
import { actorOf, assertSameOrigin, principalOf, requireRole, sessionCookieName } from '../auth/principal.ts'
import { PasswordSchema, type Role, RoleSchema, UsernameSchema } from '../auth/roles.ts'

export interface AuthRoutesDeps {
  auth: AuthServices
  audit: Pick<AuditLog, 'append'>
  throttle: LoginThrottle
}

const PRINTABLE = '^[^\\u0000-\\u001f\\u007f]+$'
const BODY_LIMIT = 16 << 10

export const LoginBodySchema = Type.Object(
  {
    // Not the account name pattern: a malformed name is a failed login like any other.
    username: Type.String({ minLength: 1, maxLength: 256, pattern: PRINTABLE }),
    password: PasswordSchema,
  },
  { additionalProperties: false },
)
export const SetupBodySchema = Type.Object(
  {
    token: Type.String({ minLength: 1, maxLength: 128 }),
    username: UsernameSchema,
    password: PasswordSchema,
  },
  { additionalProperties: false },
)
export const PasswordChangeBodySchema = Type.Object(
  { current: PasswordSchema, password: PasswordSchema },
  { additionalProperties: false },
)
export const LoginResultSchema = Type.Object({ username: Type.String(), role: RoleSchema, csrfToken: Type.String() })
export const SessionViewSchema = Type.Object({
  username: Type.String(),
  role: RoleSchema,
  csrfToken: Type.String(),
  expiresAt: Type.String({ format: 'date-time' }),
})
const ErrorSchema = Type.Object({ code: Type.String(), message: Type.String() })

/** Public routes appear without security requirements in the OpenAPI document. */
const PUBLIC: { security: [] } = { security: [] }

/** Sets the session cookie: HttpOnly, SameSite=Strict, Path=/, and `__Host-`/Secure over HTTPS. */
export function setSessionCookie(request: FastifyRequest, reply: FastifyReply, id: string): void {
  reply.setCookie(sessionCookieName(request), id, {
    httpOnly: true,
    sameSite: 'strict',
    path: '/',
    secure: request.protocol === 'https',
  })
}

export function clearSessionCookie(request: FastifyRequest, reply: FastifyReply): void {
  reply.clearCookie(sessionCookieName(request), {
    httpOnly: true,
    sameSite: 'strict',
    path: '/',
    secure: request.protocol === 'https',
  })
}

/**
 * Setup, login, logout, the current session and password change (docs/web-ui.md). Login and
 * setup issue a new session id and CSRF secret every time and end the session the request
 * came with (session fixation, faults row 22); failed logins are limited per (address, user)
 * and per address (faults row 21).
 */
export function registerAuthRoutes(app: FastifyInstance, deps: AuthRoutesDeps): void {
  const { auth, audit, throttle } = deps

  /** Ends the session the request's cookie names, if any (before a new login). */
  const endCookieSession = async (request: FastifyRequest) => {
    const old = request.cookies[sessionCookieName(request)]
    if (old) await auth.sessions.destroy(old)
  }

  const startSession = async (request: FastifyRequest, reply: FastifyReply, user: string, role: Role) => {
    await endCookieSession(request)
    const { id, session } = await auth.sessions.create(user, role)
    setSessionCookie(request, reply, id)
    return { username: user, role, csrfToken: session.csrf }
  }

  app.get(
    '/api/v1/auth/state',
    { schema: { ...PUBLIC, response: { 200: Type.Object({ setupRequired: Type.Boolean() }) } } },
    async () => ({ setupRequired: await auth.setup.required() }),
  )

  app.post<{ Body: { token: string; username: string; password: string } }>(
    '/api/v1/auth/setup',
    {
      bodyLimit: BODY_LIMIT,
      onRequest: async (request) => assertSameOrigin(request),
      schema: { ...PUBLIC, body: SetupBodySchema, response: { 201: LoginResultSchema } },
    },
    async (request, reply) => {
      const { token, username, password } = request.body
      const user = await auth.setup.complete(token, { username, password })
      await audit.append({
        actor: { type: 'operator', id: user.username },
        action: 'auth.setup',
        target: { type: 'user', id: user.username },
        after: { role: user.role, address: request.ip },
        requestId: request.id,
      })
      reply.code(201)
      return startSession(request, reply, user.username, user.role)
    },
  )

  app.post<{ Body: { username: string; password: string } }>(
    '/api/v1/auth/login',
    {
      bodyLimit: BODY_LIMIT,
      onRequest: async (request) => assertSameOrigin(request),
      schema: {
        ...PUBLIC,
        body: LoginBodySchema,
        response: { 200: LoginResultSchema, 401: ErrorSchema, 429: ErrorSchema },
      },
    },
    async (request, reply) => {
      const { username, password } = request.body
      const wait = throttle.retryAfter(request.ip, username)
      if (wait > 0) {
        reply.header('retry-after', String(wait))
        throw new AuthError('PSW_ERR_RATE_LIMITED', `too many failed logins; try again in ${wait} s`)
      }
      const user = await auth.users.authenticate(username, password)
      if (!user) {
        throttle.failed(request.ip, username)
        await audit.append({
          actor: { type: 'system', id: 'login' },
          action: 'auth.login.failed',
          target: { type: 'user', id: username },
          after: { address: request.ip },
          requestId: request.id,
        })
        throw new AuthError('PSW_ERR_LOGIN_FAILED', 'wrong user name or password')
      }
      const result = await startSession(request, reply, user.username, user.role)
      await audit.append({
        actor: { type: 'operator', id: user.username },
        action: 'auth.login',
        target: { type: 'user', id: user.username },
        after: { role: user.role, address: request.ip },
        requestId: request.id,
      })
      return result
    },
  )

  app.post(
    '/api/v1/auth/logout',
    { onRequest: requireRole('viewer'), bodyLimit: BODY_LIMIT },
    async (request, reply) => {
      const p = principalOf(request)
      if (p.kind === 'session') {
        await auth.sessions.destroyKey(p.session.key)
        clearSessionCookie(request, reply)
        await audit.append({
          actor: actorOf(request),
          action: 'auth.logout',
          target: { type: 'user', id: p.user },
          requestId: request.id,
        })
      }
      return reply.code(204).send()
    },
  )

  app.get(
    '/api/v1/auth/session',
    { onRequest: requireRole('viewer'), schema: { response: { 200: SessionViewSchema } } },
    async (request) => {
      const p = principalOf(request)
      if (p.kind !== 'session') throw new AuthError('PSW_ERR_UNAUTHORIZED', 'no login session (a bearer credential)')
      return {
        username: p.user,
        role: p.role,
        csrfToken: p.session.csrf,
        expiresAt: new Date(p.session.expiresAt).toISOString(),
      }
    },
  )

  app.post<{ Body: { current: string; password: string } }>(
    '/api/v1/auth/password',
    { onRequest: requireRole('viewer'), bodyLimit: BODY_LIMIT, schema: { body: PasswordChangeBodySchema } },
    async (request, reply) => {
      const p = principalOf(request)
      if (p.kind !== 'session') throw new AuthError('PSW_ERR_FORBIDDEN', 'only an account can change its password')
      const wait = throttle.retryAfter(request.ip, p.user)
      if (wait > 0) {
        reply.header('retry-after', String(wait))
        throw new AuthError('PSW_ERR_RATE_LIMITED', `too many failed attempts; try again in ${wait} s`)
      }
      if (!(await auth.users.authenticate(p.user, request.body.current))) {
        throttle.failed(request.ip, p.user)
        throw new AuthError('PSW_ERR_FORBIDDEN', 'the current password is wrong')
      }
      await auth.users.update(p.user, { password: request.body.password })
      const ended = await auth.sessions.destroyAllFor(p.user, p.session.key)
      await audit.append({
        actor: actorOf(request),
        action: 'user.password',
        target: { type: 'user', id: p.user },
        after: { otherSessionsEnded: ended },
        requestId: request.id,
      })
      return reply.code(204).send()
    },
  )
}
