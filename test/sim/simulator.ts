/**
 * Discrete-event simulator of a patchswarm branch office: one appliance and N agents fetching
 * one bundle. It drives the very code the real programs run — DownloadPlanner (each agent:
 * what to ask of whom), UploadScheduler (every uploading node), Tracker and SeedingPolicy (the
 * appliance's super-seeding priority) — and replaces only the network and the clock.
 *
 * The model, and what it leaves out:
 *
 * - Links are fluids. Each node's upload (appliance U_s, agent u) is shared equally among the
 *   sends it has in progress (processor sharing); a send in progress is a request its
 *   UploadScheduler.next() chose. Rates are recomputed whenever the set of sends of an uploader
 *   (or, with `agentDown`, of a receiver) changes; finish events carry a version number and
 *   stale ones are skipped (lazy invalidation in a binary heap). With `agentDown` a transfer
 *   runs at min(uploader's equal share, receiver's equal share); capacity one side cannot use
 *   is not handed to the others (not max-min fair: a slight pessimism, never optimism).
 *   Without `agentDown` downloads are unlimited. There is no TCP slow start, no loss, no
 *   per-message overhead and no disk.
 * - Latency: every message (REQUEST, CANCEL, HAVE, refusals, the end of a body) takes rtt/2
 *   one way; connecting to a peer (dial + bitfield exchange) takes one rtt. The appliance's
 *   data to an agent crosses the same LAN.
 * - Agents start together at t = 0 with nothing, the appliance as a source holding every chunk
 *   (addSource(appliance, full, {appliance: true})). Each agent announces its bitfield (a
 *   copy: the tracker knows only what was announced) at t = 0, then every `announceMs`, and
 *   when it completes. While it is incomplete and has fewer than `maxPeers` connections it
 *   asks the tracker for peers at each announce and dials the new ones, up to `maxPeers`.
 *   (An agent with `maxPeers` connections could not use the answer, so it does not ask.)
 *   Connections are symmetric: the dialled side adds the dialler as a source too. A peer with
 *   `maxConnections` connections (default unlimited) refuses the dial. Connections are never
 *   dropped.
 * - A completed chunk is announced at once to every connected peer (HAVE → sourceHas).
 * - Planning: after each event that frees window or adds a source or a chunk (refusal, body,
 *   new connection, HAVE) the agent's plan() runs once at the end of that simulated instant
 *   (several messages at the same instant make one plan() call). A HAVE re-plans only when it
 *   can make a request possible (see #have). Backoffs and avoidances expire with time: with
 *   `exactWake` (default) the agent is woken exactly when one it was given ends — this mirrors
 *   the planner's private backoff rule (100 ms doubling to 2 s per source, reset by a chunk;
 *   avoidMs), so keep PLANNER_* below in step — and a `tickMs` timer re-plans every agent
 *   refused lately as a safety net (100 ms without exactWake).
 * - Uploads: admit() refusing answers with its reason (BUSY, or ELSEWHERE with rareFirstMs);
 *   ELSEWHERE too when a scheduler with a priority evicts a queued request on admit or refuses
 *   it in next(). The appliance's
 *   priority is SeedingPolicy.copies(bundle, chunk, asker), recordSend when a send starts; its
 *   tracker knows only announces. next() is called when a request is admitted and when a send
 *   ends (next() cannot refuse while every slot is busy, so no refusal timer is needed).
 * - Endgame: when a body arrives, the planner names the other sources the chunk is still in
 *   flight from; the agent fails those requests at once ('cancelled', as the real client
 *   does) and sends CANCEL. A CANCEL that finds the request queued removes it
 *   (UploadScheduler.cancel); one that finds it being sent is too late: the body is sent and
 *   discarded, and counted in duplicate_bytes.
 * - No failures: no timeouts, no bad chunks, no churn. Agents stay and seed after completing.
 *
 * Times inside are milliseconds of simulated time from 0; the tracker and the seeding policy
 * read a ManualClock set to it.
 */
import { SeedingPolicy } from '../../appliance/seeding-policy.ts'
import { Tracker } from '../../appliance/tracker.ts'
import { ManualClock } from '../../shared/clock.ts'
import { Bitfield } from '../../shared/swarm/bitfield.ts'
import { seededRandom } from '../../shared/swarm/chunk-picker.ts'
import { DownloadPlanner, type Outcome } from '../../shared/swarm/download-planner.ts'
import { type UploadRequest, UploadScheduler } from '../../shared/swarm/upload-scheduler.ts'

