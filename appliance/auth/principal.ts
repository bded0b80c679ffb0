/**
 * Who is calling: `request.principal`, resolved once per request (an onRequest hook that
 * `installPrincipal` adds before any route) from
 *   - `Authorization: Bearer psw_…`: an API token with its role;
 *   - `Authorization: Bearer <the secret of <data>/admin.token>`: admin (the CLI on the box);
 *   - else the session cookie (`__Host-psw_session` on HTTPS, `psw_session` on plain HTTP).
 * An Authorization header that is not a valid credential leaves the request anonymous (the
 * cookie is not tried). Routes guard themselves with `requireRole(role)` as an onRequest hook:
 * 401 without a principal, 403 with a weaker role, and for cookie-authenticated unsafe
 * methods 403 PSW_ERR_CSRF unless the session's CSRF secret and a same-origin request.
 */
import { timingSafeEqual } from 'node:crypto'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { AuthError } from '../../shared/errors.ts'
import { type ApiTokenStore, isApiTokenFormat } from './api-token-store.ts'
import { type Role, roleAtLeast } from './roles.ts'
import type { Session, SessionStore } from './session-store.ts'

export type Principal =
  | { kind: 'session'; user: string; role: Role; session: Session }
  | { kind: 'api-token'; id: string; name: string; role: Role }
  | { kind: 'admin-file'; role: 'admin' }

/** Who an audit record, approval or rollout command names. */
export type Actor = { type: 'operator' | 'api-token' | 'system'; id: string }

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the hook of `installPrincipal`; undefined for anonymous callers. */
    principal: Principal | undefined
  }
}

export const SESSION_COOKIE_HTTPS = '__Host-psw_session'
export const SESSION_COOKIE_HTTP = 'psw_session'

/** The session cookie's name for this request: `__Host-` (Secure) only over HTTPS. */
export function sessionCookieName(request: FastifyRequest): string {
  return request.protocol === 'https' ? SESSION_COOKIE_HTTPS : SESSION_COOKIE_HTTP
}

function sameText(a: string, b: string): boolean {
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  return x.length === y.length && timingSafeEqual(x, y)
}

export interface PrincipalDeps {
  sessions: SessionStore
  apiTokens: ApiTokenStore
  /** The secret of `<data>/admin.token`. */
  adminToken: string
}

/** Decorates `request.principal` and resolves it for every request. Needs @fastify/cookie. */
export function installPrincipal(app: FastifyInstance, deps: PrincipalDeps): void {
  app.decorateRequest('principal', undefined)
  app.addHook('onRequest', async (request) => {
    request.principal = await resolvePrincipal(request, deps)
  })
}

export async function resolvePrincipal(request: FastifyRequest, deps: PrincipalDeps): Promise<Principal | undefined> {
  const header = request.headers.authorization
  if (header !== undefined) {
    if (!header.startsWith('Bearer ')) return undefined
    const token = header.slice(7)
    if (token.length === 0) return undefined
    if (isApiTokenFormat(token)) {
      const t = await deps.apiTokens.verify(token)
      return t && { kind: 'api-token', id: t.id, name: t.name, role: t.role }
    }
    return deps.adminToken.length > 0 && sameText(token, deps.adminToken)
      ? { kind: 'admin-file', role: 'admin' }
      : undefined
  }
  const id = request.cookies?.[sessionCookieName(request)]
  if (!id) return undefined
  const session = await deps.sessions.resolve(id)
  return session && { kind: 'session', user: session.user, role: session.role, session }
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS'])

/**
 * Whether the request comes from a page of this origin, or from no browser at all:
 * `Sec-Fetch-Site` same-origin or none; without it, `Origin` equal to this scheme and host;
 * with neither, not a browser (curl, scripts).
 */
export function isSameOriginRequest(request: FastifyRequest): boolean {
  const site = request.headers['sec-fetch-site']
  if (typeof site === 'string') return site === 'same-origin' || site === 'none'
  const origin = request.headers.origin
  if (typeof origin === 'string') return origin === `${request.protocol}://${request.host}`
  return true
}

/** Throws PSW_ERR_CSRF for a cross-site request (login, setup: before any session exists). */
export function assertSameOrigin(request: FastifyRequest): void {
  if (!isSameOriginRequest(request)) throw new AuthError('PSW_ERR_CSRF', 'cross-site request refused')
}

/** The CSRF check of a cookie-authenticated request; a no-op for bearer credentials and safe methods. */
export function assertCsrf(request: FastifyRequest): void {
  const p = request.principal
  if (p?.kind !== 'session' || SAFE_METHODS.has(request.method)) return
  const sent = request.headers['x-csrf-token']
  if (typeof sent !== 'string' || !sameText(sent, p.session.csrf)) {
    throw new AuthError('PSW_ERR_CSRF', 'x-csrf-token missing or wrong')
  }
  assertSameOrigin(request)
}

/**
 * An onRequest hook: 401 PSW_ERR_UNAUTHORIZED without a principal, 403 PSW_ERR_CSRF for a
 * cookie-authenticated unsafe request without its CSRF token, 403 PSW_ERR_FORBIDDEN below `role`.
 * Runs before the body is read, so anonymous callers get no schema hints.
 */
export function requireRole(role: Role): (request: FastifyRequest) => Promise<void> {
  return async (request) => {
    const p = request.principal
    if (!p) throw new AuthError('PSW_ERR_UNAUTHORIZED', 'log in, or send a bearer token')
    assertCsrf(request)
    if (!roleAtLeast(p.role, role)) throw new AuthError('PSW_ERR_FORBIDDEN', `this needs the ${role} role`)
  }
}

/** The principal, or 401 (for handlers behind `requireRole`). */
export function principalOf(request: FastifyRequest): Principal {
  const p = request.principal
  if (!p) throw new AuthError('PSW_ERR_UNAUTHORIZED', 'log in, or send a bearer token')
  return p
}

/** The actor to record for the request's principal. */
export function actorOf(request: FastifyRequest): Actor {
  const p = principalOf(request)
  switch (p.kind) {
    case 'session':
      return { type: 'operator', id: p.user }
    case 'api-token':
      return { type: 'api-token', id: p.id }
    case 'admin-file':
      // The CLI's credential: one identity, as before accounts existed.
      return { type: 'api-token', id: 'admin-token' }
  }
}
