import { isPswError } from '../shared/errors.ts'
import { type BundleReportT, MAX_REPORT_LOG_CHARS } from '../shared/protocol/control-protocol.ts'
import type { StateDb } from '../shared/store/state-db.ts'
import { cleanText, cutTail } from './report-fit.ts'

/** The agent's durable record of one assigned bundle (what it reports to the appliance). */
export type BundleState = BundleReportT & {
  manifestVersion: number
  updatedAt: string
  /**
   * The assignment version under which an install (not a download) or a site-wide rollback
   * failed, or under which an install was rolled back after failing. The agent does not try
   * again until the appliance re-issues the assignment: retries are the rollout's decision,
   * not every poll's.
   */
  installFailedUnder?: number
  /** The bundle left the assignment and its rollback snapshot was dropped (`release`). */
  released?: true
  /**
   * With `rebootRequired`: the boot in which the install asked for the reboot. Once the device
   * runs another boot (whoever rebooted it) the reboot has happened.
   */
  rebootBootId?: string
}

const key = (bundleId: string) => `bundle:${bundleId}`

/** A failure as the agent records it: its code and message (≤ 2000 characters; the report cuts further). */
export const errorInfo = (err: unknown): { code: string; message: string } =>
  isPswError(err)
    ? { code: err.code, message: err.message.slice(0, 2000) }
    : { code: 'PSW_ERR_INTERNAL', message: String(err).slice(0, 2000) }

/** A log as the agent keeps it for its report: cleaned, the last MAX_REPORT_LOG_CHARS characters. */
export const boundLog = (text: string): string => cutTail(cleanText(text), MAX_REPORT_LOG_CHARS)

/**
 * The health verdict and the installer's (and rollback's) output from an InstallError's
 * details, bounded for the report.
 */
export function failureTexts(details: Record<string, unknown> | undefined): Pick<BundleState, 'health' | 'log'> {
  if (!details) return {}
  const str = (v: unknown) => (typeof v === 'string' && v.trim() !== '' ? v.trim() : undefined)
  const health = details.health as { ok?: unknown; log?: unknown } | undefined
  const rollback = details.rollback as { log?: unknown } | undefined
  const installLog =
    str(details.installLog) ?? str(details.log) ?? str(`${str(details.stdout) ?? ''}\n${str(details.stderr) ?? ''}`)
  const rollbackLog = str(details.rollbackLog) ?? str(rollback?.log)
  const parts = [
    ...(installLog ? [`[install]\n${installLog}`] : []),
    ...(rollbackLog ? [`[rollback]\n${rollbackLog}`] : []),
  ]
  return {
    ...(health && typeof health.log === 'string'
      ? { health: { ok: health.ok === true, log: boundLog(health.log) } }
      : {}),
    ...(parts.length > 0 ? { log: boundLog(parts.join('\n')) } : {}),
  }
}

/**
 * What a failed install leaves in the bundle's record. `rolled-back` when the installer or the
 * router undid it (`details.rolledBack`: the health check failed, or e.g. a postinst): the
 * device is as it was before. `failed` otherwise (nothing was changed, or no rollback was
 * possible, or the rollback failed too). Either way with the error, the health log and the logs.
 */
export function installFailure(err: unknown): Pick<BundleState, 'state' | 'error' | 'health' | 'log'> {
  const details = isPswError(err) ? err.details : undefined
  return {
    state: details?.rolledBack === true ? 'rolled-back' : 'failed',
    error: errorInfo(err),
    ...failureTexts(details),
  }
}

/** The reported part of a bundle's record (the agent's own bookkeeping stays home). */
export function toBundleReport(state: BundleState): BundleReportT {
  const {
    manifestVersion: _m,
    updatedAt: _u,
    installFailedUnder: _f,
    released: _r,
    rebootBootId: _b,
    ...report
  } = state
  return report
}

/**
 * What to report for a bundle's record under the current assignment (`action`: what it asks
 * for the bundle; `assignmentVersion`: the last one accepted). A report may go out in the middle
 * of a cycle, before the agent got to this bundle, and the appliance takes `failed` and
 * `rolled-back` as the answer to the assignment version the report names. So a record that is
 * not an answer to the current assignment yet is reported `pending`:
 *
 * - it answers the other action (an install's outcome under a rollback, or the reverse), or
 * - it is a failure recorded under an older assignment version: under this one it is retried.
 *
 * An installed bundle awaiting a site-wide rollback is reported `installed` (with action
 * `rollback`): true, and not an answer either.
 */
export function reportedState(
  state: BundleState,
  action: 'install' | 'rollback' | undefined,
  assignmentVersion: number | undefined,
): BundleReportT {
  const report = toBundleReport(state)
  if (action === undefined) return report
  const answersAction = (state.action ?? 'install') === action
  const olderFailure =
    (state.state === 'failed' || state.state === 'rolled-back') &&
    state.installFailedUnder !== undefined &&
    assignmentVersion !== undefined &&
    state.installFailedUnder < assignmentVersion
  if (answersAction && !olderFailure) return report
  if (action === 'rollback' && state.state === 'installed') return { ...report, action: 'rollback' }
  return {
    bundleId: state.bundleId,
    state: 'pending',
    chunksHave: state.chunksHave,
    chunksTotal: state.chunksTotal,
    transfer: state.transfer,
    ...(action === 'rollback' ? { action } : {}),
  }
}

export class BundleStates {
  readonly #db: StateDb
  readonly #now: () => number
  constructor(db: StateDb, now: () => number) {
    this.#db = db
    this.#now = now
  }

  get(bundleId: string): Promise<BundleState | undefined> {
    return this.#db.get<BundleState>(key(bundleId))
  }

  async put(state: Omit<BundleState, 'updatedAt'>): Promise<BundleState> {
    const full = { ...state, updatedAt: new Date(this.#now()).toISOString() }
    await this.#db.put(key(state.bundleId), full)
    return full
  }

  async list(): Promise<BundleState[]> {
    const out: BundleState[] = []
    for await (const [, s] of this.#db.iterate<BundleState>('bundle:')) out.push(s)
    return out
  }
}
