import { describe, expect, it } from 'vitest'
import { BufferPool } from './buffer-pool.ts'

describe('BufferPool', () => {
  it('hands out each buffer once and makes waiters wait for a release, in order', async () => {
    const pool = new BufferPool(2, 16)
    const a = await pool.acquire()
    const b = await pool.acquire()
    expect(a).not.toBe(b)
    expect(a.length).toBe(16)
    const got: Buffer[] = []
    const c = pool.acquire().then((buf) => got.push(buf))
    const d = pool.acquire().then((buf) => got.push(buf))
    await Promise.resolve()
    expect(got).toEqual([])
    pool.release(b)
    pool.release(a)
    await Promise.all([c, d])
    expect(got[0]).toBe(b)
    expect(got[1]).toBe(a)
    pool.release(a)
    expect(await pool.acquire()).toBe(a)
  })
})
