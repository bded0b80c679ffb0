import type { BundleReportT } from '../shared/protocol/control-protocol.ts'
import type { StateDb } from '../shared/store/state-db.ts'

/** The agent's durable record of one assigned bundle (what it reports to the appliance). */
export type BundleState = BundleReportT & {
  manifestVersion: number
  updatedAt: string
  /**
   * The assignment version under which an install (not a download) failed. The agent does
   * not try that install again until the appliance re-issues the assignment: retries are
   * the rollout's decision, not every poll's.
   */
  installFailedUnder?: number
}

const key = (bundleId: string) => `bundle:${bundleId}`

export class BundleStates {
  readonly #db: StateDb
  readonly #now: () => number
  constructor(db: StateDb, now: () => number) {
    this.#db = db
    this.#now = now
  }

  get(bundleId: string): Promise<BundleState | undefined> {
    return this.#db.get<BundleState>(key(bundleId))
  }

  async put(state: Omit<BundleState, 'updatedAt'>): Promise<BundleState> {
    const full = { ...state, updatedAt: new Date(this.#now()).toISOString() }
    await this.#db.put(key(state.bundleId), full)
    return full
  }

  async list(): Promise<BundleState[]> {
    const out: BundleState[] = []
    for await (const [, s] of this.#db.iterate<BundleState>('bundle:')) out.push(s)
    return out
  }
}
