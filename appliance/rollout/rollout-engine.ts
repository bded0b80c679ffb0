import { StateError } from '../../shared/errors.ts'
import { assignRings, type DeviceInfo, inTarget, ringForLateJoiner } from './ring-selection.ts'
import type {
  DeviceProgress,
  DeviceRolloutState,
  RingCounts,
  RingStatus,
  RolloutSpecT,
  RolloutState,
  RolloutStatus,
} from './rollout-types.ts'

/**
 * The staged-rollout state machine: pure functions from (state, event, now) to a new state and
 * the list of what changed. No I/O, no clock of its own — the rollout service persists the
 * state (one LevelDB value, with its audit records in the same batch) and turns
 * {@link desiredDevices} into signed assignments. docs/rollouts.md has the state diagram.
 *
 * Rollout:  active ⇄ paused;  active|paused|halted|completed → cancelled;  active → halted (a
 *           ring crossed its error threshold, or finished below its success threshold);
 *           active → completed (last ring passed); any but rolling-back|rolled-back →
 *           rolling-back (site-wide rollback ordered) → rolled-back (no device left to confirm).
 * Ring:     pending → deploying → (soaking) → (awaiting-approval) → passed; the next ring
 *           starts deploying when the previous one is passed.
 * Device:   assigned → installed | failed → retry-wait → assigned … → failed-final;
 *           assigned|installed → rolling-back → rolled-back | rollback-failed.
 */

/** A device's latest report of the rollout's bundle, for its current attempt. */
export type ReportEvent = {
  type: 'report'
  peerId: string
  outcome: 'installed' | 'failed'
  error?: { code: string; message: string }
}
/** A device's answer to the rollback: restored (or nothing to undo), or it could not. */
export type RollbackReportEvent = {
  type: 'rollback-report'
  peerId: string
  ok: boolean
  error?: { code: string; message: string }
}

export type RolloutEvent =
  /** Time passed and/or device membership changed (devices = every enrolled device now). */
  | { type: 'tick'; devices: readonly DeviceInfo[] }
  | ReportEvent
  /**
   * Many devices' reports at once (what one poll found): each applied as its own `report` or
   * `rollback-report` would be, in order; thresholds, timers and ring advancement are then
   * looked at once, on the outcome of all of them (so a halt's reason counts every failure of
   * the batch, and a ring that passes and fails within one batch halts without starting the
   * next ring). One copy of the state for the whole batch instead of one per report.
   */
  | { type: 'reports'; reports: ReadonlyArray<ReportEvent | RollbackReportEvent> }
  | { type: 'pause'; by: string }
  | { type: 'resume'; by: string }
  | { type: 'cancel'; by: string; reason?: string }
  | { type: 'approve'; ring: number; by: string }
  /** A site-wide rollback: every device that has (or may have) the bundle restores its previous state. */
  | { type: 'rollback'; by: string; reason?: string; emergency?: boolean }
  | RollbackReportEvent

export type RolloutChange =
  | { kind: 'rollout'; from: RolloutStatus; to: RolloutStatus; reason?: string }
  | { kind: 'ring'; ring: number; from: RingStatus; to: RingStatus }
  | { kind: 'device'; peerId: string; ring: number; from: DeviceRolloutState | 'none'; to: DeviceRolloutState }

export interface EngineOptions {
  /** Delay before a failed device is assigned again. Default 10 min. */
  retryDelayMs?: number
}

export interface Transition {
  state: RolloutState
  changes: RolloutChange[]
}

const DEFAULT_RETRY_DELAY_MS = 10 * 60_000

/**
 * The new state one call builds, copy on write: it starts as a shallow copy of the previous
 * state (rings copied), and a device's progress (and the device map itself) is copied the
 * first time this call changes it. Unchanged devices stay shared with the previous state, so
 * a report of one device costs O(1) copies, not a copy of every device; neither state is ever
 * changed after the call returns (callers treat states as immutable values).
 */
class Draft {
  readonly state: RolloutState
  readonly changes: RolloutChange[] = []
  /** Whether state.devices is this draft's own object; devices this draft copied already. */
  #ownMap: boolean
  readonly #owned: Set<string> | undefined

  constructor(previous: RolloutState, fresh = false) {
    if (fresh) {
      this.state = previous
      this.#ownMap = true
      this.#owned = undefined // a new state: everything in it is this draft's own
    } else {
      this.state = { ...previous, rings: previous.rings.map((r) => ({ ...r })) }
      this.#ownMap = false
      this.#owned = new Set()
    }
  }