const MiB = 1 << 20

export interface SimOptions {
  agents: number
  /** Bundle size in bytes. */
  size: number
  chunkSize: number
  /** Upload rate of each agent, bytes/s. */
  agentUp: number
  /** Upload rate of the appliance, bytes/s. */
  applianceUp: number
  /** Download rate of each agent, bytes/s; undefined = unlimited. */
  agentDown?: number
  rttMs: number
  announceMs: number
  maxPeers: number
  /** Connections a peer accepts in all (its own and incoming); more dials are refused. */
  maxConnections: number
  /**
   * Wake an agent exactly when a BUSY backoff or ELSEWHERE avoidance it was just given ends
   * (mirrors the planner's backoff: 100 ms doubling to 2 s, reset by a chunk; avoidMs).
   */
  exactWake: boolean
  /**
   * Re-plan timer for agents refused lately (backoffs expire with time). Default 100 ms, or
   * 1000 ms (a safety net) with exactWake.
   */
  tickMs?: number
  seed: number
  // DownloadPlanner (undefined = the planner's own default)
  peerWindow?: number
  applianceWindow?: number
  soloWindow?: number
  avoidMs?: number
  endgameFanout?: number
  maxInflight?: number
  // Agents' UploadScheduler
  slots: number
  maxQueued: number
  maxQueuedPerPeer: number
  /**
   * Agents' UploadScheduler order: 'fifo' (no priority) or 'neediest' (as the agent has it)
   * (priority = chunks the requester holds, fewest first; a full queue then
   * evicts the best-off requester's request with ELSEWHERE).
   */
  agentPriority: 'fifo' | 'neediest'
  // The appliance's UploadScheduler and SeedingPolicy
  applianceSlots: number
  applianceMaxQueued: number
  applianceMaxQueuedPerPeer: number
  /** Negative = never refuse (no super-seeding refusals in next()). */
  refuseAfterMs?: number
  /** UploadScheduler.rareFirstMs of the appliance; undefined = off. */
  rareFirstMs?: number
  /** SeedingPolicy.recentMs; undefined = its default. */
  recentMs?: number
  /** Give up after this much simulated time. */
  maxSeconds: number
  /** Called every `progressSeconds` of simulated time. */
  onProgress?: (p: SimProgress) => void
  progressSeconds: number
}

export interface SimProgress {
  seconds: number
  complete: number
  agents: number
  applianceBytes: number
  events: number
  /** Agents sending at least one chunk now. */
  agentsUploading: number
  /** Sends in progress across agents. */
  agentSends: number
  /** Requests waiting in agents' upload queues. */
  agentQueued: number
  applianceQueued: number
}

export interface SimResult {
  agents: number
  bytes: number
  chunk_size: number
  chunks: number
  /** Agents that did not complete within maxSeconds (0 on success). */
  incomplete: number
  seconds_p50: number
  seconds_max: number
  lower_bound_seconds: number
  ratio: number
  appliance_upload_ratio: number
  peer_bytes_fraction: number
  duplicate_bytes: number
  /** When the appliance had sent every chunk in full at least once (≥ F / U_s). */
  appliance_first_copies_seconds: number
  /** Fraction of [0, seconds_max] during which the appliance was sending something. */
  appliance_busy_fraction: number
  /** Bytes agents uploaded / (N · u · seconds_max): how much agent upload capacity was used. */
  agent_upload_utilization: number
  requests: number
  /** DownloadPlanner.plan() calls. */
  plans: number
  refused_busy: number
  refused_elsewhere: number
  cancels: number
  mean_connections: number
  events: number
  wall_seconds: number
  /** Completion time of each agent in seconds (NaN if incomplete), in agent order. */
  agent_seconds: number[]
}

export const DEFAULT_OPTIONS: SimOptions = {
  agents: 1000,
  size: 64 * MiB,
  chunkSize: MiB,
  agentUp: 8 * MiB,
  applianceUp: 2 * MiB,
  rttMs: 0.5,
  announceMs: 2000,
  maxPeers: 30,
  maxConnections: Number.POSITIVE_INFINITY,
  exactWake: true,
  seed: 1,
  slots: 4,
  maxQueued: 16,
  maxQueuedPerPeer: 4,
  agentPriority: 'fifo',
  applianceSlots: 4,
  applianceMaxQueued: 32,
  applianceMaxQueuedPerPeer: 4,
  refuseAfterMs: 1000,
  maxSeconds: 3600,
  progressSeconds: 5,
}

