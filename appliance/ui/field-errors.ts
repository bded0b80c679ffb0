import { ApiError } from './api.ts'

/**
 * Which form field a server validation error is about, so the page can show it next to the
 * field: `details.field` (parseMaintenanceWindow, `recurrence.rrule`), the first path of a
 * schema checker's `details.errors` (`/durationMinutes: Expected …`), or the path in a fastify
 * schema message (`request body/windows/0/durationMinutes must be …`). Paths are returned
 * dotted without array indexes: `recurrence.cron`, `match.hostnamePattern`.
 */
export function errorField(err: unknown): string | undefined {
  if (!(err instanceof ApiError)) return undefined
  const d = err.details
  if (d && typeof d.field === 'string') return d.field
  const first = Array.isArray(d?.errors) ? d.errors[0] : undefined
  let path: string | undefined
  if (typeof first === 'string') path = /^(\/[^:]*):/.exec(first)?.[1]
  path ??= /body(\/\S+)/.exec(err.message)?.[1]
  if (!path) return undefined
  return path
    .split('/')
    .filter((p) => p !== '' && !/^\d+$/.test(p))
    .filter((p) => p !== 'windows' && p !== 'window')
    .join('.')
}

/** The error for a field (or one of its parts, `recurrence` for `recurrence.rrule`), else undefined. */
export function errorFor(err: unknown, ...fields: string[]): string | undefined {
  const f = errorField(err)
  if (!f) return undefined
  return fields.some((x) => f === x || f.startsWith(`${x}.`)) ? (err as ApiError).message : undefined
}

/** Comma- or whitespace-separated list → trimmed, non-empty items. */
export const listOf = (text: string): string[] =>
  text
    .split(/[\s,]+/)
    .map((t) => t.trim())
    .filter(Boolean)
