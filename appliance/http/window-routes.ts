import { type Static, Type } from '@sinclair/typebox'
import type { FastifyInstance } from 'fastify'
import { ValidationError } from '../../shared/errors.ts'
import { isRealTimestamp, Timestamp } from '../../shared/metadata/common-schema.ts'
import { occurrences, WINDOW_LOOKAHEAD_MS } from '../../shared/policy/window-schedule.ts'
import { parseMaintenanceWindow } from '../../shared/policy/window-schema.ts'
import { requireRole } from '../auth/principal.ts'

export const MAX_PREVIEW_OCCURRENCES = 50

export const WindowPreviewBodySchema = Type.Object(
  {
    /** A maintenance window as groups carry it (docs/windows.md); validated by parseMaintenanceWindow. */
    window: Type.Unknown(),
    /** Occurrences open at or after this instant (default: now). */
    from: Type.Optional(Timestamp),
    count: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_PREVIEW_OCCURRENCES })),
  },
  { additionalProperties: false },
)
export type WindowPreviewBody = Static<typeof WindowPreviewBodySchema>

const OccurrenceSchema = Type.Object({
  /** Real instants, ISO UTC. */
  start: Type.String(),
  end: Type.String(),
  /** The same instants on the window zone's wall clock with its offset: `2026-03-29T03:00+02:00`. */
  startLocal: Type.String(),
  endLocal: Type.String(),
})
export const WindowPreviewResponseSchema = Type.Object({ occurrences: Type.Array(OccurrenceSchema) })

const formatters = new Map<string, Intl.DateTimeFormat>()

/** An instant as `YYYY-MM-DDTHH:MM±HH:MM` in `timeZone` (the zone's offset at that instant). */
export function localWithOffset(ms: number, timeZone: string): string {
  let f = formatters.get(timeZone)
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      timeZoneName: 'longOffset',
    })
    formatters.set(timeZone, f)
  }
  const parts = Object.fromEntries(f.formatToParts(ms).map((p) => [p.type, p.value]))
  // 'GMT+02:00', or 'GMT' for UTC itself.
  const offset = (parts.timeZoneName ?? 'GMT').replace(/^GMT/, '') || '+00:00'
  return `${parts.year}-${parts.month}-${parts.day}T${parts.hour}:${parts.minute}${offset}`
}

/**
 * `POST /api/v1/windows/preview`: the next occurrences of a maintenance window that is not
 * saved anywhere yet (the Maintenance windows page's calendar). An invalid window is a 400
 * with parseMaintenanceWindow's reason (`details.field` names the part). Any signed-in role:
 * it reads nothing and writes nothing.
 */
export function registerWindowRoutes(app: FastifyInstance, deps: { now: () => number }): void {
  app.post<{ Body: WindowPreviewBody }>(
    '/api/v1/windows/preview',
    {
      onRequest: requireRole('viewer'),
      schema: { body: WindowPreviewBodySchema, response: { 200: WindowPreviewResponseSchema } },
    },
    async (request) => {
      const window = parseMaintenanceWindow(request.body.window)
      const { from: fromText, count = 10 } = request.body
      if (fromText !== undefined && !isRealTimestamp(fromText))
        throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', `from ${fromText} is not a real instant`, {
          details: { field: 'from' },
        })
      const from = fromText === undefined ? deps.now() : Date.parse(fromText)
      const list = occurrences(window, from, from + WINDOW_LOOKAHEAD_MS, count)
      return {
        occurrences: list.map((o) => ({
          start: new Date(o.start).toISOString(),
          end: new Date(o.end).toISOString(),
          startLocal: localWithOffset(o.start, window.timeZone),
          endLocal: localWithOffset(o.end, window.timeZone),
        })),
      }
    },
  )
}
