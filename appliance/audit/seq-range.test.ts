import { describe, expect, it } from 'vitest'
import { MAX_SEQ, seqPrefixes } from './seq-range.ts'

const pad = (n: number) => String(n).padStart(16, '0')
/** Deterministic pseudo-random numbers in [0, 1) (a failure must reproduce). */
function lcg(seed: number): () => number {
  let state = seed
  return () => {
    state = (state * 1103515245 + 12345) % 2 ** 31
    return state / 2 ** 31
  }
}
const covered = (prefixes: string[], n: number) => prefixes.some((p) => pad(n).startsWith(p))

describe('seqPrefixes', () => {
  it('covers exactly lo..hi with ascending, disjoint prefixes', () => {
    const cases: Array<[number, number]> = [
      [1, 1],
      [1, 9],
      [1, 10],
      [7, 23],
      [9, 1000],
      [99, 101],
      [123, 4567],
      [1000, 1999],
      [10_000, 99_999],
      [1, 123_456],
    ]
    const random = lcg(42)
    for (let i = 0; i < 200; i++) {
      const lo = 1 + Math.floor(random() ** 3 * 1e12)
      cases.push([lo, lo + Math.floor(random() ** 3 * 1e9)])
    }
    for (const [lo, hi] of cases) {
      const prefixes = seqPrefixes(lo, hi)
      expect([...prefixes].sort(), `${lo}..${hi}`).toEqual(prefixes)
      for (let i = 1; i < prefixes.length; i++) expect(prefixes[i]!.startsWith(prefixes[i - 1]!)).toBe(false)
      for (const n of [lo - 1, lo, lo + 1, Math.floor((lo + hi) / 2), hi - 1, hi, hi + 1, hi + 1000]) {
        if (n < 0) continue
        expect(covered(prefixes, n), `${n} in ${lo}..${hi}`).toBe(n >= lo && n <= hi)
      }
      expect(prefixes.length).toBeLessThanOrEqual(2 * 9 * 16)
    }
  })

  it('matches brute force over a small space', () => {
    const wrong: string[] = []
    for (let lo = 0; lo <= 130; lo += 7) {
      for (let hi = lo; hi <= 260; hi += 11) {
        const prefixes = seqPrefixes(lo, hi)
        for (let n = 0; n <= 300; n++)
          if (covered(prefixes, n) !== (n >= lo && n <= hi)) wrong.push(`${n} ${lo}..${hi}`)
      }
    }
    expect(wrong).toEqual([])
  })

  it('handles empty and extreme ranges', () => {
    expect(seqPrefixes(5, 4)).toEqual([])
    expect(seqPrefixes(MAX_SEQ, MAX_SEQ)).toEqual([pad(MAX_SEQ)])
    expect(seqPrefixes(1, MAX_SEQ).length).toBeLessThan(300)
  })
})
