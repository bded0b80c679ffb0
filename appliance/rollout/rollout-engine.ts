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

export type RolloutEvent =
  /** Time passed and/or device membership changed (devices = every enrolled device now). */
  | { type: 'tick'; devices: readonly DeviceInfo[] }
  | { type: 'report'; peerId: string; outcome: 'installed' | 'failed'; error?: { code: string; message: string } }
  | { type: 'pause'; by: string }
  | { type: 'resume'; by: string }
  | { type: 'cancel'; by: string; reason?: string }
  | { type: 'approve'; ring: number; by: string }
  /** A site-wide rollback: every device that has (or may have) the bundle restores its previous state. */
  | { type: 'rollback'; by: string; reason?: string; emergency?: boolean }
  /** A device's answer to the rollback: restored (or nothing to undo), or it could not. */
  | { type: 'rollback-report'; peerId: string; ok: boolean; error?: { code: string; message: string } }

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
  const changes: RolloutChange[] = []
  for (const [peerId, ring] of assignRings(spec, devices)) {
    state.devices[peerId] = { ring, state: 'assigned', attempts: 0, since: now }
  }
  startRing(state, 0, now, changes)
  settle(state, now, {}, changes)
  return { state, changes }
}

/** Applies one event. Refuses commands that make no sense in the current status (PSW_ERR_CONFLICT). */
export function applyEvent(
  previous: RolloutState,
  event: RolloutEvent,
  now: number,
  options: EngineOptions = {},
): Transition {
  const state = structuredClone(previous)
  const changes: RolloutChange[] = []
  const setStatus = (to: RolloutStatus, reason?: string) => {
    changes.push({ kind: 'rollout', from: state.status, to, ...(reason === undefined ? {} : { reason }) })
    state.status = to
    if (reason !== undefined) state.reason = reason
  }
  switch (event.type) {
    case 'pause':
      if (state.status !== 'active') throw conflict(state, 'pause')
      setStatus('paused', `paused by ${event.by}`)
      break
    case 'resume':
      if (state.status !== 'paused') throw conflict(state, 'resume')
      setStatus('active', `resumed by ${event.by}`)
      break
    case 'cancel':
      if (!['active', 'paused', 'halted', 'completed'].includes(state.status)) throw conflict(state, 'cancel')
      setStatus('cancelled', event.reason ?? `cancelled by ${event.by}`)
      break
    case 'rollback':
      if (state.status === 'rolling-back' || state.status === 'rolled-back') throw conflict(state, 'roll back')
      state.rollback = {
        by: event.by,
        at: now,
        emergency: event.emergency === true,
        ...(event.reason === undefined ? {} : { reason: event.reason }),
      }
      setStatus('rolling-back', event.reason ?? `rolled back by ${event.by}`)
      // Every device that has the bundle, or may have installed it without reporting yet.
      for (const [peerId, d] of Object.entries(state.devices)) {
        if (d.state === 'installed' || (d.state === 'assigned' && d.attempts > 0))
          setDevice(state, peerId, d, 'rolling-back', now, changes)
      }
      break
    case 'rollback-report': {
      const d = state.devices[event.peerId]
      if (d?.state !== 'rolling-back') break
      if (event.error) d.lastError = event.error
      else delete d.lastError
      setDevice(state, event.peerId, d, event.ok ? 'rolled-back' : 'rollback-failed', now, changes)
      break
    }
    case 'approve': {
      const ring = state.rings[event.ring]
      if (ring?.status !== 'awaiting-approval' || event.ring !== state.current)
        throw new StateError(
          'PSW_ERR_CONFLICT',
          `ring ${event.ring} of rollout ${state.spec.id} is not awaiting approval`,
        )
      ring.approvedBy = event.by
      setRing(state, event.ring, 'passed', changes)
      break
    }
    case 'report':
      report(state, event, now, changes)
      break
    case 'tick':
      join(state, event.devices, now, changes)
      break
  }
  settle(state, now, options, changes)
  if (changes.length > 0) {
    state.updatedAt = now
    state.revision++
  }
  return { state, changes }
}

/** The devices whose assignment should carry the bundle with action `rollback` now. */
export function rollbackDevices(state: RolloutState): string[] {
  return Object.entries(state.devices)
    .filter(([, d]) => d.state === 'rolling-back')
    .map(([p]) => p)
}

/** The devices whose assignment should carry the rollout's bundle (to install) now. */
export function desiredDevices(state: RolloutState): string[] {
  if (state.status === 'rolling-back' || state.status === 'rolled-back') return []
  // A completed rollout still deploys to late joiners of its (passed) rings.
  const deploying = state.status === 'active' || state.status === 'completed'
  return Object.entries(state.devices)
    .filter(
      ([, d]) =>
        d.state === 'installed' || (deploying && d.state === 'assigned' && state.rings[d.ring]!.status !== 'pending'),
    )
    .map(([p]) => p)
}

