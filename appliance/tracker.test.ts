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
  it('lists other members whatever they hold, even those that hold nothing yet', () => {
    const t = new Tracker({ clock: new ManualClock(), random: seededRandom(1) })
    t.announce(B, 'done', ['/a'], Bitfield.full(8))
    t.announce(B, 'half', ['/b'], field(8, [0, 1, 2, 3]))
    t.announce(B, 'empty', ['/c'], new Bitfield(8))
    t.announce(B, 'asker', ['/d'], field(8, [0]))
    const list = t.peersFor(B, 'asker')
    expect(list.map((p) => p.peerId).sort()).toEqual(['done', 'empty', 'half'])
    expect(list.find((p) => p.peerId === 'done')).toMatchObject({ complete: true, chunks: 8, addrs: ['/a'] })
    expect(list.find((p) => p.peerId === 'empty')).toMatchObject({ complete: false, chunks: 0, addrs: ['/c'] })
  })

  it('never lists the asker itself and caps the list', () => {
    const t = new Tracker({ clock: new ManualClock(), random: seededRandom(2), maxPeers: 3 })
    for (let i = 0; i < 10; i++) t.announce(B, `p${i}`, [], Bitfield.full(4))
    const list = t.peersFor(B, 'p0', 50)
    expect(list).toHaveLength(3)
    expect(list.map((p) => p.peerId)).not.toContain('p0')
  })

  it("spreads load: a uniform sample, so no member becomes everyone's hub", () => {
    const t = new Tracker({ clock: new ManualClock(), random: seededRandom(3), maxPeers: 5 })
    for (let i = 0; i < 50; i++) t.announce(B, `p${i}`, [], i < 5 ? Bitfield.full(4) : new Bitfield(4))
    const seen = new Map<string, number>()
    for (let k = 0; k < 2000; k++)
      for (const p of t.peersFor(B, 'asker')) seen.set(p.peerId, (seen.get(p.peerId) ?? 0) + 1)
    // 2000 lists × 5 peers over 50 members: 200 each on average; complete ones get no more.
    expect(seen.size).toBe(50)
    for (const n of seen.values()) expect(n).toBeGreaterThan(140)
    for (const n of seen.values()) expect(n).toBeLessThan(260)
  })

  it('forgets peers that stopped announcing', () => {
    const clock = new ManualClock()
    const t = new Tracker({ clock, random: seededRandom(4), staleAfterMs: 1000 })
    t.announce(B, 'old', [], Bitfield.full(2))
    clock.advance(500)
    t.announce(B, 'fresh', [], Bitfield.full(2))
    clock.advance(600)
    expect(t.peersFor(B, 'asker').map((p) => p.peerId)).toEqual(['fresh'])
    expect(t.members(B).map((p) => p.peerId)).toEqual(['fresh'])
  })
})

describe('Tracker.holders / Tracker.holds', () => {
  it('counts the members that announced a chunk, per bundle', () => {
    const t = new Tracker({ clock: new ManualClock(), random: seededRandom(5) })
    const other = 'cd'.repeat(32)
    t.announce(B, 'a', [], field(8, [0, 1, 7]))
    t.announce(B, 'b', [], field(8, [0, 7]))
    t.announce(B, 'c', [], new Bitfield(8))
    t.announce(other, 'd', [], Bitfield.full(8))
    expect(t.holders(B, 0)).toBe(2)
    expect(t.holders(B, 1)).toBe(1)
    expect(t.holders(B, 7)).toBe(2)
    expect(t.holders(B, 3)).toBe(0)
    expect(t.holders(other, 3)).toBe(1)
    expect(t.holders('ef'.repeat(32), 0)).toBe(0) // unknown bundle
    expect(t.holders(B, 8)).toBe(0) // past the last chunk
    expect(t.holders(B, -1)).toBe(0)
  })

  it('follows re-announcements and departures without double counting', () => {
    const t = new Tracker({ clock: new ManualClock(), random: seededRandom(6) })
    t.announce(B, 'a', [], field(4, [0]))
    t.announce(B, 'a', [], field(4, [0, 2]))
    expect(t.holders(B, 0)).toBe(1)
    expect(t.holders(B, 2)).toBe(1)
    t.announce(B, 'b', [], field(4, [2]))
    expect(t.holders(B, 2)).toBe(2)
    t.leave(B, 'a')
    expect(t.holders(B, 0)).toBe(0)
    expect(t.holders(B, 2)).toBe(1)
    t.leave(B, 'nobody')
    expect(t.holders(B, 2)).toBe(1)
  })

  it('stops counting members that stopped announcing', () => {
    const clock = new ManualClock()
    const t = new Tracker({ clock, random: seededRandom(10), staleAfterMs: 5000 })
    t.announce(B, 'gone', [], field(4, [0, 1]))
    clock.advance(3000)
    t.announce(B, 'here', [], field(4, [1]))
    expect(t.holders(B, 1)).toBe(2)
    clock.advance(3000)
    expect(t.holders(B, 0)).toBe(0)
    expect(t.holders(B, 1)).toBe(1)
    expect(t.holds(B, 'gone', 1)).toBe(false)
  })

  it('tells whether one member announced a chunk', () => {
    const t = new Tracker({ clock: new ManualClock(), random: seededRandom(7) })
    t.announce(B, 'a', [], field(4, [1, 3]))
    expect(t.holds(B, 'a', 1)).toBe(true)
    expect(t.holds(B, 'a', 3)).toBe(true)
    expect(t.holds(B, 'a', 0)).toBe(false)
    expect(t.holds(B, 'a', 4)).toBe(false) // past the last chunk
    expect(t.holds(B, 'b', 1)).toBe(false) // not a member
    expect(t.holds('cd'.repeat(32), 'a', 1)).toBe(false) // another bundle
    t.announce(B, 'a', [], field(4, [0]))
    expect(t.holds(B, 'a', 1)).toBe(false)
    expect(t.holds(B, 'a', 0)).toBe(true)
    t.leave(B, 'a')
    expect(t.holds(B, 'a', 0)).toBe(false)
  })

  it('agrees with the announced bitfields under random announcements and departures', () => {
    const t = new Tracker({ clock: new ManualClock(), random: seededRandom(8) })
    const random = seededRandom(9)
    const size = 20
    const peers = ['a', 'b', 'c', 'd', 'e', 'f']
    const model = new Map<string, Set<number>>()
    for (let step = 0; step < 300; step++) {
      const peer = peers[Math.floor(random() * peers.length)]!
      if (random() < 0.15) {
        model.delete(peer)
        t.leave(B, peer)
      } else {
        const have = new Set(Array.from({ length: size }, (_, i) => i).filter(() => random() < 0.4))
        model.set(peer, have)
        t.announce(B, peer, [], field(size, [...have]))
      }
      for (let i = 0; i < size; i++) {
        expect(t.holders(B, i)).toBe([...model.values()].filter((h) => h.has(i)).length)
        for (const p of peers) expect(t.holds(B, p, i)).toBe(model.get(p)?.has(i) ?? false)
      }
    }
  })
})
