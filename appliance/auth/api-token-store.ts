/**
 * API tokens for scripts, Prometheus and the MSP: `psw_<id>_<secret>`, id 16 hex digits,
 * secret 32 random bytes (base64url). Stored under `apitoken:<id>` with the SHA-256 of the
 * secret only; the plaintext is returned once, at creation. `lastUsedAt` is written at most
 * once per `touchMs`.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import type { Clock } from '../../shared/clock.ts'
import { StateError, ValidationError } from '../../shared/errors.ts'
import type { StateDb } from '../../shared/store/state-db.ts'
import { isRole, type Role } from './roles.ts'

export const API_TOKEN_PREFIX = 'apitoken:'
const TOKEN_RE = /^psw_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/

interface StoredToken {
  id: string
  name: string
  role: Role
  secretHash: string
  createdAt: string
  createdBy: string
  expiresAt?: string
  lastUsedAt?: string
}

export interface ApiTokenView {
  id: string
  name: string
  role: Role
  createdAt: string
  createdBy: string
  expiresAt?: string
  lastUsedAt?: string
}

const sha256 = (text: string) => createHash('sha256').update(text).digest()

function view(t: StoredToken): ApiTokenView {
  const { secretHash: _s, ...rest } = t
  return rest
}

/** Whether `text` looks like an API token (so the resolver tries no other credential). */
export function isApiTokenFormat(text: string): boolean {
  return text.startsWith('psw_')
}

export class ApiTokenStore {
  readonly #db: StateDb
  readonly #clock: Clock
  readonly #touchMs: number

  constructor(components: { db: StateDb; clock: Clock }, options: { touchMs?: number } = {}) {
    this.#db = components.db
    this.#clock = components.clock
    this.#touchMs = options.touchMs ?? 60_000
  }

  async create(
    input: { name: string; role: Role; expiresAt?: string },
    createdBy: string,
  ): Promise<{ token: string; view: ApiTokenView }> {
    if (!isRole(input.role)) throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', 'unknown role')
    const now = this.#clock.now()
    if (input.expiresAt !== undefined) {
      const at = Date.parse(input.expiresAt)
      if (Number.isNaN(at) || at <= now) {
        throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', 'expiresAt must be a time in the future')
      }
    }
    const id = randomBytes(8).toString('hex')
    const secret = randomBytes(32).toString('base64url')
    const stored: StoredToken = {
      id,
      name: input.name,
      role: input.role,
      secretHash: sha256(secret).toString('hex'),
      createdAt: new Date(now).toISOString(),
      createdBy,
      ...(input.expiresAt === undefined ? {} : { expiresAt: new Date(Date.parse(input.expiresAt)).toISOString() }),
    }
    await this.#db.put(API_TOKEN_PREFIX + id, stored)
    return { token: `psw_${id}_${secret}`, view: view(stored) }
  }

  async list(): Promise<ApiTokenView[]> {
    const out: ApiTokenView[] = []
    for await (const [, t] of this.#db.iterate<StoredToken>(API_TOKEN_PREFIX)) out.push(view(t))
    return out
  }

  async remove(id: string): Promise<ApiTokenView> {
    const stored = /^[0-9a-f]{16}$/.test(id) ? await this.#db.get<StoredToken>(API_TOKEN_PREFIX + id) : undefined
    if (!stored) throw new StateError('PSW_ERR_NOT_FOUND', `no API token ${id}`)
    await this.#db.del(API_TOKEN_PREFIX + id)
    return view(stored)
  }

  /** The token's view if `token` is a live token (constant-time secret check); else undefined. */
  async verify(token: string): Promise<ApiTokenView | undefined> {
    const m = TOKEN_RE.exec(token)
    if (!m) return undefined
    const [, id, secret] = m as unknown as [string, string, string]
    const stored = await this.#db.get<StoredToken>(API_TOKEN_PREFIX + id)
    if (!stored) return undefined
    const expected = Buffer.from(stored.secretHash, 'hex')
    const got = sha256(secret)
    if (expected.length !== got.length || !timingSafeEqual(expected, got)) return undefined
    const now = this.#clock.now()
    if (stored.expiresAt !== undefined && Date.parse(stored.expiresAt) <= now) return undefined
    if (stored.lastUsedAt === undefined || now - Date.parse(stored.lastUsedAt) >= this.#touchMs) {
      stored.lastUsedAt = new Date(now).toISOString()
      await this.#db.put(API_TOKEN_PREFIX + id, stored)
    }
    return view(stored)
  }
}
