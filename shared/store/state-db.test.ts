import { type ChildProcessByStdio, spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { openStateDb, SCHEMA_VERSION_KEY, type StateDb } from './state-db.ts'

const CHILD = fileURLToPath(new URL('./fixtures/state-db-child.ts', import.meta.url))

type Child = ChildProcessByStdio<null, Readable, Readable>

function spawnChild(mode: 'open' | 'put-and-hang', dbPath: string): Child {
  return spawn(process.execPath, ['--import', 'tsx', CHILD, mode, dbPath], { stdio: ['ignore', 'pipe', 'pipe'] })
}

/** The child's first stdout line as JSON; fails (and kills the child) after `ms`. */
function firstLine(child: Child, ms = 30_000): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    let out = ''
    let err = ''
    const done = (fn: () => void): void => {
      clearTimeout(timer)
      child.stdout.off('data', onData)
      child.off('exit', onExit)
      fn()
    }
    const onData = (buf: Buffer): void => {
      out += buf.toString('utf8')
      const nl = out.indexOf('\n')
      if (nl >= 0) done(() => resolve(JSON.parse(out.slice(0, nl)) as Record<string, unknown>))
    }
    const onExit = (code: number | null): void =>
      done(() => reject(new Error(`child exited (${code}) before answering: ${err}`)))
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      done(() => reject(new Error(`child did not answer within ${ms} ms: ${err}`)))
    }, ms)
    child.stderr.on('data', (buf: Buffer) => {
      err += buf.toString('utf8')
    })
    child.stdout.on('data', onData)
    child.on('exit', onExit)
  })
}

function exited(child: Child): Promise<NodeJS.Signals | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.signalCode)
  return new Promise((resolve) => child.once('exit', (_code, signal) => resolve(signal)))
}

