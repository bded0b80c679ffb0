import type { Clock } from '../../shared/clock.ts'
import { isPswError, mapFsError, UpstreamError, ValidationError } from '../../shared/errors.ts'
import type { Logger } from '../../shared/log.ts'
import { type AttemptState, copyLocalFile, runHttpAttempt } from './download-attempt.ts'
import { type DownloadProgress, ProgressTracker } from './download-progress.ts'
import { type DownloadPriority, DownloadQueue } from './download-queue.ts'
import { asPswError, backoffDelay, classifyFailure } from './download-retry.ts'
import { type FeedArtifact, type IndexFetcher, MAX_ARTIFACT_BYTES } from './feed-types.ts'
import { createIndexFetcher } from './index-fetcher.ts'
import { PartialStore } from './partial-store.ts'
import { SingleFlight } from './single-flight.ts'
import { resolveWanDownloaderSettings, type WanDownloaderSettings } from './wan-downloader-settings.ts'
import type { WanLimiter } from './wan-limiter.ts'
import { sleepOn, systemTimers, type Timers } from './wan-timers.ts'

export interface FetchResult {
  /** `verified/<sha256>`: complete, size and SHA-256 checked. */
  path: string
  size: number
  sha256: string
}

export interface QuarantineEvent {
  artifact: FeedArtifact
  reason: string
  /** Where the bad bytes were moved (`quarantine/<sha256>-<time>`). */
  path: string
}

export interface WanDownloaderComponents {
  /** The global WAN cap, shared with everything else that uses the WAN; started by its owner. */
  limiter: WanLimiter
  clock: Clock
  log: Logger
  timers?: Timers
  /** Jitter source, [0, 1). */
  random?: () => number
  /** Alert: an artifact failed verification and was quarantined. */
  onQuarantine?: (event: QuarantineEvent) => void | Promise<void>
  onProgress?: (progress: DownloadProgress) => void
  /** WAN bytes per artifact (metrics), including bytes later discarded. */
  onWanBytes?: (sha256: string, n: number) => void
  /** WAN bytes of feed documents fetched through `fetchIndex`. */
  onIndexBytes?: (url: string, n: number) => void
}

export interface WanDownloaderInit extends Partial<WanDownloaderSettings> {
  /** Root of `partial/`, `verified/` and `quarantine/`. */
  dir: string
}

/** One download: what the single flight for its SHA-256 carries. */
interface Job {
  artifact: FeedArtifact
  priority: DownloadPriority
  progress: ProgressTracker
}

/**
 * Fetches feed artifacts into `verified/<sha256>`: one download per SHA-256 however many
 * callers ask, through a priority queue (emergency first) and the global WAN limiter, resumable
 * across failures and restarts, verified by size and SHA-256 before anything may use it.
 * Bytes that fail verification are quarantined and reported, never returned.
 */
export class WanDownloader {
  /** Fetches a small feed document through the same WAN limiter (for feed adapters). */
  readonly fetchIndex: IndexFetcher
  readonly #c: WanDownloaderComponents
  readonly #s: WanDownloaderSettings
  readonly #timers: Timers
  readonly #log: Logger
  readonly #store: PartialStore
  readonly #wanQueue: DownloadQueue
  readonly #localQueue: DownloadQueue
  readonly #jobs: SingleFlight<Job, FetchResult>
  #running = false

  constructor(components: WanDownloaderComponents, init: WanDownloaderInit) {
    const { dir, ...overrides } = init
    this.#c = components
    this.#s = resolveWanDownloaderSettings(overrides)
    this.#timers = components.timers ?? systemTimers
    this.#log = components.log
    this.#store = new PartialStore(dir, this.#log)
    this.#wanQueue = new DownloadQueue(this.#s.concurrency)
    this.#localQueue = new DownloadQueue(this.#s.localConcurrency)
    this.#jobs = new SingleFlight((sha256) => this.#log.info({ sha256 }, 'every caller gave up; download stopped'))
    this.fetchIndex = createIndexFetcher(
      {
        limiter: components.limiter,
        clock: components.clock,
        timers: this.#timers,
        onIndexBytes: components.onIndexBytes,
      },
      {
        headerTimeoutMs: this.#s.headerTimeoutMs,
        idleTimeoutMs: this.#s.idleTimeoutMs,
        totalTimeoutMs: this.#s.indexTotalTimeoutMs,
        maxRedirects: this.#s.maxRedirects,
        userAgent: this.#s.userAgent,
      },
    )
  }

