/**
 * First-run setup: while no account exists, a one-time token (32 random bytes, valid 24 h,
 * stored as its SHA-256 under `auth:setup`) lets whoever holds it create the first admin.
 * A fresh token replaces the old one at each start while setup is still needed.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import type { Clock } from '../../shared/clock.ts'
import { AuthError, StateError } from '../../shared/errors.ts'
import type { StateDb } from '../../shared/store/state-db.ts'
import type { UserStore, UserView } from './user-store.ts'

export const SETUP_KEY = 'auth:setup'
const SETUP_TTL_MS = 24 * 3_600_000

interface StoredSetup {
  hash: string
  expiresAt: number
}

const sha256 = (text: string) => createHash('sha256').update(text).digest()

export class Setup {
  readonly #db: StateDb
  readonly #clock: Clock
  readonly #users: UserStore

  constructor(components: { db: StateDb; clock: Clock; users: UserStore }) {
    this.#db = components.db
    this.#clock = components.clock
    this.#users = components.users
  }

  /** Whether no account exists yet. */
  async required(): Promise<boolean> {
    return !(await this.#users.any())
  }

  /**
   * A new setup token (plaintext, for the start banner) replacing any previous one, or
   * undefined when setup is done.
   */
  async setupToken(): Promise<string | undefined> {
    return this.#users.exclusive(async () => {
      if (await this.#users.any()) {
        await this.#db.del(SETUP_KEY)
        return undefined
      }
      const token = randomBytes(32).toString('base64url')
      const stored: StoredSetup = { hash: sha256(token).toString('hex'), expiresAt: this.#clock.now() + SETUP_TTL_MS }
      await this.#db.put(SETUP_KEY, stored)
      return token
    })
  }

  /**
   * Consumes `token` and creates the first admin, atomically: PSW_ERR_CONFLICT once an
   * account exists (also for a second concurrent setup), PSW_ERR_UNAUTHORIZED for a wrong or
   * expired token.
   */
  async complete(token: string, input: { username: string; password: string }): Promise<UserView> {
    return this.#users.exclusive(async () => {
      if (await this.#users.any()) throw new StateError('PSW_ERR_CONFLICT', 'the appliance is already set up')
      const stored = await this.#db.get<StoredSetup>(SETUP_KEY)
      const expected = stored ? Buffer.from(stored.hash, 'hex') : Buffer.alloc(32)
      const got = sha256(token)
      const same = expected.length === got.length && timingSafeEqual(expected, got)
      if (!stored || !same) throw new AuthError('PSW_ERR_UNAUTHORIZED', 'the setup token is wrong')
      if (stored.expiresAt <= this.#clock.now()) {
        throw new AuthError('PSW_ERR_UNAUTHORIZED', 'the setup token has expired; restart the appliance for a new one')
      }
      return this.#users.create({ ...input, role: 'admin' }, 'setup', {
        onlyFirst: true,
        locked: true,
        extraOps: [{ type: 'del', key: SETUP_KEY }],
      })
    })
  }
}

/** The link that opens the setup form with `token` filled in, under the web UI's `baseUrl`. */
export function setupUrl(baseUrl: string, token: string): string {
  return `${baseUrl.replace(/\/+$/, '')}/#/setup?token=${token}`
}

/**
 * Prints the one-time setup link on stdout (`setup: <url>/#/setup?token=…`) and logs, at info,
 * that setup is pending, without the token (logs are kept and shipped; stdout is the console).
 */
export function setupBanner(
  baseUrl: string,
  token: string,
  log?: { info(obj: object, msg: string): void },
  write: (line: string) => void = (line) => process.stdout.write(line),
): void {
  write(`setup: ${setupUrl(baseUrl, token)}\n`)
  log?.info(
    { setupUrl: `${baseUrl.replace(/\/+$/, '')}/#/setup` },
    'no account exists yet: open the setup link printed on the console (valid 24 h) to create the first admin',
  )
}
