import { createHash } from 'node:crypto'
import type { FileHandle } from 'node:fs/promises'
import { mkdir, open } from 'node:fs/promises'
import { dirname } from 'node:path'
import type { Logger } from 'pino'
import type { Uint8ArrayList } from 'uint8arraylist'
import type { Clock } from '../../shared/clock.ts'
import { chunkLength } from '../../shared/content/chunking.ts'
import { isPswError, mapFsError, ProtocolError, PswError } from '../../shared/errors.ts'
import type { Manifest } from '../../shared/metadata/manifest-schema.ts'
import type { P2PNode } from '../../shared/p2p/p2p-node.ts'
import type { ByteStream } from '../../shared/protocol/byte-stream.ts'
import { ChunkClient } from '../../shared/protocol/chunk-client.ts'
import { CHUNK_PROTOCOL } from '../../shared/protocol/chunk-codec.ts'
import type { AnnounceResponseT } from '../../shared/protocol/control-protocol.ts'
import {
  encodeBitfield,
  encodeHave,
  HAVE_PROTOCOL,
  type HaveDecoder,
  type HaveMessage,
} from '../../shared/protocol/have-codec.ts'
import type { TokenBucket } from '../../shared/rate/token-bucket.ts'
import { Bitfield } from '../../shared/swarm/bitfield.ts'
import { DownloadPlanner, type Outcome } from '../../shared/swarm/download-planner.ts'
import { scanPartial } from '../downloader.ts'

export interface TransferCounters {
  bytesFromAppliance: number
  bytesFromPeers: number
  bytesServed: number
}

export interface SwarmTuning {
  /** Requests in flight per peer. */
  peerWindow: number
  /** Requests in flight to the appliance while peers are around / when it is the only source. */
  applianceWindow: number
  soloWindow: number
  /** Requests in flight in all (memory ≈ this × chunk size). */
  maxInflight: number
  /** Peers kept per bundle. */
  maxPeers: number
  /** A download with no chunk stored for this long fails (retried next cycle). Default 120 s. */
  stallTimeoutMs?: number
}

export interface SessionDeps {
  manifest: Manifest
  partPath: string
  node: P2PNode
  appliance: { peerId: string; addrs: string[] }
  /** Announces to the appliance's tracker; answers with peers. */
  announce(request: {
    have: string
    addrs: string[]
    event?: 'started' | 'completed' | 'stopped'
  }): Promise<AnnounceResponseT>
  /** Whether a peer may take part (enrolled, not banned). */
  allowed(peerId: string): boolean
  /** A peer sent a bad chunk: ban it agent-wide and hang up. */
  ban(peerId: string): void
  downloadRate: TokenBucket
  tuning: SwarmTuning
  counters: TransferCounters
  clock: Clock
  random: () => number
  log: Logger
}

interface Link {
  /** Our have stream to the peer (we write). */
  out?: ByteStream
  connecting?: boolean
  /** Their have stream to us (we read). */
  inbound?: ByteStream
  client?: Promise<ChunkClient>
  addrs: string[]
  /** What the peer told us it holds (BITFIELD, then HAVEs): orders our uploads, neediest first. */
  have?: Bitfield
}

/** Above this many bytes queued on a have stream the peer is not reading: it is dropped. */
const MAX_HAVE_BACKLOG = 64 << 10
/** HAVEs are batched this long: far below a chunk's transfer time (256 KiB at 8 MiB/s: 31 ms). */
const HAVE_BATCH_MS = 5

/** Per-request timeout, scaled by the chunk size and the requests queued before it. */
function timeoutFor(length: number, queued: number): number {
  return 4000 + Math.ceil((4000 * length * (queued + 1)) / 1_000_000)
}

/**
 * One bundle's swarm on an agent: downloads the chunks it lacks from peers and the
 * appliance (DownloadPlanner decides what to ask of whom), writes each verified chunk at
 * its offset, tells its peers about every chunk it stores (have protocol) and keeps the
 * tracker informed. It stays open after the download to seed, until closed.
 */
