import { PassThrough } from 'node:stream'
import swagger from '@fastify/swagger'
import { Type } from '@sinclair/typebox'
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import { AuthError, isPswError } from '../../shared/errors.ts'
import { type ApplianceCore, sameSecret } from '../core.ts'
import { EnrollRequestSchema } from '../enrollment.ts'
import { IngestRequestSchema } from '../ingest.ts'
import { type WanUsage, type WanUsageQuery, WanUsageQuerySchema, WanUsageSchema } from '../metrics/wan-usage.ts'
import type { RolloutService } from '../rollout/rollout-service.ts'
import { registerAuditRoutes } from './audit-routes.ts'
import { registerDeviceRoutes } from './device-routes.ts'
import { installErrorHandler } from './error-handler.ts'
import { registerPolicyRoutes } from './policy-routes.ts'
import { registerRolloutRoutes } from './rollout-routes.ts'
import { renderStatusPage, type StatusView } from './status-page.ts'
import { registerUpstreamRoutes, type UpstreamApi } from './upstream-routes.ts'

export const APP_VERSION = '0.1.0'

/** 127.0.0.0/8 and ::1, also as IPv4-mapped IPv6 (how Node reports them on a dual stack). */
export function isLoopback(address: string | undefined): boolean {
  if (!address) return false
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address
  return v4.startsWith('127.') || address === '::1'
}

export interface HttpDeps {
  core: ApplianceCore
  adminToken: string
  status: () => Promise<StatusView>
  /** The libp2p identity for the health check (falls back to `status()`). */
  node?: () => { peerId: string; multiaddrs: string[] }
  /** When the appliance started, by `now`'s clock. */
  startedAt: number
  now?: () => number
  /** Serves `GET /metrics` (and `GET /api/v1/metrics/wan` when it has `wanUsage`); see `createMetrics`. */
  metrics?: HttpMetrics
  /** The upstream side (feeds, WAN downloads, cache); absent in tests that do not need it. */
  upstream?: UpstreamApi
  /** Staged rollouts; absent in tests that do not need them. */
  rollouts?: RolloutService
  log: Logger
}

export interface HttpMetrics {
  /** The Prometheus text exposition, gathered at call time. */
  render(): Promise<{ contentType: string; body: string }>
  wanUsage?(query: WanUsageQuery): WanUsage
}

export const AssignBodySchema = Type.Object(
  {
    bundle: Type.String({ minLength: 1, maxLength: 200 }),
    devices: Type.Union([
      Type.Literal('all'),
      Type.Array(Type.String({ minLength: 1, maxLength: 255 }), { minItems: 1, maxItems: 10_000 }),
    ]),
  },
  { additionalProperties: false },
)
export const TokenBodySchema = Type.Object(
  {
    ttlHours: Type.Optional(Type.Integer({ minimum: 1, maximum: 24 * 30 })),
    label: Type.Optional(Type.String({ maxLength: 100 })),
  },
  { additionalProperties: false },
)

/**
 * The appliance's HTTP face: health, enrollment, status, and the admin routes the CLI uses
 * while the appliance runs (bearer token from `<data>/admin.token`, readable only by whoever
 * can read the data directory).
 */
