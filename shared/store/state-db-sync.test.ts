import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'

// kill -9 alone cannot tell a synced write from an unsynced one (the OS page cache survives
// the process), so this checks the options that reach LevelDB: every write must be sync.
const writes = vi.hoisted(() => [] as Array<{ op: string; sync: unknown }>)
vi.mock('level', async (importOriginal) => {
  const { Level } = await importOriginal<typeof import('level')>()
  type Method = (this: unknown, ...args: unknown[]) => unknown
  const proto = Level.prototype as unknown as Record<'put' | 'del' | 'batch', Method>
  for (const [op, optionsAt] of [
    ['put', 2],
    ['del', 1],
    ['batch', 1],
  ] as const) {
    const original = proto[op]
    proto[op] = function (this: unknown, ...args: unknown[]) {
      writes.push({ op, sync: (args[optionsAt] as { sync?: unknown } | undefined)?.sync })
      return original.apply(this, args)
    }
  }
  return { Level }
})

const { openStateDb } = await import('./state-db.ts')

describe('state db write durability', () => {
  let dir: string

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'psw-state-sync-'))
    writes.length = 0
  })

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('passes sync: true on every put, del, batch and counter write', async () => {
    const db = await openStateDb({ path: join(dir, 'state'), schemaVersion: 1 })
    await db.put('a', 1)
    await db.del('a')
    await db.batch([{ type: 'put', key: 'b', value: 2 }])
    await db.nextCounter('c')
    await db.close()
    expect(writes.map((w) => w.op)).toEqual(['put', 'put', 'del', 'batch', 'put'])
    expect(writes.every((w) => w.sync === true)).toBe(true)
  })
})
