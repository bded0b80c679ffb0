import { Readable } from 'node:stream'
import { type Static, Type } from '@sinclair/typebox'
import type { FastifyInstance, FastifyReply } from 'fastify'
import { ValidationError } from '../../shared/errors.ts'
import { EXPORT_CONTENT_TYPES } from '../audit/audit-export.ts'
import type { AuditLog } from '../audit/audit-log.ts'
import type { AuditFilter } from '../audit/audit-query.ts'
import { ActorTypeSchema, AuditRecordSchema } from '../audit/audit-record.ts'
import { requireRole } from '../auth/principal.ts'

/** What the HTTP API needs of the audit log. */
export type AuditApi = Pick<AuditLog, 'query' | 'export' | 'verify'>

const Time = Type.String({ format: 'date-time', maxLength: 40 })
const Seq = Type.String({ pattern: '^[1-9][0-9]{0,15}$' })
const FilterParams = {
  from: Type.Optional(Time),
  to: Type.Optional(Time),
  actorId: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
  actorType: Type.Optional(ActorTypeSchema),
  /** Action prefix by dotted segment: `patch` matches `patch.approve`. */
  action: Type.Optional(Type.String({ minLength: 1, maxLength: 128, pattern: '^[a-z][a-z0-9_.-]*$' })),
  targetId: Type.Optional(Type.String({ minLength: 1, maxLength: 512 })),
  targetType: Type.Optional(Type.String({ minLength: 1, maxLength: 64, pattern: '^[a-z][a-z0-9._-]*$' })),
  order: Type.Optional(Type.Union([Type.Literal('asc'), Type.Literal('desc')])),
}

export const AuditListQuerySchema = Type.Object(
  {
    ...FilterParams,
    /** 1..1000, default 100. */
    limit: Type.Optional(Type.String({ pattern: '^(1000|[1-9][0-9]{0,2})$' })),
    /** The previous page's `next`. */
    afterSeq: Type.Optional(Seq),
  },
  { additionalProperties: false },
)
export const AuditExportQuerySchema = Type.Object(
  { ...FilterParams, format: Type.Union([Type.Literal('jsonl'), Type.Literal('csv')]) },
  { additionalProperties: false },
)
export const AuditVerifyQuerySchema = Type.Object(
  { fromSeq: Type.Optional(Seq), toSeq: Type.Optional(Seq) },
  { additionalProperties: false },
)

export const AuditPageSchema = Type.Object({
  records: Type.Array(AuditRecordSchema),
  next: Type.Optional(Type.Integer()),
})
export const AuditVerifyResultSchema = Type.Object({
  ok: Type.Boolean(),
  checked: Type.Integer(),
  head: Type.Object({ seq: Type.Integer(), hash: Type.String() }),
  brokenAt: Type.Optional(Type.Integer()),
  reason: Type.Optional(Type.String()),
  message: Type.Optional(Type.String()),
})

type FilterQuery = Omit<Static<typeof AuditExportQuerySchema>, 'format'>

/** The query string's filter, times already parsed (so a bad time is a 400, not a broken stream). */
function toFilter(q: FilterQuery): AuditFilter & { order?: 'asc' | 'desc' } {
  const time = (text: string | undefined, what: string) => {
    if (text === undefined) return undefined
    const ms = Date.parse(text)
    if (Number.isNaN(ms)) throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', `${what} is not a valid time`)
    return ms
  }
  const filter: AuditFilter & { order?: 'asc' | 'desc' } = {}
  const from = time(q.from, 'from')
  const to = time(q.to, 'to')
  if (from !== undefined) filter.from = from
  if (to !== undefined) filter.to = to
  if (q.actorId !== undefined) filter.actorId = q.actorId
  if (q.actorType !== undefined) filter.actorType = q.actorType
  if (q.action !== undefined) filter.action = q.action
  if (q.targetId !== undefined) filter.targetId = q.targetId
  if (q.targetType !== undefined) filter.targetType = q.targetType
  if (q.order !== undefined) filter.order = q.order
  return filter
}

async function* streamFrom(
  chunks: AsyncIterator<string>,
  first: IteratorResult<string>,
): AsyncGenerator<string, void, undefined> {
  try {
    for (let next = first; !next.done; next = await chunks.next()) yield next.value
  } finally {
    await chunks.return?.()
  }
}

/** Aborted when the client goes away before the response is finished. */
function clientSignal(reply: FastifyReply): AbortSignal {
  const abort = new AbortController()
  reply.raw.on('close', () => {
    if (!reply.raw.writableFinished) abort.abort(new Error('client went away'))
  })
  return abort.signal
}

/**
 * Audit routes, read-only (the log is written by the subsystems, never through the API):
 * any role (viewer and up).
 */
export function registerAuditRoutes(app: FastifyInstance, deps: { audit: AuditApi }): void {
  const { audit } = deps
  const viewer = requireRole('viewer')

  app.get<{ Querystring: Static<typeof AuditListQuerySchema> }>(
    '/api/v1/audit',
    {
      onRequest: viewer,
      schema: { querystring: AuditListQuerySchema, response: { 200: AuditPageSchema } },
    },
    async (request, reply) => {
      const { limit, afterSeq, ...rest } = request.query
      reply.header('cache-control', 'no-store')
      return audit.query(
        {
          ...toFilter(rest),
          limit: limit === undefined ? 100 : Number(limit),
          ...(afterSeq === undefined ? {} : { afterSeq: Number(afterSeq) }),
        },
        { signal: clientSignal(reply) },
      )
    },
  )

  app.get<{ Querystring: Static<typeof AuditExportQuerySchema> }>(
    '/api/v1/audit/export',
    { onRequest: viewer, schema: { querystring: AuditExportQuerySchema } },
    async (request, reply) => {
      const { format, ...rest } = request.query
      const chunks = audit.export(format, toFilter(rest), { signal: clientSignal(reply) })[Symbol.asyncIterator]()
      // The first chunk is read before the headers go out, so a failure to start is an error
      // response with its code rather than a 200 with a cut-off body.
      const body = Readable.from(streamFrom(chunks, await chunks.next()), { objectMode: false })
      return reply
        .type(EXPORT_CONTENT_TYPES[format])
        .header('content-disposition', `attachment; filename="patchswarm-audit.${format}"`)
        .header('cache-control', 'no-store')
        .send(body)
    },
  )

  app.get<{ Querystring: Static<typeof AuditVerifyQuerySchema> }>(
    '/api/v1/audit/verify',
    {
      onRequest: viewer,
      schema: { querystring: AuditVerifyQuerySchema, response: { 200: AuditVerifyResultSchema } },
    },
    async (request, reply) => {
      const { fromSeq, toSeq } = request.query
      return audit.verify(
        {
          ...(fromSeq === undefined ? {} : { fromSeq: Number(fromSeq) }),
          ...(toSeq === undefined ? {} : { toSeq: Number(toSeq) }),
        },
        { signal: clientSignal(reply) },
      )
    },
  )
}
