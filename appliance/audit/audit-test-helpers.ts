import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ManualClock } from '../../shared/clock.ts'
import { silentLogger } from '../../shared/log.ts'
import { openStateDb, type StateDb } from '../../shared/store/state-db.ts'
import { AuditLog, type AuditLogInit } from './audit-log.ts'
import type { AuditEntry } from './audit-record.ts'

/** A real LevelDB in a temp dir with an audit log on it; `reopen()` simulates a restart. */
export interface AuditFixture {
  dir: string
  db: StateDb
  audit: AuditLog
  clock: ManualClock
  reopen(init?: AuditLogInit): Promise<void>
  cleanup(): Promise<void>
}

export async function openAuditFixture(init: AuditLogInit = {}): Promise<AuditFixture> {
  const dir = await mkdtemp(join(tmpdir(), 'psw-audit-'))
  const path = join(dir, 'db')
  const clock = new ManualClock(Date.UTC(2026, 2, 1, 8, 0, 0))
  const open = async (i: AuditLogInit) => {
    const db = await openStateDb({ path, schemaVersion: 1 })
    const audit = new AuditLog({ db, clock, log: silentLogger() }, i)
    await audit.start()
    return { db, audit }
  }
  const fx: AuditFixture = {
    dir,
    clock,
    ...(await open(init)),
    async reopen(i = {}) {
      await fx.audit.stop()
      await fx.db.close()
      const db = await openStateDb({ path, schemaVersion: 1 })
      fx.db = db
      fx.audit = new AuditLog({ db, clock, log: silentLogger() }, i)
      await fx.audit.start()
    },
    async cleanup() {
      await fx.audit.stop().catch(() => {})
      await fx.db.close()
      await rm(dir, { recursive: true, force: true })
    },
  }
  return fx
}

/** A plausible operator action number `i`. */
export function sampleEntry(i: number, overrides: Partial<AuditEntry> = {}): AuditEntry {
  return {
    actor: { type: 'operator', id: `op-${i % 3}` },
    action: i % 2 === 0 ? 'patch.approve' : 'rollout.advance',
    target: { type: i % 2 === 0 ? 'patch' : 'rollout', id: `t-${i % 5}` },
    before: { state: 'pending', i },
    after: { state: 'approved', i },
    reason: `change ${i}`,
    ...overrides,
  }
}
