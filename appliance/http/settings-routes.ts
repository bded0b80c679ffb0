import type { FastifyInstance } from 'fastify'
import { actorOf, requireRole } from '../auth/principal.ts'
import type { SettingsService } from '../settings/settings-service.ts'
import { UpstreamConfigSchema } from '../upstream/upstream-config.ts'

/**
 * The Settings page's configuration routes (admin): the appliance's settings, and the
 * upstream part — feeds, WAN cap and schedule, cache quota, auto-download rules, sync
 * interval — changed at run time (validated, applied, written durably, audited).
 */
export function registerSettingsRoutes(app: FastifyInstance, settings: SettingsService): void {
  const admin = requireRole('admin')
  app.get('/api/v1/settings', { onRequest: admin }, () => settings.get())
  app.put(
    '/api/v1/settings/upstream',
    { onRequest: admin, schema: { body: UpstreamConfigSchema }, bodyLimit: 256 << 10 },
    async (request) => ({ upstream: await settings.setUpstream(request.body, actorOf(request)) }),
  )
}
