import { describe, expect, it } from 'vitest'
import { Bitfield } from './bitfield.ts'
import { ChunkPicker, seededRandom } from './chunk-picker.ts'

const field = (size: number, indices: number[]) => {
  const f = new Bitfield(size)
  for (const i of indices) f.set(i)
  return f
}

describe('ChunkPicker', () => {
  it('asks for the rarest chunk first', () => {
    const p = new ChunkPicker({ have: new Bitfield(4), random: seededRandom(1) })
    p.setPeer('a', field(4, [0, 1, 2, 3]))
    p.setPeer('b', field(4, [0, 1, 2]))
    p.setPeer('c', field(4, [0, 1]))
    // availability: 0→3, 1→3, 2→2, 3→1
    expect(p.pick('a', 2)).toEqual([3, 2])
  })

  it('breaks ties at random, so peers do not all ask for the same chunk', () => {
    const counts = new Map<number, number>()
    for (let seed = 0; seed < 400; seed++) {
      const p = new ChunkPicker({ have: new Bitfield(4), random: seededRandom(seed) })
      p.setPeer('a', Bitfield.full(4))
      const [first] = p.pick('a', 1)
      counts.set(first!, (counts.get(first!) ?? 0) + 1)
    }
    expect(counts.size).toBe(4)
    for (const n of counts.values()) expect(n).toBeGreaterThan(60)
  })

  it('never requests a chunk twice outside endgame, and only chunks the peer has and we lack', () => {
    const p = new ChunkPicker({ have: field(10, [0]), random: seededRandom(2) })
    p.setPeer('a', field(10, [0, 1, 2, 3, 4]))
    p.setPeer('b', field(10, [0, 1, 2, 3, 4, 5]))
    const fromA = p.pick('a', 10)
    const fromB = p.pick('b', 10)
    expect(fromA.sort()).toEqual([1, 2, 3, 4])
    expect(fromB).toEqual([5])
    expect(p.endgame).toBe(false)
  })

  it('enters endgame when every missing chunk is in flight, duplicates the last ones, cancels on arrival', () => {
    const p = new ChunkPicker({ have: field(3, [0]), random: seededRandom(3), endgameFanout: 2 })
    p.setPeer('a', Bitfield.full(3))
    p.setPeer('b', Bitfield.full(3))
    p.setPeer('c', Bitfield.full(3))
    expect(p.pick('a', 5).sort()).toEqual([1, 2])
    expect(p.endgame).toBe(true)
    expect(p.pick('b', 5).sort()).toEqual([1, 2])
    expect(p.pick('c', 5)).toEqual([]) // fanout 2 reached
    expect(p.received(1, 'b')).toEqual(['a'])
    expect(p.have.has(1)).toBe(true)
    expect(p.pick('c', 5)).toEqual([]) // 2 is still at fanout
    p.failed(2, 'a')
    expect(p.pick('c', 5)).toEqual([2])
  })

  it('forgets a departed peer: its chunks no longer count and its requests can go elsewhere', () => {
    const p = new ChunkPicker({ have: new Bitfield(3), random: seededRandom(4) })
    p.setPeer('a', field(3, [0, 1]))
    p.setPeer('b', field(3, [0, 1, 2]))
    expect(p.availability(0)).toBe(2)
    const taken = p.pick('a', 2)
    expect(p.removePeer('a').sort()).toEqual(taken.sort())
    expect(p.availability(0)).toBe(1)
    expect(p.pick('b', 3).sort()).toEqual([0, 1, 2])
  })

  it('counts announcements once and follows them', () => {
    const p = new ChunkPicker({ have: new Bitfield(2), random: seededRandom(5) })
    p.setPeer('a', new Bitfield(2))
    expect(p.pick('a', 1)).toEqual([])
    p.peerHas('a', 1)
    p.peerHas('a', 1)
    expect(p.availability(1)).toBe(1)
    expect(p.pick('a', 1)).toEqual([1])
  })

  it('a simulated swarm completes: every node ends with every chunk, none asked of a peer without it', () => {
    const total = 64
    const nodes = Array.from({ length: 8 }, (_, i) => `n${i}`)
    const pickers = new Map(
      nodes.map((n) => [
        n,
        new ChunkPicker({ have: new Bitfield(total), random: seededRandom(n.length * 7 + Number(n.slice(1))) }),
      ]),
    )
    const seed = Bitfield.full(total)
    for (const [, p] of pickers) p.setPeer('seed', seed)
    for (let round = 0; round < 500 && [...pickers.values()].some((p) => !p.complete); round++) {
      for (const [name, p] of pickers) {
        for (const other of ['seed', ...nodes.filter((n) => n !== name)]) {
          for (const index of p.pick(other, 1)) {
            const holder = other === 'seed' ? seed : pickers.get(other)!.have
            expect(holder.has(index)).toBe(true)
            p.received(index, other)
            for (const [otherName, q] of pickers) if (otherName !== name) q.peerHas(name, index)
          }
        }
      }
      for (const [name, p] of pickers)
        for (const [otherName, q] of pickers) if (otherName !== name) q.setPeer(name, p.have)
    }
    for (const p of pickers.values()) expect(p.complete).toBe(true)
  })
})
