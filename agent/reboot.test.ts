import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { tempDir } from '../shared/bundle/test-helpers.ts'
import { ManualClock } from '../shared/clock.ts'
import { silentLogger } from '../shared/log.ts'
import type { MaintenanceWindow } from '../shared/policy/window-schema.ts'
import { openStateDb, type StateDb } from '../shared/store/state-db.ts'
import { BundleStates } from './bundle-state.ts'
import type { ProcessRunner, RunRequest, RunResult } from './installer/process-runner.ts'
import { currentBootId, REBOOT_RETRY_MS, RebootKeeper, rebootDecision, sameBoot } from './reboot.ts'

const MIN = 60_000
const HOUR = 60 * MIN
const B1 = 'b'.repeat(64)
const B2 = 'c'.repeat(64)

/** Sundays 02:00–04:00 Berlin, reboots allowed; weekdays 12:00–13:00 UTC, installs only. */
const sunNight: MaintenanceWindow = {
  id: 'sun-night',
  name: 'Sunday night',
  timeZone: 'Europe/Berlin',
  recurrence: { rrule: 'FREQ=WEEKLY;BYDAY=SU;BYHOUR=2;BYMINUTE=0', dtstart: '2026-01-04T02:00' },
  durationMinutes: 120,
  allowReboot: true,
}
const lunch: MaintenanceWindow = {
  id: 'lunch',
  name: 'Lunch',
  timeZone: 'UTC',
  recurrence: { cron: '0 12 * * *' },
  durationMinutes: 60,
  allowReboot: false,
}
// Sunday 2026-11-22 02:00 CET = 01:00Z; the same day 12:00Z is lunch.
const OPEN = Date.UTC(2026, 10, 22, 1)
const LUNCH = Date.UTC(2026, 10, 22, 12)

const input = (over: Partial<Parameters<typeof rebootDecision>[0]>) =>
  rebootDecision({
    pending: [B1],
    command: ['systemctl', 'reboot'],
    windows: [sunNight, lunch],
    now: OPEN + 10 * MIN,
    bootId: 'boot-1',
    marker: undefined,
    ...over,
  })

describe('rebootDecision', () => {
  it('reboots only inside a window that allows reboots', () => {
    expect(input({})).toEqual({ reboot: true, reason: 'window-open' })
    expect(input({ now: OPEN - HOUR })).toEqual({ reboot: false, reason: 'closed' })
    // An install window without allowReboot is open at lunch: still no reboot.
    expect(input({ now: LUNCH + 10 * MIN })).toEqual({ reboot: false, reason: 'reboot-not-allowed' })
  })

  it('no windows in the assignment: any time; nothing pending or no command: never', () => {
    expect(input({ windows: undefined, now: LUNCH })).toEqual({ reboot: true, reason: 'no-windows' })
    expect(input({ pending: [] })).toEqual({ reboot: false, reason: 'nothing-pending' })
    expect(input({ command: undefined })).toEqual({ reboot: false, reason: 'no-command' })
  })

  it('never twice for the same pending reboot in the same boot; again for a new bundle or a new boot', () => {
    const marker = { bootId: 'boot-1', at: new Date(OPEN).toISOString(), bundles: [B1] }
    expect(input({ marker })).toEqual({ reboot: false, reason: 'already-requested' })
    expect(input({ marker, pending: [B1, B2] })).toEqual({ reboot: true, reason: 'window-open' })
    // A marker of an earlier boot means that reboot happened: a bundle pending now is new.
    expect(input({ marker, bootId: 'boot-2' })).toEqual({ reboot: true, reason: 'window-open' })
  })

  it('tries a failed command again only after REBOOT_RETRY_MS', () => {
    const marker = { bootId: 'boot-1', at: new Date(OPEN).toISOString(), bundles: [B1], failed: true as const }
    expect(input({ marker, now: OPEN + REBOOT_RETRY_MS - 1 })).toEqual({ reboot: false, reason: 'retry-later' })
    expect(input({ marker, now: OPEN + REBOOT_RETRY_MS })).toEqual({ reboot: true, reason: 'window-open' })
  })

  it('compares boot times with a minute of tolerance, kernel boot ids exactly', () => {
    expect(sameBoot('boot-time:1000000', 'boot-time:1030000')).toBe(true)
    expect(sameBoot('boot-time:1000000', 'boot-time:1090000')).toBe(false)
    expect(sameBoot('0e9c-1', '0e9c-1')).toBe(true)
    expect(sameBoot('0e9c-1', '0e9c-2')).toBe(false)
  })

  it('reads a stable id for this boot', async () => {
    const a = await currentBootId()
    expect(a.length).toBeGreaterThan(8)
    expect(sameBoot(a, await currentBootId())).toBe(true)
  })
})

