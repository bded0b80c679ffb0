/**
 * Reboots the device for installs that need one (Windows 3010/1641), only inside a
 * maintenance window that allows reboots, and never twice for the same pending reboot.
 *
 * - A reboot runs only when the agent is configured with a reboot command (argv, no shell);
 *   without one, a needed reboot is only reported (`rebootRequired`).
 * - Windows: `rebootAllowed(windows, now)` — a window with `allowReboot: true` is open. An
 *   assignment without windows allows it any time. Emergency bundles do **not** override
 *   this: `emergency` lets an install start outside the windows, but a reboot interrupts
 *   whoever works at the device, so it waits for a window that allows reboots.
 * - Once: before the command runs, a marker with the current boot's id and the bundles it is
 *   for is written durably. While the device runs that boot, the same bundles never trigger
 *   the command again (also after `kill -9` or a restart of the agent). A failed command is
 *   tried again after {@link REBOOT_RETRY_MS}.
 * - Done: a bundle's reboot counts as done once the device runs another boot than the one in
 *   which its install asked for it, whoever rebooted it. The boot id comes from
 *   /proc/sys/kernel/random/boot_id; elsewhere it is the boot time (now − uptime), compared
 *   with a minute of tolerance.
 */
import { readFile } from 'node:fs/promises'
import { uptime } from 'node:os'
import type { Logger } from 'pino'
import { rebootAllowed } from '../shared/policy/window-schedule.ts'
import type { MaintenanceWindow } from '../shared/policy/window-schema.ts'
import type { StateDb } from '../shared/store/state-db.ts'
import type { BundleStates } from './bundle-state.ts'
import { describeRun, limitedEnv, type ProcessRunner } from './installer/process-runner.ts'

/** A failed reboot command is run again after this long (agent clock). */
export const REBOOT_RETRY_MS = 15 * 60_000
/** The reboot command is killed after this long (it normally returns at once). */
export const REBOOT_COMMAND_TIMEOUT_MS = 60_000
const MARKER_KEY = 'reboot:requested'
const BOOT_TIME_PREFIX = 'boot-time:'

/** The last reboot the agent asked for (durable). */
export interface RebootMarker {
  /** The boot that was running when the command ran. */
  bootId: string
  /** When the command ran (ISO, agent clock). */
  at: string
  /** The bundles whose pending reboot it was for. */
  bundles: string[]
  /** The command failed (exit code ≠ 0, or it could not start): try again after REBOOT_RETRY_MS. */
  failed?: true
}

export interface RebootInput {
  /** Installed bundles that wait for a reboot in the current boot. */
  pending: readonly string[]
  /** The configured reboot command; undefined = never reboot, only report. */
  command: readonly string[] | undefined
  /** The assignment's windows; undefined = reboot any time. */
  windows: MaintenanceWindow[] | undefined
  now: number
  bootId: string
  marker: RebootMarker | undefined
}

export type RebootDecision =
  | { reboot: true; reason: 'no-windows' | 'window-open' }
  | {
      reboot: false
      reason:
        | 'nothing-pending'
        | 'no-command'
        | 'already-requested'
        | 'retry-later'
        | 'closed'
        | 'reboot-not-allowed'
        | 'run-exceeds-window'
    }

/** Whether two boot ids name the same boot (boot times: within a minute of each other). */
export function sameBoot(a: string, b: string): boolean {
  if (a.startsWith(BOOT_TIME_PREFIX) && b.startsWith(BOOT_TIME_PREFIX)) {
    const ta = Number(a.slice(BOOT_TIME_PREFIX.length))
    const tb = Number(b.slice(BOOT_TIME_PREFIX.length))
    return Number.isFinite(ta) && Number.isFinite(tb) && Math.abs(ta - tb) <= 60_000
  }
  return a === b
}

