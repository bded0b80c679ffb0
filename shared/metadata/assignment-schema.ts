import { type Static, Type } from '@sinclair/typebox'
import { isPswError, ValidationError } from '../errors.ts'
import { MAX_WINDOWS_PER_GROUP, MaintenanceWindowSchema, parseMaintenanceWindow } from '../policy/window-schema.ts'
import { isRealTimestamp, MetadataVersion, PeerIdString, Sha256Hex, Timestamp } from './common-schema.ts'
import { compileChecker } from './schema-check.ts'

export const ASSIGNMENT_TYPE = 'patchswarm/assignment'
export const ASSIGNMENT_SPEC_VERSION = 1
export const MAX_ASSIGNMENT_BYTES = 256 << 10
export const MAX_ASSIGNED_BUNDLES = 256
/** Most a device's install start is spread after a window opens (one day). */
export const MAX_SPREAD_SECONDS = 86_400

export const AssignedBundle = Type.Object(
  {
    bundleId: Sha256Hex,
    /** The exact manifest version meant (mix-and-match protection). */
    manifestVersion: MetadataVersion,
    /**
     * `install`: have it installed. `rollback`: a site-wide rollback — restore the state from
     * before this bundle's install (nothing to do where it is not installed); the bundle is not
     * downloaded for it.
     */
    action: Type.Union([Type.Literal('install'), Type.Literal('rollback')]),
    /** Act as soon as possible, ignoring the assignment's windows. Absent = not emergency. */
    emergency: Type.Optional(Type.Literal(true)),
  },
  { additionalProperties: false },
)

/**
 * Everything one device should have installed, as of `version`. A newer assignment replaces
 * the older one as a whole; agents refuse versions older than the newest they have seen.
 */
export const AssignmentSchema = Type.Object(
  {
    type: Type.Literal(ASSIGNMENT_TYPE),
    specVersion: Type.Literal(ASSIGNMENT_SPEC_VERSION),
    version: MetadataVersion,
    device: PeerIdString,
    created: Timestamp,
    expires: Timestamp,
    bundles: Type.Array(AssignedBundle, { maxItems: MAX_ASSIGNED_BUNDLES }),
    /**
     * Maintenance windows (their union) inside which the agent may start installs. Absent =
     * install any time; never empty (an empty list would mean "never", which is not a policy).
     */
    windows: Type.Optional(Type.Array(MaintenanceWindowSchema, { minItems: 1, maxItems: MAX_WINDOWS_PER_GROUP })),
    /** With `windows`: each device starts at a hash-chosen offset in [0, spreadSeconds) after opening. */
    spreadSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_SPREAD_SECONDS })),
  },
  { additionalProperties: false },
)

export type Assignment = Static<typeof AssignmentSchema>
export type AssignedBundleT = Static<typeof AssignedBundle>
/** The install-timing part of an assignment (both absent = install any time). */
export type AssignmentWindows = Pick<Assignment, 'windows' | 'spreadSeconds'>

const checker = compileChecker(AssignmentSchema, 'PSW_ERR_ASSIGNMENT_INVALID')

export function validateAssignment(value: unknown): Assignment {
  const a = checker.check(value, 'assignment')
  if (!isRealTimestamp(a.created) || !isRealTimestamp(a.expires)) {
    throw new ValidationError('PSW_ERR_ASSIGNMENT_INVALID', 'assignment created or expires is not a real date')
  }
  if (Date.parse(a.expires) <= Date.parse(a.created)) {
    throw new ValidationError('PSW_ERR_ASSIGNMENT_INVALID', 'assignment expires is not after created')
  }
  const ids = new Set(a.bundles.map((b) => b.bundleId))
  if (ids.size !== a.bundles.length) {
    throw new ValidationError('PSW_ERR_ASSIGNMENT_INVALID', 'assignment lists a bundle twice')
  }
  if (a.windows !== undefined) {
    const wids = new Set(a.windows.map((w) => w.id))
    if (wids.size !== a.windows.length) {
      throw new ValidationError('PSW_ERR_ASSIGNMENT_INVALID', 'assignment lists a window id twice')
    }
    a.windows.forEach((w, i) => {
      try {
        parseMaintenanceWindow(w, `assignment window ${i}`)
      } catch (err) {
        throw new ValidationError('PSW_ERR_ASSIGNMENT_INVALID', err instanceof Error ? err.message : String(err), {
          cause: err,
          ...(isPswError(err) && err.details ? { details: err.details } : {}),
        })
      }
    })
  } else if (a.spreadSeconds !== undefined) {
    throw new ValidationError('PSW_ERR_ASSIGNMENT_INVALID', 'assignment has spreadSeconds but no windows')
  }
  return a
}