  /** The progress of a device of the rollout, safe to change. */
  device(peerId: string): DeviceProgress {
    const current = this.state.devices[peerId]!
    if (this.#owned === undefined || this.#owned.has(peerId)) return current
    const copy = { ...current }
    this.#map()[peerId] = copy
    this.#owned.add(peerId)
    return copy
  }

  addDevice(peerId: string, d: DeviceProgress): void {
    this.#map()[peerId] = d
    this.#owned?.add(peerId)
  }

  #map(): Record<string, DeviceProgress> {
    if (!this.#ownMap) {
      this.state.devices = { ...this.state.devices }
      this.#ownMap = true
    }
    return this.state.devices
  }

  setStatus(to: RolloutStatus, reason?: string): void {
    this.changes.push({ kind: 'rollout', from: this.state.status, to, ...(reason === undefined ? {} : { reason }) })
    this.state.status = to
    if (reason !== undefined) this.state.reason = reason
  }
}

/** A new rollout: rings sized from the devices now; the first ring starts deploying at once. */
export function createRollout(spec: RolloutSpecT, devices: readonly DeviceInfo[], now: number): Transition {
  const state: RolloutState = {
    spec,
    status: 'active',
    createdAt: now,
    updatedAt: now,
    current: 0,
    rings: spec.rings.map(() => ({ status: 'pending' as RingStatus })),
    devices: {},
    revision: 1,
  }
  for (const [peerId, ring] of assignRings(spec, devices)) {
    state.devices[peerId] = { ring, state: 'assigned', attempts: 0, since: now }
  }
  const draft = new Draft(state, true)
  startRing(draft, 0, now)
  settle(draft, now, {})
  return { state, changes: draft.changes }
}

/**
 * Applies one event. Refuses commands that make no sense in the current status
 * (PSW_ERR_CONFLICT). Pure: `previous` is not changed; the new state shares the devices the
 * event did not touch with it.
 */
export function applyEvent(
  previous: RolloutState,
  event: RolloutEvent,
  now: number,
  options: EngineOptions = {},
): Transition {
  const draft = new Draft(previous)
  const { state } = draft
  switch (event.type) {
    case 'pause':
      if (state.status !== 'active') throw conflict(state, 'pause')
      draft.setStatus('paused', `paused by ${event.by}`)
      break
    case 'resume':
      if (state.status !== 'paused') throw conflict(state, 'resume')
      draft.setStatus('active', `resumed by ${event.by}`)
      break
    case 'cancel':
      if (!['active', 'paused', 'halted', 'completed'].includes(state.status)) throw conflict(state, 'cancel')
      draft.setStatus('cancelled', event.reason ?? `cancelled by ${event.by}`)
      break
    case 'rollback':
      if (state.status === 'rolling-back' || state.status === 'rolled-back') throw conflict(state, 'roll back')
      state.rollback = {
        by: event.by,
        at: now,
        emergency: event.emergency === true,
        ...(event.reason === undefined ? {} : { reason: event.reason }),
      }
      draft.setStatus('rolling-back', event.reason ?? `rolled back by ${event.by}`)
      // Every device that has the bundle, or may have installed it without reporting yet.
      for (const [peerId, d] of Object.entries(state.devices)) {
        if (d.state === 'installed' || (d.state === 'assigned' && d.attempts > 0))
          setDevice(draft, peerId, 'rolling-back', now)
      }
      break
    case 'rollback-report':
      rollbackReport(draft, event, now)
      break
    case 'approve': {
      const ring = state.rings[event.ring]
      if (ring?.status !== 'awaiting-approval' || event.ring !== state.current)
        throw new StateError(
          'PSW_ERR_CONFLICT',
          `ring ${event.ring} of rollout ${state.spec.id} is not awaiting approval`,
        )
      ring.approvedBy = event.by
      setRing(draft, event.ring, 'passed')
      break
    }
    case 'report':
      report(draft, event, now)
      break
    case 'reports':
      for (const r of event.reports) {
        if (r.type === 'report') report(draft, r, now)
        else rollbackReport(draft, r, now)
      }
      break
    case 'tick':
      join(draft, event.devices, now)
      break
  }
  settle(draft, now, options)
  if (draft.changes.length > 0) {
    state.updatedAt = now
    state.revision++
  }
  return { state, changes: draft.changes }
}

/**
 * What a device's assignment should carry of the rollout's bundle now: `install`, `rollback`
 * (a site-wide rollback told it to), or nothing.
 */
export function wantedEntry(state: RolloutState, d: DeviceProgress): 'install' | 'rollback' | undefined {
  if (d.state === 'rolling-back') return 'rollback'
  if (state.status === 'rolling-back' || state.status === 'rolled-back') return undefined
  if (d.state === 'installed') return 'install'
  // A completed rollout still deploys to late joiners of its (passed) rings.
  const deploying = state.status === 'active' || state.status === 'completed'
  return deploying && d.state === 'assigned' && state.rings[d.ring]!.status !== 'pending' ? 'install' : undefined
}