/**
 * The values the programs use today (agent/agent.ts, agent/swarm/agent-swarm.ts,
 * appliance/network.ts, agent requestWindow 8), for `sim:swarm --shipped`. The defaults above
 * are the ones the simulator was specified with; they differ from these.
 */
export const SHIPPED_OPTIONS: Partial<SimOptions> = {
  peerWindow: 2,
  applianceWindow: 4,
  soloWindow: 8,
  maxInflight: 16,
  slots: 2,
  maxQueued: 4,
  maxQueuedPerPeer: 2,
  agentPriority: 'neediest',
  applianceSlots: 4,
  applianceMaxQueued: 32,
  applianceMaxQueuedPerPeer: 8,
  refuseAfterMs: -1,
  rareFirstMs: 1000,
}

/** Kumar–Ross lower bound on the time for every agent to hold F bytes, in seconds. */
export function lowerBoundSeconds(o: Pick<SimOptions, 'agents' | 'size' | 'agentUp' | 'applianceUp' | 'agentDown'>) {
  const f = o.size
  return Math.max(
    f / o.applianceUp,
    o.agentDown ? f / o.agentDown : 0,
    (o.agents * f) / (o.applianceUp + o.agents * o.agentUp),
  )
}

// DownloadPlanner's defaults and its BUSY backoff cap (not exported by it; keep in step).
const PLANNER_PEER_WINDOW = 2
const PLANNER_AVOID_MS = 3000
const PLANNER_MIN_BUSY_BACKOFF_MS = 100
const PLANNER_MAX_BUSY_BACKOFF_MS = 2000

const BUNDLE = 'sim-bundle'
const APPLIANCE_ID = 'appliance'

// Request states (at the uploader's end).
const TRAVELLING = 0
const QUEUED = 1
const SENDING = 2
const FINISHED = 3

interface Req {
  id: number
  from: SimNode
  to: SimNode
  index: number
  length: number
  state: number
  /** The client already failed it (cancelled): its answer is read and discarded. */
  cancelled: boolean
  upload: SimUpload
}

interface SimUpload extends UploadRequest {
  req: Req
}

interface Transfer {
  req: Req
  remaining: number
  /** Bytes per ms. */
  rate: number
  last: number
  version: number
}

interface SimNode {
  idx: number
  id: string
  /** Upload rate, bytes per ms. */
  up: number
  scheduler: UploadScheduler
  sending: Transfer[]
  incoming: Transfer[]
  uploaded: number
  // Agents only (the appliance has a dummy planner it never uses).
  planner: DownloadPlanner
  peers: Set<number>
  pending: Set<number>
  /** Requests the client still waits on, by source index · chunks + chunk index. */
  outstanding: Map<number, Req>
  doneAt: number
  /** Last BUSY/ELSEWHERE answer: backoffs and avoidances it started expire with time. */
  refusedAt: number
  /** BUSY answers in a row per source (by node index) since its last chunk: the backoff. */
  busyRun: Map<number, number>
  /** Until when the planner leaves each source alone after a BUSY (exactWake's mirror). */
  busyUntil: Map<number, number>
  /** Waiting for the re-plan at the end of this instant. */
  dirty: boolean
}

// Event kinds.
const ARRIVE = 0
const REPLY = 1
const FINISH = 2
const DELIVER = 3
const CANCEL = 4
const HAVE = 5
const ANNOUNCE = 6
const CONNECT = 7
const TICK = 8
const PLAN = 9
const WAKE = 10

interface Ev {
  t: number
  seq: number
  kind: number
  req?: Req
  outcome?: Outcome
  transfer?: Transfer
  version?: number
  node?: SimNode
  other?: SimNode
  index?: number
  to?: number[]
}

class EventQueue {
  readonly #heap: Ev[] = []
  #seq = 0

  get size(): number {
    return this.#heap.length
  }

