/**
 * Login sessions in the state database under `session:<sha256 of the id>`: the cookie carries
 * a random 32-byte id, the database only its hash (a copy of the database logs nobody in).
 * A session ends after `idleMs` without a request or `absoluteMs` after login, whichever is
 * first; `lastSeen` is written at most once per `touchMs`. Expired sessions are refused at
 * once and deleted lazily and by a periodic purge. This store is the only writer of
 * `session:` keys, so it answers lookups from a bounded in-memory copy (written only after
 * the database write is durable): a request's session check does no disk read.
 */
import { createHash, randomBytes } from 'node:crypto'
import type { Clock } from '../../shared/clock.ts'
import type { Logger } from '../../shared/log.ts'
import type { StateDb } from '../../shared/store/state-db.ts'
import type { Role } from './roles.ts'

export const SESSION_PREFIX = 'session:'

export interface SessionRecord {
  user: string
  role: Role
  /** The CSRF secret: sent back by the UI in `x-csrf-token`. */
  csrf: string
  created: number
  lastSeen: number
}

/** A live session as the principal resolver sees it. */
export interface Session extends SessionRecord {
  /** SHA-256 (hex) of the id: the key, safe to log and to pass around. */
  key: string
  expiresAt: number
}

export interface SessionStoreOptions {
  /** Idle timeout; default 30 min. */
  idleMs?: number
  /** Absolute lifetime; default 12 h. */
  absoluteMs?: number
  /** Minimum interval between two `lastSeen` writes; default 60 s. */
  touchMs?: number
  /** Purge interval; default 10 min. */
  purgeMs?: number
}

/** Sessions kept in memory (a few hundred bytes each); older ones are read from the database. */
const MAX_CACHED_SESSIONS = 10_000

const hashId = (id: string) => createHash('sha256').update(id).digest('hex')
const ID_RE = /^[A-Za-z0-9_-]{43}$/

export class SessionStore {
  readonly #db: StateDb
  readonly #clock: Clock
  readonly #log: Logger
  readonly idleMs: number
  readonly absoluteMs: number
  readonly #touchMs: number
  readonly #purgeMs: number
  #timer: NodeJS.Timeout | undefined
  /** key → record, for the most recently used sessions (insertion order = least recent first). */
  readonly #cache = new Map<string, SessionRecord>()
  readonly #listeners = new Set<(ended: { key: string; user: string }) => void>()

  constructor(components: { db: StateDb; clock: Clock; log: Logger }, options: SessionStoreOptions = {}) {
    this.#db = components.db
    this.#clock = components.clock
    this.#log = components.log
    this.idleMs = options.idleMs ?? 30 * 60_000
    this.absoluteMs = options.absoluteMs ?? 12 * 3_600_000
    this.#touchMs = options.touchMs ?? 60_000
    this.#purgeMs = options.purgeMs ?? 10 * 60_000
  }

  /** Starts the periodic purge of expired sessions. */
  start(): void {
    if (this.#timer) return
    this.#timer = setInterval(() => {
      this.purge().catch((err: unknown) => this.#log.warn({ err }, 'session purge failed'))
    }, this.#purgeMs)
    this.#timer.unref()
  }

  stop(): void {
    clearInterval(this.#timer)
    this.#timer = undefined
  }

  /**
   * Calls `listener` when a session is destroyed (logout, password or role change, removal);
   * not for sessions that merely expire. For the event stream, which closes at logout.
   */
  onEnd(listener: (ended: { key: string; user: string }) => void): () => void {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  /** A new session: returns the id for the cookie (never stored) and the session. */
  async create(user: string, role: Role): Promise<{ id: string; session: Session }> {
    const id = randomBytes(32).toString('base64url')
    const now = this.#clock.now()
    const record: SessionRecord = {
      user,
      role,
      csrf: randomBytes(32).toString('base64url'),
      created: now,
      lastSeen: now,
    }
    const key = hashId(id)
    await this.#db.put(SESSION_PREFIX + key, record)
    this.#remember(key, record)
    return { id, session: this.#session(key, record) }
  }

  /** The live session of a cookie's id, its `lastSeen` updated (throttled); else undefined. */
  async resolve(id: string): Promise<Session | undefined> {
    if (!ID_RE.test(id)) return undefined
    const key = hashId(id)
    const cached = this.#cache.get(key)
    const record = cached ?? (await this.#db.get<SessionRecord>(SESSION_PREFIX + key))
    if (!record) return undefined
    const now = this.#clock.now()
    if (this.#expired(record, now)) {
      this.#cache.delete(key)
      await this.#db.del(SESSION_PREFIX + key).catch(() => {})
      return undefined
    }
    if (now - record.lastSeen >= this.#touchMs) {
      const touched = { ...record, lastSeen: now }
      await this.#db.put(SESSION_PREFIX + key, touched)
      this.#remember(key, touched)
      return this.#session(key, touched)
    }
    this.#remember(key, record)
    return this.#session(key, record)
  }

  /** Ends the session with this id (a cookie value); a no-op for unknown ids. */
  async destroy(id: string): Promise<void> {
    if (!ID_RE.test(id)) return
    await this.destroyKey(hashId(id))
  }

  /** Ends the session with this key (`Session.key`). */
  async destroyKey(key: string): Promise<void> {
    const record = await this.#db.get<SessionRecord>(SESSION_PREFIX + key)
    if (!record) return
    await this.#db.del(SESSION_PREFIX + key)
    this.#cache.delete(key)
    this.#ended(key, record.user)
  }

  /** Ends every session of `user` but the one with key `except`; returns how many ended. */
  async destroyAllFor(user: string, except?: string): Promise<number> {
    const ended: string[] = []
    for await (const [k, record] of this.#db.iterate<SessionRecord>(SESSION_PREFIX)) {
      const key = k.slice(SESSION_PREFIX.length)
      if (record.user === user && key !== except) ended.push(key)
    }
    if (ended.length === 0) return 0
    await this.#db.batch(ended.map((key) => ({ type: 'del' as const, key: SESSION_PREFIX + key })))
    for (const key of ended) {
      this.#cache.delete(key)
      this.#ended(key, user)
    }
    return ended.length
  }

  /** Deletes expired sessions; returns how many. */
  async purge(): Promise<number> {
    const now = this.#clock.now()
    const expired: string[] = []
    for await (const [k, record] of this.#db.iterate<SessionRecord>(SESSION_PREFIX)) {
      if (this.#expired(record, now)) expired.push(k)
    }
    if (expired.length > 0) await this.#db.batch(expired.map((key) => ({ type: 'del' as const, key })))
    for (const k of expired) this.#cache.delete(k.slice(SESSION_PREFIX.length))
    return expired.length
  }

  /** Keeps the record as the most recently used; the least recently used beyond the bound go. */
  #remember(key: string, record: SessionRecord): void {
    this.#cache.delete(key)
    this.#cache.set(key, record)
    while (this.#cache.size > MAX_CACHED_SESSIONS) this.#cache.delete(this.#cache.keys().next().value!)
  }

  #expired(record: SessionRecord, now: number): boolean {
    return now - record.lastSeen >= this.idleMs || now - record.created >= this.absoluteMs
  }

  #session(key: string, record: SessionRecord): Session {
    return { ...record, key, expiresAt: Math.min(record.lastSeen + this.idleMs, record.created + this.absoluteMs) }
  }

  #ended(key: string, user: string): void {
    for (const listener of this.#listeners) {
      try {
        listener({ key, user })
      } catch (err) {
        this.#log.warn({ err }, 'session end listener failed')
      }
    }
  }
}
