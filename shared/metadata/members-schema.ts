import { type Static, Type } from '@sinclair/typebox'
import { ValidationError } from '../errors.ts'
import { isRealTimestamp, MetadataVersion, PeerIdString, Timestamp } from './common-schema.ts'
import { compileChecker } from './schema-check.ts'

export const MEMBERS_TYPE = 'patchswarm/members'
export const MEMBERS_SPEC_VERSION = 1
export const MAX_MEMBERS = 10_000
/** 10 000 PeerIds of ≤ 64 characters, with JSON overhead. */
export const MAX_MEMBERS_BYTES = 1 << 20

/**
 * The site's enrolled PeerIds, signed by the appliance: each agent's connection gater admits
 * exactly these (and the appliance), so only enrolled endpoints take part in the swarm.
 */
export const MembersSchema = Type.Object(
  {
    type: Type.Literal(MEMBERS_TYPE),
    specVersion: Type.Literal(MEMBERS_SPEC_VERSION),
    version: MetadataVersion,
    created: Timestamp,
    expires: Timestamp,
    peers: Type.Array(PeerIdString, { maxItems: MAX_MEMBERS }),
  },
  { additionalProperties: false },
)

export type Members = Static<typeof MembersSchema>

const checker = compileChecker(MembersSchema, 'PSW_ERR_SCHEMA')

export function validateMembers(value: unknown): Members {
  const m = checker.check(value, 'member list')
  if (!isRealTimestamp(m.created) || !isRealTimestamp(m.expires) || Date.parse(m.expires) <= Date.parse(m.created)) {
    throw new ValidationError('PSW_ERR_SCHEMA', 'member list created/expires are not real, ordered dates')
  }
  return m
}