  push(ev: Omit<Ev, 'seq'>): void {
    const e = ev as Ev
    e.seq = this.#seq++
    const h = this.#heap
    h.push(e)
    let i = h.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if (!before(h[i]!, h[p]!)) break
      ;[h[i], h[p]] = [h[p]!, h[i]!]
      i = p
    }
  }

  pop(): Ev | undefined {
    const h = this.#heap
    const top = h[0]
    const last = h.pop()
    if (h.length > 0 && last) {
      h[0] = last
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        const r = l + 1
        let m = i
        if (l < h.length && before(h[l]!, h[m]!)) m = l
        if (r < h.length && before(h[r]!, h[m]!)) m = r
        if (m === i) break
        ;[h[i], h[m]] = [h[m]!, h[i]!]
        i = m
      }
    }
    return top
  }
}

function before(a: Ev, b: Ev): boolean {
  return a.t < b.t || (a.t === b.t && a.seq < b.seq)
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))
  return sorted[i]!
}

const round = (x: number, digits = 3) => (Number.isFinite(x) ? Number(x.toFixed(digits)) : x)

class Simulation {
  readonly o: SimOptions
  readonly chunks: number
  readonly q = new EventQueue()
  readonly clock = new ManualClock(0)
  readonly tracker: Tracker
  readonly policy: SeedingPolicy
  readonly nodes: SimNode[] = []
  readonly byId = new Map<string, SimNode>()
  readonly appliance: SimNode
  readonly incomplete = new Set<SimNode>()
  readonly dirty: SimNode[] = []
  readonly random: () => number
  readonly half: number
  readonly downPerMs: number | undefined
  readonly peerWindow: number
  readonly wakeHorizon: number
  readonly avoidMs: number
  readonly tickMs: number
  now = 0
  events = 0
  reqSeq = 0
  requests = 0
  plans = 0
  refusedBusy = 0
  refusedElsewhere = 0
  cancels = 0
  receivedBytes = 0
  peerBytes = 0
  duplicateBytes = 0
  applianceBusySince = -1
  applianceBusy = 0
  applianceFirstSent: Uint8Array
  applianceFirstSentCount = 0
  applianceAllSentAt = Number.NaN

