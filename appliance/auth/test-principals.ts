/**
 * For route tests that build a bare fastify app: a stand-in for `installPrincipal` that maps
 * `Authorization: Bearer <token>` to an API-token principal with the given role.
 */
import type { FastifyInstance } from 'fastify'
import type { Role } from './roles.ts'

export function installTestPrincipals(app: FastifyInstance, tokens: Record<string, Role>): void {
  app.decorateRequest('principal', undefined)
  app.addHook('onRequest', async (request) => {
    const header = request.headers.authorization ?? ''
    const token = header.startsWith('Bearer ') ? header.slice(7) : ''
    const role = Object.hasOwn(tokens, token) ? tokens[token] : undefined
    request.principal = role ? { kind: 'api-token', id: `test-${role}`, name: token, role } : undefined
  })
}
