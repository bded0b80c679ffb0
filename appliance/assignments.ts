import type { Logger } from 'pino'
import type { Clock } from '../shared/clock.ts'
import { StateError, ValidationError } from '../shared/errors.ts'
import {
  ASSIGNMENT_SPEC_VERSION,
  ASSIGNMENT_TYPE,
  type Assignment,
  type AssignmentWindows,
  MAX_ASSIGNED_BUNDLES,
  MAX_SPREAD_SECONDS,
  validateAssignment,
} from '../shared/metadata/assignment-schema.ts'
import { type SignedEnvelope, type Signer, signEnvelope } from '../shared/metadata/envelope.ts'
import {
  MAX_WINDOWS_PER_GROUP,
  type MaintenanceWindow,
  parseMaintenanceWindow,
} from '../shared/policy/window-schema.ts'
import { Mutex } from '../shared/store/mutex.ts'
import type { StateBatchOp, StateDb } from '../shared/store/state-db.ts'
import type { Catalog } from './catalog.ts'
import type { DeviceRegistry } from './devices.ts'

export interface AssignmentDeps {
  db: StateDb
  catalog: Catalog
  devices: DeviceRegistry
  signer: Signer
  clock: Clock
  ttlDays: number
  log: Logger
}

export interface AssignResult {
  bundleId: string
  devices: Array<{ peerId: string; hostname: string; version: number }>
}

const assignmentKey = (peerId: string) => `assignment:${peerId}`

/** The windows part of an assignment, carried over unchanged when its bundles change. */
function windowsOf(a: Assignment | undefined): AssignmentWindows {
  if (a?.windows === undefined) return {}
  return { windows: a.windows, ...(a.spreadSeconds === undefined ? {} : { spreadSeconds: a.spreadSeconds }) }
}

/**
 * Signed per-device assignments (the rollout engine of a later issue replaces the manual
 * `assign`). Each change produces a new assignment with a higher metadata version that lists
 * everything the device should have; agents refuse anything older than what they have seen.
 */
export class Assignments {
  readonly #deps: AssignmentDeps
  readonly #mutex = new Mutex()

  constructor(deps: AssignmentDeps) {
    this.#deps = deps
  }

  async get(peerId: string): Promise<SignedEnvelope<Assignment> | undefined> {
    return this.#deps.db.get<SignedEnvelope<Assignment>>(assignmentKey(peerId))
  }