  constructor(options: SimOptions) {
    this.o = options
    this.chunks = Math.ceil(options.size / options.chunkSize)
    this.half = options.rttMs / 2
    this.downPerMs = options.agentDown ? options.agentDown / 1000 : undefined
    this.applianceFirstSent = new Uint8Array(this.chunks)
    this.peerWindow = options.peerWindow ?? PLANNER_PEER_WINDOW
    this.avoidMs = options.avoidMs ?? PLANNER_AVOID_MS
    this.tickMs = options.tickMs ?? (options.exactWake ? 1000 : 100)
    this.wakeHorizon = Math.max(PLANNER_MAX_BUSY_BACKOFF_MS, this.avoidMs) + this.tickMs
    const random = seededRandom(options.seed)
    this.random = seededRandom(options.seed + 1)
    this.tracker = new Tracker({ clock: this.clock, random, maxPeers: options.maxPeers })
    this.policy = new SeedingPolicy({ tracker: this.tracker, clock: this.clock, recentMs: options.recentMs })
    const now = () => this.now
    const applianceScheduler = new UploadScheduler({
      slots: options.applianceSlots,
      maxQueued: options.applianceMaxQueued,
      maxQueuedPerPeer: options.applianceMaxQueuedPerPeer,
      now,
      priority: (r) => this.policy.copies(BUNDLE, (r as SimUpload).req.index, r.peer),
      refuseAfterMs:
        options.refuseAfterMs !== undefined && options.refuseAfterMs >= 0 ? options.refuseAfterMs : undefined,
      rareFirstMs: options.rareFirstMs,
    })
    this.appliance = this.#node(0, APPLIANCE_ID, options.applianceUp, applianceScheduler, random)
    const full = Bitfield.full(this.chunks)
    for (let i = 1; i <= options.agents; i++) {
      const scheduler = new UploadScheduler({
        slots: options.slots,
        maxQueued: options.maxQueued,
        maxQueuedPerPeer: options.maxQueuedPerPeer,
        now,
        // Experiment: serve the requester that holds the fewest chunks first.
        priority:
          options.agentPriority === 'neediest' ? (r) => (r as SimUpload).req.from.planner.have.count : undefined,
      })
      const agent = this.#node(i, `agent-${i}`, options.agentUp, scheduler, seededRandom(options.seed * 7919 + i))
      agent.planner.addSource(APPLIANCE_ID, full, { appliance: true })
      this.incomplete.add(agent)
    }
    if (this.chunks === 0) this.incomplete.clear()
    // Everyone announces at t = 0, in random order, then every announceMs.
    const order = this.nodes.slice(1)
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1))
      ;[order[i], order[j]] = [order[j]!, order[i]!]
    }
    for (const a of order) this.q.push({ t: 0, kind: ANNOUNCE, node: a })
    this.q.push({ t: 0, kind: TICK })
  }

  #node(idx: number, id: string, upPerS: number, scheduler: UploadScheduler, random: () => number): SimNode {
    const o = this.o
    const n: SimNode = {
      idx,
      id,
      up: upPerS / 1000,
      scheduler,
      sending: [],
      incoming: [],
      uploaded: 0,
      planner: new DownloadPlanner({
        have: new Bitfield(this.chunks),
        random,
        peerWindow: o.peerWindow,
        applianceWindow: o.applianceWindow,
        soloWindow: o.soloWindow,
        avoidMs: o.avoidMs,
        endgameFanout: o.endgameFanout,
        maxInflight: o.maxInflight,
      }),
      peers: new Set(),
      pending: new Set(),
      outstanding: new Map(),
      doneAt: Number.NaN,
      refusedAt: 0,
      busyRun: new Map(),
      busyUntil: new Map(),
      dirty: false,
    }
    this.nodes.push(n)
    this.byId.set(id, n)
    return n
  }

  chunkLength(index: number): number {
    return index === this.chunks - 1 ? this.o.size - index * this.o.chunkSize : this.o.chunkSize
  }

  run(): SimResult {
    const started = performance.now()
    const o = this.o
    const maxMs = o.maxSeconds * 1000
    let nextProgress = o.progressSeconds * 1000
    while (this.incomplete.size > 0) {
      const ev = this.q.pop()
      if (!ev || ev.t > maxMs) break
      this.now = ev.t
      this.clock.set(ev.t)
      this.events++
      switch (ev.kind) {
        case ARRIVE:
          this.#arrive(ev.req!)
          break
        case REPLY:
          this.#reply(ev.req!, ev.outcome!)
          break
        case FINISH:
          if (ev.transfer!.version === ev.version) this.#finish(ev.transfer!)
          break
        case DELIVER:
          this.#deliver(ev.req!)
          break
        case CANCEL:
          this.#cancelArrives(ev.req!)
          break
        case HAVE:
          for (const p of ev.to!) this.#have(this.nodes[p]!, ev.node!, ev.index!)
          break
        case ANNOUNCE:
          this.#announce(ev.node!)
          this.q.push({ t: this.now + o.announceMs, kind: ANNOUNCE, node: ev.node! })
          break
        case CONNECT:
          this.#connect(ev.node!, ev.other!)
          break
        case PLAN: {
          const dirty = this.dirty.splice(0)
          for (const a of dirty) {
            a.dirty = false
            this.#plan(a)
          }
          break
        }
        case WAKE:
          this.#soon(ev.node!)
          break
        case TICK:
          for (const a of this.incomplete) if (this.now - a.refusedAt <= this.wakeHorizon) this.#plan(a)
          this.q.push({ t: this.now + this.tickMs, kind: TICK })
          if (o.onProgress && this.now >= nextProgress) {
            nextProgress += o.progressSeconds * 1000
            let uploading = 0
            let sends = 0
            let queued = 0
            for (let i = 1; i < this.nodes.length; i++) {
              const n = this.nodes[i]!
              if (n.sending.length > 0) uploading++
              sends += n.sending.length
              queued += n.scheduler.queued
            }
            o.onProgress({
              seconds: this.now / 1000,
              complete: o.agents - this.incomplete.size,
              agents: o.agents,
              applianceBytes: this.appliance.uploaded,
              events: this.events,
              agentsUploading: uploading,
              agentSends: sends,
              agentQueued: queued,
              applianceQueued: this.appliance.scheduler.queued,
            })
          }
          break
      }
    }
    return this.#result(performance.now() - started)
  }

  // --- agents (download side) ---

  /** Re-plan `a` once every message it receives at this instant has been handled. */
  #soon(a: SimNode): void {
    if (a.dirty || a.planner.complete) return
    a.dirty = true
    this.dirty.push(a)
    if (this.dirty.length === 1) this.q.push({ t: this.now, kind: PLAN })
  }

  #plan(a: SimNode): void {
    if (a.planner.complete) return
    this.plans++
    for (const r of a.planner.plan(this.now)) {
      const to = this.byId.get(r.source)!
      const req = {
        id: ++this.reqSeq,
        from: a,
        to,
        index: r.index,
        length: this.chunkLength(r.index),
        state: TRAVELLING,
        cancelled: false,
      } as Req
      req.upload = { stream: a.idx, peer: a.id, id: req.id, hash: '', length: req.length, req }
      a.outstanding.set(to.idx * this.chunks + r.index, req)
      this.requests++
      this.q.push({ t: this.now + this.half, kind: ARRIVE, req })
    }
  }

  /**
   * HAVE from `source`: re-plan only if it can make a request possible — the chunk is new to
   * `a`, not already in flight (outside endgame), `source` has a free window and is not being
   * backed off from. Every other source was already served by the last plan(); what expires
   * with time is the wake-ups' and the tick's job.
   */
  #have(a: SimNode, source: SimNode, index: number): void {
    const planner = a.planner
    planner.sourceHas(source.id, index)
    if (planner.complete || planner.have.has(index)) return
    if (planner.picker.inflight(index) > 0 && !planner.picker.endgame) return
    if (planner.inflight(source.id) >= this.peerWindow) return
    // Backing off from `source`: the wake-up when the backoff ends re-plans.
    if (this.o.exactWake && (a.busyUntil.get(source.idx) ?? 0) > this.now) return
    this.#soon(a)
  }

  #reply(req: Req, outcome: Outcome): void {
    if (req.cancelled) return
    const a = req.from
    a.refusedAt = this.now
    if (this.o.exactWake) {
      let wait = this.avoidMs
      if (outcome === 'busy') {
        const run = (a.busyRun.get(req.to.idx) ?? 0) + 1
        a.busyRun.set(req.to.idx, run)
        wait = Math.min(PLANNER_MAX_BUSY_BACKOFF_MS, PLANNER_MIN_BUSY_BACKOFF_MS * 2 ** (run - 1))
        a.busyUntil.set(req.to.idx, this.now + wait)
      }
      this.q.push({ t: this.now + wait, kind: WAKE, node: a })
    }
    a.outstanding.delete(req.to.idx * this.chunks + req.index)
    a.planner.result(req.to.id, req.index, outcome, this.now)
    this.#soon(a)
  }

  #deliver(req: Req): void {
    const a = req.from
    this.receivedBytes += req.length
    if (req.to !== this.appliance) this.peerBytes += req.length
    if (req.cancelled || a.planner.have.has(req.index)) {
      // A cancelled endgame duplicate that was already on the wire: read and discarded.
      this.duplicateBytes += req.length
      if (!req.cancelled) {
        a.outstanding.delete(req.to.idx * this.chunks + req.index)
        a.busyRun.delete(req.to.idx)
        a.busyUntil.delete(req.to.idx)
        a.planner.result(req.to.id, req.index, 'ok', this.now)
      }
      return
    }
    a.outstanding.delete(req.to.idx * this.chunks + req.index)
    a.busyRun.delete(req.to.idx)
    a.busyUntil.delete(req.to.idx)
    const action = a.planner.result(req.to.id, req.index, 'ok', this.now)
    for (const sourceId of action.cancel) this.#cancel(a, sourceId, req.index)
    if (a.peers.size > 0)
      this.q.push({ t: this.now + this.half, kind: HAVE, node: a, index: req.index, to: [...a.peers] })
    if (a.planner.complete) {
      a.doneAt = this.now
      this.incomplete.delete(a)
      this.#announce(a)
    } else {
      this.#soon(a)
    }
  }

  #cancel(a: SimNode, sourceId: string, index: number): void {
    const source = this.byId.get(sourceId)!
    const key = source.idx * this.chunks + index
    const req = a.outstanding.get(key)
    a.outstanding.delete(key)
    a.planner.result(sourceId, index, 'cancelled', this.now)
    this.cancels++
    if (!req) return
    req.cancelled = true
    this.q.push({ t: this.now + this.half, kind: CANCEL, req })
  }

  #announce(a: SimNode): void {
    const o = this.o
    const have = a.planner.have
    this.tracker.announce(BUNDLE, a.id, [], new Bitfield(have.size, have.bytes))
    if (have.complete || a.peers.size + a.pending.size >= o.maxPeers) return
    const list = this.tracker.peersFor(BUNDLE, a.id, o.maxPeers)
    for (const p of list) {
      if (a.peers.size + a.pending.size >= o.maxPeers) break
      const b = this.byId.get(p.peerId)!
      if (b === a || a.peers.has(b.idx) || a.pending.has(b.idx)) continue
      // A peer at its connection limit refuses the dial.
      if (b.peers.size + b.pending.size >= o.maxConnections) continue
      a.pending.add(b.idx)
      b.pending.add(a.idx)
      this.q.push({ t: this.now + o.rttMs, kind: CONNECT, node: a, other: b })
    }
  }

  #connect(a: SimNode, b: SimNode): void {
    a.pending.delete(b.idx)
    b.pending.delete(a.idx)
    if (a.peers.has(b.idx)) return
    a.peers.add(b.idx)
    b.peers.add(a.idx)
    a.planner.addSource(b.id, b.planner.have)
    b.planner.addSource(a.id, a.planner.have)
    this.#soon(a)
    this.#soon(b)
  }

  // --- uploaders ---

  #arrive(req: Req): void {
    const u = req.to
    const admission = u.scheduler.admit(req.upload)
    if (!admission.admitted) {
      req.state = FINISHED
      if (admission.reason === 'busy') this.refusedBusy++
      else this.refusedElsewhere++
      this.q.push({ t: this.now + this.half, kind: REPLY, req, outcome: admission.reason })
      return
    }
    req.state = QUEUED
    if (admission.refused) this.#refuse((admission.refused as SimUpload).req)
    this.#pump(u)
  }

  #refuse(req: Req): void {
    req.state = FINISHED
    this.refusedElsewhere++
    this.q.push({ t: this.now + this.half, kind: REPLY, req, outcome: 'elsewhere' })
  }

  #cancelArrives(req: Req): void {
    if (req.state !== QUEUED) return
    req.to.scheduler.cancel(req.upload.stream, req.upload.id)
    req.state = FINISHED
  }

  #pump(u: SimNode): void {
    for (;;) {
      const refused: UploadRequest[] = []
      const next = u.scheduler.next(refused)
      for (const r of refused) this.#refuse((r as SimUpload).req)
      if (!next) return
      this.#start((next as SimUpload).req)
    }
  }

  #start(req: Req): void {
    const u = req.to
    req.state = SENDING
    if (u === this.appliance) {
      this.policy.recordSend(BUNDLE, req.index, req.from.id)
      if (u.sending.length === 0) this.applianceBusySince = this.now
    }
    const t: Transfer = { req, remaining: req.length, rate: 0, last: this.now, version: 0 }
    u.sending.push(t)
    if (this.downPerMs !== undefined) req.from.incoming.push(t)
    this.#retime(u, req.from)
  }

  #finish(t: Transfer): void {
    const req = t.req
    const u = req.to
    remove(u.sending, t)
    if (this.downPerMs !== undefined) remove(req.from.incoming, t)
    u.scheduler.done(req.upload)
    u.uploaded += req.length
    req.state = FINISHED
    if (u === this.appliance && this.applianceFirstSent[req.index] === 0) {
      this.applianceFirstSent[req.index] = 1
      if (++this.applianceFirstSentCount === this.chunks) this.applianceAllSentAt = this.now
    }
    if (u === this.appliance && u.sending.length === 0) this.applianceBusy += this.now - this.applianceBusySince
    this.#retime(u, req.from)
    this.q.push({ t: this.now + this.half, kind: DELIVER, req })
    this.#pump(u)
  }

  /** The sends of `u` (and, with a download cap, the receipts of `r`) changed: new rates. */
  #retime(u: SimNode, r: SimNode): void {
    for (const t of u.sending) this.#rate(t)
    if (this.downPerMs !== undefined) for (const t of r.incoming) if (t.req.to !== u) this.#rate(t)
  }

  #rate(t: Transfer): void {
    const u = t.req.to
    t.remaining = Math.max(0, t.remaining - t.rate * (this.now - t.last))
    t.last = this.now
    let rate = u.up / u.sending.length
    if (this.downPerMs !== undefined) rate = Math.min(rate, this.downPerMs / t.req.from.incoming.length)
    t.rate = rate
    t.version++
    this.q.push({ t: this.now + t.remaining / rate, kind: FINISH, transfer: t, version: t.version })
  }

  #result(wallMs: number): SimResult {
    const o = this.o
    // Bytes of sends still in progress count as uploaded as far as they got.
    let inProgressAppliance = 0
    let inProgressAgents = 0
    for (const n of this.nodes) {
      for (const t of n.sending) {
        const sent = t.req.length - Math.max(0, t.remaining - t.rate * (this.now - t.last))
        if (n === this.appliance) inProgressAppliance += sent
        else inProgressAgents += sent
      }
    }
    if (this.appliance.sending.length > 0) this.applianceBusy += this.now - this.applianceBusySince
    const agents = this.nodes.slice(1)
    const seconds = agents.map((a) => a.doneAt / 1000)
    const finished = seconds.filter((s) => Number.isFinite(s)).sort((x, y) => x - y)
    const incomplete = agents.length - finished.length
    const secondsMax = incomplete > 0 ? Number.NaN : (finished[finished.length - 1] ?? 0)
    const bound = lowerBoundSeconds(o)
    let agentUploaded = inProgressAgents
    let connections = 0
    for (const a of agents) {
      agentUploaded += a.uploaded
      connections += a.peers.size
    }
    const makespanS = incomplete > 0 ? this.now / 1000 : secondsMax
    return {
      agents: o.agents,
      bytes: o.size,
      chunk_size: o.chunkSize,
      chunks: this.chunks,
      incomplete,
      seconds_p50: round(percentile(finished, 0.5)),
      seconds_max: round(secondsMax),
      lower_bound_seconds: round(bound),
      ratio: round(secondsMax / bound, 4),
      appliance_upload_ratio: round((this.appliance.uploaded + inProgressAppliance) / o.size, 4),
      peer_bytes_fraction: round(this.receivedBytes > 0 ? this.peerBytes / this.receivedBytes : 0, 4),
      duplicate_bytes: this.duplicateBytes,
      appliance_first_copies_seconds: round(this.applianceAllSentAt / 1000),
      appliance_busy_fraction: round(makespanS > 0 ? this.applianceBusy / 1000 / makespanS : 0, 4),
      agent_upload_utilization: round(makespanS > 0 ? agentUploaded / (o.agents * o.agentUp * makespanS) : 0, 4),
      requests: this.requests,
      plans: this.plans,
      refused_busy: this.refusedBusy,
      refused_elsewhere: this.refusedElsewhere,
      cancels: this.cancels,
      mean_connections: round(agents.length > 0 ? connections / agents.length : 0, 1),
      events: this.events,
      wall_seconds: round(wallMs / 1000),
      agent_seconds: seconds.map((s) => round(s)),
    }
  }
}

