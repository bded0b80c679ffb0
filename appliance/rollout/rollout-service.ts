import type { Logger } from 'pino'
import type { Clock } from '../../shared/clock.ts'
import { StateError } from '../../shared/errors.ts'
import type { StateBatchOp, StateDb } from '../../shared/store/state-db.ts'
import type { Assignments } from '../assignments.ts'
import type { AuditLog } from '../audit/audit-log.ts'
import type { Catalog } from '../catalog.ts'
import type { DeviceRecord } from '../devices.ts'
import type { DeviceInfo } from './ring-selection.ts'
import {
  applyEvent,
  createRollout,
  desiredDevices,
  type EngineOptions,
  nextWakeAt,
  type RolloutChange,
  type RolloutEvent,
  rollbackDevices,
  type Transition,
} from './rollout-engine.ts'
import { type RolloutSpecT, type RolloutState, rolloutSpecChecker } from './rollout-types.ts'

export interface RolloutServiceDeps {
  db: StateDb
  catalog: Catalog
  assignments: Assignments
  audit: AuditLog
  /** Every enrolled device with its latest report. */
  devices: () => Promise<DeviceRecord[]>
  /** The groups a device belongs to now (groups by tags or filters; default: its tags). */
  groupsOf?: (device: DeviceRecord) => string[]
  clock: Clock
  log: Logger
  engine?: EngineOptions
  /** How often reports and late joiners are looked at without any other event. Default 15 s. */
  pollMs?: number
}

export type Actor = { type: 'operator' | 'api-token' | 'system'; id: string }

/** What is stored per rollout: the engine's state, plus what the service issued per device. */
interface StoredRollout {
  state: RolloutState
  /**
   * Per device: the engine attempt for which an assignment was last issued, and its version;
   * `rollback` once the rollback instruction was issued (its version then).
   */
  issued: Record<string, { attempt: number; version: number; rollback?: true }>
}

/** Rollouts that hold their bundle's assignments: another rollout of the same bundle would fight them. */
const LIVE: ReadonlySet<RolloutState['status']> = new Set(['active', 'paused', 'halted', 'completed', 'rolling-back'])

const KEY = 'rollout:'

/**
 * Runs the rollout engine for real: persists each rollout as one LevelDB value with an audit
 * record per change in the same batch (a kill -9 at any moment loses no acknowledged
 * transition), turns the engine's desired devices into signed assignments, feeds it the
 * devices' reports, and wakes it for soaks, retries and late joiners.
 */
export class RolloutService {
  readonly #d: RolloutServiceDeps
  #timer: NodeJS.Timeout | undefined
  /** When the scheduled poll fires (epoch ms, real time). */
  #timerAt = Number.POSITIVE_INFINITY
  #running: Promise<void> = Promise.resolve()
  #started = false
  #lastPollEnd = 0

  constructor(deps: RolloutServiceDeps) {
    this.#d = deps
  }

