import { describe, expect, it } from 'vitest'
import { ManualClock } from '../clock.ts'
import { seededRandom } from './chunk-picker.ts'
import { type UploadRequest, UploadScheduler, type UploadSchedulerOptions } from './upload-scheduler.ts'

let nextId = 1
/** A request for chunk `hash` from `peer` on `stream` (defaults: one stream per peer). */
const req = (peer: string, hash = 'h', stream = streamOf(peer)): UploadRequest => ({
  stream,
  peer,
  id: nextId++,
  hash,
  length: 1024,
})
const streamOf = (peer: string) => {
  let n = 0
  for (const c of peer) n = n * 31 + c.charCodeAt(0)
  return n
}

const scheduler = (options: Partial<UploadSchedulerOptions> = {}, clock = new ManualClock()) =>
  new UploadScheduler({ slots: 1, maxQueued: 100, maxQueuedPerPeer: 10, now: () => clock.now(), ...options })

/** Priorities looked up by chunk hash (copies in the swarm); a map the test can change. */
const byHash = (copies: Map<string, number>) => (r: UploadRequest) => copies.get(r.hash) ?? 0

describe('UploadScheduler', () => {
  it('sends at most `slots` chunks at once; a finished send frees its slot', () => {
    const s = scheduler({ slots: 2 })
    for (const p of ['a', 'b', 'c', 'd']) expect(s.admit(req(p)).admitted).toBe(true)
    const first = s.next()
    const second = s.next()
    expect(first?.peer).toBe('a')
    expect(second?.peer).toBe('b')
    expect(s.next()).toBeUndefined()
    expect(s.sending).toBe(2)
    expect(s.queued).toBe(2)
    s.done(first!)
    expect(s.sending).toBe(1)
    expect(s.next()?.peer).toBe('c')
    expect(s.next()).toBeUndefined()
    s.done(second!)
    expect(s.next()?.peer).toBe('d')
    expect(s.next()).toBeUndefined()
    expect(s.queued).toBe(0)
  })

  it('returns nothing from an empty queue', () => {
    const s = scheduler({ slots: 4 })
    expect(s.next()).toBeUndefined()
    expect(s.sending).toBe(0)
  })

  it('never sends two chunks on the same stream at once, serving other streams meanwhile', () => {
    const s = scheduler({ slots: 4 })
    const a1 = req('a', 'h1')
    const a2 = req('a', 'h2')
    const a3 = req('a', 'h3')
    const b1 = req('b', 'h4')
    for (const r of [a1, a2, a3, b1]) s.admit(r)
    expect(s.next()).toBe(a1)
    // a2 and a3 are older than b1, but a's stream is busy: b1 goes, then nothing.
    expect(s.next()).toBe(b1)
    expect(s.next()).toBeUndefined()
    expect(s.sending).toBe(2)
    s.done(a1)
    expect(s.next()).toBe(a2)
    expect(s.next()).toBeUndefined()
    s.done(a2)
    expect(s.next()).toBe(a3)
  })

  it('keys the one-send-at-a-time rule on the stream: one peer on two streams may get two', () => {
    const s = scheduler({ slots: 4 })
    const x = req('a', 'h1', 1)
    const y = req('a', 'h2', 2)
    s.admit(x)
    s.admit(y)
    expect(s.next()).toBe(x)
    expect(s.next()).toBe(y)
  })

  it('answers busy past the per-peer queue cap, while other peers still get in', () => {
    const s = scheduler({ maxQueuedPerPeer: 2 })
    expect(s.admit(req('a')).admitted).toBe(true)
    expect(s.admit(req('a')).admitted).toBe(true)
    expect(s.admit(req('a'))).toEqual({ admitted: false, reason: 'busy' })
    // Another stream of the same peer counts against the same cap.
    expect(s.admit(req('a', 'h', 999))).toEqual({ admitted: false, reason: 'busy' })
    expect(s.admit(req('b')).admitted).toBe(true)
    expect(s.queued).toBe(3)
  })

  it('a request being sent no longer counts against its peer’s queue cap', () => {
    const s = scheduler({ maxQueuedPerPeer: 1, slots: 1 })
    expect(s.admit(req('a')).admitted).toBe(true)
    expect(s.admit(req('a')).admitted).toBe(false)
    s.next()
    expect(s.admit(req('a')).admitted).toBe(true)
  })

  it('answers busy past the global queue cap (no priority: nothing is evicted)', () => {
    const s = scheduler({ maxQueued: 3, maxQueuedPerPeer: 3 })
    for (const p of ['a', 'b', 'c']) expect(s.admit(req(p))).toEqual({ admitted: true })
    expect(s.admit(req('d'))).toEqual({ admitted: false, reason: 'busy' })
    expect(s.queued).toBe(3)
    s.next()
    expect(s.admit(req('d'))).toEqual({ admitted: true })
  })

  it('serves equal priorities first come, first served across peers', () => {
    const s = scheduler({ slots: 1, priority: () => 5 })
    const order = [req('a'), req('b'), req('c'), req('a'), req('c'), req('b')]
    for (const r of order) s.admit(r)
    const served: UploadRequest[] = []
    for (let r = s.next(); r; r = s.next()) {
      served.push(r)
      s.done(r)
    }
    expect(served).toEqual(order)
  })

  it('serves the lowest priority value first, ties in arrival order', () => {
    const copies = new Map([
      ['common', 5],
      ['rare', 1],
      ['mid', 3],
    ])
    const s = scheduler({ slots: 1, priority: byHash(copies) })
    const c = req('a', 'common')
    const m1 = req('b', 'mid')
    const r = req('c', 'rare')
    const m2 = req('d', 'mid')
    for (const x of [c, m1, r, m2]) s.admit(x)
    const served: UploadRequest[] = []
    for (let x = s.next(); x; x = s.next()) {
      served.push(x)
      s.done(x)
    }
    expect(served).toEqual([r, m1, m2, c])
  })

  it('evaluates priorities when choosing, not when admitting', () => {
    const copies = new Map([
      ['x', 1],
      ['y', 2],
    ])
    const s = scheduler({ slots: 1, priority: byHash(copies) })
    const x = req('a', 'x')
    const y = req('b', 'y')
    s.admit(x)
    s.admit(y)
    copies.set('x', 9) // x spread through the swarm meanwhile
    expect(s.next()).toBe(y)
  })

  it('a full queue refuses its commonest request to make room for a rarer one', () => {
    const copies = new Map([
      ['c1', 4],
      ['c2', 7],
      ['c3', 2],
      ['rare', 1],
    ])
    const s = scheduler({ maxQueued: 3, maxQueuedPerPeer: 3, priority: byHash(copies) })
    const a = req('a', 'c1')
    const b = req('b', 'c2')
    const c = req('c', 'c3')
    for (const r of [a, b, c]) expect(s.admit(r).admitted).toBe(true)
    const rare = req('d', 'rare')
    expect(s.admit(rare)).toEqual({ admitted: true, refused: b })
    expect(s.queued).toBe(3)
    // b's peer has room again (its queued count was freed) but the queue is full of rarer ones.
    expect(s.admit(req('b', 'c2'))).toEqual({ admitted: false, reason: 'busy' })
    const served: UploadRequest[] = []
    for (let r = s.next(); r; r = s.next()) {
      served.push(r)
      s.done(r)
    }
    expect(served).toEqual([rare, c, a])
  })

  it('a full queue answers busy when the newcomer is not rarer than anything queued', () => {
    const copies = new Map([
      ['c1', 3],
      ['c2', 3],
      ['common', 4],
    ])
    const s = scheduler({ maxQueued: 2, maxQueuedPerPeer: 2, priority: byHash(copies) })
    s.admit(req('a', 'c1'))
    s.admit(req('b', 'c2'))
    expect(s.admit(req('c', 'c1'))).toEqual({ admitted: false, reason: 'busy' }) // as common
    expect(s.admit(req('c', 'common'))).toEqual({ admitted: false, reason: 'busy' }) // commoner
    expect(s.queued).toBe(2)
  })

  it('eviction frees the evicted peer’s queue count, and the per-peer cap is checked first', () => {
    const copies = new Map([
      ['common', 9],
      ['rare', 0],
    ])
    const s = scheduler({ maxQueued: 2, maxQueuedPerPeer: 1, priority: byHash(copies) })
    const a = req('a', 'common')
    s.admit(a)
    s.admit(req('b', 'common'))
    // a is at its per-peer cap: even a rare request is busy, nothing is evicted.
    expect(s.admit(req('a', 'rare'))).toEqual({ admitted: false, reason: 'busy' })
    expect(s.queued).toBe(2)
    expect(s.admit(req('c', 'rare'))).toEqual({ admitted: true, refused: a })
    // a's count was freed: a rare request from a now evicts b's.
    expect(s.admit(req('a', 'rare')).admitted).toBe(true)
    expect(s.queued).toBe(2)
  })

  describe('super-seeding refusals (refuseAfterMs)', () => {
    const setup = (copies: Map<string, number>, refuseAfterMs: number | undefined = 1000) => {
      const clock = new ManualClock()
      const s = scheduler(
        { slots: 1, priority: byHash(copies), ...(refuseAfterMs === 0 ? {} : { refuseAfterMs }) },
        clock,
      )
      return { clock, s }
    }

    it('refuses requests commoner than the best once they waited refuseAfterMs, not before', () => {
      const copies = new Map([
        ['rare', 1],
        ['common', 3],
        ['also', 3],
      ])
      const { clock, s } = setup(copies)
      const common = req('a', 'common')
      s.admit(common)
      clock.advance(500)
      const also = req('b', 'also')
      s.admit(also)
      const rare = req('c', 'rare')
      s.admit(rare)
      clock.advance(499)
      const refused: UploadRequest[] = []
      expect(s.next(refused)).toBe(rare)
      expect(refused).toEqual([])
      s.done(rare)
      s.admit(req('d', 'rare'))
      clock.advance(1) // common waited exactly 1000 ms, also 500 ms
      expect(s.next(refused)?.hash).toBe('rare')
      expect(refused).toEqual([common])
      expect(s.queued).toBe(1)
      // The refused peer may queue again.
      expect(s.admit(req('a', 'common')).admitted).toBe(true)
    })

    it('serves a common request when nothing rarer waits (the upload is never left idle)', () => {
      const copies = new Map([['common', 5]])
      const { clock, s } = setup(copies)
      const a = req('a', 'common')
      const b = req('b', 'common')
      s.admit(a)
      s.admit(b)
      clock.advance(10_000)
      const refused: UploadRequest[] = []
      expect(s.next(refused)).toBe(a)
      expect(refused).toEqual([]) // b is as common as the best: not refused
      s.done(a)
      expect(s.next(refused)).toBe(b)
      expect(refused).toEqual([])
    })

    it('never refuses a request of priority 0 or below, however long it waited', () => {
      const copies = new Map([
        ['best', -2],
        ['zero', 0],
        ['neg', -1],
      ])
      const { clock, s } = setup(copies)
      const zero = req('a', 'zero')
      const neg = req('b', 'neg')
      s.admit(zero)
      s.admit(neg)
      s.admit(req('c', 'best'))
      clock.advance(60_000)
      const refused: UploadRequest[] = []
      expect(s.next(refused)?.hash).toBe('best')
      expect(refused).toEqual([])
      expect(s.queued).toBe(2)
    })

    it('refuses nothing without a refused list, without refuseAfterMs, or without priorities', () => {
      const copies = new Map([
        ['rare', 1],
        ['common', 3],
      ])
      {
        const { clock, s } = setup(copies)
        s.admit(req('a', 'common'))
        s.admit(req('b', 'rare'))
        clock.advance(5000)
        expect(s.next()?.hash).toBe('rare')
        expect(s.queued).toBe(1)
      }
      {
        const { clock, s } = setup(copies, 0) // 0: no refuseAfterMs
        s.admit(req('a', 'common'))
        s.admit(req('b', 'rare'))
        clock.advance(5000)
        const refused: UploadRequest[] = []
        expect(s.next(refused)?.hash).toBe('rare')
        expect(refused).toEqual([])
        expect(s.nextRefusalAt()).toBeUndefined()
      }
      {
        const clock = new ManualClock()
        const s = scheduler({ refuseAfterMs: 10 }, clock)
        s.admit(req('a', 'common'))
        s.admit(req('b', 'rare'))
        clock.advance(5000)
        const refused: UploadRequest[] = []
        expect(s.next(refused)?.hash).toBe('common')
        expect(refused).toEqual([])
      }
    })

    it('compares against the best request it can send now, also refusing on a busy stream', () => {
      const copies = new Map([
        ['r1', 1],
        ['r2', 2],
        ['c', 5],
      ])
      const clock = new ManualClock()
      const s = scheduler({ slots: 2, priority: byHash(copies), refuseAfterMs: 100 }, clock)
      const a1 = req('a', 'r1')
      const a2 = req('a', 'c') // same stream as a1
      const b = req('b', 'r2')
      s.admit(a1)
      s.admit(a2)
      clock.advance(100)
      s.admit(b) // commoner than a1 too, but has not waited long enough
      const refused: UploadRequest[] = []
      expect(s.next(refused)).toBe(a1)
      expect(refused).toEqual([a2])
      expect(s.next(refused)).toBe(b)
    })

    it('refuses nothing while every slot is taken (refusals happen when choosing)', () => {
      const copies = new Map([
        ['rare', 1],
        ['common', 3],
      ])
      const { clock, s } = setup(copies)
      s.admit(req('x', 'rare'))
      const sent = s.next()!
      s.admit(req('a', 'common'))
      s.admit(req('b', 'rare'))
      clock.advance(5000)
      const refused: UploadRequest[] = []
      expect(s.next(refused)).toBeUndefined()
      expect(refused).toEqual([])
      s.done(sent)
      expect(s.next(refused)?.peer).toBe('b')
      expect(refused.map((r) => r.peer)).toEqual(['a'])
    })

    it('nextRefusalAt is the oldest queued request’s arrival plus refuseAfterMs', () => {
      const copies = new Map([['c', 3]])
      const { clock, s } = setup(copies, 700)
      expect(s.nextRefusalAt()).toBeUndefined()
      const t0 = clock.now()
      const a = req('a', 'c')
      s.admit(a)
      clock.advance(200)
      s.admit(req('b', 'c'))
      expect(s.nextRefusalAt()).toBe(t0 + 700)
      s.cancel(a.stream, a.id)
      expect(s.nextRefusalAt()).toBe(t0 + 900)
    })
  })

  it('cancel removes a queued request, frees its peer’s count, and ignores unknown or sending ones', () => {
    const s = scheduler({ maxQueuedPerPeer: 2, slots: 1 })
    const a1 = req('a', 'h1')
    const a2 = req('a', 'h2')
    const b1 = req('b', 'h3')
    s.admit(a1)
    s.admit(a2)
    s.admit(b1)
    expect(s.admit(req('a')).admitted).toBe(false)
    expect(s.cancel(a2.stream, a2.id)).toBe(a2)
    expect(s.cancel(a2.stream, a2.id)).toBeUndefined() // already gone
    expect(s.cancel(b1.stream, a1.id)).toBeUndefined() // id of another stream
    expect(s.queued).toBe(2)
    const a3 = req('a', 'h4')
    expect(s.admit(a3).admitted).toBe(true)
    expect(s.next()).toBe(a1)
    expect(s.cancel(a1.stream, a1.id)).toBeUndefined() // being sent: arrives anyway
    expect(s.sending).toBe(1)
    s.done(a1)
    expect(s.next()).toBe(b1)
    s.done(b1)
    expect(s.next()).toBe(a3)
  })

  it('dropStream drops that stream’s queued requests, freeing counts; a send in progress keeps its slot until done()', () => {
    const s = scheduler({ maxQueuedPerPeer: 2, slots: 1 })
    const a1 = req('a', 'h1')
    const a2 = req('a', 'h2')
    const a3 = req('a', 'h3')
    const b1 = req('b', 'h4')
    s.admit(a1)
    s.admit(a2)
    s.admit(b1)
    expect(s.next()).toBe(a1)
    s.admit(a3)
    expect(s.admit(req('a', 'h5')).admitted).toBe(false)
    s.dropStream(a1.stream)
    // The send in progress keeps its slot until its sender calls done().
    expect(s.sending).toBe(1)
    expect(s.queued).toBe(1)
    // a may queue again (on a new stream); b goes next once a1's send is done.
    const a4 = req('a', 'h6', 4242)
    const a5 = req('a', 'h7', 4242)
    expect(s.admit(a4).admitted).toBe(true)
    expect(s.admit(a5).admitted).toBe(true)
    expect(s.next()).toBeUndefined()
    s.done(a1)
    expect(s.next()).toBe(b1)
    s.done(b1)
    expect(s.next()).toBe(a4)
    expect(s.sending).toBe(1)
    s.dropStream(12345) // unknown stream
    expect(s.queued).toBe(1)
  })

  it('property: with P peers each keeping Q requests queued, every peer is served within a bounded number of turns', () => {
    for (let seed = 1; seed <= 60; seed++) {
      const random = seededRandom(seed)
      const peers = 2 + Math.floor(random() * 7)
      const perPeer = 1 + Math.floor(random() * 4)
      const slots = 1 + Math.floor(random() * Math.min(3, peers - 1))
      const s = scheduler({ slots, maxQueued: peers * perPeer, maxQueuedPerPeer: perPeer, priority: () => 1 })
      const names = Array.from({ length: peers }, (_, i) => `p${i}`)
      // Peers join in random order, each filling its queue.
      for (const p of [...names].sort(() => random() - 0.5)) {
        for (let k = 0; k < perPeer; k++) expect(s.admit(req(p)).admitted).toBe(true)
      }
      const lastServed = new Map(names.map((p) => [p, 0]))
      const served = new Map(names.map((p) => [p, 0]))
      const sending: UploadRequest[] = []
      let turn = 0
      let worstGap = 0
      for (let cycle = 0; cycle < 400; cycle++) {
        for (let r = s.next(); r; r = s.next()) {
          turn++
          worstGap = Math.max(worstGap, turn - lastServed.get(r.peer)!)
          lastServed.set(r.peer, turn)
          served.set(r.peer, served.get(r.peer)! + 1)
          expect(sending.some((x) => x.stream === r.stream)).toBe(false)
          sending.push(r)
          expect(s.sending).toBeLessThanOrEqual(slots)
          // The peer asks for another chunk right away, keeping Q queued.
          expect(s.admit(req(r.peer)).admitted).toBe(true)
        }
        // The oldest send finishes (a send takes at most `slots` cycles).
        s.done(sending.shift()!)
      }
      // A peer waits at most for the others' queued requests plus the sends in progress,
      // however long the run.
      expect(worstGap, `seed ${seed}: P=${peers} Q=${perPeer} S=${slots}`).toBeLessThanOrEqual(peers * perPeer + slots)
      const counts = [...served.values()]
      expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(perPeer + slots)
      for (const p of names) expect(turn - lastServed.get(p)!).toBeLessThanOrEqual(peers * perPeer + slots)
    }
  })

  it('property: random admit/next/done/cancel/dropStream/refusals agree with a simple model', () => {
    for (let seed = 100; seed < 160; seed++) {
      const random = seededRandom(seed)
      const clock = new ManualClock()
      const slots = 1 + Math.floor(random() * 3)
      const maxQueued = 2 + Math.floor(random() * 8)
      const maxQueuedPerPeer = 1 + Math.floor(random() * 4)
      const refuseAfterMs = 100 + Math.floor(random() * 1000)
      const copies = new Map<string, number>()
      const hashes = ['h0', 'h1', 'h2', 'h3', 'h4']
      for (const h of hashes) copies.set(h, Math.floor(random() * 5))
      const prio = byHash(copies)
      const s = scheduler({ slots, maxQueued, maxQueuedPerPeer, priority: prio, refuseAfterMs }, clock)
      const peers = ['a', 'b', 'c', 'd']
      const streamsOf = new Map(peers.map((p, i) => [p, [i * 10, i * 10 + 1]]))
      // The model: what is queued (in arrival order, with arrival time) and what is being sent.
      const queue: Array<{ r: UploadRequest; at: number }> = []
      const sending: UploadRequest[] = []
      const perPeer = (p: string) => queue.filter((q) => q.r.peer === p).length
      const removeQueued = (r: UploadRequest) => {
        const i = queue.findIndex((q) => q.r === r)
        expect(i, `seed ${seed}: ${r.id} should be queued`).toBeGreaterThanOrEqual(0)
        queue.splice(i, 1)
      }
      for (let step = 0; step < 300; step++) {
        const op = random()
        if (op < 0.35) {
          const peer = peers[Math.floor(random() * peers.length)]!
          const streams = streamsOf.get(peer)!
          const r = req(peer, hashes[Math.floor(random() * hashes.length)]!, streams[Math.floor(random() * 2)]!)
          const peerFull = perPeer(peer) >= maxQueuedPerPeer
          const mine = prio(r)
          const worst = Math.max(-1, ...queue.map((q) => prio(q.r)))
          const evicts = !peerFull && queue.length >= maxQueued && worst > mine
          const a = s.admit(r)
          if (peerFull || (queue.length >= maxQueued && !evicts)) {
            expect(a).toEqual({ admitted: false, reason: 'busy' })
          } else {
            expect(a.admitted).toBe(true)
            if (evicts) {
              expect(a.admitted && a.refused).toBeTruthy()
              const refused = a.admitted ? a.refused! : r
              expect(prio(refused)).toBe(worst)
              removeQueued(refused)
            } else {
              expect(a).toEqual({ admitted: true })
            }
            queue.push({ r, at: clock.now() })
          }
        } else if (op < 0.6) {
          const refused: UploadRequest[] = []
          const eligible = queue.filter((q) => !sending.some((x) => x.stream === q.r.stream))
          const best =
            sending.length >= slots
              ? undefined
              : eligible.reduce<(typeof queue)[number] | undefined>(
                  (b, q) => (b === undefined || prio(q.r) < prio(b.r) ? q : b),
                  undefined,
                )
          const got = s.next(refused)
          expect(got, `seed ${seed} step ${step}`).toBe(best?.r)
          for (const r of refused) {
            const q = queue.find((x) => x.r === r)!
            expect(q).toBeDefined()
            expect(prio(r)).toBeGreaterThan(0)
            expect(prio(r)).toBeGreaterThan(prio(best!.r))
            expect(clock.now() - q.at).toBeGreaterThanOrEqual(refuseAfterMs)
            removeQueued(r)
          }
          if (best) {
            // Everything that should have been refused was.
            for (const q of queue) {
              if (q === best) continue
              const due = prio(q.r) > 0 && prio(q.r) > prio(best.r) && clock.now() - q.at >= refuseAfterMs
              expect(due, `seed ${seed} step ${step}: ${q.r.id} should have been refused`).toBe(false)
            }
            removeQueued(best.r)
            sending.push(best.r)
          } else {
            expect(refused).toEqual([])
          }
        } else if (op < 0.8) {
          if (sending.length > 0) {
            const [r] = sending.splice(Math.floor(random() * sending.length), 1)
            s.done(r!)
          }
        } else if (op < 0.87) {
          if (queue.length > 0) {
            const q = queue[Math.floor(random() * queue.length)]!
            expect(s.cancel(q.r.stream, q.r.id)).toBe(q.r)
            removeQueued(q.r)
          } else {
            expect(s.cancel(0, -1)).toBeUndefined()
          }
        } else if (op < 0.9) {
          const peer = peers[Math.floor(random() * peers.length)]!
          const stream = streamsOf.get(peer)![Math.floor(random() * 2)]!
          s.dropStream(stream)
          // Queued requests go; a send in progress stays until done().
          for (const q of [...queue]) if (q.r.stream === stream) removeQueued(q.r)
        } else if (op < 0.95) {
          copies.set(hashes[Math.floor(random() * hashes.length)]!, Math.floor(random() * 5))
        } else {
          clock.advance(Math.floor(random() * 600))
        }
        expect(s.queued).toBe(queue.length)
        expect(s.sending).toBe(sending.length)
        expect(s.sending).toBeLessThanOrEqual(slots)
        expect(s.queued).toBeLessThanOrEqual(maxQueued)
        for (const p of peers) expect(perPeer(p)).toBeLessThanOrEqual(maxQueuedPerPeer)
        expect(new Set(sending.map((r) => r.stream)).size).toBe(sending.length)
      }
    }
  })
})