/**
 * Tracker.holders() walks every member, and SeedingPolicy.copies() calls it for every queued
 * request each time the appliance picks one: O(agents) per request, the simulator's hot spot.
 * This keeps a count per chunk as announces replace bitfields, so holders() is O(1). It is
 * exact here because no member leaves or goes stale (announces every few seconds, staleAfter
 * 2 min); everything else is the real Tracker.
 */
function remove<T>(list: T[], item: T): void {
  const i = list.indexOf(item)
  if (i >= 0) {
    list[i] = list[list.length - 1]!
    list.pop()
  }
}

/** Runs one simulation; options not given take DEFAULT_OPTIONS. */
export function simulate(options: Partial<SimOptions> = {}): SimResult {
  const o: SimOptions = { ...DEFAULT_OPTIONS }
  for (const [k, v] of Object.entries(options)) if (v !== undefined) (o as unknown as Record<string, unknown>)[k] = v
  if (!Number.isInteger(o.agents) || o.agents < 1) throw new RangeError(`agents must be a positive integer`)
  if (!(o.size > 0) || !(o.chunkSize > 0)) throw new RangeError('size and chunk size must be positive')
  if (!(o.agentUp > 0) || !(o.applianceUp > 0)) throw new RangeError('upload rates must be positive')
  return new Simulation(o).run()
}
