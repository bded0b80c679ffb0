import { Type } from '@sinclair/typebox'
import { StateError, ValidationError } from '../shared/errors.ts'
import type { AgentReportT, InventoryReportT } from '../shared/protocol/control-protocol.ts'
import { KeyedMutex } from '../shared/store/mutex.ts'
import type { StateBatchOp, StateDb } from '../shared/store/state-db.ts'

export const DEVICE_TIERS = ['critical', 'high', 'normal', 'low'] as const
export type DeviceTier = (typeof DEVICE_TIERS)[number]
/** The tier of a device nobody has classified. */
export const DEFAULT_TIER: DeviceTier = 'normal'

export const MAX_DEVICE_TAGS = 32
/** Lower-case letters, digits and `. _ : / -`, starting with a letter or digit; at most 64. */
export const TAG_PATTERN = '^[a-z0-9][a-z0-9._:/-]{0,63}$'
const TAG_RE = new RegExp(TAG_PATTERN)
/** A tag as the API takes it: any case (stored lower case). */
export const TagSchema = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$' })
export const TierSchema = Type.Union(DEVICE_TIERS.map((t) => Type.Literal(t)))

/** What a device list shows of the latest inventory; the full report is under `inventory:<peerId>`. */
export interface InventorySummary {
  receivedAt: string
  digest: string
  hostname: string
  os: InventoryReportT['os']
  packages: number
  rebootPending: boolean
}

export interface DeviceRecord {
  peerId: string
  hostname: string
  certificatePem: string
  enrolledAt: string
  lastSeen?: string
  report?: AgentReportT
  /** Sorted, lower case, unique. */
  tags?: string[]
  /** Absent: DEFAULT_TIER. */
  tier?: DeviceTier
  inventory?: InventorySummary
}

/** The latest inventory of a device, as stored. */
export interface StoredInventory {
  receivedAt: string
  inventory: InventoryReportT
}

const deviceKey = (peerId: string) => `device:${peerId}`
const inventoryKey = (peerId: string) => `inventory:${peerId}`

/** Lower-cases, deduplicates and sorts tags; refuses a malformed tag or too many. */
export function normalizeTags(tags: readonly string[]): string[] {
  const out = [...new Set(tags.map((t) => t.trim().toLowerCase()))].sort()
  const bad = out.find((t) => !TAG_RE.test(t))
  if (bad !== undefined) throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', `invalid tag ${JSON.stringify(bad)}`)
  if (out.length > MAX_DEVICE_TAGS)
    throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', `at most ${MAX_DEVICE_TAGS} tags per device`)
  return out
}

/**
 * Enrolled devices. Every record is also kept in memory: the connection gater asks about
 * membership on every connection, and the rollout service reads every record (with its latest
 * report) on each pass. From LevelDB that means decoding every record, about 1.6 KB each, most
 * of it the certificate: 130 to 200 ms a pass at 10 000 devices (bench:rollout). In memory they
 * take about 16 MB at 10 000 devices. The map is loaded at start and changes only after the
 * write it mirrors is durable, so it never shows what the database does not hold. Records
 * handed out are shared: treat them as read-only (every update replaces a record, never edits
 * it). Updates of one device record (reports, inventory, tags, tier) are serialised per
 * device, so an agent's report never overwrites the operator's tags and vice versa.
 */
export class DeviceRegistry {
  readonly #db: StateDb
  /** PeerId → record, as stored. */
  readonly #records = new Map<string, DeviceRecord>()
  /** PeerIds in key order (what `list()` returns), rebuilt after an enrollment. */
  #order: string[] | undefined
  /** Records of `putOps()` whose batch is not known to be written yet (see `admitted()`). */
  readonly #pending = new Map<string, DeviceRecord>()
  readonly #locks = new KeyedMutex()

  constructor(db: StateDb) {
    this.#db = db
  }