/** Whether to run the reboot command now. Pure. */
export function rebootDecision(input: RebootInput): RebootDecision {
  const { pending, command, windows, now, bootId } = input
  if (pending.length === 0) return { reboot: false, reason: 'nothing-pending' }
  if (command === undefined || command.length === 0) return { reboot: false, reason: 'no-command' }
  const marker = input.marker && sameBoot(input.marker.bootId, bootId) ? input.marker : undefined
  if (marker) {
    const covered = pending.every((b) => marker.bundles.includes(b))
    if (covered && !marker.failed) return { reboot: false, reason: 'already-requested' }
    if (covered && now - Date.parse(marker.at) < REBOOT_RETRY_MS) return { reboot: false, reason: 'retry-later' }
  }
  if (windows === undefined) return { reboot: true, reason: 'no-windows' }
  const allowed = rebootAllowed(windows, now)
  if (allowed.ok) return { reboot: true, reason: 'window-open' }
  const reason =
    allowed.reason === 'reboot-not-allowed' || allowed.reason === 'run-exceeds-window' ? allowed.reason : 'closed'
  return { reboot: false, reason }
}

/** This boot's id: the kernel's boot_id, else the boot time to the second. */
export async function currentBootId(): Promise<string> {
  try {
    const id = (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim()
    if (/^[0-9a-f-]{8,64}$/i.test(id)) return id
  } catch {}
  return `${BOOT_TIME_PREFIX}${Math.round(Date.now() - uptime() * 1000)}`
}

export interface RebootKeeperOptions {
  db: StateDb
  states: BundleStates
  command: readonly string[] | undefined
  runner: ProcessRunner
  bootId: () => Promise<string>
  now: () => number
  log: Logger
  platform?: string
}

/** Keeps the reboot state of one agent: which reboots are pending, and runs the command. */
export class RebootKeeper {
  readonly #o: RebootKeeperOptions
  #lastReason: string | undefined

  constructor(options: RebootKeeperOptions) {
    this.#o = options
  }

  /** The current boot's id (what an install that needs a reboot records). */
  bootId(): Promise<string> {
    return this.#o.bootId()
  }

  /**
   * Clears `rebootRequired` of every bundle whose reboot happened (the device runs another
   * boot now) and forgets a marker of an earlier boot. Returns the bundles still waiting.
   */
  async settle(): Promise<{ bootId: string; pending: string[] }> {
    const { db, states, log } = this.#o
    const bootId = await this.#o.bootId()
    const pending: string[] = []
    for (const s of await states.list()) {
      if (!s.rebootRequired) continue
      if (s.state === 'installed' && s.rebootBootId !== undefined && sameBoot(s.rebootBootId, bootId)) {
        pending.push(s.bundleId)
        continue
      }
      const { rebootRequired: _r, rebootBootId: _b, updatedAt: _u, ...rest } = s
      await states.put(rest)
      if (s.state === 'installed') log.info({ bundleId: s.bundleId.slice(0, 12) }, 'reboot done')
    }
    const marker = await db.get<RebootMarker>(MARKER_KEY)
    if (marker && !sameBoot(marker.bootId, bootId)) await db.del(MARKER_KEY)
    return { bootId, pending }
  }

  /** At the end of a sync cycle: reboots if some install needs it and the rules allow it now. */
  async afterCycle(windows: MaintenanceWindow[] | undefined): Promise<RebootDecision> {
    const { db, command, runner, now, log } = this.#o
    const { bootId, pending } = await this.settle()
    const marker = await db.get<RebootMarker>(MARKER_KEY)
    const decision = rebootDecision({ pending, command, windows, now: now(), bootId, marker })
    if (!decision.reboot) {
      // Logged when the answer changes, not every poll.
      if (decision.reason !== 'nothing-pending' && decision.reason !== this.#lastReason)
        log.info({ reason: decision.reason, bundles: pending.length }, 'reboot pending')
      this.#lastReason = decision.reason
      return decision
    }
    this.#lastReason = undefined
    // Durable before the command runs: the device may go down before it returns.
    const next: RebootMarker = { bootId, at: new Date(now()).toISOString(), bundles: [...pending] }
    await db.put(MARKER_KEY, next)
    log.warn({ reason: decision.reason, bundles: pending.length, command }, 'rebooting to finish installs')
    const r = await runner.run({
      argv: command!,
      env: limitedEnv({}, this.#o.platform ?? process.platform),
      timeoutMs: REBOOT_COMMAND_TIMEOUT_MS,
    })
    if (r.exitCode !== 0) {
      await db.put(MARKER_KEY, { ...next, failed: true })
      log.error({ result: describeRun(r), stderr: r.stderr.slice(-500) }, 'reboot command failed; will retry')
    }
    return decision
  }
}
