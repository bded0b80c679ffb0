import { describe, expect, it } from 'vitest'
import { ManualClock } from '../../shared/clock.ts'
import type { UpstreamError } from '../../shared/errors.ts'
import { BodyWatchdog } from './body-watchdog.ts'
import { ProgressTracker } from './download-progress.ts'
import type { FeedArtifact } from './feed-types.ts'
import { ManualTimers } from './wan-test-helpers.ts'

function fixture(o: { idleTimeoutMs?: number; minBytesPerSec?: number; windowMs?: number } = {}) {
  const clock = new ManualClock()
  const timers = new ManualTimers(clock)
  const fired: UpstreamError[] = []
  const dog = new BodyWatchdog({
    clock,
    timers,
    idleTimeoutMs: o.idleTimeoutMs ?? 0,
    minBytesPerSec: () => o.minBytesPerSec ?? 0,
    windowMs: o.windowMs ?? 0,
    onTimeout: (err) => fired.push(err),
  })
  return { clock, timers, fired, dog }
}

describe('BodyWatchdog', () => {
  it('fires PSW_ERR_WAN_TIMEOUT after the idle time, only while waiting for the network', async () => {
    const { timers, fired, dog } = fixture({ idleTimeoutMs: 1000 })
    dog.waiting()
    await timers.advance(999)
    dog.received(10)
    await timers.advance(60_000) // busy elsewhere (tokens, disk): not idle
    expect(fired).toEqual([])
    dog.waiting()
    await timers.advance(1000)
    expect(fired).toMatchObject([{ code: 'PSW_ERR_WAN_TIMEOUT', details: { phase: 'idle' } }])
  })

  it('catches a slow drip over the window of network time', async () => {
    const { timers, fired, dog } = fixture({ idleTimeoutMs: 10_000, minBytesPerSec: 1000, windowMs: 5000 })
    for (let i = 0; i < 10 && fired.length === 0; i++) {
      dog.waiting()
      await timers.advance(900) // 100 B every 0.9 s ≈ 111 B/s
      dog.received(100)
    }
    expect(fired).toMatchObject([{ code: 'PSW_ERR_WAN_TIMEOUT', details: { phase: 'min-rate' } }])
  })

  it('does not count time spent away from the network (throttled by the WAN cap)', async () => {
    const { clock, timers, fired, dog } = fixture({ idleTimeoutMs: 10_000, minBytesPerSec: 1000, windowMs: 5000 })
    for (let i = 0; i < 100; i++) {
      dog.waiting()
      await timers.advance(10) // the network delivers 16 kB in 10 ms
      dog.received(16_384)
      clock.advance(60_000) // then the reader waits a minute for tokens
    }
    expect(fired).toEqual([])
  })

  it('fires once and stops cleanly', async () => {
    const { timers, fired, dog } = fixture({ idleTimeoutMs: 100 })
    dog.waiting()
    await timers.advance(500)
    dog.waiting()
    await timers.advance(500)
    expect(fired).toHaveLength(1)
    dog.stop()
    expect(timers.pending).toBe(0)
  })
})

describe('ProgressTracker', () => {
  const artifact = {
    sha256: 'a'.repeat(64),
    name: 'pkg',
    feedId: 'f',
    key: 'k',
    size: 10_000,
    emergency: false,
  } as FeedArtifact

  it('reports a rate over the last seconds and throttles byte updates, not state changes', () => {
    const clock = new ManualClock()
    const seen: string[] = []
    const t = new ProgressTracker(artifact, clock, (p) => seen.push(`${p.state}:${p.bytes}`), 250)
    t.state('downloading')
    for (let i = 1; i <= 10; i++) {
      clock.advance(100)
      t.bytes(i * 500)
    }
    expect(t.snapshot()).toMatchObject({ state: 'downloading', bytes: 5000, rateBytesPerSec: 5000, attempt: 1 })
    expect(seen).toEqual(['downloading:0', 'downloading:1500', 'downloading:3000', 'downloading:4500'])
    t.error(Object.assign(new Error('boom'), { name: 'X' }))
    t.state('retry-wait', { nextRetryAt: 123 })
    expect(t.snapshot()).toMatchObject({
      state: 'retry-wait',
      rateBytesPerSec: 0,
      nextRetryAt: 123,
      lastError: { code: 'X', message: 'boom' },
    })
  })
})
