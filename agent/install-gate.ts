import type { RollbackSpecT } from '../shared/metadata/manifest-schema.ts'
import { canStartInstall, nextInstallStart, openSpanAt, spreadStart } from '../shared/policy/window-schedule.ts'
import type { MaintenanceWindow } from '../shared/policy/window-schema.ts'

export interface InstallGateInput {
  /** The assignment's windows; undefined = install any time. */
  windows: MaintenanceWindow[] | undefined
  /** Spread of install starts after each opening (seconds, 0 = none). */
  spreadSeconds?: number | undefined
  /** An emergency bundle ignores the windows. */
  emergency?: boolean | undefined
  /** The installer's declared maximum run time (manifest `install.maxRunSeconds`). */
  maxRunSeconds: number
  /** This device's PeerId (chooses its place in the spread). */
  peerId: string
  /** Now, from the agent's injected clock (epoch ms). */
  now: number
}

export type InstallWaitReason =
  /** No window is open now. */
  | 'closed'
  /** A window is open but closes before `maxRunSeconds` would have passed. */
  | 'run-exceeds-window'
  /** A window is open, but this device's spread start in it is still ahead. */
  | 'spread'
  /** No opening long enough within the next five years. */
  | 'no-opening'

export type InstallDecision =
  | { install: true; reason: 'no-windows' | 'emergency' | 'window-open' }
  | { install: false; reason: InstallWaitReason; nextAt?: number }

/**
 * Whether the agent may start installing a downloaded bundle now. Pure: the caller supplies
 * now. Inside a window a device starts at its own hash-chosen instant of
 * `[opening, opening + spreadSeconds)`, shrunk so that the install still fits before the
 * close; `nextAt` is the instant at which this device may start next (undefined when there is
 * none within five years).
 */
export function installDecision(input: InstallGateInput): InstallDecision {
  const { windows, emergency, maxRunSeconds, peerId, now } = input
  const spreadSeconds = input.spreadSeconds ?? 0
  if (emergency) return { install: true, reason: 'emergency' }
  if (windows === undefined) return { install: true, reason: 'no-windows' }
  const decision = canStartInstall(windows, now, maxRunSeconds)
  if (decision.ok) {
    const span = openSpanAt(windows, now)
    if (span) {
      const at = spreadStart(span.start, spreadSeconds, peerId, { endMs: span.end, maxRunSeconds })
      if (at !== undefined && now < at) return { install: false, reason: 'spread', nextAt: at }
    }
    return { install: true, reason: 'window-open' }
  }
  const reason: InstallWaitReason = decision.reason === 'run-exceeds-window' ? 'run-exceeds-window' : 'closed'
  const slot = nextInstallStart(windows, now, maxRunSeconds)
  if (!slot) return { install: false, reason: 'no-opening' }
  // The slot starts a span after now (the current one, if any, is too short): spread within it.
  const at = spreadStart(slot.start, spreadSeconds, peerId, { endMs: slot.openUntil, maxRunSeconds })
  return { install: false, reason, nextAt: at ?? slot.start }
}

export interface RollbackGateInput extends InstallGateInput {
  /** The bundle's installer says it is installed here (journal state `installed`). */
  installed: boolean
  /** The manifest's rollback type (`none`: it cannot be undone). */
  rollbackType: RollbackSpecT['type']
}

export type RollbackDecision =
  /** Nothing of it is installed here (never got that far, failed, or rolled back already). */
  | { act: 'nothing'; reason: 'not-installed' }
  /** Installed, but declared without rollback: refused at once (there is nothing to wait for). */
  | { act: 'refuse'; reason: 'no-rollback' }
  | { act: 'wait'; reason: InstallWaitReason; nextAt?: number }
  | { act: 'rollback'; reason: 'no-windows' | 'emergency' | 'window-open' }

/**
 * What to do for a site-wide rollback of a bundle (assignment action `rollback`). Pure. Undoing
 * an install changes the device as much as installing it, so it keeps to the maintenance
 * windows exactly like an install — same windows, same spread, the installer's maxRunSeconds —
 * unless the entry is an emergency. Where there is nothing to undo, the answer comes at once.
 */
export function rollbackDecision(input: RollbackGateInput): RollbackDecision {
  if (!input.installed) return { act: 'nothing', reason: 'not-installed' }
  if (input.rollbackType === 'none') return { act: 'refuse', reason: 'no-rollback' }
  const gate = installDecision(input)
  if (gate.install) return { act: 'rollback', reason: gate.reason }
  return { act: 'wait', reason: gate.reason, ...(gate.nextAt === undefined ? {} : { nextAt: gate.nextAt }) }
}
