import { describe, expect, it } from 'vitest'
import { ManualClock } from '../shared/clock.ts'
import { Bitfield } from '../shared/swarm/bitfield.ts'
import { seededRandom } from '../shared/swarm/chunk-picker.ts'
import { Tracker } from './tracker.ts'

const B = 'ab'.repeat(32)
const field = (size: number, indices: number[]) => {
  const f = new Bitfield(size)
  for (const i of indices) f.set(i)
  return f
}

describe('Tracker', () => {
  it('lists only peers with something the asker lacks, completed first, then the most useful', () => {
    const t = new Tracker({ clock: new ManualClock(), random: seededRandom(1) })
    t.announce(B, 'done', ['/a'], Bitfield.full(8))
    t.announce(B, 'half', ['/b'], field(8, [0, 1, 2, 3]))
    t.announce(B, 'little', ['/c'], field(8, [4]))
    t.announce(B, 'same', ['/d'], field(8, [0]))
    const list = t.peersFor(B, 'asker', field(8, [0]))
    expect(list.map((p) => p.peerId)).toEqual(['done', 'half', 'little'])
    expect(list[0]).toMatchObject({ complete: true, chunks: 8, addrs: ['/a'] })
  })

  it('never lists the asker itself and caps the list', () => {
    const t = new Tracker({ clock: new ManualClock(), random: seededRandom(2), maxPeers: 3 })
    for (let i = 0; i < 10; i++) t.announce(B, `p${i}`, [], Bitfield.full(4))
    const list = t.peersFor(B, 'p0', new Bitfield(4), 50)
    expect(list).toHaveLength(3)
    expect(list.map((p) => p.peerId)).not.toContain('p0')
  })

  it('spreads load: equally good peers take turns on the lists', () => {
    const t = new Tracker({ clock: new ManualClock(), random: seededRandom(3), maxPeers: 2 })
    for (let i = 0; i < 6; i++) t.announce(B, `p${i}`, [], Bitfield.full(4))
    const seen = new Map<string, number>()
    for (let k = 0; k < 30; k++) {
      for (const p of t.peersFor(B, 'asker', new Bitfield(4))) seen.set(p.peerId, (seen.get(p.peerId) ?? 0) + 1)
    }
    expect([...seen.values()]).toEqual(Array(6).fill(10))
  })

  it('forgets peers that stopped announcing', () => {
    const clock = new ManualClock()
    const t = new Tracker({ clock, random: seededRandom(4), staleAfterMs: 1000 })
    t.announce(B, 'old', [], Bitfield.full(2))
    clock.advance(500)
    t.announce(B, 'fresh', [], Bitfield.full(2))
    clock.advance(600)
    expect(t.peersFor(B, 'asker', new Bitfield(2)).map((p) => p.peerId)).toEqual(['fresh'])
    expect(t.members(B).map((p) => p.peerId)).toEqual(['fresh'])
  })
})
