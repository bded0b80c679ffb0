import { PassThrough } from 'node:stream'
import cookie from '@fastify/cookie'
import swagger from '@fastify/swagger'
import { Type } from '@sinclair/typebox'
import Fastify, { type FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import { isPswError } from '../../shared/errors.ts'
import { fingerprint256 } from '../../shared/pki/web-cert.ts'
import { LoginThrottle, type LoginThrottleOptions } from '../auth/login-throttle.ts'
import { actorOf, installPrincipal, requireRole } from '../auth/principal.ts'
import type { ApplianceCore } from '../core.ts'
import { EnrollRequestSchema } from '../enrollment.ts'
import { IngestRequestSchema } from '../ingest.ts'
import { type WanUsage, type WanUsageQuery, WanUsageQuerySchema, WanUsageSchema } from '../metrics/wan-usage.ts'
import type { Dashboard, DashboardSources } from '../reports/dashboard.ts'
import type { RolloutService } from '../rollout/rollout-service.ts'
import type { SettingsService } from '../settings/settings-service.ts'
import { registerAuditRoutes } from './audit-routes.ts'
import { registerAuthRoutes } from './auth-routes.ts'
import { type CertificatesApi, registerCertificateRoutes } from './certificate-routes.ts'
import { registerDeviceRoutes } from './device-routes.ts'
import { installErrorHandler } from './error-handler.ts'
import { registerEventRoutes } from './events.ts'
import { registerCaRoute, type WebServers } from './listeners.ts'
import { registerPolicyRoutes } from './policy-routes.ts'
import { registerReportRoutes } from './report-routes.ts'
import { registerRolloutRoutes } from './rollout-routes.ts'
import { installSecurityHeaders } from './security-headers.ts'
import { registerSettingsRoutes } from './settings-routes.ts'
import type { StatusView } from './status-page.ts'
import { registerTokenRoutes } from './token-routes.ts'
import { registerUiRoutes } from './ui-routes.ts'
import { registerUpstreamRoutes, type UpstreamApi } from './upstream-routes.ts'
import { registerUserRoutes } from './user-routes.ts'
import { registerWindowRoutes } from './window-routes.ts'

export const APP_VERSION = '0.1.0'

export interface HttpDeps {
  core: ApplianceCore
  /** Both listeners (see listeners.ts); absent → a plain fastify server (tests use inject). */
  servers?: WebServers
  /** The web CA served at `GET /ca.crt` (null: an imported certificate without its CA → 404). */
  webCaPem?: () => string | null
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
  /** The dashboard summary and compliance reports; absent in tests that do not need them. */
  reports?: { dashboard: { get(): Promise<Dashboard> }; sources: DashboardSources }
  /** Settings (upstream configuration at run time); absent in tests that do not need it. */
  settings?: SettingsService
  /** The web certificates (Settings page) and HTTPS URLs; absent in tests that do not need them. */
  certificates?: CertificatesApi
  /** A tag, tier or group changed (the appliance re-signs devices' windows at once). */
  onPolicyChange?: () => void
  /** Failed-login limits (tests shorten them); by `now`'s clock. */
  loginThrottle?: LoginThrottleOptions
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
 * The appliance's HTTP face: health, enrollment, status, accounts, and the routes of the web
 * UI, the CLI and scripts. Every route but health, enrollment, the OpenAPI document and
 * setup/login needs a principal with a role (appliance/auth/principal.ts): a session cookie,
 * an API token, or the admin token of `<data>/admin.token` (the CLI on the box).
 */
export async function createHttpServer(deps: HttpDeps): Promise<FastifyInstance> {
  const { core, log } = deps
  const app = Fastify({
    // The HTTPS + loopback-HTTP listeners (listeners.ts) when given; else fastify's own HTTP server (tests use inject).
    ...(deps.servers ? { serverFactory: deps.servers.serverFactory } : {}),
    // Request logging is off (an agent fleet polls constantly); errors are logged by our handler.
    logger: false,
    bodyLimit: 256 << 10,
    // Reject unknown fields instead of silently dropping them; never coerce types.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false } },
  })
  installErrorHandler(app, log)
  // Bodies are JSON only: a text/plain form post is a 415, never parsed (CSRF, docs/web-ui.md).
  app.removeContentTypeParser('text/plain')
  await installSecurityHeaders(app)
  await app.register(cookie)
  installPrincipal(app, { sessions: core.auth.sessions, apiTokens: core.auth.apiTokens, adminToken: deps.adminToken })
  // The OpenAPI document, generated from every route's TypeBox schemas (GET /api/v1/openapi.json).
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'patchswarm appliance API',
        version: APP_VERSION,
        description:
          'Operator and agent API of a patchswarm appliance. Send an API token (psw_…) or the admin token as a bearer credential, or log in (POST /api/v1/auth/login) and send the session cookie with the x-csrf-token header on writes. Roles: viewer (reads), operator (decisions, groups, rollouts, ingest, upstream), admin (accounts, API and enrollment tokens). Errors are { code, message } with the codes of docs/errors.md.',
      },
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer' },
          session: { type: 'apiKey', in: 'cookie', name: 'psw_session' },
        },
      },
      security: [{ bearer: [] }, { session: [] }],
    },
  })

  // onRequest hooks: checked before the body is read or validated, so anonymous callers
  // neither get schema hints nor make the server parse up to bodyLimit bytes.
  const viewer = requireRole('viewer')
  const operator = requireRole('operator')
  const admin = requireRole('admin')

  app.get('/api/v1/openapi.json', { schema: { hide: true } }, async () => app.swagger())

  // Public: the web CA, for operators to import into browsers (compare its fingerprint first).
  if (deps.webCaPem) registerCaRoute(app, deps.webCaPem)

  // Public: agents use it to find the appliance's current libp2p addresses. Cheap on
  // purpose (no database scan): anyone on the LAN may call it.
  app.get('/api/v1/health', { schema: { security: [] } }, async () => {
    const s = deps.node ? deps.node() : await deps.status()
    return {
      status: 'ok',
      version: APP_VERSION,
      peerId: s.peerId,
      multiaddrs: s.multiaddrs,
      uptimeSeconds: Math.round(((deps.now ?? Date.now)() - deps.startedAt) / 1000),
    }
  })

  app.post(
    '/api/v1/enroll',
    { schema: { body: EnrollRequestSchema, security: [] }, bodyLimit: 64 << 10 },
    async (request) => core.enrollment.enroll(request.body),
  )

  // Accounts: setup, login, sessions (public where they must be), users and API tokens (admin).
  const throttle = new LoginThrottle({ now: deps.now ?? Date.now }, deps.loginThrottle)
  registerAuthRoutes(app, { auth: core.auth, audit: core.audit, throttle })
  registerUserRoutes(app, { auth: core.auth, audit: core.audit })
  registerTokenRoutes(app, { auth: core.auth, audit: core.audit })

  // Every read needs a principal (viewer and up), loopback callers included.
  app.get('/api/v1/status', { onRequest: viewer }, async () => {
    const s = await deps.status()
    return { ...s, devices: s.devices.map(({ certificatePem: _c, ...d }) => d) }
  })

  // The web UI (public shell: its data comes from the API) and its live event stream.
  registerUiRoutes(app)
  registerEventRoutes(app, { db: core.db }, { onRequest: viewer })

  if (deps.reports)
    registerReportRoutes(
      app,
      { ...deps.reports, now: deps.now ?? Date.now, siteName: () => core.config.siteName },
      viewer,
    )
  if (deps.settings) registerSettingsRoutes(app, deps.settings)
  if (deps.certificates) registerCertificateRoutes(app, { certificates: deps.certificates, audit: core.audit })
  if (deps.upstream) registerUpstreamRoutes(app, deps.upstream)
  registerAuditRoutes(app, { audit: core.audit })
  registerDeviceRoutes(app, {
    devices: core.devices,
    groups: core.groups,
    audit: core.audit,
    ...(deps.onPolicyChange ? { onChange: deps.onPolicyChange } : {}),
  })
  if (deps.rollouts) registerRolloutRoutes(app, deps.rollouts)
  registerWindowRoutes(app, { now: deps.now ?? Date.now })
  registerPolicyRoutes(app, {
    catalog: core.catalog,
    approvals: core.approvals,
    groups: core.groups,
    ...(deps.rollouts ? { rollouts: deps.rollouts } : {}),
  })

  const metrics = deps.metrics
  if (metrics) {
    // For Prometheus with an API token (viewer) as its bearer credential
    // (`authorization.credentials_file` in the scrape config).
    app.get('/metrics', { onRequest: viewer }, async (_request, reply) => {
      const { contentType, body } = await metrics.render()
      return reply.type(contentType).header('cache-control', 'no-store').send(body)
    })
    const usage = metrics.wanUsage?.bind(metrics)
    if (usage) {
      app.get(
        '/api/v1/metrics/wan',
        { schema: { querystring: WanUsageQuerySchema, response: { 200: WanUsageSchema } }, onRequest: viewer },
        async (request) => usage(request.query as WanUsageQuery),
      )
    }
  }

  // Enrollment tokens: admin. Assign and ingest: operator.
  app.post('/api/v1/admin/tokens', { schema: { body: TokenBodySchema }, onRequest: admin }, async (request) => {
    const body = request.body as { ttlHours?: number; label?: string }
    const token = await core.enrollment.createToken(body)
    await core.audit.append({
      actor: actorOf(request),
      action: 'enrollment.token.create',
      target: { type: 'enrollment-token', id: body.label ?? 'unlabelled' },
      after: { expiresAt: token.expiresAt, label: body.label },
      requestId: request.id,
    })
    // What `patchswarm agent enroll` needs besides the token: the root and web CA to pin, the URL(s).
    const caPem = deps.webCaPem?.() ?? null
    const urls = deps.certificates?.urls() ?? { httpsUrl: null, webUrls: [] }
    return {
      ...token,
      rootFingerprint: core.identity.rootFingerprint,
      webCaFingerprint256: caPem === null ? null : fingerprint256(caPem),
      httpsUrl: urls.httpsUrl,
      webUrls: urls.webUrls,
    }
  })

  app.post('/api/v1/admin/assign', { schema: { body: AssignBodySchema }, onRequest: operator }, async (request) => {
    const body = request.body as { bundle: string; devices: string[] | 'all' }
    const result = await core.assignments.assign(body.bundle, body.devices)
    await core.audit.append({
      actor: actorOf(request),
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
    { schema: { body: IngestRequestSchema }, onRequest: operator },
    async (request, reply) => {
      const actor = actorOf(request)
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
            actor,
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
