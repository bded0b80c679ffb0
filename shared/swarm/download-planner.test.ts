import { describe, expect, it } from 'vitest'
import { ManualClock } from '../clock.ts'
import { Bitfield } from './bitfield.ts'
import { seededRandom } from './chunk-picker.ts'
import { DownloadPlanner, type Outcome, type PlannerOptions, type Request } from './download-planner.ts'

const field = (size: number, indices: Iterable<number>) => {
  const f = new Bitfield(size)
  for (const i of indices) f.set(i)
  return f
}
const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i)

const planner = (size: number, options: Partial<PlannerOptions> = {}, seed = 1) =>
  new DownloadPlanner({ have: new Bitfield(size), random: seededRandom(seed), ...options })

const APP = 'appliance'
const withAppliance = (p: DownloadPlanner, size: number) => p.addSource(APP, Bitfield.full(size), { appliance: true })

const to = (requests: Request[], source: string) =>
  requests
    .filter((r) => r.source === source)
    .map((r) => r.index)
    .sort((a, b) => a - b)

describe('DownloadPlanner', () => {
  describe('windows', () => {
    it('keeps at most peerWindow requests in flight to a peer (default 2)', () => {
      const clock = new ManualClock()
      const p = planner(10)
      p.addSource('a', Bitfield.full(10))
      const first = p.plan(clock.now())
      expect(first).toHaveLength(2)
      expect(first.every((r) => r.source === 'a')).toBe(true)
      expect(new Set(first.map((r) => r.index)).size).toBe(2)
      expect(p.inflight('a')).toBe(2)
      expect(p.plan(clock.now())).toEqual([])
      expect(p.result('a', first[0]!.index, 'ok', clock.now())).toEqual({ cancel: [] })
      expect(p.inflight('a')).toBe(1)
      const next = p.plan(clock.now())
      expect(next).toHaveLength(1)
      expect(next[0]!.index).not.toBe(first[0]!.index)
      expect(next[0]!.index).not.toBe(first[1]!.index)

      const q = planner(10, { peerWindow: 3 })
      q.addSource('a', Bitfield.full(10))
      expect(q.plan(clock.now())).toHaveLength(3)
    })

    it('asks the appliance at full speed (soloWindow, default 8) only while it is the only source', () => {
      const clock = new ManualClock()
      const p = planner(20)
      withAppliance(p, 20)
      const solo = p.plan(clock.now())
      expect(solo).toHaveLength(8)
      expect(to(solo, APP)).toHaveLength(8)
      // A peer turns up (even one with nothing yet): the appliance drops to its shared window.
      p.addSource('b', new Bitfield(20))
      expect(p.plan(clock.now())).toEqual([])
      for (const r of solo.slice(0, 7)) p.result(APP, r.index, 'ok', clock.now())
      expect(p.inflight(APP)).toBe(1)
      const shared = p.plan(clock.now())
      expect(shared).toHaveLength(1)
      expect(shared[0]!.source).toBe(APP)
      // The peer leaves: full speed again.
      p.removeSource('b')
      expect(p.plan(clock.now())).toHaveLength(6)
      expect(p.inflight(APP)).toBe(8)

      const q = planner(20, { soloWindow: 5 })
      withAppliance(q, 20)
      expect(q.plan(clock.now())).toHaveLength(5)
    })

    it('keeps at most applianceWindow requests at the appliance while peers are around', () => {
      for (let seed = 1; seed <= 20; seed++) {
        const p = planner(20, { applianceWindow: 3, peerWindow: 2 }, seed)
        withAppliance(p, 20)
        p.addSource('b', field(20, range(0, 5)))
        const plan = p.plan(0)
        expect(to(plan, APP)).toHaveLength(3)
        expect(to(plan, 'b')).toHaveLength(2)
        for (const i of to(plan, 'b')) expect(i).toBeLessThan(5)
        // The appliance is asked for what only it has.
        for (const i of to(plan, APP)) expect(i).toBeGreaterThanOrEqual(5)
      }
    })
  })

  describe('who is asked for what', () => {
    it('asks peers for the chunks they hold, and the appliance only for the rest', () => {
      for (let seed = 1; seed <= 20; seed++) {
        const p = planner(12, { peerWindow: 5, applianceWindow: 5 }, seed)
        withAppliance(p, 12)
        p.addSource('a', field(12, range(0, 5)))
        p.addSource('b', field(12, range(5, 10)))
        const plan = p.plan(0)
        expect(to(plan, 'a')).toEqual(range(0, 5))
        expect(to(plan, 'b')).toEqual(range(5, 10))
        expect(to(plan, APP)).toEqual([10, 11])
      }
    })

    it('leaves the appliance idle when the peers can carry everything', () => {
      const p = planner(6, { peerWindow: 3 })
      withAppliance(p, 6)
      p.addSource('a', field(6, [0, 1, 2]))
      p.addSource('b', field(6, [3, 4, 5]))
      const plan = p.plan(0)
      expect(to(plan, APP)).toEqual([])
      expect(plan).toHaveLength(6)
    })

    it('asks for the rarest chunks first', () => {
      for (let seed = 1; seed <= 30; seed++) {
        const p = planner(4, { peerWindow: 1 }, seed)
        p.addSource('a', field(4, [0, 1, 2, 3]))
        p.addSource('b', field(4, [0, 1, 2]))
        p.addSource('c', field(4, [0, 1]))
        // holders: 0→3, 1→3, 2→2, 3→1; whoever is asked first, each takes its rarest.
        const plan = p.plan(0)
        expect(to(plan, 'a')).toEqual([3])
        expect(to(plan, 'b')).toEqual([2])
        expect(to(plan, 'c').length).toBe(1)
        expect([0, 1]).toContain(to(plan, 'c')[0])
      }
    })

    it('never sends the appliance an endgame duplicate, while peers get them', () => {
      for (let seed = 1; seed <= 20; seed++) {
        const p = planner(4, { peerWindow: 4, applianceWindow: 4 }, seed)
        withAppliance(p, 4)
        p.addSource('a', Bitfield.full(4))
        p.addSource('b', Bitfield.full(4))
        const plan = p.plan(0)
        expect(to(plan, APP)).toEqual([])
        expect(to(plan, 'a')).toEqual([0, 1, 2, 3])
        expect(to(plan, 'b')).toEqual([0, 1, 2, 3])
        expect(p.picker.endgame).toBe(true)
      }
      // Last chunk in flight from a peer: the appliance is not asked for it too.
      const p = planner(3, { peerWindow: 1, applianceWindow: 4 })
      withAppliance(p, 3)
      p.addSource('a', field(3, [0]))
      const plan = p.plan(0)
      expect(to(plan, 'a')).toEqual([0])
      expect(to(plan, APP)).toEqual([1, 2])
      p.result(APP, 1, 'ok', 0)
      p.result(APP, 2, 'ok', 0)
      expect(p.picker.endgame).toBe(true)
      expect(p.plan(0)).toEqual([])
      // Once the peer gives it up (and is backing off), the appliance may have it.
      p.result('a', 0, 'busy', 0)
      expect(p.plan(0)).toEqual([{ source: APP, index: 0 }])
    })

    it('never asks for a chunk it has, nor a source for one it lacks; follows sourceHas', () => {
      const p = planner(6, { peerWindow: 6 })
      p.have.set(0)
      p.addSource('a', field(6, [0, 1]))
      expect(p.plan(0)).toEqual([{ source: 'a', index: 1 }])
      p.sourceHas('a', 4)
      p.sourceHas('ghost', 5) // unknown source: ignored
      expect(p.plan(0)).toEqual([{ source: 'a', index: 4 }])
      expect(p.hasSource('ghost')).toBe(false)
      // A new bitfield replaces the earlier one; chunks 1 and 4 are still in flight from it.
      p.addSource('a', field(6, [0, 1, 2, 3, 4]))
      expect(to(p.plan(0), 'a')).toEqual([2, 3])
    })

    // BUG (reported, module left unchanged): addSource() on a source already present resets
    // its in-flight count to 0 and the picker forgets its requests, though they are still in
    // flight. The window is overrun (4 in flight with peerWindow 2), and the chunks it is still
    // sending can be asked of others, the appliance included, outside endgame.
    it('a new bitfield for a live source keeps its requests in flight and its window full', () => {
      const p = planner(8, { applianceWindow: 2 })
      withAppliance(p, 8)
      p.addSource('a', field(8, [0, 1, 2, 3]))
      const first = p.plan(0)
      expect(to(first, 'a')).toHaveLength(2)
      p.addSource('a', Bitfield.full(8))
      expect(p.inflight('a')).toBe(2)
      expect(p.plan(0)).toEqual([])
    })

    it('plans nothing once complete', () => {
      const p = planner(2)
      withAppliance(p, 2)
      for (const r of p.plan(0)) p.result(r.source, r.index, 'ok', 0)
      expect(p.complete).toBe(true)
      expect(p.plan(0)).toEqual([])
    })
  })

  describe('outcomes', () => {
    it("'busy' backs the source off, doubling from 100 ms up to 2 s, reset by 'ok'", () => {
      const clock = new ManualClock()
      const p = planner(100)
      p.addSource('a', Bitfield.full(100))
      let [r] = p.plan(clock.now())
      expect(p.inflight('a')).toBe(2)
      for (const backoff of [100, 200, 400, 800, 1600, 2000, 2000, 2000]) {
        p.result('a', r!.index, 'busy', clock.now())
        expect(p.inflight('a')).toBe(1)
        expect(p.plan(clock.now())).toEqual([])
        expect(p.plan(clock.now() + backoff - 1)).toEqual([])
        clock.advance(backoff)
        const again = p.plan(clock.now())
        expect(again).toHaveLength(1)
        expect(again[0]!.source).toBe('a')
        r = again[0]
      }
      p.result('a', r!.index, 'ok', clock.now())
      ;[r] = p.plan(clock.now())
      p.result('a', r!.index, 'busy', clock.now())
      expect(p.plan(clock.now() + 99)).toEqual([])
      expect(p.plan(clock.now() + 100)).toHaveLength(1)
    })

    it("'busy' from a peer lets the appliance take the chunk meanwhile", () => {
      const p = planner(4, { applianceWindow: 4 })
      withAppliance(p, 4)
      p.addSource('a', field(4, [0]))
      const plan = p.plan(0)
      expect(to(plan, 'a')).toEqual([0])
      expect(to(plan, APP)).toEqual([1, 2, 3])
      p.result('a', 0, 'busy', 0)
      expect(p.plan(0)).toEqual([{ source: APP, index: 0 }])
    })

    for (const outcome of ['elsewhere', 'not-found'] as const) {
      it(`'${outcome}' avoids that chunk from that source for avoidMs, then allows it again`, () => {
        const clock = new ManualClock()
        const t = clock.now()
        const p = planner(2, { avoidMs: 500 })
        p.addSource('a', Bitfield.full(2))
        expect(to(p.plan(t), 'a')).toEqual([0, 1])
        expect(p.result('a', 0, outcome, t)).toEqual({ cancel: [] })
        expect(p.hasSource('a')).toBe(true)
        expect(p.plan(t)).toEqual([])
        expect(p.plan(t + 499)).toEqual([])
        expect(p.plan(t + 500)).toEqual([{ source: 'a', index: 0 }])
      })

      it(`'${outcome}' avoids only that chunk, only at that source (default 3 s)`, () => {
        for (let seed = 1; seed <= 10; seed++) {
          const p = planner(2, { peerWindow: 1 }, seed)
          p.addSource('a', field(2, [0]))
          p.addSource('b', field(2, [0, 1]))
          const plan = p.plan(0)
          expect(plan).toHaveLength(2)
          expect(to(plan, 'a')).toEqual([0])
          expect(to(plan, 'b')).toEqual([1])
          p.result('a', 0, outcome, 0)
          expect(p.plan(0)).toEqual([]) // a avoids 0, b's window is full
          p.result('b', 1, 'ok', 0)
          expect(p.plan(0)).toEqual([{ source: 'b', index: 0 }])
          // In endgame a could duplicate 0, but only once its avoidance ends.
          expect(p.plan(2999)).toEqual([])
          expect(p.plan(3000)).toEqual([{ source: 'a', index: 0 }])
        }
        const p = planner(4, { soloWindow: 2 })
        withAppliance(p, 4)
        const [first, second] = p.plan(0)
        p.result(APP, first!.index, outcome, 0)
        const next = p.plan(0)
        expect(next).toHaveLength(1)
        expect(next[0]!.index).not.toBe(first!.index)
        expect(next[0]!.index).not.toBe(second!.index)
      })
    }

    it("'timeout' twice in a row drops a peer as stalled and rests it for stallBanMs (default 30 s)", () => {
      const clock = new ManualClock()
      const t = clock.now()
      const p = planner(6, { peerWindow: 3 })
      withAppliance(p, 6)
      p.addSource('a', Bitfield.full(6))
      const plan = p.plan(t)
      const fromA = to(plan, 'a')
      expect(fromA).toHaveLength(3)
      expect(to(plan, APP)).toHaveLength(2)
      expect(p.result('a', fromA[0]!, 'timeout', t)).toEqual({ cancel: [] })
      expect(p.hasSource('a')).toBe(true)
      expect(p.isBanned('a', t)).toBe(false)
      expect(p.result('a', fromA[1]!, 'timeout', t)).toEqual({ cancel: [], removed: 'stalled' })
      expect(p.hasSource('a')).toBe(false)
      expect(p.sources()).toEqual([APP])
      // Its third request is free again: the appliance, now alone (window 8), gets every
      // missing chunk it was not already asked for.
      const after = p.plan(t)
      expect(after.every((r) => r.source === APP)).toBe(true)
      expect(to(after, APP)).toEqual(range(0, 6).filter((i) => !to(plan, APP).includes(i)))
      expect(to(after, APP)).toEqual(expect.arrayContaining(fromA))
      expect(p.isBanned('a', t + 29_999)).toBe(true)
      expect(p.isBanned('a', t + 30_000)).toBe(false)
      expect(p.isBanned('a', t)).toBe(false) // forgotten once over
    })

    it("a timeout streak is broken by 'ok'; stallTimeouts and stallBanMs are options", () => {
      const p = planner(50, { stallTimeouts: 3, stallBanMs: 5000, peerWindow: 10 })
      p.addSource('a', Bitfield.full(50))
      const plan = p.plan(0).map((r) => r.index)
      p.result('a', plan[0]!, 'timeout', 0)
      p.result('a', plan[1]!, 'timeout', 0)
      p.result('a', plan[2]!, 'ok', 0)
      p.result('a', plan[3]!, 'timeout', 0)
      expect(p.result('a', plan[4]!, 'timeout', 0)).toEqual({ cancel: [] })
      expect(p.result('a', plan[5]!, 'timeout', 10)).toEqual({ cancel: [], removed: 'stalled' })
      expect(p.isBanned('a', 5009)).toBe(true)
      expect(p.isBanned('a', 5010)).toBe(false)
    })

    it('never drops the appliance for timeouts', () => {
      const p = planner(30)
      withAppliance(p, 30)
      for (let k = 0; k < 10; k++)
        for (const r of p.plan(k)) expect(p.result(r.source, r.index, 'timeout', k)).toEqual({ cancel: [] })
      expect(p.hasSource(APP)).toBe(true)
      expect(p.isBanned(APP, 10)).toBe(false)
      expect(p.plan(10)).toHaveLength(8)
    })

    it("'bad' bans a peer for banMs (default 10 min) and frees its other requests", () => {
      const p = planner(4, { peerWindow: 2 })
      p.addSource('a', Bitfield.full(4))
      p.addSource('b', field(4, [0, 1]))
      const plan = p.plan(0)
      const fromA = to(plan, 'a')
      expect(fromA).toHaveLength(2)
      expect(p.result('a', fromA[0]!, 'bad', 1000)).toEqual({ cancel: [], removed: 'banned' })
      expect(p.hasSource('a')).toBe(false)
      expect(p.isBanned('a', 1000 + 600_000 - 1)).toBe(true)
      expect(p.isBanned('a', 1000 + 600_000)).toBe(false)
      expect(p.isBanned('b', 1000)).toBe(false)

      const q = planner(4, { banMs: 50 })
      q.addSource('a', Bitfield.full(4))
      const [r] = q.plan(0)
      expect(q.result('a', r!.index, 'bad', 0).removed).toBe('banned')
      expect(q.isBanned('a', 49)).toBe(true)
      expect(q.isBanned('a', 50)).toBe(false)
    })

    it("'bad' from the appliance pauses it for a second but never bans it", () => {
      const p = planner(4)
      withAppliance(p, 4)
      const plan = p.plan(0)
      expect(plan).toHaveLength(4)
      expect(p.result(APP, plan[0]!.index, 'bad', 0)).toEqual({ cancel: [] })
      expect(p.hasSource(APP)).toBe(true)
      expect(p.isBanned(APP, 0)).toBe(false)
      expect(p.plan(999)).toEqual([])
      expect(p.plan(1000)).toEqual([{ source: APP, index: plan[0]!.index }])
    })

    it("'closed' removes the source without banning it and frees its requests", () => {
      const p = planner(2, { peerWindow: 1 })
      p.addSource('a', field(2, [0]))
      p.addSource('b', field(2, [0, 1]))
      p.plan(0)
      expect(p.result('a', 0, 'closed', 0)).toEqual({ cancel: [], removed: undefined })
      expect(p.hasSource('a')).toBe(false)
      expect(p.isBanned('a', 0)).toBe(false)
      p.result('b', 1, 'ok', 0)
      expect(p.plan(0)).toEqual([{ source: 'b', index: 0 }])
    })

    it("'ok' returns the endgame duplicates to cancel, none outside endgame", () => {
      const p = planner(4, { peerWindow: 4 })
      p.addSource('a', Bitfield.full(4))
      p.addSource('b', Bitfield.full(4))
      p.addSource('c', Bitfield.full(4))
      const plan = p.plan(0)
      // Default fanout 3: every chunk in flight from all three.
      for (const s of ['a', 'b', 'c']) expect(to(plan, s)).toEqual([0, 1, 2, 3])
      expect(p.result('a', 0, 'ok', 0).cancel.sort()).toEqual(['b', 'c'])
      expect(p.result('b', 0, 'cancelled', 0)).toEqual({ cancel: [] })
      expect(p.result('c', 0, 'cancelled', 0)).toEqual({ cancel: [] })
      expect(p.inflight('b')).toBe(3)
      expect(p.result('c', 1, 'ok', 0).cancel.sort()).toEqual(['a', 'b'])
      // A late copy from a cancelled source does no harm.
      expect(p.result('a', 1, 'ok', 0)).toEqual({ cancel: [] })

      const q = planner(10, { peerWindow: 1 })
      q.addSource('a', Bitfield.full(10))
      const [r] = q.plan(0)
      expect(q.result('a', r!.index, 'ok', 0)).toEqual({ cancel: [] })
      expect(q.have.has(r!.index)).toBe(true)
    })

    it('results for a source already gone are harmless and free the chunk', () => {
      const p = planner(3, { peerWindow: 3 })
      p.addSource('a', Bitfield.full(3))
      p.addSource('b', Bitfield.full(3))
      p.plan(0)
      p.removeSource('a')
      expect(p.result('a', 0, 'timeout', 0)).toEqual({ cancel: [] })
      expect(p.result('a', 1, 'bad', 0)).toEqual({ cancel: [] })
      expect(p.isBanned('a', 0)).toBe(false)
      expect(p.result('a', 2, 'ok', 0)).toEqual({ cancel: ['b'] })
      expect(p.have.has(2)).toBe(true)
    })
  })

  it('property: a random swarm with failures always completes, asking only holders for missing chunks', () => {
    const outcomes = (weights: Array<[Outcome, number]>, r: number): Outcome => {
      let acc = 0
      for (const [o, w] of weights) {
        acc += w
        if (r < acc) return o
      }
      return 'ok'
    }
    const peerOutcomes: Array<[Outcome, number]> = [
      ['busy', 0.1],
      ['elsewhere', 0.06],
      ['not-found', 0.06],
      ['timeout', 0.12],
      ['bad', 0.02],
      ['closed', 0.03],
    ]
    const applianceOutcomes: Array<[Outcome, number]> = [
      ['busy', 0.15],
      ['elsewhere', 0.08],
      ['not-found', 0.05],
      ['timeout', 0.08],
      ['bad', 0.03],
    ]
    for (let seed = 1; seed <= 60; seed++) {
      const random = seededRandom(seed * 7919)
      const size = 8 + Math.floor(random() * 90)
      const options = {
        peerWindow: 1 + Math.floor(random() * 4),
        applianceWindow: 1 + Math.floor(random() * 3),
        soloWindow: 2 + Math.floor(random() * 7),
        endgameFanout: 1 + Math.floor(random() * 3),
        avoidMs: 100 + Math.floor(random() * 3000),
        stallBanMs: 1000 + Math.floor(random() * 10_000),
        banMs: 5000 + Math.floor(random() * 60_000),
      }
      const have = field(
        size,
        range(0, size).filter(() => random() < 0.1),
      )
      const p = new DownloadPlanner({ have, random: seededRandom(seed), ...options })
      const holds = new Map<string, Bitfield>([[APP, Bitfield.full(size)]])
      p.addSource(APP, holds.get(APP)!, { appliance: true })
      const peerCount = 1 + Math.floor(random() * 5)
      for (let i = 0; i < peerCount; i++) {
        const density = random()
        const f = field(
          size,
          range(0, size).filter(() => random() < density),
        )
        holds.set(`p${i}`, f)
        p.addSource(`p${i}`, f)
      }
      const away = new Set<string>()
      let pending: Array<{ source: string; index: number; due: number }> = []
      const pendingOf = (s: string) => pending.filter((x) => x.source === s).length
      let now = 0
      let steps = 0
      const context = () => `seed ${seed} step ${steps}`
      for (; steps < 20_000 && !p.complete; steps++) {
        now += Math.floor(random() * 300)
        // Other agents download too: peers announce chunks.
        if (random() < 0.3) {
          const peer = `p${Math.floor(random() * peerCount)}`
          const index = Math.floor(random() * size)
          holds.get(peer)!.set(index)
          p.sourceHas(peer, index)
        }
        // Peers that went away come back once no longer banned (as the swarm client does).
        for (const peer of [...away]) {
          if (random() < 0.05 && !p.isBanned(peer, now)) {
            away.delete(peer)
            p.addSource(peer, holds.get(peer)!)
          }
        }
        const before = new Map(p.sources().map((s) => [s, pendingOf(s)]))
        const plan = p.plan(now)
        const solo = p.sources().length === 1
        const planned = new Map<string, number>()
        for (const r of plan) {
          expect(p.have.has(r.index), context()).toBe(false)
          expect(holds.get(r.source)!.has(r.index), context()).toBe(true)
          expect(p.hasSource(r.source), context()).toBe(true)
          expect(away.has(r.source), context()).toBe(false)
          expect(
            pending.some((x) => x.source === r.source && x.index === r.index),
            context(),
          ).toBe(false)
          if (r.source === APP) {
            // No duplicates at the appliance: nobody else has this chunk in flight.
            expect(
              pending.some((x) => x.index === r.index),
              context(),
            ).toBe(false)
            expect(plan.filter((x) => x.index === r.index)).toHaveLength(1)
          }
          planned.set(r.source, (planned.get(r.source) ?? 0) + 1)
          pending.push({ source: r.source, index: r.index, due: now + Math.floor(random() * 1000) })
        }
        for (const [s, n] of planned) {
          const window = s === APP ? (solo ? options.soloWindow : options.applianceWindow) : options.peerWindow
          expect(n, context()).toBeLessThanOrEqual(Math.max(0, window - before.get(s)!))
        }
        // Answers arrive.
        const due = pending.filter((x) => x.due <= now).sort(() => random() - 0.5)
        for (const d of due) {
          if (!pending.includes(d)) continue // cancelled or closed meanwhile
          pending = pending.filter((x) => x !== d)
          const r = random()
          const outcome =
            r < 0.55 ? 'ok' : outcomes(d.source === APP ? applianceOutcomes : peerOutcomes, (r - 0.55) / 0.45)
          const action = p.result(d.source, d.index, outcome, now)
          if (outcome === 'ok') expect(p.have.has(d.index)).toBe(true)
          for (const other of action.cancel) {
            const dup = pending.find((x) => x.source === other && x.index === d.index)
            expect(dup, `${context()}: cancel ${other} for ${d.index}`).toBeDefined()
            pending = pending.filter((x) => x !== dup)
            expect(p.result(other, d.index, 'cancelled', now)).toEqual({ cancel: [] })
          }
          if (action.removed || outcome === 'closed') {
            expect(d.source, context()).not.toBe(APP)
            expect(p.hasSource(d.source)).toBe(false)
            expect(p.isBanned(d.source, now)).toBe(action.removed !== undefined)
            // Its streams are closed: whatever was in flight there is gone.
            pending = pending.filter((x) => x.source !== d.source)
            away.add(d.source)
          }
        }
        expect(p.hasSource(APP)).toBe(true)
        for (const s of p.sources()) expect(p.inflight(s), `${context()}: ${s}`).toBe(pendingOf(s))
      }
      expect(p.complete, `seed ${seed} did not complete in ${steps} steps`).toBe(true)
      expect(p.plan(now)).toEqual([])
    }
  })
})