export async function createHttpServer(deps: HttpDeps): Promise<FastifyInstance> {
  const { core, log } = deps
  const app = Fastify({
    // Request logging is off (an agent fleet polls constantly); errors are logged by our handler.
    logger: false,
    bodyLimit: 256 << 10,
    // Reject unknown fields instead of silently dropping them; never coerce types.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false } },
  })
  installErrorHandler(app, log)
  // The OpenAPI document, generated from every route's TypeBox schemas (GET /api/v1/openapi.json).
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'patchswarm appliance API',
        version: APP_VERSION,
        description:
          'Operator and agent API of a patchswarm appliance. Reads are open on loopback; from elsewhere, and for every write, send the admin token as a bearer credential. Errors are { code, message } with the codes of docs/errors.md.',
      },
      components: { securitySchemes: { adminToken: { type: 'http', scheme: 'bearer' } } },
      security: [{ adminToken: [] }],
    },
  })

  // An onRequest hook: checked before the body is read or validated, so anonymous callers
  // neither get schema hints nor make the server parse up to bodyLimit bytes.
  const requireAdmin = async (request: FastifyRequest) => {
    const header = request.headers.authorization ?? ''
    const token = header.startsWith('Bearer ') ? header.slice(7) : ''
    if (!token || !sameSecret(token, deps.adminToken))
      throw new AuthError('PSW_ERR_UNAUTHORIZED', 'admin token required')
  }

  app.get('/api/v1/openapi.json', { schema: { hide: true } }, async () => app.swagger())

  // Public: agents use it to find the appliance's current libp2p addresses. Cheap on
  // purpose (no database scan): anyone on the LAN may call it.
  app.get('/api/v1/health', async () => {
    const s = deps.node ? deps.node() : await deps.status()
    return {
      status: 'ok',
      version: APP_VERSION,
      peerId: s.peerId,
      multiaddrs: s.multiaddrs,
      uptimeSeconds: Math.round(((deps.now ?? Date.now)() - deps.startedAt) / 1000),
    }
  })

  app.post('/api/v1/enroll', { schema: { body: EnrollRequestSchema }, bodyLimit: 64 << 10 }, async (request) =>
    core.enrollment.enroll(request.body),
  )

  // Device lists are for the operator: open on loopback, bearer token from anywhere else
  // (the HTTP port may face the LAN for enrollment). Logins come with the web UI.
  const localOrAdmin = async (request: FastifyRequest) => {
    if (!isLoopback(request.socket.remoteAddress)) await requireAdmin(request)
  }

  app.get('/api/v1/status', { onRequest: localOrAdmin }, async () => {
    const s = await deps.status()
    return { ...s, devices: s.devices.map(({ certificatePem: _c, ...d }) => d) }
  })

  app.get('/', { onRequest: localOrAdmin }, async (_request, reply) => {
    reply
      .type('text/html; charset=utf-8')
      .header('content-security-policy', "default-src 'none'; style-src 'unsafe-inline'")
    return renderStatusPage(await deps.status())
  })

  if (deps.upstream) registerUpstreamRoutes(app, deps.upstream, { requireAdmin, localOrAdmin })
  registerAuditRoutes(app, { audit: core.audit }, { requireAdmin, localOrAdmin })
  registerDeviceRoutes(app, { devices: core.devices, groups: core.groups }, { requireAdmin, localOrAdmin })
  if (deps.rollouts) registerRolloutRoutes(app, deps.rollouts, { requireAdmin, localOrAdmin })
  registerPolicyRoutes(
    app,
    {
      catalog: core.catalog,
      approvals: core.approvals,
      groups: core.groups,
      ...(deps.rollouts ? { rollouts: deps.rollouts } : {}),
    },
    { requireAdmin, localOrAdmin },
  )

  const metrics = deps.metrics
  if (metrics) {
    // For a Prometheus on the appliance itself, or elsewhere with the admin token as its
    // bearer credential (`authorization.credentials_file` in the scrape config).
    app.get('/metrics', { onRequest: localOrAdmin }, async (_request, reply) => {
      const { contentType, body } = await metrics.render()
      return reply.type(contentType).header('cache-control', 'no-store').send(body)
    })
    const usage = metrics.wanUsage?.bind(metrics)
    if (usage) {
      app.get(
        '/api/v1/metrics/wan',
        { schema: { querystring: WanUsageQuerySchema, response: { 200: WanUsageSchema } }, onRequest: localOrAdmin },
        async (request) => usage(request.query as WanUsageQuery),
      )
    }
  }

  // Admin-token callers are one operator identity until the web UI brings accounts.
  const admin = { type: 'api-token', id: 'admin-token' } as const

  app.post('/api/v1/admin/tokens', { schema: { body: TokenBodySchema }, onRequest: requireAdmin }, async (request) => {
    const body = request.body as { ttlHours?: number; label?: string }
    const token = await core.enrollment.createToken(body)
    await core.audit.append({
      actor: admin,
      action: 'enrollment.token.create',
      target: { type: 'enrollment-token', id: body.label ?? 'unlabelled' },
      after: { expiresAt: token.expiresAt, label: body.label },
      requestId: request.id,
    })
    return token
  })

  app.post('/api/v1/admin/assign', { schema: { body: AssignBodySchema }, onRequest: requireAdmin }, async (request) => {
    const body = request.body as { bundle: string; devices: string[] | 'all' }
    const result = await core.assignments.assign(body.bundle, body.devices)
    await core.audit.append({
      actor: admin,
      action: 'bundle.assign',
      target: { type: 'bundle', id: result.bundleId },
      after: { devices: result.devices.map((d) => ({ peerId: d.peerId, assignmentVersion: d.version })) },
      requestId: request.id,
    })
    return result
  })

  // Streams NDJSON: {"type":"progress",...} lines, then one {"type":"result"} or {"type":"error"}.
  app.post(
    '/api/v1/admin/ingest',
    { schema: { body: IngestRequestSchema }, onRequest: requireAdmin },
    async (request, reply) => {
      const out = new PassThrough()
      const abort = new AbortController()
      // The response's 'close' (finished, or the connection dropped first). Not the request's:
      // that fires as soon as its body has been read, which would abort every ingest at once.
      reply.raw.on('close', () => {
        if (!reply.raw.writableFinished) abort.abort(new Error('client went away'))
      })
      let last = 0
      core
        .ingest(request.body as never, {
          signal: abort.signal,
          onProgress: (phase, done, total) => {
            const now = Date.now()
            if (now - last < 200 && done < total) return
            last = now
            out.write(`${JSON.stringify({ type: 'progress', phase, done, total })}\n`)
          },
        })
        .then(async (result) => {
          await core.audit.append({
            actor: admin,
            action: 'bundle.ingest',
            target: { type: 'bundle', id: result.record.bundleId },
            after: result.record,
            requestId: request.id,
          })
          await core.approvals.evaluate(result.record.bundleId)
          return result
        })
        .then(
          (result) =>
            out.end(`${JSON.stringify({ type: 'result', record: result.record, newChunks: result.newChunks })}\n`),
          (err) => {
            const error = isPswError(err) ? err.toJSON() : { code: 'PSW_ERR_INTERNAL', message: 'internal error' }
            if (!isPswError(err)) log.error({ err }, 'ingest failed')
            out.end(`${JSON.stringify({ type: 'error', error })}\n`)
          },
        )
      return reply.type('application/x-ndjson').send(out)
    },
  )

  return app
}
