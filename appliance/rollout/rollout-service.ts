import type { Logger } from 'pino'
import type { Clock } from '../../shared/clock.ts'
import { StateError } from '../../shared/errors.ts'
import type { Assignment } from '../../shared/metadata/assignment-schema.ts'
import type { SignedEnvelope } from '../../shared/metadata/envelope.ts'
import type { StateBatchOp, StateDb } from '../../shared/store/state-db.ts'
import type { Assignments } from '../assignments.ts'
import type { AuditLog } from '../audit/audit-log.ts'
import type { Catalog } from '../catalog.ts'
import type { DeviceRecord } from '../devices.ts'
import type { DeviceInfo } from './ring-selection.ts'
import {
  applyEvent,
  createRollout,
  type EngineOptions,
  nextWakeAt,
  type ReportEvent,
  type RollbackReportEvent,
  type RolloutChange,
  type RolloutEvent,
  type Transition,
  wantedEntry,
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
  /**
   * How often every device's assignment is read again to check the in-memory index of what
   * they carry (catches an assignment changed by hand, `patchswarm assign`). Default 10 min.
   */
  resyncMs?: number
  /**
   * Policy's say before a rollout starts (declines: PSW_ERR_PATCH_DECLINED); runs inside the
   * audit log's exclusive section, so a decline cannot slip in between check and start.
   */
  admit?: (spec: RolloutSpecT) => Promise<void>
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
const DEFAULT_RESYNC_MS = 10 * 60_000

/** The action of a bundle's entry in a device's current assignment. */
type EntryAction = Assignment['bundles'][number]['action']

/**
 * Runs the rollout engine for real: persists each rollout as one LevelDB value with an audit
 * record per change in the same batch (a kill -9 at any moment loses no acknowledged
 * transition), turns the engine's desired devices into signed assignments, feeds it the
 * devices' reports, and wakes it for soaks, retries and late joiners.
 *
 * This service is the only writer of `rollout:` keys, so it keeps every stored rollout in
 * memory (loaded once, replaced only after its batch is written) instead of parsing the whole
 * device map again on every read. It also keeps an index of which devices' assignments carry
 * which bundle (one scan of the assignments at start and every `resyncMs`, then updated from
 * what its own assignment changes did), so a pass does not read every device's assignment.
 */
export class RolloutService {
  readonly #d: RolloutServiceDeps
  #rollouts: Promise<Map<string, StoredRollout>> | undefined
  /** bundleId → PeerId → the action of that bundle in the device's assignment; built at #entriesAt. */
  #entries: Map<string, Map<string, EntryAction>> | undefined
  #entriesAt = 0
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

  /** Every rollout, newest first. The states are shared: treat them as read-only. */
  async list(): Promise<RolloutState[]> {
    return [...(await this.#all()).values()].map((r) => r.state).sort((a, b) => b.createdAt - a.createdAt)
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
      if ((await this.#all()).has(spec.id)) throw new StateError('PSW_ERR_CONFLICT', `rollout ${spec.id} exists`)
      await this.#d.admit?.(spec)
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

  /**
   * Feeds every live rollout the devices' latest reports and the current membership: per
   * rollout one `reports` event with every report that counts (see below) and one `tick`,
   * committed together.
   */
  async poll(): Promise<void> {
    const records = await this.#d.devices()
    const infos = records.map((r) => this.#info(r))
    let wake: number | undefined
    for (const { state } of [...(await this.#all()).values()]) {
      if (state.status === 'cancelled' || state.status === 'halted' || state.status === 'rolled-back') continue
      await this.#d.audit.exclusive(async () => {
        const stored = await this.#load(state.spec.id)
        const current = stored.state
        const reports: Array<ReportEvent | RollbackReportEvent> = []
        for (const r of records) {
          const d = current.devices[r.peerId]
          if (!d || d.attempts === 0 || !r.report) continue
          const b = r.report.bundles.find((x) => x.bundleId === current.spec.bundleId)
          if (!b) continue
          const issued = stored.issued[r.peerId]
          const seen = issued !== undefined && (r.report.assignmentVersion ?? 0) >= issued.version
          if (d.state === 'rolling-back') {
            // Only an answer to the rollback instruction itself counts (agents name the action
            // they answer; older agents do not, and the version check alone decides).
            if (!seen || !issued.rollback || (b.action !== undefined && b.action !== 'rollback')) continue
            if (b.state === 'rolled-back' || b.state === 'failed')
              reports.push({
                type: 'rollback-report',
                peerId: r.peerId,
                ok: b.state === 'rolled-back',
                ...(b.error ? { error: b.error } : {}),
              })
            continue
          }
          // A report counts only once the device has seen the assignment of this attempt.
          if (!seen || issued.rollback || issued.attempt !== d.attempts || b.action === 'rollback') continue
          if (b.state === 'installed' && d.state !== 'installed') {
            reports.push({ type: 'report', peerId: r.peerId, outcome: 'installed' })
          } else if ((b.state === 'failed' || b.state === 'rolled-back') && d.state === 'assigned') {
            reports.push({
              type: 'report',
              peerId: r.peerId,
              outcome: 'failed',
              ...(b.error ? { error: b.error } : {}),
            })
          }
        }
        const now = this.#d.clock.now()
        let t: Transition = { state: current, changes: [] }
        if (reports.length > 0) t = applyEvent(t.state, { type: 'reports', reports }, now, this.#d.engine)
        const tick = applyEvent(t.state, { type: 'tick', devices: infos }, now, this.#d.engine)
        const changes: RolloutChange[] = t.changes.concat(tick.changes)
        await this.#commit(stored, { state: tick.state, changes }, { type: 'system', id: 'rollout-engine' })
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
    let ops: StateBatchOp[] = []
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
    ops = lastWriteOfEachKey(ops)
    await this.#d.db.batch(ops)
    // Only now, with the batch durable, does the in-memory copy move on.
    ;(await this.#all()).set(id, next)
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
    const { bundleId } = state.spec
    const entries = await this.#entriesOf(bundleId)
    const add: string[] = []
    const remove: string[] = []
    const reissue: string[] = []
    const rollback: string[] = []
    for (const peerId in state.devices) {
      const d = state.devices[peerId]!
      const action = entries.get(peerId)
      const wanted = wantedEntry(state, d)
      if (wanted === 'rollback') {
        if (action !== 'rollback' || !stored.issued[peerId]?.rollback) rollback.push(peerId)
        continue
      }
      if (d.state === 'rollback-failed') continue
      if (wanted === 'install' && action !== 'install') add.push(peerId)
      else if (wanted === undefined && action !== undefined && (d.state !== 'installed' || action === 'rollback'))
        remove.push(peerId)
      else if (wanted === 'install' && d.state === 'assigned' && (stored.issued[peerId]?.attempt ?? 0) < d.attempts)
        reissue.push(peerId)
    }
    if (add.length + remove.length + reissue.length + rollback.length === 0) return
    const versions = await this.#d.assignments.apply(bundleId, {
      add,
      remove,
      reissue,
      rollback,
      ...(state.rollback?.emergency ? { emergency: true } : {}),
    })
    // The batch is written: the index follows what the assignments now say. A device apply()
    // left alone already was as asked (or is not enrolled: the next resync sees it), except a
    // re-issue of an entry that is not there any more, which the next pass adds again.
    for (const p of add) entries.set(p, 'install')
    for (const p of rollback) entries.set(p, 'rollback')
    for (const p of remove) entries.delete(p)
    for (const p of reissue) if (!versions.has(p)) entries.delete(p)
    let issued = 0
    for (const p of [...add, ...reissue]) {
      const version = versions.get(p)
      if (version === undefined) continue
      stored.issued[p] = { attempt: state.devices[p]!.attempts, version }
      issued++
    }
    for (const p of rollback) {
      const version = versions.get(p)
      if (version === undefined) continue
      stored.issued[p] = { attempt: state.devices[p]!.attempts, version, rollback: true }
      issued++
    }
    // Withdrawals record nothing: only a new install or rollback instruction changes `issued`.
    if (issued > 0) await this.#d.db.put(KEY + state.spec.id, stored)
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

  /**
   * PeerId → action of `bundleId` in that device's current assignment, from the index; the
   * index is rebuilt from one scan of every assignment when it is older than `resyncMs`.
   * Called holding `audit.exclusive()`, like every other use of the index.
   */
  async #entriesOf(bundleId: string): Promise<Map<string, EntryAction>> {
    const now = this.#d.clock.now()
    if (this.#entries === undefined || now - this.#entriesAt >= (this.#d.resyncMs ?? DEFAULT_RESYNC_MS)) {
      const index = new Map<string, Map<string, EntryAction>>()
      for await (const [, env] of this.#d.db.iterate<SignedEnvelope<Assignment>>('assignment:')) {
        for (const b of env.signed.bundles) {
          const m = index.get(b.bundleId) ?? new Map<string, EntryAction>()
          index.set(b.bundleId, m)
          m.set(env.signed.device, b.action)
        }
      }
      this.#entries = index
      this.#entriesAt = now
    }
    const m = this.#entries.get(bundleId) ?? new Map<string, EntryAction>()
    this.#entries.set(bundleId, m)
    return m
  }

  /** Every stored rollout by id, loaded on first use. */
  #all(): Promise<Map<string, StoredRollout>> {
    this.#rollouts ??= (async () => {
      const out = new Map<string, StoredRollout>()
      for await (const [, r] of this.#d.db.iterate<StoredRollout>(KEY)) out.set(r.state.spec.id, r)
      return out
    })().catch((err: unknown) => {
      this.#rollouts = undefined
      throw err
    })
    return this.#rollouts
  }

  async #load(id: string): Promise<StoredRollout> {
    const stored = (await this.#all()).get(id)
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

/**
 * The batch without the writes a later write of the same key in it overrides: the same
 * outcome once the (atomic) batch is applied. Every audit record of a batch rewrites the audit
 * head; a pass with 3 000 device transitions would otherwise encode and write it 3 000 times.
 */
function lastWriteOfEachKey(ops: readonly StateBatchOp[]): StateBatchOp[] {
  const last = new Map<string, number>()
  for (const [i, op] of ops.entries()) last.set(op.key, i)
  return ops.filter((op, i) => last.get(op.key) === i)
}

export type { RolloutSpecT }
