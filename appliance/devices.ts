import type { AgentReportT } from '../shared/protocol/control-protocol.ts'
import type { StateBatchOp, StateDb } from '../shared/store/state-db.ts'

export interface DeviceRecord {
  peerId: string
  hostname: string
  certificatePem: string
  enrolledAt: string
  lastSeen?: string
  report?: AgentReportT
}

const deviceKey = (peerId: string) => `device:${peerId}`

/**
 * Enrolled devices. The set of their PeerIds is kept in memory because the connection gater
 * asks on every connection; it is loaded at start and updated on every enrollment.
 */
export class DeviceRegistry {
  readonly #db: StateDb
  readonly #members = new Set<string>()

  constructor(db: StateDb) {
    this.#db = db
  }

  async load(): Promise<void> {
    this.#members.clear()
    for await (const [, rec] of this.#db.iterate<DeviceRecord>('device:')) this.#members.add(rec.peerId)
  }

  isMember(peerId: string): boolean {
    return this.#members.has(peerId)
  }

  /** The enrolled PeerIds (for the signed member list). */
  members(): string[] {
    return [...this.#members]
  }

  putOps(record: DeviceRecord): StateBatchOp[] {
    return [{ type: 'put', key: deviceKey(record.peerId), value: record }]
  }

  /** Call after the batch holding `putOps(record)` has been written. */
  admitted(peerId: string): void {
    this.#members.add(peerId)
  }

  async get(peerId: string): Promise<DeviceRecord | undefined> {
    return this.#db.get<DeviceRecord>(deviceKey(peerId))
  }

  async list(): Promise<DeviceRecord[]> {
    const out: DeviceRecord[] = []
    for await (const [, rec] of this.#db.iterate<DeviceRecord>('device:')) out.push(rec)
    return out
  }

  async recordReport(peerId: string, report: AgentReportT, now: number): Promise<void> {
    const rec = await this.get(peerId)
    if (!rec) return
    await this.#db.put(deviceKey(peerId), { ...rec, lastSeen: new Date(now).toISOString(), report })
  }
}