describe('state db', () => {
  let dir: string
  let dbPath: string
  const open: StateDb[] = []
  const openDb = async (schemaVersion = 1): Promise<StateDb> => {
    const db = await openStateDb({ path: dbPath, schemaVersion })
    open.push(db)
    return db
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'psw-state-'))
    dbPath = join(dir, 'state')
  })

  afterEach(async () => {
    await Promise.all(open.splice(0).map((db) => db.close()))
    await rm(dir, { recursive: true, force: true })
  })

  it('writes the schema version on first open and accepts it on reopen', async () => {
    const db = await openDb(3)
    expect(await db.get(SCHEMA_VERSION_KEY)).toBe(3)
    await db.close()
    const again = await openDb(3)
    expect(await again.get(SCHEMA_VERSION_KEY)).toBe(3)
  })

  it('refuses another schema version and releases the database', async () => {
    await (await openDb(1)).close()
    await expect(openStateDb({ path: dbPath, schemaVersion: 2 })).rejects.toMatchObject({
      name: 'StoreError',
      code: 'PSW_ERR_STORE_SCHEMA_VERSION',
      details: { found: 1, expected: 2 },
    })
    // The refused open closed its handle: the right version opens fine.
    await openDb(1)
  })

  it('refuses a database that has data but no schema version', async () => {
    const db = await openDb(1)
    await db.put('job:1', { a: 1 })
    await db.del(SCHEMA_VERSION_KEY)
    await db.close()
    await expect(openStateDb({ path: dbPath, schemaVersion: 1 })).rejects.toMatchObject({
      code: 'PSW_ERR_STORE_SCHEMA_VERSION',
    })
  })

  it('reports a second open in the same process as PSW_ERR_STORE_LOCKED', async () => {
    await openDb()
    const err = await openStateDb({ path: dbPath, schemaVersion: 1 }).catch((e: unknown) => e)
    expect(err).toMatchObject({ name: 'StoreError', code: 'PSW_ERR_STORE_LOCKED', details: { path: dbPath } })
    expect((err as Error).message).toContain(dbPath)
  })

  it('reports a database held by another process as PSW_ERR_STORE_LOCKED', async () => {
    await openDb()
    const child = spawnChild('open', dbPath)
    const answer = await firstLine(child)
    await exited(child)
    expect(answer).toMatchObject({ ok: false, code: 'PSW_ERR_STORE_LOCKED' })
    expect(answer.message).toContain(dbPath)
  })

  it('round-trips JSON values, deletes, applies batches and rejects undefined values', async () => {
    const db = await openDb()
    await db.put('device:1', { name: 'pc-1', rings: [1, 2] })
    expect(await db.get('device:1')).toEqual({ name: 'pc-1', rings: [1, 2] })
    expect(await db.get('device:2')).toBeUndefined()
    await db.batch([
      { type: 'put', key: 'device:2', value: 'two' },
      { type: 'del', key: 'device:1' },
    ])
    expect(await db.get('device:1')).toBeUndefined()
    expect(await db.get('device:2')).toBe('two')
    await db.del('device:2')
    expect(await db.get('device:2')).toBeUndefined()
    await expect(db.put('device:3', undefined)).rejects.toMatchObject({ code: 'PSW_ERR_INVALID_ARGUMENT' })
    await expect(db.batch([{ type: 'put', key: 'device:3', value: undefined }])).rejects.toMatchObject({
      code: 'PSW_ERR_INVALID_ARGUMENT',
    })
    await expect(db.put('', 1)).rejects.toMatchObject({ code: 'PSW_ERR_INVALID_ARGUMENT' })
  })

  it('hands out strictly increasing counters under 100 concurrent calls, and persists them', async () => {
    const db = await openDb()
    const values = await Promise.all(Array.from({ length: 100 }, () => db.nextCounter('manifest-version')))
    expect([...values].sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1))
    expect(values).toEqual(Array.from({ length: 100 }, (_, i) => i + 1))
    expect(await db.nextCounter('other')).toBe(1)
    await db.close()
    const reopened = await openDb()
    expect(await reopened.nextCounter('manifest-version')).toBe(101)
  })

  it('reserves blocks of counter values with one write; blocks never overlap, also across a restart', async () => {
    const db = await openDb()
    expect(await db.nextCounter('v')).toBe(1)
    const [a, b] = await Promise.all([db.reserveCounter('v', 1000), db.reserveCounter('v', 3)])
    expect([a, b]).toEqual([2, 1002])
    expect(await db.nextCounter('v')).toBe(1005)
    await expect(db.reserveCounter('v', 0)).rejects.toMatchObject({ code: 'PSW_ERR_INVALID_ARGUMENT' })
    await db.close()
    const reopened = await openDb()
    expect(await reopened.reserveCounter('v', 10)).toBe(1006)
    await reopened.close()
  })

  it('tells write listeners the keys of each durable put, delete and batch, until removed', async () => {
    const db = await openDb()
    const seen: string[][] = []
    const off = db.onWrite((keys) => seen.push(keys))
    await db.put('a:1', { x: 1 })
    await db.batch([
      { type: 'put', key: 'b:1', value: 1 },
      { type: 'del', key: 'a:1' },
    ])
    await db.del('b:1')
    await db.nextCounter('c')
    off()
    await db.put('a:2', 2)
    expect(seen).toEqual([['a:1'], ['b:1', 'a:1'], ['b:1'], [expect.stringContaining('c')]])
    await db.close()
  })

  it('iterates exactly one prefix, in order, with limit and reverse', async () => {
    const db = await openDb()
    const keys = ['a', 'a:', 'a:1', 'a:2', 'a:\u00ff', 'a:\u{1F600}', 'a;x', 'a9', 'b:1', 'A:1']
    await db.batch(keys.map((key) => ({ type: 'put' as const, key, value: key })))
    const collect = async (prefix: string, options = {}): Promise<string[]> => {
      const out: string[] = []
      for await (const [key, value] of db.iterate<string>(prefix, options)) {
        expect(value).toBe(key)
        out.push(key)
      }
      return out
    }
    expect(await collect('a:')).toEqual(['a:', 'a:1', 'a:2', 'a:\u00ff', 'a:\u{1F600}'])
    expect(await collect('a:', { limit: 2 })).toEqual(['a:', 'a:1'])
    expect(await collect('a:', { reverse: true, limit: 2 })).toEqual(['a:\u{1F600}', 'a:\u00ff'])
    expect(await collect('b:')).toEqual(['b:1'])
    expect(await collect('c:')).toEqual([])
    // Breaking out early closes the iterator; the database still closes cleanly.
    for await (const _entry of db.iterate('a')) break
  })

  it('keeps an acknowledged write after kill -9 of the writer', async () => {
    const child = spawnChild('put-and-hang', dbPath)
    try {
      expect(await firstLine(child)).toEqual({ ok: true })
      child.kill('SIGKILL')
      expect(await exited(child)).toBe('SIGKILL')
    } finally {
      child.kill('SIGKILL')
    }
    const db = await openDb()
    expect(await db.get('job:acked')).toEqual({ id: 42, state: 'acknowledged' })
    expect(await db.get('job:batch-a')).toBe('a')
    expect(await db.get('job:batch-b')).toBe('b')
  })

  it('close is idempotent', async () => {
    const db = await openDb()
    await Promise.all([db.close(), db.close()])
    await db.close()
  })
})
