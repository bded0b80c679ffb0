/**
 * Typed JSON state over LevelDB; the only module in patchswarm that imports `level`.
 * Every write is `{ sync: true }`: once a write resolves it survives `kill -9` and power
 * loss, so callers may acknowledge it. Several related writes go in one `batch`.
 */
import { Level } from 'level'
import { StoreError, ValidationError } from '../errors.ts'
import { type Logger, silentLogger } from '../log.ts'
import { Mutex } from './mutex.ts'

/** Key that holds the schema version of the data in the database. */
export const SCHEMA_VERSION_KEY = 'meta:schema-version'
const COUNTER_PREFIX = 'counter:'
const SYNC = { sync: true } as const

export interface StateDbOptions {
  /** Directory of the LevelDB database; created if missing. */
  path: string
  /** Version of the data layout this program writes; a database of another version is refused. */
  schemaVersion: number
  log?: Logger
}

export type StateBatchOp = { type: 'put'; key: string; value: unknown } | { type: 'del'; key: string }

export interface IterateOptions {
  limit?: number
  reverse?: boolean
}

export interface StateDb {
  readonly path: string
  readonly schemaVersion: number
  get<T>(key: string): Promise<T | undefined>
  /** Durable (`sync: true`) write of a JSON value. */
  put(key: string, value: unknown): Promise<void>
  /** Durable delete. */
  del(key: string): Promise<void>
  /** Applies all operations atomically and durably. */
  batch(ops: readonly StateBatchOp[]): Promise<void>
  /** Entries whose key starts with `prefix`, in key order (UTF-8 byte order). */
  iterate<T>(prefix: string, options?: IterateOptions): AsyncIterable<[string, T]>
  /** Returns 1, 2, 3, … for `name`; persisted durably, serialised within this process. */
  nextCounter(name: string): Promise<number>
  /**
   * Reserves `count` consecutive values of `name` with one durable write and returns the first.
   * Values reserved and not used are gaps, never reused (counters are versions: only order matters).
   */
  reserveCounter(name: string, count: number): Promise<number>
  /**
   * Calls `listener` with the keys of every put, delete and batch once it is durable (level's
   * `write` event), in write order. For live updates (the web UI's event stream): listeners
   * must be cheap and must not throw. Returns a function that removes the listener.
   */
  onWrite(listener: (keys: string[]) => void): () => void
  /** Closes the database; idempotent. */
  close(): Promise<void>
}

interface LevelErrorLike {
  code?: unknown
  message?: unknown
  cause?: { code?: unknown } | undefined
}

function assertKey(key: string): void {
  if (typeof key !== 'string' || key.length === 0) {
    throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', 'state key must be a non-empty string')
  }
}

function assertValue(key: string, value: unknown): void {
  if (value === undefined) {
    throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', `value for ${key} is undefined; use del()`)
  }
}

/**
 * Maps LevelDB write failures: leveldb reports a full disk only as an IO error text, so the
 * text is inspected here, once, and turned into StoreError PSW_ERR_DISK_FULL.
 */
function mapLevelError(err: unknown, what: string): unknown {
  const e = err as LevelErrorLike | null
  const text = `${String(e?.message ?? '')} ${String((e?.cause as LevelErrorLike | undefined)?.message ?? '')}`
  if (/No space left on device|ENOSPC/i.test(text)) {
    return new StoreError('PSW_ERR_DISK_FULL', `no space left on device while ${what}`, { cause: err })
  }
  return err
}

function isLocked(err: unknown): boolean {
  const e = err as LevelErrorLike | null
  return e?.code === 'LEVEL_LOCKED' || (e?.code === 'LEVEL_DATABASE_NOT_OPEN' && e.cause?.code === 'LEVEL_LOCKED')
}

/** `prefix` as UTF-8 and the first byte string after every key that starts with it. */
function prefixRange(prefix: string): { gte: Buffer; lt: Buffer } {
  const gte = Buffer.from(prefix, 'utf8')
  // 0xff never occurs in UTF-8, so prefix + 0xff sorts after every key with this prefix and
  // before every key without it.
  return { gte, lt: Buffer.concat([gte, Buffer.from([0xff])]) }
}

async function checkSchemaVersion(db: Level<string, unknown>, options: StateDbOptions): Promise<void> {
  const stored = await db.get(SCHEMA_VERSION_KEY)
  if (stored === undefined) {
    for await (const _key of db.keys({ limit: 1 })) {
      throw new StoreError(
        'PSW_ERR_STORE_SCHEMA_VERSION',
        `database at ${options.path} has data but no schema version; refusing to start`,
        { details: { path: options.path, expected: options.schemaVersion } },
      )
    }
    await db.put(SCHEMA_VERSION_KEY, options.schemaVersion, SYNC)
    return
  }
  if (stored !== options.schemaVersion) {
    throw new StoreError(
      'PSW_ERR_STORE_SCHEMA_VERSION',
      `database at ${options.path} has schema version ${JSON.stringify(stored)}, this program uses ${options.schemaVersion}; refusing to start`,
      { details: { path: options.path, found: stored, expected: options.schemaVersion } },
    )
  }
}

