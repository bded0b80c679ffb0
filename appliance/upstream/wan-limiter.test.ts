import { describe, expect, it } from 'vitest'
import { ManualClock } from '../../shared/clock.ts'
import { silentLogger } from '../../shared/log.ts'
import { DownloadQueue } from './download-queue.ts'
import { WanLimiter } from './wan-limiter.ts'
import { parseWanSchedule, unlimitedWanSchedule } from './wan-schedule.ts'
import { flushMicrotasks, ManualTimers } from './wan-test-helpers.ts'

function fixture(start = Date.parse('2026-01-05T06:59:00Z')) {
  const clock = new ManualClock(start)
  const timers = new ManualTimers(clock)
  // Mon-Fri 07:00-19:00 UTC: 1000 B/s; otherwise unlimited.
  const schedule = parseWanSchedule({
    timeZone: 'UTC',
    defaultBytesPerSecond: 0,
    rules: [{ days: ['mon', 'tue', 'wed', 'thu', 'fri'], start: '07:00', end: '19:00', bytesPerSecond: 1000 }],
  })
  const rates: number[] = []
  const limiter = new WanLimiter(
    { clock, timers, log: silentLogger() },
    { schedule, onRateChange: (r) => rates.push(r) },
  )
  return { clock, timers, limiter, rates }
}

describe('WanLimiter', () => {
  it('passes everything at once while the schedule says unlimited', async () => {
    const { limiter } = fixture()
    limiter.start()
    expect(limiter.rate).toBe(0)
    await expect(limiter.take(10_000_000)).resolves.toBe(0)
    limiter.stop()
  })

  it('switches rate at the schedule boundary by its own timer', async () => {
    const { limiter, timers, rates } = fixture()
    limiter.start()
    await timers.advance(59_999)
    expect(limiter.rate).toBe(0)
    await timers.advance(1)
    expect(limiter.rate).toBe(1000)
    await timers.advance(12 * 3_600_000)
    expect(limiter.rate).toBe(0)
    expect(rates).toEqual([1000, 0])
    limiter.stop()
    expect(timers.pending).toBe(0)
  })

  it('paces takers at the rate, first come first served, and reports the time waited', async () => {
    const { limiter, timers } = fixture(Date.parse('2026-01-05T08:00:00Z'))
    limiter.start()
    expect(limiter.rate).toBe(1000)
    const done: string[] = []
    const a = limiter.take(1000).then((w) => done.push(`a:${w}`)) // the full burst
    const b = limiter.take(500).then((w) => done.push(`b:${w}`))
    const c = limiter.take(500).then((w) => done.push(`c:${w}`))
    await flushMicrotasks()
    expect(done).toEqual(['a:0'])
    await timers.advance(499)
    expect(done).toEqual(['a:0'])
    await timers.advance(1)
    expect(done).toEqual(['a:0', 'b:500'])
    await timers.advance(500)
    expect(done).toEqual(['a:0', 'b:500', 'c:1000'])
    await Promise.all([a, b, c])
    limiter.stop()
  })

  it('re-paces waiting takers at once when the rate changes', async () => {
    const { limiter, timers } = fixture(Date.parse('2026-01-05T18:59:59Z'))
    limiter.start()
    await limiter.take(1000) // bucket empty
    let passed = false
    const p = limiter.take(100_000).then(() => {
      passed = true
    })
    await timers.advance(999) // still 1000 B/s: a 100 kB take would need the burst back (1 s)
    expect(passed).toBe(false)
    await timers.advance(1) // 19:00: unlimited
    expect(passed).toBe(true)
    await p
    limiter.stop()
  })

  it('follows a new schedule set at run time', async () => {
    const { limiter } = fixture()
    limiter.start()
    limiter.setSchedule({ ...unlimitedWanSchedule(), defaultBytesPerSecond: 42 })
    expect(limiter.rate).toBe(42)
    limiter.stop()
  })

  it('an aborted taker leaves the queue; stop() rejects the rest', async () => {
    const { limiter, timers } = fixture(Date.parse('2026-01-05T08:00:00Z'))
    limiter.start()
    await limiter.take(1000)
    const ac = new AbortController()
    const a = limiter.take(500, ac.signal)
    const b = limiter.take(500)
    expect(limiter.waiting).toBe(2)
    ac.abort(new Error('caller gone'))
    await expect(a).rejects.toThrow('caller gone')
    await timers.advance(500)
    await expect(b).resolves.toBe(500)
    const c = limiter.take(5000)
    limiter.stop()
    await expect(c).rejects.toMatchObject({ name: 'AbortError' })
  })
})

describe('DownloadQueue', () => {
  it('admits emergency waiters before normal ones, each in order', async () => {
    const q = new DownloadQueue(1)
    const order: string[] = []
    const first = await q.acquire('normal')
    // Each waiter gives its slot back as soon as it has it, so the order of admission shows.
    const waiter = (priority: 'normal' | 'emergency', name: string) =>
      q.acquire(priority).then((release) => {
        order.push(name)
        release()
      })
    const waits = [waiter('normal', 'n1'), waiter('emergency', 'e1'), waiter('normal', 'n2'), waiter('emergency', 'e2')]
    first()
    await Promise.all(waits)
    expect(order).toEqual(['e1', 'e2', 'n1', 'n2'])
  })

  it('drops an aborted waiter and never exceeds the limit', async () => {
    const q = new DownloadQueue(2)
    const r1 = await q.acquire('normal')
    const r2 = await q.acquire('normal')
    const ac = new AbortController()
    const gone = q.acquire('normal', ac.signal)
    const next = q.acquire('normal')
    ac.abort(new Error('gone'))
    await expect(gone).rejects.toThrow('gone')
    expect(q.active).toBe(2)
    r1()
    r1() // a second release is ignored
    const r3 = await next
    expect(q.active).toBe(2)
    r2()
    r3()
    expect(q.active).toBe(0)
  })
})
