import { type Static, Type } from '@sinclair/typebox'
import { ValidationError } from '../errors.ts'
import { isRealTimestamp, MetadataVersion, PeerIdString, Sha256Hex, Timestamp } from './common-schema.ts'
import { compileChecker } from './schema-check.ts'

export const ASSIGNMENT_TYPE = 'patchswarm/assignment'
export const ASSIGNMENT_SPEC_VERSION = 1
export const MAX_ASSIGNMENT_BYTES = 256 << 10
export const MAX_ASSIGNED_BUNDLES = 256

export const AssignedBundle = Type.Object(
  {
    bundleId: Sha256Hex,
    /** The exact manifest version meant (mix-and-match protection). */
    manifestVersion: MetadataVersion,
    action: Type.Literal('install'),
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
  },
  { additionalProperties: false },
)

export type Assignment = Static<typeof AssignmentSchema>

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
  return a
}
