import { describe, expect, it } from 'vitest'
import { ManualClock } from '../shared/clock.ts'
import { Bitfield } from '../shared/swarm/bitfield.ts'
import { seededRandom } from '../shared/swarm/chunk-picker.ts'
import { SeedingPolicy } from './seeding-policy.ts'
import { Tracker } from './tracker.ts'

const B = 'ab'.repeat(32)
const OTHER = 'cd'.repeat(32)
const field = (size: number, indices: number[]) => {
  const f = new Bitfield(size)
  for (const i of indices) f.set(i)
  return f
}

const setup = (recentMs?: number) => {
  const clock = new ManualClock()
  const tracker = new Tracker({ clock, random: seededRandom(1) })
  const policy = new SeedingPolicy({ tracker, clock, ...(recentMs === undefined ? {} : { recentMs }) })
  return { clock, tracker, policy }
}

describe('SeedingPolicy', () => {
  it('counts the members that announced the chunk', () => {
    const { tracker, policy } = setup()
    tracker.announce(B, 'a', [], field(4, [0, 1]))
    tracker.announce(B, 'b', [], field(4, [0]))
    tracker.announce(B, 'c', [], new Bitfield(4))
    expect(policy.copies(B, 0)).toBe(2)
    expect(policy.copies(B, 1)).toBe(1)
    expect(policy.copies(B, 2)).toBe(0)
    expect(policy.copies(OTHER, 0)).toBe(0)
    tracker.leave(B, 'a')
    expect(policy.copies(B, 0)).toBe(1)
  })

  it('does not count the asker itself', () => {
    const { tracker, policy } = setup()
    tracker.announce(B, 'a', [], field(4, [0, 1]))
    tracker.announce(B, 'b', [], field(4, [0]))
    expect(policy.copies(B, 0, 'a')).toBe(1)
    expect(policy.copies(B, 1, 'a')).toBe(0)
    expect(policy.copies(B, 1, 'b')).toBe(1) // b lacks 1: nothing to subtract
    expect(policy.copies(B, 0, 'stranger')).toBe(2)
  })

  it('counts recent sends not yet announced, each recipient once', () => {
    const { tracker, policy } = setup()
    tracker.announce(B, 'a', [], field(4, [0]))
    policy.recordSend(B, 0, 'x')
    policy.recordSend(B, 0, 'y')
    policy.recordSend(B, 0, 'y') // sent again (a retry): still one copy
    policy.recordSend(B, 2, 'x')
    expect(policy.copies(B, 0)).toBe(3)
    expect(policy.copies(B, 2)).toBe(1)
    expect(policy.copies(B, 1)).toBe(0)
    // Per bundle.
    expect(policy.copies(OTHER, 0)).toBe(0)
  })

  it('does not double-count a recipient that has since announced the chunk', () => {
    const { tracker, policy } = setup()
    tracker.announce(B, 'a', [], field(4, [0]))
    policy.recordSend(B, 0, 'x')
    expect(policy.copies(B, 0)).toBe(2)
    tracker.announce(B, 'x', [], field(4, [0]))
    expect(policy.copies(B, 0)).toBe(2)
    // Announcing other chunks only does not count as holding this one.
    policy.recordSend(B, 1, 'y')
    tracker.announce(B, 'y', [], field(4, [3]))
    expect(policy.copies(B, 1)).toBe(1)
  })

  it('excludes the asker’s own recent receipt, announced or not, counting it once at most', () => {
    const { tracker, policy } = setup()
    policy.recordSend(B, 0, 'x')
    policy.recordSend(B, 0, 'y')
    expect(policy.copies(B, 0, 'x')).toBe(1)
    tracker.announce(B, 'x', [], field(4, [0]))
    expect(policy.copies(B, 0, 'x')).toBe(1)
    expect(policy.copies(B, 0, 'y')).toBe(1)
    expect(policy.copies(B, 0)).toBe(2)
  })

  it('forgets sends older than recentMs (default 30 s); a new send refreshes the time', () => {
    const { clock, policy } = setup()
    policy.recordSend(B, 0, 'x')
    clock.advance(10_000)
    policy.recordSend(B, 0, 'y')
    clock.advance(20_000) // x sent exactly 30 s ago: still counts
    expect(policy.copies(B, 0)).toBe(2)
    clock.advance(1)
    expect(policy.copies(B, 0)).toBe(1)
    policy.recordSend(B, 0, 'x')
    clock.advance(10_000)
    expect(policy.copies(B, 0)).toBe(1) // y expired, x fresh
    clock.advance(20_000)
    expect(policy.copies(B, 0)).toBe(1)
    clock.advance(1)
    expect(policy.copies(B, 0)).toBe(0)
    // Once forgotten, a chunk can be recorded again.
    policy.recordSend(B, 0, 'z')
    expect(policy.copies(B, 0)).toBe(1)
  })

  it('honours a custom recentMs, leaving announced holders counted after sends expire', () => {
    const { clock, tracker, policy } = setup(1000)
    tracker.announce(B, 'a', [], field(4, [1]))
    policy.recordSend(B, 1, 'x')
    policy.recordSend(B, 1, 'a') // already announced: not a second copy
    expect(policy.copies(B, 1)).toBe(2)
    clock.advance(1000)
    expect(policy.copies(B, 1)).toBe(2)
    clock.advance(1)
    expect(policy.copies(B, 1)).toBe(1)
    expect(policy.copies(B, 1, 'a')).toBe(0)
  })

  it('property: copies equals announced holders plus fresh unannounced sends, minus the asker', () => {
    for (let seed = 1; seed <= 30; seed++) {
      const random = seededRandom(seed)
      const recentMs = 500 + Math.floor(random() * 2000)
      const { clock, tracker, policy } = setup(recentMs)
      const size = 6
      const peers = ['a', 'b', 'c', 'd', 'e']
      const announced = new Map<string, Set<number>>()
      const sent = new Map<string, number>() // `${index}/${peer}` → when
      for (let step = 0; step < 200; step++) {
        const op = random()
        const peer = peers[Math.floor(random() * peers.length)]!
        const index = Math.floor(random() * size)
        if (op < 0.3) {
          const have = new Set([...(announced.get(peer) ?? []), ...(random() < 0.5 ? [index] : [])])
          announced.set(peer, have)
          tracker.announce(B, peer, [], field(size, [...have]))
        } else if (op < 0.6) {
          policy.recordSend(B, index, peer)
          sent.set(`${index}/${peer}`, clock.now())
        } else if (op < 0.65) {
          announced.delete(peer)
          tracker.leave(B, peer)
        } else if (op < 0.8) {
          clock.advance(Math.floor(random() * 600))
        } else {
          const asker = random() < 0.3 ? undefined : peers[Math.floor(random() * peers.length)]!
          const holders = new Set(peers.filter((p) => announced.get(p)?.has(index)))
          for (const p of peers) {
            const at = sent.get(`${index}/${p}`)
            if (at !== undefined && clock.now() - at <= recentMs) holders.add(p)
          }
          if (asker !== undefined) holders.delete(asker)
          expect(policy.copies(B, index, asker), `seed ${seed} step ${step}`).toBe(holders.size)
        }
      }
    }
  })
})