  /** Bundles some device's current assignment names (the cache never evicts these). */
  async assignedBundleIds(): Promise<Set<string>> {
    const out = new Set<string>()
    for await (const [, env] of this.#deps.db.iterate<SignedEnvelope<Assignment>>('assignment:'))
      for (const b of env.signed.bundles) out.add(b.bundleId)
    return out
  }

  /** Assigns a bundle (id, id prefix or name@version) to devices (PeerIds or hostnames, or 'all'). */
  async assign(
    bundleRef: string,
    deviceRefs: string[] | 'all',
    options: { emergency?: boolean } = {},
  ): Promise<AssignResult> {
    return this.#mutex.runExclusive(async () => {
      const { catalog, devices, db, clock, log } = this.#deps
      const bundle = await catalog.resolve(bundleRef)
      const all = await devices.list()
      const resolved =
        deviceRefs === 'all'
          ? all
          : deviceRefs.map((ref) => {
              const hits = all.filter((d) => d.peerId === ref || d.hostname === ref)
              if (hits.length === 0) throw new StateError('PSW_ERR_NOT_FOUND', `no enrolled device '${ref}'`)
              if (hits.length > 1)
                throw new StateError('PSW_ERR_CONFLICT', `'${ref}' names ${hits.length} devices; use the PeerId`)
              return hits[0]!
            })
      // A device named twice (hostname and PeerId) gets one assignment, not one per mention.
      const targets = [...new Map(resolved.map((d) => [d.peerId, d])).values()]
      if (targets.length === 0) throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', 'no devices to assign to')
      const now = clock.now()
      const ops: StateBatchOp[] = []
      const result: AssignResult = { bundleId: bundle.bundleId, devices: [] }
      const nextVersion = await this.#versions(targets.length)
      for (const device of targets) {
        const current = (await this.get(device.peerId))?.signed
        const bundles = (current?.bundles ?? []).filter((b) => b.bundleId !== bundle.bundleId)
        bundles.push({
          bundleId: bundle.bundleId,
          manifestVersion: bundle.manifestVersion,
          action: 'install',
          ...(options.emergency ? { emergency: true as const } : {}),
        })
        if (bundles.length > MAX_ASSIGNED_BUNDLES) {
          throw new ValidationError(
            'PSW_ERR_TOO_LARGE',
            `${device.hostname} would have more than ${MAX_ASSIGNED_BUNDLES} bundles`,
          )
        }
        const { op, version } = this.#issue(device.peerId, bundles, now, windowsOf(current), nextVersion())
        ops.push(op)
        result.devices.push({ peerId: device.peerId, hostname: device.hostname, version })
      }
      await db.batch(ops)
      log.info({ bundleId: bundle.bundleId, devices: result.devices.length }, 'bundle assigned')
      return result
    })
  }

  /**
   * Adds a bundle to some devices' assignments, removes it from others, and re-issues others
   * unchanged (a new version: the agent tries a failed install again), and turns others' entry
   * into a `rollback` (a site-wide rollback: added if absent; `emergency` skips their windows),
   * all in one durable batch. `add` replaces a pending rollback entry with an install. Devices
   * not enrolled any more are skipped. Returns the new assignment version per device changed.
   * The rollout service drives this from the engine's desired devices.
   */
  async apply(
    bundleId: string,
    change: {
      add?: readonly string[]
      remove?: readonly string[]
      reissue?: readonly string[]
      rollback?: readonly string[]
      emergency?: boolean
    },
  ): Promise<Map<string, number>> {
    return this.#mutex.runExclusive(async () => {
      const { catalog, devices, db, clock } = this.#deps
      const bundle = await catalog.get(bundleId)
      if (!bundle && (change.add?.length ?? 0) + (change.rollback?.length ?? 0) > 0)
        throw new StateError('PSW_ERR_NOT_FOUND', `no bundle ${bundleId} in the catalog`)
      const now = clock.now()
      const ops: StateBatchOp[] = []
      const versions = new Map<string, number>()
      const nextVersion = await this.#versions(
        (change.add?.length ?? 0) +
          (change.remove?.length ?? 0) +
          (change.reissue?.length ?? 0) +
          (change.rollback?.length ?? 0),
      )
      const edit = async (peerId: string, fn: (b: Assignment['bundles']) => Assignment['bundles'] | undefined) => {
        if (!devices.isMember(peerId)) return
        const assignment = (await this.get(peerId))?.signed
        const next = fn(assignment?.bundles ?? [])
        if (!next) return
        if (next.length > MAX_ASSIGNED_BUNDLES)
          throw new ValidationError(
            'PSW_ERR_TOO_LARGE',
            `device ${peerId} would have more than ${MAX_ASSIGNED_BUNDLES} bundles`,
          )
        const { op, version } = this.#issue(peerId, next, now, windowsOf(assignment), nextVersion())
        ops.push(op)
        versions.set(peerId, version)
      }
      const entry = (action: 'install' | 'rollback') => ({
        bundleId,
        manifestVersion: bundle!.manifestVersion,
        action,
        ...(action === 'rollback' && change.emergency ? { emergency: true as const } : {}),
      })
      const put = (b: Assignment['bundles'], action: 'install' | 'rollback') => {
        const current = b.find((x) => x.bundleId === bundleId)
        if (current?.action === action) return undefined
        return [...b.filter((x) => x.bundleId !== bundleId), entry(action)]
      }
      for (const p of change.add ?? []) await edit(p, (b) => put(b, 'install'))
      for (const p of change.rollback ?? []) await edit(p, (b) => put(b, 'rollback'))
      for (const p of change.remove ?? [])
        await edit(p, (b) =>
          b.some((x) => x.bundleId === bundleId) ? b.filter((x) => x.bundleId !== bundleId) : undefined,
        )
      for (const p of change.reissue ?? [])
        await edit(p, (b) => (b.some((x) => x.bundleId === bundleId) ? b : undefined))
      if (ops.length > 0) await db.batch(ops)
      return versions
    })
  }

  /**
   * Re-issues every assignment that is past two thirds of its lifetime, or that names a
   * manifest version the catalog has since replaced (re-ingest, manifest refresh), so agents
   * never see stale or mismatched metadata. Returns how many were re-issued.
   */
  async refresh(): Promise<number> {
    return this.#mutex.runExclusive(async () => {
      const { catalog, db, clock, log } = this.#deps
      const now = clock.now()
      const current = new Map((await catalog.list()).map((b) => [b.bundleId, b.manifestVersion]))
      const ops: StateBatchOp[] = []
      const due: Array<{ a: Assignment; bundles: Assignment['bundles'] }> = []
      for await (const [, env] of db.iterate<SignedEnvelope<Assignment>>('assignment:')) {
        const a = env.signed
        const bundles = a.bundles
          .filter((b) => current.has(b.bundleId))
          .map((b) => ({ ...b, manifestVersion: current.get(b.bundleId)! }))
        const changed =
          bundles.length !== a.bundles.length ||
          bundles.some((b, i) => b.manifestVersion !== a.bundles[i]!.manifestVersion)
        if (!changed && !isPastRefreshPoint(a, now)) continue
        due.push({ a, bundles })
      }
      const nextVersion = await this.#versions(due.length)
      for (const { a, bundles } of due) ops.push(this.#issue(a.device, bundles, now, windowsOf(a), nextVersion()).op)
      if (ops.length > 0) {
        await db.batch(ops)
        log.info({ reissued: ops.length }, 'assignments re-issued')
      }
      return ops.length
    })
  }

  /**
   * Sets the maintenance windows (their union) inside which these devices' agents may start
   * installs, and the install spread after each opening; an empty list clears them (install
   * any time). Re-issues each enrolled device's assignment with its bundles unchanged (or an
   * empty one if it had none), all in one durable batch; devices not enrolled are skipped.
   * Returns the new assignment version per device. Group policy drives this.
   */
  async setWindows(
    peerIds: readonly string[],
    windows: readonly MaintenanceWindow[],
    spreadSeconds = 0,
  ): Promise<Map<string, number>> {
    if (windows.length > MAX_WINDOWS_PER_GROUP)
      throw new ValidationError('PSW_ERR_TOO_LARGE', `more than ${MAX_WINDOWS_PER_GROUP} maintenance windows`)
    if (!Number.isInteger(spreadSeconds) || spreadSeconds < 0 || spreadSeconds > MAX_SPREAD_SECONDS)
      throw new ValidationError(
        'PSW_ERR_INVALID_ARGUMENT',
        `spreadSeconds must be an integer in 0..${MAX_SPREAD_SECONDS}`,
        { details: { field: 'spreadSeconds' } },
      )
    const parsed = windows.map((w, i) => parseMaintenanceWindow(w, `maintenance window ${i}`))
    if (new Set(parsed.map((w) => w.id)).size !== parsed.length)
      throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', 'two maintenance windows share an id', {
        details: { field: 'id' },
      })
    const policy: AssignmentWindows =
      parsed.length === 0 ? {} : { windows: parsed, ...(spreadSeconds > 0 ? { spreadSeconds } : {}) }
    return this.#mutex.runExclusive(async () => {
      const { devices, db, clock, log } = this.#deps
      const now = clock.now()
      const ops: StateBatchOp[] = []
      const versions = new Map<string, number>()
      const targets = [...new Set(peerIds)].filter((p) => devices.isMember(p))
      const nextVersion = await this.#versions(targets.length)
      for (const peerId of targets) {
        const bundles = (await this.get(peerId))?.signed.bundles ?? []
        const { op, version } = this.#issue(peerId, bundles, now, policy, nextVersion())
        ops.push(op)
        versions.set(peerId, version)
      }
      if (ops.length > 0) {
        await db.batch(ops)
        log.info({ devices: ops.length, windows: parsed.length, spreadSeconds }, 'maintenance windows set')
      }
      return versions
    })
  }

  /**
   * Versions for up to `count` assignments from one durable counter write (an unused rest is a
   * gap; agents only need versions to grow). One synced write per assignment was 90 % of the
   * time it took to start a ring of thousands of devices.
   */
  async #versions(count: number): Promise<() => number> {
    let next = count > 0 ? await this.#deps.db.reserveCounter('metadata-version', count) : 0
    const end = next + count
    return () => {
      if (next >= end) throw new StateError('PSW_ERR_INTERNAL', 'more assignments issued than versions reserved')
      return next++
    }
  }

  #issue(
    peerId: string,
    bundles: Assignment['bundles'],
    now: number,
    policy: AssignmentWindows,
    version: number,
  ): { op: StateBatchOp; version: number } {
    const assignment = validateAssignment({
      type: ASSIGNMENT_TYPE,
      specVersion: ASSIGNMENT_SPEC_VERSION,
      version,
      device: peerId,
      created: new Date(now).toISOString(),
      expires: new Date(now + this.#deps.ttlDays * 86_400_000).toISOString(),
      bundles,
      ...policy,
    } satisfies Assignment)
    return {
      op: { type: 'put', key: assignmentKey(peerId), value: signEnvelope(assignment, this.#deps.signer) },
      version,
    }
  }
}

/** True once less than a third of a document's lifetime is left: time to re-sign it. */
export function isPastRefreshPoint(doc: { created: string; expires: string }, now: number): boolean {
  const created = Date.parse(doc.created)
  const expires = Date.parse(doc.expires)
  return expires - now < (expires - created) / 3
}
