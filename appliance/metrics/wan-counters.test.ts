import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { ManualClock } from '../../shared/clock.ts'
import { silentLogger } from '../../shared/log.ts'
import { openStateDb, type StateBatchOp, type StateDb } from '../../shared/store/state-db.ts'
import { createDayFormatter, DAY_MS } from './day.ts'
import { WAN_KEYS, WanCounters, type WanCountersOptions } from './wan-counters.ts'

const A = 'a'.repeat(64)
const B = 'b'.repeat(64)
const C = 'c'.repeat(64)
const MIN = 60_000

/** Every key under `metrics:wan:` with its value. */
async function stored(db: StateDb): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {}
  for await (const [k, v] of db.iterate<unknown>('metrics:wan:')) out[k] = v
  return out
}

describe('WanCounters', () => {
  let dir: string
  let db: StateDb
  let clock: ManualClock
  let batches: StateBatchOp[][]
  const made: WanCounters[] = []

  const open = async () => {
    const raw = await openStateDb({ path: join(dir, 'db'), schemaVersion: 1 })
    batches = []
    // Records every write, so the tests see that counts go out in one batch and nothing else.
    db = {
      ...raw,
      put: () => Promise.reject(new Error('WanCounters must write in batches')),
      batch: (ops) => {
        batches.push([...ops])
        return raw.batch(ops)
      },
    }
    return db
  }
  const counters = (o: Partial<WanCountersOptions> = {}) => {
    const c = new WanCounters({ db, clock, log: silentLogger(), ...o })
    made.push(c)
    return c
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'psw-wan-counters-'))
    clock = new ManualClock(Date.UTC(2026, 0, 15, 12))
    await open()
  })
  afterEach(async () => {
    for (const c of made.splice(0)) await c.stop()
    await db.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('accumulates per artifact, per day and in total; index bytes count in the total and the day', async () => {
    const c = counters()
    await c.start()
    c.addArtifactBytes(A, 1000)
    c.addArtifactBytes(A, 24)
    c.addArtifactBytes(B, 5)
    c.addIndexBytes(300)
    c.addArtifactBytes(C, 0) // nothing came: no entry
    const s = c.snapshot()
    expect(s).toMatchObject({ totalBytes: 1329, artifactBytes: 1029, indexBytes: 300, todayBytes: 1329 })
    expect(s.byArtifact).toEqual(
      new Map([
        [A, 1024],
        [B, 5],
      ]),
    )
    expect(s.byDay).toEqual(new Map([['2026-01-15', 1329]]))
    // the snapshot is a copy
    s.byDay.clear()
    expect(c.snapshot().byDay.size).toBe(1)
  })

  it('refuses malformed input (PSW_ERR_INVALID_ARGUMENT)', () => {
    const c = counters()
    for (const bad of [() => c.addArtifactBytes('ABC', 1), () => c.addIndexBytes(-1), () => c.addIndexBytes(1.5)]) {
      expect(bad).toThrow(expect.objectContaining({ code: 'PSW_ERR_INVALID_ARGUMENT' }))
    }
    expect(() => counters({ timeZone: 'Mars/Olympus_Mons' })).toThrow(
      expect.objectContaining({ code: 'PSW_ERR_INVALID_ARGUMENT' }),
    )
    expect(() => counters({ flushIntervalMs: 0 })).toThrow(
      expect.objectContaining({ code: 'PSW_ERR_INVALID_ARGUMENT' }),
    )
  })

  it('keeps counts in memory until a flush, then writes them in one batch', async () => {
    const c = counters()
    await c.start()
    c.addArtifactBytes(A, 10)
    c.addArtifactBytes(B, 20)
    c.addIndexBytes(3)
    expect(await stored(db)).toEqual({}) // what a kill -9 now would lose
    await c.flush()
    expect(batches).toHaveLength(1)
    expect(await stored(db)).toEqual({
      [WAN_KEYS.artifactsTotal]: 30,
      [WAN_KEYS.index]: 3,
      [`${WAN_KEYS.dayPrefix}2026-01-15`]: 33,
      [`${WAN_KEYS.artifactPrefix}${A}`]: { bytes: 10, lastAt: clock.now() },
      [`${WAN_KEYS.artifactPrefix}${B}`]: { bytes: 20, lastAt: clock.now() },
    })
    // nothing new: no write at all
    await c.flush()
    expect(batches).toHaveLength(1)
    // only what changed is written again
    c.addArtifactBytes(A, 1)
    await c.flush()
    expect(batches[1]!.map((op) => op.key).sort()).toEqual(
      [
        WAN_KEYS.artifactsTotal,
        WAN_KEYS.index,
        `${WAN_KEYS.dayPrefix}2026-01-15`,
        `${WAN_KEYS.artifactPrefix}${A}`,
      ].sort(),
    )
  })

  it('flushes by itself every flushIntervalMs, and on stop()', async () => {
    const c = counters({ flushIntervalMs: 20 })
    await c.start()
    c.addIndexBytes(7)
    await vi.waitFor(async () => expect(await stored(db)).toMatchObject({ [WAN_KEYS.index]: 7 }), { timeout: 5000 })
    c.addIndexBytes(1)
    await c.stop()
    await c.stop() // idempotent
    expect(await stored(db)).toMatchObject({ [WAN_KEYS.index]: 8 })
  })

  it('reloads its totals after the same LevelDB is reopened, adding to counts made before start()', async () => {
    const c = counters()
    await c.start()
    c.addArtifactBytes(A, 100)
    c.addIndexBytes(50)
    await c.stop()
    await db.close()
    await open()

    const again = counters()
    again.addArtifactBytes(B, 1) // counted before the load: must not be lost or overwritten
    await again.start()
    again.addArtifactBytes(A, 1)
    expect(again.snapshot()).toMatchObject({ totalBytes: 152, artifactBytes: 102, indexBytes: 50 })
    expect(again.snapshot().byArtifact).toEqual(
      new Map([
        [A, 101],
        [B, 1],
      ]),
    )
    expect(again.days()).toEqual([{ day: '2026-01-15', bytes: 152 }])
    // a second start() does not load (and so double) the stored totals again
    await again.stop()
    await again.start()
    expect(again.totals().totalBytes).toBe(152)
  })

  it('a failed batch is retried by the next flush', async () => {
    const c = counters()
    await c.start()
    c.addIndexBytes(5)
    const batch = db.batch
    db.batch = () => Promise.reject(new Error('disk on fire'))
    await c.flush()
    db.batch = batch
    expect(await stored(db)).toEqual({})
    await c.flush()
    expect(await stored(db)).toMatchObject({ [WAN_KEYS.index]: 5 })
  })

  describe('day boundaries', () => {
    it('UTC by default', async () => {
      const c = counters()
      clock.set(Date.UTC(2026, 0, 1, 23, 59))
      c.addIndexBytes(1)
      clock.advance(2 * MIN)
      c.addIndexBytes(2)
      expect(c.days()).toEqual([
        { day: '2026-01-01', bytes: 1 },
        { day: '2026-01-02', bytes: 2 },
      ])
      expect(c.totals().todayBytes).toBe(2)
    })

    it('local midnight of the configured time zone, across a DST change', async () => {
      const c = counters({ timeZone: 'Europe/Berlin' })
      clock.set(Date.UTC(2026, 0, 1, 22, 59)) // 23:59 in Berlin (UTC+1)
      c.addArtifactBytes(A, 100)
      clock.advance(2 * MIN) // 00:01 on 2 January in Berlin, still 1 January in UTC
      c.addArtifactBytes(A, 50)
      expect(c.days()).toEqual([
        { day: '2026-01-01', bytes: 100 },
        { day: '2026-01-02', bytes: 50 },
      ])

      const ny = counters({ timeZone: 'America/New_York' })
      // DST starts on 8 March 2026: that day has 23 hours.
      clock.set(Date.UTC(2026, 2, 8, 4, 59)) // 23:59 EST, 7 March
      ny.addIndexBytes(1)
      clock.set(Date.UTC(2026, 2, 8, 5, 1)) // 00:01 EST, 8 March
      ny.addIndexBytes(2)
      clock.set(Date.UTC(2026, 2, 9, 3, 59)) // 23:59 EDT, 8 March
      ny.addIndexBytes(4)
      clock.set(Date.UTC(2026, 2, 9, 4, 1)) // 00:01 EDT, 9 March
      ny.addIndexBytes(8)
      expect(ny.days()).toEqual([
        { day: '2026-03-07', bytes: 1 },
        { day: '2026-03-08', bytes: 6 },
        { day: '2026-03-09', bytes: 8 },
      ])
      expect(ny.days('2026-03-08', '2026-03-08')).toEqual([{ day: '2026-03-08', bytes: 6 }])
      expect(() => ny.days('8 March')).toThrow(expect.objectContaining({ code: 'PSW_ERR_INVALID_ARGUMENT' }))
    })

    it('the day formatter pads and follows the zone', () => {
      expect(createDayFormatter('UTC')(Date.UTC(2026, 8, 5, 0, 0))).toBe('2026-09-05')
      expect(createDayFormatter('Pacific/Kiritimati')(Date.UTC(2026, 8, 5, 11, 0))).toBe('2026-09-06')
    })
  })

  describe('bounded memory', () => {
    it('prunes days older than the retention period and artifacts idle that long, in memory and on disk', async () => {
      const c = counters({ retentionDays: 3 })
      await c.start()
      c.addArtifactBytes(A, 1) // 15 January
      clock.advance(DAY_MS)
      c.addArtifactBytes(B, 2) // 16 January
      await c.flush()
      expect(Object.keys(await stored(db))).toContain(`${WAN_KEYS.dayPrefix}2026-01-15`)

      clock.advance(3 * DAY_MS) // 19 January: 15 January is now 4 days back
      c.addIndexBytes(4)
      await c.flush()
      expect(c.days().map((d) => d.day)).toEqual(['2026-01-16', '2026-01-19'])
      expect([...c.snapshot().byArtifact.keys()]).toEqual([B])
      const keys = Object.keys(await stored(db))
      expect(keys).not.toContain(`${WAN_KEYS.dayPrefix}2026-01-15`)
      expect(keys).not.toContain(`${WAN_KEYS.artifactPrefix}${A}`)
      expect(keys).toContain(`${WAN_KEYS.artifactPrefix}${B}`)
      // the totals keep everything
      expect(c.totals()).toMatchObject({ totalBytes: 7, artifactBytes: 3, indexBytes: 4, todayBytes: 4 })
    })

    it('prunes what expired while the appliance was off, at start', async () => {
      const c = counters({ retentionDays: 3 })
      await c.start()
      c.addArtifactBytes(A, 1)
      await c.stop()
      clock.advance(10 * DAY_MS)
      const later = counters({ retentionDays: 3 })
      await later.start()
      expect(later.days()).toEqual([])
      expect(later.snapshot().byArtifact.size).toBe(0)
      expect(later.totals().totalBytes).toBe(1)
      await later.flush()
      expect(await stored(db)).toEqual({ [WAN_KEYS.artifactsTotal]: 1, [WAN_KEYS.index]: 0 })
    })

    it('keeps at most maxArtifacts entries, the most recently active', async () => {
      const c = counters({ maxArtifacts: 2 })
      await c.start()
      for (const sha of [A, B, C]) {
        c.addArtifactBytes(sha, 1)
        clock.advance(MIN)
      }
      c.addArtifactBytes(A, 1) // A is the most recent again
      await c.flush()
      expect(c.recentArtifacts().map((a) => a.sha256)).toEqual([A, C])
      expect(Object.keys(await stored(db))).not.toContain(`${WAN_KEYS.artifactPrefix}${B}`)
      expect(c.recentArtifacts(1)).toEqual([{ sha256: A, bytes: 2, lastAt: clock.now() }])
    })
  })
})