  async load(): Promise<void> {
    this.#records.clear()
    this.#order = undefined
    for await (const [, rec] of this.#db.iterate<DeviceRecord>('device:')) this.#records.set(rec.peerId, rec)
  }

  isMember(peerId: string): boolean {
    return this.#records.has(peerId)
  }

  /** The enrolled PeerIds (for the signed member list). */
  members(): string[] {
    return [...this.#records.keys()]
  }

  putOps(record: DeviceRecord): StateBatchOp[] {
    this.#pending.set(record.peerId, record)
    return [{ type: 'put', key: deviceKey(record.peerId), value: record }]
  }

  /** Call after the batch holding `putOps(record)` has been written. */
  admitted(peerId: string): void {
    const record = this.#pending.get(peerId)
    if (!record) throw new StateError('PSW_ERR_INTERNAL', `admitted(${peerId}) without putOps()`)
    this.#pending.delete(peerId)
    if (!this.#records.has(peerId)) this.#order = undefined
    this.#records.set(peerId, record)
  }

  async get(peerId: string): Promise<DeviceRecord | undefined> {
    return this.#records.get(peerId)
  }

  /** Every record, in PeerId order (as stored). */
  async list(): Promise<DeviceRecord[]> {
    this.#order ??= [...this.#records.keys()].sort()
    return this.#order.map((p) => this.#records.get(p)!)
  }

  /** Read-modify-write of one record under its lock; `undefined` when the device is unknown. */
  async #update(
    peerId: string,
    change: (rec: DeviceRecord) => { record: DeviceRecord; extra?: StateBatchOp[] },
  ): Promise<DeviceRecord | undefined> {
    return this.#locks.run(peerId, async () => {
      const rec = this.#records.get(peerId)
      if (!rec) return undefined
      const { record, extra = [] } = change(rec)
      await this.#db.batch([...extra, { type: 'put', key: deviceKey(peerId), value: record }])
      this.#records.set(peerId, record)
      return record
    })
  }

  async recordReport(peerId: string, report: AgentReportT, now: number): Promise<void> {
    await this.#update(peerId, (rec) => ({ record: { ...rec, lastSeen: new Date(now).toISOString(), report } }))
  }

  /**
   * Stores a device's inventory under `inventory:<peerId>` and a summary on its record, in
   * one batch. Returns false for a PeerId without a device record (nothing is stored).
   */
  async recordInventory(peerId: string, inventory: InventoryReportT, now: number): Promise<boolean> {
    const receivedAt = new Date(now).toISOString()
    const stored: StoredInventory = { receivedAt, inventory }
    const summary: InventorySummary = {
      receivedAt,
      digest: inventory.digest,
      hostname: inventory.hostname,
      os: inventory.os,
      packages: inventory.packages.length,
      rebootPending: inventory.reboot.pending,
    }
    const rec = await this.#update(peerId, (r) => ({
      record: { ...r, lastSeen: receivedAt, inventory: summary },
      extra: [{ type: 'put', key: inventoryKey(peerId), value: stored }],
    }))
    return rec !== undefined
  }

  async getInventory(peerId: string): Promise<StoredInventory | undefined> {
    return this.#db.get<StoredInventory>(inventoryKey(peerId))
  }

  /** Replaces the device's tags (normalised, see normalizeTags); PSW_ERR_NOT_FOUND for an unknown device. */
  async setTags(peerId: string, tags: readonly string[]): Promise<DeviceRecord> {
    const normalized = normalizeTags(tags)
    const rec = await this.#update(peerId, (r) => ({ record: { ...r, tags: normalized } }))
    if (!rec) throw new StateError('PSW_ERR_NOT_FOUND', `no device ${peerId}`)
    return rec
  }

  async setTier(peerId: string, tier: DeviceTier): Promise<DeviceRecord> {
    if (!(DEVICE_TIERS as readonly string[]).includes(tier))
      throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', `tier must be one of ${DEVICE_TIERS.join(', ')}`)
    const rec = await this.#update(peerId, (r) => ({ record: { ...r, tier } }))
    if (!rec) throw new StateError('PSW_ERR_NOT_FOUND', `no device ${peerId}`)
    return rec
  }
}
