import { describe, expect, it } from 'vitest'
import { Bitfield } from './bitfield.ts'

describe('Bitfield', () => {
  it('sets, counts and reports bits most significant first', () => {
    const f = new Bitfield(10)
    expect(f.set(0)).toBe(true)
    expect(f.set(0)).toBe(false)
    f.set(9)
    expect(f.count).toBe(2)
    expect([...f.bytes]).toEqual([0x80, 0x40])
    expect(f.has(9)).toBe(true)
    expect(f.has(10)).toBe(false)
    expect(() => f.set(10)).toThrow(expect.objectContaining({ code: 'PSW_ERR_INVALID_ARGUMENT' }))
  })

  it('round-trips through bytes and refuses malformed input', () => {
    const f = Bitfield.full(13)
    expect(f.complete).toBe(true)
    const g = new Bitfield(13, f.bytes)
    expect(g.count).toBe(13)
    expect(() => new Bitfield(13, new Uint8Array(3))).toThrow(expect.objectContaining({ code: 'PSW_ERR_SCHEMA' }))
    expect(() => new Bitfield(13, Uint8Array.from([0xff, 0xff]))).toThrow(
      expect.objectContaining({ code: 'PSW_ERR_SCHEMA' }),
    )
  })

  it('lists what one peer has and another lacks', () => {
    const a = new Bitfield(20)
    const b = new Bitfield(20)
    for (const i of [1, 2, 8, 19]) a.set(i)
    for (const i of [2, 19]) b.set(i)
    expect([...a.missingIn(b)]).toEqual([1, 8])
    expect([...b.missingIn(a)]).toEqual([])
  })

  it('counts agree with a naive count over random fields', () => {
    for (let round = 0; round < 50; round++) {
      const size = 1 + Math.floor(Math.random() * 200)
      const f = new Bitfield(size)
      const set = new Set<number>()
      for (let k = 0; k < size; k++) {
        const i = Math.floor(Math.random() * size)
        f.set(i)
        set.add(i)
      }
      expect(f.count).toBe(set.size)
      expect(new Bitfield(size, f.bytes).count).toBe(set.size)
    }
  })
})
