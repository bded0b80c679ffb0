import { describe, expect, it } from 'vitest'
import { UpstreamError } from '../../shared/errors.ts'
import { backoffDelay, classifyFailure } from './download-retry.ts'
import { SingleFlight } from './single-flight.ts'

function deferred<T = void>() {
  let resolve!: (v: T) => void
  const promise = new Promise<T>((r) => {
    resolve = r
  })
  return { promise, resolve }
}

describe('SingleFlight', () => {
  it('runs one piece of work per key and gives every caller its result', async () => {
    const flights = new SingleFlight<{ runs: number }, string>()
    let runs = 0
    const work = async () => {
      runs++
      return 'done'
    }
    const all = Array.from({ length: 5 }, () => flights.join('k', () => ({ runs }), work))
    expect(flights.contexts()).toHaveLength(1)
    await expect(Promise.all(all)).resolves.toEqual(Array(5).fill('done'))
    expect(runs).toBe(1)
  })

  it('aborts the work when the last caller leaves; a new flight waits for its cleanup', async () => {
    const abandoned: string[] = []
    const flights = new SingleFlight<null, string>((key) => abandoned.push(key))
    const cleanup = deferred()
    const order: string[] = []
    const first = new AbortController()
    const p1 = flights.join(
      'k',
      () => null,
      (_c, signal) =>
        new Promise<string>((_resolve, reject) => {
          const onAbort = () => {
            order.push('aborted')
            void cleanup.promise.then(() => {
              order.push('cleaned up')
              reject(signal.reason)
            })
          }
          if (signal.aborted) onAbort()
          else signal.addEventListener('abort', onAbort)
        }),
      first.signal,
    )
    first.abort(new Error('caller left'))
    await expect(p1).rejects.toThrow('caller left')
    expect(abandoned).toEqual(['k'])
    const p2 = flights.join(
      'k',
      () => null,
      async () => {
        order.push('second started')
        return 'ok'
      },
    )
    cleanup.resolve()
    await expect(p2).resolves.toBe('ok')
    expect(order).toEqual(['aborted', 'cleaned up', 'second started'])
  })
})

describe('retry policy', () => {
  it('classifies failures', () => {
    const e = (code: 'PSW_ERR_WAN_HTTP' | 'PSW_ERR_WAN_SIZE' | 'PSW_ERR_WAN_TIMEOUT', details?: object) =>
      classifyFailure(new UpstreamError(code, 'x', { details: details as Record<string, unknown> }))
    expect(e('PSW_ERR_WAN_TIMEOUT')).toBe('transient')
    expect(e('PSW_ERR_WAN_HTTP', { network: 'ECONNRESET' })).toBe('transient')
    expect(e('PSW_ERR_WAN_HTTP', { status: 503 })).toBe('transient')
    expect(e('PSW_ERR_WAN_HTTP', { status: 429 })).toBe('transient')
    expect(e('PSW_ERR_WAN_HTTP', { status: 404 })).toBe('fatal')
    expect(e('PSW_ERR_WAN_HTTP', { restart: true })).toBe('restart')
    expect(e('PSW_ERR_WAN_SIZE', { kind: 'short' })).toBe('transient')
    expect(e('PSW_ERR_WAN_SIZE', { kind: 'overflow' })).toBe('integrity')
    expect(classifyFailure(new Error('?'))).toBe('fatal')
  })

  it('backs off exponentially with jitter, capped, and honours Retry-After', () => {
    const o = { baseMs: 1000, maxMs: 60_000 }
    expect(backoffDelay(1, { ...o, random: () => 0 })).toBe(500)
    expect(backoffDelay(1, { ...o, random: () => 1 })).toBe(1000)
    expect(backoffDelay(4, { ...o, random: () => 1 })).toBe(8000)
    expect(backoffDelay(40, { ...o, random: () => 1 })).toBe(60_000)
    expect(backoffDelay(1, { ...o, random: () => 0, retryAfterMs: 30_000 })).toBe(30_000)
    expect(backoffDelay(1, { ...o, random: () => 0, retryAfterMs: 3_600_000 })).toBe(60_000)
  })
})
