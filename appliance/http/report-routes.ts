import { Type } from '@sinclair/typebox'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { complianceCsv } from '../reports/compliance.ts'
import { complianceRows, type Dashboard, type DashboardSources, patchIndex } from '../reports/dashboard.ts'

const ComplianceQuery = Type.Object(
  {
    format: Type.Optional(Type.Union([Type.Literal('json'), Type.Literal('csv')])),
    /** Only devices of this group. */
    group: Type.Optional(Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' })),
    /** Only devices that miss something. */
    missing: Type.Optional(Type.Union([Type.Literal('true'), Type.Literal('false'), Type.Boolean()])),
    /** Only this device (PeerId): the device page's "patches required by policy". */
    device: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
  },
  { additionalProperties: false },
)

/**
 * The dashboard summary (one request for the whole dashboard page, cached until the next
 * durable write) and the compliance report per device, as JSON or CSV for auditors.
 * Both for any signed-in role.
 */
export function registerReportRoutes(
  app: FastifyInstance,
  deps: {
    dashboard: { get(): Promise<Dashboard> }
    sources: DashboardSources
    now: () => number
    /** The site's name, for the printed report's header. */
    siteName?: () => string
  },
  viewer: (request: FastifyRequest) => Promise<void>,
): void {
  app.get('/api/v1/dashboard', { onRequest: viewer }, () => deps.dashboard.get())

  app.get<{
    Querystring: { format?: 'json' | 'csv'; group?: string; missing?: boolean | 'true' | 'false'; device?: string }
  }>(
    '/api/v1/reports/compliance',
    { onRequest: viewer, schema: { querystring: ComplianceQuery } },
    async (request, reply) => {
      const { group, missing, format, device } = request.query
      const all = await deps.sources.devices()
      let rows = await complianceRows(deps.sources, device === undefined ? all : all.filter((d) => d.peerId === device))
      if (group !== undefined) rows = rows.filter((r) => r.groups.includes(group))
      // A query string carries text: `missing=true` (types are never coerced).
      if (missing === true || missing === 'true') rows = rows.filter((r) => !r.compliant)
      const patches = patchIndex(await deps.sources.patches())
      const generatedAt = new Date(deps.now()).toISOString()
      if (format === 'csv') {
        const day = generatedAt.slice(0, 10)
        return reply
          .type('text/csv; charset=utf-8')
          .header('content-disposition', `attachment; filename="patchswarm-compliance-${day}.csv"`)
          .send(complianceCsv(rows, patches))
      }
      return {
        generatedAt,
        ...(deps.siteName ? { siteName: deps.siteName() } : {}),
        devices: rows.length,
        compliant: rows.filter((r) => r.compliant).length,
        rows: rows.map((r) => ({
          ...r,
          missing: r.missing.map(
            (b) => patches.get(b) ?? { bundleId: b, name: b.slice(0, 12), version: '', severity: 'none' },
          ),
        })),
      }
    },
  )
}