/** Installed, failed-for-good and pending devices of one ring. */
export function ringCounts(state: RolloutState, ring: number): RingCounts {
  const c: RingCounts = {
    total: 0,
    installed: 0,
    failed: 0,
    pending: 0,
    rollingBack: 0,
    rolledBack: 0,
    rollbackFailed: 0,
  }
  for (const d of Object.values(state.devices)) {
    if (d.ring !== ring) continue
    c.total++
    if (d.state === 'installed') c.installed++
    else if (d.state === 'failed-final') c.failed++
    else if (d.state === 'rolling-back') c.rollingBack++
    else if (d.state === 'rolled-back') c.rolledBack++
    else if (d.state === 'rollback-failed') c.rollbackFailed++
    else c.pending++
  }
  return c
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
  for (const d of Object.values(state.devices)) if (d.state === 'retry-wait') at(d.since + delay)
  return next
}

function conflict(state: RolloutState, what: string): StateError {
  return new StateError('PSW_ERR_CONFLICT', `cannot ${what} rollout ${state.spec.id}: it is ${state.status}`)
}

function setDevice(
  _state: RolloutState,
  peerId: string,
  d: DeviceProgress,
  to: DeviceRolloutState,
  now: number,
  changes: RolloutChange[],
): void {
  changes.push({ kind: 'device', peerId, ring: d.ring, from: d.state, to })
  d.state = to
  d.since = now
}

function setRing(state: RolloutState, ring: number, to: RingStatus, changes: RolloutChange[]): void {
  const r = state.rings[ring]!
  if (r.status === to) return
  changes.push({ kind: 'ring', ring, from: r.status, to })
  r.status = to
}

function startRing(state: RolloutState, ring: number, now: number, changes: RolloutChange[]): void {
  state.current = ring
  state.rings[ring]!.startedAt = now
  setRing(state, ring, 'deploying', changes)
  for (const [peerId, d] of Object.entries(state.devices)) {
    if (d.ring === ring && d.attempts === 0) {
      d.attempts = 1
      d.since = now
      changes.push({ kind: 'device', peerId, ring, from: 'none', to: 'assigned' })
    }
  }
}

function report(
  state: RolloutState,
  event: Extract<RolloutEvent, { type: 'report' }>,
  now: number,
  changes: RolloutChange[],
): void {
  const d = state.devices[event.peerId]
  // Reports from devices outside the rollout, or for a ring not started, change nothing.
  if (!d || d.attempts === 0) return
  // During a rollback only answers to it (rollback-report) move a device.
  if (d.state === 'rolling-back' || d.state === 'rolled-back' || d.state === 'rollback-failed') return
  if (event.outcome === 'installed') {
    if (d.state !== 'installed') setDevice(state, event.peerId, d, 'installed', now, changes)
    delete d.lastError
    return
  }
  if (d.state !== 'assigned' && d.state !== 'installed') return
  if (event.error) d.lastError = event.error
  const retriesLeft = d.attempts <= state.spec.retries
  setDevice(state, event.peerId, d, retriesLeft ? 'retry-wait' : 'failed-final', now, changes)
}

/** New target members: placed in their ring; if it already started, they deploy at once. */
function join(state: RolloutState, devices: readonly DeviceInfo[], now: number, changes: RolloutChange[]): void {
  // Cancelled and halted rollouts take no one new; a completed one still picks up late
  // joiners of its rings: the patch passed them.
  if (state.status !== 'active' && state.status !== 'paused' && state.status !== 'completed') return
  for (const device of devices) {
    if (state.devices[device.peerId] || !inTarget(state.spec, device)) continue
    const ring = ringForLateJoiner(state.spec, device)
    if (ring === undefined) continue
    const started = state.rings[ring]!.status !== 'pending'
    state.devices[device.peerId] = { ring, state: 'assigned', attempts: started ? 1 : 0, since: now }
    if (started) changes.push({ kind: 'device', peerId: device.peerId, ring, from: 'none', to: 'assigned' })
  }
}

/** Timers, thresholds and ring advancement, repeated until nothing moves. */
function settle(state: RolloutState, now: number, options: EngineOptions, changes: RolloutChange[]): void {
  if (state.status === 'rolling-back') {
    if (!Object.values(state.devices).some((d) => d.state === 'rolling-back')) {
      changes.push({ kind: 'rollout', from: 'rolling-back', to: 'rolled-back' })
      state.status = 'rolled-back'
    }
    return
  }
  const delay = options.retryDelayMs ?? DEFAULT_RETRY_DELAY_MS
  if (state.status === 'active' || state.status === 'completed') {
    for (const [peerId, d] of Object.entries(state.devices)) {
      if (d.state === 'retry-wait' && now >= d.since + delay) {
        d.attempts++
        setDevice(state, peerId, d, 'assigned', now, changes)
      }
    }
  }
  if (state.status !== 'active' && state.status !== 'paused') return
  // The error threshold of every ring started so far halts the whole rollout.
  for (let r = 0; r <= Math.min(state.current, state.rings.length - 1); r++) {
    const c = ringCounts(state, r)
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
      const c = ringCounts(state, r)
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
        setRing(state, r, 'soaking', changes)
        continue
      }
      setRing(state, r, spec.approvalGate ? 'awaiting-approval' : 'passed', changes)
      continue
    }
    if (ring.status === 'soaking') {
      if (now < ring.soakUntil!) return
      setRing(state, r, spec.approvalGate ? 'awaiting-approval' : 'passed', changes)
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
      startRing(state, r + 1, now, changes)
      continue
    }
    return
  }
}
