import { describe, expect, it } from 'vitest'
import { ManualClock } from '../clock.ts'
import { TokenBucket } from './token-bucket.ts'

describe('TokenBucket', () => {
  it('lets a burst through, then paces at the rate', () => {
    const clock = new ManualClock()
    const b = new TokenBucket({ rate: 1000, burst: 1000, clock })
    expect(b.delayFor(1000)).toBe(0)
    void b.take(1000)
    expect(b.delayFor(500)).toBe(500)
    clock.advance(250)
    expect(b.delayFor(500)).toBe(250)
    clock.advance(250)
    expect(b.delayFor(500)).toBe(0)
  })

  it('never accumulates more than the burst', () => {
    const clock = new ManualClock()
    const b = new TokenBucket({ rate: 100, burst: 200, clock })
    clock.advance(60_000)
    void b.take(200)
    expect(b.delayFor(100)).toBe(1000)
  })

  it('lets a request larger than the burst pass and charges the debt', async () => {
    const clock = new ManualClock()
    const b = new TokenBucket({ rate: 100, burst: 100, clock })
    await b.take(300) // passes at once with a full bucket, leaves -200
    expect(b.delayFor(100)).toBe(3000)
  })

  it('is a no-op when unlimited', async () => {
    const b = new TokenBucket({ rate: 0, clock: new ManualClock() })
    expect(b.unlimited).toBe(true)
    expect(b.delayFor(1e12)).toBe(0)
    await b.take(1e12)
  })
})