/** The devices whose assignment should carry the bundle with action `rollback` now. */
export function rollbackDevices(state: RolloutState): string[] {
  const out: string[] = []
  for (const p in state.devices) if (state.devices[p]!.state === 'rolling-back') out.push(p)
  return out
}

/** The devices whose assignment should carry the rollout's bundle (to install) now. */
export function desiredDevices(state: RolloutState): string[] {
  const out: string[] = []
  for (const p in state.devices) if (wantedEntry(state, state.devices[p]!) === 'install') out.push(p)
  return out
}

/** Installed, failed-for-good and pending devices of one ring. */
export function ringCounts(state: RolloutState, ring: number): RingCounts {
  return allRingCounts(state)[ring] ?? emptyCounts()
}

function emptyCounts(): RingCounts {
  return { total: 0, installed: 0, failed: 0, pending: 0, rollingBack: 0, rolledBack: 0, rollbackFailed: 0 }
}

/** ringCounts of every ring, in one pass over the devices. */
export function allRingCounts(state: RolloutState): RingCounts[] {
  const out = state.rings.map(emptyCounts)
  for (const p in state.devices) {
    const d = state.devices[p]!
    const c = out[d.ring]
    if (!c) continue
    c.total++
    if (d.state === 'installed') c.installed++
    else if (d.state === 'failed-final') c.failed++
    else if (d.state === 'rolling-back') c.rollingBack++
    else if (d.state === 'rolled-back') c.rolledBack++
    else if (d.state === 'rollback-failed') c.rollbackFailed++
    else c.pending++
  }
  return out
}

/** When the engine next needs a tick without any event (a soak or a retry delay ending). */
export function nextWakeAt(state: RolloutState, options: EngineOptions = {}): number | undefined {
  if (state.status !== 'active' && state.status !== 'completed') return undefined
  const delay = options.retryDelayMs ?? DEFAULT_RETRY_DELAY_MS
  let next: number | undefined
  const at = (t: number) => {
    next = next === undefined ? t : Math.min(next, t)
  }
  const ring = state.rings[state.current]
  if (ring?.status === 'soaking' && ring.soakUntil !== undefined) at(ring.soakUntil)
  for (const p in state.devices) {
    const d = state.devices[p]!
    if (d.state === 'retry-wait') at(d.since + delay)
  }
  return next
}

function conflict(state: RolloutState, what: string): StateError {
  return new StateError('PSW_ERR_CONFLICT', `cannot ${what} rollout ${state.spec.id}: it is ${state.status}`)
}

/** Moves a device to `to` (recording the change); returns its progress, safe to change further. */
function setDevice(draft: Draft, peerId: string, to: DeviceRolloutState, now: number): DeviceProgress {
  const d = draft.device(peerId)
  draft.changes.push({ kind: 'device', peerId, ring: d.ring, from: d.state, to })
  d.state = to
  d.since = now
  return d
}

function setRing(draft: Draft, ring: number, to: RingStatus): void {
  const r = draft.state.rings[ring]!
  if (r.status === to) return
  draft.changes.push({ kind: 'ring', ring, from: r.status, to })
  r.status = to
}

function startRing(draft: Draft, ring: number, now: number): void {
  const { state } = draft
  state.current = ring
  state.rings[ring]!.startedAt = now
  setRing(draft, ring, 'deploying')
  for (const [peerId, d] of Object.entries(state.devices)) {
    if (d.ring === ring && d.attempts === 0) {
      const own = draft.device(peerId)
      own.attempts = 1
      own.since = now
      draft.changes.push({ kind: 'device', peerId, ring, from: 'none', to: 'assigned' })
    }
  }
}

function report(draft: Draft, event: ReportEvent, now: number): void {
  const d = draft.state.devices[event.peerId]
  // Reports from devices outside the rollout, or for a ring not started, change nothing.
  if (!d || d.attempts === 0) return
  // During a rollback only answers to it (rollback-report) move a device.
  if (d.state === 'rolling-back' || d.state === 'rolled-back' || d.state === 'rollback-failed') return
  if (event.outcome === 'installed') {
    if (d.state !== 'installed') setDevice(draft, event.peerId, 'installed', now)
    if (d.lastError !== undefined) delete draft.device(event.peerId).lastError
    return
  }
  if (d.state !== 'assigned' && d.state !== 'installed') return
  const retriesLeft = d.attempts <= draft.state.spec.retries
  const own = setDevice(draft, event.peerId, retriesLeft ? 'retry-wait' : 'failed-final', now)
  if (event.error) own.lastError = { ...event.error }
}

