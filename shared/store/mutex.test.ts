import { describe, expect, it } from 'vitest'
import { KeyedMutex, Mutex } from './mutex.ts'

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

describe('Mutex', () => {
  it('runs holders one at a time in call order, even when one throws', async () => {
    const mutex = new Mutex()
    const order: string[] = []
    let inside = 0
    const job = (name: string, fail = false) =>
      mutex.runExclusive(async () => {
        inside++
        expect(inside).toBe(1)
        await tick()
        order.push(name)
        inside--
        if (fail) throw new Error(name)
        return name
      })
    const results = await Promise.allSettled([job('a'), job('b', true), job('c')])
    expect(order).toEqual(['a', 'b', 'c'])
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled'])
    expect(mutex.locked).toBe(false)
  })

  it('makes read-modify-write sequences safe', async () => {
    const mutex = new Mutex()
    let value = 0
    await Promise.all(
      Array.from({ length: 50 }, () =>
        mutex.runExclusive(async () => {
          const read = value
          await tick()
          value = read + 1
        }),
      ),
    )
    expect(value).toBe(50)
  })
})

describe('KeyedMutex', () => {
  it('serialises per key, runs other keys in parallel, and forgets idle keys', async () => {
    const locks = new KeyedMutex()
    const events: string[] = []
    let releaseA!: () => void
    const a1 = locks.run('a', () => new Promise<void>((resolve) => (releaseA = resolve)).then(() => events.push('a1')))
    const a2 = locks.run('a', () => events.push('a2'))
    await locks.run('b', () => events.push('b'))
    expect(events).toEqual(['b'])
    releaseA()
    await Promise.all([a1, a2])
    expect(events).toEqual(['b', 'a1', 'a2'])
    expect(locks.size).toBe(0)
  })
})
