import { type Static, Type } from '@sinclair/typebox'
import { Sha256Hex } from '../../shared/metadata/common-schema.ts'
import { compileChecker } from '../../shared/metadata/schema-check.ts'

const Id = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' })
const Fraction = Type.Number({ minimum: 0, maximum: 1 })

/** Which devices of the rollout's target a ring takes (from those no earlier ring took). */
export const RingSelector = Type.Union([
  Type.Object({ groups: Type.Array(Id, { minItems: 1, maxItems: 32 }) }, { additionalProperties: false }),
  Type.Object({ percent: Type.Number({ exclusiveMinimum: 0, maximum: 100 }) }, { additionalProperties: false }),
  Type.Object({ count: Type.Integer({ minimum: 1, maximum: 1_000_000 }) }, { additionalProperties: false }),
  /** Every device of the target not taken by an earlier ring (the broad ring). */
  Type.Object({ rest: Type.Literal(true) }, { additionalProperties: false }),
])
export type RingSelectorT = Static<typeof RingSelector>

export const RingSpec = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 64 }),
    selector: RingSelector,
    /** Fraction of the ring's devices that must have installed for the ring to pass. */
    successThreshold: Fraction,
    /** Fraction of the ring's devices that failed for good (retries spent) that halts the rollout. */
    errorThreshold: Fraction,
    /** Time the ring must stay healthy after it passed before the next ring starts. */
    soakMinutes: Type.Optional(Type.Integer({ minimum: 0, maximum: 60 * 24 * 30 })),
    /** An operator must approve before the next ring starts. */
    approvalGate: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
)
export type RingSpecT = Static<typeof RingSpec>

export const RolloutSpec = Type.Object(
  {
    id: Id,
    name: Type.String({ minLength: 1, maxLength: 200 }),
    bundleId: Sha256Hex,
    /** The devices the rollout may reach: members of these groups ('all' = every device). */
    target: Type.Union([Type.Literal('all'), Type.Array(Id, { minItems: 1, maxItems: 64 })]),
    rings: Type.Array(RingSpec, { minItems: 1, maxItems: 16 }),
    /** A failed device is tried again this many times before it counts as failed for good. */
    retries: Type.Integer({ minimum: 0, maximum: 10 }),
  },
  { additionalProperties: false },
)
export type RolloutSpecT = Static<typeof RolloutSpec>
export const rolloutSpecChecker = compileChecker(RolloutSpec)

export type RolloutStatus =
  | 'active'
  | 'paused'
  | 'halted'
  | 'cancelled'
  | 'completed'
  /** A site-wide rollback was ordered; some devices have not confirmed it yet. */
  | 'rolling-back'
  /** Every device the rollback reached confirmed it (or failed it: see the devices). */
  | 'rolled-back'
export type RingStatus = 'pending' | 'deploying' | 'soaking' | 'awaiting-approval' | 'passed'
export type DeviceRolloutState =
  | 'assigned'
  | 'installed'
  | 'failed'
  | 'retry-wait'
  | 'failed-final'
  /** Told to roll back (the bundle's action in its assignment is `rollback`). */
  | 'rolling-back'
  /** Confirmed: the previous state is restored (or there was nothing to undo). */
  | 'rolled-back'
  /** The device could not roll back: manual attention needed (see lastError). */
  | 'rollback-failed'

export interface DeviceProgress {
  ring: number
  state: DeviceRolloutState
  /** Installs tried (1 = the first). */
  attempts: number
  lastError?: { code: string; message: string }
  /** When this device was last (re)assigned. */
  since: number
}

export interface RingProgress {
  status: RingStatus
  startedAt?: number
  passedAt?: number
  soakUntil?: number
  approvedBy?: string
}

/** Everything the engine knows about one rollout: plain data, stored as one LevelDB value. */
export interface RolloutState {
  spec: RolloutSpecT
  status: RolloutStatus
  /** Why it halted or was cancelled. */
  reason?: string
  createdAt: number
  updatedAt: number
  /** The ring being deployed (or soaking / awaiting approval); rings.length when completed. */
  current: number
  rings: RingProgress[]
  /** PeerId → progress; a device is in at most one ring. */
  devices: Record<string, DeviceProgress>
  /** Bumped on every transition (optimistic concurrency and audit ordering). */
  revision: number
  /** Set once a site-wide rollback was ordered. */
  rollback?: RollbackOrder
}

/** Who ordered a rollback, when and why; `emergency` skips the devices' maintenance windows. */
export interface RollbackOrder {
  by: string
  at: number
  reason?: string
  emergency: boolean
}

export interface RingCounts {
  total: number
  installed: number
  failed: number
  pending: number
  /** Devices told to roll back, and of those the ones that confirmed it or failed it. */
  rollingBack: number
  rolledBack: number
  rollbackFailed: number
}