export class BundleSession {
  readonly bundleId: string
  readonly manifest: Manifest
  /** Chunks verified and written: what this agent serves and announces. */
  stored!: Bitfield
  readonly counters: TransferCounters
  readonly #deps: SessionDeps
  readonly #links = new Map<string, Link>()
  readonly #requests = new Map<string, AbortController>()
  readonly #pool: Buffer[] = []
  readonly #hashIndex = new Map<string, number>()
  #planner!: DownloadPlanner
  #fh: FileHandle | undefined
  #closed = false
  #pendingHaves: number[] = []
  #haveTimer: NodeJS.Timeout | undefined
  #announceTimer: NodeJS.Timeout | undefined
  #tick: NodeJS.Timeout | undefined
  #done = Promise.withResolvers<void>()
  #failure: unknown
  #started = 0
  #fetchedBytes = 0
  #fetchedChunks = 0
  #pumpScheduled = false
  /** Request outcomes of this download, for the completion log (how smooth the swarm ran). */
  readonly outcomes: Record<string, number> = {}
  #lastProgress = 0
  #onProgress: ((have: number, total: number) => void) | undefined
  /** Chunks the appliance sent bad, and how often: twice means its store is damaged. */
  readonly #applianceBad = new Map<number, number>()
  #reused = 0
  #writes = new Set<Promise<void>>()