describe('RebootKeeper', () => {
  let dir: string
  let cleanup: () => Promise<void>
  let db: StateDb
  let states: BundleStates
  let boot: string
  const clock = new ManualClock(OPEN + 10 * MIN)
  const runs: RunRequest[] = []
  let exitCode = 0
  const runner: ProcessRunner = {
    run: async (req): Promise<RunResult> => {
      runs.push(req)
      return {
        exitCode,
        signal: null,
        timedOut: false,
        aborted: false,
        stdout: '',
        stderr: exitCode === 0 ? '' : 'no permission',
        truncated: false,
        durationMs: 1,
      }
    },
  }
  const keeper = () =>
    new RebootKeeper({
      db,
      states,
      command: ['systemctl', 'reboot'],
      runner,
      bootId: async () => boot,
      now: () => clock.now(),
      log: silentLogger(),
    })
  const installed = (bundleId: string, rebootBootId: string) =>
    states.put({
      bundleId,
      manifestVersion: 1,
      state: 'installed',
      chunksHave: 1,
      chunksTotal: 1,
      transfer: { bytesFromAppliance: 1, bytesFromPeers: 0, bytesServed: 0 },
      rebootRequired: true,
      rebootBootId,
    })

  beforeEach(async () => {
    ;({ dir, cleanup } = await tempDir('psw-reboot-'))
    db = await openStateDb({ path: join(dir, 'db'), schemaVersion: 1, log: silentLogger() })
    states = new BundleStates(db, () => clock.now())
    boot = 'boot-1'
    runs.length = 0
    exitCode = 0
    clock.set(OPEN + 10 * MIN)
  })
  afterEach(async () => {
    await db.close()
    await cleanup()
  })

  it('runs the command once inside the window, not again after a restart, and clears the flag after the reboot', async () => {
    await installed(B1, 'boot-1')
    clock.set(OPEN - HOUR)
    expect(await keeper().afterCycle([sunNight])).toEqual({ reboot: false, reason: 'closed' })
    expect(runs).toHaveLength(0)
    clock.set(OPEN + 10 * MIN)
    expect(await keeper().afterCycle([sunNight])).toEqual({ reboot: true, reason: 'window-open' })
    expect(runs.map((r) => r.argv)).toEqual([['systemctl', 'reboot']])
    expect(runs[0]!.env.PATH).toMatch(/\/usr\/sbin/)
    // The agent restarts (or was killed) before the device went down: no second reboot.
    expect(await keeper().afterCycle([sunNight])).toEqual({ reboot: false, reason: 'already-requested' })
    expect(runs).toHaveLength(1)
    expect((await states.get(B1))?.rebootRequired).toBe(true)
    // The device came back in another boot: the reboot is done, nothing is pending.
    boot = 'boot-2'
    expect(await keeper().afterCycle([sunNight])).toEqual({ reboot: false, reason: 'nothing-pending' })
    const after = await states.get(B1)
    expect(after?.rebootRequired).toBeUndefined()
    expect(after?.rebootBootId).toBeUndefined()
    expect(after?.state).toBe('installed')
    expect(await db.get('reboot:requested')).toBeUndefined()
  })

  it('counts a reboot by someone else as done, and retries a failed command later', async () => {
    await installed(B1, 'boot-0')
    expect(await keeper().afterCycle([sunNight])).toEqual({ reboot: false, reason: 'nothing-pending' })
    expect((await states.get(B1))?.rebootRequired).toBeUndefined()

    await installed(B2, 'boot-1')
    exitCode = 1
    const k = keeper()
    expect(await k.afterCycle([sunNight])).toEqual({ reboot: true, reason: 'window-open' })
    expect(await k.afterCycle([sunNight])).toEqual({ reboot: false, reason: 'retry-later' })
    exitCode = 0
    clock.advance(REBOOT_RETRY_MS)
    expect(await k.afterCycle([sunNight])).toEqual({ reboot: true, reason: 'window-open' })
    expect(runs).toHaveLength(2)
  })
})
