import { StateError } from '../../shared/errors.ts'
import type { StateBatchOp, StateDb } from '../../shared/store/state-db.ts'
import type { FeedArtifact } from './feed-types.ts'

/**
 * Where one upstream artifact stands on this appliance:
 *
 *   available ──fetch──▶ queued ──▶ downloading ──▶ ingesting ──▶ ready
 *                          ▲            │   │                       │
 *                          │            │   └──▶ quarantined        └─evict─▶ evicted
 *                          └──retry─────┴──▶ failed
 *
 * `queued` is written (synced) before a fetch is acknowledged, so after a kill -9 every
 * queued, downloading or ingesting artifact is taken up again at start (the WAN downloader
 * resumes its partial file).
 */
export type ArtifactState =
  | 'available'
  | 'queued'
  | 'downloading'
  | 'ingesting'
  | 'ready'
  | 'failed'
  | 'quarantined'
  | 'evicted'

export interface ArtifactError {
  code: string
  message: string
  at: string
}

export interface UpstreamEntry {
  /** `<feedId>/<key>`: how operators name an artifact. */
  ref: string
  artifact: FeedArtifact
  state: ArtifactState
  /** Whether the feed still lists it (a withdrawn artifact is kept, marked). */
  listed: boolean
  firstSeen: string
  lastSeen: string
  /** Who asked for it: an operator, an auto-download rule, or the sync after a restart. */
  requestedBy?: string
  requestedAt?: string
  /** The bundle it became (content.sha256 = the vendor SHA-256 for raw bundles). */
  bundleId?: string
  readyAt?: string
  error?: ArtifactError
}

export interface FeedState {
  feedId: string
  kind: string
  lastSyncAt?: string
  /** The last successful listing. */
  lastOkAt?: string
  lastError?: ArtifactError
  artifacts: number
  skipped: { key: string; code: string; message: string }[]
  /** Rollback references: the newest feed `generated` / APT Release `Date` accepted. */
  generated?: string
  releaseDate?: number
}

const ENTRY = 'upstream:artifact:'
const FEED = 'upstream:feed:'

export function artifactRef(feedId: string, key: string): string {
  return `${feedId}/${key}`
}

/** Upstream state in LevelDB: one record per artifact a feed ever listed, one per feed. */
export class UpstreamCatalog {
  readonly #db: StateDb

  constructor(db: StateDb) {
    this.#db = db
  }

  get(ref: string): Promise<UpstreamEntry | undefined> {
    return this.#db.get<UpstreamEntry>(ENTRY + ref)
  }

  async require(ref: string): Promise<UpstreamEntry> {
    const entry = await this.get(ref)
    if (!entry)
      throw new StateError(
        'PSW_ERR_NOT_FOUND',
        `no upstream artifact '${ref}' (see 'patchswarm appliance upstream list')`,
      )
    return entry
  }

  put(entry: UpstreamEntry): Promise<void> {
    return this.#db.put(ENTRY + entry.ref, entry)
  }

  putOp(entry: UpstreamEntry): StateBatchOp {
    return { type: 'put', key: ENTRY + entry.ref, value: entry }
  }

  async list(filter: { feedId?: string; state?: ArtifactState } = {}): Promise<UpstreamEntry[]> {
    const out: UpstreamEntry[] = []
    const prefix = filter.feedId === undefined ? ENTRY : `${ENTRY}${filter.feedId}/`
    for await (const [, e] of this.#db.iterate<UpstreamEntry>(prefix)) {
      if (filter.state === undefined || e.state === filter.state) out.push(e)
    }
    return out
  }

  feed(feedId: string): Promise<FeedState | undefined> {
    return this.#db.get<FeedState>(FEED + feedId)
  }

  feedOp(state: FeedState): StateBatchOp {
    return { type: 'put', key: FEED + state.feedId, value: state }
  }

  async feeds(): Promise<FeedState[]> {
    const out: FeedState[] = []
    for await (const [, f] of this.#db.iterate<FeedState>(FEED)) out.push(f)
    return out
  }

  batch(ops: StateBatchOp[]): Promise<void> {
    return this.#db.batch(ops)
  }
}
