import type { FastifyInstance } from 'fastify'
import { silentLogger } from '../../shared/log.ts'
import { readAdminToken } from '../data-dir.ts'
import type { TestAppliance } from '../test-fixtures.ts'
import { createHttpServer, type HttpDeps } from './server.ts'

/** An empty status view for tests that do not look at `GET /api/v1/status`. */
export const emptyStatus: HttpDeps['status'] = async () => ({
  siteName: 's',
  peerId: '',
  multiaddrs: [],
  rootFingerprint: '',
  bundles: [],
  devices: [],
})

/**
 * The appliance's HTTP app on a test core (for `inject()`), and the admin token's bearer
 * header; `deps` adds or overrides what a test's routes need (rollouts, reports, a clock…).
 */
export async function openTestHttp(
  t: TestAppliance,
  deps: Partial<HttpDeps> = {},
): Promise<{ app: FastifyInstance; auth: { authorization: string } }> {
  const token = await readAdminToken(t.core.layout)
  const app = await createHttpServer({
    core: t.core,
    adminToken: token,
    status: emptyStatus,
    startedAt: 0,
    log: silentLogger(),
    ...deps,
  })
  return { app, auth: { authorization: `Bearer ${token}` } }
}
