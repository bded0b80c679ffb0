import { Type } from '@sinclair/typebox'
import type { FastifyInstance } from 'fastify'
import { actorOf, requireRole } from '../auth/principal.ts'
import type { CacheUsage } from '../upstream/bundle-cache.ts'
import type { ArtifactState, UpstreamEntry } from '../upstream/upstream-catalog.ts'
import type { SyncReport, UpstreamStatus } from '../upstream/upstream-service.ts'

/** What the HTTP API needs of the upstream side (appliance/upstream/upstream-factory.ts). */
export interface UpstreamApi {
  status(): Promise<UpstreamStatus & { cache: CacheUsage; wanBytesPerSecond: number }>
  list(filter: { feedId?: string; state?: ArtifactState }): Promise<UpstreamEntry[]>
  sync(feedId?: string): Promise<SyncReport[]>
  request(ref: string, by: string): Promise<UpstreamEntry>
}

const STATES = ['available', 'queued', 'downloading', 'ingesting', 'ready', 'failed', 'quarantined', 'evicted']
const FeedId = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' })

export const ArtifactListQuerySchema = Type.Object(
  {
    feed: Type.Optional(FeedId),
    state: Type.Optional(Type.Union(STATES.map((s) => Type.Literal(s)))),
    limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,5}$' })),
  },
  { additionalProperties: false },
)
export const SyncBodySchema = Type.Object({ feed: Type.Optional(FeedId) }, { additionalProperties: false })
export const FetchBodySchema = Type.Object(
  { ref: Type.String({ minLength: 3, maxLength: 400 }) },
  { additionalProperties: false },
)

export type ArtifactSummary = ReturnType<typeof summarize>

/** What the CLI sees of the upstream side, whether the appliance runs or not. */
export interface AdminUpstream {
  status(): ReturnType<UpstreamApi['status']>
  list(filter: { feedId?: string; state?: ArtifactState }): Promise<ArtifactSummary[]>
  sync(feedId?: string): Promise<SyncReport[]>
  request(ref: string): Promise<ArtifactSummary>
}

/** The operator's summary of one upstream artifact. */
export function summarize(e: UpstreamEntry) {
  const a = e.artifact
  return {
    ref: e.ref,
    state: e.state,
    listed: e.listed,
    name: a.name,
    version: a.version,
    vendor: a.vendor,
    product: a.product,
    severity: a.severity,
    classification: a.classification,
    cves: a.cves,
    emergency: a.emergency,
    size: a.size,
    sha256: a.sha256,
    installer: a.installer.type,
    firstSeen: e.firstSeen,
    ...(e.bundleId === undefined ? {} : { bundleId: e.bundleId }),
    ...(e.requestedBy === undefined ? {} : { requestedBy: e.requestedBy }),
    ...(e.error === undefined ? {} : { error: e.error }),
  }
}

/**
 * Upstream routes: status and the artifact list for viewers, sync and fetch for operators.
 */
export function registerUpstreamRoutes(app: FastifyInstance, upstream: UpstreamApi): void {
  const viewer = requireRole('viewer')
  const operator = requireRole('operator')
  app.get('/api/v1/upstream', { onRequest: viewer }, async () => upstream.status())

  app.get<{ Querystring: { feed?: string; state?: ArtifactState; limit?: string } }>(
    '/api/v1/upstream/artifacts',
    { onRequest: viewer, schema: { querystring: ArtifactListQuerySchema } },
    async (request) => {
      const { feed, state, limit } = request.query
      const all = await upstream.list({ ...(feed ? { feedId: feed } : {}), ...(state ? { state } : {}) })
      all.sort((a, b) => b.firstSeen.localeCompare(a.firstSeen) || a.ref.localeCompare(b.ref))
      const max = Math.min(Number(limit ?? 1000), 10_000)
      return { total: all.length, artifacts: all.slice(0, max).map(summarize) }
    },
  )

  app.post<{ Body: { feed?: string } }>(
    '/api/v1/upstream/sync',
    { onRequest: operator, schema: { body: SyncBodySchema } },
    async (request) => ({ reports: await upstream.sync(request.body.feed) }),
  )

  app.post<{ Body: { ref: string } }>(
    '/api/v1/upstream/fetch',
    { onRequest: operator, schema: { body: FetchBodySchema } },
    async (request, reply) => {
      const actor = actorOf(request)
      // Recorded as the requesting operator: an account's name, else the credential.
      const entry = await upstream.request(
        request.body.ref,
        actor.type === 'operator' ? actor.id : `${actor.type}:${actor.id}`,
      )
      reply.code(entry.state === 'ready' ? 200 : 202)
      return summarize(entry)
    },
  )
}