  start(): void {
    if (this.#started) return
    this.#started = true
    this.#schedule(0)
  }

  async stop(): Promise<void> {
    this.#started = false
    clearTimeout(this.#timer)
    await this.#running
  }

  /**
   * Something a rollout may act on happened (a device reported): poll soon rather than at the
   * next 15 s tick — 250 ms later, to take a burst of reports in one pass, and at most one
   * pass per second.
   */
  nudge(): void {
    if (!this.#started) return
    const at = Math.max(Date.now() + 250, this.#lastPollEnd + 1000)
    if (at < this.#timerAt) this.#schedule(at - Date.now())
  }

  #schedule(ms: number): void {
    clearTimeout(this.#timer)
    this.#timerAt = Number.POSITIVE_INFINITY
    if (!this.#started) return
    this.#timerAt = Date.now() + ms
    this.#timer = setTimeout(() => {
      this.#timerAt = Number.POSITIVE_INFINITY
      // One pass at a time: a nudge during a pass queues the next one behind it.
      this.#running = this.#running
        .then(() => this.poll())
        .catch((err) => this.#d.log.error({ err }, 'rollout poll failed'))
        .finally(() => {
          this.#lastPollEnd = Date.now()
          if (this.#timerAt === Number.POSITIVE_INFINITY) this.#schedule(this.#d.pollMs ?? 15_000)
        })
    }, ms)
    this.#timer.unref()
  }

  async list(): Promise<RolloutState[]> {
    const out: RolloutState[] = []
    for await (const [, r] of this.#d.db.iterate<StoredRollout>(KEY)) out.push(r.state)
    return out.sort((a, b) => b.createdAt - a.createdAt)
  }

  async get(id: string): Promise<RolloutState> {
    return (await this.#load(id)).state
  }

  /** Starts a rollout: rings sized from the devices now, the first ring assigned at once. */
  async create(input: unknown, actor: Actor): Promise<RolloutState> {
    const spec = rolloutSpecChecker.check(input, 'rollout')
    if (!(await this.#d.catalog.get(spec.bundleId)))
      throw new StateError('PSW_ERR_NOT_FOUND', `no bundle ${spec.bundleId} in the catalog`)
    return this.#d.audit.exclusive(async () => {
      if (await this.#d.db.get(KEY + spec.id)) throw new StateError('PSW_ERR_CONFLICT', `rollout ${spec.id} exists`)
      const rival = (await this.list()).find((r) => r.spec.bundleId === spec.bundleId && LIVE.has(r.status))
      if (rival)
        throw new StateError(
          'PSW_ERR_CONFLICT',
          `rollout ${rival.spec.id} of this bundle is ${rival.status}; cancel or roll it back first`,
          { details: { rollout: rival.spec.id, status: rival.status } },
        )
      const t = createRollout(spec, await this.#deviceInfos(), this.#d.clock.now())
      return this.#commit({ state: t.state, issued: {} }, t, actor, { action: 'rollout.create', after: spec })
    })
  }

  /** pause, resume, cancel, approve (PSW_ERR_CONFLICT when the rollout is not in a state for it). */
  async command(
    id: string,
    event: Extract<RolloutEvent, { type: 'pause' | 'resume' | 'cancel' | 'approve' }>,
    actor: Actor,
  ): Promise<RolloutState> {
    return this.#d.audit.exclusive(async () => {
      const stored = await this.#load(id)
      const t = applyEvent(stored.state, event, this.#d.clock.now(), this.#d.engine)
      return this.#commit(stored, t, actor, { action: `rollout.${event.type}` })
    })
  }

  /**
   * Orders a site-wide rollback: every device that has (or may have) the bundle gets a new
   * signed assignment whose entry for it is `rollback`; `emergency` lets agents act outside
   * their maintenance windows. PSW_ERR_CONFLICT when it is rolling back or rolled back already.
   */
  async rollback(id: string, options: { reason?: string; emergency?: boolean }, actor: Actor): Promise<RolloutState> {
    return this.#d.audit.exclusive(async () => {
      const stored = await this.#load(id)
      const event: RolloutEvent = {
        type: 'rollback',
        by: actor.id,
        ...(options.reason === undefined ? {} : { reason: options.reason }),
        ...(options.emergency === undefined ? {} : { emergency: options.emergency }),
      }
      const t = applyEvent(stored.state, event, this.#d.clock.now(), this.#d.engine)
      return this.#commit(stored, t, actor, {
        action: 'rollout.rollback',
        after: { status: t.state.status, ...t.state.rollback },
      })
    })
  }

  /** Feeds every live rollout the devices' latest reports and the current membership. */
  async poll(): Promise<void> {
    const records = await this.#d.devices()
    const infos = records.map((r) => this.#info(r))
    let wake: number | undefined
    for (const state of await this.list()) {
      if (state.status === 'cancelled' || state.status === 'halted' || state.status === 'rolled-back') continue
      await this.#d.audit.exclusive(async () => {
        const stored = await this.#load(state.spec.id)
        let t: Transition = { state: stored.state, changes: [] }
        const changes: RolloutChange[] = []
        const now = this.#d.clock.now()
        for (const r of records) {
          const d = t.state.devices[r.peerId]
          const b = r.report?.bundles.find((x) => x.bundleId === t.state.spec.bundleId)
          if (!d || !b || d.attempts === 0) continue
          const issued = stored.issued[r.peerId]
          const seen = issued !== undefined && (r.report?.assignmentVersion ?? 0) >= issued.version
          if (d.state === 'rolling-back') {
            // Only an answer to the rollback instruction itself counts.
            if (!seen || !issued.rollback) continue
            if (b.state === 'rolled-back' || b.state === 'failed') {
              const ok = b.state === 'rolled-back'
              const answer: RolloutEvent = {
                type: 'rollback-report',
                peerId: r.peerId,
                ok,
                ...(b.error ? { error: b.error } : {}),
              }
              t = applyEvent(t.state, answer, now, this.#d.engine)
              changes.push(...t.changes)
            }
            continue
          }
          // A report counts only once the device has seen the assignment of this attempt.
          if (!seen || issued.rollback || issued.attempt !== d.attempts) continue
          if (b.state === 'installed' && d.state !== 'installed') {
            t = applyEvent(t.state, { type: 'report', peerId: r.peerId, outcome: 'installed' }, now, this.#d.engine)
            changes.push(...t.changes)
          } else if ((b.state === 'failed' || b.state === 'rolled-back') && d.state === 'assigned') {
            const report: RolloutEvent = {
              type: 'report',
              peerId: r.peerId,
              outcome: 'failed',
              ...(b.error ? { error: b.error } : {}),
            }
            t = applyEvent(t.state, report, now, this.#d.engine)
            changes.push(...t.changes)
          }
        }
        t = applyEvent(t.state, { type: 'tick', devices: infos }, now, this.#d.engine)
        changes.push(...t.changes)
        await this.#commit(stored, { state: t.state, changes }, { type: 'system', id: 'rollout-engine' })
      })
      const next = nextWakeAt(await this.get(state.spec.id), this.#d.engine)
      if (next !== undefined) wake = wake === undefined ? next : Math.min(wake, next)
    }
    if (wake !== undefined && this.#started) {
      const inMs = Math.max(0, wake - this.#d.clock.now())
      if (inMs < (this.#d.pollMs ?? 15_000)) this.#schedule(inMs)
    }
  }

  /**
   * Writes the new state with one audit record per change (and one for the command itself)
   * in one batch, then brings the assignments in line with the engine's desired devices. The
   * caller holds `audit.exclusive()`. An assignment failure after the commit is repaired by
   * the next poll (the desired set is recomputed from the stored state).
   */
  async #commit(
    stored: StoredRollout,
    t: Transition,
    actor: Actor,
    command?: { action: string; after?: unknown },
  ): Promise<RolloutState> {
    const id = t.state.spec.id
    const ops: StateBatchOp[] = []
    const target = { type: 'rollout', id }
    if (command) {
      ops.push(
        ...this.#d.audit.appendOps({
          actor,
          action: command.action,
          target,
          after: command.after ?? { status: t.state.status, revision: t.state.revision },
        }).ops,
      )
    }
    for (const c of t.changes) {
      const action = c.kind === 'rollout' ? 'rollout.status' : c.kind === 'ring' ? 'rollout.ring' : 'rollout.device'
      const entry = {
        actor: command ? actor : ({ type: 'system', id: 'rollout-engine' } as const),
        action,
        target: c.kind === 'device' ? { type: 'device', id: c.peerId } : target,
        before:
          c.kind === 'ring'
            ? { ring: c.ring, status: c.from }
            : c.kind === 'device'
              ? { rollout: id, ring: c.ring, state: c.from }
              : { status: c.from },
        after:
          c.kind === 'ring'
            ? { ring: c.ring, status: c.to }
            : c.kind === 'device'
              ? { rollout: id, ring: c.ring, state: c.to }
              : { status: c.to },
        ...(c.kind === 'rollout' && c.reason ? { reason: c.reason } : {}),
      }
      ops.push(...this.#d.audit.appendOps(entry).ops)
    }
    if (ops.length === 0) {
      // Nothing moved: no write; the assignments are still checked (repairs a failed update).
      await this.#reconcile(stored)
      return stored.state
    }
    const next: StoredRollout = { state: t.state, issued: stored.issued }
    ops.push({ type: 'put', key: KEY + id, value: next })
    await this.#d.db.batch(ops)
    await this.#reconcile(next)
    return t.state
  }

  /**
   * Assign the bundle to desired devices, withdraw it from the others, re-issue for retries;
   * during a rollback, turn the entry of devices told to roll back into `rollback` and drop it
   * once they confirmed (a device whose rollback failed keeps it: its snapshot stays).
   */
  async #reconcile(stored: StoredRollout): Promise<void> {
    const { state } = stored
    const desired = new Set(desiredDevices(state))
    const rollingBack = new Set(rollbackDevices(state))
    const add: string[] = []
    const remove: string[] = []
    const reissue: string[] = []
    const rollback: string[] = []
    for (const [peerId, d] of Object.entries(state.devices)) {
      const entry = ((await this.#d.assignments.get(peerId))?.signed.bundles ?? []).find(
        (b) => b.bundleId === state.spec.bundleId,
      )
      if (rollingBack.has(peerId)) {
        if (entry?.action !== 'rollback' || !stored.issued[peerId]?.rollback) rollback.push(peerId)
        continue
      }
      if (d.state === 'rollback-failed') continue
      const want = desired.has(peerId)
      if (want && entry?.action !== 'install') add.push(peerId)
      else if (!want && entry && (d.state !== 'installed' || entry.action === 'rollback')) remove.push(peerId)
      else if (want && entry && d.state === 'assigned' && (stored.issued[peerId]?.attempt ?? 0) < d.attempts)
        reissue.push(peerId)
    }
    if (add.length + remove.length + reissue.length + rollback.length === 0) return
    const versions = await this.#d.assignments.apply(state.spec.bundleId, {
      add,
      remove,
      reissue,
      rollback,
      ...(state.rollback?.emergency ? { emergency: true } : {}),
    })
    for (const p of [...add, ...reissue]) {
      const version = versions.get(p)
      if (version !== undefined) stored.issued[p] = { attempt: state.devices[p]!.attempts, version }
    }
    for (const p of rollback) {
      const version = versions.get(p)
      if (version !== undefined) stored.issued[p] = { attempt: state.devices[p]!.attempts, version, rollback: true }
    }
    await this.#d.db.put(KEY + state.spec.id, stored)
    this.#d.log.info(
      {
        rollout: state.spec.id,
        added: add.length,
        removed: remove.length,
        reissued: reissue.length,
        rollingBack: rollback.length,
      },
      'rollout assignments updated',
    )
  }

  async #load(id: string): Promise<StoredRollout> {
    const stored = await this.#d.db.get<StoredRollout>(KEY + id)
    if (!stored) throw new StateError('PSW_ERR_NOT_FOUND', `no rollout ${id}`)
    return stored
  }

  #info(r: DeviceRecord): DeviceInfo {
    return { peerId: r.peerId, groups: this.#d.groupsOf ? this.#d.groupsOf(r) : (r.tags ?? []) }
  }

  async #deviceInfos(): Promise<DeviceInfo[]> {
    return (await this.#d.devices()).map((r) => this.#info(r))
  }
}

export type { RolloutSpecT }