  constructor(deps: SessionDeps) {
    this.#deps = deps
    this.manifest = deps.manifest
    this.bundleId = deps.manifest.bundleId
    this.counters = deps.counters
    deps.manifest.content.chunks.forEach((h, i) => {
      if (!this.#hashIndex.has(h)) this.#hashIndex.set(h, i)
    })
    this.#done.promise.catch(() => {})
  }

  get complete(): boolean {
    return this.stored?.complete ?? false
  }

  /** Re-hashes what is on disk (resume) and opens the file. */
  async open(): Promise<void> {
    const { manifest, partPath } = this.#deps
    await mkdir(dirname(partPath), { recursive: true })
    const have = await scanPartial(partPath, manifest)
    this.stored = new Bitfield(have.length)
    for (let i = 0; i < have.length; i++) if (have[i]) this.stored.set(i)
    this.#reused = this.stored.count
    this.#fh = await open(partPath, this.#reused > 0 ? 'r+' : 'w+').catch((err) => {
      throw mapFsError(err, 'opening the download file')
    })
    if ((await this.#fh.stat()).size > manifest.content.size) await this.#fh.truncate(manifest.content.size)
    this.#planner = new DownloadPlanner({
      have: new Bitfield(this.stored.size, this.stored.bytes),
      random: this.#deps.random,
      peerWindow: this.#deps.tuning.peerWindow,
      applianceWindow: this.#deps.tuning.applianceWindow,
      soloWindow: this.#deps.tuning.soloWindow,
      maxInflight: this.#deps.tuning.maxInflight,
    })
    this.#planner.addSource(this.#deps.appliance.peerId, Bitfield.full(this.stored.size), { appliance: true })
  }

  /**
   * Downloads what is missing; resolves once every chunk is verified, written and synced.
   * The session keeps seeding afterwards.
   */
  async download(
    signal: AbortSignal,
    onProgress?: (have: number, total: number) => void,
  ): Promise<{ fetchedChunks: number; fetchedBytes: number; reusedChunks: number; seconds: number }> {
    this.#started = performance.now()
    this.#onProgress = onProgress
    this.#lastProgress = this.#deps.clock.now()
    if (this.#reused > 0 && !this.stored.complete) {
      this.#deps.log.info(
        { reusedChunks: this.#reused, missing: this.stored.size - this.#reused },
        'resuming download from verified chunks',
      )
    }
    const onAbort = () => this.#fail(signal.reason ?? new PswError('PSW_ERR_INTERNAL', 'aborted'))
    signal.addEventListener('abort', onAbort, { once: true })
    try {
      this.#announce('started')
      if (this.stored.complete) this.#done.resolve()
      else {
        this.#tick = setInterval(() => {
          // Nothing stored for this long from anyone, the appliance included: give up for
          // this cycle (the verified chunks stay on disk for the next).
          if (this.#deps.clock.now() - this.#lastProgress > (this.#deps.tuning.stallTimeoutMs ?? 120_000)) {
            this.#fail(new ProtocolError('PSW_ERR_PEER_TIMEOUT', 'no chunk arrived from any source for too long'))
          }
          this.#pump()
        }, 200)
        this.#pump()
      }
      await this.#done.promise
      await Promise.all([...this.#writes])
      await this.#fh!.sync()
      return {
        fetchedChunks: this.#fetchedChunks,
        fetchedBytes: this.#fetchedBytes,
        reusedChunks: this.#reused,
        seconds: (performance.now() - this.#started) / 1000,
      }
    } finally {
      signal.removeEventListener('abort', onAbort)
      clearInterval(this.#tick)
      for (const c of this.#requests.values()) c.abort(new PswError('PSW_ERR_INTERNAL', 'download ended'))
    }
  }

  /** A verified chunk for an uploader, or undefined when not held (re-hashed: disk rot is never passed on). */
  async read(hash: string, length: number): Promise<Uint8Array | undefined> {
    const index = this.#hashIndex.get(hash)
    if (index === undefined || !this.stored?.has(index) || !this.#fh || this.#closed) return undefined
    const { size, chunkSize } = this.manifest.content
    if (length !== chunkLength(index, size, chunkSize)) return undefined
    const buf = Buffer.allocUnsafe(length)
    const { bytesRead } = await this.#fh.read(buf, 0, length, index * chunkSize)
    if (bytesRead !== length || createHash('sha256').update(buf).digest('hex') !== hash) {
      this.#deps.log.error({ chunk: index }, 'a stored chunk no longer matches its hash; not serving it')
      return undefined
    }
    return buf
  }

  /**
   * How many chunks a connected peer holds, as it told us; undefined when it has no have
   * stream to us. The uploader serves the peer holding the fewest first.
   */
  peerChunks(peerId: string): number | undefined {
    return this.#links.get(peerId)?.have?.count
  }

  holds(hash: string): boolean {
    const index = this.#hashIndex.get(hash)
    return index !== undefined && (this.stored?.has(index) ?? false)
  }

  /** Opens our have stream to a peer (tracker, mDNS, or a peer that connected to us). */
  connect(peerId: string, addrs: string[]): void {
    if (this.#closed || peerId === this.#deps.node.peerId || peerId === this.#deps.appliance.peerId) return
    if (!this.#deps.allowed(peerId)) return
    let link = this.#links.get(peerId)
    if (link?.out || link?.connecting) return
    if (!link) {
      if (this.#links.size >= this.#deps.tuning.maxPeers) return
      link = { addrs }
      this.#links.set(peerId, link)
    }
    if (addrs.length > 0) link.addrs = addrs
    link.connecting = true
    const l = link
    this.#deps.node
      .openStream(peerId, l.addrs, HAVE_PROTOCOL, AbortSignal.timeout(10_000))
      .then((stream) => {
        l.connecting = false
        if (this.#closed) {
          stream.abort(new PswError('PSW_ERR_INTERNAL', 'session closed'))
          return
        }
        l.out = stream
        stream.send(encodeBitfield(this.bundleId, this.stored))
        // The peer never writes on our stream; its end means the peer left (or refused).
        void (async () => {
          try {
            for await (const _ of stream) {
              throw new PswError('PSW_ERR_PROTOCOL', 'data on a one-way have stream')
            }
          } catch {
            stream.abort(new Error('have stream ended'))
          }
          if (l.out === stream) l.out = undefined
          this.#dropIfIdle(peerId)
        })()
      })
      .catch((err) => {
        l.connecting = false
        this.#deps.log.debug({ peer: peerId, err }, 'could not open a have stream')
        this.#dropIfIdle(peerId)
      })
  }

  /** A peer's have stream for this bundle, after its BITFIELD was read. */
  async attachInbound(
    peerId: string,
    stream: ByteStream,
    first: Bitfield,
    pending: HaveMessage[],
    decoder: HaveDecoder,
    rest: AsyncIterator<Uint8Array | Uint8ArrayList>,
  ): Promise<void> {
    if (this.#closed || !this.#deps.allowed(peerId) || first.size !== this.stored.size) {
      await stream.close().catch(() => {})
      return
    }
    let link = this.#links.get(peerId)
    if (!link) {
      link = { addrs: [] }
      this.#links.set(peerId, link)
    }
    link.inbound?.abort(new PswError('PSW_ERR_PROTOCOL', 'replaced by a newer have stream'))
    link.inbound = stream
    const have = new Bitfield(first.size, first.bytes)
    link.have = have
    const now = this.#deps.clock.now()
    if (!this.#planner.complete && !this.#planner.isBanned(peerId, now)) {
      this.#planner.addSource(peerId, first)
      this.#pump()
    }
    // Answer with our own bitfield, so the peer can fetch from us too.
    if (!link.out) this.connect(peerId, link.addrs)
    const apply = (messages: HaveMessage[]) => {
      for (const msg of messages) {
        if (msg.type !== 'have') continue
        if (msg.index >= 0 && msg.index < have.size) have.set(msg.index)
        if (this.#planner.hasSource(peerId)) this.#planner.sourceHas(peerId, msg.index)
      }
      this.#pump()
    }
    try {
      apply(pending)
      for (;;) {
        const next = await rest.next()
        if (next.done) break
        apply(decoder.push(next.value))
      }
    } catch (err) {
      this.#deps.log.debug({ peer: peerId, code: isPswError(err) ? err.code : undefined }, 'have stream ended')
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    }
    if (link.inbound === stream) {
      link.inbound = undefined
      this.#planner.removeSource(peerId)
      this.#dropIfIdle(peerId)
      this.#pump()
    }
  }

  /** Leaves the swarm: tells the tracker, closes streams and the file. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    clearTimeout(this.#haveTimer)
    clearTimeout(this.#announceTimer)
    clearInterval(this.#tick)
    this.#fail(new PswError('PSW_ERR_INTERNAL', 'session closed'))
    for (const c of this.#requests.values()) c.abort(new PswError('PSW_ERR_INTERNAL', 'session closed'))
    await this.#deps
      .announce({ have: Buffer.from(this.stored.bytes).toString('base64'), addrs: [], event: 'stopped' })
      .catch(() => {})
    for (const [, link] of this.#links) this.#closeLink(link)
    this.#links.clear()
    await Promise.all([...this.#writes])
    await this.#fh?.close().catch(() => {})
    this.#fh = undefined
  }

  #fail(err: unknown): void {
    this.#failure ??= err
    this.#done.reject(err)
  }

  #closeLink(link: Link): void {
    link.out?.close().catch(() => {})
    link.inbound?.close().catch(() => {})
    link.client?.then((c) => c.close(1000)).catch(() => {})
    link.out = undefined
    link.inbound = undefined
    link.client = undefined
  }

  #dropIfIdle(peerId: string): void {
    const link = this.#links.get(peerId)
    if (link && !link.out && !link.inbound && !link.connecting) {
      this.#closeLink(link)
      this.#links.delete(peerId)
    }
  }

  #announce(event?: 'started' | 'completed'): void {
    if (this.#closed) return
    clearTimeout(this.#announceTimer)
    const addrs = this.#deps.node.multiaddrs().slice(0, 16)
    this.#deps
      .announce({ have: Buffer.from(this.stored.bytes).toString('base64'), addrs, event })
      .then(
        (res) => {
          for (const p of res.peers) this.connect(p.peerId, p.addrs)
          return res.intervalSeconds * 1000
        },
        (err) => {
          this.#deps.log.debug({ err }, 'announce failed; retrying')
          return 5000
        },
      )
      .then((ms) => {
        if (this.#closed) return
        this.#announceTimer = setTimeout(() => this.#announce(), ms)
        this.#announceTimer.unref()
      })
  }

  #client(peerId: string): Promise<ChunkClient> {
    const link =
      peerId === this.#deps.appliance.peerId
        ? this.#applianceLink()
        : (this.#links.get(peerId) ?? { addrs: [] as string[] })
    const existing = link.client
    if (existing) return existing
    const opened = this.#deps.node
      .openStream(peerId, link.addrs, CHUNK_PROTOCOL, AbortSignal.timeout(10_000))
      .then((s) => new ChunkClient(s))
    link.client = opened
    opened.then(
      (c) =>
        c.done.then(() => {
          if (link.client === opened) link.client = undefined
        }),
      () => {
        if (link.client === opened) link.client = undefined
      },
    )
    return opened
  }

  #applianceLinkValue: Link | undefined
  #applianceLink(): Link {
    this.#applianceLinkValue ??= { addrs: this.#deps.appliance.addrs }
    this.#applianceLinkValue.addrs = this.#deps.appliance.addrs
    return this.#applianceLinkValue
  }

  /**
   * Plans and sends requests. Many events (a burst of HAVEs, several answers in one read)
   * coalesce into one plan per turn of the event loop.
   */
  #pump(): void {
    if (this.#pumpScheduled) return
    this.#pumpScheduled = true
    setImmediate(() => {
      this.#pumpScheduled = false
      if (this.#closed || this.#failure !== undefined || this.#planner.complete) return
      for (const { source, index } of this.#planner.plan(this.#deps.clock.now())) void this.#fetch(source, index)
    })
  }

  async #fetch(source: string, index: number): Promise<void> {
    const { manifest, tuning } = this.#deps
    const { size, chunkSize, chunks } = manifest.content
    const length = chunkLength(index, size, chunkSize)
    const key = `${source}:${index}`
    const controller = new AbortController()
    this.#requests.set(key, controller)
    const isAppliance = source === this.#deps.appliance.peerId
    let outcome: Outcome
    let data: Uint8Array | undefined
    const into = this.#pool.pop() ?? Buffer.allocUnsafe(chunkSize)
    try {
      await this.#deps.downloadRate.take(length, controller.signal)
      const client = await this.#client(source)
      data = await client.fetch(chunks[index]!, length, {
        signal: controller.signal,
        // The appliance queues requests from the whole site behind its upload cap.
        timeoutMs: isAppliance ? 60_000 + timeoutFor(length, tuning.soloWindow) : timeoutFor(length, tuning.peerWindow),
        into,
      })
      outcome = 'ok'
    } catch (err) {
      outcome = controller.signal.aborted ? 'cancelled' : outcomeOf(err)
      if (outcome === 'bad' && isAppliance) {
        const times = (this.#applianceBad.get(index) ?? 0) + 1
        this.#applianceBad.set(index, times)
        this.#deps.log.error({ chunk: index, times }, 'the appliance sent a chunk that fails its signed hash')
        // The same bytes again: the appliance's copy is damaged; nothing to install here.
        if (times >= 2) this.#fail(err)
      } else if (outcome === 'bad')
        this.#deps.log.warn({ peer: source, chunk: index }, 'peer sent a bad chunk; banning it')
      else if (outcome !== 'cancelled' && outcome !== 'busy' && outcome !== 'elsewhere')
        this.#deps.log.debug({ peer: source, chunk: index, outcome, err }, 'chunk request failed')
      // The appliance stays a source whatever happens: a broken stream is reopened later.
      if (isAppliance && outcome === 'closed') outcome = 'busy'
    } finally {
      this.#requests.delete(key)
    }
    // An endgame duplicate whose cancel came too late: the first copy is already ours.
    if (outcome === 'ok' && this.#planner.have.has(index)) outcome = 'cancelled'
    this.outcomes[outcome] = (this.outcomes[outcome] ?? 0) + 1
    if (outcome !== 'ok') this.#pool.push(into)
    if (this.#closed) return
    const action = this.#planner.result(source, index, outcome, this.#deps.clock.now())
    for (const other of action.cancel) this.#requests.get(`${other}:${index}`)?.abort()
    if (action.removed) {
      const link = this.#links.get(source)
      if (link) this.#closeLink(link)
      this.#links.delete(source)
      if (action.removed === 'banned') this.#deps.ban(source)
    }
    if (outcome === 'ok' && data) this.#store(index, data, isAppliance)
    this.#pump()
  }

  #store(index: number, data: Uint8Array, fromAppliance: boolean): void {
    const { chunkSize } = this.manifest.content
    const w = this.#fh!.write(data, 0, data.byteLength, index * chunkSize)
      .then(() => {
        if (Buffer.isBuffer(data) && data.byteLength === chunkSize) this.#pool.push(data)
        this.stored.set(index)
        this.#fetchedBytes += data.byteLength
        this.#fetchedChunks++
        this.#lastProgress = this.#deps.clock.now()
        this.#onProgress?.(this.stored.count, this.stored.size)
        if (fromAppliance) this.counters.bytesFromAppliance += data.byteLength
        else this.counters.bytesFromPeers += data.byteLength
        this.#broadcastHave(index)
        if (this.stored.complete) {
          this.#announce('completed')
          this.#done.resolve()
        }
      })
      .catch((err) => this.#fail(mapFsError(err, 'writing a chunk')))
      .finally(() => this.#writes.delete(w))
    this.#writes.add(w)
  }

  /**
   * Queues a HAVE for every peer; HAVEs stored within HAVE_BATCH_MS go out as one write per
   * peer (one yamux frame, one Noise message, one syscall instead of one each per chunk).
   */
  #broadcastHave(index: number): void {
    this.#pendingHaves.push(index)
    if (this.stored.complete) {
      this.#flushHaves()
      return
    }
    if (this.#haveTimer) return
    this.#haveTimer = setTimeout(() => this.#flushHaves(), HAVE_BATCH_MS)
    this.#haveTimer.unref()
  }

  #flushHaves(): void {
    clearTimeout(this.#haveTimer)
    this.#haveTimer = undefined
    if (this.#pendingHaves.length === 0 || this.#closed) return
    const msg = Buffer.concat(this.#pendingHaves.map(encodeHave))
    this.#pendingHaves = []
    for (const [peerId, link] of this.#links) {
      const out = link.out
      if (out?.status !== 'open') continue
      if (out.writeBufferLength > MAX_HAVE_BACKLOG) {
        out.abort(new PswError('PSW_ERR_PROTOCOL', 'peer does not read its have stream'))
        link.out = undefined
        this.#dropIfIdle(peerId)
        continue
      }
      out.send(msg)
    }
  }
}

function outcomeOf(err: unknown): Outcome {
  if (!isPswError(err)) return 'closed'
  switch (err.code) {
    case 'PSW_ERR_PEER_BUSY':
      return 'busy'
    case 'PSW_ERR_CHUNK_ELSEWHERE':
      return 'elsewhere'
    case 'PSW_ERR_CHUNK_UNAVAILABLE':
      return 'not-found'
    case 'PSW_ERR_PEER_TIMEOUT':
      return 'timeout'
    case 'PSW_ERR_CHUNK_HASH':
    case 'PSW_ERR_CHUNK_SIZE':
      return 'bad'
    default:
      return 'closed'
  }
}
