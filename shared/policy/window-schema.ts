import { type Static, Type } from '@sinclair/typebox'
import { ValidationError } from '../errors.ts'
import { compileChecker } from '../metadata/schema-check.ts'
import { parseCron } from './window-cron.ts'
import { parseRRule } from './window-rrule.ts'
import { isKnownTimeZone, parseFloating } from './window-zone.ts'

/**
 * A maintenance window: a recurring local wall-clock start (RRULE + DTSTART, or cron) in an
 * IANA time zone, open for `durationMinutes` of elapsed time from each real start instant.
 * See docs/windows.md for the DST rules.
 */

export const MAX_WINDOW_DURATION_MINUTES = 7 * 24 * 60
export const MAX_WINDOW_EXCLUSIONS = 366
/** Windows attached to one group; their union is what is open. */
export const MAX_WINDOWS_PER_GROUP = 32

const LocalDate = Type.String({ pattern: '^[0-9]{4}-[0-9]{2}-[0-9]{2}$' })

export const RRuleRecurrenceSchema = Type.Object(
  {
    /** RFC 5545 RRULE subset, e.g. `FREQ=WEEKLY;BYDAY=SU;BYHOUR=2;BYMINUTE=0`. */
    rrule: Type.String({ minLength: 6, maxLength: 512 }),
    /** DTSTART as a local wall-clock time in the window's zone: `YYYY-MM-DDTHH:MM`. */
    dtstart: Type.String({ pattern: '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}$' }),
  },
  { additionalProperties: false },
)

export const CronRecurrenceSchema = Type.Object(
  {
    /** Five fields: minute hour day-of-month month day-of-week, local wall-clock. */
    cron: Type.String({ minLength: 9, maxLength: 128 }),
  },
  { additionalProperties: false },
)

export const MaintenanceWindowSchema = Type.Object(
  {
    id: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' }),
    name: Type.String({ minLength: 1, maxLength: 128 }),
    /** IANA time zone name, e.g. `Europe/Berlin`. */
    timeZone: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_+\\-/]+$' }),
    recurrence: Type.Union([RRuleRecurrenceSchema, CronRecurrenceSchema]),
    /** Elapsed minutes from each real start instant (not wall-clock; see docs/windows.md). */
    durationMinutes: Type.Integer({ minimum: 1, maximum: MAX_WINDOW_DURATION_MINUTES }),
    /** Whether devices may reboot while this window is open. */
    allowReboot: Type.Boolean(),
    /** Local dates (`YYYY-MM-DD`) on which an occurrence starting that day is dropped. */
    exclusions: Type.Optional(Type.Array(LocalDate, { maxItems: MAX_WINDOW_EXCLUSIONS, uniqueItems: true })),
  },
  { additionalProperties: false },
)
export type MaintenanceWindow = Static<typeof MaintenanceWindowSchema>
export type RRuleRecurrence = Static<typeof RRuleRecurrenceSchema>

export const MaintenanceWindowListSchema = Type.Array(MaintenanceWindowSchema, { maxItems: MAX_WINDOWS_PER_GROUP })

const checker = compileChecker(MaintenanceWindowSchema)

export function isRRuleRecurrence(r: MaintenanceWindow['recurrence']): r is RRuleRecurrence {
  return 'rrule' in r
}

function invalid(what: string, field: string, message: string, cause?: unknown): ValidationError {
  return new ValidationError('PSW_ERR_INVALID_ARGUMENT', `${what}: ${message}`, {
    cause,
    details: { field },
  })
}

/**
 * Validates a window from the API or configuration: the schema (PSW_ERR_SCHEMA), then what a
 * schema cannot say (PSW_ERR_INVALID_ARGUMENT, `details.field` names the part): the zone is
 * known to the runtime, DTSTART and exclusions are real calendar dates, the RRULE or cron parses.
 */
export function parseMaintenanceWindow(value: unknown, what = 'maintenance window'): MaintenanceWindow {
  const window = checker.check(value, what)
  if (!isKnownTimeZone(window.timeZone)) {
    throw invalid(what, 'timeZone', `unknown time zone ${window.timeZone}`)
  }
  const r = window.recurrence
  try {
    if (isRRuleRecurrence(r)) parseRRule(r.rrule)
    else parseCron(r.cron)
  } catch (err) {
    const field = isRRuleRecurrence(r) ? 'recurrence.rrule' : 'recurrence.cron'
    throw invalid(what, field, err instanceof Error ? err.message : String(err), err)
  }
  if (isRRuleRecurrence(r) && parseFloating(r.dtstart) === undefined) {
    throw invalid(what, 'recurrence.dtstart', `dtstart ${r.dtstart} is not a date-time in 1970..2199`)
  }
  for (const date of window.exclusions ?? []) {
    if (parseFloating(date) === undefined) throw invalid(what, 'exclusions', `exclusion ${date} is not a date`)
  }
  return window
}
