import { type Static, Type } from '@sinclair/typebox'
import type { WanCounters } from './wan-counters.ts'

const Day = Type.String({ pattern: '^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$' })
const Bytes = Type.Integer({ minimum: 0 })

/** Query of `GET /api/v1/metrics/wan`: an inclusive range of days (in the counters' time zone). */
export const WanUsageQuerySchema = Type.Object(
  { from: Type.Optional(Day), to: Type.Optional(Day) },
  { additionalProperties: false },
)
export type WanUsageQuery = Static<typeof WanUsageQuerySchema>

/** Response of `GET /api/v1/metrics/wan`. */
export const WanUsageSchema = Type.Object(
  {
    /** Every WAN byte since the data directory was made: artifacts + feed documents. */
    totalBytes: Bytes,
    artifactBytes: Bytes,
    indexBytes: Bytes,
    todayBytes: Bytes,
    /** Retained days with traffic, oldest first. */
    days: Type.Array(Type.Object({ day: Day, bytes: Bytes })),
    /** The most recently active artifacts (at most `MAX_LISTED_ARTIFACTS`), most recent first. */
    artifacts: Type.Array(
      Type.Object({ sha256: Type.String(), bytes: Bytes, lastAt: Type.String({ format: 'date-time' }) }),
    ),
    /** How many artifacts the counters hold in all (more than listed when the list is cut). */
    artifactCount: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
)
export type WanUsage = Static<typeof WanUsageSchema>

export const MAX_LISTED_ARTIFACTS = 1000

/** The JSON view of the WAN counters. */
export function wanUsage(
  counters: Pick<WanCounters, 'totals' | 'days' | 'recentArtifacts'>,
  query: WanUsageQuery = {},
): WanUsage {
  const all = counters.recentArtifacts()
  return {
    ...counters.totals(),
    days: counters.days(query.from, query.to),
    artifacts: all.slice(0, MAX_LISTED_ARTIFACTS).map((a) => ({
      sha256: a.sha256,
      bytes: a.bytes,
      lastAt: new Date(a.lastAt).toISOString(),
    })),
    artifactCount: all.length,
  }
}