  /** Creates the folders and sweeps leftovers (tmp files, partials without a sidecar). */
  async start(): Promise<void> {
    if (this.#running) return
    await this.#store.init()
    this.#running = true
  }

  /** Aborts every download (partials stay resumable) and waits for their cleanup. Idempotent. */
  async stop(): Promise<void> {
    this.#running = false
    await this.#jobs.abortAll(new DOMException('WAN downloader stopped', 'AbortError'))
  }

  /**
   * The artifact as a verified file. Concurrent calls for one SHA-256 share one download. The
   * caller's signal only detaches that caller; the download stops when no caller is left.
   */
  fetch(artifact: FeedArtifact, options: { signal?: AbortSignal } = {}): Promise<FetchResult> {
    const { signal } = options
    if (signal?.aborted) return Promise.reject(signal.reason)
    if (!this.#running) {
      return Promise.reject(new UpstreamError('PSW_ERR_CONFLICT', 'the WAN downloader is not running'))
    }
    try {
      checkArtifact(artifact)
    } catch (err) {
      return Promise.reject(err)
    }
    const running = this.#jobs.context(artifact.sha256)
    if (running && artifact.emergency && running.priority !== 'emergency') {
      // Applies from the next queue entry on (a download already waiting keeps its place).
      running.priority = 'emergency'
      running.progress.markEmergency()
    }
    return this.#jobs.join(
      artifact.sha256,
      () => this.#newJob(artifact),
      (job, jobSignal) => this.#run(job, jobSignal),
      signal,
    )
  }

  /** Every queued or active download. */
  snapshot(): DownloadProgress[] {
    return this.#jobs.contexts().map((job) => job.progress.snapshot())
  }