function rollbackReport(draft: Draft, event: RollbackReportEvent, now: number): void {
  if (draft.state.devices[event.peerId]?.state !== 'rolling-back') return
  const own = setDevice(draft, event.peerId, event.ok ? 'rolled-back' : 'rollback-failed', now)
  if (event.error) own.lastError = { ...event.error }
  else delete own.lastError
}

/** New target members: placed in their ring; if it already started, they deploy at once. */
function join(draft: Draft, devices: readonly DeviceInfo[], now: number): void {
  const { state } = draft
  // Cancelled and halted rollouts take no one new; a completed one still picks up late
  // joiners of its rings: the patch passed them.
  if (state.status !== 'active' && state.status !== 'paused' && state.status !== 'completed') return
  for (const device of devices) {
    if (state.devices[device.peerId] || !inTarget(state.spec, device)) continue
    const ring = ringForLateJoiner(state.spec, device)
    if (ring === undefined) continue
    const started = state.rings[ring]!.status !== 'pending'
    draft.addDevice(device.peerId, { ring, state: 'assigned', attempts: started ? 1 : 0, since: now })
    if (started) draft.changes.push({ kind: 'device', peerId: device.peerId, ring, from: 'none', to: 'assigned' })
  }
}

/** Timers, thresholds and ring advancement, repeated until nothing moves. */
function settle(draft: Draft, now: number, options: EngineOptions): void {
  const { state, changes } = draft
  if (state.status === 'rolling-back') {
    if (!Object.values(state.devices).some((d) => d.state === 'rolling-back')) {
      changes.push({ kind: 'rollout', from: 'rolling-back', to: 'rolled-back' })
      state.status = 'rolled-back'
    }
    return
  }
  const delay = options.retryDelayMs ?? DEFAULT_RETRY_DELAY_MS
  if (state.status === 'active' || state.status === 'completed') {
    for (const peerId in state.devices) {
      const d = state.devices[peerId]!
      if (d.state === 'retry-wait' && now >= d.since + delay) setDevice(draft, peerId, 'assigned', now).attempts++
    }
  }
  if (state.status !== 'active' && state.status !== 'paused') return
  // The error threshold of every ring started so far halts the whole rollout.
  const counts = allRingCounts(state)
  for (let r = 0; r <= Math.min(state.current, state.rings.length - 1); r++) {
    const c = counts[r]!
    const spec = state.spec.rings[r]!
    if (c.total > 0 && c.failed / c.total > spec.errorThreshold) {
      const reason = `ring ${spec.name}: ${c.failed} of ${c.total} devices failed (error threshold ${Math.round(spec.errorThreshold * 100)} %)`
      changes.push({ kind: 'rollout', from: state.status, to: 'halted', reason })
      state.status = 'halted'
      state.reason = reason
      return
    }
  }
  if (state.status !== 'active') return
  for (;;) {
    const r = state.current
    if (r >= state.rings.length) return
    const ring = state.rings[r]!
    const spec = state.spec.rings[r]!
    if (ring.status === 'deploying') {
      // Starting a ring changes no device's counts in the rings before it, so `counts` holds
      // for every ring up to the one that just started (whose devices are all pending).
      const c = counts[r]!
      if (c.total > 0 && c.installed / c.total < spec.successThreshold) {
        // Every device is done (installed or failed for good) and the ring still falls short:
        // it can never pass, so the rollout halts rather than wait for ever.
        if (c.pending === 0) {
          const reason = `ring ${spec.name}: only ${c.installed} of ${c.total} devices installed, below its success threshold of ${Math.round(spec.successThreshold * 100)} %`
          changes.push({ kind: 'rollout', from: state.status, to: 'halted', reason })
          state.status = 'halted'
          state.reason = reason
        }
        return
      }
      ring.passedAt = now
      if ((spec.soakMinutes ?? 0) > 0) {
        ring.soakUntil = now + spec.soakMinutes! * 60_000
        setRing(draft, r, 'soaking')
        continue
      }
      setRing(draft, r, spec.approvalGate ? 'awaiting-approval' : 'passed')
      continue
    }
    if (ring.status === 'soaking') {
      if (now < ring.soakUntil!) return
      setRing(draft, r, spec.approvalGate ? 'awaiting-approval' : 'passed')
      continue
    }
    if (ring.status === 'awaiting-approval') return
    if (ring.status === 'passed') {
      if (r + 1 >= state.rings.length) {
        state.current = state.rings.length
        changes.push({ kind: 'rollout', from: 'active', to: 'completed' })
        state.status = 'completed'
        return
      }
      startRing(draft, r + 1, now)
      continue
    }
    return
  }
}