/**
 * Opens (creating if missing) the state database at `options.path` and checks its schema
 * version. Throws StoreError PSW_ERR_STORE_LOCKED if another process (or another handle in
 * this process) has it open, PSW_ERR_STORE_SCHEMA_VERSION on a version mismatch, and
 * PSW_ERR_DATA_DIR if it cannot be opened for another reason.
 */
export async function openStateDb(options: StateDbOptions): Promise<StateDb> {
  const { path, schemaVersion } = options
  if (!Number.isSafeInteger(schemaVersion) || schemaVersion < 1) {
    throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', 'schemaVersion must be a positive integer')
  }
  const log = options.log ?? silentLogger()
  const db = new Level<string, unknown>(path, { valueEncoding: 'json' })
  try {
    await db.open()
  } catch (err) {
    if (isLocked(err)) {
      throw new StoreError(
        'PSW_ERR_STORE_LOCKED',
        `database at ${path} is locked: another patchswarm process (or another handle in this one) has it open`,
        { cause: err, details: { path } },
      )
    }
    throw new StoreError('PSW_ERR_DATA_DIR', `cannot open database at ${path}`, {
      cause: mapLevelError(err, `opening ${path}`),
      details: { path },
    })
  }
  try {
    await checkSchemaVersion(db, options)
  } catch (err) {
    await db.close().catch(() => {})
    throw mapLevelError(err, `writing the schema version to ${path}`)
  }
  log.debug({ path, schemaVersion }, 'state database opened')

  const counterLock = new Mutex()
  let closing: Promise<void> | undefined

  const put = async (key: string, value: unknown): Promise<void> => {
    assertKey(key)
    assertValue(key, value)
    try {
      await db.put(key, value, SYNC)
    } catch (err) {
      throw mapLevelError(err, `writing ${key}`)
    }
  }

  const reserveCounter = async (name: string, count: number): Promise<number> => {
    assertKey(name)
    if (!Number.isSafeInteger(count) || count < 1)
      throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', `cannot reserve ${count} counter values`)
    const key = COUNTER_PREFIX + name
    return counterLock.runExclusive(async () => {
      const current = (await db.get(key)) ?? 0
      if (typeof current !== 'number' || !Number.isSafeInteger(current)) {
        throw new StoreError('PSW_ERR_INTERNAL', `counter ${name} holds a non-integer value`, { details: { key } })
      }
      await put(key, current + count)
      return current + 1
    })
  }

  return {
    path,
    schemaVersion,

    async get<T>(key: string): Promise<T | undefined> {
      assertKey(key)
      return (await db.get(key)) as T | undefined
    },

    put,

    async del(key) {
      assertKey(key)
      try {
        await db.del(key, SYNC)
      } catch (err) {
        throw mapLevelError(err, `deleting ${key}`)
      }
    },

    async batch(ops) {
      for (const op of ops) {
        assertKey(op.key)
        if (op.type === 'put') assertValue(op.key, op.value)
      }
      if (ops.length === 0) return
      try {
        await db.batch(
          ops.map((op) =>
            op.type === 'put' ? { type: 'put', key: op.key, value: op.value } : { type: 'del', key: op.key },
          ),
          SYNC,
        )
      } catch (err) {
        throw mapLevelError(err, `writing a batch of ${ops.length}`)
      }
    },

    async *iterate<T>(prefix: string, iterateOptions: IterateOptions = {}): AsyncIterable<[string, T]> {
      const range = prefixRange(prefix)
      const it = db.iterator<Buffer, unknown>({
        ...range,
        keyEncoding: 'buffer',
        valueEncoding: 'json',
        reverse: iterateOptions.reverse ?? false,
        limit: iterateOptions.limit ?? -1,
      })
      for await (const [key, value] of it) yield [key.toString('utf8'), value as T]
    },

    onWrite(listener) {
      const handler = (ops: Array<{ key: unknown }>) => {
        try {
          listener(ops.map((op) => String(op.key)))
        } catch (err) {
          log.warn({ err }, 'state write listener failed')
        }
      }
      db.on('write', handler)
      return () => {
        db.off('write', handler)
      }
    },

    nextCounter(name) {
      return reserveCounter(name, 1)
    },
    reserveCounter(name, count) {
      return reserveCounter(name, count)
    },

    close() {
      closing ??= db.close().then(() => log.debug({ path }, 'state database closed'))
      return closing
    },
  }
}