  #newJob(artifact: FeedArtifact): Job {
    return {
      artifact,
      priority: artifact.emergency ? 'emergency' : 'normal',
      progress: new ProgressTracker(
        artifact,
        this.#c.clock,
        (p) => this.#hook('onProgress', () => this.#c.onProgress?.(p)),
        this.#s.progressIntervalMs,
      ),
    }
  }

  async #run(job: Job, signal: AbortSignal): Promise<FetchResult> {
    const { artifact } = job
    const existing = await this.#store.verifiedSize(artifact.sha256)
    if (existing === artifact.size) return this.#result(artifact)
    if (existing !== undefined) {
      // The bytes were verified against this SHA-256, so the declaration is what is wrong; the
      // good file is not thrown away because of it.
      throw new UpstreamError(
        'PSW_ERR_WAN_SIZE',
        `${artifact.name}: the feed declares ${artifact.size} bytes, the verified file with this SHA-256 has ${existing}`,
        { details: { sha256: artifact.sha256, kind: 'declared-size' } },
      )
    }
    return artifact.source.kind === 'file'
      ? this.#runLocal(job, artifact.source.path, signal)
      : this.#runHttp(job, artifact.source.url, signal)
  }

  async #runHttp(job: Job, url: string, signal: AbortSignal): Promise<FetchResult> {
    const { artifact, progress } = job
    const { sha256 } = artifact
    const log = this.#log.child({ sha256, name: artifact.name })
    let failures = 0
    let scratchRetried = false
    let fromScratch = false
    for (;;) {
      progress.state('queued')
      const release = await this.#wanQueue.acquire(job.priority, signal)
      const st: AttemptState = { resumed: false, progressed: 0 }
      let digest: string | undefined
      let failure: unknown
      try {
        progress.state('downloading')
        digest = await runHttpAttempt(
          {
            artifact,
            url,
            store: this.#store,
            limiter: this.#c.limiter,
            clock: this.#c.clock,
            timers: this.#timers,
            log,
            signal,
            settings: this.#s,
            fromScratch,
            onBytes: (n) => progress.bytes(n),
            onWanBytes: (n) => this.#hook('onWanBytes', () => this.#c.onWanBytes?.(sha256, n)),
          },
          st,
        )
      } catch (err) {
        failure = err
      } finally {
        release()
      }
      fromScratch = false
      if (digest !== undefined) {
        progress.state('verifying')
        if (digest === sha256) return this.#promote(artifact)
        if (st.resumed && !scratchRetried) {
          log.warn({ digest }, 'resumed download does not verify; fetching it once more from scratch')
          scratchRetried = fromScratch = true
          continue
        }
        throw await this.#quarantine(artifact, `SHA-256 is ${digest}, the feed declares ${sha256}`)
      }
      if (signal.aborted) throw signal.reason
      progress.error(failure)
      const kind = classifyFailure(failure)
      log.warn({ err: failure, kind, attempt: progress.attempt }, 'download attempt failed')
      if (kind === 'restart') continue
      if (kind === 'disk-full' || kind === 'integrity') {
        await this.#store.discard(sha256).catch((err) => log.warn({ err }, 'cannot remove the partial download'))
        if (kind === 'integrity' && st.resumed && !scratchRetried) {
          scratchRetried = fromScratch = true
          continue
        }
      }
      if (kind !== 'transient') throw asPswError(failure)
      failures = st.progressed >= this.#s.progressResetBytes ? 1 : failures + 1
      if (failures >= this.#s.maxAttempts) {
        throw new UpstreamError('PSW_ERR_WAN_GAVE_UP', `${artifact.name}: gave up after ${failures} failed attempts`, {
          cause: failure,
          details: { sha256, attempts: progress.attempt, lastCode: isPswError(failure) ? failure.code : undefined },
        })
      }
      const delay = backoffDelay(failures, {
        baseMs: this.#s.backoffBaseMs,
        maxMs: this.#s.backoffMaxMs,
        random: this.#c.random ?? Math.random,
        retryAfterMs: st.retryAfterMs,
      })
      progress.state('retry-wait', { nextRetryAt: this.#c.clock.now() + delay })
      await sleepOn(this.#timers, delay, signal)
    }
  }

  async #runLocal(job: Job, path: string, signal: AbortSignal): Promise<FetchResult> {
    const { artifact, progress } = job
    progress.state('queued')
    const release = await this.#localQueue.acquire(job.priority, signal)
    let digest: string
    try {
      progress.state('downloading')
      digest = await copyLocalFile({ artifact, store: this.#store, signal, onBytes: (n) => progress.bytes(n) }, path)
    } catch (err) {
      progress.error(err)
      await this.#store.discard(artifact.sha256).catch(() => {})
      throw signal.aborted ? signal.reason : asPswError(err)
    } finally {
      release()
    }
    progress.state('verifying')
    if (digest === artifact.sha256) return this.#promote(artifact)
    throw await this.#quarantine(artifact, `SHA-256 of ${path} is ${digest}, the feed declares ${artifact.sha256}`)
  }

  async #promote(artifact: FeedArtifact): Promise<FetchResult> {
    try {
      await this.#store.promote(artifact.sha256)
    } catch (err) {
      throw asPswError(mapFsError(err, `moving ${artifact.sha256} to verified/`))
    }
    this.#log.info(
      { sha256: artifact.sha256, name: artifact.name, size: artifact.size },
      'artifact downloaded and verified',
    )
    return this.#result(artifact)
  }

  #result(artifact: FeedArtifact): FetchResult {
    return { path: this.#store.verifiedPath(artifact.sha256), size: artifact.size, sha256: artifact.sha256 }
  }

  async #quarantine(artifact: FeedArtifact, reason: string): Promise<unknown> {
    let path: string
    try {
      path = await this.#store.quarantine(artifact.sha256, this.#c.clock.now())
    } catch (err) {
      this.#log.error({ err, sha256: artifact.sha256, reason }, 'cannot quarantine a bad artifact; removing it')
      await this.#store.discard(artifact.sha256).catch(() => {})
      return asPswError(mapFsError(err, 'quarantining'))
    }
    this.#log.error(
      { sha256: artifact.sha256, name: artifact.name, feedId: artifact.feedId, path, reason },
      'artifact quarantined',
    )
    this.#hook('onQuarantine', () => this.#c.onQuarantine?.({ artifact, reason, path }))
    return new UpstreamError('PSW_ERR_ARTIFACT_HASH', `${artifact.name}: ${reason}; quarantined`, {
      details: { sha256: artifact.sha256, path },
    })
  }

  /** Runs an injected hook; its failures are logged, never allowed to break a download. */
  #hook(name: string, call: () => unknown): void {
    try {
      const r = call()
      if (r instanceof Promise) r.catch((err) => this.#log.warn({ err, hook: name }, 'hook failed'))
    } catch (err) {
      this.#log.warn({ err, hook: name }, 'hook failed')
    }
  }
}

const SHA256_RE = /^[0-9a-f]{64}$/

function checkArtifact(a: FeedArtifact): void {
  if (!SHA256_RE.test(a.sha256)) throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', 'sha256 must be 64 hex digits')
  if (!Number.isSafeInteger(a.size) || a.size < 0 || a.size > MAX_ARTIFACT_BYTES) {
    throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', `size ${a.size} is out of range`)
  }
  const src = a.source
  if (src?.kind === 'http' && typeof src.url === 'string') return
  if (src?.kind === 'file' && typeof src.path === 'string' && src.path.length > 0) return
  throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', 'source must be {kind: "http", url} or {kind: "file", path}')
}
